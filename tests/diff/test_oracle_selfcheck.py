"""Hand-written snippets with known results, run on the oracle (unicorn) only.

These pin down the contract the differential tests rely on: register and flag
results, where EIP is left for faults (#DE, #UD, #BR: at the instruction) and
traps (INT3, INTO: after it), and real-mode 16-bit addressing.
"""

import struct

from .oracle import run_unicorn
from .snippet import CF, CODE_BASE, DATA_BASE, OF, PAGE, PF, SF, STACK_TOP, ZF, AF, Snippet


def _data(at: int, payload: bytes) -> bytes:
    page = bytearray(PAGE)
    page[at - DATA_BASE:at - DATA_BASE + len(payload)] = payload
    return bytes(page)


def test_add_eax_ebx_flags():
    # add eax, ebx: 0xFFFFFFFF + 1 = 0, carry out of bit 31 and bit 3
    out = run_unicorn(Snippet(32, bytes.fromhex("01d8"), {"eax": 0xFFFFFFFF, "ebx": 1}))
    assert out.exception is None
    assert out.regs["eax"] == 0 and out.regs["ebx"] == 1
    assert out.regs["eip"] == CODE_BASE + 2
    assert out.regs["eflags"] & (CF | PF | AF | ZF | SF | OF) == CF | PF | AF | ZF
    assert out.regs["eflags"] & 2


def test_add_signed_overflow():
    out = run_unicorn(Snippet(32, bytes.fromhex("01d8"), {"eax": 0x7FFFFFFF, "ebx": 1}))
    assert out.regs["eax"] == 0x80000000
    assert out.regs["eflags"] & (CF | ZF | SF | OF) == SF | OF


def test_div_by_zero_is_de_at_the_instruction():
    # nop; div ecx (ecx = 0)
    out = run_unicorn(Snippet(32, bytes.fromhex("90f7f1"), {"eax": 5, "edx": 0, "ecx": 0}))
    assert out.exception == 0
    assert out.regs["eip"] == CODE_BASE + 1
    assert out.regs["eax"] == 5 and out.regs["edx"] == 0


def test_div_quotient_overflow_is_de():
    # div cl with AX = 0x1000, CL = 2: quotient 0x800 does not fit in AL
    out = run_unicorn(Snippet(32, bytes.fromhex("f6f1"), {"eax": 0x1000, "ecx": 2}))
    assert out.exception == 0 and out.regs["eip"] == CODE_BASE and out.regs["eax"] == 0x1000


def test_idiv32_int_min_by_minus_one_is_de():
    # the oracle's work-around: unicorn would kill the host process with SIGFPE
    out = run_unicorn(Snippet(32, bytes.fromhex("f7f9"), {"eax": 0, "edx": 0x80000000, "ecx": 0xFFFFFFFF}))
    assert out.exception == 0 and out.regs["eip"] == CODE_BASE


def test_ud2_is_vector_6_at_its_eip():
    out = run_unicorn(Snippet(32, bytes.fromhex("90900f0b90"), {}))
    assert out.exception == 6
    assert out.regs["eip"] == CODE_BASE + 2


def test_int3_is_vector_3_with_eip_after():
    out = run_unicorn(Snippet(32, bytes.fromhex("90cc90"), {}))
    assert out.exception == 3
    assert out.regs["eip"] == CODE_BASE + 2


def test_into_traps_only_with_of():
    taken = run_unicorn(Snippet(32, bytes.fromhex("ce90"), {"eflags": 0x2 | OF}))
    assert taken.exception == 4 and taken.regs["eip"] == CODE_BASE + 1
    not_taken = run_unicorn(Snippet(32, bytes.fromhex("ce90"), {"eflags": 0x2}))
    assert not_taken.exception is None and not_taken.regs["eip"] == CODE_BASE + 2


def test_bound_out_of_range_is_br_at_the_instruction():
    # bound eax, [ebx] with bounds [10, 20]
    data = _data(DATA_BASE + 0x10, struct.pack("<ii", 10, 20))
    inside = run_unicorn(Snippet(32, bytes.fromhex("6203"), {"eax": 15, "ebx": DATA_BASE + 0x10}, data))
    assert inside.exception is None
    outside = run_unicorn(Snippet(32, bytes.fromhex("6203"), {"eax": 21, "ebx": DATA_BASE + 0x10}, data))
    assert outside.exception == 5 and outside.regs["eip"] == CODE_BASE


def test_real_mode_mov_ax_bx_si_disp8():
    # 16-bit real mode: mov ax, [bx+si+4]; the upper halves of EBX/ESI are ignored
    data = _data(DATA_BASE + 0x14, b"\x34\x12")
    out = run_unicorn(Snippet(16, bytes.fromhex("8b4004"),
                              {"eax": 0xDEAD0000, "ebx": 0xFFFF2000, "esi": 0x12340010}, data))
    assert out.exception is None
    assert out.regs["eax"] == 0xDEAD1234
    assert out.regs["eip"] == CODE_BASE + 3


def test_real_mode_push_uses_sp():
    # push ax in real mode writes at SS:SP-2 and leaves ESP's upper half alone
    out = run_unicorn(Snippet(16, bytes.fromhex("50"), {"eax": 0xBEEF, "esp": STACK_TOP}))
    assert out.regs["esp"] == STACK_TOP - 2
    assert out.stack[STACK_TOP - 2 - 0x3000:STACK_TOP - 0x3000] == b"\xef\xbe"


def test_unmapped_access_reports_page_fault_vector():
    out = run_unicorn(Snippet(32, bytes.fromhex("8b03"), {"ebx": 0x8000}))
    assert out.exception == 14 and out.regs["eip"] == CODE_BASE
