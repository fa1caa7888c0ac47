"""The fpu86 sample end to end through the CLI (issue 15): two ring-3 tasks
doing x87 work under PIT preemption with lazy FPU switching on #NM, and a
16-bit routine run in virtual-8086 mode with IOPL 0 whose CLI, STI, INT 21h
and HLT trap to the kernel with #GP.

The expected numbers are computed here independently of tvmm: the x87
results by a model of the tasks' exact instruction sequence in Python
fractions (each operation rounded once to the precision and rounding mode
of the task's control word), the VM86 routine's result by redoing its
16-bit arithmetic."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from math import isqrt
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ELF = ROOT / "samples" / "build" / "fpu86.elf"
PI_TERMS, SQRT_TERMS, INT_ROUNDS = 12000, 6000, 20000      # samples/fpu86/fpu86.h


def run(elf: Path, *extra: str):
    r = subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", "--stats", "--max-insns", "20000000",
                        "--timeout", "120", *extra, str(elf)],
                       capture_output=True, text=True, cwd=ROOT, timeout=180)
    return r.returncode, r.stdout.replace("\r", ""), r.stderr


@pytest.fixture(scope="module")
def runs():
    return {mode: run(ELF, *(["--bare"] if mode == "bare" else [])) for mode in ("monitor", "bare")}


# ------------------------------------------------------------ the x87 model
NEAREST, CHOP = "nearest", "chop"


def rnd(x: Fraction, p: int, mode: str) -> Fraction:
    """x rounded to a p-bit significand (exponent unbounded: no value here
    comes near the range limits)."""
    if x == 0:
        return x
    sign, x = (-1 if x < 0 else 1), abs(x)
    shift = p - 1 - (x.numerator.bit_length() - x.denominator.bit_length())
    while x * Fraction(2) ** shift >= 2 ** p:
        shift -= 1
    while x * Fraction(2) ** shift < 2 ** (p - 1):
        shift += 1
    y = x * Fraction(2) ** shift
    q, r = divmod(y.numerator, y.denominator)
    if mode == NEAREST and (2 * r > y.denominator or (2 * r == y.denominator and q & 1)):
        q += 1
    return sign * Fraction(q) / Fraction(2) ** shift


def sqrt_rnd(k: int, p: int, mode: str) -> Fraction:
    """sqrt(k) rounded to a p-bit significand (FSQRT is correctly rounded)."""
    shift = 0
    while isqrt(k << (2 * shift)) < 2 ** (p - 1):
        shift += 1
    scaled = k << (2 * shift)
    q = isqrt(scaled)
    if mode == NEAREST and 4 * scaled > (2 * q + 1) ** 2:
        q += 1
    return Fraction(q, 2 ** shift)


def to_int(x: Fraction, mode: str) -> int:
    """FISTP: to an integer under the control word's rounding."""
    if mode == CHOP:
        return math.trunc(x)
    return round(x)                                  # Fraction rounds half to even, as RC=00 does


def m80(x: Fraction) -> str:
    """The 80-bit image FSTP m80 writes, as the kernel prints it: sign and
    biased exponent, then the 64-bit significand with its explicit integer bit."""
    assert x > 0
    e = x.numerator.bit_length() - x.denominator.bit_length()
    while x >= Fraction(2) ** (e + 1):
        e += 1
    while x < Fraction(2) ** e:
        e -= 1
    sig = x / Fraction(2) ** (e - 63)
    assert sig.denominator == 1 and 2 ** 63 <= sig.numerator < 2 ** 64
    return f"{e + 16383:04x}:{sig.numerator:016x}"


def task_a(p: int = 64, mode: str = NEAREST) -> tuple[Fraction, int]:
    """tasks.c task_a as gcc compiled it: s += t / (a * (a + 1) * (a + 2))."""
    s, a, t = Fraction(3), Fraction(2), Fraction(4)
    for _ in range(PI_TERMS):
        d = rnd(rnd(a * (a + 1), p, mode) * (a + 2), p, mode)      # exact: below 2^64
        s = rnd(s + rnd(t / d, p, mode), p, mode)
        a += 2
        t = -t
    return s, to_int(rnd(s * 10 ** 12, p, mode), mode)


def task_b(p: int = 53, mode: str = CHOP) -> tuple[Fraction, int]:
    """tasks.c task_b under FCW 0x0E7F: s += fsqrt(k), k = 1 .. SQRT_TERMS."""
    s = Fraction(0)
    for k in range(1, SQRT_TERMS + 1):
        s = rnd(s + sqrt_rnd(k, p, mode), p, mode)
    return s, to_int(rnd(s * 10 ** 6, p, mode), mode)


def fixed(v: int, digits: int) -> str:
    return f"{v // 10 ** digits}.{v % 10 ** digits:0{digits}d}"


def fnv(rounds: int) -> int:
    h = 2166136261
    for i in range(rounds):
        h = ((h ^ (i & 0xFF)) * 16777619) & 0xFFFFFFFF
    return h


# ------------------------------------------------------------ the VM86 model
def v86_result() -> tuple[int, int, int]:
    """samples/fpu86/v86.S: 24 Fibonacci numbers mod 2^16 stored through
    ES = CS + 40h, summed back through DS:0400, times 9E37h by MUL."""
    ax, bx, table = 1, 1, []
    for _ in range(24):
        table.append(ax)
        ax, bx = (ax + bx) & 0xFFFF, ax
    total = sum(table) & 0xFFFF
    product = total * 0x9E37
    return product >> 16, product & 0xFFFF, total


def v86_hlt_offset() -> int:
    from elftools.elf.elffile import ELFFile
    with open(ELF, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        size = symtab.get_symbol_by_name("v86_code_end")[0]["st_value"] - \
            symtab.get_symbol_by_name("v86_code")[0]["st_value"]
    return size - len("hello from 16-bit code$") - 3         # ... hlt; jmp . (2 bytes); msg


def fxsr() -> bool:
    from tvmm.machine.native import CPUID_FEATURES        # what the modelled CPU reports in CPUID.1:EDX
    return bool(CPUID_FEATURES >> 24 & 1)


def expected_lines() -> list[str]:
    pi, pi_scaled = task_a()
    roots, roots_scaled = task_b()
    dx, ax, bx = v86_result()
    how = ("CPUID has FXSR: lazy switching with FXSAVE/FXRSTOR" if fxsr()
           else "CPUID has no FXSR: lazy switching with FNSAVE/FRSTOR")
    return [
        f"fpu86: x87 FPU found by FNINIT (FSW 0x0000, FCW 0x037f); {how}",
        "fpu86: entering virtual-8086 mode at 2000:0000 (linear 0x20000), IOPL 0",
        'fpu86: v86 INT 21h AH=09h from 2000:0006: "hello from 16-bit code"',       # after cli; mov ah; mov dx
        f"fpu86: v86 result DX:AX 0x{dx:04x}:0x{ax:04x}, BX 0x{bx:04x}, SI 0x{0x400 + 2 * 24:04x}, ES 0x2040, "
        f"HLT at 2000:{v86_hlt_offset():04x}",
        # EFLAGS as printed (VM IOPL OF IF CF, bit 1): VM, IOPL 0, IF (the real one:
        # CLI only cleared the virtual IF), MUL's CF = OF = 1 (DX not zero)
        "fpu86: v86 #GP: CLI 1, STI 1, INT 1, HLT 1 emulated; virtual IF 1, EFLAGS 0x00020a03",
        f"fpu86: task A (FCW 0x037f) pi = {fixed(pi_scaled, 12)} [m80 {m80(pi)}]",
        f"fpu86: task B (FCW 0x0e7f) sqrt(1)+...+sqrt({SQRT_TERMS}) = {fixed(roots_scaled, 6)} [m80 {m80(roots)}]",
        f"fpu86: task B integer checksum 0x{fnv(INT_ROUNDS):08x}",
    ]


COUNTS = re.compile(r"fpu86: task switches (\d+), #NM traps (\d+), FPU state switches (\d+), FNINITs (\d+), "
                    r"jiffies (\d+)")


def check(status: int, out: str, err: str) -> None:
    assert status == 0, err
    lines = out.splitlines()
    want = expected_lines()
    # the tasks' own progress lines interleave with preemption; the report does not
    progress = {"fpu86: task A: pi by Nilakantha's series", "fpu86: task B: integer phase",
                "fpu86: task B: sqrt sum, FCW 0x0e7f"}
    assert {line for line in lines if line in progress} == progress
    report = [line for line in lines if line not in progress]
    assert report[:-2] == want
    assert report[-1] == "fpu86: done"
    switches, nm, fpu_switches, fninits, jiffies = map(int, COUNTS.fullmatch(report[-2]).groups())
    assert fninits == 2                                 # each task's first FPU instruction
    assert switches > 0 and nm > 0 and fpu_switches > 0 and jiffies > 0
    # lazy: switching into task B's integer phase costs no #NM (nm < switches + 1,
    # TS being set once more before the first task runs), and an #NM for the
    # task that still owns the FPU saves and restores nothing (fpu_switches < nm)
    assert fpu_switches < nm < switches
    assert fpu_switches >= 4                            # the two tasks' FPU work really interleaved


@pytest.mark.parametrize("mode", ["monitor", "bare"])
def test_report_lines_match_the_independent_model(runs, mode):
    check(*runs[mode])


def test_bare_and_monitor_print_the_same_bytes_and_count_the_same_instructions(runs):
    (s1, out1, err1), (s2, out2, err2) = runs["monitor"], runs["bare"]
    assert (s1, out1) == (s2, out2)
    count = re.compile(r"instructions: (\d+)")
    assert count.search(err1).group(1) == count.search(err2).group(1)


def test_the_printed_values_are_the_right_numbers():
    """Against plain math, not the model: pi to the 12 decimals printed, and
    the chopped 53-bit sqrt sum just below the true sum."""
    pi, pi_scaled = task_a()
    assert fixed(pi_scaled, 12) == f"{math.pi:.12f}"
    roots, _ = task_b()
    true_sum = math.fsum(math.sqrt(k) for k in range(1, SQRT_TERMS + 1))
    assert 0 < true_sum - float(roots) < 1e-6


def test_the_model_is_sensitive_to_the_control_word():
    """A kernel that let one FPU state (and so one FCW) serve both tasks
    would print other digits: the expected lines pin each task's FCW."""
    assert task_b(64, NEAREST)[0] != task_b()[0]
    assert task_a(53, CHOP)[0] != task_a()[0]


def _can_build() -> bool:
    if not shutil.which("gcc") or not shutil.which("make"):
        return False
    probe = subprocess.run(["gcc", "-m32", "-ffreestanding", "-nostdlib", "-c", "-x", "c", "-", "-o", "/dev/null"],
                           input="int x;", capture_output=True, text=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_build(), reason="no gcc with -m32 support")
def test_rebuilt_from_source_prints_the_same(tmp_path, runs):
    subprocess.run(["make", "-s", "-C", str(ROOT / "samples"), f"BUILD={tmp_path}", f"{tmp_path}/fpu86.elf"],
                   check=True, capture_output=True, timeout=120)
    status, out, _ = run(tmp_path / "fpu86.elf")
    assert status == 0
    assert out == runs["monitor"][1]
