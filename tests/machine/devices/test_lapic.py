"""Local APIC: registers, priorities, EOI, timer, IPIs, ExtINT, snapshots."""

import pytest

from tvmm.machine.clock import Clock
from tvmm.machine.devices.lapic import (
    APIC_BASE, LocalApic, divisor_of,
    REG_ID, REG_VERSION, REG_TPR, REG_APR, REG_PPR, REG_EOI, REG_LDR, REG_DFR, REG_SVR,
    REG_ISR, REG_TMR, REG_IRR, REG_ESR, REG_ICR_LO, REG_ICR_HI, REG_LVT_TIMER,
    REG_LVT_THERMAL, REG_LVT_PERF, REG_LVT_LINT0, REG_LVT_LINT1, REG_LVT_ERROR,
    REG_TIMER_INIT, REG_TIMER_CURRENT, REG_TIMER_DIVIDE,
)
from tvmm.machine.memory import PhysicalMemory

MASKED = 1 << 16
PERIODIC = 1 << 17
# Divide configuration values (bits 0, 1, 3) and their divisors (SDM figure 10-10).
DIVIDES = {0x0: 2, 0x1: 4, 0x2: 8, 0x3: 16, 0x8: 32, 0x9: 64, 0xA: 128, 0xB: 1}


class Rig:
    """A LAPIC with recording callbacks and a fake 8259."""

    def __init__(self, clock=None, **kw):
        self.clock = clock or Clock()
        self.ipis, self.eois, self.intr_levels = [], [], []
        self.pic_pending, self.pic_vector = False, 0x20
        kw.setdefault("send_ipi", lambda *a: self.ipis.append(a))
        self.apic = LocalApic(self.clock, 3, on_eoi=self.eois.append,
                              extint_pending=lambda: self.pic_pending,
                              extint_ack=self._pic_ack, **kw)
        self.apic.intr.connect(self.intr_levels.append)

    def _pic_ack(self):
        self.pic_pending = False
        return self.pic_vector

    def w(self, reg, value):
        self.apic.mmio_write(reg, 4, value)

    def r(self, reg):
        return self.apic.mmio_read(reg, 4)

    def enable(self, spurious=0xFF):
        self.w(REG_SVR, 0x100 | spurious)

    def run_to(self, t):
        self.clock.advance(t)


def irr_bit(rig, vector):
    return rig.r(REG_IRR + 0x10 * (vector >> 5)) >> (vector & 31) & 1


def isr_bit(rig, vector):
    return rig.r(REG_ISR + 0x10 * (vector >> 5)) >> (vector & 31) & 1


# ------------------------------------------------------------------ registers

def test_reset_values_and_version():
    rig = Rig()
    assert rig.r(REG_ID) == 3 << 24
    assert rig.r(REG_VERSION) == 0x00050014
    assert rig.r(REG_DFR) == 0xFFFFFFFF
    assert rig.r(REG_SVR) == 0xFF
    for reg in (REG_LVT_TIMER, REG_LVT_THERMAL, REG_LVT_PERF, REG_LVT_LINT1, REG_LVT_ERROR):
        assert rig.r(reg) == MASKED
    assert rig.r(REG_LVT_LINT0) == 0x700        # virtual wire as left by firmware
    assert LocalApic(Clock(), virtual_wire=False).read_reg(REG_LVT_LINT0) == MASKED


def test_register_read_back_with_writable_bits():
    rig = Rig()
    rig.enable()
    cases = {
        REG_ID: (0xFFFFFFFF, 0xFF000000),
        REG_TPR: (0xFFFFFFFF, 0xFF),
        REG_LDR: (0xFFFFFFFF, 0xFF000000),
        REG_DFR: (0x0FFFFFFF, 0x0FFFFFFF),
        REG_SVR: (0xFFFFFFFF, 0x3FF),
        REG_ICR_HI: (0xFFFFFFFF, 0xFF000000),
        REG_LVT_TIMER: (0xFFFFFFFF, 0x000300FF),
        REG_LVT_THERMAL: (0xFFFFFFFF, 0x000107FF),
        REG_LVT_PERF: (0xFFFFFFFF, 0x000107FF),
        REG_LVT_LINT0: (0xFFFFFFFF, 0x0001A7FF),
        REG_LVT_LINT1: (0xFFFFFFFF, 0x0001A7FF),
        REG_LVT_ERROR: (0xFFFFFFFF, 0x000100FF),
        REG_TIMER_DIVIDE: (0xFFFFFFFF, 0xB),
    }
    for reg, (value, expect) in cases.items():
        rig.w(reg, value)
        assert rig.r(reg) == expect, hex(reg)
        assert rig.apic.read_reg(reg) == expect
    rig.w(REG_DFR, 0x12345678)
    assert rig.r(REG_DFR) == 0x1FFFFFFF
    rig.w(REG_VERSION, 0)                     # read-only
    assert rig.r(REG_VERSION) == 0x00050014


def test_static_registers_listed():
    apic = Rig().apic
    assert {REG_ID, REG_VERSION, REG_TPR, REG_LDR, REG_DFR, REG_SVR, REG_ICR_LO, REG_ICR_HI,
            REG_LVT_TIMER, REG_LVT_LINT0, REG_LVT_ERROR, REG_TIMER_INIT,
            REG_TIMER_DIVIDE} <= apic.static_registers
    assert not {REG_PPR, REG_APR, REG_IRR, REG_ISR, REG_ESR, REG_TIMER_CURRENT} & apic.static_registers


def test_narrow_reads_and_dropped_narrow_writes():
    rig = Rig()
    rig.w(REG_LVT_ERROR, 0)
    rig.enable()
    rig.w(REG_TPR, 0x5A)
    assert rig.apic.mmio_read(REG_VERSION + 2, 1) == 0x05
    assert rig.apic.mmio_read(REG_TPR + 4, 4) == 0
    rig.apic.mmio_write(REG_TPR, 1, 0x11)      # not a 32-bit store: dropped
    assert rig.r(REG_TPR) == 0x5A


def test_mmio_through_physical_memory():
    rig = Rig()
    mem = PhysicalMemory(1 << 20)
    rig.apic.attach(mem)
    mem.write(APIC_BASE + REG_TPR, 4, 0x40)
    assert mem.read(APIC_BASE + REG_TPR, 4) == 0x40
    assert mem.read(APIC_BASE + REG_VERSION, 4) == 0x00050014


# ----------------------------------------------------------------- priorities

def test_disabled_apic_holds_interrupts():
    rig = Rig()
    rig.apic.accept(0x40)
    assert irr_bit(rig, 0x40)
    assert not rig.apic.has_interrupt()
    rig.enable()
    assert rig.apic.has_interrupt() and rig.intr_levels[-1] is True


def test_tpr_masks_by_priority_class():
    rig = Rig()
    rig.enable()
    rig.w(REG_TPR, 0x50)
    rig.apic.accept(0x55)                       # same class as TPR: blocked
    assert not rig.apic.has_interrupt()
    assert rig.r(REG_PPR) == 0x50
    rig.w(REG_TPR, 0x4F)                         # class 4 < 5: deliverable
    assert rig.apic.has_interrupt()
    assert rig.intr_levels == [True]
    rig.w(REG_TPR, 0x50)
    assert rig.intr_levels == [True, False]
    rig.apic.accept(0x61)
    assert rig.apic.acknowledge() == 0x61


def test_acknowledge_moves_irr_to_isr_and_eoi_clears():
    rig = Rig()
    rig.enable()
    rig.apic.accept(0x31)
    assert rig.apic.acknowledge() == 0x31
    assert not irr_bit(rig, 0x31) and isr_bit(rig, 0x31)
    assert rig.r(REG_PPR) == 0x30
    assert not rig.apic.has_interrupt() and rig.intr_levels == [True, False]
    rig.w(REG_EOI, 0)
    assert not isr_bit(rig, 0x31)
    assert rig.r(REG_PPR) == 0
    assert rig.eois == []                        # edge: no EOI broadcast


def test_nested_priorities():
    rig = Rig()
    rig.enable()
    rig.apic.accept(0x41)
    assert rig.apic.acknowledge() == 0x41
    rig.apic.accept(0x45)                        # same class: waits
    assert not rig.apic.has_interrupt()
    rig.apic.accept(0x80)                        # higher class: preempts
    assert rig.apic.has_interrupt()
    assert rig.apic.acknowledge() == 0x80
    assert rig.r(REG_PPR) == 0x80
    rig.w(REG_EOI, 0)                            # retires 0x80 (highest ISR)
    assert isr_bit(rig, 0x41) and not isr_bit(rig, 0x80)
    assert not rig.apic.has_interrupt()
    rig.w(REG_EOI, 0)                            # retires 0x41
    assert rig.apic.acknowledge() == 0x45


def test_apr():
    rig = Rig()
    rig.enable()
    rig.w(REG_TPR, 0x35)
    assert rig.r(REG_APR) == 0x35
    rig.apic.accept(0x70)
    assert rig.r(REG_APR) == 0x70


def test_spurious_vector_when_nothing_pending():
    rig = Rig()
    rig.enable(spurious=0xEF)
    assert rig.apic.acknowledge() == 0xEF
    assert rig.apic.isr == 0
    rig.w(REG_TPR, 0xF0)
    rig.apic.accept(0x90)                        # masked by TPR at INTA time
    assert rig.apic.acknowledge() == 0xEF
    assert irr_bit(rig, 0x90)


def test_level_triggered_eoi_calls_on_eoi():
    rig = Rig()
    rig.enable()
    rig.apic.accept(0x61, level_triggered=True)
    assert rig.r(REG_TMR + 0x30) >> 1 & 1
    assert rig.apic.acknowledge() == 0x61
    rig.w(REG_EOI, 0)
    assert rig.eois == [0x61]
    rig.apic.accept(0x61)                         # edge this time: TMR cleared
    assert not rig.r(REG_TMR + 0x30) >> 1 & 1


def test_illegal_vector_and_esr_write_then_read():
    rig = Rig()
    rig.enable()
    rig.w(REG_LVT_ERROR, 0xFE)
    rig.apic.accept(0x05)
    assert rig.apic.irr == 1 << 0xFE             # error interrupt raised, vector 5 dropped
    assert rig.r(REG_ESR) == 0                   # not yet latched
    rig.w(REG_ESR, 0)
    assert rig.r(REG_ESR) == 0x40                # receive illegal vector
    rig.w(REG_ICR_LO, 0x0000000F)                # fixed IPI with vector 15
    rig.apic.mmio_read(0x40, 4)                  # reserved register
    assert rig.ipis == []
    assert rig.r(REG_ESR) == 0x40                # still the latched value
    rig.w(REG_ESR, 0)
    assert rig.r(REG_ESR) == 0x20 | 0x80
    rig.w(REG_ESR, 0)
    assert rig.r(REG_ESR) == 0


# ----------------------------------------------------------------------- IPIs

def test_icr_sends_decoded_ipi_and_delivery_status_idle():
    rig = Rig()
    rig.enable()
    rig.w(REG_ICR_HI, 0x02000000)
    rig.w(REG_ICR_LO, 0x000C4500)                # INIT, assert, all excluding self
    rig.w(REG_ICR_LO, 0x00004699)                # STARTUP vector 0x99, physical dest 2
    rig.w(REG_ICR_LO, 0x00000C42)                # NMI (mode 4), logical, vector 0x42
    rig.w(REG_ICR_LO, 0x00080123)                # lowest priority, all including self
    assert rig.ipis == [
        (2, 5, 0x00, 3, True, 0),
        (2, 6, 0x99, 0, True, 0),
        (2, 4, 0x42, 0, False, 1),
        (2, 1, 0x23, 2, False, 0),
    ]
    assert rig.r(REG_ICR_LO) & (1 << 12) == 0
    assert rig.r(REG_ICR_LO) == 0x00080123
    assert rig.r(REG_ICR_HI) == 0x02000000


def test_init_deassert_is_not_sent():
    rig = Rig()
    rig.w(REG_ICR_LO, 0x000C8500)                # INIT level de-assert
    assert rig.ipis == []


def test_self_ipi_delivered_locally():
    rig = Rig()
    rig.enable()
    rig.w(REG_ICR_LO, 0x00040055)                # fixed, self shorthand
    assert rig.ipis == []
    assert irr_bit(rig, 0x55)
    assert rig.apic.acknowledge() == 0x55


# ---------------------------------------------------------------------- timer

def start_timer(rig, count, divide, lvt):
    rig.enable()
    rig.w(REG_TIMER_DIVIDE, divide)
    rig.w(REG_LVT_TIMER, lvt)
    rig.w(REG_TIMER_INIT, count)


def expected_deadline(start, n, divisor, ips, hz):
    return start + -(-n * divisor * ips // hz)


@pytest.mark.parametrize("divide", sorted(DIVIDES))
def test_one_shot_fires_at_exact_instruction(divide):
    # 30 MHz bus and 100 M instructions/s: ticks do not fall on instructions.
    rig = Rig(Clock(ips=100_000_000), timer_hz=30_000_000)
    assert divisor_of(divide) == DIVIDES[divide]
    rig.clock.advance(1000)
    start_timer(rig, 7, divide, 0x40)
    deadline = expected_deadline(1000, 7, DIVIDES[divide], 100_000_000, 30_000_000)
    assert rig.clock.next_deadline() == deadline
    rig.run_to(deadline - 1)
    assert not irr_bit(rig, 0x40)
    assert rig.r(REG_TIMER_CURRENT) == 1
    rig.run_to(deadline)
    assert irr_bit(rig, 0x40)
    assert rig.r(REG_TIMER_CURRENT) == 0
    assert rig.clock.next_deadline() is None      # one-shot: no re-arm


@pytest.mark.parametrize("divide", sorted(DIVIDES))
def test_periodic_fires_at_exact_instructions(divide):
    ips, hz = 100_000_000, 30_000_000
    rig = Rig(Clock(ips=ips), timer_hz=hz)
    start_timer(rig, 5, divide, PERIODIC | 0x50)
    fires = []
    for k in range(1, 6):
        deadline = expected_deadline(0, 5 * k, DIVIDES[divide], ips, hz)
        rig.run_to(deadline - 1)
        assert not irr_bit(rig, 0x50), k
        rig.run_to(deadline)
        assert irr_bit(rig, 0x50), k
        assert rig.apic.acknowledge() == 0x50
        rig.w(REG_EOI, 0)
        fires.append(deadline)
    assert fires == [expected_deadline(0, 5 * k, DIVIDES[divide], ips, hz) for k in range(1, 6)]


def test_default_bus_clock_is_one_tick_per_instruction():
    rig = Rig()
    start_timer(rig, 100, 0xB, 0x40)
    assert rig.clock.next_deadline() == 100
    rig = Rig()
    start_timer(rig, 100, 0x3, 0x40)              # divide by 16
    assert rig.clock.next_deadline() == 1600


def test_current_count_decreases_with_virtual_time():
    rig = Rig()
    start_timer(rig, 1000, 0x0, MASKED | PERIODIC)   # divide by 2, masked
    assert rig.r(REG_TIMER_CURRENT) == 1000
    rig.run_to(1)
    assert rig.r(REG_TIMER_CURRENT) == 1000
    rig.run_to(2)
    assert rig.r(REG_TIMER_CURRENT) == 999
    rig.run_to(501)
    assert rig.r(REG_TIMER_CURRENT) == 750
    rig.run_to(1999)
    assert rig.r(REG_TIMER_CURRENT) == 1
    rig.run_to(2000)                                 # reloaded
    assert rig.r(REG_TIMER_CURRENT) == 1000
    rig.run_to(2002)
    assert rig.r(REG_TIMER_CURRENT) == 999
    assert rig.r(REG_TIMER_INIT) == 1000


def test_masked_timer_does_not_interrupt():
    rig = Rig()
    start_timer(rig, 10, 0xB, MASKED | 0x40)
    assert rig.clock.next_deadline() is None
    rig.run_to(50)
    assert not irr_bit(rig, 0x40) and not rig.intr_levels
    assert rig.r(REG_TIMER_CURRENT) == 0
    # A periodic timer unmasked mid-count fires at its next period boundary.
    rig = Rig()
    start_timer(rig, 10, 0xB, MASKED | PERIODIC | 0x40)
    rig.run_to(25)
    rig.w(REG_LVT_TIMER, PERIODIC | 0x40)
    assert rig.clock.next_deadline() == 30
    rig.run_to(30)
    assert irr_bit(rig, 0x40)


def test_timer_stops_on_zero_and_software_disable():
    rig = Rig()
    start_timer(rig, 10, 0xB, PERIODIC | 0x40)
    rig.w(REG_TIMER_INIT, 0)
    assert rig.clock.next_deadline() is None and rig.r(REG_TIMER_CURRENT) == 0
    rig.w(REG_TIMER_INIT, 10)
    rig.w(REG_SVR, 0xFF)                             # software disable masks every LVT
    assert rig.r(REG_LVT_TIMER) & MASKED
    assert rig.clock.next_deadline() is None
    rig.w(REG_LVT_TIMER, PERIODIC | 0x40)            # cannot unmask while disabled
    assert rig.r(REG_LVT_TIMER) & MASKED


def test_divide_change_restarts_from_current_count():
    rig = Rig()
    start_timer(rig, 100, 0xB, 0x40)                 # divide by 1
    rig.run_to(40)
    rig.w(REG_TIMER_DIVIDE, 0x0)                     # divide by 2: 60 left
    assert rig.r(REG_TIMER_CURRENT) == 60
    assert rig.clock.next_deadline() == 40 + 120


# ---------------------------------------------------------------------- ExtINT

def test_lint0_extint_passthrough_with_apic_disabled():
    rig = Rig()
    assert rig.apic.extint_passthrough
    assert not rig.apic.has_interrupt()
    rig.pic_pending = True
    rig.apic.extint_changed(True)
    assert rig.apic.has_interrupt() and rig.intr_levels == [True]
    assert rig.apic.acknowledge() == 0x20
    assert rig.intr_levels == [True, False]
    assert rig.apic.isr == 0                         # ExtINT bypasses the ISR


def test_extint_ignores_tpr_and_yields_to_apic_interrupts():
    rig = Rig()
    rig.enable()
    rig.w(REG_LVT_LINT0, 0x700)
    assert not rig.apic.extint_passthrough           # enabled APIC adds its own
    rig.w(REG_TPR, 0xFF)
    rig.pic_pending = True
    assert rig.apic.has_interrupt()
    rig.w(REG_TPR, 0)
    rig.apic.accept(0x90)
    assert rig.apic.acknowledge() == 0x90
    assert rig.apic.acknowledge() == 0x20


def test_masked_lint0_blocks_8259():
    rig = Rig()
    rig.enable()
    rig.w(REG_LVT_LINT0, MASKED | 0x700)
    rig.pic_pending = True
    assert not rig.apic.has_interrupt() and not rig.apic.extint_passthrough
    rig.w(REG_SVR, 0xFF)                              # disabling keeps it masked
    assert not rig.apic.has_interrupt()
    rig = Rig(virtual_wire=False)
    rig.pic_pending = True
    assert not rig.apic.has_interrupt() and not rig.apic.extint_passthrough


# ------------------------------------------------------------------ snapshots

def drive(rig, steps):
    """Apply the same accesses and time steps; return what a guest observes."""
    seen = []
    for t, action in steps:
        rig.run_to(t)
        if action == "ack":
            seen.append(("ack", rig.apic.acknowledge()))
        elif action == "eoi":
            rig.w(REG_EOI, 0)
        elif isinstance(action, tuple):
            rig.w(*action)
        seen.append((t, rig.r(REG_TIMER_CURRENT), rig.apic.irr, rig.apic.isr, rig.r(REG_PPR),
                     rig.apic.has_interrupt(), rig.apic.intr.level, rig.clock.pending()))
    return seen


def test_snapshot_restore_equivalence_with_pending_timer():
    ips, hz = 100_000_000, 30_000_000
    a = Rig(Clock(ips=ips), timer_hz=hz)
    a.enable()
    a.w(REG_TPR, 0x20)
    a.w(REG_LVT_ERROR, 0xFE)
    a.w(REG_TIMER_DIVIDE, 0x1)
    a.w(REG_LVT_TIMER, PERIODIC | 0x40)
    a.w(REG_TIMER_INIT, 33)
    a.apic.accept(0x61, level_triggered=True)
    assert a.apic.acknowledge() == 0x61
    a.apic.accept(0x35)
    a.run_to(300)
    a.apic.accept(0x05)                              # logs an error
    state = a.apic.snapshot()

    b = Rig(Clock(ips=ips), timer_hz=hz)
    b.clock.advance(300)
    b.apic.restore(state)
    assert b.apic.snapshot() == state
    assert b.clock.pending() == a.clock.pending()

    steps = [(350, None), (440, "ack"), (441, "eoi"), (500, "eoi"), (700, "ack"),
             (701, (REG_TIMER_DIVIDE, 0xB)), (750, (REG_ESR, 0)), (900, "ack"),
             (1200, (REG_LVT_TIMER, 0x40)), (1300, (REG_TIMER_INIT, 77)), (1500, None)]
    assert drive(a, steps) == drive(b, steps)
    assert a.eois == b.eois == [0x61]
    assert a.r(REG_ESR) == b.r(REG_ESR) == 0x40
    assert a.apic.snapshot() == b.apic.snapshot()


def test_snapshot_is_plain_data():
    import json
    rig = Rig()
    start_timer(rig, 10, 0xB, 0x40)
    json.dumps(rig.apic.snapshot())


def test_reset_cancels_timer():
    rig = Rig()
    start_timer(rig, 10, 0xB, 0x40)
    rig.apic.reset()
    assert rig.clock.next_deadline() is None
    assert rig.r(REG_SVR) == 0xFF
