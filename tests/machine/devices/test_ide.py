"""ATA/IDE channel: what a PIO driver (xv6's, Linux's legacy one) observes."""

from __future__ import annotations

import functools

import pytest

from tvmm.machine.bus import PortBus
from tvmm.machine.clock import Clock
from tvmm.machine.devices.ide import (ABRT, BSY, DRDY, DRQ, ERR, IDNF, NIEN, SRST, Disk, IdeChannel,
                                      default_geometry)
from tvmm.machine.irq import IrqLine

DATA, ERROR, COUNT, LBA_LOW, LBA_MID, LBA_HIGH, DEVICE, STATUS = range(0x1F0, 0x1F8)
CTRL = 0x3F6
DELAY = 1000


@functools.lru_cache(maxsize=None)
def image(sectors: int, salt: int = 0) -> bytes:
    """Every sector distinct: its number in the first bytes, then a pattern."""
    out = bytearray()
    for s in range(sectors):
        head = s.to_bytes(4, "little") + bytes([salt])
        out += head + bytes((s * 7 + j + salt) & 0xFF for j in range(512 - len(head)))
    return bytes(out)


class Rig:
    def __init__(self, master=None, slave=None, delay=DELAY, disks=True):
        self.clock, self.bus = Clock(), PortBus()
        self.irq = IrqLine("irq14")
        self.levels = []
        self.irq.connect(self.levels.append)
        if disks and master is None:
            master = Disk.from_bytes(image(2048))
        self.ide = IdeChannel(self.clock, self.irq, master=master, slave=slave, delay=delay)
        self.ide.attach(self.bus)

    # port helpers
    def inb(self, port):
        return self.bus.port_in(port, 1)

    def outb(self, port, value):
        self.bus.port_out(port, 1, value)

    def interrupts(self):
        return sum(1 for level in self.levels if level)

    def run(self, insns):
        self.clock.advance(self.clock.now + insns)

    def wait_ready(self, limit=100):
        """Poll alternate status (which leaves INTRQ alone) until BSY clears."""
        for _ in range(limit):
            status = self.inb(CTRL)
            if not status & BSY:
                return status
            self.run(100)
        raise AssertionError("drive stayed busy")

    def lba_command(self, cmd, lba, count, unit=0):
        self.outb(DEVICE, 0xE0 | (unit << 4) | ((lba >> 24) & 0x0F))
        self.outb(COUNT, count & 0xFF)
        self.outb(LBA_LOW, lba & 0xFF)
        self.outb(LBA_MID, (lba >> 8) & 0xFF)
        self.outb(LBA_HIGH, (lba >> 16) & 0xFF)
        self.outb(STATUS, cmd)

    def read_block(self, nbytes=512, width=2):
        return b"".join(self.bus.port_in(DATA, width).to_bytes(width, "little")
                        for _ in range(nbytes // width))

    def write_block(self, data, width=2):
        for i in range(0, len(data), width):
            self.bus.port_out(DATA, width, int.from_bytes(data[i:i + width], "little"))

    def identify(self, unit=0):
        self.outb(DEVICE, 0xA0 | (unit << 4))
        self.outb(STATUS, 0xEC)
        assert self.wait_ready() & DRQ
        return self.read_block()


def words(block):
    return [int.from_bytes(block[i:i + 2], "little") for i in range(0, 512, 2)]


def ata_string(block, first, count):
    """Undo ATA's byte order: the first character of a pair is the word's high byte."""
    ws = words(block)[first:first + count]
    return b"".join(w.to_bytes(2, "big") for w in ws).decode("ascii")


# -- IDENTIFY ------------------------------------------------------------------------------

def test_identify_block_contents():
    rig = Rig(master=Disk.from_bytes(image(20160 + 5)))
    block = rig.identify()
    assert len(block) == 512
    w = words(block)
    assert ata_string(block, 27, 20).rstrip() == "TVMM ATA DISK"
    assert block[54:58] == b"VTMM"                # "TVMM" as the bytes appear on the wire
    assert ata_string(block, 10, 10).strip().startswith("TVMM")
    assert ata_string(block, 23, 4).rstrip() == "1.0"
    assert w[0] & 0x8000 == 0                      # an ATA (not ATAPI) device
    assert (w[1], w[3], w[6]) == (20, 16, 63)      # default CHS
    assert w[49] & 0x0200                           # LBA supported
    assert w[60] | (w[61] << 16) == 20165           # LBA28 capacity counts every sector
    assert w[47] == 0x8010                          # READ/WRITE MULTIPLE up to 16
    assert w[59] & 0x100 == 0                       # multiple mode off at power-on
    assert w[53] & 1 and (w[54], w[55], w[56]) == (20, 16, 63)
    assert w[57] | (w[58] << 16) == 20 * 16 * 63
    assert w[83] & 0xC000 == 0x4000 and w[83] & 0x1000  # FLUSH CACHE
    assert block[510] == 0xA5 and sum(block) % 256 == 0  # integrity word
    assert rig.interrupts() == 1                    # one DRQ block, one interrupt
    assert rig.inb(STATUS) & (BSY | DRQ | DRDY) == DRDY


def test_identify_reports_multiple_setting_and_translation():
    rig = Rig(delay=0)
    rig.outb(COUNT, 8)
    rig.outb(STATUS, 0xC6)
    rig.outb(DEVICE, 0xA0 | 3)                      # 4 heads
    rig.outb(COUNT, 32)                             # 32 sectors per track
    rig.outb(STATUS, 0x91)
    w = words(rig.identify())
    assert w[59] == 0x108
    assert (w[54], w[55], w[56]) == (2048 // (4 * 32), 4, 32)


def test_small_disk_geometry_never_points_past_the_end():
    for sectors in (1, 62, 63, 100, 1000, 1007, 1008, 5000):
        c, h, s = default_geometry(sectors)
        assert c >= 1 and 1 <= h <= 16 and 1 <= s <= 63 and c * h * s <= sectors


# -- data transfers ----------------------------------------------------------------------

def test_read_sectors_lba28_with_an_interrupt_per_sector():
    rig = Rig()
    rig.lba_command(0x20, 100, 3)
    assert rig.inb(CTRL) & BSY                      # the command takes virtual time
    data = b""
    for _ in range(3):
        assert rig.inb(STATUS) & BSY
        rig.run(DELAY)
        assert rig.irq.level
        status = rig.inb(STATUS)                    # reading status acknowledges INTRQ
        assert not rig.irq.level and status & DRQ and not status & ERR
        data += rig.read_block()
    assert data == image(2048)[100 * 512:103 * 512]
    assert rig.inb(STATUS) == DRDY | 0x10           # done: no interrupt after the last block
    assert rig.interrupts() == 3
    # the address registers point past the transfer, the count is exhausted
    assert (rig.inb(LBA_LOW), rig.inb(LBA_MID), rig.inb(COUNT)) == (103, 0, 0)


def test_write_then_read_back_via_lba28():
    rig = Rig()
    payload = bytes(range(256)) * 4
    rig.lba_command(0x30, 0x0ABC & 0x7FF, 2)
    assert rig.inb(CTRL) & DRQ and rig.interrupts() == 0   # DRQ at once, no interrupt yet
    rig.write_block(payload[:512])
    assert rig.inb(CTRL) & BSY
    rig.run(DELAY)
    assert rig.irq.level and rig.inb(STATUS) & DRQ
    rig.write_block(payload[512:])
    rig.run(DELAY)
    assert rig.irq.level and rig.inb(STATUS) == DRDY | 0x10
    assert rig.interrupts() == 2
    rig.lba_command(0x20, 0x0ABC & 0x7FF, 2)
    rig.run(DELAY)
    got = rig.read_block()
    rig.run(DELAY)
    got += rig.read_block()
    assert got == payload


def test_chs_addressing_round_trip_and_matches_lba():
    rig = Rig(delay=0)
    c, h, s = default_geometry(2048)
    assert (h, s) == (16, 63)
    lba = (1 * h + 2) * s + (5 - 1)                 # cylinder 1, head 2, sector 5
    rig.outb(DEVICE, 0xA0 | 2)
    rig.outb(COUNT, 1)
    rig.outb(LBA_LOW, 5)
    rig.outb(LBA_MID, 1)
    rig.outb(LBA_HIGH, 0)
    rig.outb(STATUS, 0x20)
    assert rig.read_block() == image(2048)[lba * 512:(lba + 1) * 512]
    assert (rig.inb(LBA_LOW), rig.inb(DEVICE) & 0x0F) == (6, 2)    # next sector, in CHS
    rig.outb(DEVICE, 0xA0 | 2)
    rig.outb(COUNT, 1)
    rig.outb(LBA_LOW, 5)
    rig.outb(LBA_MID, 1)
    rig.outb(STATUS, 0x30)
    rig.write_block(b"\x5A" * 512)
    rig.lba_command(0x20, lba, 1)
    assert rig.read_block() == b"\x5A" * 512


def test_chs_address_outside_the_translation_fails_with_idnf():
    rig = Rig(delay=0)
    rig.outb(DEVICE, 0xA0)
    rig.outb(COUNT, 1)
    rig.outb(LBA_LOW, 0)                             # sectors count from 1
    rig.outb(STATUS, 0x20)
    assert rig.inb(STATUS) & ERR and rig.inb(ERROR) == IDNF


def test_sector_count_zero_means_256():
    rig = Rig(delay=0)
    rig.lba_command(0x20, 7, 0)
    data = b""
    for _ in range(256):
        assert rig.inb(STATUS) & DRQ                 # acknowledges each block's interrupt
        data += rig.read_block()
    assert data == image(2048)[7 * 512:263 * 512]
    assert rig.inb(STATUS) & DRQ == 0 and rig.interrupts() == 256


def test_transfer_past_the_end_fails_with_idnf_and_no_data():
    rig = Rig()
    rig.lba_command(0x20, 2047, 2)
    rig.run(DELAY)
    assert rig.irq.level
    status = rig.inb(STATUS)
    assert status & ERR and not status & DRQ and rig.inb(ERROR) == IDNF
    assert rig.bus.port_in(DATA, 2) == 0xFFFF
    rig.lba_command(0x30, 2048, 1)
    rig.run(DELAY)
    assert rig.inb(STATUS) & ERR and rig.inb(ERROR) == IDNF


def test_32bit_data_port_moves_four_bytes_per_access():
    rig = Rig(delay=0)
    rig.lba_command(0x20, 3, 1)
    assert rig.read_block(width=4) == image(2048)[3 * 512:4 * 512]
    assert not rig.inb(STATUS) & DRQ                 # exactly 128 dword reads finished it
    # xv6's write: the command, then outsl straight away without polling
    rig.lba_command(0x30, 9, 1)
    rig.write_block(b"\xC3\x3C\x01\x02" * 128, width=4)
    assert rig.inb(STATUS) == DRDY | 0x10
    rig.lba_command(0x20, 9, 1)
    assert rig.read_block(width=4) == b"\xC3\x3C\x01\x02" * 128


def test_eight_bit_data_access_is_a_word_cycle():
    rig = Rig(delay=0)
    rig.lba_command(0x20, 0, 1)
    low_bytes = bytes(rig.bus.port_in(DATA, 1) for _ in range(256))
    assert low_bytes == image(1)[0::2] and not rig.inb(STATUS) & DRQ


# -- multiple mode ----------------------------------------------------------------------------

def test_read_and_write_multiple_interrupt_per_block():
    rig = Rig()
    rig.lba_command(0xC4, 0, 4)                      # multiple mode not enabled yet
    rig.run(DELAY)
    assert rig.inb(STATUS) & ERR and rig.inb(ERROR) == ABRT
    rig.outb(COUNT, 3)
    rig.outb(STATUS, 0xC6)                           # not a power of two
    rig.run(DELAY)
    assert rig.inb(STATUS) & ERR and rig.inb(ERROR) == ABRT
    rig.outb(COUNT, 4)
    rig.outb(STATUS, 0xC6)
    rig.run(DELAY)
    assert rig.inb(STATUS) == DRDY | 0x10
    start = rig.interrupts()
    rig.lba_command(0xC4, 10, 10)                    # blocks of 4, 4, 2 sectors
    data = b""
    for size in (4, 4, 2):
        rig.run(DELAY)
        assert rig.inb(STATUS) & DRQ
        data += rig.read_block(512 * size, width=4)
    assert data == image(2048)[10 * 512:20 * 512]
    assert rig.interrupts() - start == 3
    assert not rig.inb(STATUS) & DRQ
    start = rig.interrupts()
    rig.lba_command(0xC5, 50, 6)                     # blocks of 4 and 2 sectors
    assert rig.inb(CTRL) & DRQ
    rig.write_block(b"\x11" * 2048)
    rig.run(DELAY)
    assert rig.inb(STATUS) & DRQ
    rig.write_block(b"\x22" * 1024)
    rig.run(DELAY)
    assert rig.inb(STATUS) == DRDY | 0x10
    assert rig.interrupts() - start == 2
    assert rig.ide.drives[0].disk.read(50, 6) == b"\x11" * 2048 + b"\x22" * 1024


# -- interrupts ---------------------------------------------------------------------------------

def test_nien_suppresses_the_interrupt_line():
    rig = Rig()
    rig.outb(CTRL, NIEN)
    rig.lba_command(0x20, 1, 1)
    rig.run(DELAY)
    assert not rig.irq.level and rig.interrupts() == 0
    assert rig.inb(CTRL) & DRQ                       # the data is there for a polling driver
    rig.outb(CTRL, 0)                                # enabling delivers the pending request
    assert rig.irq.level
    rig.inb(STATUS)
    assert not rig.irq.level


def test_alternate_status_does_not_clear_the_interrupt():
    rig = Rig()
    rig.lba_command(0x40, 5, 8)                      # READ VERIFY: no data, one interrupt
    rig.run(DELAY)
    assert rig.irq.level
    assert rig.inb(CTRL) == DRDY | 0x10
    assert rig.inb(CTRL) == DRDY | 0x10
    assert rig.irq.level
    assert rig.inb(STATUS) == DRDY | 0x10
    assert not rig.irq.level
    assert rig.inb(LBA_LOW) == 13 and rig.inb(COUNT) == 0


@pytest.mark.parametrize("cmd", [0xE7, 0xEF, 0x10, 0x1F, 0x70])
def test_non_data_commands_complete_with_an_interrupt(cmd):
    rig = Rig()
    rig.outb(ERROR, 0x03)                            # a SET FEATURES subcommand
    rig.outb(STATUS, cmd)
    assert rig.inb(CTRL) & BSY
    rig.run(DELAY)
    assert rig.irq.level and rig.inb(STATUS) == DRDY | 0x10 and rig.inb(ERROR) == 0


@pytest.mark.parametrize("cmd", [0xA1, 0x00, 0xB0, 0xC8, 0x25])
def test_unsupported_commands_abort(cmd):
    rig = Rig()
    rig.outb(STATUS, cmd)
    rig.run(DELAY)
    assert rig.irq.level
    assert rig.inb(STATUS) == DRDY | 0x10 | ERR and rig.inb(ERROR) == ABRT


def test_delay_zero_completes_inside_the_access():
    rig = Rig(delay=0)
    rig.lba_command(0x20, 0, 1)
    assert rig.irq.level and rig.inb(STATUS) & DRQ
    assert rig.clock.pending() == []


# -- reset and diagnostics ------------------------------------------------------------------------

def signature(rig):
    return tuple(rig.inb(p) for p in (COUNT, LBA_LOW, LBA_MID, LBA_HIGH, DEVICE))


def test_software_reset_leaves_the_ata_signature():
    rig = Rig(slave=Disk.from_bytes(image(64)))
    rig.lba_command(0x20, 300, 4, unit=1)            # mid-command on the slave
    rig.outb(CTRL, SRST | NIEN)
    assert rig.inb(CTRL) & BSY
    rig.run(5 * DELAY)
    assert rig.inb(CTRL) & BSY                       # held in reset while SRST is set
    rig.outb(CTRL, NIEN)
    assert rig.inb(CTRL) & BSY
    rig.run(DELAY)
    assert rig.inb(STATUS) == 0x50
    assert signature(rig) == (1, 1, 0, 0, 0xA0)      # device 0 selected again
    assert rig.inb(ERROR) == 0x01
    rig.outb(DEVICE, 0xB0)
    assert rig.inb(STATUS) == 0x50 and signature(rig) == (1, 1, 0, 0, 0xB0)
    assert rig.interrupts() == 0                      # reset raises no interrupt
    assert rig.clock.pending() == []                  # the slave's read was abandoned


def test_software_reset_keeps_multiple_mode_but_power_on_does_not():
    rig = Rig(delay=0)
    rig.outb(COUNT, 8)
    rig.outb(STATUS, 0xC6)
    rig.outb(CTRL, SRST)
    rig.outb(CTRL, 0)
    assert words(rig.identify())[59] == 0x108
    rig.ide.reset()
    assert words(rig.identify())[59] == 0


def test_execute_diagnostic_runs_on_both_devices():
    rig = Rig(slave=Disk.from_bytes(image(64)))
    rig.outb(DEVICE, 0xB0)
    rig.outb(LBA_MID, 0x55)
    rig.outb(STATUS, 0x90)
    rig.run(DELAY)
    assert rig.irq.level
    assert rig.inb(STATUS) == 0x50 and rig.inb(ERROR) == 0x01
    assert signature(rig) == (1, 1, 0, 0, 0xA0)
    rig.outb(DEVICE, 0xB0)
    assert rig.inb(ERROR) == 0x01 and signature(rig) == (1, 1, 0, 0, 0xB0)


# -- master/slave selection -------------------------------------------------------------------------

def test_slave_drive_is_selected_by_the_device_bit():
    rig = Rig(delay=0, slave=Disk.from_bytes(image(64, salt=9)))
    rig.lba_command(0x20, 1, 1, unit=1)
    assert rig.read_block() == image(64, salt=9)[512:1024]
    rig.lba_command(0x20, 1, 1, unit=0)
    assert rig.read_block() == image(2048)[512:1024]
    # the slave's identify reports the slave's size
    w = words(rig.identify(unit=1))
    assert w[60] == 64


def test_interrupt_follows_the_selected_drive():
    rig = Rig(slave=Disk.from_bytes(image(64)))
    rig.outb(DEVICE, 0xB0)
    rig.outb(STATUS, 0xE7)
    rig.run(DELAY)
    assert rig.irq.level
    rig.outb(DEVICE, 0xA0)                           # master does not drive INTRQ for the slave
    assert not rig.irq.level
    rig.outb(DEVICE, 0xB0)
    assert rig.irq.level


def test_absent_slave_reads_status_zero_xv6_probe():
    rig = Rig(delay=0)
    # xv6 ideinit: wait for master ready, select disk 1, poll status for non-zero
    assert rig.inb(STATUS) & (BSY | DRDY) == DRDY
    rig.outb(DEVICE, 0xE0 | (1 << 4))
    assert all(rig.inb(STATUS) == 0 for _ in range(1000))
    assert rig.inb(CTRL) == 0
    rig.outb(STATUS, 0x20)                           # a command to nobody: ignored
    assert rig.inb(STATUS) == 0 and not rig.irq.level
    rig.outb(LBA_MID, 0x42)                          # device 0 answers the task file reads
    assert rig.inb(LBA_MID) == 0x42
    rig.outb(DEVICE, 0xE0)
    assert rig.inb(STATUS) == 0x50

    present = Rig(delay=0, slave=Disk.from_bytes(image(8)))
    present.outb(DEVICE, 0xF0)
    assert present.inb(STATUS) == 0x50


def test_a_channel_without_drives_floats_high():
    rig = Rig(disks=False)
    for port in (ERROR, COUNT, LBA_LOW, LBA_MID, LBA_HIGH, DEVICE, STATUS, CTRL):
        assert rig.inb(port) == 0xFF
    assert rig.bus.port_in(DATA, 2) == 0xFFFF
    rig.outb(STATUS, 0xEC)
    assert not rig.irq.level and rig.clock.pending() == []


# -- disks ---------------------------------------------------------------------------------------

def test_copy_on_write_leaves_the_file_alone(tmp_path):
    path = tmp_path / "disk.img"
    original = image(16)
    path.write_bytes(original)
    disk = Disk(path)
    rig = Rig(master=disk, delay=0)
    rig.lba_command(0x30, 2, 1)
    rig.write_block(b"\xEE" * 512)
    assert path.read_bytes() == original
    assert sorted(disk.overlay) == [2]
    rig.lba_command(0x20, 1, 3)
    data = b"".join(rig.read_block() for _ in range(3))
    assert data == original[512:1024] + b"\xEE" * 512 + original[1536:2048]


def test_writable_disk_writes_the_file(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(image(16))
    disk = Disk(path, writable=True)
    rig = Rig(master=disk, delay=0)
    rig.lba_command(0x30, 15, 1)
    rig.write_block(b"\x77" * 512)
    rig.outb(STATUS, 0xE7)
    assert path.read_bytes()[15 * 512:] == b"\x77" * 512
    assert path.read_bytes()[:15 * 512] == image(16)[:15 * 512]
    assert disk.overlay == {}


def test_bad_images_are_refused_clearly(tmp_path):
    odd = tmp_path / "odd.img"
    odd.write_bytes(b"\0" * 1000)
    with pytest.raises(ValueError, match="multiple of 512"):
        Disk(odd)
    with pytest.raises(ValueError, match="multiple of 512"):
        Disk.from_bytes(b"\0" * 513)
    with pytest.raises(ValueError, match="multiple of 512"):
        Disk.from_bytes(b"")
    with pytest.raises(FileNotFoundError, match="disk image not found"):
        Disk(tmp_path / "missing.img")


# -- snapshots -------------------------------------------------------------------------------------

def trace(rig, steps):
    """Drive a rig through the same accesses and time, recording what it observes."""
    seen = []
    for step in steps:
        kind = step[0]
        if kind == "in":
            seen.append(rig.bus.port_in(step[1], step[2]))
        elif kind == "out":
            rig.bus.port_out(step[1], step[2], step[3])
        elif kind == "run":
            rig.run(step[1])
        seen.append((rig.irq.level, rig.clock.now))
    return seen


def test_snapshot_restore_mid_transfer_behaves_identically():
    slave = image(64, salt=3)
    a = Rig(slave=Disk.from_bytes(slave))
    # dirty the overlay, set multiple mode, start a multi-block read and stop mid-block
    a.lba_command(0x30, 40, 1)
    a.write_block(b"\xAB" * 512)
    a.run(DELAY)
    a.outb(COUNT, 2)
    a.outb(STATUS, 0xC6)
    a.run(DELAY)
    a.inb(STATUS)
    a.lba_command(0xC4, 38, 5)                       # blocks of 2, 2, 1: covers the dirty sector
    a.run(DELAY)
    a.bus.port_in(DATA, 4)
    a.bus.port_in(DATA, 4)
    a.run(DELAY // 3)                                # nothing pending yet
    state = a.ide.snapshot()

    b = Rig(slave=Disk.from_bytes(slave))
    b.clock.advance(a.clock.now)
    b.ide.restore(state)
    assert b.ide.snapshot() == state
    assert b.irq.level == a.irq.level

    steps = [("in", STATUS, 1)] + [("in", DATA, 4)] * 126 + [("in", CTRL, 1), ("run", DELAY // 2),
             ("in", CTRL, 1), ("run", DELAY)] + [("in", DATA, 2)] * 512 + \
            [("run", DELAY), ("in", STATUS, 1)] + [("in", DATA, 2)] * 256 + [("in", STATUS, 1)]
    assert trace(b, steps) == trace(a, steps)
    assert b.ide.snapshot() == a.ide.snapshot()


def test_snapshot_restore_with_a_pending_completion_and_overlay():
    a = Rig()
    a.lba_command(0x30, 7, 2)
    a.write_block(b"\x01" * 512)                     # first block committed, BSY, timer pending
    a.run(DELAY // 2)
    state = a.ide.snapshot()
    assert state["drives"][0]["pending"] == "block_written"
    assert [lba for lba, _ in state["drives"][0]["disk"]["overlay"]] == [7]

    b = Rig()
    b.clock.advance(a.clock.now)
    b.ide.restore(state)
    assert b.clock.pending() == a.clock.pending()
    steps = [("in", CTRL, 1), ("run", DELAY // 2), ("in", STATUS, 1)] + \
            [("out", DATA, 4, 0x02020202)] * 128 + [("run", DELAY), ("in", STATUS, 1)]
    assert trace(b, steps) == trace(a, steps)
    assert b.ide.drives[0].disk.read(7, 2) == a.ide.drives[0].disk.read(7, 2) == \
        b"\x01" * 512 + b"\x02" * 512

    # restoring replaces pending timers rather than adding to them
    c = Rig()
    c.lba_command(0x20, 0, 1)
    c.ide.restore(Rig().ide.snapshot())
    c.run(5 * DELAY)
    assert not c.irq.level and c.clock.pending() == []


def test_restore_refuses_a_different_drive_set():
    with pytest.raises(ValueError, match="different set of drives"):
        Rig().ide.restore(Rig(slave=Disk.from_bytes(image(8))).ide.snapshot())


def test_absent_master_with_a_slave_reads_ready_as_on_qemu():
    # xv6 booted with only its file-system disk (as disk 1) waits for DRDY on
    # device 0 before probing device 1; QEMU's PC reads DRDY|DSC there.
    rig = Rig(delay=0, disks=False, slave=Disk.from_bytes(image(8)))
    rig.outb(DEVICE, 0xE0)
    assert rig.inb(STATUS) == DRDY | 0x10 and rig.inb(CTRL) == DRDY | 0x10
    rig.outb(STATUS, 0x20)                           # a command to the missing master: ignored
    assert rig.inb(STATUS) == DRDY | 0x10 and not rig.irq.level
    rig.outb(DEVICE, 0xF0)                           # the slave itself answers normally
    assert rig.inb(STATUS) == 0x50 and rig.inb(LBA_LOW) == 1
