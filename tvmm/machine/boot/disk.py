"""Disk boot: the first sector of disk 0 at 0x7C00 in real mode, DL = 0x80.

This is what a PC BIOS does last before handing over to a boot sector; tvmm
has no BIOS services (no INT 13h), so a boot sector must read the rest of
its kernel through the IDE ports, as xv6's does.

The images themselves are checked when the PC's drives are made (``Disk``:
a regular file of whole sectors), for every boot path.
"""

from __future__ import annotations

from .errors import BootError

LOAD_ADDR = 0x7C00
BOOT_DRIVE = 0x80


def load(mem, disk, name: str = "disk0") -> None:
    if disk is None:
        raise BootError(f"boot=disk needs {name}=IMAGE")
    try:
        sector = disk.read(0, 1)
    except OSError as e:
        raise BootError(f"{name}: cannot read sector 0 of {disk.path} ({e.strerror or e})") from None
    if sector[510:512] != b"\x55\xaa":
        raise BootError(f"{name}: not a bootable disk (no 0x55AA signature at the end of sector 0)")
    mem.write_bytes(LOAD_ADDR, sector)


def enter(cpu) -> None:
    """Real mode at 0000:7C00 with the boot drive in DL, as the BIOS leaves it."""
    from ..boot_state import enter_real
    enter_real(cpu, 0, LOAD_ADDR, ss=0, sp=LOAD_ADDR)
    cpu.regs[2] = BOOT_DRIVE
