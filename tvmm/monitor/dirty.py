"""Which guest pages were written: one dirty log, several consumers.

The machine logs writes the way KVM does, by write protection
(``machine.memory.PhysicalMemory.start_dirty_log``): a host frame that is
clean has no write-TLB entry in any CPU, so the first store to it reaches
memory's slow path, which calls back *before* the bytes land and marks the
frame dirty.  Devices' bulk writes (IDE into RAM, loaders) and the CPU's
bulk string paths go through the same gate.

This module routes those calls to guests.  ``DirtyLog`` (one per monitor)
knows which guest owns each host frame; ``GuestPages`` (one per guest that
has consumers) hands each first write to its consumers as a guest-physical
frame number, and ``mark()`` makes the guest's written frames clean again.

A consumer (a timeline, a memory digest) implements::

    first_write(gpfn, hpa)   # gpfn is about to change; hpa: its host page, old contents still there
    remapped()               # the guest's RAM was replaced (a reset): start over

Invariants:
- Logging is on only while some guest has a consumer: a run with no history
  and no recording pays nothing.
- Between two marks, every guest frame that was written was reported to
  every consumer at least once, before its first write.  (A mark by one
  consumer only makes the others hear of a frame again; each consumer keeps
  its own accumulated set.)
"""

from __future__ import annotations

PAGE = 4096


class DirtyLog:
    """The monitor's dispatcher from host frames to guests' consumers."""

    def __init__(self, host):
        self.host = host
        self.owner: dict[int, tuple[GuestPages, int]] = {}     # host frame -> (guest pages, gpfn)
        self.active: set[GuestPages] = set()

    def pages(self, guest) -> "GuestPages":
        if guest.pages is None:
            guest.pages = GuestPages(self, guest)
        return guest.pages

    def _first_write(self, hpfn: int) -> None:
        o = self.owner.get(hpfn)
        if o is not None:
            o[0]._first_write(o[1], hpfn)

    def _activate(self, gp: "GuestPages") -> None:
        if not self.active:
            self.host.start_dirty_log(self._first_write)
        self.active.add(gp)

    def _deactivate(self, gp: "GuestPages") -> None:
        self.active.discard(gp)
        if not self.active:
            self.host.stop_dirty_log()
            self.owner.clear()


class GuestPages:
    """One guest's view of the dirty log."""

    def __init__(self, log: DirtyLog, guest):
        self.log = log
        self.guest = guest
        self.consumers: list = []
        self.dirty_hpfns: set[int] = set()       # this guest's frames written since the last mark
        self._mapped: list[int] = []

    # -- consumers -------------------------------------------------------------------
    def subscribe(self, consumer) -> None:
        if not self.consumers:
            self.log._activate(self)
            self._map()
        self.consumers.append(consumer)

    def unsubscribe(self, consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
            if not self.consumers:
                self._unmap()
                self.log._deactivate(self)

    def mark(self) -> None:
        """Every frame of this guest is clean again: its next write is reported."""
        if self.dirty_hpfns:
            self.log.host.protect(self.dirty_hpfns)
            self.dirty_hpfns = set()

    # -- the guest's frames --------------------------------------------------------
    def _map(self) -> None:
        owner = self.log.owner
        self._mapped = list(self.guest.frames)
        for gpfn, hpfn in enumerate(self._mapped):
            owner[hpfn] = (self, gpfn)
        # frames written before we listened (logging was on for a sibling) start clean
        host = self.log.host
        host.protect([h for h in self._mapped if h in host.dirty])
        self.dirty_hpfns = set()

    def _unmap(self) -> None:
        owner = self.log.owner
        for hpfn in self._mapped:
            if owner.get(hpfn, (None,))[0] is self:
                del owner[hpfn]
        self._mapped = []
        self.dirty_hpfns = set()

    def release_frames(self) -> None:
        """The guest is about to give its frames back (reset, destroy): their
        zeroing is not a guest write."""
        if self.consumers:
            self._unmap()

    def frames_replaced(self) -> None:
        """The guest has new frames (after a reset): map them and tell the consumers."""
        if self.consumers:
            self._map()
            for c in list(self.consumers):
                c.remapped()

    def _first_write(self, gpfn: int, hpfn: int) -> None:
        self.dirty_hpfns.add(hpfn)
        for c in self.consumers:
            c.first_write(gpfn, hpfn * PAGE)
