"""``tvmm hunt``: run one guest under many seeded schedules, report the seeds that fail.

::

    tvmm hunt --guest SPEC --seeds 1-500 [--until crash|exit!=0|text:PANIC]
              [--jobs N] [--out DIR] [--max-insns N]

Each seed is one run of the guest from boot with its spec's ``sched=``
replaced by ``sched=random:SEED``: the seed picks how the guest's processors
interleave (``machine/sched.py``), and nothing else changes between runs, so
a seed that fails once fails every time.  A run ends when the guest stops
(halted for good, exited, crashed), when ``--until`` is met, or when it has
used ``--max-insns`` of its virtual time.  What counts as a failure:

- ``crash`` (default): the guest ended in state ``crashed`` (a triple
  fault, an internal error);
- ``exit!=0``: the run ends with a status ``tvmm run --headless`` would
  exit non-zero with — crashed, exited through debug-exit (its statuses
  are ``(value << 1) | 1``, never 0), paused, or still running when
  ``--max-insns`` ran out (each says which).  Halting for good is status 0
  there, and a pass here;
- ``text:S``: the bytes ``S`` (``\\n``-style escapes allowed, as for
  ``tvmm run --expect``) appeared on the guest's serial console.  The run
  stops at the end of the ``TEXT_SLICE`` of guest time in which they did.

Runs are spread over ``--jobs`` worker processes (default: one per CPU;
``--jobs 1`` runs them in this process).  Each failing seed is printed as it
is found; then a summary line.  The lowest failing seed (whatever the job
timing) is run once more in this process with the session recorder on, up
to the failure, into ``DIR/hunt-NAME-seedN.tvmm.jsonl``, which ``tvmm
replay`` (``--ui``, ``--gdb PORT``) replays.

No wall clock reaches a run: slices end at fixed guest times, so a seed's
result does not depend on the machine, the load or ``--jobs``.

Exit status: 1 if any seed failed, 0 if none did, 2 on a usage error (a bad
option, spec, seed list or kernel: one line on stderr), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, replace

from .headless import UsageError, _Parser          # one line on a bad option, as tvmm run

DEFAULT_MAX_INSNS = 200_000_000
SLICE = 2_000_000             # guest time per monitor.run call
TEXT_SLICE = 10_000           # finer while watching the console for --until text:S
RECORD_EVERY = 2_000_000      # guest time between state digests in the session file
MAX_SEEDS = 1_000_000
MAX_SEED = (1 << 64) - 1      # sched=random:SEED takes seeds below 2**64
CONDITIONS = ("crash", "exit!=0", "text:S")
PROG = "tvmm hunt"


# -- the options ---------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog=PROG, description="Run one guest under many seeded schedules (sched=random:SEED) and "
                                        "report the seeds that fail; the first failure is recorded as a session.")
    ap.add_argument("--guest", required=True, metavar="SPEC",
                    help="the guest, as for tvmm run --guest (its sched= is replaced by random:SEED per run)")
    ap.add_argument("--seeds", required=True, metavar="LIST",
                    help="seeds to try: A-B (inclusive) or a comma list of numbers and ranges, e.g. 1-10,15,20-30")
    ap.add_argument("--until", default="crash", metavar="COND",
                    help="what counts as a failure: crash (default; the guest crashed), exit!=0 (the run ends "
                         "with a status tvmm run --headless would exit non-zero with: a crash, a debug-exit, or no "
                         "end within --max-insns; halting for good is 0) or text:S (S appeared on the guest's "
                         "console)")
    ap.add_argument("--jobs", type=int, default=None, metavar="N",
                    help="worker processes (default: one per CPU; 1 runs in this process)")
    ap.add_argument("--out", default=".", metavar="DIR",
                    help="where the session of the first failing seed goes (default: the current directory)")
    ap.add_argument("--max-insns", type=int, default=DEFAULT_MAX_INSNS, metavar="N",
                    help=f"guest time (instructions) each run may use (default {DEFAULT_MAX_INSNS})")
    return ap


def parse_seeds(text: str) -> list[int]:
    """``A-B`` (inclusive) or a comma list of numbers and ranges, as a sorted
    list without repeats; ``UsageError`` (one line) otherwise."""
    seeds: set[int] = set()
    if not text.strip():
        raise UsageError("--seeds is empty (use e.g. 1-500 or 1-10,15,20-30)")
    for part in text.split(","):
        item = part.strip()
        m = re.fullmatch(r"([0-9]{1,20})(?:\s*-\s*([0-9]{1,20}))?", item, re.ASCII)
        if not m:
            raise UsageError(f"bad --seeds value {text!r}: {item!r} is not a number or a range A-B "
                             f"(use e.g. 1-500 or 1-10,15,20-30)")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi > MAX_SEED:
            raise UsageError(f"bad --seeds value {text!r}: seeds are below 2**64")
        if lo > hi:
            raise UsageError(f"bad --seeds value {text!r}: the range {item!r} is empty (A-B needs A <= B)")
        if hi - lo + 1 + len(seeds) > MAX_SEEDS:
            raise UsageError(f"--seeds {text!r}: more than {MAX_SEEDS} seeds")
        seeds.update(range(lo, hi + 1))
    return sorted(seeds)


@dataclass(frozen=True)
class Condition:
    kind: str                      # "crash", "exit!=0" or "text"
    text: bytes = b""

    def __str__(self) -> str:
        return f"text:{self.text.decode('latin-1')}" if self.kind == "text" else self.kind


def parse_until(text: str) -> Condition:
    if text in ("crash", "exit!=0"):
        return Condition(text)
    if text.startswith("text:"):
        raw = text[5:]
        try:
            data = raw.encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1")
        except (UnicodeDecodeError, UnicodeEncodeError) as e:
            raise UsageError(f"bad escape in --until {text!r}: {e.reason}") from None
        if not data:
            raise UsageError("--until text: needs the text to look for (e.g. text:PANIC)")
        return Condition("text", data)
    raise UsageError(f"bad --until value {text!r} (use crash, exit!=0 or text:S)")


def _fixed_spec(text: str):
    """The guest spec, its files made absolute (so workers and the session
    find them from anywhere) and checked by booting it once."""
    from .guestspec import SpecError, parse_guest
    from .machine.boot import BootError
    from .monitor.hostmem import OutOfMemory
    from .monitor.vmm import Monitor
    try:
        spec = parse_guest(text, "guest0")
    except SpecError as e:
        raise UsageError(str(e)) from None
    paths = {k: os.path.abspath(getattr(spec, k)) for k in ("kernel", "disk0", "disk1", "rom") if getattr(spec, k)}
    spec = replace(spec, wait_gdb=False, **paths)      # no debugger holds a hunted guest
    try:
        monitor = Monitor.with_guests([replace(spec, sched="random:0")])
    except (SpecError, BootError, OutOfMemory, OSError, ValueError) as e:
        raise UsageError(_one_line(e)) from None
    for g in list(monitor.guests):
        monitor.remove_guest(g)
    return spec


# -- one run -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """How one seed's run ended (picklable: it comes back from a worker)."""
    seed: int
    failed: bool
    state: str                     # the guest's state at the end
    detail: str                    # what happened, one line
    time: int                      # guest time (instructions) at the end
    error: bool = False            # tvmm itself failed (not the guest)

    def line(self) -> str:
        if self.error:
            return f"seed {self.seed}: {self.detail}"
        return f"seed {self.seed}: {self.detail} ({_count(self.time)} insns)"


def run_seed(spec, seed: int, cond: Condition, max_insns: int, record: str | None = None) -> Outcome:
    """Run ``spec`` from boot under ``sched=random:SEED`` until it stops, the
    condition is met or ``max_insns`` of guest time is used; with
    ``record``, the session is recorded to that path up to there."""
    from .monitor.vmm import Monitor
    spec = replace(spec, sched=f"random:{seed}")
    monitor = Monitor.with_guests([spec])
    g = monitor.guests[0]
    recorder = None
    if record is not None:
        from .monitor.record import Recorder
        recorder = monitor.recorder = Recorder(record, monitor, RECORD_EVERY)
    text = cond.text if cond.kind == "text" else None
    slice_insns = TEXT_SLICE if text else SLICE
    if recorder is not None:
        slice_insns = min(slice_insns, recorder.every)
    matched, elapsed = -1, 0
    try:
        while g.runnable:
            n = min(slice_insns, max_insns - elapsed)
            if n <= 0:
                break
            before = len(g.console)
            monitor.run(n)
            elapsed += n                  # virtual time given, as tvmm run --max-insns counts it
            if recorder is not None:
                recorder.checkpoint()
            if text is not None:
                # only what this slice printed (and a match across its start);
                # a guest that reset itself starts a new console
                start = max(0, before - len(text) + 1) if len(g.console) >= before else 0
                matched = g.console.find(text, start)
                if matched >= 0:
                    break
        return _outcome(seed, g, cond, max_insns, matched)
    finally:
        if recorder is not None:
            recorder.checkpoint()
            recorder.close()
            monitor.recorder = None
        for guest in list(monitor.guests):
            monitor.remove_guest(guest)


def _outcome(seed: int, g, cond: Condition, max_insns: int, matched: int) -> Outcome:
    state, now = g.state, g.now()
    if cond.kind == "text":
        if matched >= 0:
            return Outcome(seed, True, state, f"printed {_show(cond.text)} in {_console_line(g.console, matched)}",
                           now)
        return Outcome(seed, False, state, _ending(g, max_insns), now)
    if cond.kind == "crash":
        return Outcome(seed, state == "crashed", state, _ending(g, max_insns), now)
    # tvmm run --headless's status: 0 for a guest that halted for good (or
    # wrote status 0, which debug-exit cannot), non-zero for anything else
    ok = state == "halted" or (state == "exited" and g.exit_status == 0)
    return Outcome(seed, not ok, state, _ending(g, max_insns), now)


def _ending(g, max_insns: int) -> str:
    state = g.state
    if state == "crashed":
        return f"crashed: {g.reason}"
    if state == "exited":
        return f"exited with debug-exit status {g.exit_status}"
    if state == "halted":
        return f"halted for good: {g.reason}"
    if state == "paused":
        return f"paused: {g.reason}"
    return f"still running when --max-insns {max_insns} ran out (it did not exit)"


def _console_line(console: bytearray, at: int) -> str:
    """The console line the match is on, for the report (one line, short)."""
    start = console.rfind(b"\n", 0, at) + 1
    end = console.find(b"\n", at)
    line = bytes(console[start:end if end >= 0 else len(console)]).decode("latin-1").strip()
    line = "".join(ch if ch.isprintable() else "?" for ch in line)
    return repr(line if len(line) <= 72 else line[:69] + "...")


def _show(data: bytes) -> str:
    return repr(data.decode("latin-1"))


def _count(n: int) -> str:
    if n < 10_000:
        return str(n)
    if n < 1_000_000:
        return f"{n // 1000}K"
    return f"{n / 1_000_000:.1f}M"


def _worker(spec, seed: int, cond: Condition, max_insns: int) -> Outcome:
    try:
        return run_seed(spec, seed, cond, max_insns)
    except Exception as e:  # noqa: BLE001 -- a tvmm bug, not the guest's: this seed's failure
        return Outcome(seed, True, "error", f"tvmm error: {type(e).__name__}: {_one_line(e)}", 0, error=True)


# -- many runs -----------------------------------------------------------------------------------
def _results(spec, seeds: list[int], cond: Condition, max_insns: int, jobs: int):
    """Each seed's ``Outcome``, in the order they finish."""
    if jobs <= 1:
        for seed in seeds:
            yield _worker(spec, seed, cond, max_insns)
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_quiet_worker)
    interrupted = False
    try:
        pending = {}
        todo = iter(seeds)

        def submit() -> None:
            seed = next(todo, None)
            if seed is not None:
                pending[pool.submit(_worker, spec, seed, cond, max_insns)] = seed
        for _ in range(jobs * 2):          # a short queue: Ctrl-C need not wait for hundreds of runs
            submit()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=pending.get):
                seed = pending.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    raise
                except Exception as e:  # noqa: BLE001
                    result = Outcome(seed, True, "error", f"tvmm error: {type(e).__name__}: {_one_line(e)}", 0,
                                     error=True)
                submit()
                yield result
    except BrokenProcessPool:
        raise UsageError("a worker process died (out of memory?); try fewer --jobs") from None
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if interrupted:                    # Ctrl-C: the runs under way are not waited for
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
        pool.shutdown(wait=not interrupted, cancel_futures=True)


def _quiet_worker() -> None:
    """Workers leave Ctrl-C to the parent, which ends them."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(argv: list[str]) -> int:
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as e:            # --help
            return e.code if isinstance(e.code, int) else 0
        seeds = parse_seeds(args.seeds)
        cond = parse_until(args.until)
        if args.max_insns <= 0:
            raise UsageError("--max-insns must be positive")
        jobs = (os.cpu_count() or 1) if args.jobs is None else args.jobs
        if jobs <= 0:
            raise UsageError("--jobs must be positive")
        if not os.path.isdir(args.out):
            raise UsageError(f"--out {args.out}: no such directory")
        if not os.access(args.out, os.W_OK):
            raise UsageError(f"--out {args.out}: not writable")
        spec = _fixed_spec(args.guest)
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    jobs = min(jobs, len(seeds))
    failures: list[Outcome] = []
    progress = sys.stderr.isatty()
    try:
        for done, result in enumerate(_results(spec, seeds, cond, args.max_insns, jobs), 1):
            if progress:
                print(f"\r\x1b[K{done}/{len(seeds)} seeds run, {len(failures)} failed", end="", file=sys.stderr,
                      flush=True)
            if result.failed:
                failures.append(result)
                if progress:
                    print("\r\x1b[K", end="", file=sys.stderr, flush=True)
                print(result.line(), flush=True)
    except UsageError as e:
        print(f"\n{PROG}: {e}" if progress else f"{PROG}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    if progress:
        print("\r\x1b[K", end="", file=sys.stderr, flush=True)
    if not failures:
        print(f"no seed in {args.seeds.strip()} failed")
        return 0
    failures.sort(key=lambda r: r.seed)
    print(f"{len(failures)} of {len(seeds)} seeds failed: {', '.join(str(r.seed) for r in failures)}", flush=True)
    first = next((r for r in failures if not r.error), None)
    if first is not None:
        _record(spec, first, cond, args)
    return 1


def _record(spec, first: Outcome, cond: Condition, args) -> None:
    """Run the first failing seed again, in this process, recording it."""
    path = os.path.normpath(os.path.join(args.out, f"hunt-{spec.name}-seed{first.seed}.tvmm.jsonl"))
    try:
        again = run_seed(spec, first.seed, cond, args.max_insns, record=path)
    except OSError as e:
        print(f"{PROG}: cannot write {path}: {e.strerror or e}", file=sys.stderr)
        return
    if (again.failed, again.state, again.time) != (first.failed, first.state, first.time):
        print(f"{PROG}: seed {first.seed} did not fail the same way when run again ({again.detail} at "
              f"{again.time}); the session may not show the failure", file=sys.stderr)
    print(f"session: {path} (tvmm replay --ui {path}, tvmm replay --gdb PORT {path})", flush=True)


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
