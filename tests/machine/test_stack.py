"""The stack family (tvmm/machine/ops/stack.py): PUSH/POP in every form,
PUSHA/POPA, PUSHF/POPF, ENTER/LEAVE, compared with unicorn in 32-bit flat
and 16-bit real mode; segment-register pushes/pops, the POP SS interrupt
shadow, POPF privilege rules and precise faults as directed tests (SDM
vol. 2: PUSH, POP, PUSHA, POPA, PUSHF, POPF, ENTER, LEAVE).
"""

from __future__ import annotations

import random

import pytest

from tests.diff.snippet import DATA_BASE, PAGE, STACK_TOP
from tests.machine.harness import Machine
from tests.machine.test_control import (CODE0, CODE3, K_DATA, PM, STACK0, STACK3, U_DATA, _state,
                                        catch_faults, d16, d32, same_as_unicorn)
from tvmm.machine import segments
from tvmm.machine.consts import DS, ES, FS, GS, IF, SS_SEG

GP, SS, NP = 13, 12, 11


# ========================================================= PUSH / POP vs unicorn
REGS = {"eax": 0x11223344, "ecx": 0x55667788, "edx": 0x99AABBCC, "ebx": 0xDDEEFF00,
        "ebp": 0x12345678, "esi": 0x9ABCDEF0, "edi": 0x0F1E2D3C}


def _data():
    return bytes(range(256)) * (PAGE // 256)


def test_push_pop_every_form_32():
    code = b"".join([
        bytes([0x50 + r for r in range(8)]),            # push eax..edi (push esp: value before)
        b"\x68" + d32(0xCAFEBABE),                      # push imm32
        b"\x6a\xfb",                                    # push -5 (sign-extended)
        b"\x66\x68" + d16(0x1234),                      # push word imm16
        b"\x66\x6a\x80",                                # push word -128
        b"\xff\x35" + d32(DATA_BASE + 0x10),            # push dword [DATA+0x10]
        b"\x66\xff\x35" + d32(DATA_BASE + 0x20),        # push word [DATA+0x20]
        b"\xff\x34\x24",                                # push dword [esp]
        b"\xff\xf0",                                    # push eax (FF /6 register form)
        b"\x66\x50", b"\x66\x54",                       # push ax; push sp
        b"\x8f\x05" + d32(DATA_BASE + 0x40),            # pop dword [DATA+0x40]
        b"\x66\x8f\x05" + d32(DATA_BASE + 0x48),        # pop word [DATA+0x48]
        b"\x8f\x44\x24\x04",                            # pop dword [esp+4]: address after the increment
        b"\x8f\xc1",                                    # pop ecx (8F /0 register form)
        b"\x66\x5a",                                    # pop dx
        bytes([0x58 + r for r in (0, 3, 5, 6, 7)]),     # pop eax ebx ebp esi edi
        b"\x8f\x04\x24",                                # pop dword [esp]
        b"\x5c",                                        # pop esp: the popped value wins
    ])
    same_as_unicorn(32, code, regs=REGS, data=_data())


def test_push_pop_every_form_16():
    code = b"".join([
        bytes([0x50 + r for r in range(8)]),            # push ax..di (push sp: value before)
        b"\x68" + d16(0xBEEF), b"\x6a\xfb",
        b"\x66\x68" + d32(0xCAFEBABE), b"\x66\x6a\x80",  # push dword imm
        b"\xff\x36" + d16(DATA_BASE + 0x10),            # push word [DATA+0x10]
        b"\x66\xff\x36" + d16(DATA_BASE + 0x20),        # push dword [DATA+0x20]
        b"\x66\x50", b"\x66\x54",                       # push eax; push esp
        b"\x8f\x06" + d16(DATA_BASE + 0x40),            # pop word [DATA+0x40]
        b"\x66\x8f\x06" + d16(DATA_BASE + 0x48),        # pop dword [DATA+0x48]
        b"\x89\xe6", b"\x8f\x44\x02",                   # mov si, sp; pop word [si+2]
        b"\x66\x59", b"\x5a",                           # pop ecx; pop dx
        bytes([0x58 + r for r in (0, 3, 5, 6, 7)]),
        b"\x5c",                                        # pop sp
    ])
    same_as_unicorn(16, code, regs=REGS, data=_data())


def test_random_push_pop_sequences_32_and_16():
    """Seeded random mixes of the push/pop forms (register, immediate,
    memory, both operand sizes) keep the stack balanced-ish and compare."""
    rng = random.Random(1234)
    for mode in (32, 16):
        for trial in range(12):
            pieces = []
            depth = 0
            for _ in range(40):
                o = b"\x66" if rng.random() < 0.3 else b""
                if depth > 2 and rng.random() < 0.45:
                    r = rng.choice((0, 1, 2, 3, 5, 6, 7))
                    if rng.random() < 0.5:
                        pieces.append(o + bytes([0x58 + r]))
                    else:
                        disp = DATA_BASE + rng.randrange(0, 0x100, 2)
                        pieces.append(o + (b"\x8f\x05" + d32(disp) if mode == 32 else b"\x8f\x06" + d16(disp)))
                    depth -= 1
                else:
                    k = rng.randrange(4)
                    if k == 0:
                        pieces.append(o + bytes([0x50 + rng.randrange(8)]))
                    elif k == 1:
                        pieces.append(o + b"\x6a" + bytes([rng.randrange(256)]))
                    elif k == 2:
                        big = (mode == 32) != (o == b"\x66")
                        pieces.append(o + b"\x68" + (d32(rng.getrandbits(32)) if big else d16(rng.getrandbits(16))))
                    else:
                        disp = DATA_BASE + rng.randrange(0, 0x100)
                        pieces.append(o + (b"\xff\x35" + d32(disp) if mode == 32 else b"\xff\x36" + d16(disp)))
                    depth += 1
            same_as_unicorn(mode, b"".join(pieces), regs=REGS, data=_data(), label=f"{mode}/{trial}")


# ============================================================ PUSHA / POPA
@pytest.mark.parametrize("mode", [32, 16])
def test_pusha_popa(mode):
    code = b"".join([
        b"\x60",                                        # pusha(d) (native size)
        b"\x66\x60",                                    # pusha with the other size
        bytes([0x40 + r for r in range(8)]),            # inc every register (esp too)
        bytes([0x48 + 4]),                              # dec esp back
        b"\x66\x61",                                    # popa (other size): eSP slot skipped
        b"\x61",
    ])
    same_as_unicorn(mode, code, regs=REGS)


@pytest.mark.parametrize("esp", [STACK_TOP, STACK_TOP - 2, 0x3010, 0x3004])
def test_pushad_popad_at_any_stack_position(esp):
    # PUSHAD/POPAD move eight dwords at once when they are aligned on one
    # page (CPU.stack_dwords); misaligned, or across the data/stack page
    # boundary (0x3010: 0x2FF0..0x300F), they go dword by dword: the same
    code = b"".join([
        b"\xbc" + esp.to_bytes(4, "little"),           # mov esp, imm32
        b"\x60",                                        # pushad
        bytes([0x40 + r for r in range(8) if r != 4]),  # inc every register but esp
        b"\x61",                                        # popad
        b"\x60\x5a\x5b\x5e\x5f",                            # pushad ; pop edx ; pop ebx ; pop esi ; pop edi
    ])
    same_as_unicorn(32, code, regs=REGS, data=_data())


# ============================================================ PUSHF / POPF
@pytest.mark.parametrize("mode", [32, 16])
def test_pushf_popf_at_cpl0(mode):
    imm = (lambda v: b"\x68" + d32(v)) if mode == 32 else (lambda v: b"\x68" + d16(v))
    code = b"".join([
        b"\x39\xd8", b"\x9c",                           # cmp eax, ebx; pushf (lazy flags materialised)
        imm(0x0CD5), b"\x9d",                           # popf: arithmetic flags, DF, OF
        b"\x9c",
        imm(0x0002), b"\x9d", b"\x9c",
        b"\x66\x9c", b"\x66\x9d",                       # the other operand size round trip
        b"\x58", b"\x5b", b"\x59",                      # pop three images into registers
    ])
    same_as_unicorn(mode, code, regs={"eax": 3, "ebx": 7})


def test_pushf_image_has_rf_and_vm_clear():
    m = Machine()
    m.write(0x1000, b"\x9c")
    m.flat32(0x1000, 0x9000)
    m.cpu.set_eflags(0x10000 | 0x40000 | 0x1)          # RF, AC, CF
    m.run(1)
    assert m.r32(0x9000 - 4) == 0x40003


def test_popf_at_cpl3_keeps_if_and_iopl():
    m = PM()
    m.write(CODE3, b"\x68" + d32(0x3000 | 0x8D5) + b"\x9d")  # IOPL 3, IF clear, arithmetic flags set
    m.ring3()
    m.cpu.set_eflags(IF)
    m.run(2)
    assert m.faults() == []
    assert m.cpu.get_eflags() == IF | 0x2 | 0x8D5           # IF still set, IOPL still 0
    assert m.cpu.regs[4] == STACK3


def test_popf_at_cpl3_with_iopl3_changes_if_only():
    m = PM()
    m.cpu.set_eflags(0x3000 | IF)
    m.write(CODE3, b"\x6a\x02\x9d")                         # image: IOPL 0, IF clear
    m.ring3()
    m.run(2)
    assert m.cpu.get_eflags() == 0x3002


def test_popf_at_cpl0_sets_iopl_and_if_clears_rf_never_vm():
    m = PM()
    m.write(CODE0, b"\x68" + d32(0x3000 | IF | 0x10000 | 0x20000 | 0x40000) + b"\x9d")
    m.run(2)
    assert m.cpu.get_eflags() == 0x3000 | IF | 0x40000 | 0x2


def test_popf_16_bit_leaves_high_flags():
    m = PM()
    m.cpu.set_eflags(0x40000)                               # AC
    m.write(CODE0, b"\x66\x6a\x01\x66\x9d")                 # push word 1; popf (16)
    m.run(2)
    assert m.cpu.get_eflags() == 0x40003 and m.cpu.regs[4] == STACK0


# ============================================================ ENTER / LEAVE
def _enter_program(mode: int) -> bytes:
    sp = (lambda v: b"\xbd" + d32(v)) if mode == 32 else (lambda v: b"\xbd" + d16(v))
    return b"".join([
        b"\xc8\x10\x00\x00", b"\xc9",                   # enter 16, 0; leave
        b"\xc8\x08\x00\x01", b"\xc9",                   # level 1
        sp(STACK_TOP - 0x40),                           # ebp into the frame area (initialised below)
        b"\xc8\x04\x00\x03", b"\x8b\x46\x00" if mode == 16 else b"\x8b\x45\x00", b"\xc9",
        sp(STACK_TOP - 0x40),
        b"\xc8\x00\x00\x21", b"\xc9",                   # level 33 = 1 (mod 32)
        sp(STACK_TOP - 0x40),
        b"\x66\xc8\x06\x00\x02", b"\x66\xc9",           # the other operand size, level 2
        sp(STACK_TOP - 0x40),
        b"\xc8\x02\x00\x1f", b"\xc9",                   # level 31
    ])


@pytest.mark.parametrize("mode", [32, 16])
def test_enter_leave(mode):
    # Fill the stack page with a pattern first (pushes), so that copied frame
    # pointers are distinguishable.
    fill = b"".join((b"\x68" + (d32(0x01010101 * i) if mode == 32 else d16(0x0101 * i))) for i in range(1, 40))
    same_as_unicorn(mode, fill + _enter_program(mode), regs={"ebp": 0x12340000 | (STACK_TOP - 0x20)})


def test_enter_nested_frame_layout():
    """ENTER 12, 3 (32-bit): EBP saved, two frame pointers copied from the
    enclosing frame, FrameTemp pushed; EBP = FrameTemp, ESP below the locals."""
    m = Machine()
    m.write(0x1000, b"\xc8\x0c\x00\x03")
    m.flat32(0x1000, 0x9000)
    m.cpu.regs[5] = 0x9800
    m.w32(0x9800 - 4, 0xAAAA0001)
    m.w32(0x9800 - 8, 0xAAAA0002)
    m.run(1)
    ft = 0x9000 - 4
    assert m.cpu.regs[5] == ft and m.cpu.regs[4] == ft - 12 - 12
    assert [m.r32(ft - 4 * i) for i in range(4)] == [0x9800, 0xAAAA0001, 0xAAAA0002, ft]


def test_enter_and_leave_faults_change_no_register():
    m = PM()
    segments.set_cache(m.cpu, SS_SEG, K_DATA, 0, 0x8FFF, 0x4093)
    m.write(CODE0, b"\xc8\x00\x00\x02")                      # enter 0, 2 reading [ebp-4] past the limit
    m.cpu.regs[4], m.cpu.regs[5] = 0x8000, 0x9002
    before = _state(m.cpu)
    m.run(1)
    assert m.faults() == [(SS, 0)] and _state(m.cpu) == before
    m = PM()
    segments.set_cache(m.cpu, SS_SEG, K_DATA, 0, 0x8FFF, 0x4093)
    m.write(CODE0, b"\xc9")                                  # leave with ebp past the limit
    m.cpu.regs[4], m.cpu.regs[5] = 0x8000, 0x8FFE
    before = _state(m.cpu)
    m.run(1)
    assert m.faults() == [(SS, 0)] and _state(m.cpu) == before


# ================================================== segment registers
def test_push_sreg_32_bit_writes_four_zero_extended_bytes_like_unicorn():
    # In real mode every selector is 0 in both engines: the 0xAAAA... filler
    # shows how many bytes the 32-bit push writes.
    code = b"".join([
        b"\x66\x68" + d32(0xAAAAAAAA), b"\x66\x68" + d32(0xAAAAAAAA), b"\x66\x68" + d32(0xAAAAAAAA),
        b"\x66\x58", b"\x66\x58", b"\x66\x58",
        b"\x66\x1e", b"\x66\x06", b"\x66\x0f\xa0",          # push ds/es/fs (32-bit)
        b"\x0e", b"\x16", b"\x0f\xa8",                      # push cs/ss/gs (16-bit)
    ])
    o = same_as_unicorn(16, code)
    assert o.stack[0xF00 - 4:0xF00] == bytes(4)


def test_pop_sreg_real_mode_vs_unicorn():
    data = bytearray(PAGE)
    data[0x10:0x14] = d32(0x5A5A1234)
    code = b"".join([
        b"\x68" + d16(0x0200), b"\x07",                     # push 0x200; pop es
        b"\x26\xa1" + d16(0x10),                             # mov ax, [es:0x10] = [0x2010]
        b"\x66\x68" + d32(0xFFFF0200), b"\x66\x0f\xa1",      # pop fs (32-bit slot, low 16 used)
        b"\x64\x8b\x1e" + d16(0x12),                         # mov bx, [fs:0x12]
        b"\x6a\x00", b"\x1f",                                # pop ds (0)
        b"\x6a\x00", b"\x0f\xa9",                            # pop gs
    ])
    o = same_as_unicorn(16, code, data=bytes(data))
    assert o.regs["eax"] & 0xFFFF == 0x1234 and o.regs["ebx"] & 0xFFFF == 0x5A5A


def test_push_and_pop_segment_registers_protected_mode():
    m = PM()
    m.write(CODE0, b"\x0e\x1e\x6a\x23\x07\x6a\x23\x0f\xa1\x66\x6a\x00\x66\x0f\xa9")
    m.run(8)
    cpu = m.cpu
    assert m.faults() == []
    assert m.r32(STACK0 - 4) == 0x08 and m.r32(STACK0 - 8) == K_DATA
    assert cpu.seg_sel[ES] == U_DATA and cpu.seg_sel[FS] == U_DATA and cpu.seg_sel[GS] == 0
    assert cpu.seg_hi[GS] == -1 and cpu.regs[4] == STACK0 - 8


def test_pop_ds_that_faults_leaves_esp():
    m = PM()
    m.write(CODE3, b"\x6a\x10\x1f")                          # pop ds = K_DATA (DPL 0) at CPL 3
    m.ring3()
    m.run(2)
    assert m.faults() == [(GP, K_DATA)]
    assert m.cpu.regs[4] == STACK3 - 4 and m.cpu.seg_sel[DS] == U_DATA and m.cpu.eip == CODE3 + 2


def test_pop_ss_loads_and_faults():
    m = PM()
    m.write(CODE3, b"\x6a\x23\x17\x6a\x10\x17")              # pop ss = U_DATA; then K_DATA (DPL 0)
    m.ring3()
    m.run(4)
    assert m.faults() == [(GP, K_DATA)]
    assert m.cpu.seg_sel[SS_SEG] == U_DATA and m.cpu.regs[4] == STACK3 - 4


def test_pop_ss_holds_off_interrupts_for_one_instruction():
    """An interrupt that becomes pending during POP SS is taken after the
    next instruction, not before it (SDM vol. 2, POP)."""
    m = PM()
    m.write(CODE0, b"\x16\x17\x90\x90\x90")                 # push ss; pop ss; nop; nop; nop
    m.cpu.set_eflags(IF)
    taken = []

    def ack():
        return 0x40 if m.cpu.icount >= 2 else None           # pending once POP SS retired

    def intercept(vector, err, eip, soft, external):
        taken.append((vector, eip))
        m.cpu.halted = True
        m.cpu.attention = True
        return True

    m.cpu.intr_ack = ack
    m.cpu.intercept = intercept
    m.cpu.set_intr(True)
    m.run(10)
    assert taken == [(0x40, CODE0 + 3)]                      # after the first NOP


# ================================================================ precise
def test_pusha_that_faults_changes_no_register():
    m = PM()
    segments.set_cache(m.cpu, SS_SEG, K_DATA, 0x8000, 0xFFFF, 0x4093)
    m.write(CODE0, b"\x60")
    m.cpu.regs[4] = 0x10                                      # room for 4 of the 8 slots
    before = _state(m.cpu)
    m.run(1)
    assert m.faults() == [(SS, 0)] and _state(m.cpu) == before


def test_popa_that_faults_changes_no_register():
    m = PM()
    segments.set_cache(m.cpu, SS_SEG, K_DATA, 0, 0x8FFF, 0x4093)
    m.write(CODE0, b"\x61")
    m.cpu.regs[4] = 0x9000 - 16
    before = _state(m.cpu)
    m.run(1)
    assert m.faults() == [(SS, 0)] and _state(m.cpu) == before


def test_pop_to_memory_that_faults_keeps_esp():
    m = PM()
    segments.set_cache(m.cpu, DS, K_DATA, 0, 0x7FFF, 0x4093)
    m.write(CODE0, b"\x8f\x05" + d32(0x9000))                 # pop [0x9000]: beyond the DS limit
    m.cpu.regs[4] = STACK0 - 4
    m.run(1)
    assert m.faults() == [(GP, 0)] and m.cpu.regs[4] == STACK0 - 4


def test_push_to_full_16_bit_stack_is_ss():
    m = Machine()
    m.write(0x1000, b"\x50")
    m.real(0, 0x1000, ss=0, sp=0x0001)
    events = catch_faults(m)
    segments.set_cache(m.cpu, SS_SEG, 0, 0, 0xFFFF, 0x93)
    m.cpu.regs[4] = 1
    m.run(1)
    # SP wraps to 0xFFFF, and a 2-byte store there crosses the 64 KiB limit
    assert events == [(SS, 0)] and m.cpu.regs[4] == 1
