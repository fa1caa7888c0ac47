"""Multiply, divide and decimal adjust: MUL IMUL (one, two and three
operands), DIV IDIV, DAA DAS AAA AAS AAM AAD.

Semantics (SDM vol. 2, under each mnemonic):
- MUL/IMUL set CF = OF = 1 exactly when the product does not fit the
  destination (MUL: the high half is non-zero; IMUL: the product differs from
  the sign extension of its truncated low half).  SF ZF AF PF are undefined;
  like unicorn (QEMU), SF/ZF/PF describe the low half of the product (AL, AX,
  EAX, or the truncated destination of the 2/3-operand forms) and AF = 0.
  When the product fits, those are exactly the flags of a logical result, so
  they are recorded lazily as LOGIC; only an overflow computes them eagerly.
- DIV/IDIV raise #DE (vector 0) for a zero divisor and for a quotient that
  does not fit, before any register changes.  IDIV truncates toward zero and
  the remainder takes the sign of the dividend.  All six flags are undefined;
  they are left unchanged (as unicorn does).
- DAA/DAS/AAA/AAS follow the SDM pseudocode exactly, including the carry out
  of AL into AH (AAA: AX += 106h; AAS: AX -= 6, AH -= 1).  Undefined flags:
  DAA/DAS clear OF; AAA/AAS leave OF SF ZF PF unchanged (both as unicorn).
- AAM imm8 with imm8 = 0 raises #DE.  AAM/AAD set SF ZF PF from AL; the
  undefined OF AF CF are cleared (as unicorn).
"""

from __future__ import annotations

from .. import flags as lf
from ..consts import AF, CF, DE, OF, SF, ZF
from ..errors import CpuFault
from ..flags import PARITY, materialize
from ..registry import register
from .common import MASKS, SIGNS, SZI, get_reg, set_reg

ARITH_CLEAR = ~0x8D5
_LOGIC = (lf.LOGIC << 2, lf.LOGIC << 2 | 1, lf.LOGIC << 2 | 2)
_LOGIC32 = lf.LOGIC << 2 | 2


def _overflowed(cpu, lo: int, size: int) -> None:
    """Flags after a multiply whose product did not fit: CF = OF = 1, SF/ZF/PF
    of the low half, AF = 0.  (Without overflow the flags are exactly those of
    a logical result ``lo``, which the handlers record lazily as LOGIC.)"""
    f = PARITY[lo & 0xFF] | CF | OF
    if not lo:
        f |= ZF
    if lo & SIGNS[size]:
        f |= SF
    _set_flags(cpu, f)


def _set_flags(cpu, f: int) -> None:
    """Replace all six arithmetic flags (no need to materialize the old ones)."""
    cpu.eflags = (cpu.eflags & ARITH_CLEAR) | f
    cpu.lf_op = 0


def _src(cpu, d, size: int) -> int:
    if d.rm >= 0:
        return get_reg(cpu, d.rm, size)
    return cpu.rd(d.ea(cpu), size)


# -- one-operand MUL / IMUL -------------------------------------------------------------
def _mul1(size: int, signed: bool):
    """MUL/IMUL r/m: AL*r/m8 -> AX, AX*r/m16 -> DX:AX, EAX*r/m32 -> EDX:EAX."""
    n = size * 8
    m = MASKS[size]
    sign = SIGNS[size]
    logic = _LOGIC[SZI[size]]

    def h(cpu, d):
        r = cpu.regs
        a = r[0] & m
        b = _src(cpu, d, size)
        if signed:
            p = ((a ^ sign) - sign) * ((b ^ sign) - sign)
            lo = p & m
            fits = -sign <= p < sign
        else:
            p = a * b
            lo = p & m
            fits = p <= m
        if size == 4:
            r[0] = lo
            r[2] = (p >> 32) & m
        elif size == 2:
            r[0] = (r[0] & 0xFFFF0000) | lo
            r[2] = (r[2] & 0xFFFF0000) | ((p >> 16) & m)
        else:
            r[0] = (r[0] & 0xFFFF0000) | (p & 0xFFFF)
        if fits:
            cpu.lf_op = logic
            cpu.lf_res = lo
        else:
            _overflowed(cpu, lo, size)
    h.__name__ = f"{'imul' if signed else 'mul'}{n}"
    return h


register("MUL", "Eb", _mul1(1, False))
register("IMUL", "Eb", _mul1(1, True))
register("MUL", "Ev", {s: _mul1(s, False) for s in (2, 4)})
register("IMUL", "Ev", {s: _mul1(s, True) for s in (2, 4)})


# -- two- and three-operand IMUL ------------------------------------------------------------
def _imul32(cpu, d):
    """IMUL r32, r/m32 (the hot form, written out)."""
    regs = cpu.regs
    rm = d.rm
    b = regs[rm] if rm >= 0 else cpu.rd32(d.ea(cpu))
    a = regs[d.reg]
    p = (a - ((a & 0x80000000) << 1)) * (b - ((b & 0x80000000) << 1))
    lo = regs[d.reg] = p & 0xFFFFFFFF
    if -0x80000000 <= p <= 0x7FFFFFFF:
        cpu.lf_op = _LOGIC32
        cpu.lf_res = lo
    else:
        _overflowed(cpu, lo, 4)


def _imul32_imm(cpu, d):
    """IMUL r32, r/m32, imm (imm already sized to 32 bits by the decoder)."""
    regs = cpu.regs
    rm = d.rm
    b = regs[rm] if rm >= 0 else cpu.rd32(d.ea(cpu))
    a = d.imm
    p = (a - ((a & 0x80000000) << 1)) * (b - ((b & 0x80000000) << 1))
    lo = regs[d.reg] = p & 0xFFFFFFFF
    if -0x80000000 <= p <= 0x7FFFFFFF:
        cpu.lf_op = _LOGIC32
        cpu.lf_res = lo
    else:
        _overflowed(cpu, lo, 4)


def _imul16(with_imm: bool):
    """IMUL r16, r/m16 [, imm]: the product truncated to 16 bits."""
    def h(cpu, d):
        b = _src(cpu, d, 2)
        a = d.imm if with_imm else cpu.regs[d.reg] & 0xFFFF
        p = ((a ^ 0x8000) - 0x8000) * ((b ^ 0x8000) - 0x8000)
        lo = p & 0xFFFF
        set_reg(cpu, d.reg, 2, lo)
        if -0x8000 <= p <= 0x7FFF:
            cpu.lf_op = _LOGIC[1]
            cpu.lf_res = lo
        else:
            _overflowed(cpu, lo, 2)
    h.__name__ = f"imul16_{'imm' if with_imm else 'rm'}"
    return h


register("IMUL", "Gv,Ev", {2: _imul16(False), 4: _imul32})
register("IMUL", "Gv,Ev,Iz", {2: _imul16(True), 4: _imul32_imm})
register("IMUL", "Gv,Ev,Ibs", {2: _imul16(True), 4: _imul32_imm})


# -- DIV / IDIV ------------------------------------------------------------------------------
def _div(size: int, signed: bool):
    """DIV/IDIV r/m: AX / r/m8 -> AL, AH; DX:AX / r/m16 -> AX, DX;
    EDX:EAX / r/m32 -> EAX, EDX.  Flags unchanged (undefined in the SDM)."""
    n = size * 8
    m = MASKS[size]
    sign = SIGNS[size]

    def h(cpu, d):
        r = cpu.regs
        b = _src(cpu, d, size)
        if not b:
            raise CpuFault(DE)
        if size == 1:
            a = r[0] & 0xFFFF
        elif size == 2:
            a = ((r[2] & 0xFFFF) << 16) | (r[0] & 0xFFFF)
        else:
            a = (r[2] << 32) | r[0]
        if signed:
            top = 1 << (2 * n - 1)
            a = (a ^ top) - top
            b = (b ^ sign) - sign
            q = abs(a) // abs(b)
            if (a < 0) != (b < 0):
                q = -q
            rem = a - q * b
            if not -sign <= q < sign:
                raise CpuFault(DE)
            q &= m
            rem &= m
        else:
            q, rem = divmod(a, b)
            if q > m:
                raise CpuFault(DE)
        if size == 1:
            r[0] = (r[0] & 0xFFFF0000) | (rem << 8) | q
        elif size == 2:
            r[0] = (r[0] & 0xFFFF0000) | q
            r[2] = (r[2] & 0xFFFF0000) | rem
        else:
            r[0] = q
            r[2] = rem
    h.__name__ = f"{'idiv' if signed else 'div'}{n}"
    return h


register("DIV", "Eb", _div(1, False))
register("IDIV", "Eb", _div(1, True))
register("DIV", "Ev", {s: _div(s, False) for s in (2, 4)})
register("IDIV", "Ev", {s: _div(s, True) for s in (2, 4)})


# -- decimal adjust ------------------------------------------------------------------------------
def _szp(v: int) -> int:
    """SF ZF PF of a byte."""
    f = PARITY[v] | (v & SF)
    if not v:
        f |= ZF
    return f


def _daa(cpu, d):
    """DAA (SDM pseudocode): adjust AL after a packed-BCD addition."""
    f = materialize(cpu)
    old_al = al = cpu.regs[0] & 0xFF
    old_cf = f & CF
    nf = 0
    if (al & 0xF) > 9 or f & AF:
        al = (al + 6) & 0xFF      # a carry here implies old_al > 99h: CF is set below
        nf |= AF
    if old_al > 0x99 or old_cf:
        al = (al + 0x60) & 0xFF
        nf |= CF
    cpu.regs[0] = (cpu.regs[0] & ~0xFF) | al
    _set_flags(cpu, nf | _szp(al))


def _das(cpu, d):
    """DAS (SDM pseudocode): adjust AL after a packed-BCD subtraction."""
    f = materialize(cpu)
    old_al = al = cpu.regs[0] & 0xFF
    old_cf = f & CF
    nf = 0
    if (al & 0xF) > 9 or f & AF:
        if al < 6 or old_cf:      # CF <- old_CF or borrow from AL - 6
            nf |= CF
        al = (al - 6) & 0xFF
        nf |= AF
    if old_al > 0x99 or old_cf:
        al = (al - 0x60) & 0xFF
        nf |= CF
    cpu.regs[0] = (cpu.regs[0] & ~0xFF) | al
    _set_flags(cpu, nf | _szp(al))


def _aaa(cpu, d):
    """AAA: if (AL & 0Fh) > 9 or AF: AX += 106h, AF = CF = 1; else AF = CF = 0;
    then AL &= 0Fh.  OF SF ZF PF are undefined and left unchanged."""
    f = materialize(cpu)
    ax = cpu.regs[0] & 0xFFFF
    if (ax & 0xF) > 9 or f & AF:
        ax = (ax + 0x106) & 0xFFFF
        f |= AF | CF
    else:
        f &= ~(AF | CF)
    cpu.regs[0] = (cpu.regs[0] & 0xFFFF0000) | (ax & 0xFF0F)
    cpu.eflags = f


def _aas(cpu, d):
    """AAS: if (AL & 0Fh) > 9 or AF: AX -= 6, AH -= 1, AF = CF = 1; else
    AF = CF = 0; then AL &= 0Fh.  OF SF ZF PF are left unchanged."""
    f = materialize(cpu)
    ax = cpu.regs[0] & 0xFFFF
    if (ax & 0xF) > 9 or f & AF:
        ax = (ax - 6 - 0x100) & 0xFFFF
        f |= AF | CF
    else:
        f &= ~(AF | CF)
    cpu.regs[0] = (cpu.regs[0] & 0xFFFF0000) | (ax & 0xFF0F)
    cpu.eflags = f


def _aam(cpu, d):
    """AAM imm8: AH = AL / imm8, AL = AL mod imm8; #DE when imm8 = 0."""
    base = d.imm
    if not base:
        raise CpuFault(DE)
    al = cpu.regs[0] & 0xFF
    ah, al = divmod(al, base)
    cpu.regs[0] = (cpu.regs[0] & 0xFFFF0000) | (ah << 8) | al
    cpu.lf_op, cpu.lf_res = lf.LOGIC << 2, al


def _aad(cpu, d):
    """AAD imm8: AL = (AL + AH * imm8) & FFh, AH = 0."""
    r = cpu.regs[0]
    al = ((r & 0xFF) + ((r >> 8) & 0xFF) * d.imm) & 0xFF
    cpu.regs[0] = (r & 0xFFFF0000) | al
    cpu.lf_op, cpu.lf_res = lf.LOGIC << 2, al


register("DAA", "", _daa)
register("DAS", "", _das)
register("AAA", "", _aaa)
register("AAS", "", _aas)
register("AAM", "Ib", _aam)
register("AAD", "Ib", _aad)
