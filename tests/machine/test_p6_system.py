"""The P6 system instructions, one test (or parametrized family) per row of
docs/ARCHITECTURE.md's "P6 system instructions" table: RDPMC, RDMSR/WRMSR,
SYSENTER/SYSEXIT, CMPXCHG8B, CPUID, INVD/WBINVD, UD2, RSM, LOCK.  Each runs
on a bare CPU and as a guest under the monitor (``env``), where RDMSR,
WRMSR and CPUID exit: the guest sees the same answers (but for CPUID's
hypervisor bit)."""

from __future__ import annotations

import struct

import pytest

from tvmm.machine.boot_state import enter_flat32
from tvmm.machine.consts import CR4_PCE, VM
from tvmm.machine.native import CPUID_FEATURES

from .vm86kit import V_CS, Bare, Guest, U_CODE, U_DATA, record, setup

CODE, STUB, FRAME3, RES = 0x1E000, 0x1D000, 0x1C000, 0x70000
GP, UD = 13, 6


@pytest.fixture(params=[Bare, Guest], ids=["bare", "guest"])
def env(request, tmp_path):
    return request.param(tmp_path)


def d(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFFFFFF)


def mov(reg: str, v: int) -> bytes:
    return bytes([0xB8 + "eax ecx edx ebx esp ebp esi edi".split().index(reg)]) + d(v)


def store(reg: str, slot: int) -> bytes:
    """mov [RES + 4 * slot], reg"""
    return b"\x89" + bytes([0x05 | "eax ecx edx ebx esp ebp esi edi".split().index(reg) << 3]) + d(RES + 4 * slot)


RDMSR, WRMSR, RDPMC, CPUID, HLT = b"\x0f\x32", b"\x0f\x30", b"\x0f\x33", b"\x0f\xa2", b"\xf4"


def run32(env, code: bytes, cpl: int = 0, cr4: int = 0, n: int = 10_000, msr=None):
    """Run 32-bit flat ``code`` at CPL ``cpl`` (the vm86kit kernel's GDT,
    IDT and recording handlers around it); results at RES.  One run per
    ``env``: ``fresh(env)`` gives another."""
    setup(env, b"\xcc")
    cpu, mem = env.cpu, env.mem
    mem.write_bytes(RES, b"\xee" * 0x100)
    if cpl == 3:
        code = b"\x66\xb8" + struct.pack("<H", U_DATA | 3) + b"\x8e\xd8\x8e\xc0" + code   # ds = es = user data
        mem.write_bytes(STUB, b"\xcf")                                                     # iretd to ring 3
        mem.write_bytes(FRAME3, d(CODE) + d(U_CODE | 3) + d(2) + d(0x7000) + d(U_DATA | 3))
        enter_flat32(cpu, STUB, FRAME3)
    else:
        enter_flat32(cpu, CODE, 0x7000)
    mem.write_bytes(CODE, code + (b"\xcc" if cpl == 3 else HLT))     # ring 3 ends through INT3
    if cr4:
        cpu.set_cr4(cr4)
    cpu.msr.update(msr or {})
    env.run(n)


def fresh(env):
    return type(env)(getattr(env, "tmp_path", None))


def res(env, slot: int) -> int:
    return env.mem.read(RES + 4 * slot, 4)


def faulted(env, vector: int) -> tuple[int, int] | None:
    """(error code or EIP, ...) of the fault the kernel's handler recorded, or None."""
    r = record(env, vector)
    return None if r["count"] == 0 else tuple(r["frame"][:2])


# ------------------------------------------------------------------ RDPMC
def test_rdpmc_reads_the_perfctr_msrs_which_never_count(env):
    code = (mov("ecx", 0xC1) + mov("eax", 0x80000005) + mov("edx", 0) + WRMSR       # PERFCTR0: sign-extends
            + mov("ecx", 0xC2) + mov("eax", 7) + WRMSR
            + mov("ecx", 0) + RDPMC + store("eax", 0) + store("edx", 1)
            + b"\x90" * 20 + mov("ecx", 1) + RDPMC + store("eax", 2) + store("edx", 3))
    run32(env, code)
    assert [res(env, i) for i in range(4)] == [0x80000005, 0xFF, 7, 0]


@pytest.mark.parametrize("cpl,cr4,ecx,ok", [(3, 0, 0, False), (3, CR4_PCE, 1, True), (0, 0, 1, True),
                                            (0, 0, 2, False), (3, CR4_PCE, 0x40000000, False)])
def test_rdpmc_privilege_and_counter_checks(env, cpl, cr4, ecx, ok):
    run32(env, mov("ecx", ecx) + RDPMC + store("eax", 0), cpl=cpl, cr4=cr4)
    assert (faulted(env, GP) is None) == ok
    assert (res(env, 0) == 0) == ok


# ------------------------------------------------------------------ RDMSR / WRMSR
@pytest.mark.parametrize("index,value,back", [
    (0x1B, 0xFEE00900, 0xFEE00900),           # APIC base (BSP, enabled)
    (0x174, 0x10, 0x10), (0x175, 0x12345678, 0x12345678), (0x176, 0xC0001000, 0xC0001000),
    (0x8B, 0, 0),                              # BIOS_SIGN_ID: write 0, read microcode revision 0
    (0x186, 0x0043003C, 0x0043003C), (0x187, 0x00410079, 0x00410079),
])
def test_msrs_a_p6_kernel_touches_read_back(env, index, value, back):
    run32(env, mov("ecx", index) + mov("eax", value) + mov("edx", 0) + WRMSR
           + mov("eax", 0xAAAA) + mov("edx", 0xBBBB) + RDMSR + store("eax", 0) + store("edx", 1))
    assert faulted(env, GP) is None
    assert (res(env, 0), res(env, 1)) == (back, 0)


def test_tsc_msr_write_sets_the_counter(env):
    run32(env, mov("ecx", 0x10) + mov("eax", 0x1000) + mov("edx", 0x55) + WRMSR + b"\x90\x90"
           + RDMSR + store("eax", 0) + store("edx", 1))
    assert (res(env, 0), res(env, 1)) == (0x1000 + 3, 0)    # P6: EDX ignored, high half cleared


@pytest.mark.parametrize("index", [0xFE, 0x200, 0x2FF, 0x179, 0x1D9, 0x17, 0x0, 0xC0000080, 0x40000000])
def test_msrs_this_p6_lacks_are_gp(env, index):
    """MTRRs (CPUID.MTRR is 0), machine check, DEBUGCTL, PLATFORM_ID, P5
    MSRs, EFER, hypervisor ranges: #GP(0) for RDMSR and for WRMSR."""
    run32(env, mov("ecx", index) + RDMSR)
    assert faulted(env, GP) == (0, CODE + 5)
    env = fresh(env)
    run32(env, mov("ecx", index) + mov("eax", 0) + mov("edx", 0) + WRMSR)
    assert faulted(env, GP) == (0, CODE + 15)


@pytest.mark.parametrize("index,eax,edx", [(0x186, 1 << 21, 0), (0x187, 0, 1), (0x1B, 0xFEE00001, 0)])
def test_msr_reserved_bits_are_gp(env, index, eax, edx):
    run32(env, mov("ecx", index) + mov("eax", eax) + mov("edx", edx) + WRMSR)
    assert faulted(env, GP) == (0, CODE + 15)


def test_rdmsr_and_wrmsr_at_cpl3_are_gp(env):
    run32(env, mov("ecx", 0x10) + RDMSR, cpl=3)
    assert faulted(env, GP)[0] == 0


# ------------------------------------------------------------------ SYSENTER / SYSEXIT
def test_sysenter_and_sysexit_round_trip(env):
    k_entry = CODE + 0x800
    code = (mov("ecx", 0x174) + mov("eax", 0x08) + mov("edx", 0) + WRMSR       # CS 0x08, SS 0x10
            + mov("ecx", 0x175) + mov("eax", 0x6000) + WRMSR
            + mov("ecx", 0x176) + mov("eax", k_entry) + WRMSR)
    back = len(code) + 20
    code += mov("ecx", 0x5000) + mov("edx", CODE + back) + b"\x0f\x35"         # sysexit to ring 3
    code += b"\x90" * (back - len(code))
    code += b"\x8c\xc8" + store("eax", 0) + b"\x89\xe0" + store("eax", 1)      # mov eax, cs; mov eax, esp
    code += b"\x0f\x34"                                                         # sysenter
    kernel = b"\x8c\xc8" + store("eax", 2) + b"\x8c\xd0" + store("eax", 3) + store("esp", 4) + HLT
    code += b"\x90" * (k_entry - CODE - len(code)) + kernel
    run32(env, code)
    assert [res(env, i) for i in range(5)] == [0x1B, 0x5000, 0x08, 0x10, 0x6000]
    assert env.cpu.cpl == 0


@pytest.mark.parametrize("insn,cpl,cs", [(b"\x0f\x34", 0, 0), (b"\x0f\x34", 3, 3), (b"\x0f\x35", 3, 8),
                                         (b"\x0f\x35", 0, 0)],
                         ids=["sysenter-null-cs", "sysenter-null-cs-cpl3", "sysexit-cpl3", "sysexit-null-cs"])
def test_sysenter_sysexit_gp_cases(env, insn, cpl, cs):
    run32(env, insn, cpl=cpl, msr={0x174: cs})
    assert faulted(env, GP) is not None and faulted(env, GP)[0] == 0


def test_sysenter_from_vm86_leaves_it(env):
    setup(env, b"\x0f\x34")                     # VM86 code: sysenter
    cpu = env.cpu
    cpu.msr.update({0x174: 0x08, 0x175: 0x6000, 0x176: CODE})
    env.mem.write_bytes(CODE, HLT)
    env.run(1000)
    assert not cpu.eflags & VM and cpu.cpl == 0 and cpu.eip == CODE + 1 and cpu.code32
    assert cpu.seg_base[3] == 0x5000 << 4           # DS keeps its VM86 cache, as on hardware


# ------------------------------------------------------------------ CMPXCHG8B
def test_cmpxchg8b_equal_unequal_lock_and_register_form(env):
    code = (mov("esi", RES + 0x80) + mov("eax", 1) + mov("edx", 2) + mov("ebx", 0x33) + mov("ecx", 0x44)
            + b"\xf0\x0f\xc7\x0e"                                  # lock cmpxchg8b [esi]: equal
            + b"\x9c\x58" + store("eax", 0)                        # ZF
            + b"\x0f\xc7\x0e"                                      # again: now unequal
            + store("eax", 1) + store("edx", 2) + b"\x9c\x58" + store("eax", 3)
            + b"\x0f\xc7\xc8")                                     # register form: #UD
    code = mov("eax", 1) + mov("edx", 2) + mov("esi", RES + 0x80) + b"\x89\x06\x89\x56\x04" + code
    run32(env, code)                                                # the first line: m64 = 2:1
    assert res(env, 0) & 0x40 and not res(env, 3) & 0x40
    assert (res(env, 1), res(env, 2)) == (0x33, 0x44)
    assert env.mem.read(RES + 0x80, 8) == 0x44_00000033
    assert faulted(env, UD) is not None


# ------------------------------------------------------------------ CPUID
def test_cpuid_leaves(env):
    code = b""
    for i, leaf in enumerate((0, 1, 2, 3, 0x80000000, 0x40000000)):
        code += mov("eax", leaf) + mov("ecx", 0) + CPUID
        code += store("eax", 4 * i) + store("ebx", 4 * i + 1) + store("ecx", 4 * i + 2) + store("edx", 4 * i + 3)
    run32(env, code)
    leaf = [[res(env, 4 * i + j) for j in range(4)] for i in range(6)]
    assert leaf[0] == [2, 0x756E6547, 0x6C65746E, 0x49656E69]          # max leaf 2, GenuineIntel
    assert leaf[1][0] == 0x652 and leaf[1][3] == CPUID_FEATURES
    assert leaf[1][3] & (1 << 11) and not leaf[1][3] & (1 << 1)         # SEP, no VME
    assert leaf[1][2] == (1 << 31 if env.name == "guest" else 0)        # the hypervisor bit: the one difference
    assert leaf[2] == [0x03020101, 0, 0, 0x0C040843]
    assert leaf[3] == leaf[4] == leaf[5] == leaf[2]                     # above the maximum: the highest leaf


# ------------------------------------------------------------------ INVD / WBINVD, UD2, RSM
@pytest.mark.parametrize("insn", [b"\x0f\x08", b"\x0f\x09"], ids=["invd", "wbinvd"])
def test_invd_wbinvd_are_cpl0_only(env, insn):
    run32(env, insn + mov("eax", 1) + store("eax", 0))
    assert faulted(env, GP) is None and res(env, 0) == 1
    env = fresh(env)
    run32(env, insn, cpl=3)
    assert faulted(env, GP) is not None
    env = fresh(env)
    setup(env, insn)                                  # VM86: CPL 3
    env.run(1000)
    assert faulted(env, GP) == (0, 0) and record(env, GP)["frame"][2] == V_CS


@pytest.mark.parametrize("insn", [b"\x0f\x0b", b"\x0f\xaa"], ids=["ud2", "rsm"])
def test_ud2_and_rsm_are_ud(env, insn):
    run32(env, insn)
    assert faulted(env, UD) == (CODE, 8)              # no error code: EIP, CS


# ------------------------------------------------------------------ LOCK
@pytest.mark.parametrize("code,ok", [
    (b"\xf0\x01\x06", True),            # lock add [esi], eax
    (b"\xf0\x87\x06", True),            # lock xchg [esi], eax
    (b"\xf0\x0f\xc1\x06", True),        # lock xadd [esi], eax
    (b"\xf0\x01\xc0", False),           # lock add eax, eax: register destination
    (b"\xf0\x39\x06", False),           # lock cmp [esi], eax: not lockable
    (b"\xf0\x8b\x06", False),           # lock mov eax, [esi]
    (b"\xf0\x90", False),               # lock nop
    (b"\xf0\x0f\xc7\xc8", False),       # lock cmpxchg8b eax (register form)
    (b"\xf0\x0f\xa2", False),           # lock cpuid
], ids=["add", "xchg", "xadd", "add-reg", "cmp", "mov", "nop", "cmpxchg8b-reg", "cpuid"])
def test_lock_on_forms_that_cannot_be_locked_is_ud(env, code, ok):
    run32(env, mov("esi", RES + 0x80) + code + mov("eax", 1) + store("eax", 0))
    assert (faulted(env, UD) is None) == ok
    if not ok:
        assert faulted(env, UD)[0] == CODE + 5
