"""Integer ALU, MOV and friends: ADD OR ADC SBB AND SUB XOR CMP TEST, INC DEC
NOT NEG, MOV (all non-segment forms), XCHG, LEA, NOP, CBW/CWDE, CWD/CDQ,
MOVZX/MOVSX.

The hot two-operand forms are generated from one template per operation,
operand form and size (this module writes their source at import time; the
generated code is visible in tracebacks as ``<gen NAME>``).  Each generated
handler reads its operands, computes the result, stores it, and records the
operation for lazy flags (see flags.py) — flags are never computed here.
"""

from __future__ import annotations

from .. import flags as lf
from ..flags import get_cf
from ..registry import register
from .common import MASKS, SZI, compile_handler, get_reg, set_reg

KIND = {"ADD": lf.ADD, "OR": lf.LOGIC, "ADC": lf.ADC, "SBB": lf.SBB, "AND": lf.LOGIC,
        "SUB": lf.SUB, "XOR": lf.LOGIC, "CMP": lf.SUB, "TEST": lf.LOGIC}
EXPR = {"ADD": "(a + b) & {M}", "OR": "a | b", "ADC": "(a + b + get_cf(cpu)) & {M}",
        "SBB": "(a - b - get_cf(cpu)) & {M}", "AND": "a & b", "SUB": "(a - b) & {M}",
        "XOR": "a ^ b", "CMP": "(a - b) & {M}", "TEST": "a & b", "MOV": "b"}
NO_STORE = {"CMP", "TEST"}


def _rd_reg(idx: str, size: int) -> str:
    if size == 4:
        return f"regs[{idx}]"
    if size == 2:
        return f"regs[{idx}] & 0xFFFF"
    if idx.isdigit():          # a constant register number (the block translator)
        i = int(idx)
        return f"(regs[{i & 3}] >> {(i & 4) << 1}) & 0xFF" if i & 4 else f"regs[{i}] & 0xFF"
    return f"(regs[{idx} & 3] >> (({idx} & 4) << 1)) & 0xFF"


def _wr_reg(idx: str, size: int, val: str) -> list[str]:
    if size == 4:
        return [f"regs[{idx}] = {val}"]
    if size == 2:
        return [f"regs[{idx}] = (regs[{idx}] & 0xFFFF0000) | ({val})"]
    if idx.isdigit():
        i = int(idx)
        sh, j = (i & 4) << 1, i & 3
        return [f"regs[{j}] = (regs[{j}] & {~(0xFF << sh) & 0xFFFFFFFF:#x}) | (({val}) << {sh})"]
    return [f"_i = {idx}", "_sh = (_i & 4) << 1", "_j = _i & 3",
            f"regs[_j] = (regs[_j] & ~(0xFF << _sh)) | (({val}) << _sh)"]


_RD = {1: "cpu.rd8", 2: "cpu.rd16", 4: "cpu.rd32"}
_WR = {1: "cpu.wr8", 2: "cpu.wr16", 4: "cpu.wr32"}


# Operand expressions as a handler sees them; the block translator passes
# constants instead (a register number, an immediate, a bound EA closure).
SYMBOLIC = {"rm": "d.rm", "reg": "d.reg", "imm": "d.imm", "ea": "d.ea(cpu)", "eaw": "d.eaw(cpu)"}


def _operand(kind: str, size: int, write: bool, ops: dict):
    """(setup lines, read expression, write-lines factory) for an operand kind.

    kinds: "rmr" r/m register, "rmm" r/m memory, "reg" ModRM reg, "acc" AL/AX/EAX,
    "z" register in the opcode, "imm" immediate.
    """
    if kind == "rmr":
        return [], _rd_reg(ops["rm"], size), lambda v: _wr_reg(ops["rm"], size, v)
    if kind in ("reg", "z"):
        return [], _rd_reg(ops["reg"], size), lambda v: _wr_reg(ops["reg"], size, v)
    if kind == "acc":
        return [], _rd_reg("0", size), lambda v: _wr_reg("0", size, v)
    if kind == "imm":
        return [], ops["imm"], None
    if kind == "rmm":
        ea = ops["eaw"] if write else ops["ea"]
        rd = ops["rd"](size) if "rd" in ops else f"{_RD[size]}(lin)"
        wr = ops["wr"] if "wr" in ops else (lambda size, v: [f"{_WR[size]}(lin, {v})"])
        return [f"lin = {ea}"], rd, lambda v: wr(size, v)
    raise ValueError(kind)


def emit_binary(op: str, size: int, dst: str, src: str, ops: dict = SYMBOLIC):
    """Source lines for ``op dst, src``: ``(body, flag_lines)``.

    ``body`` reads the operands, computes ``res`` and stores it; ``flag_lines``
    record the lazy flags (the translator drops them when a later instruction
    overwrites the flags first).  Expects ``regs`` bound to ``cpu.regs``.
    """
    store = op not in NO_STORE
    d_setup, d_read, d_write = _operand(dst, size, store, ops)
    s_setup, s_read, _ = _operand(src, size, False, ops)
    body = d_setup + s_setup
    if op == "MOV":
        return body + d_write(s_read), []
    body += [f"a = {d_read}", f"b = {s_read}", "res = " + EXPR[op].format(M=hex(MASKS[size]))]
    if store:
        body += d_write("res")
    kind = KIND[op]
    flag_lines = [f"cpu.lf_op = {kind << 2 | SZI[size]}"]
    if kind != lf.LOGIC:
        flag_lines += ["cpu.lf_a = a", "cpu.lf_b = b"]
    flag_lines.append("cpu.lf_res = res")
    return body, flag_lines


def gen_binary(op: str, size: int, dst: str, src: str):
    """Generate the handler for ``op dst, src`` for one size and operand-kind pair."""
    name = f"{op.lower()}_{dst}_{src}_{size * 8}"
    body, flag_lines = emit_binary(op, size, dst, src)
    body = ["regs = cpu.regs"] + body + flag_lines
    src_text = f"def {name}(cpu, d):\n" + "".join(f"    {line}\n" for line in body)
    return compile_handler(src_text, name, {"get_cf": get_cf})


# Operand notation -> (destination kind, source kind) for each r/m variant.
FORMS = {
    "Eb,Gb": (("rm", "reg"), 1), "Ev,Gv": (("rm", "reg"), 0),
    "Gb,Eb": (("reg", "rm"), 1), "Gv,Ev": (("reg", "rm"), 0),
    "AL,Ib": (("acc", "imm"), 1), "eAX,Iz": (("acc", "imm"), 0),
    "Eb,Ib": (("rm", "imm"), 1), "Ev,Iz": (("rm", "imm"), 0), "Ev,Ibs": (("rm", "imm"), 0),
    "Zb,Ib": (("z", "imm"), 1), "Zv,Iv": (("z", "imm"), 0),
}


def _register_form(op: str, spec: str) -> None:
    (dst, src), byte = FORMS[spec]
    sizes = (1,) if byte else (2, 4)
    per_size = {}
    for size in sizes:
        if "rm" in (dst, src):
            r = gen_binary(op, size, *("rmr" if k == "rm" else k for k in (dst, src)))
            m = gen_binary(op, size, *("rmm" if k == "rm" else k for k in (dst, src)))
            per_size[size] = (r, m)
        else:
            per_size[size] = gen_binary(op, size, dst, src)
    register(op, spec, per_size[1] if byte else per_size)


for _op in ("ADD", "OR", "ADC", "SBB", "AND", "SUB", "XOR", "CMP"):
    for _spec in ("Eb,Gb", "Ev,Gv", "Gb,Eb", "Gv,Ev", "AL,Ib", "eAX,Iz", "Eb,Ib", "Ev,Iz", "Ev,Ibs"):
        _register_form(_op, _spec)
for _spec in ("Eb,Gb", "Ev,Gv", "AL,Ib", "eAX,Iz", "Eb,Ib", "Ev,Iz"):
    _register_form("TEST", _spec)
for _spec in ("Eb,Gb", "Ev,Gv", "Gb,Eb", "Gv,Ev", "Eb,Ib", "Ev,Iz", "Zb,Ib", "Zv,Iv"):
    _register_form("MOV", _spec)


# -- MOV with moffs -------------------------------------------------------------------
def _mov_acc_moffs(size):
    def load(cpu, d):
        set_reg(cpu, 0, size, cpu.rd(d.ea(cpu), size))

    def store(cpu, d):
        cpu.wr(d.eaw(cpu), size, get_reg(cpu, 0, size))
    return load, store


_l1, _s1 = _mov_acc_moffs(1)
_l2, _s2 = _mov_acc_moffs(2)
_l4, _s4 = _mov_acc_moffs(4)
register("MOV", "AL,Ob", _l1)
register("MOV", "Ob,AL", _s1)
register("MOV", "eAX,Ov", {2: _l2, 4: _l4})
register("MOV", "Ov,eAX", {2: _s2, 4: _s4})


# -- INC / DEC / NOT / NEG ---------------------------------------------------------------
def _incdec(size: int, delta: int, where: str):
    kind = lf.INC if delta == 1 else lf.DEC
    M = MASKS[size]
    op_code = kind << 2 | SZI[size]

    if where == "reg":
        def h(cpu, d):
            cf = get_cf(cpu)
            res = (get_reg(cpu, d.rm, size) + delta) & M
            set_reg(cpu, d.rm, size, res)
            cpu.lf_op, cpu.lf_b, cpu.lf_res = op_code, cf, res
    else:
        def h(cpu, d):
            lin = d.eaw(cpu)
            res = (cpu.rd(lin, size) + delta) & M
            cpu.wr(lin, size, res)
            cpu.lf_b = get_cf(cpu)
            cpu.lf_op, cpu.lf_res = op_code, res
    return h


def _inc32_z(cpu, d):
    regs = cpu.regs
    cpu.lf_b = get_cf(cpu)
    res = regs[d.reg] = (regs[d.reg] + 1) & 0xFFFFFFFF
    cpu.lf_op, cpu.lf_res = lf.INC << 2 | 2, res


def _dec32_z(cpu, d):
    regs = cpu.regs
    cpu.lf_b = get_cf(cpu)
    res = regs[d.reg] = (regs[d.reg] - 1) & 0xFFFFFFFF
    cpu.lf_op, cpu.lf_res = lf.DEC << 2 | 2, res


register("INC", "Zv", {2: _incdec(2, 1, "reg"), 4: _inc32_z})
register("DEC", "Zv", {2: _incdec(2, -1, "reg"), 4: _dec32_z})
register("INC", "Eb", (_incdec(1, 1, "reg"), _incdec(1, 1, "mem")))
register("DEC", "Eb", (_incdec(1, -1, "reg"), _incdec(1, -1, "mem")))
register("INC", "Ev", {s: (_incdec(s, 1, "reg"), _incdec(s, 1, "mem")) for s in (2, 4)})
register("DEC", "Ev", {s: (_incdec(s, -1, "reg"), _incdec(s, -1, "mem")) for s in (2, 4)})


def _unary(size: int, neg: bool):
    M = MASKS[size]

    def h(cpu, d):
        if d.rm >= 0:
            a = get_reg(cpu, d.rm, size)
            res = (-a) & M if neg else a ^ M
            set_reg(cpu, d.rm, size, res)
        else:
            lin = d.eaw(cpu)
            a = cpu.rd(lin, size)
            res = (-a) & M if neg else a ^ M
            cpu.wr(lin, size, res)
        if neg:   # NEG sets flags as SUB 0, a; NOT changes no flags
            cpu.lf_op, cpu.lf_a, cpu.lf_b, cpu.lf_res = lf.SUB << 2 | SZI[size], 0, a, res
    return h


register("NOT", "Eb", _unary(1, False))
register("NEG", "Eb", _unary(1, True))
register("NOT", "Ev", {s: _unary(s, False) for s in (2, 4)})
register("NEG", "Ev", {s: _unary(s, True) for s in (2, 4)})


# -- XCHG, LEA, NOP, conversions ---------------------------------------------------------------
def _xchg(size: int):
    def h(cpu, d):
        if d.rm >= 0:
            a = get_reg(cpu, d.rm, size)
            b = get_reg(cpu, d.reg, size)
            set_reg(cpu, d.rm, size, b)
            set_reg(cpu, d.reg, size, a)
        else:
            lin = d.eaw(cpu)
            a = cpu.rd(lin, size)
            cpu.wr(lin, size, get_reg(cpu, d.reg, size))
            set_reg(cpu, d.reg, size, a)
    return h


def _xchg_acc(size: int):
    def h(cpu, d):
        a = get_reg(cpu, 0, size)
        set_reg(cpu, 0, size, get_reg(cpu, d.reg, size))
        set_reg(cpu, d.reg, size, a)
    return h


register("XCHG", "Eb,Gb", _xchg(1))
register("XCHG", "Ev,Gv", {s: _xchg(s) for s in (2, 4)})
register("XCHG", "Zv,eAX", {s: _xchg_acc(s) for s in (2, 4)})


def _lea16(cpu, d):
    set_reg(cpu, d.reg, 2, d.eoff(cpu) & 0xFFFF)


def _lea32(cpu, d):
    cpu.regs[d.reg] = d.eoff(cpu)


register("LEA", "Gv,M", {2: _lea16, 4: _lea32})


def _nop(cpu, d):
    pass


register("NOP", "", _nop)
register("NOP", "Ev", _nop)


def _cbw(cpu, d):
    r = cpu.regs
    if d.osz == 4:    # CWDE
        ax = r[0] & 0xFFFF
        r[0] = ax | 0xFFFF0000 if ax & 0x8000 else ax
    else:             # CBW
        al = r[0] & 0xFF
        r[0] = (r[0] & 0xFFFF0000) | (al | 0xFF00 if al & 0x80 else al)


def _cwd(cpu, d):
    r = cpu.regs
    if d.osz == 4:    # CDQ
        r[2] = 0xFFFFFFFF if r[0] & 0x80000000 else 0
    else:             # CWD
        r[2] = (r[2] & 0xFFFF0000) | (0xFFFF if r[0] & 0x8000 else 0)


register("CBW", "", _cbw)
register("CWD", "", _cwd)


def _movx(src_size: int, signed: bool):
    sign = 1 << (src_size * 8 - 1)

    def h(cpu, d):
        if d.rm >= 0:
            v = get_reg(cpu, d.rm, src_size)
        else:
            v = cpu.rd(d.ea(cpu), src_size)
        if signed and v & sign:
            v -= sign << 1
        set_reg(cpu, d.reg, d.osz, v & MASKS[d.osz])
    return h


register("MOVZX", "Gv,Eb", _movx(1, False))
register("MOVZX", "Gv,Ew", _movx(2, False))
register("MOVSX", "Gv,Eb", _movx(1, True))
register("MOVSX", "Gv,Ew", _movx(2, True))

