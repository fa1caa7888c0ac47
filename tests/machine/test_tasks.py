"""Hardware task switching (SDM vol. 3, chapter 7; vol. 2 JMP, CALL, INT n,
IRET): far JMP/CALL to a TSS or a task gate, interrupts and exceptions
through IDT task gates (#DF surviving a kernel stack overflow, an error
code pushed on the new task's stack), IRET through the back link; the
state saved and loaded, busy bits, back link, NT, CR0.TS, CR3 and LDT
switches, the T bit, and the faults of SDM table 7-1 with their error codes
and the task they are taken in.  Bare (a PC) and, where the monitor has a
part (CR3 through shadow paging, the event log), as a guest."""

from __future__ import annotations

import pytest

from tvmm.machine import segments, tasks
from tvmm.machine.consts import CS, DS, ES, FS, GS, NT, SS_SEG, VM
from tvmm.monitor import events as ev

from .harness import gate_desc, seg_desc
from .taskrig import (CODE_A, CODE_B, CODE_C, CODE_C16, CODE_DF, CODE_H, CODE_NP, CONF_CODE, DATA_NP, FRAME1,
                      FRAME2, GATE_B, GATE_B_NP, GATE_LDT_TSS, GATE_X3, K_CODE, K_DATA, LDT, LDT_DATA, PD1, PD2,
                      PT_HI1, PT_HI2, RES, SEL_A, SEL_B, SEL_C, SEL_DF, SEL_LDT, SEL_X, STACK_A, STACK_B,
                      STACK_DF, TSS_A, TSS_B, TSS_C, TSS_DF, TSS_X, TSS_X3, U_CODE, U_DATA, XONLY, A, Rig,
                      task_gate, tss16, tss32)

DE, DB, DF, TS, NP, SS, GP, PF = 0, 1, 8, 10, 11, 12, 13, 14
MODES = ["bare", "monitor"]
AVAIL32, BUSY32, AVAIL16, BUSY16 = 0x9, 0xB, 0x1, 0x3
CR0_TS = 8


@pytest.fixture(params=MODES)
def rig(request, tmp_path):
    return Rig(request.param, tmp_path)


def finish(rig, n: int = 100_000):
    rig.run(n)
    assert rig.crashed is None, rig.crashed
    assert rig.halted


# ================================================================ JMP, CALL, IRET
def test_jmp_to_a_tss_saves_the_old_task_loads_the_new_one_and_moves_the_busy_bit(rig):
    after = rig.code(CODE_A, A.mov_eax(0x11111111), A.mov_ecx(0x33333333), A.jmpf(SEL_B))
    rig.code(CODE_B, A.HLT)
    rig.write(TSS_B, tss32(CODE_B, STACK_B, regs=(0xB0, 0xB1, 0xB2, 0xB3, 0, 0xB5, 0xB6, 0xB7),
                           eflags=0x2 | 0x1, link=0xBEEF))
    finish(rig)
    cpu = rig.cpu
    assert (cpu.tr_sel, cpu.tr_base, cpu.eip) == (SEL_B, TSS_B, CODE_B + 1)
    assert cpu.regs == [0xB0, 0xB1, 0xB2, 0xB3, STACK_B, 0xB5, 0xB6, 0xB7]
    assert cpu.get_eflags() & 0x1 and not cpu.get_eflags() & NT           # JMP: no nesting
    # the outgoing state in TSS A
    assert rig.r32(TSS_A + 0x20) == after                                  # EIP after the JMP
    assert rig.r32(TSS_A + 0x28) == 0x11111111 and rig.r32(TSS_A + 0x2C) == 0x33333333
    assert rig.r32(TSS_A + 0x38) == STACK_A
    assert [rig.r16(TSS_A + 0x48 + 4 * i) for i in range(6)] == [K_DATA, K_CODE, K_DATA, K_DATA, K_DATA, K_DATA]
    assert rig.r32(TSS_A + 0x24) & 0x2
    # busy bits: JMP clears the old one and sets the new one; no back link
    assert (rig.gdt_type(SEL_A), rig.gdt_type(SEL_B)) == (AVAIL32, BUSY32)
    assert rig.r16(TSS_B) == 0xBEEF
    assert cpu.guest_cr(0) & CR0_TS                                        # every switch sets TS


def test_call_to_a_tss_nests_and_iret_returns_through_the_back_link(rig):
    rig.code(CODE_A, A.mov_eax(0xAAAA), A.callf(SEL_B), A.store(RES), A.PUSHFD, A.POP_EAX,
             A.store(RES + 12), A.HLT)
    iret_at = rig.code(CODE_B, A.mov_eax(0xBBBB), A.PUSHFD, A.POP_EAX, A.store(RES + 4),
                       A.load(TSS_B), A.store(RES + 8), A.STR_AX, A.store(RES + 16))
    rig.code(iret_at, A.IRET)
    rig.write(TSS_B, tss32(CODE_B, STACK_B))
    finish(rig)
    assert rig.r32(RES) == 0xAAAA                       # task A's EAX came back
    assert rig.r32(RES + 4) & NT                        # the called task runs nested
    assert rig.r32(RES + 8) == SEL_A                    # with its back link
    assert rig.r32(RES + 16) & 0xFFFF == SEL_B
    assert not rig.r32(RES + 12) & NT                   # task A's own NT stays clear
    cpu = rig.cpu
    assert cpu.tr_sel == SEL_A and cpu.regs[4] == STACK_A
    # IRET: the returning task is no longer busy, its saved EFLAGS has NT clear
    assert (rig.gdt_type(SEL_A), rig.gdt_type(SEL_B)) == (BUSY32, AVAIL32)
    assert rig.r32(TSS_B + 0x20) == iret_at + 1 and not rig.r32(TSS_B + 0x24) & NT


def test_jmp_through_a_task_gate_in_the_gdt(rig):
    rig.code(CODE_A, A.jmpf(GATE_B, 0x12345678))        # the offset is ignored
    rig.code(CODE_B, A.HLT)
    rig.write(TSS_B, tss32(CODE_B, STACK_B))
    finish(rig)
    assert rig.cpu.tr_sel == SEL_B and rig.cpu.eip == CODE_B + 1
    assert (rig.gdt_type(SEL_A), rig.gdt_type(SEL_B)) == (AVAIL32, BUSY32)


def test_int_n_through_an_idt_task_gate_and_back(rig):
    rig.idt(0x40, task_gate(SEL_B))
    rig.code(CODE_A, A.mov_eax(7), A.int_(0x40), A.store(RES), A.HLT)
    rig.code(CODE_B, A.load(TSS_B), A.store(RES + 4), A.PUSHFD, A.POP_EAX, A.store(RES + 8), A.IRET)
    rig.write(TSS_B, tss32(CODE_B, STACK_B))
    finish(rig)
    assert rig.r32(RES) == 7 and rig.r32(RES + 4) == SEL_A and rig.r32(RES + 8) & NT
    assert rig.cpu.regs[4] == STACK_A and rig.cpu.tr_sel == SEL_A


def test_an_exception_with_an_error_code_through_a_task_gate_pushes_it_on_the_new_stack(rig):
    rig.idt(GP, task_gate(SEL_B))
    fault_at = rig.code(CODE_A, A.mov_ax(0x1230))
    rig.code(fault_at, A.MOV_DS_AX, A.HLT)              # selector 0x1234: past the GDT limit
    rig.code(CODE_B, A.POP_EAX, A.store(RES), A.load(TSS_A + 0x20), A.store(RES + 4), A.HLT)
    rig.write(TSS_B, tss32(CODE_B, STACK_B))
    finish(rig)
    assert rig.r32(RES) == 0x1230                       # #GP(selector) on task B's stack
    assert rig.r32(RES + 4) == fault_at                 # the old task resumes at the faulting insn
    assert rig.cpu.regs[4] == STACK_B
    if rig.monitor is not None:
        assert any("vector 13 err 0x1230" in e.detail for e in rig.kinds(ev.GUEST_EXCEPTION))


def test_a_double_fault_through_a_task_gate_survives_a_kernel_stack_overflow(rig):
    """The kernel's stack runs into an unmapped guard page: #PF, whose
    delivery pushes onto the same stack (#PF again) -> #DF, taken through a
    task gate on a stack of its own."""
    rig.paging(hole=STACK_A - 0x2000)                   # guard page below the stack's page
    rig.idt(PF, _intgate(CODE_H))
    rig.idt(DF, task_gate(SEL_DF))
    rig.write(TSS_DF, tss32(CODE_DF, STACK_DF, cr3=PD1))
    loop = rig.code(CODE_A, A.mov_ecx(0))
    rig.code(loop, A.PUSH_EAX, b"\xeb" + bytes([(-3) & 0xFF]))    # push eax; jmp loop
    rig.code(CODE_H, A.HLT)                             # the #PF handler never runs
    rig.code(CODE_DF, A.POP_EAX, A.store(RES), A.MOV_EAX_CR2, A.store(RES + 4),
             A.load(TSS_A + 0x38), A.store(RES + 8), A.load(TSS_A + 0x20), A.store(RES + 12), A.HLT)
    finish(rig, 20_000)
    guard_top = STACK_A - 0x1000 - 4
    assert rig.r32(RES) == 0                            # #DF's error code, on the #DF task's stack
    assert rig.r32(RES + 4) == guard_top                # CR2: the push that faulted
    assert rig.r32(RES + 8) == STACK_A - 0x1000         # the overflowed ESP, saved in the old TSS
    assert rig.r32(RES + 12) == loop                    # at the faulting PUSH
    assert rig.cpu.tr_sel == SEL_DF and rig.r16(TSS_DF) == SEL_A


def _intgate(off: int) -> bytes:
    return gate_desc(K_CODE, off, 0xE, 0)


# ================================================================ CR3, LDT, 16-bit TSS
def test_a_task_switch_loads_cr3_and_the_monitor_switches_the_shadow(rig):
    rig.paging(PD1, high={PD1: (PT_HI1, FRAME1), PD2: (PT_HI2, FRAME2)})
    rig.w32(FRAME1, 0xAAAA1111)
    rig.w32(FRAME2, 0xBBBB2222)
    rig.code(CODE_A, A.load(0x400000), A.store(RES), A.callf(SEL_B), A.load(0x400000), A.store(RES + 8),
             A.HLT)
    rig.code(CODE_B, A.load(0x400000), A.store(RES + 4), A.MOV_EAX_CR3, A.store(RES + 12), A.IRET)
    rig.write(TSS_B, tss32(CODE_B, STACK_B, cr3=PD2))
    rig.w32(TSS_A + 0x1C, PD1)                          # what task A's CR3 is (the OS keeps it there)
    finish(rig)
    assert [rig.r32(RES + i) for i in (0, 4, 8, 12)] == [0xAAAA1111, 0xBBBB2222, 0xAAAA1111, PD2]
    assert rig.cpu.guest_cr(3) == PD1
    if rig.monitor is not None:
        switches = rig.kinds(ev.EXIT_TASK_SWITCH)
        assert [e.detail.split(" eip")[0] for e in switches] == ["call tss 0x0028 -> 0x0030",
                                                                 "iret tss 0x0030 -> 0x0028"]
        cr3 = [e.detail for e in rig.kinds(ev.EXIT_CR_WRITE) if e.detail.startswith("CR3")]
        assert cr3[-2:] == [f"CR3 <- {PD2:#x} (new shadow root)", f"CR3 <- {PD1:#x} (cached shadow root)"]


def test_the_ldt_is_switched_with_the_task(rig):
    rig.w32(FRAME1 + 8, 0x1DD7)
    rig.code(CODE_A, A.callf(SEL_B), A.HLT)
    rig.code(CODE_B, A.load(8), b"\x26", A.store(RES), A.IRET)   # mov eax, ds:[8] (the LDT); mov es:[RES], eax
    rig.write(TSS_B, tss32(CODE_B, STACK_B, ldt=SEL_LDT, ds=LDT_DATA))
    finish(rig)
    assert rig.r32(RES) == 0x1DD7
    assert rig.cpu.ldtr_sel == 0 and rig.cpu.seg_sel[DS] == K_DATA    # task A's again


def test_a_16_bit_tss_loads_and_saves_its_own_layout(rig):
    rig.cpu.regs[3] = 0x12340000
    rig.code(CODE_A, A.mov_eax(0xAAAA0000), A.callf(SEL_C), A.store(RES), A.HLT)
    rig.code(CODE_C, b"\x89\x1d" + (RES + 4).to_bytes(4, "little"), A.mov_eax(0xCCCC), A.IRET)
    rig.write(TSS_C, tss16(0, 0x800, cs=CODE_C16, ss=K_DATA, regs=(0x11, 0, 0, 0x5678, 0, 0, 0, 0)))
    finish(rig)
    assert rig.r32(RES + 4) == 0x12345678               # BX from the TSS, the high half kept
    assert rig.r32(RES) == 0xAAAA0000 and rig.r16(TSS_C) == SEL_A
    assert rig.r16(TSS_C + 0x0E) == 12                  # IP after its IRET
    assert rig.r16(TSS_C + 0x12) == 0xCCCC              # AX saved as 16 bits
    assert rig.r16(TSS_C + 0x24) == CODE_C16
    assert rig.gdt_type(SEL_C) == AVAIL16


def test_fs_and_gs_are_null_after_a_switch_to_a_16_bit_tss():
    rig = Rig("bare")
    rig.code(CODE_A, A.jmpf(SEL_C))
    rig.code(CODE_C, A.HLT)
    rig.write(TSS_C, tss16(0, 0x800, cs=CODE_C16))
    finish(rig)
    assert rig.cpu.seg_sel[FS] == rig.cpu.seg_sel[GS] == 0 and rig.gdt_type(SEL_C) == BUSY16


# ================================================================ T bit, DR7, VM86 hook
def test_the_t_bit_raises_a_debug_trap_before_the_new_tasks_first_instruction(rig):
    rig.idt(DB, _intgate(CODE_H))
    rig.code(CODE_H, A.POP_EAX, A.store(RES), A.MOV_EAX_DR6, A.store(RES + 4), A.HLT)
    rig.code(CODE_A, A.jmpf(SEL_B))
    rig.code(CODE_B, A.mov_eax(1), A.store(RES + 8), A.HLT)
    rig.write(TSS_B, tss32(CODE_B, STACK_B, trap=1))
    finish(rig)
    assert rig.r32(RES) == CODE_B                       # pushed EIP: nothing of task B ran yet
    assert rig.r32(RES + 4) & tasks.DR6_BT
    assert rig.r32(RES + 8) == 0


def test_a_task_switch_clears_dr7_local_enables():
    rig = Rig("bare")
    rig.cpu.dr[7] = 0x400 | 0x3 | 0x100 | 0x200          # L0 G0 LE GE
    rig.code(CODE_A, A.jmpf(SEL_B))
    rig.code(CODE_B, A.HLT)
    rig.write(TSS_B, tss32(CODE_B, STACK_B))
    finish(rig)
    assert rig.cpu.dr[7] == 0x400 | 0x2 | 0x200


def test_a_tss_with_vm_set_loads_segments_virtual_8086_style():
    """The hook the virtual-8086 work shares: base = selector << 4, limit
    0xFFFF, CPL 3 (what runs next is that work's business)."""
    rig = Rig("bare")
    rig.intercept_faults()
    rig.code(CODE_A, A.jmpf(SEL_B))
    rig.write(TSS_B, tss32(0x10, 0x100, cs=0x2000, ss=0x3000, ds=0x4000, es=0x5000, fs=0x6000, gs=0x7000,
                           eflags=VM | 0x2))
    rig.run(1)
    cpu = rig.cpu
    assert cpu.cpl == 3 and cpu.eflags & VM and cpu.eip == 0x10
    assert [cpu.seg_base[s] for s in (ES, CS, SS_SEG, DS, FS, GS)] == [0x50000, 0x20000, 0x30000, 0x40000,
                                                                       0x60000, 0x70000]
    assert all(cpu.seg_limit[s] == 0xFFFF for s in range(6))


# ================================================================ faults (SDM table 7-1)
@pytest.mark.parametrize("insn,setup,expect", [
    (A.jmpf(SEL_X), lambda r: r.gdt({SEL_X: _tss_desc(0x67, 0x09)}), (NP, SEL_X)),        # not present
    (A.jmpf(SEL_X), lambda r: r.gdt({SEL_X: _tss_desc(0x66, 0x89)}), (TS, SEL_X)),        # limit < 0x67
    (A.jmpf(SEL_A), None, (GP, SEL_A)),                                                   # busy (ourselves)
    (A.callf(SEL_A), None, (GP, SEL_A)),
    (A.jmpf(SEL_X | 3), lambda r: r.gdt({SEL_X: _tss_desc(0x67, 0x89)}), (GP, SEL_X)),    # RPL 3 > DPL 0
    (A.jmpf(GATE_B_NP), None, (NP, GATE_B_NP)),                                           # gate not present
    (A.jmpf(GATE_LDT_TSS), None, (GP, 0x0C)),                                             # TSS named in the LDT
    (A.jmpf(0x0C), lambda r: _ldt_with_tss(r), (GP, 0x0C)),                              # TSS descriptor in an LDT
    (A.jmpf(GATE_B), lambda r: r.gdt({SEL_B: _tss_desc(0x67, 0x8B)}), (GP, SEL_B)),       # gate to a busy TSS
    (A.jmpf(GATE_B), lambda r: r.gdt({SEL_B: _tss_desc(0x67, 0x09)}), (NP, SEL_B)),       # gate to absent TSS
    (A.jmpf(GATE_B), lambda r: r.gdt({SEL_B: _tss_desc(0x20, 0x89)}), (TS, SEL_B)),       # gate, short TSS
    (A.jmpf(SEL_LDT), None, (GP, SEL_LDT)),                                               # an LDT descriptor
], ids=["tss-not-present", "tss-limit", "jmp-busy", "call-busy", "rpl", "gate-not-present", "gate-ti",
        "tss-in-ldt", "gate-busy", "gate-tss-np", "gate-tss-limit", "ldt-desc"])
def test_faults_before_the_commit_point_leave_the_old_task_untouched(insn, setup, expect):
    rig = Rig("bare")
    if setup is not None:
        setup(rig)
    rig.intercept_faults()
    rig.code(CODE_A, insn)
    rig.write(TSS_B, tss32(CODE_B, STACK_B))
    rig.write(TSS_X, tss32(CODE_B, STACK_B))
    saved_a = rig.read(TSS_A, 0x68)
    types = [rig.gdt_type(s) for s in (SEL_A, SEL_B, SEL_X)]
    rig.run(1)
    assert rig.events == [expect]
    cpu = rig.cpu
    assert (cpu.tr_sel, cpu.eip, cpu.seg_sel[CS]) == (SEL_A, CODE_A, K_CODE)
    assert rig.read(TSS_A, 0x68) == saved_a and [rig.gdt_type(s) for s in (SEL_A, SEL_B, SEL_X)] == types
    assert not cpu.guest_cr(0) & CR0_TS


def _tss_desc(limit: int, access: int) -> bytes:
    return seg_desc(TSS_X, limit, access, flags=0)


def _ldt_with_tss(rig) -> None:
    rig.write(LDT + 8, seg_desc(TSS_X, 0x67, 0x89, flags=0))      # LDT entry 1: a TSS (never valid there)
    rig.cpu.ldtr_sel, rig.cpu.ldtr_base, rig.cpu.ldtr_limit, rig.cpu.ldtr_attr = SEL_LDT, LDT, 0x0F, 0x82


@pytest.mark.parametrize("link,desc,expect", [
    (SEL_B, None, (TS, SEL_B)),                         # TSS B is available, not busy
    (SEL_X, _tss_desc(0x67, 0x0B), (NP, SEL_X)),        # busy but not present
    (0x0C, None, (TS, 0x0C)),                           # TI=1
    (0, None, (TS, 0)),                                 # null back link
    (K_CODE, None, (TS, K_CODE)),                       # not a TSS
], ids=["available", "not-present", "ti", "null", "code"])
def test_iret_with_nt_checks_the_back_link(link, desc, expect):
    rig = Rig("bare")
    rig.intercept_faults()
    if desc is not None:
        rig.gdt({link: desc})
    rig.write(TSS_A, tss32(0, STACK_A, link=link))
    rig.cpu.set_eflags(NT)
    rig.code(CODE_A, A.IRET)
    rig.run(1)
    assert rig.events == [expect] and rig.cpu.tr_sel == SEL_A and rig.cpu.eip == CODE_A


def test_ring_3_may_switch_only_through_a_tss_or_gate_of_dpl_3():
    for target, expect in ((SEL_X | 3, [(GP, SEL_X)]), (GATE_B | 3, [(GP, GATE_B)]), (TSS_X3, []),
                           (GATE_X3, [])):
        rig = Rig("bare")
        rig.intercept_faults()
        rig.write(TSS_X, tss32(CODE_B, STACK_B))
        rig.code(CODE_B, A.HLT)
        rig.code(CODE_A, A.jmpf(target))
        _ring3(rig)
        rig.run(1)
        assert rig.events == expect, hex(target)
        if not expect:
            assert rig.cpu.tr_sel == (SEL_X if target == GATE_X3 else TSS_X3) and rig.cpu.cpl == 0   # CS.RPL


def _ring3(rig) -> None:
    cpu = rig.cpu
    for s, sel in ((CS, U_CODE), (SS_SEG, U_DATA), (DS, U_DATA), (ES, U_DATA), (FS, U_DATA), (GS, U_DATA)):
        lo, hi, _ = segments.read_descriptor(cpu, sel)
        segments.set_cache(cpu, s, sel, segments.desc_base(lo, hi), segments.desc_limit(lo, hi),
                           segments.desc_attr(hi))
    cpu.set_cpl(3)
    rig.w32(TSS_A + 4, STACK_A)
    rig.w32(TSS_A + 8, K_DATA)


@pytest.mark.parametrize("fields,expect", [
    (dict(ldt=0x0C), (TS, 0x0C)),                       # LDT selector with TI=1
    (dict(ldt=SEL_B), (TS, SEL_B)),                     # not an LDT descriptor
    (dict(ldt=0x1F8), (TS, 0x1F8)),                     # past the GDT limit
    (dict(cs=K_CODE | 3), (TS, K_CODE)),                # CS DPL != RPL
    (dict(cs=CODE_NP), (NP, CODE_NP)),                  # CS not present
    (dict(cs=K_DATA), (TS, K_DATA)),                    # CS not code
    (dict(cs=0), (TS, 0)),                              # null CS
    (dict(ss=U_DATA), (TS, U_DATA & ~3)),               # SS DPL != CPL
    (dict(ss=0), (TS, 0)),                              # null SS
    (dict(ss=K_CODE), (TS, K_CODE)),                    # SS not writable data
    (dict(ss=DATA_NP), (SS, DATA_NP)),                  # SS not present: #SS
    (dict(ds=DATA_NP), (NP, DATA_NP)),                  # DS not present: #NP
    (dict(ds=XONLY), (TS, XONLY)),                      # DS execute-only code
    (dict(cs=U_CODE, ss=U_DATA, ds=K_DATA), (TS, K_DATA)),     # DS DPL 0 < CPL 3
    (dict(ds=0x4), (TS, 0x4)),                          # DS in a null LDT
    (dict(gs=0x1F8), (TS, 0x1F8)),                      # GS past the GDT limit
    (dict(eip=0x10000, cs=CODE_C16), (GP, 0)),          # EIP beyond the new CS limit
], ids=["ldt-ti", "ldt-type", "ldt-limit", "cs-rpl", "cs-np", "cs-data", "cs-null", "ss-dpl", "ss-null",
        "ss-code", "ss-np", "ds-np", "ds-xonly", "ds-dpl", "ds-null-ldt", "gs-limit", "eip-limit"])
def test_faults_after_the_commit_point_are_taken_in_the_new_task(fields, expect):
    rig = Rig("bare")
    rig.intercept_faults()
    eip = fields.pop("eip", CODE_B)
    rig.write(TSS_B, tss32(eip, STACK_B, **fields))
    after = rig.code(CODE_A, A.callf(SEL_B))
    rig.run(1)
    assert rig.events == [expect]
    cpu = rig.cpu
    assert cpu.tr_sel == SEL_B and cpu.eip == eip and cpu.regs[4] == STACK_B     # the new task's context
    assert rig.r32(TSS_A + 0x20) == after and rig.r16(TSS_B) == SEL_A
    assert (rig.gdt_type(SEL_A), rig.gdt_type(SEL_B)) == (BUSY32, BUSY32)
    assert cpu.guest_cr(0) & CR0_TS
    assert cpu.icount == 1                              # the CALL retired: the switch happened


def test_a_fault_after_the_commit_point_of_an_exception_is_a_double_fault():
    """#GP through a task gate whose task has a bad SS: the #TS in the new task while
    delivering #GP is a double fault, taken (through its own task gate) with
    task B's state as it stood at the commit point."""
    rig = Rig("bare")
    rig.idt(GP, task_gate(SEL_B))
    rig.idt(DF, task_gate(SEL_DF))
    rig.write(TSS_B, tss32(CODE_B, STACK_B, ss=K_CODE))
    rig.write(TSS_DF, tss32(CODE_DF, STACK_DF))
    rig.code(CODE_A, A.mov_ax(0x1230), A.MOV_DS_AX, A.HLT)
    rig.code(CODE_DF, A.POP_EAX, A.store(RES), A.load(TSS_B + 0x20), A.store(RES + 4), A.HLT)
    finish(rig)
    assert rig.cpu.tr_sel == SEL_DF and rig.r32(RES) == 0
    assert rig.r32(RES + 4) == CODE_B                   # task B was entered (its EIP saved by the #DF switch)
    assert rig.r16(TSS_DF) == SEL_B


def test_the_new_stack_must_hold_the_error_code():
    rig = Rig("bare")
    rig.intercept_faults()
    rig.gdt({0xA8: _small_stack()})
    rig.idt(GP, task_gate(SEL_B))
    rig.write(TSS_B, tss32(CODE_B, 2, ss=0xA8))         # 2 bytes of stack: no room for a dword
    rig.code(CODE_A, A.mov_ax(0x1230), A.MOV_DS_AX)
    rig.cpu.intercept = None
    seen = []

    def hook(vector, err, eip, soft, external):
        seen.append((vector, err))
        if len(seen) == 1:
            return False                                # let #GP through its task gate
        rig.cpu.halted = rig.cpu.attention = True
        return True
    rig.cpu.intercept = hook
    rig.run(10)
    assert seen == [(GP, 0x1230), (DF, 0)]              # #SS in the new task during #GP: #DF
    assert rig.cpu.tr_sel == SEL_B


def _small_stack() -> bytes:
    return seg_desc(STACK_B - 0x1000, 0x1, 0x93)


def test_conforming_cs_needs_dpl_at_most_rpl():
    rig = Rig("bare")
    rig.intercept_faults()
    rig.write(TSS_B, tss32(CODE_B, STACK_B, cs=CONF_CODE))
    rig.code(CODE_A, A.jmpf(SEL_B))
    rig.code(CODE_B, A.HLT)
    rig.run(2)
    assert rig.events == [] and rig.cpu.seg_sel[CS] == CONF_CODE and rig.cpu.halted


def test_task_switch_under_a_translated_hot_loop_is_the_same():
    """A CALL/IRET pair run many times (the blocks get translated)."""
    rig = Rig("bare")
    loop = rig.code(CODE_A, A.mov_ecx(50))
    rig.code(loop, A.callf(SEL_B), b"\x49", b"\x75" + bytes([(-10) & 0xFF]), A.HLT)    # dec ecx; jnz loop
    iret_at = rig.code(CODE_B, A.inc_mem(RES))
    rig.code(iret_at, A.IRET, b"\xeb" + bytes([(-(iret_at + 3 - CODE_B)) & 0xFF]))   # iret; jmp CODE_B
    rig.write(TSS_B, tss32(CODE_B, STACK_B))
    finish(rig)
    assert rig.r32(RES) == 50 and rig.cpu.regs[1] == 0 and rig.cpu.tr_sel == SEL_A


# ================================================================ events through task gates (taskswitch2-style)
ICR_LO, SVR = 0xFEE00300, 0xFEE000F0
NMI_SELF = (1 << 18) | (4 << 8) | (1 << 14)


def _cmp_jne(addr: int, value: int, skip: bytes) -> bytes:
    return b"\x83\x3d" + addr.to_bytes(4, "little") + bytes([value]) + b"\x75" + bytes([len(skip)]) + skip


def test_an_nmi_through_a_task_gate_is_blocked_until_the_tasks_iret(rig):
    """The NMI task sends itself another NMI: it is held until the task
    returns with IRET (a task return), then taken through the gate again;
    the task resumes after its IRET each time (the usual loop)."""
    rig.paging()
    rig.idt(2, task_gate(SEL_B))
    again = A.store_imm(ICR_LO, NMI_SELF) + A.load(RES + 4) + A.store(RES + 8)
    top = CODE_B
    body = A.inc_mem(RES + 4) + _cmp_jne(RES + 4, 1, again) + A.IRET
    rig.code(top, body, b"\xeb" + bytes([(-(len(body) + 2)) & 0xFF]))         # jmp top
    rig.write(TSS_B, tss32(CODE_B, STACK_B, cr3=PD1))
    rig.w32(TSS_A + 0x1C, PD1)
    rig.code(CODE_A, A.store_imm(SVR, 0x1FF), A.store_imm(ICR_LO, NMI_SELF), A.load(RES + 4), A.store(RES),
             A.HLT)
    finish(rig)
    assert rig.r32(RES + 8) == 1                        # the second NMI did not nest
    assert rig.r32(RES) == 2 and rig.r32(RES + 4) == 2  # both ran before task A went on
    assert rig.cpu.tr_sel == SEL_A and not rig.cpu.nmi_blocked
    if rig.monitor is not None:
        assert [e.detail.split()[0] for e in rig.kinds(ev.EXIT_TASK_SWITCH)] == ["int", "iret", "int", "iret"]
        assert [e.detail.split()[0].rstrip(":") for e in rig.kinds(ev.NMI_EVENT)] == ["delivered", "latched",
                                                                                       "delivered"]


def test_a_divide_error_through_a_task_gate_returns_past_the_div(rig):
    """kvm-unit-tests taskswitch2 style: the #DE task moves the faulting
    task's saved EIP past the DIV, then IRETs back to it."""
    rig.idt(DE, task_gate(SEL_B))
    div = rig.code(CODE_A, A.XOR_ECX_ECX, A.mov_eax(1))
    rig.code(div, A.DIV_ECX, A.mov_eax(0x600D), A.store(RES), A.HLT)
    body = A.inc_mem(RES + 4) + b"\x83\x05" + (TSS_A + 0x20).to_bytes(4, "little") + b"\x02" + A.IRET
    rig.code(CODE_B, body, b"\xeb" + bytes([(-(len(body) + 2)) & 0xFF]))
    rig.write(TSS_B, tss32(CODE_B, STACK_B))
    finish(rig)
    assert rig.r32(RES) == 0x600D and rig.r32(RES + 4) == 1
    assert rig.r32(TSS_A + 0x20) == div + 2 and rig.cpu.tr_sel == SEL_A
    assert rig.cpu.regs[4] == STACK_A and rig.r32(TSS_B + 0x38) == STACK_B     # nothing pushed for #DE


def test_an_external_interrupt_through_a_task_gate(rig):
    rig.idt(0x40, task_gate(SEL_B))
    rig.code(CODE_A, A.store_imm(SVR, 0x1FF), b"\xfb", A.store_imm(ICR_LO, (1 << 18) | 0x40), b"\x90",
             A.CLI, A.load(RES + 4), A.store(RES), A.HLT)
    body = A.inc_mem(RES + 4) + A.store_imm(0xFEE000B0, 0) + A.IRET                # EOI
    rig.code(CODE_B, body, b"\xeb" + bytes([(-(len(body) + 2)) & 0xFF]))
    rig.write(TSS_B, tss32(CODE_B, STACK_B))
    finish(rig)
    assert rig.r32(RES) == 1 and rig.r16(TSS_B) == SEL_A
    if rig.monitor is not None:
        assert rig.kinds(ev.IRQ_INJECT) and rig.kinds(ev.EXIT_TASK_SWITCH)


def test_int_n_from_ring_3_needs_a_task_gate_of_dpl_3():
    for dpl, expect in ((0, [(0x40, None), (GP, 0x40 * 8 + 2)]), (3, [(0x40, None)])):
        rig = Rig("bare")
        rig.intercept_faults()
        rig.idt(0x40, task_gate(SEL_B, dpl=dpl))
        rig.write(TSS_B, tss32(CODE_B, STACK_B))
        rig.code(CODE_B, A.HLT)
        rig.code(CODE_A, A.int_(0x40))
        _ring3(rig)
        rig.run(1)
        assert rig.events == expect
        assert rig.cpu.tr_sel == (SEL_A if dpl == 0 else SEL_B)


# ================================================================ issue 15: #DE and #PF serially
def test_a_page_fault_delivering_a_divide_error_goes_through_a_pf_task_gate_then_the_div_retries(rig):
    """kvm-unit-tests eventinj "DE and PF exceptions serially", the issue's
    triple fault (#DE -> #PF -> #GP -> #DF -> #PF): the #DE handler's frame
    goes to a read-only stack page, so delivering #DE takes #PF, whose IDT
    entry is a task gate.  Task gates used to raise #GP there, and #DF then
    faulted on the same stack.  Now the #PF task makes the page writable and
    returns; the DIV runs again, its #DE is delivered, and the handler's fix
    lets the DIV complete."""
    ro_stack, divider = 0x290000, RES + 0x40
    pte = 0x302000 + (ro_stack >> 12) * 4                    # taskrig's PT_LOW entry for the page
    rig.paging()
    rig.cpu.set_cr0(rig.cpu.guest_cr(0) | 0x10000)           # CR0.WP: ring 0 honours read-only pages
    rig.w32(pte, ro_stack | 1)                               # present, read-only
    rig.w32(TSS_A + 0x1C, PD1)
    rig.idt(PF, task_gate(SEL_B))
    rig.idt(DE, _intgate(CODE_H))
    rig.idt(DF, _intgate(CODE_H + 0x80))                     # an ordinary #DF handler (on the same stack)
    rig.code(CODE_H + 0x80, A.mov_eax(DF), A.store(RES + 16), A.HLT)
    rig.write(TSS_B, tss32(CODE_B, STACK_B, cr3=PD1))
    body = (A.POP_EAX, A.store(RES + 8), A.MOV_EAX_CR2, A.store(RES + 12), A.inc_mem(RES + 4),
            A.store_imm(pte, ro_stack | 3), b"\x0f\x01\x3d" + ro_stack.to_bytes(4, "little"), A.IRET)
    body = b"".join(body)
    rig.code(CODE_B, body, b"\xeb" + bytes([(-(len(body) + 2)) & 0xFF]))
    rig.code(CODE_H, A.store_imm(divider, 10), A.IRET)
    rig.w32(divider, 0)
    div = rig.code(CODE_A, b"\xbc" + (ro_stack + 4095).to_bytes(4, "little"), b"\xba" + bytes(4), A.mov_eax(1500))
    rig.code(div, b"\xf7\x35" + divider.to_bytes(4, "little"), b"\xbc" + STACK_A.to_bytes(4, "little"),
             A.store(RES), A.HLT)
    finish(rig)
    assert rig.r32(RES) == 150                               # divided by the handler's 10
    assert rig.r32(RES + 4) == 1                             # the #PF task ran once
    assert rig.r32(RES + 8) == 3                             # its error code: supervisor write, present
    assert rig.r32(RES + 12) == ro_stack + 4095 - 4          # CR2: the first slot of #DE's frame
    assert rig.r32(TSS_A + 0x20) == div                      # the faulting DIV, saved by the switch
    assert rig.r32(RES + 16) == 0                            # no double fault


def test_a_page_fault_after_the_commit_point_is_the_new_tasks_and_logged_once(rig):
    """#GP through a task gate whose task's stack page is not mapped: pushing
    the error code faults (#PF, in task B, after the commit point), and that
    #PF goes through its own task gate.  Under the monitor it is one
    reflected fault in the log, not two."""
    hole = STACK_A - 0x2000
    rig.paging(hole=hole)
    rig.w32(TSS_A + 0x1C, PD1)
    rig.idt(GP, task_gate(SEL_B))
    rig.idt(PF, task_gate(SEL_DF))
    rig.write(TSS_B, tss32(CODE_B, hole + 0x1000, cr3=PD1))
    rig.write(TSS_DF, tss32(CODE_DF, STACK_DF, cr3=PD1))
    rig.code(CODE_A, A.mov_ax(0x1230), A.MOV_DS_AX, A.HLT)
    rig.code(CODE_B, A.HLT)
    rig.code(CODE_DF, A.POP_EAX, A.store(RES), A.MOV_EAX_CR2, A.store(RES + 4), A.load(TSS_B + 0x20),
             A.store(RES + 8), A.HLT)
    finish(rig)
    assert rig.r32(RES) == 2 and rig.r32(RES + 4) == hole + 0xFFC      # supervisor write, not present
    assert rig.r32(RES + 8) == CODE_B and rig.r16(TSS_DF) == SEL_B     # taken in task B
    assert rig.cpu.tr_sel == SEL_DF
    if rig.monitor is not None:
        reflected = [e for e in rig.kinds(ev.PF_REFLECTED) if e.detail.startswith(f"{hole + 0xFFC:#010x}")]
        assert len(reflected) == 1
