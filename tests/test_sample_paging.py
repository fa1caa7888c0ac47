"""The paging sample end to end through the CLI: ring-3 tasks in address
spaces of their own, system calls, demand-zero pages, and the faults the
kernel reports (the monitor must reflect these, never emulate them away)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ELF = ROOT / "samples" / "build" / "paging.elf"


def run():
    r = subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", "--max-insns", "20000000", str(ELF)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    return r, [line.rstrip("\r") for line in r.stdout.splitlines()]


def test_tasks_see_private_memory_at_the_same_address():
    r, lines = run()
    assert r.returncode == 0, r.stderr
    for task in (1, 2, 3, 4):
        # each task wrote 0x1000 * id + 0xAB at 0x50000000 and, after another
        # address space ran, reads its own value back
        assert f"task {task}: heap word at 0x50000000 reads 0x{0x1000 * task + 0xAB:08x}" in lines


def test_demand_zero_pages_read_zero_and_hold_what_was_written():
    _, lines = run()
    for task in (1, 2, 3, 4):
        expected = sum(i * task + page for page in range(1, 1 + task) for i in range(1024))
        assert f"task {task}: fresh heap page reads zero, checksum 0x{expected:08x}" in lines
    # 1+2+3+4 data pages, the first heap page and two scratch pages per task
    assert lines[-1] == "paging: 4 tasks, 22 demand-zero faults, 3 killed, all done"


def test_protection_and_general_protection_faults_are_reported_with_cr2_and_error_code():
    r, lines = run()
    text = "\n".join(lines)
    import re
    write_ro = re.search(r"task 2: protection fault at (0x[0-9a-f]+) \(error 0x00000007: present, write, user\)"
                         r" - killed", text)
    assert write_ro, text
    from elftools.elf.elffile import ELFFile
    with open(ELF, "rb") as f:
        user_start = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name("__user_start")[0]["st_value"]
    assert int(write_ro.group(1), 16) == user_start + 0x10            # CR2: the address written
    assert "task 4: protection fault at 0x00100000 (error 0x00000005: present, read, user) - killed" in lines
    assert re.search(r"task 3: general protection fault at eip 0x[0-9a-f]+ \(error 0x00000000\) - killed", text)
    # the other tasks were not harmed: every task printed both of its lines
    assert sum("fresh heap page reads zero" in line for line in lines) == 4
