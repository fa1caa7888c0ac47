"""Port I/O: IN, OUT, INS, OUTS.

Ports are reached through ``cpu.io.port_in(port, size)`` and
``cpu.io.port_out(port, size, value)``; the port number is an immediate byte
or DX, zero-extended.

Protection (SDM vol. 1, 19.5): in protected mode with CPL > IOPL, and in
virtual-8086 mode whatever IOPL is (SDM vol. 3, 20.2.8.1), every bit of the
I/O permission bitmap of the current 32-bit TSS covering ports
``port .. port + size - 1`` must be clear, else #GP(0).  The bitmap offset is
the word at TSS+0x66; like the processor, the check reads two bitmap bytes,
both of which must lie within the TSS limit (a bitmap offset at or beyond
the limit therefore denies every port).  A 16-bit TSS has no bitmap
(#GP(0)).  Real mode: always allowed.  All checks happen before any port is
touched.

INS writes ES:eDI, OUTS reads ``d.seg``:eSI (DS or an override); both use the
REP engine of string.py (one iteration per element, no bulk path: each
element is a device access).  INS checks that the destination is writable
before it reads the port, so a faulting INS does not consume device data.
"""

from __future__ import annotations

from ..consts import DF, ES, GP, IOPL, M32, VM
from ..errors import CpuFault
from ..registry import register
from .common import set_reg
from .string import _RD, _WR, make_rep

_TSS32 = (0x9, 0xB)


def check_io(cpu, port: int, size: int) -> None:
    """Raise #GP(0) unless the current privilege may access ``size`` ports at ``port``."""
    if not cpu.protected:
        return
    if not cpu.eflags & VM and cpu.cpl <= (cpu.eflags & IOPL) >> 12:
        return
    base, limit = cpu.tr_base, cpu.tr_limit
    if (cpu.tr_attr & 0xF) not in _TSS32 or limit < 0x67:
        raise CpuFault(GP, 0)
    off = cpu.sys_read((base + 0x66) & M32, 2) + (port >> 3)
    if off + 1 > limit:
        raise CpuFault(GP, 0)
    bits = cpu.sys_read((base + off) & M32, 2)
    if (bits >> (port & 7)) & ((1 << size) - 1):
        raise CpuFault(GP, 0)


# ------------------------------------------------------------------ IN / OUT
def _in(size: int, from_dx: bool):
    mask = (1 << (8 * size)) - 1

    def h(cpu, d):
        port = cpu.regs[2] & 0xFFFF if from_dx else d.imm
        check_io(cpu, port, size)
        set_reg(cpu, 0, size, cpu.io.port_in(port, size) & mask)
    return h


def _out(size: int, from_dx: bool):
    mask = (1 << (8 * size)) - 1

    def h(cpu, d):
        port = cpu.regs[2] & 0xFFFF if from_dx else d.imm
        check_io(cpu, port, size)
        cpu.io.port_out(port, size, cpu.regs[0] & mask)
    return h


register("IN", "AL,Ib", _in(1, False))
register("IN", "eAX,Ib", {2: _in(2, False), 4: _in(4, False)})
register("IN", "AL,DX", _in(1, True))
register("IN", "eAX,DX", {2: _in(2, True), 4: _in(4, True)})
register("OUT", "Ib,AL", _out(1, False))
register("OUT", "Ib,eAX", {2: _out(2, False), 4: _out(4, False)})
register("OUT", "DX,AL", _out(1, True))
register("OUT", "DX,eAX", {2: _out(2, True), 4: _out(4, True)})


# ---------------------------------------------------------------- INS / OUTS
def _rep_io(cpu, d, rep, size: int, out: bool, count: int) -> None:
    """REP INS/OUTS: ``cpu.ops.io_string`` is told the count (in guest
    mode the whole string is one I/O exit; the element accesses that follow
    are part of it), ``io_string_done`` however it ends."""
    ops = cpu.ops
    ops.io_string(cpu, cpu.regs[2] & 0xFFFF, size, out, count)
    try:
        rep(cpu, d)
    finally:
        ops.io_string_done(cpu)


def _ins(s: int):
    wr = _WR[s]
    mask = (1 << (8 * s)) - 1

    def one(cpu, d, si, di):
        lin = cpu.lin(ES, di, True)
        cpu.check_write(lin, s)
        wr(cpu, lin, cpu.io.port_in(cpu.regs[2] & 0xFFFF, s) & mask)

    rep = make_rep(s, one, None, False, True, False)

    def ins(cpu, d):
        r = cpu.regs
        amask = M32 if d.asz == 4 else 0xFFFF
        if d.rep:
            if r[1] & amask:
                check_io(cpu, r[2] & 0xFFFF, s)
                _rep_io(cpu, d, rep, s, False, r[1] & amask)
            return
        check_io(cpu, r[2] & 0xFFFF, s)
        di = r[7] & amask
        one(cpu, d, 0, di)
        r[7] = (r[7] & ~amask) | ((di + (-s if cpu.eflags & DF else s)) & amask)
    return ins


def _outs(s: int):
    rd = _RD[s]

    def one(cpu, d, si, di):
        v = rd(cpu, cpu.lin(d.seg, si))
        cpu.io.port_out(cpu.regs[2] & 0xFFFF, s, v)

    rep = make_rep(s, one, None, True, False, False)

    def outs(cpu, d):
        r = cpu.regs
        amask = M32 if d.asz == 4 else 0xFFFF
        if d.rep:
            if r[1] & amask:
                check_io(cpu, r[2] & 0xFFFF, s)
                _rep_io(cpu, d, rep, s, True, r[1] & amask)
            return
        check_io(cpu, r[2] & 0xFFFF, s)
        si = r[6] & amask
        one(cpu, d, si, 0)
        r[6] = (r[6] & ~amask) | ((si + (-s if cpu.eflags & DF else s)) & amask)
    return outs


register("INS", "Yb,DX", _ins(1))
register("INS", "Yz,DX", {2: _ins(2), 4: _ins(4)})
register("OUTS", "DX,Xb", _outs(1))
register("OUTS", "DX,Xz", {2: _outs(2), 4: _outs(4)})
