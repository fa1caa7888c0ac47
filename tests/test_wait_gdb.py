"""Holding one guest for its debugger: the guest key ``wait-gdb=yes`` (in
``--guest`` specs and ``[[guest]]`` tables) holds only that guest at its first
instruction while its siblings run; a bare ``--wait-gdb`` still holds every
guest.  Real gdb in batch mode, as a kernel developer runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.gdbstub.test_real_gdb import Tvmm, gdb, ticker
from tvmm.guestspec import SpecError, load_config, parse_guest

ROOT = Path(__file__).resolve().parents[1]
HELLO = ROOT / "samples" / "build" / "hello.elf"
needs_gdb = pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed")


def lines_of(tv: Tvmm, name: str, since: float = 0.0, until: float = float("inf")) -> list[str]:
    return [line for t, line in tv.lines if since <= t < until and line.startswith(f"{name}| ")]


@needs_gdb
def test_wait_gdb_yes_holds_only_that_guest_until_its_debugger_continues_it(tmp_path):
    tv = Tvmm("--guest", f"name=a,kernel={ticker(tmp_path, 'a')}", "--guest", f"name=b,kernel={HELLO},wait-gdb=yes",
              "--timeout", "60")
    try:
        time.sleep(1.5)
        attach = time.time()
        assert len(lines_of(tv, "a")) >= 2                # the sibling runs ...
        assert lines_of(tv, "b") == []                    # ... while b is held
        r = gdb(f"""
run("target remote 127.0.0.1:{tv.ports['b']}")
check(gdb.selected_frame().name() == "_start", "held at its first instruction")
info = run("monitor info")
check("paused waiting for gdb" in info and "instructions 0" in info, "held: " + info)
guests = run("monitor guests")
check("a: running" in guests, "a runs: " + guests)
print("CONTINUING_AT", time.time())
run("continue")                               # hello prints and halts for good
check("halted" in run("monitor info"), "b ran to its halt")
run("detach")
""", tmp_path, HELLO)
        assert "FAILURES []" in r.stdout, r.stdout + r.stderr
        deadline = time.monotonic() + 10
        while not any("bye" in line for line in lines_of(tv, "b")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "b| Hello from the hello sample kernel!" in lines_of(tv, "b")
        assert lines_of(tv, "b", until=attach) == []
        assert "b| bye" in lines_of(tv, "b")
    finally:
        tv.proc.kill()
        tv.finish()


@needs_gdb
def test_a_bare_wait_gdb_still_holds_every_guest(tmp_path):
    tv = Tvmm("--wait-gdb", "--guest", f"name=a,kernel={ticker(tmp_path, 'a')}", "--guest", f"name=b,kernel={HELLO}",
              "--timeout", "60")
    try:
        time.sleep(1.5)
        assert tv.lines == []                             # nobody ran: both wait for their debugger
        r = gdb(f"""
run("target remote 127.0.0.1:{tv.ports['b']}")
check(gdb.selected_frame().name() == "_start", "held at its first instruction")
guests = run("monitor guests")
check("a: paused 0 instructions" in guests, "a is held too: " + guests)
run("continue")
run("detach")
""", tmp_path, HELLO)
        assert "FAILURES []" in r.stdout, r.stdout + r.stderr
        time.sleep(0.5)
        assert "b| bye" in lines_of(tv, "b")
        assert lines_of(tv, "a") == []                     # a still waits for its own debugger
    finally:
        tv.proc.kill()
        tv.finish()


def test_the_held_guest_is_named_when_the_stubs_open(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "tvmm", "run", "--headless", "--gdb", "127.0.0.1:0",
                             "--timeout", "3", "--guest", f"name=a,kernel={HELLO}",
                             "--guest", f"name=b,kernel={HELLO},wait-gdb=yes"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    lines = err.splitlines()
    assert lines[0].startswith("tvmm: guest a: gdb on 127.0.0.1:") and "held" not in lines[0]
    assert lines[1].startswith("tvmm: guest b: gdb on 127.0.0.1:")
    assert lines[1].endswith("(held until its debugger continues it)")
    assert "a| bye" in out and "b| " not in out          # a ran to its end, b was held
    assert proc.returncode == 1 and lines[-1] == "tvmm run: timed out after 3 s"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def test_wait_gdb_yes_without_gdb_is_a_usage_error():
    r = run_cli("--guest", f"name=a,kernel={HELLO}", "--guest", f"name=b,kernel={HELLO},wait-gdb=yes")
    assert r.returncode == 2 and r.stderr == "tvmm run: guest b: wait-gdb=yes needs --gdb PORT\n"


def test_a_bad_wait_gdb_value_is_one_line_exit_2(tmp_path):
    r = run_cli("--gdb", "127.0.0.1:0", "--guest", f"name=b,kernel={HELLO},wait-gdb=maybe")
    assert r.returncode == 2
    assert r.stderr == "tvmm run: bad value 'maybe' for guest option 'wait-gdb' (use yes or no)\n"
    cfg = tmp_path / "guests.toml"
    cfg.write_text(f'[[guest]]\nname = "b"\nkernel = "{HELLO}"\nwait-gdb = 3\n')
    r = run_cli("--gdb", "127.0.0.1:0", "--config", str(cfg))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "guest 1: bad value '3' for guest option 'wait-gdb' (use yes or no)" in r.stderr


def test_the_key_in_guest_specs_and_toml_tables(tmp_path):
    assert parse_guest(f"kernel={HELLO},wait-gdb=yes").wait_gdb is True
    assert parse_guest(f"kernel={HELLO},wait-gdb=NO").wait_gdb is False
    assert parse_guest(f"kernel={HELLO}").wait_gdb is False
    with pytest.raises(SpecError, match="given twice"):
        parse_guest(f"kernel={HELLO},wait-gdb=yes,wait-gdb=no")
    cfg = tmp_path / "guests.toml"
    cfg.write_text(f'[[guest]]\nname = "a"\nkernel = "{HELLO}"\n'
                   f'[[guest]]\nname = "b"\nkernel = "{HELLO}"\nwait-gdb = true\n'
                   f'[[guest]]\nname = "c"\nkernel = "{HELLO}"\nwait-gdb = "yes"\n'
                   f'[[guest]]\nname = "d"\nkernel = "{HELLO}"\nwait-gdb = false\n')
    assert [s.wait_gdb for s in load_config(str(cfg))] == [False, True, True, False]


def test_a_toml_guest_with_wait_gdb_is_held(tmp_path):
    cfg = tmp_path / "guests.toml"
    cfg.write_text(f'[[guest]]\nname = "a"\nkernel = "{HELLO}"\n'
                   f'[[guest]]\nname = "b"\nkernel = "{HELLO}"\nwait-gdb = true\n')
    proc = subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", "--gdb", "127.0.0.1:0",
                           "--timeout", "2", "--config", str(cfg)], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert "a| bye" in proc.stdout and "b| " not in proc.stdout
    assert proc.returncode == 1 and "timed out after 2 s" in proc.stderr


@needs_gdb
def test_a_breakpoint_on_the_first_code_run_on_its_page_stops_the_first_continue(tmp_path):
    # hello's kmain is the first instruction run on its page (after _start's
    # jump): held at _start, `break kmain` then `continue` stops there
    tv = Tvmm("--wait-gdb", "--guest", f"name=h,kernel={HELLO}", "--timeout", "60")
    try:
        r = gdb(f"""
run("target remote 127.0.0.1:{tv.ports['h']}")
check(gdb.selected_frame().name() == "_start", "held at its first instruction")
run("break kmain")
out = run("continue")
check(gdb.selected_frame().name() == "kmain", "stopped in kmain: " + out)
info = run("monitor info")
check(info.split("instructions", 1)[1].split()[0] == "4", "after _start's four instructions: " + info)
run("delete")
run("continue")
run("detach")
""", tmp_path, HELLO)
        assert "FAILURES []" in r.stdout, r.stdout + r.stderr
    finally:
        tv.proc.kill()
        tv.finish()
