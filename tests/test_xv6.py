"""Opt-in: a third-party teaching kernel, xv6 (x86), boots to its shell and
runs commands, by Multiboot and from its own boot sector.

xv6 is not part of tvmm (nothing of it is committed).  To run these tests,
build it outside the repository and point TVMM_XV6_DIR at the tree:

    git clone https://github.com/mit-pdos/xv6-public /tmp/xv6
    sed -i 's/ -Werror//' /tmp/xv6/Makefile          # newer gcc warnings
    make -C /tmp/xv6 kernel fs.img xv6.img
    TVMM_XV6_DIR=/tmp/xv6 python -m pytest -q tests/test_xv6.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

XV6 = os.environ.get("TVMM_XV6_DIR")
pytestmark = pytest.mark.skipif(not XV6, reason="set TVMM_XV6_DIR to a built xv6-public tree")
ROOT = Path(__file__).resolve().parents[1]


def run(spec: str, more=(), insns: int = 400_000_000):
    script = ["--expect", "$ ", "--send", "ls\\n", "--expect", "console", "--expect", "$ ",
              "--send", "echo hello from xv6\\n", "--expect", "hello from xv6\n", "--expect", "$ ", *more]
    r = subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", "--max-insns", str(insns),
                        "--guest", spec, *script], capture_output=True, text=True, cwd=ROOT, timeout=1200)
    return r.returncode, r.stdout.replace("\r", ""), r.stderr


def _check(status, out, err):
    assert status == 0, err
    assert "init: starting sh" in out
    for name in ("README", "cat", "echo", "usertests", "console"):
        assert f"\n{name} " in out
    assert "\nhello from xv6\n" in out


def test_xv6_boots_by_multiboot_with_its_file_system_as_disk1():
    _check(*run(f"kernel={XV6}/kernel,disk1={XV6}/fs.img,mem=256M"))


def test_xv6_boots_from_its_own_boot_sector():
    _check(*run(f"boot=disk,disk0={XV6}/xv6.img,disk1={XV6}/fs.img,mem=256M"))


# Two processors (xv6's own Makefile starts it with two): the AP starts by
# INIT/STARTUP, both schedule processes; forktest and stressfs run on both.
SMP_SCRIPT = ["--send", "forktest\\n", "--expect", "fork test OK", "--expect", "$ ",
              "--send", "stressfs\\n", "--expect", "read", "--expect", "$ "]


@pytest.mark.parametrize("boot", ["multiboot", "disk"])
def test_xv6_runs_on_two_processors(boot):
    spec = (f"kernel={XV6}/kernel" if boot == "multiboot" else f"boot=disk,disk0={XV6}/xv6.img") + \
        f",disk1={XV6}/fs.img,mem=256M,cpus=2"
    status, out, err = run(spec, SMP_SCRIPT, insns=8_000_000_000)
    _check(status, out, err)
    assert "cpu1: starting 1" in out and "cpu0: starting 0" in out
    assert "fork test OK" in out and "stressfs starting" in out
