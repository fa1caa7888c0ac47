"""CGA text mode: video RAM through MMIO, the 6845 CRTC, the status register."""

from __future__ import annotations

import pytest

from tvmm.machine.bus import PortBus
from tvmm.machine.clock import Clock
from tvmm.machine.devices.cga import (DOTS_PER_FRAME, DOTS_PER_LINE, DOT_CLOCK_HZ, STATUS_NO_DISPLAY,
                                      STATUS_VRETRACE, Cga)
from tvmm.machine.memory import PhysicalMemory

VRAM = 0xB8000


@pytest.fixture
def machine():
    clock, bus, mem = Clock(), PortBus(), PhysicalMemory(1 << 20)
    cga = Cga(clock)
    cga.attach(bus, mem)
    return clock, bus, mem, cga


def put(mem, row, col, text, attr=0x07):
    for i, ch in enumerate(text):
        mem.write(VRAM + 2 * (row * 80 + col + i), 2, (attr << 8) | ord(ch))


def crtc(bus, reg, value):
    bus.port_out(0x3D4, 1, reg)
    bus.port_out(0x3D5, 1, value)


def test_text_after_writes_through_memory(machine):
    clock, bus, mem, cga = machine
    put(mem, 0, 0, "Hello", 0x1F)
    put(mem, 24, 75, "end!!")
    mem.write(VRAM + 2 * 80, 4, 0x0742_0741)           # a dword: 'A' then 'B' on row 1
    mem.write(VRAM + 2 * 160, 1, 0x03)                  # CP437 heart
    lines = cga.text()
    assert len(lines) == 25 and all(len(line) == 80 for line in lines)
    assert lines[0] == "Hello" + " " * 75
    assert lines[1].startswith("AB ")
    assert lines[2][0] == "♥"
    assert lines[24].endswith("end!!")
    assert cga.cells()[0][0] == ("H", 0x1F)
    assert cga.cells()[1][1] == ("B", 0x07)
    assert mem.read(VRAM, 2) == 0x1F48
    assert mem.read(VRAM + 2 * 80, 4) == 0x0742_0741


def test_cp437_decoding_of_the_printable_and_graphic_range(machine):
    _, _, mem, cga = machine
    for i, code in enumerate((0x00, 0x01, 0xB0, 0xC9, 0xCD, 0xE1, 0x7F, 0x41)):
        mem.write(VRAM + 2 * i, 1, code)
    assert cga.text()[0][:8] == " ☺░╔═ß⌂A"


def test_the_16k_of_video_ram_is_mirrored_in_the_upper_half_of_the_window(machine):
    _, _, mem, cga = machine
    mem.write(0xBC000 + 10, 2, 0x4E5A)
    assert mem.read(VRAM + 10, 2) == 0x4E5A
    assert cga.cells()[0][5] == ("Z", 0x4E)
    mem.write(0xBFFFF, 1, 0x99)                          # last byte of the window
    assert cga.vram[0x3FFF] == 0x99 and mem.read(0xBBFFF, 1) == 0x99
    # a dword at the very end of the 16 KiB wraps to its start
    cga.mmio_write(0x3FFE, 4, 0x44332211)
    assert cga.vram[0x3FFE:0x4000] == b"\x11\x22" and cga.vram[0:2] == b"\x33\x44"
    assert cga.mmio_read(0x7FFE, 4) == 0x44332211


def test_cursor_follows_crtc_registers_and_reads_back(machine):
    _, bus, _, cga = machine
    assert cga.cursor() == (0, 0)
    pos = 3 * 80 + 17
    crtc(bus, 0x0E, pos >> 8)
    crtc(bus, 0x0F, pos & 0xFF)
    assert cga.cursor() == (3, 17)
    for reg, value in ((0x0A, 0x0D), (0x0B, 0x0E), (0x0C, 0x01), (0x0D, 0x23), (0x0E, 0x00), (0x0F, 0xF1)):
        crtc(bus, reg, value)
    for reg, value in ((0x0A, 0x0D), (0x0B, 0x0E), (0x0C, 0x01), (0x0D, 0x23), (0x0E, 0x00), (0x0F, 0xF1)):
        bus.port_out(0x3D4, 1, reg)
        assert bus.port_in(0x3D5, 1) == value
    # one 16-bit OUT sets index and data (vgacon-style)
    bus.port_out(0x3D4, 2, (0x07 << 8) | 0x0E)
    bus.port_out(0x3D4, 2, (0xD0 << 8) | 0x0F)
    crtc(bus, 0x0C, 0)
    crtc(bus, 0x0D, 0)
    assert cga.cursor() == divmod(0x7D0, 80) == (25, 0)     # just past the page
    assert not cga.cursor_visible()
    crtc(bus, 0x0F, 0xCF)
    assert cga.cursor() == (24, 79) and cga.cursor_visible()
    crtc(bus, 0x0A, 0x20)                                    # cursor disabled
    assert not cga.cursor_visible()


def test_xv6_style_cursor_read_modify_write(machine):
    # xv6's cgaputc reads the cursor position from R14/R15, writes a cell, moves the cursor.
    _, bus, mem, cga = machine
    for ch in "hi":
        bus.port_out(0x3D4, 1, 14)
        pos = bus.port_in(0x3D5, 1) << 8
        bus.port_out(0x3D4, 1, 15)
        pos |= bus.port_in(0x3D5, 1)
        mem.write(VRAM + 2 * pos, 2, 0x0700 | ord(ch))
        pos += 1
        crtc(bus, 14, pos >> 8)
        crtc(bus, 15, pos & 0xFF)
    assert cga.text()[0].startswith("hi ") and cga.cursor() == (0, 2)


def test_start_address_scrolls_the_display(machine):
    _, bus, mem, cga = machine
    for row in range(30):
        put(mem, row, 0, f"line {row}")
    assert cga.text()[0].startswith("line 0 ")
    crtc(bus, 0x0C, 0)
    crtc(bus, 0x0D, 5 * 80)                                  # only the low byte lands: 0x90 = 144
    assert cga.text()[0] == " " * 16 + "line 2".ljust(64)     # row 1 col 64 onwards
    crtc(bus, 0x0C, (5 * 80) >> 8)
    crtc(bus, 0x0D, (5 * 80) & 0xFF)
    lines = cga.text()
    assert lines[0].startswith("line 5 ") and lines[24].startswith("line 29")
    # the cursor is reported relative to the start address
    crtc(bus, 0x0E, (6 * 80) >> 8)
    crtc(bus, 0x0F, (6 * 80) & 0xFF)
    assert cga.cursor() == (1, 0)
    # the display wraps around the 16 KiB (8192 characters)
    start = 8192 - 40
    crtc(bus, 0x0C, start >> 8)
    crtc(bus, 0x0D, start & 0xFF)
    assert cga.text()[0][40:].startswith("line 0 ")
    assert cga.cells()[0][40] == ("l", 0x07)


def test_video_ram_is_plain_ram_the_processor_maps(machine):
    # the lower 16 KiB of the window are RAM (the processor may map them in
    # its TLB: no device access per store); only the mirror half is MMIO
    _, _, mem, cga = machine
    assert all(mem.is_ram_page(pfn) for pfn in range(0xB8, 0xBC))
    assert not any(mem.is_ram_page(pfn) for pfn in range(0xBC, 0xC0))
    mem.ram[VRAM:VRAM + 4] = b"O\x07K\x07"                # a store that never reaches the device
    assert cga.text()[0].startswith("OK ")


def test_a_kernel_scrolling_the_screen_leaves_the_text_and_no_mmio_exit():
    # xv6's cgaputc scrolls with a byte-by-byte memmove of 23 rows: under the
    # monitor every byte used to be an MMIO exit; now none is
    from tvmm.guestspec import GuestSpec
    from tvmm.monitor.vmm import Monitor
    code = bytes.fromhex(
        "be a0 80 0b 00"        # mov esi, 0xB80A0 (row 1)
        "bf 00 80 0b 00"        # mov edi, 0xB8000 (row 0)
        "b9 60 0e 00 00"        # mov ecx, 23*80*2
        "f3 a4"                 # rep movsb
        "b8 41 07 42 07"        # mov eax, 0x07420741 ('A','B')
        "a3 00 8f 0b 00"        # mov [0xB8F00], eax (row 24)
        "f4".replace(" ", ""))  # hlt
    spec = GuestSpec(name="scroll", mem=4 << 20, boot="multiboot", kernel="-")
    monitor = Monitor(Monitor.host_size_for([spec]))
    g = monitor.add_guest(spec, boot=False)
    for row in range(25):
        for col, ch in enumerate(f"row {row}"):
            g.gmem.write(VRAM + 2 * (row * 80 + col), 2, 0x0700 | ord(ch))
    g.gmem.write_bytes(0x100000, code)
    from tvmm.machine.boot_state import enter_flat32
    enter_flat32(g.vcpu, 0x100000, 0x90000)
    while g.runnable:
        monitor.run(100_000)
    lines = g.pc.cga.text()
    assert lines[0].startswith("row 1 ") and lines[22].startswith("row 23") and lines[23].startswith("row 23")
    assert lines[24].startswith("AB")
    assert monitor.log.by_kind("scroll").get("mmio", 0) == 0


def test_status_bits_follow_virtual_time(machine):
    clock, bus, _, cga = machine

    def at_dot(dot):
        # the first instruction count at which `dot` dots have elapsed
        insns = -(-dot * clock.ips // DOT_CLOCK_HZ)
        clock.advance(max(insns, clock.now))
        return bus.port_in(0x3DA, 1)

    assert at_dot(0) == 0                                     # top-left pixel: display active
    assert at_dot(639) == 0
    assert at_dot(640) & STATUS_NO_DISPLAY                   # horizontal blanking
    assert not at_dot(640) & STATUS_VRETRACE
    assert at_dot(DOTS_PER_LINE) == 0                         # next line displays again
    assert at_dot(200 * DOTS_PER_LINE) == STATUS_NO_DISPLAY   # bottom border
    assert at_dot(224 * DOTS_PER_LINE) == STATUS_NO_DISPLAY | STATUS_VRETRACE
    assert at_dot(240 * DOTS_PER_LINE - 1) & STATUS_VRETRACE
    assert at_dot(240 * DOTS_PER_LINE) == STATUS_NO_DISPLAY
    assert at_dot(DOTS_PER_FRAME) == 0                         # and the next frame starts


def test_polling_for_retrace_terminates_and_toggles(machine):
    # A kernel loop: wait for vertical retrace, then for its end, 100 instructions per poll.
    clock, bus, _, _ = machine
    seen = []
    for _ in range(2):
        while not bus.port_in(0x3DA, 1) & STATUS_VRETRACE:
            clock.advance(clock.now + 100)
        seen.append(clock.now)
        while bus.port_in(0x3DA, 1) & STATUS_VRETRACE:
            clock.advance(clock.now + 100)
    frame = DOTS_PER_FRAME * clock.ips // DOT_CLOCK_HZ
    assert abs((seen[1] - seen[0]) - frame) <= 100
    assert seen[0] == pytest.approx(224 * DOTS_PER_LINE * clock.ips / DOT_CLOCK_HZ, abs=100)


def test_mode_and_colour_registers_are_stored(machine):
    _, bus, _, cga = machine
    assert cga.mode == 0x29 and cga.colour == 0x30          # BIOS mode 3
    bus.port_out(0x3D9, 1, 0x0F)
    assert cga.colour == 0x0F and bus.port_in(0x3D9, 1) == 0x0F


def test_snapshot_restore_is_equivalent(machine):
    clock, bus, mem, cga = machine
    put(mem, 7, 3, "snapshot me", 0x4E)
    crtc(bus, 0x0E, 0x02)
    crtc(bus, 0x0F, 0x34)
    crtc(bus, 0x0D, 80)
    bus.port_out(0x3D4, 1, 0x0B)
    state = cga.snapshot()

    other_clock, other_bus, other_mem = Clock(), PortBus(), PhysicalMemory(1 << 20)
    other = Cga(other_clock)
    other.attach(other_bus, other_mem)
    other.restore(state)
    assert other.text() == cga.text() and other.cells() == cga.cells()
    assert other.cursor() == cga.cursor()
    # the index register came along: the same data-port access hits the same register
    assert other_bus.port_in(0x3D5, 1) == bus.port_in(0x3D5, 1) == 0x07
    for b, m in ((bus, mem), (other_bus, other_mem)):
        m.write(VRAM + 4000, 2, 0x0758)
        b.port_out(0x3D5, 1, 0x0F)
    assert other.snapshot() == cga.snapshot()
    clock.advance(123_457)
    other_clock.advance(123_457)
    assert other_bus.port_in(0x3DA, 1) == bus.port_in(0x3DA, 1)
    other.restore(other.snapshot())
    assert other.snapshot() == cga.snapshot()


def test_reset_clears_screen_and_registers(machine):
    _, bus, mem, cga = machine
    put(mem, 0, 0, "x")
    crtc(bus, 0x0E, 3)
    cga.reset()
    assert cga.text()[0] == " " * 80 and cga.cursor() == (0, 0)
