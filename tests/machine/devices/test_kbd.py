"""8042 keyboard controller, keyboard and port 0x92: what a driver sees at 0x60/0x64."""

from __future__ import annotations

import pytest

from tvmm.machine.bus import PortBus
from tvmm.machine.devices.kbd import Kbc, SystemControlPortA, combine_a20, text_to_scancodes
from tvmm.machine.irq import IrqLine

OBF, SYS, A2, INH, AUXB = 0x01, 0x04, 0x08, 0x10, 0x20


class Rig:
    def __init__(self):
        self.bus = PortBus()
        self.irq1_levels: list[bool] = []
        self.irq12_levels: list[bool] = []
        self.irq1 = IrqLine("irq1", sink=self.irq1_levels.append)
        self.irq12 = IrqLine("irq12", sink=self.irq12_levels.append)
        self.resets = 0
        self.a20: list[bool] = []
        self.kbc = Kbc(self.irq1, irq12=self.irq12, on_reset=self._reset, on_a20=self.a20.append)
        self.kbc.attach(self.bus)
        self.port92 = SystemControlPortA(on_reset=self._reset, on_a20=self.a20.append)
        self.port92.attach(self.bus)

    def _reset(self):
        self.resets += 1

    def status(self):
        return self.bus.port_in(0x64, 1)

    def cmd(self, value, *params):
        self.bus.port_out(0x64, 1, value)
        for p in params:
            self.bus.port_out(0x60, 1, p)

    def data(self, value):
        self.bus.port_out(0x60, 1, value)

    def read(self):
        return self.bus.port_in(0x60, 1)

    def drain(self, limit=64):
        """Read bytes while the status register says one is there (a polling driver)."""
        got = []
        while self.status() & OBF and len(got) < limit:
            got.append(self.read())
        return got

    def command_byte(self):
        self.cmd(0x20)
        return self.read()


@pytest.fixture
def rig():
    return Rig()


# ---------------------------------------------------------------- controller
def test_power_on_status_and_command_byte(rig):
    assert rig.status() == SYS | INH                  # nothing to read: xv6's kbdgetc returns -1
    assert rig.command_byte() == 0x65
    assert rig.kbc.a20_enabled is True
    assert rig.bus.port_in(0x61, 1) == 0xFF           # 0x61 is not ours


def test_self_test_and_interface_tests(rig):
    rig.cmd(0x60, 0x40)                               # clear SYS and interrupts
    assert rig.status() & SYS == 0
    rig.cmd(0xAA)
    assert rig.status() & (OBF | SYS | A2) == OBF | SYS | A2
    assert rig.read() == 0x55
    rig.cmd(0xAB)
    assert rig.read() == 0x00
    rig.cmd(0xA9)
    assert rig.read() == 0x00
    assert rig.status() & OBF == 0


def test_command_byte_write_read_and_a2_flag(rig):
    rig.cmd(0x60)
    assert rig.status() & A2
    rig.data(0x47)
    assert rig.status() & A2 == 0
    assert rig.command_byte() == 0x47
    rig.cmd(0x60, 0x41)
    assert rig.status() & SYS == 0                    # SYS follows command byte bit 2
    rig.cmd(0x7F, 0x99)                               # controller RAM byte 31
    rig.cmd(0x3F)
    assert rig.read() == 0x99
    rig.cmd(0xAD)
    assert rig.command_byte() & 0x10
    rig.cmd(0xAE)
    assert rig.command_byte() & 0x10 == 0
    rig.cmd(0xA7)
    assert rig.command_byte() & 0x20
    rig.cmd(0xA8)
    assert rig.command_byte() & 0x20 == 0


def test_controller_reply_raises_irq1_when_enabled(rig):
    rig.cmd(0xAA)
    assert rig.irq1.level is True
    rig.read()
    assert rig.irq1.level is False
    rig.cmd(0x60, 0x64)                               # keyboard interrupt off
    rig.cmd(0xAA)
    assert rig.status() & OBF and rig.irq1.level is False
    assert rig.read() == 0x55


def test_reading_an_empty_output_buffer_returns_the_last_byte(rig):
    rig.kbc.press(b"\x1c")
    assert rig.read() == 0x1C
    assert rig.read() == 0x1C
    assert rig.status() & OBF == 0


# ------------------------------------------------------------------- scancodes
def test_scancodes_arrive_one_at_a_time_with_an_irq1_edge_each(rig):
    rig.kbc.press(b"\x1e\x9e")
    assert rig.status() & OBF
    assert rig.irq1.level is True
    assert rig.read() == 0x1E
    assert rig.irq1.level is True                     # next byte moved in at once
    assert rig.read() == 0x9E
    assert rig.irq1.level is False
    assert rig.irq1_levels == [True, False, True, False]
    assert rig.status() & OBF == 0


def test_feed_scancodes_is_press_and_irq_follows_the_enable_bit(rig):
    rig.cmd(0x60, 0x64)
    rig.kbc.feed_scancodes(b"\xe0\x48\xe0\xc8")       # cursor up, make and break
    assert rig.irq1.level is False
    rig.cmd(0x60, 0x65)                               # enabling with data waiting interrupts
    assert rig.irq1.level is True
    assert rig.drain() == [0xE0, 0x48, 0xE0, 0xC8]


def test_disabled_keyboard_interface_holds_scancodes(rig):
    rig.cmd(0xAD)
    rig.kbc.press(b"\x02\x82")
    assert rig.status() & OBF == 0
    rig.cmd(0xAE)
    assert rig.drain() == [0x02, 0x82]


def test_type_text_makes_set1_make_break_sequences(rig):
    rig.kbc.type_text("aB1!\n")
    assert rig.drain() == [0x1E, 0x9E,
                           0x2A, 0x30, 0xB0, 0xAA,
                           0x02, 0x82,
                           0x2A, 0x02, 0x82, 0xAA,
                           0x1C, 0x9C]


def test_text_to_scancodes_table():
    assert text_to_scancodes(" \b\t") == bytes([0x39, 0xB9, 0x0E, 0x8E, 0x0F, 0x8F])
    assert text_to_scancodes("zm,./") == bytes([0x2C, 0xAC, 0x32, 0xB2, 0x33, 0xB3, 0x34, 0xB4,
                                                0x35, 0xB5])
    assert text_to_scancodes("qp[]") == bytes([0x10, 0x90, 0x19, 0x99, 0x1A, 0x9A, 0x1B, 0x9B])
    assert text_to_scancodes("l;'`\\") == bytes([0x26, 0xA6, 0x27, 0xA7, 0x28, 0xA8, 0x29, 0xA9,
                                                 0x2B, 0xAB])
    assert text_to_scancodes("0-=") == bytes([0x0B, 0x8B, 0x0C, 0x8C, 0x0D, 0x8D])
    assert text_to_scancodes(")_+") == bytes([0x2A, 0x0B, 0x8B, 0xAA, 0x2A, 0x0C, 0x8C, 0xAA,
                                              0x2A, 0x0D, 0x8D, 0xAA])
    assert text_to_scancodes('~|:"<>?{}')[:4] == bytes([0x2A, 0x29, 0xA9, 0xAA])
    assert text_to_scancodes("\x03") == bytes([0x1D, 0x2E, 0xAE, 0x9D])        # Ctrl-C
    with pytest.raises(ValueError):
        text_to_scancodes("é")


# -------------------------------------------------------------- keyboard device
@pytest.mark.parametrize("command, params, replies", [
    ([0xFF], [], [0xFA, 0xAA]),
    ([0xF4], [], [0xFA]),
    ([0xF5], [], [0xFA]),
    ([0xF6], [], [0xFA]),
    ([0xEE], [], [0xEE]),
    ([0xED], [0x07], [0xFA, 0xFA]),
    ([0xF3], [0x20], [0xFA, 0xFA]),
    ([0xF0], [0x01], [0xFA, 0xFA]),
    ([0xF0], [0x00], [0xFA, 0xFA, 0x41]),            # set 2, reported through translation
    ([0xF2], [], [0xFA, 0xAB, 0x41]),                # MF2 id as a translating 8042 delivers it
    ([0x42], [], [0xFE]),
])
def test_keyboard_commands_are_acknowledged(rig, command, params, replies):
    for b in command + params:
        rig.data(b)
    assert rig.drain() == replies


def test_identify_and_set_query_without_translation(rig):
    rig.cmd(0x60, 0x25)
    rig.data(0xF2)
    assert rig.drain() == [0xFA, 0xAB, 0x83]
    rig.data(0xF0)
    rig.data(0x03)
    rig.data(0xF0)
    rig.data(0x00)
    assert rig.drain() == [0xFA, 0xFA, 0xFA, 0xFA, 0x03]


def test_leds_and_scanning_enable(rig):
    rig.data(0xED)
    rig.data(0x05)
    assert rig.kbc.leds == 0x05
    rig.data(0xF5)
    rig.drain()
    rig.kbc.press(b"\x10")
    assert rig.drain() == []                          # not scanning: the key waits...
    rig.data(0xF4)
    rig.kbc.press(b"\x11")
    assert rig.drain() == [0xFA, 0x10, 0x11]          # ...and is not lost


def test_replies_go_ahead_of_pending_scancodes(rig):
    rig.kbc.press(b"\x10\x90\x11\x91")
    rig.data(0xEE)                                    # 0x10 already sits in the buffer
    assert rig.drain() == [0x10, 0xEE, 0x90, 0x11, 0x91]


def test_typed_keys_survive_a_keyboard_reset(rig):
    rig.kbc.press(b"\x10\x90")
    rig.data(0xFF)                                    # 0x10 already sits in the buffer
    assert rig.drain() == [0x10, 0xFA, 0xAA, 0x90]    # the reply first, the typed key after


def test_writing_to_the_keyboard_reenables_the_interface(rig):
    rig.cmd(0xAD)
    rig.data(0xEE)
    assert rig.drain() == [0xEE]
    assert rig.command_byte() & 0x10 == 0


# ------------------------------------------------------------- A20 and reset
def test_a20_through_output_port_and_dd_df(rig):
    rig.cmd(0xD0)
    assert rig.read() & 0x03 == 0x03
    rig.cmd(0xD1, 0xDD)                               # A20 off, not in reset
    assert rig.kbc.a20_enabled is False and rig.a20 == [False]
    rig.cmd(0xD0)
    assert rig.read() == 0xCD                         # bits 4/5: output buffer was empty
    rig.kbc.press(b"\x10")
    rig.cmd(0xD0)                                     # answered with a keyboard byte waiting
    assert rig.drain() == [0x10, 0xDD]
    rig.cmd(0xDF)
    assert rig.kbc.a20_enabled is True
    rig.cmd(0xDF)                                     # no change, no callback
    rig.cmd(0xDD)
    assert rig.a20 == [False, True, False]
    assert rig.resets == 0


def test_reset_through_pulse_command_and_output_port(rig):
    rig.cmd(0xFF)
    assert rig.resets == 0                            # pulses nothing
    rig.cmd(0xFE)
    assert rig.resets == 1
    rig.cmd(0xF0)
    assert rig.resets == 2
    rig.cmd(0xD1, 0xDE)                               # bit 0 = 0: reset
    assert rig.resets == 3


def test_write_output_buffers_d2_d3(rig):
    rig.cmd(0x60, 0x47)                               # keyboard + aux interrupts
    rig.cmd(0xD2, 0x5A)
    assert rig.irq1.level is True and rig.status() & AUXB == 0
    assert rig.read() == 0x5A
    rig.cmd(0xD3, 0xA5)
    assert rig.irq12.level is True and rig.irq1.level is False
    assert rig.status() & (OBF | AUXB) == OBF | AUXB
    assert rig.read() == 0xA5
    assert rig.irq12.level is False
    rig.cmd(0xD4, 0xF2)                               # no mouse: nothing answers
    assert rig.status() & OBF == 0


def test_port92_a20_and_fast_reset(rig):
    assert rig.bus.port_in(0x92, 1) == 0x00
    rig.bus.port_out(0x92, 1, 0x02)
    assert rig.port92.a20_enabled and rig.a20 == [True]
    assert rig.bus.port_in(0x92, 1) == 0x02
    rig.bus.port_out(0x92, 1, 0x03)
    assert rig.resets == 1
    rig.bus.port_out(0x92, 1, 0x03)
    assert rig.resets == 1                            # only a 0 -> 1 transition resets
    rig.bus.port_out(0x92, 1, 0x00)
    assert rig.a20 == [True, False]


def test_combined_a20_gate_is_the_or_of_both(rig):
    seen = []
    combine_a20(rig.kbc, rig.port92, seen.append)
    assert seen == [True]
    rig.cmd(0xDD)
    assert seen[-1] is False
    rig.bus.port_out(0x92, 1, 0x02)
    assert seen[-1] is True
    rig.cmd(0xDF)
    rig.bus.port_out(0x92, 1, 0x00)
    assert seen[-1] is True
    rig.cmd(0xDD)
    assert seen[-1] is False


# ------------------------------------------------------------ reset/snapshot
def test_reset_restores_power_on_state(rig):
    rig.cmd(0x60, 0x00)
    rig.cmd(0xDD)
    rig.kbc.press(b"\x10")
    rig.kbc.reset()
    assert rig.status() == SYS | INH
    assert rig.kbc.a20_enabled and rig.a20[-1] is True
    assert rig.command_byte() == 0x65
    assert rig.irq1.level is False


def observe(rig, steps):
    seen = []
    for kind, arg in steps:
        if kind == "cmd":
            rig.cmd(*arg)
        elif kind == "data":
            rig.data(arg)
        elif kind == "press":
            rig.kbc.press(arg)
        elif kind == "read":
            seen.append(rig.read())
        seen.append((rig.status(), rig.irq1.level, rig.irq12.level, rig.kbc.a20_enabled))
    return seen


def test_snapshot_restore_equivalence_mid_command_with_queued_input():
    a = Rig()
    a.kbc.type_text("ls\n")
    a.read()
    a.data(0xED)                                      # keyboard awaits the LED byte
    a.cmd(0xDD)
    a.cmd(0x60, 0x67)
    a.cmd(0xD3, 0x11)
    a.cmd(0xD1)                                       # controller awaits the output port byte
    state = a.kbc.snapshot()

    b = Rig()
    b.kbc.restore(state)
    assert b.kbc.snapshot() == state
    assert b.a20 == [False]                           # the restored gate was reported
    steps = [("data", 0xDF), ("read", None), ("read", None), ("data", 0x02), ("read", None),
             ("press", b"\x2a\x1e\x9e\xaa"), ("cmd", (0x20,)), ("read", None)] + [("read", None)] * 12
    assert observe(a, steps) == observe(b, steps)
    assert a.kbc.snapshot() == b.kbc.snapshot()
    assert a.a20 == b.a20 and a.resets == b.resets


def test_typed_ahead_keys_wait_for_a_slow_reader_and_none_is_lost(rig):
    """Input typed faster than the guest reads is paced by the output buffer:
    one byte at a time, a fresh IRQ1 edge each, in order, none dropped."""
    typed = text_to_scancodes("echo hello tvmm\n")
    rig.kbc.type_text("echo hello ")
    got = [rig.read()]                                # the guest takes one byte...
    rig.kbc.type_text("tvmm\n")                       # ...while more is typed ahead
    rig.data(0xF5)                                    # scanning off: keys wait, are not dropped
    rig.data(0xF4)
    del rig.irq1_levels[:]
    while rig.status() & OBF:
        got.append(rig.read())
    assert [b for b in got if b != 0xFA] == list(typed)
    assert got.count(0xFA) == 2
    rises = sum(1 for a, b in zip(rig.irq1_levels, rig.irq1_levels[1:]) if b and not a)
    assert rises >= len(got) - 2                      # every byte its own edge
