"""Typed-ahead input is never lost (issue 12, item 3).

The guest below runs its UART as xv6 does, without FIFOs, and polls it
slowly: about 2.3 character times (at 115200 baud) between looks at LSR.
Everything typed at once, as `--send` does, therefore arrives faster than
the guest takes it.  Input from the user is flow-controlled: each byte waits
until the receiver has room, so the guest echoes exactly what was typed; a
replay of the session is identical.  The same guest on a UART without flow
control overruns (the bytes this test would lose).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.monitor.kit import tiny_kernel
from tvmm.guestspec import GuestSpec
from tvmm.monitor.vmm import Monitor

ROOT = Path(__file__).resolve().parents[1]
TEXT = "echo hello tvmm\n"

# 32-bit code, loaded at 1 MiB + 32 (see tests/monitor/kit.py).
SLOW_POLLER = bytes.fromhex(
    "66baf903" "30c0" "ee"          # mov dx, 0x3f9; xor al, al; out dx, al   IER = 0: polled
    "66bafa03" "ee"                 # mov dx, 0x3fa; out dx, al               FCR = 0: no FIFOs
    "66bafb03" "b080" "ee"          # mov dx, 0x3fb; mov al, 0x80; out        DLAB
    "66baf803" "b001" "ee"          # mov dx, 0x3f8; mov al, 1; out           divisor 1: 115200 baud
    "66baf903" "30c0" "ee"          # mov dx, 0x3f9; xor al, al; out
    "66bafb03" "b003" "ee"          # mov dx, 0x3fb; mov al, 3; out           8N1
    "66baf803" "b03e" "ee" "b020" "ee"   # mov dx, 0x3f8; out '>'; out ' '    the prompt
    # poll:
    "b9204e0000"                    # mov ecx, 20000
    "e2fe"                          # loop $                                  20000 instructions
    "66bafd03" "ec" "a801" "74f0"   # mov dx, 0x3fd; in al, dx; test al, 1; jz poll
    "66baf803" "ec" "ee"            # mov dx, 0x3f8; in al, dx; out dx, al    echo it
    "3c0a" "75e6"                   # cmp al, 10; jne poll
    "fa" "f4"                       # cli; hlt
)


def _kernel(tmp_path: Path) -> Path:
    path = tmp_path / "slowpoll.bin"
    path.write_bytes(tiny_kernel(SLOW_POLLER))
    return path


def tvmm(*args):
    return subprocess.run([sys.executable, "-m", "tvmm", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_send_typed_ahead_reaches_a_slow_fifo_less_guest_intact_and_replays(tmp_path):
    kernel = _kernel(tmp_path)
    session = tmp_path / "typed.jsonl"
    r = tvmm("run", "--headless", "--record", str(session), "--guest", f"name=slow,kernel={kernel},mem=4M",
             "--expect", "> ", "--send", TEXT.replace("\n", "\\n"), "--expect", TEXT.replace("\n", "\\n"),
             "--timeout", "60")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert TEXT in r.stdout
    replayed = tvmm("replay", str(session))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr


def _echo(flow_control: bool, tmp_path: Path) -> tuple[bytes, int]:
    spec = GuestSpec(name="slow", kernel=str(_kernel(tmp_path)), mem=4 << 20)
    monitor = Monitor(Monitor.host_size_for([spec]))
    guest = monitor.add_guest(spec)
    guest.pc.com1.flow_control = flow_control
    for _ in range(100):
        guest.run(10_000)
        if bytes(guest.console).endswith(b"> "):
            break
    at = guest.now()
    guest.apply_input("serial", TEXT)
    for _ in range(400):
        if guest.state != "running":
            break
        guest.run(10_000)
    return bytes(guest.console).split(b"> ", 1)[1], at


def test_input_waits_for_the_guest_and_would_overrun_without_flow_control(tmp_path):
    paced, _ = _echo(True, tmp_path)
    assert paced == TEXT.encode()
    unpaced, _ = _echo(False, tmp_path)
    assert unpaced != TEXT.encode() and len(unpaced) < len(TEXT)   # bytes overwritten
