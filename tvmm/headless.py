"""``tvmm run --headless``: boot a guest without the UI, console on stdout.

Exit status (a contract scripts rely on): the guest's debug-exit status when
it writes port 0xF4; 0 when the guest halts for good; 1 on a timeout, an
exhausted ``--max-insns`` budget or a guest crash (reason on stderr); 2 on a
usage error or a bad kernel/option (one line on stderr).

This first version runs one guest; several guests side by side arrive with
the monitor.  ``--expect``/``--send`` scripting is still to come.
"""

from __future__ import annotations

import argparse
import sys
import time

from .guestspec import SpecError, parse_guest
from .machine.boot import BootError
from .machine.boot import multiboot
from .machine.errors import StopKind
from .machine.pc import PC

SLICE = 2_000_000


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):          # one line, not usage + error
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="tvmm run", description="Boot a guest kernel.")
    ap.add_argument("kernel", nargs="?", help="a Multiboot kernel (ELF)")
    ap.add_argument("--headless", action="store_true", help="no UI: console on stdout")
    ap.add_argument("--guest", action="append", default=[], metavar="SPEC",
                    help="name=NAME,kernel=ELF,cmdline=STR,disk0=IMG,disk1=IMG,mem=64M,boot=multiboot")
    ap.add_argument("--max-insns", type=int, metavar="N", help="stop after N instructions of virtual time")
    ap.add_argument("--timeout", type=float, metavar="SECONDS", help="stop after this much real time")
    ap.add_argument("--screen", action="store_true", help="print the final CGA screen at exit")
    return ap


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
        if not args.headless:
            raise UsageError("the terminal UI is not available yet: use --headless")
        specs = [parse_guest(g, f"guest{i}") for i, g in enumerate(args.guest)]
        if args.kernel:
            specs.insert(0, parse_guest(f"kernel={args.kernel}", "guest0"))
        if not specs:
            raise UsageError("no guest given: tvmm run --headless KERNEL.elf (or --guest SPEC)")
        if len(specs) > 1:
            raise UsageError("several guests need the monitor, which is not available yet: give one guest")
        spec = specs[0]
        if spec.boot != "multiboot":
            raise UsageError(f"boot={spec.boot} is not available yet: use a Multiboot kernel")
        if args.max_insns is not None and args.max_insns <= 0:
            raise UsageError("--max-insns must be positive")
        out = sys.stdout.buffer
        pc = PC(spec.mem, on_console=lambda b: out.write(bytes((b,))),
                disks=(spec.disk0, spec.disk1))
        info = multiboot.load(pc.mem, spec.kernel, spec.cmdline)
        multiboot.enter(pc.cpu, info)
    except (UsageError, SpecError, BootError) as e:
        print(f"tvmm run: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:          # e.g. a missing or malformed disk image
        print(f"tvmm run: {e}", file=sys.stderr)
        return 2
    return _run(pc, spec, args)


def _run(pc: PC, spec, args) -> int:
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    budget = args.max_insns
    try:
        while True:
            n = SLICE if budget is None else min(SLICE, budget - pc.now())
            if n <= 0:
                return _fail(pc, args, f"guest {spec.name}: instruction budget of {budget} used up")
            stop = pc.run(n)
            sys.stdout.buffer.flush()
            if stop.kind == StopKind.BUDGET:
                if deadline is not None and time.monotonic() > deadline:
                    return _fail(pc, args, f"guest {spec.name}: timed out after {args.timeout:g} s")
                continue
            if stop.kind == StopKind.REQUEST and pc.exit_status is not None:
                _screen(pc, args)
                return pc.exit_status
            if stop.kind == StopKind.HALTED:
                _screen(pc, args)
                return 0
            return _fail(pc, args, f"guest {spec.name} stopped: {stop}")
    finally:
        sys.stdout.buffer.flush()


def _fail(pc: PC, args, reason: str) -> int:
    _screen(pc, args)
    print(f"tvmm run: {reason}", file=sys.stderr)
    return 1


def _screen(pc: PC, args) -> None:
    if args.screen:
        sys.stdout.buffer.flush()
        print("\n".join(line.rstrip() for line in pc.cga.text()).rstrip("\n"))
