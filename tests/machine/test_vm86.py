"""Virtual-8086 mode (Intel SDM vol. 3, chapter 20; no VME): entry by IRET
from ring 0, real-mode style addressing at CPL 3 under paging, the
IOPL-sensitive instructions, leaving through an interrupt or trap gate with
the exact frame, IRET back, the I/O permission bitmap.  Every test runs on
a bare CPU and as a guest under the monitor (``env``), the kernel and the
VM86 code being the same bytes in memory (``vm86kit``)."""

from __future__ import annotations

import pytest

from tvmm.machine.boot_state import enter_flat32
from tvmm.machine.consts import CS, IF, IOPL, NT, RF, SS_SEG, VM

from .vm86kit import (BAD_GATE_CONF, BAD_GATE_DPL3, CONF_CODE, ESP0, K_CODE, K_DATA, U_CODE, V_CODE,
                      V_CS, V_DS, V_ES, V_FS, V_GS, V_SP, V_SS, Bare, Guest, record, setup)

GP, PF = 13, 14
V_DATA = V_DS << 4
V_EXTRA = V_ES << 4


@pytest.fixture(params=[Bare, Guest], ids=["bare", "guest"])
def env(request, tmp_path):
    return request.param(tmp_path)


def w16(v: int) -> bytes:
    return (v & 0xFFFF).to_bytes(2, "little")


def w32(v: int) -> bytes:
    return (v & 0xFFFFFFFF).to_bytes(4, "little")


INT3 = b"\xcc"


# ------------------------------------------------------------------ entry
def test_iret_at_cpl0_enters_vm86_with_real_mode_segments(env):
    setup(env, INT3, iopl=2)
    env.run(1)                                   # the IRETD
    cpu = env.cpu
    assert cpu.eflags & VM and (cpu.eflags & IOPL) >> 12 == 2
    assert cpu.cpl == 3 and cpu.protected
    assert not cpu.code32 and not cpu.stack32 and not cpu.flat
    sels = (V_ES, V_CS, V_SS, V_DS, V_FS, V_GS)
    assert cpu.seg_sel == list(sels)
    assert cpu.seg_base == [s << 4 for s in sels]
    assert cpu.seg_limit == [0xFFFF] * 6
    assert (cpu.eip, cpu.regs[4]) == (0, V_SP)


def test_real_mode_addressing_segment_loads_and_hot_loops(env):
    code = (b"\xa1\x10\x00"                      # mov ax, [0x10]          DS:0x10
            b"\x26\xa3\x20\x00"                  # mov [es:0x20], ax
            b"\xb8\x34\x12\x8e\xd8"              # mov ax, 0x1234; mov ds, ax  (no descriptor: base 0x12340)
            b"\xa3\x00\x00"                      # mov [0], ax             -> 0x12340
            b"\xbb\xff\xff\x8a\x47\x01"          # mov bx, 0xffff; mov al, [bx+1]  (wraps to DS:0)
            b"\x26\xa2\x22\x00"                  # mov [es:0x22], al
            b"\xb9\x32\x00\x31\xc0"              # mov cx, 50; xor ax, ax
            b"\x01\xc8\xe2\xfc"                  # l: add ax, cx; loop l   (hot: translated)
            b"\x26\xa3\x24\x00" + INT3)          # mov [es:0x24], ax
    setup(env, code)
    env.mem.write(V_DATA + 0x10, 2, 0xBEEF)
    env.run(1000)
    m = env.mem
    assert m.read(V_EXTRA + 0x20, 2) == 0xBEEF
    assert m.read(0x12340, 2) == 0x1234
    assert m.read(V_EXTRA + 0x22, 1) == 0x34
    assert m.read(V_EXTRA + 0x24, 2) == sum(range(51))
    r = record(env, 3)
    assert r["count"] == 1 and r["frame"][6] == 0x1234      # the DS pushed on the way out


def test_an_offset_beyond_0xffff_is_gp0(env):
    code = b"\x66\xbb\x00\x00\x01\x00" + b"\x67\x8a\x03" + INT3   # mov ebx, 0x10000; mov al, [ebx]
    setup(env, code)
    env.run(1000)
    r = record(env, GP)
    assert r["count"] == 1 and r["frame"][:3] == [0, 6, V_CS]


def test_popf_at_cpl0_never_sets_vm(env):
    """In protected mode POPF at CPL 0 leaves VM clear (SDM vol. 2, POPF)."""
    setup(env, INT3)
    code = b"\x68" + w32(VM | 0x2) + b"\x9d" + b"\xf4"           # push 0x20002; popfd; hlt
    env.mem.write_bytes(0x1E000, code)
    enter_flat32(env.cpu, 0x1E000, 0x7000)
    env.run(100)
    assert env.cpu.eip == 0x1E000 + len(code) and not env.cpu.eflags & VM


# -------------------------------------------------- IOPL-sensitive instructions
SENSITIVE = {
    "cli": b"\xfa", "sti": b"\xfb", "pushf": b"\x9c", "popf": b"\x9d", "pushfd": b"\x66\x9c",
    "popfd": b"\x66\x9d", "int 0x21": b"\xcd\x21", "int 3 (CD 03)": b"\xcd\x03", "iret": b"\xcf",
    "iretd": b"\x66\xcf",
}


@pytest.mark.parametrize("name", sorted(SENSITIVE))
def test_iopl_sensitive_instructions_raise_gp0_below_iopl3(env, name):
    setup(env, b"\x90" + SENSITIVE[name] + INT3, iopl=2 if name.startswith("p") else 0)
    env.run(1000)
    r = record(env, GP)
    assert r["count"] == 1, name
    assert r["frame"][:4] == [0, 1, V_CS, VM | (r["frame"][3] & IOPL) | 2]
    assert record(env, 3)["count"] == 0 and record(env, 0x21)["count"] == 0


def test_int3_and_into_are_not_iopl_sensitive(env):
    code = b"\xb0\x7f\x04\x01" + b"\xce" + INT3     # mov al, 0x7f; add al, 1 (OF); into; int3
    setup(env, code, returning={4})
    env.run(1000)
    assert record(env, GP)["count"] == 0
    r4, r3 = record(env, 4), record(env, 3)
    assert r4["count"] == 1 and r4["frame"][:2] == [5, V_CS]
    assert r3["count"] == 1 and r3["frame"][:2] == [6, V_CS]


def test_with_iopl3_the_sensitive_instructions_work_and_keep_vm_and_iopl(env):
    code = bytearray()
    code += b"\xfb\xfa"                                      # sti; cli
    code += b"\x9c\x58\xa3\x00\x00"                          # pushf; pop ax; mov [0], ax
    code += b"\x66\x9c\x66\x58\x66\xa3\x04\x00"              # pushfd; pop eax; mov [4], eax
    code += b"\x66\x68" + w32(0x2 | 1) + b"\x66\x9d"         # push dword 3 (VM, IOPL clear); popfd
    code += b"\x66\x9c\x66\x58\x66\xa3\x08\x00"              # pushfd ... mov [8], eax
    code += b"\x68" + w16(0x2) + b"\x9d"                     # push 2; popf (IOPL 0, CF 0)
    code += b"\x66\x9c\x66\x58\x66\xa3\x0c\x00"              # pushfd ... mov [0xc], eax
    at_int = len(code)
    code += b"\xcd\x21"                                      # int 0x21 (gate DPL 3) and back
    code += b"\x9c\x0e\x68"                                  # pushf; push cs; push target
    target = len(code) + 2 + 1 + 5
    code += w16(target) + b"\xcf"                            # iret (within VM86)
    code += b"\xf4" * 5                                      # skipped by the iret
    assert len(code) == target
    code += INT3
    setup(env, bytes(code), iopl=3, returning={0x21})
    env.run(1000)
    rd = env.mem.read
    assert rd(V_DATA, 2) & (IOPL | IF) == IOPL                            # cli cleared IF; IOPL 3
    assert rd(V_DATA + 4, 4) & (VM | RF | IOPL) == IOPL                   # PUSHFD: VM, RF clear in the image
    assert rd(V_DATA + 8, 4) & (IOPL | 1) == IOPL | 1                     # POPFD set CF, kept IOPL
    assert rd(V_DATA + 12, 4) & (IOPL | 1) == IOPL                        # POPF cleared CF, kept IOPL
    r21 = record(env, 0x21)
    assert r21["count"] == 1 and r21["frame"][:3] == [at_int + 2, V_CS, r21["frame"][2]]
    assert r21["frame"][2] & (VM | IOPL) == VM | IOPL
    r3 = record(env, 3)
    assert r3["count"] == 1 and r3["frame"][0] == target + 1 and r3["frame"][2] & VM
    assert record(env, GP)["count"] == 0


# ------------------------------------------------------------------ leaving VM86
@pytest.mark.parametrize("gate", ["interrupt", "trap"])
def test_exit_through_a_gate_pushes_the_vm86_frame_and_nulls_data_segments(env, gate):
    setup(env, b"\x90\xf4", eflags=NT | IF, trap_gates={GP} if gate == "trap" else ())
    env.run(1000)
    r = record(env, GP)
    assert r["count"] == 1
    flags = VM | NT | IF | 2
    assert r["frame"][:10] == [0, 1, V_CS, flags, V_SP, V_SS, V_ES, V_DS, V_FS, V_GS]
    assert r["segs"] == [0, 0, 0, 0]                          # ES DS FS GS null in the handler
    assert r["esp"] == ESP0 - 40 and r["cs"] == K_CODE
    assert not r["eflags"] & (VM | NT)
    assert bool(r["eflags"] & IF) == (gate == "trap")
    cpu = env.cpu
    assert cpu.cpl == 0 and cpu.seg_sel[SS_SEG] == K_DATA and cpu.seg_sel[CS] == K_CODE and cpu.code32


def test_iret_back_from_the_handler_restores_the_vm86_segments(env):
    code = b"\xb8\x11\x11" + b"\xfa" + b"\xa3\x10\x00" + INT3   # mov ax, 0x1111; cli (#GP); mov [0x10], ax
    setup(env, code, returning={GP}, skips={GP: 1})             # the "monitor" skips the CLI
    env.run(1000)
    assert record(env, GP)["count"] == 1
    assert env.mem.read(V_DATA + 0x10, 2) == 0x1111            # DS was reloaded from the frame
    r3 = record(env, 3)
    assert r3["count"] == 1 and r3["frame"][:9] == [8, V_CS, VM | 2, V_SP, V_SS, V_ES, V_DS, V_FS, V_GS]


@pytest.mark.parametrize("vector,err", [(BAD_GATE_DPL3, U_CODE), (BAD_GATE_CONF, CONF_CODE), (0x22, 0x22 * 8 + 2)])
def test_int_to_a_handler_vm86_cannot_use_is_gp(env, vector, err):
    """A ring-3 or conforming handler is #GP(selector); a gate with DPL < 3
    is #GP(vector * 8 + 2), as for INT n at CPL 3."""
    setup(env, b"\xcd" + bytes([vector]) + INT3, iopl=3)
    env.run(1000)
    r = record(env, GP)
    assert r["count"] == 1 and r["frame"][:3] == [err, 0, V_CS] and r["frame"][3] & VM
    assert record(env, vector)["count"] == 0


# ------------------------------------------------------------------ I/O bitmap
IO_CASES = {                                                      # code, IOPL, faulting offset or None
    "out imm8 allowed": (b"\xb0\x00\xe6\x80", 3, None),
    "in dx allowed": (b"\xba\x81\x00\xec", 0, None),              # IOPL 0: the bitmap alone decides
    "word out half denied": (b"\xba\x81\x00\xef", 3, 3),           # ports 0x81 and 0x82: 0x82 is denied
    "denied with iopl 3": (b"\xe4\x90", 3, 0),
    "dword in half denied": (b"\xba\x7e\x00\x66\xed", 3, 3),      # 0x7e..0x81
}


@pytest.mark.parametrize("name", sorted(IO_CASES))
def test_io_in_vm86_always_consults_the_tss_bitmap(env, name):
    code, iopl, fault_at = IO_CASES[name]
    setup(env, code + INT3, iopl=iopl, allowed_ports={0x80, 0x81})
    env.run(1000)
    r = record(env, GP)
    if fault_at is not None:
        assert r["count"] == 1 and r["frame"][:2] == [0, fault_at]
    else:
        assert r["count"] == 0 and record(env, 3)["count"] == 1


def test_io_bitmap_bytes_beyond_the_tss_limit_deny(env):
    setup(env, b"\xe6\x80" + INT3, iopl=3, allowed_ports={0x80})
    env.cpu.tr_limit = 0x68 + 0x10                # ports from 0x78 up are past the limit
    env.run(1000)
    assert record(env, GP)["count"] == 1


# ------------------------------------------------------------------ paging
def test_paging_applies_with_cpl3_permissions(env):
    pd, pt = 0x100000, 0x101000
    setup(env, b"\xa1\x10\x00" + INT3)
    m, cpu = env.mem, env.cpu
    m.write(pd, 4, pt | 7)
    for i in range(1024):
        m.write(pt + 4 * i, 4, (i << 12) | (3 if i == V_DATA >> 12 else 7))   # VM86 data: supervisor only
    cpu.set_cr3(pd)
    cpu.set_cr0(cpu.guest_cr(0) | 0x80000000)
    env.run(1000)
    r = record(env, PF)
    assert r["count"] == 1 and r["frame"][:3] == [0x5, 0, V_CS]     # present, read, user
    assert cpu.cr2 == V_DATA + 0x10


# ------------------------------------------------------------------ TR and the monitor
def test_snapshot_restore_in_vm86_recomputes_the_mode(tmp_path):
    from tvmm.monitor import snapshot
    env = Guest(tmp_path)
    code = b"\xb9\x00\x01\x31\xc0\x01\xc8\xe2\xfc\xa3\x00\x00" + INT3   # sum 1..256 -> [0]
    setup(env, code)
    env.run(50)
    snap = snapshot.take(env.g)
    env.run(1000)
    first = (env.mem.read(V_DATA, 2), record(env, 3)["frame"][:9])
    snapshot.restore(env.g, snap)
    cpu = env.cpu
    assert cpu.eflags & VM and cpu.cpl == 3 and not cpu.code32 and not cpu.flat
    assert cpu.seg_base[CS] == V_CODE and cpu.seg_sel[3] == V_DS
    env.mem.write(V_DATA, 2, 0)
    env.run(1000)
    assert (env.mem.read(V_DATA, 2), record(env, 3)["frame"][:9]) == first
    assert first[0] == sum(range(257)) & 0xFFFF



def test_an_external_interrupt_leaves_vm86_through_its_gate():
    env = Bare()
    setup(env, b"\x90" * 4 + INT3, eflags=IF)
    cpu = env.cpu
    env.run(3)                                        # iretd, nop, nop
    cpu.intr_ack = lambda: 0x30
    cpu.set_intr(True)
    env.run(1000)
    r = record(env, 0x30)
    assert r["count"] == 1
    assert r["frame"][:9] == [2, V_CS, VM | IF | 2, V_SP, V_SS, V_ES, V_DS, V_FS, V_GS]
    assert r["segs"] == [0, 0, 0, 0] and not r["eflags"] & (IF | VM)


def test_the_task_switch_helper_loads_vm86_segments():
    """``segments.enter_vm86_segments`` is what a task switch to a TSS with
    VM set in its EFLAGS image calls once EFLAGS is loaded."""
    from tvmm.machine import segments
    env = Bare()
    cpu = env.cpu
    enter_flat32(cpu, 0, 0x1000)
    cpu.set_eflags(VM | 2, 0xFFFFFFFF)
    segments.enter_vm86_segments(cpu, (1, 2, 3, 4, 5, 0xFFFF))
    assert cpu.cpl == 3 and cpu.seg_base == [0x10, 0x20, 0x30, 0x40, 0x50, 0xFFFF0]
    assert cpu.seg_limit == [0xFFFF] * 6 and not cpu.code32 and not cpu.stack32 and not cpu.flat
    segments.load_data(cpu, 3, 0x1234)                # MOV DS in VM86: no descriptor
    assert cpu.seg_base[3] == 0x12340 and cpu.seg_hi[3] == 0xFFFF == cpu.seg_whi[1]


VM86_UD = {"sldt": b"\x0f\x00\xc0", "str": b"\x0f\x00\xc8", "lldt": b"\x0f\x00\xd0", "ltr": b"\x0f\x00\xd8",
           "verr": b"\x0f\x00\xe0", "verw": b"\x0f\x00\xe8", "lar": b"\x0f\x02\xc0", "lsl": b"\x0f\x03\xc0",
           "arpl": b"\x63\xc0"}
VM86_GP = {"hlt": b"\xf4", "mov eax, cr0": b"\x0f\x20\xc0", "mov cr3, eax": b"\x0f\x22\xd8",
           "mov eax, dr7": b"\x0f\x21\xf8", "clts": b"\x0f\x06", "lmsw ax": b"\x0f\x01\xf0",
           "lgdt [0]": b"\x0f\x01\x16\x00\x00", "invlpg [0]": b"\x0f\x01\x3e\x00\x00", "rdmsr": b"\x0f\x32",
           "wrmsr": b"\x0f\x30", "sysexit": b"\x0f\x35"}


@pytest.mark.parametrize("name", sorted(VM86_UD) + sorted(VM86_GP))
def test_protected_mode_only_instructions_in_vm86(env, name):
    """#UD for what the SDM says is "not recognized in virtual-8086 mode";
    #GP(0) for everything that needs CPL 0."""
    ud = name in VM86_UD
    setup(env, (VM86_UD if ud else VM86_GP)[name] + INT3)
    env.run(1000)
    r = record(env, 6 if ud else GP)
    assert r["count"] == 1, name
    assert r["frame"][:2] == ([0, V_CS] if ud else [0, 0])


def test_smsw_sgdt_cpuid_work_in_vm86(env):
    code = b"\x0f\x01\xe0\xa3\x00\x00" + b"\x0f\x01\x06\x10\x00" + b"\x66\x31\xc0\x0f\xa2" + INT3
    setup(env, code)                                  # smsw ax; mov [0], ax; sgdt [0x10]; cpuid (leaf 0)
    env.run(1000)
    assert record(env, 3)["count"] == 1 and record(env, GP)["count"] == 0 and record(env, 6)["count"] == 0
    assert env.mem.read(V_DATA, 2) & 1                 # PE
    assert env.mem.read(V_DATA + 0x12, 4) == 0x1000    # the GDT base


def test_a_16_bit_gate_from_vm86_pushes_word_slots(env):
    """The SDM's pseudocode allows a 16-bit interrupt gate from VM86: the
    same nine slots (no error code for INT n), each a word."""
    from .harness import gate_desc
    from .vm86kit import IDT
    setup(env, b"\xcd\x23", iopl=3)
    env.mem.write_bytes(IDT + 0x23 * 8, gate_desc(K_CODE, 0xF000, 0x6, dpl=3))
    env.mem.write_bytes(0xF000, b"\xf4")
    env.run(100)
    words = [env.mem.read(ESP0 - 18 + 2 * i, 2) for i in range(9)]
    assert words == [2, V_CS, 2 | (3 << 12), V_SP, V_SS, V_ES, V_DS, V_FS, V_GS]   # FLAGS: VM is bit 17
    assert env.cpu.regs[4] == ESP0 - 18 and env.cpu.eip == 0xF001 and env.cpu.seg_sel[3] == 0
