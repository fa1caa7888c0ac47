"""A device event scheduled from inside a translated unit (a store to the
local APIC's timer) is taken at the same instruction as when the code is
interpreted: whatever moves ``cpu.stop_at`` closer also raises
``cpu.attention``, the one thing a unit checks between its blocks."""

from __future__ import annotations

import struct

import pytest

from tvmm.machine.boot_state import enter_flat32
from tvmm.machine.errors import StopKind
from tvmm.machine.pc import PC

APIC = 0xFEE00000
GDT, IDT, CODE, HANDLER, OUT = 0x2000, 0x3000, 0x1000, 0x4000, 0x5000


def poke(addr, value):                            # mov dword [addr], value
    return b"\xc7\x05" + struct.pack("<II", addr, value)


def program(ticks: int) -> bytes:
    loop = (b"\x46"                                            # L: inc esi
            + b"\x81\xf9" + struct.pack("<I", 150)             # cmp ecx, 150
            + b"\x75\x0a"                                      # jne skip
            + poke(APIC + 0x380, ticks)                        # arm the one-shot timer
            + b"\x49")                                         # skip: dec ecx
    loop += b"\x75" + bytes([(-(len(loop) + 2)) & 0xFF])       # jnz L
    return (poke(APIC + 0xF0, 0x1FF)                           # SVR: enabled
            + poke(APIC + 0x3E0, 0xB)                          # divide by 1: a tick per instruction
            + poke(APIC + 0x320, 0x20)                         # LVT timer: vector 0x20, one-shot
            + b"\xfb"                                          # sti
            + b"\xb9" + struct.pack("<I", 300)                 # mov ecx, 300
            + loop + b"\xf4")


def run(translate: bool, ticks: int):
    pc = PC(4 << 20)
    cpu = pc.cpu
    pc.mem.write_bytes(GDT, struct.pack("<QQQ", 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF))
    pc.mem.write_bytes(IDT + 0x20 * 8, struct.pack("<HHHH", HANDLER & 0xFFFF, 0x08, 0x8E00, HANDLER >> 16))
    pc.mem.write_bytes(HANDLER, b"\x0f\x31" + b"\xa3" + struct.pack("<I", OUT)         # rdtsc; mov [OUT], eax
                       + b"\x89\x35" + struct.pack("<I", OUT + 4) + b"\xf4")          # mov [OUT+4], esi; hlt
    pc.mem.write_bytes(CODE, program(ticks))
    enter_flat32(cpu, CODE, esp=0x8000)
    cpu.gdtr_base, cpu.gdtr_limit = GDT, 23
    cpu.idtr_base, cpu.idtr_limit = IDT, 0x20 * 8 + 7
    cpu.translate_blocks = translate
    cpu.hot = 1
    stop = pc.run(100_000)
    assert stop.kind == StopKind.HALTED, stop
    return pc.mem.read(OUT, 4), pc.mem.read(OUT + 4, 4), any(b.fn is not None for b in cpu.blocks.values())


@pytest.mark.parametrize("ticks", [1, 5, 37, 101])
def test_timer_armed_inside_a_unit_fires_at_the_same_instruction(ticks):
    tsc_i, esi_i, translated_i = run(False, ticks)
    tsc_t, esi_t, translated_t = run(True, ticks)
    assert not translated_i and translated_t
    assert 150 < esi_i < 300                       # taken inside the loop, after the store
    assert (tsc_t, esi_t) == (tsc_i, esi_i)
