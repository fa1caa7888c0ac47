"""IBM Color Graphics Adapter (CGA) in 80x25 colour text mode.

Modelled (IBM Color/Graphics Monitor Adapter technical reference; Motorola
MC6845 CRTC datasheet):

- 16 KiB of video RAM seen through the 32 KiB window at physical
  0xB8000-0xBFFFF.  As on the real card (which decodes only 14 address lines)
  the RAM appears twice: 0xBC000-0xBFFFF mirrors 0xB8000-0xBBFFF, so an
  access at window offset ``o`` reaches byte ``o & 0x3FFF``; an access that
  runs past the end of the 16 KiB wraps to its start.  Reads and writes of 1,
  2 and 4 bytes, little-endian.

  The video RAM *is* the machine's RAM at 0xB8000-0xBBFFF: those four pages
  are ordinary memory to the processor (its TLB maps them, so a kernel's
  console output and its scrolling ``memmove`` run at RAM speed, with no
  MMIO exit under a monitor, as a VMM maps a text framebuffer), and the card
  reads the screen from them when asked.  Only the mirror half is MMIO.
- The 6845 CRTC through index/data ports 0x3D4/0x3D5 (also at 0x3D0-0x3D3 and
  0x3D6/0x3D7, which the card decodes as mirrors).  The index register holds
  5 bits; registers 0x00-0x11 are stored as written.  Registers 0x00-0x0F read
  back as written (as on the VGA's CRTC; on a real 6845 R0-R13 are
  write-only), R16/R17 (light pen) read 0, and registers above 0x11 ignore
  writes and read 0.  R10/R11 are the cursor shape, R12/R13 the display start
  address, R14/R15 the cursor location, all in character (word) units.
- Mode control 0x3D8 and colour select 0x3D9: stored (write-only on the card;
  they read back as written here, for debuggers); ``mode``/``colour`` expose
  them.  0x3DB/0x3DC (light pen latch) accept writes and read 0.
- The status register 0x3DA, computed from virtual time (``clock.now``): the
  card's 14.31818 MHz dot clock, 912 dots per scan line (15.7 kHz), 262 lines
  per frame (59.9 Hz); the display is active for the first 640 dots of the
  first 200 lines.  Bit 0 ("display enable inactive": memory may be accessed
  without snow) is set outside that area, bit 3 (vertical retrace) during
  lines 224-239 (the 6845's fixed 16-line vsync at the BIOS's R7 = 28 rows).
  Bits 1-2 (light pen) and 4-7 read 0.
- Port accesses wider than a byte act as successive byte accesses on
  consecutive ports (what the bus does for an 8-bit card): ``outw 0x3D4,
  0x0E0F``-style writes set index and data in one instruction.

Power-on state is what the PC BIOS leaves for mode 3: mode 0x29 (80x25
text, video enabled, blink), colour select 0x30, cursor scan lines 6-7,
start address and cursor location 0.  Video RAM powers on zero-filled
(characters 0 display as blanks).

Not modelled: graphics modes, 40-column text, blinking and the cursor blink
rate, snow, the character generator ROM (``text()`` decodes code page 437 to
Unicode), the rest of the 6845 timing registers (they are stored but do not
change the status-register timing), light pen, and the MDA ports 0x3B4/0x3B5.
``text()`` and ``cells()`` always decode video RAM as 80x25 text regardless of
the mode register.

Invariants: the device's state is the 16 KiB of RAM at ``VRAM_BASE`` of the
memory it is attached to (``vram`` reads it; the snapshot carries a copy, so
a snapshot is complete on its own), ``crtc`` (18 ints), ``index``, ``mode``
and ``colour``; the status register has no state of its own.  The memory
must cover ``VRAM_BASE + VRAM_SIZE`` (every guest has at least 2 MiB).
"""

from __future__ import annotations

from ..bus import read_bytewise, write_bytewise
from ..clock import Clock

VRAM_BASE = 0xB8000
WINDOW_SIZE = 0x8000          # the card decodes 0xB8000-0xBFFFF
VRAM_SIZE = 0x4000            # 16 KiB of RAM, mirrored twice in the window
VRAM_MASK = VRAM_SIZE - 1
COLS, ROWS = 80, 25

# 6845 registers.
CRTC_REGS = 18
R_CURSOR_START, R_CURSOR_END = 0x0A, 0x0B
R_START_HI, R_START_LO = 0x0C, 0x0D
R_CURSOR_HI, R_CURSOR_LO = 0x0E, 0x0F
R_LIGHT_PEN_HI, R_LIGHT_PEN_LO = 0x10, 0x11
CURSOR_MODE_MASK, CURSOR_OFF = 0x60, 0x20    # R10 bits 5-6 = 01: no cursor

# Ports (offsets from 0x3D0).
PORT_BASE, PORT_END = 0x3D0, 0x3DD
MODE_PORT, COLOUR_PORT, STATUS_PORT = 0x3D8, 0x3D9, 0x3DA

# Status register bits.
STATUS_NO_DISPLAY = 0x01      # outside the displayed area (retrace/blanking)
STATUS_VRETRACE = 0x08

# Timing (IBM CGA: 14.31818 MHz dot clock, 912 dots x 262 lines).
DOT_CLOCK_HZ = 14_318_180
DOTS_PER_LINE = 912
LINES_PER_FRAME = 262
DOTS_PER_FRAME = DOTS_PER_LINE * LINES_PER_FRAME
DISPLAYED_DOTS, DISPLAYED_LINES = 640, 200
VSYNC_FIRST, VSYNC_LINES = 224, 16

POWER_ON_MODE = 0x29
POWER_ON_COLOUR = 0x30
POWER_ON_CRTC = (0x71, 0x50, 0x5A, 0x0A, 0x1F, 0x06, 0x19, 0x1C,   # BIOS mode 3 table
                 0x02, 0x07, 0x06, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00)

_MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


def _cp437_table() -> tuple[str, ...]:
    """The IBM PC character set as Unicode: the glyphs the CGA ROM draws."""
    low = (" ☺☻♥♦♣♠•◘○◙♂♀♪♫☼"
           "►◄↕‼¶§▬↨↑↓→←∟↔▲▼")
    table = list(low) + [bytes([b]).decode("cp437") for b in range(0x20, 0x100)]
    table[0x7F] = "⌂"
    table[0xFF] = " "          # non-breaking space in CP437: draw a blank
    return tuple(table)


CP437 = _cp437_table()


class Cga:
    """CGA text-mode adapter: ``attach(bus, mem)`` claims 0x3D0-0x3DC and 0xB8000-0xBFFFF."""

    name = "cga"

    def __init__(self, clock: Clock):
        self.clock = clock
        self.mem = None                 # set by attach: the memory holding the video RAM
        self.crtc = list(POWER_ON_CRTC)
        self.index = 0
        self.mode = POWER_ON_MODE
        self.colour = POWER_ON_COLOUR

    def attach(self, bus, mem) -> None:
        """Claim the ports and the mirror half of the window; the video RAM
        is ``mem``'s RAM at 0xB8000-0xBBFFF."""
        if mem.size < VRAM_BASE + VRAM_SIZE:
            raise ValueError("the CGA's video RAM needs memory up to 0xBC000")
        self.mem = mem
        bus.add(PORT_BASE, PORT_END, self, "cga")
        mem.add_mmio(VRAM_BASE + VRAM_SIZE, VRAM_BASE + WINDOW_SIZE, self, "cga-vram-mirror")

    @property
    def vram(self) -> bytes:
        """The 16 KiB of video RAM as they are now."""
        return self.mem.read_bytes(VRAM_BASE, VRAM_SIZE)

    # -- Device protocol ----------------------------------------------------------
    def reset(self) -> None:
        self.mem.write_bytes(VRAM_BASE, bytes(VRAM_SIZE))
        self.crtc = list(POWER_ON_CRTC)
        self.index = 0
        self.mode = POWER_ON_MODE
        self.colour = POWER_ON_COLOUR

    def snapshot(self) -> dict:
        return {"vram": self.vram, "crtc": list(self.crtc), "index": self.index,
                "mode": self.mode, "colour": self.colour}

    def restore(self, state: dict) -> None:
        vram = state["vram"]
        if len(vram) != VRAM_SIZE or len(state["crtc"]) != CRTC_REGS:
            raise ValueError("CGA snapshot has the wrong video RAM or CRTC size")
        self.mem.write_bytes(VRAM_BASE, vram)
        self.crtc = [int(v) & 0xFF for v in state["crtc"]]
        self.index = state["index"]
        self.mode = state["mode"]
        self.colour = state["colour"]

    # -- the mirror half of the window (MMIO; offsets are from its start) ----------------
    def mmio_read(self, offset: int, size: int) -> int:
        off = offset & VRAM_MASK
        if off + size <= VRAM_SIZE:
            return self.mem.read(VRAM_BASE + off, size)
        return sum(self.mem.read(VRAM_BASE + ((off + i) & VRAM_MASK), 1) << (8 * i) for i in range(size))

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        off = offset & VRAM_MASK
        if off + size <= VRAM_SIZE:
            self.mem.write(VRAM_BASE + off, size, value & _MASKS[size])
            return
        for i in range(size):
            self.mem.write(VRAM_BASE + ((off + i) & VRAM_MASK), 1, (value >> (8 * i)) & 0xFF)

    # -- ports ------------------------------------------------------------------------
    def port_read(self, port: int, size: int) -> int:
        return read_bytewise(self._read_byte, port, size)

    def port_write(self, port: int, size: int, value: int) -> None:
        write_bytewise(self._write_byte, port, size, value)

    def _read_byte(self, port: int) -> int:
        if PORT_BASE <= port < MODE_PORT:
            return self.index if port & 1 == 0 else self._read_crtc(self.index)
        if port == MODE_PORT:
            return self.mode
        if port == COLOUR_PORT:
            return self.colour
        if port == STATUS_PORT:
            return self.status()
        return 0

    def _write_byte(self, port: int, value: int) -> None:
        if PORT_BASE <= port < MODE_PORT:
            if port & 1 == 0:
                self.index = value & 0x1F
            else:
                self._write_crtc(self.index, value)
        elif port == MODE_PORT:
            self.mode = value
        elif port == COLOUR_PORT:
            self.colour = value

    def _read_crtc(self, reg: int) -> int:
        if reg < R_LIGHT_PEN_HI:
            return self.crtc[reg]
        return 0          # light pen latch (never triggered) and unimplemented registers

    def _write_crtc(self, reg: int, value: int) -> None:
        if reg < CRTC_REGS:
            self.crtc[reg] = value

    # -- status register: a pure function of virtual time --------------------------------
    def status(self) -> int:
        dots = self.clock.now * DOT_CLOCK_HZ // self.clock.ips
        line, dot = divmod(dots % DOTS_PER_FRAME, DOTS_PER_LINE)
        value = 0
        if line >= DISPLAYED_LINES or dot >= DISPLAYED_DOTS:
            value |= STATUS_NO_DISPLAY
        if VSYNC_FIRST <= line < VSYNC_FIRST + VSYNC_LINES:
            value |= STATUS_VRETRACE
        return value

    # -- the view for the UI and tests ---------------------------------------------------
    @property
    def start_address(self) -> int:
        """First displayed character, in words (14-bit, as the 6845 counts)."""
        return ((self.crtc[R_START_HI] << 8) | self.crtc[R_START_LO]) & 0x3FFF

    @property
    def cursor_address(self) -> int:
        return ((self.crtc[R_CURSOR_HI] << 8) | self.crtc[R_CURSOR_LO]) & 0x3FFF

    def cells(self) -> list[list[tuple[str, int]]]:
        """25 rows of 80 (character, attribute) pairs, from the start address on."""
        vram, start = self.vram, self.start_address
        rows = []
        for r in range(ROWS):
            row = []
            for c in range(COLS):
                off = ((start + r * COLS + c) * 2) & VRAM_MASK
                row.append((CP437[vram[off]], vram[off + 1]))
            rows.append(row)
        return rows

    def text(self) -> list[str]:
        """25 lines of 80 characters (code page 437 decoded to Unicode)."""
        return ["".join(ch for ch, _ in row) for row in self.cells()]

    def cursor(self) -> tuple[int, int]:
        """(row, col) of the cursor relative to the start address.

        A row of 25 or more means the cursor lies outside the displayed page.
        """
        return divmod((self.cursor_address - self.start_address) & 0x3FFF, COLS)

    def cursor_visible(self) -> bool:
        """False when R10 turns the cursor off (bits 5-6 = 01) or it is off the page."""
        if self.crtc[R_CURSOR_START] & CURSOR_MODE_MASK == CURSOR_OFF:
            return False
        return self.cursor()[0] < ROWS
