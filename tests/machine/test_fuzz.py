"""Any byte sequence a guest executes must end in an architectural outcome.

Random code runs in real mode, 32-bit ring 0 and 32-bit ring 3 (with paging
on, so wild pointers fault).  Exceptions go to an intercept that records them
and resumes the guest at the next exception-free point, so one run exercises
many instructions.  The only failure is an ERROR stop: a Python exception
inside tvmm.
"""

from __future__ import annotations

import os

from hypothesis import given, settings, strategies as st

from tvmm.machine import Stop, StopKind, segments
from tvmm.machine.consts import CR0_PG

from .harness import Machine

CODE = 0x1000
EXAMPLES = 300 * int(os.environ.get("TVMM_FUZZ_EXAMPLES", "1"))


def _machine(code: bytes, mode: str) -> Machine:
    m = Machine(1 << 20)
    m.write(CODE, code)
    if mode == "real":
        m.real(0, CODE, sp=0x8000)
    else:
        m.flat32(CODE, esp=0x8000)
        pd, pt = 0x20000, 0x21000
        m.w32(pd, pt | 7)
        for i in range(0x30):
            m.w32(pt + 4 * i, (i << 12) | 7)
        m.cpu.set_cr3(pd)
        m.cpu.set_cr0(m.cpu.cr0 | CR0_PG)
        if mode == "ring3":
            for seg in range(6):
                segments.set_cache(m.cpu, seg, 0x1B if seg == 1 else 0x23, 0, 0xFFFFFFFF,
                                   0xC0FB if seg == 1 else 0xC0F3)
            m.cpu.set_cpl(3)
    seen = []

    def intercept(vector, err, eip, soft, external):
        seen.append(vector)
        m.cpu.request_stop(Stop(StopKind.REQUEST, f"vector {vector}"))
        return True

    m.cpu.intercept = intercept
    m.seen = seen
    return m


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(st.binary(min_size=1, max_size=48), st.sampled_from(["real", "ring0", "ring3"]))
def test_random_code_never_breaks_tvmm(code, mode):
    m = _machine(code + b"\xf4", mode)
    for _ in range(5):
        stop = m.run(200)
        assert stop.kind != StopKind.ERROR, stop.detail + "\n" + stop.data.get("traceback", "")
        if stop.kind != StopKind.REQUEST:
            break
        # skip the faulting instruction's first byte and go on
        m.cpu.eip = (m.cpu.eip + 1) & (0xFFFF if mode == "real" else 0xFFFFFFFF)
