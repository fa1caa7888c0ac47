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

This first version runs one guest; several guests side by side arrive with
the monitor.
"""

from __future__ import annotations

import argparse
import sys
import time

from .guestspec import SpecError, parse_guest
from .machine.boot import BootError
from .machine.boot import disk as diskboot
from .machine.boot import multiboot
from .machine.errors import StopKind
from .machine.pc import PC

SLICE = 2_000_000
SCRIPT_SLICE = 200_000       # finer slices while a console script is waiting


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
    ap.add_argument("--expect", action=_Step, dest="script", metavar="TEXT", help="wait for console output")
    ap.add_argument("--send", action=_Step, dest="script", metavar="TEXT", help="type into the console")
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


def _script(steps, guest_name: str) -> list[tuple[str, bytes]]:
    out = []
    for kind, text in steps or []:
        # NAME:TEXT targets a guest; a prefix that names no guest is part of
        # the text (so "login: " still means the text "login: ").
        name, sep, rest = text.partition(":")
        if sep and name == guest_name:
            text = rest
        out.append((kind, _unescape(text)))
    return out


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
        if spec.boot == "rom":
            raise UsageError("boot=rom is not available yet: use a Multiboot kernel or boot=disk")
        if args.max_insns is not None and args.max_insns <= 0:
            raise UsageError("--max-insns must be positive")
        script = _script(args.script, spec.name)
        out = sys.stdout.buffer
        console = bytearray()

        def on_console(b: int) -> None:
            out.write(bytes((b,)))
            console.append(b)
        pc = PC(spec.mem, on_console=on_console, disks=(spec.disk0, spec.disk1))
        if spec.boot == "disk":
            diskboot.load(pc.mem, pc.disks[0])
            diskboot.enter(pc.cpu)
        else:
            info = multiboot.load(pc.mem, spec.kernel, spec.cmdline)
            multiboot.enter(pc.cpu, info)
    except (UsageError, SpecError, BootError) as e:
        print(f"tvmm run: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:          # e.g. a missing or malformed disk image
        print(f"tvmm run: {e}", file=sys.stderr)
        return 2
    return _run(pc, spec, args, script, console)


def _advance_script(pc: PC, script: list, console: bytearray, cursor: int) -> int:
    """Consume satisfied expects and perform sends; returns the new match cursor."""
    while script:
        kind, text = script[0]
        if kind == "send":
            pc.com1.feed(text)
        else:
            at = console.find(text, cursor)
            if at < 0:
                break
            cursor = at + len(text)
        script.pop(0)
    return cursor


def _run(pc: PC, spec, args, script: list, console: bytearray) -> int:
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    budget = args.max_insns
    scripted = bool(script)
    cursor = 0
    try:
        while True:
            if scripted:
                cursor = _advance_script(pc, script, console, cursor)
                if not script:
                    _screen(pc, args)
                    return 0
            n = SCRIPT_SLICE if scripted else SLICE
            if budget is not None:
                n = min(n, budget - pc.now())
            if n <= 0:
                return _fail(pc, args, f"guest {spec.name}: instruction budget of {budget} used up"
                             + _waiting(script))
            stop = pc.run(n)
            sys.stdout.buffer.flush()
            if scripted:
                cursor = _advance_script(pc, script, console, cursor)
                if not script:
                    _screen(pc, args)
                    return 0
            if stop.kind == StopKind.BUDGET:
                if deadline is not None and time.monotonic() > deadline:
                    return _fail(pc, args, f"guest {spec.name}: timed out after {args.timeout:g} s"
                                 + _waiting(script))
                continue
            if scripted:
                return _fail(pc, args, f"guest {spec.name} stopped ({stop}){_waiting(script)}")
            if stop.kind == StopKind.REQUEST and pc.exit_status is not None:
                _screen(pc, args)
                return pc.exit_status
            if stop.kind == StopKind.HALTED:
                _screen(pc, args)
                return 0
            return _fail(pc, args, f"guest {spec.name} stopped: {stop}")
    finally:
        sys.stdout.buffer.flush()


def _waiting(script: list) -> str:
    if script and script[0][0] == "expect":
        return f" before the console showed {script[0][1].decode('latin-1')!r}"
    return ""


def _fail(pc: PC, args, reason: str) -> int:
    _screen(pc, args)
    print(f"tvmm run: {reason}", file=sys.stderr)
    return 1


def _screen(pc: PC, args) -> None:
    if args.screen:
        sys.stdout.buffer.flush()
        print("\n".join(line.rstrip() for line in pc.cga.text()).rstrip("\n"))
