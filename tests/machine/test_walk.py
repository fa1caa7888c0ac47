"""The one page walk (``mmu.translate_entries``) against the SDM's rules
(vol. 3, 4.3 two-level paging, 4.6 access rights, 4.7 #PF error codes,
4.8 accessed and dirty flags), and the agreement of everything that walks
page tables: the processor's ``mmu.walk``, ``mmu.probe``, the monitor's
``ShadowMmu.walk_guest`` and ``_prefetch``, and ``inspect.walk``/
``translate`` — on random page tables.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tvmm.machine import mmu
from tvmm.machine.consts import (CR0_PG, CR0_WP, CR4_PGE, CR4_PSE, M32, PF_P, PF_RSVD, PF_U, PF_VEC, PF_W, PTE_A,
                                 PTE_D, PTE_G, PTE_P, PTE_PS, PTE_U, PTE_W)
from tvmm.machine.errors import CpuFault
from tvmm.machine.memory import PhysicalMemory
from tvmm.monitor import inspect
from tvmm.monitor.guestmem import GuestPhysicalMemory
from tvmm.monitor.hostmem import FrameAllocator
from tvmm.monitor.shadow import PREFETCH, ShadowMmu, ShadowPool

PD, PT = 0x10000, 0x11000
A20_OFF = M32 & ~(1 << 20)
GUEST_PAGES = 64                       # the guest-physical RAM of the random cases: 256 KiB


class Mem:
    """32-bit words by address, recording every store in order; words never
    written read as zero in the guest's RAM and as all ones above it (open
    bus, as a guest's memory reads a hole)."""

    # no frame is plain RAM to ``mmu.walk``: every entry is read through ``read``
    ram_pages = 0
    mmio_pages = frozenset()

    def __init__(self, words=None):
        self.words = dict(words or {})
        self.stores = []

    def read(self, pa, size):
        assert size == 4 and pa & 3 == 0
        return self.words.get(pa, 0 if pa < GUEST_PAGES * 4096 else M32)

    def write(self, pa, size, value):
        assert size == 4 and pa & 3 == 0
        self.stores.append((pa, value))
        self.words[pa] = value


def tables(pde, pte=None, lin=0x00401000):
    """A directory at PD whose entry for ``lin`` is ``pde`` (pointing at PT
    unless it is a 4 MiB page) and, in PT, ``pte`` for ``lin``."""
    words = {PD + ((lin >> 22) << 2): pde if pde & PTE_PS else PT | pde}
    if pte is not None:
        words[PT + (((lin >> 12) & 0x3FF) << 2)] = pte
    return Mem(words)


def walk(mem, lin=0x00401000, write=False, user=False, wp=True, pse=True, pge=False, a20=M32):
    return mmu.translate_entries(mem.read, CR0_PG | (CR0_WP if wp else 0), PD,
                                 (CR4_PSE if pse else 0) | (CR4_PGE if pge else 0), lin, write, user, a20)


# -- permissions (SDM 4.6) ---------------------------------------------------------------

def _sdm_allows(pde_u, pde_w, pte_u, pte_w, wp, user, write):
    """SDM 4.6.1, spelled out: user accesses need U/S at both levels, user
    writes R/W at both; supervisor reads are always allowed, supervisor
    writes need R/W at both levels only with CR0.WP."""
    if user:
        return pde_u and pte_u and (not write or (pde_w and pte_w))
    return not write or not wp or (pde_w and pte_w)


@pytest.mark.parametrize("pde_u,pde_w,pte_u,pte_w,wp,user,write", list(itertools.product((0, 1), repeat=7)))
def test_permissions_combine_both_levels_and_cr0_wp(pde_u, pde_w, pte_u, pte_w, wp, user, write):
    pde = PTE_P | (PTE_U if pde_u else 0) | (PTE_W if pde_w else 0)
    pte = 0x123000 | PTE_P | (PTE_U if pte_u else 0) | (PTE_W if pte_w else 0)
    w = walk(tables(pde, pte), write=bool(write), user=bool(user), wp=bool(wp))
    assert w.user == bool(pde_u and pte_u)
    assert w.rw == bool(pde_w and pte_w)
    assert w.writable == (bool(pde_w and pte_w) or (not user and not wp))
    assert w.frame == 0x123000 and not w.large         # the frame is known even when the access faults
    if _sdm_allows(pde_u, pde_w, pte_u, pte_w, wp, user, write):
        assert w.error is None and w.ok
    else:
        assert w.error == PF_P | (PF_W if write else 0) | (PF_U if user else 0)


@pytest.mark.parametrize("u,rw,wp,user,write", list(itertools.product((0, 1), repeat=5)))
def test_4mib_pages_take_permissions_from_the_directory_entry(u, rw, wp, user, write):
    pde = 0x00C00000 | PTE_P | PTE_PS | (PTE_U if u else 0) | (PTE_W if rw else 0)
    w = walk(tables(pde), lin=0x00765ABC, write=bool(write), user=bool(user), wp=bool(wp))
    assert w.large and w.pte is None and w.pte_pa is None
    assert w.frame == 0x00C00000 | 0x365000 and w.pa == 0x00F65ABC
    assert (w.user, w.rw) == (bool(u), bool(rw))
    allowed = _sdm_allows(u, rw, 1, 1, wp, user, write)
    assert (w.error is None) == allowed
    if not allowed:
        assert w.error == PF_P | (PF_W if write else 0) | (PF_U if user else 0)


def test_ps_is_ignored_without_cr4_pse():
    mem = tables(PTE_P | PTE_W, 0x55000 | PTE_P)
    mem.words[PD + 4] |= PTE_PS                         # PS set, but CR4.PSE clear: a table pointer
    w = walk(mem, pse=False)
    assert not w.large and w.pte_pa == PT + 4 and w.frame == 0x55000


def test_reserved_bits_of_a_4mib_entry_fault_with_rsvd():
    for bit in range(13, 22):
        w = walk(tables(0x00C00000 | PTE_P | PTE_PS | PTE_W | PTE_U | (1 << bit)), user=True)
        assert w.error == PF_P | PF_RSVD | PF_U
        assert w.frame == 0x00C00000 | 0x1000             # present: the frame is still named
    w = walk(tables(0x00C00000 | PTE_P | PTE_PS | (1 << 13)), write=True, user=True)
    assert w.error == PF_P | PF_RSVD | PF_W | PF_U     # RSVD with P, W and U as for any fault


# -- not present and error codes (SDM 4.7) -----------------------------------------------------

@pytest.mark.parametrize("write,user", list(itertools.product((False, True), repeat=2)))
def test_not_present_at_each_level(write, user):
    code = (PF_W if write else 0) | (PF_U if user else 0)
    w = walk(tables(PTE_W | PTE_U, 0x123000 | PTE_P | PTE_W | PTE_U), write=write, user=user)
    assert w.error == code and w.frame is None and w.pte is None and not w.present
    w = walk(tables(PTE_P | PTE_W | PTE_U, 0x123000 | PTE_W | PTE_U), write=write, user=user)
    assert w.error == code and w.frame is None and w.pte == 0x123000 | PTE_W | PTE_U
    assert w.pte_pa == PT + 4 and w.pde_pa == PD + 4
    w = walk(tables(0x00C00000 | PTE_PS | PTE_W | PTE_U), write=write, user=user)   # not-present 4 MiB entry
    assert w.error == code and w.frame is None
    fault = w.fault()
    assert (fault.vector, fault.error_code, fault.cr2) == (PF_VEC, code, 0x00401000)


def test_global_needs_cr4_pge_and_a20_masks_only_the_frame():
    mem = tables(PTE_P, 0x00100000 | PTE_P | PTE_G)
    assert walk(mem, pge=True).global_ and not walk(mem, pge=False).global_
    assert walk(mem, a20=A20_OFF).frame == 0
    mem = Mem({(PD | (1 << 20)) + 4: PT | PTE_P})       # a directory above 1 MiB: A20 does not move it
    w = mmu.translate_entries(mem.read, CR0_PG, PD | (1 << 20), 0, 0x00401000, a20=A20_OFF)
    assert w.pde_pa == (PD | (1 << 20)) + 4 and w.pte_pa == PT + 4


def test_the_walk_writes_nothing_and_reports_the_stores_an_access_implies():
    mem = tables(PTE_P | PTE_W, 0x123000 | PTE_P | PTE_W)
    before = dict(mem.words)
    w = walk(mem, write=True)
    assert mem.words == before and not mem.stores
    assert w.stores and not w.dirty
    assert mmu.set_accessed_dirty(mem.write, w.pde_pa, w.pde, w.pte_pa, w.pte, w.write) == 0x123000 | 0x63
    assert mem.stores == [(PD + 4, PT | PTE_P | PTE_W | PTE_A), (PT + 4, 0x123000 | PTE_P | PTE_W | PTE_A | PTE_D)]
    w = walk(mem, write=True)
    assert not w.stores and w.dirty                     # nothing left to set
    mem = tables(PTE_P | PTE_A, 0x123000 | PTE_P)         # a read of a clean page sets only A
    walk(mem).set_accessed_dirty(mem.write)
    assert mem.stores == [(PT + 4, 0x123000 | PTE_P | PTE_A)]
    mem = tables(0x00C00000 | PTE_P | PTE_PS | PTE_W)   # 4 MiB: one store with A and D
    walk(mem, write=True).set_accessed_dirty(mem.write)
    assert mem.stores == [(PD + 4, 0x00C00000 | PTE_P | PTE_PS | PTE_W | PTE_A | PTE_D)]


# -- the callers agree on random tables --------------------------------------------------------

FLAGS = PTE_P | PTE_W | PTE_U | PTE_A | PTE_D | PTE_G


@st.composite
def random_tables(draw):
    """A directory with 4 used entries (4 KiB tables at PT.., or 4 MiB pages,
    some not present, some with reserved bits) and, in each table, 24 random
    entries, plus one access."""
    words = {}
    for pdi in range(4):
        flags = draw(st.integers(0, FLAGS))
        if draw(st.integers(0, 3)) == 0:
            rsvd = (1 << draw(st.integers(13, 21))) if draw(st.integers(0, 5)) == 0 else 0
            words[PD + 4 * pdi] = (draw(st.integers(0, 1023)) << 22) | PTE_PS | rsvd | flags
        else:
            words[PD + 4 * pdi] = (PT + 0x1000 * pdi) | flags
        for pti in range(24):
            frame = draw(st.integers(0, GUEST_PAGES + 8)) << 12
            words[PT + 0x1000 * pdi + 4 * pti] = frame | draw(st.integers(0, FLAGS))
    cr0 = CR0_PG | draw(st.sampled_from((0, CR0_WP)))
    cr4 = draw(st.sampled_from((0, CR4_PSE, CR4_PGE, CR4_PSE | CR4_PGE)))
    lin = (draw(st.integers(0, 3)) << 22) | (draw(st.integers(0, 23)) << 12) | draw(st.integers(0, 0xFFF))
    return words, cr0, cr4, lin, draw(st.booleans()), draw(st.booleans()), draw(st.sampled_from((M32, A20_OFF)))


def processor(words, cr0, cr4, lin, write, user):
    """The processor's walk on a copy: ``(result or error code, stores, memory after)``."""
    mem = Mem(words)
    cpu = SimpleNamespace(mem=mem, cr0=cr0, cr3=PD, cr4=cr4)
    try:
        out = mmu.walk(cpu, lin, write, user)
    except CpuFault as f:
        assert (f.vector, f.cr2) == (PF_VEC, lin)
        out = f.error_code
    return out, mem.stores, mem.words


def guest_memory(words):
    host = PhysicalMemory(4 << 20)
    alloc = FrameAllocator(host)
    gmem = GuestPhysicalMemory(GUEST_PAGES * 4096, host, alloc.alloc(GUEST_PAGES))
    for pa, v in words.items():
        gmem.write(pa, 4, v)
    return gmem, alloc


def gmem_words(gmem, words):
    return {pa: gmem.read(pa, 4) for pa in words}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_tables())
def test_the_callers_agree(case):
    words, cr0, cr4, lin, write, user, a20 = case
    w = mmu.translate_entries(Mem(words).read, cr0, PD, cr4, lin, write, user)    # the processor's caller masks A20
    wa = mmu.translate_entries(Mem(words).read, cr0, PD, cr4, lin, write, user, a20)
    assert wa.frame == (None if w.frame is None else w.frame & a20) and wa[2:] == w[2:]

    # the processor's walk is the pure walk plus its stores, in the same order
    out, stores, after = processor(words, cr0, cr4, lin, write, user)
    mem = Mem(words)
    if w.error is not None:
        assert out == w.error and not stores
    else:
        new_leaf = mmu.set_accessed_dirty(mem.write, w.pde_pa, w.pde, w.pte_pa, w.pte, write)
        assert out == (w.frame, w.writable and bool(new_leaf & PTE_D), w.global_, w.large)
        assert stores == mem.stores and bool(stores) == w.stores

    # probe: the translation without faults, whatever the access
    hit = mmu.probe(Mem(words), PD, cr4, lin)
    assert hit == (None if w.frame is None else (w.pa, w.pde, w.pte))

    # the monitor's walk of the guest's tables: same fault, same stores, the same frame
    gmem, alloc = guest_memory(words)
    shadow = ShadowMmu(gmem, ShadowPool(alloc, 16), lambda gpfn: 0)
    try:
        got = shadow.walk_guest(cr0, PD, cr4, a20, lin, write, user)
    except CpuFault as f:
        assert (f.vector, f.error_code, f.cr2) == (PF_VEC, out, lin)
    else:
        assert w.error is None
        gpa_page, u_ok, w_ok, glob, large, table = got
        assert (gpa_page, glob, large) == (wa.frame, out[2], out[3]) and gpa_page == out[0] & a20
        assert u_ok == (not isinstance(processor(words, cr0, cr4, lin, False, True)[0], int))
        sup_write_wp = processor(words, cr0 | CR0_WP, cr4, lin, True, False)[0]
        assert w_ok == (not isinstance(sup_write_wp, int) and (w.dirty or write))
        assert table == (None if large else words[w.pde_pa] & 0xFFFFF000)
        assert gmem_words(gmem, words) == after                 # the guest's A/D bits as the processor sets them

    # the UI's row and translation
    gmem, _ = guest_memory(words)
    vcpu = SimpleNamespace(guest_cr=lambda n: {0: cr0, 3: PD, 4: cr4}[n], a20=a20)
    guest = SimpleNamespace(vcpu=vcpu, gmem=gmem, shadow=SimpleNamespace(entry=lambda gva, root=None: 0))
    row = inspect.walk(guest, lin)
    assert (row.pde, row.pte, row.gpa) == (w.pde, w.pte, wa.frame)
    assert inspect.translate(guest, lin) == wa.pa
    assert gmem_words(gmem, words) == words                     # looking changes nothing
    sup_read = processor(words, cr0, cr4, lin, False, False)[0]
    if not isinstance(sup_read, int):
        assert row.gpa == sup_read[0] & a20


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_tables())
def test_prefetch_fills_what_the_processor_would_allow(case):
    words, cr0, cr4, lin, write, _user, a20 = case
    pde = words[PD + 4 * (lin >> 22)]
    if not pde & PTE_P or (pde & PTE_PS and cr4 & CR4_PSE):
        return                                            # prefetch follows a fault on a 4 KiB page
    gmem, alloc = guest_memory(words)
    shadow = ShadowMmu(gmem, ShadowPool(alloc, 16), lambda gpfn: 0)
    cpu = SimpleNamespace(invlpg=lambda gva: None, shadow_root=shadow.current)
    state = SimpleNamespace(vcr0=cr0, vcr3=PD, vcr4=cr4, a20=a20)
    shadow._prefetch(cpu, state, lin, pde & 0xFFFFF000, write)
    pti = (lin >> 12) & 0x3FF
    expected = dict(words)                                # only the A bits of entries now cached change
    for i in range(max(0, pti - PREFETCH), pti + PREFETCH + 1):
        gva = (lin & 0xFFC00000) | (i << 12)
        entry = shadow.entry(gva)
        pte_pa = (pde & 0xFFFFF000) + 4 * i
        pte = words.get(pte_pa, 0)
        read = processor(words, cr0, cr4, gva, False, False)[0]
        if i == pti or not pte & PTE_P or (write and not pte & PTE_A) or isinstance(read, int) \
                or gmem.hpa_page((read[0] & a20) >> 12) is None:
            assert entry == 0
            continue
        expected[pte_pa] = pte | PTE_A                    # set before caching, as a processor does
        assert entry & 0xFFFFF000 == gmem.hpa_page((read[0] & a20) >> 12)
        assert bool(entry & PTE_U) == (not isinstance(processor(words, cr0, cr4, gva, False, True)[0], int))
        sup_write_wp = processor(words, cr0 | CR0_WP, cr4, gva, True, False)[0]
        assert bool(entry & PTE_W) == (not isinstance(sup_write_wp, int) and bool(pte & PTE_D))
        assert bool(entry & PTE_G) == read[2]
    assert gmem_words(gmem, words) == expected            # and the dirty bits are never set ahead
