"""Physical memory: RAM plus a map of memory-mapped device ranges.

Invariants:
- RAM is one anonymous ``mmap`` (zero-filled, committed by the host only when
  touched), so guests of hundreds of MiB cost nothing until they use memory.
- Device ranges are half-open ``[start, end)`` and may not overlap each other;
  a device range hides the RAM beneath it.
- Any write that reaches a page listed in ``code_pages`` calls the
  registered invalidators first, so decoded code never goes stale.  The CPU's
  fast store path never sees such a page (they are kept out of its write TLB),
  so every store to code comes through here.
- Reads of physical addresses backed by nothing return all ones (open bus);
  writes to them are dropped.
"""

from __future__ import annotations

import bisect
import mmap
import struct
import weakref
from typing import Callable, Protocol

from .consts import PAGE_SHIFT

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class MmioDevice(Protocol):
    def mmio_read(self, offset: int, size: int) -> int: ...
    def mmio_write(self, offset: int, size: int, value: int) -> None: ...


class Region:
    __slots__ = ("start", "end", "device", "name")

    def __init__(self, start: int, end: int, device: MmioDevice, name: str):
        self.start, self.end, self.device, self.name = start, end, device, name

    def __repr__(self) -> str:
        return f"Region({self.name} [{self.start:#x}, {self.end:#x}))"


class RegionMap:
    """Half-open, non-overlapping address ranges, each with its device."""

    def __init__(self):
        self.regions: list[Region] = []
        self._starts: list[int] = []

    def add(self, start: int, end: int, device, name: str = "") -> Region:
        if not (0 <= start < end <= 1 << 32):
            raise ValueError(f"bad MMIO range [{start:#x}, {end:#x})")
        for r in self.regions:
            if start < r.end and r.start < end:
                raise ValueError(f"MMIO range {name or '?'} [{start:#x}, {end:#x}) overlaps {r}")
        region = Region(start, end, device, name)
        i = bisect.bisect(self._starts, start)
        self.regions.insert(i, region)
        self._starts.insert(i, start)
        return region

    def at(self, addr: int) -> Region | None:
        i = bisect.bisect(self._starts, addr) - 1
        if i >= 0:
            r = self.regions[i]
            if addr < r.end:
                return r
        return None


class PhysicalMemory:
    """RAM of ``size`` bytes at physical address 0 plus MMIO regions."""

    def __init__(self, size: int):
        if size <= 0 or size % 4096:
            raise ValueError(f"memory size must be a positive multiple of 4 KiB, not {size}")
        self.size = size
        self.ram = mmap.mmap(-1, size)
        self.ram_pages = size >> PAGE_SHIFT
        self._map = RegionMap()
        # Physical pages (frame numbers) with no device on them: the CPU may
        # map these straight into its TLB.  Updated when regions are added.
        self._mmio_pages: set[int] = set()
        self.code_pages: set[int] = set()
        # RAM frames that hold read-only contents (a monitor's copy of a
        # guest's firmware ROM): stores to them are dropped; the CPU keeps
        # them out of its write TLB, so every store comes through ``write``.
        self.readonly_pages: set[int] = set()
        # RAM frames whose writes someone must see (a monitor's write-protected
        # guest page tables): ``fn(pa, size)`` runs after each write to them.
        # The CPU keeps them out of its write TLB, like code pages.
        self.write_watch: dict[int, Callable[[int, int], None]] = {}
        self._invalidators: list[Callable[[int], None]] = []

    # -- configuration -----------------------------------------------------------
    def add_mmio(self, start: int, end: int, device: MmioDevice, name: str = "") -> Region:
        region = self._map.add(start, end, device, name)
        self._mmio_pages.update(range(start >> PAGE_SHIFT, (end - 1 >> PAGE_SHIFT) + 1))
        self._notify_all()
        return region

    def add_invalidator(self, fn: Callable[[int], None]) -> None:
        """``fn(pfn)`` is called before a write lands on a page in code_pages.

        Bound methods are held weakly, so memory does not keep a CPU alive
        (a CPU owns tens of MiB of TLB; a reference cycle would hold it until
        the cycle collector runs).
        """
        ref = weakref.WeakMethod(fn) if hasattr(fn, "__self__") else (lambda: fn)
        self._invalidators.append(ref)

    def _notify_all(self) -> None:
        for pfn in list(self.code_pages):
            self._invalidate(pfn)

    def _invalidate(self, pfn: int) -> None:
        self.code_pages.discard(pfn)
        for ref in self._invalidators:
            fn = ref()
            if fn is not None:
                fn(pfn)

    # -- queries -------------------------------------------------------------------
    def is_ram_page(self, pfn: int) -> bool:
        """True when the whole 4 KiB frame is plain RAM (no device on it)."""
        return pfn < self.ram_pages and pfn not in self._mmio_pages

    def region_at(self, pa: int) -> Region | None:
        return self._map.at(pa)

    # -- access (slow path: anything may be behind the address) ----------------------
    def read(self, pa: int, size: int) -> int:
        if pa + size <= self.size and (pa >> PAGE_SHIFT) not in self._mmio_pages \
                and ((pa + size - 1) >> PAGE_SHIFT) not in self._mmio_pages:
            return int.from_bytes(self.ram[pa:pa + size], "little")
        r = self.region_at(pa)
        if r is not None and pa + size <= r.end:
            return r.device.mmio_read(pa - r.start, size)
        # straddling or unbacked: byte by byte
        v = 0
        for i in range(size):
            v |= self._read_byte(pa + i) << (8 * i)
        return v

    def _read_byte(self, pa: int) -> int:
        r = self.region_at(pa)
        if r is not None:
            return r.device.mmio_read(pa - r.start, 1) & 0xFF
        if pa < self.size:
            return self.ram[pa]
        return 0xFF

    def write(self, pa: int, size: int, value: int) -> None:
        pfn = pa >> PAGE_SHIFT
        if self.readonly_pages and (pfn in self.readonly_pages
                                    or (pa + size - 1) >> PAGE_SHIFT in self.readonly_pages):
            for i in range(size):
                if (pa + i) >> PAGE_SHIFT not in self.readonly_pages:
                    self.write(pa + i, 1, (value >> (8 * i)) & 0xFF)
            return
        if self.code_pages:
            if pfn in self.code_pages:
                self._invalidate(pfn)
            last = (pa + size - 1) >> PAGE_SHIFT
            if last != pfn and last in self.code_pages:
                self._invalidate(last)
        if pa + size <= self.size and pfn not in self._mmio_pages \
                and ((pa + size - 1) >> PAGE_SHIFT) not in self._mmio_pages:
            self.ram[pa:pa + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
            if self.write_watch:
                self._watched(pa, size)
            return
        r = self.region_at(pa)
        if r is not None and pa + size <= r.end:
            r.device.mmio_write(pa - r.start, size, value)
            return
        for i in range(size):
            self._write_byte(pa + i, (value >> (8 * i)) & 0xFF)

    def _watched(self, pa: int, size: int) -> None:
        fn = self.write_watch.get(pa >> PAGE_SHIFT)
        if fn is not None:
            fn(pa, min(size, 0x1000 - (pa & 0xFFF)))
        last = (pa + size - 1) >> PAGE_SHIFT
        if last != pa >> PAGE_SHIFT:
            fn = self.write_watch.get(last)
            if fn is not None:
                fn(last << PAGE_SHIFT, (pa + size) & 0xFFF)

    def _write_byte(self, pa: int, value: int) -> None:
        r = self.region_at(pa)
        if r is not None:
            r.device.mmio_write(pa - r.start, 1, value)
        elif pa < self.size:
            self.ram[pa] = value

    def read_bytes(self, pa: int, n: int) -> bytes:
        """Bulk read for loaders, DMA and debuggers (RAM only; devices read as 0xFF)."""
        out = bytearray(b"\xff" * n)
        end = min(pa + n, self.size)
        if pa < end:
            out[0:end - pa] = self.ram[pa:end]
        for r in self._map.regions:
            lo, hi = max(pa, r.start), min(pa + n, r.end)
            if lo < hi:
                out[lo - pa:hi - pa] = b"\xff" * (hi - lo)
        return bytes(out)

    def write_bytes(self, pa: int, data: bytes) -> None:
        """Bulk write into RAM (loaders, DMA; read-only pages too: this is
        how their contents get there); invalidates decoded code it covers."""
        end = min(pa + len(data), self.size)
        if pa >= end:
            return
        if self.code_pages:
            for pfn in range(pa >> PAGE_SHIFT, ((end - 1) >> PAGE_SHIFT) + 1):
                if pfn in self.code_pages:
                    self._invalidate(pfn)
        self.ram[pa:end] = data[:end - pa]
        if self.write_watch:
            for pfn in range(pa >> PAGE_SHIFT, ((end - 1) >> PAGE_SHIFT) + 1):
                fn = self.write_watch.get(pfn)
                if fn is not None:
                    lo = max(pa, pfn << PAGE_SHIFT)
                    fn(lo, min(end, (pfn + 1) << PAGE_SHIFT) - lo)

    def discard(self, pa: int, n: int) -> None:
        """Zero a page-aligned RAM range and give its host memory back (the
        mmap reads as zeros again and costs nothing until touched)."""
        assert pa % 4096 == 0 and n % 4096 == 0
        end = min(pa + n, self.size)
        if pa >= end:
            return
        for pfn in range(pa >> PAGE_SHIFT, end >> PAGE_SHIFT):
            if pfn in self.code_pages:
                self._invalidate(pfn)
        # mmap(-1) is a shared anonymous mapping: MADV_REMOVE frees its pages
        # (they read as zeros again); without it, write the zeros.
        try:
            self.ram.madvise(mmap.MADV_REMOVE, pa, end - pa)
        except (AttributeError, OSError, ValueError):
            self.ram[pa:end] = bytes(end - pa)

    def fill(self, pa: int, n: int, byte: int) -> None:
        self.write_bytes(pa, bytes([byte]) * n)
