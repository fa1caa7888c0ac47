"""A tiny guest construction kit for monitor tests.

``tiny_kernel(code)`` makes a Multiboot image (the a.out kludge: header,
then the code, loaded at 1 MiB) so tests boot guests through the real boot
path without a compiler.  ``Layout`` then writes a flat GDT, an IDT whose
handlers record what they saw, and page tables straight into a guest's
memory, the way the guest's own kernel would have.

Handy hand-assembled IA-32 encodings are in ``X``.
"""

from __future__ import annotations

import struct

from tvmm.guestspec import GuestSpec
from tvmm.monitor.vmm import Monitor

LOAD = 0x100000
ENTRY = LOAD + 32
GDT, IDT, PD = 0x1000, 0x2000, 0x10000           # guest-physical
RESULT = 0x5000                                  # handlers store error code, CR2, vector here
HANDLER = 0x6000
STACK_TOP = 0x90000


def tiny_kernel(code: bytes) -> bytes:
    magic, flags = 0x1BADB002, 0x00010000
    hdr = struct.pack("<8I", magic, flags, (-(magic + flags)) & 0xFFFFFFFF, LOAD, LOAD, 0, 0, ENTRY)
    return hdr + code


class X:
    """Encodings (32-bit code)."""
    HLT = b"\xf4"
    CLI = b"\xfa"
    STI = b"\xfb"
    CPUID = b"\x0f\xa2"
    IN_AL_DX = b"\xec"
    OUT_DX_AL = b"\xee"
    LOAD_EAX_EBX = b"\x8b\x03"          # mov eax, [ebx]
    STORE_EBX_EAX = b"\x89\x03"         # mov [ebx], eax
    MOV_CR3_EAX = b"\x0f\x22\xd8"
    MOV_EAX_CR3 = b"\x0f\x20\xd8"
    MOV_CR0_EAX = b"\x0f\x22\xc0"
    MOV_EAX_CR0 = b"\x0f\x20\xc0"
    MOV_CR4_EAX = b"\x0f\x22\xe0"
    MOV_EAX_CR4 = b"\x0f\x20\xe0"
    INVLPG_EBX = b"\x0f\x01\x3b"
    JMP_SELF = b"\xeb\xfe"

    @staticmethod
    def mov_eax(v: int) -> bytes:
        return b"\xb8" + struct.pack("<I", v)

    @staticmethod
    def mov_ebx(v: int) -> bytes:
        return b"\xbb" + struct.pack("<I", v)

    @staticmethod
    def mov_edx(v: int) -> bytes:
        return b"\xba" + struct.pack("<I", v)

    @staticmethod
    def store_abs(addr: int) -> bytes:      # mov [addr], eax
        return b"\xa3" + struct.pack("<I", addr)

    @staticmethod
    def load_abs(addr: int) -> bytes:       # mov eax, [addr]
        return b"\xa1" + struct.pack("<I", addr)


def boot(tmp_path, code: bytes, *, name: str = "g", mem: int = 8 << 20, monitor: Monitor | None = None,
         pool_frames: int = 256, cpus: int = 1):
    """A monitor (new unless given) with one guest running ``code`` at ENTRY."""
    path = tmp_path / f"{name}.bin"
    path.write_bytes(tiny_kernel(code))
    spec = GuestSpec(name=name, kernel=str(path), mem=mem, cpus=cpus)
    if monitor is None:
        monitor = Monitor(64 << 20, pool_frames=pool_frames)
    return monitor, monitor.add_guest(spec)


# The #PF/#GP/#UD handler: store the error code (or 0xEEEE), CR2 and a marker, then halt.
def _handler(vector: int, has_error: bool) -> bytes:
    code = b""
    if has_error:
        code += b"\x58"                                   # pop eax
    else:
        code += X.mov_eax(0xEEEE)
    code += X.store_abs(RESULT)
    code += b"\x0f\x20\xd0" + X.store_abs(RESULT + 4)     # mov eax, cr2
    code += X.mov_eax(vector) + X.store_abs(RESULT + 8)
    return code + X.HLT


class Layout:
    """Kernel structures a test writes into guest memory before running."""

    def __init__(self, guest):
        self.g = guest
        self.mem = guest.gmem
        self.next_table = PD + 0x1000

    def flat_gdt_idt(self) -> None:
        gdt = struct.pack("<QQQ", 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF)
        self.mem.write_bytes(GDT, gdt)
        cpu = self.g.vcpu
        cpu.gdtr_base, cpu.gdtr_limit = GDT, len(gdt) - 1
        idt = bytearray()
        for v in range(32):
            h = HANDLER + v * 64
            self.mem.write_bytes(h, _handler(v, v in (8, 10, 11, 12, 13, 14, 17)))
            idt += struct.pack("<HHHH", h & 0xFFFF, 0x08, 0x8E00, h >> 16)
        self.mem.write_bytes(IDT, bytes(idt))
        cpu.idtr_base, cpu.idtr_limit = IDT, len(idt) - 1
        cpu.regs[4] = STACK_TOP
        self.mem.write(RESULT + 8, 4, 0xFFFFFFFF)

    def result(self) -> tuple[int, int, int]:
        """(error code, CR2, vector) stored by the last handler; vector -1 if none ran."""
        m = self.mem
        vec = m.read(RESULT + 8, 4)
        return m.read(RESULT, 4), m.read(RESULT + 4, 4), (-1 if vec == 0xFFFFFFFF else vec)

    def map(self, gva: int, gpa: int, flags: int = 0x7, pd: int = PD) -> int:
        """Map one 4 KiB page (flags: P=1 W=2 U=4 ...); returns the PTE's guest-physical address."""
        m = self.mem
        pde_at = pd + (gva >> 22) * 4
        pde = m.read(pde_at, 4)
        if not pde & 1:
            table = self.next_table
            self.next_table += 0x1000
            m.write_bytes(table, bytes(4096))
            pde = table | 0x7
            m.write(pde_at, 4, pde)
        pte_at = (pde & 0xFFFFF000) + ((gva >> 12) & 0x3FF) * 4
        m.write(pte_at, 4, (gpa & 0xFFFFF000) | flags)
        return pte_at

    def identity(self, start: int, end: int, flags: int = 0x3, pd: int = PD) -> None:
        for a in range(start & ~0xFFF, end, 0x1000):
            self.map(a, a, flags, pd)

    def paging_on(self, pd: int = PD, cr4: int = 0, wp: bool = True) -> None:
        """Turn paging on as the guest would (guest-semantic register writes)."""
        cpu = self.g.vcpu
        cpu.set_cr4(cr4)
        cpu.set_cr3(pd)
        cpu.set_cr0(cpu.guest_cr(0) | 0x80000000 | (0x10000 if wp else 0))


def run(monitor, n: int = 100_000):
    return monitor.run(n)
