"""MUL/IMUL/DIV/IDIV and the BCD adjustments (tvmm/machine/ops/muldiv.py):
directed tests and differential tests against unicorn (32-bit flat and
16-bit real mode).  The differential harness lives in test_shift.py.

Not compared, and why:
- BCD sweeps compare only the flags the SDM defines (DAA/DAS: CF AF SF ZF PF;
  AAA/AAS: CF AF; AAM/AAD: SF ZF PF).  What tvmm does with the undefined
  ones (copied from unicorn) is pinned separately by
  ``test_bcd_undefined_flags_follow_unicorn`` over a smaller sample.
- MUL/IMUL/DIV/IDIV compare all six flags: tvmm reproduces unicorn's choices
  for the undefined ones (SF/ZF/PF of the low half and AF=0 after a multiply;
  flags unchanged by a divide).
- The IDIV 0x8000000000000000 / -1 case is answered by the oracle's own
  work-around (unicorn would kill the host with SIGFPE), not by QEMU.
"""

from __future__ import annotations

import random

import pytest

from tests.machine.test_shift import (AF, ARITH, CF, EAX, EBP, EBX, ECX, EDX, MODES, OF, PF, SF, ZF,
                                      Case, diff, mask, osz, rand_flags, rm_mem, rm_reg, run_tvmm)

DE = 0


def _run(code: bytes, mode: int = 32, flags: int = 0, mem: bytes = b"", **regs):
    """Run one instruction on tvmm: (vector, regs5 hex tuple, flags, mem8 hex)."""
    return run_tvmm(mode, Case(code, regs, flags, mem, mask=ARITH, label=code.hex()))


def _r(result, i: int) -> int:
    return int(result[1][i], 16)


def _f(result) -> int:
    return int(result[2], 16)


# ==================================================================== directed
def test_mul8_16_32():
    r = _run(b"\xf6\xe3", eax=0xFFFF_FF10, ebx=0x10)           # mul bl: AX = 0x0100
    assert _r(r, 0) == 0xFFFF_0100 and _f(r) == CF | OF | ZF | PF
    r = _run(b"\x66\xf7\xe3", eax=0x8000, ebx=0x0002, edx=0xAAAA_5555)   # mul bx
    assert _r(r, 0) == 0 and _r(r, 2) == 0xAAAA_0001 and _f(r) & (CF | OF) == CF | OF
    r = _run(b"\xf7\xe3", eax=0xFFFF_FFFF, ebx=0xFFFF_FFFF)    # mul ebx
    assert _r(r, 0) == 1 and _r(r, 2) == 0xFFFF_FFFE and _f(r) & (CF | OF) == CF | OF
    r = _run(b"\xf7\xe3", eax=7, ebx=6, edx=99)                  # no overflow: EDX = 0
    assert _r(r, 0) == 42 and _r(r, 2) == 0 and _f(r) & (CF | OF) == 0


def test_imul_one_operand():
    r = _run(b"\xf6\xeb", eax=0xFF, ebx=0xFF)                    # imul bl: -1 * -1
    assert _r(r, 0) & 0xFFFF == 1 and _f(r) & (CF | OF) == 0
    r = _run(b"\xf6\xeb", eax=0x80, ebx=0x02)                    # -128 * 2 = -256
    assert _r(r, 0) & 0xFFFF == 0xFF00 and _f(r) & (CF | OF) == CF | OF
    r = _run(b"\xf7\xeb", eax=0xFFFF_FFFE, ebx=3)                # -2 * 3
    assert _r(r, 0) == 0xFFFF_FFFA and _r(r, 2) == 0xFFFF_FFFF and _f(r) & (CF | OF) == 0


def test_imul_two_and_three_operand():
    r = _run(b"\x0f\xaf\xc3", eax=0x10000, ebx=0x10000)          # imul eax, ebx: truncated
    assert _r(r, 0) == 0 and _f(r) & (CF | OF) == CF | OF
    r = _run(b"\x69\xc3\xfe\xff\xff\xff", ebx=1000)              # imul eax, ebx, -2
    assert _r(r, 0) == (-2000) & 0xFFFF_FFFF and _f(r) & (CF | OF) == 0
    r = _run(b"\x6b\xd3\x80", ebx=3, edx=0x1234)                 # imul edx, ebx, -128
    assert _r(r, 2) == (-384) & 0xFFFF_FFFF
    r = _run(b"\x66\x6b\xc3\x40", eax=0xAAAA_0000, ebx=0x0200)  # imul ax, bx, 64 = 0x8000: overflow
    assert _r(r, 0) == 0xAAAA_8000 and _f(r) & (CF | OF | SF) == CF | OF | SF


def test_div_and_idiv_results():
    r = _run(b"\xf7\xf3", eax=100, edx=0, ebx=7)                 # div ebx
    assert (_r(r, 0), _r(r, 2)) == (14, 2)
    r = _run(b"\xf7\xfb", eax=(-7) & 0xFFFF_FFFF, edx=0xFFFF_FFFF, ebx=2)   # idiv: -7 / 2
    assert (_r(r, 0), _r(r, 2)) == ((-3) & 0xFFFF_FFFF, (-1) & 0xFFFF_FFFF)  # toward zero
    r = _run(b"\xf7\xfb", eax=7, edx=0, ebx=(-2) & 0xFFFF_FFFF)  # 7 / -2 = -3 rem 1
    assert (_r(r, 0), _r(r, 2)) == ((-3) & 0xFFFF_FFFF, 1)
    r = _run(b"\xf6\xfb", eax=0xFF80, ebx=0x01)                  # idiv bl: -128 / 1 fits
    assert _r(r, 0) & 0xFFFF == 0x0080
    r = _run(b"\xf6\xf3", eax=0x1234_0107, ebx=0x10)             # div bl: 263 / 16
    assert _r(r, 0) == 0x1234_0710


def test_div_flags_unchanged():
    r = _run(b"\xf7\xf3", flags=ARITH, eax=100, ebx=7)
    assert _f(r) == ARITH
    r = _run(b"\xf7\xf3", flags=0, eax=100, ebx=7)
    assert _f(r) == 0


@pytest.mark.parametrize("code,regs", [
    (b"\xf7\xf3", dict(eax=5, edx=0, ebx=0)),                         # div by zero
    (b"\xf7\xf3", dict(eax=0, edx=1, ebx=1)),                         # quotient 2^32
    (b"\xf6\xf3", dict(eax=0x1000, ebx=0x10)),                        # div bl: 256 > FF
    (b"\xf6\xfb", dict(eax=0x0080, ebx=0x01)),                        # idiv bl: +128
    (b"\xf6\xfb", dict(eax=0x8000, ebx=0xFF)),                        # idiv bl: -32768 / -1
    (b"\x66\xf7\xfb", dict(eax=0x0000, edx=0x8000, ebx=0xFFFF)),      # idiv bx: overflow
    (b"\xf7\xfb", dict(eax=0, edx=0x8000_0000, ebx=0xFFFF_FFFF)),    # idiv ebx: INT64_MIN / -1
    (b"\xf7\xfb", dict(eax=0, edx=0x4000_0000, ebx=1)),              # 2^62 / 1
    (b"\xd4\x00", dict(eax=0x1234)),                                  # aam 0
])
def test_divide_error_before_any_change(code, regs):
    regs = dict(regs, ecx=0x5A5A_5A5A, ebp=0x1111_2222)
    r = _run(code, flags=CF | SF, **regs)
    assert r[0] == DE
    expect = tuple(f"{regs.get(n, 0):08x}" for n in ("eax", "ecx", "edx", "ebx", "ebp"))
    assert r[1] == expect and _f(r) == CF | SF


def test_daa_das_sdm_examples():
    # SDM DAA example: ADD AL, BL with 79h + 35h = AEh, then DAA -> 14h, CF = AF = 1
    r = _run(b"\x27", eax=0xAE)
    assert _r(r, 0) == 0x14 and _f(r) & (CF | AF) == CF | AF
    # SDM DAS example: SUB AL, BL with 35h - 47h = EEh (CF = AF = 1), then DAS -> 88h, CF = 1
    r = _run(b"\x2f", eax=0xEE, flags=CF | AF)
    assert _r(r, 0) == 0x88 and _f(r) & (CF | AF) == CF | AF
    r = _run(b"\x2f", eax=0x03, flags=AF)                       # borrow out of AL - 6 sets CF
    assert _r(r, 0) == 0xFD and _f(r) & (CF | AF) == CF | AF


def test_aaa_aas_carry_into_ah():
    r = _run(b"\x37", eax=0x12FA)                                # AX + 106h = 1400h, AL &= 0F
    assert _r(r, 0) == 0x1400 and _f(r) & (CF | AF) == CF | AF
    r = _run(b"\x37", eax=0x0034)                                # no adjust: AL &= 0F
    assert _r(r, 0) == 0x0004 and _f(r) & (CF | AF) == 0
    r = _run(b"\x3f", eax=0x0502, flags=AF)                      # AX - 6 borrows, AH - 1
    assert _r(r, 0) == 0x030C and _f(r) & (CF | AF) == CF | AF


def test_aam_aad():
    r = _run(b"\xd4\x0a", eax=0xFFFF_0063)                       # aam: 99 -> 09 09
    assert _r(r, 0) == 0xFFFF_0909 and _f(r) & (SF | ZF | PF) == PF
    r = _run(b"\xd5\x0a", eax=0x0709)                            # aad: 7*10 + 9 = 79 = 4Fh
    assert _r(r, 0) == 0x004F and _f(r) & (SF | ZF | PF) == 0
    r = _run(b"\xd5\x10", eax=0xFF80)                            # aad 16: (FF*16 + 80) & FF = 70
    assert _r(r, 0) == 0x0070


# ================================================================ differential
_V8 = (0, 1, 2, 0x7F, 0x80, 0x81, 0xFE, 0xFF, 0x10, 0x55)
_V16 = (0, 1, 2, 0x7FFF, 0x8000, 0x8001, 0xFFFE, 0xFFFF, 0x0100, 0x1234)
_V32 = (0, 1, 2, 0x7FFF_FFFF, 0x8000_0000, 0x8000_0001, 0xFFFF_FFFE, 0xFFFF_FFFF, 0x0001_0000, 0xDEAD_BEEF)
_VALS = {1: _V8, 2: _V16, 4: _V32}
_GRP3 = {4: "MUL", 5: "IMUL", 6: "DIV", 7: "IDIV"}


def _divides_ok(op: str, size: int, a: int, b: int) -> bool:
    """Whether DIV/IDIV of the double-width ``a`` by ``b`` produces no #DE."""
    n = 8 * size
    if not b:
        return False
    if op == "DIV":
        return a // b < (1 << n)
    a = a - (1 << 2 * n) if a >> (2 * n - 1) else a
    b = b - (1 << n) if b >> (n - 1) else b
    q = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
    return -(1 << n - 1) <= q < (1 << n - 1)


def _grp3_cases(mode: int, reg: int, rng: random.Random) -> tuple[list[Case], list[Case]]:
    """(cases that complete, cases expected to raise #DE)."""
    op = _GRP3[reg]
    ok, bad = [], []
    for size in (1, 2, 4):
        vals = _VALS[size]
        for a_hi in vals:
            for a_lo in vals:
                for b in vals + (rng.getrandbits(8 * size),):
                    memory = rng.random() < 0.3
                    if size == 1:
                        target = rng.choice((EBX, ECX, 7, 5))            # bl cl bh ch
                        code = bytes([0xF6, rm_mem(mode, reg) if memory else rm_reg(reg, target)])
                    else:
                        target = rng.choice((EBX, ECX, EBP))
                        modrm = rm_mem(mode, reg) if memory else rm_reg(reg, target)
                        code = osz(mode, size) + bytes([0xF7, modrm])
                    regs = {n: rng.getrandbits(32) for n in ("eax", "ecx", "edx", "ebx", "ebp")}
                    n = 8 * size
                    if size == 1:
                        regs["eax"] = (regs["eax"] & ~0xFFFF) | (a_hi << 8) | a_lo
                        a = (a_hi << 8) | a_lo
                    else:
                        regs["eax"] = (regs["eax"] & ~mask(size)) | a_lo
                        regs["edx"] = (regs["edx"] & ~mask(size)) | a_hi
                        a = (a_hi << n) | a_lo
                    mem = rng.getrandbits(64).to_bytes(8, "little")
                    if memory:
                        mem = b.to_bytes(size, "little") + mem[size:]
                    else:
                        if size == 1:
                            name = ("eax", "ecx", "edx", "ebx")[target & 3]
                            sh = 8 * (target >> 2)
                            regs[name] = (regs[name] & ~(0xFF << sh)) | (b << sh)
                        else:
                            name = ("eax", "ecx", "edx", "ebx", "esp", "ebp")[target]
                            regs[name] = (regs[name] & ~mask(size)) | b
                    case = Case(code, regs, rand_flags(rng), mem, label=f"{op}{n} a={a:#x} b={b:#x}")
                    if op in ("DIV", "IDIV") and not _divides_ok(op, size, a, b):
                        bad.append(case)
                    else:
                        ok.append(case)
    return ok, bad


@pytest.mark.diff
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reg", (4, 5, 6, 7), ids=lambda r: _GRP3[r])
def test_grp3_matches_unicorn(mode, reg):
    rng = random.Random(reg * 10 + mode)
    ok, bad = _grp3_cases(mode, reg, rng)
    diff(mode, ok)
    if bad:
        # faulting cases run one per snippet; a sample keeps the test quick
        sample = rng.sample(bad, min(len(bad), 40))
        diff(mode, sample, batch=False)
        assert all(run_tvmm(mode, c)[0] == DE for c in sample)


@pytest.mark.diff
@pytest.mark.parametrize("mode", MODES)
def test_imul_multi_operand_matches_unicorn(mode):
    rng = random.Random(mode)
    cases = []
    for size in (2, 4):
        vals = _VALS[size]
        for a in vals:
            for b in vals:
                for form in ("rm", "iz", "ib"):
                    dst = rng.choice((EAX, ECX, EDX, EBX, EBP))
                    src = rng.choice((EAX, ECX, EDX, EBX, EBP))
                    memory = rng.random() < 0.3
                    modrm = rm_mem(mode, dst) if memory else rm_reg(dst, src)
                    pre = osz(mode, size)
                    if form == "rm":
                        code = pre + bytes([0x0F, 0xAF, modrm])
                    elif form == "iz":
                        imm = rng.choice((a, b, 0x7FFF, 0x8000_0001)).to_bytes(4, "little")[:size]
                        code = pre + bytes([0x69, modrm]) + imm
                    else:
                        code = pre + bytes([0x6B, modrm, rng.choice((0x80, 0x7F, 0xFF, 0x02, 0x00))])
                    regs = {n: rng.getrandbits(32) for n in ("eax", "ecx", "edx", "ebx", "ebp")}
                    names = ("eax", "ecx", "edx", "ebx", "esp", "ebp")
                    regs[names[dst]] = (regs[names[dst]] & ~mask(size)) | a
                    if not memory and src != dst:
                        regs[names[src]] = (regs[names[src]] & ~mask(size)) | b
                    mem = b.to_bytes(size, "little") + rng.getrandbits(64).to_bytes(8, "little")[size:]
                    cases.append(Case(code, regs, rand_flags(rng), mem,
                                      label=f"IMUL{size * 8} {form} a={a:#x} b={b:#x}"))
    diff(mode, cases)


_BCD = {"DAA": (b"\x27", CF | AF | SF | ZF | PF), "DAS": (b"\x2f", CF | AF | SF | ZF | PF),
        "AAA": (b"\x37", CF | AF), "AAS": (b"\x3f", CF | AF)}


def _bcd_cases(name: str, rng: random.Random, flag_mask: int, ah_values=(0, 0x7F, 0xFF)):
    code, _ = _BCD[name]
    cases = []
    for al in range(256):
        for fl in (0, CF, AF, CF | AF):
            ah = rng.choice(ah_values)
            regs = {"eax": (rng.getrandbits(16) << 16) | (ah << 8) | al}
            other = rng.choice((0, OF | SF | ZF | PF, OF, ZF))
            cases.append(Case(code, regs, fl | other, mask=flag_mask,
                              label=f"{name} al={al:#x} ah={ah:#x} f={fl | other:#x}"))
    return cases


@pytest.mark.diff
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(_BCD))
def test_bcd_all_al_values_match_unicorn(mode, name):
    rng = random.Random(name)
    diff(mode, _bcd_cases(name, rng, _BCD[name][1]))


@pytest.mark.diff
@pytest.mark.parametrize("name", sorted(_BCD))
def test_bcd_undefined_flags_follow_unicorn(name):
    rng = random.Random(5)
    cases = _bcd_cases(name, rng, ARITH)
    diff(32, rng.sample(cases, 200))


@pytest.mark.diff
@pytest.mark.parametrize("mode", MODES)
def test_aam_aad_match_unicorn(mode):
    rng = random.Random(mode + 99)
    cases = []
    for base in (10, 16, 1, 3, 7, 0xFF, 0x80):
        for al in range(256):
            ah = rng.getrandbits(8)
            eax = (rng.getrandbits(16) << 16) | (ah << 8) | al
            fl = rand_flags(rng)
            cases.append(Case(bytes([0xD4, base]), {"eax": eax}, fl, mask=SF | ZF | PF,
                              label=f"AAM {base} al={al:#x}"))
            cases.append(Case(bytes([0xD5, base]), {"eax": eax}, fl, mask=SF | ZF | PF,
                              label=f"AAD {base} ax={eax & 0xFFFF:#x}"))
    diff(mode, cases)
    # the undefined OF AF CF (cleared by both) on a sample
    sample = [Case(c.code, c.regs, c.flags, mask=ARITH, label=c.label) for c in rng.sample(cases, 150)]
    diff(mode, sample)
    diff(mode, [Case(b"\xd4\x00", {"eax": 0x1234}, CF, label="AAM 0")], batch=False)
