"""The CPython floor: how fast the best conceivable Python translation of a
workload could run, measured on this machine in this sitting.

Each function here is the workload's loop written by hand the way no
translator can safely write it: guest registers in Python locals, memory
reached through a pre-filled TLB dict and the same ``memoryview`` of RAM
that tvmm uses, and *nothing else* -- no arithmetic flags, no alignment or
page-crossing tests, no fault handling, no instruction budget, no interrupt
or debugger checks, returns that trust a compare.  A real translation has to
do all of those, so a workload's ``floor_mips`` bounds what any Python
translation of it can reach; the gap between it and tvmm's figure is what is
left to win.

Invariant (``tests/test_bench_floor.py``): each floor function ends in the
same registers, memory and instruction count as tvmm running the workload,
so the bound is for the same work.
"""

from __future__ import annotations

import time

from . import workloads as W

M32 = 0xFFFFFFFF


def _ram():
    """Fresh workload RAM (its memory image) and its dword view."""
    ram = bytearray(W.MEM_SIZE)
    for pa, data in W.build_memory_image(W.INT_LOOP):
        ram[pa:pa + len(data)] = data
    return ram, memoryview(ram).cast("I")


def _tlb() -> dict[int, int]:
    """Page number -> page frame address, for the identity-mapped first
    4 MiB that both workloads use (filled in advance: no walks)."""
    return {vpn: vpn << 12 for vpn in range(1024)}


def int_loop(ecx: int, esi: int):
    """``int-loop-paged``: returns (registers, RAM, instructions, seconds in
    the loop)."""
    ram, ram32 = _ram()
    tlb = _tlb()
    edi = esi
    iterations = ecx
    t0 = time.perf_counter()
    while True:
        eax = ram32[(tlb[esi >> 12] | (esi & 0xFFF)) >> 2]   # mov eax, [esi]
        eax = (eax + ecx) & M32                               # add eax, ecx
        eax ^= 0x5A5A5A5A                                     # xor eax, 0x5a5a5a5a
        ram32[(tlb[esi >> 12] | (esi & 0xFFF)) >> 2] = eax   # mov [esi], eax
        esi = (esi + 4) & M32                                 # add esi, 4
        esi &= 0x3FFF                                         # and esi, 0x3fff
        esi |= edi                                            # or esi, edi
        ecx = (ecx - 1) & M32                                 # dec ecx
        if not ecx:                                           # jnz 1b
            break
    seconds = time.perf_counter() - t0
    regs = {"eax": eax, "ecx": ecx, "esi": esi, "edi": edi}
    return regs, ram, 1 + 9 * iterations + 1, seconds         # mov edi, esi ... hlt


RET_TO_LOOP = W.CODE + 6      # after `call f` in the loop
RET_TO_F = W.CODE + 22        # after `call g` in f


def call_ret(ecx: int):
    """``call-ret``: returns (registers, RAM, instructions, seconds in the
    loop)."""
    ram, ram32 = _ram()
    tlb = _tlb()
    esp, ebp, eax = W.STACK_TOP, 0, 0
    iterations = ecx
    t0 = time.perf_counter()
    while True:
        esp = (esp - 4) & M32                                     # push ecx
        ram32[(tlb[esp >> 12] | (esp & 0xFFF)) >> 2] = ecx
        esp = (esp - 4) & M32                                     # call f
        ram32[(tlb[esp >> 12] | (esp & 0xFFF)) >> 2] = RET_TO_LOOP
        esp = (esp - 4) & M32                                     # f: push ebp
        ram32[(tlb[esp >> 12] | (esp & 0xFFF)) >> 2] = ebp
        ebp = esp                                                 # mov ebp, esp
        a = (ebp + 8) & M32                                       # mov eax, [ebp+8]
        eax = ram32[(tlb[a >> 12] | (a & 0xFFF)) >> 2]
        esp = (esp - 4) & M32                                     # call g
        ram32[(tlb[esp >> 12] | (esp & 0xFFF)) >> 2] = RET_TO_F
        eax = (eax + eax * 2) & M32                               # g: lea eax, [eax+eax*2]
        target = ram32[(tlb[esp >> 12] | (esp & 0xFFF)) >> 2]     # ret
        esp = (esp + 4) & M32
        if target != RET_TO_F:
            break
        ebp = ram32[(tlb[esp >> 12] | (esp & 0xFFF)) >> 2]        # pop ebp
        esp = (esp + 4) & M32
        target = ram32[(tlb[esp >> 12] | (esp & 0xFFF)) >> 2]     # ret
        esp = (esp + 4) & M32
        if target != RET_TO_LOOP:
            break
        ecx = ram32[(tlb[esp >> 12] | (esp & 0xFFF)) >> 2]        # pop ecx
        esp = (esp + 4) & M32
        ecx = (ecx - 1) & M32                                     # dec ecx
        if not ecx:                                               # jnz 1b
            break
    seconds = time.perf_counter() - t0
    regs = {"eax": eax, "ecx": ecx, "esp": esp, "ebp": ebp}
    return regs, ram, 13 * iterations + 1, seconds                # ... hlt


FLOORS = {
    W.INT_LOOP.name: lambda: int_loop(W.INT_LOOP.regs["ecx"], W.INT_LOOP.regs["esi"]),
    W.CALL_RET.name: lambda: call_ret(W.CALL_RET.regs["ecx"]),
}


def measure(name: str) -> dict | None:
    """The floor's speed on workload ``name`` (best of three runs), or None
    when it has no floor function."""
    fn = FLOORS.get(name)
    if fn is None:
        return None
    best = None
    for _ in range(3):
        _, _, insns, dt = fn()
        best = dt if best is None else min(best, dt)
    return {"instructions": insns, "seconds": best, "mips": insns / best / 1e6}
