"""A guest's history, for moving backwards: checkpoints that cost what
changed, within a memory budget.

A ``Checkpoint`` holds the guest's small state in full (CPU, devices, clock,
the console's length, the guest's state) and an *undo map*: the contents,
as they were at the checkpoint, of every guest page written after it —
until the next checkpoint.  Pre-images are taken from the dirty log
(``dirty.py``): the first store to a page after a mark reports the page
before the bytes land.  So taking a checkpoint costs the pages written
since the previous one (compressing them), never the size of RAM, and
starting a history copies nothing.

To go back to checkpoint ``k`` from now, every page written since ``k`` is
put back to its contents at ``k``: for each page in the undo maps of ``k``
and the checkpoints after it, the version from the earliest of them (the
chain is composed newest to oldest).  Then any earlier instruction count is
reached by restoring the nearest checkpoint at or before it and running
forward, re-applying recorded inputs at their guest times.  This is exact
because guest time is the instruction count and inputs are the only other
thing that reaches a guest.  Debugger breakpoints and watchpoints are set
aside while seeking.

Invariants:
- ``cps[i].undo`` maps a gpfn to its contents at ``cps[i]`` (4096 bytes:
  raw; shorter: zlib), and ``cps[i].fills`` maps a byte value to a bitmap
  of the pages that were filled with it then (zeros, or the poison kernels
  write into free pages: a filled RAM costs a bit per page, not an entry),
  together for every page written between
  ``cps[i]`` and ``cps[i+1]`` (for the last: until now).  Extra entries are
  harmless: they are still the page at that checkpoint.
- Going back truncates the future: the checkpoints after the one restored
  and the inputs after the target are forgotten (running on is live).
- ``bytes`` (what the history holds) is within ``budget`` after every
  ``note()``: when it is exceeded, the open interval is closed and the
  checkpoint whose loss costs least (small gap, far back) is merged into
  its predecessor — the union of both undo maps, the older
  version of a page kept — and the oldest is dropped only when nothing is
  left to merge.  Seeking far back stays possible, only slower.
- Spacing adapts so that checkpointing costs about ``FRACTION`` of the time
  the guest runs (never closer than ``MIN_EVERY`` instructions, never
  farther than ``MAX_EVERY``, so a seek replays at most that many).

``reverse_step`` goes back one instruction; ``reverse_continue`` goes back
to the latest earlier point where a breakpoint or watchpoint stops the guest
(or to the beginning of the history); ``reverse_continue_steps`` does the
same one window at a time, so a caller can let other guests run between.
"""

from __future__ import annotations

import contextlib
import time
import zlib

from ..machine.errors import Stop, StopKind
from . import snapshot

PAGE = 4096
_ZERO = bytes(PAGE)
EVERY = 500_000                  # starting spacing, in instructions
MIN_EVERY = 100_000
MAX_EVERY = 4_000_000           # a seek replays at most this far (about half a second)
FRACTION = 0.03                  # share of run time spent checkpointing
FIRST_WRITE_COST = 4e-6          # seconds a logged first write costs the run (slow store + copy), measured
DEFAULT_BUDGET = 256 << 20
_ENTRY_OVERHEAD = 120            # dict slot + bytes object header, roughly
RAW_LIMIT = 2048                 # raw pages (8 MiB) an open interval holds before packing them


class Checkpoint:
    __slots__ = ("icount", "now", "state", "console_len", "inputs", "undo", "fills", "nfilled", "packed", "bytes",
                 "state_bytes", "raw")

    def __init__(self, icount: int, now: int, state: tuple, console_len: int, inputs: int,
                 prev: "Checkpoint | None"):
        self.icount, self.now, self.console_len = icount, now, console_len
        self.inputs = inputs                      # inputs applied before it (an index into Timeline.inputs)
        self.state, self.state_bytes = _share(state, prev.state if prev is not None else None)
        self.undo: dict[int, bytes] = {}
        self.fills: dict[int, bytearray] = {}       # byte -> bitmap by gpfn of pages filled with it
        self.nfilled = 0
        self.packed = False
        self.bytes = self.state_bytes
        self.raw = 0                              # raw pages in the undo map, not yet compressed

    def has(self, gpfn: int) -> bool:
        """Does this checkpoint hold the page's contents?"""
        if gpfn in self.undo:
            return True
        i, bit = gpfn >> 3, 1 << (gpfn & 7)
        return any(bm[i] & bit for bm in self.fills.values())

    def add_fill(self, gpfn: int, byte: int, npages: int) -> int:
        """The page was all ``byte`` at this checkpoint; returns the bytes added."""
        added = 0
        bm = self.fills.get(byte)
        if bm is None:
            bm = self.fills[byte] = bytearray((npages + 7) >> 3)
            added = len(bm) + 60
        bm[gpfn >> 3] |= 1 << (gpfn & 7)
        self.nfilled += 1
        return added

    def filled_pages(self):
        """(gpfn, byte) for every filled page."""
        for byte, bm in self.fills.items():
            for i, bits in enumerate(bm):
                if bits:
                    for b in range(8):
                        if bits >> b & 1:
                            yield i << 3 | b, byte

    @property
    def pages(self) -> int:
        return len(self.undo) + self.nfilled

    def pack(self) -> None:
        """Compress the raw pages of the undo map (once its interval is
        closed, or when it holds too many raw pages)."""
        if self.packed:
            return
        self.raw = 0
        undo = self.undo
        total = self.state_bytes + sum(len(bm) + 60 for bm in self.fills.values())
        for gpfn, data in undo.items():
            if len(data) == PAGE:
                z = zlib.compress(data, 1)
                if len(z) < PAGE:
                    undo[gpfn] = data = z
            total += _ENTRY_OVERHEAD + len(data)
        self.bytes = total
        self.packed = True


def _page(data: bytes | int) -> bytes:
    if isinstance(data, int):                   # (from a fill bitmap)
        return _ZERO if data == 0 else bytes((data,)) * PAGE
    return data if len(data) == PAGE else zlib.decompress(data)


def _fill_byte(data: bytes) -> int | None:
    """The byte a page is filled with, or None."""
    if data == _ZERO:
        return 0
    first = data[:1]
    return first[0] if data == first * PAGE else None


def _share(state: tuple, prev: tuple | None) -> tuple[tuple, int]:
    """Devices' saved byte buffers (video memory, disk overlays) that equal
    the previous checkpoint's are shared with it, and counted once."""
    cpu, devices, pcs, gstate = state
    size = _state_size((cpu, pcs, gstate))
    if prev is None:
        return state, size + _state_size(devices)
    shared = []
    for dev, old in zip(devices, prev[1]):
        if isinstance(dev, dict) and isinstance(old, dict):
            dev = dict(dev)
            for key, value in dev.items():
                if isinstance(value, (bytes, bytearray)) and old.get(key) == value:
                    dev[key] = old[key]
                else:
                    size += _state_size(value) + 60
        else:
            size += _state_size(dev)
        shared.append(dev)
    return (cpu, tuple(shared), pcs, gstate), size


def _state_size(obj) -> int:
    """Rough bytes held by a saved state (the big parts are bytes objects)."""
    if isinstance(obj, (bytes, bytearray)):
        return len(obj) + 40
    if isinstance(obj, dict):
        return 100 + sum(_state_size(v) + 60 for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return 60 + sum(_state_size(v) + 8 for v in obj)
    return 32


class Timeline:
    def __init__(self, guest, every: int | None = None, budget: int = DEFAULT_BUDGET):
        """``every``: a fixed spacing in instructions (tests); None adapts it."""
        self.guest = guest
        self.adaptive = every is None
        self.every = EVERY if every is None else every
        self.budget = budget
        self.inputs: list[tuple[int, int, str, object]] = []     # (icount, now, kind, data)
        self.at_beginning = False
        self.thinned = 0                          # checkpoints merged away so far
        self._next_input = 0                      # while seeking: the next input to apply
        self._searching = False                   # a reverse continue is between windows
        self._capturing = True
        self._run_clock = time.perf_counter()
        self._pages = guest.monitor.dirty.pages(guest)
        self.cps: list[Checkpoint] = []
        self._pages.subscribe(self)
        self._checkpoint()

    def close(self) -> None:
        """Stop keeping history (the debugger went away)."""
        self._pages.unsubscribe(self)
        self.cps = []

    # -- what is kept -------------------------------------------------------------------
    @property
    def start(self) -> int:
        return self.cps[0].icount

    @property
    def bytes(self) -> int:
        return sum(cp.bytes for cp in self.cps)

    def describe(self) -> str:
        """How far back the guest can go, for the UI and ``monitor info``."""
        g = self.guest
        return (f"history: back to instruction {self.start} ({g.icount - self.start} back), "
                f"{len(self.cps)} checkpoints, {self.bytes / 2**20:.1f} of {self.budget / 2**20:.0f} MiB")

    def summary(self) -> str:
        """The same, in a registers pane's width: ``back 12.3M insns, 15/256 MiB``."""
        back = self.guest.icount - self.start
        n = f"{back / 1e6:.1f}M" if back >= 1_000_000 else f"{back // 1000}K" if back >= 10_000 else str(back)
        return f"back {n} insns, {self.bytes / 2**20:.0f}/{self.budget / 2**20:.0f} MiB"

    # -- the dirty-log consumer ---------------------------------------------------------
    def first_write(self, gpfn: int, hpa: int) -> None:
        if self._capturing:
            cp = self.cps[-1]
            if not cp.has(gpfn):
                data = self.guest.monitor.host.ram[hpa:hpa + PAGE]
                byte = _fill_byte(data)
                if byte is not None:
                    cp.bytes += cp.add_fill(gpfn, byte, len(self.guest.frames))
                    return
                cp.undo[gpfn] = data
                n = len(data)
                cp.bytes += _ENTRY_OVERHEAD + n
                if n == PAGE:
                    cp.raw += 1
                    if cp.raw >= RAW_LIMIT:            # a guest rewriting much of its RAM: pack as it goes
                        cp.pack()
                        cp.packed = False

    def remapped(self) -> None:
        """The guest was reset: its history starts again here."""
        self.cps = []
        self.inputs = []
        self._checkpoint()

    # -- going forward ----------------------------------------------------------------------
    def note(self) -> None:
        """After the guest ran: checkpoint when it has gone far enough."""
        g = self.guest
        last = self.cps[-1]
        if self._searching:
            return
        if g.icount - last.icount >= self.every or last.bytes - last.state_bytes > self.budget // 4 \
                or self.bytes > self.budget:         # (closing the interval thins the history)
            self._checkpoint()

    def _checkpoint(self) -> None:
        g = self.guest
        t0 = time.perf_counter()
        ran = t0 - self._run_clock
        logged = 0
        if self.cps:
            logged = self.cps[-1].pages
            self.cps[-1].pack()
        self.cps.append(Checkpoint(g.icount, g.now(), snapshot.take_state(g), len(g.console), len(self.inputs),
                                   self.cps[-1] if self.cps else None))
        self._pages.mark()
        if self.bytes > self.budget:
            self._thin()
        t1 = time.perf_counter()
        if self.adaptive and len(self.cps) > 1:
            cost = t1 - t0 + logged * FIRST_WRITE_COST
            if cost > FRACTION * ran:
                self.every = min(MAX_EVERY, self.every * 2)
            elif cost < FRACTION * ran / 4:
                self.every = max(MIN_EVERY, self.every // 2)
        self._run_clock = t1

    def _thin(self) -> None:
        """Merge checkpoints (then drop the oldest) until within the budget."""
        cps = self.cps
        now = self.guest.icount
        total = self.bytes
        while total > self.budget and len(cps) > 1:
            if len(cps) > 2:
                # the checkpoint whose loss widens a gap least, relative to how far back it is
                best = min(range(1, len(cps) - 1),
                           key=lambda i: (cps[i + 1].icount - cps[i - 1].icount) / max(1, now - cps[i].icount))
                total -= self._merge(best)
            else:
                total -= cps.pop(0).bytes
            self.thinned += 1

    def _merge(self, i: int) -> int:
        """Fold checkpoint ``i`` into ``i - 1``; returns the bytes saved."""
        older, gone = self.cps[i - 1], self.cps.pop(i)
        older.pack()
        gone.pack()
        before = older.bytes + gone.bytes
        npages = len(self.guest.frames)
        for gpfn, byte in gone.filled_pages():
            if not older.has(gpfn):
                older.bytes += older.add_fill(gpfn, byte, npages)
        for gpfn, data in gone.undo.items():
            if not older.has(gpfn):
                older.undo[gpfn] = data
                older.bytes += _ENTRY_OVERHEAD + len(data)
        return before - older.bytes

    def record(self, kind: str, data) -> None:
        """An input is about to be applied now (the history only ever ends now)."""
        g = self.guest
        self.inputs.append((g.icount, g.now(), kind, data))

    # -- moving -------------------------------------------------------------------------
    def _restore(self, k: int) -> None:
        """Put the guest (RAM, CPU, devices, console) back at checkpoint ``k``
        and forget the checkpoints after it."""
        g = self.guest
        pages: dict[int, bytes | int] = {}
        for cp in reversed(self.cps[k:]):          # newest first: older versions win
            pages.update(cp.undo)
            pages.update(cp.filled_pages())
        host, frames = g.monitor.host, g.frames
        self._capturing = False
        try:
            for gpfn, data in pages.items():
                host.write_bytes(frames[gpfn] * PAGE, _page(data))
        finally:
            self._capturing = True
        cp = self.cps[k]
        del self.cps[k + 1:]
        cp.packed = False                  # its interval is open again
        snapshot.restore_state(g, cp.state)
        del g.console[cp.console_len:]
        self._pages.mark()                 # the next write to each page is reported again

    def seek(self, icount: int, forget_future: bool = True) -> None:
        """Put the guest in its state when ``icount`` instructions had retired.
        Unless ``forget_future``, the inputs after it are kept (for a search
        that runs on through them)."""
        g = self.guest
        icount = max(icount, self.start)
        k = max(i for i, cp in enumerate(self.cps) if cp.icount <= icount)
        with self._quiet():
            self._restore(k)
            g.state = "paused"
            self._next_input = self.cps[k].inputs
            self._run_to(icount)
        if forget_future:
            del self.inputs[self._next_input:]
        g.last_stop = Stop(StopKind.STEP, "reverse step")

    @contextlib.contextmanager
    def _quiet(self):
        """While seeking: no debugger breakpoints or watchpoints, no recorder."""
        g = self.guest
        cpu = g.vcpu                                  # (the sets are shared by every vCPU)
        bps, wps = set(cpu.breakpoints), list(cpu.watchpoints)
        cpu.breakpoints.clear()
        cpu.watchpoints.clear()
        g.breakpoints_changed()
        recorder, g.recorder = g.recorder, None
        try:
            yield
        finally:
            g.recorder = recorder
            cpu = g.vcpu                              # (a replayed input may have built a new one)
            cpu.breakpoints.update(bps)
            cpu.watchpoints.extend(wps)
            g.breakpoints_changed()

    def _run_to(self, limit: int, hits: list | None = None) -> None:
        """Run forward to instruction ``limit`` applying the recorded inputs
        from ``_next_input`` on at their guest times.  With ``hits``, stop at
        breakpoints and watchpoints on the way and collect them."""
        from .record import apply_input
        g = self.guest
        inputs = self.inputs
        while g.icount < limit and g.alive:
            n = limit - g.icount
            if self._next_input < len(inputs):
                n = min(n, max(0, inputs[self._next_input][1] - g.now()))
            if n == 0:
                _, _, kind, data = inputs[self._next_input]
                self._next_input += 1
                apply_input(g, kind, data)
                continue
            was = g.state
            if hits is not None:
                g.pc.running.skip_bp_once = bool(hits) and hits[-1][0] == g.icount
                g.state = "running"
            stop = g.run(n)
            if hits is not None and stop.kind in (StopKind.BREAKPOINT, StopKind.WATCHPOINT) \
                    and g.icount < limit:
                hits.append((g.icount, stop))
            if g.state == "running" or (hits is not None and g.alive):
                g.state = was

    def reverse_step(self) -> bool:
        """One instruction back; False at the beginning of the history."""
        g = self.guest
        if g.icount <= self.start:
            self.at_beginning = True
            return False
        self.seek(g.icount - 1)
        self.at_beginning = False
        return True

    def reverse_continue(self) -> Stop:
        """Back to the latest earlier breakpoint or watchpoint stop."""
        steps = self.reverse_continue_steps()
        for _ in steps:
            pass
        return self.guest.last_stop

    def reverse_continue_steps(self):
        """``reverse_continue`` one window at a time: a generator that yields
        after each window it searched (the guest is then somewhere in the
        past, paused), and leaves the guest at the stop when exhausted
        (``guest.last_stop`` says which)."""
        g = self.guest
        now = current = g.icount
        bounds = [cp.icount for cp in self.cps if cp.icount < now]
        hits: list[tuple[int, Stop]] = []
        self._searching = True                  # (a debugger's run loop may call note() meanwhile)
        try:
            for start in reversed(bounds):
                # a stop exactly at a window's end counts, except where we are now
                hits = self._stops_between(start, now, include_end=now != current)
                if hits:
                    break
                now = start
                yield start
        finally:
            self._searching = False
        if not hits:
            self.seek(self.start)
            self.at_beginning = True
            return
        icount, stop = hits[-1]
        self.seek(icount)
        g.last_stop = stop
        self.at_beginning = False

    def _stops_between(self, start: int, end: int, include_end: bool = False) -> list[tuple[int, Stop]]:
        """Where breakpoints and watchpoints stop the guest after ``start``
        and before ``end`` (or at it, with ``include_end``)."""
        self.seek(start, forget_future=False)
        hits: list[tuple[int, Stop]] = []
        self._run_to(end + 1 if include_end else end, hits)
        return hits
