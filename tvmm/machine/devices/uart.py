"""National Semiconductor PC16550D UART (the "16550A") as a PC serial port.

Modelled (National Semiconductor / TI PC16550D datasheet):

- The eight registers at ``base`` .. ``base + 7``: RBR (read) / THR (write),
  IER, IIR (read) / FCR (write), LCR, MCR, LSR, MSR and SCR; with LCR bit 7
  (DLAB) set, offsets 0 and 1 are the divisor latch (DLL/DLM).  LCR, SCR, IER
  (low four bits), MCR (low five bits) and the divisor read back as written.
- FIFO mode (FCR bit 0): a 16-byte receive FIFO with the trigger level of FCR
  bits 6-7 (1, 4, 8, 14 bytes) for the received-data interrupt; FCR bits 1/2
  clear the receive/transmit FIFO; changing bit 0 clears both; writes with bit
  0 clear program nothing else.  IIR bits 6-7 read 11 in FIFO mode.  Without
  FIFOs the receiver holds one byte.
- Interrupt identification in the datasheet's priority order: receiver line
  status (an overrun, when IER bit 2) > received data available (at the
  trigger level in FIFO mode) / character timeout > THR empty > modem status.
  Reading LSR clears the line-status source, reading RBR the data sources,
  reading MSR the modem-status source; the THR-empty source is set whenever
  THR empties (and when IER bit 1 is newly set while THR is empty) and is
  cleared by a read of IIR that reports it or by a write of THR.
- Receive timing, deterministically from virtual time: ``feed(data)`` queues
  bytes on the wire; each reaches the receiver one character time after the
  previous one (start + data + parity + stop bits at 115200 / divisor baud; a
  divisor of 0 counts as 65536).  A byte that finds the receiver full sets
  LSR.OE: in FIFO mode the new byte is lost, without FIFOs it overwrites the
  holding register (datasheet, LSR bit 1).  With ``flow_control=True`` (the
  PC's COM ports: their input is the user's) a byte that arrives at a full
  receiver is instead held at the end of the wire (``held``) until the guest
  makes room: it reaches the receiver one instruction after the RBR read (or
  FIFO clear) that freed a place, so the read lowers the interrupt and the
  byte raises it again; the bytes behind it follow one character time apart
  after it.  Typed or pasted input is thus never lost (as QEMU's serial back
  end hands the UART a byte only when it can take one), its timing depends
  only on the guest's behaviour, and it is the same as without flow control
  whenever the guest keeps up.  Loopback bytes are not flow-controlled: a
  guest that loops back into a full receiver still overruns it.
- Character timeout (FIFO mode): an interrupt (IIR 0xC) when the FIFO holds
  at least one byte and neither a byte has arrived nor the CPU has read RBR
  for four character times; its time is exact (restarted at every arrival and
  every RBR read), not approximated.
- Transmission completes instantly (as in QEMU): a THR write hands the byte to
  ``on_tx`` and appends it to ``tx_log``; THRE and TEMT therefore always read
  1, the 16-byte transmit FIFO never holds anything and a polled driver never
  waits.  The THR-empty interrupt source is cleared by the write and set again
  at once, so the interrupt line shows a fresh rising edge.
- Loopback (MCR bit 4): transmitted bytes go to the receiver instead of
  ``on_tx``; the modem inputs read CTS = RTS, DSR = DTR, RI = OUT1,
  DCD = OUT2; bytes fed from outside wait until loopback ends (the serial
  input is disconnected).  MSR delta bits record every change of the inputs
  (including those caused by MCR writes in loopback); TERI only on RI 1 -> 0.
- The interrupt output as wired on a PC: the UART's INTR reaches the IRQ line
  only while MCR OUT2 is set and loopback is off (the datasheet forces the
  OUT2 pin inactive in loopback).  ``out2_gates_irq=False`` drops the gate, as
  QEMU does: xv6 (and code derived from it) writes MCR = 0 and still expects
  COM1 interrupts, which only works without the gate.
- Outside loopback the modem inputs are those of an attached terminal:
  CTS, DSR and DCD asserted, RI not (as QEMU's reset value); the host may
  change them with ``set_modem_status``.

Not modelled: parity, framing and break conditions (PE/FE/BI and LSR bit 7
never set; there is no way to feed a malformed character), transmit timing
and the transmit FIFO's contents, DMA mode signalling (FCR bit 3 is stored
only), the baud-rate-dependent delay of loopback bytes (they arrive at once),
and the scratch/divisor values being undefined at power-on (power-on state
is divisor 12 = 9600 baud and SCR 0).  A read of RBR with nothing received
returns the last byte read.

Invariants: the receiver holds at most 16 bytes in FIFO mode and 1 otherwise;
``irq.level`` always equals ``irq_asserted()``; all device state, including
the bytes still on the wire and the times of the next arrival and of the
character timeout, is in the snapshot (``tx_log`` too: it is the host's record of the line, kept across
``reset``).
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from ..clock import Clock, Timer
from ..irq import IrqLine

COM1_BASE, COM2_BASE = 0x3F8, 0x2F8
COM1_IRQ, COM2_IRQ = 4, 3
PORT_COUNT = 8

# Register offsets from the base port.
RBR = THR = DLL = 0
IER = DLM = 1
IIR = FCR = 2
LCR, MCR, LSR, MSR, SCR = 3, 4, 5, 6, 7

# IER bits.
IER_RX_DATA, IER_THR_EMPTY, IER_LINE_STATUS, IER_MODEM_STATUS = 0x01, 0x02, 0x04, 0x08
IER_MASK = 0x0F

# IIR values (bit 0 = 1: nothing pending) and the FIFO-mode bits.
IIR_NO_INTERRUPT = 0x01
IIR_LINE_STATUS = 0x06
IIR_RX_DATA = 0x04
IIR_CHAR_TIMEOUT = 0x0C
IIR_THR_EMPTY = 0x02
IIR_MODEM_STATUS = 0x00
IIR_FIFOS_ENABLED = 0xC0

# FCR bits.
FCR_ENABLE, FCR_CLEAR_RX, FCR_CLEAR_TX, FCR_DMA_MODE = 0x01, 0x02, 0x04, 0x08
FCR_TRIGGER_SHIFT = 6
FCR_STORED = FCR_ENABLE | FCR_DMA_MODE | 0xC0
TRIGGER_LEVELS = (1, 4, 8, 14)

# LCR bits.
LCR_WORD_LENGTH, LCR_TWO_STOP_BITS, LCR_PARITY, LCR_DLAB = 0x03, 0x04, 0x08, 0x80

# MCR bits.
MCR_DTR, MCR_RTS, MCR_OUT1, MCR_OUT2, MCR_LOOP = 0x01, 0x02, 0x04, 0x08, 0x10
MCR_MASK = 0x1F

# LSR bits.
LSR_DR, LSR_OE, LSR_PE, LSR_FE, LSR_BI = 0x01, 0x02, 0x04, 0x08, 0x10
LSR_THRE, LSR_TEMT, LSR_FIFO_ERROR = 0x20, 0x40, 0x80
LSR_ERRORS = LSR_OE | LSR_PE | LSR_FE | LSR_BI

# MSR bits: deltas in the low nibble, input levels in the high one.
MSR_DCTS, MSR_DDSR, MSR_TERI, MSR_DDCD = 0x01, 0x02, 0x04, 0x08
MSR_CTS, MSR_DSR, MSR_RI, MSR_DCD = 0x10, 0x20, 0x40, 0x80
MSR_INPUTS = 0xF0
TERMINAL_INPUTS = MSR_CTS | MSR_DSR | MSR_DCD     # QEMU's reset value

FIFO_SIZE = 16
BAUD_BASE = 115_200                  # 1.8432 MHz crystal / 16
POWER_ON_DIVISOR = 12                # 9600 baud
TIMEOUT_CHARACTERS = 4

# In loopback each MCR output feeds one modem input.
_LOOPBACK_WIRING = ((MCR_RTS, MSR_CTS), (MCR_DTR, MSR_DSR), (MCR_OUT1, MSR_RI), (MCR_OUT2, MSR_DCD))
# An input change sets its delta bit; RI only on its trailing edge.
_DELTA_OF_INPUT = ((MSR_CTS, MSR_DCTS), (MSR_DSR, MSR_DDSR), (MSR_DCD, MSR_DDCD))


class Uart:
    """A 16550A at ``base`` raising ``irq``: ``attach(bus)`` claims base..base+7.

    Host interface: ``feed(data)`` puts typed bytes on the receive wire;
    ``on_tx(byte)`` is called for every byte the guest transmits (outside
    loopback), which also accumulate in ``tx_log``; ``set_modem_status``
    changes the modem input lines.
    """

    def __init__(self, clock: Clock, irq: IrqLine, base: int = COM1_BASE,
                 on_tx: Callable[[int], None] | None = None, *,
                 out2_gates_irq: bool = True, flow_control: bool = False,
                 name: str = "uart"):
        self.clock = clock
        self.irq = irq
        self.base = base
        self.on_tx = on_tx
        self.out2_gates_irq = out2_gates_irq
        self.flow_control = flow_control
        self.name = name
        self._tx_log = bytearray()
        self._wakeup: Timer | None = None
        self._readers = {RBR: self._read_rbr, IER: lambda: self.ier, IIR: self._read_iir,
                         LCR: lambda: self.lcr, MCR: lambda: self.mcr, LSR: self._read_lsr,
                         MSR: self._read_msr, SCR: lambda: self.scr}
        self._writers = {THR: self._write_thr, IER: self._write_ier, FCR: self._write_fcr,
                         LCR: self._write_lcr, MCR: self._write_mcr, LSR: _ignore,
                         MSR: _ignore, SCR: self._write_scr}
        self.reset()

    # -------------------------------------------------------------- lifecycle
    def attach(self, bus) -> None:
        bus.add(self.base, self.base + PORT_COUNT, self, self.name)

    def reset(self) -> None:
        self._cancel_wakeup()
        self.ier = 0
        self.lcr = 0
        self.mcr = 0
        self.fcr = 0
        self.scr = 0
        self.divisor = POWER_ON_DIVISOR
        self.rx: deque[int] = deque()
        self.rbr = 0                         # last byte read (returned when empty)
        self.lsr_errors = 0                  # latched OE (cleared by reading LSR)
        self.thr_empty_pending = False
        self.timeout_pending = False
        self.msr_delta = 0
        self.external_inputs = TERMINAL_INPUTS
        self.wire: deque[int] = deque()      # fed bytes not yet at the receiver
        self.next_arrival: int | None = None
        self.held = False                    # wire[0] arrived at a full receiver (flow control)
        self.timeout_deadline: int | None = None
        self._update_irq()

    _STATE_FIELDS = ("ier", "lcr", "mcr", "fcr", "scr", "divisor", "rbr", "lsr_errors",
                     "thr_empty_pending", "timeout_pending", "msr_delta", "external_inputs",
                     "next_arrival", "timeout_deadline")

    def snapshot(self) -> dict:
        state = {f: getattr(self, f) for f in self._STATE_FIELDS}
        state["held"] = self.held
        state["rx"] = bytes(self.rx)
        state["wire"] = bytes(self.wire)
        state["tx_log"] = bytes(self._tx_log)
        return state

    def restore(self, state: dict) -> None:
        self._cancel_wakeup()
        for f in self._STATE_FIELDS:
            setattr(self, f, state[f])
        self.held = bool(state.get("held", False))
        self.rx = deque(state["rx"])
        self.wire = deque(state["wire"])
        self._tx_log = bytearray(state["tx_log"])
        self._arm()
        self._update_irq()

    # ------------------------------------------------------------- host side
    def feed(self, data: bytes) -> None:
        """Bytes typed by the user: they arrive one character time apart
        (and, with flow control, never before the receiver has room)."""
        self.wire.extend(bytes(data))
        self._wire_may_deliver()

    @property
    def tx_log(self) -> bytes:
        """Every byte the guest has transmitted (outside loopback)."""
        return bytes(self._tx_log)

    def clear_tx_log(self) -> None:
        self._tx_log.clear()

    def set_modem_status(self, *, cts: bool | None = None, dsr: bool | None = None,
                         ri: bool | None = None, dcd: bool | None = None) -> None:
        """Change the modem input lines (those not given keep their level)."""
        before = self.modem_inputs()
        for bit, level in ((MSR_CTS, cts), (MSR_DSR, dsr), (MSR_RI, ri), (MSR_DCD, dcd)):
            if level is not None:
                self.external_inputs = (self.external_inputs & ~bit) | (bit if level else 0)
        self._note_input_change(before)
        self._update_irq()

    # ------------------------------------------------------------------ ports
    def port_read(self, port: int, size: int) -> int:
        value = 0
        for i in range(size):                # a wide access is successive byte accesses
            value |= self._read_byte(port + i - self.base) << (8 * i)
        return value

    def port_write(self, port: int, size: int, value: int) -> None:
        for i in range(size):
            self._write_byte(port + i - self.base, value >> (8 * i) & 0xFF)

    def _read_byte(self, offset: int) -> int:
        if not 0 <= offset < PORT_COUNT:
            return 0xFF
        if self.lcr & LCR_DLAB and offset in (DLL, DLM):
            return self.divisor >> (8 * offset) & 0xFF
        return self._readers[offset]()

    def _write_byte(self, offset: int, value: int) -> None:
        if not 0 <= offset < PORT_COUNT:
            return
        if self.lcr & LCR_DLAB and offset in (DLL, DLM):
            shift = 8 * offset
            self.divisor = (self.divisor & ~(0xFF << shift)) | (value << shift)
            return
        self._writers[offset](value)

    # ------------------------------------------------------------ registers
    def _read_rbr(self) -> int:
        if self.rx:
            self.rbr = self.rx.popleft()
        self.timeout_pending = False
        self._restart_timeout(self.clock.now)
        self._wire_may_deliver()
        self._arm()
        self._update_irq()
        return self.rbr

    def _read_iir(self) -> int:
        ident = self.interrupt_id()
        if ident == IIR_THR_EMPTY:
            self.thr_empty_pending = False
            self._update_irq()
        return ident | (IIR_FIFOS_ENABLED if self.fifo_enabled else 0)

    def _read_lsr(self) -> int:
        value = self.line_status()
        self.lsr_errors = 0
        self._update_irq()
        return value

    def _read_msr(self) -> int:
        value = self.modem_inputs() | self.msr_delta
        self.msr_delta = 0
        self._update_irq()
        return value

    def _write_thr(self, value: int) -> None:
        self.thr_empty_pending = False
        self._update_irq()                   # the write clears the THRE interrupt...
        if self.loopback:
            self._receive(value, self.clock.now)
            self._arm()
        else:
            self._tx_log.append(value)
            if self.on_tx is not None:
                self.on_tx(value)
        self.thr_empty_pending = True        # ...and the instant transmit sets it again
        self._update_irq()

    def _write_ier(self, value: int) -> None:
        value &= IER_MASK
        if value & IER_THR_EMPTY and not self.ier & IER_THR_EMPTY:
            self.thr_empty_pending = True    # THR is always empty here
        self.ier = value
        self._update_irq()

    def _write_fcr(self, value: int) -> None:
        was_enabled = self.fifo_enabled
        if not value & FCR_ENABLE:
            self.fcr = 0
            if was_enabled:
                self._clear_rx_fifo()
        else:
            self.fcr = value & FCR_STORED
            if not was_enabled or value & FCR_CLEAR_RX:
                self._clear_rx_fifo()
            # FCR_CLEAR_TX: the transmit FIFO is always empty (instant transmit).
        self._arm()
        self._update_irq()

    def _write_lcr(self, value: int) -> None:
        self.lcr = value

    def _write_mcr(self, value: int) -> None:
        before = self.modem_inputs()
        self.mcr = value & MCR_MASK
        self._note_input_change(before)
        if self.loopback:
            self.next_arrival = None         # the wire is disconnected: its bytes wait
        else:
            self._wire_may_deliver()         # (re)connected
        self._arm()
        self._update_irq()

    def _write_scr(self, value: int) -> None:
        self.scr = value

    # ----------------------------------------------------------- status views
    @property
    def fifo_enabled(self) -> bool:
        return bool(self.fcr & FCR_ENABLE)

    @property
    def loopback(self) -> bool:
        return bool(self.mcr & MCR_LOOP)

    @property
    def trigger_level(self) -> int:
        return TRIGGER_LEVELS[self.fcr >> FCR_TRIGGER_SHIFT]

    @property
    def rx_capacity(self) -> int:
        return FIFO_SIZE if self.fifo_enabled else 1

    def line_status(self) -> int:
        """LSR without the read side effect."""
        return (LSR_DR if self.rx else 0) | self.lsr_errors | LSR_THRE | LSR_TEMT

    def modem_inputs(self) -> int:
        """The MSR's upper nibble: the external lines, or MCR outputs in loopback."""
        if not self.loopback:
            return self.external_inputs
        return sum(msr_bit for mcr_bit, msr_bit in _LOOPBACK_WIRING if self.mcr & mcr_bit)

    def _note_input_change(self, before: int) -> None:
        after = self.modem_inputs()
        changed = before ^ after
        for line, delta in _DELTA_OF_INPUT:
            if changed & line:
                self.msr_delta |= delta
        if before & MSR_RI and not after & MSR_RI:
            self.msr_delta |= MSR_TERI

    # ------------------------------------------------------------- interrupts
    def _interrupt_sources(self):
        """(IIR code, pending?) in the datasheet's priority order."""
        ier = self.ier
        yield IIR_LINE_STATUS, ier & IER_LINE_STATUS and self.lsr_errors
        yield IIR_RX_DATA, ier & IER_RX_DATA and (len(self.rx) >= self.trigger_level
                                                  if self.fifo_enabled else self.rx)
        yield IIR_CHAR_TIMEOUT, ier & IER_RX_DATA and self.fifo_enabled and self.timeout_pending
        yield IIR_THR_EMPTY, ier & IER_THR_EMPTY and self.thr_empty_pending
        yield IIR_MODEM_STATUS, ier & IER_MODEM_STATUS and self.msr_delta

    def interrupt_id(self) -> int:
        """The IIR's low four bits, without the read side effect."""
        for code, pending in self._interrupt_sources():
            if pending:
                return code
        return IIR_NO_INTERRUPT

    def irq_asserted(self) -> bool:
        if self.interrupt_id() == IIR_NO_INTERRUPT:
            return False
        if self.out2_gates_irq:
            return bool(self.mcr & MCR_OUT2) and not self.loopback
        return True

    def _update_irq(self) -> None:
        self.irq.set(self.irq_asserted())

    # --------------------------------------------------------------- receiver
    # Two receiver events have exact virtual times: ``next_arrival`` (the next
    # wire byte reaches the receiver) and ``timeout_deadline`` (the character
    # timeout).  One clock timer wakes the device at the earlier of them; the
    # wake-up replays every event due, in time order, at its own time, so a
    # late wake-up (a long clock advance) gives the same result as a prompt one.
    def character_time(self) -> int:
        """Instructions one character takes on the line at the current LCR/divisor."""
        word = 5 + (self.lcr & LCR_WORD_LENGTH)
        if not self.lcr & LCR_TWO_STOP_BITS:
            stop_halves = 2
        else:
            stop_halves = 3 if word == 5 else 4          # 1.5 or 2 stop bits
        parity = 1 if self.lcr & LCR_PARITY else 0
        half_bits = 2 * (1 + word + parity) + stop_halves
        divisor = self.divisor or 0x10000
        return max(1, half_bits * divisor * self.clock.ips // (2 * BAUD_BASE))

    def _receiver_full(self) -> bool:
        return len(self.rx) >= self.rx_capacity

    def _receive(self, byte: int, when: int) -> None:
        """A byte reaches the receiver at ``when`` (from the wire or looped back)."""
        if self._receiver_full():
            self.lsr_errors |= LSR_OE
            if not self.fifo_enabled:
                self.rx[-1] = byte           # the holding register is overwritten
        else:
            self.rx.append(byte)
        self._restart_timeout(when)

    def _restart_timeout(self, when: int) -> None:
        if self.fifo_enabled and self.rx:
            self.timeout_deadline = when + TIMEOUT_CHARACTERS * self.character_time()
        else:
            self.timeout_deadline = None

    def _clear_rx_fifo(self) -> None:
        self.rx.clear()
        self.timeout_pending = False
        self.timeout_deadline = None
        self._wire_may_deliver()

    def _wire_may_deliver(self) -> None:
        """Start the next wire byte on its way if there is one and it may arrive:
        a held byte one instruction after the receiver has room, any other
        one character time from now."""
        if self.next_arrival is not None or not self.wire or self.loopback:
            return
        if self.held:
            if self._receiver_full():
                return
            self.next_arrival = self.clock.now + 1
        else:
            self.next_arrival = self.clock.now + self.character_time()
        self._arm()

    def _catch_up(self) -> None:
        now = self.clock.now
        while self.next_arrival is not None and self.next_arrival <= now:
            at = self.next_arrival
            self._timeout_until(at - 1)
            self.next_arrival = None
            if self.flow_control and self._receiver_full():
                self.held = True             # waits at the end of the wire for room
                break
            self.held = False
            self._receive(self.wire.popleft(), at)
            if self.wire:
                self.next_arrival = at + self.character_time()
        self._timeout_until(now)

    def _timeout_until(self, t: int) -> None:
        if self.timeout_deadline is not None and self.timeout_deadline <= t:
            self.timeout_deadline = None
            self.timeout_pending = True

    def _arm(self) -> None:
        """(Re)schedule the wake-up for the earlier receiver event."""
        times = [t for t in (self.next_arrival, self.timeout_deadline) if t is not None]
        deadline = min(times) if times else None
        if self._wakeup is not None:
            if not self._wakeup.cancelled and self._wakeup.deadline == deadline:
                return
            self._wakeup.cancel()
            self._wakeup = None
        if deadline is not None:
            self._wakeup = self.clock.at(deadline, self._woken, f"{self.name}.rx")

    def _woken(self, now: int) -> None:
        self._wakeup = None
        self._catch_up()
        self._arm()
        self._update_irq()

    def _cancel_wakeup(self) -> None:
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None


def _ignore(value: int) -> None:
    """LSR and MSR writes (factory test registers) are dropped."""


