"""Bit operations and the conditional / atomic data moves: BT BTS BTR BTC,
BSF BSR, SETcc, CMOVcc, XADD, CMPXCHG, CMPXCHG8B, BSWAP.

Semantics (SDM vol. 2, under each mnemonic; "bit base / bit offset":
vol. 1, 3.4.1 and the BT page):
- BT* with a register bit offset and a memory operand: the offset is the
  *signed* operand-size value of the register; the operand accessed is the
  operand-size unit at ``EA + size * (offset >> log2(8 * size))`` (the sum
  wraps at the address size and is limit-checked as an access at that
  offset), and the bit within it is ``offset mod (8 * size)``.  With a
  register operand, or an immediate offset, the offset is taken modulo the
  operand size and the address is EA itself.
- BT* set CF to the selected bit; OF SF AF PF are undefined and, like ZF,
  left unchanged (what unicorn does when the flags are already materialized).
- BSF/BSR: ZF = 1 and the destination is left unchanged when the source is
  0 (the SDM says "undefined"; hardware and unicorn keep it).  The undefined
  CF OF SF AF PF follow unicorn: flags as for a logical result equal to the
  source (CF = OF = AF = 0, SF/PF from the source).
- CMOVcc always reads its source, so a memory fault happens whatever the
  condition; a false condition leaves the destination unchanged.
- XADD records flags as ADD; CMPXCHG as CMP accumulator, destination.  A
  memory CMPXCHG always writes the destination (its own value on a
  mismatch), before the accumulator is loaded, so a read-only page faults
  either way and the fault leaves the registers intact.
- CMPXCHG8B compares EDX:EAX with m64: equal -> ZF = 1 and m64 = ECX:EBX;
  otherwise ZF = 0, m64 is written back unchanged and EDX:EAX = m64.  Only
  ZF changes.  The register form is #UD (the decoder handles "Mq").
- BSWAP with a 16-bit operand size is undefined; like unicorn 2.1 (and real
  processors) the low word becomes 0 and the upper half is kept.
"""

from __future__ import annotations

from .. import flags as lf
from ..consts import CF, M32, ZF
from ..flags import CONDITIONS, materialize
from ..optable import CC
from ..registry import register
from .common import MASKS, SIGNS, SZI, get_reg, set_reg

_NOT_CF = ~CF
_NOT_ZF = ~ZF
_LOG2 = {2: 1, 4: 2}


# -- BT / BTS / BTR / BTC -----------------------------------------------------------------
def _bt_apply(op: str):
    """``(value, bitmask) -> new value`` for the modifying forms (None for BT)."""
    return {"BT": None, "BTS": lambda v, b: v | b, "BTR": lambda v, b: v & ~b,
            "BTC": lambda v, b: v ^ b}[op]


def _bt(op: str, size: int, reg_offset: bool):
    """BTx Ev,Gv (``reg_offset``) or BTx Ev,Ib for one operand size."""
    n = size * 8
    sign = SIGNS[size]
    shift = 3 + _LOG2[size]
    apply = _bt_apply(op)
    write = apply is not None

    def h(cpu, d):
        off = get_reg(cpu, d.reg, size) if reg_offset else d.imm
        if d.rm >= 0:
            bit = off & (n - 1)
            v = get_reg(cpu, d.rm, size)
            if write:
                set_reg(cpu, d.rm, size, apply(v, 1 << bit))
        else:
            if reg_offset:
                off = (off ^ sign) - sign                   # signed bit offset
                amask = M32 if d.asz == 4 else 0xFFFF
                ea = (d.eoff(cpu) + ((off >> shift) << _LOG2[size])) & amask
                lin = cpu.lin(d.seg, ea, write)
            else:
                lin = d.eaw(cpu) if write else d.ea(cpu)
            bit = off & (n - 1)
            v = cpu.rd(lin, size)
            if write:
                cpu.wr(lin, size, apply(v, 1 << bit))
        cpu.eflags = (materialize(cpu) & _NOT_CF) | ((v >> bit) & 1)
    h.__name__ = f"{op.lower()}{n}_{'reg' if reg_offset else 'imm'}"
    return h


for _op in ("BT", "BTS", "BTR", "BTC"):
    register(_op, "Ev,Gv", {s: _bt(_op, s, True) for s in (2, 4)})
    register(_op, "Ev,Ib", {s: _bt(_op, s, False) for s in (2, 4)})


# -- BSF / BSR ---------------------------------------------------------------------------------
def _bsx(size: int, reverse: bool):
    op_code = lf.LOGIC << 2 | SZI[size]

    def h(cpu, d):
        src = get_reg(cpu, d.rm, size) if d.rm >= 0 else cpu.rd(d.ea(cpu), size)
        if src:
            idx = src.bit_length() - 1 if reverse else (src & -src).bit_length() - 1
            set_reg(cpu, d.reg, size, idx)
        cpu.lf_op, cpu.lf_res = op_code, src
    h.__name__ = f"{'bsr' if reverse else 'bsf'}{size * 8}"
    return h


register("BSF", "Gv,Ev", {s: _bsx(s, False) for s in (2, 4)})
register("BSR", "Gv,Ev", {s: _bsx(s, True) for s in (2, 4)})


# -- SETcc / CMOVcc ------------------------------------------------------------------------------
def _setcc(cond):
    def reg(cpu, d):
        r = cpu.regs
        rm = d.rm
        sh = (rm & 4) << 1                     # AL..BL or AH..BH
        j = rm & 3
        r[j] = (r[j] & ~(0xFF << sh)) | ((1 if cond(cpu) else 0) << sh)

    def mem(cpu, d):
        cpu.wr8(d.eaw(cpu), 1 if cond(cpu) else 0)
    return reg, mem


def _cmovcc(cond, size: int):
    if size == 4:
        def h(cpu, d):
            regs = cpu.regs
            v = regs[d.rm] if d.rm >= 0 else cpu.rd32(d.ea(cpu))
            if cond(cpu):
                regs[d.reg] = v
    else:
        def h(cpu, d):
            r = cpu.regs
            v = r[d.rm] & 0xFFFF if d.rm >= 0 else cpu.rd16(d.ea(cpu))
            if cond(cpu):
                r[d.reg] = (r[d.reg] & 0xFFFF0000) | v
    return h


for _cc, _name in enumerate(CC):
    register("SET" + _name, "Eb", _setcc(CONDITIONS[_cc]))
    register("CMOV" + _name, "Gv,Ev", {s: _cmovcc(CONDITIONS[_cc], s) for s in (2, 4)})


# -- XADD / CMPXCHG / CMPXCHG8B -------------------------------------------------------------------
def _xadd(size: int):
    m = MASKS[size]
    op_code = lf.ADD << 2 | SZI[size]

    def h(cpu, d):
        b = get_reg(cpu, d.reg, size)
        if d.rm >= 0:
            a = get_reg(cpu, d.rm, size)
            res = (a + b) & m
            set_reg(cpu, d.reg, size, a)       # SRC <- DEST first, then DEST <- sum
            set_reg(cpu, d.rm, size, res)
        else:
            lin = d.eaw(cpu)
            a = cpu.rd(lin, size)
            res = (a + b) & m
            cpu.wr(lin, size, res)
            set_reg(cpu, d.reg, size, a)
        cpu.lf_op, cpu.lf_a, cpu.lf_b, cpu.lf_res = op_code, a, b, res
    return h


def _cmpxchg(size: int):
    m = MASKS[size]
    op_code = lf.SUB << 2 | SZI[size]

    def h(cpu, d):
        acc = get_reg(cpu, 0, size)
        if d.rm >= 0:
            dest = get_reg(cpu, d.rm, size)
            if acc == dest:
                set_reg(cpu, d.rm, size, get_reg(cpu, d.reg, size))
            else:
                set_reg(cpu, 0, size, dest)
        else:
            lin = d.eaw(cpu)
            dest = cpu.rd(lin, size)
            if acc == dest:
                cpu.wr(lin, size, get_reg(cpu, d.reg, size))
            else:
                cpu.wr(lin, size, dest)       # the unconditional store cycle
                set_reg(cpu, 0, size, dest)
        cpu.lf_op, cpu.lf_a, cpu.lf_b, cpu.lf_res = op_code, acc, dest, (acc - dest) & m
    return h


register("XADD", "Eb,Gb", _xadd(1))
register("XADD", "Ev,Gv", {s: _xadd(s) for s in (2, 4)})
register("CMPXCHG", "Eb,Gb", _cmpxchg(1))
register("CMPXCHG", "Ev,Gv", {s: _cmpxchg(s) for s in (2, 4)})


def _cmpxchg8b(cpu, d):
    """CMPXCHG8B m64 (memory only; the operand size prefix is ignored)."""
    lin = d.eaw(cpu)
    hi_lin = (lin + 4) & M32
    lo = cpu.rd32(lin)
    hi = cpu.rd32(hi_lin)
    cpu.check_write(lin, 8)                    # both halves are stored, or neither
    r = cpu.regs
    if lo == r[0] and hi == r[2]:
        cpu.wr32(lin, r[3])
        cpu.wr32(hi_lin, r[1])
        zf = ZF
    else:
        cpu.wr32(lin, lo)
        cpu.wr32(hi_lin, hi)
        r[0] = lo
        r[2] = hi
        zf = 0
    cpu.eflags = (materialize(cpu) & _NOT_ZF) | zf


register("CMPXCHG8B", "Mq", _cmpxchg8b)


# -- BSWAP ---------------------------------------------------------------------------------------------
def _bswap32(cpu, d):
    r = cpu.regs
    v = r[d.reg]
    r[d.reg] = ((v >> 24) | ((v >> 8) & 0xFF00) | ((v << 8) & 0xFF0000) | ((v << 24) & 0xFF000000))


def _bswap16(cpu, d):
    """Undefined in the SDM: clear the low word (hardware and unicorn 2.1)."""
    cpu.regs[d.reg] &= 0xFFFF0000


register("BSWAP", "Zd", {2: _bswap16, 4: _bswap32})
