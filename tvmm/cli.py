"""The ``tvmm`` command line.  Each subcommand lives in its own module and is
imported only when used, so ``tvmm bench`` never loads the UI.

Usage errors print one line and exit with status 2.  Output piped into a
reader that goes away early (``tvmm bench --json | head``) ends the command
quietly with status 1, not with a traceback.
"""

from __future__ import annotations

import os
import sys

USAGE = """usage: tvmm [<command> [options]]

  tvmm       the terminal UI on the bundled sample guests

commands:
  ui         the terminal UI: tvmm ui [--guest SPEC ...] [KERNEL.elf]
  run        boot guests: tvmm run --headless KERNEL.elf (without --headless: the UI)
  replay     re-run a recorded session and check it: tvmm replay FILE [--timeout S] [--max-insns N]
  bench      guest instructions per second on fixed workloads (--json)
  hunt       one guest under many seeded schedules, the failing seeds: tvmm hunt --guest SPEC --seeds 1-500
"""


def main(argv: list[str] | None = None) -> int:
    try:
        status = _dispatch(argv)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # the reader of our stdout left: say nothing more (and keep Python's
        # exit-time flush of stdout from raising again)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _dispatch(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    bare = not argv
    if bare:
        argv = ["ui"]
    cmd, rest = argv[0], argv[1:]
    if cmd == "ui":
        from .headless import main as run_main
        if "--headless" in rest:
            print("tvmm ui: --headless is for tvmm run", file=sys.stderr)
            return 2
        return run_main(rest, prog="tvmm" if bare else "tvmm ui")
    if cmd == "run":
        from .headless import main as run_main
        return run_main(rest)
    if cmd == "replay":
        from .replay import main as replay_main
        return replay_main(rest)
    if cmd == "hunt":
        from .hunt import main as hunt_main
        return hunt_main(rest)
    if cmd == "bench":
        from .bench import main as bench_main
        return bench_main(rest)
    print(f"tvmm: unknown command {cmd!r} (try 'tvmm --help')", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
