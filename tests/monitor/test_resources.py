"""Allocating resources: memory in frames no other guest can reach, CPU time
in fair instruction slices, and failures that stay inside one guest."""

from __future__ import annotations

import pytest

from tvmm.guestspec import GuestSpec
from tvmm.monitor.aperture import SLOTS
from tvmm.monitor.hostmem import APERTURE_BASE, OutOfMemory
from tvmm.monitor.vmm import Monitor

from .kit import Layout, X, boot

HELLO = "samples/build/hello.elf"


def test_guest_frames_are_disjoint_and_the_shadow_only_names_owned_frames(tmp_path):
    # guest a maps every guest-physical page from 0 to 4 MiB past its RAM and reads them all
    monitor = Monitor(64 << 20)
    code = (X.mov_ebx(0x40000000) + b"\xb9" + (0x1C00).to_bytes(4, "little")      # mov ecx, pages
            + b"\x8b\x03" + b"\x81\xc3\x00\x10\x00\x00" + b"\xe2\xf6")            # mov eax,[ebx]; add ebx,4096; loop
    _, a = boot(tmp_path, code + X.HLT, name="a", mem=24 << 20, monitor=monitor)
    _, b = boot(tmp_path, X.JMP_SELF, name="b", mem=8 << 20, monitor=monitor)
    assert not set(a.frames) & set(b.frames)
    b.gmem.fill(0, 8 << 20, 0x5B)                             # b's secret everywhere in its memory
    lay = Layout(a)
    lay.flat_gdt_idt()
    lay.identity(0, 0x200000)
    for i in range(0x1C00):                                   # gpa 0 .. 28 MiB, RAM is 24 MiB
        lay.map(0x40000000 + i * 4096, i * 4096, 0x3)
    lay.paging_on()
    monitor.run(400_000)
    assert a.state == "halted", a.reason
    owned = set(a.gmem.owned_host_frames())
    aperture = range(APERTURE_BASE >> 12, (APERTURE_BASE >> 12) + SLOTS)
    entries = list(a.shadow.entries())
    assert len(entries) > 0x1000
    for gva, entry in entries:
        hpfn = entry >> 12
        assert hpfn in owned or hpfn in aperture, (hex(gva), hex(entry))
    # beyond its RAM the guest reads open bus, never b's data
    assert a.gmem.read(26 << 20, 4) == 0xFFFFFFFF
    assert all(b.gmem.read(off, 1) == 0x5B for off in range(0, 8 << 20, 1 << 20))


def test_not_enough_host_memory_is_a_clear_error():
    monitor = Monitor(16 << 20)
    with pytest.raises(OutOfMemory, match="guest big: needs 32 MiB"):
        monitor.add_guest(GuestSpec(name="big", kernel=HELLO, mem=32 << 20))
    assert monitor.frames.free_frames == monitor.frames.total - monitor.pool.used


def test_round_robin_gives_equal_virtual_time(tmp_path):
    monitor = Monitor(64 << 20, slice_insns=10_000)
    _, a = boot(tmp_path, X.JMP_SELF, name="a", monitor=monitor)
    _, b = boot(tmp_path, b"\x40" * 50 + b"\xeb\xcc", name="b", monitor=monitor)  # inc eax x50; jmp back
    result = monitor.run(1_000_000)
    assert a.icount == b.icount == 1_000_000
    assert result.ran == {"a": 1_000_000, "b": 1_000_000}


def test_a_guest_running_alone_gets_its_budget_in_one_call_and_siblings_share_in_slices(tmp_path):
    monitor = Monitor(64 << 20, slice_insns=10_000)
    _, a = boot(tmp_path, X.JMP_SELF, name="a", monitor=monitor)
    _, b = boot(tmp_path, b"\x40" * 50 + b"\xeb\xcc", name="b", monitor=monitor)
    calls = []
    for g in (a, b):
        def run(n, g=g, inner=g.run):
            calls.append((g.name, n))
            return inner(n)
        g.run = run
    monitor.run(100_000)
    assert max(n for _, n in calls) == 10_000 and len(calls) == 20
    a.pause()
    calls.clear()
    monitor.run(100_000)
    assert calls == [("b", 100_000)]            # nobody to be fair to: no slicing
    assert (a.icount, b.icount) == (100_000, 200_000)


def test_a_paused_guest_does_not_advance_while_its_sibling_runs(tmp_path):
    monitor = Monitor(64 << 20)
    _, a = boot(tmp_path, X.JMP_SELF, name="a", monitor=monitor)
    _, b = boot(tmp_path, X.JMP_SELF, name="b", monitor=monitor)
    a.pause()
    monitor.run(200_000)
    assert (a.icount, b.icount) == (0, 200_000)
    a.resume()
    monitor.run(100_000)
    assert (a.icount, b.icount) == (100_000, 300_000)


def _alone(tmp_path):
    monitor = Monitor(64 << 20)
    g = monitor.add_guest(GuestSpec(name="hello", kernel=HELLO, mem=16 << 20))
    monitor.run(400_000)
    return bytes(g.console), g.icount


@pytest.mark.parametrize("crash", ["triple-fault", "garbage", "internal-error"])
def test_a_crashing_guest_harms_nobody(tmp_path, crash):
    expected = _alone(tmp_path)
    monitor = Monitor(64 << 20)
    if crash == "triple-fault":        # no IDT at all: the first fault becomes a triple fault
        code = b"\x0f\x0b"             # ud2
    elif crash == "garbage":           # a wild jump (EAX holds the Multiboot magic) into unbacked memory
        code = b"\xff\xe0"
    else:
        code = X.mov_edx(0x3F8) + X.OUT_DX_AL + X.HLT
    _, bad = boot(tmp_path, code, name="bad", monitor=monitor)
    if crash == "internal-error":      # a bug in tvmm's device model, inside this guest only
        def broken(*a, **k):
            raise RuntimeError("device model bug")
        bad.pc.com1.port_write = broken
    good = monitor.add_guest(GuestSpec(name="hello", kernel=HELLO, mem=16 << 20))
    monitor.run(400_000)
    assert bad.state == "crashed"
    assert {"triple-fault": "triple fault", "garbage": "", "internal-error": "internal error"}[crash] in bad.reason
    assert (bytes(good.console), good.icount) == expected
    assert good.state == "halted"
    bad.reset()                        # and it can be booted again
    assert bad.state == "running" and bad.icount == 0


def test_reset_returns_frames_zeroed(tmp_path):
    monitor = Monitor(64 << 20)
    _, g = boot(tmp_path, X.mov_eax(0x99) + X.store_abs(0x300000) + X.HLT, monitor=monitor)
    monitor.run(10_000)
    assert g.gmem.read(0x300000, 4) == 0x99
    g.reset()
    assert g.gmem.read(0x300000, 4) == 0 and g.state == "running"


def test_a_guest_on_fragmented_host_memory_runs_normally(tmp_path):
    # guests come and go: a new guest's machine map is made of scattered frames
    monitor = Monitor(64 << 20)
    a = monitor.add_guest(GuestSpec(name="a", kernel=HELLO, mem=8 << 20))
    b = monitor.add_guest(GuestSpec(name="b", kernel=HELLO, mem=8 << 20))
    monitor.remove_guest(a)
    c = monitor.add_guest(GuestSpec(name="c", kernel=HELLO, mem=24 << 20))
    runs = sum(1 for x, y in zip(c.frames, c.frames[1:]) if y != x + 1)
    assert runs >= 1                                        # not one contiguous block
    assert not set(c.frames) & set(b.frames)
    monitor.run(400_000)
    assert c.state == "halted" and b"memory: 24 MiB" in c.console and b"bye" in c.console
