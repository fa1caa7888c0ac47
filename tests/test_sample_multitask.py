"""The multitask sample end to end: local APIC timer preemption, PIT
jiffies, calibration of one against the other, interleaved progress."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ELF = ROOT / "samples" / "build" / "multitask.elf"
IPS = 100_000_000            # tvmm's default instructions per virtual second
PIT_HZ = 2000


def run():
    r = subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", "--max-insns", "20000000", str(ELF)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    return r.returncode, r.stdout.replace("\r", "")


def checksum(task: int) -> int:
    acc = task + 1
    for _ in range(12):
        for i in range(3000):
            acc = (acc * 31 + i * (task + 1)) & 0xFFFFFFFF
    return acc


def test_tasks_finish_with_the_right_checksums_and_output_is_reproducible():
    first, second = run(), run()
    assert first == second
    status, out = first
    assert status == 0
    for task in range(4):
        assert f"task {'ABCD'[task]}: 12 rounds, checksum 0x{checksum(task):08x}" in out


def test_progress_interleaves_because_tasks_are_preempted():
    _, out = run()
    tokens = re.findall(r"\b([ABCD])(\d+)\b", out.split("all tasks done")[0])
    order = [t for t, _ in tokens]
    assert len(order) == 48
    switches = sum(1 for a, b in zip(order, order[1:]) if a != b)
    assert switches > 20                     # not run-to-completion: A0..A11 B0..B11 would give 3
    assert order[:4] == ["A", "B", "C", "D"]


def test_apic_timer_calibrates_against_the_pit_and_counts_match_virtual_time():
    _, out = run()
    per_jiffy = int(re.search(r"local APIC timer runs (\d+) ticks per PIT tick \((\d+) MHz", out).group(1))
    assert abs(per_jiffy - IPS // PIT_HZ) < 200          # 100 MHz bus vs a 2 kHz PIT
    assert "(100 MHz bus clock)" in out
    m = re.search(r"preemptions (\d+), jiffies (\d+)", out)
    preemptions, jiffies = int(m.group(1)), int(m.group(2))
    # preemption every 2/5 of a jiffy: about 2.5 per jiffy once tasks run
    assert jiffies > 10 and 1.5 * (jiffies - 7) < preemptions < 3 * jiffies
    assert "local APIC id 0, version 0x00000014" in out
