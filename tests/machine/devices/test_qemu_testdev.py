"""QEMU's isa-debug-exit, fw_cfg and pc-testdev, and the POST code port, as guests use them."""

from __future__ import annotations

import struct

import pytest

from tvmm.machine.bus import PortBus
from tvmm.machine.clock import Clock
from tvmm.machine.devices.qemu_testdev import (DebugExit, FwCfg, PcTestdev, PostCodePort,
                                               TESTDEV_IOMEM_BASE, TESTDEV_IOMEM_SIZE, exit_status)
from tvmm.machine.irq import IrqLine
from tvmm.machine.memory import PhysicalMemory


# ----------------------------------------------------------------- debug exit
def test_debug_exit_status_is_value_shifted_left_or_one():
    bus, statuses = PortBus(), []
    dev = DebugExit(statuses.append)
    dev.attach(bus)
    bus.port_out(0xF4, 1, 0x10)
    bus.port_out(0xF4, 4, 0x12345678)
    bus.port_out(0xF7, 2, 0x0000)
    assert statuses == [0x21, 0x2468ACF1, 0x01]
    assert statuses[0] & 0xFF == 33                   # what a shell would see
    assert exit_status(0) == 1
    assert bus.port_in(0xF4, 4) == 0                  # QEMU's debug_exit_read
    assert bus.owner(0xF8) is None and bus.owner(0xF3) is None
    assert dev.exit_requests == statuses


def test_debug_exit_at_qemus_default_port():
    bus, statuses = PortBus(), []
    DebugExit(statuses.append, iobase=0x501, iosize=2).attach(bus)
    bus.port_out(0x503, 1, 3)
    bus.port_out(0x500, 1, 3)
    assert statuses == [] and bus.owner(0x503) is None
    bus.port_out(0x501, 1, 3)
    bus.port_out(0x502, 1, 4)
    assert statuses == [7, 9]


# --------------------------------------------------------------------- fw_cfg
def fw_read(bus, key, n):
    bus.port_out(0x510, 2, key)
    return bytes(bus.port_in(0x511, 1) for _ in range(n))


@pytest.fixture
def fw():
    bus = PortBus()
    dev = FwCfg(ram_size=0x1_2000_0000, nb_cpus=2, max_cpus=4)
    dev.attach(bus)
    return bus, dev


def test_fw_cfg_signature_id_and_reads_past_the_end(fw):
    bus, _ = fw
    assert fw_read(bus, 0x0000, 6) == b"QEMU\0\0"
    assert fw_read(bus, 0x0001, 4) == struct.pack("<I", 1)
    assert fw_read(bus, 0x0002, 16) == bytes(16)


def test_fw_cfg_ram_size_and_cpu_counts(fw):
    bus, _ = fw
    assert struct.unpack("<Q", fw_read(bus, 0x0003, 8))[0] == 0x1_2000_0000
    assert struct.unpack("<H", fw_read(bus, 0x0005, 2))[0] == 2
    assert struct.unpack("<H", fw_read(bus, 0x000F, 2))[0] == 4
    bus2 = PortBus()
    FwCfg(ram_size=1 << 20, nb_cpus=3).attach(bus2)
    assert struct.unpack("<H", fw_read(bus2, 0x000F, 2))[0] == 3


def test_fw_cfg_empty_file_directory(fw):
    bus, _ = fw
    assert fw_read(bus, 0x0019, 8) == bytes(8)        # count 0, then past the end


def test_fw_cfg_file_directory_with_files():
    bus = PortBus()
    FwCfg(ram_size=1 << 20, files={"etc/zz": b"xyz", "etc/aa": b"12"}).attach(bus)
    raw = fw_read(bus, 0x0019, 4 + 2 * 64)
    assert struct.unpack(">I", raw[:4])[0] == 2
    size, key, reserved = struct.unpack(">IHH", raw[4:12])
    assert (size, key, reserved) == (2, 0x20, 0) and raw[12:68].rstrip(b"\0") == b"etc/aa"
    size, key, _ = struct.unpack(">IHH", raw[68:76])
    assert (size, key) == (3, 0x21) and raw[76:132].rstrip(b"\0") == b"etc/zz"
    assert fw_read(bus, 0x0020, 3) == b"12\0"
    assert fw_read(bus, 0x0021, 3) == b"xyz"


def test_fw_cfg_unknown_keys_arch_local_and_write_channel(fw):
    bus, _ = fw
    assert fw_read(bus, 0x0042, 4) == bytes(4)
    assert fw_read(bus, 0x8003, 4) == bytes(4)        # no x86 arch-local items
    assert fw_read(bus, 0x4000, 4) == b"QEMU"         # write-channel bit is masked off


def test_fw_cfg_access_widths(fw):
    bus, _ = fw
    bus.port_out(0x510, 2, 0x0000)
    assert bus.port_in(0x510, 1) == ord("Q")          # the 8-bit data read works on 0x510 too
    bus.port_out(0x511, 1, 0x55)                      # data writes are ignored
    assert bus.port_in(0x511, 2) == 0                 # invalid width: no data, no advance
    assert bus.port_in(0x511, 1) == ord("E")
    bus.port_out(0x510, 1, 0x01)                      # an 8-bit write does not select
    assert bus.port_in(0x511, 1) == ord("M")
    bus.port_out(0x510, 2, 0x0000)                    # reselecting rewinds
    assert bus.port_in(0x511, 1) == ord("Q")


def test_fw_cfg_reset_selects_the_signature(fw):
    bus, dev = fw
    fw_read(bus, 0x0003, 3)
    dev.reset()
    assert bytes(bus.port_in(0x511, 1) for _ in range(4)) == b"QEMU"


# ----------------------------------------------------------------- pc-testdev
@pytest.fixture
def testdev():
    bus, mem = PortBus(), PhysicalMemory(1 << 20)
    lines = {n: IrqLine(f"isa{n}") for n in range(16)}
    levels = {n: [] for n in lines}
    for n, line in lines.items():
        line.connect(levels[n].append)
    flushed = []
    dev = PcTestdev(lambda n: lines.get(n), on_flush_page=flushed.append)
    dev.attach(bus, mem)
    return bus, mem, dev, lines, levels, flushed


def test_testdev_scratch_port_at_every_width_and_offset(testdev):
    bus, *_ = testdev
    bus.port_out(0xE0, 4, 0xDEADBEEF)
    assert bus.port_in(0xE0, 4) == 0xDEADBEEF
    assert bus.port_in(0xE1, 1) == 0xBE
    assert bus.port_in(0xE2, 2) == 0xDEAD
    bus.port_out(0xE2, 2, 0x1234)
    assert bus.port_in(0xE0, 4) == 0x1234BEEF
    bus.port_out(0xE3, 4, 0xAABBCCDD)                 # bytes past 0xE3 are dropped
    assert bus.port_in(0xE0, 4) == 0xDD34BEEF
    assert bus.port_in(0xE3, 4) == 0xDD


def test_testdev_byte_port_shares_the_register(testdev):
    bus, *_ = testdev
    bus.port_out(0xE8, 4, 0x01020304)
    assert bus.port_in(0xE0, 4) == 0x01020304
    bus.port_out(0xEB, 1, 0x99)
    assert bus.port_in(0xE8, 4) == 0x99020304
    assert bus.port_in(0xE9, 2) == 0x0203


def test_testdev_irq_line_port_drives_isa_lines(testdev):
    bus, _, dev, lines, levels, _ = testdev
    bus.port_out(0x2004, 1, 1)
    assert lines[4].level is True
    bus.port_out(0x2004, 1, 0x80)
    bus.port_out(0x2004, 1, 0)
    assert levels[4] == [True, False]
    bus.port_out(0x200C, 1, 1)
    bus.port_out(0x200B, 4, 1)                        # split into bytes: IRQ 11 up, 12-14 down
    assert levels[11] == [True] and levels[12] == [True, False]
    assert not any(dev.irq_levels[12:15])
    bus.port_out(0x200D, 2, 0x0100)                   # byte 0 to 0x200D, byte 1 to 0x200E
    assert lines[13].level is False and lines[14].level is True
    bus.port_out(0x2016, 4, 0x01010101)               # bytes past 0x2017 are dropped
    assert dev.irq_levels[22] is dev.irq_levels[23] is True
    bus.port_out(0x2014, 1, 1)                        # no such ISA line: ignored
    assert dev.irq_levels[20] is True
    assert bus.port_in(0x2004, 1) == 0
    assert bus.owner(0x2018) is None


def test_testdev_flush_page_port(testdev):
    bus, *_, flushed = testdev
    bus.port_out(0xE4, 4, 0x12345678)
    bus.port_out(0xE4, 1, 0x12)                       # not a 32-bit write: dropped
    assert flushed == [0x12345000]


def test_testdev_iomem(testdev):
    _, mem, dev, *_ = testdev
    mem.write(TESTDEV_IOMEM_BASE + 0x10, 4, 0xCAFEBABE)
    assert mem.read(TESTDEV_IOMEM_BASE + 0x12, 2) == 0xCAFE
    assert mem.read(TESTDEV_IOMEM_BASE + 0x10, 1) == 0xBE
    last = TESTDEV_IOMEM_BASE + TESTDEV_IOMEM_SIZE - 4
    mem.write(last, 4, 0x11223344)
    assert mem.read(last, 4) == 0x11223344
    assert dev.iomem[-4:] == bytes([0x44, 0x33, 0x22, 0x11])
    assert mem.read(TESTDEV_IOMEM_BASE + TESTDEV_IOMEM_SIZE, 4) == 0xFFFFFFFF   # past it: open bus


# ------------------------------------------------------------------ POST port
def test_post_codes_are_logged_with_virtual_time():
    clock, bus, codes = Clock(), PortBus(), []
    post = PostCodePort(clock, codes.append)
    post.attach(bus)
    clock.advance(100)
    bus.port_out(0x80, 1, 0x12)
    clock.advance(250)
    bus.port_out(0x80, 2, 0xAB34)
    assert post.log == [(100, 0x12), (250, 0x34)]
    assert codes == [0x12, 0x34] == post.codes
    assert bus.port_in(0x80, 1) == 0xFF


def test_post_log_keeps_the_most_recent_entries():
    clock, bus = Clock(), PortBus()
    post = PostCodePort(clock, log_limit=3)
    post.attach(bus)
    for code in range(10):
        bus.port_out(0x80, 1, code)
    assert post.codes == [7, 8, 9]


# ------------------------------------------------------------------- snapshots
def test_snapshot_restore_equivalence_for_all_four():
    clock = Clock()
    fw_a, fw_b = FwCfg(ram_size=64 << 20, nb_cpus=2), FwCfg(ram_size=64 << 20, nb_cpus=2)
    bus_a, bus_b = PortBus(), PortBus()
    fw_a.attach(bus_a)
    fw_b.attach(bus_b)
    bus_a.port_out(0x510, 2, 0x0003)
    bus_a.port_in(0x511, 1)
    fw_b.restore(fw_a.snapshot())
    assert [bus_a.port_in(0x511, 1) for _ in range(9)] == [bus_b.port_in(0x511, 1) for _ in range(9)]

    lines_a = {n: IrqLine() for n in range(16)}
    lines_b = {n: IrqLine() for n in range(16)}
    td_a, td_b = PcTestdev(lines_a.get), PcTestdev(lines_b.get)
    mem_a, mem_b = PhysicalMemory(1 << 20), PhysicalMemory(1 << 20)
    td_a.attach(bus_a, mem_a)
    td_b.attach(bus_b, mem_b)
    bus_a.port_out(0xE0, 4, 0x600DF00D)
    bus_a.port_out(0x2009, 1, 1)
    mem_a.write(TESTDEV_IOMEM_BASE + 0x800, 4, 0x12345678)
    td_b.restore(td_a.snapshot())
    assert td_b.snapshot() == td_a.snapshot()
    assert lines_b[9].level is True                   # the restored device drives its lines again
    for bus, mem in ((bus_a, mem_a), (bus_b, mem_b)):
        bus.port_out(0xE1, 1, 0x77)
        bus.port_out(0x2009, 1, 0)
    assert bus_a.port_in(0xE0, 4) == bus_b.port_in(0xE0, 4) == 0x600D770D
    assert mem_a.read(TESTDEV_IOMEM_BASE + 0x800, 4) == mem_b.read(TESTDEV_IOMEM_BASE + 0x800, 4)
    assert lines_a[9].level is lines_b[9].level is False

    post_a, post_b = PostCodePort(clock), PostCodePort(clock)
    post_a.port_write(0x80, 1, 0x55)
    post_b.restore(post_a.snapshot())
    for post in (post_a, post_b):
        post.port_write(0x80, 1, 0xAA)
    assert post_a.log == post_b.log and post_b.snapshot() == post_a.snapshot()

    exit_a, exit_b = DebugExit(), DebugExit()
    exit_a.port_write(0xF4, 1, 2)
    exit_b.restore(exit_a.snapshot())
    assert exit_b.snapshot() == exit_a.snapshot() == {"exit_requests": [5]}
