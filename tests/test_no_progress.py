"""Issue 15 through the CLI: no guest code makes ``tvmm run`` loop without
retiring instructions.  A real-mode boot sector whose #UD handler is the
ud2 that raised it takes #UD forever on hardware (the pushes wrap in the
64 KiB stack segment) and no instruction ever retires, so an instruction
budget alone would never end the run: the processor shuts down after
``MAX_STALLED_EXCEPTIONS`` exceptions in a row, as after a triple fault.
A boot sector whose calll goes past the 64 KiB CS limit takes #GP through
tvmm's all-zero IVT and runs away through zero-filled memory: the budget
ends it, with the decoded-block cache bounded."""

from __future__ import annotations

import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def boot_sector(code: bytes) -> bytes:
    return code.ljust(510, b"\0") + b"\x55\xaa"


# xor ax,ax; mov ds,ax; mov ax,0x1000; mov ss,ax; mov sp,0x7c00
# mov word [6*4], ud; mov word [6*4+2], 0;  ud: ud2
UD_LOOP = boot_sector(bytes.fromhex("31c08ed8b800108ed0bc007c") + b"\xc7\x06\x18\x00" + struct.pack("<H", 0x7C18)
                      + bytes.fromhex("c7061a000000") + b"\x0f\x0b")
# xor ax,ax; mov ds,ax; mov ss,ax; mov sp,0x7c00; calll (next + 0x20000); hlt
CALLL_PAST_LIMIT = boot_sector(bytes.fromhex("31c08ed88ed0bc007c") + b"\x66\xe8" + struct.pack("<I", 0x20000) + b"\xf4")


def run(tmp_path: Path, image: bytes, *extra: str):
    img = tmp_path / "boot.img"
    img.write_bytes(image)
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", *extra,
                        "--guest", f"boot=disk,disk0={img}"], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    return r.returncode, r.stderr, time.monotonic() - t


@pytest.mark.parametrize("mode", ["monitor", "bare"])
def test_exception_loop_without_progress_ends_as_a_shutdown(tmp_path, mode):
    status, err, secs = run(tmp_path, UD_LOOP, "--max-insns", "1000000", *(["--bare"] if mode == "bare" else []))
    assert status == 1
    assert "triple fault" in err and "no forward progress" in err and "#UD" in err
    assert secs < 60


def test_runaway_after_calll_past_the_limit_ends_at_its_budget(tmp_path):
    status, err, _ = run(tmp_path, CALLL_PAST_LIMIT, "--max-insns", "100000")
    assert status == 1 and "instruction budget of 100000 used up" in err
