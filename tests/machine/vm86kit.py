"""A small protected-mode kernel for virtual-8086-mode tests, written
straight into memory: GDT, IDT, a 32-bit TSS with an I/O bitmap, ring-0
handlers that record what they were given, and an IRET frame that enters
VM86.  The same layout runs on a bare CPU and as a guest under the monitor
(``Bare`` / ``Guest``: ``cpu``, ``mem`` with ``read``/``write``/
``write_bytes``/``read_bytes``, ``run(n)``).

Every handler (one per vector, at ``HANDLERS + vector * 0x100``) stores,
at ``rec(vector)``: +0x00 the 12 dwords at its ESP on entry (the frame),
+0x40 ES DS FS GS as it found them (through SS: DS may be null), +0x50 its
ESP, +0x54 its EFLAGS, +0x58 its CS, +0x5C how many times it ran; then it
halts, or returns (``RETURNING``: pops the error code, if any, and adds
``skip`` to the saved EIP first; EAX is preserved).
"""

from __future__ import annotations

import struct

from tvmm.machine.boot_state import enter_flat32
from tvmm.machine.consts import IF, VM

from .harness import Machine, gate_desc, seg_desc

GDT, IDT, TSS = 0x1000, 0x2000, 0x10000
IOMAP = 0x68
TSS_LIMIT = IOMAP + 0x2000          # the bitmap's 8 KiB and the trailing 0xFF byte
HANDLERS = 0x20000
REC = 0x60000
ENTRY = 0x1F000                     # ring 0: iretd
FRAME = 0x8000                      # the IRET frame (ring-0 ESP at entry)
ESP0 = 0x9000                       # ring-0 stack for events from VM86 (TSS.ESP0)
K_CODE, K_DATA, TSS_SEL, U_CODE, U_DATA, CONF_CODE = 0x08, 0x10, 0x18, 0x20, 0x28, 0x30
HAS_ERR = {8, 10, 11, 12, 13, 14, 17}

# VM86 segments
V_CS, V_SS, V_DS, V_ES, V_FS, V_GS = 0x3000, 0x4000, 0x5000, 0x5100, 0x5200, 0x5300
V_SP = 0xFFF0
V_CODE = V_CS << 4
BAD_GATE_DPL3, BAD_GATE_CONF = 0x40, 0x41   # vectors whose gates lead to unusable handlers


def p32(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFFFFFF)


def rec(vector: int) -> int:
    return REC + vector * 0x80


def handler(vector: int, returning: bool = False, skip: int = 0) -> bytes:
    base = rec(vector)
    c = b"\x36\xa3" + p32(base + 0x60)                            # mov [ss:abs], eax (kept for the return)
    for i, modrm in enumerate((0x05, 0x1D, 0x25, 0x2D)):          # mov [ss:abs], es/ds/fs/gs
        c += b"\x36\x8c" + bytes([modrm]) + p32(base + 0x40 + 4 * i)
    for i in range(12):                                          # mov eax, [esp+4i]; mov [ss:abs], eax
        c += b"\x8b\x44\x24" + bytes([4 * i]) + b"\x36\xa3" + p32(base + 4 * i)
    c += b"\x36\x89\x25" + p32(base + 0x50)                      # mov [ss:abs], esp
    c += b"\x9c\x58\x36\xa3" + p32(base + 0x54)                  # pushfd; pop eax; mov [ss:abs], eax
    c += b"\x36\x8c\x0d" + p32(base + 0x58)                      # mov [ss:abs], cs
    c += b"\x36\xff\x05" + p32(base + 0x5C)                      # inc dword [ss:abs]
    if not returning:
        return c + b"\xf4"
    c += b"\x36\xa1" + p32(base + 0x60)                           # mov eax, [ss:abs]
    if vector in HAS_ERR:
        c += b"\x83\xc4\x04"                                     # add esp, 4
    if skip:
        c += b"\x83\x04\x24" + bytes([skip])                     # add dword [esp], skip
    return c + b"\xcf"                                           # iretd


class Bare:
    name = "bare"

    def __init__(self, tmp_path=None):
        self.tmp_path = tmp_path
        self.m = Machine(8 << 20)
        self.cpu = self.m.cpu
        self.mem = self.m.mem

    def run(self, n: int = 10_000):
        return self.cpu.run(n)


class Guest:
    name = "guest"

    def __init__(self, tmp_path):
        from ..monitor.kit import boot
        self.tmp_path = tmp_path
        self.monitor, self.g = boot(tmp_path, b"\xf4")
        self.cpu = self.g.vcpu
        self.mem = self.g.gmem

    def run(self, n: int = 10_000):
        return self.g.run(n)


def setup(env, vm86_code: bytes, *, iopl: int = 0, eflags: int = 0, returning=(), skips=None,
          allowed_ports=(), trap_gates=(), dpl3_gates=(3, 4, 0x21, BAD_GATE_DPL3, BAD_GATE_CONF),
          frame_eip: int = 0) -> None:
    """Write the kernel and ``vm86_code`` (at V_CS:0) and leave the CPU at
    ring 0 about to execute the IRETD that enters VM86 with IOPL ``iopl``."""
    mem, cpu = env.mem, env.cpu
    skips = skips or {}
    gdt = (bytes(8) + seg_desc(0, 0xFFFFFFFF, 0x9A) + seg_desc(0, 0xFFFFFFFF, 0x92)
           + seg_desc(TSS, TSS_LIMIT, 0x8B, flags=0) + seg_desc(0, 0xFFFFFFFF, 0xFA)
           + seg_desc(0, 0xFFFFFFFF, 0xF2) + seg_desc(0, 0xFFFFFFFF, 0x9E))
    mem.write_bytes(GDT, gdt)
    idt = bytearray()
    for v in range(0x42):
        sel = {BAD_GATE_DPL3: U_CODE, BAD_GATE_CONF: CONF_CODE}.get(v, K_CODE)
        idt += gate_desc(sel, HANDLERS + v * 0x100, 0xF if v in trap_gates else 0xE,
                         dpl=3 if v in dpl3_gates else 0)
        mem.write_bytes(HANDLERS + v * 0x100, handler(v, v in returning, skips.get(v, 0)))
        mem.write_bytes(rec(v), b"\xff" * 0x5C + bytes(4))
    mem.write_bytes(IDT, bytes(idt))
    tss = bytearray(IOMAP) + bytearray(b"\xff" * 0x2001)
    tss[4:8] = p32(ESP0)
    tss[8:12] = p32(K_DATA)
    tss[0x66:0x68] = struct.pack("<H", IOMAP)
    for port in allowed_ports:
        tss[IOMAP + port // 8] &= ~(1 << (port % 8))
    mem.write_bytes(TSS, bytes(tss))
    mem.write_bytes(V_CODE, vm86_code)
    mem.write_bytes(ENTRY, b"\xcf")
    flags = VM | (iopl << 12) | 2 | eflags
    mem.write_bytes(FRAME, b"".join(p32(v) for v in (frame_eip, V_CS, flags, V_SP, V_SS, V_ES, V_DS, V_FS, V_GS)))
    enter_flat32(cpu, ENTRY, FRAME)
    cpu.gdtr_base, cpu.gdtr_limit = GDT, len(gdt) - 1
    cpu.idtr_base, cpu.idtr_limit = IDT, len(idt) - 1
    cpu.tr_sel, cpu.tr_base, cpu.tr_limit, cpu.tr_attr = TSS_SEL, TSS, TSS_LIMIT, 0x8B
    assert not cpu.eflags & IF


def record(env, vector: int) -> dict:
    """What the handler for ``vector`` stored (``count`` 0: it never ran)."""
    base = rec(vector)
    rd = env.mem.read
    return {"frame": [rd(base + 4 * i, 4) for i in range(12)],
            "segs": [rd(base + 0x40 + 4 * i, 2) for i in range(4)],
            "esp": rd(base + 0x50, 4), "eflags": rd(base + 0x54, 4), "cs": rd(base + 0x58, 2),
            "count": rd(base + 0x5C, 4)}
