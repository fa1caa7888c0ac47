"""``tvmm replay FILE``: re-run a recorded session headless and check it.

Exit status: 0 when every digest, console output and final state matches;
1 at the first divergence (guest, instruction count, what differed, on
stderr); 2 for a bad session file or a kernel/image that is not the one
recorded.
"""

from __future__ import annotations

import argparse
import sys

from .guestspec import SpecError
from .machine.boot import BootError
from .monitor.record import Divergence, SessionError, load, replay, specs_of
from .monitor.vmm import Monitor


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"tvmm replay: {message}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str]) -> int:
    ap = _Parser(prog="tvmm replay", description="Replay a recorded session and check it.")
    ap.add_argument("session", help="a file written by tvmm run --record")
    ap.add_argument("--console", action="store_true", help="print the guests' console output")
    ap.add_argument("--ui", action="store_true", help="replay in the terminal UI (pause, step, step back, inspect)")
    args = ap.parse_args(argv)
    try:
        head, records = load(args.session)
        specs = specs_of(head)
        monitor = Monitor.with_guests(specs, on_console=_echo() if args.console else None)
    except (SessionError, SpecError, BootError, OSError, ValueError) as e:
        print(f"tvmm replay: {e}", file=sys.stderr)
        return 2
    if args.ui:
        from .ui.main import run_ui
        return run_ui(monitor, replay=records)
    try:
        checked = replay(monitor, records)
    except Divergence as e:
        print(f"tvmm replay: {e}", file=sys.stderr)
        return 1
    except SessionError as e:
        print(f"tvmm replay: {e}", file=sys.stderr)
        return 2
    total = sum(checked.values())
    print(f"tvmm replay: {args.session} matches ({total} digests checked across "
          f"{len(checked)} guest{'s' if len(checked) != 1 else ''})", file=sys.stderr)
    return 0


def _echo():
    out = sys.stdout.buffer

    def on_console(guest, b: int) -> None:
        out.write(bytes((b,)))
    return on_console
