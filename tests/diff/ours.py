"""Run a Snippet on tvmm's CPU (the counterpart of oracle.run_unicorn)."""

from __future__ import annotations

from tvmm.machine import CPU, PhysicalMemory, Stop, StopKind
from tvmm.machine.boot_state import enter_flat32, enter_real
from tvmm.machine.consts import EFLAGS_FIXED

from .snippet import CODE_BASE, DATA_BASE, GPRS, MAX_STEPS, PAGE, STACK_BASE, STACK_TOP, Outcome, Snippet

_MEM_SIZE = 0x10000


def run_ours(snippet: Snippet) -> Outcome:
    """Run the snippet interpreted and again translated (every block compiled
    on first use); the two must agree exactly, and that outcome is returned."""
    interpreted = _run(snippet, translate=False)
    translated = _run(snippet, translate=True)
    if (interpreted.regs, interpreted.data, interpreted.stack, interpreted.exception, interpreted.extra["fpu"]) != \
            (translated.regs, translated.data, translated.stack, translated.exception, translated.extra["fpu"]):
        diff = {k: (hex(interpreted.regs[k]), hex(translated.regs[k]))
                for k in interpreted.regs if interpreted.regs[k] != translated.regs[k]}
        raise AssertionError(f"tvmm interpreted and translated runs differ: regs {diff}, "
                             f"exception {interpreted.exception} vs {translated.exception}, "
                             f"data equal {interpreted.data == translated.data}, "
                             f"stack equal {interpreted.stack == translated.stack}, code {snippet.code.hex()}")
    return translated


def _run(snippet: Snippet, translate: bool) -> Outcome:
    mem = PhysicalMemory(_MEM_SIZE)
    # A HLT after the code stops the run without single-stepping, so the
    # snippet runs through the same translated-block path as any guest.
    mem.write_bytes(CODE_BASE, snippet.code + b"\xf4")
    mem.write_bytes(DATA_BASE, snippet.data)
    cpu = CPU(mem)
    cpu.translate_blocks = translate
    cpu.hot = 1
    if snippet.mode == 32:
        enter_flat32(cpu, CODE_BASE)
    else:
        enter_real(cpu, 0, CODE_BASE)
    for i, name in enumerate(GPRS):
        cpu.regs[i] = snippet.regs.get(name, STACK_TOP if name == "esp" else 0) & 0xFFFFFFFF
    cpu.set_eflags(snippet.regs.get("eflags", EFLAGS_FIXED))
    end = CODE_BASE + len(snippet.code)
    caught: list[int] = []

    def intercept(vector, error_code, return_eip, soft, external):
        caught.append(vector)
        cpu.request_stop(Stop(StopKind.REQUEST, "exception"))
        return True

    cpu.intercept = intercept
    stop = cpu.run(MAX_STEPS)
    if stop.kind == StopKind.ERROR:
        raise AssertionError(f"tvmm internal error: {stop.detail}\n{stop.data.get('traceback', '')}")
    regs = {n: cpu.regs[i] for i, n in enumerate(GPRS)}
    regs["eip"] = end if (stop.kind == StopKind.HALTED and cpu.eip == end + 1) else cpu.eip
    regs["eflags"] = cpu.get_eflags()
    f = cpu.fpu
    fpu = {"regs": list(f.regs), "cw": f.cw, "sw": f.status(), "tag": f.tag_word()}
    return Outcome(regs=regs, data=mem.read_bytes(DATA_BASE, PAGE), stack=mem.read_bytes(STACK_BASE, PAGE),
                   exception=caught[0] if caught else None,
                   extra={"stop": str(stop), "icount": cpu.icount, "fpu": fpu})
