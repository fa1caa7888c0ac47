"""Snapshot and restore round-trip every device and the monitor's state:
snapshot mid-run, run on, restore, run the same distance again — the two
futures are identical (registers, memory, console, state)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tvmm.guestspec import GuestSpec
from tvmm.monitor import snapshot
from tvmm.monitor.record import mem_digest, regs_digest
from tvmm.monitor.vmm import Monitor

ROOT = Path(__file__).resolve().parents[2]
B = ROOT / "samples" / "build"
CASES = {
    "flaky": dict(kernel=str(B / "flaky.elf"), cmdline="seed=5"),        # PIT, PIC, paging, a crash ahead
    "multitask": dict(kernel=str(B / "multitask.elf"), cmdline="forever"),  # local APIC timer, PIT
    "disk": dict(kernel=str(B / "disk.elf"), disk0=str(B / "disk.img")),    # IDE with interrupts, writes
    "paging": dict(kernel=str(B / "paging.elf")),                          # CR3 switches, ring 3
}


def fingerprint(g):
    return (g.icount, g.now(), regs_digest(g), mem_digest(g), bytes(g.console), g.state, g.exit_status)


@pytest.mark.parametrize("name,at", [("flaky", 60_000), ("multitask", 300_000), ("disk", 20_000),
                                     ("paging", 100_000)])
def test_restore_then_rerun_gives_the_same_future(name, at):
    spec = GuestSpec(name=name, mem=16 << 20, **CASES[name])
    monitor = Monitor(Monitor.host_size_for([spec]))
    g = monitor.add_guest(spec)
    g.run(at)
    snap = snapshot.take(g)
    g.run(400_000)
    future = fingerprint(g)
    snapshot.restore(g, snap)
    assert (g.icount, g.now()) == (snap.icount, snap.now)
    g.run(400_000)
    assert fingerprint(g) == future
    assert snap.size < 2 << 20                     # compressed: a few hundred KiB at most


def test_restore_rewinds_a_crashed_guest():
    spec = GuestSpec(name="f", mem=16 << 20, **CASES["flaky"])
    monitor = Monitor(Monitor.host_size_for([spec]))
    g = monitor.add_guest(spec)
    g.run(50_000)
    snap = snapshot.take(g)
    while g.alive:
        g.run(100_000)
    assert g.state == "exited" and b"BUG" in g.console
    snapshot.restore(g, snap)
    assert g.state == "running" and b"BUG" not in g.console
    while g.alive:
        g.run(100_000)
    assert g.exit_status == 3 and b"BUG: unable to handle page fault at 0xdead0204" in g.console


def test_the_whole_machine_round_trips():
    specs = [GuestSpec(name=n, mem=16 << 20, **CASES[n]) for n in ("flaky", "multitask", "disk")]
    monitor = Monitor.with_guests(specs)
    monitor.run(150_000)
    snaps = monitor.snapshot()
    monitor.run(500_000)
    future = {g.name: fingerprint(g) for g in monitor.guests}
    monitor.restore(snaps)
    monitor.run(500_000)
    assert {g.name: fingerprint(g) for g in monitor.guests} == future
