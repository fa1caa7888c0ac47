"""``tvmm hunt``: seeds, conditions, worker processes, the session of the first failure.

flaky's crash depends on its cmdline (``seed=N``), not on the schedule, so
with flaky every hunted seed fails or none does: that is enough to check
the machinery.  The SMP race sample, where the schedule matters, is tested
when it exists and the machine boots its second processor.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tvmm import hunt
from tvmm.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
FLAKY = ROOT / "samples" / "build" / "flaky.elf"
SMPRACE = ROOT / "samples" / "build" / "smprace.elf"
CRASHES = f"name=flaky,kernel={FLAKY},cmdline=seed=5"       # oops, then debug-exit status 3
SURVIVES = f"name=flaky,kernel={FLAKY},cmdline=seed=1"      # 1000 iterations, then halts for good (status 0)


def hunt_cli(capsys, *argv) -> tuple[int, list[str], str]:
    rc = cli_main(["hunt", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err


def tvmm(*argv, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tvmm", *map(str, argv)], capture_output=True, text=True, check=False,
                          cwd=cwd, timeout=120)


def sessions(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tvmm.jsonl"))


# -- seeds and conditions --------------------------------------------------------------------------
@pytest.mark.parametrize("text, seeds", [
    ("1-5", [1, 2, 3, 4, 5]),
    ("7", [7]),
    ("1-3,10,20-21", [1, 2, 3, 10, 20, 21]),
    (" 4 , 2-3 ,3", [2, 3, 4]),
    ("0-0", [0]),
    (f"{2**64 - 1}", [2**64 - 1]),
])
def test_seed_lists(text, seeds):
    assert hunt.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "5-1", "1-", "-3", "1,,2", "1.5", "1-2-3", "0x10", str(2**64),
                                  "1-2000000"])
def test_bad_seed_lists(text):
    with pytest.raises(hunt.UsageError):
        hunt.parse_seeds(text)


def test_conditions():
    assert hunt.parse_until("crash") == hunt.Condition("crash")
    assert hunt.parse_until("exit!=0") == hunt.Condition("exit!=0")
    assert hunt.parse_until("text:PANIC") == hunt.Condition("text", b"PANIC")
    assert hunt.parse_until(r"text:a\nb") == hunt.Condition("text", b"a\nb")
    assert hunt.parse_until("text:x:y") == hunt.Condition("text", b"x:y")
    for bad in ("text:", "exit==0", "Crash", "panic", ""):
        with pytest.raises(hunt.UsageError):
            hunt.parse_until(bad)


# -- usage errors: one line on stderr, status 2, nothing run or written ---------------------------
@pytest.mark.parametrize("argv, says", [
    (["--guest", CRASHES, "--seeds", "9-1"], "9-1"),
    (["--guest", CRASHES, "--seeds", "one"], "--seeds"),
    (["--guest", CRASHES, "--seeds", "1-3", "--until", "panic"], "--until"),
    (["--guest", CRASHES, "--seeds", "1-3", "--until", "text:"], "text"),
    (["--guest", "kernel=samples/build/no-such.elf", "--seeds", "1-3"], "no such kernel file"),
    (["--guest", f"kernel={ROOT / 'README.md'}", "--seeds", "1-3"], "Multiboot"),
    (["--guest", f"kernel={FLAKY},colour=blue", "--seeds", "1-3"], "unknown guest option"),
    (["--guest", f"kernel={FLAKY},cpus=99", "--seeds", "1-3"], "cpus"),
    (["--guest", CRASHES, "--seeds", "1-3", "--jobs", "0"], "--jobs"),
    (["--guest", CRASHES, "--seeds", "1-3", "--max-insns", "0"], "--max-insns"),
    (["--guest", CRASHES, "--seeds", "1-3", "--out", "no/such/dir"], "no/such/dir"),
    (["--guest", CRASHES], "--seeds"),
    (["--seeds", "1-3"], "--guest"),
    (["--guest", CRASHES, "--seeds", "1-3", "--frobnicate"], "--frobnicate"),
])
def test_usage_errors(capsys, tmp_path, monkeypatch, argv, says):
    monkeypatch.chdir(tmp_path)
    rc, out, err = hunt_cli(capsys, *argv)
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("tvmm hunt: ") and says in err, err
    assert out == [] and sessions(tmp_path) == []


def test_help_and_usage_line():
    r = tvmm("hunt", "--help")
    assert r.returncode == 0 and "--seeds" in r.stdout and "--until" in r.stdout and "--max-insns" in r.stdout
    r = tvmm("--help")
    assert "hunt" in r.stdout


# -- hunting flaky -------------------------------------------------------------------------------
def test_every_seed_fails_and_the_lowest_is_recorded(tmp_path):
    r = tvmm("hunt", "--guest", CRASHES, "--seeds", "4-6,2", "--until", "exit!=0", "--jobs", "2",
             "--out", tmp_path)
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    found = sorted(lines[:4])
    assert found == [f"seed {n}: exited with debug-exit status 3 (163K insns)" for n in (2, 4, 5, 6)], lines
    assert lines[4] == "4 of 4 seeds failed: 2, 4, 5, 6"
    path = tmp_path / "hunt-flaky-seed2.tvmm.jsonl"
    assert lines[5] == f"session: {path} (tvmm replay --ui {path}, tvmm replay --gdb PORT {path})"
    assert len(lines) == 6 and sessions(tmp_path) == [path.name]
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["guests"][0]["spec"]["sched"] == "random:2"
    assert records[-1]["t"] == "end" and records[-1]["state"] == "exited"
    r = tvmm("replay", path, cwd=ROOT / "tests")          # paths in the session are absolute
    assert r.returncode == 0, r.stderr
    assert "matches" in r.stderr


def test_jobs_1_and_jobs_2_find_the_same_seeds(capsys, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    rc1, out1, _ = hunt_cli(capsys, "--guest", CRASHES, "--seeds", "1-3", "--until", "exit!=0", "--jobs", 1,
                            "--out", one)
    rc2, out2, _ = hunt_cli(capsys, "--guest", CRASHES, "--seeds", "1-3", "--until", "exit!=0", "--jobs", 2,
                            "--out", two)
    assert rc1 == rc2 == 1
    assert out1[:3] == [f"seed {n}: exited with debug-exit status 3 (163K insns)" for n in (1, 2, 3)]
    assert sorted(out2[:3]) == out1[:3] and out2[3] == out1[3] == "3 of 3 seeds failed: 1, 2, 3"
    assert sessions(one) == sessions(two) == ["hunt-flaky-seed1.tvmm.jsonl"]
    a = (one / "hunt-flaky-seed1.tvmm.jsonl").read_text().splitlines()
    b = (two / "hunt-flaky-seed1.tvmm.jsonl").read_text().splitlines()
    assert a == b                                           # the same run, whichever process found it


def test_text_condition_stops_at_the_text_and_the_session_replays(capsys, tmp_path):
    rc, out, err = hunt_cli(capsys, "--guest", CRASHES, "--seeds", "3", "--until", "text:BUG:", "--jobs", 1,
                            "--out", tmp_path)
    assert rc == 1, err
    assert out[0].startswith("seed 3: printed 'BUG:' in 'BUG: unable to handle page fault at 0xdead0204")
    assert out[1] == "1 of 1 seeds failed: 3"
    path = tmp_path / "hunt-flaky-seed3.tvmm.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert not any(r["t"] == "end" for r in records)        # stopped while it ran, before it exited
    assert "BUG:" in "".join(r.get("out", "") for r in records)
    last = records[-1]["time"]
    assert last % hunt.TEXT_SLICE == 0 and last < 163_242    # at the end of the slice it printed in, before the exit
    r = tvmm("replay", path)
    assert r.returncode == 0, r.stderr


def test_no_seed_fails(capsys, tmp_path):
    for until in ("crash", "exit!=0", "text:BUG"):
        rc, out, err = hunt_cli(capsys, "--guest", SURVIVES, "--seeds", "1-2,5", "--until", until, "--jobs", 1,
                                "--out", tmp_path)
        assert (rc, out) == (0, ["no seed in 1-2,5 failed"]), err
    rc, out, err = hunt_cli(capsys, "--guest", CRASHES, "--seeds", "1-2", "--jobs", 2, "--out", tmp_path)
    assert (rc, out) == (0, ["no seed in 1-2 failed"]), err    # exiting with status 3 is not a crash
    assert sessions(tmp_path) == []


def test_exit_condition_is_tvmm_runs_exit_status(capsys, tmp_path):
    # halting for good is tvmm run's status 0: a pass (debug-exit cannot write 0)
    rc, out, _ = hunt_cli(capsys, "--guest", SURVIVES, "--seeds", "8", "--until", "exit!=0", "--jobs", 1,
                          "--out", tmp_path)
    assert (rc, out) == (0, ["no seed in 8 failed"])
    # running out of --max-insns without ending is a failure, which says so
    rc, out, _ = hunt_cli(capsys, "--guest", SURVIVES, "--seeds", "8", "--until", "exit!=0", "--jobs", 1,
                          "--max-insns", 50_000, "--out", tmp_path)
    assert rc == 1
    assert out[0] == "seed 8: still running when --max-insns 50000 ran out (it did not exit) (50K insns)"
    r = tvmm("replay", tmp_path / "hunt-flaky-seed8.tvmm.jsonl")
    assert r.returncode == 0, r.stderr
    # the budget is a pass for the other conditions
    rc, out, _ = hunt_cli(capsys, "--guest", CRASHES, "--seeds", "8", "--until", "text:BUG", "--jobs", 1,
                          "--max-insns", 50_000, "--out", tmp_path)
    assert (rc, out) == (0, ["no seed in 8 failed"])


def _triple_fault_image(tmp_path) -> Path:
    """A boot sector that counts down from 5000, loads an empty IVT and
    executes INT3: #GP, #GP, #DF, triple fault at guest time 5003."""
    code = bytes([0xFA, 0xB9, 0x88, 0x13, 0xE2, 0xFE,      # cli; mov cx, 5000; loop $
                  0x0F, 0x01, 0x1E, 0x20, 0x7C, 0xCC])     # lidt [0x7c20] (zeros); int3
    sector = bytearray(512)
    sector[:len(code)] = code
    sector[510:] = b"\x55\xaa"
    img = tmp_path / "tf.img"
    img.write_bytes(bytes(sector))
    return img


def _hunt_a_crash(capsys, tmp_path) -> Path:
    img = _triple_fault_image(tmp_path)
    rc, out, err = hunt_cli(capsys, "--guest", f"name=tf,boot=disk,disk0={img}", "--seeds", "10-11",
                            "--jobs", 1, "--out", tmp_path)
    assert rc == 1, err
    assert out[0] == "seed 10: crashed: shutdown: triple fault: #GP general protection -> #GP general " \
                     "protection -> #DF double fault -> #GP general protection (5003 insns)"
    assert out[1].startswith("seed 11: crashed: shutdown: triple fault")
    assert out[2] == "2 of 2 seeds failed: 10, 11"
    path = tmp_path / "hunt-tf-seed10.tvmm.jsonl"
    assert out[3].startswith(f"session: {path} ")
    return path


def test_a_crash(capsys, tmp_path):
    path = _hunt_a_crash(capsys, tmp_path)
    end = json.loads(path.read_text().splitlines()[-1])
    assert (end["t"], end["state"], end["time"]) == ("end", "crashed", 5003)


def test_a_crash_session_replays(capsys, tmp_path):
    path = _hunt_a_crash(capsys, tmp_path)
    r = tvmm("replay", path)
    assert r.returncode == 0, r.stderr


def test_the_session_goes_to_the_current_directory_by_default(tmp_path):
    r = tvmm("hunt", "--guest", CRASHES, "--seeds", "2", "--until", "exit!=0", "--jobs", "1", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert r.stdout.splitlines()[-1].startswith("session: hunt-flaky-seed2.tvmm.jsonl (tvmm replay --ui ")
    assert sessions(tmp_path) == ["hunt-flaky-seed2.tvmm.jsonl"]
    r = tvmm("replay", "hunt-flaky-seed2.tvmm.jsonl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


# -- the SMP race sample ---------------------------------------------------------------------------
# smprace crashes (a PANIC line, then a triple fault) for the seeds whose
# schedule preempts a processor inside pool_get_fast's unlocked window, and
# halts every CPU (status 0) otherwise; `fixed` takes the lock there.
SMP = f"name=smprace,kernel={SMPRACE},cpus=2"
def _boots_an_ap() -> bool:
    """smprace exists and a cpus=2 guest has a second processor that runs."""
    if not SMPRACE.is_file():
        return False
    try:
        from tvmm.guestspec import parse_guest
        from tvmm.monitor.vmm import Monitor
        monitor = Monitor.with_guests([parse_guest(f"{SMP},cmdline=iters=1")])
        g = monitor.guests[0]
        cpus = getattr(g.pc, "cpus", None)
        if not cpus or len(cpus) < 2:
            return False
        while g.runnable and g.now() < 1_000_000 and not cpus[1].icount:      # about 60K under tvmm
            monitor.run(20_000)
        return cpus[1].icount > 0
    except Exception:  # noqa: BLE001
        return False


needs_smp = pytest.mark.skipif(not _boots_an_ap(),
                               reason="needs samples/build/smprace.elf and a machine that boots a second processor")


@pytest.fixture(scope="module")
def smp_hunt(tmp_path_factory):
    out = tmp_path_factory.mktemp("smprace")
    r = tvmm("hunt", "--guest", f"{SMP},cmdline=iters=50", "--seeds", "1-100", "--jobs", "2", "--out", out)
    return r, out


@needs_smp
def test_smprace_hunt_finds_failing_seeds(smp_hunt):
    r, out = smp_hunt
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    failed = [line for line in lines if line.startswith("seed ")]
    assert failed and all(": crashed: shutdown: triple fault" in line for line in failed), lines
    seeds = sorted(int(line.split()[1].rstrip(":")) for line in failed)
    assert lines[-2] == f"{len(seeds)} of 100 seeds failed: {', '.join(map(str, seeds))}"
    path = out / f"hunt-smprace-seed{seeds[0]}.tvmm.jsonl"
    assert lines[-1].startswith(f"session: {path} ") and sessions(out) == [path.name]
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["guests"][0]["spec"]["sched"] == f"random:{seeds[0]}"
    assert records[0]["guests"][0]["spec"]["cpus"] == 2
    assert records[-1]["t"] == "end" and records[-1]["state"] == "crashed"
    assert "PANIC: " in "".join(rec.get("out", "") for rec in records)


@needs_smp
def test_smprace_session_replays(smp_hunt):
    r, out = smp_hunt
    [name] = sessions(out)
    r = tvmm("replay", out / name)
    assert r.returncode == 0, r.stderr


@needs_smp
def test_smprace_fixed_never_fails(tmp_path):
    r = tvmm("hunt", "--guest", f"{SMP},cmdline='fixed iters=20'", "--seeds", "1-200", "--jobs", "2",
             "--until", "exit!=0", "--out", tmp_path)
    assert (r.returncode, r.stdout) == (0, "no seed in 1-200 failed\n"), r.stdout + r.stderr
    assert sessions(tmp_path) == []
