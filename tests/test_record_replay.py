"""Recorded sessions replay exactly: the stored sessions under
tests/sessions, a divergence reported where it happens, and recording that
never changes what a guest does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
# the stored sessions are replayed as test items by tvmm's pytest plugin
# (every *.tvmm.jsonl under the test paths); these tests check them further
SESSIONS = sorted((ROOT / "tests" / "sessions").glob("*.tvmm.jsonl"))


def tvmm(*args):
    return subprocess.run([sys.executable, "-m", "tvmm", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_there_is_a_session_for_every_sample_console_input_and_the_crash():
    names = {p.name.split(".")[0] for p in SESSIONS}
    assert {"hello", "paging", "multitask", "disk", "flaky-crash", "console"} <= names
    assert any(r["t"] == "input" for r in records(ROOT / "tests/sessions/console.tvmm.jsonl"))


def test_a_stored_session_replays_through_the_cli():
    r = tvmm("replay", "tests/sessions/two-guests.tvmm.jsonl")
    assert r.returncode == 0, r.stderr
    assert "matches" in r.stderr and r.stderr.count("\n") == 1


def test_the_flaky_crash_happens_at_the_recorded_count_with_the_recorded_fault():
    from tvmm.monitor.record import load, replay, specs_of
    from tvmm.monitor.vmm import Monitor
    path = ROOT / "tests/sessions/flaky-crash.tvmm.jsonl"
    head, recs = load(str(path))
    end = next(r for r in recs if r["t"] == "end")
    out = "".join(r["out"] for r in recs if r["t"] == "digest")
    assert end["state"] == "exited" and end["reason"] == "debug-exit status 3"
    assert "BUG: unable to handle page fault at 0xdead0204, error 0x00000002" in out
    import os
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        specs = specs_of(head)
        monitor = Monitor(Monitor.host_size_for(specs))
        g = monitor.add_guest(specs[0])
        replay(monitor, recs)
    finally:
        os.chdir(cwd)
    assert g.state == "exited" and g.now() == end["time"]        # the same instruction count
    assert "BUG: unable to handle page fault at 0xdead0204" in g.console.decode()


def _altered(tmp_path, name, change):
    recs = records(ROOT / "tests/sessions" / f"{name}.tvmm.jsonl")
    change(recs)
    path = tmp_path / f"{name}.tvmm.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path, recs


def test_altered_console_input_is_reported_where_the_output_differs(tmp_path):
    def change(recs):
        next(r for r in recs if r["t"] == "input")["data"] = "hello tvmx\n"
    path, recs = _altered(tmp_path, "console", change)
    first_after = next(r for r in recs if r["t"] == "digest" and r["time"] > recs[2]["time"])
    r = tvmm("replay", str(path))
    assert r.returncode == 1
    assert f"guest echo diverged at instruction count {first_after['time']}: console output differs" in r.stderr


def test_an_altered_memory_digest_is_reported_at_its_time(tmp_path):
    def change(recs):
        digests = [r for r in recs if r["t"] == "digest"]
        digests[3]["mem"] = "0" * 32
    path, recs = _altered(tmp_path, "multitask", change)
    fourth = [r for r in recs if r["t"] == "digest"][3]
    r = tvmm("replay", str(path))
    assert r.returncode == 1
    assert r.stderr.strip() == (f"tvmm replay: guest multitask diverged at instruction count {fourth['time']}: "
                                "memory differs")


def test_recording_never_changes_what_a_guest_does(tmp_path):
    args = ["run", "--headless", "--guest", "kernel=samples/build/flaky.elf,cmdline=seed=5,mem=16M",
            "--guest", "name=m,kernel=samples/build/multitask.elf,mem=16M"]
    plain = tvmm(*args)
    recorded = tvmm(*args, "--record", str(tmp_path / "s.jsonl"), "--record-every", "50000")
    assert (recorded.returncode, recorded.stdout) == (plain.returncode, plain.stdout)
    assert sum(1 for r in records(tmp_path / "s.jsonl") if r["t"] == "digest") > 20


def test_bad_session_files_are_one_line_errors(tmp_path):
    notjson = tmp_path / "x.jsonl"
    notjson.write_text("hello\nworld\n")
    changed = tmp_path / "changed.jsonl"
    recs = records(ROOT / "tests/sessions/hello.tvmm.jsonl")
    recs[0]["guests"][0]["files"]["kernel"] = "0" * 64
    changed.write_text("".join(json.dumps(r) + "\n" for r in recs))
    for path, words in [(tmp_path / "none.jsonl", "no such session file"), (notjson, "not a JSON line"),
                        (changed, "is not the file recorded")]:
        r = tvmm("replay", str(path))
        assert r.returncode == 2 and words in r.stderr and r.stderr.count("\n") == 1, r.stderr
