"""Firmware ROM boot: the image at the top of the 4 GiB space and its last
128 KiB (or all of it, if smaller) also below 1 MiB, as on a PC; execution
starts at the reset vector F000:FFF0 (linear 0xFFFFFFF0) with the
processor's power-on state (SDM vol. 3, 9.1.4).

``read_rom`` checks the user's file; ``layout`` says where the image
appears; the memory object maps it read-only with ``map_rom(gpa, data)``.

Size: 4 KiB to 8 MiB, a multiple of 4 KiB.  The top of 4 GiB is shared
with devices: the I/O APIC at 0xFEC00000, the local APIC at 0xFEE00000 and
pc-testdev's iomem at 0xFF000000-0xFF00FFFF (where QEMU puts it, and where
kvm-unit-tests look for it).  An 8 MiB image, 0xFF800000-0xFFFFFFFF, clears
them all; a 16 MiB one would cover pc-testdev's iomem.
"""

from __future__ import annotations

from .errors import BootError, read_file

MIN_SIZE = 4 << 10
MAX_SIZE = 8 << 20              # [4 GiB - 8 MiB, 4 GiB) holds no device (see above)
LOW_WINDOW = 128 << 10          # the ISA BIOS area 0xE0000-0xFFFFF


def read_rom(path: str | None) -> bytes:
    if not path:
        raise BootError("boot=rom needs rom=FILE")
    data = read_file(path, "ROM", limit=MAX_SIZE)
    if not MIN_SIZE <= len(data) <= MAX_SIZE or len(data) % 4096:
        raise BootError(f"{path}: a ROM image must be a multiple of 4 KiB between "
                        f"{MIN_SIZE >> 10} KiB and {MAX_SIZE >> 20} MiB (this one is {len(data)} bytes)")
    return data


def layout(size: int) -> list[tuple[int, int, int]]:
    """``(gpa, offset_in_image, length)`` for each place the image appears."""
    low = min(size, LOW_WINDOW)
    return [((1 << 32) - size, 0, size), ((1 << 20) - low, size - low, low)]


def load(mem, path: str | None) -> None:
    data = read_rom(path)
    for gpa, _off, n in layout(len(data)):
        hit = next((r for r in (mem.region_at(a) for a in range(gpa, gpa + n, 4096)) if r is not None), None)
        if hit is not None:          # cannot happen within MAX_SIZE; say so clearly if it ever does
            raise BootError(f"{path}: a {len(data) >> 10} KiB ROM at {gpa:#x} would cover "
                            f"{hit.name or 'a device'} at {hit.start:#x}")
    for gpa, off, n in layout(len(data)):
        mem.map_rom(gpa, data[off:off + n])


def enter(cpu) -> None:
    """The power-on state: the reset vector F000:FFF0, real mode."""
    cpu.reset()
