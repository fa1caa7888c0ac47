"""The bigmem sample end to end through the CLI: a kernel that poisons every
free page of a large RAM at boot, then runs ring-3 processes over a working
set with page-table edits.  Its round checksums are recomputed here from a
model of the user program, so a run that loses or mixes up a single word of
guest memory (a wrong page after a CR3 switch, a stale TLB entry after
invlpg, a copy that is not private) fails."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ELF = ROOT / "samples" / "build" / "bigmem.elf"
M = 0xFFFFFFFF
NALLOC, NCOPY = 4, 2


def run(mem: str, cmdline: str):
    r = subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", "--max-insns", "300000000",
                        "--guest", f"kernel={ELF},mem={mem},cmdline={cmdline}"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    return r, [line.rstrip("\r") for line in r.stdout.splitlines()]


def kernel_end() -> int:
    from elftools.elf.elffile import ELFFile
    with open(ELF, "rb") as f:
        return ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name("__user_end")[0]["st_value"]


def fnv(h: int, w: int) -> int:
    return ((h ^ w) * 16777619) & M


def rotl(v: int, n: int) -> int:
    return ((v << n) | (v >> (32 - n))) & M if n else v


def expected_checksums(procs: int, ws: int, rounds: int) -> list[int]:
    """bigmem.c's u_round_work and sys_round, word for word."""
    mem = [[{} for _ in range(ws)] for _ in range(procs)]       # demand-zero pages: word -> value
    out = []
    for r in range(1, rounds + 1):
        sums = []
        for pid in range(procs):
            pages = mem[pid]
            h = 2166136261 ^ pid
            for i in range(ws):
                for j in range(32):
                    idx = j * 32 + ((r + i) & 31)
                    w = (pages[i].get(idx, 0) * 1103515245 + r + i * 32 + j + pid) & M
                    pages[i][idx] = w
                    h = fnv(h, w)
            for k in range(NALLOC):                     # fresh zeroed pages, filled and summed
                h = fnv(h, sum((h + j * k) & M for j in range(256)) & M)
            for k in range(NCOPY):                      # copies of working-set pages, read
                src = pages[(r * 7 + k * 3 + pid) % ws]
                for j in range(32):
                    h = fnv(h, src.get(j * 32 + k, 0))
                if src.get(k, 0) == M:
                    h = fnv(h, 0x5A4E)
            sums.append(h)
        c = r
        for pid, s in enumerate(sums):
            c = ((c ^ rotl(s, pid)) * 16777619) & M
        out.append(c)
    return out


def test_boot_fills_256_mib_then_rounds_have_the_modelled_checksums():
    r, lines = run("256M", "rounds=5")
    assert r.returncode == 0, r.stderr
    free = ((256 << 20) - kernel_end()) // 4096       # every page above the kernel image
    assert free > 65000
    assert lines[0] == f"bigmem: 256 MiB, {free} pages free"
    assert lines[1] == "bigmem: 4 processes, working set 48 pages each, 5 rounds"
    want = [f"round {n}: checksum {c:08x}" for n, c in enumerate(expected_checksums(4, 48, 5), 1)]
    assert lines[2:7] == want
    # every process exited and gave back every page it had: nothing leaked
    assert lines[7:] == [f"bigmem: all 4 processes exited, {free} pages free"]


def test_options_and_other_ram_sizes():
    r, lines = run("64M", "procs=3 ws=20 rounds=6 every=2")
    assert r.returncode == 0, r.stderr
    free = ((64 << 20) - kernel_end()) // 4096
    assert lines[0] == f"bigmem: 64 MiB, {free} pages free"
    assert lines[1] == "bigmem: 3 processes, working set 20 pages each, 6 rounds"
    sums = expected_checksums(3, 20, 6)
    assert lines[2:5] == [f"round {n}: checksum {sums[n - 1]:08x}" for n in (2, 4, 6)]
    assert lines[5:] == [f"bigmem: all 3 processes exited, {free} pages free"]


def test_without_rounds_it_runs_until_stopped():
    # the default is forever: the instruction budget ends the run (status 1)
    r = subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", "--max-insns", "6000000",
                        "--guest", f"kernel={ELF},mem=16M"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    lines = [line.rstrip("\r") for line in r.stdout.splitlines()]
    assert r.returncode == 1 and "budget" in r.stderr
    assert lines[1] == "bigmem: 4 processes, working set 48 pages each, running forever"
    rounds = [line for line in lines if re.fullmatch(r"round \d+: checksum [0-9a-f]{8}", line)]
    assert rounds and rounds == [f"round {n}: checksum {c:08x}"
                                 for n, c in enumerate(expected_checksums(4, 48, len(rounds)), 1)]
