"""A protected-mode rig for task-switch and NMI tests, bare or under the monitor.

``rig(mode, tmp_path)`` gives the same machine either way: ``"bare"`` is a
``PC`` (what ``tvmm run --bare`` runs), ``"monitor"`` a guest of a
``Monitor`` (shadow paging, exits, the event log).  Both get the same GDT,
IDT, TSSs and code written to (guest-)physical memory, the processor in flat
32-bit protected mode at CPL 0 with TR loaded, and run until the code halts.

Hand-assembled 32-bit code helpers are in ``A``.
"""

from __future__ import annotations

import struct

from tests.machine.harness import gate_desc, seg_desc
from tests.monitor.kit import X, boot
from tvmm.machine.boot_state import enter_flat32
from tvmm.machine.pc import PC

GDT, IDT = 0x200000, 0x201000
TSS_A, TSS_B, TSS_C, TSS_DF, TSS_X = 0x202000, 0x202100, 0x202200, 0x202300, 0x202400
LDT = 0x203000
RES = 0x205000                        # results the code stores
CODE_A, CODE_B, CODE_C, CODE_DF, CODE_H = 0x210000, 0x211000, 0x212000, 0x213000, 0x214000
STACK_A, STACK_B, STACK_DF = 0x280000, 0x281000, 0x282000     # tops
PD1, PD2, PT_LOW, PT_HI1, PT_HI2, PT_APIC = 0x300000, 0x301000, 0x302000, 0x303000, 0x304000, 0x305000
APIC = 0xFEE00000
FRAME1, FRAME2 = 0x3F0000, 0x3F1000

# selectors
K_CODE, K_DATA, U_CODE, U_DATA = 0x08, 0x10, 0x1B, 0x23
SEL_A, SEL_B, GATE_B, SEL_LDT, SEL_C, SEL_DF, SEL_X = 0x28, 0x30, 0x38, 0x40, 0x48, 0x50, 0x58
CODE_NP, DATA_NP, XONLY, CODE_C16 = 0x60, 0x68, 0x70, 0x78
GATE_B_NP, GATE_X3, TSS_X3, GATE_LDT_TSS = 0x80, 0x88, 0x90, 0x98
CONF_CODE = 0xA0
LDT_DATA = 0x04 | 0x08                # LDT entry 1 (TI=1): data at FRAME1


def p16(v: int) -> bytes:
    return struct.pack("<H", v & 0xFFFF)


def p32(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFFFFFF)


class A:
    """32-bit encodings."""
    HLT, IRET, CLI, PUSHFD, POP_EAX, POP_ECX, PUSH_EAX = b"\xf4", b"\xcf", b"\xfa", b"\x9c", b"\x58", b"\x59", b"\x50"
    STR_AX = b"\x0f\x00\xc8"          # str ax
    MOV_EAX_CR0 = b"\x0f\x20\xc0"
    MOV_EAX_CR2 = b"\x0f\x20\xd0"
    MOV_EAX_CR3 = b"\x0f\x20\xd8"
    MOV_EAX_DR6 = b"\x0f\x21\xf0"
    MOV_DS_AX = b"\x8e\xd8"
    MOV_EAX_DS = b"\x8c\xd8"
    XOR_ECX_ECX = b"\x31\xc9"
    DIV_ECX = b"\xf7\xf1"
    CLTS = b"\x0f\x06"

    @staticmethod
    def jmpf(sel: int, off: int = 0) -> bytes:
        return b"\xea" + p32(off) + p16(sel)

    @staticmethod
    def callf(sel: int, off: int = 0) -> bytes:
        return b"\x9a" + p32(off) + p16(sel)

    @staticmethod
    def int_(n: int) -> bytes:
        return b"\xcd" + bytes([n])

    @staticmethod
    def mov_eax(v: int) -> bytes:
        return b"\xb8" + p32(v)

    @staticmethod
    def mov_ecx(v: int) -> bytes:
        return b"\xb9" + p32(v)

    @staticmethod
    def store(addr: int) -> bytes:        # mov [addr], eax
        return b"\xa3" + p32(addr)

    @staticmethod
    def load(addr: int) -> bytes:         # mov eax, [addr]
        return b"\xa1" + p32(addr)

    @staticmethod
    def store_imm(addr: int, v: int) -> bytes:   # mov dword [addr], imm32
        return b"\xc7\x05" + p32(addr) + p32(v)

    @staticmethod
    def inc_mem(addr: int) -> bytes:      # inc dword [addr]
        return b"\xff\x05" + p32(addr)

    @staticmethod
    def mov_ax(v: int) -> bytes:          # mov ax, imm16
        return b"\x66\xb8" + p16(v)


def tss32(eip: int, esp: int, *, cs=K_CODE, ss=K_DATA, ds=K_DATA, es=K_DATA, fs=K_DATA, gs=K_DATA,
          eflags=0x2, cr3=0, ldt=0, trap=0, regs=(0,) * 8, link=0) -> bytes:
    regs = list(regs)
    regs[4] = esp
    out = bytearray(0x68)
    struct.pack_into("<I", out, 0x00, link)
    struct.pack_into("<I", out, 0x1C, cr3)
    struct.pack_into("<II", out, 0x20, eip, eflags)
    struct.pack_into("<8I", out, 0x28, *regs)
    for i, s in enumerate((es, cs, ss, ds, fs, gs)):
        struct.pack_into("<I", out, 0x48 + 4 * i, s)
    struct.pack_into("<II", out, 0x60, ldt, trap)
    return bytes(out)


def tss16(ip: int, sp: int, *, cs, ss=K_DATA, ds=K_DATA, es=K_DATA, flags=0x2, ldt=0, regs=(0,) * 8) -> bytes:
    regs = list(regs)
    regs[4] = sp
    out = bytearray(0x2C)
    struct.pack_into("<HH", out, 0x0E, ip, flags)
    struct.pack_into("<8H", out, 0x12, *regs)
    struct.pack_into("<5H", out, 0x22, es, cs, ss, ds, ldt)
    return bytes(out)


def task_gate(tss_sel: int, dpl: int = 0, present: bool = True) -> bytes:
    return gate_desc(tss_sel, 0, 0x5, dpl, present)


class Rig:
    """The machine: ``write``/``r32``/``r16``, ``cpu``, ``run``, ``gdt``."""

    def __init__(self, mode: str, tmp_path=None):
        self.mode = mode
        if mode == "bare":
            self.pc = PC(8 << 20)
            self.cpu = self.pc.cpu
            self.monitor = self.guest = None
            self._write = self.pc.mem.write_bytes
            self._read = self.pc.mem.read_bytes
        else:
            self.monitor, self.guest = boot(tmp_path, X.HLT, mem=8 << 20)
            self.pc = self.guest.pc
            self.cpu = self.guest.vcpu
            self._write = self.guest.gmem.write_bytes
            self._read = self.guest.gmem.read_bytes
        self.gdt({
            K_CODE: seg_desc(0, 0xFFFFFFFF, 0x9B), K_DATA: seg_desc(0, 0xFFFFFFFF, 0x93),
            U_CODE & ~3: seg_desc(0, 0xFFFFFFFF, 0xFB), U_DATA & ~3: seg_desc(0, 0xFFFFFFFF, 0xF3),
            SEL_A: seg_desc(TSS_A, 0x67, 0x8B, flags=0),
            SEL_B: seg_desc(TSS_B, 0x67, 0x89, flags=0),
            GATE_B: task_gate(SEL_B),
            SEL_LDT: seg_desc(LDT, 0x0F, 0x82, flags=0),
            SEL_C: seg_desc(TSS_C, 0x2B, 0x81, flags=0),
            SEL_DF: seg_desc(TSS_DF, 0x67, 0x89, flags=0),
            SEL_X: seg_desc(TSS_X, 0x67, 0x89, flags=0),
            CODE_NP: seg_desc(0, 0xFFFFFFFF, 0x1B),
            DATA_NP: seg_desc(0, 0xFFFFFFFF, 0x13),
            XONLY: seg_desc(0, 0xFFFFFFFF, 0x99),
            CODE_C16: seg_desc(CODE_C, 0xFFFF, 0x9B, flags=0x4),    # 32-bit code, 64 KiB at CODE_C
            GATE_B_NP: task_gate(SEL_B, present=False),
            GATE_X3: task_gate(SEL_X, dpl=3),
            TSS_X3: seg_desc(TSS_X, 0x67, 0xE9, flags=0),       # DPL 3 TSS
            GATE_LDT_TSS: task_gate(0x0C),                      # names a TSS "in the LDT"
            CONF_CODE: seg_desc(0, 0xFFFFFFFF, 0x9F),
        })
        self.write(LDT, seg_desc(0, 0, 0) + seg_desc(FRAME1, 0xFFF, 0x93))
        cpu = self.cpu
        cpu.gdtr_base, cpu.gdtr_limit = GDT, 0xFF
        cpu.idtr_base, cpu.idtr_limit = IDT, 0x7FF
        self.write(TSS_A, tss32(0, STACK_A))
        cpu.tr_sel, cpu.tr_base, cpu.tr_limit, cpu.tr_attr = SEL_A, TSS_A, 0x67, 0x8B
        enter_flat32(cpu, CODE_A, STACK_A)
        self.events: list = []

    # -- memory
    def write(self, pa: int, data: bytes) -> None:
        self._write(pa, data)

    def read(self, pa: int, n: int) -> bytes:
        return self._read(pa, n)

    def r32(self, pa: int) -> int:
        return struct.unpack("<I", self.read(pa, 4))[0]

    def r16(self, pa: int) -> int:
        return struct.unpack("<H", self.read(pa, 2))[0]

    def w32(self, pa: int, v: int) -> None:
        self.write(pa, p32(v))

    def gdt(self, entries: dict) -> None:
        for sel, desc in entries.items():
            self.write(GDT + (sel & ~7), desc)

    def gdt_type(self, sel: int) -> int:
        return (self.r32(GDT + (sel & ~7) + 4) >> 8) & 0xF

    def idt(self, vector: int, desc: bytes) -> None:
        self.write(IDT + 8 * vector, desc)

    def code(self, at: int, *parts: bytes) -> int:
        data = b"".join(parts)
        self.write(at, data)
        return at + len(data)

    # -- paging (guest-semantic register writes, as the guest would make them)
    def paging(self, pd: int = PD1, hole: int | None = None, high: dict | None = None) -> None:
        """Identity-map 0-4 MiB through PT_LOW in ``pd`` (PD1 and PD2 share
        it), except the page ``hole``; ``high`` maps 0x400000 + n pages of
        a second table per directory: {pd: (pt, frame)}."""
        pt = bytearray()
        for i in range(1024):
            pt += p32(0 if hole is not None and i == hole >> 12 else (i << 12) | 3)
        self.write(PT_LOW, bytes(pt))
        for d in (PD1, PD2):
            self.write(d, bytes(4096))
            self.w32(d, PT_LOW | 3)
        for d, (table, frame) in (high or {}).items():
            self.write(table, bytes(4096))
            self.w32(table, frame | 3)
            self.w32(d + 4, table | 3)
        self.write(PT_APIC, bytes(4096))                 # the local APIC's page, uncached
        self.w32(PT_APIC + ((APIC >> 12) & 0x3FF) * 4, APIC | 0x13)
        for d in (PD1, PD2):
            self.w32(d + (APIC >> 22) * 4, PT_APIC | 3)
        cpu = self.cpu
        cpu.set_cr3(pd)
        cpu.set_cr0(cpu.guest_cr(0) | 0x80000000)

    # -- running
    def run(self, n: int = 100_000):
        if self.monitor is None:
            return self.pc.run(n)
        return self.guest.run(n)

    @property
    def halted(self) -> bool:
        if self.monitor is None:
            return self.cpu.halted
        return self.guest.state == "halted"

    @property
    def crashed(self) -> str | None:
        if self.monitor is None:
            return self.cpu.dead.detail if self.cpu.dead is not None else None
        return self.guest.reason if self.guest.state == "crashed" else None

    def kinds(self, kind: str) -> list:
        """The monitor's events of ``kind`` for this guest, oldest first."""
        return list(reversed(self.monitor.log.recent("g", kinds={kind}, limit=10_000)))

    # -- claiming every exception instead of delivering it (directed fault tests)
    def intercept_faults(self) -> None:
        """Record every exception (vector, error code) and stop there instead
        of delivering it (bare only: the monitor's vCPU logs through the hook)."""
        def hook(vector, err, eip, soft, external):
            self.events.append((vector, err))
            if soft:
                return False
            self.cpu.halted = True
            self.cpu.attention = True
            return True
        self.cpu.intercept = hook
