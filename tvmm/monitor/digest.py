"""A digest of a guest's RAM that costs what changed, not what the guest owns.

The digest is a sum, modulo 2^64, of one term per guest page: a 64-bit mix
(splitmix64's finalizer) of the page's number and the CRC-32 of its
contents, and 0 for a page of zeros.  Kept per page, the terms are brought
up to date only for the pages the dirty log (``dirty.py``) reports written
since the last digest, so a recording's memory digest costs O(pages
written); the first one reads only the pages the host has ever backed
(``PhysicalMemory.populated_pages``: the rest are zeros), so it costs what
the guest has touched, not what it owns.  Replays are not adversarial: a 64-bit sum of well-mixed terms
catches any accidental divergence.

Printed as ``"<16 hex digits>-<pages>"`` (session format 2).
"""

from __future__ import annotations

import zlib

PAGE = 4096
M64 = (1 << 64) - 1


ZERO_CRC = zlib.crc32(bytes(PAGE))


def term(gpfn: int, crc: int) -> int:
    if crc == ZERO_CRC:
        return 0
    z = ((gpfn << 32) | crc) + 0x9E3779B97F4A7C15 & M64
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & M64
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & M64
    return z ^ (z >> 31)


class MemoryDigest:
    """Subscribes to the guest's dirty log while it lives (``close()`` ends it)."""

    def __init__(self, guest):
        self.guest = guest
        self._pages = guest.monitor.dirty.pages(guest)
        self._terms: dict[int, int] = {}          # gpfn -> term, for pages that are not zeros
        self._sum = 0
        self._frames = None
        self._pending: set[int] | None = None      # None: every page
        self._pages.subscribe(self)

    def close(self) -> None:
        self._pages.unsubscribe(self)

    # -- the dirty-log consumer ---------------------------------------------------------
    def first_write(self, gpfn: int, hpa: int) -> None:
        if self._pending is not None:
            self._pending.add(gpfn)

    def remapped(self) -> None:
        self._pending = None

    # -- the digest ---------------------------------------------------------------------------
    def value(self) -> str:
        view = memoryview(self.guest.monitor.host.ram)
        frames = self.guest.frames
        crc32 = zlib.crc32
        terms = self._terms
        if self._pending is None or self._frames is not frames:
            populated = self.guest.monitor.host.populated_pages()
            terms.clear()
            for gpfn, h in enumerate(frames):
                if populated is None or h in populated:
                    t = term(gpfn, crc32(view[h * PAGE:(h + 1) * PAGE]))
                    if t:
                        terms[gpfn] = t
            self._sum = sum(terms.values()) & M64
            self._frames = frames
        else:
            total = self._sum
            for gpfn in self._pending:
                h = frames[gpfn]
                new = term(gpfn, crc32(view[h * PAGE:(h + 1) * PAGE]))
                total += new - terms.pop(gpfn, 0)
                if new:
                    terms[gpfn] = new
            self._sum = total & M64
        self._pending = set()
        self._pages.mark()
        return f"{self._sum:016x}-{len(frames)}"
