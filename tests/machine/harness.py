"""A bare machine for directed CPU tests: RAM, a CPU, and helpers to build
descriptor tables, page tables and code in guest memory.

Tests that need a device attach one themselves; nothing here owns a loop
beyond calling ``cpu.run``.
"""

from __future__ import annotations

import struct

from tvmm.machine import CPU, PhysicalMemory, Stop, StopKind
from tvmm.machine.boot_state import enter_flat32, enter_real


def seg_desc(base: int, limit: int, access: int, flags: int = 0xC) -> bytes:
    """An 8-byte code/data/system descriptor. ``flags`` is G D/B L AVL (bits 3..0)."""
    if limit > 0xFFFFF:
        limit >>= 12
        flags |= 0x8
    lo = (limit & 0xFFFF) | ((base & 0xFFFF) << 16)
    hi = ((base >> 16) & 0xFF) | (access << 8) | (limit & 0xF0000) | (flags << 20) | (base & 0xFF000000)
    return struct.pack("<II", lo, hi)


def gate_desc(selector: int, offset: int, type_: int = 0xE, dpl: int = 0, present: bool = True) -> bytes:
    """An interrupt (0xE), trap (0xF) or call (0xC) gate."""
    hi = (offset & 0xFFFF0000) | (0x8000 if present else 0) | (dpl << 13) | (type_ << 8)
    lo = (offset & 0xFFFF) | (selector << 16)
    return struct.pack("<II", lo, hi)


class Machine:
    """RAM + CPU with memory helpers. Addresses are physical (= linear while paging is off)."""

    def __init__(self, mem_size: int = 4 << 20):
        self.mem = PhysicalMemory(mem_size)
        self.cpu = CPU(self.mem)

    def write(self, pa: int, data: bytes) -> None:
        self.mem.write_bytes(pa, data)

    def read(self, pa: int, n: int) -> bytes:
        return self.mem.read_bytes(pa, n)

    def w32(self, pa: int, v: int) -> None:
        self.write(pa, struct.pack("<I", v & 0xFFFFFFFF))

    def r32(self, pa: int) -> int:
        return struct.unpack("<I", self.read(pa, 4))[0]

    def flat32(self, eip: int, esp: int = 0x9000) -> None:
        enter_flat32(self.cpu, eip, esp)

    def real(self, cs: int, ip: int, ss: int = 0, sp: int = 0x7000) -> None:
        enter_real(self.cpu, cs, ip, ss, sp)

    def run(self, n: int = 10_000) -> Stop:
        return self.cpu.run(n)

    def run_to_hlt(self, n: int = 100_000) -> Stop:
        stop = self.cpu.run(n)
        assert stop.kind == StopKind.HALTED, f"expected hlt, got {stop}"
        return stop
