"""The 8259A pair: what a kernel's PIC driver observes through ports and INTA."""

import pytest

from tvmm.machine.bus import PortBus
from tvmm.machine.devices.pic import Pic
from tvmm.machine.irq import IrqLine

MASTER_BASE, SLAVE_BASE = 0x20, 0x28


class Rig:
    def __init__(self):
        self.intr_log = []
        self.intr = IrqLine("intr", sink=self.intr_log.append)
        self.pic = Pic(self.intr)
        self.bus = PortBus()
        self.pic.attach(self.bus)

    def out(self, port, value):
        self.bus.port_out(port, 1, value)

    def inb(self, port):
        return self.bus.port_in(port, 1)

    def init(self, icw1=0x11, icw4=0x01, master_base=MASTER_BASE, slave_base=SLAVE_BASE):
        """The Linux/BIOS sequence: ICW1, ICW2, ICW3, ICW4 to both chips."""
        self.out(0x20, icw1); self.out(0x21, master_base); self.out(0x21, 0x04); self.out(0x21, icw4)
        self.out(0xA0, icw1); self.out(0xA1, slave_base); self.out(0xA1, 0x02); self.out(0xA1, icw4)

    def irq(self, n):
        return self.pic.irq_line(n)

    def irr(self, base=0x20):
        self.out(base, 0x0A)
        return self.inb(base)

    def isr(self, base=0x20):
        self.out(base, 0x0B)
        return self.inb(base)

    def eoi(self, base=0x20):
        self.out(base, 0x20)

    @property
    def level(self):
        return self.intr.level


@pytest.fixture
def rig():
    r = Rig()
    r.init()
    return r


def test_uninitialized_pic_keeps_intr_low_and_gives_no_vector():
    r = Rig()
    r.irq(1).pulse()
    assert not r.level
    assert r.pic.acknowledge() is None
    r.init()                      # ICW1 resets the edge latch: the old pulse is gone
    assert not r.level
    r.irq(1).pulse()
    assert r.level and r.pic.acknowledge() == MASTER_BASE + 1


def test_initialization_sequence_sets_vector_bases_and_clears_imr():
    r = Rig()
    r.out(0x21, 0xFF)             # IMR before init
    r.init(master_base=0x68, slave_base=0x70)
    assert r.inb(0x21) == 0 and r.inb(0xA1) == 0
    r.irq(3).pulse()
    assert r.pic.acknowledge() == 0x6B
    r.irq(14).pulse()
    assert r.pic.acknowledge() is not None      # IR3 in service doesn't block IR2 (higher)
    assert r.isr(0xA0) == 1 << 6


def test_single_mode_without_icw3_and_icw4_optional():
    r = Rig()
    r.out(0x20, 0x13)             # ICW1: SNGL, IC4
    r.out(0x21, 0x40)             # ICW2
    r.out(0x21, 0x01)             # next byte is ICW4, not ICW3
    r.out(0x21, 0xF7)             # OCW1 now: only IR3 unmasked
    assert r.inb(0x21) == 0xF7
    r.irq(4).pulse()
    assert not r.level
    r.irq(3).pulse()
    assert r.pic.acknowledge() == 0x43


def test_masking_and_unmasking(rig):
    rig.out(0x21, 0xFF)
    rig.irq(1).pulse()
    assert not rig.level
    assert rig.irr() & 0x02                 # requested but masked
    assert rig.pic.pending() == []
    rig.out(0x21, 0xFD)                     # unmask IRQ1
    assert rig.level
    assert rig.pic.pending() == [1]
    assert rig.pic.acknowledge() == MASTER_BASE + 1
    assert not rig.level


def test_intr_line_follows_requests(rig):
    rig.intr_log.clear()
    rig.irq(4).pulse()
    assert rig.intr_log == [True]
    rig.pic.acknowledge()
    assert rig.intr_log == [True, False]


def test_priority_order_and_nesting(rig):
    for n in (4, 1, 3):
        rig.irq(n).pulse()
    assert rig.pic.acknowledge() == MASTER_BASE + 1
    assert not rig.level                    # 3 and 4 wait for IRQ1's EOI
    rig.irq(0).pulse()                      # higher priority nests
    assert rig.level
    assert rig.pic.acknowledge() == MASTER_BASE + 0
    assert rig.isr() == 0b11
    rig.eoi()                               # non-specific: clears IR0, the highest
    assert rig.isr() == 0b10 and not rig.level
    rig.eoi()
    assert rig.pic.acknowledge() == MASTER_BASE + 3
    rig.eoi()
    assert rig.pic.acknowledge() == MASTER_BASE + 4
    rig.eoi()
    assert rig.isr() == 0 and not rig.level


def test_specific_eoi(rig):
    rig.irq(1).pulse(); rig.pic.acknowledge()
    rig.irq(0).pulse(); rig.pic.acknowledge()
    rig.out(0x20, 0x60 | 1)                 # specific EOI for IR1
    assert rig.isr() == 0b01


def test_rotate_on_eoi_and_set_priority(rig):
    rig.irq(1).pulse()
    assert rig.pic.acknowledge() == MASTER_BASE + 1
    rig.out(0x20, 0xA0)                     # rotate on non-specific EOI: IR1 lowest
    rig.irq(1).pulse(); rig.irq(5).pulse()
    assert rig.pic.acknowledge() == MASTER_BASE + 5
    rig.out(0x20, 0xE0 | 5)                 # rotate on specific EOI: IR5 lowest
    assert rig.isr() == 0
    rig.irq(3).pulse()                      # order now 6 7 0 1 2 3 4 5: IR1 beats IR3
    assert rig.pic.acknowledge() == MASTER_BASE + 1
    rig.out(0x20, 0x60 | 1)
    rig.out(0x20, 0xC0 | 3)                 # set priority: IR3 lowest, IR4 highest
    rig.irq(7).pulse()
    assert rig.pic.acknowledge() == MASTER_BASE + 7
    rig.out(0x20, 0x60 | 7)
    assert rig.pic.acknowledge() == MASTER_BASE + 3


def test_cascade_irq10_through_slave(rig):
    rig.irq(10).pulse()
    assert rig.level
    assert rig.irr() == 1 << 2              # master sees the slave on IR2
    assert rig.irr(0xA0) == 1 << 2
    assert rig.pic.pending() == [10]
    assert rig.pic.acknowledge() == SLAVE_BASE + 2
    assert rig.isr() == 1 << 2              # master IR2 in service
    assert rig.isr(0xA0) == 1 << 2
    assert rig.irr() == 0 and rig.irr(0xA0) == 0
    rig.irq(9).pulse()                      # blocked at the master until its EOI
    assert not rig.level
    rig.eoi(0xA0)
    assert not rig.level                    # master IR2 still in service
    rig.eoi(0x20)
    assert rig.level
    assert rig.pic.acknowledge() == SLAVE_BASE + 1


def test_master_irq_beats_slave_by_priority(rig):
    rig.irq(12).pulse()
    rig.irq(1).pulse()
    rig.irq(5).pulse()
    assert rig.pic.acknowledge() == MASTER_BASE + 1
    rig.eoi()
    assert rig.pic.acknowledge() == SLAVE_BASE + 4   # IR2 outranks IR5
    rig.eoi(0xA0); rig.eoi()
    assert rig.pic.acknowledge() == MASTER_BASE + 5


def test_slave_masked_at_master_ir2(rig):
    rig.out(0x21, 1 << 2)
    rig.irq(11).pulse()
    assert not rig.level
    rig.out(0x21, 0)
    assert rig.pic.acknowledge() == SLAVE_BASE + 3


def test_special_fully_nested_mode_lets_slave_nest(rig):
    rig.init(icw4=0x11)                     # SFNM on the master (and slave: harmless)
    rig.irq(12).pulse()
    assert rig.pic.acknowledge() == SLAVE_BASE + 4
    rig.irq(9).pulse()                      # higher on the same slave
    assert rig.level
    assert rig.pic.acknowledge() == SLAVE_BASE + 1
    rig.irq(13).pulse()                     # lower on the slave: blocked by the slave's ISR
    assert not rig.level
    rig.irq(3).pulse()                      # lower on the master: blocked by IR2 in service
    assert not rig.level


def test_without_sfnm_slave_cannot_nest(rig):
    rig.irq(12).pulse()
    rig.pic.acknowledge()
    rig.irq(9).pulse()
    assert not rig.level


def test_spurious_irq7_when_level_request_vanishes(rig):
    rig.out(0x4D0, 1 << 5)                  # IRQ5 level triggered
    rig.irq(5).raise_()
    assert rig.level
    rig.irq(5).lower()                      # gone before INTA
    assert not rig.level
    assert rig.pic.acknowledge() == MASTER_BASE + 7
    assert rig.isr() == 0                   # a spurious IR7 is not put in service


def test_spurious_irq7_when_request_masked_before_inta(rig):
    rig.irq(6).pulse()
    rig.out(0x21, 1 << 6)
    assert rig.pic.acknowledge() == MASTER_BASE + 7
    assert rig.isr() == 0
    rig.out(0x21, 0)                        # the edge latch is still there
    assert rig.pic.acknowledge() == MASTER_BASE + 6


def test_spurious_irq15_from_slave(rig):
    rig.out(0x4D1, 1 << 2)                  # IRQ10 level triggered
    rig.irq(10).raise_()
    rig.irq(10).lower()
    assert rig.level                        # master's edge latch on IR2 holds
    assert rig.pic.acknowledge() == SLAVE_BASE + 7
    assert rig.isr(0xA0) == 0
    assert rig.isr() == 1 << 2              # the master did acknowledge IR2


def test_edge_triggered_latches_rising_edge_only(rig):
    rig.irq(3).raise_()
    assert rig.pic.acknowledge() == MASTER_BASE + 3
    rig.eoi()
    assert not rig.level                    # still high, but no new edge
    rig.irq(3).lower()
    assert not rig.level
    rig.irq(3).pulse()                      # a pulse is enough
    assert rig.level and rig.irr() == 1 << 3


def test_level_triggered_follows_the_line(rig):
    rig.out(0x4D0, 1 << 3)
    rig.irq(3).raise_()
    assert rig.pic.acknowledge() == MASTER_BASE + 3
    assert rig.irr() == 1 << 3              # IRR still follows the line
    rig.eoi()
    assert rig.level                        # line still high: requests again
    assert rig.pic.acknowledge() == MASTER_BASE + 3
    rig.irq(3).lower()
    assert rig.irr() == 0
    rig.eoi()
    assert not rig.level


def test_ltim_makes_all_inputs_level_triggered():
    r = Rig()
    r.init(icw1=0x19)
    r.irq(4).raise_()
    r.pic.acknowledge()
    r.eoi()
    assert r.level
    r.irq(4).lower()
    assert not r.level


def test_elcr_reserved_bits_and_readback(rig):
    rig.out(0x4D0, 0xFF)
    rig.out(0x4D1, 0xFF)
    assert rig.inb(0x4D0) == 0xF8           # IRQ 0, 1, 2 always edge
    assert rig.inb(0x4D1) == 0xDE           # IRQ 8, 13 always edge
    assert rig.bus.port_in(0x4D0, 2) == 0xDEF8


def test_switching_to_level_picks_up_a_high_line(rig):
    rig.irq(9).raise_()
    assert rig.pic.acknowledge() == SLAVE_BASE + 1
    rig.eoi(0xA0); rig.eoi()
    assert not rig.level
    rig.out(0x4D1, 1 << 1)                  # IRQ9 now level: the high line requests
    assert rig.level


def test_auto_eoi(rig):
    rig.init(icw4=0x03)
    rig.irq(1).pulse()
    assert rig.pic.acknowledge() == MASTER_BASE + 1
    assert rig.isr() == 0
    rig.irq(4).pulse()                      # nothing in service: lower priority goes at once
    assert rig.pic.acknowledge() == MASTER_BASE + 4
    rig.irq(11).pulse()
    assert rig.pic.acknowledge() == SLAVE_BASE + 3
    assert rig.isr() == 0 and rig.isr(0xA0) == 0


def test_auto_eoi_slave_second_request_is_not_lost(rig):
    rig.init(icw4=0x03)
    rig.irq(9).pulse(); rig.irq(10).pulse()
    assert rig.pic.acknowledge() == SLAVE_BASE + 1
    assert rig.level                        # slave INT stayed high: master re-latched IR2
    assert rig.pic.acknowledge() == SLAVE_BASE + 2
    assert not rig.level


def test_rotate_in_auto_eoi_mode(rig):
    rig.init(icw4=0x03)
    rig.out(0x20, 0x80)                     # set rotate in AEOI
    rig.irq(0).pulse()
    rig.pic.acknowledge()                   # IR0 now lowest
    rig.irq(0).pulse(); rig.irq(6).pulse()
    assert rig.pic.acknowledge() == MASTER_BASE + 6
    rig.out(0x20, 0x00)                     # clear rotate in AEOI


def test_irr_isr_readback_select_persists(rig):
    rig.irq(1).pulse(); rig.irq(4).pulse()
    rig.out(0x20, 0x0A)
    assert rig.inb(0x20) == 0b10010 and rig.inb(0x20) == 0b10010
    rig.pic.acknowledge()
    assert rig.inb(0x20) == 0b10000         # still IRR
    rig.out(0x20, 0x0B)
    assert rig.inb(0x20) == 0b00010
    rig.out(0x20, 0x08)                     # OCW3 without RR: selection unchanged
    assert rig.inb(0x20) == 0b00010
    assert rig.inb(0x21) == 0               # A0=1 reads the IMR


def test_poll_mode(rig):
    rig.irq(5).pulse()
    rig.out(0x20, 0x0C)
    assert rig.inb(0x20) == 0x85            # poll word acknowledges
    assert rig.isr() == 1 << 5
    rig.out(0x20, 0x0C)
    assert rig.inb(0x21) == 0x00            # nothing eligible; either port works
    assert rig.inb(0x21) == 0               # back to IMR


def test_special_mask_mode(rig):
    rig.irq(1).pulse()
    rig.pic.acknowledge()                   # IR1 in service
    rig.irq(4).pulse()
    assert not rig.level
    rig.out(0x21, 1 << 1)                   # mask own level ...
    rig.out(0x20, 0x68)                     # ... and enter special mask mode
    assert rig.level
    assert rig.pic.acknowledge() == MASTER_BASE + 4
    rig.out(0x20, 0x48)                     # leave SMM
    rig.out(0x20, 0x60 | 4)
    assert rig.isr() == 1 << 1


def test_special_mask_mode_skips_in_service_levels(rig):
    rig.out(0x4D0, 1 << 3)
    rig.irq(3).raise_()                     # level: IRR stays set while in service
    assert rig.pic.acknowledge() == MASTER_BASE + 3
    rig.out(0x20, 0x68)                     # SMM, IR3 left unmasked
    rig.irq(5).pulse()
    assert rig.pic.acknowledge() == MASTER_BASE + 5
    assert rig.isr() == 0b101000


def test_mcs80_mode_vector_byte():
    r = Rig()
    r.out(0x20, 0x16 | 0xE0)                # ICW1: SNGL, ADI=4, A7-A5 = 111, no ICW4
    r.out(0x21, 0x12)                       # ICW2: A15-A8
    r.irq(3).pulse()
    assert r.pic.acknowledge() == 0xE0 | 3 << 2


def test_irq2_is_not_an_input():
    with pytest.raises(ValueError):
        Pic().irq_line(2)
    with pytest.raises(ValueError):
        Pic().irq_line(16)


def test_word_access_splits_into_bytes(rig):
    rig.bus.port_out(0x20, 2, 0xFB0A)      # OCW3 read IRR at 0x20, IMR 0xFB at 0x21
    assert rig.inb(0x21) == 0xFB


def test_reset_returns_to_uninitialized(rig):
    rig.irq(1).pulse()
    assert rig.level
    rig.pic.reset()
    assert not rig.level and rig.pic.acknowledge() is None


def _drive(r, trace):
    """A fixed sequence of guest and device actions; records observations."""
    ops = [
        lambda: r.irq(10).pulse(), lambda: r.pic.acknowledge(), lambda: r.irq(5).raise_(),
        lambda: r.irq(1).pulse(), lambda: r.irr(), lambda: r.isr(0xA0),
        lambda: r.eoi(0xA0), lambda: r.eoi(), lambda: r.pic.acknowledge(),
        lambda: r.irq(5).lower(), lambda: r.irq(12).raise_(), lambda: r.pic.acknowledge(),
        lambda: r.eoi(), lambda: r.pic.acknowledge(), lambda: r.inb(0x21), lambda: r.isr(),
        lambda: r.eoi(0xA0), lambda: r.eoi(), lambda: r.pic.acknowledge(),
    ]
    for op in ops:
        trace.append((op(), r.level))


def test_snapshot_restore_equivalence():
    a = Rig()
    a.init()
    a.out(0x4D0, 1 << 5)
    a.irq(3).pulse(); a.pic.acknowledge()   # IR3 in service
    a.out(0x20, 0xC0 | 1)                   # rotation: IR2 highest
    a.irq(7).pulse(); a.irq(12).raise_()    # pending requests, a high line
    a.out(0x21, 1 << 7)
    a.out(0xA0, 0x0B)                       # slave reads ISR
    snap = a.pic.snapshot()

    b = Rig()
    b.pic.restore(snap)
    assert b.pic.snapshot() == snap
    assert b.level == a.level
    assert b.irq(12).level                  # input line levels restored
    ta, tb = [], []
    _drive(a, ta)
    _drive(b, tb)
    assert ta == tb
    assert a.pic.snapshot() == b.pic.snapshot()
    assert any(v is not None and v >= MASTER_BASE for v, _ in ta)
