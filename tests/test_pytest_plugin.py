"""The pytest plugin from a user's side: a throwaway project (a kernel from
samples/, a conftest.py, a test file and a recorded session) run with
pytest in a subprocess — the plugin comes from tvmm's entry point alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CONFTEST = '''
import pytest

@pytest.fixture
def tvmm_spec():
    return "kernel=kernels/hello.elf,mem=16M"
'''

TESTS = '''
import pytest
import tvmm

def test_hello_greets(tvmm_guest):
    tvmm_guest.expect("Hello from the hello sample kernel!")
    assert tvmm_guest.run(until="halt") == "halted"

@pytest.mark.parametrize("tvmm_guest", ["kernel=kernels/flaky.elf,cmdline=seed=5"], indirect=True)
def test_seed_5_oopses(tvmm_guest):
    tvmm_guest.expect("BUG: unable to handle page fault")
    assert tvmm_guest.run(until="exit") == "exited" and tvmm_guest.exit_status == 3

def test_a_broken_expectation(tvmm_guest):
    tvmm_guest.expect("memory: 16 MiB")
    tvmm_guest.expect("goodbye")          # the kernel says "bye"

def test_record_a_session(tmp_path):
    g = tvmm.boot(kernel="kernels/hello.elf", cmdline="echo", mem="16M", record="sessions/echo.tvmm.jsonl")
    g.expect("type a line: ")
    g.send("hi\\n")
    g.run(until="end")
    g.machine.close()
'''


def pytest_run(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
                          capture_output=True, text=True, cwd=project, timeout=300)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A user's project; its first run records sessions/echo.tvmm.jsonl."""
    p = tmp_path_factory.mktemp("userproject")
    (p / "kernels").mkdir()
    (p / "sessions").mkdir()
    for name in ("hello", "flaky"):
        shutil.copy(ROOT / f"samples/build/{name}.elf", p / "kernels" / f"{name}.elf")
    (p / "conftest.py").write_text(CONFTEST)
    (p / "test_kernel.py").write_text(TESTS)
    r = pytest_run(p, "test_kernel.py::test_record_a_session")
    assert r.returncode == 0, r.stdout + r.stderr
    return p


def test_passing_tests_pass_and_a_broken_expectation_fails_readably(project):
    r = pytest_run(project, "test_kernel.py", "-k", "not record")
    out = r.stdout
    assert r.returncode == 1, out
    assert "2 passed" in out and "1 failed" in out
    assert "ExpectTimeout" in out or "GuestEnded" in out
    assert "halted (halted with interrupts disabled (nothing can wake it)) at instruction count 4577 " \
           "before 'goodbye' on the console" in out
    assert "  | bye" in out
    # the session up to the failure, and how to open it
    assert "tvmm session" in out and "open it with: tvmm replay --ui " in out
    path = out.split("open it with: tvmm replay --ui ")[1].split()[0]
    assert path.endswith("session.tvmm.jsonl") and Path(path).is_file()
    replayed = subprocess.run([sys.executable, "-m", "tvmm", "replay", path], capture_output=True, text=True,
                              timeout=120)
    assert replayed.returncode == 0 and "matches" in replayed.stderr


def test_a_recorded_session_is_a_test_and_a_tampered_one_fails_at_its_count(project):
    r = pytest_run(project, "sessions")
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout
    recs = [json.loads(line) for line in (project / "sessions/echo.tvmm.jsonl").read_text().splitlines()]
    inp = next(x for x in recs if x["t"] == "input")
    inp["data"] = "ho\n"
    after = next(x for x in recs if x["t"] == "digest" and x["time"] > inp["time"])
    bad = project / "tampered"
    bad.mkdir(exist_ok=True)
    (bad / "echo.tvmm.jsonl").write_text("".join(json.dumps(x) + "\n" for x in recs))
    (bad / "garbage.tvmm.jsonl").write_text("this is not a session\n{\n")
    r = pytest_run(project, "tampered", "sessions")
    out = r.stdout
    assert r.returncode == 1 and "2 failed, 1 passed" in out, out
    assert "tvmm session echo.tvmm.jsonl diverged" in out
    assert f"  instruction count: {after['time']}" in out
    assert "  what differs: console output differs" in out
    assert "-you typed: HI" in out and "+you typed: HO" in out
    assert "Traceback" not in out
    garbage = [line for line in out.splitlines() if "unreadable tvmm session" in line]
    assert len(garbage) >= 1 and "garbage.tvmm.jsonl" in garbage[0]


def test_sessions_from_a_directory_option_and_xdist(project):
    other = project.parent / (project.name + "-stored")
    other.mkdir(exist_ok=True)
    shutil.copy(project / "sessions/echo.tvmm.jsonl", other / "one.jsonl")
    r = pytest_run(project, "-n", "2", "--tvmm-sessions", str(other), "test_kernel.py", "sessions",
                   "-k", "not record")
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    assert "4 passed" in out and "1 failed" in out          # 2 tests + 2 sessions pass; the broken one fails
    assert "open it with: tvmm replay --ui " in out


def test_the_readme_example_passes_as_written(tmp_path):
    text = (ROOT / "README.md").read_text()
    section = text.split("## Testing your kernel with pytest", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    assert len(blocks) == 2
    (tmp_path / "kernels").mkdir()
    shutil.copy(ROOT / "samples/build/hello.elf", tmp_path / "kernels" / "hello.elf")
    (tmp_path / "conftest.py").write_text(blocks[0])
    (tmp_path / "test_kernel.py").write_text(blocks[1])
    r = pytest_run(tmp_path)
    assert r.returncode == 0 and "4 passed" in r.stdout, r.stdout + r.stderr
