"""The bundled sample kernels: the committed ELF files, and a rebuild from
source (when a 32-bit-capable gcc is present) that must behave the same."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ["hello", "paging", "multitask", "disk", "flaky", "bigmem"]
DISKS = {"disk": "disk.img"}                # samples that need a disk 0
EXTRA = {"bigmem": ",mem=16M,cmdline=rounds=2"}   # (its own tests run 256 MiB)
EXPECTED = {"hello": ["Hello from the hello sample kernel!", "multiboot magic 0x2badb002 ok", "bye"],
            "paging": ["paging: 4 tasks, 22 demand-zero faults, 3 killed, all done"],
            "multitask": ["multitask: all tasks done"],
            "disk": ["disk: 12 sectors checked, 0 mismatches", "disk: done"],
            "flaky": ["flaky: seed 1"],
            "bigmem": ["bigmem: all 4 processes exited, 3819 pages free"]}          # the default seed; the sample's own tests go further


def run(elf: Path) -> subprocess.CompletedProcess:
    disk = DISKS.get(elf.stem)
    spec = f"kernel={elf}" + (f",disk0={elf.parent / disk}" if disk else "") + EXTRA.get(elf.stem, "")
    return subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", "--max-insns", "50000000",
                           "--guest", spec], capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.parametrize("name", SAMPLES)
def test_committed_sample_output(name):
    r = run(ROOT / "samples" / "build" / f"{name}.elf")
    assert r.returncode == 0, r.stderr
    lines = [line.rstrip("\r") for line in r.stdout.splitlines()]
    for want in EXPECTED[name]:
        assert want in lines


def _can_build() -> bool:
    if not shutil.which("gcc") or not shutil.which("make"):
        return False
    probe = subprocess.run(["gcc", "-m32", "-ffreestanding", "-nostdlib", "-c", "-x", "c", "-", "-o", "/dev/null"],
                           input="int x;", capture_output=True, text=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_build(), reason="no gcc with -m32 support")
def test_rebuilt_samples_behave_the_same(tmp_path):
    subprocess.run(["make", "-s", "-C", str(ROOT / "samples"), f"BUILD={tmp_path}"], check=True,
                   capture_output=True)
    assert (tmp_path / "disk.img").read_bytes() == (ROOT / "samples" / "build" / "disk.img").read_bytes()
    for name in SAMPLES:
        fresh, committed = run(tmp_path / f"{name}.elf"), run(ROOT / "samples" / "build" / f"{name}.elf")
        assert (fresh.returncode, fresh.stdout) == (committed.returncode, committed.stdout)
