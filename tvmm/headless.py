"""``tvmm run --headless``: boot a guest without the UI, console on stdout.

Exit status (a contract scripts rely on): the guest's debug-exit status when
it writes port 0xF4; 0 when the guest halts for good; 1 on a timeout, an
exhausted ``--max-insns`` budget or a guest crash (reason on stderr); 2 on a
usage error or a bad kernel/option (one line on stderr).

``--expect TEXT`` and ``--send TEXT`` (repeatable, in order; ``\n``-style
escapes; ``NAME:TEXT`` names the guest) script the console: an expect waits
until the guest's COM1 output, after the previous match, contains TEXT; a
send types TEXT into COM1.  The run ends with status 0 when the script
completes, and 1 if the guest stops or time runs out first.  Script steps are
checked between run slices, which end at fixed virtual times, so a scripted
run is reproducible.

Every guest runs under the monitor (tvmm.monitor), side by side, each with
``--max-insns`` of its own virtual time.  With one guest its console is
streamed as is; with several, each line is prefixed with ``NAME| ``.  With
several guests the exit status is 1 if any crashed, else the first
debug-exit status in guest order, else 0.

``--bare`` runs one guest straight on the modelled PC, without the monitor,
with the same console, script, budget, timeout, screen and exit-status
contract: a guest must behave the same both ways (the monitor's promise,
checkable on the user's own kernel).  ``--stats`` prints, per guest at exit,
its instructions, the monitor's exits by kind, hidden and true page faults,
shadow pages in use and the share of instructions run without an exit.

With ``--gdb``, ``--wait-gdb`` holds every guest until its debugger
continues it; the guest key ``wait-gdb=yes`` holds only that guest while its
siblings run (``_hold_for_gdb``).

``--timeout`` holds within a fraction of a second whatever the guest runs:
slices still end at the same virtual times as without it (so it changes
nothing a guest sees), and once the wall-clock deadline has passed a
watchdog thread asks the running processor to stop after its current
instruction (``_Watchdog``).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import threading
import time

from .guestspec import SpecError, load_config, parse_guest, size_in_bytes
from .machine.boot import BootError
from .machine.errors import Stop, StopKind
from .monitor.guest import CRASHED, EXITED, HALTED, PAUSED, RESET, RUNNING, Guest, state_after
from .monitor.hostmem import OutOfMemory
from .monitor.vmm import Monitor, RunResult

SLICE = 2_000_000
SCRIPT_SLICE = 200_000       # finer slices while a console script is waiting
GDB_SLICE = 20_000           # finer still with debuggers attached: they are answered between slices


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):          # one line, not usage + error
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="tvmm run", description="Boot guest kernels (the terminal UI unless --headless).")
    ap.add_argument("kernel", nargs="?", help="a Multiboot kernel (ELF)")
    ap.add_argument("--headless", action="store_true", help="no UI: console on stdout")
    ap.add_argument("--guest", action="append", default=[], metavar="SPEC",
                    help="name=NAME,kernel=ELF,cmdline=STR,disk0=IMG,disk1=IMG,mem=64M,boot=multiboot|disk|rom,rom=ROM,"
                         "wait-gdb=yes|no (repeatable: guests run side by side)")
    ap.add_argument("--config", metavar="FILE", help="guests from a TOML file ([[guest]] tables)")
    ap.add_argument("--record", metavar="FILE", help="record the session (replay it with tvmm replay FILE)")
    ap.add_argument("--record-every", type=int, default=2_000_000, metavar="N",
                    help="guest instructions between state digests in the recording (default 2000000)")
    ap.add_argument("--max-insns", type=int, metavar="N", help="stop after N instructions of virtual time")
    ap.add_argument("--timeout", type=float, metavar="SECONDS", help="stop after this much real time")
    ap.add_argument("--screen", action="store_true", help="print the final CGA screen at exit")
    ap.add_argument("--expect", action=_Step, dest="script", metavar="TEXT", help="wait for console output")
    ap.add_argument("--send", action=_Step, dest="script", metavar="TEXT", help="type into the console")
    ap.add_argument("--gdb", metavar="[HOST:]PORT",
                    help="a GDB stub per guest on PORT, PORT+1, ... (127.0.0.1 unless HOST is given)")
    ap.add_argument("--wait-gdb", action="store_true",
                    help="hold every guest until its debugger continues it (one guest: its key wait-gdb=yes)")
    ap.add_argument("--history", metavar="SIZE", type=_history_size, default=None,
                    help="memory each guest's history (stepping back in the UI, reverse execution in gdb) may "
                         "use, e.g. 64M or 1G; 0 keeps none (default 256M)")
    ap.add_argument("--bare", action="store_true",
                    help="run the one guest straight on the modelled PC, without the monitor (to compare)")
    ap.add_argument("--stats", action="store_true",
                    help="at exit, print per guest: instructions, exits by kind, page faults, shadow pages (stderr)")
    return ap


def _history_size(text: str) -> int:
    """``--history SIZE``: bytes, with K/M/G (binary) units; 0 turns history off."""
    n = size_in_bytes(text)
    if n is None:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (use e.g. 256M, 1G, or 0 for no history)")
    return n


class _Step(argparse.Action):
    """Keeps --expect and --send in the order given."""

    def __call__(self, parser, namespace, value, option_string=None):
        steps = getattr(namespace, self.dest, None) or []
        steps.append((option_string.lstrip("-"), value))
        setattr(namespace, self.dest, steps)


def _unescape(text: str) -> bytes:
    try:
        return text.encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1")
    except (UnicodeDecodeError, UnicodeEncodeError) as e:
        raise UsageError(f"bad escape in {text!r}: {e.reason}") from None


def _script(steps, names: list[str]) -> list[tuple[str, str, bytes]]:
    """(kind, guest name, bytes) per step; ``NAME:TEXT`` targets a guest, a
    prefix that names no guest is part of the text (so "login: " still
    means the text "login: "); otherwise the first guest."""
    out = []
    for kind, text in steps or []:
        name, sep, rest = text.partition(":")
        target = names[0]
        if sep and name in names:
            target, text = name, rest
        out.append((kind, target, _unescape(text)))
    return out


class _Console:
    """Guest console bytes to stdout: raw for one guest, prefixed lines for several."""

    def __init__(self, several: bool):
        self.several = several
        self.out = sys.stdout.buffer
        self.partial: dict[str, bytearray] = {}

    def byte(self, guest, b: int) -> None:
        if not self.several:
            self.out.write(bytes((b,)))
            return
        buf = self.partial.setdefault(guest.name, bytearray())
        if b == 0x0A:
            self.out.write(guest.name.encode() + b"| " + bytes(buf).rstrip(b"\r") + b"\n")
            buf.clear()
        else:
            buf.append(b)

    def close(self) -> None:
        for name, buf in self.partial.items():
            if buf:
                self.out.write(name.encode() + b"| " + bytes(buf) + b"\n")
        self.partial.clear()
        self.out.flush()


_prog = "tvmm run"


def main(argv: list[str], prog: str = "tvmm run") -> int:
    global _prog
    _prog = prog
    try:
        args = _parser().parse_args(argv)
        specs = load_config(args.config) if args.config else []
        specs += [parse_guest(g, f"guest{len(specs) + i}") for i, g in enumerate(args.guest)]
        if args.kernel:
            specs.insert(0, parse_guest(f"kernel={args.kernel}", "guest0"))
        if not specs and args.headless:
            raise UsageError("no guest given: tvmm run --headless KERNEL.elf (or --guest SPEC)")
        if not specs:
            from .bundled import bundled_specs
            specs = bundled_specs()
        if not args.headless:
            for flag, given in (("--expect/--send", args.script), ("--screen", args.screen),
                                ("--stats", args.stats), ("--bare", args.bare)):
                if given:
                    raise UsageError(f"{flag} needs --headless")
        names = [s.name for s in specs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise UsageError(f"two guests are named {sorted(dup)[0]!r}: give each a name=NAME")
        if args.max_insns is not None and args.max_insns <= 0:
            raise UsageError("--max-insns must be positive")
        if args.timeout is not None and not (0 < args.timeout < math.inf):
            raise UsageError("--timeout must be a positive number of seconds")
        script = _script(args.script, names)
        gdb = _gdb_address(args.gdb) if args.gdb is not None else None
        if args.wait_gdb and gdb is None:
            raise UsageError("--wait-gdb needs --gdb PORT")
        held = [s.name for s in specs if s.wait_gdb]
        if held and gdb is None:
            raise UsageError(f"guest {held[0]}: wait-gdb=yes needs --gdb PORT")
        if args.bare:
            _check_bare(specs, args)
        console = _Console(len(specs) > 1)
        on_console = console.byte if args.headless else None
        if args.bare:
            monitor = _BareMachine(specs[0], on_console)
        else:
            monitor = Monitor.with_guests(specs, on_console=on_console)
            if args.history is not None:
                monitor.history_budget = args.history
    except (UsageError, SpecError, BootError, OutOfMemory) as e:
        print(f"{_prog}: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:          # e.g. a missing or malformed disk image
        print(f"{_prog}: {e}", file=sys.stderr)
        return 2
    if args.record:
        from .monitor.record import Recorder
        try:
            if args.record_every <= 0:
                raise UsageError("--record-every must be positive")
            monitor.recorder = Recorder(args.record, monitor, args.record_every)
        except OSError as e:
            print(f"{_prog}: cannot write {args.record}: {e.strerror}", file=sys.stderr)
            return 2
        except UsageError as e:
            print(f"{_prog}: {e}", file=sys.stderr)
            return 2
    ran = False
    try:
        if not args.headless:
            from .ui.main import run_ui
            server = None
            if gdb is not None:
                from .gdbstub.server import GdbServer, check_ports
                problem = check_ports(gdb[0], gdb[1], len(monitor.guests))
                if problem:
                    print(f"{_prog}: {problem}", file=sys.stderr)
                    return 2
                server = GdbServer(monitor, *gdb)
                _hold_for_gdb(monitor, args.wait_gdb)
            return run_ui(monitor, server, args.wait_gdb)
        ran = True
        if gdb is not None:
            return asyncio.run(_run_with_gdb(monitor, args, script, *gdb))
        return _run(monitor, args, script)
    finally:
        console.close()
        if getattr(monitor, "recorder", None) is not None:
            monitor.recorder.checkpoint()
            monitor.recorder.close()
        if ran and args.stats:
            _print_stats(monitor)


def _check_bare(specs, args) -> None:
    """``--bare``: one guest, on the PC as it is, with nothing that needs the monitor."""
    if len(specs) != 1:
        raise UsageError(f"--bare runs one guest ({len(specs)} given)")
    if args.gdb is not None:
        raise UsageError("--bare cannot be combined with --gdb (the gdb stub needs the monitor)")
    if args.record:
        raise UsageError("--bare cannot be combined with --record (recording needs the monitor)")
    if specs[0].boot == "rom":
        raise UsageError("--bare cannot boot a firmware ROM (boot=rom needs the monitor's guest memory)")


def _hold_for_gdb(monitor, everyone: bool) -> None:
    """Hold the guests a debugger must start: every guest with ``--wait-gdb``,
    else those whose spec says ``wait-gdb=yes``.  A held guest is paused
    ("waiting for gdb") until its debugger continues it (or detaches); its
    siblings run meanwhile."""
    for g in monitor.guests:
        if everyone or g.spec.wait_gdb:
            g.pause("waiting for gdb")


def _gdb_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host = "127.0.0.1"
    try:
        n = int(port)
    except ValueError:
        raise UsageError(f"bad --gdb value {text!r} (use PORT or HOST:PORT)") from None
    if not 0 <= n <= 65535:
        raise UsageError(f"bad --gdb port {n} (0-65535)")
    return host or "127.0.0.1", n


async def _run_with_gdb(monitor: Monitor, args, script: list, host: str, port: int) -> int:
    """The run loop interleaved with one GDB stub per guest."""
    from .gdbstub.server import GdbServer
    server = GdbServer(monitor, host, port)
    try:
        endpoints = await server.start()
    except OSError as e:
        print(f"{_prog}: cannot listen for gdb on {host}:{port}: {e.strerror or e}", file=sys.stderr)
        return 2
    _hold_for_gdb(monitor, args.wait_gdb)
    for (name, h, p), g in zip(endpoints, monitor.guests):
        held = " (held until its debugger continues it)" if g.reason == "waiting for gdb" else ""
        print(f"tvmm: guest {name}: gdb on {h}:{p} (target remote {h}:{p}){held}", file=sys.stderr, flush=True)
    runner = _Runner(monitor, args, script, slice_insns=GDB_SLICE)
    try:
        while True:
            idle = monitor.all_stopped
            status = runner.step()
            server.poll()
            if status is not None:
                await asyncio.sleep(0.05)           # let final stop replies reach the debuggers
                return status
            await asyncio.sleep(0.01 if idle else 0)
    finally:
        runner.close()
        await server.close()


def _advance_script(monitor: Monitor, script: list, cursors: dict) -> None:
    """Consume satisfied expects and perform sends."""
    while script:
        kind, name, text = script[0]
        guest = monitor.guest(name)
        if kind == "send":
            guest.apply_input("serial", text.decode("latin-1"))
        else:
            at = guest.console.find(text, cursors.get(name, 0))
            if at < 0:
                break
            cursors[name] = at + len(text)
        script.pop(0)


class _Watchdog:
    """Ends the running slice once the wall-clock deadline has passed.

    The runner reads the clock between slices, but one slice of a guest that
    hammers device memory (every access emulated) can take a minute.  This
    thread sleeps until the deadline, then asks each guest's processor to
    stop after its current instruction (``CPU.request_stop``: how a runner
    ends ``run`` early), and asks again every ``PERIOD`` until the runner has
    noticed (a request can be overtaken by the processor's own bookkeeping).
    Before the deadline it does nothing, so slices end at the same virtual
    times with or without ``--timeout`` and no guest can tell; after it the
    run is over."""

    PERIOD = 0.05
    STOP = Stop(StopKind.REQUEST, "wall-clock timeout", {"timeout": True})

    def __init__(self, deadline: float, cpus):
        self.deadline, self.cpus = deadline, cpus
        self.expired = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="tvmm-timeout", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        wait = self.deadline - time.monotonic()
        while not self._done.wait(max(wait, 0.0)):
            self.expired = True
            for cpu in self.cpus():
                if cpu.stop_request is None:      # a pending stop (an exit, a reset) ends the slice anyway
                    cpu.request_stop(self.STOP)
            wait = self.PERIOD

    def close(self, guests) -> None:
        """Stop watching; guests the watchdog paused are running again, as
        they were when time ran out (the state --stats and --screen show)."""
        self._done.set()
        self._thread.join()
        for g in guests:
            if g.pc.cpu.stop_request is self.STOP:
                g.pc.cpu.stop_request = None
            if g.state == PAUSED and g.last_stop is self.STOP:
                g.resume()


class _Runner:
    """The run loop, one slice per ``step()``: returns the exit status when
    the run is over, None to go on.  The plain loop calls it back to back;
    with ``--gdb`` the asyncio loop interleaves it with the debuggers.
    ``close()`` when done."""

    def __init__(self, monitor: Monitor, args, script: list, slice_insns: int | None = None):
        self.monitor, self.args, self.script = monitor, args, script
        self.deadline = None if args.timeout is None else time.monotonic() + args.timeout
        self.budget = args.max_insns
        self.scripted = bool(script)
        self.slice = slice_insns or (SCRIPT_SLICE if self.scripted else SLICE)
        self.cursors: dict = {}
        self.elapsed = 0
        self.reported: set = set()
        self.recorder = getattr(monitor, "recorder", None)
        self.watchdog = None
        if self.deadline is not None:
            self.watchdog = _Watchdog(self.deadline, lambda: [g.pc.cpu for g in monitor.guests])

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.close(self.monitor.guests)
            self.watchdog = None

    def _timed_out(self) -> int:
        self.close()
        return _fail(self.monitor, self.args, f"timed out after {self.args.timeout:g} s" + _waiting(self.script))

    def step(self) -> int | None:
        monitor, args, script = self.monitor, self.args, self.script
        if self.scripted:
            _advance_script(monitor, script, self.cursors)
            if not script:
                return _finish(monitor, args, 0)
        if self.deadline is not None and time.monotonic() > self.deadline:
            return self._timed_out()
        if monitor.all_stopped:
            # nothing runnable: finished, or every live guest is held by a debugger
            return _finish(monitor, args, None, self.reported) if monitor.all_finished else None
        n = self.slice
        if self.recorder is not None:
            n = min(n, self.recorder.every)           # a digest every `every` of guest time
        if self.budget is not None:
            n = min(n, self.budget - self.elapsed)
        if n <= 0:
            return _fail(monitor, args, f"instruction budget of {self.budget} used up" + _waiting(script))
        result = monitor.run(n)
        if self.watchdog is not None and self.watchdog.expired:
            # The slice was cut short at a wall-clock-dependent point: report
            # the timeout (unless every guest finished first), nothing else.
            self.close()
            if not monitor.all_finished:
                sys.stdout.buffer.flush()
                return self._timed_out()
        self.elapsed += n
        if self.recorder is not None:
            self.recorder.checkpoint()
        sys.stdout.buffer.flush()
        for guest, _stop in result.stopped:
            if guest.state == CRASHED and len(monitor.guests) > 1 and not monitor.all_finished:
                self.reported.add(guest.name)           # say so now: its siblings run on
                print(f"{_prog}: guest {guest.name} crashed: {guest.reason}", file=sys.stderr)
        if self.scripted:
            _advance_script(monitor, script, self.cursors)
            if not script:
                return _finish(monitor, args, 0)
            target = monitor.guest(script[0][1])
            if not target.alive:
                return _fail(monitor, args, f"guest {target.name} stopped ({target.state}: {target.reason})"
                             + _waiting(script))
        if monitor.all_finished:
            return _finish(monitor, args, None, self.reported)
        return None


def _run(monitor: Monitor, args, script: list) -> int:
    runner = _Runner(monitor, args, script)
    try:
        while True:
            status = runner.step()
            if status is not None:
                return status
            if monitor.all_stopped:                     # paused with no debugger to resume it
                return _fail(monitor, args, "every guest is paused")
    finally:
        runner.close()


class _BareGuest:
    """``--bare``: one guest straight on the modelled PC (``machine.pc.PC``),
    no monitor: no deprivileging, no shadow pages, no exits.  It offers what
    the runner uses of a monitor's ``Guest`` (state, reason, exit status,
    console, ``pc``) and ends the same way for the same stop."""

    def __init__(self, spec, on_console=None):
        self.spec, self.name = spec, spec.name
        self.console = bytearray()
        self._on_console = on_console
        self.state, self.reason = RUNNING, ""
        self.exit_status: int | None = None
        self.last_stop: Stop | None = None
        self._build()

    def _build(self) -> None:
        from .machine.boot import boot
        from .machine.pc import PC
        spec = self.spec
        self.pc = PC(spec.mem, on_console=self._console_byte, disks=(spec.disk0, spec.disk1),
                     ncpus=spec.cpus, sched=spec.sched)
        boot(spec, self.pc.mem, self.pc.cpu, self.pc.disks[0])

    @property
    def icount(self) -> int:
        return self.pc.running.icount + self.pc._others

    # the same as a monitored guest's (they use state, console and pc only)
    _console_byte, now, runnable, alive, resume = (Guest._console_byte, Guest.now, Guest.runnable, Guest.alive,
                                                  Guest.resume)

    def record_input(self, kind: str, data=None) -> None:
        pass                                        # --bare never records

    def apply_input(self, kind: str, data=None) -> None:
        """Console input (the only outside input a --bare run has)."""
        if kind != "serial":
            raise ValueError(f"--bare: no {kind} input")
        self.pc.com1.feed(data.encode("latin-1") if isinstance(data, str) else bytes(data))

    def run(self, max_insns: int) -> Stop:
        """As ``Guest.run``: a stop that ends the guest sets its state."""
        stop = self.pc.run(max_insns)
        if stop.kind == StopKind.BUDGET:
            return stop
        self.last_stop = stop
        state, reason = state_after(stop, self.pc.exit_status)
        if state == RESET:
            self.console.clear()                    # as the monitor's Guest.reset: a fresh boot
            self._build()
            return stop
        if state == EXITED:
            self.exit_status = self.pc.exit_status
        self.state, self.reason = state, reason
        return stop


class _BareMachine:
    """The one ``--bare`` guest behind the face of a ``Monitor`` the runner uses."""

    recorder = None

    def __init__(self, spec, on_console=None):
        self.guests = [_BareGuest(spec, on_console)]

    guest = Monitor.guest                         # by name, as the monitor does

    def run(self, max_insns: int) -> RunResult:
        result = RunResult()
        g = self.guests[0]
        if g.runnable:
            start = g.now()
            stop = g.run(max_insns)
            result.ran[g.name] = g.now() - start
            if not g.runnable:
                result.stopped.append((g, stop))
        return result

    all_stopped, all_finished = Monitor.all_stopped, Monitor.all_finished


def _print_stats(monitor) -> None:
    """Per guest, to stderr: what the monitor did for it (see README)."""
    from .monitor import events as ev
    bare = isinstance(monitor, _BareMachine)
    err = sys.stderr
    sys.stdout.flush()
    for g in monitor.guests:
        insns = g.icount
        print(f"stats: guest {g.name} ({g.state}{', bare' if bare else ''})", file=err)
        print(f"  instructions: {insns} (virtual time {g.now()})", file=err)
        if bare:
            print("  exits: none (no monitor: no exits, no shadow pages)", file=err)
            continue
        kinds = monitor.log.by_kind(g.name)
        exits = {k: kinds[k] for k in ev.EXIT_KINDS if kinds.get(k)}
        total = sum(exits.values())
        detail = ", ".join(f"{k} {n}" for k, n in sorted(exits.items(), key=lambda kv: (-kv[1], kv[0])))
        print(f"  exits: {total}" + (f" ({detail})" if detail else ""), file=err)
        print(f"  page faults: {kinds.get(ev.PF_HIDDEN, 0)} hidden, {kinds.get(ev.PF_REFLECTED, 0)} true "
              f"(reflected to the guest)", file=err)
        pool = monitor.pool
        print(f"  shadow pages in use: {g.shadow.table_count} (monitor pool: {pool.used} of {pool.limit})",
              file=err)
        if insns:
            share = math.floor(max(insns - total, 0) * 10000 / insns) / 100   # never rounds up to 100
            per = f"{insns / total:.1f} instructions per exit" if total else "no exit"
            print(f"  without an exit: {share:.2f}% of instructions ({per})", file=err)
        else:
            print("  without an exit: - (no instruction retired)", file=err)
    err.flush()


def _finish(monitor: Monitor, args, status, reported=frozenset()) -> int:
    """Every guest stopped (or the script completed: ``status`` 0)."""
    _screen(monitor, args)
    if status is not None:
        return status
    crashed = [g for g in monitor.guests if g.state == CRASHED]
    for g in crashed:
        if g.name not in reported:
            print(f"{_prog}: guest {g.name} stopped: {g.reason}", file=sys.stderr)
    if crashed:
        return 1
    for g in monitor.guests:
        stop = g.last_stop
        if g.state == HALTED and stop is not None and stop.data.get("interrupts_enabled"):
            # not a deliberate cli; hlt: the guest waits for an interrupt no device will raise
            print(f"{_prog}: guest {g.name} {g.reason}", file=sys.stderr)
    for g in monitor.guests:
        if g.state == EXITED:
            return g.exit_status
    assert all(g.state in (HALTED, EXITED) for g in monitor.guests)
    return 0


def _waiting(script: list) -> str:
    if script and script[0][0] == "expect":
        return f" before guest {script[0][1]}'s console showed {script[0][2].decode('latin-1')!r}"
    return ""


def _fail(monitor: Monitor, args, reason: str) -> int:
    _screen(monitor, args)
    print(f"{_prog}: {reason}", file=sys.stderr)
    return 1


def _screen(monitor: Monitor, args) -> None:
    if args.screen:
        sys.stdout.buffer.flush()
        several = len(monitor.guests) > 1
        for g in monitor.guests:
            if several:
                print(f"--- {g.name} screen ---")
            print("\n".join(line.rstrip() for line in g.pc.cga.text()).rstrip("\n"))
