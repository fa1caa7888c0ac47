"""Shifts and rotates: SHL/SAL SHR SAR ROL ROR RCL RCR (group 2, all count
forms) and the double-precision shifts SHLD/SHRD.

Semantics (SDM vol. 2, "SAL/SAR/SHL/SHR", "RCL/RCR/ROL/ROR", "SHLD", "SHRD"):
- The count is masked to 5 bits.  A masked count of 0 changes neither the
  operand nor any flag.  A memory operand is still read (with a write-access
  segment check) but not written back in that case; on hardware the store
  cycle may or may not happen, which is only observable on a read-only page.
- RCL/RCR on 8/16-bit operands rotate through CF by ``(count & 31) mod 9``
  (``mod 17``); when that is 0 but the masked count is not, nothing changes
  (the memory operand is written back with its own value).
- Flags the SDM leaves undefined follow what unicorn (QEMU) computes, so that
  differential tests can compare them:
    SHL/SHR/SAR  CF = last bit out, OF = MSB(result) XOR MSB(operand shifted
                 by count-1) for every non-zero count (so SHR/SAR give OF=0 for
                 counts > 1), AF = 0, SF/ZF/PF from the result.
    ROL/ROR      only CF and OF change; OF = MSB(r) XOR CF (ROL),
                 MSB(r) XOR bit N-2 of r (ROR), for every non-zero count.
    RCL/RCR      only CF and OF change; OF = MSB(operand XOR result).
    SHLD/SHRD    like SHL/SHR on the concatenated value (CF = last bit out,
                 OF = MSB(result) XOR MSB of the value shifted by count-1,
                 AF = 0).
- SHLD/SHRD with a 16-bit operand and a count of 17..31 (undefined in the
  SDM) shift the 48-bit value ``dest:src:dest`` -- the Intel behaviour that
  QEMU also models -- so the result and flags are deterministic.

Performance: every form is generated per operation, size, register/memory
operand and count source, so the hot 32-bit SHL/SHR/SAR by an immediate or
CL run straight-line code with no per-call dispatch.  SHL/SHR/SAR record
their flags lazily (flags.SHL/SHR/SAR: operand, count, result); the rotates
change only CF/OF and SHLD/SHRD are rare, so those compute flags eagerly.
"""

from __future__ import annotations

from .. import flags as lf
from ..flags import PARITY, get_cf, materialize
from ..registry import register
from .common import MASKS, SZI, compile_handler, get_reg

_GRP2_OPS = ("ROL", "ROR", "RCL", "RCR", "SHL", "SHR", "SAR")
_COUNT_SPECS = {"Ib": "imm", "1": "one", "CL": "cl"}
_RD = {1: "cpu.rd8", 2: "cpu.rd16", 4: "cpu.rd32"}
_WR = {1: "cpu.wr8", 2: "cpu.wr16", 4: "cpu.wr32"}
# Effective RCL/RCR rotation for a 5-bit masked count (SDM: "tempCOUNT").
_RCMOD = {1: tuple(c % 9 for c in range(32)), 2: tuple(c % 17 for c in range(32)),
          4: tuple(range(32))}
ARITH_CLEAR = ~0x8D5      # & keeps every non-arithmetic EFLAGS bit
CF_OF_CLEAR = ~0x801


def _rd_reg(size: int) -> str:
    if size == 4:
        return "regs[rm]"
    if size == 2:
        return "regs[rm] & 0xFFFF"
    return "(regs[rm & 3] >> ((rm & 4) << 1)) & 0xFF"


def _wr_reg(size: int, val: str) -> list[str]:
    if size == 4:
        return [f"regs[rm] = {val}"]
    if size == 2:
        return [f"regs[rm] = (regs[rm] & 0xFFFF0000) | {val}"]
    return ["_sh = (rm & 4) << 1", "_j = rm & 3",
            f"regs[_j] = (regs[_j] & ~(0xFF << _sh)) | ({val} << _sh)"]


def _body(op: str, size: int) -> list[str]:
    """Lines computing ``res`` (and, for the rotates, ``cf``/``of``) from the
    operand ``v`` and the masked, non-zero count ``c``."""
    n = size * 8
    m = MASKS[size]
    if op == "SHL":
        return [f"res = (v << c) & {m:#x}"]
    if op == "SHR":
        return ["res = v >> c"]
    if op == "SAR":
        return [f"res = ((v - ((v & {1 << (n - 1):#x}) << 1)) >> c) & {m:#x}"]
    rot = "r = c" if size == 4 else f"r = c & {n - 1}"
    if op == "ROL":
        return [rot, f"res = ((v << r) | (v >> ({n} - r))) & {m:#x}", "cf = res & 1",
                f"of = (res >> {n - 1}) ^ cf"]
    if op == "ROR":
        return [rot, f"res = ((v >> r) | (v << ({n} - r))) & {m:#x}", f"cf = res >> {n - 1}",
                f"of = cf ^ ((res >> {n - 2}) & 1)"]
    m1 = (1 << (n + 1)) - 1
    if op == "RCL":
        return [f"x = v | (get_cf(cpu) << {n})", f"y = ((x << r) | (x >> ({n + 1} - r))) & {m1:#x}",
                f"res = y & {m:#x}", f"cf = y >> {n}", f"of = ((v ^ res) >> {n - 1}) & 1"]
    if op == "RCR":
        return [f"x = v | (get_cf(cpu) << {n})", f"y = ((x >> r) | (x << ({n + 1} - r))) & {m1:#x}",
                f"res = y & {m:#x}", f"cf = y >> {n}", f"of = ((v ^ res) >> {n - 1}) & 1"]
    raise ValueError(op)


_LAZY = {"SHL": lf.SHL, "SHR": lf.SHR, "SAR": lf.SAR}


def gen_shift(op: str, size: int, where: str, count: str):
    """Generate the handler for ``op`` on a ``size``-byte register ("r") or
    memory ("m") operand with an immediate, constant-1 or CL count.

    Shape: read the count and (for memory) the operand, return at once when
    the masked count is 0, otherwise compute, store, then record the flags:
    lazily for SHL/SHR/SAR (flags.SHL/SHR/SAR kinds), eagerly for the rotates,
    which change only CF and OF.
    """
    name = f"{op.lower()}_{where}{size * 8}_{count}"
    lines = [{"imm": "c = d.imm & 31", "one": "c = 1", "cl": "c = cpu.regs[1] & 31"}[count]]
    if where == "m":
        lines += ["lin = d.eaw(cpu)", f"v = {_RD[size]}(lin)"]
        store = [f"{_WR[size]}(lin, res)"]
    else:
        store = _wr_reg(size, "res")
    work = []
    if where == "r":
        work += ["regs = cpu.regs", "rm = d.rm", f"v = {_rd_reg(size)}"]
    if op in ("RCL", "RCR"):
        work.append("r = c" if size == 4 else "r = RCMOD[c]")
        if size != 4:
            work += ["if not r:"] + (["    return"] if where == "r" else
                                      [f"    {_WR[size]}(lin, v)", "    return"])
    work += _body(op, size) + store
    if op in _LAZY:
        work += [f"cpu.lf_op = {_LAZY[op] << 2 | SZI[size]}", "cpu.lf_a = v", "cpu.lf_b = c",
                 "cpu.lf_res = res"]
    else:
        work.append("cpu.eflags = (materialize(cpu) & CF_OF_CLEAR) | cf | (of << 11)")
    if count == "one":
        lines += work
    else:
        lines += ["if c:"] + ["    " + ln for ln in work]
    src = f"def {name}(cpu, d):\n" + "".join(f"    {ln}\n" for ln in lines)
    env = {"get_cf": get_cf, "materialize": materialize, "RCMOD": _RCMOD[size],
           "CF_OF_CLEAR": CF_OF_CLEAR}
    return compile_handler(src, name, env)


def emit_shift_reg_imm(op: str, size: int, rm: int, count: int):
    """Inline source for SHL/SHR/SAR of register ``rm`` by a constant count,
    for a block translator: ``(body, flag_lines)`` in the style of
    ``alu.emit_binary`` (expects ``regs`` bound to ``cpu.regs``; ``body``
    leaves the result in ``res``; ``flag_lines`` record the lazy flags and
    may be dropped when a later instruction overwrites every flag first).
    Returns None when the masked count is 0 (no effect at all, flags
    included) or for other operations: call the handler then.  Cannot fault.
    """
    c = count & 31
    if op not in _LAZY or not c:
        return None
    body = [f"rm = {rm}", f"c = {c}", f"v = {_rd_reg(size)}"] + _body(op, size) + _wr_reg(size, "res")
    flags = [f"cpu.lf_op = {_LAZY[op] << 2 | SZI[size]}", "cpu.lf_a = v", f"cpu.lf_b = {c}",
             "cpu.lf_res = res"]
    return body, flags


def _register_grp2() -> None:
    for op in _GRP2_OPS:
        for cspec, count in _COUNT_SPECS.items():
            byte = (gen_shift(op, 1, "r", count), gen_shift(op, 1, "m", count))
            word = {s: (gen_shift(op, s, "r", count), gen_shift(op, s, "m", count)) for s in (2, 4)}
            register(op, f"Eb,{cspec}", byte)
            register(op, f"Ev,{cspec}", word)


_register_grp2()


# -- SHLD / SHRD -----------------------------------------------------------------------
def _double_shift(size: int, left: bool, cl: bool):
    """SHLD/SHRD Ev,Gv,(Ib|CL) for one operand size.

    The operand pair is laid out as one integer ``w`` so a single shift does
    the work: SHLD uses ``dest:src`` (32-bit) or ``dest:src:dest`` (16-bit)
    with the result in bits 32..32+N-1 after shifting left; SHRD uses
    ``src:dest`` (32-bit) or ``dest:src:dest`` (16-bit) with the result in
    the low N bits after shifting right.
    """
    n = size * 8
    m = MASKS[size]
    top = n - 1

    def h(cpu, d):
        c = (cpu.regs[1] if cl else d.imm) & 31
        src = get_reg(cpu, d.reg, size)
        if d.rm >= 0:
            lin = -1
            v = get_reg(cpu, d.rm, size)
        else:
            lin = d.eaw(cpu)
            v = cpu.rd(lin, size)
        if not c:
            return
        if size == 2:
            w = (v << 32) | (src << 16) | v
        elif left:
            w = (v << 32) | src
        else:
            w = (src << 32) | v
        if left:
            res = ((w << c) >> 32) & m
            cf = (w >> (32 + n - c)) & 1
            of = cf ^ (res >> top)
        else:
            res = (w >> c) & m
            cf = (w >> (c - 1)) & 1
            of = ((w >> (c + n - 2)) ^ (res >> top)) & 1
        if lin < 0:
            r = cpu.regs
            r[d.rm] = res if size == 4 else (r[d.rm] & 0xFFFF0000) | res
        else:
            cpu.wr(lin, size, res)
        f = PARITY[res & 0xFF] | cf | (of << 11) | ((res >> (n - 8)) & 0x80)
        if not res:
            f |= 0x40
        cpu.eflags = (cpu.eflags & ARITH_CLEAR) | f
        cpu.lf_op = 0
    h.__name__ = f"{'shld' if left else 'shrd'}{n}_{'cl' if cl else 'ib'}"
    return h


for _left, _mn in ((True, "SHLD"), (False, "SHRD")):
    register(_mn, "Ev,Gv,Ib", {s: _double_shift(s, _left, False) for s in (2, 4)})
    register(_mn, "Ev,Gv,CL", {s: _double_shift(s, _left, True) for s in (2, 4)})
