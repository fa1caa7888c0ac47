"""Shadow page tables: the page map the processor really walks for a guest.

The guest writes its own two-level page tables in guest-physical memory and
loads their address into its (virtual) CR3.  The processor never sees them:
its real CR3 points at the shadow page directory the monitor owns, in host
frames from the monitor's pool.  Shadow entries map guest-virtual pages to
host-physical frames and are filled on demand:

- A shadow miss is a page fault in guest mode, which exits here
  (``page_fault``).  The monitor walks the guest's tables exactly as the
  processor would (``machine.mmu.walk`` on the guest's CR0/CR3/CR4, which
  checks permissions and sets the guest's accessed and dirty bits).  If the
  guest's tables forbid the access, the fault is *reflected*: delivered to
  the guest with the guest's error code and CR2.  Otherwise it is *hidden*:
  the monitor fills the shadow entry and the instruction restarts.
- Permissions are the guest's: U/S from the guest's directory and table
  entries; writable only when the guest allows the write *and* its entry is
  already dirty, so the first write faults and sets the guest's D bit as
  hardware would.  The real CR0.WP is always 1; a guest running with WP=0
  gets supervisor-writable, supervisor-only entries for read-only pages it
  writes from ring 0.
- Guest 4 MiB pages are split into 4 KiB shadow entries.
- Guest-physical pages that are not the guest's RAM (its devices, holes) are
  mapped to the monitor's device aperture (aperture.py), so every access to
  them is emulated against that guest's virtual device; never to RAM.
- Paging off: the shadow is an identity map of guest-physical memory (with
  the guest's A20 gate applied).

The shadow behaves as the guest's TLB: INVLPG drops one entry, a CR3 write
drops every entry not marked global (CR4.PGE), a change of paging mode drops
everything.  A neighbouring entry the guest has already used (accessed bit
set) is filled along with the faulting one (prefetch), which makes the
common case of touching the next page free.

Invariants:
- Every present shadow entry names a host frame of this guest's machine map
  or an aperture page: a guest can never reach a frame it does not own.
- Shadow tables come from the monitor's pool, which has a limit; when it is
  exhausted the guest's shadow is dropped and rebuilt on demand.
"""

from __future__ import annotations

from ..machine import mmu
from ..machine.consts import (CR0_PG, CR0_WP, CR4_PGE, CR4_PSE, PF_U, PF_VEC, PF_W, PTE_A, PTE_D, PTE_G,
                              PTE_P, PTE_PS, PTE_U, PTE_W)
from ..machine.errors import CpuFault
from .guestmem import GuestPhysicalMemory

PAGE = 4096
PREFETCH = 8           # neighbours on each side filled with a hidden fault


class PoolExhausted(Exception):
    pass


class ShadowPool:
    """Host frames for shadow tables, shared by every guest, with a limit."""

    def __init__(self, allocator, limit: int):
        self.allocator = allocator
        self.limit = limit
        self.used = 0
        self._spare: list[int] = []

    def take(self) -> int:
        if self._spare:
            self.used += 1
            return self._spare.pop()
        if self.used >= self.limit:
            raise PoolExhausted("shadow page pool exhausted")
        f = self.allocator.alloc_one()
        self.used += 1
        return f

    def give(self, hpfn: int) -> None:
        """Return a (zeroed by the caller) shadow frame."""
        self.used -= 1
        self._spare.append(hpfn)


class _GuestView:
    """What ``mmu.walk`` needs to walk the guest's own tables."""
    __slots__ = ("mem", "cr0", "cr3", "cr4")

    def __init__(self, mem, cr0, cr3, cr4):
        self.mem, self.cr0, self.cr3, self.cr4 = mem, cr0, cr3, cr4


class ShadowMmu:
    """One guest's shadow page directory and tables."""

    def __init__(self, gmem: GuestPhysicalMemory, pool: ShadowPool, aperture_hpa):
        """``aperture_hpa(gpfn)`` gives the host-physical page through which
        the guest's non-RAM page ``gpfn`` is emulated."""
        self.gmem = gmem
        self.host = gmem.host
        self.pool = pool
        self.aperture_hpa = aperture_hpa
        self.root = pool.take()                  # shadow page directory (host frame)
        self.tables: dict[int, int] = {}         # directory index -> shadow table host frame
        self.filled: dict[int, set[int]] = {}    # directory index -> filled table indices
        self.globals: dict[int, set[int]] = {}   # directory index -> indices of global entries
        self.large: set[int] = set()             # directory indices filled from guest 4 MiB pages
        self.fills = 0
        self.pool_flushes = 0

    @property
    def root_hpa(self) -> int:
        return self.root * PAGE

    # -- the guest's side ------------------------------------------------------------
    def walk_guest(self, cr0: int, cr3: int, cr4: int, a20: int, gva: int, write: bool, user: bool):
        """The guest's translation of ``gva`` for this access, as its
        processor would do it (sets its A/D bits; raises the guest's #PF).
        Returns ``(gpa_page, user_ok, write_ok, global_, large)``: the
        permissions are those the guest's entries grant."""
        if not cr0 & CR0_PG:
            return gva & 0xFFFFF000 & a20, True, True, False, False
        view = _GuestView(self.gmem, cr0, cr3, cr4)
        gpa_page, _writable, glob, large = mmu.walk(view, gva, write, user)
        pde = self.gmem.read((cr3 & 0xFFFFF000) | ((gva >> 20) & 0xFFC), 4)
        if large:
            u, w, dirty = pde & PTE_U, pde & PTE_W, pde & PTE_D
        else:
            pte = self.gmem.read((pde & 0xFFFFF000) | ((gva >> 10) & 0xFFC), 4)
            u, w, dirty = pde & pte & PTE_U, pde & pte & PTE_W, pte & PTE_D
        # writable in the shadow only once the guest's entry is dirty
        return gpa_page & a20, bool(u), bool(w) and bool(dirty), glob, large

    # -- filling ----------------------------------------------------------------------
    def page_fault(self, cpu, state, fault: CpuFault):
        """A page fault in guest mode (``state`` is the virtual CPU: its
        ``vcr0``/``vcr3``/``vcr4``/``a20`` are the guest's).  Returns None when hidden (the shadow
        now allows the access) or the fault to reflect into the guest."""
        gva = fault.cr2
        write = bool(fault.error_code & PF_W)
        user = bool(fault.error_code & PF_U)
        try:
            gpa_page, u_ok, w_ok, glob, large = self.walk_guest(state.vcr0, state.vcr3, state.vcr4, state.a20,
                                                                gva, write, user)
        except CpuFault as guest_fault:
            return guest_fault                              # the guest's own fault: reflect it
        if write and not w_ok:
            # The walk allowed a write the entries do not grant: ring 0 with
            # CR0.WP=0.  Supervisor-writable, supervisor-only in the shadow.
            w_ok, u_ok = True, False
        self._install(cpu, gva, gpa_page, u_ok, w_ok, glob, large)
        if not large and state.vcr0 & CR0_PG:
            self._prefetch(cpu, state, gva)
        self.fills += 1
        return None

    def host_page(self, gpa_page: int) -> int:
        """Host-physical page to map for guest-physical page ``gpa_page``:
        the guest's RAM frame; for firmware ROM, the read-only host frame
        holding it (stores to it are dropped by host memory); for devices
        and holes, an aperture page."""
        gpfn = gpa_page >> 12
        hpa = self.gmem.hpa_page(gpfn)
        if hpa is None:
            hpa = self.gmem.rom_hpa_page(gpfn)
        return hpa if hpa is not None else self.aperture_hpa(gpfn)

    def _install(self, cpu, gva: int, gpa_page: int, user: bool, write: bool, glob: bool, large: bool) -> None:
        """Fill the shadow entry for ``gva`` with these permissions."""
        pdi, pti = gva >> 22, (gva >> 12) & 0x3FF
        table = self.tables.get(pdi)
        if table is None:
            try:
                table = self.pool.take()
            except PoolExhausted:
                self.flush(cpu, keep_global=False)   # rebuild on demand from here
                self.pool_flushes += 1
                table = self.pool.take()             # raises again only if the pool is tiny
            self.tables[pdi] = table
            self.filled[pdi] = set()
            self.host.write(self.root_hpa + pdi * 4, 4, table * PAGE | PTE_P | PTE_W | PTE_U | PTE_A)
        if large:
            self.large.add(pdi)
        entry = self.host_page(gpa_page) | PTE_P | PTE_A
        if write:
            entry |= PTE_W | PTE_D
        if user:
            entry |= PTE_U
        if glob:
            entry |= PTE_G
            self.globals.setdefault(pdi, set()).add(pti)
        self.host.write(table * PAGE + pti * 4, 4, entry)
        self.filled[pdi].add(pti)
        cpu.invlpg(gva)                               # the CPU may hold the old entry

    def _prefetch(self, cpu, state, gva: int) -> None:
        """Fill neighbours the guest has already used (A set) from the same
        guest page table, without touching the guest's bits."""
        gmem = self.gmem
        pde = gmem.read((state.vcr3 & 0xFFFFF000) | ((gva >> 20) & 0xFFC), 4)
        if not pde & PTE_P or (pde & PTE_PS and state.vcr4 & CR4_PSE):
            return
        pdi, pti = gva >> 22, (gva >> 12) & 0x3FF
        filled = self.filled.get(pdi, ())
        pt_base = pde & 0xFFFFF000
        lo, hi = max(0, pti - PREFETCH), min(1023, pti + PREFETCH)
        ptes = gmem.read_bytes(pt_base + lo * 4, (hi - lo + 1) * 4)
        pge = state.vcr4 & CR4_PGE
        for i in range(lo, hi + 1):
            if i == pti or i in filled:
                continue
            pte = int.from_bytes(ptes[(i - lo) * 4:(i - lo) * 4 + 4], "little")
            if pte & (PTE_P | PTE_A) != PTE_P | PTE_A:
                continue
            gpa_page = pte & 0xFFFFF000 & state.a20
            if gmem.hpa_page(gpa_page >> 12) is None:
                continue                               # devices: only on demand
            self._install(cpu, (gva & 0xFFC00000) | (i << 12), gpa_page, bool(pde & pte & PTE_U),
                          bool(pde & pte & PTE_W) and bool(pte & PTE_D), bool(pte & PTE_G) and bool(pge),
                          False)

    # -- invalidation -------------------------------------------------------------------
    def invlpg(self, cpu, gva: int) -> None:
        pdi, pti = gva >> 22, (gva >> 12) & 0x3FF
        table = self.tables.get(pdi)
        if table is not None:
            if pdi in self.large:                      # a guest 4 MiB page: the whole region
                self._drop_table(pdi)
                cpu.flush_tlb(keep_global=False)
                return
            self.host.write(table * PAGE + pti * 4, 4, 0)
            self.filled[pdi].discard(pti)
            g = self.globals.get(pdi)
            if g:
                g.discard(pti)
        cpu.invlpg(gva)

    def flush(self, cpu, keep_global: bool) -> int:
        """Drop every entry (but the global ones when ``keep_global``);
        returns how many were dropped."""
        dropped = 0
        for pdi in list(self.tables):
            keep = self.globals.get(pdi) if keep_global else None
            if keep:
                table = self.tables[pdi]
                victims = self.filled[pdi] - keep
                for pti in victims:
                    self.host.write(table * PAGE + pti * 4, 4, 0)
                dropped += len(victims)
                self.filled[pdi] = set(keep)
            else:
                dropped += len(self.filled[pdi])
                self._drop_table(pdi)
        cpu.flush_tlb(keep_global=keep_global)
        return dropped

    def _drop_table(self, pdi: int) -> None:
        table = self.tables.pop(pdi)
        self.filled.pop(pdi, None)
        self.globals.pop(pdi, None)
        self.large.discard(pdi)
        self.host.write_bytes(table * PAGE, bytes(PAGE))
        self.host.write(self.root_hpa + pdi * 4, 4, 0)
        self.pool.give(table)

    def release(self) -> None:
        """Give every frame back to the pool (the guest is going away)."""
        for pdi in list(self.tables):
            self._drop_table(pdi)
        self.host.write_bytes(self.root_hpa, bytes(PAGE))
        self.pool.give(self.root)

    # -- inspection (UI, gdb stub, tests) ------------------------------------------------
    def entry(self, gva: int) -> int:
        """The shadow entry for ``gva`` (0 when not filled)."""
        table = self.tables.get(gva >> 22)
        if table is None:
            return 0
        return self.host.read(table * PAGE + ((gva >> 12) & 0x3FF) * 4, 4)

    def entries(self):
        """Every filled entry: (gva_page, entry)."""
        for pdi, idx in sorted(self.filled.items()):
            table = self.tables[pdi]
            for pti in sorted(idx):
                yield (pdi << 22) | (pti << 12), self.host.read(table * PAGE + pti * 4, 4)

    @property
    def table_count(self) -> int:
        return len(self.tables) + 1


__all__ = ["ShadowMmu", "ShadowPool", "PoolExhausted", "PF_VEC"]
