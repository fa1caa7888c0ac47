"""80-bit extended-precision arithmetic, exact, in Python integers.

A register value is the raw 80-bit pattern as an int: sign (bit 79), biased
exponent (bits 64-78, bias 16383), 64-bit significand with an explicit
integer bit J (bit 63).  Every operation here is a pure function of its
operands and the control word: it returns the result pattern together with
the exception flags it raised (``IE``..``PE``, status-word positions) and
whether the rounding went up in magnitude (the x87's C1 after an inexact
result).  Nothing reads host floating-point state.

Invariants:
- Finite values are handled as exact ``(sign, m, e)`` = (-1)^sign * m * 2^e
  with ``m`` an unbounded int; add, subtract, multiply, divide, square root,
  remainder, scaling, integer/BCD conversions and FRNDINT are computed
  exactly (division and square root to p+2 bits plus a sticky bit, which
  rounds identically) and rounded once by ``_round``, so results are
  correctly rounded under RC (four modes) and PC (24/53/64 bits; PC = 01,
  reserved, acts as 64).
- Transcendentals are computed in fixed point with at least 128 bits more
  than the result needs (the working precision grows for tiny arguments),
  from an exact pi, and rounded once: the result is within 1 ulp and in
  practice correctly rounded.  (Real P6 parts reduce trigonometric arguments
  with a 66-bit pi; tvmm does not reproduce that error.)
- Unsupported encodings (unnormals, pseudo-infinities, pseudo-NaNs) are
  invalid operands, as on every processor since the 387 sets IE for them.
  Pseudo-denormals are accepted as denormals.
- Tininess is detected after rounding, as Intel processors do for x87 results
  (SDM vol. 1, 4.9.1.5); a masked underflow is signalled only when the
  result is also inexact.
"""

from __future__ import annotations

from math import isqrt

BIAS = 16383
EMAX_FIELD = 0x7FFF
J = 1 << 63
FRAC = J - 1
QBIT = 1 << 62
M64 = (1 << 64) - 1
SIGN = 1 << 79

IE, DE, ZE, OE, UE, PE = 1, 2, 4, 8, 16, 32

RN, RD, RU, RZ = 0, 1, 2, 3

INDEFINITE = SIGN | (EMAX_FIELD << 64) | J | QBIT
POS_INF = (EMAX_FIELD << 64) | J
NEG_INF = SIGN | POS_INF
ONE = (BIAS << 64) | J

ZERO_C, DENORM, NORMAL, INF, QNAN, SNAN, UNSUPP = range(7)

EXT = (64, -16382, 16383)          # (precision, emin, emax) of the register format
SINGLE = (24, -126, 127)
DOUBLE = (53, -1022, 1023)
BIAS_ADJUST = 24576                # scaling of unmasked overflow/underflow results
_PC_BITS = (24, 64, 53, 64)


def classify(x: int) -> int:
    e = (x >> 64) & EMAX_FIELD
    s = x & M64
    if e == 0:
        return ZERO_C if s == 0 else DENORM
    if not s & J:
        return UNSUPP
    if e == EMAX_FIELD:
        if s & FRAC == 0:
            return INF
        return QNAN if s & QBIT else SNAN
    return NORMAL


def is_nan(c: int) -> bool:
    return c == QNAN or c == SNAN


def pack(sign: int, e: int, sig: int) -> int:
    return (sign << 79) | (e << 64) | sig


def exact(x: int) -> tuple[int, int, int]:
    """A finite value as (sign, m, e) with value (-1)^sign * m * 2^e."""
    e = (x >> 64) & EMAX_FIELD
    return x >> 79, x & M64, (e or 1) - BIAS - 63


def expo(m: int, e: int) -> int:
    """The unbiased exponent of m * 2^e (m > 0)."""
    return m.bit_length() - 1 + e


def pc_bits(cw: int) -> int:
    return _PC_BITS[(cw >> 8) & 3]


def quiet(x: int) -> int:
    return x | QBIT


# ================================================================ rounding
def _up(q: int, rem: int, shift: int, sign: int, rc: int) -> bool:
    if rc == RN:
        half = 1 << (shift - 1)
        return rem > half or (rem == half and q & 1 == 1)
    if rc == RZ:
        return False
    return (rc == RU) != bool(sign)


def _round(sign: int, m: int, e: int, p: int, emin: int, rc: int):
    """Round (-1)^sign * m * 2^e (m > 0) to ``p`` bits with normal exponents
    from ``emin`` (denormals below).  Returns ``(q, lsb, inexact, up, tiny)``:
    the result is q * 2^lsb, q < 2^p (normal iff q >= 2^(p-1)); ``tiny``
    follows after-rounding tininess.  Overflow is the caller's business."""
    x = m.bit_length() - 1 + e
    tiny = x < emin
    lsb = (emin if tiny else x) - p + 1
    shift = lsb - e
    if shift <= 0:
        return m << -shift, lsb, False, False, tiny
    q = m >> shift
    rem = m & ((1 << shift) - 1)
    if rem == 0:
        return q, lsb, False, False, tiny
    up = _up(q, rem, shift, sign, rc)
    if up:
        q += 1
        if q >> p:
            q >>= 1
            lsb += 1
    if tiny and x == emin - 1:
        # after rounding to p bits with an unbounded exponent, is it 2^emin?
        sh = x - p + 1 - e
        if sh > 0:
            q2 = m >> sh
            r2 = m & ((1 << sh) - 1)
            if r2 and _up(q2, r2, sh, sign, rc) and q2 + 1 == 1 << p:
                tiny = False
    return q, lsb, True, up, tiny


def _largest(p: int, emax: int) -> tuple[int, int]:
    return (1 << p) - 1, emax - p + 1


def round_to(sign: int, m: int, e: int, cw: int, fmt=EXT, p: int | None = None, scale_ok: bool = True):
    """Round an exact value to a format: returns ``(q, lsb, flags, up, special)``
    where ``special`` is "inf" for an infinity result (q, lsb then unused).
    Overflow/underflow follow the masks in ``cw``; when unmasked and
    ``scale_ok`` (register destination) the result is scaled by 2^-+24576,
    otherwise the caller must not store it (the flag says why)."""
    fp, emin, emax = fmt
    if p is None:
        p = fp
    rc = (cw >> 10) & 3
    q, lsb, inexact, up, tiny = _round(sign, m, e, p, emin, rc)
    flags = PE if inexact else 0
    if q.bit_length() - 1 + lsb > emax:
        if not cw & OE and scale_ok:
            q, lsb, inexact, up, _ = _round(sign, m, e - BIAS_ADJUST, p, emin, rc)
            if q.bit_length() - 1 + lsb > emax:         # massive overflow: a signed infinity
                return 0, 0, OE | PE, True, "inf"
            return q, lsb, OE | (PE if inexact else 0), up, None
        if not cw & OE:
            return 0, 0, OE, False, "unstored"
        to_inf = rc == RN or (rc == RU and not sign) or (rc == RD and sign)
        if to_inf:
            return 0, 0, OE | PE, True, "inf"
        q, lsb = _largest(p, emax)
        return q, lsb, OE | PE, False, None
    if tiny:
        if not cw & UE:
            if not scale_ok:
                return 0, 0, UE, False, "unstored"
            q, lsb, inexact, up, _ = _round(sign, m, e + BIAS_ADJUST, p, emin, rc)
            return q, lsb, UE | (PE if inexact else 0), up, None
        if inexact:
            flags |= UE
    return q, lsb, flags, up, None


def _pack_ext(sign: int, q: int, lsb: int, p: int) -> int:
    sig = q << (64 - p)
    if q == 0:
        return sign << 79
    if q >> (p - 1):
        return pack(sign, lsb + p - 1 + BIAS, sig)
    return pack(sign, 0, sig)


def to_ext(sign: int, m: int, e: int, cw: int, p: int = 64) -> tuple[int, int, bool]:
    """(-1)^sign m 2^e rounded to a register: ``(x80, flags, up)``."""
    if m == 0:
        return sign << 79, 0, False
    q, lsb, flags, up, special = round_to(sign, m, e, cw, EXT, p)
    if special == "inf":
        return pack(sign, EMAX_FIELD, J), flags, up
    return _pack_ext(sign, q, lsb, p), flags, up


def ext_exact(sign: int, m: int, e: int) -> int:
    """A value known to be representable exactly (no rounding, no range)."""
    return to_ext(sign, m, e, 0x37F)[0]


# ======================================================= memory formats
def load_fp(bits: int, fmt) -> tuple[int, int]:
    """m32fp/m64fp -> register: ``(x80, flags)`` (IE for an SNaN, which is
    quieted; DE for a denormal).  Always exact."""
    p, emin, emax = fmt
    ebits = 8 if p == 24 else 11
    fbits = p - 1
    sign = bits >> (ebits + fbits)
    e = (bits >> fbits) & ((1 << ebits) - 1)
    f = bits & ((1 << fbits) - 1)
    if e == (1 << ebits) - 1:
        if f == 0:
            return pack(sign, EMAX_FIELD, J), 0
        x = pack(sign, EMAX_FIELD, J | (f << (63 - fbits)))
        if not f >> (fbits - 1):
            return quiet(x), IE
        return x, 0
    if e == 0:
        if f == 0:
            return sign << 79, 0
        return ext_exact(sign, f, emin - fbits), DE
    return ext_exact(sign, f | (1 << fbits), e - emax - fbits), 0


def store_fp(x: int, fmt, cw: int) -> tuple[int | None, int, bool]:
    """Register -> m32fp/m64fp: ``(bits or None if nothing is stored, flags, up)``."""
    p, emin, emax = fmt
    ebits = 8 if p == 24 else 11
    fbits = p - 1
    emask = (1 << ebits) - 1
    c = classify(x)
    sign = x >> 79
    top = sign << (ebits + fbits)
    if c == ZERO_C:
        return top, 0, False
    if c == INF:
        return top | (emask << fbits), 0, False
    if c in (QNAN, SNAN, UNSUPP):
        if c == UNSUPP:
            x, sign, top = INDEFINITE, 1, 1 << (ebits + fbits)
        f = ((x & FRAC) >> (63 - fbits)) | (1 << (fbits - 1))
        flags = IE if c != QNAN else 0
        if flags and not cw & IE:
            return None, flags, False
        return top | (emask << fbits) | f, flags, False
    flags = DE if c == DENORM else 0
    if flags and not cw & DE:
        return None, flags, False
    s, m, e = exact(x)
    q, lsb, f2, up, special = round_to(s, m, e, cw, fmt, scale_ok=False)
    flags |= f2
    if special == "unstored":
        return None, flags, False
    if special == "inf":
        return top | (emask << fbits), flags, up
    if q >> fbits:
        return top | ((lsb + fbits + emax) << fbits) | (q - (1 << fbits)), flags, up
    return top | q, flags, up


def load_m80(b: bytes) -> int:
    return int.from_bytes(b[:10], "little")


# ============================================================== integers
def from_int(v: int) -> int:
    if v == 0:
        return 0
    return ext_exact(1 if v < 0 else 0, abs(v), 0)


def _round_int(sign: int, m: int, e: int, rc: int) -> tuple[int, bool, bool]:
    """|value| rounded to an integer: (n, inexact, up)."""
    if e >= 0:
        return m << e, False, False
    sh = -e
    q = m >> sh
    rem = m & ((1 << sh) - 1)
    if rem == 0:
        return q, False, False
    up = _up(q, rem, sh, sign, rc)
    return q + up, True, up


def to_int(x: int, bits: int, cw: int) -> tuple[int | None, int, bool]:
    """Register -> signed integer of ``bits``: (value or None, flags, up);
    out of range, NaN or infinity is IE with the integer indefinite when
    masked (None when unmasked)."""
    c = classify(x)
    indef = 1 << (bits - 1)
    if c == ZERO_C:
        return 0, 0, False
    if c in (INF, QNAN, SNAN, UNSUPP):
        return (indef if cw & IE else None), IE, False
    flags = DE if c == DENORM else 0
    if flags and not cw & DE:
        return None, flags, False
    s, m, e = exact(x)
    n, inexact, up = _round_int(s, m, e, (cw >> 10) & 3)
    if n > (indef - 1 if not s else indef):
        return (indef if cw & IE else None), flags | IE, False
    if inexact:
        flags |= PE
    v = -n if s else n
    return v & ((1 << bits) - 1), flags, up


def from_bcd(b: int) -> int:
    """m80bcd (as an int) -> register (exact; invalid digits are taken at
    face value, the SDM leaves the result undefined)."""
    v = 0
    for i in range(8, -1, -1):
        byte = (b >> (8 * i)) & 0xFF
        v = v * 100 + (byte >> 4) * 10 + (byte & 0xF)
    r = from_int(v)
    if b >> 79:
        r |= SIGN
    return r


BCD_INDEFINITE = 0xFFFFC000000000000000


def to_bcd(x: int, cw: int) -> tuple[int | None, int, bool]:
    c = classify(x)
    if c in (INF, QNAN, SNAN, UNSUPP):
        return (BCD_INDEFINITE if cw & IE else None), IE, False
    sign = x >> 79
    if c == ZERO_C:
        return sign << 79, 0, False
    flags = DE if c == DENORM else 0
    if flags and not cw & DE:
        return None, flags, False
    s, m, e = exact(x)
    n, inexact, up = _round_int(s, m, e, (cw >> 10) & 3)
    if n >= 10 ** 18:
        return (BCD_INDEFINITE if cw & IE else None), flags | IE, False
    out = 0
    for i in range(18):
        n, dgt = divmod(n, 10)
        out |= dgt << (4 * i)
    return out | (sign << 79), flags | (PE if inexact else 0), up


# ============================================================ NaN results
def nan_result(a: int, ca: int, b: int | None = None, cb: int = NORMAL) -> tuple[int, int]:
    """The masked response for an operation with a NaN or unsupported
    operand (SDM vol. 1, table 4-7): ``(result, flags)``."""
    if ca == UNSUPP or cb == UNSUPP:
        return INDEFINITE, IE
    flags = IE if (ca == SNAN or cb == SNAN) else 0
    an, bn = is_nan(ca), is_nan(cb)
    if an and bn:
        if ca != cb:
            return quiet(a if ca == QNAN else b), flags
        ma, mb = a & FRAC, b & FRAC
        if ma != mb:
            return quiet(a if ma > mb else b), flags
        return quiet(a if not a >> 79 else b), flags
    return quiet(a if an else b), flags


# ============================================================ arithmetic
def add(a: int, b: int, cw: int, negate_b: bool = False):
    """a + b (or a - b): ``(result, flags, up)``."""
    ca, cb = classify(a), classify(b)
    if negate_b and cb not in (QNAN, SNAN, UNSUPP):
        b ^= SIGN
    if ca >= QNAN or cb >= QNAN:
        r, f = nan_result(a, ca, b, cb)
        return r, f, False
    flags = DE if (ca == DENORM or cb == DENORM) else 0
    sa, sb = a >> 79, b >> 79
    if ca == INF or cb == INF:
        if ca == INF and cb == INF and sa != sb:
            return INDEFINITE, flags | IE, False
        return (a if ca == INF else b), flags, False
    rc = (cw >> 10) & 3
    if ca == ZERO_C and cb == ZERO_C:
        return ((sa if sa == sb else int(rc == RD)) << 79), flags, False
    _, ma, ea = exact(a)
    _, mb, eb = exact(b)
    e = min(ea, eb)
    va = (ma << (ea - e)) * (-1 if sa else 1)
    vb = (mb << (eb - e)) * (-1 if sb else 1)
    v = va + vb
    if v == 0:
        return int(rc == RD) << 79, flags, False
    r, f, up = to_ext(int(v < 0), abs(v), e, cw, pc_bits(cw))
    return r, flags | f, up


def mul(a: int, b: int, cw: int):
    ca, cb = classify(a), classify(b)
    if ca >= QNAN or cb >= QNAN:
        r, f = nan_result(a, ca, b, cb)
        return r, f, False
    flags = DE if (ca == DENORM or cb == DENORM) else 0
    s = (a ^ b) >> 79
    if ca == INF or cb == INF:
        if ca == ZERO_C or cb == ZERO_C:
            return INDEFINITE, flags | IE, False
        return pack(s, EMAX_FIELD, J), flags, False
    if ca == ZERO_C or cb == ZERO_C:
        return s << 79, flags, False
    _, ma, ea = exact(a)
    _, mb, eb = exact(b)
    r, f, up = to_ext(s, ma * mb, ea + eb, cw, pc_bits(cw))
    return r, flags | f, up


def _quotient(ma: int, ea: int, mb: int, eb: int, p: int) -> tuple[int, int]:
    """ma 2^ea / mb 2^eb to p+2 bits with a sticky bit: (m, e)."""
    k = max(0, p + 3 + mb.bit_length() - ma.bit_length())
    q, r = divmod(ma << k, mb)
    return (q << 1) | (r != 0), ea - eb - k - 1


def div(a: int, b: int, cw: int):
    ca, cb = classify(a), classify(b)
    if ca >= QNAN or cb >= QNAN:
        r, f = nan_result(a, ca, b, cb)
        return r, f, False
    flags = DE if (ca == DENORM or cb == DENORM) else 0
    s = (a ^ b) >> 79
    if ca == INF:
        if cb == INF:
            return INDEFINITE, flags | IE, False
        return pack(s, EMAX_FIELD, J), flags, False
    if cb == INF:
        return s << 79, flags, False
    if cb == ZERO_C:
        if ca == ZERO_C:
            return INDEFINITE, flags | IE, False
        return pack(s, EMAX_FIELD, J), flags | ZE, False
    if ca == ZERO_C:
        return s << 79, flags, False
    _, ma, ea = exact(a)
    _, mb, eb = exact(b)
    p = pc_bits(cw)
    m, e = _quotient(ma, ea, mb, eb, p)
    r, f, up = to_ext(s, m, e, cw, p)
    return r, flags | f, up


def sqrt(a: int, cw: int):
    ca = classify(a)
    if ca >= QNAN:
        r, f = nan_result(a, ca)
        return r, f, False
    s = a >> 79
    flags = DE if ca == DENORM else 0
    if ca == ZERO_C:
        return a, 0, False
    if s:
        return INDEFINITE, flags | IE, False
    if ca == INF:
        return a, 0, False
    _, m, e = exact(a)
    p = pc_bits(cw)
    if e & 1:
        m <<= 1
        e -= 1
    k = max(0, (2 * (p + 3) - m.bit_length()) // 2 + 1)
    mm = m << (2 * k)
    root = isqrt(mm)
    sticky = root * root != mm
    r, f, up = to_ext(0, (root << 1) | sticky, (e - 2 * k) // 2 - 1, cw, p)
    return r, flags | f, up


def round_int(a: int, cw: int):
    """FRNDINT: ``(result, flags, up)``."""
    ca = classify(a)
    if ca >= QNAN:
        r, f = nan_result(a, ca)
        return r, f, False
    if ca in (ZERO_C, INF):
        return a, 0, False
    flags = DE if ca == DENORM else 0
    s, m, e = exact(a)
    n, inexact, up = _round_int(s, m, e, (cw >> 10) & 3)
    if inexact:
        flags |= PE
    if n == 0:
        return s << 79, flags, up
    return ext_exact(s, n, 0), flags, up


def scale(a: int, b: int, cw: int):
    """FSCALE: a * 2^trunc(b)."""
    ca, cb = classify(a), classify(b)
    if ca >= QNAN or cb >= QNAN:
        r, f = nan_result(a, ca, b, cb)
        return r, f, False
    flags = DE if (ca == DENORM or cb == DENORM) else 0
    if cb == INF:
        if b >> 79:                                   # * 2^-inf
            if ca == INF:
                return INDEFINITE, flags | IE, False
            return (a >> 79) << 79, flags, False
        if ca == ZERO_C:
            return INDEFINITE, flags | IE, False
        return pack(a >> 79, EMAX_FIELD, J), flags, False
    if ca in (ZERO_C, INF):
        return a, flags, False
    sb, mb, eb = exact(b) if cb != ZERO_C else (0, 0, 0)
    n = (mb >> -eb if eb < 0 else mb << min(eb, 40)) if mb else 0
    n = min(n, 1 << 20)
    if sb:
        n = -n
    s, m, e = exact(a)
    r, f, up = to_ext(s, m, e + n, cw)
    return r, flags | f, up


def extract(a: int):
    """FXTRACT: ``(exponent, significand, flags)`` (NaN: both the NaN)."""
    ca = classify(a)
    if ca >= QNAN:
        r, f = nan_result(a, ca)
        return r, r, f
    s = a >> 79
    if ca == ZERO_C:
        return NEG_INF, a, ZE
    if ca == INF:
        return POS_INF, a, 0
    flags = DE if ca == DENORM else 0
    _, m, e = exact(a)
    x = expo(m, e)
    return from_int(x), ext_exact(s, m, e - x), flags


def partial_remainder(a: int, b: int, cw: int, nearest: bool):
    """FPREM (``nearest`` False) / FPREM1: ``(result, flags, q, complete)``;
    ``q`` holds the low quotient bits (C0=Q2, C3=Q1, C1=Q0) when complete."""
    ca, cb = classify(a), classify(b)
    if ca >= QNAN or cb >= QNAN:
        r, f = nan_result(a, ca, b, cb)
        return r, f, 0, True
    flags = DE if (ca == DENORM or cb == DENORM) else 0
    if ca == INF or cb == ZERO_C:
        return INDEFINITE, flags | IE, 0, True
    if ca == ZERO_C or cb == INF:
        return a, flags, 0, True
    sa, ma, ea = exact(a)
    _, mb, eb = exact(b)
    d = expo(ma, ea) - expo(mb, eb)
    e = min(ea, eb)
    A = ma << (ea - e)
    B = mb << (eb - e)
    if d < 64:
        q, r = divmod(A, B)
        if nearest and (2 * r > B or (2 * r == B and q & 1)):
            q += 1
            r -= B
        complete = True
    else:
        B <<= d - REM_N
        q, r = divmod(A, B)
        complete = False
    sign = sa ^ (r < 0)
    if r == 0:
        return sa << 79, flags, q, complete
    res, f, _ = to_ext(sign, abs(r), e, cw)
    return res, flags | (f & ~PE), q, complete


REM_N = 32        # FPREM/FPREM1 reduce the exponent by D - N per step when D >= 64 (the SDM: 32..63)


# =============================================================== compares
def compare(a: int, b: int, quiet_nan: bool) -> tuple[str, int]:
    """``("lt"|"eq"|"gt"|"un", flags)``; a QNaN is IE unless ``quiet_nan``."""
    ca, cb = classify(a), classify(b)
    if ca == UNSUPP or cb == UNSUPP:
        return "un", IE
    if is_nan(ca) or is_nan(cb):
        sn = ca == SNAN or cb == SNAN
        return "un", IE if (sn or not quiet_nan) else 0
    flags = DE if (ca == DENORM or cb == DENORM) else 0
    va, vb = _key(a, ca), _key(b, cb)
    return ("lt" if va < vb else "gt" if va > vb else "eq"), flags


def _key(x: int, c: int):
    """A sortable key for ordered values: (class rank, scaled value)."""
    s = x >> 79
    if c == ZERO_C:
        return (0, 0)
    if c == INF:
        return (-1 if s else 1, 0)
    _, m, e = exact(x)
    v = m << (e + 16446)           # exact (16382 + 63 + 1 keeps every exponent >= 0)
    return (0, -v if s else v)


# ============================================ transcendentals (fixed point)
_pi_cache: list = [0, 0]      # [bits, value]
_ln2_cache: list = [0, 0]


def _atan_inv(n: int, w: int) -> int:
    """atan(1/n) * 2^w."""
    x = (1 << w) // n
    total = x
    n2 = n * n
    k = 1
    sign = -1
    while x:
        x //= n2
        total += sign * (x // (2 * k + 1))
        sign = -sign
        k += 1
    return total


def pi_fixed(w: int) -> int:
    if _pi_cache[0] < w:
        g = w + 32
        _pi_cache[:] = [w, (16 * _atan_inv(5, g) - 4 * _atan_inv(239, g)) >> 32]
    return _pi_cache[1] >> (_pi_cache[0] - w)


def ln2_fixed(w: int) -> int:
    if _ln2_cache[0] < w:
        g = w + 32
        _ln2_cache[:] = [w, (2 * _atanh_fixed((1 << g) // 3, g)) >> 32]
    return _ln2_cache[1] >> (_ln2_cache[0] - w)


def _atanh_fixed(u: int, w: int) -> int:
    """atanh(u) for fixed-point |u| <= 1/2."""
    if u < 0:
        return -_atanh_fixed(-u, w)
    u2 = (u * u) >> w
    term = u
    total = u
    k = 3
    while term:
        term = (term * u2) >> w
        total += term // k
        k += 2
    return total


def _sin_cos_fixed(r: int, w: int) -> tuple[int, int]:
    """sin and cos of fixed-point r, |r| <= pi/4."""
    r2 = (r * r) >> w
    s = term = r
    k = 1
    while term:
        term = -(term * r2 >> w) // ((2 * k) * (2 * k + 1))
        s += term
        k += 1
    c = term = 1 << w
    k = 1
    while term:
        term = -(term * r2 >> w) // ((2 * k - 1) * (2 * k))
        c += term
        k += 1
    return s, c


def _atan_fixed(t: int, w: int) -> int:
    """atan of fixed-point 0 <= t <= 1."""
    one = 1 << w
    halvings = 4
    for _ in range(halvings):
        t = (t << w) // (one + isqrt(one * one + t * t))
    t2 = (t * t) >> w
    term = t
    total = t
    k = 3
    sign = -1
    while term:
        term = (term * t2) >> w
        total += sign * (term // k)
        sign = -sign
        k += 2
    return total << halvings


def _fixed(m: int, e: int, w: int) -> int:
    """m 2^e in fixed point with w fraction bits (truncated)."""
    sh = e + w
    return m << sh if sh >= 0 else m >> -sh


def _from_fixed(sign: int, v: int, w: int, cw: int, exact_value: bool = False):
    """Round a fixed-point approximation: a sticky bit marks it inexact."""
    if v == 0:
        return sign << 79, (0 if exact_value else PE), False
    if exact_value:
        return to_ext(sign, v, -w, cw)
    return to_ext(sign, (v << 1) | 1, -w - 1, cw)


TRIG_LIMIT = 63             # |x| >= 2^63: out of range, C2 set, ST(0) unchanged


def _working(m: int, e: int) -> int:
    return 192 + max(0, -expo(m, e))


def trig(a: int, cw: int, which: str):
    """FSIN/FCOS/FSINCOS/FPTAN core: ``(results, flags, in_range)`` where
    results is (sin,) (cos,) (sin, cos) or (tan,)."""
    ca = classify(a)
    n = 2 if which == "sincos" else 1
    if ca >= QNAN:
        r, f = nan_result(a, ca)
        return (r,) * n, f, True
    if ca == INF:
        return (INDEFINITE,) * n, IE, True
    flags = DE if ca == DENORM else 0
    s, m, e = (a >> 79, 0, 0) if ca == ZERO_C else exact(a)
    if m and expo(m, e) >= TRIG_LIMIT:
        return (), flags, False
    if m == 0:
        zero = s << 79
        return {"sin": (zero,), "cos": (ONE,), "sincos": (zero, ONE), "tan": (zero,)}[which], 0, True
    w = _working(m, e)
    wr = w + 64 + 80
    x = _fixed(m, e, wr)
    half_pi = pi_fixed(wr) >> 1
    k = (2 * x + half_pi) // (2 * half_pi)           # nearest multiple of pi/2
    r = x - k * half_pi
    rr = r >> (wr - w) if r >= 0 else -((-r) >> (wr - w))
    sn, cs = _sin_cos_fixed(rr, w)
    sin_v, cos_v = [(sn, cs), (cs, -sn), (-sn, -cs), (-cs, sn)][k & 3]
    if s:                                            # sin(-x) = -sin(x)
        sin_v = -sin_v
    out = []
    for kind in {"sin": "s", "cos": "c", "sincos": "sc", "tan": "t"}[which]:
        if kind == "s":
            v = sin_v
        elif kind == "c":
            v = cos_v
        else:
            v = (abs(sin_v) << w) // abs(cos_v)
            if (sin_v < 0) != (cos_v < 0):
                v = -v
        r80, f, _ = _from_fixed(int(v < 0), abs(v), w, cw)
        flags |= f
        out.append(r80)
    return tuple(out), flags, True


def atan2(y: int, x: int, cw: int):
    """FPATAN: atan(y / x) with the quadrant of (x, y)."""
    cy, cx = classify(y), classify(x)
    if cy >= QNAN or cx >= QNAN:
        r, f = nan_result(y, cy, x, cx)
        return r, f
    flags = DE if (cx == DENORM or cy == DENORM) else 0
    sy, sx = y >> 79, x >> 79
    w = 192
    pi = pi_fixed(w)
    if cy == ZERO_C or cx == INF and cy != INF:
        v = pi if sx else 0                           # +-0 or +-pi
        if v == 0:
            return sy << 79, flags
        r, f, _ = _from_fixed(sy, v, w, cw)
        return r, flags | f
    if cx == ZERO_C or cy == INF and cx != INF:
        r, f, _ = _from_fixed(sy, pi >> 1, w, cw)
        return r, flags | f
    if cy == INF and cx == INF:
        v = 3 * pi // 4 if sx else pi // 4
        r, f, _ = _from_fixed(sy, v, w, cw)
        return r, flags | f
    _, my, ey = exact(y)
    _, mx, ex = exact(x)
    d = expo(my, ey) - expo(mx, ex)
    if d <= 0:                                        # |y/x| < 2: small angle possible
        w = 192 + max(0, -d)
        t = _fixed_ratio(my, ey, mx, ex, w)
        if t <= (1 << w):
            a = _atan_fixed(t, w)
        else:
            a = (pi_fixed(w) >> 1) - _atan_fixed(_fixed_ratio(mx, ex, my, ey, w), w)
    else:
        a = (pi_fixed(w) >> 1) - _atan_fixed(_fixed_ratio(mx, ex, my, ey, w), w)
    if sx:
        a = pi_fixed(w) - a
    r, f, _ = _from_fixed(sy, a, w, cw)
    return r, flags | f


def _fixed_ratio(mn: int, en: int, md: int, ed: int, w: int) -> int:
    sh = en - ed + w
    if sh >= 0:
        return (mn << sh) // md
    return mn // (md << -sh)


def f2xm1(a: int, cw: int):
    ca = classify(a)
    if ca >= QNAN:
        return nan_result(a, ca)
    if ca == ZERO_C:
        return a, 0
    if ca == INF:
        return (pack(1, BIAS, J) if a >> 79 else POS_INF), 0    # -inf -> -1, +inf -> +inf
    flags = DE if ca == DENORM else 0
    s, m, e = exact(a)
    if expo(m, e) >= 6:          # |x| >= 64, far outside [-1, 1] (undefined): the limit
        if s:
            return pack(1, BIAS, J), flags | PE
        return to_ext(0, 1, 1 << 20, cw)[:2]
    w = _working(m, e) + 8 * max(0, expo(m, e) + 1)
    y = (_fixed(m, e, w) * ln2_fixed(w)) >> w         # x ln 2
    if s:
        y = -y
    total = term = y
    k = 2
    while term:
        term = (term * y >> w) // k if term * y >= 0 else -((-(term * y) >> w) // k)
        total += term
        k += 1
    r, f, _ = _from_fixed(int(total < 0), abs(total), w, cw)
    return r, flags | f


def _log2_fixed(m: int, e: int, w: int) -> int:
    """log2(m 2^e) in fixed point (m 2^e > 0)."""
    x = expo(m, e)
    f = _fixed(m, -(m.bit_length() - 1), w)            # significand in [1, 2)
    one = 1 << w
    u = ((f - one) << w) // (f + one)
    ln_f = 2 * _atanh_fixed(u, w)
    return (x << w) + (ln_f << w) // ln2_fixed(w)


def yl2x(y: int, x: int, cw: int, plus_one: bool):
    """FYL2X (``plus_one`` False): y * log2(x); FYL2XP1: y * log2(x + 1)."""
    cy, cx = classify(y), classify(x)
    if cy >= QNAN or cx >= QNAN:
        return nan_result(x, cx, y, cy)
    flags = DE if (cx == DENORM or cy == DENORM) else 0
    sx, sy = x >> 79, y >> 79
    if plus_one:
        if cx == ZERO_C:
            if cy == INF:
                return INDEFINITE, flags | IE
            return ((sx ^ sy) << 79), flags
        if cx == INF or cy == INF and cx == ZERO_C:
            return INDEFINITE, flags | IE
        _, mx, ex = exact(x)
        if sx and expo(mx, ex) >= 0:                    # x <= -1: undefined/invalid
            return INDEFINITE, flags | IE
        if cy == INF:
            return pack(sy ^ sx, EMAX_FIELD, J), flags
        if cy == ZERO_C:
            return ((sx ^ sy) << 79), flags
        if expo(mx, ex) >= -2:                          # outside the SDM's range: log2 of 1 + x exactly
            w = 256
            if ex < 0:
                m1, e1 = (1 << -ex) + (-mx if sx else mx), ex
            else:
                m1, e1 = 1 + (-(mx << ex) if sx else mx << ex), 0
            lg = _log2_fixed(m1, e1, w)
        else:                                           # ln(1 + x) = 2 atanh(x / (2 + x)), |u| < 1/7
            w = 256 + max(0, -expo(mx, ex))
            xf = _fixed(mx, ex, w) * (-1 if sx else 1)
            u = (xf << w) // ((2 << w) + xf) if xf >= 0 else -((-xf << w) // ((2 << w) + xf))
            ln = 2 * _atanh_fixed(u, w)
            lg = (ln << w) // ln2_fixed(w) if ln >= 0 else -((-ln << w) // ln2_fixed(w))
    else:
        if sx and cx != ZERO_C:
            return INDEFINITE, flags | IE
        if cx == ZERO_C:
            if cy == ZERO_C:
                return INDEFINITE, flags | IE
            if cy == INF:
                return pack(sy ^ 1, EMAX_FIELD, J), flags
            return pack(sy ^ 1, EMAX_FIELD, J), flags | ZE
        if cx == INF:
            if cy == ZERO_C:
                return INDEFINITE, flags | IE
            return pack(sy, EMAX_FIELD, J), flags
        _, mx, ex = exact(x)
        if mx == 1 << (mx.bit_length() - 1) and expo(mx, ex) == 0:      # x == 1: log is exactly 0
            if cy == INF:
                return INDEFINITE, flags | IE
            return ((sy ^ int(((cw >> 10) & 3) == RD)) << 79) if cy != ZERO_C else (sy << 79), flags
        w = 256
        lg = _log2_fixed(mx, ex, w)
        if cy == INF:
            return pack(sy ^ int(lg < 0), EMAX_FIELD, J), flags
        if cy == ZERO_C:
            return ((sy ^ int(lg < 0)) << 79), flags
    _, my, ey = exact(y)
    sign = sy ^ int(lg < 0)
    r, f, _ = to_ext(sign, (abs(lg) * my << 1) | 1, ey - w - 1, cw)
    return r, flags | f


CONSTANTS = {
    # FLD1 FLDL2T FLDL2E FLDPI FLDLG2 FLDLN2 FLDZ: (sign, 66-bit-rounded source)
    "1": ONE,
    "z": 0,
}


def constant(name: str, cw: int) -> int:
    """FLDL2T/FLDL2E/FLDPI/FLDLG2/FLDLN2 rounded by RC (the P6 rounds its
    internal 66-bit constants; tvmm rounds the exact value, which gives the
    same 64-bit result in every mode)."""
    w = 256
    if name == "pi":
        v = pi_fixed(w)
    elif name == "ln2":
        v = ln2_fixed(w)
    elif name == "l2e":
        v = (1 << (2 * w)) // ln2_fixed(w)
    elif name == "lg2":
        v = (ln2_fixed(w) << w) // _ln10_fixed(w)
    else:                                                 # l2t
        v = (_ln10_fixed(w) << w) // ln2_fixed(w)
    return to_ext(0, (v << 1) | 1, -w - 1, cw)[0]


def _ln10_fixed(w: int) -> int:
    g = w + 16
    # ln 10 = 3 ln 2 + ln(10/8) = 3 ln 2 + 2 atanh(1/9)
    return (3 * ln2_fixed(g) + 2 * _atanh_fixed((1 << g) // 9, g)) >> 16
