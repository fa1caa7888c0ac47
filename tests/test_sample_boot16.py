"""The boot16 sample end to end: a boot sector that reads its 16-bit C
program (gcc -m16) through the IDE ports, enters big real mode and calls it;
the program's calls and returns are calll/retl (issue 15), it computes a
line, stores above 1 MiB through DS with a 4 GiB limit and prints on COM1."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "samples" / "build" / "boot16.img"
LINE = "boot16: drive 128 squares 338350 fib20 6765, a20 ok"


def run(img: Path, *extra: str):
    r = subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", "--max-insns", "2000000",
                        "--timeout", "120", *extra, "--guest", f"boot=disk,disk0={img}"],
                       capture_output=True, text=True, cwd=ROOT, timeout=180)
    return r.returncode, r.stdout.replace("\r", ""), r.stderr


def test_committed_image_is_a_boot_disk():
    data = IMG.read_bytes()
    assert len(data) % 512 == 0 and data[510:512] == b"\x55\xaa"


@pytest.mark.parametrize("mode", ["monitor", "bare"])
def test_prints_its_line_and_halts(mode):
    status, out, err = run(IMG, *(["--bare"] if mode == "bare" else []))
    assert status == 0, err
    assert out.splitlines() == [LINE]


def _can_build() -> bool:
    if not shutil.which("gcc") or not shutil.which("make") or not shutil.which("ld"):
        return False
    probe = subprocess.run(["gcc", "-m16", "-ffreestanding", "-nostdlib", "-c", "-x", "c", "-", "-o", "/dev/null"],
                           input="int x;", capture_output=True, text=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_build(), reason="no gcc with -m16 support")
def test_rebuilt_from_source_prints_the_same(tmp_path):
    subprocess.run(["make", "-s", "-C", str(ROOT / "samples"), f"BUILD={tmp_path}", f"{tmp_path}/boot16.img"],
                   check=True, capture_output=True, timeout=120)
    status, out, err = run(tmp_path / "boot16.img")
    assert status == 0, err
    assert out.splitlines() == [LINE]
