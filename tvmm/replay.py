"""``tvmm replay FILE``: re-run a recorded session headless and check it.

Exit status: 0 when every digest, console output and final state matches;
1 at the first divergence (guest, instruction count, what differed, on
stderr), or when ``--timeout`` (real seconds) or ``--max-insns`` (each
guest's virtual time, as for ``tvmm run``) ends the replay first; 2 for a
bad option, a session file that is not a regular file, is malformed or
does not follow the documented schema (``monitor/session_schema.py``), or
a kernel/image that is not the one recorded.  Every error is one line.
"""

from __future__ import annotations

import argparse
import sys
import time

from .guestspec import SpecError
from .machine.boot import BootError
from .monitor.hostmem import OutOfMemory
from .monitor.record import Divergence, SessionError, load, replay, specs_of
from .monitor.vmm import Monitor

TIMEOUT_CHECK = 100_000          # with --timeout, the clock is read at least this often (guest time)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"tvmm replay: {message}", file=sys.stderr)
        raise SystemExit(2)


class _Limit(Exception):
    """--timeout or --max-insns ended the replay (exit status 1)."""


def main(argv: list[str]) -> int:
    ap = _Parser(prog="tvmm replay", description="Replay a recorded session and check it.")
    ap.add_argument("session", help="a file written by tvmm run --record")
    ap.add_argument("--console", action="store_true", help="print the guests' console output")
    ap.add_argument("--ui", action="store_true", help="replay in the terminal UI (pause, step, step back, inspect)")
    ap.add_argument("--gdb", metavar="[HOST:]PORT",
                    help="replay under gdb: a GDB stub per guest on PORT, PORT+1, ... (each guest held until its "
                         "debugger continues it; reverse execution works)")
    ap.add_argument("--timeout", type=float, metavar="SECONDS", help="stop after this much real time (status 1)")
    ap.add_argument("--max-insns", type=int, metavar="N",
                    help="stop a guest after N instructions of its virtual time (status 1)")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    problem = _check_options(args)
    if problem:
        print(f"tvmm replay: {problem}", file=sys.stderr)
        return 2
    try:
        from .monitor.session_schema import precheck
        precheck(args.session)                       # a regular file, not too large, not too deeply nested
        head, records = load(args.session)           # parsed and checked against the schema
        _check_files(head)                           # regular files, before they are hashed
        specs = specs_of(head)
        monitor = Monitor.with_guests(specs, on_console=_echo() if args.console else None)
    except RecursionError:
        print(f"tvmm replay: {args.session}: nested too deeply to be a session", file=sys.stderr)
        return 2
    except (SessionError, SpecError, BootError, OutOfMemory, OSError, ValueError) as e:
        print(f"tvmm replay: {_one_line(e)}", file=sys.stderr)
        return 2
    if args.ui:
        from .ui.main import run_ui
        return run_ui(monitor, replay=records)
    if args.gdb is not None:
        return _serve_gdb(monitor, records, args.gdb)
    _bound(monitor, args.timeout, args.max_insns)
    try:
        checked = replay(monitor, records)
    except Divergence as e:
        print(f"tvmm replay: {e}", file=sys.stderr)
        return 1
    except _Limit as e:
        print(f"tvmm replay: {e}", file=sys.stderr)
        return 1
    except SessionError as e:
        print(f"tvmm replay: {args.session}: {_one_line(e)}", file=sys.stderr)
        return 2
    total = sum(checked.values())
    print(f"tvmm replay: {args.session} matches ({total} digests checked across "
          f"{len(checked)} guest{'s' if len(checked) != 1 else ''})", file=sys.stderr)
    return 0


def _check_options(args) -> str | None:
    if args.timeout is not None and not args.timeout > 0:          # also refuses nan
        return "--timeout must be a positive number of seconds"
    if args.timeout is not None and args.timeout == float("inf"):
        args.timeout = None
    if args.max_insns is not None and args.max_insns <= 0:
        return "--max-insns must be positive"
    if (args.ui or args.gdb is not None) and (args.timeout is not None or args.max_insns is not None):
        return "--timeout and --max-insns are for a headless replay, not --ui or --gdb"
    if args.ui and args.gdb is not None:
        return "--ui and --gdb do not go together (the UI takes --gdb through tvmm run)"
    if args.gdb is not None:
        from .headless import UsageError, _gdb_address
        try:
            args.gdb_address = _gdb_address(args.gdb)
        except UsageError as e:
            return str(e)
    return None


def _serve_gdb(monitor, records: list, where: str) -> int:
    """``--gdb``: replay with one GDB stub per guest.  Each guest waits at its
    first instruction for its debugger; as it runs, the session's inputs are
    applied at their recorded guest times (the UI's engine does this, without
    a screen), and its history lets gdb go backwards.  Ends when every guest
    has stopped for good and no debugger is attached, or on Ctrl-C."""
    import asyncio

    from .gdbstub.server import GdbServer
    from .headless import _gdb_address
    from .ui.engine import Engine
    host, port = _gdb_address(where)
    for g in monitor.guests:
        g.pause("waiting for gdb")
    server = GdbServer(monitor, host, port)
    engine = Engine(monitor, replay=records)

    async def serve() -> int:
        try:
            endpoints = await server.start()
        except OSError as e:
            print(f"tvmm replay: cannot listen for gdb on {host}:{port}: {e.strerror or e}", file=sys.stderr)
            return 2
        for name, h, p in endpoints:
            print(f"tvmm replay: guest {name}: gdb on {h}:{p} (target remote {h}:{p})", file=sys.stderr, flush=True)
        attached = False
        try:
            while True:
                engine.step_once()
                server.poll()
                attached = attached or bool(server.conns)
                if attached and not server.conns and not any(g.alive for g in monitor.guests):
                    return 0
                idle = not any(g.runnable for g in monitor.guests)
                await asyncio.sleep(0.01 if idle else 0)
        finally:
            await server.close()
    try:
        return asyncio.run(serve())
    except KeyboardInterrupt:
        return 0


def _check_files(head: dict) -> None:
    """Every file the session names must be a regular file: hashing a FIFO
    or a device would block or never end."""
    import os

    from .machine.boot.errors import open_user_file
    for g in head["guests"]:
        for key in g["files"]:
            what = {"kernel": "kernel", "rom": "ROM"}.get(key, "disk image")
            os.close(open_user_file(g["spec"][key], what, error=SessionError))


def _bound(monitor, timeout: float | None, max_insns: int | None) -> None:
    """Make each guest's ``run`` stop the replay (``_Limit``) once the real
    time or that guest's budget of virtual time is used up."""
    if timeout is None and max_insns is None:
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    for guest in monitor.guests:
        used = [0]

        def run(n: int, guest=guest, used=used, inner=guest.run) -> object:
            if max_insns is not None:
                if used[0] >= max_insns:
                    raise _Limit(f"guest {guest.name} used its --max-insns {max_insns} at instruction count "
                                 f"{guest.now()} before the session's end (nothing diverged before)")
                n = min(n, max_insns - used[0])
            if deadline is not None:
                if time.monotonic() >= deadline:
                    raise _Limit(f"timed out after {timeout:g} s (guest {guest.name} at instruction count "
                                 f"{guest.now()}; nothing diverged before)")
                n = min(n, TIMEOUT_CHECK)
            start = guest.now()
            stop = inner(n)
            advanced = guest.now() - start
            used[0] += advanced if advanced >= 0 else n          # a reset starts time again
            return stop
        guest.run = run


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _echo():
    out = sys.stdout.buffer

    def on_console(guest, b: int) -> None:
        out.write(bytes((b,)))
    return on_console
