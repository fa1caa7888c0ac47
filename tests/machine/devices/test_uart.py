"""16550A UART: what a serial driver observes through the ports."""

from __future__ import annotations

import pytest

from tvmm.machine.bus import PortBus
from tvmm.machine.clock import Clock
from tvmm.machine.devices.uart import COM1_BASE, COM2_BASE, Uart
from tvmm.machine.irq import IrqLine

BASE = COM1_BASE
RBR, THR, IER, IIR, FCR, LCR, MCR, LSR, MSR, SCR = 0, 0, 1, 2, 2, 3, 4, 5, 6, 7
DLAB = 0x80
OUT2, LOOP = 0x08, 0x10
DR, OE, THRE, TEMT = 0x01, 0x02, 0x20, 0x40


class Rig:
    def __init__(self, clock=None, base=BASE, **kw):
        self.clock = clock or Clock()
        self.bus = PortBus()
        self.levels: list[bool] = []
        self.irq = IrqLine("irq4", sink=self.levels.append)
        self.sent: list[int] = []
        self.uart = Uart(self.clock, self.irq, base, on_tx=self.sent.append, **kw)
        self.uart.attach(self.bus)
        self.base = base

    def w(self, reg, value):
        self.bus.port_out(self.base + reg, 1, value)

    def r(self, reg):
        return self.bus.port_in(self.base + reg, 1)

    def chars(self, n):
        """Advance virtual time by ``n`` character times (plus one instruction)."""
        self.clock.advance(self.clock.now + n * self.uart.character_time())

    def xv6_init(self, fifo=0x00):
        """The sequence xv6's uartinit performs (plus OUT2, which a PC needs)."""
        self.w(FCR, fifo)
        self.w(LCR, DLAB)
        self.w(0, 115200 // 9600)
        self.w(1, 0)
        self.w(LCR, 0x03)
        self.w(MCR, OUT2)
        self.w(IER, 0x01)
        assert self.r(LSR) != 0xFF
        self.r(IIR)
        self.r(RBR)

    def putc(self, c):
        for _ in range(128):
            if self.r(LSR) & THRE:
                break
        self.w(THR, c)

    def getc(self):
        return self.r(RBR) if self.r(LSR) & DR else -1


@pytest.fixture
def rig():
    return Rig()


# ---------------------------------------------------------------- registers
def test_power_on_registers(rig):
    assert rig.r(IER) == 0
    assert rig.r(IIR) == 0x01
    assert rig.r(LCR) == 0
    assert rig.r(MCR) == 0
    assert rig.r(LSR) == THRE | TEMT
    assert rig.r(MSR) == 0xB0                     # CTS, DSR, DCD from an attached terminal
    assert rig.irq.level is False


def test_present_uart_never_reads_lsr_as_ff_and_absent_port_does():
    a = Rig()
    assert a.r(LSR) != 0xFF
    assert a.bus.port_in(COM2_BASE + LSR, 1) == 0xFF   # nothing at COM2
    b = Rig(base=COM2_BASE)
    assert b.r(LSR) == THRE | TEMT
    assert b.bus.port_in(COM2_BASE + 8, 1) == 0xFF     # claims exactly 8 ports


def test_divisor_latch_and_register_readback(rig):
    rig.w(LCR, DLAB | 0x03)
    rig.w(0, 0x01)
    rig.w(1, 0x02)
    assert rig.uart.divisor == 0x0201
    assert rig.r(0) == 0x01 and rig.r(1) == 0x02
    rig.w(LCR, 0x03)
    rig.w(IER, 0xFF)
    assert rig.r(IER) == 0x0F                      # only four interrupt enables
    assert rig.uart.divisor == 0x0201              # IER write did not touch DLM
    rig.w(SCR, 0x5A)
    assert rig.r(SCR) == 0x5A
    rig.w(MCR, 0xFF)
    assert rig.r(MCR) == 0x1F
    assert rig.r(LCR) == 0x03


def test_character_time_follows_divisor_and_frame_format():
    rig = Rig(Clock(ips=115_200_000))               # 1000 instructions per bit at divisor 1
    rig.w(LCR, DLAB)
    rig.w(0, 1)
    rig.w(LCR, 0x03)                               # 8N1: 10 bits
    assert rig.uart.character_time() == 10_000
    rig.w(LCR, 0x03 | 0x08 | 0x04)                 # 8 data, parity, 2 stop: 12 bits
    assert rig.uart.character_time() == 12_000
    rig.w(LCR, 0x04)                               # 5 data, 1.5 stop: 7.5 bits
    assert rig.uart.character_time() == 7_500


# ----------------------------------------------------------------- transmit
def test_polled_transmit_loop_reaches_console(rig):
    rig.xv6_init()
    for c in b"xv6...\n":
        rig.putc(c)
    assert rig.uart.tx_log == b"xv6...\n"
    assert bytes(rig.sent) == b"xv6...\n"
    assert rig.r(LSR) & (THRE | TEMT) == THRE | TEMT


def test_thr_empty_interrupt_raised_on_enable_cleared_by_iir_read_and_thr_write(rig):
    rig.w(MCR, OUT2)
    rig.w(IER, 0x02)
    assert rig.irq.level is True                   # THR is empty: interrupt at once
    assert rig.r(IIR) == 0x02
    assert rig.irq.level is False                  # reading IIR cleared it
    assert rig.r(IIR) == 0x01
    rig.levels.clear()
    rig.w(THR, ord("A"))                           # transmits at once: THR empty again
    assert rig.levels == [True]
    assert rig.r(IIR) == 0x02
    rig.w(IER, 0x02)                               # re-writing an enabled ETBEI: no new source
    assert rig.r(IIR) == 0x01
    rig.w(THR, ord("B"))
    rig.levels.clear()
    rig.w(THR, ord("C"))                           # while pending: the write drops then re-raises
    assert rig.levels == [False, True]
    assert rig.uart.tx_log == b"ABC"


# ------------------------------------------------------------------ receive
def test_receive_without_fifo_one_byte_per_character_time(rig):
    rig.xv6_init()
    rig.levels.clear()
    rig.uart.feed(b"hi")
    assert rig.getc() == -1                        # still on the wire
    rig.chars(1)
    assert rig.irq.level is True
    assert rig.r(IIR) == 0x04
    assert rig.getc() == ord("h")
    assert rig.irq.level is False
    assert rig.getc() == -1
    rig.chars(1)
    assert rig.getc() == ord("i")
    assert rig.levels == [True, False, True, False]


def test_overrun_without_fifo_overwrites_holding_register(rig):
    rig.xv6_init()
    rig.w(IER, 0x05)                               # data + line status
    rig.uart.feed(b"ab")
    rig.chars(2)
    assert rig.r(IIR) == 0x06                      # line status outranks data
    lsr = rig.r(LSR)
    assert lsr & (DR | OE) == DR | OE
    assert rig.r(LSR) & OE == 0                    # cleared by the read
    assert rig.r(IIR) == 0x04
    assert rig.r(RBR) == ord("b")                  # 'a' was destroyed


def test_fifo_trigger_level_interrupt_and_iir_fifo_bits(rig):
    rig.xv6_init(fifo=0xC7)                        # enable, clear both, trigger 14
    assert rig.r(IIR) & 0xC0 == 0xC0
    rig.uart.feed(bytes(range(0x41, 0x41 + 20)))
    rig.chars(13)
    assert rig.r(LSR) & DR
    assert rig.r(IIR) == 0xC1                      # below the trigger: no interrupt yet
    assert rig.irq.level is False
    rig.chars(1)
    assert rig.r(IIR) == 0xC4
    assert rig.irq.level is True
    got = [rig.r(RBR)]
    assert rig.irq.level is False                  # 13 left: below the trigger again
    while rig.r(LSR) & DR:
        got.append(rig.r(RBR))
    assert got == list(range(0x41, 0x41 + 14))


@pytest.mark.parametrize("fcr, level", [(0x01, 1), (0x41, 4), (0x81, 8), (0xC1, 14)])
def test_each_trigger_level(fcr, level):
    rig = Rig()
    rig.xv6_init(fifo=fcr)
    rig.uart.feed(bytes(level))
    rig.chars(level - 1)
    assert rig.r(IIR) & 0x0F != 0x04
    rig.chars(1)
    assert rig.r(IIR) == 0xC4


def test_fifo_overrun_keeps_sixteen_and_loses_the_rest(rig):
    rig.xv6_init(fifo=0x07)
    rig.uart.feed(bytes(range(20)))
    rig.chars(20)
    assert rig.r(LSR) & OE
    got = []
    while rig.r(LSR) & DR:
        got.append(rig.r(RBR))
    assert got == list(range(16))
    assert rig.r(LSR) & OE == 0


def test_character_timeout_after_four_idle_character_times(rig):
    rig.xv6_init(fifo=0x87)                        # trigger 8
    rig.uart.feed(b"abc")
    rig.chars(3)
    assert rig.r(IIR) == 0xC1
    rig.chars(3)
    assert rig.r(IIR) == 0xC1                      # 3 of the 4 idle character times
    rig.chars(1)
    assert rig.r(IIR) == 0xCC
    assert rig.irq.level is True
    assert rig.r(RBR) == ord("a")                  # a read clears it and restarts the timer
    assert rig.r(IIR) == 0xC1
    rig.chars(4)
    assert rig.r(IIR) == 0xCC
    assert rig.r(RBR) == ord("b") and rig.r(RBR) == ord("c")
    rig.chars(10)
    assert rig.r(IIR) == 0xC1                      # empty FIFO: no timeout


def test_character_timeout_restarts_on_each_arrival(rig):
    rig.xv6_init(fifo=0xC7)
    rig.uart.feed(b"a")
    rig.chars(4)                                   # 'a' arrived after 1: 3 idle so far
    rig.uart.feed(b"b")
    rig.chars(1)                                   # 'b' arrives: timer restarts
    rig.chars(3)
    assert rig.r(IIR) == 0xC1
    rig.chars(1)
    assert rig.r(IIR) == 0xCC


def test_fcr_clears_receive_fifo_and_disabling_fifo_drops_data(rig):
    rig.xv6_init(fifo=0x01)
    rig.uart.feed(b"xyz")
    rig.chars(3)
    rig.w(FCR, 0x03)                               # clear RX
    assert rig.r(LSR) & DR == 0
    rig.uart.feed(b"q")
    rig.chars(1)
    rig.w(FCR, 0x00)                               # FIFOs off: cleared
    assert rig.r(LSR) & DR == 0
    assert rig.r(IIR) == 0x01


def test_flow_control_holds_bytes_on_the_wire_instead_of_overrunning():
    rig = Rig(flow_control=True)
    rig.xv6_init(fifo=0x07)
    rig.uart.feed(bytes(range(40)))
    rig.chars(100)
    assert rig.r(LSR) & OE == 0
    got = []
    for _ in range(200):
        if rig.r(LSR) & DR:
            got.append(rig.r(RBR))
        else:
            rig.chars(1)
    assert got == list(range(40))


def test_flow_control_without_fifo_a_slow_poller_gets_every_byte_in_order():
    """No FIFO, a guest that looks only every 7 character times: without flow
    control bytes are overwritten; with it each waits and none is lost."""
    text = b"echo hello tvmm\n"
    results = {}
    for flow in (False, True):
        rig = Rig(flow_control=flow)
        rig.xv6_init()
        rig.w(IER, 0x05)
        rig.uart.feed(text)
        got, overruns = [], 0
        for _ in range(200):
            rig.chars(7)
            overruns += bool(rig.r(LSR) & OE)
            c = rig.getc()
            if c >= 0:
                got.append(c)
        results[flow] = bytes(got), overruns
    assert results[True] == (text, 0)
    assert results[False][1] > 0 and results[False][0] != text


def test_flow_control_changes_nothing_when_the_guest_keeps_up():
    """Arrival times are those of an unpaced line as long as the receiver has room."""
    times = {}
    for flow in (False, True):
        rig = Rig(flow_control=flow)
        rig.xv6_init()
        rig.uart.feed(b"abcdef")
        seen = []
        for _ in range(8 * rig.uart.character_time()):
            rig.clock.advance(rig.clock.now + 1)
            if rig.r(LSR) & DR:
                seen.append((rig.clock.now, rig.r(RBR)))
        times[flow] = seen
    assert times[True] == times[False] and len(times[True]) == 6


def test_flow_control_held_byte_arrives_one_instruction_after_the_read_with_a_new_edge():
    rig = Rig(flow_control=True)
    rig.xv6_init()
    rig.uart.feed(b"xy")
    rig.chars(3)                                   # 'y' is held: the receiver holds 'x'
    assert rig.uart.held and rig.r(LSR) & (DR | OE) == DR
    rig.levels.clear()
    assert rig.r(RBR) == ord("x")
    assert rig.r(LSR) & DR == 0 and rig.irq.level is False
    rig.clock.advance(rig.clock.now + 1)
    assert rig.r(LSR) & DR and rig.irq.level is True
    assert rig.levels == [False, True]
    assert rig.r(RBR) == ord("y") and not rig.uart.held
    state = rig.uart.snapshot()
    assert state["held"] is False and state["wire"] == b""


def test_flow_control_held_byte_survives_snapshot_and_restore():
    rig = Rig(flow_control=True)
    rig.xv6_init()
    rig.uart.feed(b"123")
    rig.chars(5)
    state = rig.uart.snapshot()
    assert state["held"] is True and state["wire"] == b"23"
    other = Rig(clock=Clock(), flow_control=True)
    other.clock.now = rig.clock.now
    other.uart.restore(state)
    got = []
    for r in (rig, other):
        out = []
        for _ in range(50):
            r.chars(1)
            if r.r(LSR) & DR:
                out.append((r.clock.now, r.r(RBR)))
        got.append(out)
    assert got[0] == got[1] and bytes(b for _, b in got[0]) == b"123"


def test_flow_control_loopback_still_overruns():
    rig = Rig(flow_control=True)
    rig.xv6_init()
    rig.w(MCR, OUT2 | LOOP)
    rig.w(THR, 0x41)
    rig.w(THR, 0x42)                               # the guest overruns itself
    assert rig.r(LSR) & (DR | OE) == DR | OE
    assert rig.r(RBR) == 0x42


# --------------------------------------------------------------- interrupts
def test_iir_priorities_line_status_data_thre_modem(rig):
    rig.xv6_init()
    rig.uart.feed(b"12")
    rig.chars(2)                                   # overrun + data
    rig.uart.set_modem_status(cts=False)           # modem status delta
    rig.w(IER, 0x0F)                               # THRE newly enabled: pending too
    assert rig.r(IIR) == 0x06
    rig.r(LSR)
    assert rig.r(IIR) == 0x04
    rig.r(RBR)
    assert rig.r(IIR) == 0x02                      # reading it clears THRE
    assert rig.r(IIR) == 0x00
    assert rig.irq.level is True
    msr = rig.r(MSR)
    assert msr == 0xA1                             # DSR, DCD; DCTS
    assert rig.r(IIR) == 0x01
    assert rig.irq.level is False


def test_out2_gates_the_irq_line_unless_disabled():
    gated, open_ = Rig(), Rig(out2_gates_irq=False)
    for rig in (gated, open_):
        rig.w(IER, 0x01)
        rig.w(MCR, 0x00)                           # xv6 writes MCR = 0
        rig.uart.feed(b"k")
        rig.chars(1)
        assert rig.r(IIR) == 0x04
    assert gated.irq.level is False
    assert open_.irq.level is True
    gated.w(MCR, OUT2)
    assert gated.irq.level is True


def test_modem_status_interrupt_and_delta_bits(rig):
    rig.w(MCR, OUT2)
    rig.w(IER, 0x08)
    assert rig.irq.level is False
    rig.uart.set_modem_status(ri=True)
    assert rig.r(IIR) == 0x01                      # RI rising edge sets no delta
    rig.uart.set_modem_status(ri=False, dcd=False)
    assert rig.r(IIR) == 0x00
    assert rig.r(MSR) == 0x30 | 0x04 | 0x08        # CTS, DSR; TERI, DDCD
    assert rig.r(MSR) == 0x30
    assert rig.irq.level is False


# ----------------------------------------------------------------- loopback
def test_loopback_returns_transmitted_bytes_and_not_to_console(rig):
    rig.w(FCR, 0x07)
    rig.w(MCR, LOOP)
    for c in b"ping":
        rig.w(THR, c)
    assert rig.uart.tx_log == b"" and rig.sent == []
    got = bytes(rig.r(RBR) for _ in range(4))
    assert got == b"ping"
    rig.w(MCR, 0)
    rig.w(THR, ord("!"))
    assert rig.uart.tx_log == b"!"


def test_loopback_modem_lines_follow_mcr(rig):
    rig.w(MCR, LOOP)
    rig.r(MSR)                                     # discard the deltas of entering loopback
    assert rig.r(MSR) == 0x00
    rig.w(MCR, LOOP | 0x0A)                        # RTS + OUT2 -> CTS + DCD (Linux's probe)
    assert rig.r(MSR) & 0xF0 == 0x90
    rig.w(MCR, LOOP | 0x0F)
    assert rig.r(MSR) == 0xF0 | 0x02               # DSR changed (CTS/DCD were already set)
    rig.w(MCR, LOOP | 0x0B)                        # OUT1 (RI) falls: trailing edge
    assert rig.r(MSR) == 0xB4


def test_loopback_interrupts_are_gated_on_a_pc_but_not_in_qemu_mode():
    pc, qemu = Rig(), Rig(out2_gates_irq=False)
    for rig in (pc, qemu):
        rig.w(IER, 0x01)
        rig.w(MCR, LOOP | OUT2)
        rig.w(THR, 0x55)
        assert rig.r(IIR) == 0x04                  # the UART's own interrupt is pending
    assert pc.irq.level is False                   # OUT2 pin forced inactive in loopback
    assert qemu.irq.level is True


def test_fed_bytes_wait_while_in_loopback(rig):
    rig.w(MCR, LOOP)
    rig.uart.feed(b"w")
    rig.chars(5)
    assert rig.r(LSR) & DR == 0
    rig.w(MCR, 0)
    rig.chars(1)
    assert rig.r(LSR) & DR and rig.r(RBR) == ord("w")


# ------------------------------------------------------------ reset/snapshot
def test_reset_restores_power_on_state_but_keeps_tx_log(rig):
    rig.xv6_init(fifo=0x07)
    rig.putc(ord("z"))
    rig.uart.feed(b"abc")
    rig.chars(1)
    rig.uart.reset()
    assert rig.r(LSR) == THRE | TEMT and rig.r(IER) == 0 and rig.r(IIR) == 0x01
    rig.chars(10)
    assert rig.r(LSR) & DR == 0                    # the wire was cleared too
    assert rig.uart.tx_log == b"z"
    assert rig.clock.pending() == []


def observe(rig, steps):
    seen = []
    for step in steps:
        kind, arg = step
        if kind == "chars":
            rig.chars(arg)
        elif kind == "feed":
            rig.uart.feed(arg)
        elif kind == "w":
            rig.w(*arg)
        elif kind == "r":
            seen.append(("r", arg, rig.r(arg)))
        seen.append((rig.clock.now, rig.irq.level, rig.uart.interrupt_id(), rig.uart.line_status(),
                     len(rig.clock.pending())))
    seen.append(rig.uart.tx_log)
    return seen


def test_snapshot_restore_equivalence_with_bytes_on_the_wire_and_timers():
    a = Rig()
    a.xv6_init(fifo=0x87)
    a.w(IER, 0x0F)
    a.uart.feed(b"snapshot!")
    a.chars(3)
    a.r(IIR)
    a.w(THR, ord("x"))
    a.clock.advance(a.clock.now + a.uart.character_time() // 2)   # mid-character
    state = a.uart.snapshot()
    assert state["next_arrival"] is not None and state["timeout_deadline"] is not None
    assert a.clock.pending() == [(state["next_arrival"], "uart.rx")]   # the earlier one

    b = Rig()
    b.clock.advance(a.clock.now)
    b.uart.restore(state)
    assert b.uart.snapshot() == state
    assert b.irq.level == a.irq.level
    steps = [("chars", 1), ("r", IIR), ("r", RBR), ("chars", 5), ("r", IIR), ("r", LSR),
             ("w", (MCR, OUT2 | LOOP)), ("w", (THR, 0x41)), ("r", RBR), ("w", (MCR, OUT2)),
             ("feed", b"more"), ("chars", 9), ("r", IIR)] + [("r", RBR)] * 12 + [("chars", 8), ("r", IIR)]
    assert observe(a, steps) == observe(b, steps)
    assert a.uart.snapshot() == b.uart.snapshot()


def test_restore_cancels_the_timers_of_the_state_it_replaces():
    a = Rig()
    a.xv6_init(fifo=0x07)
    quiet = a.uart.snapshot()
    a.uart.feed(b"abc")
    a.chars(1)
    a.uart.restore(quiet)
    a.chars(10)
    assert a.r(LSR) & DR == 0
    assert a.clock.pending() == []


def test_one_long_clock_advance_equals_many_small_ones():
    """Arrivals and the timeout are replayed at their own times on a late wake-up."""
    stepped, jumped = Rig(), Rig()
    for rig in (stepped, jumped):
        rig.xv6_init(fifo=0xC7)
        rig.uart.feed(b"0123456789abcdefXYZ")
    span = 30 * stepped.uart.character_time()
    for t in range(0, span + 1, 997):
        stepped.clock.advance(t)
    stepped.clock.advance(span)
    jumped.clock.advance(span)
    assert stepped.uart.snapshot() == jumped.uart.snapshot()
    assert jumped.r(IIR) == 0xC4 and jumped.r(LSR) & OE
