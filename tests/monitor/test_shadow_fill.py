"""The shadow's two ways of handling a guest-mode page fault agree.

``ShadowMmu._fill_common`` handles the common hidden fault (a 4 KiB page,
tables and frame in guest RAM, the access allowed) with the entries read in
place; everything else goes to the general path (``walk_guest`` on
``mmu.translate_entries``).  On random guest tables, the same faults taken
with the fast path on and with it off must reflect the same faults and leave
the same shadow entries and the same guest page tables (A/D bits).

Then the processor's side: a shadow miss is filled where the access is,
without restarting the instruction, and is logged once.
"""

from __future__ import annotations

import random

import pytest

from tvmm.machine.consts import CR4_PGE, CR4_PSE
from tvmm.machine.errors import CpuFault
from tvmm.monitor import events as ev
from tvmm.monitor.shadow import PREFETCH, ShadowMmu

from .kit import ENTRY, PD, Layout, X, boot

P, W, U, A, D, G, PS = 1, 2, 4, 0x20, 0x40, 0x100, 0x80
TABLES = 0x20000                   # guest-physical page tables (8 of them)
RAM_FRAMES = range(0x200, 0x800)   # 2..8 MiB: plain guest RAM of the 8 MiB guest
ODD_FRAMES = (0xBC, 0x900, 0xFEE00)   # a device page (the CGA mirror), past RAM, the local APIC


def _world(tmp_path, seed: int, fast: bool):
    """A guest with random tables; take 300 random faults through
    ``page_fault`` (``fast`` False: with ``_fill_common`` disabled).  Returns
    what is compared, and how many faults the fast path took."""
    monitor, g = boot(tmp_path, X.HLT)
    lay = Layout(g)
    lay.flat_gdt_idt()
    rng = random.Random(seed)
    mem = g.gmem

    def flags() -> int:
        f = rng.choice((P | W, P | W | U, P, P | U)) | rng.choice((0, A, A | D)) | rng.choice((0, 0, G))
        return f if rng.random() < 0.9 else f & ~P                  # now and then not present

    for pdi in range(1, 9):
        r = rng.random()
        if r < 0.7:
            table = TABLES + (pdi - 1) * 0x1000
        elif r < 0.8:
            table = rng.choice(ODD_FRAMES) << 12                 # a table outside RAM
        elif r < 0.9:
            mem.write(PD + pdi * 4, 4, (rng.choice(RAM_FRAMES) << 12 & 0xFFC00000) | PS | flags())
            continue                                               # a 4 MiB page (with CR4.PSE)
        else:
            mem.write(PD + pdi * 4, 4, 0)
            continue
        mem.write(PD + pdi * 4, 4, table | rng.choice((P | W | U, P | W, P | U, P)) | rng.choice((0, A)))
        if table < 8 << 20:
            for pti in range(1024):
                frame = rng.choice(RAM_FRAMES) if rng.random() < 0.95 else rng.choice(ODD_FRAMES)
                mem.write(table + pti * 4, 4, (frame << 12) | flags())
    lay.paging_on(cr4=rng.choice((0, CR4_PSE, CR4_PSE | CR4_PGE)), wp=rng.random() < 0.7)
    cpu = g.vcpu
    shadow = g.shadow
    taken = []
    real = ShadowMmu._fill_common

    def fill_common(self, *args):
        if not fast:
            return False
        hit = real(self, *args)
        taken.append(hit)
        return hit

    shadow._fill_common = fill_common.__get__(shadow)
    outcomes = []
    for _ in range(300):
        gva = (rng.randrange(1, 9) << 22) | (rng.randrange(0, 1024, rng.choice((1, 1, 7))) << 12) | 0x123
        err = (2 if rng.random() < 0.5 else 0) | (4 if rng.random() < 0.3 else 0)
        out = shadow.page_fault(cpu, cpu, CpuFault(14, err, gva))
        outcomes.append(None if out is None else (out.vector, out.error_code, out.cr2))
    tables = mem.read_bytes(PD, 0x1000) + mem.read_bytes(TABLES, 8 * 0x1000)
    return outcomes, list(shadow.entries()), tables, list(g.gmem.frames), sum(taken)


@pytest.mark.parametrize("seed", range(6))
def test_the_common_fill_and_the_general_path_leave_the_same_shadow_and_guest_tables(tmp_path, seed):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    fast = _world(tmp_path / "a", seed, fast=True)
    slow = _world(tmp_path / "b", seed, fast=False)
    assert fast[3] == slow[3]                      # same host frames, so entries compare as they are
    assert fast[0] == slow[0]                      # the same faults reflected, with the same codes
    assert fast[1] == slow[1]                      # the same shadow entries (prefetch included)
    assert fast[2] == slow[2]                      # the same A/D bits in the guest's tables
    assert fast[4] > 20                            # the fast path did take many of the hidden faults
    assert sum(o is None for o in fast[0]) > fast[4] // 2
    assert any(o is not None for o in fast[0])     # and some were reflected


def test_a_shadow_miss_in_a_rep_stos_is_filled_in_place_and_logged_once(tmp_path):
    # rep stosd over three fresh pages at 4 MiB: one hidden fault per page,
    # no reflected fault, the data all there, ECX run down to 0.
    code = (X.mov_eax(0xA5A5A5A5) + b"\xbf" + (0x400000).to_bytes(4, "little")     # mov edi, 0x400000
            + b"\xb9" + (3 * 1024).to_bytes(4, "little")                             # mov ecx, 3072
            + b"\xfc\xf3\xab")                                                        # cld; rep stosd
    monitor, g = boot(tmp_path, code + X.HLT)
    lay = Layout(g)
    lay.flat_gdt_idt()
    lay.identity(0, 0x200000)
    ptes = [lay.map(0x400000 + i * 0x1000, 0x300000 + i * 0x1000, P | W) for i in range(3)]
    lay.paging_on()
    monitor.run(100_000)
    assert g.state == "halted"
    assert lay.result()[2] == -1                                   # the guest saw no fault
    assert g.gmem.read_bytes(0x300000, 3 * 0x1000) == b"\xa5" * 3 * 0x1000
    assert g.vcpu.regs[1] == 0 and g.vcpu.regs[7] == 0x403000
    assert all(g.gmem.read(p, 4) & (A | D) == A | D for p in ptes)
    hidden = [e for e in monitor.log.recent("g", kinds={ev.PF_HIDDEN}) if 0x400000 <= int(e.detail[:10], 16)]
    assert sorted(int(e.detail[:10], 16) for e in hidden) == [0x400000, 0x401000, 0x402000]
    assert all("err 0x2 -> shadow" in e.detail for e in hidden)
    assert monitor.log.count("g", ev.PF_REFLECTED) == 0


def test_a_fault_the_guest_takes_is_logged_once_and_delivered_with_its_cr2(tmp_path):
    # a read of an unmapped page from inside a translated block: the fault
    # is offered to the monitor where the access is, reflected, and not
    # offered (or logged) a second time by the delivery.
    code = X.mov_ebx(0x800010) + X.LOAD_EAX_EBX
    monitor, g = boot(tmp_path, code + X.HLT)
    lay = Layout(g)
    lay.flat_gdt_idt()
    lay.identity(0, 0x200000)
    lay.paging_on()
    monitor.run(100_000)
    assert lay.result() == (0, 0x800010, 14)
    assert monitor.log.count("g", ev.PF_REFLECTED) == 1
    [e] = monitor.log.recent("g", kinds={ev.PF_REFLECTED})
    load_at = ENTRY + len(X.mov_ebx(0))
    assert e.detail == f"0x00800010 err 0x0 eip {load_at:#010x}"   # the faulting instruction's EIP


def test_hidden_faults_are_stamped_with_the_time_of_the_access(tmp_path):
    # mov ecx, 40 ; mov ebx, 0x400000 ;
    # 1: nop ; nop ; nop ; mov eax, [ebx] ; add ebx, 0x10000 ; dec ecx ; jnz 1b ; hlt
    # Each load touches a page 16 pages from the last (out of prefetch's
    # reach): one hidden fault per iteration, at time 2 + 7 j + 3, whether
    # the loop runs interpreted (its first iterations) or translated.
    code = (b"\xb9" + (40).to_bytes(4, "little") + X.mov_ebx(0x400000)
            + b"\x90\x90\x90" + X.LOAD_EAX_EBX + b"\x81\xc3" + (0x10000).to_bytes(4, "little")
            + b"\x49\x75" + bytes([(-14) & 0xFF]))
    monitor, g = boot(tmp_path, code + X.HLT)
    lay = Layout(g)
    lay.flat_gdt_idt()
    lay.identity(0, 0x200000)
    for j in range(40):
        lay.map(0x400000 + j * 0x10000, 0x200000 + j * 0x1000, P | W)
    lay.paging_on()
    monitor.run(100_000)
    assert g.state == "halted" and g.vcpu.regs[1] == 0
    stamps = {int(e.detail[:10], 16): e.icount for e in monitor.log.recent("g", kinds={ev.PF_HIDDEN}, limit=4096)
              if int(e.detail[:10], 16) >= 0x400000}
    assert stamps == {0x400000 + j * 0x10000: 2 + 7 * j + 3 for j in range(40)}
    assert any(b.fn is not None for b in g.vcpu.blocks.values())      # the loop was translated


def test_a_reflected_fault_is_stamped_with_the_time_of_the_faulting_instruction(tmp_path):
    # nop x4 ; mov ebx, 0x800010 ; mov eax, [ebx] (time 5, unmapped: reflected)
    code = b"\x90" * 4 + X.mov_ebx(0x800010) + X.LOAD_EAX_EBX
    monitor, g = boot(tmp_path, code + X.HLT)
    lay = Layout(g)
    lay.flat_gdt_idt()
    lay.identity(0, 0x200000)
    lay.paging_on()
    monitor.run(100_000)
    assert lay.result() == (0, 0x800010, 14)
    [e] = monitor.log.recent("g", kinds={ev.PF_REFLECTED})
    assert e.icount == 5


def test_prefetch_fills_present_neighbours_after_a_read_and_used_ones_after_a_write(tmp_path):
    # Two guest tables alike: around the faulting page, neighbours present and
    # never used (A clear), present and used (A set), and not present.  A
    # read fault prefetches every present neighbour (setting A, as a
    # speculative walk would); a write fault only the used ones (a fresh page
    # written first would fault again for its D bit).  A table with no
    # candidate at all gives just the faulting page.
    monitor, g = boot(tmp_path, X.HLT)
    lay = Layout(g)
    lay.flat_gdt_idt()
    mem, shadow, cpu = g.gmem, g.shadow, g.vcpu
    kinds = {}
    for pdi in (1, 2, 3, 4, 5):
        table = TABLES + (pdi - 1) * 0x1000
        mem.write(PD + pdi * 4, 4, table | P | W | A)
        for pti in range(1024):
            # tables 1, 2: a mix; 3: none present; 4, 5: all present, none used
            kind = (pti * 7) % 3 if pdi < 3 and pti != 512 else 0
            kind = 2 if pdi == 3 and pti != 512 else kind
            kinds[pdi, pti] = kind
            mem.write(table + pti * 4, 4, ((0x200 + pti) << 12) | (P | W, P | W | A, 0)[kind])
    lay.paging_on()
    for pdi, err in ((1, 0), (2, 2), (3, 2), (4, 0), (5, 2)):
        gva = (pdi << 22) | (512 << 12)
        assert shadow.page_fault(cpu, cpu, CpuFault(14, err, gva)) is None
        for pti in range(512 - PREFETCH - 4, 512 + PREFETCH + 5):
            filled = shadow.entry((pdi << 22) | (pti << 12)) != 0
            kind = kinds[pdi, pti]
            if pti == 512:
                want = True
            elif abs(pti - 512) > PREFETCH:
                want = False
            elif err == 0:
                want = kind in (0, 1)                       # present
            else:
                want = kind == 1                            # present and used
            assert filled == want, (pdi, pti, kind)
            if filled and err == 0:
                assert mem.read(TABLES + (pdi - 1) * 0x1000 + pti * 4, 4) & A
