"""Intel 8259A programmable interrupt controller pair, wired as on a PC/AT.

Modelled (Intel 8259A/8259A-2 datasheet; IBM PC AT technical reference;
Intel 82371AB PIIX4 datasheet for the ELCR):

- Two 8259As: the master at ports 0x20/0x21, the slave at 0xA0/0xA1, the
  slave's INT output wired to the master's IR2.  ISA IRQ ``n`` is master IR
  ``n`` for n < 8 and slave IR ``n - 8`` otherwise; ``irq_line(n)`` hands a
  device the ``IrqLine`` for it (IRQ2 is the cascade and is refused: on the
  AT the bus's IRQ2 pin is wired to IRQ9).
- The initialization sequence: ICW1 (A0=0, D4=1) resets the edge sense
  latches, IMR, ISR, priority, special mask mode, poll and the read-register
  select (IRR) and clears ICW4's functions; ICW2 (vector base T7-T3), ICW3
  (only when SNGL=0) and ICW4 (only when IC4=1) follow on A0=1.  ICW4's
  uPM (8086 mode), AEOI and SFNM are honoured; BUF and M/S are stored only.
  In MCS-80/85 mode (uPM=0) the acknowledge returns the byte an x86 reads in
  the second INTA cycle: the low byte of the CALL address (ICW1 A7-A5 with
  interval 4, A7-A6 with interval 8, and the IR number).
- Triggering: an input is level triggered if ICW1.LTIM is set (all eight
  inputs) or its ELCR bit is set (PIIX: ports 0x4D0 master, 0x4D1 slave;
  IRQ 0, 1, 2, 8 and 13 are always edge triggered, their ELCR bits read 0).
  An edge-triggered input latches IRR on a rising edge and the latch holds
  until the request is acknowledged (so ``IrqLine.pulse()`` works, as in
  QEMU); a level-triggered input's IRR bit follows the line.
- OCW1 (IMR); OCW2: non-specific EOI, specific EOI, rotate on non-specific
  EOI, rotate on specific EOI, set priority, set/clear rotate in AEOI mode,
  no-op; OCW3: read IRR/ISR select, poll command (the next read of either
  port is the poll word ``0x80 | level`` or 0, and acknowledges), special
  mask mode (as in the datasheet and Bochs: every unmasked request whose ISR
  bit is clear is eligible, regardless of priority).
- Priority resolution with rotation: ``highest`` is the IR with the highest
  priority; a request is delivered when it ranks above every in-service
  level (fully nested mode).  In special fully nested mode on the master, a
  request on the cascade input IR2 is not blocked by IR2 being in service.
- ``acknowledge()`` is the CPU's INTA cycle: it sets the ISR bit (unless
  AEOI), clears an edge-latched IRR bit and returns the vector.  When the
  master selects IR2 the slave supplies the vector.  If no request is
  eligible the chip answers with its IR7 vector and sets no ISR bit (the
  datasheet's "default IR7": spurious IRQ7 on the master, spurious IRQ15 on
  the slave, in which case the master's ISR bit 2 *is* set, as on hardware).

Invariants:
- ``lines`` mirrors the level of each input (the master's bit 2 is the
  slave's INT output); for level-triggered inputs ``irr & level_mask ==
  lines & level_mask`` always holds.
- INT outputs are recomputed after every access and input change, so the
  ``intr`` line is high exactly when the master has an eligible request and
  its initialization sequence is complete (a chip in the middle of, or never
  given, an ICW sequence keeps INT low and ``acknowledge`` returns None).
- After an acknowledge through the cascade, if the slave's INT output is
  still asserted (a second request that an AEOI or special-mask slave lets
  through) the master's IR2 latch is set again: the master's edge-sensitive
  cascade input would otherwise never see it.

Not modelled: the 8259A's MCS-80 three-byte CALL sequence beyond the byte the
CPU reads, buffered mode, the slave's cascade address check (the slave
answers every cascade acknowledge whatever its ICW3 says), the port aliases
of the PIIX (0x24, 0x28, ...) and reading ELCR-reserved bits as anything but
0.  The datasheet's requirement that an edge-triggered IR stay high until the
first INTA is not enforced (edge latches hold, as in QEMU).
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from ..bus import read_bytewise, write_bytewise
from ..irq import IrqLine

MASTER_BASE, SLAVE_BASE, ELCR_BASE = 0x20, 0xA0, 0x4D0
CASCADE_IR = 2
SPURIOUS_IR = 7

# PIIX ELCR: IRQ 0, 1, 2 (master) and 8, 13 (slave) are always edge triggered.
ELCR_MASK_MASTER = 0xF8
ELCR_MASK_SLAVE = 0xDE

ICW1_IC4, ICW1_SNGL, ICW1_ADI, ICW1_LTIM, ICW1_INIT = 0x01, 0x02, 0x04, 0x08, 0x10
ICW4_8086, ICW4_AEOI, ICW4_SFNM = 0x01, 0x02, 0x10
OCW3_RIS, OCW3_RR, OCW3_POLL, OCW3_SELECT, OCW3_SMM, OCW3_ESMM = 0x01, 0x02, 0x04, 0x08, 0x20, 0x40


class I8259:
    """One 8259A.  ``on_output(level)`` is called with the INT output level
    after every state change (callers filter repeats)."""

    FIELDS = ("irr", "imr", "isr", "lines", "elcr", "icw1", "icw2", "icw3", "icw4",
              "expect", "ready", "highest", "read_isr", "poll", "special_mask",
              "rotate_aeoi", "output")

    def __init__(self, name: str, is_master: bool, elcr_mask: int,
                 on_output: Callable[[bool], None]):
        self.name = name
        self.is_master = is_master
        self.elcr_mask = elcr_mask
        self._on_output = on_output
        self.lines = 0
        self.reset()

    def reset(self) -> None:
        """Power-on: everything zero, not initialized (no ICW sequence yet).
        ``lines`` is left alone: input levels belong to the devices."""
        self.irr = self.imr = self.isr = self.elcr = 0
        self.icw1 = self.icw2 = self.icw3 = self.icw4 = 0
        self.expect = 0          # number of the ICW expected next on A0=1, 0 = none
        self.ready = False       # an ICW sequence has completed
        self.highest = 0         # IR with the highest priority (rotation)
        self.read_isr = False
        self.poll = False
        self.special_mask = False
        self.rotate_aeoi = False
        self.output = False

    # -- triggering ---------------------------------------------------------

    @property
    def level_mask(self) -> int:
        """Bits of the level-triggered inputs."""
        return 0xFF if self.icw1 & ICW1_LTIM else self.elcr

    def _sync_level_irr(self) -> None:
        mask = self.level_mask
        self.irr = (self.irr & ~mask) | (self.lines & mask)

    def set_input(self, ir: int, level: bool) -> None:
        bit = 1 << ir
        rising = level and not self.lines & bit
        self.lines = self.lines | bit if level else self.lines & ~bit
        if self.level_mask & bit:
            self.irr = self.irr | bit if level else self.irr & ~bit
        elif rising:
            self.irr |= bit
        self.update()

    def set_elcr(self, value: int) -> None:
        self.elcr = value & self.elcr_mask
        self._sync_level_irr()
        self.update()

    # -- priority -----------------------------------------------------------

    def _rank(self, ir: int) -> int:
        return (ir - self.highest) & 7

    def _first(self, mask: int) -> int | None:
        """The highest-priority IR whose bit is set in ``mask``."""
        for r in range(8):
            ir = (self.highest + r) & 7
            if mask >> ir & 1:
                return ir
        return None

    def highest_request(self) -> int | None:
        """The IR the next INTA would acknowledge, or None."""
        requests = self.irr & ~self.imr & 0xFF
        if not requests:
            return None
        if self.special_mask:
            return self._first(requests & ~self.isr)
        ir = self._first(requests)
        serving = self._first(self.isr)
        if serving is None or self._rank(ir) < self._rank(serving):
            return ir
        if ir == serving == CASCADE_IR and self.is_master and self.icw4 & ICW4_SFNM:
            return ir
        return None

    def update(self) -> None:
        self.output = self.ready and self.highest_request() is not None
        self._on_output(self.output)

    # -- acknowledge ----------------------------------------------------------

    def intack(self, ir: int) -> None:
        """The INTA bookkeeping for ``ir``: ISR (or AEOI rotation), edge IRR."""
        bit = 1 << ir
        if self.icw4 & ICW4_AEOI:
            if self.rotate_aeoi:
                self.highest = (ir + 1) & 7
        else:
            self.isr |= bit
        if not self.level_mask & bit:
            self.irr &= ~bit

    def vector(self, ir: int) -> int:
        """The byte the CPU reads in the INTA cycle that carries the vector."""
        if self.icw4 & ICW4_8086:
            return (self.icw2 & 0xF8) | ir
        if self.icw1 & ICW1_ADI:                       # CALL address interval 4
            return (self.icw1 & 0xE0) | (ir << 2)
        return (self.icw1 & 0xC0) | (ir << 3)         # interval 8

    @property
    def cascade(self) -> bool:
        """This master has a slave on IR2 (SNGL=0 and ICW3 bit 2)."""
        return self.is_master and not self.icw1 & ICW1_SNGL and bool(self.icw3 & (1 << CASCADE_IR))

    # -- register interface ---------------------------------------------------

    def read(self, a0: int) -> int:
        if self.poll:
            self.poll = False
            return self._poll_word()
        if a0:
            return self.imr
        return self.isr if self.read_isr else self.irr

    def _poll_word(self) -> int:
        ir = self.highest_request()
        if ir is None:
            return 0
        self.intack(ir)
        self.update()
        return 0x80 | ir

    def write(self, a0: int, value: int) -> None:
        if a0:
            if self.expect:
                self._icw(value)
            else:
                self.imr = value
        elif value & ICW1_INIT:
            self._icw1(value)
        elif value & OCW3_SELECT:
            self._ocw3(value)
        else:
            self._ocw2(value)
        self.update()

    def _icw1(self, value: int) -> None:
        self.icw1 = value
        self.icw4 = 0
        self.imr = self.isr = 0
        self.irr = self.lines & self.level_mask      # edge sense latches reset
        self.highest = 0
        self.read_isr = self.poll = self.special_mask = self.rotate_aeoi = False
        self.expect = 2
        self.ready = False

    def _icw(self, value: int) -> None:
        step = self.expect
        if step == 2:
            self.icw2 = value
        elif step == 3:
            self.icw3 = value
        else:
            self.icw4 = value
        if step == 2 and not self.icw1 & ICW1_SNGL:
            self.expect = 3
        elif step < 4 and self.icw1 & ICW1_IC4:
            self.expect = 4
        else:
            self.expect = 0
            self.ready = True

    def _ocw3(self, value: int) -> None:
        if value & OCW3_ESMM:
            self.special_mask = bool(value & OCW3_SMM)
        if value & OCW3_RR:
            self.read_isr = bool(value & OCW3_RIS)
        self.poll = bool(value & OCW3_POLL)

    def _ocw2(self, value: int) -> None:
        self._OCW2[value >> 5](self, value & 7)

    def _eoi(self, ir: int | None, rotate: bool) -> None:
        if ir is None:
            return
        self.isr &= ~(1 << ir)
        if rotate:
            self.highest = (ir + 1) & 7

    def _set_priority(self, level: int) -> None:
        self.highest = (level + 1) & 7            # ``level`` becomes the lowest

    def _set_rotate_aeoi(self, on: bool) -> None:
        self.rotate_aeoi = on

    # OCW2 R SL EOI (bits 7-5) -> action on L2-L0.
    _OCW2 = {
        0b000: lambda self, _l: self._set_rotate_aeoi(False),
        0b001: lambda self, _l: self._eoi(self._first(self.isr), rotate=False),
        0b010: lambda self, _l: None,
        0b011: lambda self, level: self._eoi(level, rotate=False),
        0b100: lambda self, _l: self._set_rotate_aeoi(True),
        0b101: lambda self, _l: self._eoi(self._first(self.isr), rotate=True),
        0b110: lambda self, level: self._set_priority(level),
        0b111: lambda self, level: self._eoi(level, rotate=True),
    }

    # -- state ----------------------------------------------------------------

    def snapshot(self) -> dict:
        return {f: getattr(self, f) for f in self.FIELDS}

    def restore(self, state: dict) -> None:
        for f in self.FIELDS:
            setattr(self, f, state[f])


class Pic:
    """The AT's master/slave 8259A pair plus the PIIX ELCR.

    ``intr`` is the CPU's INTR pin: an ``IrqLine`` (e.g. ``IrqLine(sink=
    cpu.set_intr)``) or a callable taking the level; the CPU's INTA cycle is
    ``acknowledge`` (``cpu.intr_ack = pic.acknowledge``).
    """

    name = "pic"

    def __init__(self, intr: IrqLine | Callable[[bool], None] | None = None):
        if intr is None:
            intr = IrqLine("pic-intr")
        elif not isinstance(intr, IrqLine):
            intr = IrqLine("pic-intr", sink=intr)
        self.intr = intr
        self.master = I8259("master", True, ELCR_MASK_MASTER, self._master_output)
        self.slave = I8259("slave", False, ELCR_MASK_SLAVE, self._slave_output)
        self._inputs = [IrqLine(f"irq{n}", sink=partial(self._input, n)) for n in range(16)]
        self._ports = {MASTER_BASE: (self.master, 0), MASTER_BASE + 1: (self.master, 1),
                       SLAVE_BASE: (self.slave, 0), SLAVE_BASE + 1: (self.slave, 1)}
        self._elcr_ports = {ELCR_BASE: self.master, ELCR_BASE + 1: self.slave}
        self.reset()

    # -- wiring ---------------------------------------------------------------

    def attach(self, bus) -> None:
        bus.add(MASTER_BASE, MASTER_BASE + 2, self, "pic-master")
        bus.add(SLAVE_BASE, SLAVE_BASE + 2, self, "pic-slave")
        bus.add(ELCR_BASE, ELCR_BASE + 2, self, "elcr")

    def irq_line(self, n: int) -> IrqLine:
        """The input line for ISA IRQ ``n`` (0-15, not 2)."""
        if not 0 <= n < 16:
            raise ValueError(f"no ISA IRQ {n}")
        if n == CASCADE_IR:
            raise ValueError("IRQ2 is the cascade input (the AT wires the bus's IRQ2 to IRQ9)")
        return self._inputs[n]

    def _chip(self, irq: int) -> tuple[I8259, int]:
        return (self.master, irq) if irq < 8 else (self.slave, irq - 8)

    def _input(self, irq: int, level: bool) -> None:
        chip, ir = self._chip(irq)
        chip.set_input(ir, level)

    def _slave_output(self, level: bool) -> None:
        self.master.set_input(CASCADE_IR, level)

    def _master_output(self, level: bool) -> None:
        self.intr.set(level)

    # -- the CPU side -----------------------------------------------------------

    def acknowledge(self) -> int | None:
        """The INTA cycle: the vector to deliver, or None if the master has not
        been initialized.  Spurious requests yield the IR7 vector of the chip
        that found nothing (see the module docstring)."""
        master, slave = self.master, self.slave
        if not master.ready:
            return None
        ir = master.highest_request()
        if ir is None:
            return master.vector(SPURIOUS_IR)
        master.intack(ir)
        if ir != CASCADE_IR or not master.cascade:
            master.update()
            return master.vector(ir)
        sir = slave.highest_request() if slave.ready else None
        if sir is None:
            vector = slave.vector(SPURIOUS_IR)
        else:
            slave.intack(sir)
            vector = slave.vector(sir)
        slave.update()
        if slave.output and not master.level_mask & (1 << CASCADE_IR):
            master.irr |= 1 << CASCADE_IR
        master.update()
        return vector

    def pending(self) -> list[int]:
        """ISA IRQs requested (IRR) and not masked at their own chip; for
        debuggers and the UI (IRQ2, the cascade, is not listed)."""
        out = []
        for irq in range(16):
            chip, ir = self._chip(irq)
            if irq != CASCADE_IR and (chip.irr & ~chip.imr) >> ir & 1:
                out.append(irq)
        return out

    # -- ports ----------------------------------------------------------------

    def _read_byte(self, port: int) -> int:
        if port in self._ports:
            chip, a0 = self._ports[port]
            return chip.read(a0)
        if port in self._elcr_ports:
            return self._elcr_ports[port].elcr
        return 0xFF

    def _write_byte(self, port: int, value: int) -> None:
        if port in self._ports:
            chip, a0 = self._ports[port]
            chip.write(a0, value)
        elif port in self._elcr_ports:
            self._elcr_ports[port].set_elcr(value)

    def port_read(self, port: int, size: int) -> int:
        """Wider accesses act as byte accesses on consecutive ports."""
        return read_bytewise(self._read_byte, port, size)

    def port_write(self, port: int, size: int, value: int) -> None:
        write_bytewise(self._write_byte, port, size, value)

    # -- Device protocol --------------------------------------------------------

    def reset(self) -> None:
        for chip, base in ((self.slave, 8), (self.master, 0)):
            chip.reset()
            chip.lines = sum(int(self._inputs[base + i].level) << i for i in range(8))
        self.master.lines &= ~(1 << CASCADE_IR)       # slave INT is low after reset
        self.intr.set(False)

    def snapshot(self) -> dict:
        return {"master": self.master.snapshot(), "slave": self.slave.snapshot()}

    def restore(self, state: dict) -> None:
        """Restores both chips; the input ``IrqLine`` objects (owned here) take
        the recorded levels without notification, and INTR is driven to the
        recorded master output."""
        self.master.restore(state["master"])
        self.slave.restore(state["slave"])
        for irq, line in enumerate(self._inputs):
            if irq != CASCADE_IR:
                chip, ir = self._chip(irq)
                line.level = bool(chip.lines >> ir & 1)
        self.intr.set(self.master.output)
