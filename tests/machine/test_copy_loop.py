"""A compiler's copy loop (``1: movs ; cmp esi|edi, reg ; jne 1b``: xv6's
``memmove``) runs page-sized stretches of its iterations as one move in a
translated unit (``translate._copy_loop``).  Whatever the overlap, the pages,
the direction flag or the budget, the outcome must be the interpreter's,
element by element: registers, flags, memory, the instruction count, where
a budget stops it and where a fault does.
"""

from __future__ import annotations

import random

import pytest

from tvmm.machine import StopKind

from .harness import Machine
from .test_translate import CODE, _paged_below_0x30000

MOVSB_ESI_ECX = bytes.fromhex("a439ce75fbf4")        # 1: movsb ; cmp esi,ecx ; jne 1b ; hlt
MOVSD_EDI_EDX = bytes.fromhex("a539d775fbf4")        # 1: movsd ; cmp edi,edx ; jne 1b ; hlt
MOVSW_ECX_ESI = bytes.fromhex("66a539f175faf4")      # 1: movsw ; cmp ecx,esi ; jne 1b ; hlt
STD_MOVSB = bytes.fromhex("fda439ce75fbfcf4")        # std ; 1: movsb ; cmp esi,ecx ; jne 1b ; cld ; hlt

WINDOW = (0x4000, 0x8000)        # the memory compared: every case copies inside it


def _fill(m):
    m.write(WINDOW[0], bytes((i * 151 + 7) & 0xFF for i in range(WINDOW[1] - WINDOW[0])))


def _run(code, regs, translated, budget, setup=None):
    m = Machine()
    m.write(CODE, code)
    m.flat32(CODE, esp=0x3000)
    _fill(m)
    if setup:
        setup(m)
    m.cpu.translate_blocks = translated
    m.cpu.hot = 1
    for i, v in regs.items():
        m.cpu.regs[i] = v
    stop = m.run(budget)
    state = (list(m.cpu.regs), m.cpu.eip, m.cpu.get_eflags(), m.cpu.icount, stop.kind, m.cpu.cr2,
             m.read(WINDOW[0], WINDOW[1] - WINDOW[0]))
    return state, m


def _same(code, regs, budget=200_000, setup=None):
    a, _ = _run(code, regs, False, budget, setup)
    b, m = _run(code, regs, True, budget, setup)
    assert a[:6] == b[:6]
    assert a[6] == b[6]
    return b, m


CASES = {
    # 0x1001 bytes from an odd source to an odd destination: both cross pages
    "apart": (MOVSB_ESI_ECX, {6: 0x4801, 7: 0x6003, 1: 0x4801 + 0x1001}),
    # upward onto an overlapping range: the first three bytes repeat
    "up-overlap": (MOVSB_ESI_ECX, {6: 0x4800, 7: 0x4803, 1: 0x4800 + 0x1200}),
    # downward onto an overlapping range: a memmove
    "down-overlap": (MOVSB_ESI_ECX, {6: 0x4805, 7: 0x4800, 1: 0x4805 + 0x1200}),
    # dwords, ended by EDI; the source is not aligned
    "dwords": (MOVSD_EDI_EDX, {6: 0x4802, 7: 0x6000, 2: 0x6000 + 4 * 0x500}),
    # words, ECX compared first; the end is not a whole number of words away,
    # so the loop runs until the budget (ESI steps over it)
    "never-ends": (MOVSW_ECX_ESI, {6: 0x4000, 7: 0x6000, 1: 0x4801}),
    # DF = 1: downward, element by element
    "backward": (STD_MOVSB, {6: 0x5800, 7: 0x6800, 1: 0x5800 - 0x1100}),
    # the end is the next element: one iteration
    "one": (MOVSB_ESI_ECX, {6: 0x4800, 7: 0x6000, 1: 0x4801}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_copy_loop_ends_as_the_interpreter_does(name):
    code, regs = CASES[name]
    (out, eip, flags, icount, kind, _cr2, data), m = _same(code, regs, budget=30_000)
    units = [b.fn.source for b in m.cpu.blocks.values() if b.fn is not None]
    assert any("movs_bulk" in src for src in units)      # the bulk step is in the unit
    if name == "apart":
        assert kind == StopKind.HALTED and data[0x2003:0x3004] == data[0x801:0x1802]
    if name == "up-overlap":
        assert data[0x803:0x1A03] == (data[0x800:0x803] * 0x600)


@pytest.mark.parametrize("name", ["apart", "up-overlap", "dwords", "never-ends"])
def test_a_budget_stops_a_copy_loop_at_the_exact_instruction(name):
    code, regs = CASES[name]
    rng = random.Random(name)
    budgets = {1, 2, 3, 4, 5, 6, 7} | {rng.randrange(1, 13_000) for _ in range(40)}
    # around the source's and the destination's page ends
    for start in (regs[6], regs[7]):
        size = 4 if code is MOVSD_EDI_EDX else 2 if code is MOVSW_ECX_ESI else 1
        k = (0x1000 - (start & 0xFFF)) // size
        budgets |= {3 * k + d for d in range(-4, 5) if 3 * k + d > 0}
    for budget in sorted(budgets):
        (out, eip, flags, icount, kind, _cr2, _data), _m = _same(code, regs, budget=budget)
        if kind == StopKind.BUDGET:
            assert icount == budget


def test_a_copy_loop_onto_its_own_code_page_goes_element_by_element():
    # the destination shares the page with the loop's decoded code (no write
    # TLB entry there): every store takes the slow path, as interpreted
    (out, *_), m = _same(MOVSB_ESI_ECX, {6: 0x4800, 7: CODE + 0x100, 1: 0x4800 + 0x200})
    assert m.read(CODE + 0x100, 0x200) == m.read(0x4800, 0x200)
    assert m.read(CODE, 6) == MOVSB_ESI_ECX


def test_a_copy_loop_faults_on_the_first_unmapped_byte():
    # the source runs into the unmapped page at 0x30000: #PF with the MOVS's
    # EIP, ESI at the page, EDI as far as the copy went, CR2 = 0x30000
    regs = {6: 0x2F800, 7: 0x6000, 1: 0x30100}
    (out, eip, flags, icount, kind, cr2, data), m = _same(MOVSB_ESI_ECX, regs, setup=_paged_below_0x30000)
    assert kind == StopKind.HALTED and cr2 == 0x30000
    assert (out[6], out[7]) == (0x30000, 0x6800)
    assert (m.r32(out[4]), m.r32(out[4] + 4)) == (0, CODE)
    assert icount == 3 * 0x800 + 1            # the faulting MOVS does not count; the handler's HLT does


@pytest.mark.parametrize("watch", [(0x6A40, 1, "w"), (0x4C21, 1, "r")])
def test_a_watchpoint_inside_a_copy_stops_right_after_that_element(watch):
    # a watch set while the loop is hot, on a destination byte (a write
    # watch) or a source byte (a read watch) in the middle of a page: its
    # page leaves the TLB, the copy goes element by element there and stops
    # after the MOVS that touched the byte, as interpreted
    from tvmm.machine import debug
    regs = {6: 0x4801, 7: 0x6003, 1: 0x4801 + 0x1800}
    outs = []
    for translated in (False, True):
        m = Machine()
        m.write(CODE, MOVSB_ESI_ECX)
        m.flat32(CODE, esp=0x3000)
        _fill(m)
        m.cpu.translate_blocks = translated
        m.cpu.hot = 1
        for i, v in regs.items():
            m.cpu.regs[i] = v
        assert m.run(30).kind == StopKind.BUDGET
        m.cpu.watchpoints.append(watch)
        debug.update_watch_pages(m.cpu)
        stop = m.run(100_000)
        outs.append((stop.kind, m.cpu.eip, m.cpu.icount, list(m.cpu.regs),
                     m.read(WINDOW[0], WINDOW[1] - WINDOW[0])))
    assert outs[0] == outs[1]
    kind, eip, icount, out, _ = outs[1]
    assert kind == StopKind.WATCHPOINT and eip == CODE + 1
    assert (out[6] - 1, out[7] - 1)[watch[2] == "w"] == watch[0]
