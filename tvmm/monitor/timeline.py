"""A guest's history, for moving backwards: periodic snapshots plus the
inputs applied since the first one.

Any earlier instruction count is reached by restoring the nearest snapshot
at or before it and running forward, re-applying recorded inputs at their
guest times.  This is exact because guest time is the instruction count and
inputs are the only other thing that reaches a guest.  Debugger breakpoints
and watchpoints are set aside while seeking.

``reverse_step`` goes back one instruction; ``reverse_continue`` goes back
to the latest earlier point where a breakpoint or watchpoint stops the
guest (or to the beginning of the history).
"""

from __future__ import annotations

from ..machine import debug
from ..machine.errors import Stop, StopKind
from . import snapshot

EVERY = 200_000


class Timeline:
    def __init__(self, guest, every: int = EVERY):
        self.guest = guest
        self.every = every
        self.snaps = [snapshot.take(guest)]
        self.inputs: list[tuple[int, int, str, object]] = []     # (icount, now, kind, data)
        self.at_beginning = False

    @property
    def start(self) -> int:
        return self.snaps[0].icount

    def note(self) -> None:
        """After the guest ran: snapshot when it has gone far enough."""
        g = self.guest
        if g.icount - self.snaps[-1].icount >= self.every:
            self.snaps.append(snapshot.take(g))

    def record(self, kind: str, data) -> None:
        """An input is about to be applied: the future after now changes."""
        g = self.guest
        self.snaps = [s for s in self.snaps if s.icount <= g.icount] or self.snaps[:1]
        self.inputs = [i for i in self.inputs if i[0] <= g.icount]
        self.inputs.append((g.icount, g.now(), kind, data))

    # -- moving -------------------------------------------------------------------------
    def seek(self, icount: int) -> None:
        """Put the guest in its state when ``icount`` instructions had retired."""
        from .record import apply_input
        g = self.guest
        icount = max(icount, self.start)
        snap = max((s for s in self.snaps if s.icount <= icount), key=lambda s: s.icount)
        cpu = g.vcpu
        saved_bps, saved_wps = set(cpu.breakpoints), list(cpu.watchpoints)
        cpu.breakpoints.clear()
        cpu.watchpoints.clear()
        debug.update_watch_pages(cpu)
        recorder, g.recorder = g.recorder, None
        try:
            snapshot.restore(g, snap)
            g.state = "paused"
            pending = [i for i in self.inputs if i[1] >= snap.now]
            while g.icount < icount and g.alive:
                n = icount - g.icount
                if pending:
                    n = min(n, max(0, pending[0][1] - g.now()))
                if n == 0:
                    _, _, kind, data = pending.pop(0)
                    apply_input(g, kind, data)
                    continue
                was = g.state
                g.run(n)
                if g.state == "running":
                    g.state = was
        finally:
            g.recorder = recorder
            cpu = g.vcpu                                # a replayed reset builds a new one
            cpu.breakpoints.update(saved_bps)
            cpu.watchpoints.extend(saved_wps)
            debug.update_watch_pages(cpu)
        g.last_stop = Stop(StopKind.STEP, "reverse step")

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
        g = self.guest
        now = current = g.icount
        hits: list[tuple[int, Stop]] = []
        for snap in reversed([s for s in self.snaps if s.icount < now]):
            # a stop exactly at a window's end counts, except where we are now
            hits = self._stops_between(snap.icount, now, include_end=now != current)
            if hits:
                break
            now = snap.icount
        if not hits:
            self.seek(self.start)
            self.at_beginning = True
            return g.last_stop
        icount, stop = hits[-1]
        self.seek(icount)
        g.last_stop = stop
        self.at_beginning = False
        return stop

    def _stops_between(self, start: int, end: int, include_end: bool = False) -> list[tuple[int, Stop]]:
        """Where breakpoints and watchpoints stop the guest after ``start``
        and before ``end`` (or at it, with ``include_end``)."""
        g = self.guest
        self.seek(start)
        hits = []
        cpu = g.vcpu
        limit = end + 1 if include_end else end
        while g.icount < limit and g.alive:
            cpu.skip_bp_once = bool(hits) and hits[-1][0] == g.icount
            g.state = "running"
            stop = g.run(limit - g.icount)
            if stop.kind in (StopKind.BREAKPOINT, StopKind.WATCHPOINT) and g.icount < limit:
                hits.append((g.icount, stop))
            g.state = "paused" if g.alive else g.state
        return hits
