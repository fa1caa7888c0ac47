"""x87 FPU, FXSAVE/FXRSTOR and their system side, against the SDM: results
and status/tag words, stack faults, masked and unmasked exceptions, #NM
under CR0.EM/TS/MP, #MF (CR0.NE=1) versus FERR#/IRQ 13, the FNSTENV/FNSAVE
layouts in 16/32-bit and real/protected formats, the FXSAVE layout, CR4.OSFXSR
and CPUID."""

from __future__ import annotations

import struct

import pytest

from tvmm.machine import Stop, StopKind
from tvmm.machine.consts import CR0_EM, CR0_MP, CR0_NE, CR0_TS
from tvmm.machine.irq import IrqLine
from tvmm.machine.native import CPUID_FEATURES
from tvmm.machine.x87 import float80 as F

from .harness import Machine

CODE, DATA = 0x1000, 0x2000
ONE = F.ONE
IE, ZE, PE, SF, ES = 1, 4, 0x20, 0x40, 0x80
C0, C1, C2, C3 = 0x100, 0x200, 0x400, 0x4000
NM, MF, GP, UD = 7, 16, 13, 6


def run(code: bytes, *, cr0_set: int = 0, data: bytes = b"", real: bool = False, setup=None):
    """Run ``code`` (then HLT) flat 32-bit (or real mode at 0:CODE); returns
    (machine, vector of the first exception or None)."""
    m = Machine()
    m.write(CODE, code + b"\xf4")
    if data:
        m.write(DATA, data)
    if real:
        m.real(0, CODE)
    else:
        m.flat32(CODE, esp=0x9000)
    if cr0_set:
        m.cpu.set_cr0(m.cpu.cr0 | cr0_set)
    if setup:
        setup(m)
    caught = []

    def intercept(vector, error_code, return_eip, soft, external):
        caught.append(vector)
        m.cpu.request_stop(Stop(StopKind.REQUEST, "exception"))
        return True

    m.cpu.intercept = intercept
    m.cpu.run(10_000)
    return m, (caught[0] if caught else None)


def mem32(addr: int, reg: int, op: int) -> bytes:
    return bytes([op, (reg << 3) | 5]) + addr.to_bytes(4, "little")


FNINIT = b"\xdb\xe3"
FLD1, FLDZ, FLDPI = b"\xd9\xe8", b"\xd9\xee", b"\xd9\xeb"
FWAIT = b"\x9b"


def fldcw(addr):
    return mem32(addr, 5, 0xD9)


def st(m, i: int) -> int:
    return m.cpu.fpu.st(i)


# ----------------------------------------------------------------- basics
def test_arithmetic_and_stores():
    code = (FNINIT + FLD1 + FLDPI + b"\xde\xc1"                # faddp: pi + 1
            + mem32(DATA, 3, 0xDD)                            # fstp qword [DATA]
            + mem32(DATA + 16, 0, 0xDB)                       # fild dword [DATA+16]
            + mem32(DATA + 20, 0, 0xDE) + b"\xd9\xfa"         # fiadd word [DATA+20]; fsqrt
            + mem32(DATA + 32, 3, 0xDB)                       # fistp dword [DATA+32]
            + b"\xdf\xe0")                                    # fnstsw ax
    m, vec = run(code, data=bytes(16) + struct.pack("<iH", 40, 9))
    assert vec is None
    assert struct.unpack("<d", m.read(DATA, 8))[0] == 4.141592653589793
    assert struct.unpack("<i", m.read(DATA + 32, 4))[0] == 7
    f = m.cpu.fpu
    assert f.top == 0 and f.valid == 0
    assert m.cpu.regs[0] & 0xFFFF == PE                      # sqrt(49) exact, the double store was not


def test_status_and_tag_words():
    code = FNINIT + FLD1 + FLDZ + b"\xd9\xe8\xd9\xe8\xd9\xe0\xd9\xfa"   # fld1 fld1 fchs fsqrt -> NaN
    m, _ = run(code)
    f = m.cpu.fpu
    assert f.top == 4
    # R7 = 1.0 (valid 00), R6 = 0 (zero 01), R5 = 1.0, R4 = indefinite (special 10), others empty
    assert f.tag_word() == (0b00 << 14) | (0b01 << 12) | (0b00 << 10) | (0b10 << 8) | 0xFF
    assert f.status() == (4 << 11) | IE
    assert st(m, 0) == F.INDEFINITE


def test_compares_set_condition_codes_and_eflags():
    # fld1; fldz; fcom st(1) -> 0 < 1: C0; fcomi st(1): CF
    m, _ = run(FNINIT + FLD1 + FLDZ + b"\xd8\xd1\xdb\xf1")
    assert m.cpu.fpu.sw & (C0 | C2 | C3) == C0
    assert m.cpu.get_eflags() & 0x45 == 0x01
    # unordered with a QNaN: FUCOM quiet, FCOM signals IE
    code = FNINIT + FLD1 + FLDZ + b"\xd9\xe0\xd9\xfa"        # fldz fchs? -> sqrt(-0) = -0; use 0/0
    code = FNINIT + FLD1 + FLDZ + FLDZ + b"\xde\xf9" + b"\xdd\xe1"        # fdivp -> indefinite; fucom st(1)
    m, _ = run(code)
    assert m.cpu.fpu.sw & (C0 | C2 | C3) == C0 | C2 | C3
    assert m.cpu.fpu.sw & IE                                 # from 0/0
    m, _ = run(FNINIT + FLD1 + FLDZ + FLDZ + b"\xde\xf9" + b"\xdb\xe2" + b"\xd8\xd1")   # fnclex; fcom
    assert m.cpu.fpu.sw & IE


def test_fxam_classes():
    cases = [(FLD1, C2), (FLDZ, C3), (FLDZ + FLDZ + b"\xde\xf9", C0), (b"", C3 | C0)]
    for pre, want in cases:
        m, _ = run(FNINIT + pre + b"\xd9\xe5")
        assert m.cpu.fpu.sw & (C0 | C2 | C3) == want, pre.hex()


# ---------------------------------------------------------- stack faults
def test_stack_overflow_masked_pushes_indefinite():
    m, _ = run(FNINIT + FLD1 * 9)
    f = m.cpu.fpu
    assert f.sw & (IE | SF | C1) == IE | SF | C1
    assert st(m, 0) == F.INDEFINITE and f.top == 7


def test_stack_underflow_masked_and_unmasked():
    m, _ = run(FNINIT + b"\xd8\xc1")                          # fadd st, st(1) on an empty stack
    f = m.cpu.fpu
    assert f.sw & (IE | SF | C1) == IE | SF
    assert st(m, 0) == F.INDEFINITE
    # unmasked IE: nothing stored, ES set
    m, _ = run(FNINIT + fldcw(DATA) + b"\xd8\xc1", data=struct.pack("<H", 0x37E))
    f = m.cpu.fpu
    assert f.sw & (IE | SF | ES) == IE | SF | ES and f.empty(0)


# ---------------------------------------------------- masked vs unmasked
def test_zero_divide_masked_and_unmasked():
    m, _ = run(FNINIT + FLD1 + FLDZ + b"\xde\xf9")            # fdivp: 1/0
    assert m.cpu.fpu.sw & ZE and st(m, 0) == F.POS_INF and m.cpu.fpu.top == 7
    m, vec = run(FNINIT + fldcw(DATA) + FLD1 + FLDZ + b"\xde\xf9", data=struct.pack("<H", 0x37B))
    f = m.cpu.fpu
    assert vec is None                                       # signalled only at the next waiting insn
    assert f.sw & (ZE | ES) == ZE | ES and f.top == 6 and st(m, 0) == 0 and st(m, 1) == ONE


def test_invalid_masked_gives_indefinite_unmasked_keeps_operands():
    m, _ = run(FNINIT + FLD1 + b"\xd9\xe0\xd9\xfa")           # sqrt(-1)
    assert st(m, 0) == F.INDEFINITE and m.cpu.fpu.sw & IE
    m, _ = run(FNINIT + fldcw(DATA) + FLD1 + b"\xd9\xe0\xd9\xfa", data=struct.pack("<H", 0x37E))
    assert st(m, 0) == ONE | F.SIGN and m.cpu.fpu.sw & (IE | ES) == IE | ES


def test_unmasked_precision_still_stores():
    m, _ = run(FNINIT + fldcw(DATA) + FLD1 + mem32(DATA + 4, 0, 0xDB) + b"\xde\xf9",
               data=struct.pack("<HHi", 0x35F, 0, 3))        # fild 3; fdivp -> 1/3 inexact, PE unmasked
    assert m.cpu.fpu.sw & (PE | ES) == PE | ES
    assert st(m, 0) == F.div(ONE, F.from_int(3), 0x37F)[0]


# ------------------------------------------------------------- #MF, IRQ 13
def test_pending_exception_raises_mf_with_ne():
    code = FNINIT + fldcw(DATA) + FLD1 + FLDZ + b"\xde\xf9" + FLD1 + FLD1
    m, vec = run(code, data=struct.pack("<H", 0x37B), cr0_set=CR0_NE)
    assert vec == MF
    assert m.cpu.eip == CODE + len(code) - 4                  # the FLD1 after FDIVP, the next waiting insn
    assert m.cpu.fpu.top == 6                                 # FDIVP neither stored nor popped; FLD1 did not run


def test_fwait_signals_and_fn_forms_do_not():
    base = FNINIT + fldcw(DATA) + FLD1 + FLDZ + b"\xde\xf9"
    for tail, want in ((FWAIT, MF), (b"\xdf\xe0", None), (b"\xdb\xe2" + FWAIT, None),
                       (mem32(DATA + 8, 7, 0xD9), None), (mem32(DATA + 8, 6, 0xDD), None)):
        m, vec = run(base + tail, data=struct.pack("<H", 0x37B), cr0_set=CR0_NE)
        assert vec == want, tail.hex()


def test_ferr_raises_irq13_without_ne():
    events = []
    line = IrqLine("irq13", events.append)

    def setup(m):
        m.cpu.ferr = line

    code = FNINIT + fldcw(DATA) + FLD1 + FLDZ + b"\xde\xf9" + FLD1 + b"\xdb\xe2"   # ... fld1 (waiting); fnclex
    m, vec = run(code, data=struct.pack("<H", 0x37B), setup=setup)
    assert vec is None
    assert events == [True, False]                           # asserted at FLD1, deasserted by FNCLEX
    assert m.cpu.fpu.top == 5                                 # FLD1 executed (IGNNE#-style)


def test_pc_wires_ferr_to_irq13_and_port_f0():
    from tvmm.machine.pc import PC
    pc = PC(4 << 20)
    assert pc.cpu.ferr is pc.irq[13]
    pc.irq[13].raise_()
    pc.bus.port_out(0xF0, 1, 0)
    assert not pc.irq[13].level


# ----------------------------------------------------- CR0.EM/TS/MP, #NM
@pytest.mark.parametrize("cr0, insn, want", [
    (CR0_EM, FLD1, NM), (CR0_TS, FLD1, NM), (CR0_TS, b"\xdb\xe3", NM), (CR0_EM, FWAIT, None),
    (CR0_TS, FWAIT, None), (CR0_TS | CR0_MP, FWAIT, NM), (CR0_MP, FWAIT, None),
    (CR0_TS, b"\x0f\xae" + bytes([5]) + DATA.to_bytes(4, "little"), NM),
    (CR0_EM, b"\x0f\xae" + bytes([5]) + DATA.to_bytes(4, "little"), NM),
])
def test_device_not_available(cr0, insn, want):
    m, vec = run(insn, cr0_set=cr0)
    assert vec == want
    if want == NM:
        assert m.cpu.eip == CODE


def test_clts_then_fpu_works():
    m, vec = run(b"\x0f\x06" + FNINIT + FLD1, cr0_set=CR0_TS)
    assert vec is None and st(m, 0) == ONE


def test_fisttp_is_ud_on_p6():
    for op in (0xDB, 0xDD, 0xDF):
        m, vec = run(FNINIT + FLD1 + mem32(DATA, 1, op))
        assert vec == UD


# ---------------------------------------------------- FNSTENV / FNSAVE
def _env_prog(extra: bytes = b"") -> bytes:
    # fninit; fldcw 0x27F; fld1; fldz; fadd dword [DATA+0x40]; then extra
    return FNINIT + fldcw(DATA + 0x30) + FLD1 + FLDZ + mem32(DATA + 0x40, 0, 0xD8) + extra


ENV_DATA = bytes(0x30) + struct.pack("<H", 0x27F) + bytes(14) + struct.pack("<f", 2.0)


def test_fnstenv_32bit_protected_layout():
    m, _ = run(_env_prog(mem32(DATA + 0x100, 6, 0xD9)), data=ENV_DATA)
    w = struct.unpack("<7I", m.read(DATA + 0x100, 28))
    fadd_eip = CODE + 2 + 6 + 2 + 2
    assert w[0] == 0xFFFF0000 | 0x27F
    assert w[1] & 0xFFFF == (6 << 11) and w[1] >> 16 == 0xFFFF
    assert w[2] == 0xFFFF0000 | 0x0FFF                       # R7 valid, R6 valid (2.0), rest empty
    assert w[3] == fadd_eip
    assert w[4] == 0x08 | (0x005 << 16)                     # FCS, FOP = D8 05 -> 0x005
    assert w[5] == DATA + 0x40 and w[6] == 0xFFFF0000 | 0x10
    assert m.cpu.fpu.cw == 0x27F | 0x3F                       # FNSTENV masks every exception


def test_fnstenv_16bit_and_real_mode_layouts():
    prog = _env_prog(b"\x66" + mem32(DATA + 0x100, 6, 0xD9))
    m, _ = run(prog, data=ENV_DATA)
    w = struct.unpack("<7H", m.read(DATA + 0x100, 14))
    assert w[0] == 0x27F and w[3] == CODE + 12 and w[4] == 0x08 and w[5] == DATA + 0x40 and w[6] == 0x10
    # real mode, 16-bit operand size: FIP/FDP as 20-bit linear addresses with FOP
    code = (FNINIT + b"\xd9\x2e" + (DATA + 0x30).to_bytes(2, "little") + FLD1 + FLDZ
            + b"\xd8\x06" + (DATA + 0x40).to_bytes(2, "little") + b"\xd9\x36" + (DATA + 0x100).to_bytes(2, "little"))
    m, vec = run(code, data=ENV_DATA, real=True)
    assert vec is None
    w = struct.unpack("<7H", m.read(DATA + 0x100, 14))
    assert w[3] == CODE + 2 + 4 + 2 + 2 and w[4] == 0x006      # FIP[15:0]; FIP[19:16]=0, FOP D8 06
    assert w[5] == DATA + 0x40 and w[6] == 0


def test_fnsave_frstor_roundtrip():
    save = mem32(DATA + 0x200, 6, 0xDD)
    restore = mem32(DATA + 0x200, 4, 0xDD)
    m, _ = run(FNINIT + FLD1 + FLDPI + save + FLDZ + restore, data=ENV_DATA)
    f = m.cpu.fpu
    img = m.read(DATA + 0x200, 108)
    assert int.from_bytes(img[28:38], "little") == F.constant("pi", 0x37F)     # ST(0)
    assert int.from_bytes(img[38:48], "little") == ONE                          # ST(1)
    assert f.top == 6 and st(m, 0) == F.constant("pi", 0x37F) and st(m, 1) == ONE
    assert f.tag_word() == 0x0FFF
    # FNSAVE re-initializes
    m, _ = run(FNINIT + FLD1 + save)
    assert m.cpu.fpu.cw == 0x37F and m.cpu.fpu.valid == 0
    # 16-bit form: 94 bytes, registers at 14
    m, _ = run(FNINIT + FLD1 + b"\x66" + save)
    assert int.from_bytes(m.read(DATA + 0x200 + 14, 10), "little") == ONE


def test_fldenv_pending_exception_then_mf():
    env = struct.pack("<7I", 0x37B, ZE, 0xFFFF, 0, 0, 0, 0)
    m, vec = run(mem32(DATA, 4, 0xD9) + FLD1, data=env, cr0_set=CR0_NE)
    assert vec == MF and m.cpu.fpu.sw & ES


# ----------------------------------------------------- FXSAVE / FXRSTOR
def fx(reg: int, addr: int) -> bytes:
    return b"\x0f\xae" + bytes([(reg << 3) | 5]) + addr.to_bytes(4, "little")


def test_fxsave_layout():
    area = DATA + 0x400
    m, vec = run(_env_prog(fx(0, area)), data=ENV_DATA + bytes(0x400 - len(ENV_DATA)) + b"\xAA" * 512)
    assert vec is None
    img = m.read(area, 512)
    fcw, fsw, ftw, fop, fip, fcs, fdp, fds = struct.unpack_from("<HHBxHIHxxIHxx", img, 0)
    assert fcw == 0x27F and fsw == 6 << 11 and ftw == 0xC0 and fop == 0x005
    assert fip == CODE + 12 and fcs == 0x08 and fdp == DATA + 0x40 and fds == 0x10
    assert img[24:32] == bytes(8)                            # MXCSR, MXCSR_MASK: no SSE
    assert int.from_bytes(img[32:42], "little") == F.from_int(2) and img[42:48] == bytes(6)
    assert int.from_bytes(img[48:58], "little") == ONE
    assert img[160:] == b"\xAA" * 352                        # XMM and reserved area untouched
    assert m.cpu.fpu.cw == 0x27F                             # FXSAVE keeps the state


def test_fxrstor_roundtrip_and_alignment():
    area = DATA + 0x400
    m, vec = run(FNINIT + FLD1 + FLDPI + fx(0, area) + FNINIT + fx(1, area))
    assert vec is None and st(m, 0) == F.constant("pi", 0x37F) and st(m, 1) == ONE and m.cpu.fpu.top == 6
    m, vec = run(fx(0, area + 8))
    assert vec == GP
    m, vec = run(fx(1, area + 4))
    assert vec == GP
    m, vec = run(b"\x0f\xae\xc0")                             # register form: #UD
    assert vec == UD


def test_cr4_osfxsr_settable_and_cpuid():
    # mov eax, 0x200; mov cr4, eax; mov ebx, cr4; mov eax, 1; cpuid
    code = b"\xb8\x00\x02\x00\x00\x0f\x22\xe0\x0f\x20\xe3\x89\xde" + b"\xb8\x01\x00\x00\x00\x0f\xa2"
    m, vec = run(code)
    assert vec is None and m.cpu.regs[6] == 0x200
    assert m.cpu.regs[2] & 1 and m.cpu.regs[2] & (1 << 24) and CPUID_FEATURES & 1
    assert m.cpu.regs[2] & (1 << 23) and not m.cpu.regs[2] & (1 << 25)     # MMX, no SSE


def test_translated_and_interpreted_agree():
    """A loop of x87 code run hot (translated) equals the interpreted run."""
    body = FLD1 + b"\xde\xc1"                                 # fld1; faddp
    code = FNINIT + FLDZ + b"\xb9\x20\x00\x00\x00" + body + b"\x49\x75" + bytes([(-(len(body) + 3)) & 0xFF])
    results = []
    for tr in (False, True):
        m = Machine()
        m.write(CODE, code + mem32(DATA, 3, 0xDD) + b"\xf4")
        m.flat32(CODE)
        m.cpu.translate_blocks = tr
        m.cpu.hot = 1
        m.run_to_hlt()
        results.append(m.read(DATA, 8))
    assert results[0] == results[1] == struct.pack("<d", 32.0)


@pytest.mark.parametrize("translate", [False, True])
def test_fcomi_and_fcmov_flags_inside_a_translated_block(translate):
    """CMP sets lazy flags, FCOMI replaces them, JB reads FCOMI's CF; then
    CMP again and FCMOVB reads CMP's CF (the translator must not reuse a
    stale flag record across the x87 handler calls)."""
    # fninit; fld1; fldz; mov eax,1; cmp eax,2 (CF=1); fcomi st1 (0 < 1: CF=1)... use fld1; fldz then
    # fxch: st0=1, st1=0 -> 1 > 0: CF=0; jb +2 (not taken); inc ebx; cmp eax,2 (CF=1); fcmovb st0,st1
    body = (FNINIT + FLDZ + FLD1 + b"\xb8\x01\x00\x00\x00" + b"\x83\xf8\x02" + b"\xdb\xf1"
            + b"\x72\x01" + b"\x43" + b"\x83\xf8\x02" + b"\xda\xc1")
    code = b"\xb9\x03\x00\x00\x00" + body + b"\x49\x75" + bytes([(-(len(body) + 3)) & 0xFF])
    m = Machine()
    m.write(CODE, code + b"\xf4")
    m.flat32(CODE)
    m.cpu.translate_blocks = translate
    m.cpu.hot = 1
    m.run_to_hlt()
    assert m.cpu.regs[3] == 3                                 # JB never taken
    assert m.cpu.fpu.st(0) == 0 and m.cpu.fpu.top == 6      # FCMOVB moved ST(1) = 0.0
