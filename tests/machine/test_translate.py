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


def _run(code: bytes, translated: bool, regs=None, setup=None, budget=200_000, hot=1):
    m = Machine()
    m.write(CODE, code)
    m.flat32(CODE, esp=0x9000)
    m.cpu.translate_blocks = translated
    m.cpu.hot = hot                    # by default, translate on the first execution
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


def _paged_below_0x30000(m):
    """Identity paging for 0-0x2FFFF only; #PF goes to a HLT at 0x3000."""
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


def test_fault_in_the_middle_of_a_translated_block_is_precise():
    # A loop whose store eventually hits an unmapped page: 1: mov [edi],eax ; add edi,4 ; inc eax ; jmp 1b
    code = bytes.fromhex("89078d7f0440ebf8")
    (regs, eip, flags, icount, kind, _), m = both(code, regs={7: 0x2F000}, setup=_paged_below_0x30000)
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


def _pattern(m):
    m.write(0x2000, bytes((i * 37 + 11) & 0xFF for i in range(0x100)))


def _inline_string_units(m):
    return [b.fn.source for b in m.cpu.blocks.values() if b.fn is not None and "st = " in b.fn.source]


def test_string_instructions_without_rep_run_in_line_forward_and_backward():
    # 1: movsb ; movsw ; movsd ; lodsb ; add ebx,eax ; stosb ; dec ecx ; jnz 1b ; hlt
    fwd = bytes.fromhex("a466a5a5ac01c3aa4975f5f4")
    (regs, eip, flags, icount, kind, data), m = both(fwd, regs={1: 8, 6: 0x2000, 7: 0x2080}, setup=_pattern)
    assert kind == StopKind.HALTED and (regs[6], regs[7]) == (0x2040, 0x20C0)
    assert data[0x80:0x87] == data[0:7]                 # the first iteration's MOVS copied 7 bytes
    assert _inline_string_units(m)
    # std ; 1: movsb ; movsw ; movsd ; lodsb ; add ebx,eax ; stosd ; dec ecx ; jnz 1b ; cld ; hlt
    back = bytes.fromhex("fda466a5a5ac01c3ab4975f5fcf4")
    (regs, *_), m = both(back, regs={1: 6, 6: 0x207F, 7: 0x20FC}, setup=_pattern)
    assert (regs[6], regs[7]) == (0x207F - 6 * 8, 0x20FC - 6 * 11)
    assert _inline_string_units(m)


def test_movsb_copy_loop_as_compilers_write_memmove():
    # 1: movsb ; cmp esi,ecx ; jne 1b ; hlt  (a loop that is one translated unit)
    code = bytes.fromhex("a439ce75fbf4")
    (regs, eip, flags, icount, kind, data), m = both(code, regs={1: 0x2060, 6: 0x2000, 7: 0x2080},
                                                     setup=_pattern)
    assert data[0x80:0xE0] == data[0:0x60] and icount == 3 * 0x60 + 1
    assert _inline_string_units(m)


def test_inline_string_instructions_fault_precisely():
    # 1: movsd ; jmp 1b — the store reaches the unmapped page at 0x30000:
    # #PF with the MOVS's EIP, ESI/EDI not stepped, CR2 the store address
    (regs, eip, flags, icount, kind, _), m = both(bytes.fromhex("a5ebfd"), regs={6: 0x2000, 7: 0x2F000},
                                                  setup=_paged_below_0x30000)
    assert kind == StopKind.HALTED and m.cpu.cr2 == 0x30000
    assert (regs[6], regs[7]) == (0x3000, 0x30000)
    assert (m.r32(regs[4]), m.r32(regs[4] + 4)) == (2, CODE)
    assert _inline_string_units(m)
    # 1: lodsd ; add ebx,eax ; jmp 1b — the load does: error code 0 (read)
    (regs, *_), m = both(bytes.fromhex("ad01c3ebfb"), regs={6: 0x2F000}, setup=_paged_below_0x30000)
    assert m.cpu.cr2 == 0x30000 and regs[6] == 0x30000
    assert (m.r32(regs[4]), m.r32(regs[4] + 4)) == (0, CODE)


def test_inline_movs_into_its_own_code_takes_effect_at_the_next_instruction():
    # 1: mov eax,imm32 ; add ebx,eax ; movsb ; dec ecx ; jnz 1b ; hlt — EDI
    # walks over the MOV's immediate, so every iteration adds a new value
    code = bytes.fromhex("b80000000001c3a44975f5f4")
    (regs, *_), m = both(code, regs={1: 4, 6: 0x2000, 7: CODE + 1}, setup=_pattern)
    img = bytes((i * 37 + 11) & 0xFF for i in range(4))
    assert m.read(CODE + 1, 4) == img
    expect = sum(int.from_bytes(img[:k] + bytes(4 - k), "little") for k in range(4))
    assert regs[3] == expect


def test_movs_with_an_fs_source_is_not_in_line():
    # the FS override may name a segment with a base and limit: the handler
    # checks it (only ES, SS and DS are known flat in a flat unit)
    from tvmm.machine.translate import _plan
    from tvmm.machine.decoder import decode
    d = decode(bytes.fromhex("64a4"), 0, True)
    assert _plan(d, True)[0] == "handler"
    assert _plan(decode(bytes.fromhex("a4"), 0, True), True)[0] == "string"
    assert _plan(decode(bytes.fromhex("f3a4"), 0, True), True)[0] == "handler"     # REP: its own block


# An instruction that runs onto the next page (MOV EAX, imm32 at 0x1FFE, its
# last three bytes at 0x2000) in a hot loop: decoded once and cached under
# both frames (``CPU._new_block``), never stale.
_CROSS_HEAD = bytes.fromhex("b964000000e9f40f0000c70508100200036000000f013d002000008b3500200000"
                            "b964000000ba01000000e9ce0f0000")
_CROSS_TAIL = bytes.fromhex("c34975f685d20f84faeffffff4")   # add ebx,eax ; dec ecx ; jnz ; test ; jz ; hlt


def _count_builds(m):
    calls = []
    real = m.cpu._build_block

    def counted(lin, pa):
        calls.append(lin)
        return real(lin, pa)
    m.cpu._build_block = counted
    return calls


def test_an_instruction_across_a_page_boundary_is_decoded_once_and_follows_a_remap():
    # start: mov ecx,100 ; jmp loop
    # second: mov dword [PTE of 0x2000], 0x6003 ; invlpg [0x2000] ; mov esi,[0x2000] ;
    #         mov ecx,100 ; mov edx,1 ; jmp loop
    # (the load refills the TLB: the crossing instruction's lookup then hits it, mapped anew)
    # loop (0x1FFE): mov eax,imm32 ; add ebx,eax ; dec ecx ; jnz loop ; test edx,edx ; jz second ; hlt
    # Linear 0x2000 maps to frame 0x5000 (imm 0x11223344), then 0x6000 (imm 0x44556644).
    builds = {}

    def setup(m):
        m.write(CODE, _CROSS_HEAD)
        m.write(0x1FFE, b"\xb8\x44")
        m.write(0x5000, bytes.fromhex("33221101") + _CROSS_TAIL)
        m.write(0x6000, bytes.fromhex("66554401") + _CROSS_TAIL)
        _paged_below_0x30000(m)
        m.w32(0x21008, 0x5003)
        builds[m.cpu.translate_blocks] = _count_builds(m)

    (regs, eip, flags, icount, kind, _), m = both(b"", regs={2: 0, 3: 0}, setup=setup)
    assert kind == StopKind.HALTED
    assert regs[3] == (100 * 0x11223344 + 100 * 0x44556644) & 0xFFFFFFFF
    for calls in builds.values():
        assert calls.count(0x1FFE) <= 4            # once per mapping (and TLB refill), not per iteration
    from tvmm.machine.cpu import CROSS_SHIFT
    assert any(k >> CROSS_SHIFT for k in m.cpu.blocks)


def test_a_store_to_the_second_page_of_a_cached_crossing_instruction_drops_it():
    # start: mov ecx,50 ; jmp loop
    # loop (0x1FFE): mov eax,imm32 ; add ebx,eax ; inc byte [0x2000] ; dec ecx ; jnz loop ; hlt
    # the INC changes the immediate's second byte: every iteration adds a new value
    def setup(m):
        m.write(CODE, bytes.fromhex("b932000000e9f40f0000"))
        m.write(0x1FFE, bytes.fromhex("b844"))
        m.write(0x2000, bytes.fromhex("33221101c3fe05002000004975f0f4"))

    (regs, eip, flags, icount, kind, data), m = both(b"", regs={3: 0}, setup=setup)
    assert kind == StopKind.HALTED
    assert regs[3] == sum(0x11223344 + (i << 8) for i in range(50)) & 0xFFFFFFFF
    assert data[0] == 0x33 + 50


def test_a_breakpoint_on_a_page_joined_into_a_translated_unit_stops_there():
    # 0x1000: call f ; dec ecx ; jnz 0x1000 ; hlt      f (0x2000): inc eax ; ret
    # The unit at 0x1005 (dec, jnz, call, f's inc and ret) joins f's page.  A
    # breakpoint set on f afterwards must stop the guest at f, not be run
    # through: breakpoint pages are kept out of the TLB, which the unit's
    # join checks.
    m = Machine()
    m.write(0x1000, b"\xe8" + (0x2000 - 0x1005).to_bytes(4, "little", signed=True) + b"\x49\x75\xf8\xf4")
    m.write(0x2000, b"\x40\xc3")
    m.flat32(0x1000, esp=0x9000)
    m.cpu.hot = 1
    m.cpu.regs[1] = 100000
    assert m.run(2003).kind == StopKind.BUDGET and m.cpu.eip == 0x1005
    assert any(b.fn is not None and 0x2 in b.vpages for b in m.cpu.blocks.values())   # f is joined
    m.cpu.breakpoints.add(0x2000)
    m.cpu._refresh()
    stop = m.run(200)
    assert stop.kind == StopKind.BREAKPOINT and m.cpu.eip == 0x2000 and m.cpu.icount == 2006
    m.cpu.breakpoints.clear()
    m.cpu._refresh()
    assert m.run(100).kind == StopKind.BUDGET and m.cpu.regs[0] == 401 + 20


# Two units on two pages that end in indirect jumps to each other (linked
# across pages by the run loop, ``Block.xpage``):
#   0x1000: 1: inc eax ; cmp eax,50 ; jne 2f ; <change page 0x2000> ; 2: mov edx,0x2000 ; jmp edx
#   0x2000: <add to ebx> ; mov edx,0x1000 ; dec ecx ; jz 3f ; jmp edx ; 3: hlt
def _linked_pages(m):
    from tvmm.machine.translate import DEAD_XPAGE
    return [b for b in m.cpu.blocks.values() if b.xpage is not None and b.xpage != DEAD_XPAGE]


def test_a_link_to_another_page_is_not_followed_once_the_page_is_mapped_elsewhere():
    # at eax == 50: PTE of 0x2000 -> frame 0x6000 (add ebx,0x100 instead of
    # inc ebx), invlpg, and a load from 0x2000 that maps it again at once
    def setup(m):
        m.write(CODE, bytes.fromhex("4083f8327517c70508100200036000000f013d002000008b3500200000"
                                    "ba00200000ffe2"))
        m.write(0x5000, bytes.fromhex("43ba00100000497402ffe2f4"))
        m.write(0x6000, bytes.fromhex("81c300010000ba00100000497402ffe2f4"))
        _paged_below_0x30000(m)
        m.w32(0x21008, 0x5003)

    (regs, eip, flags, icount, kind, _), m = both(b"", regs={0: 0, 1: 100, 3: 0}, setup=setup)
    assert kind == StopKind.HALTED
    assert regs[3] == 49 + 51 * 0x100
    assert _linked_pages(m)


def test_a_link_to_another_page_is_not_followed_once_its_code_is_written():
    # at eax == 50: the ADD's immediate on the other page becomes 0x10
    def setup(m):
        m.write(CODE, bytes.fromhex("4083f8327507c6050220000010ba00200000ffe2"))
        m.write(0x2000, bytes.fromhex("83c301ba00100000497402ffe2f4"))

    (regs, eip, flags, icount, kind, data), m = both(b"", regs={0: 0, 1: 100, 3: 0}, setup=setup)
    assert kind == StopKind.HALTED
    assert regs[3] == 49 + 51 * 0x10
    assert _linked_pages(m)


def test_a_breakpoint_on_a_linked_page_stops_there():
    m = Machine()
    m.write(0x1000, bytes.fromhex("4083f8327507c6050220000010ba00200000ffe2"))
    m.write(0x2000, bytes.fromhex("83c301ba00100000497402ffe2f4"))
    m.flat32(0x1000, esp=0x9000)
    m.cpu.hot = 1
    m.cpu.regs[0], m.cpu.regs[1], m.cpu.regs[3] = 0, 1000, 0
    assert m.run(203).kind == StopKind.BUDGET
    assert _linked_pages(m)
    m.cpu.breakpoints.add(0x2000)
    m.cpu._refresh()
    stop = m.run(200)
    assert stop.kind == StopKind.BREAKPOINT and m.cpu.eip == 0x2000


def test_a_loop_entered_in_its_middle_loops_inside_its_unit():
    # jmp 2f ; 1: add eax,ecx ; dec ecx ; jz 3f ; 2: add ebx,eax ; test ecx,1 ; jmp 1b ; 3: hlt
    # The unit starting at 2 ends with the JZ whose fall-through is its own
    # start: it loops on the fall-through and leaves when the branch is taken.
    # (hot=2: the block at 1 is cached when the one at 2 is translated)
    code = bytes.fromhex("eb0501c849740a01c3f7c101000000ebf1f4")
    (regs, eip, flags, icount, kind, _), m = both(code, regs={0: 0, 1: 1000, 3: 0}, hot=2)
    assert kind == StopKind.HALTED and regs[1] == 0
    units = [b.fn.source for b in m.cpu.blocks.values() if b.fn is not None]
    assert any("while True:" in src and "if not (" in src for src in units)
    for budget in (1, 7, 8, 9, 100, 2001, 4000):        # stops at the exact instruction
        a, _ = _run(code, False, regs={0: 0, 1: 1000, 3: 0}, budget=budget, hot=2)
        b, _ = _run(code, True, regs={0: 0, 1: 1000, 3: 0}, budget=budget, hot=2)
        assert a == b and a[3] == min(budget, 1 + 6 * 1000 - 2)


def test_a_branch_back_to_the_start_inside_a_unit_loops_there():
    # jmp F ; S: add eax,ecx ; dec ecx ; jnz S ; F: inc edi ; cmp edi,40 ; jb W ; hlt
    # W: mov ecx,edi ; shr ecx,3 ; inc ecx ; jmp S
    # F has run as often as S when S is translated (hot=2), so S's unit
    # follows the JNZ's fall-through into F and W: the JNZ back to S is a
    # branch inside the unit to its start, which loops in the function
    # (a ``continue``) as the final JMP does, and stops at the exact count.
    code = bytes.fromhex("eb0501c84975fb4783ff287201f489f9c1e90341ebec")
    (regs, eip, flags, icount, kind, _), m = both(code, hot=2)
    assert kind == StopKind.HALTED and regs[7] == 40 and icount == 635
    unit = next(b.fn.source for b in m.cpu.blocks.values() if b.fn is not None and b.insns[0].eip == CODE + 2)
    assert "while True:" in unit and unit.count("continue") == 2
    for budget in range(1, icount):                 # every stop inside the inner loop
        a, _ = _run(code, False, budget=budget, hot=2)
        b, _ = _run(code, True, budget=budget, hot=2)
        assert a == b and a[3] == budget


def test_a_rep_string_unit_hands_its_successor_to_the_run_loop():
    # 1: push ecx ; mov ecx,16 ; mov eax,ebx ; rep stosd ; sub edi,64 ; inc ebx ;
    #    pop ecx ; dec ecx ; jnz 1b ; hlt — the REP unit is linked to the next
    code = bytes.fromhex("bf00200000b94000000051b91000000089d8f3ab83ef4043594975eef4")
    (regs, eip, flags, icount, kind, data), m = both(code, regs={3: 0})
    assert kind == StopKind.HALTED and data[:64] == (63).to_bytes(4, "little") * 16
    rep = [b for b in m.cpu.blocks.values() if b.fn is not None and b.insns[0].mnem == "STOS"]
    assert rep and rep[0].links


def test_sti_in_line_takes_a_pending_interrupt_after_its_shadow_only():
    # 1: cli ; inc eax ; sti ; inc ebx ; inc ecx ; dec edx ; jnz 1b ; hlt
    # An interrupt line held high whose controller answers from instruction
    # ``ready`` on: taken where IF is 1, never between STI and INC EBX (the
    # shadow), at the same instruction translated or not.
    code = bytes.fromhex("fa40fb43414a75f8f4")
    for ready in range(0, 60, 3):
        outcomes = []
        for translated in (False, True):
            m = Machine()
            m.write(CODE, code)
            m.flat32(CODE, esp=0x9000)
            m.cpu.translate_blocks = translated
            m.cpu.hot = 2                  # every block of the loop cached when it is translated
            m.cpu.regs[2] = 100
            taken = []

            def ack(m=m):
                return 0x40 if m.cpu.icount >= ready else None

            def intercept(vector, err, eip, soft, external, m=m, taken=taken):
                taken.append((vector, eip, m.cpu.icount))
                m.cpu.halted = True
                m.cpu.attention = True
                return True

            m.cpu.intr_ack = ack
            m.cpu.intercept = intercept
            m.cpu.set_intr(True)
            m.run(2000)
            outcomes.append((taken, list(m.cpu.regs), m.cpu.icount))
            if translated:
                units = [b.fn.source for b in m.cpu.blocks.values() if b.fn is not None]
        assert outcomes[0] == outcomes[1], ready
        taken = outcomes[1][0]
        assert taken and taken[0][1] != CODE + 3               # never inside the shadow
    assert any("cpu.eflags |= 0x200" in src for src in units)   # STI was in line


def test_a_loop_that_calls_loops_on_its_return_when_entered_after_the_call():
    # push ecx ; jmp 2f ; 1: push ecx ; call f ; 2: pop ecx ; dec ecx ; jnz 1b ; hlt
    # f: xor edx,edx ; cmp ecx,7 ; sete dl ; add [esp],edx ; lea eax,[eax+eax*2] ; add ebx,eax ; ret
    # The unit starting at 2 (entered there first) ends with f's RET back to
    # 2: it loops on that return.  When ECX is 7, f returns one byte further
    # (past the POP): the popped address differs and the unit leaves there.
    code = bytes.fromhex("51eb0651e805000000594975f6f431d283f9070f94c20114248d044001c3c3")
    regs = {0: 1, 1: 300, 3: 0}
    (out, eip, flags, icount, kind, _), m = both(code, regs=regs, hot=2)
    assert kind == StopKind.HALTED and out[1] == 0
    units = [b.fn.source for b in m.cpu.blocks.values() if b.fn is not None]
    assert any("while True:" in src and "if v == 0x1009:" in src for src in units)
    for budget in (1, 5, 11, 12, 13, 500, 1500, 2103):       # stops at the exact instruction
        a, _ = _run(code, False, regs=regs, budget=budget, hot=2)
        b, _ = _run(code, True, regs=regs, budget=budget, hot=2)
        assert a == b and a[3] == min(budget, icount)


def _watched_run(code: bytes, translated: bool, watch, regs=None):
    """Run ``code`` 200 instructions (translated units are hot by then), then
    set ``watch`` (lin, len, kind) and run on: the state where it stopped."""
    from tvmm.machine import debug
    m = Machine()
    m.write(CODE, code)
    m.flat32(CODE, esp=0x9000)
    m.cpu.translate_blocks = translated
    m.cpu.hot = 1
    for i, v in (regs or {}).items():
        m.cpu.regs[i] = v
    m.w32(0x2010, 0x1234)
    assert m.run(200).kind == StopKind.BUDGET
    m.cpu.watchpoints.append(watch)
    debug.update_watch_pages(m.cpu)
    stop = m.run(1000)
    return (stop.kind, m.cpu.eip, m.cpu.icount, list(m.cpu.regs)), m


# Loops of ``inc ebx ; <load> ; inc edx ; inc edx ; dec ecx ; jnz`` with the
# load reading 0x2010 (ESI) or the stack, in every inline form that loads.
_LOADS = {
    "moffs": "a110200000",          # mov eax, [0x2010]
    "mov": "8b06",                  # mov eax, [esi]
    "cmp": "3b06",                  # cmp eax, [esi]
    "movzx": "0fb606",              # movzx eax, byte [esi]
    "imul": "0faf06",               # imul eax, [esi]
    "lods": "ad83ee04",             # lodsd ; sub esi, 4
    "pop": "5058",                  # push eax ; pop eax
}


def test_a_read_watchpoint_stops_a_translated_unit_right_after_the_load():
    # The watched page is kept out of the TLB, so the load takes the slow
    # path, which asks the unit to leave: the stop is at the instruction
    # after the load, as interpreted, not at the end of the unit.
    for name, load in _LOADS.items():
        code = bytes.fromhex("43" + load + "4242" + "49")
        code += bytes([0x75, (-(len(code) + 2)) & 0xFF]) + b"\xf4"
        watch = (0x8FFC, 4, "r") if name == "pop" else (0x2010, 4, "r")
        a, _ = _watched_run(code, False, watch, regs={1: 1000, 6: 0x2010})
        b, m = _watched_run(code, True, watch, regs={1: 1000, 6: 0x2010})
        assert a == b, name
        assert a[0] == StopKind.WATCHPOINT and a[1] == CODE + 1 + len(bytes.fromhex(load.replace("83ee04", ""))), name
        assert any(blk.fn is not None for blk in m.cpu.blocks.values()), name


def test_a_read_watchpoint_on_a_return_address_stops_after_a_guarded_return():
    # 1: inc ebx ; call f ; inc edx ; dec ecx ; jnz 1b ; hlt   f: ret
    code = bytes.fromhex("43e8050000004249" "75f6f4" "c3")
    a, _ = _watched_run(code, False, (0x8FFC, 4, "r"), regs={1: 1000})
    b, _ = _watched_run(code, True, (0x8FFC, 4, "r"), regs={1: 1000})
    assert a == b and a[0] == StopKind.WATCHPOINT and a[1] == CODE + 6


def test_a_read_write_data_breakpoint_set_while_a_unit_is_hot_traps_after_the_load():
    # DR0 = 0x2010, 4 bytes, RW = 11b (reads and writes): the #DB handler (a
    # HLT) sees the instruction after the load as the return EIP.  The unit
    # was compiled before DR7 was set, so setting it must drop it.
    from tvmm.machine import debug
    code = bytes.fromhex("43" + "8b06" + "4242" + "49" + "75f8" + "f4")
    outs = []
    for translated in (False, True):
        m = Machine()
        m.write(CODE, code)
        m.flat32(CODE, esp=0x9000)
        gdt, idt = 0x22000, 0x23000
        m.write(gdt, seg_desc(0, 0, 0) + seg_desc(0, 0xFFFFFFFF, 0x9B) + seg_desc(0, 0xFFFFFFFF, 0x93))
        m.cpu.gdtr_base, m.cpu.gdtr_limit = gdt, 23
        m.write(idt + 1 * 8, gate_desc(0x08, 0x3000))
        m.write(0x3000, b"\xf4")
        m.cpu.idtr_base, m.cpu.idtr_limit = idt, 0x7FF
        m.cpu.translate_blocks = translated
        m.cpu.hot = 1
        m.cpu.regs[1], m.cpu.regs[6] = 1000, 0x2010
        assert m.run(200).kind == StopKind.BUDGET
        m.cpu.dr[0] = 0x2010
        m.cpu.dr[7] = 0x1 | (0b11 << 16) | (0b11 << 18)
        debug.update_watch_pages(m.cpu)
        stop = m.run(1000)
        outs.append((stop.kind, m.cpu.eip, m.cpu.icount, m.r32(m.cpu.regs[4]), list(m.cpu.regs), m.cpu.dr[6] & 0xF))
    assert outs[0] == outs[1]
    assert outs[0][0] == StopKind.HALTED and outs[0][3] == CODE + 3 and outs[0][5] == 1


def test_a_read_watch_put_back_keeps_the_units_compiled_for_it():
    # gdb removes its watchpoints at every stop and puts them back at every
    # resume: the first read watch drops the units compiled without load
    # checks, and they come back with them; later cycles drop nothing.
    from tvmm.machine import debug
    code = bytes.fromhex("43" + "8b06" + "4242" + "49" + "75f8" + "f4")   # 1: inc ebx ; mov eax,[esi] ; ... ; jnz 1b
    m = Machine()
    m.write(CODE, code)
    m.flat32(CODE, esp=0x9000)
    m.cpu.translate_blocks = True
    m.cpu.hot = 1
    m.cpu.regs[1], m.cpu.regs[6] = 100_000, 0x2010

    def units():
        return {id(b): b.fn for b in m.cpu.blocks.values() if b.fn is not None}

    def watch(on):
        if on:
            m.cpu.watchpoints.append((0x5000, 4, "r"))     # never read by the loop
        else:
            m.cpu.watchpoints.clear()
        debug.update_watch_pages(m.cpu)

    assert m.run(200).kind == StopKind.BUDGET
    plain = units()
    assert plain and not any(b.read_watch for b in m.cpu.blocks.values() if b.fn is not None)
    watch(True)
    assert not set(plain) & set(units())                   # dropped
    assert m.run(200).kind == StopKind.BUDGET
    checked = units()
    assert checked and all(b.read_watch for b in m.cpu.blocks.values() if b.fn is not None)
    for _ in range(3):
        watch(False)
        watch(True)
        assert units() == checked                          # kept, functions and all
        assert m.run(200).kind == StopKind.BUDGET
        assert checked.items() <= units().items()
        checked = units()
