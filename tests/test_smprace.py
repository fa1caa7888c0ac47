"""The smprace sample: a lock forgotten on one path of a free list shared by
all processors.  Whether it crashes depends only on where the vCPU schedule
(`sched=random:SEED`) preempts a processor; for a given seed the run is
exactly reproducible, with one processor or with the fix it never crashes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ELF = ROOT / "samples" / "build" / "smprace.elf"
ITERS = 200                     # ~160k guest instructions with two CPUs
OK_LINE = re.compile(r"^smprace: (\d+) cpus?: (\d+) nodes handed out \((\d+) on the fast path\), "
                     r"all 32 back in the pool, checksum (0x[0-9a-f]{8})$", re.M)


def run(cpus: int = 1, sched: str | None = None, cmdline: str = f"iters={ITERS}", bare: bool = False):
    spec = f"name=r,kernel={ELF},cpus={cpus},cmdline='{cmdline}'" + (f",sched={sched}" if sched else "")
    mode = ["--bare"] if bare else ["--stats"]
    r = subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", *mode, "--max-insns", "20000000",
                        "--guest", spec], capture_output=True, text=True, cwd=ROOT, timeout=120)
    return r.returncode, r.stdout.replace("\r", ""), r.stderr


def insns(stderr: str) -> int:
    return int(re.search(r"instructions: (\d+)", stderr).group(1))


def test_one_processor_never_races():
    status, out, err = run(cpus=1)
    assert status == 0, err
    assert "smprace: 1 processor (APIC id 0), 200 iterations each\n" in out
    m = OK_LINE.search(out)
    assert m and m.group(1) == "1" and m.group(2) == str(ITERS), out
    assert out.endswith("smprace: ok\n") and "PANIC" not in out and "cpu1" not in out


def test_the_fix_never_crashes_and_the_checksum_does_not_depend_on_the_schedule():
    checksums = set()
    for sched in ("rr", "random:1", "random:11", "random:21", "random:22"):   # 11, 21, 22 crash unfixed
        status, out, err = run(cpus=2, sched=sched, cmdline=f"iters={ITERS} fixed")
        assert status == 0, (sched, out, err)
        assert "fixed: pool_get_fast takes the lock" in out
        assert "cpu1: starting\n" in out
        m = OK_LINE.search(out)
        assert m and m.group(1) == "2" and m.group(2) == str(2 * ITERS), (sched, out)
        assert out.endswith("smprace: ok\n") and "PANIC" not in out
        checksums.add(m.group(4))
    assert len(checksums) == 1


def test_some_schedules_hit_the_window_and_crash_the_machine():
    crashed = survived = None
    for seed in range(1, 41):
        status, out, err = run(cpus=2, sched=f"random:{seed}")
        assert "cpu1: starting\n" in out, out
        if "PANIC" in out:
            assert status == 1 and "smprace: ok" not in out
            assert re.search(r"^PANIC: (node_claim|node_release|pool_get|pool_get_fast|pool_put|pool_check) "
                             r"on cpu[01]: ", out, re.M), out
            assert "triple fault" in err, err                  # the guest really crashed
            crashed = crashed or seed
        else:
            assert status == 0 and out.endswith("smprace: ok\n"), (seed, out, err)
            survived = survived or seed
        if crashed and survived:
            break
    assert crashed and survived, (crashed, survived)


def test_a_seed_replays_exactly():
    for seed in (11, 1):                                       # a crash and a clean run
        first, second = run(cpus=2, sched=f"random:{seed}"), run(cpus=2, sched=f"random:{seed}")
        assert first[:2] == second[:2]
        assert insns(first[2]) == insns(second[2])


def test_bare_and_monitored_runs_are_the_same_run():
    """The schedule lives in the machine: the bare PC and the monitor's
    guest interleave the processors identically, crash or not."""
    for seed in (11, 1):
        monitored, bare = run(cpus=2, sched=f"random:{seed}"), run(cpus=2, sched=f"random:{seed}", bare=True)
        assert monitored[:2] == bare[:2]
        assert "PANIC" in monitored[1] or "smprace: ok" in monitored[1]


def test_two_multiprocessor_guests_side_by_side_each_contained():
    """A crashing two-vCPU guest harms nothing of its two-vCPU sibling, whose
    run is the same as alone; events name their vCPU."""
    from tvmm.guestspec import parse_guest
    from tvmm.monitor.vmm import Monitor
    specs = [parse_guest(f"name=bad,kernel={ELF},cpus=2,sched=random:11,cmdline=iters={ITERS},mem=16M"),
             parse_guest(f"name=good,kernel={ELF},cpus=2,sched=random:1,cmdline=iters={ITERS},mem=16M")]
    m = Monitor.with_guests(specs)
    while not m.all_finished:
        m.run(1_000_000)
    bad, good = m.guests
    assert bad.state == "crashed" and "PANIC" in bad.console.decode()
    alone = run(cpus=2, sched="random:1")
    assert good.console.decode().replace("\r", "") == alone[1]
    assert {e.vcpu for e in m.log.recent(guest="bad", limit=4096)} == {0, 1}
