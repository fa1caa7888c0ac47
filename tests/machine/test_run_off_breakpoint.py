"""Running off a breakpoint (``cpu.skip_bp_once``, set by every resume of a
debugger, the UI and the API) lets only the instruction at EIP through, and
only when a breakpoint is there: the first breakpoint reached after a resume
from anywhere else stops the processor, on whatever page it is (a function
that is the first code run on its page: ``break kmain`` from ``_start``)."""

from __future__ import annotations

from tvmm.machine import StopKind

from .harness import Machine, gate_desc, seg_desc

# 0x1000: inc eax ; jmp 0x2000      0x2000 (another page): inc ebx ; hlt
FIRST = bytes.fromhex("40e9fa0f0000")
SECOND = bytes.fromhex("43f4")


def _machine():
    m = Machine()
    m.write(0x1000, FIRST)
    m.write(0x2000, SECOND)
    m.flat32(0x1000, esp=0x9000)
    return m


def test_a_resume_from_no_breakpoint_stops_at_the_first_one_reached_on_another_page():
    m = _machine()
    m.cpu.breakpoints.add(0x2000)
    m.cpu._refresh()
    m.cpu.skip_bp_once = True                 # what a resume sets
    stop = m.run(1000)
    assert stop.kind == StopKind.BREAKPOINT and m.cpu.eip == 0x2000
    assert (m.cpu.regs[0], m.cpu.regs[3]) == (1, 0)
    m.cpu.skip_bp_once = True                 # resumed on the breakpoint: it runs off it
    stop = m.run(1000)
    assert stop.kind == StopKind.HALTED and m.cpu.regs[3] == 1


def test_an_interrupt_taken_before_the_breakpointed_instruction_keeps_both_breakpoints():
    # Stopped at the breakpoint at 0x2000, resumed with an interrupt pending:
    # the interrupt is taken first, so its handler's breakpoint (0x3000, the
    # first instruction on its page) stops it, and after the handler's IRET
    # the breakpoint at 0x2000 stops it again: its instruction never ran.
    m = _machine()
    gdt, idt = 0x22000, 0x23000
    m.write(gdt, seg_desc(0, 0, 0) + seg_desc(0, 0xFFFFFFFF, 0x9B) + seg_desc(0, 0xFFFFFFFF, 0x93))
    m.cpu.gdtr_base, m.cpu.gdtr_limit = gdt, 23
    m.write(idt + 0x40 * 8, gate_desc(0x08, 0x3000))
    m.cpu.idtr_base, m.cpu.idtr_limit = idt, 0x7FF
    m.write(0x3000, bytes.fromhex("41cf"))    # inc ecx ; iret
    m.cpu.breakpoints.update({0x2000, 0x3000})
    m.cpu._refresh()
    assert m.run(1000).kind == StopKind.BREAKPOINT and m.cpu.eip == 0x2000
    pending = [0x40]
    m.cpu.intr_ack = lambda: pending.pop() if pending else None
    m.cpu.eflags |= 0x200
    m.cpu.set_intr(True)
    m.cpu.skip_bp_once = True
    stop = m.run(1000)
    assert stop.kind == StopKind.BREAKPOINT and m.cpu.eip == 0x3000 and m.cpu.regs[1] == 0
    m.cpu.set_intr(False)
    m.cpu.skip_bp_once = True
    stop = m.run(1000)
    assert stop.kind == StopKind.BREAKPOINT and m.cpu.eip == 0x2000 and m.cpu.regs[1] == 1
    m.cpu.skip_bp_once = True
    assert m.run(1000).kind == StopKind.HALTED and m.cpu.regs[3] == 1
