"""Canonical processor states that loaders and tests start guests in.

``enter_flat32`` is the state the Multiboot specification hands a kernel
(and the one the differential tests and benchmarks use): protected mode,
paging off, CPL 0, every segment a flat 4 GiB segment, interrupts off.  The
descriptor caches are loaded directly, as a boot loader's final far jump
would leave them; GDTR is left as the guest must load its own.
"""

from __future__ import annotations

from . import segments
from .consts import CR0_PE, CS, EFLAGS_FIXED

FLAT_CODE = 0xC09B   # present, DPL0, code, readable, accessed; G, D
FLAT_DATA = 0xC093   # present, DPL0, data, writable, accessed; G, B


def enter_flat32(cpu, eip: int, esp: int = 0, code_sel: int = 0x08, data_sel: int = 0x10) -> None:
    cpu.set_cr0((cpu.guest_cr(0) | CR0_PE) & ~(1 << 31))
    for seg in range(6):
        if seg == CS:
            segments.set_cache(cpu, seg, code_sel, 0, 0xFFFFFFFF, FLAT_CODE)
        else:
            segments.set_cache(cpu, seg, data_sel, 0, 0xFFFFFFFF, FLAT_DATA)
    cpu.set_cpl(0)
    cpu.eip = eip
    cpu.regs[4] = esp
    cpu.lf_op = 0
    cpu.eflags = EFLAGS_FIXED
    cpu._refresh()


def enter_real(cpu, cs: int, ip: int, ss: int = 0, sp: int = 0) -> None:
    cpu.set_cr0(cpu.guest_cr(0) & ~(CR0_PE | (1 << 31)))
    for seg in range(6):
        segments.load_real(cpu, seg, 0)
    segments.load_real(cpu, CS, cs)
    segments.load_real(cpu, 2, ss)
    cpu.set_cpl(0)
    cpu.eip = ip
    cpu.regs[4] = sp
    cpu._refresh()
