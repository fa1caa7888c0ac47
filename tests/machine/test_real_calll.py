"""Issue 15: ``calll``/``retl`` (66 E8 rel32 / 66 C3) in real mode, and
guest code that makes no forward progress.

- In 16-bit code an operand-size prefix makes CALL rel32 push the 32-bit
  EIP of the next instruction (four bytes: SP moves by 4), the target is
  (EIP + rel32) mod 2^32 and a target past the CS limit (0xFFFF) raises #GP
  before anything is pushed; RET with 66 pops four bytes, and a popped EIP
  past the limit raises #GP with SP unchanged (SDM vol. 2, CALL and RET).
  ``gcc -m16`` emits these for every call and return.  Compared with
  unicorn, and run hot (translated) in a loop.
- A handler whose first instruction faults again (its own #UD, or a fetch
  past a CS limit kept from protected mode) makes the processor take the
  same exception forever without retiring an instruction: no instruction
  budget would end it.  tvmm shuts the processor down after
  ``MAX_STALLED_EXCEPTIONS`` exceptions in a row (a triple fault's stop).
- Code that runs once through fresh memory (a guest gone wild in zero-filled
  RAM, which is what a real-mode fault does with tvmm's all-zero IVT) decodes
  a new block per few instructions: the block cache holds at most
  ``MAX_CACHED_INSNS`` decoded instructions, so memory stays bounded.
"""

from __future__ import annotations

import signal
import struct
from contextlib import contextmanager

import pytest

from tests.diff.snippet import STACK_TOP
from tests.machine.harness import Machine
from tests.machine.test_control import asm, d32, same_as_unicorn
from tvmm.machine import Stop, StopKind, segments
from tvmm.machine import cpu as cpu_mod
from tvmm.machine.consts import CS
from tvmm.machine.interrupts import MAX_STALLED_EXCEPTIONS

GP, UD = 13, 6
HLT = b"\xf4"


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) when the block takes longer."""
    def expired(*_):
        raise TimeoutError(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def catch(m: Machine) -> list:
    """Record exceptions instead of delivering them; the first one stops the run."""
    events = []

    def intercept(vector, error_code, return_eip, soft, external):
        events.append((vector, error_code))
        m.cpu.request_stop(Stop(StopKind.REQUEST, "exception"))
        return True

    m.cpu.intercept = intercept
    return events


# ===================================================== calll / retl in real mode
def test_calll_retl_vs_unicorn_forward_backward_and_ret_imm():
    code, _ = asm(0x1000,
                  b"\x66\xb8" + d32(1),                       # mov eax, 1
                  (b"\x66\xe8", "rel32", "f"),                # calll f (forward)
                  b"\x66\x6a\x07",                            # push dword 7
                  (b"\x66\xe8", "rel32", "g"),                # calll g (retl 4 drops the 7)
                  b"\xeb\x10",                                # jmp over f and g to the end
                  "f:", b"\x66\x83\xc0\x02", b"\x66\xc3",     # f: add eax, 2; retl
                  "g:", b"\x66\x83\xc0\x40", b"\x66\xc2\x04\x00",   # g: add eax, 0x40; retl 4
                  b"\x90" * 4)
    o = same_as_unicorn(16, code, label="calll/retl")
    assert o.regs["eax"] == 1 + 2 + 0x40 and o.regs["esp"] == STACK_TOP


def test_calll_pushes_the_32_bit_eip_and_retl_pops_it():
    m = Machine()
    # 0x1000: calll 0x2000 ; hlt            0x2000: hlt (inspect), then retl
    m.write(0x1000, b"\x66\xe8" + d32(0x2000 - 0x1006) + HLT)
    m.write(0x2000, HLT + b"\x66\xc3")
    m.real(0, 0x1000, ss=0, sp=0x7000)
    m.cpu.regs[4] = 0xABCD7000                   # the upper half of ESP is not SP's
    m.run_to_hlt(10)
    assert m.cpu.eip == 0x2001
    assert m.cpu.regs[4] == 0xABCD6FFC           # SP moved by 4, ESP's upper half kept
    assert m.r32(0x6FFC) == 0x1006               # the return EIP, zero-extended
    m.cpu.halted = False
    m.run_to_hlt(10)
    assert m.cpu.eip == 0x1007 and m.cpu.regs[4] == 0xABCD7000 and m.cpu.icount == 4


def test_calll_backward_wraps_mod_2_32_and_sp_wraps_at_64k():
    m = Machine()
    m.write(0x0F00, b"\x66\xc3")                                  # f: retl
    m.write(0x1000, b"\x66\xe8" + d32(0x0F00 - 0x1006) + HLT)     # rel32 = -0x106
    m.real(0, 0x1000, ss=0x2000, sp=0)            # first push at SS:FFFC
    m.run_to_hlt(10)
    assert m.cpu.eip == 0x1007 and m.cpu.regs[4] & 0xFFFF == 0
    assert m.r32(0x20000 + 0xFFFC) == 0x1006


def test_calll_past_the_cs_limit_is_gp_before_the_push():
    m = Machine()
    m.write(0x1000, b"\x66\xe8" + d32(0x10000 - 0x1006))
    m.real(0, 0x1000, sp=0x7000)
    events = catch(m)
    m.run(1)
    assert events == [(GP, 0)]
    assert m.cpu.eip == 0x1000 and m.cpu.regs[4] == 0x7000 and m.r32(0x6FFC) == 0


def test_retl_popping_an_eip_past_the_limit_is_gp_with_sp_kept():
    m = Machine()
    m.write(0x1000, b"\x66\x68" + d32(0x12345) + b"\x66\xc3")    # push dword 0x12345; retl
    m.real(0, 0x1000, sp=0x7000)
    events = catch(m)
    m.run(2)
    assert events == [(GP, 0)]
    assert m.cpu.eip == 0x1006 and m.cpu.regs[4] == 0x6FFC


@pytest.mark.parametrize("translate", [True, False])
def test_hot_calll_retl_loop_retires_every_instruction(translate):
    """gcc -m16 code in a loop: the block is translated after a few rounds."""
    m = Machine()
    code, _ = asm(0x1000,
                  b"\xb9" + struct.pack("<H", 500),           # mov cx, 500
                  "top:", (b"\x66\xe8", "rel32", "f"),        # calll f
                  b"\xe2\xf8",                                # loop top
                  HLT,
                  "f:", b"\x66\x40", b"\x66\xc3")             # f: inc eax; retl
    m.write(0x1000, code)
    m.real(0, 0x1000, sp=0x7000)
    m.cpu.translate_blocks = translate
    with deadline(60):
        m.run_to_hlt(10_000)
    assert m.cpu.regs[0] == 500 and m.cpu.regs[4] == 0x7000
    assert m.cpu.icount == 1 + 500 * 4 + 1


# ===================================================== no forward progress
def test_handler_that_faults_on_its_first_instruction_shuts_down():
    """IVT[6] points at a ud2: every #UD delivers another #UD, forever on
    hardware (the stack wraps in its 64 KiB segment), no instruction retiring."""
    m = Machine()
    m.w32(6 * 4, 0x00001000)                     # IVT[6] = 0000:1000
    m.write(0x1000, b"\x0f\x0b")                 # ud2
    m.real(0, 0x1000, ss=0x2000, sp=0x8000)
    with deadline(60):
        stop = m.run(1_000_000)
    assert stop.kind == StopKind.SHUTDOWN, stop
    assert "no forward progress" in stop.detail and "#UD" in stop.detail
    assert m.cpu.icount == 0


def test_fetch_past_a_kept_cs_limit_in_real_mode_shuts_down():
    """Back in real mode CS keeps the limit protected mode gave it; a #GP
    handler past that limit faults on its fetch, which is #GP again."""
    m = Machine()
    m.write(0x0800, b"\x66\xe8" + d32(0x20000))  # calll past the limit: #GP
    m.w32(GP * 4, 0x00002000)                    # IVT[13] = 0000:2000, past CS limit 0xFFF
    m.real(0, 0x0800, ss=0x3000, sp=0x8000)
    segments.set_cache(m.cpu, CS, 0, 0, 0x0FFF, 0x9B)
    with deadline(60):
        stop = m.run(1_000_000)
    assert stop.kind == StopKind.SHUTDOWN, stop
    assert "no forward progress" in stop.detail and "#GP" in stop.detail


def test_a_few_faults_in_a_row_are_not_a_livelock():
    """Many faults, each handler retiring instructions: no shutdown."""
    m = Machine()
    m.w32(6 * 4, 0x00001000)                     # IVT[6] -> 0000:1000: add sp, 6; ud2 again
    m.write(0x1000, b"\x83\xc4\x06" + b"\x0f\x0b")
    m.real(0, 0x1000, ss=0x2000, sp=0x8000)
    with deadline(60):
        stop = m.run(4 * MAX_STALLED_EXCEPTIONS)
    assert stop.kind == StopKind.BUDGET, stop


def test_block_cache_stays_bounded_on_fresh_code(monkeypatch):
    """addb %al,(%eax) through zero-filled memory, each block run once."""
    monkeypatch.setattr(cpu_mod, "MAX_CACHED_INSNS", 2048)
    m = Machine()
    m.flat32(0x100000)
    m.cpu.regs[0] = 0x10
    with deadline(120):
        stop = m.run(20_000)                     # ~10 times the bound
    assert stop.kind == StopKind.BUDGET and m.cpu.eip == 0x100000 + 2 * 20_000
    held = sum(len(b.insns) for b in m.cpu.blocks.values())
    assert held <= 2048 + cpu_mod.MAX_BLOCK
