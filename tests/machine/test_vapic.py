"""Virtual-APIC reads: a processor serves aligned 32-bit reads of the local
APIC's static registers (ID, version, TPR, LDR, DFR, SVR, ICR, LVT, timer
initial count and divide) from its APIC's ``vregs`` without the MMIO path,
and every write still reaches the APIC, which keeps ``vregs`` current."""

from __future__ import annotations

import struct

from tvmm.machine.boot_state import enter_flat32
from tvmm.machine.errors import StopKind
from tvmm.machine.pc import PC

APIC = 0xFEE00000
CODE, OUT = 0x1000, 0x5000


def load(addr):                                   # mov eax, [addr]
    return b"\xa1" + struct.pack("<I", addr)


def store(addr):                                  # mov [addr], eax
    return b"\xa3" + struct.pack("<I", addr)


def poke(addr, value):                            # mov dword [addr], value
    return b"\xc7\x05" + struct.pack("<II", addr, value)


def run(pc, code):
    pc.mem.write_bytes(CODE, code + b"\xf4")
    enter_flat32(pc.cpu, CODE, esp=0x8000)
    stop = pc.run(10_000)
    assert stop.kind == StopKind.HALTED, stop
    return [pc.mem.read(OUT + 4 * i, 4) for i in range(8)]


def test_static_reads_skip_the_mmio_path_and_see_every_write():
    pc = PC(4 << 20)
    seen = []
    lapic = pc.lapic
    real = lapic.mmio_read
    lapic.mmio_read = lambda off, size: seen.append(off) or real(off, size)
    out = run(pc, load(APIC + 0x30) + store(OUT)                  # version
              + poke(APIC + 0x80, 0x30)                            # TPR write: reaches the APIC
              + load(APIC + 0x80) + store(OUT + 4)
              + poke(APIC + 0x380, 1000)                           # timer initial count
              + load(APIC + 0x380) + store(OUT + 8)
              + load(APIC + 0x390) + store(OUT + 12)               # current count: not static
              + poke(APIC + 0xF0, 0x1FF)                           # SVR: enabled
              + poke(APIC + 0x320, 0x20)                           # LVT timer, unmasked
              + load(APIC + 0x320) + store(OUT + 16)
              + poke(APIC + 0xF0, 0x0FF)                           # software disable masks every LVT
              + load(APIC + 0x320) + store(OUT + 20))
    assert out[0] & 0xFF == 0x14 and out[1] == 0x30 and out[2] == 1000
    assert 0 < out[3] <= 1000                                     # counting down from 1000
    assert out[4] == 0x20 and out[5] == 0x10020
    assert lapic.tpr == 0x30
    # Only the first read (it finds the APIC page) and the current count reach the device.
    assert seen == [0x30, 0x390]
    assert pc.cpu.vapic_reads == 4


def test_each_processor_reads_its_own_apic_and_an_init_resets_what_it_reads():
    pc = PC(4 << 20, ncpus=2)
    ap = pc.cpus[1]
    pc.switch_to(1)
    assert [ap.rd32(APIC + 0x20) >> 24 for _ in range(2)] == [1, 1]
    ap.wr32(APIC + 0x20, 7 << 24)                                  # a new APIC ID
    assert ap.rd32(APIC + 0x20) == 7 << 24 and ap.vapic_reads == 2
    pc.switch_to(0)
    assert pc.cpu.rd32(APIC + 0x20) >> 24 == 0
    pc.cpu.wr32(APIC + 0x310, 7 << 24)
    pc.cpu.wr32(APIC + 0x300, 0x4500)                              # INIT to APIC 7: resets it
    pc.switch_to(1)
    assert ap.rd32(APIC + 0x20) >> 24 == 1


def test_a_tlb_flush_forgets_the_apic_page_and_narrow_reads_take_the_device_path():
    pc = PC(4 << 20)
    cpu = pc.cpu
    cpu.rd32(APIC + 0x20)
    cpu.rd32(APIC + 0x20)
    assert cpu.vapic_reads == 1
    cpu.flush_tlb(False)
    cpu.rd32(APIC + 0x20)                                          # walks again, through the device
    assert cpu.vapic_reads == 1
    assert cpu.rd8(APIC + 0x30) == 0x14 and cpu.rd16(APIC + 0x22) == 0
    assert cpu.vapic_reads == 1


def test_invlpg_forgets_the_apic_page_only_when_it_names_it():
    pc = PC(4 << 20)
    cpu = pc.cpu
    cpu.rd32(APIC + 0x20)
    cpu.invlpg(0x1000)
    cpu.rd32(APIC + 0x20)
    assert cpu.vapic_reads == 1
    cpu.invlpg(APIC + 0x20)
    cpu.rd32(APIC + 0x20)
    assert cpu.vapic_reads == 1


def test_translated_code_reads_static_registers_as_the_interpreter_does():
    # mov ebx, APIC ; mov ecx, 50 ; xor esi,esi ; xor edi,edi
    # 1: mov eax,[ebx+0x20] ; add esi,eax ; mov eax,[ebx+0x30] ; add esi,eax
    #    mov [ebx+0x80],ecx ; mov eax,[ebx+0x80] ; add edi,eax ; dec ecx ; jnz 1b ; hlt
    # (xv6's mycpu reads the ID through a pointer, in translated code)
    code = bytes.fromhex("bb0000e0feb93200000031f631ff8b432001c68b433001c6898b800000008b838000000001c7"
                         "4975e5f4")
    results = []
    for translated in (False, True):
        pc = PC(4 << 20)
        pc.cpu.translate_blocks = translated
        pc.cpu.hot = 1
        run(pc, code)
        results.append((list(pc.cpu.regs), pc.cpu.vapic_reads, pc.lapic.tpr))
        if translated:
            assert any(b.fn is not None for b in pc.cpu.blocks.values())
    assert results[0] == results[1]
    regs, reads, tpr = results[1]
    assert regs[6] == 50 * 0x50014 and regs[7] == sum(range(1, 51)) and tpr == 1
    assert reads == 3 * 50 - 1                     # the first read finds the page through the device
