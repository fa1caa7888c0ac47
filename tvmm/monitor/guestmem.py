"""A guest's physical address space: its machine map plus its devices.

``GuestPhysicalMemory`` is what a guest's virtual devices, the boot loaders
and the monitor see as "physical memory" of one guest.  Guest-physical RAM
frame ``gpfn`` lives in host frame ``frames[gpfn]`` (the machine map; the
host frames need not be contiguous).  Device ranges (local APIC, I/O APIC,
CGA, test devices) are half-open, non-overlapping and hide the RAM beneath
them, as on the bare machine.

Invariants:
- Every access through this object stays inside the guest's own frames or
  its own devices: a guest-physical address beyond its RAM and devices is
  open bus (reads all ones, writes dropped).
- The interface matches ``machine.memory.PhysicalMemory`` where devices and
  loaders use it (``size``, ``read``/``write``, ``read_bytes``/``write_bytes``,
  ``fill``, ``add_mmio``, ``region_at``).
"""

from __future__ import annotations

from ..machine.memory import PhysicalMemory, Region, RegionMap

PAGE = 4096


class GuestPhysicalMemory:
    def __init__(self, size: int, host: PhysicalMemory, frames: list[int]):
        assert len(frames) == size // PAGE
        self.size = size
        self.host = host
        self.frames = frames                 # gpfn -> host frame
        self._map = RegionMap()
        self.device_pages: set[int] = set()  # gpfns with a device on them
        self.rom_frames: dict[int, int] = {}  # gpfn -> host frame holding ROM contents (read-only)
        self.host_frames_for_rom = None       # callable n -> host frames (set by the guest)

    # -- configuration ---------------------------------------------------------
    def add_mmio(self, start: int, end: int, device, name: str = "") -> Region:
        region = self._map.add(start, end, device, name)
        self.device_pages.update(range(start // PAGE, (end - 1) // PAGE + 1))
        return region

    def map_rom(self, gpa: int, data: bytes) -> None:
        """Firmware ROM at ``gpa``: guest-physical pages backed by read-only
        host frames of this guest (code runs from them at full speed; host
        memory drops stores to them, as a ROM chip ignores writes)."""
        n = len(data) // PAGE
        frames = self.host_frames_for_rom(n)
        for i in range(n):
            self.rom_frames[gpa // PAGE + i] = frames[i]
            self.host.write_bytes(frames[i] * PAGE, data[i * PAGE:(i + 1) * PAGE])
            self.host.readonly_pages.add(frames[i])
        self.add_mmio(gpa, gpa + len(data), RomPages(data), "rom")

    # -- queries ------------------------------------------------------------------
    def region_at(self, gpa: int) -> Region | None:
        return self._map.at(gpa)

    def hpa_page(self, gpfn: int) -> int | None:
        """Host-physical address of guest RAM frame ``gpfn`` (None: not RAM)."""
        if gpfn < len(self.frames) and gpfn not in self.device_pages:
            return self.frames[gpfn] * PAGE
        return None

    def rom_hpa_page(self, gpfn: int) -> int | None:
        """Host page holding ROM contents at ``gpfn``, to map read-only."""
        f = self.rom_frames.get(gpfn)
        return None if f is None else f * PAGE

    def owned_host_frames(self) -> set[int]:
        return set(self.frames) | set(self.rom_frames.values())

    # -- access ---------------------------------------------------------------------
    def read(self, gpa: int, size: int) -> int:
        base = self.hpa_page(gpa // PAGE)
        if base is not None and (gpa & 0xFFF) + size <= PAGE:
            return self.host.read(base | (gpa & 0xFFF), size)
        r = self.region_at(gpa)
        if r is not None and gpa + size <= r.end:
            return r.device.mmio_read(gpa - r.start, size)
        v = 0
        for i in range(size):
            v |= self._read_byte(gpa + i) << (8 * i)
        return v

    def _read_byte(self, gpa: int) -> int:
        base = self.hpa_page(gpa // PAGE)
        if base is not None:
            return self.host.read(base | (gpa & 0xFFF), 1)
        r = self.region_at(gpa)
        if r is not None:
            return r.device.mmio_read(gpa - r.start, 1) & 0xFF
        return 0xFF

    def write(self, gpa: int, size: int, value: int) -> None:
        base = self.hpa_page(gpa // PAGE)
        if base is not None and (gpa & 0xFFF) + size <= PAGE:
            self.host.write(base | (gpa & 0xFFF), size, value)
            return
        r = self.region_at(gpa)
        if r is not None and gpa + size <= r.end:
            r.device.mmio_write(gpa - r.start, size, value)
            return
        for i in range(size):
            self._write_byte(gpa + i, (value >> (8 * i)) & 0xFF)

    def _write_byte(self, gpa: int, value: int) -> None:
        base = self.hpa_page(gpa // PAGE)
        if base is not None:
            self.host.write(base | (gpa & 0xFFF), 1, value)
            return
        r = self.region_at(gpa)
        if r is not None:
            r.device.mmio_write(gpa - r.start, 1, value)

    def read_bytes(self, gpa: int, n: int) -> bytes:
        """Bulk read of RAM (loaders, debuggers); devices and holes read as 0xFF."""
        out = bytearray()
        while n > 0:
            chunk = min(n, PAGE - (gpa & 0xFFF))
            base = self.hpa_page(gpa // PAGE)
            if base is None:
                out += b"\xff" * chunk
            else:
                out += self.host.read_bytes(base | (gpa & 0xFFF), chunk)
            gpa += chunk
            n -= chunk
        return bytes(out)

    def write_bytes(self, gpa: int, data: bytes) -> None:
        """Bulk write into RAM (loaders); bytes aimed at devices or holes are dropped."""
        pos = 0
        while pos < len(data):
            chunk = min(len(data) - pos, PAGE - (gpa & 0xFFF))
            base = self.hpa_page(gpa // PAGE)
            if base is not None:
                self.host.write_bytes(base | (gpa & 0xFFF), data[pos:pos + chunk])
            gpa += chunk
            pos += chunk

    def fill(self, gpa: int, n: int, byte: int) -> None:
        self.write_bytes(gpa, bytes([byte]) * n)


class RomPages:
    """A read-only device: firmware ROM contents; writes are dropped."""

    def __init__(self, data: bytes):
        self.data = data

    def mmio_read(self, off: int, size: int) -> int:
        return int.from_bytes(self.data[off:off + size].ljust(size, b"\xff"), "little")

    def mmio_write(self, off: int, size: int, value: int) -> None:
        pass
