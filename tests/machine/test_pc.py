"""The assembled PC: devices wired to the CPU, virtual time, idle skipping."""

from __future__ import annotations

from pathlib import Path

from tvmm.machine.boot import multiboot as mb
from tvmm.machine.boot_state import enter_flat32
from tvmm.machine.errors import StopKind
from tvmm.machine.pc import PC

from .harness import gate_desc, seg_desc

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "build"

# PIC: ICW1-4 (vectors 0x20-0x27), unmask IRQ0; PIT channel 0 mode 2, divisor
# 1193 (1 kHz); sti; then hlt until the handler at +0x80 (inc [0x5000]; EOI;
# iretd) has counted 10 ticks; debug-exit with 3.
TIMER_CODE = bytes.fromhex(
    "b011e620b020e621b004e621b001e621b0fee621b034e643b0a9e640b004e640fbf4833d005000000a72f6"
    "b803000000e7f4f4".ljust(0x80 * 2, "0") + "ff0500500000b020e620cf")
CODE, GDT, IDT = 0x10000, 0x20000, 0x21000


def test_hello_sample_boots_on_the_pc():
    out = bytearray()
    pc = PC(32 << 20, on_console=out.append)
    mb.enter(pc.cpu, mb.load(pc.mem, str(SAMPLES / "hello.elf"), ""))
    stop = pc.run(10_000_000)
    assert stop.kind == StopKind.HALTED and pc.exit_status is None    # cli; hlt after kmain
    assert b"Hello from the hello sample kernel!" in out and b"memory: 32 MiB" in out
    assert pc.cga.text()[0].startswith("Hello from the hello sample kernel!")


def test_timer_interrupts_wake_a_halted_cpu_at_exact_virtual_times():
    pc = PC(4 << 20, ips=1_000_000)          # 1 M instructions per virtual second
    pc.mem.write_bytes(CODE, TIMER_CODE)
    pc.mem.write_bytes(GDT, seg_desc(0, 0, 0) + seg_desc(0, 0xFFFFFFFF, 0x9B) + seg_desc(0, 0xFFFFFFFF, 0x93))
    pc.mem.write_bytes(IDT + 0x20 * 8, gate_desc(0x08, CODE + 0x80))
    cpu = pc.cpu
    enter_flat32(cpu, CODE, esp=0x9000)
    cpu.gdtr_base, cpu.gdtr_limit = GDT, 23
    cpu.idtr_base, cpu.idtr_limit = IDT, 0x7FF
    stop = pc.run(1_000_000)
    assert stop.kind == StopKind.REQUEST and pc.exit_status == 7
    assert pc.mem.read(0x5000, 4) == 10
    # ~10 ms of virtual time passed at 1 kHz, almost all of it halted: the CPU
    # retired only a few hundred instructions, the rest was skipped idle time.
    assert 9_000 <= pc.now() <= 11_000
    assert cpu.icount < 500 and pc.idle > 8_000


def test_same_program_same_timeline():
    def once():
        pc = PC(4 << 20, ips=1_000_000)
        pc.mem.write_bytes(CODE, TIMER_CODE)
        pc.mem.write_bytes(GDT, seg_desc(0, 0, 0) + seg_desc(0, 0xFFFFFFFF, 0x9B) + seg_desc(0, 0xFFFFFFFF, 0x93))
        pc.mem.write_bytes(IDT + 0x20 * 8, gate_desc(0x08, CODE + 0x80))
        enter_flat32(pc.cpu, CODE, esp=0x9000)
        pc.cpu.gdtr_base, pc.cpu.gdtr_limit = GDT, 23
        pc.cpu.idtr_base, pc.cpu.idtr_limit = IDT, 0x7FF
        pc.run(1_000_000)
        return pc.now(), pc.cpu.icount, pc.idle, list(pc.cpu.regs)
    assert once() == once()


def test_com1_interrupts_reach_irq4_without_mcr_out2_as_on_qemu():
    # xv6 programs IER but leaves MCR = 0 and relies on receive interrupts
    from tvmm.machine.pc import PC
    pc = PC(8 << 20)
    pc.com1.port_write(0x3F9, 1, 0x01)              # IER: received data available
    pc.com1.port_write(0x3FC, 1, 0x00)              # MCR: OUT2 off
    pc.com1.feed(b"x")
    pc.clock.advance(pc.clock.now + 10_000_000)
    assert pc.irq[4].level
