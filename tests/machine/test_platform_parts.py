"""The platform plumbing: port bus, MMIO map, virtual clock, interrupt lines."""

from __future__ import annotations

import pytest

from tvmm.machine.bus import PortBus
from tvmm.machine.clock import Clock
from tvmm.machine.irq import IrqLine
from tvmm.machine.memory import PhysicalMemory


class Recorder:
    def __init__(self):
        self.log = []

    def port_read(self, port, size):
        self.log.append(("r", port, size))
        return 0x1234

    def port_write(self, port, size, value):
        self.log.append(("w", port, size, value))

    def mmio_read(self, off, size):
        self.log.append(("mr", off, size))
        return 0xAB

    def mmio_write(self, off, size, value):
        self.log.append(("mw", off, size, value))


def test_port_bus_routes_half_open_ranges_and_refuses_overlaps():
    bus, dev = PortBus(), Recorder()
    bus.add(0x3F8, 0x400, dev, "com1")
    assert bus.port_in(0x3F8, 1) == 0x34           # truncated to the access size
    assert bus.port_in(0x400, 1) == 0xFF           # 0x400 is outside [0x3F8, 0x400)
    assert bus.port_in(0x1234, 4) == 0xFFFFFFFF    # nobody there: floating bus
    bus.port_out(0x3FF, 2, 0x1FFFF)
    assert dev.log[-1] == ("w", 0x3FF, 2, 0xFFFF)
    with pytest.raises(ValueError, match="overlap"):
        bus.add(0x3FF, 0x401, Recorder(), "other")
    bus.add(0x400, 0x401, Recorder(), "adjacent")   # touching is fine


def test_mmio_regions_shadow_ram_and_refuse_overlaps():
    mem, dev = PhysicalMemory(1 << 20), Recorder()
    mem.write(0xB8000, 2, 0x0741)
    mem.add_mmio(0xB8000, 0xC0000, dev, "cga")
    assert not mem.is_ram_page(0xB8)
    assert mem.read(0xB8004, 1) == 0xAB and dev.log[-1] == ("mr", 4, 1)
    mem.write(0xB8010, 2, 0x1F41)
    assert dev.log[-1] == ("mw", 0x10, 2, 0x1F41)
    assert mem.read(0x10_0000 + 8, 4) == 0xFFFFFFFF            # beyond RAM: open bus
    with pytest.raises(ValueError, match="overlap"):
        mem.add_mmio(0xBF000, 0xC1000, Recorder(), "x")


def test_memory_size_must_be_whole_pages():
    with pytest.raises(ValueError, match="multiple of 4 KiB"):
        PhysicalMemory(1000)


def test_clock_fires_in_deadline_then_schedule_order_and_never_goes_back():
    c = Clock(ips=1000)
    fired = []
    c.at(50, lambda now: fired.append(("b", now)), "b")
    # a periodic timer re-arming itself from its callback must not drift
    ticks = []

    def tick(now):
        ticks.append(now)
        if len(ticks) < 4:
            c.after(7, tick, "tick")
    c.at(3, tick, "tick")
    c.at(10, lambda now: fired.append(("a", now)), "a")
    t = c.at(50, lambda now: fired.append(("c", now)), "c")
    c.at(50, lambda now: fired.append(("d", now)), "d")
    t.cancel()
    assert c.next_deadline() == 3
    assert c.advance(49) == 1 + 4
    assert ticks == [3, 10, 17, 24]
    assert c.advance(60) == 2
    assert fired == [("a", 10), ("b", 50), ("d", 50)]       # each at its own deadline
    assert c.next_deadline() is None
    with pytest.raises(ValueError):
        c.advance(59)
    assert c.ns_to_insns(1_000_000_000) == 1000


def test_irq_line_notifies_on_level_changes_only():
    seen = []
    line = IrqLine("irq4", seen.append)
    line.raise_()
    line.raise_()
    line.lower()
    line.pulse()
    assert seen == [True, False, True, False]
