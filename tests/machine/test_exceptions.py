"""Each exception delivered through a real IDT: vector, error code and the
frame the processor pushes (SDM vol. 3, 6.12 and the per-vector pages of
6.15).  Faults push the EIP of the faulting instruction; traps the EIP of the
next one.  Every handler is a HLT at its own address, so where the CPU stops
tells which vector was delivered.
"""

from __future__ import annotations

import struct

import pytest

from tvmm.machine import StopKind
from tvmm.machine.consts import TF

from .harness import Machine, gate_desc, seg_desc

CODE = 0x1000
GDT, IDT, HANDLERS = 0x20000, 0x21000, 0x30000
STACK = 0x9000


def handler_addr(vector: int) -> int:
    return HANDLERS + 16 * vector


def machine(code: bytes, extra_gdt: dict | None = None) -> Machine:
    m = Machine()
    gdt = {0x08: seg_desc(0, 0xFFFFFFFF, 0x9B), 0x10: seg_desc(0, 0xFFFFFFFF, 0x93),
           0x18: seg_desc(0x50000, 0xFFF, 0x13),           # data segment, not present
           0x20: seg_desc(0, 0x8FFF, 0x93, flags=0x4)}    # small 32-bit stack segment, byte granular
    gdt.update(extra_gdt or {})
    for sel, desc in gdt.items():
        m.write(GDT + sel, desc)
    for v in range(32):
        m.write(IDT + 8 * v, gate_desc(0x08, handler_addr(v)))
        m.write(handler_addr(v), b"\xf4")
    m.write(CODE, code)
    m.flat32(CODE, esp=STACK)
    cpu = m.cpu
    cpu.gdtr_base, cpu.gdtr_limit = GDT, 0x3F
    cpu.idtr_base, cpu.idtr_limit = IDT, 32 * 8 - 1
    return m


def delivered(m: Machine, vector: int, error_code, eip: int):
    stop = m.run(1000)
    cpu = m.cpu
    assert stop.kind == StopKind.HALTED
    assert cpu.eip == handler_addr(vector) + 1, f"handler of vector {(cpu.eip - 1 - HANDLERS) // 16} ran"
    words = [struct.unpack("<I", m.read(cpu.regs[4] + 4 * i, 4))[0] for i in range(4)]
    if error_code is None:
        assert words[:2] == [eip, 0x08]
        assert cpu.regs[4] == STACK - 12
    else:
        assert words[:3] == [error_code, eip, 0x08]
        assert cpu.regs[4] == STACK - 16


CASES = [
    # name, code, vector, error code, pushed EIP (offset from CODE)
    ("#DE div by zero", bytes.fromhex("31c9f7f1"), 0, None, 2),
    ("#BP int3 (trap)", bytes.fromhex("90cc90"), 3, None, 2),
    ("#OF into (trap)", bytes.fromhex("b8ffffff7f40ce90"), 4, None, 7),   # mov eax,0x7fffffff; inc eax; into
    # mov eax,5; mov dword [0x2000],12; mov dword [0x2004],0x30; bound eax,[0x2000]
    ("#BR bound", bytes.fromhex("b805000000" "c705002000000c000000" "c7050420000030000000" "620500200000"),
     5, None, 25),
    ("#UD ud2", bytes.fromhex("900f0b"), 6, None, 1),
    # mov eax,cr0; or eax,8 (TS); mov cr0,eax; fld1 -> #NM
    ("#NM x87", bytes.fromhex("0f20c0" "83c808" "0f22c0" "d9e8"), 7, None, 9),
    # CR0.NE; fninit; fldcw 0x37B (ZE unmasked, via the stack); fld1; fldz; fdivp; fwait -> #MF at the
    # fwait, no error code
    ("#MF x87", bytes.fromhex("0f20c0" "83c820" "0f22c0" "dbe3" "687b030000" "d92c24" "58" "d9e8" "d9ee" "def9" "9b"),
     16, None, 26),
    ("#NP segment not present", bytes.fromhex("b8180000008ed8"), 11, 0x18, 5),
    ("#GP selector past the GDT limit", bytes.fromhex("b8480000008ed8"), 13, 0x48, 5),
    ("#GP(0) access through a null segment", bytes.fromhex("31c08ee0640f0118"), 13, 0, 4),  # fs=0; lidt fs:[eax]
    # ss = small segment (limit 0x8fff); esp = 0x8000; mov eax, ss:[0x9000] -> #SS(0)
    ("#SS beyond the stack segment limit", bytes.fromhex("b8200000008ed0bc0080000036a100900000"), 12, 0, 12),
]


@pytest.mark.parametrize("name,code,vector,err,eip_off", CASES, ids=[c[0] for c in CASES])
def test_exception_vector_error_code_and_frame(name, code, vector, err, eip_off):
    m = machine(code)
    if vector == 12:
        # the frame goes to the new (small) stack: check it there
        stop = m.run(1000)
        assert stop.kind == StopKind.HALTED and m.cpu.eip == handler_addr(12) + 1
        sp = m.cpu.regs[4]
        assert [struct.unpack("<I", m.read(sp + 4 * i, 4))[0] for i in range(3)] == [0, CODE + eip_off, 0x08]
        return
    delivered(m, vector, err, CODE + eip_off)


def test_single_step_trap_reports_the_next_instruction():
    m = machine(bytes.fromhex("9090f4"))
    m.cpu.set_eflags(TF, TF)
    delivered(m, 1, None, CODE + 1)
    assert m.cpu.dr[6] & 0x4000                       # DR6.BS
    assert not m.cpu.get_eflags() & TF                # cleared for the handler
