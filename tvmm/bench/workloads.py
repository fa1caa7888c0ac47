"""Benchmark workloads: fixed guest programs with their machine set-up.

Each workload is flat 32-bit protected-mode code (assembled from the source
in its docstring with GNU as; the bytes are committed so no toolchain is
needed) plus the memory layout and registers it starts with.  The same
description drives tvmm and, in a separate process, unicorn.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

CODE = 0x1000
GDT = 0x500
IDT = 0x600
STACK_TOP = 0x9000
PD = 0x10000          # page directory
PT0 = 0x11000         # page table for 0-4 MiB (identity)
PT1 = 0x12000         # page table for 4-8 MiB (pf workload region)
BUF = 0x100000
MEM_SIZE = 16 << 20


@dataclass
class Workload:
    name: str
    code: bytes
    regs: dict
    paging: bool
    iterations_note: str
    idt: dict = field(default_factory=dict)     # vector -> code offset of handler
    unicorn: bool = True                        # unicorn can run it as-is (no IDT delivery)


INT_LOOP = Workload(
    "int-loop-paged",
    bytes.fromhex("89f78b0601c8355a5a5a5a890683c60481e6ff3f000009fe4975e7f4"),
    {"ecx": 2_000_000, "esi": BUF},
    paging=True,
    iterations_note="""
        mov edi, esi
    1:  mov eax, [esi] ; add eax, ecx ; xor eax, 0x5a5a5a5a ; mov [esi], eax
        add esi, 4 ; and esi, 0x3fff ; or esi, edi ; dec ecx ; jnz 1b
        hlt""",
)

MEMCPY = Workload(
    "memcpy-rep-movs",
    bytes.fromhex("5657b900400000fcf3a55f5e4b75f1f4"),
    {"ebx": 20000, "esi": BUF, "edi": BUF + 0x10000},
    paging=True,
    iterations_note="""
    1:  push esi ; push edi ; mov ecx, 16384 ; cld ; rep movsd
        pop edi ; pop esi ; dec ebx ; jnz 1b ; hlt""",
)

CALL_RET = Workload(
    "call-ret",
    bytes.fromhex("51e805000000594975f6f45589e58b4508e8020000005dc38d0440c3"),
    {"ecx": 500_000},
    paging=True,
    iterations_note="""
    1:  push ecx ; call f ; pop ecx ; dec ecx ; jnz 1b ; hlt
    f:  push ebp ; mov ebp, esp ; mov eax, [ebp+8] ; call g ; pop ebp ; ret
    g:  lea eax, [eax+eax*2] ; ret""",
)

PF_LOOP = Workload(
    "page-fault-loop",
    bytes.fromhex("89eeb900010000890e81c6001000004975f589d7b90001000031c0f3ab0f20d80f22d84b75daf4"
                  "50570f20d089c729efc1ef0c2500f0ffff29e8050000800083c8038904ba5f5883c404cf"),
    {"ebx": 40, "ebp": 0x400000, "edx": PT1},
    paging=True,
    iterations_note="""
    sweep: write one dword into each of 256 unmapped pages (each write takes a
    #PF whose handler maps the page and IRETs), then clear the 256 PTEs and
    reload CR3; repeat ebx times.""",
    idt={14: 0x27},
    unicorn=False,
)

ALL = [INT_LOOP, MEMCPY, CALL_RET, PF_LOOP]


def build_memory_image(w: Workload) -> list[tuple[int, bytes]]:
    """(physical address, bytes) pieces that make up the workload's RAM."""
    pieces = [(CODE, w.code)]
    gdt = struct.pack("<QQQ", 0, 0x00CF9B000000FFFF, 0x00CF93000000FFFF)
    pieces.append((GDT, gdt))
    if w.idt:
        idt = bytearray(256 * 8)
        for vec, off in w.idt.items():
            target = CODE + off
            lo = (target & 0xFFFF) | (0x08 << 16)
            hi = (target & 0xFFFF0000) | 0x8E00
            idt[vec * 8:vec * 8 + 8] = struct.pack("<II", lo, hi)
        pieces.append((IDT, bytes(idt)))
    if w.paging:
        pd = bytearray(4096)
        pd[0:4] = struct.pack("<I", PT0 | 3)
        pd[4:8] = struct.pack("<I", PT1 | 3)
        pt0 = b"".join(struct.pack("<I", (i << 12) | 3) for i in range(1024))
        pieces += [(PD, bytes(pd)), (PT0, pt0), (PT1, bytes(4096))]
    return pieces
