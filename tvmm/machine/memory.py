"""Physical memory: RAM plus a map of memory-mapped device ranges.

Invariants:
- RAM is one shared ``mmap`` of a memory file (zero-filled, committed by the
  host only when touched), so guests of hundreds of MiB cost nothing until
  they use memory, and ``populated_pages`` can tell which frames were ever
  touched without touching the others.
- Device ranges are half-open ``[start, end)`` and may not overlap each other;
  a device range hides the RAM beneath it.
- Any write that reaches a page listed in ``code_pages`` calls the
  registered invalidators first, so decoded code never goes stale.  The CPU's
  fast store path never sees such a page (they are kept out of its write TLB),
  so every store to code comes through here.
- Reads of physical addresses backed by nothing return all ones (open bus);
  writes to them are dropped.
- Dirty logging (off unless ``start_dirty_log`` was called): ``dirty`` holds
  the RAM frames written since they were last protected.  A frame not in
  ``dirty`` has no write-TLB entry in any CPU, so the first store to it comes
  through ``write`` (or a bulk writer here) or through the CPU's TLB fill
  for that store (``log_write``), which calls ``on_first_write(pfn)``
  *before* the bytes land (a history can keep the page's old contents) and
  adds the frame to ``dirty``.  This is how KVM logs dirty pages: by write-
  protecting them.  ``protect(pfns)`` starts over for those frames.
"""

from __future__ import annotations

import bisect
import mmap
import os
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


def _memfd(size: int) -> int | None:
    """A memory file for RAM: like an anonymous mapping (zero-filled, backed
    only when touched, ``MADV_REMOVE`` frees), and its holes can be found
    (``SEEK_DATA``) without touching them."""
    try:
        fd = os.memfd_create("tvmm-ram", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        return None
    try:
        os.ftruncate(fd, size)
    except OSError:
        os.close(fd)
        return None
    return fd


class PhysicalMemory:
    """RAM of ``size`` bytes at physical address 0 plus MMIO regions."""

    def __init__(self, size: int):
        if size <= 0 or size % 4096:
            raise ValueError(f"memory size must be a positive multiple of 4 KiB, not {size}")
        self.size = size
        self._fd = _memfd(size)
        if self._fd is not None:
            self.ram = mmap.mmap(self._fd, size)
            weakref.finalize(self, os.close, self._fd)
        else:
            self.ram = mmap.mmap(-1, size)
        self.ram_pages = size >> PAGE_SHIFT
        self._map = RegionMap()
        # Physical pages (frame numbers) with no device on them: the CPU may
        # map these straight into its TLB.  Updated when regions are added.
        self.mmio_pages: set[int] = set()
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
        # Dirty logging (see the module docstring).
        self.on_first_write: Callable[[int], None] | None = None
        self.dirty: set[int] = set()
        self._protectors: list = []          # weak refs to CPU.drop_write_entries / drop_all_write_entries

    # -- configuration -----------------------------------------------------------
    def add_mmio(self, start: int, end: int, device: MmioDevice, name: str = "") -> Region:
        region = self._map.add(start, end, device, name)
        self.mmio_pages.update(range(start >> PAGE_SHIFT, (end - 1 >> PAGE_SHIFT) + 1))
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

    def add_write_protector(self, one: Callable[[int], None], everything: Callable[[], None]) -> None:
        """A CPU's ways to forget its write-TLB entries for one frame and for
        all frames (held weakly, like invalidators)."""
        self._protectors.append((weakref.WeakMethod(one), weakref.WeakMethod(everything)))

    def revoke_writes(self, pfn: int) -> None:
        """No processor keeps a write-TLB entry for frame ``pfn`` (it became
        code, or a watched page table): every store to it takes the slow path."""
        for one, _every in self._protectors:
            fn = one()
            if fn is not None:
                fn(pfn)

    # -- dirty logging ---------------------------------------------------------------
    def start_dirty_log(self, on_first_write: Callable[[int], None]) -> None:
        """Log writes from now on: every frame starts clean (no CPU keeps a
        write entry), and ``on_first_write(pfn)`` runs before the first store
        to each frame since it was last protected."""
        self.on_first_write = on_first_write
        self.dirty = set()
        for _one, every in self._protectors:
            fn = every()
            if fn is not None:
                fn()

    def stop_dirty_log(self) -> None:
        """No more logging: stores run at full speed again (write entries
        come back as the CPUs refill their TLBs)."""
        self.on_first_write = None
        self.dirty = set()

    def protect(self, pfns) -> None:
        """Make ``pfns`` clean: the next store to each is logged again."""
        dirty = self.dirty
        fns = [f for f in (one() for one, _every in self._protectors) if f is not None]
        for pfn in pfns:
            if pfn in dirty:
                dirty.discard(pfn)
                for fn in fns:
                    fn(pfn)

    def log_write(self, pfn: int) -> None:
        """A store to RAM frame ``pfn`` is about to land by a path that does
        not come through here (a CPU filling its write TLB for it)."""
        if pfn not in self.dirty:
            self.dirty.add(pfn)
            self.on_first_write(pfn)

    def _log_range(self, first: int, last: int) -> None:
        """Frames ``first..last`` are about to be written."""
        dirty, fn = self.dirty, self.on_first_write
        for pfn in range(first, last + 1):
            if pfn not in dirty and pfn < self.ram_pages:
                dirty.add(pfn)
                fn(pfn)

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
    def populated_pages(self) -> set[int] | None:
        """The frames that may hold something other than zeros: those the host
        has backed since they were last discarded (the file's data extents).
        None when the host cannot tell (then any frame may)."""
        if self._fd is None:
            return None
        out: set[int] = set()
        off = 0
        while off < self.size:
            try:
                start = os.lseek(self._fd, off, os.SEEK_DATA)
            except OSError:                      # ENXIO: no data past off
                break
            end = min(os.lseek(self._fd, start, os.SEEK_HOLE), self.size)
            out.update(range(start >> PAGE_SHIFT, (end + 0xFFF) >> PAGE_SHIFT))
            off = end
        return out

    def is_ram_page(self, pfn: int) -> bool:
        """True when the whole 4 KiB frame is plain RAM (no device on it)."""
        return pfn < self.ram_pages and pfn not in self.mmio_pages

    def region_at(self, pa: int) -> Region | None:
        return self._map.at(pa)

    # -- access (slow path: anything may be behind the address) ----------------------
    def read(self, pa: int, size: int) -> int:
        if pa + size <= self.size and (pa >> PAGE_SHIFT) not in self.mmio_pages \
                and ((pa + size - 1) >> PAGE_SHIFT) not in self.mmio_pages:
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
        if pa + size <= self.size and pfn not in self.mmio_pages \
                and ((pa + size - 1) >> PAGE_SHIFT) not in self.mmio_pages:
            if self.on_first_write is not None:
                self._log_range(pfn, (pa + size - 1) >> PAGE_SHIFT)
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
            if self.on_first_write is not None:
                self._log_range(pa >> PAGE_SHIFT, pa >> PAGE_SHIFT)
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
        if self.on_first_write is not None:
            self._log_range(pa >> PAGE_SHIFT, (end - 1) >> PAGE_SHIFT)
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
        if self.on_first_write is not None:
            self._log_range(pa >> PAGE_SHIFT, (end >> PAGE_SHIFT) - 1)
        # mmap(-1) is a shared anonymous mapping: MADV_REMOVE frees its pages
        # (they read as zeros again); without it, write the zeros.
        try:
            self.ram.madvise(mmap.MADV_REMOVE, pa, end - pa)
        except (AttributeError, OSError, ValueError):
            self.ram[pa:end] = bytes(end - pa)

    def fill(self, pa: int, n: int, byte: int) -> None:
        self.write_bytes(pa, bytes([byte]) * n)
