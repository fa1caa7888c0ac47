"""The CPython floor (tvmm/bench/floor.py) does the same work as tvmm: the
hand-written loops end in the same registers, memory and instruction count
as the CPU running the workload, so their speed bounds the same work."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tvmm.bench import REGS, floor, setup_tvmm
from tvmm.bench import workloads as W


def _tvmm(w: W.Workload, **regs):
    cpu = setup_tvmm(replace(w, regs={**w.regs, **regs}))
    cpu.run(10**8)
    assert cpu.halted
    return cpu


@pytest.mark.parametrize("ecx", [1, 4097, 12_345])
def test_the_int_loop_floor_ends_like_tvmm(ecx):
    cpu = _tvmm(W.INT_LOOP, ecx=ecx)
    regs, ram, insns, _ = floor.int_loop(ecx, W.BUF)
    assert insns == cpu.icount
    assert regs == {r: cpu.regs[REGS.index(r)] for r in regs}
    assert ram[W.BUF:W.BUF + 0x4000] == cpu.mem.read_bytes(W.BUF, 0x4000)


@pytest.mark.parametrize("ecx", [1, 7, 5000])
def test_the_call_ret_floor_ends_like_tvmm(ecx):
    cpu = _tvmm(W.CALL_RET, ecx=ecx)
    regs, ram, insns, _ = floor.call_ret(ecx)
    assert insns == cpu.icount
    assert regs == {r: cpu.regs[REGS.index(r)] for r in regs}
    assert ram[W.STACK_TOP - 64:W.STACK_TOP] == cpu.mem.read_bytes(W.STACK_TOP - 64, 64)


def test_only_workloads_with_a_floor_are_measured():
    assert floor.measure(W.MEMCPY.name) is None
    assert set(floor.FLOORS) == {W.INT_LOOP.name, W.CALL_RET.name}
