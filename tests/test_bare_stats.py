"""`tvmm run --headless --bare` and `--stats` through the command line.

``--bare`` runs one guest straight on the modelled PC, without the monitor:
a user who suspects the monitor can check its promise on their own kernel.
Every sample must give the same console bytes, screen, instruction count
and exit status both ways.  ``--stats`` prints, per guest at exit, what the
monitor did for it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.monitor.kit import tiny_kernel

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "samples" / "build"
HELLO = BUILD / "hello.elf"

# sample -> (guest spec, extra options, expected exit status)
SAMPLES = {
    "hello": (f"kernel={HELLO}", [], 0),
    "paging": (f"kernel={BUILD / 'paging.elf'}", [], 0),
    "multitask": (f"kernel={BUILD / 'multitask.elf'}", [], 0),
    # runs forever: a budget ends it, the same way both ways
    "multitask-forever": (f"kernel={BUILD / 'multitask.elf'},cmdline=forever", ["--max-insns", "5000000"], 1),
    "disk": (f"kernel={BUILD / 'disk.elf'},disk0={BUILD / 'disk.img'}", [], 0),
    "flaky-crash": (f"kernel={BUILD / 'flaky.elf'},cmdline=seed=5", [], 3),         # debug-exit 1 after an oops
    "flaky-survives": (f"kernel={BUILD / 'flaky.elf'},cmdline=seed=1", [], 0),
}


def tvmm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", *args], capture_output=True,
                          cwd=ROOT, timeout=300)


def stats(stderr: bytes) -> dict[str, dict[str, str]]:
    """{guest: {"state": ..., "instructions": ..., "exits": ..., ...}} from --stats output."""
    out: dict[str, dict[str, str]] = {}
    cur = None
    for line in stderr.decode().splitlines():
        m = re.fullmatch(r"stats: guest (\S+) \((.*)\)", line)
        if m:
            cur = out[m.group(1)] = {"state": m.group(2)}
        elif cur is not None and line.startswith("  "):
            key, _, value = line.strip().partition(": ")
            cur[key] = value
    return out


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_bare_agrees_with_the_monitor_on_every_sample(sample):
    spec, extra, status = SAMPLES[sample]
    args = ["--max-insns", "40000000", "--screen", "--stats", *extra, "--guest", spec]
    virtual, bare = tvmm(*args), tvmm("--bare", *args)
    assert virtual.returncode == bare.returncode == status, (virtual.stderr, bare.stderr)
    assert virtual.stdout == bare.stdout                       # console bytes, then the screen
    assert len(virtual.stdout) > 100
    v, b = stats(virtual.stderr)["guest0"], stats(bare.stderr)["guest0"]
    assert v["instructions"] == b["instructions"]              # the same instruction count, too
    assert b["state"] == v["state"] + ", bare"
    assert int(v["exits"].split()[0]) > 0 and b["exits"].startswith("none")
    # whatever else went to stderr (a budget's reason) is the same
    strip = lambda err: [line for line in err.decode().splitlines() if not line.startswith(("stats:", "  "))]
    assert strip(virtual.stderr) == strip(bare.stderr)


def test_a_scripted_bare_run_matches_the_monitored_one():
    args = ["--guest", f"kernel={BUILD / 'multitask.elf'},cmdline=forever", "--max-insns", "20000000",
            "--expect", "A10 ", "--send", "hello\\n", "--expect", "D12 "]
    virtual, bare = tvmm(*args), tvmm("--bare", *args)
    assert virtual.returncode == bare.returncode == 0, (virtual.stderr, bare.stderr)
    assert virtual.stdout == bare.stdout and b"D12 " in virtual.stdout
    failed = tvmm("--bare", "--expect", "login: ", str(HELLO))
    assert failed.returncode == 1 and failed.stderr.count(b"\n") == 1 and b"'login: '" in failed.stderr


def test_bare_exit_statuses_follow_the_contract(tmp_path):
    crash = tmp_path / "crash.bin"
    crash.write_bytes(tiny_kernel(b"\x0f\x0b"))               # ud2 with no IDT: triple fault
    virtual, bare = tvmm(str(crash)), tvmm("--bare", str(crash))
    assert virtual.returncode == bare.returncode == 1
    assert virtual.stderr == bare.stderr and b"triple fault" in bare.stderr and bare.stderr.count(b"\n") == 1
    budget = tvmm("--bare", "--max-insns", "1000", str(HELLO))
    assert budget.returncode == 1 and budget.stderr == b"tvmm run: instruction budget of 1000 used up\n"


@pytest.mark.parametrize("args, message", [
    (["--bare", "--guest", f"name=a,kernel={HELLO}", "--guest", f"name=b,kernel={HELLO}"],
     "--bare runs one guest (2 given)"),
    (["--bare", "--gdb", "1234", str(HELLO)], "--bare cannot be combined with --gdb (the gdb stub needs the monitor)"),
    (["--bare", "--record", "x.jsonl", str(HELLO)],
     "--bare cannot be combined with --record (recording needs the monitor)"),
    (["--bare", "--guest", "boot=rom,rom=bios.bin"],
     "--bare cannot boot a firmware ROM (boot=rom needs the monitor's guest memory)"),
])
def test_bare_usage_errors_are_one_line_exit_2(args, message, tmp_path):
    r = subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", *args], capture_output=True, text=True,
                       cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and r.stderr == f"tvmm run: {message}\n"


@pytest.mark.parametrize("flag", ["--bare", "--stats"])
def test_bare_and_stats_need_headless(flag):
    from tvmm.cli import main
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(["run", flag, str(HELLO)])
    assert status == 2 and err.getvalue() == f"tvmm run: {flag} needs --headless\n"


def test_stats_per_guest_at_exit():
    r = tvmm("--stats", "--guest", f"name=paging,kernel={BUILD / 'paging.elf'}",
             "--guest", f"name=hello,kernel={HELLO}")
    assert r.returncode == 0
    text = r.stderr.decode()
    assert text.startswith("stats: guest paging (halted)\n")
    s = stats(r.stderr)
    assert list(s) == ["paging", "hello"]
    for name, g in s.items():
        insns = int(re.fullmatch(r"(\d+) \(virtual time (\d+)\)", g["instructions"]).group(1))
        m = re.fullmatch(r"(\d+) \((.*)\)", g["exits"])
        total = int(m.group(1))
        kinds = dict((k, int(n)) for k, n in (part.rsplit(" ", 1) for part in m.group(2).split(", ")))
        assert sum(kinds.values()) == total and kinds["io"] > 0 and kinds["hlt"] == 1
        hidden, true = map(int, re.fullmatch(r"(\d+) hidden, (\d+) true \(reflected to the guest\)",
                                             g["page faults"]).groups())
        assert hidden == kinds.get("pf-hidden", 0) > 0 and true == kinds.get("pf-reflected", 0)
        assert re.fullmatch(r"\d+ \(monitor pool: \d+ of 2048\)", g["shadow pages in use"])
        share, per = re.fullmatch(r"(\d+\.\d\d)% of instructions \((\d+\.\d) instructions per exit\)",
                                  g["without an exit"]).groups()
        assert abs(float(share) - (insns - total) / insns * 100) < 0.01
        assert abs(float(per) - insns / total) < 0.06
    # the paging sample's own page faults reach it; hello never faults for itself
    paging_faults = s["paging"]["page faults"]
    assert not paging_faults.endswith(" 0 true (reflected to the guest)")
    assert s["hello"]["page faults"].endswith(" 0 true (reflected to the guest)")
    assert int(s["paging"]["shadow pages in use"].split()[0]) > int(s["hello"]["shadow pages in use"].split()[0])


def test_stats_agree_with_the_monitor_in_process(capfd):
    """The figures are the monitor's own: its event counters and shadow pool."""
    from tvmm.guestspec import GuestSpec
    from tvmm.headless import _print_stats
    from tvmm.monitor.vmm import Monitor
    spec = GuestSpec(name="p", kernel=str(BUILD / "paging.elf"), mem=32 << 20)
    monitor = Monitor.with_guests([spec])
    while not monitor.all_stopped:
        monitor.run(1_000_000)
    g = monitor.guests[0]
    _print_stats(monitor)
    s = stats(capfd.readouterr().err.encode())["p"]
    assert s["instructions"] == f"{g.icount} (virtual time {g.now()})"
    assert s["page faults"].startswith(f"{monitor.log.count('p', 'pf-hidden')} hidden, "
                                       f"{monitor.log.count('p', 'pf-reflected')} true")
    assert s["shadow pages in use"].startswith(f"{g.shadow.table_count} ")
