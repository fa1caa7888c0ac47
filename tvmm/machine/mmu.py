"""Two-level IA-32 paging (SDM vol. 3, 4.3): the page walk and its faults.

There is one page walk and everything that walks page tables uses it: the
processor (``walk``, on every TLB miss), debuggers (``probe``), the monitor
walking a guest's own tables (``monitor.shadow``: hidden or reflected
faults and prefetch) and the UI's page rows (``monitor.inspect``).

``translate_entries(read, cr0, cr3, cr4, lin, write, user, a20) -> Walk``
reads the directory entry and (4 KiB pages) the table entry for ``lin``
through ``read(pa, 4)`` and changes nothing.  The ``Walk`` holds the entries
and their physical addresses, the frame, large/global, the permissions the
entries grant (U/S and R/W combined over both levels, and CR0.WP applied for
this access's privilege), and the #PF error code when this access faults
(SDM 4.6, 4.7): a not-present entry at either level, U/S and R/W at both
levels (a supervisor write to a read-only page faults only with CR0.WP),
reserved bits 21:13 in a 4 MiB directory entry.

``set_accessed_dirty(write, pde_pa, pde, pte_pa, pte, write_access)`` makes
the stores the processor makes for an allowed access: A in each entry used,
D in the leaf on a write, the directory entry first, an entry only if it
changes (``Walk.stores`` says whether there is any).

``walk(cpu, lin, write, user)`` is the processor's: the two together, with
#PF raised (CR2 = ``lin``), written out as one function (the same statements,
computing only what the processor needs) because it runs on every TLB miss.
It returns ``(pa_page, writable, global_, large)`` where ``pa_page`` is the
physical address of the 4 KiB frame holding ``lin`` and ``writable`` says
whether a write at this privilege would be allowed *without another walk*
(the dirty bit is already set).  The caller owns the TLB.
"""

from __future__ import annotations

from operator import itemgetter

from .consts import (CR0_WP, CR4_PGE, CR4_PSE, M32, PF_P, PF_RSVD, PF_U, PF_VEC, PF_W, PTE_A, PTE_D, PTE_G,
                     PTE_P, PTE_PS, PTE_U, PTE_W)
from .errors import CpuFault

PSE_RESERVED = 0x003FE000        # bits 21:13 of a 4 MiB directory entry (no PSE-36)
_new = tuple.__new__


class Walk(tuple):
    """One page walk's outcome (``translate_entries``); nothing was written.
    A tuple, cheap to build (the monitor's prefetch walks up to 16 per
    fault), with names:

    - ``error`` — None when the access is allowed, else the #PF error code
      (P, W, U, RSVD).
    - ``frame`` — physical address of the 4 KiB frame holding ``lin`` (the
      A20 mask applied), or None when the leaf entry is not present.  It is
      set even when this access faults on its permissions.
    - ``writable`` — a write at this access's privilege is allowed by the
      entries: ``rw``, or a supervisor access with CR0.WP clear.
    - ``dirty`` — the leaf's D bit as read (before this access).
    - ``stores`` — the allowed access sets an A or D bit the entries lack
      (``set_accessed_dirty`` has something to write).
    - ``global_`` — the leaf's G bit with CR4.PGE; ``large`` — a 4 MiB page
      (PDE.PS with CR4.PSE).
    - ``pde_pa``, ``pde`` — the directory entry used and where it is.
    - ``pte_pa``, ``pte`` — the table entry and where it is; None for a
      4 MiB page or a directory entry that is not present.
    - ``user`` — the entries allow CPL 3 accesses (U/S at both levels).
    - ``rw`` — the entries allow writes (R/W at both levels).
    - ``lin``, ``write``, ``user_access`` — the access walked for.
    """

    __slots__ = ()
    FIELDS = ("error", "frame", "writable", "dirty", "stores", "global_", "large", "pde_pa", "pde", "pte_pa", "pte",
              "user", "rw", "lin", "write", "user_access")

    error = property(itemgetter(0))
    frame = property(itemgetter(1))
    writable = property(itemgetter(2))
    dirty = property(itemgetter(3))
    stores = property(itemgetter(4))
    global_ = property(itemgetter(5))
    large = property(itemgetter(6))
    pde_pa = property(itemgetter(7))
    pde = property(itemgetter(8))
    pte_pa = property(itemgetter(9))
    pte = property(itemgetter(10))
    user = property(itemgetter(11))
    rw = property(itemgetter(12))
    lin = property(itemgetter(13))
    write = property(itemgetter(14))
    user_access = property(itemgetter(15))

    @property
    def ok(self) -> bool:
        return self[0] is None

    @property
    def present(self) -> bool:
        """Both levels present (the entries name a frame)."""
        return self[1] is not None

    @property
    def pa(self) -> int | None:
        """The physical address of ``lin`` itself (None when not present)."""
        return None if self[1] is None else self[1] | (self.lin & 0xFFF)

    @property
    def leaf(self) -> int | None:
        """The entry that names the frame: the PTE, or the PDE of a 4 MiB page."""
        return self.pde if self.large else self.pte

    def fault(self) -> CpuFault:
        """The #PF this walk raises (``error`` must not be None)."""
        return CpuFault(PF_VEC, self.error, self.lin)

    def set_accessed_dirty(self, write) -> int:
        """``set_accessed_dirty`` for this (allowed) access."""
        return set_accessed_dirty(write, self.pde_pa, self.pde, self.pte_pa, self.pte, self.write)

    def __repr__(self) -> str:
        return "Walk(" + ", ".join(f"{n}={v:#x}" if type(v) is int else f"{n}={v}"
                                   for n, v in zip(self.FIELDS, self)) + ")"


def translate_entries(read, cr0: int, cr3: int, cr4: int, lin: int, write: bool = False, user: bool = False,
                      a20: int = M32) -> Walk:
    """The page walk for one access (``write``, at CPL 3 when ``user``),
    without side effects: ``read(pa, 4)`` reads the entries (a memory's
    ``read``).  ``a20`` masks the frame, not the entries' addresses (as the
    processor's ``walk``, whose caller masks the frame)."""
    lin &= M32
    pde_pa = (cr3 & 0xFFFFF000) | ((lin >> 20) & 0xFFC)
    pde = read(pde_pa, 4)
    if not pde & PTE_P:
        return _new(Walk, ((PF_W if write else 0) | (PF_U if user else 0), None, False, False, False, False, False,
                           pde_pa, pde, None, None, False, False, lin, write, user))
    if pde & PTE_PS and cr4 & CR4_PSE:
        u = pde & PTE_U != 0
        rw = pde & PTE_W != 0
        writable = rw or (not user and not cr0 & CR0_WP)
        if pde & PSE_RESERVED:
            error = PF_P | PF_RSVD | (PF_W if write else 0) | (PF_U if user else 0)
        elif (user and not u) or (write and not writable):
            error = PF_P | (PF_W if write else 0) | (PF_U if user else 0)
        else:
            error = None
        return _new(Walk, (error, ((pde & 0xFFC00000) | (lin & 0x003FF000)) & a20, writable, pde & PTE_D != 0,
                           pde & PTE_A == 0 or (write and pde & PTE_D == 0),
                           pde & PTE_G != 0 and cr4 & CR4_PGE != 0, True, pde_pa, pde, None, None, u, rw, lin,
                           write, user))
    pte_pa = (pde & 0xFFFFF000) | ((lin >> 10) & 0xFFC)
    pte = read(pte_pa, 4)
    if not pte & PTE_P:
        return _new(Walk, ((PF_W if write else 0) | (PF_U if user else 0), None, False, False, False, False, False,
                           pde_pa, pde, pte_pa, pte, False, False, lin, write, user))
    u = pde & pte & PTE_U != 0
    rw = pde & pte & PTE_W != 0
    writable = rw or (not user and not cr0 & CR0_WP)
    if (user and not u) or (write and not writable):
        error = PF_P | (PF_W if write else 0) | (PF_U if user else 0)
    else:
        error = None
    return _new(Walk, (error, pte & 0xFFFFF000 & a20, writable, pte & PTE_D != 0,
                       pde & pte & PTE_A == 0 or (write and pte & PTE_D == 0),
                       pte & PTE_G != 0 and cr4 & CR4_PGE != 0, False, pde_pa, pde, pte_pa, pte, u, rw, lin,
                       write, user))


def set_accessed_dirty(write, pde_pa: int, pde: int, pte_pa: int | None, pte: int | None, write_access: bool) -> int:
    """Make the stores the processor makes for an allowed access through
    these entries (``write(pa, 4, value)``; ``pte_pa`` None: a 4 MiB page):
    A in the directory entry, then A (and D on a write) in the table entry;
    A (and D) in a 4 MiB page's directory entry.  An entry is written only
    if it changes.  Returns the leaf's new value."""
    if pte_pa is None:
        new = pde | PTE_A | (PTE_D if write_access else 0)
        if new != pde:
            write(pde_pa, 4, new)
        return new
    if not pde & PTE_A:
        write(pde_pa, 4, pde | PTE_A)
    new = pte | PTE_A | (PTE_D if write_access else 0)
    if new != pte:
        write(pte_pa, 4, new)
    return new


def walk(cpu, lin: int, write: bool, user: bool):
    """The processor's page-miss handler: ``translate_entries`` on its
    CR0/CR3/CR4, #PF on a fault, else ``set_accessed_dirty``.

    This runs on every TLB miss, where calling the two (a call, a tuple) adds
    a fifth to a walk's cost, so it is ``translate_entries`` with the stores of
    ``set_accessed_dirty`` inlined: the same statements in the same order,
    computing only what the processor uses.  ``tests/machine/test_walk.py``
    checks that the two agree on random tables (results, error codes, and the
    stores and their order)."""
    mem = cpu.mem
    # entries in plain RAM (nearly always) are read as items of the RAM's
    # dword view; anything else through memory's slow path
    ram_pages, mmio = mem.ram_pages, mem.mmio_pages
    pde_pa = (cpu.cr3 & 0xFFFFF000) | ((lin >> 20) & 0xFFC)
    pfn = pde_pa >> 12
    pde = cpu.ram32[pde_pa >> 2] if pfn < ram_pages and pfn not in mmio else mem.read(pde_pa, 4)
    if not pde & PTE_P:
        raise CpuFault(PF_VEC, (PF_W if write else 0) | (PF_U if user else 0), lin)
    if pde & PTE_PS and cpu.cr4 & CR4_PSE:
        writable = pde & PTE_W != 0 or (not user and not cpu.cr0 & CR0_WP)
        if pde & PSE_RESERVED:
            raise CpuFault(PF_VEC, PF_P | PF_RSVD | (PF_W if write else 0) | (PF_U if user else 0), lin)
        if (user and not pde & PTE_U) or (write and not writable):
            raise CpuFault(PF_VEC, PF_P | (PF_W if write else 0) | (PF_U if user else 0), lin)
        new = pde | PTE_A | (PTE_D if write else 0)
        if new != pde:
            mem.write(pde_pa, 4, new)
        return ((pde & 0xFFC00000) | (lin & 0x003FF000), writable and new & PTE_D != 0,
                pde & PTE_G != 0 and cpu.cr4 & CR4_PGE != 0, True)
    pte_pa = (pde & 0xFFFFF000) | ((lin >> 10) & 0xFFC)
    pfn = pte_pa >> 12
    pte = cpu.ram32[pte_pa >> 2] if pfn < ram_pages and pfn not in mmio else mem.read(pte_pa, 4)
    if not pte & PTE_P:
        raise CpuFault(PF_VEC, (PF_W if write else 0) | (PF_U if user else 0), lin)
    writable = pde & pte & PTE_W != 0 or (not user and not cpu.cr0 & CR0_WP)
    if (user and not pde & pte & PTE_U) or (write and not writable):
        raise CpuFault(PF_VEC, PF_P | (PF_W if write else 0) | (PF_U if user else 0), lin)
    if not pde & PTE_A:
        mem.write(pde_pa, 4, pde | PTE_A)
    new = pte | PTE_A | (PTE_D if write else 0)
    if new != pte:
        mem.write(pte_pa, 4, new)
    return pte & 0xFFFFF000, writable and new & PTE_D != 0, pte & PTE_G != 0 and cpu.cr4 & CR4_PGE != 0, False


def probe(mem, cr3: int, cr4: int, lin: int):
    """Translate without side effects or faults (for debuggers and the UI).

    Returns ``(pa, pde, pte_or_None)`` or None when not present.
    """
    w = translate_entries(mem.read, 0, cr3, cr4, lin)
    if w.frame is None:
        return None
    return w.frame | (lin & 0xFFF), w.pde, w.pte
