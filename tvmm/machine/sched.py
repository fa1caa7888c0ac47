"""The schedule that interleaves a machine's processors on one host thread.

A multiprocessor guest's vCPUs never run at the same time: the PC runs one
at a time for a *quantum* of instructions, then asks the schedule which one
runs next.  The schedule is part of the guest's specification (``sched=``),
so the interleaving is as reproducible as everything else:

- ``rr``: each runnable processor in turn, ``RR_QUANTUM`` instructions each.
- ``random:SEED``: the next processor and the quantum are drawn from a
  private splitmix64 generator seeded with SEED (never Python's ``random``).
  In the spirit of PCT and rr's chaos mode, quanta are spread over four
  orders of magnitude and a few are only one to eight instructions long, so
  that narrow race windows do get hit by some seeds.

Invariants:
- The schedule sees only instruction counts and which processors are
  runnable; nothing else (no wall clock, no host thread) changes its
  decisions, so the same spec and inputs give the same interleaving.
- A quantum is counted in the chosen processor's own retired instructions
  and survives the end of a ``PC.run`` slice: how a caller slices time (the
  UI, the headless runner, gdb) never changes the interleaving.
- Preemption happens only between instructions: a LOCK-prefixed
  instruction or XCHG is atomic with respect to the interleaving.
"""

from __future__ import annotations

RR_QUANTUM = 1000
M64 = (1 << 64) - 1


def splitmix64(state: int) -> tuple[int, int]:
    """One step of splitmix64: (new state, output)."""
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


class Schedule:
    """Picks the next processor and how many instructions it may run."""

    def __init__(self, text: str = "rr"):
        self.text = text
        if text == "rr":
            self.seed = None
        elif text.startswith("random:"):
            self.seed = int(text[7:]) & M64
        else:
            raise ValueError(f"unknown schedule {text!r} (rr or random:SEED)")
        self.state = self.seed or 0
        self.switches = 0

    def _next(self) -> int:
        self.state, out = splitmix64(self.state)
        return out

    def pick(self, current: int, runnable: list[int]) -> tuple[int, int]:
        """The processor to run next (one of ``runnable``, indices in
        ascending order, never empty) and its quantum in instructions;
        ``current`` is the one whose quantum just ended (-1: none)."""
        self.switches += 1
        if self.seed is None:
            for i in runnable:
                if i > current:
                    return i, RR_QUANTUM
            return runnable[0], RR_QUANTUM
        r = self._next()
        cpu = runnable[(r >> 40) % len(runnable)]
        if r & 7 == 0:
            quantum = 1 + (r >> 3 & 7)                       # a very short quantum: 1-8
        else:
            span = 1 << (4 + (r >> 6) % 9)                    # 16 .. 4096
            quantum = 1 + (r >> 16) % span
        return cpu, quantum

    def snapshot(self) -> dict:
        return {"state": self.state, "switches": self.switches}

    def restore(self, state: dict) -> None:
        self.state = state["state"]
        self.switches = state["switches"]
