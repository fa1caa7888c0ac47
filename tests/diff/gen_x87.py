"""Generator of x87 snippets for the differential tests (``test_diff_x87.py``).

A snippet is: FNINIT; FLDCW with a random control word (every exception
masked, random precision and rounding control); FLD m80 of 1-6 operands
drawn from a pool biased to special values (group ``mmx``: MOVQ of MM0-MM7
instead); 1-6 instructions of one group; nothing else.  The data page holds the operands (0x2000 + 16k) and receives
stores (0x2800 + 16k).  Compared (``compare.fpu_differences``): FCW, FSW
(condition codes the SDM leaves undefined after the last instruction are
masked), the tag word, every non-empty physical register, the GPRs, EFLAGS
and the data page.

The generator tracks the stack depth and never underflows or overflows the
register stack, and never produces encodings unicorn 2.1.4 (QEMU 5.0's x87)
gets wrong; each exclusion is listed in ``UNICORN_EXCLUSIONS`` with the
SDM's rule; tests/machine/test_x87*.py cover those cases directly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .snippet import DATA_BASE, PAGE, Snippet

UNICORN_EXCLUSIONS = {
    "FXSAVE": "QEMU 5.0 does not record FOP or FDP/FDS (SDM vol. 1, 8.1.8) nor FIP for FNOP, has CS = 0 in "
              "its flat set-up, "
              "stores MXCSR_MASK 0xFFFF (this CPU has no SSE: zeros) and FSW without exception flags; "
              "after FXSAVE (generated when the last x87 instruction is a non-control one) those fields "
              "are cleared in memory by the snippet; FCW, TOP, abridged tags, FIP and ST0-7 are compared",
    "MMX bits 64-79": "QEMU 5.0 does not set the sign and exponent of Ri to ones when an MMX instruction "
                      "writes MMi (SDM vol. 1, 9.5.1); the mmx group compares bits 0-63 of R0-R7 (tags and "
                      "TOP are compared); tests/machine/test_mmx.py checks bits 64-79",
    "exception flags": "QEMU 5.0 does not copy softfloat's exception flags to FSW (IE DE ZE OE UE PE, SF, "
                       "ES, B: added in QEMU 5.2); FSW bits 0-7 and 15 are not compared (TOP and C0-C3 are)",
    "FCW bit 6": "reserved, reads as 1 after FLDCW on Intel parts (as Bochs models it); QEMU stores it as "
                 "written: the generated control words have it set",
    "stack faults": "QEMU 5.0 does not detect x87 stack overflow/underflow (SDM vol. 1, 8.5.1.1: IE+SF, "
                    "C1, masked response the indefinite); never generated",
    "unmasked exceptions": "QEMU 5.0 stores results and pops even for unmasked IE/ZE/DE (SDM vol. 1, 4.9.2: "
                           "no result is stored); every exception is masked here",
    "unsupported encodings": "QEMU 5.0 treats unnormals/pseudo-NaNs/pseudo-infinities as numbers (SDM vol. 1, "
                             "8.2.2: invalid operands on the 387 and later); not generated",
    "pseudo-denormals": "QEMU 5.0 mishandles the J=1, exponent 0 encoding; not generated",
    "FPREM/FPREM1": "QEMU 5.0 computes them in host double precision (the SDM: exact); not generated",
    "FSCALE": "QEMU 5.0 rounds FSCALE's result to the precision control (SDM vol. 1, 8.1.5.2: PC affects only "
              "add/sub/mul/div/sqrt) returns an SNaN operand unquieted and, for ST(1) = +-infinity, rounds the "
              "infinity by RC (SDM table: exactly +-infinity or +-0); generated with PC = 64 bits right after "
              "the loads, for non-NaN operands and a finite ST(1)",
    "FXTRACT": "QEMU 5.0 gets NaN, zero, infinity and denormal operands wrong; generated for normal ST(0) only",
    "constants": "QEMU 5.0 ignores RC in FLDPI/FLDL2E/FLDL2T/FLDLG2/FLDLN2 (the SDM, and Bochs: rounded by RC); "
                 "generated with round-to-nearest only",
    "FLD m32fp/m64fp SNaN": "QEMU 5.0 loads it unquieted (SDM FLD: IE, masked response the QNaN); loads "
                            "are generated with the quiet bit set (arithmetic memory operands keep SNaNs)",
    "FST m32fp/m64fp of an SNaN": "QEMU 5.0 stores it unquieted (SDM FST: IE, masked response the QNaN); "
                                  "the loadstore group loads no SNaN",
    "FBSTP": "QEMU 5.0 stores +0 for a negative value that rounds to zero and garbage instead of the BCD "
             "indefinite for NaN, infinity or |x| >= 10^18; generated for known operands 1 <= |x| < 2^59",
    "FFREE ST(i>0)": "QEMU 5.0's FST/FSTP ST(i) leaves a freed ST(i) tagged empty; only FFREE ST(0) + "
                     "FINCSTP is generated",
    "C1": "QEMU 5.0 never sets C1 for a result rounded up (SDM vol. 1, 8.1.3.3) and leaves it where the SDM "
          "says 'set to 0' (compares, FCOMI, FCMOV); C1 is compared only after FXAM (the sign)",
    "transcendentals": "QEMU 5.0 computes FSIN/FCOS/FSINCOS/FPTAN/FPATAN/F2XM1/FYL2X/FYL2XP1 in host double "
                       "precision (flushing denormals, mishandling NaNs and signed zeros) and sets no PE/UE: "
                       "operands are doubles inside the SDM's domain, away from cancellation, results are "
                       "compared within 2^13 ulps (2^16 for FYL2XP1, whose 1 + x is rounded to double), "
                       "PE/UE/C1 masked; specials and precision are covered against exact references in "
                       "tests/machine/test_x87_float80.py",
}

FNINIT = b"\xdb\xe3"


@dataclass(frozen=True)
class X87Snippet(Snippet):
    fpu_compare: bool = True
    sw_mask: int = 0xFFFF
    approx: dict = field(default_factory=dict)      # physical register -> allowed ulps
    mmx_low64: bool = False                         # compare only the MMX part of R0-R7
    parts: tuple = ()

    def __repr__(self):
        return f"<X87Snippet {self.label} code={self.code.hex()}>"


# =============================================================== operands
def _pack(sign, e, sig):
    return (sign << 79) | (e << 64) | sig


def value80(rng: random.Random, snan: bool = True) -> int:
    """An 80-bit operand, biased to the edges."""
    s = rng.getrandbits(1)
    k = rng.random()
    if not snan and 0.14 <= k < 0.17:
        k = 0.5
    J = 1 << 63
    if k < 0.06:
        return _pack(s, 0, 0)                                       # zero
    if k < 0.10:
        return _pack(s, 0x7FFF, J)                                  # infinity
    if k < 0.14:
        return _pack(s, 0x7FFF, J | (1 << 62) | rng.getrandbits(62) * rng.getrandbits(1))    # QNaN
    if k < 0.17:
        return _pack(s, 0x7FFF, J | (rng.getrandbits(62) or 1))                              # SNaN
    if k < 0.22:
        return _pack(s, 0, rng.getrandbits(63) >> rng.randrange(63) or 1)                  # denormal
    if k < 0.30:                                                     # extreme exponents
        e = rng.choice([1, 2, 3, 63, 64, 0x7FFE, 0x7FFD, 0x7FBE, 16383 - 16382 + rng.randrange(8)])
        return _pack(s, e, J | rng.getrandbits(63))
    if k < 0.45:                                                     # small integers
        v = rng.choice([1, 2, 3, 5, 7, 10, 100, 255, 1000, 32767, 32768, 65535, 1 << 31, (1 << 63) - 1])
        return _int80(v, s)
    if k < 0.55:                                                     # a single/double value
        bits = rng.choice([24, 53])
        sig = J | (rng.getrandbits(bits - 1) << (64 - bits))
        return _pack(s, 16383 + rng.randrange(-140, 140), sig)
    if k < 0.65:                                                     # near halfway points
        sig = J | (rng.getrandbits(22) << 41) | (1 << 40) | rng.choice([0, 1, (1 << 11) - 1, 1 << 10])
        return _pack(s, 16383 + rng.randrange(-20, 20), sig)
    return _pack(s, 16383 + rng.randrange(-70, 70), J | rng.getrandbits(63))


def _int80(v, s=0):
    if v == 0:
        return s << 79
    n = v.bit_length()
    return _pack(s, 16383 + n - 1, v << (64 - n))


def _fp_bits(rng, bits):
    """A random m32fp/m64fp pattern with specials."""
    ebits, fbits = (8, 23) if bits == 32 else (11, 52)
    s = rng.getrandbits(1)
    k = rng.random()
    emax = (1 << ebits) - 1
    if k < 0.08:
        e, f = 0, 0
    elif k < 0.16:
        e, f = 0, rng.getrandbits(fbits) >> rng.randrange(fbits) or 1
    elif k < 0.22:
        e, f = emax, 0
    elif k < 0.30:
        e, f = emax, rng.getrandbits(fbits) or 1
    elif k < 0.4:
        e, f = rng.choice([1, emax - 1]), rng.getrandbits(fbits)
    else:
        e, f = (1 << (ebits - 1)) - 1 + rng.randrange(-30, 30), rng.getrandbits(fbits)
    return (s << (bits - 1)) | (e << fbits) | f


def _int_bits(rng, bits):
    v = rng.choice([0, 1, -1, 2, 100, -100, (1 << (bits - 1)) - 1, -(1 << (bits - 1)),
                    rng.getrandbits(bits) - (1 << (bits - 1)), rng.randrange(-1000, 1000)])
    return v & ((1 << bits) - 1)


def _bcd(rng):
    digits = rng.randrange(1, 19)
    v = rng.randrange(10 ** digits)
    out = 0
    for i in range(18):
        v, d = divmod(v, 10)
        out |= d << (4 * i)
    return out | (rng.getrandbits(1) << 79)


# ================================================================ encoding
class Gen:
    def __init__(self, rng: random.Random, mode: int):
        self.rng = rng
        self.mode = mode
        self.code = bytearray()
        self.parts: list = []
        self.data = bytearray(rng.getrandbits(8) for _ in range(PAGE))
        self.depth = 0
        self.load_slot = 0
        self.store_slot = 0
        self.desc: list[str] = []
        self.cc_defined = False        # the last instruction defines C0, C2, C3
        self.c1_defined = False        # ... and C1 (besides rounding)
        self.approx: set[int] = set()  # physical registers holding a transcendental result
        self.top = 0
        self.transcendental = False
        self.last_control = False      # the last x87 instruction is a control one (FIP not updated)
        self.fxsaved = False

    def emit(self, b: bytes, what: str):
        self.known = None              # the stack's values, top first, while only loads ran
        self.parts.append((len(self.code), len(b)))
        self.code += b
        self.desc.append(what)

    def mem(self, op: int, reg: int, addr: int, prefix: bytes = b"") -> bytes:
        if self.mode == 32:
            return prefix + bytes([op, (reg << 3) | 5]) + addr.to_bytes(4, "little")
        return prefix + bytes([op, (reg << 3) | 6]) + (addr & 0xFFFF).to_bytes(2, "little")

    def put(self, value: int, n: int) -> int:
        addr = DATA_BASE + 16 * self.load_slot
        self.load_slot += 1
        self.data[addr - DATA_BASE:addr - DATA_BASE + n] = value.to_bytes(n, "little")
        return addr

    def out(self) -> int:
        addr = DATA_BASE + 0x800 + 32 * self.store_slot
        self.store_slot += 1
        return addr

    # stack bookkeeping
    def push(self, n=1):
        self.depth += n
        self.top = (self.top - n) & 7

    def pop(self, n=1):
        self.depth -= n
        self.top = (self.top + n) & 7


def _i(g: Gen) -> int:
    return g.rng.randrange(g.depth)


# Instruction templates: fn(g) -> bool (False: not possible at this depth).
def t_arith_reg(g: Gen) -> bool:
    if g.depth < 2:
        return False
    i = g.rng.randrange(1, g.depth)
    r = g.rng.randrange(8)
    if r in (2, 3):
        r = g.rng.choice([0, 1, 4, 5, 6, 7])
    op = g.rng.choice([0xD8, 0xDC, 0xDE])
    g.emit(bytes([op, 0xC0 | (r << 3) | i]), f"arith {op:02x}/{r} st({i})")
    if op == 0xDE:
        g.pop()
    g.c1_defined = False
    return True


def t_arith_mem(g: Gen) -> bool:
    if g.depth < 1:
        return False
    r = g.rng.choice([0, 1, 4, 5, 6, 7])
    op = g.rng.choice([0xD8, 0xDC, 0xDA, 0xDE])
    n = {0xD8: 4, 0xDC: 8, 0xDA: 4, 0xDE: 2}[op]
    v = _fp_bits(g.rng, 8 * n) if op in (0xD8, 0xDC) else _int_bits(g.rng, 8 * n)
    g.emit(g.mem(op, r, g.put(v, n)), f"arith {op:02x}/{r} m{8 * n}={v:#x}")
    return True


def t_unary(g: Gen) -> bool:
    if g.depth < 1:
        return False
    b, name = g.rng.choice([(0xE0, "fchs"), (0xE1, "fabs"), (0xFA, "fsqrt"), (0xFC, "frndint")])
    g.emit(bytes([0xD9, b]), name)
    return True


def t_fscale(g: Gen) -> bool:
    """FSCALE (unicorn: only with PC = 64 bits, of known non-NaN operands:
    it returns an SNaN operand unquieted)."""
    if g.depth < 2 or (g.cw >> 8) & 3 != 3 or g.known is None \
            or any((v >> 64) & 0x7FFF == 0x7FFF and v & ((1 << 63) - 1) for v in g.known[:2]) \
            or (g.known[1] >> 64) & 0x7FFF == 0x7FFF:
        return False
    g.emit(b"\xd9\xfd", "fscale")
    return True


def t_fxtract(g: Gen) -> bool:
    """FXTRACT of a known normal ST(0) (unicorn: wrong for NaN, zero, infinity, denormal)."""
    if g.depth > 6 or g.known is None or (g.known[0] >> 64) & 0x7FFF in (0, 0x7FFF):
        return False
    g.emit(b"\xd9\xf4", "fxtract")
    g.push()
    return True


def t_stack(g: Gen) -> bool:
    rng = g.rng
    k = rng.randrange(5)
    if k == 0 and g.depth >= 1:
        i = _i(g)
        g.emit(bytes([0xD9, 0xC8 | i]), f"fxch st({i})")
    elif k == 1 and 1 <= g.depth < 7:
        i = _i(g)
        g.emit(bytes([0xD9, 0xC0 | i]), f"fld st({i})")
        g.push()
    elif k == 2 and g.depth >= 2:
        i = _i(g)
        op, r = rng.choice([(0xDD, 2), (0xDD, 3)])
        g.emit(bytes([op, 0xC0 | (r << 3) | i]), f"fst{'p' if r == 3 else ''} st({i})")
        if r == 3:
            g.pop()
    elif k == 3 and g.depth >= 1:
        g.emit(b"\xd9\xe8" if g.depth < 7 else b"\xd9\xd0", "fld1/fnop")
        if g.depth < 7:
            g.push()
        else:
            g.last_control = True        # unicorn: FNOP does not update FIP (excluded before FXSAVE)
    else:
        return False
    return True


def t_const(g: Gen) -> bool:
    """(unicorn: the constants ignore RC; generated with round-to-nearest only)"""
    if g.depth >= 7 or (g.cw >> 10) & 3:
        return False
    b = g.rng.choice([0xE8, 0xE9, 0xEA, 0xEB, 0xEC, 0xED, 0xEE])
    g.emit(bytes([0xD9, b]), f"fld const d9 {b:02x}")
    g.push()
    return True


def t_load(g: Gen) -> bool:
    if g.depth >= 7:
        return False
    rng = g.rng
    kind = rng.choice(["m32", "m64", "i16", "i32", "i64", "bcd"])
    if kind == "m32":
        v = _fp_bits(rng, 32) | 1 << 22          # never an SNaN (see UNICORN_EXCLUSIONS)
        b = g.mem(0xD9, 0, g.put(v, 4))
    elif kind == "m64":
        v = _fp_bits(rng, 64) | 1 << 51
        b = g.mem(0xDD, 0, g.put(v, 8))
    elif kind == "i16":
        v = _int_bits(rng, 16)
        b = g.mem(0xDF, 0, g.put(v, 2))
    elif kind == "i32":
        v = _int_bits(rng, 32)
        b = g.mem(0xDB, 0, g.put(v, 4))
    elif kind == "i64":
        v = _int_bits(rng, 64)
        b = g.mem(0xDF, 5, g.put(v, 8))
    else:
        v = _bcd(rng)
        b = g.mem(0xDF, 4, g.put(v, 10))
    g.emit(b, f"load {kind} {v:#x}")
    g.push()
    return True


def t_store(g: Gen) -> bool:
    if g.depth < 1:
        return False
    rng = g.rng
    op, r, what, pops = rng.choice([
        (0xD9, 2, "fst m32", 0), (0xD9, 3, "fstp m32", 1), (0xDD, 2, "fst m64", 0), (0xDD, 3, "fstp m64", 1),
        (0xDB, 7, "fstp m80", 1), (0xDF, 2, "fist m16", 0), (0xDF, 3, "fistp m16", 1),
        (0xDB, 2, "fist m32", 0), (0xDB, 3, "fistp m32", 1), (0xDF, 7, "fistp m64", 1),
        (0xDF, 6, "fbstp", 1)])
    if what == "fbstp" and (g.known is None or not 16383 <= (g.known[0] >> 64) & 0x7FFF < 16383 + 59):
        return False
    g.emit(g.mem(op, r, g.out()), what)
    if pops:
        g.pop()
    return True


def t_compare(g: Gen) -> bool:
    rng = g.rng
    k = rng.randrange(7)
    if k == 0 and g.depth >= 2:
        i = rng.randrange(1, g.depth)
        r = rng.choice([2, 3])
        op = rng.choice([0xD8, 0xDD])          # FCOM/FCOMP or FUCOM/FUCOMP
        rr = r + (2 if op == 0xDD else 0)
        g.emit(bytes([op, 0xC0 | (rr << 3) | i]), f"fcom/fucom {op:02x}/{rr} st({i})")
        if r == 3:
            g.pop()
    elif k == 1 and g.depth >= 2:
        b = rng.choice([b"\xde\xd9", b"\xda\xe9"])
        g.emit(b, "fcompp/fucompp")
        g.pop(2)
    elif k == 2 and g.depth >= 1:
        op = rng.choice([0xD8, 0xDC, 0xDA, 0xDE])
        r = rng.choice([2, 3])
        n = {0xD8: 4, 0xDC: 8, 0xDA: 4, 0xDE: 2}[op]
        v = _fp_bits(rng, 8 * n) if op in (0xD8, 0xDC) else _int_bits(rng, 8 * n)
        g.emit(g.mem(op, r, g.put(v, n)), f"fcom mem {op:02x}/{r} {v:#x}")
        if r == 3:
            g.pop()
    elif k == 3 and g.depth >= 1:
        b = rng.choice([b"\xd9\xe4", b"\xd9\xe5"])
        g.emit(b, "ftst" if b[1] == 0xE4 else "fxam")
        g.cc_defined = True
        g.c1_defined = b[1] == 0xE5            # FXAM: C1 = sign
        return True
    elif k == 4 and g.depth >= 2:
        i = rng.randrange(1, g.depth)
        op, r = rng.choice([(0xDB, 5), (0xDB, 6), (0xDF, 5), (0xDF, 6)])
        g.emit(bytes([op, 0xC0 | (r << 3) | i]), f"fcomi {op:02x}/{r} st({i})")
        if op == 0xDF:
            g.pop()
        g.flags_defined = True
        return True              # C0 C2 C3 unaffected; C1 "set to 0", which unicorn leaves (excluded)
    elif k == 5 and g.depth >= 2:
        i = rng.randrange(1, g.depth)
        op, r = rng.choice([0xDA, 0xDB]), rng.randrange(4)
        g.emit(bytes([op, 0xC0 | (r << 3) | i]), f"fcmov {op:02x}/{r} st({i})")
        g.c1_defined = False
        return True
    else:
        return False
    g.cc_defined = True                        # C1 "set to 0": unicorn leaves it (excluded)
    return True


def t_control(g: Gen) -> bool:
    rng = g.rng
    k = rng.randrange(6)
    g.last_control = k != 4
    if k == 0:
        g.emit(b"\xdf\xe0", "fnstsw ax")
        g.emit((b"\x66\x25" if g.mode == 32 else b"\x25") + _sw_now(g).to_bytes(2, "little"),
               "and ax, (compared FSW bits)")
    elif k == 1:
        addr = g.out()
        g.emit(g.mem(0xDD, 7, addr), "fnstsw m16")
        g.emit(g.mem(0x81, 4, addr, b"\x66" if g.mode == 32 else b"") + _sw_now(g).to_bytes(2, "little"),
               "and m16, (compared FSW bits)")
    elif k == 2:
        g.emit(g.mem(0xD9, 7, g.out()), "fnstcw m16")
    elif k == 3:
        g.emit(b"\xdb\xe2", "fnclex")
        g.cc_defined = g.c1_defined = False
    elif k == 4 and g.depth >= 1:
        i = 0
        g.emit(bytes([0xDD, 0xC0 | i]), f"ffree st({i})")
        if i:                 # unicorn: FST ST(i) does not mark a freed ST(i) valid again
            return False
        g.emit(b"\xd9\xf7", "fincstp")
        g.pop()
        g.cc_defined = g.c1_defined = False
    elif k == 5:
        g.cw = _cw(rng)
        g.emit(g.mem(0xD9, 5, g.put(g.cw, 2)), "fldcw")
    else:
        return False
    return True


FXSAVE_AREA = DATA_BASE + 0xC00               # 16-byte aligned; zero-filled by generate()


def _and_mem(g: Gen, addr: int, size: int, imm: int) -> bytes:
    """AND size-byte [addr], imm (an 8-bit immediate for words and dwords)."""
    osz = (size == 4) == (g.mode == 16)
    pfx = b"\x66" if size != 1 and osz else b""
    if size == 1:
        return g.mem(0x80, 4, addr, pfx) + bytes([imm])
    return g.mem(0x83, 4, addr, pfx) + bytes([imm & 0xFF])


def t_fxsave(g: Gen) -> bool:
    """FXSAVE, then clear what unicorn does not model the SDM's way (see
    UNICORN_EXCLUSIONS, "FXSAVE"): FOP, FCS, FDP, FDS, MXCSR_MASK, FSW bits 0-7
    and B, and the condition codes the last instruction left undefined."""
    if g.last_control or g.fxsaved:
        return False
    a = FXSAVE_AREA
    g.emit(b"\x0f" + g.mem(0xAE, 0, a), "fxsave")
    g.fxsaved = True
    if g.rng.random() < 0.5:                    # and back: FNINIT, FXRSTOR restore the whole state
        g.emit(FNINIT, "fninit")
        g.emit(b"\x0f" + g.mem(0xAE, 1, a), "fxrstor")
    sw_hi = 0x38 | ((SW_CC & ~C1) >> 8 if g.cc_defined else 0) | (C1 >> 8 if g.c1_defined else 0)
    for addr, size, imm, what in ((a + 2, 1, 0, "fsw low"), (a + 3, 1, sw_hi, "fsw high"), (a + 6, 2, 0, "fop"),
                                  (a + 12, 4, 0, "fcs"), (a + 16, 4, 0, "fdp"), (a + 20, 4, 0, "fds"),
                                  (a + 28, 4, 0, "mxcsr_mask")):
        g.emit(_and_mem(g, addr, size, imm), f"and {what}")
    return True


def _sw_now(g: Gen) -> int:
    """The FSW bits comparable with unicorn at this point (an AND after FNSTSW)."""
    m = 0x3800
    if g.cc_defined:
        m |= SW_CC & ~C1
    if g.c1_defined:
        m |= C1
    return m


def _double(v: float) -> int:
    import struct
    return struct.unpack("<Q", struct.pack("<d", v))[0]


# (opcode byte after D9, name, stack effect, operand ranges: [(lo, hi)] for ST(0)[, ST(1)], ulps)
TRANSCENDENTAL = [
    (0xFE, "fsin", 0, [(-6.0, 6.0)], 1 << 13),
    (0xFF, "fcos", 0, [(-6.0, 6.0)], 1 << 13),
    (0xFB, "fsincos", 1, [(-6.0, 6.0)], 1 << 13),
    (0xF2, "fptan", 1, [(-1.4, 1.4)], 1 << 13),
    (0xF0, "f2xm1", 0, [(0.5, 1.0), ], 1 << 13),
    (0xF3, "fpatan", -1, [(-100.0, 100.0), (-100.0, 100.0)], 1 << 13),
    (0xF1, "fyl2x", -1, [(0.001, 1000.0), (-100.0, 100.0)], 1 << 13),
    (0xF9, "fyl2xp1", -1, [(0.1, 0.29), (-100.0, 100.0)], 1 << 16),
]


def t_transcendental(g: Gen) -> bool:
    """One transcendental on operands loaded as doubles (exact in unicorn's
    host double arithmetic), inside the SDM's domain, away from the
    cancellations double arithmetic suffers."""
    rng = g.rng
    b, name, dd, ranges, ulps = rng.choice(TRANSCENDENTAL)
    for lo, hi in reversed(ranges):              # ST(1) first
        v = rng.uniform(lo, hi)
        if name == "f2xm1" and rng.random() < 0.5:
            v = -v
        if name == "fyl2xp1" and rng.random() < 0.5 and len(ranges) == 2 and (lo, hi) == ranges[0]:
            v = -v
        g.emit(g.mem(0xDD, 0, g.put(_double(v), 8)), f"fld m64 {v!r}")
        g.push()
    g.emit(bytes([0xD9, b]), name)
    if dd > 0:
        g.push()
    elif dd < 0:
        g.pop()
    g.transcendental = True
    g.ulps = ulps
    g.approx.update({g.top, (g.top + 1) & 7})
    return True


MMX_BINARY = {   # 0F xx with Pq,Qq (Pq,Qd for PUNPCKL*)
    0x60: "punpcklbw", 0x61: "punpcklwd", 0x62: "punpckldq", 0x63: "packsswb", 0x64: "pcmpgtb",
    0x65: "pcmpgtw", 0x66: "pcmpgtd", 0x67: "packuswb", 0x68: "punpckhbw", 0x69: "punpckhwd",
    0x6A: "punpckhdq", 0x6B: "packssdw", 0x74: "pcmpeqb", 0x75: "pcmpeqw", 0x76: "pcmpeqd",
    0xD1: "psrlw", 0xD2: "psrld", 0xD3: "psrlq", 0xD5: "pmullw", 0xD8: "psubusb", 0xD9: "psubusw",
    0xDB: "pand", 0xDC: "paddusb", 0xDD: "paddusw", 0xDF: "pandn", 0xE1: "psraw", 0xE2: "psrad",
    0xE5: "pmulhw", 0xE8: "psubsb", 0xE9: "psubsw", 0xEB: "por", 0xEC: "paddsb", 0xED: "paddsw",
    0xEF: "pxor", 0xF1: "psllw", 0xF2: "pslld", 0xF3: "psllq", 0xF5: "pmaddwd", 0xF8: "psubb",
    0xF9: "psubw", 0xFA: "psubd", 0xFC: "paddb", 0xFD: "paddw", 0xFE: "paddd", 0x6F: "movq",
}
SHIFTS = {0xD1, 0xD2, 0xD3, 0xE1, 0xE2, 0xF1, 0xF2, 0xF3}


def _mm_value(rng) -> int:
    k = rng.random()
    if k < 0.3:
        lane = rng.choice([8, 16, 32])
        edge = [0, 1, (1 << (lane - 1)) - 1, 1 << (lane - 1), (1 << lane) - 1, rng.getrandbits(lane)]
        return sum(rng.choice(edge) << (lane * i) for i in range(64 // lane))
    return rng.getrandbits(64)


def t_mmx(g: Gen) -> bool:
    rng = g.rng
    k = rng.random()
    p, q = rng.randrange(8), rng.randrange(8)
    if k < 0.55:
        op = rng.choice(list(MMX_BINARY))
        if rng.random() < 0.3:
            size = 4 if op in (0x60, 0x61, 0x62) else 8
            v = rng.randrange(80) if op in SHIFTS and rng.random() < 0.8 else _mm_value(rng)
            v &= (1 << (8 * size)) - 1
            g.emit(b"\x0f" + g.mem(op, p, g.put(v, size)), f"{MMX_BINARY[op]} mm{p}, m{8 * size}={v:#x}")
        else:
            g.emit(bytes([0x0F, op, 0xC0 | (p << 3) | q]), f"{MMX_BINARY[op]} mm{p}, mm{q}")
    elif k < 0.7:
        op = rng.choice([0x71, 0x72, 0x73])
        r = rng.choice({0x71: [2, 4, 6], 0x72: [2, 4, 6], 0x73: [2, 6]}[op])
        n = rng.choice([0, 1, 7, 8, 15, 16, 31, 32, 63, 64, 65, 200, rng.randrange(256)])
        g.emit(bytes([0x0F, op, 0xC0 | (r << 3) | q, n]), f"shift {op:02x}/{r} mm{q}, {n}")
    elif k < 0.8:
        r = rng.choice([0, 1, 2, 3, 5, 6, 7])
        g.emit(bytes([0x0F, 0x7E, 0xC0 | (p << 3) | r]), f"movd r{r}, mm{p}")
        g.gpr_written = True
    elif k < 0.88:
        r = rng.choice([0, 1, 2, 3, 5, 6, 7])
        g.emit(bytes([0x0F, 0x6E, 0xC0 | (p << 3) | r]), f"movd mm{p}, r{r}")
    elif k < 0.95:
        g.emit(b"\x0f" + g.mem(0x7F, p, g.out()), f"movq m64, mm{p}")
    else:
        g.emit(b"\x0f\x77", "emms")
    return True


def _cw(rng) -> int:
    return 0x7F | (rng.choice([0, 2, 3]) << 8) | (rng.randrange(4) << 10) | (0x1000 if rng.random() < 0.1 else 0)


GROUPS = {
    "arith": ([t_arith_reg, t_arith_mem, t_unary, t_stack], (1, 4)),
    "misc": ([t_fscale, t_fxtract, t_unary, t_const, t_stack], (1, 3)),
    "loadstore": ([t_load, t_store, t_const, t_stack, t_fxsave], (1, 4)),
    "compare": ([t_compare, t_control, t_arith_reg, t_fxsave], (1, 3)),
    "transcendental": ([t_transcendental], (1, 1)),
    "mmx": ([t_mmx], (1, 6)),
}

SW_CC = 0x4700                       # C0 C1 C2 C3
C1 = 0x200


def generate(seed: int, group: str, mode: int = 32) -> X87Snippet:
    rng = random.Random(seed)
    g = Gen(rng, mode)
    g.flags_defined = False
    g.emit(FNINIT, "fninit")
    g.cw = _cw(rng)
    g.emit(g.mem(0xD9, 5, g.put(g.cw, 2)), "fldcw")
    n = rng.randrange(1, 4 if group == "transcendental" else 7)
    loaded: list = []
    if group == "mmx":                       # MM0-MM7 from memory instead of an x87 stack
        n = 0
        for i in range(8):
            v = _mm_value(rng)
            g.emit(b"\x0f" + g.mem(0x6F, i, g.put(v, 8)), f"movq mm{i}, {v:#x}")
    for _ in range(n):
        v = value80(rng, snan=group != "loadstore")
        g.emit(g.mem(0xDB, 5, g.put(v, 10)), f"fld m80 {v:#022x}")
        g.push()
        g.known = loaded = [v] + loaded
    g.cc_defined = g.c1_defined = False
    g.data[FXSAVE_AREA - DATA_BASE:FXSAVE_AREA - DATA_BASE + 512] = bytes(512)
    templates, (lo, hi) = GROUPS[group]
    for _ in range(rng.randint(lo, hi)):
        for _try in range(8):
            t = rng.choice(templates)
            saved = g.cc_defined, g.c1_defined
            if t is not t_control and t is not t_fxsave:   # C0-C3 undefined unless the template says so
                g.cc_defined = g.c1_defined = False
            saved_control = g.last_control
            if t is not t_control and t is not t_fxsave:
                g.last_control = False
            if t(g):
                break
            g.cc_defined, g.c1_defined = saved
            g.last_control = saved_control
    mask = 0xFFFF & ~(0xFF | 0x8000)          # unicorn: no exception flags, SF, ES or B
    if not g.cc_defined:
        mask &= ~(SW_CC & ~C1)
    if not g.c1_defined:
        mask &= ~C1
    approx = {}
    if g.transcendental:
        mask &= ~(0x20 | 0x10 | 0x02 | C1)      # PE UE DE (QEMU computes in double)
        approx = {r: g.ulps for r in g.approx}
    flags_mask = 0xFFFFFFFF if g.flags_defined else 0xFFFFF000 | 0x2
    regs = {"eflags": 0x2}
    if group == "mmx":
        regs.update({r: rng.getrandbits(32) for r in ("eax", "ecx", "edx", "ebx", "ebp", "esi", "edi")})
    return X87Snippet(mode=mode, code=bytes(g.code), regs=regs, data=bytes(g.data),
                      flags_mask=flags_mask, label=f"x87/{group} seed={seed}: " + "; ".join(d for d in g.desc if d),
                      sw_mask=mask, approx=approx, parts=tuple(g.parts), mmx_low64=group == "mmx")
