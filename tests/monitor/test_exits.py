"""Virtualizing the computer: which operations exit, what the guest sees
back, and events reaching the guest's own handlers."""

from __future__ import annotations

import struct

from tvmm.monitor import events as ev

from .kit import Layout, X, boot


def _kinds(monitor, guest="g"):
    return monitor.log.by_kind(guest)


def test_port_io_exits_once_per_instruction_and_rep_outs_is_one_exit(tmp_path):
    msg = b"0123456789abcdef"
    code = (X.mov_edx(0x80) + X.mov_eax(0x42) + X.OUT_DX_AL             # POST code
            + b"\xbe" + struct.pack("<I", 0x5200) + b"\xb9" + struct.pack("<I", len(msg))  # esi, ecx
            + X.mov_edx(0x3F8) + b"\xf3\x6e" + X.HLT)                  # rep outsb to COM1
    monitor, g = boot(tmp_path, code)
    g.gmem.write_bytes(0x5200, msg)
    monitor.run(100_000)
    io = [e for e in monitor.log.recent("g", kinds={ev.EXIT_IO})]
    assert len(io) == 2, io
    assert "rep outs port 0x3f8 x16" in io[0].detail and "out 0x80/1 <- 0x42" in io[1].detail
    assert bytes(g.console) == msg                          # the whole string reached the UART


def test_cpuid_shows_the_hypervisor_bit_and_exits(tmp_path):
    code = X.mov_eax(1) + X.CPUID + b"\x89\xc8" + X.store_abs(0x5100) + X.HLT   # mov eax, ecx
    monitor, g = boot(tmp_path, code)
    monitor.run(10_000)
    assert g.gmem.read(0x5100, 4) >> 31 == 1
    assert _kinds(monitor)[ev.EXIT_CPUID] == 1


def test_control_register_reads_return_what_the_guest_wrote_not_the_real_values(tmp_path):
    code = (X.MOV_EAX_CR0 + X.store_abs(0x5100) + X.MOV_EAX_CR4 + X.store_abs(0x5104)
            + b"\x0f\x01\xe0" + b"\x66\xa3" + struct.pack("<I", 0x5108)   # smsw eax; mov [0x5108], ax
            + X.HLT)
    monitor, g = boot(tmp_path, code)
    monitor.run(10_000)
    cr0, cr4, msw = (g.gmem.read(0x5100, 4), g.gmem.read(0x5104, 4), g.gmem.read(0x5108, 2))
    assert cr0 & 0x80010000 == 0                            # no PG, no WP: the guest never set them
    assert g.vcpu.cr0 & 0x80010000 == 0x80010000            # ... which the processor really runs with
    assert cr4 == 0 and msw == cr0 & 0xFFFF


def test_hlt_exits_and_the_guest_sleeps_until_its_timer(tmp_path):
    # PIT channel 0 at ~1 kHz on IRQ0 through the 8259 (vector 0x20); count wakeups
    code = bytearray()
    code += X.mov_eax(0) + X.store_abs(0x5100)
    for port, val in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0x21, 0xFE),
                      (0x43, 0x34), (0x40, 0xA9), (0x40, 0x04)):
        code += X.mov_edx(port) + X.mov_eax(val) + X.OUT_DX_AL
    code += X.STI
    loop = len(code)
    code += X.HLT + b"\xa1" + struct.pack("<I", 0x5100) + b"\x83\xf8\x05"    # mov eax,[cnt]; cmp eax,5
    code += b"\x72" + bytes([(loop - (len(code) + 2)) & 0xFF]) + X.CLI + X.HLT
    monitor, g = boot(tmp_path, bytes(code))
    lay = Layout(g)
    lay.flat_gdt_idt()
    handler = 0x7000                                        # inc dword [cnt]; EOI; iret
    g.gmem.write_bytes(handler, b"\xff\x05" + struct.pack("<I", 0x5100) + b"\x50" + X.mov_edx(0x20)
                       + X.mov_eax(0x20) + X.OUT_DX_AL + b"\x58\xcf")
    lay.mem.write_bytes(0x2000 + 0x20 * 8, struct.pack("<HHHH", handler & 0xFFFF, 8, 0x8E00, handler >> 16))
    g.vcpu.idtr_limit = 0x20 * 8 + 7
    monitor.run(2_000_000)
    assert g.state == "halted" and g.gmem.read(0x5100, 4) == 5
    kinds = _kinds(monitor)
    assert kinds[ev.EXIT_HLT] == 6 and kinds[ev.IRQ_INJECT] == 5
    assert g.pc.idle > 0                                    # halted time was skipped, not executed
    assert g.icount < 2_000                                 # 5 timer periods cost ~hundreds of insns
    injected = monitor.log.recent("g", kinds={ev.IRQ_INJECT})
    assert all("vector 0x20" in e.detail for e in injected)


def test_local_apic_static_reads_are_served_without_an_exit_writes_exit(tmp_path):
    code = (X.load_abs(0xFEE00030) + X.store_abs(0x5100)           # version: virtual-APIC page
            + X.load_abs(0xFEE00020) + X.store_abs(0x5104)         # ID
            + X.load_abs(0xFEE00390) + X.store_abs(0x5108)         # timer current count: exits
            + X.mov_eax(0) + X.store_abs(0xFEE000B0)               # EOI: exits
            + X.HLT)
    monitor, g = boot(tmp_path, code)
    monitor.run(10_000)
    assert g.gmem.read(0x5100, 4) & 0xFF == 0x14
    mmio = monitor.log.recent("g", kinds={ev.EXIT_MMIO})
    assert len(mmio) == 2
    assert "0xfee00390" in mmio[1].detail and "write 0xfee000b0" in mmio[0].detail
    assert g.aperture.vapic_reads == 2


def test_guest_exceptions_and_system_calls_reach_the_guests_own_idt(tmp_path):
    code = b"\xcd\x30" + b"\x0f\x0b"                        # int 0x30 (a system call gate), then ud2
    monitor, g = boot(tmp_path, code)
    lay = Layout(g)
    lay.flat_gdt_idt()
    g.vcpu.idtr_limit = 0x30 * 8 + 7
    syscall = 0x7000                                        # mov [0x5200], 0x5C; iret
    g.gmem.write_bytes(syscall, b"\xc7\x05" + struct.pack("<II", 0x5200, 0x5C) + b"\xcf")
    g.gmem.write_bytes(0x2000 + 0x30 * 8, struct.pack("<HHHH", syscall & 0xFFFF, 8, 0xEE00, syscall >> 16))
    monitor.run(10_000)
    assert g.gmem.read(0x5200, 4) == 0x5C
    assert lay.result() == (0xEEEE, 0, 6)                   # #UD handled by the guest's handler
    kinds = _kinds(monitor)
    assert kinds[ev.GUEST_SOFTINT] == 1 and kinds[ev.GUEST_EXCEPTION] == 1


def test_an_interrupt_waits_for_the_guest_to_enable_interrupts(tmp_path):
    # the PIT fires while the guest runs with IF=0; it is injected only once
    # the guest executes STI (an interrupt window), then the handler runs
    code = bytearray()
    for port, val in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0x21, 0xFE),
                      (0x43, 0x34), (0x40, 0x10), (0x40, 0x00)):       # period 16 PIT clocks
        code += X.mov_edx(port) + X.mov_eax(val) + X.OUT_DX_AL
    code += b"\xb9" + struct.pack("<I", 20000) + b"\xe2\xfe"             # mov ecx, 20000; loop $
    code += X.STI + b"\x90" + X.CLI + X.HLT
    monitor, g = boot(tmp_path, bytes(code))
    lay = Layout(g)
    lay.flat_gdt_idt()
    handler = 0x7000                                         # count, EOI, iret
    g.gmem.write_bytes(handler, b"\xff\x05" + struct.pack("<I", 0x5100) + X.mov_edx(0x20)
                       + X.mov_eax(0x20) + X.OUT_DX_AL + b"\xcf")
    lay.mem.write_bytes(0x2000 + 0x20 * 8, struct.pack("<HHHH", handler & 0xFFFF, 8, 0x8E00, handler >> 16))
    g.vcpu.idtr_limit = 0x20 * 8 + 7
    monitor.run(200_000)
    assert g.gmem.read(0x5100, 4) == 1
    window = monitor.log.recent("g", kinds={ev.IRQ_WINDOW})
    assert len(window) == 1 and "vector 0x20" in window[0].detail
    waited = int(window[0].detail.split("waited ")[1].split()[0])
    assert waited > 10_000                                  # it sat through most of the loop


def test_stepping_a_halted_guest_stops_in_the_handler_that_wakes_it(tmp_path):
    code = bytearray()
    for port, val in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0x21, 0xFE),
                      (0x43, 0x34), (0x40, 0x00), (0x40, 0x10)):       # a slow PIT: 4096 clocks
        code += X.mov_edx(port) + X.mov_eax(val) + X.OUT_DX_AL
    code += X.STI + X.HLT + b"\xeb\xfd"                  # sti; L: hlt; jmp L
    monitor, g = boot(tmp_path, bytes(code))
    lay = Layout(g)
    lay.flat_gdt_idt()
    handler = 0x7000                                         # nops, EOI, iret
    g.gmem.write_bytes(handler, b"\x90" * 4 + b"\xb0\x20\xe6\x20" + b"\xcf")
    lay.mem.write_bytes(0x2000 + 0x20 * 8, struct.pack("<HHHH", handler & 0xFFFF, 8, 0x8E00, handler >> 16))
    g.vcpu.idtr_limit = 0x20 * 8 + 7
    for _ in range(10_000):
        monitor.run(1)
        if g.vcpu.halted and g.icount > 40:                  # asleep after the first interrupt
            break
    assert g.vcpu.halted
    g.pause()
    stop = g.step()
    assert stop.kind.value == "step" and g.state == "paused"
    assert g.vcpu.eip == handler + 1                        # delivered, and its first instruction ran


def test_the_vcpu_runs_with_the_monitors_ops_and_each_operation_is_an_exit(tmp_path):
    from tvmm.machine.native import NATIVE_OPS
    from tvmm.monitor.exits import VMX_OPS, VmxOps
    code = (b"\x0f\x06"                                         # clts
            + b"\x0f\x01\xf0"                                   # lmsw ax
            + b"\xb9" + struct.pack("<I", 0x174) + b"\x0f\x32"  # rdmsr SYSENTER_CS
            + X.mov_ebx(0x7000) + X.INVLPG_EBX + X.HLT)
    monitor, g = boot(tmp_path, code)
    assert g.vcpu.ops is VMX_OPS and isinstance(VMX_OPS, VmxOps)
    assert monitor.guests[0].vcpu.ops is not NATIVE_OPS
    monitor.run(10_000)
    kinds = [e.kind for e in monitor.log.recent("g", kinds={ev.EXIT_CR_READ, ev.EXIT_CR_WRITE,
                                                             ev.EXIT_MSR, ev.EXIT_INVLPG, ev.EXIT_HLT})]
    assert kinds[::-1] == [ev.EXIT_CR_READ, ev.EXIT_CR_WRITE,            # clts
                           ev.EXIT_CR_READ, ev.EXIT_CR_WRITE,            # lmsw
                           ev.EXIT_MSR, ev.EXIT_INVLPG, ev.EXIT_HLT], kinds
