"""The flaky sample: a real race between the timer interrupt and a
non-atomic list update.  Whether and when it crashes depends on the seed on
its command line; for a given seed it is exactly reproducible."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ELF = ROOT / "samples" / "build" / "flaky.elf"
DEMO_SEED = 5                 # crashes early (the README's gdb demo)
SURVIVOR = 1


def run(cmdline: str):
    r = subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", "--max-insns", "40000000",
                        "--guest", f"kernel={ELF},cmdline='{cmdline}'"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    return r.returncode, r.stdout.replace("\r", "")


def test_the_demo_seed_crashes_with_an_oops_the_same_way_every_time():
    first, second = run(f"seed={DEMO_SEED}"), run(f"seed={DEMO_SEED}")
    assert first == second
    status, out = first
    assert status == 3                                  # debug-exit 1
    m = re.search(r"BUG: unable to handle page fault at 0x(dead[0-9a-f]{4}), error 0x0000000([0-7]), "
                  r"eip 0x[0-9a-f]{8} \(in (timer_interrupt|list_length)\)", out)
    assert m, out
    assert m.group(1).startswith("dead")               # a poisoned (freed) node's link was followed
    assert f"flaky: seed {DEMO_SEED}\n" in out


def test_a_surviving_seed_completes_and_halts():
    status, out = run(f"seed={SURVIVOR}")
    assert status == 0
    assert f"flaky: seed {SURVIVOR} survived 1000 iterations (1000 requests," in out
    assert "BUG" not in out


def test_the_fix_removes_the_crash():
    status, out = run(f"seed={DEMO_SEED} fixed")
    assert status == 0 and "survived 1000 iterations" in out and "BUG" not in out


def test_whether_and_when_it_crashes_depends_on_the_seed():
    crashes = {}
    survivors = []
    for seed in range(2, 12):
        status, out = run(f"seed={seed}")
        if status == 3:
            crashes[seed] = int(re.search(r"after (\d+) requests", out).group(1))
        else:
            assert status == 0 and "survived" in out
            survivors.append(seed)
    assert crashes and survivors
    assert len(set(crashes.values())) > 1               # different seeds crash at different points
