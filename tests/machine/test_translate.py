"""Translated blocks must be indistinguishable from interpreted ones.

Each program runs twice — block translation off and on (hot at once) — and
the architectural outcome must match, including where a fault interrupts a
translated block and where code modifies itself inside a hot loop.
"""

from __future__ import annotations

import struct

from tvmm.machine import StopKind
from tvmm.machine.consts import CR0_PG

from .harness import Machine, gate_desc, seg_desc

CODE = 0x1000


def _run(code: bytes, translated: bool, regs=None, setup=None, budget=200_000):
    m = Machine()
    m.write(CODE, code)
    m.flat32(CODE, esp=0x9000)
    m.cpu.translate_blocks = translated
    m.cpu.hot = 1                      # translate on the first execution
    for i, v in (regs or {}).items():
        m.cpu.regs[i] = v
    if setup:
        setup(m)
    stop = m.run(budget)
    state = (list(m.cpu.regs), m.cpu.eip, m.cpu.get_eflags(), m.cpu.icount, stop.kind,
             m.read(0x2000, 0x100))
    return state, m


def both(code, **kw):
    a, _ = _run(code, False, **kw)
    b, m = _run(code, True, **kw)
    assert a == b
    return b, m


def test_loop_with_memory_and_flags():
    # 1: mov eax,[esi] ; add eax,ecx ; xor eax,0x5a5a5a5a ; mov [esi],eax ;
    #    add esi,4 ; and esi,0xff ; or esi,0x2000 ; dec ecx ; jnz 1b ; hlt
    code = bytes.fromhex("8b0601c8355a5a5a5a890683c60481e6ff00000081ce002000004975e4f4")
    (regs, eip, flags, icount, kind, data), m = both(code, regs={1: 1000, 6: 0x2000})
    assert kind == StopKind.HALTED and regs[1] == 0
    assert any(b.fn is not None for b in m.cpu.blocks.values())   # it really was translated


def test_budget_stops_inside_a_translated_loop_at_the_exact_count():
    code = bytes.fromhex("83c0014975faf4")       # 1: add eax,1 ; dec ecx ; jnz 1b ; hlt
    for budget in (1, 2, 3, 100, 301):
        a, _ = _run(code, False, regs={1: 1000}, budget=budget)
        b, _ = _run(code, True, regs={1: 1000}, budget=budget)
        assert a == b and a[3] == budget


def test_self_modifying_hot_loop():
    # 1: mov eax, imm32 (at CODE+1) ; inc dword [CODE+1] ; add ebx, eax ; dec ecx ; jnz 1b ; hlt
    code = b"\xb8\x00\x00\x00\x00" + b"\xff\x05" + struct.pack("<I", CODE + 1) + b"\x01\xc3\x49\x75\xf0\xf4"
    (regs, *_), _m = both(code, regs={1: 100})
    assert regs[3] == sum(range(100))


def test_fault_in_the_middle_of_a_translated_block_is_precise():
    # A loop whose store eventually hits an unmapped page: 1: mov [edi],eax ; add edi,4 ; inc eax ; jmp 1b
    code = bytes.fromhex("89078d7f0440ebf8")

    def setup(m):
        pd, pt = 0x20000, 0x21000
        m.w32(pd, pt | 3)
        for i in range(1024):
            m.w32(pt + 4 * i, (i << 12) | 3 if i < 0x30 else 0)
        gdt, idt = 0x22000, 0x23000
        m.write(gdt, seg_desc(0, 0, 0) + seg_desc(0, 0xFFFFFFFF, 0x9B) + seg_desc(0, 0xFFFFFFFF, 0x93))
        m.write(idt + 14 * 8, gate_desc(0x08, 0x3000))
        m.write(0x3000, b"\xf4")
        m.cpu.gdtr_base, m.cpu.gdtr_limit = gdt, 23
        m.cpu.idtr_base, m.cpu.idtr_limit = idt, 0x7FF
        m.cpu.set_cr3(pd)
        m.cpu.set_cr0(m.cpu.cr0 | CR0_PG)
    (regs, eip, flags, icount, kind, _), m = both(code, regs={7: 0x2F000}, setup=setup)
    assert kind == StopKind.HALTED
    assert m.cpu.cr2 == 0x30000
    # #PF frame: error code 2 (write, not present), EIP of the faulting store
    esp = regs[4]
    assert (m.r32(esp), m.r32(esp + 4)) == (2, CODE)
    assert regs[7] == 0x30000 and regs[0] == 0x400


def test_debugger_breakpoints_slow_down_only_their_own_page():
    # a hot loop at 0x1000 (inc eax; inc ebx; dec ecx; jnz): a breakpoint on
    # another page leaves it translated; one inside it stops it exactly there
    m = Machine()
    loop = bytes([0x40, 0x43, 0x49, 0x75, 0xFB]) + b"\xf4"
    m.write(0x1000, loop)
    m.flat32(0x1000)
    m.cpu.regs[1] = 1000
    m.cpu.breakpoints.add(0x5000)
    m.cpu._refresh()
    m.run(2000)
    blocks = [b for b in m.cpu.blocks.values() if b.insns and b.insns[0].eip == 0x1000]
    assert blocks and blocks[0].fn is not None                   # translated despite the breakpoint
    m.flat32(0x1000)
    m.cpu.regs[1] = 1000
    m.cpu.regs[3] = 0
    m.cpu.breakpoints.add(0x1001)                                 # on "inc ebx", inside the hot block
    m.cpu._refresh()
    stop = m.run(100_000)
    assert stop.kind == StopKind.BREAKPOINT and m.cpu.eip == 0x1001 and m.cpu.regs[3] == 0
    m.cpu.skip_bp_once = True
    stop = m.run(100_000)
    assert stop.kind == StopKind.BREAKPOINT and m.cpu.eip == 0x1001 and m.cpu.regs[3] == 1


def test_conditional_branches_inside_a_trace_leave_by_side_exits():
    # 1: test ecx,1 ; jz 2f ; add eax,3 ; jmp 3f ; 2: add ebx,5 ; 3: dec ecx ; jnz 1b ; hlt
    code = bytes.fromhex("f7c101000000" "7405" "83c003" "eb03" "83c305" "49" "75ed" "f4")
    for n in (1, 2, 7, 100, 1001):
        (regs, *_), m = both(code, regs={1: n})
        assert regs[0] == 3 * ((n + 1) // 2) and regs[3] == 5 * (n // 2)
    units = [b for b in m.cpu.blocks.values() if b.fn is not None]
    assert any(len(b.trace) > len(b.insns) for b in units)    # a unit went on past a Jcc


def test_translation_backs_off_on_a_page_whose_code_stores_keep_dropping(monkeypatch):
    # a hot loop (inc eax ; dec ecx ; jnz ; hlt) whose page also holds data
    # written between runs, as small user programs have: each write drops the
    # translation, and each time the loop must run twice as often to be
    # translated again, so 30 rounds of 1000 iterations compile it far fewer times
    import tvmm.machine.cpu as cpu_mod
    code = bytes([0x40, 0x49, 0x75, 0xFC, 0xF4])
    calls = []
    real = cpu_mod.translate_block
    monkeypatch.setattr(cpu_mod, "translate_block", lambda *a: calls.append(1) or real(*a))
    m = Machine()
    m.write(CODE, code)
    for r in range(30):
        m.flat32(CODE, esp=0x9000)
        m.cpu.regs[0], m.cpu.regs[1] = 0, 1000
        m.cpu.halted = False
        m.cpu._refresh()
        assert m.run(100_000).kind == StopKind.HALTED and m.cpu.regs[0] == 1000
        m.cpu.wr32(CODE + 0x800, r)                              # data on the code's page
    assert 5 <= len(calls) <= 10
    assert m.cpu._thrash[CODE >> 12] == len(calls)


def test_pushf_after_an_inlined_flag_setter_pushes_the_exact_flags():
    # PUSHF right after an inlined 32-bit ADD/SUB/CMP/logic computes the six
    # arithmetic flags from that instruction's operands (xv6's pushcli and
    # popcli do SUB then PUSHF); the pushed image must be what the
    # interpreter pushes, for operands that set each flag both ways
    ops = {"ADD": "01d8", "SUB": "29d8", "CMP": "39d8", "AND": "21d8", "OR": "09d8", "XOR": "31d8", "TEST": "85d8"}
    values = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x12345678, 0x0F0F0F10)
    for mnem, hexop in ops.items():
        code = bytes.fromhex(hexop + "9c" + "5a" + "f4")     # op eax,ebx ; pushfd ; pop edx ; hlt
        for a in values:
            for b in values[::3]:
                (regs, *_), m = both(code, regs={0: a, 3: b})
                assert regs[2] & 0x2 == 0x2, mnem                  # bit 1 always set
    units = [b.fn.source for b in m.cpu.blocks.values() if b.fn is not None]
    assert any("parity" in src for src in units)                   # the inline path ran


def test_cli_in_line_clears_if_in_ring_0_and_faults_above_iopl():
    # pushfd ; cli ; pushfd ; pop ebx ; pop eax ; cli ; hlt — IF set at entry:
    # CLI clears it (the pushed images differ in IF only); with CPL 3 > IOPL
    # the first CLI is #GP(0), precise: EIP at it, nothing after it ran.
    code = bytes.fromhex("9cfa9c5b58faf4")

    def ring0_if(m):
        m.cpu.eflags |= 0x200

    (regs, eip, flags, icount, kind, _), _m = both(code, setup=ring0_if)
    assert regs[0] & 0x200 and not regs[3] & 0x200 and not flags & 0x200
    assert kind == StopKind.HALTED

    def ring3_iopl0(m):
        m.cpu.eflags |= 0x200
        m.cpu.cpl = 3                          # CPL 3 with IOPL 0: CLI is privileged

    a, _ = _run(code, False, setup=ring3_iopl0, budget=3)
    b, m = _run(code, True, setup=ring3_iopl0, budget=3)
    assert a == b
    assert any(blk.fn is not None for blk in m.cpu.blocks.values())
    regs, eip, flags, icount, kind, _ = b
    assert (eip, icount) == (CODE + 1, 1) and flags & 0x200   # #GP at CLI (no IDT here: shutdown)
    assert kind == StopKind.SHUTDOWN
