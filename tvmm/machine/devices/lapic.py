"""The local APIC (xAPIC): one processor's interrupt controller and timer.

Modelled after Intel SDM vol. 3, chapter 10 ("Advanced Programmable
Interrupt Controller"), xAPIC mode, memory-mapped at 0xFEE00000 (4 KiB).

Registers (SDM table 10-1), 32 bits each on 16-byte boundaries:

====== ====================== ================================================
offset register               behaviour here
====== ====================== ================================================
0x020  ID                     bits 31:24 read/write (SDM 10.4.6)
0x030  version                0x00050014: integrated APIC version 0x14, max LVT
                              entry 5 (six LVTs: timer, thermal, performance,
                              LINT0, LINT1, error), no EOI-broadcast suppression
0x080  TPR                    bits 7:0
0x090  APR                    computed (SDM 10.6.2.4 / figure 10-15 rules)
0x0A0  PPR                    computed: TPR if TPR[7:4] >= ISRV[7:4], else ISRV & 0xF0
0x0B0  EOI                    write: retire the highest ISR bit (SDM 10.8.5)
0x0D0  LDR                    bits 31:24
0x0E0  DFR                    bits 31:28 (bits 27:0 read as ones)
0x0F0  SVR                    bits 7:0 spurious vector (all 8 writable, as on
                              Pentium 4 and later), bit 8 software enable,
                              bit 9 focus checking (stored, no effect)
0x100+ ISR, TMR (0x180+), IRR (0x200+): eight read-only 32-bit words each
0x280  ESR                    write-then-read: a write latches the errors seen
                              since the previous write and clears the log
0x300  ICR low                a write sends the IPI; delivery status reads 0
0x310  ICR high               bits 31:24 destination
0x320  LVT timer              vector, mask, mode bit 17 (one-shot/periodic;
                              TSC-deadline mode is not offered: bit 18 reserved)
0x330  LVT thermal            stored only (no thermal sensor)
0x340  LVT performance        stored only (no performance counters)
0x350  LVT LINT0              ExtINT mode models the 8259 virtual wire
0x360  LVT LINT1              an edge on the pin (``lint1()``, the chipset's NMI
                              line on a PC) is delivered as the entry says:
                              NMI (to ``nmi``) or fixed; masked: dropped
0x370  LVT error              vector raised when an error is logged in the ESR
0x380  timer initial count    a write (re)starts the timer; 0 stops it
0x390  timer current count    computed from virtual time
0x3E0  timer divide config    bits 0, 1, 3: divide by 1, 2, 4, ... 128
====== ====================== ================================================

Any other offset is reserved: reads return 0, writes are dropped, and both
log "illegal register address" (ESR bit 7).  Registers should be accessed as
aligned 32-bit words (SDM 10.4.1); reads of any width return the addressed
bytes of the 16-byte slot (bytes 4-15 read 0), writes that are not aligned
32-bit stores to a register's offset are dropped (the SDM calls them model
specific).

Invariants:

- IRR, ISR and TMR are 256-bit integers (bit n = vector n).  Vectors 0-15 are
  illegal: accepting or sending one logs ESR "receive/send illegal vector"
  and leaves the IRR alone.
- ``has_interrupt()`` is True when the APIC is software-enabled and the
  highest IRR vector's priority class (vector[7:4]) exceeds PPR[7:4], or when
  LINT0 is an unmasked ExtINT entry and ``extint_pending()`` is true.  The
  output line ``intr`` always equals ``has_interrupt()`` after every state
  change this device sees; a change of the 8259's INTR must be reported with
  ``extint_changed()``.
- ``acknowledge()`` (the INTA cycle) prefers the APIC's own interrupt (moves
  it IRR -> ISR), then the 8259's via ``extint_ack()``, and returns the
  spurious vector (SVR[7:0], not put in the ISR) when neither is pending
  (SDM 10.9).  This is the order QEMU uses.
- EOI clears the highest ISR bit; if that vector's TMR bit was set (it was
  accepted level-triggered) ``on_eoi(vector)`` is called so the I/O APIC can
  clear its remote IRR (the EOI broadcast of SDM 10.8.5).
- Software disable (SVR bit 8 clear, SDM 10.4.7.2): IRR and ISR are kept,
  fixed interrupts are not offered to the CPU, a guest write that clears
  bit 8 sets every LVT mask bit, and LVT writes cannot clear a mask bit while
  disabled.  Interrupts may still be accepted into the IRR and IPIs may
  still be sent.

Timer (SDM 10.5.4).  The counter runs at ``timer_hz / divide`` decrements per
virtual second (``timer_hz`` is the bus clock, 100 MHz by default) and
virtual time advances ``clock.ips`` instructions per second, so after ``e``
instructions the counter has decremented ``floor(e * timer_hz / (ips *
divide))`` times: with the defaults one bus tick is one instruction.  An
expiry at decrement ``T`` fires at the first instruction count where that
many decrements have happened, i.e. ``start + ceil(T * divide * ips /
timer_hz)``; periodic expiries are computed from the same start, so they do
not drift.  The timer is scheduled on the clock only while its LVT entry is
unmasked (expiries that happen while masked are lost, as on hardware); the
count runs regardless.  Changing the divide configuration or the timer mode
while counting restarts counting from the current count (the partial count
interval is discarded).

LINT0 and the 8259.  At reset the SDM masks every LVT; a PC BIOS then
programs the BSP's LINT0 as ExtINT (virtual wire mode, MP spec 3.6.2.2), and
QEMU's reset state does the same.  With ``virtual_wire=True`` (the default)
reset leaves LVT LINT0 = 0x700 (ExtINT, unmasked) with the APIC
software-disabled, the state the firmware hands over, so an OS that never
touches the APIC still receives 8259 interrupts through ``acknowledge()``.
``extint_passthrough`` is True whenever LINT0 passes ExtINT and the APIC is
software-disabled: the APIC then adds nothing of its own, so a platform may
connect the 8259 straight to the CPU.

Not modelled: the APIC base MSR (relocation, global disable; the APIC is
fixed at 0xFEE00000), x2APIC, the thermal sensor and performance counters,
LINT0 as a fixed or NMI input (only ExtINT is used), LVT remote IRR and
delivery-status bits (interrupts are delivered instantly, so they read 0),
TSC-deadline timer mode, SMI, the arbitration priority's use in lowest
priority arbitration (the platform routes IPIs), and the incoming side of
NMI/INIT/STARTUP messages (the platform hands them to the CPU).
"""

from __future__ import annotations

from typing import Callable

from ..clock import Clock, Timer
from ..irq import IrqLine

APIC_BASE = 0xFEE00000
APIC_SIZE = 0x1000
DEFAULT_TIMER_HZ = 100_000_000          # 100 MHz bus clock

APIC_VERSION = 0x14
MAX_LVT_ENTRY = 5
VERSION_VALUE = (MAX_LVT_ENTRY << 16) | APIC_VERSION

# Register offsets.
REG_ID, REG_VERSION, REG_TPR, REG_APR, REG_PPR, REG_EOI = 0x20, 0x30, 0x80, 0x90, 0xA0, 0xB0
REG_LDR, REG_DFR, REG_SVR = 0xD0, 0xE0, 0xF0
REG_ISR, REG_TMR, REG_IRR = 0x100, 0x180, 0x200
REG_ESR, REG_ICR_LO, REG_ICR_HI = 0x280, 0x300, 0x310
REG_LVT_TIMER, REG_LVT_THERMAL, REG_LVT_PERF = 0x320, 0x330, 0x340
REG_LVT_LINT0, REG_LVT_LINT1, REG_LVT_ERROR = 0x350, 0x360, 0x370
REG_TIMER_INIT, REG_TIMER_CURRENT, REG_TIMER_DIVIDE = 0x380, 0x390, 0x3E0

# Writable bits of each LVT entry (SDM figure 10-8).
LVT_WRITABLE = {
    REG_LVT_TIMER: 0x000300FF,      # vector, mask, mode (bit 17)
    REG_LVT_THERMAL: 0x000107FF,    # vector, delivery mode, mask
    REG_LVT_PERF: 0x000107FF,
    REG_LVT_LINT0: 0x0001A7FF,      # vector, delivery mode, polarity, trigger, mask
    REG_LVT_LINT1: 0x0001A7FF,
    REG_LVT_ERROR: 0x000100FF,      # vector, mask
}
LVT_MASKED = 1 << 16
LVT_TIMER_PERIODIC = 1 << 17
LVT_RESET = LVT_MASKED
LINT0_VIRTUAL_WIRE = 0x700          # ExtINT, unmasked: what a BIOS programs

SVR_ENABLE = 1 << 8
SVR_WRITABLE = 0x3FF
SVR_RESET = 0xFF

# Delivery modes (ICR bits 10:8, LVT bits 10:8).
DM_FIXED, DM_LOWEST, DM_SMI, DM_NMI, DM_INIT, DM_STARTUP, DM_EXTINT = 0, 1, 2, 4, 5, 6, 7

# ICR destination shorthands (bits 19:18).
SH_NONE, SH_SELF, SH_ALL_INCLUDING_SELF, SH_ALL_EXCLUDING_SELF = 0, 1, 2, 3
ICR_LO_WRITABLE = 0x000CCFFF        # vector, mode, dest mode, level, trigger, shorthand
ICR_LEVEL_ASSERT = 1 << 14
ICR_TRIGGER_LEVEL = 1 << 15

# ESR bits (SDM figure 10-9).
ESR_SEND_ILLEGAL_VECTOR = 1 << 5
ESR_RECEIVE_ILLEGAL_VECTOR = 1 << 6
ESR_ILLEGAL_REGISTER = 1 << 7

# Registers whose value changes only when the guest writes a register (or on
# reset/restore); a monitor may serve reads of these from a virtual-APIC page,
# refreshing the page with read_reg() after every guest write.
STATIC_REGISTERS = frozenset({
    REG_ID, REG_VERSION, REG_TPR, REG_LDR, REG_DFR, REG_SVR, REG_ICR_LO, REG_ICR_HI,
    *LVT_WRITABLE, REG_TIMER_INIT, REG_TIMER_DIVIDE,
})


def divisor_of(divide_config: int) -> int:
    """Divide configuration register -> divisor (SDM figure 10-10)."""
    code = (divide_config & 3) | (divide_config >> 1 & 4)
    return 1 if code == 7 else 2 << code


def _highest(bits: int) -> int:
    """Highest set vector of a 256-bit map, or 0 when empty (SDM's ISRV/IRRV)."""
    return bits.bit_length() - 1 if bits else 0


class LocalApic:
    """One CPU's local APIC (see the module docstring for what is modelled).

    Constructor arguments:

    - ``clock``: virtual time for the timer.
    - ``apic_id``: initial APIC ID (bits 31:24 of the ID register).
    - ``timer_hz``: the bus clock the timer divides (default 100 MHz).
    - ``send_ipi(dest, mode, vector, shorthand, level, dest_mode)``: called for
      every IPI the ICR sends except the self shorthand, which is delivered
      here.  ``dest`` is ICR[63:56], ``mode`` the delivery mode (lowest
      priority is passed as 1 and should be routed like fixed, to one
      target), ``shorthand`` ICR[19:18] verbatim (for "all including self"
      the platform also delivers to this APIC), ``level`` the level bit,
      ``dest_mode`` 0 physical / 1 logical.
    - ``on_eoi(vector)``: EOI of a level-triggered vector (wire to
      ``IoApic.eoi``).
    - ``extint_pending()`` / ``extint_ack()``: the 8259's INTR level and its
      INTA (returns the vector), used while LINT0 is ExtINT.
    - ``intr``: output IrqLine following ``has_interrupt()`` (one is created
      if not given); connect it to ``cpu.set_intr`` and set
      ``cpu.intr_ack = apic.acknowledge``.
    - ``virtual_wire``: reset LINT0 to ExtINT unmasked (firmware hand-off).
    - ``nmi()``: this APIC's processor takes an NMI (an NMI IPI with the
      self shorthand, LINT1 programmed as NMI); connect it to ``cpu.nmi``.
    """

    def __init__(self, clock: Clock, apic_id: int = 0, *, timer_hz: int = DEFAULT_TIMER_HZ,
                 send_ipi: Callable[..., None] | None = None,
                 on_eoi: Callable[[int], None] | None = None,
                 extint_pending: Callable[[], bool] | None = None,
                 extint_ack: Callable[[], int | None] | None = None,
                 intr: IrqLine | None = None, virtual_wire: bool = True,
                 name: str = "lapic", nmi: Callable[[], None] | None = None):
        if timer_hz <= 0:
            raise ValueError("the APIC timer's bus clock must be positive")
        self.name = name
        self.clock = clock
        self.timer_hz = timer_hz
        self.initial_id = apic_id & 0xFF
        self.send_ipi = send_ipi
        self.on_eoi = on_eoi
        self.extint_pending = extint_pending
        self.extint_ack = extint_ack
        self.nmi = nmi
        self.intr = intr if intr is not None else IrqLine(f"{name}.intr")
        self.virtual_wire = virtual_wire
        self.static_registers = STATIC_REGISTERS
        # The virtual-APIC page: STATIC_REGISTERS -> value, kept equal to
        # read_reg() by every path that changes one (writes, reset, restore).
        # Updated in place: processors and monitors hold a reference to it
        # and serve aligned 32-bit reads of these registers from it.
        self.vregs: dict[int, int] = {}
        self._timer_event: Timer | None = None
        self._readers = {
            REG_ID: lambda: self.id,
            REG_VERSION: lambda: VERSION_VALUE,
            REG_TPR: lambda: self.tpr,
            REG_APR: self.apr,
            REG_PPR: self.ppr,
            REG_EOI: lambda: 0,
            REG_LDR: lambda: self.ldr,
            REG_DFR: lambda: self.dfr,
            REG_SVR: lambda: self.svr,
            REG_ESR: lambda: self.esr,
            REG_ICR_LO: lambda: self.icr_lo,
            REG_ICR_HI: lambda: self.icr_hi,
            REG_TIMER_INIT: lambda: self.timer_initial,
            REG_TIMER_CURRENT: self.current_count,
            REG_TIMER_DIVIDE: lambda: self.divide_config,
        }
        for off in LVT_WRITABLE:
            self._readers[off] = lambda off=off: self.lvt[off]
        for base, attr in ((REG_ISR, "isr"), (REG_TMR, "tmr"), (REG_IRR, "irr")):
            for i in range(8):
                self._readers[base + 0x10 * i] = \
                    lambda attr=attr, i=i: getattr(self, attr) >> (32 * i) & 0xFFFFFFFF
        self._writers = {
            REG_ID: self._write_id,
            REG_TPR: self._write_tpr,
            REG_EOI: self._write_eoi,
            REG_LDR: self._write_ldr,
            REG_DFR: self._write_dfr,
            REG_SVR: self._write_svr,
            REG_ESR: self._write_esr,
            REG_ICR_LO: self._write_icr_lo,
            REG_ICR_HI: self._write_icr_hi,
            REG_TIMER_INIT: self._write_timer_initial,
            REG_TIMER_DIVIDE: self._write_divide,
            **{off: self._write_lvt for off in LVT_WRITABLE},
        }
        self.reset()

    # -------------------------------------------------------------- lifecycle
    def attach(self, mem) -> None:
        """Claim [0xFEE00000, 0xFEE01000) on a PhysicalMemory."""
        mem.add_mmio(APIC_BASE, APIC_BASE + APIC_SIZE, self, self.name)

    def reset(self) -> None:
        self._cancel_timer()
        self.id = self.initial_id << 24
        self.tpr = 0
        self.ldr = 0
        self.dfr = 0xFFFFFFFF
        self.svr = SVR_RESET
        self.irr = self.isr = self.tmr = 0
        self.esr = 0
        self.esr_pending = 0
        self.icr_lo = self.icr_hi = 0
        self.lvt = {off: LVT_RESET for off in LVT_WRITABLE}
        if self.virtual_wire:
            self.lvt[REG_LVT_LINT0] = LINT0_VIRTUAL_WIRE
        self.timer_initial = 0
        self.divide_config = 0
        self.timer_base_time = 0        # instruction count counting (re)started at
        self.timer_base_count = 0       # count at timer_base_time; 0 = not counting
        self._publish()
        self._update_intr()

    _STATE_FIELDS = ("id", "tpr", "ldr", "dfr", "svr", "irr", "isr", "tmr", "esr",
                     "esr_pending", "icr_lo", "icr_hi", "timer_initial", "divide_config",
                     "timer_base_time", "timer_base_count")

    def snapshot(self) -> dict:
        state = {f: getattr(self, f) for f in self._STATE_FIELDS}
        state["lvt"] = {str(off): v for off, v in self.lvt.items()}
        event = self._timer_event
        state["timer_deadline"] = None if event is None or event.cancelled else event.deadline
        return state

    def restore(self, state: dict) -> None:
        self._cancel_timer()
        for f in self._STATE_FIELDS:
            setattr(self, f, state[f])
        self.lvt = {int(off): v for off, v in state["lvt"].items()}
        if state["timer_deadline"] is not None:
            self._timer_event = self.clock.at(state["timer_deadline"], self._timer_fired,
                                              f"{self.name}.timer")
        self._publish()
        self._update_intr()

    # ------------------------------------------------------------------- MMIO
    def mmio_read(self, offset: int, size: int) -> int:
        reg, byte = offset & ~0xF, offset & 0xF
        if reg not in self._readers:
            self._log_error(ESR_ILLEGAL_REGISTER)
            return 0
        value = self.read_reg(reg)
        return (value >> (8 * byte) if byte < 4 else 0) & ((1 << (8 * size)) - 1)

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        reg = offset & ~0xF
        if reg not in self._readers:
            self._log_error(ESR_ILLEGAL_REGISTER)
            return
        if size != 4 or offset != reg:
            return
        writer = self._writers.get(reg)
        if writer is not None:
            writer(reg, value & 0xFFFFFFFF)
            if reg in STATIC_REGISTERS:
                self._publish(None if reg == REG_SVR else reg)   # SVR's disable masks every LVT

    def _publish(self, reg: int | None = None) -> None:
        """Bring the virtual-APIC page up to date: one register, or all."""
        readers, vregs = self._readers, self.vregs
        for r in STATIC_REGISTERS if reg is None else (reg,):
            vregs[r] = readers[r]()

    def read_reg(self, offset: int) -> int:
        """The 32-bit value of the register at ``offset`` (0 if reserved); no side effects."""
        reader = self._readers.get(offset)
        return reader() if reader is not None else 0

    # -------------------------------------------------------------- priorities
    @property
    def software_enabled(self) -> bool:
        return bool(self.svr & SVR_ENABLE)

    def ppr(self) -> int:
        """Processor priority (SDM 10.8.3.1)."""
        isrv = _highest(self.isr)
        return self.tpr if (self.tpr >> 4) >= (isrv >> 4) else isrv & 0xF0

    def apr(self) -> int:
        """Arbitration priority (SDM 10.6.2.4)."""
        tpr_class, isr_class, irr_class = self.tpr >> 4, _highest(self.isr) >> 4, _highest(self.irr) >> 4
        if tpr_class >= irr_class and tpr_class > isr_class:
            return self.tpr
        return max(tpr_class, isr_class, irr_class) << 4

    def _deliverable_vector(self) -> int | None:
        """The IRR vector the CPU would take now, if any."""
        if not self.irr or not self.software_enabled:
            return None
        vector = _highest(self.irr)
        return vector if (vector >> 4) > (self.ppr() >> 4) else None

    @property
    def lint0_extint(self) -> bool:
        """LINT0 is programmed as an unmasked ExtINT input (virtual wire)."""
        lint0 = self.lvt[REG_LVT_LINT0]
        return not lint0 & LVT_MASKED and (lint0 >> 8 & 7) == DM_EXTINT

    @property
    def extint_passthrough(self) -> bool:
        """True when the APIC only passes the 8259 through (it adds no interrupts)."""
        return self.lint0_extint and not self.software_enabled

    def _extint_requested(self) -> bool:
        return self.lint0_extint and self.extint_pending is not None and bool(self.extint_pending())

    # ---------------------------------------------------------- CPU-facing side
    def has_interrupt(self) -> bool:
        return self._deliverable_vector() is not None or self._extint_requested()

    def acknowledge(self) -> int | None:
        """The INTA cycle: the vector the CPU must take (SDM 10.8.4, 10.9)."""
        vector = self._deliverable_vector()
        if vector is not None:
            bit = 1 << vector
            self.irr &= ~bit
            self.isr |= bit
        elif self._extint_requested() and self.extint_ack is not None:
            vector = self.extint_ack()
        else:
            vector = self.svr & 0xFF
        self._update_intr()
        return vector

    def _update_intr(self) -> None:
        self.intr.set(self.has_interrupt())

    def extint_changed(self, level: bool = True) -> None:
        """The 8259's INTR changed (connect the 8259's output IrqLine here)."""
        self._update_intr()

    # ------------------------------------------------------------ input side
    def accept(self, vector: int, level_triggered: bool = False) -> None:
        """An interrupt message arrives (I/O APIC, IPI, LVT): set its IRR bit."""
        vector &= 0xFF
        if vector < 16:
            self._log_error(ESR_RECEIVE_ILLEGAL_VECTOR)
            return
        bit = 1 << vector
        self.irr |= bit
        if level_triggered:
            self.tmr |= bit
        else:
            self.tmr &= ~bit
        self._update_intr()

    def lint1(self) -> None:
        """An edge on the LINT1 pin (on a PC, the chipset's NMI line):
        delivered as LVT LINT1 says — NMI, or a fixed vector — unless the
        entry is masked (as it is from reset until software programs it)."""
        lvt = self.lvt[REG_LVT_LINT1]
        if lvt & LVT_MASKED:
            return
        mode = lvt >> 8 & 7
        if mode == DM_NMI:
            if self.nmi is not None:
                self.nmi()
        elif mode == DM_FIXED:
            self.accept(lvt & 0xFF)

    def _log_error(self, bits: int) -> None:
        """Record an error for the next ESR write and raise the LVT error interrupt."""
        self.esr_pending |= bits
        lvt = self.lvt[REG_LVT_ERROR]
        if not lvt & LVT_MASKED and (lvt & 0xFF) >= 16:
            self.accept(lvt & 0xFF)

    # -------------------------------------------------------- register writes
    def _write_id(self, reg: int, value: int) -> None:
        self.id = value & 0xFF000000

    def _write_tpr(self, reg: int, value: int) -> None:
        self.tpr = value & 0xFF
        self._update_intr()

    def _write_eoi(self, reg: int, value: int) -> None:
        if not self.isr:
            return
        vector = _highest(self.isr)
        bit = 1 << vector
        self.isr &= ~bit
        level = bool(self.tmr & bit)
        self._update_intr()
        if level and self.on_eoi is not None:
            self.on_eoi(vector)

    def _write_ldr(self, reg: int, value: int) -> None:
        self.ldr = value & 0xFF000000

    def _write_dfr(self, reg: int, value: int) -> None:
        self.dfr = value & 0xF0000000 | 0x0FFFFFFF

    def _write_svr(self, reg: int, value: int) -> None:
        self.svr = value & SVR_WRITABLE
        if not self.software_enabled:
            for off in self.lvt:
                self.lvt[off] |= LVT_MASKED
            self._schedule_timer()
        self._update_intr()

    def _write_esr(self, reg: int, value: int) -> None:
        self.esr, self.esr_pending = self.esr_pending, 0

    def _write_icr_hi(self, reg: int, value: int) -> None:
        self.icr_hi = value & 0xFF000000

    def _write_icr_lo(self, reg: int, value: int) -> None:
        self.icr_lo = value & ICR_LO_WRITABLE
        self._send_ipi()

    def _send_ipi(self) -> None:
        icr = self.icr_lo
        vector, mode = icr & 0xFF, icr >> 8 & 7
        shorthand, level = icr >> 18 & 3, bool(icr & ICR_LEVEL_ASSERT)
        if mode == DM_INIT and not level and icr & ICR_TRIGGER_LEVEL:
            return      # INIT level de-assert: only resynchronises arbitration IDs
        if mode in (DM_FIXED, DM_LOWEST) and vector < 16:
            self._log_error(ESR_SEND_ILLEGAL_VECTOR)
            return
        if shorthand == SH_SELF:
            if mode in (DM_FIXED, DM_LOWEST):
                self.accept(vector)
            elif mode == DM_NMI and self.nmi is not None:
                # SDM table 10-3 calls NMI-to-self invalid on the Pentium 4's
                # xAPIC; later processors (and QEMU, which kernels are tested
                # on) deliver it, and NMI self-tests rely on it.
                self.nmi()
            return      # INIT, STARTUP, SMI with the self shorthand are invalid (SDM 10.6.1)
        if mode in (DM_SMI, 3, DM_EXTINT) or self.send_ipi is None:
            return      # SMI is not modelled; 3 and 7 are reserved for IPIs
        self.send_ipi(self.icr_hi >> 24, mode, vector, shorthand, level, icr >> 11 & 1)

    def _write_lvt(self, reg: int, value: int) -> None:
        value &= LVT_WRITABLE[reg]
        if not self.software_enabled:
            value |= LVT_MASKED
        old = self.lvt[reg]
        self.lvt[reg] = value
        if reg == REG_LVT_TIMER:
            if (old ^ value) & LVT_TIMER_PERIODIC:
                self._restart_from_current_count()
            self._schedule_timer()
        elif reg == REG_LVT_LINT0:
            self._update_intr()

    # ------------------------------------------------------------------ timer
    @property
    def divisor(self) -> int:
        return divisor_of(self.divide_config)

    @property
    def periodic(self) -> bool:
        return bool(self.lvt[REG_LVT_TIMER] & LVT_TIMER_PERIODIC)

    def _write_timer_initial(self, reg: int, value: int) -> None:
        self.timer_initial = value
        self.timer_base_time = self.clock.now
        self.timer_base_count = value
        self._schedule_timer()

    def _write_divide(self, reg: int, value: int) -> None:
        self._restart_from_current_count()
        self.divide_config = value & 0xB
        self._schedule_timer()

    def _decrements(self, now: int) -> int:
        """Decrements since the counting (re)started."""
        return (now - self.timer_base_time) * self.timer_hz // (self.clock.ips * self.divisor)

    def _time_of_decrement(self, n: int) -> int:
        """The first instruction count at which ``n`` decrements have happened."""
        return self.timer_base_time + -(-n * self.divisor * self.clock.ips // self.timer_hz)

    def current_count(self) -> int:
        base = self.timer_base_count
        if base == 0:
            return 0
        done = self._decrements(self.clock.now)
        if done < base:
            return base - done
        if not self.periodic or self.timer_initial == 0:
            return 0
        return self.timer_initial - (done - base) % self.timer_initial

    def _restart_from_current_count(self) -> None:
        self.timer_base_count = self.current_count()
        self.timer_base_time = self.clock.now

    def _next_expiry(self, now: int) -> int | None:
        """The decrement number of the next expiry after ``now``, if any."""
        base = self.timer_base_count
        if base == 0:
            return None
        done = self._decrements(now)
        if done < base:
            return base
        if not self.periodic or self.timer_initial == 0:
            return None
        return base + ((done - base) // self.timer_initial + 1) * self.timer_initial

    def _cancel_timer(self) -> None:
        if self._timer_event is not None:
            self._timer_event.cancel()
            self._timer_event = None

    def _schedule_timer(self) -> None:
        self._cancel_timer()
        if self.lvt[REG_LVT_TIMER] & LVT_MASKED:
            return
        expiry = self._next_expiry(self.clock.now)
        if expiry is not None:
            self._timer_event = self.clock.at(self._time_of_decrement(expiry), self._timer_fired,
                                              f"{self.name}.timer")

    def _timer_fired(self, now: int) -> None:
        self._timer_event = None
        lvt = self.lvt[REG_LVT_TIMER]
        if not lvt & LVT_MASKED:
            self.accept(lvt & 0xFF)
        self._schedule_timer()
