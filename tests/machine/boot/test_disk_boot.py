"""Disk boot: a boot sector that reads the disk through the IDE ports."""

from __future__ import annotations

import pytest

from tvmm.machine.boot import BootError
from tvmm.machine.boot import disk as diskboot
from tvmm.machine.devices.ide import Disk
from tvmm.machine.errors import StopKind
from tvmm.machine.pc import PC

# Real-mode boot sector (GNU as, .code16): save DL; read LBA 1 to 0x8000 with
# an IDE PIO READ SECTORS, polling status; print its NUL-terminated text on
# COM1; debug-exit with the saved boot drive number.
BOOT_SECTOR = bytes.fromhex(
    "fa31c08ed88ec08ed0bc007c88160006baf601b0e0eebaf201b001eebaf301b001eebaf40130c0eebaf501ee"
    "baf701b020eeec24883c0875f9bf0080b90001baf001fcf36dbe0080ac84c07406baf803eeebf5a00006660f"
    "b6c0baf40066eff4").ljust(510, b"\0") + b"\x55\xaa"


def test_boot_sector_reads_the_disk_and_runs():
    image = BOOT_SECTOR + b"loaded from sector 1\n\0".ljust(512, b"\0") + bytes(512 * 6)
    out = bytearray()
    pc = PC(8 << 20, on_console=out.append, disks=(Disk.from_bytes(image), None))
    diskboot.load(pc.mem, pc.disks[0])
    diskboot.enter(pc.cpu)
    stop = pc.run(1_000_000)
    assert stop.kind == StopKind.REQUEST
    assert out == b"loaded from sector 1\n"
    assert pc.exit_status == (0x80 << 1) | 1          # DL held the boot drive 0x80


def test_a_disk_without_the_boot_signature_is_refused():
    pc = PC(8 << 20, disks=(Disk.from_bytes(bytes(1024)), None))
    with pytest.raises(BootError, match="not a bootable disk"):
        diskboot.load(pc.mem, pc.disks[0])
