"""MMX against the SDM (vol. 1, chapter 9): aliasing with the x87 registers
(bits 64-79 set to ones, TOP 0, tags valid, EMMS), CR0.EM #UD / CR0.TS #NM,
a pending x87 exception signalled first, and a few exact results."""

from __future__ import annotations

import struct

from tvmm.machine.consts import CR0_EM, CR0_NE, CR0_TS

from .test_x87 import CODE, DATA, FLD1, FLDZ, FNINIT, fldcw, run

MF, NM, UD = 16, 7, 6


def movq_load(mm: int, addr: int) -> bytes:
    return b"\x0f\x6f" + bytes([(mm << 3) | 5]) + addr.to_bytes(4, "little")


def movq_store(mm: int, addr: int) -> bytes:
    return b"\x0f\x7f" + bytes([(mm << 3) | 5]) + addr.to_bytes(4, "little")


def test_aliasing_top_tags_and_emms():
    data = struct.pack("<QQ", 0x0001000200030004, 0xFFFF000100020003)
    code = FNINIT + FLD1 + FLD1 + movq_load(0, DATA) + movq_load(1, DATA + 8) + b"\x0f\xfd\xc1"   # paddw mm0, mm1
    m, vec = run(code, data=data)
    f = m.cpu.fpu
    assert vec is None
    assert f.regs[0] == (0xFFFF << 64) | 0x0000000300050007      # sign+exponent all ones
    assert f.top == 0 and f.valid == 0xFF and f.tag_word() & 0xF == 0xA     # R0, R1: special
    m, _ = run(code + b"\x0f\x77", data=data)                    # emms
    assert m.cpu.fpu.valid == 0 and m.cpu.fpu.tag_word() == 0xFFFF


def test_results():
    cases = [
        (b"\x0f\xdc\xc1", 0xFF7F0080FF000102, 0x0101FF80FF010203, 0xFF80FFFFFF010305),   # paddusb
        (b"\x0f\xec\xc1", 0x7F80000000000000, 0x0180000000000000, 0x7F80000000000000),   # paddsb
        (b"\x0f\xe5\xc1", 0x7FFF800000020003, 0x7FFF800000030004, 0x3FFF400000000000),   # pmulhw
        (b"\x0f\xf5\xc1", 0x0001000200030004, 0x0005000600070008, 0x0000001100000035),   # pmaddwd
        (b"\x0f\x63\xc1", 0x0080FF7F7FFF8000, 0x0001000200030004, 0x010203047F807F80),   # packsswb
        (b"\x0f\x68\xc1", 0x1122334455667788, 0x99AABBCCDDEEFF00, 0x9911AA22BB33CC44),   # punpckhbw
        (b"\x0f\x71\xe0\x04", 0x8000F00000100001, 0, 0xF800FF0000010000),                # psraw mm0, 4
        (b"\x0f\x73\xd0\x40", 0x8000F00000100001, 0, 0),                                 # psrlq mm0, 64
    ]
    for insn, a, b, want in cases:
        m, vec = run(FNINIT + movq_load(0, DATA) + movq_load(1, DATA + 8) + insn + movq_store(0, DATA + 16),
                     data=struct.pack("<QQ", a, b))
        assert vec is None
        assert struct.unpack("<Q", m.read(DATA + 16, 8))[0] == want, insn.hex()


def test_movd():
    # mov eax, 0x12345678; movd mm3, eax; movd ecx, mm3
    m, _ = run(b"\xb8\x78\x56\x34\x12\x0f\x6e\xd8\x0f\x7e\xd9")
    assert m.cpu.regs[1] == 0x12345678 and m.cpu.fpu.regs[3] == (0xFFFF << 64) | 0x12345678


def test_em_is_ud_ts_is_nm():
    m, vec = run(b"\x0f\x77", cr0_set=CR0_EM)
    assert vec == UD and m.cpu.eip == CODE
    m, vec = run(b"\x0f\xef\xc0", cr0_set=CR0_TS)
    assert vec == NM
    m, vec = run(b"\x0f\x71\x00\x04")                         # memory form of a shift-by-immediate
    assert vec == UD


def test_pending_x87_exception_is_signalled_first():
    code = FNINIT + fldcw(DATA) + FLD1 + FLDZ + b"\xde\xf9" + b"\x0f\xef\xc0"
    m, vec = run(code, data=struct.pack("<H", 0x37B), cr0_set=CR0_NE)
    assert vec == MF and m.cpu.eip == CODE + len(code) - 3
