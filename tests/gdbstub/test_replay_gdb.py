"""``tvmm replay --gdb PORT FILE``: a recorded failure opened in real gdb,
where the crash path can be stopped at, inspected, and run backwards."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import pytest

from tests.gdbstub.test_real_gdb import FLAKY, ROOT, gdb

pytestmark = pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed")
SESSION = ROOT / "tests" / "sessions" / "flaky-crash.tvmm.jsonl"


def test_a_recorded_crash_opens_in_gdb_and_runs_backwards(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "tvmm", "replay", "--gdb", "127.0.0.1:0", str(SESSION)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline, port = time.monotonic() + 30, None
        while port is None and time.monotonic() < deadline:
            m = re.match(r"tvmm replay: guest flaky: gdb on 127.0.0.1:(\d+)", proc.stderr.readline().decode())
            port = int(m.group(1)) if m else None
        assert port, "no gdb port announced"
        r = gdb(f'''
run("target remote 127.0.0.1:{port}")
check(int(gdb.parse_and_eval("$pc")) == 0x10000c, "held at the first instruction")
run("break oops")
run("continue")
check(gdb.selected_frame().name() == "oops", "the recorded crash path reaches oops")
frames = run("bt 3")
check("trap_dispatch" in frames, "a page fault's trap frame: " + frames)
check(int(gdb.parse_and_eval("tf->trapno")) == 14, "the recorded fault is a page fault")
here = int(gdb.parse_and_eval("$pc"))
run("reverse-stepi")
check(int(gdb.parse_and_eval("$pc")) != here, "one instruction back")
check("history: back to instruction 0" in run("monitor info"), "monitor info says how far back")
run("reverse-continue")
check(int(gdb.parse_and_eval("$pc")) == 0x10000c, "back to the beginning of the replay")
run("detach")
''', tmp_path, FLAKY)
        assert r.returncode == 0, r.stdout + r.stderr
        assert proc.wait(timeout=60) == 0                  # the guest runs on to its end after the detach
    finally:
        if proc.poll() is None:
            proc.kill()
