"""I/O APIC: indirect registers, edge and level delivery, EOI, snapshots."""

import json

from tvmm.machine.clock import Clock
from tvmm.machine.devices.ioapic import IOAPIC_BASE, IoApic
from tvmm.machine.devices.lapic import REG_EOI, REG_SVR, LocalApic
from tvmm.machine.memory import PhysicalMemory

MASKED = 1 << 16
LEVEL = 1 << 15
REMOTE_IRR = 1 << 14


class Rig:
    def __init__(self):
        self.sent = []
        self.io = IoApic(lambda *msg: self.sent.append(msg), apic_id=1)

    def select(self, index):
        self.io.mmio_write(0x00, 4, index)

    def read(self, index):
        self.select(index)
        return self.io.mmio_read(0x10, 4)

    def write(self, index, value):
        self.select(index)
        self.io.mmio_write(0x10, 4, value)

    def program(self, pin, low, dest=0):
        self.write(0x11 + 2 * pin, dest << 24)
        self.write(0x10 + 2 * pin, low)


def test_register_select_and_window():
    rig = Rig()
    rig.select(0x13)
    assert rig.io.mmio_read(0x00, 4) == 0x13
    rig.write(0x13, 0xAB000000)                  # entry 1, high dword
    rig.write(0x12, 0x0001A9FF | (1 << 12) | REMOTE_IRR)   # read-only bits ignored
    assert rig.read(0x13) == 0xAB000000
    assert rig.read(0x12) == 0x0001A9FF
    assert rig.io.mmio_read(0x11, 1) == 0xA9     # byte 1 of the selected register
    assert rig.read(0x40) == 0                   # unimplemented index


def test_id_version_arbitration():
    rig = Rig()
    assert rig.read(0x00) == 1 << 24
    assert rig.read(0x01) == 0x00170011
    assert rig.read(0x02) == 0
    rig.write(0x00, 0xFFFFFFFF)
    assert rig.read(0x00) == 0x0F000000
    assert rig.read(0x02) == 0x0F000000          # loaded with the ID
    rig.write(0x01, 0)
    rig.write(0x02, 0)
    assert rig.read(0x01) == 0x00170011 and rig.read(0x02) == 0x0F000000


def test_reset_entries_masked():
    rig = Rig()
    for pin in range(24):
        assert rig.read(0x10 + 2 * pin) == MASKED
        assert rig.read(0x11 + 2 * pin) == 0


def test_edge_delivery_on_rising_edge():
    rig = Rig()
    rig.program(2, 0x0830, dest=0x05)            # vector 0x30, logical
    line = rig.io.irq_line(2)
    line.raise_()
    assert rig.sent == [(0x05, 1, 0x30, 0, False)]
    line.raise_()                                # no edge: nothing
    line.lower()
    assert len(rig.sent) == 1
    line.pulse()
    assert len(rig.sent) == 2
    assert rig.read(0x14) & REMOTE_IRR == 0      # edge entries never set remote IRR


def test_masked_edge_is_lost():
    rig = Rig()
    rig.program(4, MASKED | 0x34)
    rig.io.irq_line(4).pulse()
    rig.io.irq_line(4).raise_()
    rig.program(4, 0x34)                         # unmask while high: still no edge
    assert rig.sent == []
    rig.io.irq_line(4).lower()
    rig.io.irq_line(4).raise_()
    assert rig.sent == [(0, 0, 0x34, 0, False)]


def test_delivery_modes_passed_through():
    rig = Rig()
    rig.program(0, 0x700)                        # ExtINT
    rig.program(1, 0x400 | 0x02)                 # NMI
    rig.io.set_irq(0, True)
    rig.io.set_irq(1, True)
    assert rig.sent == [(0, 0, 0x00, 7, False), (0, 0, 0x02, 4, False)]


def test_level_remote_irr_and_redelivery_after_eoi():
    rig = Rig()
    rig.program(9, LEVEL | 0x49, dest=2)
    line = rig.io.irq_line(9)
    line.raise_()
    assert rig.sent == [(2, 0, 0x49, 0, True)]
    assert rig.read(0x10 + 18) & REMOTE_IRR
    line.lower()
    line.raise_()                                # remote IRR set: held
    assert len(rig.sent) == 1
    rig.io.eoi(0x48)                             # other vector: no effect
    assert rig.read(0x10 + 18) & REMOTE_IRR
    rig.io.eoi(0x49)                             # still asserted: delivered again
    assert len(rig.sent) == 2
    assert rig.read(0x10 + 18) & REMOTE_IRR
    line.lower()
    rig.io.eoi(0x49)                             # deasserted: remote IRR clears, quiet
    assert len(rig.sent) == 2
    assert not rig.read(0x10 + 18) & REMOTE_IRR


def test_level_masked_then_unmasked_while_asserted():
    rig = Rig()
    rig.program(11, LEVEL | MASKED | 0x4B)
    rig.io.irq_line(11).raise_()
    assert rig.sent == []
    rig.program(11, LEVEL | 0x4B)
    assert rig.sent == [(0, 0, 0x4B, 0, True)]


def test_switch_to_edge_clears_remote_irr():
    rig = Rig()
    rig.program(5, LEVEL | 0x45)
    rig.io.irq_line(5).raise_()
    assert rig.read(0x1A) & REMOTE_IRR
    rig.program(5, 0x45)
    assert not rig.read(0x1A) & REMOTE_IRR


def test_with_local_apic_end_to_end():
    clock = Clock()
    apic = LocalApic(clock)
    io = IoApic(lambda dest, dm, vec, mode, level: apic.accept(vec, level))
    apic.on_eoi = io.eoi
    apic.mmio_write(REG_SVR, 4, 0x1FF)
    mem = PhysicalMemory(1 << 20)
    io.attach(mem)
    mem.write(IOAPIC_BASE, 4, 0x10 + 2 * 10)
    mem.write(IOAPIC_BASE + 0x10, 4, LEVEL | 0x5A)
    io.irq_line(10).raise_()
    assert apic.acknowledge() == 0x5A
    assert not apic.has_interrupt()
    apic.mmio_write(REG_EOI, 4, 0)               # EOI broadcast: line still high
    assert apic.has_interrupt()
    assert apic.acknowledge() == 0x5A
    io.irq_line(10).lower()
    apic.mmio_write(REG_EOI, 4, 0)
    assert not apic.has_interrupt()
    mem.write(IOAPIC_BASE, 4, 0x10 + 2 * 10)
    assert mem.read(IOAPIC_BASE + 0x10, 4) & REMOTE_IRR == 0


def drive(rig, steps):
    seen = []
    for kind, *args in steps:
        if kind == "pin":
            rig.io.set_irq(*args)
        elif kind == "eoi":
            rig.io.eoi(*args)
        elif kind == "write":
            rig.write(*args)
        seen.append([rig.read(i) for i in range(0x10, 0x40)] + [len(rig.sent)])
    return seen


def test_snapshot_restore_equivalence():
    a = Rig()
    a.program(3, 0x33)
    a.program(9, LEVEL | 0x49)
    a.program(12, LEVEL | MASKED | 0x4C)
    a.io.set_irq(9, True)
    a.io.set_irq(12, True)
    a.io.set_irq(3, True)
    a.select(0x12)
    state = a.io.snapshot()
    json.dumps(state)

    b = Rig()
    b.io.restore(state)
    assert b.io.snapshot() == state
    assert b.io.mmio_read(0x00, 4) == 0x12
    a.sent.clear()
    steps = [("pin", 3, False), ("pin", 3, True), ("eoi", 0x49), ("pin", 9, False),
             ("eoi", 0x49), ("write", 0x10 + 24, LEVEL | 0x4C), ("pin", 9, True), ("eoi", 0x4C)]
    assert drive(a, steps) == drive(b, steps)
    assert a.sent == b.sent
    assert [m[2] for m in a.sent] == [0x33, 0x49, 0x4C, 0x49, 0x4C]
    assert a.io.snapshot() == b.io.snapshot()


def test_reset():
    rig = Rig()
    rig.program(1, 0x31)
    rig.select(5)
    rig.io.reset()
    assert rig.io.mmio_read(0, 4) == 0
    assert rig.read(0x12) == MASKED
