"""Intel 8254 programmable interval timer (ports 0x40-0x43) and the AT's
system control port B (0x61).

Modelled (Intel 8254 datasheet; IBM PC AT technical reference):

- Three counters clocked at 1.193182 MHz.  Virtual time is converted to
  clock pulses on one global grid: pulse ``k`` happens at instruction time
  ``ceil(k * ips / 1193182)``, so ``tick(now) = now * 1193182 // ips`` pulses
  have occurred by ``now``.  Counter values read by the guest are computed
  from ``clock.now``; nothing counts in the background.
- Control word (0x43): counter select, access mode (LSB, MSB, LSB then MSB),
  mode 0-5 (6 and 7 act as 2 and 3; the status byte returns the bits as
  written), BCD flag.  Counter latch command (RW=00) and read-back command
  (0xC0-0xFF: latch count and/or status of any counter set; a pending latch is
  not overwritten; with both latched the status is read first).  Status byte:
  OUT, NULL COUNT, RW, M, BCD.  Writing the control word resets the counter's
  logic: OUT goes to its initial level (low in mode 0, high otherwise) and the
  counter waits for a count.
- Counts: 0 means 65536 (10000 in BCD).  A count is loaded into the counting
  element on the clock pulse after it is written (so mode 0 OUT rises N+1
  pulses after the write, as in the datasheet).  In mode 0 writing the first
  byte of a two-byte count stops counting and drives OUT low.  In modes 2 and
  3 a count written while counting takes effect at the end of the current
  period; in modes 1 and 5 at the next gate trigger.
- Modes: 0 interrupt on terminal count; 1 hardware retriggerable one-shot
  (gate rising edge); 2 rate generator (OUT low for the one pulse at count 1,
  period N); 3 square wave (OUT high for ceil(N/2), low for floor(N/2)
  pulses, period N); 4 software strobe and 5 hardware strobe (OUT low for one
  pulse at terminal count).  Gate: low suspends counting in modes 0, 2, 3, 4;
  in modes 2 and 3 it also forces OUT high and its rising edge restarts the
  period; in modes 1 and 5 a rising edge triggers.  After terminal count in
  modes 0, 1, 4, 5 the counter wraps to 0xFFFF (9999) and keeps counting.
- Counter 0's OUT drives an ``IrqLine`` (IRQ0, edge triggered at the PIC):
  the line follows OUT exactly, driven by clock timers at the instruction
  deadlines of OUT's transitions (two per period in modes 2 and 3, so a mode
  2 divisor N gives a rising edge every N/1193182 virtual seconds; one for a
  mode 0 one-shot).  Any transition still due when the guest touches the PIT
  is applied first, so edges are never lost to a late ``clock.advance``.
  Counter 1 (DRAM refresh) has no output; counter 2's OUT is read through
  port 0x61, and its gate is port 0x61 bit 0 (counters 0 and 1 have their
  gates tied high, as on the AT).
- ``SystemControlPortB`` (0x61): bit 0 counter 2 gate, bit 1 speaker data
  enable, bits 2-3 parity/channel check enables (stored), read-only bit 4
  refresh request toggle (flips every 15.085 us of virtual time, the AT's
  refresh period, independent of counter 1's programming), bit 5 counter 2
  OUT, bits 6-7 (IOCHK, parity error) read 0.

Approximations (documented deviations): in mode 3 with an odd count the value
read is ``N - (2e mod N)`` (QEMU's formula) rather than the chip's exact
N-1/N-3... sequence, and a count written during counting takes effect at the
end of the period rather than the half-period.  BCD counters count exactly
in decimal (values are converted on read and write); a count with digits
above 9 is taken digit by digit (``0x00A0`` is 100) and reduced modulo 10000.
Counts of 1 in modes 2 and 3 (illegal per the datasheet) give a constant
OUT (low in mode 2, high in mode 3).  Power-on state: every counter idle in
mode 0 with LSB-then-MSB access, OUT low (the datasheet leaves it undefined;
``program`` sets a counter up as firmware would).  Not modelled: the speaker
sound itself (``SystemControlPortB.speaker_output`` says whether the speaker
would be driven), reads of port 0x43 (0xFF), the gate's sampling on clock
edges (it acts at the pulse following the access).

Invariants: every public entry point first brings counter outputs up to
``tick(clock.now)``; each counter's state is plain fields (``Counter.FIELDS``)
and the only timer is counter 0's next OUT transition, recorded as a pulse
number (``edge_tick``) in the snapshot.
"""

from __future__ import annotations

from ..bus import read_bytewise, write_bytewise
from ..clock import Clock, Timer
from ..irq import IrqLine

PIT_HZ = 1_193_182
PIT_BASE = 0x40
CONTROL_PORT = 0x43
PORT_B = 0x61
REFRESH_HALF_PERIOD_NS = 15_085

ACCESS_LATCH, ACCESS_LSB, ACCESS_MSB, ACCESS_WORD = 0, 1, 2, 3
READ_BACK = 3                       # counter-select value of the read-back command
RB_NO_COUNT, RB_NO_STATUS = 0x20, 0x10

ONE_SHOT_MODES = (0, 1, 4, 5)
PERIODIC_MODES = (2, 3)
TRIGGERED_MODES = (1, 5)


def to_bcd(value: int) -> int:
    return int(str(value % 10000), 16)


def from_bcd(raw: int) -> int:
    return sum(((raw >> (4 * i)) & 0xF) * 10 ** i for i in range(4))


class Counter:
    """One 8254 counter.  Methods take ``g``, the current clock-pulse number.

    The counting element is described by ``load_tick`` L and ``start``: at
    pulse L it holds ``start`` (one-shot modes) or the period N (periodic
    modes) and decrements once per pulse after that; ``frozen`` is what it
    reads while idle, held by the gate, or before L.
    """

    FIELDS = ("mode", "mode_bits", "access", "bcd", "cr", "cr_valid", "write_lsb",
              "read_msb", "latch", "status", "gate", "counting", "load_tick", "start",
              "done", "held", "frozen", "pre_out", "next_period", "reload_tick",
              "null_until")

    def __init__(self, gate: bool):
        self.gate = gate
        self.reset()

    def reset(self) -> None:
        self.mode = self.mode_bits = 0
        self.access = ACCESS_WORD
        self.bcd = False
        self.cr = 0
        self.cr_valid = False
        self.write_lsb: int | None = None      # first byte of a two-byte count
        self.read_msb = False                  # next unlatched word read is the MSB
        self.latch: list[int] = []             # latched count bytes still to read
        self.status: int | None = None         # latched status byte
        self._idle(0)

    def _idle(self, frozen: int) -> None:
        self.counting = False
        self.load_tick = 0
        self.start = 0
        self.done = False
        self.held = False
        self.frozen = frozen
        self.pre_out = False
        self.next_period: int | None = None
        self.reload_tick: int | None = None
        self.null_until: int | None = None     # CE takes CR at this pulse; None = not yet

    @property
    def modulus(self) -> int:
        return 10000 if self.bcd else 0x10000

    # -- the counting element as a function of time ---------------------------

    def sync(self, g: int) -> None:
        """Apply a mode 2/3 reload whose time has come."""
        if self.reload_tick is not None and not self.held and g >= self.reload_tick:
            self.load_tick, self.start = self.reload_tick, self.next_period
            self.next_period = self.reload_tick = None

    def value(self, g: int) -> int:
        """The counting element at pulse ``g`` (binary, 0 .. modulus-1)."""
        if not self.counting or self.held or g < self.load_tick:
            return self.frozen
        e, n = g - self.load_tick, self.start
        if self.mode == 2:
            return (n - e % n) % self.modulus
        if self.mode == 3:
            return (n - (2 * e) % n) % self.modulus
        return (n - e) % self.modulus

    def out(self, g: int) -> bool:
        """The OUT pin at pulse ``g``."""
        mode = self.mode
        if not self.counting:
            return mode != 0
        if self.held:
            return self.done if mode == 0 else True
        if g < self.load_tick:
            return self.pre_out
        e, n = g - self.load_tick, self.start
        if mode in (0, 1):
            return self.done or e >= n
        if mode in (4, 5):
            return self.done or e != n
        if mode == 2:
            return e % n != n - 1
        return e % n < (n + 1) // 2

    def next_edge(self, g: int) -> int | None:
        """The first pulse after ``g`` at which OUT changes, or None."""
        if not self.counting or self.held:
            return None
        lt, n = self.load_tick, self.start
        candidates = [lt]
        if self.mode in ONE_SHOT_MODES:
            candidates += [lt + n, lt + n + 1]
        else:
            fall = n - 1 if self.mode == 2 else (n + 1) // 2
            base = lt + (max(g + 1 - lt, 0) // n) * n
            candidates += [base, base + fall, base + n, base + n + fall]
        for t in sorted(set(candidates)):
            if t > g and self.out(t) != self.out(t - 1):
                return t
        return None

    def null_count(self, g: int) -> bool:
        return self.null_until is None or g < self.null_until

    # -- guest operations ---------------------------------------------------------

    def program(self, g: int, control: int) -> None:
        """Control word with RW != 0."""
        self.frozen = self.value(g)
        self.mode_bits = (control >> 1) & 7
        self.mode = self.mode_bits - 4 if self.mode_bits >= 6 else self.mode_bits
        self.access = (control >> 4) & 3
        self.bcd = bool(control & 1)
        self.cr_valid = False
        self.write_lsb = None
        self.read_msb = False
        self.latch = []
        self.status = None
        self._idle(self.frozen % self.modulus)

    def latch_count(self, g: int) -> None:
        if self.latch:
            return
        v = self._encode(self.value(g))
        lsb, msb = v & 0xFF, v >> 8
        self.latch = {ACCESS_LSB: [lsb], ACCESS_MSB: [msb], ACCESS_WORD: [lsb, msb]}[self.access]

    def latch_status(self, g: int) -> None:
        if self.status is None:
            self.status = (self.out(g) << 7 | self.null_count(g) << 6 | self.access << 4
                           | self.mode_bits << 1 | int(self.bcd))

    def read(self, g: int) -> int:
        if self.status is not None:
            s, self.status = self.status, None
            return s
        if self.latch:
            return self.latch.pop(0)
        v = self._encode(self.value(g))
        msb = self.access == ACCESS_MSB
        if self.access == ACCESS_WORD:
            msb, self.read_msb = self.read_msb, not self.read_msb
        return v >> 8 if msb else v & 0xFF

    def write(self, g: int, byte: int) -> None:
        if self.access == ACCESS_LSB:
            self.load(g, byte)
        elif self.access == ACCESS_MSB:
            self.load(g, byte << 8)
        elif self.write_lsb is None:
            self.write_lsb = byte
            if self.mode == 0:                 # first byte stops counting, OUT low
                self._idle(self.value(g))
        else:
            lsb, self.write_lsb = self.write_lsb, None
            self.load(g, lsb | byte << 8)

    def _encode(self, v: int) -> int:
        return to_bcd(v) if self.bcd else v

    def load(self, g: int, raw: int) -> None:
        """A complete count ``raw`` written to the count register at pulse g."""
        self.cr, self.cr_valid = raw, True
        n = (from_bcd(raw) if self.bcd else raw) % self.modulus or self.modulus
        if self.mode in TRIGGERED_MODES:
            self.null_until = None             # loaded at the next trigger
        elif self.mode in PERIODIC_MODES and self.counting and not self.held and g >= self.load_tick:
            lt, period = self.load_tick, self.start
            self.reload_tick = lt + ((g - lt) // period + 1) * period
            self.next_period = n
            self.null_until = self.reload_tick
        else:
            self._begin(g, n, pre_out=self.mode != 0 and self.out(g), held=not self.gate)

    def _begin(self, g: int, n: int, pre_out: bool, held: bool = False) -> None:
        """The CE takes ``n`` at the pulse after ``g`` (and sits there while
        ``held`` by a low gate)."""
        self._idle(n if held else self.value(g))
        self.counting = True
        self.load_tick = g + 1
        self.start = n
        self.pre_out = pre_out
        self.held = held
        self.null_until = g + 1

    def set_gate(self, g: int, level: bool) -> None:
        if level == self.gate:
            return
        self.gate = level
        if self.mode in TRIGGERED_MODES:
            if level and self.cr_valid:
                n = (from_bcd(self.cr) if self.bcd else self.cr) % self.modulus or self.modulus
                self._begin(g, n, pre_out=self.out(g))
        elif not self.counting:
            pass
        elif level:
            self._release(g)
        else:
            self._hold(g)

    def _hold(self, g: int) -> None:
        """Gate fell: freeze the CE (modes 0, 4) or stop the period (2, 3)."""
        if self.mode in PERIODIC_MODES:
            self.frozen = self.value(g)
            if self.next_period is not None:   # a pending count starts the next run
                self.start, self.next_period, self.reload_tick = self.next_period, None, None
        elif g >= self.load_tick:
            e = g - self.load_tick
            if e >= self.start:
                self.done = True
                self.start = (self.start - e) % self.modulus
            else:
                self.start -= e
            self.load_tick = g
            self.frozen = self.start % self.modulus
        else:
            self.frozen = self.start % self.modulus
        self.held = True

    def _release(self, g: int) -> None:
        """Gate rose: resume counting (modes 0, 4) or restart the period (2, 3)."""
        self.held = False
        if self.mode in PERIODIC_MODES:
            self.load_tick, self.pre_out = g + 1, True
        else:
            self.load_tick = max(g, self.load_tick)

    # -- state --------------------------------------------------------------------

    def snapshot(self) -> dict:
        state = {f: getattr(self, f) for f in self.FIELDS}
        state["latch"] = list(self.latch)
        return state

    def restore(self, state: dict) -> None:
        for f in self.FIELDS:
            setattr(self, f, state[f])
        self.latch = list(state["latch"])


class Pit:
    """The 8254 at ports 0x40-0x43.  ``irq0`` is the line counter 0's OUT
    drives (``pic.irq_line(0)``); ``clock`` supplies virtual time."""

    name = "pit"

    def __init__(self, clock: Clock, irq0: IrqLine | None = None):
        self.clock = clock
        self.irq0 = irq0 if irq0 is not None else IrqLine("pit-out0")
        self.counters = [Counter(gate=True), Counter(gate=True), Counter(gate=False)]
        self.edge_tick: int | None = None       # counter 0's next OUT transition
        self._timer: Timer | None = None
        self.reset()

    def attach(self, bus) -> None:
        bus.add(PIT_BASE, CONTROL_PORT + 1, self, "pit")

    # -- time ---------------------------------------------------------------------

    def tick(self, now: int | None = None) -> int:
        """Clock pulses that have occurred by instruction time ``now``."""
        now = self.clock.now if now is None else now
        return now * PIT_HZ // self.clock.ips

    def time_of(self, tick: int) -> int:
        """The instruction time of clock pulse ``tick``."""
        return -(-tick * self.clock.ips // PIT_HZ)

    def _enter(self) -> int:
        """Catch counter 0's output up to now; returns the current pulse."""
        g = self.tick()
        while self.edge_tick is not None and self.edge_tick <= g:
            self._edge(self.edge_tick)
        for c in self.counters:
            c.sync(g)
        return g

    def _edge(self, t: int) -> None:
        c = self.counters[0]
        c.sync(t)
        self.irq0.set(c.out(t))
        self._schedule(c.next_edge(t))

    def _on_timer(self, _now: int) -> None:
        self._timer = None
        if self.edge_tick is not None:
            self._edge(self.edge_tick)

    def _schedule(self, t: int | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.edge_tick = t
        if t is not None:
            self._timer = self.clock.at(self.time_of(t), self._on_timer, "pit-out0")

    def _leave(self, g: int) -> None:
        """After a state change: drive OUT0 and re-arm its transition timer."""
        c = self.counters[0]
        self.irq0.set(c.out(g))
        self._schedule(c.next_edge(g))

    # -- ports ----------------------------------------------------------------------

    def port_read(self, port: int, size: int) -> int:
        """Wider accesses act as byte accesses on consecutive ports."""
        return read_bytewise(self._read_byte, port, size)

    def port_write(self, port: int, size: int, value: int) -> None:
        write_bytewise(self._write_byte, port, size, value)

    def _read_byte(self, port: int) -> int:
        if not PIT_BASE <= port < CONTROL_PORT:
            return 0xFF
        g = self._enter()
        return self.counters[port - PIT_BASE].read(g)

    def _write_byte(self, port: int, value: int) -> None:
        if not PIT_BASE <= port <= CONTROL_PORT:
            return
        g = self._enter()
        if port == CONTROL_PORT:
            self._control(g, value)
        else:
            self.counters[port - PIT_BASE].write(g, value)
        self._leave(g)

    def _control(self, g: int, value: int) -> None:
        select, access = value >> 6, (value >> 4) & 3
        if select == READ_BACK:
            self._read_back(g, value)
        elif access == ACCESS_LATCH:
            self.counters[select].latch_count(g)
        else:
            self.counters[select].program(g, value)

    def _read_back(self, g: int, value: int) -> None:
        for i, c in enumerate(self.counters):
            if value & (2 << i):
                if not value & RB_NO_COUNT:
                    c.latch_count(g)
                if not value & RB_NO_STATUS:
                    c.latch_status(g)

    # -- other inputs and views ---------------------------------------------------------

    def set_gate(self, channel: int, level: bool) -> None:
        """Drive a counter's GATE input (counter 2's is port 0x61 bit 0)."""
        g = self._enter()
        self.counters[channel].set_gate(g, bool(level))
        self._leave(g)

    def output(self, channel: int) -> bool:
        """A counter's OUT pin now."""
        g = self._enter()
        return self.counters[channel].out(g)

    def count(self, channel: int) -> int:
        """A counter's current counting element (binary), without latching."""
        g = self._enter()
        return self.counters[channel].value(g)

    def program(self, channel: int, mode: int, count: int, bcd: bool = False) -> None:
        """Set a counter up as firmware would (control word, LSB, MSB)."""
        self.port_write(CONTROL_PORT, 1, channel << 6 | ACCESS_WORD << 4 | mode << 1 | int(bcd))
        self.port_write(PIT_BASE + channel, 1, count & 0xFF)
        self.port_write(PIT_BASE + channel, 1, (count >> 8) & 0xFF)

    # -- Device protocol ------------------------------------------------------------------

    def reset(self) -> None:
        for i, c in enumerate(self.counters):
            c.gate = i != 2
            c.reset()
        self._leave(self.tick())

    def snapshot(self) -> dict:
        return {"counters": [c.snapshot() for c in self.counters],
                "edge_tick": self.edge_tick, "out0": self.irq0.level}

    def restore(self, state: dict) -> None:
        for c, s in zip(self.counters, state["counters"]):
            c.restore(s)
        self.irq0.set(state["out0"])
        self._schedule(state["edge_tick"])


class SystemControlPortB:
    """Port 0x61 of the AT (see the module docstring): counter 2's gate and
    output, the speaker enable and the refresh toggle."""

    name = "port61"
    WRITABLE = 0x0F
    GATE2, SPEAKER, REFRESH, OUT2 = 0x01, 0x02, 0x10, 0x20

    def __init__(self, clock: Clock, pit: Pit):
        self.clock = clock
        self.pit = pit
        self.reset()

    def attach(self, bus) -> None:
        bus.add(PORT_B, PORT_B + 1, self, "port61")

    def refresh_toggle(self) -> bool:
        """Flips every 15.085 us of virtual time."""
        half_periods = self.clock.now * 1_000_000_000 // (self.clock.ips * REFRESH_HALF_PERIOD_NS)
        return bool(half_periods & 1)

    def port_read(self, port: int, size: int) -> int:
        v = (self.value | self.REFRESH * self.refresh_toggle()
             | self.OUT2 * self.pit.output(2))
        return v | ((1 << (8 * size)) - 1) & ~0xFF        # bytes beyond 0x61: open bus

    def port_write(self, port: int, size: int, value: int) -> None:
        self.value = value & self.WRITABLE
        self.pit.set_gate(2, bool(value & self.GATE2))

    def speaker_output(self) -> bool:
        """Whether the speaker is driven high now (enable and counter 2 OUT)."""
        return bool(self.value & self.SPEAKER) and self.pit.output(2)

    def reset(self) -> None:
        """The register only; counter 2's gate is reset with the PIT."""
        self.value = 0

    def snapshot(self) -> dict:
        return {"value": self.value}

    def restore(self, state: dict) -> None:
        """The register only: the PIT's snapshot holds counter 2's gate."""
        self.value = state["value"]
