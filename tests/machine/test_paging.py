"""Paging, TLB and exception behaviour that no oracle checks: the Intel SDM
vol. 3 (chapter 4 for paging, chapter 6 for exceptions) is the reference.

Each test builds page tables in guest memory, runs a few hand-encoded
instructions, and looks at the architectural outcome (registers, memory,
page-table bits, CR2, the exception vector and error code).
"""

from __future__ import annotations

import struct

import pytest

from tvmm.machine import StopKind
from tvmm.machine.consts import CR0_PG, CR0_WP, CR4_PGE, CR4_PSE, PTE_A, PTE_D, PTE_G, PTE_P, PTE_PS, PTE_U, PTE_W

from .harness import Machine

PD = 0x20000
PT = 0x21000
CODE = 0x1000
HLT = b"\xf4"


def mov_eax_mem(addr):      # mov eax, [addr]
    return b"\xa1" + struct.pack("<I", addr)


def mov_mem_eax(addr):      # mov [addr], eax
    return b"\xa3" + struct.pack("<I", addr)


def mov_eax_imm(v):         # mov eax, imm32
    return b"\xb8" + struct.pack("<I", v)


class Paged(Machine):
    """Identity-maps the first 4 MiB with 4 KiB pages (P|W, no U, A/D clear)."""

    def __init__(self, pte_flags=PTE_P | PTE_W):
        super().__init__(16 << 20)
        self.w32(PD, PT | PTE_P | PTE_W | PTE_U)
        for i in range(1024):
            self.w32(PT + 4 * i, (i << 12) | pte_flags)
        self.events = []
        self.cpu.intercept = self._intercept

    def _intercept(self, vector, err, eip, soft, external):
        self.events.append((vector, err, self.cpu.eip, self.cpu.cr2))
        self.cpu.halted = True
        self.cpu.attention = True
        return True

    def pte(self, lin):
        return self.r32(PT + 4 * (lin >> 12))

    def set_pte(self, lin, v):
        self.w32(PT + 4 * (lin >> 12), v)

    def start(self, code: bytes, cr0_extra=0, cr4=0):
        self.write(CODE, code)
        self.flat32(CODE)
        self.cpu.set_cr4(cr4)
        self.cpu.set_cr3(PD)
        self.cpu.set_cr0(self.cpu.cr0 | CR0_PG | cr0_extra)


def test_accessed_and_dirty_bits_are_set_like_hardware():
    m = Paged()
    m.start(mov_eax_mem(0x5000) + mov_mem_eax(0x6000) + HLT)
    m.w32(0x5000, 0x12345678)
    m.run_to_hlt()
    assert m.cpu.regs[0] == 0x12345678
    assert m.pte(0x5000) & (PTE_A | PTE_D) == PTE_A          # read: accessed only
    assert m.pte(0x6000) & (PTE_A | PTE_D) == PTE_A | PTE_D  # write: accessed and dirty
    assert m.pte(0x7000) & PTE_A == 0                        # untouched
    assert m.pte(CODE) & PTE_A                               # instruction fetch sets A
    assert m.r32(PD) & PTE_A                                 # and the directory entry too


def test_dirty_bit_set_on_first_write_after_read():
    m = Paged()
    # read then write the same page: the read fills the TLB without D; the
    # write must still walk and set D.
    m.start(mov_eax_mem(0x5000) + mov_mem_eax(0x5004) + HLT)
    m.run_to_hlt()
    assert m.pte(0x5000) & PTE_D


@pytest.mark.parametrize("wp, faults", [(False, False), (True, True)])
def test_cr0_wp_controls_supervisor_writes_to_read_only_pages(wp, faults):
    m = Paged()
    m.start(mov_eax_imm(0xAABBCCDD) + mov_mem_eax(0x8010) + HLT, cr0_extra=CR0_WP if wp else 0)
    m.set_pte(0x8000, 0x8000 | PTE_P)            # present, read-only, supervisor
    m.run_to_hlt()
    if faults:
        assert m.events == [(14, 0b011, CODE + 5, 0x8010)]   # P=1 W=1 U=0; EIP at the store
        assert m.r32(0x8010) == 0
    else:
        assert m.events == []
        assert m.r32(0x8010) == 0xAABBCCDD


def test_not_present_fault_has_error_code_and_cr2():
    m = Paged()
    m.start(mov_eax_mem(0x9abc) + HLT)
    m.set_pte(0x9000, 0)
    m.run_to_hlt()
    assert m.events == [(14, 0, CODE, 0x9abc)]
    assert m.cpu.eip == CODE      # a fault restarts the instruction


def test_user_access_to_supervisor_page_faults():
    m = Paged(pte_flags=PTE_P | PTE_W | PTE_U)
    m.start(mov_eax_mem(0x5000) + HLT)
    m.set_pte(0x5000, 0x5000 | PTE_P | PTE_W)     # supervisor only
    from tvmm.machine import segments
    for seg in range(6):
        attr = 0xC0FB if seg == 1 else 0xC0F3          # DPL 3 code / data
        segments.set_cache(m.cpu, seg, 0x1B if seg == 1 else 0x23, 0, 0xFFFFFFFF, attr)
    m.cpu.set_cpl(3)
    m.run(100)
    assert m.events == [(14, 0b101, CODE, 0x5000)]   # P=1 W=0 U=1


def test_4mib_page_with_pse():
    m = Paged()
    # PDE 1 maps linear 4-8 MiB to physical 8-12 MiB as one large page.
    m.w32(PD + 4, 0x800000 | PTE_P | PTE_W | PTE_PS)
    m.w32(0x800000 + 0x1234, 0xCAFEF00D)
    m.start(mov_eax_mem(0x401234) + HLT, cr4=CR4_PSE)
    m.run_to_hlt()
    assert m.cpu.regs[0] == 0xCAFEF00D
    assert m.r32(PD + 4) & PTE_A


def test_ps_bit_ignored_without_cr4_pse():
    m = Paged()
    m.w32(PD + 4, 0x800000 | PTE_P | PTE_W | PTE_PS)   # treated as a page-table pointer
    m.w32(0x800000 + 4 * 1, 0x3000 | PTE_P)            # its entry 1 maps 0x401000 -> 0x3000
    m.w32(0x3000 + 0x234, 0x11223344)
    m.start(mov_eax_mem(0x401234) + HLT)
    m.run_to_hlt()
    assert m.cpu.regs[0] == 0x11223344


def test_tlb_is_stale_until_invlpg_and_global_pages_survive_cr3_writes():
    m = Paged()
    m.start(HLT, cr4=CR4_PGE)
    cpu = m.cpu
    m.w32(0x5000, 0x5555)
    m.w32(0x6000, 0x6666)
    m.w32(0x7000, 0x7777)
    m.set_pte(0x5000, 0x5000 | PTE_P | PTE_W | PTE_G)   # global
    m.set_pte(0x6000, 0x6000 | PTE_P | PTE_W)           # not global
    assert cpu.rd32(0x5000) == 0x5555 and cpu.rd32(0x6000) == 0x6666
    # Re-point both entries at frame 7 behind the TLB's back.
    m.set_pte(0x5000, 0x7000 | PTE_P | PTE_W | PTE_G)
    m.set_pte(0x6000, 0x7000 | PTE_P | PTE_W)
    assert cpu.rd32(0x5000) == 0x5555 and cpu.rd32(0x6000) == 0x6666   # stale, as on hardware
    cpu.set_cr3(PD)
    assert cpu.rd32(0x6000) == 0x7777       # non-global entry flushed by the CR3 write
    assert cpu.rd32(0x5000) == 0x5555       # global entry survives it
    cpu.invlpg(0x5000)
    assert cpu.rd32(0x5000) == 0x7777       # INVLPG drops it


def test_self_modifying_code_in_the_same_block():
    m = Machine()
    # mov byte [CODE+11], 0x42 ; mov eax, 0x00000001 ; hlt
    # The store rewrites the low immediate byte of the next instruction.
    code = b"\xc6\x05" + struct.pack("<I", CODE + 8) + b"\x42" + mov_eax_imm(1) + HLT
    assert code[8] == 0x01
    m.write(CODE, code)
    m.flat32(CODE)
    m.run_to_hlt()
    assert m.cpu.regs[0] == 0x42


def test_code_rewritten_between_runs_is_redecoded():
    m = Machine()
    m.write(CODE, mov_eax_imm(1) + HLT)
    m.flat32(CODE)
    m.run_to_hlt()
    assert m.cpu.regs[0] == 1
    m.write(CODE, mov_eax_imm(2) + HLT)     # e.g. a loader or DMA writing code
    m.cpu.eip = CODE
    m.cpu.halted = False
    m.run_to_hlt()
    assert m.cpu.regs[0] == 2


def test_triple_fault_is_a_shutdown_stop_not_an_exception():
    m = Machine()
    m.write(CODE, b"\x0f\x0b")      # ud2 with an empty IDT
    m.flat32(CODE)
    m.cpu.idtr_base, m.cpu.idtr_limit = 0, 0
    stop = m.run(100)
    assert stop.kind == StopKind.SHUTDOWN
    assert "#UD" in stop.detail and "#DF" in stop.detail
    assert m.cpu.run(100).kind == StopKind.SHUTDOWN   # stays stopped


def test_gp_during_page_fault_delivery_becomes_double_fault():
    from .harness import gate_desc, seg_desc
    m = Paged()
    gdt = 0x30000
    m.write(gdt, seg_desc(0, 0, 0) + seg_desc(0, 0xFFFFFFFF, 0x9B) + seg_desc(0, 0xFFFFFFFF, 0x93))
    idt = 0x31000
    # #PF gate points at a null selector (-> #GP during delivery); #DF gate is fine.
    m.write(idt + 14 * 8, gate_desc(0x00, 0x2000))
    m.write(idt + 8 * 8, gate_desc(0x08, 0x2000))
    m.write(0x2000, HLT)
    m.start(mov_eax_mem(0x9000) + HLT)
    m.set_pte(0x9000, 0)
    cpu = m.cpu
    cpu.intercept = None
    cpu.gdtr_base, cpu.gdtr_limit = gdt, 23
    cpu.idtr_base, cpu.idtr_limit = idt, 256 * 8 - 1
    stop = m.run(100)
    assert stop.kind == StopKind.HALTED
    assert cpu.eip == 0x2001                    # in the #DF handler
    esp = cpu.regs[4]
    err, eip, cs = (m.r32(esp), m.r32(esp + 4), m.r32(esp + 8))
    assert (err, eip, cs) == (0, CODE, 0x08)    # #DF pushes error code 0 and the faulting EIP
    assert cpu.cr2 == 0x9000


def test_exception_frame_same_privilege():
    from .harness import gate_desc, seg_desc
    m = Machine()
    gdt, idt = 0x30000, 0x31000
    m.write(gdt, seg_desc(0, 0, 0) + seg_desc(0, 0xFFFFFFFF, 0x9B) + seg_desc(0, 0xFFFFFFFF, 0x93))
    m.write(idt + 13 * 8, gate_desc(0x08, 0x2000))
    m.write(0x2000, HLT)
    # mov ds, ax with ax = 0x0033 (beyond the GDT limit) -> #GP(0x30)
    m.write(CODE, mov_eax_imm(0x33) + b"\x8e\xd8" + HLT)
    m.flat32(CODE, esp=0x9000)
    cpu = m.cpu
    cpu.gdtr_base, cpu.gdtr_limit = gdt, 23
    cpu.idtr_base, cpu.idtr_limit = idt, 256 * 8 - 1
    cpu.set_eflags(0x202)
    m.run_to_hlt()
    assert cpu.regs[4] == 0x9000 - 16
    frame = [m.r32(0x9000 - 16 + 4 * i) for i in range(4)]
    assert frame == [0x30, CODE + 5, 0x08, 0x202]      # error code, EIP, CS, EFLAGS
    assert not cpu.get_eflags() & 0x200                # interrupt gate cleared IF


def test_a_bug_in_tvmm_stops_only_that_machine():
    from tvmm.machine import registry
    a, b = Machine(), Machine()
    for mm in (a, b):
        mm.write(CODE, mov_eax_imm(7) + b"\x90" + HLT)
        mm.flat32(CODE)
    d = None

    def broken(cpu, insn):
        raise ZeroDivisionError("simulated bug")
    # Break NOP on machine a only, by swapping the handler in its decoded block.
    a.cpu.run(1)
    for blk in a.cpu.blocks.values():
        for d in blk.insns:
            if d.mnem == "NOP":
                d.fn = broken
    a.cpu.eip = CODE
    stop = a.cpu.run(100)
    assert stop.kind == StopKind.ERROR
    assert "ZeroDivisionError" in stop.detail and "90f4" in stop.detail   # faulting bytes in the report
    assert a.cpu.eip == CODE + 5
    assert b.run_to_hlt().kind == StopKind.HALTED and b.cpu.regs[0] == 7
    assert registry.HANDLERS[("NOP", "")] is not broken


def test_runs_are_deterministic():
    def once():
        m = Paged()
        m.start(mov_eax_mem(0x5000) + b"\x05\x01\x00\x00\x00" + mov_mem_eax(0x5000) + b"\xeb\xef")
        m.run(12345)
        return list(m.cpu.regs), m.cpu.eip, m.cpu.icount, m.r32(0x5000), m.cpu.get_eflags()
    assert once() == once()
    regs, eip, icount, value, _ = once()
    assert icount == 12345


class _Dev:
    def __init__(self, tag):
        self.tag, self.seen = tag, []

    def mmio_read(self, off, size):
        self.seen.append(("r", off))
        return self.tag

    def mmio_write(self, off, size, value):
        self.seen.append(("w", off, value))


def test_device_page_translations_are_cached_like_ram_ones_until_invlpg():
    # A linear page mapped to a device stays mapped to it (TLB semantics)
    # after its PTE changes, until INVLPG; every access still reaches a device.
    m = Paged()
    a, b = _Dev(0xAAAA), _Dev(0xBBBB)
    m.mem.add_mmio(0xE00000, 0xE01000, a)
    m.mem.add_mmio(0xE01000, 0xE02000, b)
    m.w32(PD + 4 * 3, 0x22000 | PTE_P | PTE_W)          # 12-16 MiB through a second table
    m.w32(0x22000 + 4 * 0x200, 0xE00000 | PTE_P | PTE_W)  # 0xE00000 -> device a
    pte_at = 0x22000 + 4 * 0x200
    code = (mov_eax_mem(0xE00010) + mov_mem_eax(0x5000)
            + mov_eax_imm(0xE01000 | PTE_P | PTE_W) + mov_mem_eax(pte_at)
            + mov_eax_mem(0xE00010) + mov_mem_eax(0x5004)
            + b"\x0f\x01\x3d" + struct.pack("<I", 0xE00010)      # invlpg [0xE00010]
            + mov_eax_mem(0xE00010) + mov_mem_eax(0x5008) + HLT)
    m.start(code)
    m.run()
    assert [m.r32(0x5000), m.r32(0x5004), m.r32(0x5008)] == [0xAAAA, 0xAAAA, 0xBBBB]
    assert a.seen == [("r", 0x10), ("r", 0x10)] and b.seen == [("r", 0x10)]


def test_ops_walk_fault_may_map_the_page_where_the_access_is():
    """``ops.walk_fault`` sees a TLB miss's #PF where the walk failed: when
    it maps the page, the walk is made again and the access goes on — a
    ``rep stosd`` over three unmapped pages finishes in one run of the
    instruction, offered one fault per page, none delivered.  A fault it
    leaves goes to ``exception`` and is delivered as usual."""
    from tvmm.machine.native import NativeOps

    class Mapper(NativeOps):
        def __init__(self, machine):
            self.m, self.seen, self.offered = machine, [], []

        def walk_fault(self, cpu, fault):
            self.seen.append((fault.cr2, fault.error_code))
            if fault.cr2 < 0x3000_0000:
                self.m.set_pte(fault.cr2, (fault.cr2 & 0xFFFFF000) | PTE_P | PTE_W)
                return None
            return fault

        def exception(self, cpu, fault):
            self.offered.append(fault.vector)
            return fault

    m = Paged()
    ops = Mapper(m)
    m.cpu.ops = ops
    for page in (0x100000, 0x101000, 0x102000):
        m.set_pte(page, 0)
    code = mov_eax_imm(0x5A5A5A5A) + b"\xbf" + struct.pack("<I", 0x100000) + b"\xb9" + struct.pack("<I", 3 * 1024)
    m.start(code + b"\xfc\xf3\xab" + HLT)                    # cld; rep stosd
    m.run_to_hlt()
    assert ops.seen == [(0x100000, 0b010), (0x101000, 0b010), (0x102000, 0b010)]
    assert ops.offered == [] and m.events == []
    assert m.read(0x100000, 3 * 4096) == b"\x5a" * 3 * 4096
    assert m.cpu.regs[1] == 0 and m.cpu.regs[7] == 0x103000

    m = Paged()
    ops = Mapper(m)
    m.cpu.ops = ops
    m.start(mov_eax_mem(0x3000_0000) + HLT)
    m.run_to_hlt()
    assert ops.seen == [(0x3000_0000, 0)] and ops.offered == [14]
    assert m.events == [(14, 0, CODE, 0x3000_0000)]          # delivered as usual: EIP at the load
