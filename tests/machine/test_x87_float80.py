"""tvmm.machine.x87.float80 against independent references: exact rational
arithmetic (fractions.Fraction) rounded by a separate, straightforward
implementation of IEEE rounding for the basic operations, mpmath at 200 bits
for the transcendentals (required: within 1 ulp), and the SDM's tables for
special operands."""

from __future__ import annotations

import random
from fractions import Fraction

import mpmath
import pytest

from tvmm.machine.x87 import float80 as F

RC_NAMES = ("nearest", "down", "up", "zero")


def to_frac(x: int) -> Fraction:
    s, m, e = F.exact(x)
    v = Fraction(m) * (Fraction(2) ** e)
    return -v if s else v


def ref_round(v: Fraction, p: int, rc: int, emin: int = -16382) -> Fraction:
    """Round a nonzero rational to p significant bits (denormal below 2^emin)."""
    sign = v < 0
    a = -v if sign else v
    e = 0
    while a >= 2:
        a /= 2
        e += 1
    while a < 1:
        a *= 2
        e -= 1
    e = max(e, emin)
    ulp = Fraction(2) ** (e - p + 1)
    q, r = divmod(abs(v), ulp)
    if r:
        if rc == 0:
            up = r * 2 > ulp or (r * 2 == ulp and q % 2 == 1)
        elif rc == 3:
            up = False
        else:
            up = (rc == 2) != sign
        q += up
    res = q * ulp
    return -res if sign else res


def rand80(rng: random.Random, span: int = 200) -> int:
    s = rng.getrandbits(1)
    e = 16383 + rng.randrange(-span, span)
    return (s << 79) | (e << 64) | (1 << 63) | rng.getrandbits(63)


def cw_of(rc: int, pc: int) -> int:
    return 0x3F | 0x40 | ({24: 0, 53: 2, 64: 3}[pc] << 8) | (rc << 10)


@pytest.mark.parametrize("rc", range(4), ids=RC_NAMES)
@pytest.mark.parametrize("pc", (24, 53, 64))
def test_basic_operations_correctly_rounded(rc, pc):
    rng = random.Random(rc * 100 + pc)
    cw = cw_of(rc, pc)
    for _ in range(150):
        a, b = rand80(rng), rand80(rng)
        fa, fb = to_frac(a), to_frac(b)
        for name, got, exact in (("add", F.add(a, b, cw), fa + fb), ("sub", F.add(a, b, cw, True), fa - fb),
                                 ("mul", F.mul(a, b, cw), fa * fb), ("div", F.div(a, b, cw), fa / fb)):
            res, flags, up = got
            if exact == 0:
                continue
            want = ref_round(exact, pc, rc)
            assert to_frac(res) == want, (name, hex(a), hex(b), rc, pc)
            assert bool(flags & F.PE) == (want != exact)
            assert up == (abs(want) > abs(exact))
        a = a & ~F.SIGN
        res, flags, _ = F.sqrt(a, cw)
        mpmath.mp.prec = 300
        fa = to_frac(a)
        root = mpmath.sqrt(mpmath.mpf(fa.numerator) / fa.denominator)
        approx = Fraction(*[int(v) for v in root.as_integer_ratio()]) if hasattr(root, "as_integer_ratio") \
            else Fraction(str(root))
        assert to_frac(res) == ref_round(approx, pc, rc), ("sqrt", hex(a), rc, pc)


def test_subnormal_results_and_underflow_flag():
    cw = cw_of(0, 64)
    tiny = (1 << 64) | (1 << 63)                      # 2^-16382, the smallest normal
    half = (16382 << 64) | (1 << 63)                  # 0.5
    res, flags, _ = F.mul(tiny, half, cw)             # exactly representable denormal
    assert res == 1 << 62 and flags == 0
    third = F.div(F.ONE, F.from_int(3), cw)[0]
    res, flags, _ = F.mul(tiny, third, cw)            # inexact denormal: UE and PE
    assert (res >> 64) == 0 and flags == F.UE | F.PE
    # unmasked underflow: the result is scaled by 2^24576 and UE is set even if exact
    res, flags, _ = F.mul(tiny, half, cw & ~F.UE)
    assert flags == F.UE and (res >> 64) & 0x7FFF == 8193 + 16383 and res & ((1 << 64) - 1) == 1 << 63


def test_overflow_responses():
    big = (0x7FFE << 64) | (1 << 64) - 1
    for rc, want_inf in ((0, True), (1, False), (2, True), (3, False)):
        res, flags, _ = F.add(big, big, cw_of(rc, 64))
        assert flags == F.OE | F.PE
        assert (res == F.POS_INF) == want_inf
        if not want_inf:
            assert res == big
    res, flags, _ = F.add(big, big, cw_of(0, 64) & ~F.OE)      # unmasked: scaled by 2^-24576
    assert flags == F.OE and (res >> 64) == 0x7FFF - 24576


def test_massive_overflow_and_underflow_unmasked():
    cw = cw_of(0, 64) & ~(F.OE | F.UE)
    huge = F.from_int(1)
    res, flags, _ = F.scale(huge, F.from_int(60000), cw)      # 2^60000: still too big after 2^-24576
    assert res == F.POS_INF and flags & F.OE
    res, flags, _ = F.scale(huge, F.from_int(-60000), cw)     # 2^-60000 * 2^24576: still tiny
    assert flags & F.UE and (res >> 64) & 0x7FFF == 0


def test_conversions():
    cw = cw_of(0, 64)
    assert F.to_int(F.from_int(-123456789), 32, cw) == ((-123456789) & 0xFFFFFFFF, 0, False)
    assert F.to_int(F.from_int(1 << 40), 32, cw) == (0x80000000, F.IE, False)       # integer indefinite
    assert F.to_int(F.from_int(1 << 40), 32, cw & ~F.IE)[0] is None
    half = F.div(F.from_int(5), F.from_int(2), cw)[0]
    assert [F.to_int(half, 16, cw_of(rc, 64))[0] for rc in range(4)] == [2, 2, 3, 2]
    assert F.to_bcd(F.from_int(-9876543210), cw)[0] == (1 << 79) | 0x9876543210
    assert F.from_bcd((1 << 79) | 0x9876543210) == F.from_int(-9876543210)
    assert F.to_bcd(F.from_int(10 ** 18), cw)[0] == F.BCD_INDEFINITE
    # m32fp: SNaN loads quiet with IE; denormals are DE and exact
    x, flags = F.load_fp(0x7F800001, F.SINGLE)
    assert flags == F.IE and F.classify(x) == F.QNAN
    x, flags = F.load_fp(1, F.SINGLE)
    assert flags == F.DE and to_frac(x) == Fraction(2) ** -149
    assert F.store_fp(F.div(F.ONE, F.from_int(3), cw)[0], F.SINGLE, cw)[0] == 0x3EAAAAAB
    assert F.store_fp(F.INDEFINITE, F.DOUBLE, cw)[0] == 0xFFF8000000000000


def test_specials():
    cw = cw_of(0, 64)
    inf, ninf = F.POS_INF, F.NEG_INF
    assert F.add(inf, ninf, cw)[:2] == (F.INDEFINITE, F.IE)
    assert F.mul(inf, 0, cw)[:2] == (F.INDEFINITE, F.IE)
    assert F.div(F.ONE, 0, cw)[:2] == (inf, F.ZE)
    assert F.div(0, 0, cw)[:2] == (F.INDEFINITE, F.IE)
    assert F.sqrt(F.from_int(-4), cw)[:2] == (F.INDEFINITE, F.IE)
    assert F.sqrt(F.SIGN, cw)[0] == F.SIGN                          # sqrt(-0) = -0
    assert F.add(F.ONE, F.ONE ^ F.SIGN, cw_of(1, 64))[0] == F.SIGN  # x - x = -0 when rounding down
    qnan = (0x7FFF << 64) | (3 << 62) | 5
    snan = (0x7FFF << 64) | (1 << 63) | 7
    assert F.add(F.ONE, snan, cw)[:2] == (snan | F.QBIT, F.IE)
    assert F.add(qnan, snan, cw)[:2] == (qnan, F.IE)                # QNaN source wins over an SNaN
    unnormal = (16383 << 64) | 5                                    # J clear: unsupported
    assert F.add(F.ONE, unnormal, cw)[:2] == (F.INDEFINITE, F.IE)
    assert F.compare(qnan, F.ONE, quiet_nan=True) == ("un", 0)
    assert F.compare(qnan, F.ONE, quiet_nan=False) == ("un", F.IE)
    assert F.compare(0, F.SIGN, True) == ("eq", 0)
    # FXTRACT, FSCALE
    e, sig, flags = F.extract(F.from_int(40))
    assert e == F.from_int(5) and to_frac(sig) == Fraction(5, 4) and flags == 0
    assert F.extract(0)[:3] == (F.NEG_INF, 0, F.ZE)
    assert F.scale(F.from_int(3), F.from_int(4), cw)[0] == F.from_int(48)
    assert F.scale(F.from_int(3), F.div(F.from_int(-7), F.from_int(2), cw)[0], cw)[0] == \
        F.div(F.from_int(3), F.from_int(8), cw)[0]                  # trunc(-3.5) = -3
    assert F.scale(0, inf, cw)[:2] == (F.INDEFINITE, F.IE)


@pytest.mark.parametrize("nearest", (False, True), ids=("fprem", "fprem1"))
def test_partial_remainder_exact(nearest):
    rng = random.Random(7 + nearest)
    cw = cw_of(0, 64)
    for _ in range(200):
        a, b = rand80(rng, 40), rand80(rng, 40)
        res, flags, q, complete = F.partial_remainder(a, b, cw, nearest)
        fa, fb = to_frac(a), to_frac(b)
        d = F.expo(*F.exact(a)[1:]) - F.expo(*F.exact(b)[1:])
        if d >= 64:
            assert not complete
            continue
        n = fa / fb
        qq = int(n) if not nearest else round(n)
        assert to_frac(res) == fa - qq * fb
        assert q == abs(qq) and complete


def _mp(x: int):
    return mpmath.mpf(to_frac(x).numerator) / to_frac(x).denominator


def _ulp_error(got: int, exact) -> float:
    g = _mp(got)
    if exact == 0:
        return float(abs(g))
    e = int(mpmath.floor(mpmath.log(abs(exact), 2)))
    return float(abs(g - exact) / mpmath.mpf(2) ** (e - 63))


@pytest.mark.parametrize("fn", ["sin", "cos", "tan", "atan2", "f2xm1", "yl2x", "yl2xp1"])
def test_transcendentals_within_one_ulp(fn):
    mpmath.mp.prec = 256
    rng = random.Random(hash(fn) & 0xFFFF)
    cw = cw_of(0, 64)
    for k in range(60):
        if fn in ("sin", "cos", "tan"):
            x = rand80(rng, 70 if k % 3 else 8)
            if F.expo(*F.exact(x)[1:]) >= 63:
                continue
            res = F.trig(x, cw, fn)[0][0]
            exact = getattr(mpmath, fn)(_mp(x))
        elif fn == "atan2":
            y, x = rand80(rng, 30), rand80(rng, 30)
            res = F.atan2(y, x, cw)[0]
            exact = mpmath.atan2(_mp(y), _mp(x))
        elif fn == "f2xm1":
            x = rand80(rng, 60) & ~(0x7FFF << 64) | ((16383 - rng.randrange(1, 60)) << 64)
            res = F.f2xm1(x, cw)[0]
            exact = mpmath.power(2, _mp(x)) - 1
        elif fn == "yl2x":
            y, x = rand80(rng, 30), rand80(rng, 300) & ~F.SIGN
            res = F.yl2x(y, x, cw, False)[0]
            exact = _mp(y) * mpmath.log(_mp(x), 2)
        else:
            y = rand80(rng, 30)
            x = rand80(rng, 60) & ~(0x7FFF << 64) | ((16383 - rng.randrange(2, 60)) << 64)
            res = F.yl2x(y, x, cw, True)[0]
            exact = _mp(y) * mpmath.log(1 + _mp(x), 2)
        assert _ulp_error(res, exact) <= 1.0, (fn, k)


def test_trig_out_of_range_and_constants():
    cw = cw_of(0, 64)
    big = (16383 + 63) << 64 | (1 << 63)
    assert F.trig(big, cw, "sin")[2] is False                    # C2: operand out of range
    assert F.constant("pi", cw) == 0x4000C90FDAA22168C235
    assert F.constant("pi", cw_of(1, 64)) == 0x4000C90FDAA22168C234
    assert F.constant("l2t", cw_of(2, 64)) == 0x4000D49A784BCD1B8AFF
    assert F.constant("l2e", cw) == 0x3FFFB8AA3B295C17F0BC
    assert F.constant("lg2", cw) == 0x3FFD9A209A84FBCFF799
    assert F.constant("ln2", cw) == 0x3FFEB17217F7D1CF79AC
