"""Intel 8042 keyboard controller with an MF2 keyboard, and System Control Port A (0x92).

Modelled (IBM PC AT technical reference, "Keyboard controller" and "Keyboard"
sections; IBM PS/2 hardware interface reference for port 0x92; QEMU's
``hw/input/pckbd.c`` / ``ps2.c`` where the documents leave room):

- Port 0x64 reads the status register: OBF (bit 0), IBF (bit 1, always 0:
  commands complete instantly), SYS (bit 2: set by self-test, copied from
  command byte bit 2 when it is written), A2 (bit 3: the last write went to
  0x64), INH (bit 4: 1, keyboard not inhibited by the keylock), AUXB (bit 5:
  the output buffer holds auxiliary-device data); timeout and parity read 0.
- Port 0x64 writes are controller commands, port 0x60 writes their parameter
  or, when none is expected, a byte for the keyboard (which, as in QEMU, also
  clears the "keyboard disabled" bit of the command byte):
  0x20-0x3F read controller RAM (0x20 = the command byte), 0x60-0x7F write it;
  0xA7/0xA8 disable/enable the aux interface, 0xA9 aux interface test -> 0x00;
  0xAA self-test -> 0x55; 0xAB keyboard interface test -> 0x00; 0xAD/0xAE
  disable/enable the keyboard interface; 0xD0 read the output port, 0xD1
  write it (bit 1 = A20 gate, bit 0 = 0 resets the CPU); 0xD2/0xD3 write the
  keyboard/aux output buffer; 0xD4 write to the aux device (there is none: the
  byte is dropped); 0xDD/0xDF A20 off/on (QEMU); 0xE0 read test inputs ->
  0x00; 0xF0-0xFF pulse output port bits 0-3 (a 0 in bit 0, e.g. 0xFE, resets:
  ``on_reset()``; 0xFF pulses nothing).  Other commands are ignored.
- The command byte: bit 0 enables IRQ1 when keyboard data (or a controller
  reply) is in the output buffer, bit 1 IRQ12 for aux data, bit 2 system
  flag, bit 4 disables the keyboard interface (keyboard bytes wait), bit 5
  disables the aux interface, bit 6 translation.  Power-on value 0x65 (what a
  PC BIOS leaves: keyboard IRQ, SYS, aux disabled, translation), since there
  is no BIOS to program it.
- One output buffer.  Controller replies have priority over keyboard bytes;
  the next byte moves in as soon as the guest reads port 0x60 (as in QEMU),
  so each byte raises a fresh IRQ1 edge.  Reading 0x60 with the buffer empty
  returns the last byte read.  The IRQ lines are levels that follow "output
  buffer full of this source and its interrupt enabled".
- The keyboard (IBM MF2, PS/2 command set): 0xFF reset -> FA AA (defaults,
  scanning on, set 2), 0xF6 set defaults -> FA, 0xF5 defaults + disable
  scanning -> FA, 0xF4 enable scanning -> FA, 0xF3 typematic + parameter,
  0xED LEDs + parameter (``leds``), 0xF0 scancode set + parameter (0 queries:
  FA then the set), 0xF2 identify -> FA AB 83 (AB 41 when the controller
  translates, as a real 8042 turns 0x83 into 0x41), 0xEE echo -> EE, 0xF7-0xFD
  (set-3 key types) -> FA; anything else -> FE (resend).  Replies go ahead of
  typed scancodes.
- Host input: ``press(scancodes)`` / ``feed_scancodes`` queue scancode set 1
  bytes exactly as given (make codes, break = make | 0x80, 0xE0 prefixes) and
  ``type_text(str)`` converts ASCII to such make/break sequences.  The input
  is the user's and is never lost: it waits in a host-side queue
  (``scancodes``) and the keyboard hands the controller one byte only when the
  output buffer is empty, scanning is enabled and the keyboard interface is
  not disabled; the next one moves in as the guest reads port 0x60.  So its
  pace depends only on the guest's reads, and keys typed while the guest has
  scanning off (0xF5) or is resetting the keyboard (0xFF, which on a real
  keyboard empties its 16-byte buffer) wait instead of being dropped.
- A20: output port bit 1, reported through ``a20_enabled`` and ``on_a20(enabled)``
  (called on every change, including one made by ``reset`` or ``restore``);
  enabled at power-on.  ``SystemControlPortA`` is
  port 0x92 (bit 1 A20, bit 0 fast reset on a 0 -> 1 write); ``combine_a20``
  ORs the two gates as PC chipsets do.

Not modelled: the keyboard's own 16-byte buffer and overrun code (the host
queue is unbounded and flow-controlled, so the keyboard never overruns), typematic repeat, scancode sets 2 and 3 and the
controller's translation of keyboard data (the host supplies set-1 codes and
the guest receives them whatever set or translation it selects; only the
identify and set-query replies follow translation), the auxiliary (PS/2
mouse) device, IBF timing, the timeout/parity error bits, the keyboard lock
input and the input port (0xC0), password commands.

Invariants: at most one byte is in the output buffer; whenever it is empty
and a byte may move in, it has; ``irq1.level``/``irq12.level`` always match
the output-buffer state and the command byte; the whole state, including the
queued host input, is in the snapshot.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from ..irq import IrqLine

DATA_PORT, STATUS_PORT = 0x60, 0x64
COMMAND_PORT = STATUS_PORT
PORT92 = 0x92
KBD_IRQ, AUX_IRQ = 1, 12

# Status register.
ST_OBF, ST_IBF, ST_SYS, ST_A2, ST_INH, ST_AUXB = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

# Command byte.
CB_KBD_INT, CB_AUX_INT, CB_SYS = 0x01, 0x02, 0x04
CB_KBD_DISABLED, CB_AUX_DISABLED, CB_TRANSLATE = 0x10, 0x20, 0x40
CB_POWER_ON = CB_KBD_INT | CB_SYS | CB_AUX_DISABLED | CB_TRANSLATE     # 0x65

# Output port.
OP_RESET, OP_A20, OP_KBD_OBF, OP_AUX_OBF = 0x01, 0x02, 0x10, 0x20
OP_POWER_ON = 0xCF              # not in reset, A20 on, keyboard clock/data idle

RAM_SIZE = 32

# Controller replies.
SELF_TEST_OK, INTERFACE_OK = 0x55, 0x00

# Keyboard commands and replies.
KB_SET_LEDS, KB_ECHO, KB_SCANCODE_SET, KB_IDENTIFY = 0xED, 0xEE, 0xF0, 0xF2
KB_TYPEMATIC, KB_ENABLE, KB_DEFAULT_DISABLE, KB_SET_DEFAULT = 0xF3, 0xF4, 0xF5, 0xF6
KB_RESET = 0xFF
KB_ACK, KB_RESEND, KB_SELF_TEST_OK, KB_ID = 0xFA, 0xFE, 0xAA, 0xAB
KB_ID_MF2 = 0x83
KB_COMMANDS_WITH_PARAMETER = (KB_SET_LEDS, KB_SCANCODE_SET, KB_TYPEMATIC)
# The 8042's translation of the few reply bytes it changes (set 2 -> set 1).
_TRANSLATED_REPLY = {0x83: 0x41, 0x01: 0x43, 0x02: 0x41, 0x03: 0x3F}

# The bytes above the first of a wide access to an 8-bit port read as all ones.
_FLOATING = {1: 0, 2: 0xFF00, 4: 0xFFFFFF00}

# Output-buffer sources.
SRC_KBD, SRC_AUX = "kbd", "aux"

# Scancode set 1 (IBM PC AT / MF2 with translation): make codes.
SC_ESC, SC_BACKSPACE, SC_TAB, SC_ENTER = 0x01, 0x0E, 0x0F, 0x1C
SC_LCTRL, SC_LSHIFT, SC_SPACE = 0x1D, 0x2A, 0x39
BREAK = 0x80


def _scancode_rows() -> tuple[dict[str, int], dict[str, int]]:
    """Unshifted and shifted characters -> set-1 make code, by keyboard row."""
    plain, shifted = {}, {}
    rows = ((0x02, "1234567890-=", "!@#$%^&*()_+"),
            (0x10, "qwertyuiop[]", "QWERTYUIOP{}"),
            (0x1E, "asdfghjkl;'`", "ASDFGHJKL:\"~"),
            (0x2B, "\\zxcvbnm,./", "|ZXCVBNM<>?"))
    for first, lower, upper in rows:
        for i, (a, b) in enumerate(zip(lower, upper)):
            plain[a] = first + i
            shifted[b] = first + i
    plain.update({" ": SC_SPACE, "\n": SC_ENTER, "\r": SC_ENTER, "\b": SC_BACKSPACE,
                  "\t": SC_TAB, "\x1b": SC_ESC, "\x7f": SC_BACKSPACE})
    return plain, shifted


PLAIN_KEYS, SHIFTED_KEYS = _scancode_rows()


def _stroke(make: int, *modifiers: int) -> bytes:
    """Modifiers down, key down, key up, modifiers up."""
    return bytes([*modifiers, make, make | BREAK, *(m | BREAK for m in reversed(modifiers))])


def text_to_scancodes(text: str) -> bytes:
    """ASCII text as scancode set 1 make/break codes (Shift for upper case and
    shifted punctuation, Ctrl for control characters without a key of their own)."""
    out = bytearray()
    for ch in text:
        if ch in PLAIN_KEYS:
            out += _stroke(PLAIN_KEYS[ch])
        elif ch in SHIFTED_KEYS:
            out += _stroke(SHIFTED_KEYS[ch], SC_LSHIFT)
        elif "\x01" <= ch <= "\x1a":
            out += _stroke(PLAIN_KEYS[chr(ord(ch) + 0x60)], SC_LCTRL)
        else:
            raise ValueError(f"no key types {ch!r}")
    return bytes(out)


class Kbc:
    """8042 + keyboard: ``attach(bus)`` claims 0x60 and 0x64.

    ``irq1`` (and the optional ``irq12``) are the controller's interrupt
    outputs; ``on_reset()`` is called when the guest pulses the CPU reset line;
    ``on_a20(enabled)`` when the A20 gate changes.
    """

    name = "kbc"

    def __init__(self, irq1: IrqLine, *, irq12: IrqLine | None = None,
                 on_reset: Callable[[], None] | None = None,
                 on_a20: Callable[[bool], None] | None = None, name: str = "kbc"):
        self.irq1 = irq1
        self.irq12 = irq12
        self.on_reset = on_reset
        self.on_a20 = on_a20
        self.name = name
        self._a20_reported = True                     # what on_a20 last heard (power-on: on)
        self._commands: dict[int, Callable[[int], None]] = {
            0xA7: lambda c: self._set_command_bits(CB_AUX_DISABLED, True),
            0xA8: lambda c: self._set_command_bits(CB_AUX_DISABLED, False),
            0xA9: lambda c: self._reply(INTERFACE_OK),
            0xAA: self._self_test,
            0xAB: lambda c: self._reply(INTERFACE_OK),
            0xAD: lambda c: self._set_command_bits(CB_KBD_DISABLED, True),
            0xAE: lambda c: self._set_command_bits(CB_KBD_DISABLED, False),
            0xD0: lambda c: self._reply(self.output_port()),
            0xDD: lambda c: self._set_a20(False),
            0xDF: lambda c: self._set_a20(True),
            0xE0: lambda c: self._reply(0x00),
        }
        for cmd in range(0x20, 0x40):
            self._commands[cmd] = lambda c: self._reply(self.ram[c & 0x1F])
        for cmd in (*range(0x60, 0x80), 0xD1, 0xD2, 0xD3, 0xD4):
            self._commands[cmd] = self._expect_parameter
        for cmd in range(0xF0, 0x100):
            self._commands[cmd] = self._pulse_output_port
        self._parameter_handlers: dict[int, Callable[[int], None]] = {
            0xD1: self._write_output_port,
            0xD2: lambda v: self._queue_controller(v, SRC_KBD),
            0xD3: lambda v: self._queue_controller(v, SRC_AUX),
            0xD4: lambda v: None,                       # no auxiliary device
        }
        self._keyboard_commands: dict[int, Callable[[], list[int]]] = {
            KB_RESET: self._kb_reset,
            KB_SET_DEFAULT: lambda: self._kb_defaults(scanning=True),
            KB_DEFAULT_DISABLE: lambda: self._kb_defaults(scanning=False),
            KB_ENABLE: self._kb_enable,
            KB_IDENTIFY: lambda: [KB_ACK, KB_ID, self._translated(KB_ID_MF2)],
            KB_ECHO: lambda: [KB_ECHO],
            **{cmd: lambda: [KB_ACK] for cmd in (*KB_COMMANDS_WITH_PARAMETER, *range(0xF7, 0xFE))},
        }
        self._keyboard_parameters: dict[int, Callable[[int], list[int]]] = {
            KB_SET_LEDS: self._kb_set_leds,
            KB_SCANCODE_SET: self._kb_scancode_set,
            KB_TYPEMATIC: lambda v: [KB_ACK],
        }
        self.reset()

    # -------------------------------------------------------------- lifecycle
    def attach(self, bus) -> None:
        bus.add(DATA_PORT, DATA_PORT + 1, self, self.name)
        bus.add(STATUS_PORT, STATUS_PORT + 1, self, self.name)

    def reset(self) -> None:
        self.ram = [0] * RAM_SIZE
        self.ram[0] = CB_POWER_ON
        self.sys_flag = bool(CB_POWER_ON & CB_SYS)
        self.last_write_was_command = False
        self.output_port_value = OP_POWER_ON
        self.obf = False
        self.ob_data = 0
        self.ob_source = SRC_KBD
        self.last_read = 0
        self.controller_queue: deque[tuple[int, str]] = deque()
        self.pending_command: int | None = None       # controller command awaiting its parameter
        # The keyboard.
        self.keyboard_replies: deque[int] = deque()
        self.scancodes: deque[int] = deque()
        self.keyboard_pending: int | None = None      # keyboard command awaiting its parameter
        self.scanning = True
        self.scancode_set = 2
        self.leds = 0
        self._a20_changed()
        self._refill()

    _STATE_FIELDS = ("sys_flag", "last_write_was_command", "output_port_value", "obf", "ob_data",
                     "ob_source", "last_read", "pending_command", "keyboard_pending", "scanning",
                     "scancode_set", "leds")

    def snapshot(self) -> dict:
        state = {f: getattr(self, f) for f in self._STATE_FIELDS}
        state["ram"] = list(self.ram)
        state["controller_queue"] = [list(item) for item in self.controller_queue]
        state["keyboard_replies"] = bytes(self.keyboard_replies)
        state["scancodes"] = bytes(self.scancodes)
        return state

    def restore(self, state: dict) -> None:
        for f in self._STATE_FIELDS:
            setattr(self, f, state[f])
        self.ram = list(state["ram"])
        self.controller_queue = deque((int(b), str(src)) for b, src in state["controller_queue"])
        self.keyboard_replies = deque(state["keyboard_replies"])
        self.scancodes = deque(state["scancodes"])
        self._a20_changed()                           # tell the CPU if the gate differs
        self._update_irqs()

    # ------------------------------------------------------------- host side
    def press(self, scancodes: bytes) -> None:
        """Queue scancode set 1 bytes typed on the keyboard: they reach the
        output buffer one at a time, as the guest reads it (never dropped)."""
        self.scancodes.extend(bytes(scancodes))
        self._refill()

    feed_scancodes = press

    def type_text(self, text: str) -> None:
        self.press(text_to_scancodes(text))

    @property
    def command_byte(self) -> int:
        return self.ram[0]

    @property
    def a20_enabled(self) -> bool:
        return bool(self.output_port_value & OP_A20)

    def status(self) -> int:
        return ((ST_OBF if self.obf else 0) | (ST_SYS if self.sys_flag else 0)
                | (ST_A2 if self.last_write_was_command else 0) | ST_INH
                | (ST_AUXB if self.obf and self.ob_source == SRC_AUX else 0))

    def output_port(self) -> int:
        """The output port as command 0xD0 reads it (bits 4/5 follow the buffer)."""
        value = self.output_port_value & ~(OP_KBD_OBF | OP_AUX_OBF)
        if self.obf:
            value |= OP_AUX_OBF if self.ob_source == SRC_AUX else OP_KBD_OBF
        return value

    # ------------------------------------------------------------------ ports
    def port_read(self, port: int, size: int) -> int:
        value = self._read_data() if port == DATA_PORT else self.status()
        return value | _FLOATING[size]              # one 8-bit port: the rest floats

    def port_write(self, port: int, size: int, value: int) -> None:
        value &= 0xFF
        if port == DATA_PORT:
            self._write_data(value)
        else:
            self._write_command(value)

    def _read_data(self) -> int:
        if self.obf:
            self.last_read = self.ob_data
            self.obf = False
            self._update_irqs()           # the read lowers the line...
            self._refill()                # ...and the next byte raises it again
        return self.last_read

    def _write_data(self, value: int) -> None:
        self.last_write_was_command = False
        command, self.pending_command = self.pending_command, None
        if command is None:
            self.ram[0] &= ~CB_KBD_DISABLED          # talking to the keyboard re-enables it
            self._keyboard_receives(value)
        elif 0x60 <= command < 0x80:
            self._write_ram(command & 0x1F, value)
        else:
            self._parameter_handlers[command](value)
        self._refill()

    def _write_command(self, value: int) -> None:
        self.last_write_was_command = True
        self.pending_command = None
        handler = self._commands.get(value)
        if handler is not None:
            handler(value)
        self._refill()

    # ------------------------------------------------------ controller commands
    def _expect_parameter(self, command: int) -> None:
        self.pending_command = command

    def _reply(self, value: int) -> None:
        self._queue_controller(value, SRC_KBD)

    def _queue_controller(self, value: int, source: str) -> None:
        self.controller_queue.append((value & 0xFF, source))

    def _self_test(self, command: int) -> None:
        self.sys_flag = True
        self._reply(SELF_TEST_OK)

    def _set_command_bits(self, bits: int, on: bool) -> None:
        self._write_ram(0, self.ram[0] | bits if on else self.ram[0] & ~bits)

    def _write_ram(self, index: int, value: int) -> None:
        self.ram[index] = value
        if index == 0:
            self.sys_flag = bool(value & CB_SYS)
            self._update_irqs()

    def _write_output_port(self, value: int) -> None:
        self.output_port_value = value
        self._a20_changed()
        if not value & OP_RESET:
            self._request_reset()

    def _pulse_output_port(self, command: int) -> None:
        if not command & OP_RESET:          # bits 0-3 = 0 select the lines pulsed
            self._request_reset()

    def _set_a20(self, enabled: bool) -> None:
        self.output_port_value = (self.output_port_value & ~OP_A20) | (OP_A20 if enabled else 0)
        self._a20_changed()

    def _a20_changed(self) -> None:
        if self.a20_enabled != self._a20_reported:
            self._a20_reported = self.a20_enabled
            if self.on_a20 is not None:
                self.on_a20(self.a20_enabled)

    def _request_reset(self) -> None:
        if self.on_reset is not None:
            self.on_reset()

    # -------------------------------------------------------------- keyboard
    def _keyboard_receives(self, value: int) -> None:
        command, self.keyboard_pending = self.keyboard_pending, None
        if command is not None:
            replies = self._keyboard_parameters[command](value)
        else:
            handler = self._keyboard_commands.get(value)
            replies = handler() if handler is not None else [KB_RESEND]
            if value in KB_COMMANDS_WITH_PARAMETER:
                self.keyboard_pending = value
        self.keyboard_replies.extend(replies)

    def _translated(self, value: int) -> int:
        return _TRANSLATED_REPLY.get(value, value) if self.ram[0] & CB_TRANSLATE else value

    def _kb_defaults(self, scanning: bool) -> list[int]:
        # A real keyboard empties its buffer here; typed input still on the
        # host side (all of it: bytes move in only as the guest reads) waits.
        self.scancode_set = 2
        self.leds = 0
        self.scanning = scanning
        return [KB_ACK]

    def _kb_reset(self) -> list[int]:
        self._kb_defaults(scanning=True)
        return [KB_ACK, KB_SELF_TEST_OK]

    def _kb_enable(self) -> list[int]:
        self.scanning = True
        return [KB_ACK]

    def _kb_set_leds(self, value: int) -> list[int]:
        self.leds = value & 0x07
        return [KB_ACK]

    def _kb_scancode_set(self, value: int) -> list[int]:
        if value == 0:
            return [KB_ACK, self._translated(self.scancode_set)]
        if 1 <= value <= 3:
            self.scancode_set = value
            return [KB_ACK]
        return [KB_RESEND]

    # ---------------------------------------------------------- output buffer
    def _next_byte(self) -> tuple[int, str] | None:
        if self.controller_queue:
            return self.controller_queue.popleft()
        if self.ram[0] & CB_KBD_DISABLED:
            return None
        if self.keyboard_replies:
            return self.keyboard_replies.popleft(), SRC_KBD
        if self.scancodes and self.scanning:
            return self.scancodes.popleft(), SRC_KBD
        return None

    def _refill(self) -> None:
        if not self.obf:
            item = self._next_byte()
            if item is not None:
                self.ob_data, self.ob_source = item
                self.obf = True
        self._update_irqs()

    def _update_irqs(self) -> None:
        cb = self.ram[0]
        self.irq1.set(self.obf and self.ob_source == SRC_KBD and bool(cb & CB_KBD_INT))
        if self.irq12 is not None:
            self.irq12.set(self.obf and self.ob_source == SRC_AUX and bool(cb & CB_AUX_INT))


class SystemControlPortA:
    """Port 0x92 ("fast A20 and reset"): ``attach(bus)`` claims it.

    Bit 1 is the A20 gate (``a20_enabled``, ``on_a20(enabled)`` on change);
    writing bit 0 as 1 when it was 0 resets the CPU (``on_reset()``); all
    bits read back as written (IBM PS/2 hardware interface reference; QEMU's
    port92).  Power-on value 0; ``reset`` and ``restore`` report an A20 change
    through ``on_a20`` but never reset the CPU.  Not modelled: the password
    lock (bit 3) and the activity-light bits (6-7) have no effect.
    """

    name = "port92"
    A20, FAST_RESET = 0x02, 0x01

    def __init__(self, *, on_reset: Callable[[], None] | None = None,
                 on_a20: Callable[[bool], None] | None = None, name: str = "port92"):
        self.on_reset = on_reset
        self.on_a20 = on_a20
        self.name = name
        self.value = 0
        self.reset()

    def attach(self, bus) -> None:
        bus.add(PORT92, PORT92 + 1, self, self.name)

    def reset(self) -> None:
        self._write(0, may_reset=False)

    def snapshot(self) -> dict:
        return {"value": self.value}

    def restore(self, state: dict) -> None:
        self._write(state["value"], may_reset=False)

    @property
    def a20_enabled(self) -> bool:
        return bool(self.value & self.A20)

    def port_read(self, port: int, size: int) -> int:
        return self.value | _FLOATING[size]

    def port_write(self, port: int, size: int, value: int) -> None:
        self._write(value & 0xFF, may_reset=True)

    def _write(self, value: int, may_reset: bool) -> None:
        old, self.value = self.value, value
        if (old ^ value) & self.A20 and self.on_a20 is not None:
            self.on_a20(self.a20_enabled)
        rising = value & self.FAST_RESET and not old & self.FAST_RESET
        if rising and may_reset and self.on_reset is not None:
            self.on_reset()


def combine_a20(kbc: Kbc, port92: SystemControlPortA, set_a20: Callable[[bool], None]) -> None:
    """Wire both gates so that ``set_a20(kbc.a20 or port92.a20)`` follows every change
    (chipsets OR the 8042's A20 output with port 0x92 bit 1).  Calls it once now."""
    def changed(_enabled: bool) -> None:
        set_a20(kbc.a20_enabled or port92.a20_enabled)
    kbc.on_a20 = changed
    port92.on_a20 = changed
    changed(True)
