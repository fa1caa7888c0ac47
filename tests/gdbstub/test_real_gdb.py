"""Real gdb (batch mode) against tvmm's stubs: the whole debugging session
a kernel developer runs, and one guest halted while its sibling runs on."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLAKY = ROOT / "samples" / "build" / "flaky.elf"
pytestmark = pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed")


class Tvmm:
    """tvmm run --headless --gdb 127.0.0.1:0 …, with its console collected (and timestamped)."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, "-m", "tvmm", "run", "--headless", "--gdb", "127.0.0.1:0",
                                      *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.ports = {}
        deadline = time.monotonic() + 30
        while len(self.ports) < args.count("--guest") and time.monotonic() < deadline:
            line = self.proc.stderr.readline().decode()
            m = re.match(r"tvmm: guest (\S+): gdb on 127.0.0.1:(\d+)", line)
            if m:
                self.ports[m.group(1)] = int(m.group(2))
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.append((time.time(), raw.decode(errors="replace").rstrip("\r\n")))

    def finish(self, timeout=30):
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return self.proc.returncode


def gdb(script: str, tmp_path: Path, elf: Path | None = None) -> subprocess.CompletedProcess:
    path = tmp_path / "script.py"
    path.write_text("import gdb, time, threading\nfailures = []\n"
                    "def check(ok, what):\n    if not ok:\n        failures.append(what)\n"
                    "def run(cmd):\n    return gdb.execute(cmd, to_string=True)\n"
                    + script + "\nprint('FAILURES', failures)\ngdb.execute(f'exit {len(failures)}')\n")
    args = ["gdb", "-q", "-n", "-batch", "-ex", "set pagination off", "-ex", "set confirm off"]
    if elf is not None:
        args += ["-ex", f"file {elf}"]
    return subprocess.run(args + ["-x", str(path)], capture_output=True, text=True, timeout=120)


def test_a_debugging_session_on_the_flaky_kernel(tmp_path):
    session = tmp_path / "debugged.jsonl"
    tv = Tvmm("--wait-gdb", "--record", str(session), "--guest", f"name=flaky,kernel={FLAKY},cmdline=seed=5")
    port = tv.ports["flaky"]
    r = gdb(f"""
run("target remote 127.0.0.1:{port}")
check(gdb.selected_frame().name() == "_start", "held at the first instruction")
run("break list_push")
out = run("continue")
check(gdb.selected_frame().name() == "list_push", "stopped in list_push: " + out)
bt = run("bt")
check("list_push" in bt and "kmain" in bt, "backtrace: " + bt)
regs = run("info registers")
check("eip" in regs and "eflags" in regs and "cs" in regs, "info registers")
sysregs = run("info registers cr0 cr3 shadow_cr3")
check("shadow_cr3" in sysregs and "cr3" in sysregs, "system registers: " + sysregs)
check(int(gdb.parse_and_eval("submitted")) == 0, "read a variable")
run("set var submitted = 100")
check(int(gdb.parse_and_eval("submitted")) == 100, "write a variable")
pc = int(gdb.parse_and_eval("$pc"))
run("stepi")
check(int(gdb.parse_and_eval("$pc")) != pc, "stepi moves")
line = gdb.selected_frame().find_sal().line
run("next")
check(gdb.selected_frame().find_sal().line != line, "next moves to another line")
run("delete")
out = run("watch ticks")
check("Hardware watchpoint" in out, "a hardware watchpoint: " + out)
before = int(gdb.parse_and_eval("ticks"))
print("TICKS_BEFORE", before)
run("continue")                          # gdb prints Old value / New value itself
check(int(gdb.parse_and_eval("ticks")) == before + 1, "watchpoint stopped right after the write")
check(gdb.selected_frame().name() == "timer_interrupt", "the writer: " + gdb.selected_frame().name())
run("delete")
mon = run("monitor walk " + hex(int(gdb.parse_and_eval("&ticks"))))
check("PDE[0]" in mon and "guest-physical" in mon, "monitor walk: " + mon)
check("instructions" in run("monitor info"), "monitor info")
out = run("x/1xw &ticks")
check(f"{{before + 1:#010x}}" in out, "memory read: " + out)
run("detach")
""", tmp_path, FLAKY)
    assert "FAILURES []" in r.stdout, r.stdout + r.stderr
    assert r.returncode == 0
    before = int(re.search(r"TICKS_BEFORE (\d+)", r.stdout).group(1))
    assert f"Old value = {before}\nNew value = {before + 1}" in r.stdout
    status = tv.finish()
    text = "\n".join(line for _, line in tv.lines)
    # detached: the guest ran on to its crash — 104 requests as without a
    # debugger, plus the 100 the debugger wrote into `submitted`
    assert status == 3 and "BUG: unable to handle page fault" in text and "after 204 requests" in text
    # the session recorded the debugger's write; replaying it reproduces the run without gdb
    assert '"kind":"mem"' in session.read_text()
    r = subprocess.run([sys.executable, "-m", "tvmm", "replay", "--console", str(session)], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "after 204 requests" in r.stdout


def ticker(tmp_path: Path, name: str) -> Path:
    """A kernel that prints "t" lines forever."""
    from tests.monitor.kit import tiny_kernel
    code = (b"\xba\xf8\x03\x00\x00"            # mov edx, 0x3f8
            b"\xb0\x74\xee\xb0\x0a\xee"        # L: out 't', out '\n'
            + b"\xb9" + struct.pack("<I", 100_000) + b"\xe2\xfe"   # mov ecx, 100000; loop $
            + b"\xeb\xf0")                     # jmp L
    path = tmp_path / f"{name}.bin"
    path.write_bytes(tiny_kernel(code))
    return path


def test_ctrl_c_halts_one_guest_while_its_sibling_runs_on(tmp_path):
    tv = Tvmm("--guest", f"name=a,kernel={ticker(tmp_path, 'a')}", "--guest", f"name=b,kernel={ticker(tmp_path, 'b')}",
              "--timeout", "60")
    port = tv.ports["b"]
    r = gdb(f"""
run("target remote 127.0.0.1:{port}")
threading.Timer(1.0, lambda: gdb.post_event(lambda: gdb.execute("interrupt"))).start()
run("continue")                          # returns when the interrupt stops b
first = run("monitor guests")
print("HALTED_AT", time.time())
time.sleep(1.5)
print("RESUMING_AT", time.time())
second = run("monitor guests")
count = lambda text, name: int(text.split(name + ": ")[1].split()[1])
check(count(first, "b") == count(second, "b"), "b did not advance: " + first + second)
check(count(second, "a") > count(first, "a") + 100000, "a advanced: " + first + second)
run("detach")
""", tmp_path)
    assert "FAILURES []" in r.stdout, r.stdout + r.stderr
    assert "Program received signal SIGINT" in r.stdout
    halted = float(re.search(r"HALTED_AT ([\d.]+)", r.stdout).group(1))
    resumed = float(re.search(r"RESUMING_AT ([\d.]+)", r.stdout).group(1))
    time.sleep(1.0)
    tv.proc.kill()
    tv.finish()
    window = [line for t, line in tv.lines if halted + 0.2 < t < resumed]
    assert sum(line.startswith("a| ") for line in window) >= 2            # a kept printing
    assert not any(line.startswith("b| ") for line in window)              # b was held
    after = [line for t, line in tv.lines if t > resumed + 0.3]
    assert any(line.startswith("b| ") for line in after)                   # detached: b runs again


def test_a_port_in_use_is_one_clear_line(tmp_path):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", "--gdb", str(port), str(FLAKY)],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and f"cannot listen for gdb on 127.0.0.1:{port}" in r.stderr
    bad = subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", "--gdb", "x:y", str(FLAKY)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "bad --gdb value" in bad.stderr and bad.stderr.count("\n") == 1


def test_reverse_stepping_and_reverse_continue_in_gdb(tmp_path):
    tv = Tvmm("--wait-gdb", "--guest", f"name=flaky,kernel={FLAKY},cmdline=seed=5")
    port = tv.ports["flaky"]
    r = gdb(f"""
run("target remote 127.0.0.1:{port}")
def state():
    regs = tuple(int(gdb.parse_and_eval(f"${{r}}")) for r in ("pc", "sp", "eax", "ecx", "edx", "ebx", "esi", "edi", "ebp", "eflags"))
    stack = run("x/8xw $sp")
    return regs, stack, int(gdb.parse_and_eval("ticks")), int(gdb.parse_and_eval("submitted"))
def icount():
    return int(run("monitor info").split("instructions ")[1].split()[0])
run("break list_push")
run("continue")
first_hit = icount()
before = state()
for _ in range(5):
    run("stepi")
check(state() != before, "stepping changed something")
for _ in range(5):
    run("reverse-stepi")
check(state() == before, "back to the same registers and memory: " + repr(state()) + " vs " + repr(before))
check(icount() == first_hit, "back to the same instruction count")
run("continue")
second_hit = icount()
check(second_hit > first_hit, "a later hit")
run("reverse-continue")
check(gdb.selected_frame().name() == "list_push", "reverse-continue stops at the breakpoint")
check(icount() == first_hit, f"at the previous hit: {{icount()}} vs {{first_hit}}")
run("detach")
""", tmp_path, FLAKY)
    assert "FAILURES []" in r.stdout, r.stdout + r.stderr
    tv.finish()
