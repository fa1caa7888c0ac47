"""MMX (0F 60-7F, 0F D1-FE): 64-bit packed integers in the x87 registers.

MMi is the significand of the *physical* x87 register Ri (not ST(i)).  Every
MMX instruction but EMMS makes TOP 0 and every tag valid, and a write to MMi
sets Ri's sign and exponent to all ones (SDM vol. 1, 9.5); EMMS empties every
tag.  In order: CR0.EM is #UD, CR0.TS is #NM, a pending unmasked x87
exception is signalled (#MF, or FERR# without CR0.NE, as for a waiting x87
instruction); then the memory operand is read.  The operand-size prefix is
ignored (this CPU has no SSE2).
"""

from __future__ import annotations

from ..consts import CR0_EM, CR0_TS, M32, NM, UD
from ..errors import CpuFault
from ..registry import register
from .x87 import _signal_pending
from ..x87.state import ES

M64 = (1 << 64) - 1
MMX_HIGH = 0xFFFF << 64


def _begin(cpu):
    cr0 = cpu.cr0
    if cr0 & CR0_EM:
        raise CpuFault(UD)
    if cr0 & CR0_TS:
        raise CpuFault(NM)
    f = cpu.fpu
    if f.sw & ES:
        _signal_pending(cpu)
    return f


def _enter(f) -> None:
    f.top = 0
    f.valid = 0xFF


def _src(cpu, f, d, size: int = 8) -> int:
    """The Q operand: MMi, or ``size`` bytes of memory (zero-extended)."""
    if d.rm >= 0:
        return f.regs[d.rm] & M64
    lin = d.ea(cpu)
    if size == 4:
        return cpu.rd32(lin)
    return cpu.rd32(lin) | (cpu.rd32((lin + 4) & M32) << 32)


def _set(f, i: int, v: int) -> None:
    f.regs[i] = MMX_HIGH | (v & M64)


# ============================================================== lane helpers
def _lanes(v: int, bits: int) -> list[int]:
    m = (1 << bits) - 1
    return [(v >> (bits * k)) & m for k in range(64 // bits)]


def _join(lanes, bits: int) -> int:
    m = (1 << bits) - 1
    out = 0
    for k, x in enumerate(lanes):
        out |= (x & m) << (bits * k)
    return out


def _signed(x: int, bits: int) -> int:
    return x - (1 << bits) if x >> (bits - 1) else x


def _sat_s(x: int, bits: int) -> int:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return min(max(x, lo), hi)


def _sat_u(x: int, bits: int) -> int:
    return min(max(x, 0), (1 << bits) - 1)


def _lanewise(bits: int, fn):
    def op(a: int, b: int) -> int:
        return _join([fn(x, y) for x, y in zip(_lanes(a, bits), _lanes(b, bits))], bits)
    return op


def _binary(op):
    """Pq <- op(Pq, Qq)."""
    def h(cpu, d):
        f = _begin(cpu)
        b = _src(cpu, f, d)
        _set(f, d.reg, op(f.regs[d.reg] & M64, b))
        _enter(f)
    return h


OPS = {}
for _bits, _sfx in ((8, "B"), (16, "W"), (32, "D")):
    _m = (1 << _bits) - 1
    OPS["PADD" + _sfx] = _lanewise(_bits, lambda x, y: x + y)
    OPS["PSUB" + _sfx] = _lanewise(_bits, lambda x, y: x - y)
    OPS["PCMPEQ" + _sfx] = _lanewise(_bits, lambda x, y, m=_m: m if x == y else 0)
    OPS["PCMPGT" + _sfx] = _lanewise(_bits, lambda x, y, b=_bits, m=_m: m if _signed(x, b) > _signed(y, b) else 0)
for _bits, _sfx in ((8, "B"), (16, "W")):
    OPS["PADDS" + _sfx] = _lanewise(_bits, lambda x, y, b=_bits: _sat_s(_signed(x, b) + _signed(y, b), b))
    OPS["PSUBS" + _sfx] = _lanewise(_bits, lambda x, y, b=_bits: _sat_s(_signed(x, b) - _signed(y, b), b))
    OPS["PADDUS" + _sfx] = _lanewise(_bits, lambda x, y, b=_bits: _sat_u(x + y, b))
    OPS["PSUBUS" + _sfx] = _lanewise(_bits, lambda x, y, b=_bits: _sat_u(x - y, b))
OPS["PMULLW"] = _lanewise(16, lambda x, y: _signed(x, 16) * _signed(y, 16))
OPS["PMULHW"] = _lanewise(16, lambda x, y: (_signed(x, 16) * _signed(y, 16)) >> 16)
OPS["PAND"] = lambda a, b: a & b
OPS["PANDN"] = lambda a, b: ~a & b & M64
OPS["POR"] = lambda a, b: a | b
OPS["PXOR"] = lambda a, b: a ^ b


def _pmaddwd(a: int, b: int) -> int:
    x, y = _lanes(a, 16), _lanes(b, 16)
    p = [_signed(x[k], 16) * _signed(y[k], 16) for k in range(4)]
    return _join([p[0] + p[1], p[2] + p[3]], 32)


OPS["PMADDWD"] = _pmaddwd


def _pack(src_bits: int, signed_sat: bool):
    dst = src_bits // 2

    def op(a: int, b: int) -> int:
        lanes = [_signed(x, src_bits) for x in _lanes(a, src_bits) + _lanes(b, src_bits)]
        return _join([_sat_s(x, dst) if signed_sat else _sat_u(x, dst) for x in lanes], dst)
    return op


OPS["PACKSSWB"] = _pack(16, True)
OPS["PACKSSDW"] = _pack(32, True)
OPS["PACKUSWB"] = _pack(16, False)


def _unpack(bits: int, high: bool):
    def op(a: int, b: int) -> int:
        x, y = _lanes(a, bits), _lanes(b, bits)
        n = len(x) // 2
        x, y = (x[n:], y[n:]) if high else (x[:n], y[:n])
        out = []
        for k in range(n):
            out += [x[k], y[k]]
        return _join(out, bits)
    return op


for _bits, _sfx in ((8, "BW"), (16, "WD"), (32, "DQ")):
    OPS["PUNPCKH" + _sfx] = _unpack(_bits, True)
    OPS["PUNPCKL" + _sfx] = _unpack(_bits, False)


def _shift(kind: str, bits: int):
    def op(a: int, count: int) -> int:
        if kind == "RA":
            c = min(count, bits - 1)
            return _join([_signed(x, bits) >> c for x in _lanes(a, bits)], bits)
        if count >= bits:
            return 0
        if kind == "LL":
            return _join([x << count for x in _lanes(a, bits)], bits)
        return _join([x >> count for x in _lanes(a, bits)], bits)
    return op


for _kind in ("LL", "RL", "RA"):
    for _bits, _sfx in ((16, "W"), (32, "D"), (64, "Q")):
        if _kind == "RA" and _bits == 64:
            continue
        OPS["PS" + _kind + _sfx] = _shift(_kind, _bits)

for _name, _op in OPS.items():
    if _name.startswith("PUNPCKL"):
        # the low halves: a memory operand is 32 bits
        def _h(cpu, d, op=_op):
            f = _begin(cpu)
            b = _src(cpu, f, d, 4)
            _set(f, d.reg, op(f.regs[d.reg] & M64, b))
            _enter(f)
        register(_name, "Pq,Qd", _h)
    else:
        register(_name, "Pq,Qq", _binary(_op))


def _shift_imm(cpu, d, op):
    f = _begin(cpu)
    _set(f, d.rm, op(f.regs[d.rm] & M64, d.imm))
    _enter(f)


for _name in ("PSRLW", "PSRAW", "PSLLW", "PSRLD", "PSRAD", "PSLLD", "PSRLQ", "PSLLQ"):
    register(_name, "Nq,Ib", lambda cpu, d, op=OPS[_name]: _shift_imm(cpu, d, op))


# ===================================================================== moves
def _movd_to_mm(cpu, d):
    f = _begin(cpu)
    v = cpu.regs[d.rm] if d.rm >= 0 else cpu.rd32(d.ea(cpu))
    _set(f, d.reg, v)
    _enter(f)


def _movd_from_mm(cpu, d):
    f = _begin(cpu)
    v = f.regs[d.reg] & M32
    if d.rm >= 0:
        cpu.regs[d.rm] = v
    else:
        cpu.wr32(d.eaw(cpu), v)
    _enter(f)


def _movq_to_mm(cpu, d):
    f = _begin(cpu)
    _set(f, d.reg, _src(cpu, f, d))
    _enter(f)


def _movq_from_mm(cpu, d):
    f = _begin(cpu)
    v = f.regs[d.reg] & M64
    if d.rm >= 0:
        _set(f, d.rm, v)
    else:
        lin = d.eaw(cpu)
        cpu.check_write(lin, 8)
        cpu.wr32(lin, v & M32)
        cpu.wr32((lin + 4) & M32, v >> 32)
    _enter(f)


def _emms(cpu, d):
    f = _begin(cpu)
    f.valid = 0


register("MOVD", "Pd,Ed", _movd_to_mm)
register("MOVD", "Ed,Pd", _movd_from_mm)
register("MOVQ", "Pq,Qq", _movq_to_mm)
register("MOVQ", "Qq,Pq", _movq_from_mm)
register("EMMS", "", _emms)
