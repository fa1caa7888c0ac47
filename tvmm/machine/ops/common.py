"""Helpers shared by instruction families: register access by size, and the
operand read/write pair for a ModRM r/m operand.

Register numbering is the ModRM one: 0..7 = eAX eCX eDX eBX eSP eBP eSI eDI;
for byte operands 4..7 are AH CH DH BH (bits 8-15 of registers 0..3).
"""

from __future__ import annotations

MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}
SIGNS = {1: 0x80, 2: 0x8000, 4: 0x80000000}
SZI = {1: 0, 2: 1, 4: 2}


def get_reg(cpu, i: int, size: int) -> int:
    r = cpu.regs
    if size == 4:
        return r[i]
    if size == 2:
        return r[i] & 0xFFFF
    return (r[i & 3] >> ((i & 4) << 1)) & 0xFF


def set_reg(cpu, i: int, size: int, v: int) -> None:
    r = cpu.regs
    if size == 4:
        r[i] = v
    elif size == 2:
        r[i] = (r[i] & 0xFFFF0000) | v
    else:
        sh = (i & 4) << 1
        j = i & 3
        r[j] = (r[j] & ~(0xFF << sh)) | (v << sh)


def read_rm(cpu, d, size: int) -> int:
    """The r/m operand's value (register or memory)."""
    if d.rm >= 0:
        return get_reg(cpu, d.rm, size)
    return cpu.rd(d.ea(cpu), size)


def write_rm(cpu, d, size: int, v: int) -> None:
    if d.rm >= 0:
        set_reg(cpu, d.rm, size, v)
    else:
        cpu.wr(d.eaw(cpu), size, v)


def sext(v: int, size: int) -> int:
    """Sign-extend a ``size``-byte value to a Python int."""
    s = SIGNS[size]
    return v - (s << 1) if v & s else v


def compile_handler(src: str, name: str, env: dict):
    """Compile generated handler source (kept for tracebacks as ``<gen name>``)."""
    ns = dict(env)
    exec(compile(src, f"<gen {name}>", "exec"), ns)
    return ns[name]
