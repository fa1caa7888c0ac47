"""Virtual time: device events scheduled at instruction-count deadlines.

Invariants:
- Time is ``now``, the number of instructions the machine has retired (plus
  any idle time skipped while every CPU was halted).  Nothing reads a wall
  clock; ``ips`` (instructions per virtual second) converts device periods
  given in nanoseconds or Hz into instruction counts.
- Events fire in deadline order; events with equal deadlines fire in the
  order they were scheduled (a sequence number breaks ties), so a run is
  reproducible.
- ``next_deadline()`` tells the runner how far the CPU may run before a device
  needs attention; the runner calls ``advance(now)`` after each run slice.
"""

from __future__ import annotations

import heapq
from typing import Callable

DEFAULT_IPS = 100_000_000      # 100 M instructions per virtual second


class Timer:
    """A handle for one scheduled callback; cancel() makes it a no-op."""

    __slots__ = ("deadline", "seq", "fn", "cancelled", "name")

    def __init__(self, deadline: int, seq: int, fn: Callable[[int], None], name: str):
        self.deadline, self.seq, self.fn, self.cancelled, self.name = deadline, seq, fn, False, name

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: "Timer") -> bool:
        return (self.deadline, self.seq) < (other.deadline, other.seq)


class Clock:
    def __init__(self, ips: int = DEFAULT_IPS):
        if ips <= 0:
            raise ValueError("instructions per second must be positive")
        self.ips = ips
        self.now = 0
        self._heap: list[Timer] = []
        self._seq = 0
        # Called with each new deadline: lets the runner end the CPU's
        # current slice early when a device schedules something sooner.
        self.on_new_deadline: Callable[[int], None] | None = None

    def ns_to_insns(self, ns: int) -> int:
        return max(1, ns * self.ips // 1_000_000_000)

    def insns_to_ns(self, insns: int) -> int:
        return insns * 1_000_000_000 // self.ips

    def at(self, deadline: int, fn: Callable[[int], None], name: str = "") -> Timer:
        """Call ``fn(now)`` when time reaches ``deadline`` (never in the past)."""
        self._seq += 1
        t = Timer(max(deadline, self.now), self._seq, fn, name)
        heapq.heappush(self._heap, t)
        if self.on_new_deadline is not None:
            self.on_new_deadline(t.deadline)
        return t

    def after(self, delta: int, fn: Callable[[int], None], name: str = "") -> Timer:
        return self.at(self.now + max(0, delta), fn, name)

    def next_deadline(self) -> int | None:
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)
        return heap[0].deadline if heap else None

    def advance(self, now: int) -> int:
        """Move time to ``now``, firing every event due on the way; returns how many fired.

        Each callback runs with ``self.now`` at its own deadline and receives
        it, so a device re-arming a timer from its callback does not drift
        when the runner jumps over several deadlines at once.
        """
        if now < self.now:
            raise ValueError("virtual time cannot go backwards")
        fired = 0
        heap = self._heap
        while heap and heap[0].deadline <= now:
            t = heapq.heappop(heap)
            if not t.cancelled:
                self.now = max(self.now, t.deadline)
                t.fn(self.now)
                fired += 1
        self.now = now
        return fired

    def pending(self) -> list[tuple[int, str]]:
        return sorted((t.deadline, t.name) for t in self._heap if not t.cancelled)
