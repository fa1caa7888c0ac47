"""Lazy condition flags.

Arithmetic instructions do not compute EFLAGS; they record the operation and
its operands in ``cpu.lf_op, lf_a, lf_b, lf_res``.  The six arithmetic flags
are computed only when something reads them.

Invariants:
- ``lf_op == 0`` means ``cpu.eflags`` holds the true arithmetic flags.
- Otherwise the arithmetic bits of ``cpu.eflags`` are stale and the true
  values are ``arith_flags(lf_op, lf_a, lf_b, lf_res)``; every other EFLAGS bit
  (IF, DF, TF, IOPL, ...) is always live in ``cpu.eflags``.
- ``lf_op = kind << 2 | size_index`` with size_index 0/1/2 for 8/16/32 bits.
- ``lf_res`` is stored already truncated to the operand size.
- For INC/DEC, which leave CF alone, ``lf_b`` holds the CF from before.
- For SHL/SHR/SAR (ops/shift.py), ``lf_a`` is the operand before the shift
  and ``lf_b`` the masked, non-zero count (1..31); AF is 0 and OF follows
  unicorn for counts > 1 (see shift.py).
"""

from __future__ import annotations

from .consts import AF, ARITH, CF, OF, PF, SF, ZF

NONE, ADD, ADC, SUB, SBB, LOGIC, INC, DEC, SHL, SHR, SAR = range(11)

SIGN = (0x80, 0x8000, 0x80000000)
MASK = (0xFF, 0xFFFF, 0xFFFFFFFF)
SIZE_INDEX = {1: 0, 2: 1, 4: 2}

# PF is set when the low byte of the result has an even number of ones.
PARITY = tuple(PF if bin(i).count("1") % 2 == 0 else 0 for i in range(256))


def arith_flags(op: int, a: int, b: int, res: int) -> int:
    """The CF/PF/AF/ZF/SF/OF bits for a recorded operation."""
    szi = op & 3
    kind = op >> 2
    sign = SIGN[szi]
    f = PARITY[res & 0xFF]
    if res == 0:
        f |= ZF
    if res & sign:
        f |= SF
    if kind == ADD:
        if res < a:
            f |= CF
        if (a ^ res) & (b ^ res) & sign:
            f |= OF
        f |= (a ^ b ^ res) & AF
    elif kind == SUB:
        if a < b:
            f |= CF
        if (a ^ b) & (a ^ res) & sign:
            f |= OF
        f |= (a ^ b ^ res) & AF
    elif kind == LOGIC:
        pass
    elif kind == INC:
        f |= b & CF
        if res == sign:
            f |= OF
        if res & 0xF == 0:
            f |= AF
    elif kind == DEC:
        f |= b & CF
        if res == sign - 1:
            f |= OF
        if res & 0xF == 0xF:
            f |= AF
    elif kind == ADC:
        mask = MASK[szi]
        cin = (res - a - b) & mask
        if a + b + cin > mask:
            f |= CF
        if (a ^ res) & (b ^ res) & sign:
            f |= OF
        f |= (a ^ b ^ res) & AF
    elif kind == SBB:
        mask = MASK[szi]
        cin = (a - b - res) & mask
        if a < b + cin:
            f |= CF
        if (a ^ b) & (a ^ res) & sign:
            f |= OF
        f |= (a ^ b ^ res) & AF
    elif kind == SHL:
        cf = ((a << b) >> (8 << szi)) & 1
        f |= cf | ((((res >> ((8 << szi) - 1)) ^ cf) & 1) << 11)
    elif kind == SHR:
        t = a >> (b - 1)
        f |= (t & 1) | (((t >> ((8 << szi) - 1)) & 1) << 11)
    elif kind == SAR:
        f |= ((a - ((a & sign) << 1)) >> (b - 1)) & 1
    return f


def materialize(cpu) -> int:
    """Make ``cpu.eflags`` exact (``lf_op`` becomes 0) and return it."""
    op = cpu.lf_op
    if op:
        cpu.eflags = (cpu.eflags & ~ARITH) | arith_flags(op, cpu.lf_a, cpu.lf_b, cpu.lf_res)
        cpu.lf_op = 0
    return cpu.eflags


def get_cf(cpu) -> int:
    """CF as 0 or 1, without materializing the other flags."""
    op = cpu.lf_op
    if not op:
        return cpu.eflags & CF
    kind = op >> 2
    if kind == SUB:
        return 1 if cpu.lf_a < cpu.lf_b else 0
    if kind == ADD:
        return 1 if cpu.lf_res < cpu.lf_a else 0
    if kind == LOGIC:
        return 0
    if kind == INC or kind == DEC:
        return cpu.lf_b & CF
    return arith_flags(op, cpu.lf_a, cpu.lf_b, cpu.lf_res) & CF


def set_arith(cpu, bits: int, mask: int = ARITH) -> None:
    """Set the flags in ``mask`` to ``bits``; other arithmetic flags keep their value."""
    if mask != ARITH:
        materialize(cpu)
    cpu.eflags = (cpu.eflags & ~mask) | (bits & mask)
    cpu.lf_op = 0


def logic_flags(res: int, szi: int) -> int:
    """Flags after AND/OR/XOR/TEST-like results (CF=OF=0, AF cleared)."""
    f = PARITY[res & 0xFF]
    if res == 0:
        f |= ZF
    if res & SIGN[szi]:
        f |= SF
    return f


# Condition codes in opcode order (SDM vol. 1, B.1): each is f(cpu) -> bool.
def _o(c): return bool(materialize(c) & OF)
def _b(c): return bool(get_cf(c))
def _z(c): return c.lf_res == 0 if c.lf_op else bool(c.eflags & ZF)
def _s(c): return bool(c.lf_res & SIGN[c.lf_op & 3]) if c.lf_op else bool(c.eflags & SF)
def _be(c): return _z(c) or _b(c)
def _p(c): return bool(materialize(c) & PF)


def _l(c):
    op = c.lf_op
    if op >> 2 == SUB:
        # signed a < b, straight from the operands of CMP/SUB
        sign = SIGN[op & 3]
        return (c.lf_a ^ sign) < (c.lf_b ^ sign)
    f = materialize(c)
    return bool(f & SF) != bool(f & OF)


def _le(c): return _z(c) or _l(c)


CONDITIONS = (
    _o, lambda c: not _o(c), _b, lambda c: not _b(c), _z, lambda c: not _z(c),
    _be, lambda c: not _be(c), _s, lambda c: not _s(c), _p, lambda c: not _p(c),
    _l, lambda c: not _l(c), _le, lambda c: not _le(c),
)
