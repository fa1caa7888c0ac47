"""Reverse execution on a guest that fills its RAM like a real kernel
(``bigmem``, 64 MiB poisoned at boot, then processes over a working set):
gdb's reverse-continue and reverse-stepi, and the UI's step back, across
many checkpoints and after the history has been thinned to its budget."""

from __future__ import annotations

from pathlib import Path

from elftools.elf.elffile import ELFFile

from tvmm.gdbstub.codec import Decoder, Packet, encode
from tvmm.gdbstub.session import Session
from tvmm.gdbstub.target import GuestTarget
from tvmm.guestspec import GuestSpec
from tvmm.monitor.record import mem_digest, regs_digest
from tvmm.monitor.timeline import Timeline
from tvmm.monitor.vmm import Monitor

BIGMEM = Path(__file__).resolve().parents[2] / "samples" / "build" / "bigmem.elf"
SPEC = dict(name="big", kernel=str(BIGMEM), mem=64 << 20)


def symbol(name: str) -> int:
    with open(BIGMEM, "rb") as f:
        return ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)[0]["st_value"]


def guest():
    spec = GuestSpec(**SPEC)
    monitor = Monitor(Monitor.host_size_for([spec]))
    return monitor, monitor.add_guest(spec)


def state_at(icount: int):
    """Registers, memory and console of a straight run at ``icount``."""
    _, g = guest()
    while g.icount < icount:
        g.run(icount - g.icount)
    return regs_digest(g), mem_digest(g), bytes(g.console)


def state(g):
    return regs_digest(g), mem_digest(g), bytes(g.console)


class Gdb:
    def __init__(self, budget: int):
        self.monitor, self.guest = guest()
        self.guest.pause("waiting for gdb")
        self.timeline = self.guest.timeline = Timeline(self.guest, every=100_000, budget=budget)
        self.session = Session(GuestTarget(self.guest, self.timeline))
        self.decoder = Decoder()

    def ask(self, payload):
        got = [e.payload for e in self.decoder.feed(self.session.receive(encode(payload)))
               if isinstance(e, Packet)]
        return got[0] if got else None

    def until_stop(self, limit=2000):
        for _ in range(limit):
            self.monitor.run(50_000)
            self.timeline.note()
            got = [e.payload for e in self.decoder.feed(self.session.poll()) if isinstance(e, Packet)]
            if got:
                return got[0]
        raise AssertionError("no stop")


def test_reverse_continue_and_stepi_across_a_thinned_history():
    g = Gdb(budget=6 << 20)
    rnd = symbol("round")
    assert g.ask(f"Z2,{rnd:x},4") == b"OK"
    hits = []
    for _ in range(6):
        g.ask("c")
        assert g.until_stop().startswith(b"T05")
        hits.append((g.guest.icount, g.guest.gmem.read(rnd, 4)))
    assert [v for _, v in hits] == [1, 2, 3, 4, 5, 6]
    tl = g.timeline
    assert tl.thinned > 0 and len(tl.cps) > 5 and tl.bytes <= 6 << 20
    # back through the rounds, each at its exact instruction count
    for icount, value in reversed(hits[:-1]):
        assert g.ask("bc") is None
        assert g.until_stop() == f"T05thread:01;watch:{rnd:x};".encode()
        assert (g.guest.icount, g.guest.gmem.read(rnd, 4)) == (icount, value)
    # and instruction by instruction, matching a straight run
    here = g.guest.icount
    for _ in range(3):
        assert g.ask("bs").startswith(b"T05")
    assert g.guest.icount == here - 3
    assert state(g.guest) == state_at(here - 3)


def test_ui_step_back_on_a_big_guest():
    from tvmm.ui.engine import Engine
    monitor, g = guest()
    monitor.history_budget = 1 << 20                    # small: thinned as it runs
    e = Engine(monitor)
    while g.icount < 25_000_000:
        e.step_once()
    assert g.timeline.thinned > 0
    e.pause(g.name)
    e.step_once()
    here = g.icount
    for _ in range(2):
        e.step_back(g.name)
        e.step_once()
    assert g.icount == here - 2
    assert state(g) == state_at(here - 2)
    assert e.views[g.name].icount == here - 2
