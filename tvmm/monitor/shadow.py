"""Shadow page tables: the page map the processor really walks for a guest.

The guest writes its own two-level page tables in guest-physical memory and
loads their address into its (virtual) CR3.  The processor never sees them:
its real CR3 points at the shadow page directory the monitor owns, in host
frames from the monitor's pool.  Shadow entries map guest-virtual pages to
host-physical frames and are filled on demand:

- A shadow miss is a page fault in guest mode, which exits here
  (``page_fault``).  The monitor walks the guest's tables exactly as the
  processor would (``machine.mmu.translate_entries`` on the guest's
  CR0/CR3/CR4, the page walk the processor itself uses, which checks
  permissions; then ``machine.mmu.set_accessed_dirty`` sets the guest's
  accessed and dirty bits; ``_fill_common`` is the same walk for the common
  case, reading the entries in place).  If the guest's tables forbid the access, the
  fault is *reflected*: delivered to the guest with the guest's error code
  and CR2.  Otherwise it is *hidden*:
  the monitor fills the shadow entry and the processor walks again: the
  access goes on where it was (``CPU._walk_faulted``; a fault raised
  elsewhere restarts its instruction).
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

One shadow *root* (page directory) is kept per guest page directory the
guest has loaded into CR3, so switching between processes does not rebuild
anything.  That is only correct if the shadows follow the guest's edits of
its tables, so every guest frame a shadow was built from (its directory and
its page tables) is *write-watched*: the processor keeps it out of its write
TLB, each store to it reaches the monitor, and the monitor drops the shadow
entries derived from the entry written (a page-table write exit).  The
shadows are then never staler than the guest's tables, which a real TLB is
allowed to be too; INVLPG still drops the entry, and a change of paging mode
(CR0.PG/WP, CR4.PSE/PGE, the A20 gate) drops every root.  The present
neighbours of the faulting entry in the same guest page table are filled
along with it (prefetch), which makes the common case of touching the next
page free.  A neighbour the guest has not used yet gets its accessed bit set
first, as a processor may do for a translation it caches speculatively
(SDM vol. 3, 4.10, "Details of TLB Use": it may cache translations "for
accesses that are a result of speculative execution that would never
actually occur", and sets the accessed flags before caching one); dirty
bits are never set ahead of a write.

Invariants:
- Every present shadow entry names a host frame of this guest's machine map
  or an aperture page: a guest can never reach a frame it does not own.
- Every shadow table of a paging guest is derived from one guest frame
  (directory entries from the guest's directory, table entries from one
  guest page table), and that frame is write-watched while the table lives.
- Shadow tables come from the monitor's pool, which has a limit; when it is
  exhausted the guest's other roots are dropped, then its current one, and
  rebuilt on demand.
"""

from __future__ import annotations

import struct

from ..machine import mmu
from ..machine.consts import (CR0_PG, CR4_PGE, CR4_PSE, PF_U, PF_VEC, PF_W, PTE_A, PTE_D, PTE_G, PTE_P,
                              PTE_PS, PTE_U, PTE_W)
from ..machine.errors import CpuFault
from .guestmem import GuestPhysicalMemory

PAGE = 4096
PREFETCH = 8           # neighbours on each side filled with a hidden fault
# Unpackers of n + 1 little-endian page-table entries (n < 2 * PREFETCH + 1).
_PTES = [struct.Struct(f"<{n + 1}I").unpack_from for n in range(2 * PREFETCH + 1)]
_U32 = struct.Struct("<I").unpack_from
FLOOD_LIMIT = 16       # writes to a watched guest table with no fill using it: stop shadowing it


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


class _Root:
    """One shadow page directory and its tables."""

    def __init__(self, key, frame: int):
        self.key = key                          # guest CR3 page, or None: the identity shadow
        self.frame = frame                      # host frame of the shadow directory
        self.tables: dict[int, int] = {}        # directory index -> shadow table host frame
        self.filled: dict[int, set[int]] = {}   # directory index -> filled table indices
        self.source: dict[int, int] = {}        # directory index -> host frame of the guest table it mirrors
        self.large: set[int] = set()            # directory indices filled from guest 4 MiB pages
        self.last_used = 0


class ShadowMmu:
    """One guest's shadow roots, one per guest page directory in use."""

    def __init__(self, gmem: GuestPhysicalMemory, pool: ShadowPool, aperture_hpa, on_table_write=None):
        """``aperture_hpa(gpfn)`` gives the host-physical page through which
        the guest's non-RAM page ``gpfn`` is emulated; ``on_table_write(pa,
        size)`` hears about each guest write to a shadowed table (an exit)."""
        self.gmem = gmem
        self.host = gmem.host
        self.pool = pool
        self.aperture_hpa = aperture_hpa
        self.on_table_write = on_table_write
        self.roots: dict = {}
        self.current: _Root = self._new_root(None)
        self.watch: dict[int, set] = {}          # host frame -> {(root key, directory index or -1)}
        self.cpu = None                          # the running vCPU; ``current`` is its root
        self.cpus: list = []                     # every vCPU of the guest (``cpu.shadow_root``: its root)
        self.fills = 0
        self.pool_flushes = 0
        self.root_switches = 0
        self.root_hits = 0
        self._clock = 0
        self._own_write = False
        self.flood: dict[int, int] = {}          # watched host frame -> writes since a fill used it
        self.unshadowed = 0
        self._ram32 = memoryview(self.host.ram).cast("I")   # host RAM as dwords (shadow entries)

    @property
    def root_hpa(self) -> int:
        return self.current.frame * PAGE

    def _new_root(self, key) -> _Root:
        root = _Root(key, self._take())
        self.roots[key] = root
        return root

    def _take(self) -> int:
        try:
            return self.pool.take()
        except PoolExhausted:
            pass
        self.pool_flushes += 1
        live = self._live()
        for key in [k for k, r in self.roots.items() if id(r) not in live]:
            self._drop_root(key)
        try:
            return self.pool.take()
        except PoolExhausted:
            if not live:
                raise
            for root in list(self.roots.values()):
                for pdi in list(root.tables):
                    self._drop_table(root, pdi)
            for cpu in self.cpus:
                cpu.flush_tlb(keep_global=False)
            return self.pool.take()             # raises only for an absurdly small pool

    def _live(self) -> set[int]:
        """ids of the roots some vCPU is using (never dropped)."""
        live = {id(c.shadow_root) for c in self.cpus if getattr(c, "shadow_root", None) is not None}
        cur = getattr(self, "current", None)
        if cur is not None:
            live.add(id(cur))
        return live

    def _users(self, root: _Root) -> list:
        """The vCPUs whose processor walks ``root`` (their TLBs may cache it)."""
        return [c for c in self.cpus if getattr(c, "shadow_root", None) is root]

    def activate(self, cpu) -> None:
        """``cpu`` is about to run (several vCPUs take turns): its root is current."""
        self.cpu = cpu
        root = getattr(cpu, "shadow_root", None)
        if root is not None:
            self.current = root

    # -- roots --------------------------------------------------------------------------
    def switch(self, cpu, state) -> int:
        """Make the shadow for the guest's current CR3 (or the identity
        shadow, paging off) current; returns its host-physical address."""
        if self.cpu is None:
            self.cpu = cpu
        if cpu not in self.cpus:
            self.cpus.append(cpu)
        key = (state.vcr3 & 0xFFFFF000) if state.vcr0 & CR0_PG else None
        root = self.roots.get(key)
        if root is None:
            root = self._new_root(key)
            if key is not None:
                self._watch_frame(key >> 12, (key, -1))
        else:
            self.root_hits += 1
            hpa = self.gmem.hpa_page(key >> 12) if key is not None else None
            if hpa is not None:
                self.flood.pop(hpa >> 12, None)  # the directory is in use again
        self.root_switches += 1
        self._clock += 1
        root.last_used = self._clock
        if cpu is self.cpu:
            self.current = root
        cpu.shadow_root = root
        return root.frame * PAGE

    def reset_all(self, cpu) -> int:
        """Drop every shadow entry (a paging-mode change on ``cpu``); returns
        the entries dropped.  Roots other vCPUs are using stay (emptied, to
        be refilled by their own walks); ``cpu``'s own root becomes the
        identity root, and the caller switches it to the right one next."""
        n = sum(len(f) for r in self.roots.values() for f in r.filled.values())
        if self.cpu is None:
            self.cpu = cpu
        if cpu not in self.cpus:
            self.cpus.append(cpu)
        mine = getattr(cpu, "shadow_root", None) or self.current
        others = {id(c.shadow_root) for c in self.cpus
                  if c is not cpu and getattr(c, "shadow_root", None) is not None}
        for key in list(self.roots):
            root = self.roots[key]
            if root is mine:
                continue
            if id(root) in others:
                for pdi in list(root.tables):
                    self._drop_table(root, pdi)
            else:
                self._drop_root(key)
        for pdi in list(mine.tables):
            self._drop_table(mine, pdi)
        if id(mine) not in others:
            if mine.key is not None:
                self._unwatch_frame(mine.key >> 12, (mine.key, -1))
            del self.roots[mine.key]
            identity = self.roots.pop(None, None)
            if identity is not None:            # another vCPU's identity root stays its own
                self.roots[None] = identity
                self.host.write_bytes(mine.frame * PAGE, bytes(PAGE))
                self.pool.give(mine.frame)
                mine = identity
            else:
                mine.key = None
                self.roots[None] = mine
        cpu.shadow_root = mine
        if cpu is self.cpu:
            self.current = mine
        for c in self.cpus:
            c.flush_tlb(keep_global=False)
        return n

    def _drop_root(self, key) -> None:
        root = self.roots.pop(key)
        for pdi in list(root.tables):
            self._drop_table(root, pdi)
        if key is not None:
            self._unwatch_frame(key >> 12, (key, -1))
        self.host.write_bytes(root.frame * PAGE, bytes(PAGE))
        self.pool.give(root.frame)

    def _drop_table(self, root: _Root, pdi: int) -> None:
        table = root.tables.pop(pdi)
        root.filled.pop(pdi, None)
        root.large.discard(pdi)
        src = root.source.pop(pdi, None)
        if src is not None:
            self._unwatch_host(src, (root.key, pdi))
        self.host.write_bytes(table * PAGE, bytes(PAGE))
        self.host.write(root.frame * PAGE + pdi * 4, 4, 0)
        self.pool.give(table)

    def release(self) -> None:
        """Give every frame back to the pool (the guest is going away)."""
        for key in list(self.roots):
            self._drop_root(key)
        assert not self.watch

    # -- write-watched guest tables ---------------------------------------------------------
    def _watch_frame(self, gpfn: int, tag) -> None:
        hpa = self.gmem.hpa_page(gpfn)
        if hpa is not None:
            self._watch_host(hpa >> 12, tag)

    def _unwatch_frame(self, gpfn: int, tag) -> None:
        hpa = self.gmem.hpa_page(gpfn)
        if hpa is not None:
            self._unwatch_host(hpa >> 12, tag)

    def _watch_host(self, hpfn: int, tag) -> None:
        tags = self.watch.get(hpfn)
        if tags is None:
            tags = self.watch[hpfn] = set()
            self.host.write_watch[hpfn] = self._table_written
            self.host.revoke_writes(hpfn)       # every processor's write TLB
        tags.add(tag)

    def _unwatch_host(self, hpfn: int, tag) -> None:
        tags = self.watch.get(hpfn)
        if tags is None:
            return
        tags.discard(tag)
        if not tags:
            del self.watch[hpfn]
            self.host.write_watch.pop(hpfn, None)
            self.flood.pop(hpfn, None)

    def _table_written(self, pa: int, size: int) -> None:
        """A store reached a guest directory or page table some shadow
        mirrors: drop what was derived from the entries it changed."""
        hpfn = pa >> 12
        tags = self.watch.get(hpfn)
        if not tags or self._own_write:
            return
        if self.on_table_write is not None:
            self.on_table_write(pa, size)
        flood = self.flood.get(hpfn, 0) + 1
        self.flood[hpfn] = flood
        if flood > FLOOD_LIMIT and self._unshadow(hpfn):
            return
        first, last = (pa & 0xFFF) >> 2, ((pa & 0xFFF) + size - 1) >> 2
        for key, pdi in list(tags):
            root = self.roots.get(key)
            if root is None:
                continue
            users = self._users(root)
            if pdi < 0:                         # directory entries changed: their tables go
                for i in range(first, last + 1):
                    if i in root.tables:
                        self._drop_table(root, i)
                        for cpu in users:
                            cpu.flush_tlb(keep_global=False)
            else:
                table = root.tables.get(pdi)
                if table is None:
                    continue
                filled = root.filled[pdi]
                for j in range(first, last + 1):
                    if j in filled:
                        filled.discard(j)
                        self.host.write(table * PAGE + j * 4, 4, 0)
                        for cpu in users:
                            cpu.invlpg((pdi << 22) | (j << 12))

    def _unshadow(self, hpfn: int) -> bool:
        """Write flooding: a watched frame keeps being written with no fill
        using it in between — most likely a freed page table now used as
        data.  Drop what was derived from it (its tables go, or the whole
        root if it is a directory other than the current one) and stop
        watching it.  Returns False when it must stay watched (it is the
        current directory)."""
        live = self._live()
        for key, pdi in list(self.watch.get(hpfn, ())):
            root = self.roots.get(key)
            if root is None:
                continue
            if pdi < 0:
                if id(root) in live:
                    self.flood[hpfn] = 0
                    return False
                self._drop_root(key)
            elif pdi in root.tables:
                self._drop_table(root, pdi)
                for cpu in self._users(root):
                    cpu.flush_tlb(keep_global=False)
        self.flood.pop(hpfn, None)
        self.unshadowed += 1
        return True

    # -- the guest's side ------------------------------------------------------------
    def walk_guest(self, cr0: int, cr3: int, cr4: int, a20: int, gva: int, write: bool, user: bool):
        """The guest's translation of ``gva`` for this access, as its
        processor would do it (``mmu.translate_entries`` on the guest's
        tables, then ``mmu.set_accessed_dirty`` on them; raises the guest's
        #PF).  Returns ``(gpa_page, user_ok, write_ok, global_, large,
        table_gpa)``: the permissions are those the guest's entries grant,
        write only once the leaf is dirty; ``table_gpa`` is the guest page
        table used (None for a 4 MiB page or paging off)."""
        if not cr0 & CR0_PG:
            return gva & 0xFFFFF000 & a20, True, True, False, False, None
        w = mmu.translate_entries(self.gmem.read, cr0, cr3, cr4, gva, write, user, a20)
        if w.error is not None:
            raise w.fault()
        if w.stores:
            w.set_accessed_dirty(self.gmem.write)
        # writable in the shadow only once the guest's entry is dirty (this write makes it so)
        return w.frame, w.user, w.rw and (w.dirty or write), w.global_, w.large, \
            None if w.large else w.pde & 0xFFFFF000

    # -- filling ----------------------------------------------------------------------
    def page_fault(self, cpu, state, fault: CpuFault):
        """A page fault in guest mode (``state`` is the virtual CPU: its
        ``vcr0``/``vcr3``/``vcr4``/``a20`` are the guest's).  Returns None
        when hidden (the shadow now allows the access) or the fault to
        reflect into the guest."""
        if cpu is not self.cpu:
            self.activate(cpu)
        gva = fault.cr2
        write = bool(fault.error_code & PF_W)
        user = bool(fault.error_code & PF_U)
        if self._fill_common(cpu, state, gva, write, user):
            self.fills += 1
            return None
        # The walk sets the guest's A/D bits: stores to watched tables that only
        # add permission-neutral bits, so nothing derived from them goes stale.
        self._own_write = True
        try:
            gpa_page, u_ok, w_ok, glob, large, table_gpa = self.walk_guest(
                state.vcr0, state.vcr3, state.vcr4, state.a20, gva, write, user)
        except CpuFault as guest_fault:
            return guest_fault                              # the guest's own fault: reflect it
        finally:
            self._own_write = False
        if write and not w_ok:
            # The walk allowed a write the entries do not grant: ring 0 with
            # CR0.WP=0.  Supervisor-writable, supervisor-only in the shadow.
            w_ok, u_ok = True, False
        self._install(cpu, gva, gpa_page, u_ok, w_ok, glob, large, table_gpa)
        if table_gpa is not None:
            self._prefetch(cpu, state, gva, table_gpa, write)
        self.fills += 1
        return None

    def _fill_common(self, cpu, state, gva: int, write: bool, user: bool) -> bool:
        """``page_fault``'s hidden case for the access nearly every fill is:
        paging on, a 4 KiB page whose directory, table and frame are guest
        RAM, and entries that allow the access.  The same walk as
        ``walk_guest`` (``mmu.translate_entries`` then
        ``mmu.set_accessed_dirty``: A in the directory entry, then A and, on
        a write, D in the table entry, each stored only if it changes), with
        the entries read in place from host RAM; then the same install and
        prefetch.  Returns False, having changed nothing, for anything else
        (a fault to reflect, a 4 MiB page, CR0.WP=0 writes, tables or frames
        outside RAM): the general path decides those.
        ``tests/monitor/test_shadow_fill.py`` holds the two paths to the same
        shadow entries and guest stores on random tables."""
        cr0 = state.vcr0
        if not cr0 & CR0_PG:
            return False
        gmem = self.gmem
        frames, dev = gmem.frames, gmem.device_pages
        ram = self.host.ram
        pde_gpa = (state.vcr3 & 0xFFFFF000) | ((gva >> 20) & 0xFFC)
        gpfn = pde_gpa >> 12
        if gpfn >= len(frames) or gpfn in dev:
            return False
        pde_hpa = (frames[gpfn] << 12) | (pde_gpa & 0xFFF)
        pde = _U32(ram, pde_hpa)[0]
        if not pde & PTE_P or (pde & PTE_PS and state.vcr4 & CR4_PSE):
            return False
        table_gpa = pde & 0xFFFFF000
        gpfn = table_gpa >> 12
        if gpfn >= len(frames) or gpfn in dev:
            return False
        pte_hpa = (frames[gpfn] << 12) | ((gva >> 10) & 0xFFC)
        pte = _U32(ram, pte_hpa)[0]
        if not pte & PTE_P:
            return False
        both = pde & pte
        if (user and not both & PTE_U) or (write and not both & PTE_W):
            return False          # reflected, or a ring-0 write with CR0.WP=0: the general path
        gpa_page = pte & 0xFFFFF000 & state.a20
        gpfn = gpa_page >> 12
        if gpfn >= len(frames) or gpfn in dev:
            return False
        self._own_write = True                         # A/D: permission-neutral (see page_fault)
        try:
            if not pde & PTE_A:
                self.host.write(pde_hpa, 4, pde | PTE_A)
            new = pte | PTE_A | (PTE_D if write else 0)
            if new != pte:
                self.host.write(pte_hpa, 4, new)
        finally:
            self._own_write = False
        self._install_hpa(cpu, gva, frames[gpfn] << 12, both & PTE_U != 0,
                          both & PTE_W != 0 and (write or pte & PTE_D != 0),
                          pte & PTE_G != 0 and state.vcr4 & CR4_PGE != 0, table_gpa)
        self._prefetch(cpu, state, gva, table_gpa, write)
        return True

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

    def _table_for(self, root: _Root, pdi: int, table_gpa) -> int:
        """The shadow table for directory index ``pdi``, created (and its
        guest source watched) if needed."""
        table = root.tables.get(pdi)
        if table is not None:
            src = root.source.get(pdi)
            if src is not None and src in self.flood:
                self.flood[src] = 0              # the guest still uses this table: not a flood
            return table
        table = self._take()
        if root.key is not None and root.key not in self.roots:
            raise AssertionError("shadow root vanished")
        root.tables[pdi] = table
        root.filled[pdi] = set()
        self.host.write(root.frame * PAGE + pdi * 4, 4, table * PAGE | PTE_P | PTE_W | PTE_U | PTE_A)
        if table_gpa is not None and root.key is not None:
            hpa = self.gmem.hpa_page(table_gpa >> 12)
            if hpa is not None:
                root.source[pdi] = hpa >> 12
                self._watch_host(hpa >> 12, (root.key, pdi))
        return table

    def _install(self, cpu, gva: int, gpa_page: int, user: bool, write: bool, glob: bool, large: bool,
                 table_gpa=None) -> None:
        """Fill ``cpu``'s root's entry for ``gva`` with these permissions."""
        if large:
            self._table_for(cpu.shadow_root, gva >> 22, table_gpa)
            cpu.shadow_root.large.add(gva >> 22)
        self._install_hpa(cpu, gva, self.host_page(gpa_page), user, write, glob, table_gpa)

    def _install_hpa(self, cpu, gva: int, hpa: int, user: bool, write: bool, glob: bool, table_gpa) -> None:
        """``_install`` with the host page already chosen (``host_page``).
        The entry is stored straight into the shadow table's host frame: a
        monitor frame no guest maps, reads or owns, so no write watch, dirty
        log or decoded code can be behind it."""
        root = cpu.shadow_root
        pdi, pti = gva >> 22, (gva >> 12) & 0x3FF
        table = self._table_for(root, pdi, table_gpa)
        entry = hpa | PTE_P | PTE_A
        if write:
            entry |= PTE_W | PTE_D
        if user:
            entry |= PTE_U
        if glob:
            entry |= PTE_G
        self._ram32[(table << 10) | pti] = entry
        root.filled[pdi].add(pti)
        cpu.invlpg(gva)                               # the CPU may hold the old entry

    def _prefetch(self, cpu, state, gva: int, table_gpa: int, write: bool = False) -> None:
        """Fill the present neighbours of ``gva`` from the same guest page
        table.  Each is a side-effect-free walk (``mmu.translate_entries``)
        reading the directory entry and the neighbours' entries fetched once;
        a neighbour it lets the processor cache whose accessed bit is clear
        gets it set in the guest's entry first (a speculative translation,
        see the module docstring).  After a write fault, neighbours the guest
        has not used are left alone: a fresh page written first (a kernel
        clearing or filling pages) would fault again for its dirty bit, so
        filling it early would only add work.  Device pages are left to
        demand faults."""
        gmem = self.gmem
        pdi, pti = gva >> 22, (gva >> 12) & 0x3FF
        filled = cpu.shadow_root.filled.get(pdi, ())
        lo = pti - PREFETCH if pti > PREFETCH else 0
        hi = pti + PREFETCH if pti < 1023 - PREFETCH else 1023
        table_hpa = gmem.hpa_page(table_gpa >> 12)
        if table_hpa is None:
            return                                     # a table outside RAM: no neighbours to trust
        entries = _PTES[hi - lo](self.host.ram, table_hpa + lo * 4)   # read in place
        need = PTE_P | PTE_A if write else PTE_P
        todo = [lo + k for k, e in enumerate(entries)
                if e & need == need and lo + k != pti and lo + k not in filled]
        if not todo:
            return
        cr0, cr3, cr4, a20 = state.vcr0, state.vcr3, state.vcr4, state.a20
        pde_pa = (cr3 & 0xFFFFF000) | ((gva >> 20) & 0xFFC)
        pde = gmem.read(pde_pa, 4)
        base = table_gpa + lo * 4

        end = base + 4 * len(entries)

        def read(pa: int, size: int) -> int:
            if pa == pde_pa:
                return pde
            if base <= pa < end:
                return entries[(pa - base) >> 2]
            return gmem.read(pa, size)                 # (the A20 gate moved the table)

        region = gva & 0xFFC00000
        for i in todo:
            lin = region | (i << 12)
            w = mmu.translate_entries(read, cr0, cr3, cr4, lin, False, False, a20)
            if w.frame is None or gmem.hpa_page(w.frame >> 12) is None:
                continue                               # not cacheable, or a device: only on demand
            if not w.pte & PTE_A:
                self._own_write = True                 # a permission-neutral bit: nothing goes stale
                try:
                    gmem.write(w.pte_pa, 4, w.pte | PTE_A)
                finally:
                    self._own_write = False
            self._install(cpu, lin, w.frame, w.user, w.rw and w.dirty, w.global_, False, table_gpa)

    # -- invalidation -------------------------------------------------------------------
    def invlpg(self, cpu, gva: int) -> None:
        root = cpu.shadow_root
        pdi, pti = gva >> 22, (gva >> 12) & 0x3FF
        table = root.tables.get(pdi)
        if table is not None:
            if pdi in root.large:                      # a guest 4 MiB page: the whole region
                self._drop_table(root, pdi)
                for c in self._users(root) or [cpu]:
                    c.flush_tlb(keep_global=False)
                return
            self.host.write(table * PAGE + pti * 4, 4, 0)
            root.filled[pdi].discard(pti)
        cpu.invlpg(gva)

    # -- inspection (UI, gdb stub, tests) ------------------------------------------------
    def entry(self, gva: int, root: _Root | None = None) -> int:
        """The current (or given) root's entry for ``gva`` (0 when not filled)."""
        root = root or self.current
        table = root.tables.get(gva >> 22)
        if table is None:
            return 0
        return self.host.read(table * PAGE + ((gva >> 12) & 0x3FF) * 4, 4)

    def entries(self, root: _Root | None = None):
        """Every filled entry of the current (or given) root: (gva_page, entry)."""
        root = root or self.current
        for pdi, idx in sorted(root.filled.items()):
            table = root.tables[pdi]
            for pti in sorted(idx):
                yield (pdi << 22) | (pti << 12), self.host.read(table * PAGE + pti * 4, 4)

    @property
    def table_count(self) -> int:
        return sum(len(r.tables) + 1 for r in self.roots.values())


__all__ = ["ShadowMmu", "ShadowPool", "PoolExhausted", "PF_VEC"]
