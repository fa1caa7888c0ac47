"""The processor's privileged operations go through ``cpu.ops`` (native.py).

A bare CPU built with a recording ops object sees every CR read/write,
INVLPG, HLT, CPUID, MSR access, REP INS/OUTS and exception of a small
program, in program order, and what it returns is what the program gets.
"""

from __future__ import annotations

import pathlib
import re
import struct

from tvmm.machine import CPU, PhysicalMemory
from tvmm.machine.native import NATIVE_OPS, NativeOps

from .harness import Machine

CODE = 0x1000
EAX = 0


def imm(op: int, v: int) -> bytes:
    return bytes([op]) + struct.pack("<I", v)


class Recorder(NativeOps):
    """The native behaviour, with every call logged."""

    def __init__(self):
        self.log: list[tuple] = []

    def cr_read(self, cpu, n):
        v = super().cr_read(cpu, n)
        self.log.append(("cr_read", n, v))
        return v

    def cr_write(self, cpu, n, value):
        self.log.append(("cr_write", n, value))
        super().cr_write(cpu, n, value)

    def invlpg(self, cpu, lin):
        self.log.append(("invlpg", lin))
        super().invlpg(cpu, lin)

    def hlt(self, cpu):
        self.log.append(("hlt",))
        super().hlt(cpu)

    def cpuid(self, cpu):
        leaf = cpu.regs[EAX]
        super().cpuid(cpu)
        self.log.append(("cpuid", leaf))

    def rdmsr(self, cpu, index, now):
        self.log.append(("rdmsr", index))
        return super().rdmsr(cpu, index, now)

    def wrmsr(self, cpu, index, value, now):
        self.log.append(("wrmsr", index, value))
        super().wrmsr(cpu, index, value, now)

    def io_string(self, cpu, port, size, out, count):
        self.log.append(("io_string", port, size, out, count))

    def io_string_done(self, cpu):
        self.log.append(("io_string_done",))

    def exception(self, cpu, fault):
        self.log.append(("exception", fault.vector))
        return fault


def machine(ops) -> Machine:
    m = Machine()
    m.cpu = CPU(m.mem, ops=ops)
    return m


def test_a_bare_cpu_is_native_by_default():
    assert CPU(PhysicalMemory(1 << 20)).ops is NATIVE_OPS


def test_a_custom_ops_object_sees_every_privileged_operation_in_order():
    ops = Recorder()
    m = machine(ops)
    code = (imm(0xB8, 0x2000) + b"\x0f\x22\xd8"               # mov eax, 0x2000; mov cr3, eax
            + b"\x0f\x01\x3d" + struct.pack("<I", 0x3000)       # invlpg [0x3000]
            + b"\x0f\x06"                                       # clts
            + b"\x0f\x01\xe0" + b"\x89\xc7"                     # smsw eax; mov edi, eax
            + b"\x0f\x22\xd0" + b"\x0f\x20\xd5"                 # mov cr2, eax; mov ebp, cr2 (not ops)
            + imm(0xB8, 0) + b"\x0f\xa2"                        # cpuid leaf 0
            + imm(0xB9, 0x174) + imm(0xB8, 0x08) + imm(0xBA, 0)  # SYSENTER_CS = 8
            + b"\x0f\x30" + imm(0xB8, 0) + b"\x0f\x32"          # wrmsr; mov eax, 0; rdmsr
            + imm(0xBE, 0x5000) + imm(0xB9, 3) + imm(0xBA, 0x80) + b"\xf3\x6e"   # rep outsb
            + b"\xf4")                                          # hlt
    m.write(CODE, code)
    m.flat32(CODE)
    cr0 = m.cpu.cr0
    m.run_to_hlt()
    assert ops.log == [
        ("cr_write", 3, 0x2000),
        ("invlpg", 0x3000),
        ("cr_read", 0, cr0), ("cr_write", 0, cr0),             # CLTS: TS was already clear
        ("cr_read", 0, cr0),                                   # SMSW
        ("cpuid", 0),
        ("wrmsr", 0x174, 0x08),
        ("rdmsr", 0x174),
        ("io_string", 0x80, 1, True, 3), ("io_string_done",),
        ("hlt",),
    ]
    r = m.cpu.regs
    assert m.cpu.cr3 == 0x2000 and r[7] == cr0 and r[5] == cr0 and m.cpu.cr2 == cr0
    assert r[EAX] == 0x08 and m.cpu.msr[0x174] == 0x08         # RDMSR read back what WRMSR wrote


def test_what_the_ops_object_answers_is_what_the_program_gets():
    class Odd(NativeOps):
        def cr_read(self, cpu, n):
            return 0x1234_5670 + n

        def cpuid(self, cpu):
            cpu.regs[:4] = [0xA, 0xC, 0xD, 0xB]

    m = machine(Odd())
    m.write(CODE, b"\x0f\x20\xe6" + b"\x0f\xa2" + b"\xf4")    # mov esi, cr4; cpuid; hlt
    m.flat32(CODE)
    m.run_to_hlt()
    assert m.cpu.regs[6] == 0x1234_5674 and m.cpu.regs[:4] == [0xA, 0xC, 0xD, 0xB]


def test_an_ops_object_may_resolve_an_exception_and_restart_the_instruction():
    """``exception`` returning None means "dealt with": the faulting
    instruction restarts (here the resolver replaced the UD2)."""
    class Resolver(Recorder):
        def exception(self, cpu, fault):
            super().exception(cpu, fault)
            m.write(CODE + 5, b"\x90\x90")                     # UD2 -> NOP NOP
            return None

    ops = Resolver()
    m = machine(ops)
    m.write(CODE, imm(0xB8, 7) + b"\x0f\x0b" + b"\xf4")        # mov eax, 7; ud2; hlt
    m.flat32(CODE)
    m.run_to_hlt()
    assert ops.log == [("exception", 6), ("hlt",)]
    assert m.cpu.regs[EAX] == 7


def test_no_instruction_handler_tests_for_guest_mode():
    root = pathlib.Path(__file__).resolve().parents[2] / "tvmm" / "machine"
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"\bvmx\s+is\s+(not\s+)?None|cpu\.vmx\b|self\.vmx\b", text), path
        assert not re.search(r"^\s*(from|import)\s+(tvmm\.monitor|\.\.monitor|\.\.\.monitor)", text, re.MULTILINE), path
