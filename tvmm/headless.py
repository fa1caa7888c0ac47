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
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from .guestspec import SpecError, load_config, parse_guest
from .machine.boot import BootError
from .monitor.guest import CRASHED, EXITED, HALTED
from .monitor.hostmem import OutOfMemory
from .monitor.vmm import Monitor

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
                    help="name=NAME,kernel=ELF,cmdline=STR,disk0=IMG,disk1=IMG,mem=64M,boot=multiboot|disk|rom,rom=ROM (repeatable: guests run side by side)")
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
    ap.add_argument("--wait-gdb", action="store_true", help="hold each guest until its debugger continues it")
    return ap


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
        if not args.headless and (args.script or args.screen):
            raise UsageError("--expect/--send/--screen need --headless")
        names = [s.name for s in specs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise UsageError(f"two guests are named {sorted(dup)[0]!r}: give each a name=NAME")
        if args.max_insns is not None and args.max_insns <= 0:
            raise UsageError("--max-insns must be positive")
        script = _script(args.script, names)
        gdb = _gdb_address(args.gdb) if args.gdb is not None else None
        if args.wait_gdb and gdb is None:
            raise UsageError("--wait-gdb needs --gdb PORT")
        console = _Console(len(specs) > 1)
        monitor = Monitor.with_guests(specs, on_console=console.byte if args.headless else None)
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
            return run_ui(monitor, server, args.wait_gdb)
        if gdb is not None:
            return asyncio.run(_run_with_gdb(monitor, args, script, *gdb))
        return _run(monitor, args, script)
    finally:
        console.close()
        if getattr(monitor, "recorder", None) is not None:
            monitor.recorder.checkpoint()
            monitor.recorder.close()


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
    for name, h, p in endpoints:
        print(f"tvmm: guest {name}: gdb on {h}:{p} (target remote {h}:{p})", file=sys.stderr, flush=True)
    if args.wait_gdb:
        for g in monitor.guests:
            g.pause("waiting for gdb")
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
        await server.close()


def _advance_script(monitor: Monitor, script: list, cursors: dict) -> None:
    """Consume satisfied expects and perform sends."""
    while script:
        kind, name, text = script[0]
        guest = monitor.guest(name)
        if kind == "send":
            guest.record_input("serial", text.decode("latin-1"))
            guest.pc.com1.feed(text)
        else:
            at = guest.console.find(text, cursors.get(name, 0))
            if at < 0:
                break
            cursors[name] = at + len(text)
        script.pop(0)


class _Runner:
    """The run loop, one slice per ``step()``: returns the exit status when
    the run is over, None to go on.  The plain loop calls it back to back;
    with ``--gdb`` the asyncio loop interleaves it with the debuggers."""

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

    def step(self) -> int | None:
        monitor, args, script = self.monitor, self.args, self.script
        if self.scripted:
            _advance_script(monitor, script, self.cursors)
            if not script:
                return _finish(monitor, args, 0)
        if self.deadline is not None and time.monotonic() > self.deadline:
            return _fail(monitor, args, f"timed out after {args.timeout:g} s" + _waiting(script))
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
    while True:
        status = runner.step()
        if status is not None:
            return status
        if monitor.all_stopped:                     # paused with no debugger to resume it
            return _fail(monitor, args, "every guest is paused")


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
