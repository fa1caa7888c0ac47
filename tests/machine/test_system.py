"""System instructions (ops/system.py).

Directed tests for what needs a descriptor table, a privilege level, paging
or the run loop (privilege faults, LTR/LLDT, control and debug registers, the
TSC, MSRs, CPUID, HLT, the STI/MOV SS interrupt shadow, debug traps); unicorn
comparisons for LAR/LSL/VERR/VERW against a real GDT, SGDT/SIDT/LGDT sizes,
ARPL and the flag instructions.

Exceptions are claimed by ``cpu.intercept`` (recorded as ``(vector, error
code, EIP pushed)``) and stop the run; no guest handler runs.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st
from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
from unicorn import x86_const as ux

from tvmm.machine import Stop, StopKind, segments
from tvmm.machine.consts import (CR0_MP, CR0_PE, CR0_PG, CR0_TS, CR4_DE, CR4_PCE, CR4_TSD, DR6_BD,
                                 DR6_BS, DR6_FIXED, DR7_GD, IF, IOPL, PTE_A, PTE_P, PTE_W, TF, ZF)
from tests.diff.oracle import run_unicorn
from tests.diff.ours import run_ours
from tests.diff.snippet import DATA_BASE, Snippet

from .harness import Machine, gate_desc, seg_desc

CODE = 0x1000
DATA = 0x5000
GDT = 0x10000
TSS = 0x20000
LDT = 0x21000
PD = 0x100000
PT = 0x101000
HLT = b"\xf4"
GP, UD, NM, DB, NP = 13, 6, 7, 1, 11
EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)


def mov_r32(reg: int, v: int) -> bytes:      # mov r32, imm32
    return bytes([0xB8 + reg]) + struct.pack("<I", v & 0xFFFFFFFF)


def mov_r16(reg: int, v: int) -> bytes:      # mov r16, imm16 (in 16-bit code)
    return bytes([0xB8 + reg]) + struct.pack("<H", v & 0xFFFF)


def d32(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFFFFFF)


# -- the GDT every test gets --------------------------------------------------------
GDT_ENTRIES = {
    0x08: seg_desc(0, 0xFFFFFFFF, 0x9B),            # flat code, DPL 0
    0x10: seg_desc(0, 0xFFFFFFFF, 0x93),            # flat data, DPL 0
    0x18: seg_desc(0, 0xFFFFFFFF, 0xFB),            # flat code, DPL 3
    0x20: seg_desc(0, 0xFFFFFFFF, 0xF3),            # flat data, DPL 3
    0x28: seg_desc(TSS, 0x67, 0x89, 0),             # 32-bit TSS, available
    0x30: seg_desc(LDT, 0x17, 0x82, 0),             # LDT
    0x38: seg_desc(TSS, 0x2B, 0x81, 0),             # 16-bit TSS, available
    0x40: gate_desc(0x08, 0x1234, 0xC, dpl=3),      # 32-bit call gate, DPL 3
    0x48: gate_desc(0x08, 0x1234, 0xE),             # interrupt gate
    0x50: gate_desc(0x28, 0, 0x5),                  # task gate
    0x58: seg_desc(0, 0xFFFF, 0x98, 0x4),           # execute-only code
    0x60: seg_desc(0, 0xFFFF, 0x9E, 0x4),           # conforming readable code, DPL 0
    0x68: seg_desc(0x7000, 0xFFF, 0xF1, 0x4),       # read-only data, DPL 3
    0x70: seg_desc(0, 0xFFFF, 0x13, 0x4),           # data, not present
    0x78: seg_desc(0, 0xFFFF, 0x80, 0),             # system type 0 (reserved)
    0x80: seg_desc(0x1000, 0x3FFFFFF, 0x93),        # data, G=1: limit 0x3FFFFFF
    0x88: seg_desc(TSS, 0x67, 0x8B, 0),             # 32-bit TSS, busy
    0x90: seg_desc(TSS, 0x67, 0x09, 0),             # 32-bit TSS, not present
    0x98: seg_desc(0, 0xFFFF, 0xB3, 0x4),           # data, DPL 1
    0xA0: seg_desc(LDT, 0x17, 0x02, 0),             # LDT, not present
}
GDT_LIMIT = 0xA8 - 1
LDT_ENTRIES = {
    0x00: seg_desc(0x3000, 0xFFFF, 0x93, 0x4),      # selector 0x04: data, DPL 0, base 0x3000
    0x08: seg_desc(0, 0xFFFFFFFF, 0xFB),            # selector 0x0C: code, DPL 3
}


def gdt_bytes() -> bytes:
    out = bytearray(GDT_LIMIT + 1)
    for sel, desc in GDT_ENTRIES.items():
        out[sel:sel + 8] = desc
    return bytes(out)


def ldt_bytes() -> bytes:
    out = bytearray(0x18)
    for off, desc in LDT_ENTRIES.items():
        out[off:off + 8] = desc
    return bytes(out)


class Sys(Machine):
    """A machine with the GDT above, exceptions recorded and claimed."""

    def __init__(self):
        super().__init__()
        self.write(GDT, gdt_bytes())
        self.write(LDT, ldt_bytes())
        self.events: list[tuple] = []
        self.regs_at_event: list[list[int]] = []
        self.cpu.intercept = self._intercept

    def _intercept(self, vector, err, eip, soft, external):
        self.events.append((vector, err, eip))
        self.regs_at_event.append(self.cpu.regs[:])
        self.cpu.intr = False
        self.cpu.request_stop(Stop(StopKind.REQUEST, "exception"))
        return True

    def start(self, code: bytes, cpl: int = 0, iopl: int = 0) -> None:
        """Flat 32-bit protected mode at CODE with the GDT loaded."""
        cpu = self.cpu
        self.write(CODE, code)
        self.flat32(CODE, 0x9000)
        cpu.gdtr_base, cpu.gdtr_limit = GDT, GDT_LIMIT
        if cpl == 3:
            for seg in range(6):
                if seg == 1:
                    segments.set_cache(cpu, seg, 0x1B, 0, 0xFFFFFFFF, 0xC0FB)
                else:
                    segments.set_cache(cpu, seg, 0x23, 0, 0xFFFFFFFF, 0xC0F3)
            cpu.set_cpl(3)
        cpu.set_eflags(iopl << 12, IOPL)

    def go(self, code: bytes, cpl: int = 0, n: int = 1000, **kw) -> Stop:
        self.start(code, cpl, **kw)
        stop = self.run(n)
        assert stop.kind != StopKind.ERROR, stop.data.get("traceback")
        return stop

    def zf(self) -> bool:
        return bool(self.cpu.get_eflags() & ZF)


# ===================================================================== privilege
PRIVILEGED = {
    "lldt ax": b"\x0f\x00\xd0",
    "ltr ax": b"\x0f\x00\xd8",
    "lgdt [DATA]": b"\x0f\x01\x15" + d32(DATA),
    "lidt [DATA]": b"\x0f\x01\x1d" + d32(DATA),
    "lmsw ax": b"\x0f\x01\xf0",
    "clts": b"\x0f\x06",
    "invlpg [DATA]": b"\x0f\x01\x3d" + d32(DATA),
    "invd": b"\x0f\x08",
    "wbinvd": b"\x0f\x09",
    "mov eax, cr0": b"\x0f\x20\xc0",
    "mov cr0, eax": b"\x0f\x22\xc0",
    "mov cr3, eax": b"\x0f\x22\xd8",
    "mov cr4, eax": b"\x0f\x22\xe0",
    "mov eax, dr7": b"\x0f\x21\xf8",
    "mov dr0, eax": b"\x0f\x23\xc0",
    "rdmsr": b"\x0f\x32",
    "wrmsr": b"\x0f\x30",
    "hlt": b"\xf4",
    "rdpmc": b"\x0f\x33",
    "cli": b"\xfa",
    "sti": b"\xfb",
}


@pytest.mark.parametrize("name", sorted(PRIVILEGED))
def test_privileged_instruction_at_cpl3_is_gp0(name):
    m = Sys()
    m.write(DATA, b"\xff\x00" + d32(0x12345678))
    m.cpu.regs[EAX] = 0x10
    m.cpu.regs[ECX] = 0x10           # rdmsr/wrmsr: the TSC
    m.go(mov_r32(EBX, 1) + PRIVILEGED[name] + mov_r32(EBX, 2) + HLT, cpl=3)
    cpu = m.cpu
    assert m.events == [(GP, 0, CODE + 5)]
    assert cpu.regs[EBX] == 1 and cpu.regs[EAX] == 0x10
    assert (cpu.gdtr_base, cpu.gdtr_limit, cpu.idtr_base) == (GDT, GDT_LIMIT, 0)
    assert cpu.cr0 & 0xFFFF == 0x11 and not cpu.halted and cpu.tsc_offset == 0


@pytest.mark.parametrize("code", [b"\xfa", b"\xfb"])
def test_cli_sti_allowed_at_cpl3_with_iopl3(code):
    m = Sys()
    m.go(code + HLT, cpl=3, iopl=3)
    assert m.events == [(GP, 0, CODE + 1)]        # only the HLT faults
    assert bool(m.cpu.eflags & IF) == (code == b"\xfb")


def test_rdtsc_at_cpl3_faults_only_with_cr4_tsd():
    m = Sys()
    m.cpu.set_cr4(CR4_TSD)
    m.go(b"\x0f\x31" + HLT, cpl=3)
    assert m.events == [(GP, 0, CODE)]
    m = Sys()
    m.go(b"\x90\x0f\x31" + HLT, cpl=3)
    assert m.events == [(GP, 0, CODE + 3)]        # rdtsc ran; hlt faults
    assert m.cpu.regs[EAX] == 1


def test_rdpmc_with_cr4_pce_at_cpl3_reads_zero_and_checks_ecx():
    m = Sys()
    m.cpu.set_cr4(CR4_PCE)
    m.cpu.regs[EAX] = m.cpu.regs[EDX] = 0xFFFFFFFF
    m.cpu.regs[ECX] = 1
    m.go(b"\x0f\x33" + mov_r32(ECX, 2) + b"\x0f\x33" + HLT, cpl=3)
    assert m.cpu.regs[EAX] == 0 and m.cpu.regs[EDX] == 0
    assert m.events == [(GP, 0, CODE + 7)]        # counter 2 does not exist on a P6


REAL_MODE_UD = {
    "sldt ax": b"\x0f\x00\xc0", "str ax": b"\x0f\x00\xc8", "lldt ax": b"\x0f\x00\xd0",
    "ltr ax": b"\x0f\x00\xd8", "verr ax": b"\x0f\x00\xe0", "verw ax": b"\x0f\x00\xe8",
    "lar ax, bx": b"\x0f\x02\xc3", "lsl ax, bx": b"\x0f\x03\xc3", "arpl ax, bx": b"\x63\xd8",
}


@pytest.mark.parametrize("name", sorted(REAL_MODE_UD))
def test_protected_mode_only_instructions_are_ud_in_real_mode(name):
    m = Sys()
    m.write(CODE, REAL_MODE_UD[name] + HLT)
    m.real(0, CODE)
    m.cpu.regs[EAX] = 0x1234
    m.run(100)
    assert m.events == [(UD, None, CODE)]
    assert m.cpu.regs[EAX] == 0x1234


def test_real_mode_allows_the_cpl0_instructions():
    """Real mode is CPL 0: LGDT, SMSW, CLTS, MOV CR, RDMSR all work."""
    m = Sys()
    m.write(DATA, struct.pack("<HI", 0x1FF, 0x00ABCDEF))
    code = (b"\x66\x0f\x01\x16" + struct.pack("<H", DATA)     # lgdt [DATA] (32-bit operand)
            + b"\x0f\x01\xe0"                                 # smsw ax
            + b"\x0f\x06"                                     # clts
            + b"\x66" + mov_r32(ECX, 0x1B) + b"\x0f\x32"      # rdmsr APIC base
            + HLT)
    m.write(CODE, code)
    m.real(0, CODE)
    m.cpu.set_cr0(m.cpu.cr0 | CR0_TS)
    assert m.run(100).kind == StopKind.HALTED
    assert m.events == []
    assert (m.cpu.gdtr_base, m.cpu.gdtr_limit) == (0xABCDEF, 0x1FF)
    assert m.cpu.regs[EAX] == 0xFEE00900 and not m.cpu.cr0 & CR0_TS


# ========================================================== descriptor tables
def test_lgdt_sgdt_lidt_sidt_round_trip():
    m = Sys()
    m.write(DATA, struct.pack("<HI", 0x1234, 0x89ABCDEF) + struct.pack("<HI", 0x7FF, 0x00400000))
    code = (b"\x0f\x01\x15" + d32(DATA)          # lgdt [DATA]
            + b"\x0f\x01\x1d" + d32(DATA + 6)     # lidt [DATA+6]
            + b"\x0f\x01\x05" + d32(DATA + 0x20)  # sgdt [DATA+0x20]
            + b"\x0f\x01\x0d" + d32(DATA + 0x30)  # sidt [DATA+0x30]
            + HLT)
    m.go(code)
    assert m.events == []
    assert (m.cpu.gdtr_base, m.cpu.gdtr_limit) == (0x89ABCDEF, 0x1234)
    assert (m.cpu.idtr_base, m.cpu.idtr_limit) == (0x00400000, 0x7FF)
    assert m.read(DATA + 0x20, 6) == m.read(DATA, 6)
    assert m.read(DATA + 0x30, 6) == m.read(DATA + 6, 6)


def _uc(code: bytes, setup=None) -> Uc:
    """Run ``code`` at CODE in unicorn (flat 32-bit, CPL 0, our GDT loaded)."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x200000)
    uc.mem_write(CODE, code)
    uc.mem_write(GDT, gdt_bytes())
    uc.mem_write(LDT, ldt_bytes())
    uc.reg_write(ux.UC_X86_REG_GDTR, (0, GDT, GDT_LIMIT, 0))
    uc.reg_write(ux.UC_X86_REG_ESP, 0x9000)
    if setup:
        setup(uc)
    uc.emu_start(CODE, CODE + len(code))
    return uc


@pytest.mark.parametrize("osz", [b"", b"\x66"])
@pytest.mark.parametrize("op", [b"\x05", b"\x0d"])     # sgdt / sidt [disp32]
def test_sgdt_sidt_store_like_unicorn(osz, op):
    """With a 16-bit operand only 24 bits of base are stored, then a zero byte."""
    code = osz + b"\x0f\x01" + op + d32(DATA)
    fill = b"\xaa" * 8

    def setup(uc):
        uc.mem_write(DATA, fill)
        uc.reg_write(ux.UC_X86_REG_GDTR, (0, 0x12345678, 0x1FF, 0))
        uc.reg_write(ux.UC_X86_REG_IDTR, (0, 0x9ABCDEF0, 0x3FF, 0))
    ref = bytes(_uc(code, setup).mem_read(DATA, 8))
    m = Sys()
    m.write(DATA, fill)
    m.start(code + HLT)
    m.cpu.gdtr_base, m.cpu.gdtr_limit = 0x12345678, 0x1FF
    m.cpu.idtr_base, m.cpu.idtr_limit = 0x9ABCDEF0, 0x3FF
    m.run(10)
    assert m.read(DATA, 8) == ref
    assert ref[5] == (0 if osz else ref[5])


@pytest.mark.parametrize("osz", [b"", b"\x66"])
def test_lgdt_operand_size_like_unicorn(osz):
    code = osz + b"\x0f\x01\x15" + d32(DATA)            # lgdt [DATA]
    image = struct.pack("<HI", 0x2345, 0xFEDCBA98)
    uc = _uc(code, lambda uc: uc.mem_write(DATA, image))
    _, base, limit, _ = uc.reg_read(ux.UC_X86_REG_GDTR)
    m = Sys()
    m.write(DATA, image)
    m.go(code + HLT)
    assert (m.cpu.gdtr_base, m.cpu.gdtr_limit) == (base, limit)
    assert base == (0xDCBA98 if osz else 0xFEDCBA98)


def test_ltr_marks_the_tss_busy_and_str_reads_it():
    m = Sys()
    code = (mov_r32(EAX, 0x28) + b"\x0f\x00\xd8"       # ltr ax
            + mov_r32(ECX, 0xFFFFFFFF) + b"\x0f\x00\xc9"   # str ecx
            + b"\x0f\x00\x0d" + d32(DATA) + HLT)       # str [DATA]
    m.write(DATA, b"\xaa" * 4)
    m.go(code)
    cpu = m.cpu
    assert m.events == []
    assert (m.read(GDT + 0x28 + 5, 1)[0] & 0x0F) == 0xB      # busy 32-bit TSS
    assert (cpu.tr_sel, cpu.tr_base, cpu.tr_limit, cpu.tr_attr & 0xFF) == (0x28, TSS, 0x67, 0x8B)
    assert cpu.regs[ECX] == 0x28                      # zero-extended into a 32-bit register
    assert m.read(DATA, 4) == b"\x28\x00\xaa\xaa"     # 16 bits to memory


@pytest.mark.parametrize("sel, event", [
    (0x88, (GP, 0x88)),        # busy TSS
    (0x90, (NP, 0x90)),        # not present
    (0x30, (GP, 0x30)),        # an LDT, not a TSS
    (0x10, (GP, 0x10)),        # a data segment
    (0x00, (GP, 0)),           # null
    (0x2C, (GP, 0x2C)),        # TI=1: must be in the GDT
    (0xB0, (GP, 0xB0)),        # outside the GDT
])
def test_ltr_faults(sel, event):
    m = Sys()
    m.go(mov_r32(EAX, sel) + b"\x0f\x00\xd8" + HLT)
    assert m.events == [(*event, CODE + 5)]
    assert m.cpu.tr_sel == 0
    assert m.read(GDT + 0x28, 8) == GDT_ENTRIES[0x28]


def test_ltr_accepts_a_16_bit_tss():
    m = Sys()
    m.go(mov_r32(EAX, 0x38) + b"\x0f\x00\xd8" + HLT)
    assert m.events == [] and m.cpu.tr_attr & 0xF == 0x3
    assert m.read(GDT + 0x38 + 5, 1)[0] & 0xF == 0x3


def test_lldt_then_load_a_segment_from_the_ldt():
    m = Sys()
    code = (mov_r32(EAX, 0x30) + b"\x0f\x00\xd0"        # lldt ax
            + mov_r32(EAX, 0x04) + b"\x8e\xd8"          # mov ds, ax  (LDT entry 0)
            + b"\x0f\x00\xc1"                           # sldt ecx
            + HLT)
    m.cpu.regs[ECX] = 0xFFFFFFFF
    m.go(code)
    cpu = m.cpu
    assert m.events == []
    assert (cpu.ldtr_sel, cpu.ldtr_base, cpu.ldtr_limit) == (0x30, LDT, 0x17)
    assert (cpu.seg_sel[3], cpu.seg_base[3]) == (0x04, 0x3000)
    assert cpu.regs[ECX] == 0x30


def test_lldt_null_makes_the_ldt_unusable():
    m = Sys()
    code = (mov_r32(EAX, 0x30) + b"\x0f\x00\xd0"        # lldt ax
            + mov_r32(EAX, 0x00) + b"\x0f\x00\xd0"      # lldt ax (null)
            + mov_r32(EAX, 0x04) + b"\x8e\xd8"          # mov ds, ax -> #GP(4)
            + HLT)
    m.go(code)
    assert m.events == [(GP, 0x04, CODE + 21)]
    assert m.cpu.ldtr_sel == 0 and m.cpu.seg_sel[3] == 0x10


@pytest.mark.parametrize("sel, event", [(0x28, (GP, 0x28)), (0xA0, (NP, 0xA0)), (0x34, (GP, 0x34))])
def test_lldt_faults(sel, event):
    m = Sys()
    m.go(mov_r32(EAX, sel) + b"\x0f\x00\xd0" + HLT)
    assert m.events == [(*event, CODE + 5)]
    assert m.cpu.ldtr_sel == 0


# ============================================== LAR / LSL / VERR / VERW vs unicorn
PROBE_SELECTORS = sorted(set(GDT_ENTRIES) | {s | 3 for s in GDT_ENTRIES} | {0x99, 0x00, 0x03, 0xA8, 0x1000}
                         | {0x04, 0x07, 0x0C, 0x0F, 0x14})
PROBES = {"lar": b"\x0f\x02\xc3", "lsl": b"\x0f\x03\xc3", "lar16": b"\x66\x0f\x02\xc3",
          "lsl16": b"\x66\x0f\x03\xc3", "verr": b"\x0f\x00\xe3", "verw": b"\x0f\x00\xeb"}


@pytest.mark.parametrize("op", sorted(PROBES))
def test_descriptor_probes_agree_with_unicorn(op):
    """Every GDT/LDT selector kind, with RPL 0 and 3, flags preset both ways."""
    prefix = mov_r32(ECX, 0x30) + b"\x0f\x00\xd1"       # lldt cx
    for sel in PROBE_SELECTORS:
        for zf0 in (0, ZF):
            code = prefix + PROBES[op]

            def setup(uc, sel=sel, zf0=zf0):
                uc.reg_write(ux.UC_X86_REG_EBX, sel)
                uc.reg_write(ux.UC_X86_REG_EAX, 0xDEADBEEF)
                uc.reg_write(ux.UC_X86_REG_EFLAGS, 0x2 | zf0)
            uc = _uc(code, setup)
            ref = (uc.reg_read(ux.UC_X86_REG_EAX), bool(uc.reg_read(ux.UC_X86_REG_EFLAGS) & ZF))
            m = Sys()
            m.start(code + HLT)
            m.cpu.regs[EBX], m.cpu.regs[EAX] = sel, 0xDEADBEEF
            m.cpu.set_eflags(0x2 | zf0)
            m.run(10)
            assert m.events == []
            assert (m.cpu.regs[EAX], m.zf()) == ref, f"{op} {sel:#x} zf0={zf0}"


def test_descriptor_probes_known_values():
    m = Sys()
    code = (mov_r32(EBX, 0x80) + b"\x0f\x03\xc3"          # lsl eax, ebx  (G=1)
            + mov_r32(EBX, 0x28) + b"\x0f\x02\xcb"        # lar ecx, ebx  (TSS)
            + mov_r32(EBX, 0x48) + b"\x0f\x02\xd3"        # lar edx, ebx  (interrupt gate: invalid)
            + HLT)
    m.cpu.regs[EDX] = 0x5555
    m.go(code)
    assert m.cpu.regs[EAX] == 0x3FFFFFF
    assert m.cpu.regs[ECX] == 0x8900
    assert m.cpu.regs[EDX] == 0x5555 and not m.zf()


@pytest.mark.parametrize("sel, readable, writable", [
    (0x23, True, True),         # DPL 3 data
    (0x13, False, False),       # DPL 0 data: invisible at CPL 3
    (0x63, True, False),        # conforming code: visible at any CPL
    (0x6B, True, False),        # DPL 3 read-only data
    (0x1B, True, False),        # DPL 3 readable code
])
def test_verr_verw_at_cpl3(sel, readable, writable):
    m = Sys()
    m.cpu.regs[EBX] = sel
    m.go(b"\x0f\x00\xe3" + b"\x9c"                      # verr bx; pushf
         + b"\x0f\x00\xeb" + b"\x9c" + b"\xcc", cpl=3)  # verw bx; pushf; int3
    f_verw = m.cpu.peek(0, 4)
    f_verr = m.cpu.peek(4, 4)
    assert bool(f_verr & ZF) == readable
    assert bool(f_verw & ZF) == writable


# ========================================================================= ARPL
@settings(max_examples=150, deadline=None)
@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFF),
       st.sampled_from([0x2, 0x2 | ZF, 0x8D7]), st.booleans())
def test_arpl_agrees_with_unicorn(eax, ebx, mem16, fl, memory):
    code = b"\x63\x1d" + d32(DATA_BASE) if memory else b"\x63\xd8"   # arpl [DATA_BASE], bx / arpl ax, bx
    data = struct.pack("<H", mem16) + bytes(0x1000 - 2)
    snip = Snippet(32, code, {"eax": eax, "ebx": ebx, "eflags": fl}, data)
    ref, ours = run_unicorn(snip), run_ours(snip)
    assert ours.exception == ref.exception
    assert ours.regs == ref.regs
    assert ours.data[:4] == ref.data[:4]


# ==================================================================== flag ops
FLAG_OPS = [b"\xf8", b"\xf9", b"\xf5", b"\xfc", b"\xfd", b"\x9f", b"\x9e", b"\xd6",
            b"\x05\x01\x00\x00\x00"]       # add eax, 1: puts lazy flags in front of the flag ops


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FLAG_OPS), min_size=1, max_size=8), st.integers(0, 0xFFFFFFFF),
       st.integers(0, 0xFFF), st.sampled_from([16, 32]))
def test_flag_instructions_agree_with_unicorn(ops, eax, flags, mode):
    code = b"".join(ops)
    if mode == 16:
        code = code.replace(b"\x05\x01\x00\x00\x00", b"\x05\x01\x00")
    fl = (flags & 0xCD5) | 0x2                # arithmetic flags and DF
    snip = Snippet(mode, code, {"eax": eax, "eflags": fl})
    ref, ours = run_unicorn(snip), run_ours(snip)
    assert ours.exception == ref.exception is None
    assert ours.regs == ref.regs, code.hex()


# ============================================================ control registers
def paged_machine() -> Sys:
    m = Sys()
    m.w32(PD, PT | PTE_P | PTE_W)
    for i in range(1024):
        m.w32(PT + 4 * i, (i << 12) | PTE_P | PTE_W)
    return m


def test_mov_cr0_enables_paging_and_reads_back():
    m = paged_machine()
    m.w32(DATA, 0xCAFEF00D)
    code = (mov_r32(EAX, PD) + b"\x0f\x22\xd8"            # mov cr3, eax
            + b"\x0f\x20\xc0"                            # mov eax, cr0
            + b"\x0d" + d32(CR0_PG)                      # or eax, PG
            + b"\x0f\x22\xc0"                            # mov cr0, eax
            + b"\x0f\x20\xc3"                            # mov ebx, cr0
            + b"\x0f\x20\xd9"                            # mov ecx, cr3
            + b"\x8b\x15" + d32(DATA)                    # mov edx, [DATA]
            + HLT)
    m.go(code)
    cpu = m.cpu
    assert m.events == []
    assert cpu.cr0 & CR0_PG and cpu.regs[EBX] == cpu.cr0 == 0xE0000011
    assert cpu.regs[ECX] == PD and cpu.regs[EDX] == 0xCAFEF00D
    assert m.r32(PT + 4 * (DATA >> 12)) & PTE_A        # the walk really happened


@pytest.mark.parametrize("value, ok", [
    (0x80000010, False),        # PG without PE
    (0x20000011, False),        # NW without CD
    (0x00000051, False),        # reserved bit 6
    (0x00000001, True),         # ET is forced to 1
    (0x6005002F, True),         # every defined bit but PG
])
def test_mov_cr0_checks(value, ok):
    m = Sys()
    m.go(mov_r32(EAX, value) + b"\x0f\x22\xc0" + HLT)
    if ok:
        assert m.events == [] and m.cpu.cr0 == value | 0x10
    else:
        assert m.events == [(GP, 0, CODE + 5)] and m.cpu.cr0 == 0x60000011


@pytest.mark.parametrize("value, ok", [(0x20, False), (0x01, False), (0x02, False), (0x400, False),
                                       (0x10, True), (0x19C, True)])
def test_mov_cr4_accepts_only_implemented_bits(value, ok):
    m = Sys()
    m.go(mov_r32(EAX, value) + b"\x0f\x22\xe0" + b"\x0f\x20\xe3" + HLT)   # mov cr4, eax; mov ebx, cr4
    if ok:
        assert m.events == [] and m.cpu.cr4 == value == m.cpu.regs[EBX]
    else:
        assert m.events == [(GP, 0, CODE + 5)] and m.cpu.cr4 == 0


@pytest.mark.parametrize("code", [b"\x0f\x22\xc8", b"\x0f\x20\xe8", b"\x0f\x20\xf8", b"\x0f\x22\xf0"])
def test_mov_cr1_cr5_cr7_are_ud(code):
    m = Sys()
    m.go(code + HLT)
    assert m.events == [(UD, None, CODE)]


def test_mov_cr2_round_trip():
    m = Sys()
    m.go(mov_r32(EAX, 0xDEAD0000) + b"\x0f\x22\xd0" + b"\x0f\x20\xd1" + HLT)   # mov cr2, eax; mov ecx, cr2
    assert m.cpu.cr2 == m.cpu.regs[ECX] == 0xDEAD0000


def test_invlpg_drops_a_stale_translation():
    m = paged_machine()
    m.w32(0x5000, 0x55555555)
    m.w32(0x7000, 0x77777777)
    pte5 = PT + 4 * 5
    code = (mov_r32(EAX, PD) + b"\x0f\x22\xd8" + mov_r32(EAX, 0xE0000011) + b"\x0f\x22\xc0"
            + b"\xa1" + d32(0x5000)                        # mov eax, [0x5000]   (fills the TLB)
            + b"\xc7\x05" + d32(pte5) + d32(0x7000 | PTE_P | PTE_W)   # remap 0x5000 -> 0x7000
            + b"\x8b\x1d" + d32(0x5000)                    # mov ebx, [0x5000]   (stale TLB entry)
            + b"\x0f\x01\x3d" + d32(0x5000)                # invlpg [0x5000]
            + b"\x8b\x0d" + d32(0x5000)                    # mov ecx, [0x5000]   (new mapping)
            + HLT)
    m.go(code)
    assert m.events == []
    assert m.cpu.regs[EAX] == m.cpu.regs[EBX] == 0x55555555
    assert m.cpu.regs[ECX] == 0x77777777


def test_smsw_lmsw_clts():
    m = Sys()
    code = (b"\x0f\x01\xe0"                             # smsw eax  (all of CR0)
            + mov_r32(EBX, 0xFFFFFFFF) + b"\x66\x0f\x01\xe3"   # smsw bx (low half only)
            + b"\x0f\x01\x25" + d32(DATA)               # smsw [DATA] (16 bits)
            + mov_r32(ECX, 0xFFFE) + b"\x0f\x01\xf1"    # lmsw cx: PE=0 is ignored, MP EM TS set
            + b"\x0f\x20\xc2"                           # mov edx, cr0
            + b"\x0f\x06"                               # clts
            + HLT)
    m.write(DATA, b"\xaa" * 4)
    m.go(code)
    cpu = m.cpu
    assert m.events == []
    assert cpu.regs[EAX] == 0x60000011
    assert cpu.regs[EBX] == 0xFFFF0011
    assert m.read(DATA, 4) == b"\x11\x00\xaa\xaa"
    assert cpu.regs[EDX] == 0x6000001F                 # PE kept, MP EM TS set, ET untouched
    assert cpu.cr0 == 0x60000017 and cpu.protected


def test_lmsw_enters_protected_mode_from_real_mode():
    m = Sys()
    m.write(CODE, mov_r16(EAX, 1) + b"\x0f\x01\xf0" + HLT)   # mov ax, 1; lmsw ax
    m.real(0, CODE)
    assert m.run(10).kind == StopKind.HALTED
    assert m.cpu.protected and m.cpu.cr0 & CR0_PE


# ============================================================== debug registers
def test_dr7_exec_breakpoint_is_a_fault_before_the_instruction():
    m = Sys()
    target = CODE + 5 + 3 + 5 + 3 + 1
    code = (mov_r32(EAX, target) + b"\x0f\x23\xc0"       # mov dr0, eax
            + mov_r32(EAX, 0x1) + b"\x0f\x23\xf8"        # mov dr7, eax (L0, execute, 1 byte)
            + b"\x90"
            + b"\x43"                                    # target: inc ebx
            + HLT)
    m.go(code)
    assert m.events == [(DB, None, target)]
    assert m.cpu.regs[EBX] == 0
    assert m.cpu.dr[6] & 0xF == 0x1 and m.cpu.dr[7] == 0x401


def test_dr7_data_write_breakpoint_traps_after_the_store():
    m = Sys()
    dr7 = (1 << 2) | (1 << 20) | (3 << 22)               # L1, write, 4 bytes
    after = CODE + 5 + 3 + 5 + 3 + 5 + 5
    code = (mov_r32(EAX, 0x6000) + b"\x0f\x23\xc8"       # mov dr1, eax
            + mov_r32(EAX, dr7) + b"\x0f\x23\xf8"        # mov dr7, eax
            + mov_r32(EAX, 0x11223344)
            + b"\xa3" + d32(0x6002)                      # mov [0x6002], eax  (overlaps)
            + b"\x43"                                    # after: inc ebx
            + HLT)
    m.go(code)
    assert m.events == [(DB, None, after)]
    assert m.r32(0x6002) == 0x11223344 and m.regs_at_event[0][EBX] == 0
    assert m.cpu.dr[6] & 0xF == 0x2


def test_dr7_data_breakpoint_ignores_reads_when_write_only():
    m = Sys()
    dr7 = (1 << 2) | (1 << 20) | (3 << 22)
    code = (mov_r32(EAX, 0x6000) + b"\x0f\x23\xc8" + mov_r32(EAX, dr7) + b"\x0f\x23\xf8"
            + b"\xa1" + d32(0x6000) + HLT)               # mov eax, [0x6000]
    assert m.go(code).kind == StopKind.HALTED
    assert m.events == []


def test_tf_single_step_traps_after_each_instruction():
    m = Sys()
    seen = []

    def intercept(vector, err, eip, soft, external):
        seen.append((vector, eip, bool(m.cpu.dr[6] & DR6_BS)))
        if len(seen) == 3:
            m.cpu.request_stop(Stop(StopKind.REQUEST))
        return True

    m.start(b"\x90\x40\x43" + HLT)                       # nop; inc eax; inc ebx
    m.cpu.intercept = intercept
    m.cpu.set_eflags(TF, TF)
    m.run(100)
    assert seen == [(DB, CODE + 1, True), (DB, CODE + 2, True), (DB, CODE + 3, True)]
    assert m.cpu.regs[EAX] == 1 and m.cpu.regs[EBX] == 1


def test_dr7_gd_makes_mov_dr_fault_with_bd():
    m = Sys()
    m.cpu.dr[7] = 0x400 | DR7_GD
    m.go(b"\x0f\x21\xc0" + HLT)                          # mov eax, dr0
    assert m.events == [(DB, None, CODE)]
    assert m.cpu.dr[6] & DR6_BD and not m.cpu.dr[7] & DR7_GD


def test_dr4_dr5_alias_dr6_dr7_unless_cr4_de():
    m = Sys()
    m.go(mov_r32(EAX, 0x5) + b"\x0f\x23\xe0"             # mov dr4, eax -> DR6
         + b"\x0f\x21\xe9"                               # mov ecx, dr5 -> DR7
         + HLT)
    assert m.events == []
    assert m.cpu.dr[6] == DR6_FIXED | 0x5 and m.cpu.regs[ECX] == 0x400
    m = Sys()
    m.cpu.set_cr4(CR4_DE)
    m.go(b"\x0f\x21\xe9" + HLT)
    assert m.events == [(UD, None, CODE)]


# ================================================================ TSC, MSRs
def test_rdtsc_is_the_instruction_count():
    m = Sys()
    m.go(b"\x90" * 5 + b"\x0f\x31" + HLT)
    assert (m.cpu.regs[EAX], m.cpu.regs[EDX]) == (5, 0)


@pytest.mark.parametrize("translate", [True, False])
def test_rdtsc_inside_a_hot_loop_counts_every_instruction(translate):
    m = Sys()
    m.cpu.translate_blocks = translate
    m.cpu.hot = 8                             # translated after 8 of its 20 runs
    code = (mov_r32(ECX, 20)
            + b"\x46"                 # L: inc esi
            + b"\x0f\x31"             # rdtsc
            + b"\x49"                 # dec ecx
            + b"\x75\xfa"             # jnz L
            + HLT)
    m.go(code)
    assert m.cpu.regs[EAX] == 1 + 19 * 4 + 1          # instructions before the last rdtsc
    assert any(b.fn is not None for b in m.cpu.blocks.values()) == translate


def test_rdtsc_adds_tsc_offset_and_wraps_at_64_bits():
    m = Sys()
    m.cpu.tsc_offset = (1 << 64) - 1
    m.go(b"\x90\x90\x0f\x31" + HLT)
    assert (m.cpu.regs[EAX], m.cpu.regs[EDX]) == (1, 0)


def test_wrmsr_tsc_sets_the_counter_which_keeps_counting():
    m = Sys()
    code = (mov_r32(ECX, 0x10) + mov_r32(EAX, 0x1000) + mov_r32(EDX, 5)
            + b"\x0f\x30"             # wrmsr (3 instructions before it)
            + b"\x90"
            + b"\x0f\x32"             # rdmsr: 2 instructions after the write
            + b"\x89\xc3\x89\xd6"     # mov ebx, eax; mov esi, edx
            + b"\x0f\x31"             # rdtsc: 5 after
            + HLT)
    m.go(code)
    r = m.cpu.regs
    assert m.events == []
    assert (r[EBX], r[ESI]) == (0x1002, 0)          # P6: EDX is not written, the high half clears
    assert (r[EAX], r[EDX]) == (0x1005, 0)


def test_sysenter_and_apic_base_msrs():
    m = Sys()
    code = (mov_r32(ECX, 0x174) + mov_r32(EAX, 0x08) + b"\x0f\x30"
            + mov_r32(ECX, 0x176) + mov_r32(EAX, 0xC0001000) + b"\x0f\x30"
            + mov_r32(EAX, 0) + b"\x0f\x32" + b"\x89\xc3"       # rdmsr 0x176 -> ebx
            + mov_r32(ECX, 0x1B) + b"\x0f\x32" + b"\x89\xc6"    # apic base -> esi
            + mov_r32(EAX, 0xFEE00801) + b"\x0f\x30"            # reserved bit 0 -> #GP
            + HLT)
    m.go(code)
    assert m.cpu.msr[0x174] == 0x08 and m.cpu.msr[0x176] == 0xC0001000
    assert m.cpu.regs[EBX] == 0xC0001000 and m.cpu.regs[ESI] == 0xFEE00900
    assert m.events == [(GP, 0, CODE + len(code) - 3)]
    assert m.cpu.msr[0x1B] == 0xFEE00900


@pytest.mark.parametrize("insn", [b"\x0f\x32", b"\x0f\x30"])
@pytest.mark.parametrize("msr", [0x11, 0x1A, 0x177, 0xC0000080, 0xFE])  # 0x8B exists now
def test_unknown_msr_is_gp(insn, msr):
    m = Sys()
    m.cpu.regs[EAX] = m.cpu.regs[EDX] = 0x1234
    m.go(mov_r32(ECX, msr) + insn + HLT)
    assert m.events == [(GP, 0, CODE + 5)]
    assert m.cpu.regs[EAX] == m.cpu.regs[EDX] == 0x1234


# ===================================================================== CPUID
def _cpuid(leaf: int, hypervisor: bool = False, apic_id=None):
    m = Sys()
    m.cpu.cpuid_hypervisor = hypervisor
    if apic_id is not None:
        m.cpu.apic_id = apic_id
    m.cpu.regs[ECX] = 0x5555
    m.go(mov_r32(EAX, leaf) + b"\x0f\xa2" + HLT)
    r = m.cpu.regs
    return r[EAX], r[EBX], r[ECX], r[EDX]


def test_cpuid_leaf0_is_genuine_intel_with_max_leaf_2():
    eax, ebx, ecx, edx = _cpuid(0)
    assert eax == 2
    assert struct.pack("<III", ebx, edx, ecx) == b"GenuineIntel"


def test_cpuid_leaf1_advertises_only_what_is_implemented():
    eax, ebx, ecx, edx = _cpuid(1)
    assert eax == 0x652 and ebx == 0 and ecx == 0          # Pentium II (family 6, model 5)
    for bit in (0, 2, 3, 4, 5, 8, 9, 11, 13, 15, 23, 24):   # FPU DE PSE TSC MSR CX8 APIC SEP PGE CMOV MMX FXSR
        assert edx >> bit & 1, bit
    for bit in (1, 6, 7, 12, 14, 16, 17, 25, 26):   # VME PAE MCE MTRR MCA PAT PSE36 SSE SSE2
        assert not edx >> bit & 1, bit


def test_cpuid_hypervisor_bit_and_apic_id():
    assert _cpuid(1, hypervisor=True)[2] == 1 << 31
    assert _cpuid(1, hypervisor=False)[2] == 0
    assert _cpuid(1, apic_id=3)[1] == 3 << 24


def test_cpuid_leaf2_gives_the_pentium_pro_descriptors():
    assert _cpuid(2) == (0x03020101, 0, 0, 0x0C040843)


@pytest.mark.parametrize("leaf", [3, 0x40000000, 0x80000000, 0xFFFFFFFF])
def test_cpuid_unknown_leaves_return_the_highest_basic_leaf(leaf):
    assert _cpuid(leaf) == _cpuid(2)


# ========================================================= x87, WAIT, UD2
@pytest.mark.parametrize("code", [b"\xd9\xc0", b"\xdd\x05" + d32(0xFFFFFFF0), b"\xdf\xe0", b"\xd8\x00"])
def test_x87_escape_is_nm_with_cr0_em(code):
    """With CR0.EM every escape is #NM (the memory operand is not touched;
    tests/machine/test_x87.py has the FPU itself)."""
    m = Sys()
    m.start(code + HLT)
    m.cpu.set_cr0(m.cpu.cr0 | 4)                              # CR0.EM
    m.run(10)
    assert m.events == [(NM, None, CODE)]


@pytest.mark.parametrize("cr0_bits, faults", [(0, False), (CR0_MP, False), (CR0_TS, False),
                                              (CR0_MP | CR0_TS, True)])
def test_wait_is_nm_only_with_mp_and_ts(cr0_bits, faults):
    m = Sys()
    m.start(b"\x9b" + HLT)
    m.cpu.set_cr0(m.cpu.cr0 | cr0_bits)
    m.run(10)
    assert m.events == ([(NM, None, CODE)] if faults else [])


def test_ud2():
    m = Sys()
    m.go(b"\x90\x0f\x0b" + HLT)
    assert m.events == [(UD, None, CODE + 1)]


# ============================================================ HLT, STI shadow
def test_hlt_stops_halted_and_an_interrupt_wakes_it():
    m = Sys()
    stop = m.go(b"\x90" + HLT + b"\x43" + HLT)
    assert stop.kind == StopKind.HALTED and m.cpu.eip == CODE + 2 and m.cpu.halted
    assert m.run(10).kind == StopKind.HALTED                 # stays halted
    m.cpu.set_eflags(IF, IF)
    m.cpu.intr_ack = lambda: 0x30
    m.cpu.set_intr(True)
    stop = m.run(10)
    assert stop.kind == StopKind.REQUEST                     # the intercept stops the run at once
    assert m.events == [(0x30, None, CODE + 2)]
    assert not m.cpu.halted and m.cpu.regs[EBX] == 0
    m.run(10)
    assert m.cpu.regs[EBX] == 1                              # it went on after the HLT


def _pending_interrupt(m: Sys, from_eip: int) -> None:
    """An INTR line that is up, whose controller offers vector 0x20 once EIP
    has reached ``from_eip``."""
    m.cpu.intr_ack = lambda: 0x20 if m.cpu.eip >= from_eip else None
    m.cpu.set_intr(True)


@pytest.mark.parametrize("translate", [True, False])
def test_sti_delays_interrupts_by_one_instruction(translate):
    m = Sys()
    m.start(b"\xfb\x90\x90\x90" + HLT)                 # sti; nop; nop; nop
    m.cpu.translate_blocks = translate
    _pending_interrupt(m, CODE)
    m.run(100)
    assert m.events == [(0x20, None, CODE + 2)]       # after the nop that follows sti


def test_sti_with_if_already_set_has_no_shadow():
    """Interrupts are recognised between blocks; STI ends one, so without a
    shadow the interrupt comes right after it."""
    m = Sys()
    m.start(b"\x90\xfb\x90\x90" + HLT)                 # nop; sti; nop; nop
    m.cpu.set_eflags(IF, IF)
    _pending_interrupt(m, CODE + 1)
    m.run(100)
    assert m.events == [(0x20, None, CODE + 2)]


def test_sti_hlt_idiom_wakes_after_hlt():
    m = Sys()
    m.start(b"\xfb" + HLT + b"\x90")
    _pending_interrupt(m, CODE)
    m.run(100)
    assert m.events == [(0x20, None, CODE + 2)]


def test_mov_ss_delays_interrupts_by_one_instruction():
    m = Sys()
    m.start(mov_r32(EAX, 0x10) + b"\x8e\xd0" + b"\x90\x90" + HLT)   # mov ss, ax; nop; nop
    m.cpu.set_eflags(IF, IF)
    _pending_interrupt(m, CODE + 7)                    # offered right after mov ss
    m.run(100)
    assert m.events == [(0x20, None, CODE + 8)]


# ============================================ segment registers, far pointers
def test_mov_from_sreg_sizes():
    m = Sys()
    m.write(DATA, b"\xaa" * 4)
    code = (mov_r32(EAX, 0xFFFFFFFF) + b"\x8c\xd8"     # mov eax, ds (zero-extends)
            + mov_r32(EBX, 0xFFFFFFFF) + b"\x66\x8c\xcb"   # mov bx, cs
            + b"\x8c\x15" + d32(DATA)                  # mov [DATA], ss (16 bits)
            + HLT)
    m.go(code)
    assert m.cpu.regs[EAX] == 0x10 and m.cpu.regs[EBX] == 0xFFFF0008
    assert m.read(DATA, 4) == b"\x10\x00\xaa\xaa"


@pytest.mark.parametrize("code", [b"\x8e\xc8", b"\x8e\xf0", b"\x8e\x3d" + d32(DATA), b"\x8c\xf0",
                                  b"\x8c\x3d" + d32(DATA)])
def test_mov_sreg_undefined_registers_are_ud(code):
    m = Sys()
    m.go(code + HLT)
    assert m.events == [(UD, None, CODE)]


def test_mov_ss_with_a_code_selector_faults_and_changes_nothing():
    m = Sys()
    m.go(mov_r32(EAX, 0x08) + b"\x8e\xd0" + HLT)
    assert m.events == [(GP, 0x08, CODE + 5)]
    assert m.cpu.seg_sel[2] == 0x10


def test_lds_in_real_mode():
    m = Sys()
    m.write(0x100, struct.pack("<HH", 0x1234, 0x5678))
    m.write(CODE, b"\xc5\x36\x00\x01" + HLT)           # lds si, [0x100]
    m.real(0, CODE)
    m.run(10)
    assert m.events == []
    assert m.cpu.regs[ESI] == 0x1234
    assert (m.cpu.seg_sel[3], m.cpu.seg_base[3]) == (0x5678, 0x56780)


def test_lss_and_lfs_in_protected_mode():
    m = Sys()
    m.write(DATA, d32(0x8000) + struct.pack("<H", 0x20 | 0) + d32(0x1234) + struct.pack("<H", 0x04))
    code = (b"\x0f\xb2\x25" + d32(DATA)                # lss esp, [DATA]
            + HLT)
    m.go(code)
    # selector 0x20 has RPL 0 but DPL 3: not a valid SS at CPL 0
    assert m.events == [(GP, 0x20, CODE)] and m.cpu.regs[ESP] == 0x9000
    m = Sys()
    m.write(DATA, d32(0x8000) + struct.pack("<H", 0x10) + d32(0x1234) + struct.pack("<H", 0x98))
    code = (b"\x0f\xb2\x25" + d32(DATA)                # lss esp, [DATA]
            + b"\x0f\xb4\x1d" + d32(DATA + 6)          # lfs ebx, [DATA+6]  (DPL 1 data: fine)
            + HLT)
    m.go(code)
    assert m.events == []
    assert (m.cpu.regs[ESP], m.cpu.seg_sel[2]) == (0x8000, 0x10)
    assert (m.cpu.regs[EBX], m.cpu.seg_sel[4]) == (0x1234, 0x98)


def test_les_with_a_bad_selector_leaves_the_register_alone():
    m = Sys()
    m.write(DATA, d32(0x4444) + struct.pack("<H", 0x48))   # an interrupt gate
    m.cpu.regs[ESI] = 0x1111
    m.go(b"\xc4\x35" + d32(DATA) + HLT)                # les esi, [DATA]
    assert m.events == [(GP, 0x48, CODE)]
    assert m.cpu.regs[ESI] == 0x1111 and m.cpu.seg_sel[0] == 0x10
