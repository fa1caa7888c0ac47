"""Host-physical memory and its division into frames.

The machine has one RAM (``PhysicalMemory``, a lazily committed mmap) that
the monitor owns.  ``FrameAllocator`` hands out 4 KiB host frames to guests
(their machine maps) and to the monitor's shadow-page pool, and takes them
back zeroed, so no guest ever sees another's data.

Invariants:
- A host frame is owned by at most one guest or by the monitor at a time.
- Host RAM ends below ``APERTURE_BASE``: shadow entries are 32-bit, and the
  device aperture (aperture.py) sits above RAM in host-physical space.
"""

from __future__ import annotations

from ..machine.memory import PhysicalMemory

PAGE = 4096
APERTURE_BASE = 0xF0000000        # host-physical; above all host RAM
MAX_HOST_RAM = APERTURE_BASE


class OutOfMemory(Exception):
    """Not enough free host frames."""


class FrameAllocator:
    def __init__(self, phys: PhysicalMemory, reserved_low: int = 1):
        """Frames [reserved_low, size/4K) are free; frame 0 stays unused so a
        zero shadow entry never names real memory by accident."""
        self.phys = phys
        self._free = list(range(phys.size // PAGE - 1, reserved_low - 1, -1))   # pop() gives low frames first
        self.total = len(self._free)

    @property
    def free_frames(self) -> int:
        return len(self._free)

    def alloc(self, n: int) -> list[int]:
        if n > len(self._free):
            raise OutOfMemory(f"needs {n * PAGE >> 20} MiB of host memory, "
                              f"{len(self._free) * PAGE >> 20} MiB free")
        return [self._free.pop() for _ in range(n)]

    def alloc_one(self) -> int:
        if not self._free:
            raise OutOfMemory("no free host frame")
        return self._free.pop()

    def free(self, frames) -> None:
        """Return frames, zeroing them first (the next owner must not see the data)."""
        frames = sorted(frames)
        i = 0
        while i < len(frames):                 # discard runs of contiguous frames at once
            j = i
            while j + 1 < len(frames) and frames[j + 1] == frames[j] + 1:
                j += 1
            self.phys.discard(frames[i] * PAGE, (j - i + 1) * PAGE)
            self.phys.readonly_pages.difference_update(range(frames[i], frames[j] + 1))
            i = j + 1
        self._free.extend(reversed(frames))
