"""Two-level IA-32 paging (SDM vol. 3, 4.3): the page walk and its faults.

``walk(cpu, lin, write, user)`` translates one linear address through the
tables that CR3 points to, exactly as the processor's page-miss handler does:
it checks present, U/S and R/W at both levels (CR0.WP for supervisor writes),
sets the accessed bit in each entry it uses and the dirty bit on a write,
and raises #PF with the architectural error code and CR2 on failure.

It returns ``(pa_page, writable, global_, large)`` where ``pa_page`` is the
physical address of the 4 KiB frame holding ``lin`` and ``writable`` says
whether a write at this privilege would be allowed *without another walk*
(the dirty bit is already set).  The caller owns the TLB.
"""

from __future__ import annotations

from .consts import (CR0_WP, CR4_PGE, CR4_PSE, PF_P, PF_RSVD, PF_U, PF_W, PF_VEC, PTE_A, PTE_D,
                     PTE_G, PTE_P, PTE_PS, PTE_U, PTE_W)
from .errors import CpuFault


def _fault(lin: int, write: bool, user: bool, present: bool, rsvd: bool = False):
    code = (PF_P if present else 0) | (PF_W if write else 0) | (PF_U if user else 0)
    if rsvd:
        code |= PF_RSVD
    raise CpuFault(PF_VEC, code, lin)


def walk(cpu, lin: int, write: bool, user: bool):
    mem = cpu.mem
    pde_pa = (cpu.cr3 & 0xFFFFF000) | ((lin >> 20) & 0xFFC)
    pde = mem.read(pde_pa, 4)
    if not pde & PTE_P:
        _fault(lin, write, user, False)
    wp = cpu.cr0 & CR0_WP
    if pde & PTE_PS and cpu.cr4 & CR4_PSE:
        if pde & 0x003FE000:
            _fault(lin, write, user, True, rsvd=True)
        allow_user = pde & PTE_U
        allow_write = pde & PTE_W
        if user and not allow_user:
            _fault(lin, write, user, True)
        if write and not allow_write and (user or wp):
            _fault(lin, write, user, True)
        new = pde | PTE_A | (PTE_D if write else 0)
        if new != pde:
            mem.write(pde_pa, 4, new)
        pa_page = (pde & 0xFFC00000) | (lin & 0x003FF000)
        writable = bool(new & PTE_D) and (bool(allow_write) or (not user and not wp))
        glob = bool(pde & PTE_G) and bool(cpu.cr4 & CR4_PGE)
        return pa_page, writable, glob, True
    pte_pa = (pde & 0xFFFFF000) | ((lin >> 10) & 0xFFC)
    pte = mem.read(pte_pa, 4)
    if not pte & PTE_P:
        _fault(lin, write, user, False)
    allow_user = pde & pte & PTE_U
    allow_write = pde & pte & PTE_W
    if user and not allow_user:
        _fault(lin, write, user, True)
    if write and not allow_write and (user or wp):
        _fault(lin, write, user, True)
    if not pde & PTE_A:
        mem.write(pde_pa, 4, pde | PTE_A)
    new = pte | PTE_A | (PTE_D if write else 0)
    if new != pte:
        mem.write(pte_pa, 4, new)
    writable = bool(new & PTE_D) and (bool(allow_write) or (not user and not wp))
    glob = bool(pte & PTE_G) and bool(cpu.cr4 & CR4_PGE)
    return pte & 0xFFFFF000, writable, glob, False


def probe(mem, cr3: int, cr4: int, lin: int):
    """Translate without side effects or faults (for debuggers and the UI).

    Returns ``(pa, pde, pte_or_None)`` or None when not present.
    """
    pde = mem.read((cr3 & 0xFFFFF000) | ((lin >> 20) & 0xFFC), 4)
    if not pde & PTE_P:
        return None
    if pde & PTE_PS and cr4 & CR4_PSE:
        return (pde & 0xFFC00000) | (lin & 0x3FFFFF), pde, None
    pte = mem.read((pde & 0xFFFFF000) | ((lin >> 10) & 0xFFC), 4)
    if not pte & PTE_P:
        return None
    return (pte & 0xFFFFF000) | (lin & 0xFFF), pde, pte
