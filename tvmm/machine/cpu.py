"""The IA-32 processor: architectural state, memory access, and the run loop.

Invariants:
- Guest-visible time is ``icount``, the number of retired instructions (each
  iteration of a REP string instruction counts as one).  Nothing else in here
  reads a clock or a random source.
- ``run(max_insns)`` retires at most ``max_insns`` instructions and returns a
  ``Stop``.  It never lets a Python exception out: a guest fault becomes a
  guest exception, a triple fault a SHUTDOWN stop, and a bug in tvmm an ERROR
  stop that leaves this CPU dead (with its state and the faulting bytes in the
  report) and touches nothing else.
- Decoded code is cached in blocks keyed by *physical* address and code size.
  A block never crosses a 4 KiB page, ends after any instruction flagged "j"
  in the opcode table, and a REP string instruction is always a block of its
  own.  Pages holding decoded code are kept out of the write TLB, so every
  store to them takes the slow path through ``PhysicalMemory.write``, which
  drops the page's blocks (and ends the running block after the store).
- The software TLB maps a linear page number to ``delta = pa - la`` for RAM
  pages only, in four lists (read/write x supervisor/user).  ``tlb_r``/
  ``tlb_w`` point at the pair for the current CPL.  A write entry exists only
  when the guest's PTE already has D set and the write is allowed.
- Privileged operations (control registers, INVLPG, HLT, CPUID, MSRs, REP
  INS/OUTS, exceptions before delivery) go through ``self.ops``, fixed at
  construction: ``native.NATIVE_OPS`` for the bare processor, the monitor's
  exits for a guest's virtual CPU.  The run loop and memory access never
  consult it.
"""

from __future__ import annotations

import struct
import sys
import weakref

from . import debug, interrupts, segments
from .consts import (AC, CR0_PE, CR0_PG, CR4_PGE, CS, DB, DF, DR6_FIXED, EFLAGS_FIXED, GP, ID, IF, IOPL,
                     M32, MSR_APIC_BASE, NMI, NT, RF, SS, SS_SEG, TF, VM)
from .decoder import NeedBytes, bind, decode
from .errors import CpuFault, Shutdown, Stop, StopKind
from .flags import materialize
from .mmu import walk
from .native import CPUID_SIGNATURE, NATIVE_OPS
from .x87.state import FPU
from .translate import DEAD_XPAGE, HOT, Block, translate_block
from .vmx import MAX_DELIVERY_RETRIES

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
u16_from = _U16.unpack_from
u32_from = _U32.unpack_from
pair_from = struct.Struct("<II").unpack_from
p8_into = _U8.pack_into
p16_into = _U16.pack_into
p32_into = _U32.pack_into

TLB_ENTRIES = 1 << 20
MAX_BLOCK = 32
# Decoded instructions the block cache may hold (about 1 KiB each) before it
# starts over: code that runs once through fresh memory (a guest gone wild in
# zero-filled RAM) must not grow tvmm without bound (issue 15).
MAX_CACHED_INSNS = 1 << 16
# Block-cache keys are ``pa << 33 | eip << 1 | code32``.  A block whose one
# instruction runs onto the next page (``CPU._build_block``) also depends on
# the frame that page maps to: its key adds ``(pfn2 + 1) << CROSS_SHIFT``, so
# a remapped second page misses, and it is registered under both frames so a
# store to either drops it.  ``CROSS_KEY_MASK`` recovers the plain key.
CROSS_SHIFT = 96
CROSS_KEY_MASK = (1 << CROSS_SHIFT) - 1
# Translation backs off on a page whose translations stores keep dropping, up
# to HOT << MAX_THRASH executions (see ``CPU._thrash``).
MAX_THRASH = 10
# EFLAGS bits the processor lets anything change.  VM is among them for IRET
# from CPL 0 and task switches only: POPF's mask (ops/stack.py) and every
# other IRET mask leave it out, and ``set_eflags`` does unless asked.  VIF and
# VIP are not: the VME extensions are not modelled.
EFLAGS_WRITABLE = 0x00000FD5 | TF | IF | DF | IOPL | NT | RF | VM | AC | ID


# TLB lists are 4 x 2^20 entries: allocating them costs milliseconds, so the
# lists of CPUs that have been freed are cleared (only the filled entries)
# and reused.
_TLB_POOL: list = []


def _tlb_acquire():
    if _TLB_POOL:
        return _TLB_POOL.pop()
    return tuple([None] * TLB_ENTRIES for _ in range(4)), {}


def _tlb_release(lists, filled) -> None:
    for vpn in filled:
        for t in lists:
            t[vpn] = None
    filled.clear()
    if len(_TLB_POOL) < 8:
        _TLB_POOL.append((lists, filled))


class NullIO:
    """Port space with nothing attached: reads float high, writes vanish."""

    def port_in(self, port: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def port_out(self, port: int, size: int, value: int) -> None:
        pass


_NO_PAGES: frozenset = frozenset()

if sys.byteorder != "little":         # CPU.ram16/ram32 hold guest items in the host's order
    raise ImportError("tvmm runs on little-endian hosts only")


class CPU:
    def __init__(self, mem, io=None, cpuid_hypervisor: bool = False, ops=None):
        self.mem = mem
        self.ram = mem.ram
        # RAM as 16- and 32-bit items in the host's order (little-endian,
        # checked at import, so the guest's order too), for aligned words
        # and dwords of translated code and of rd32/wr32/push32
        self.ram16 = memoryview(self.ram).cast("H")
        self.ram32 = memoryview(self.ram).cast("I")
        self.io = io if io is not None else NullIO()
        # the privileged operations (native.py): the architecture, or a monitor's exits
        self.ops = ops if ops is not None else NATIVE_OPS
        self.cpuid_hypervisor = cpuid_hypervisor
        mem.add_invalidator(self._invalidate_code_page)
        mem.add_write_protector(self.write_protect, self.drop_all_write_entries)
        lists, self._tlb_filled = _tlb_acquire()   # _tlb_filled: vpn -> global
        self._tlb_rs, self._tlb_ws, self._tlb_ru, self._tlb_wu = lists
        weakref.finalize(self, _tlb_release, lists, self._tlb_filled)
        self._tlb_large: set[int] = set()           # 4 MiB regions (vpn >> 10) filled from large pages
        self._wmap: dict[int, set[int]] = {}        # pfn -> vpns with a write entry
        # write entries taken away by dirty logging (vpn -> (supervisor delta,
        # user delta, pfn)): the translation is still valid, so the next store
        # logs the frame and puts the entry back without a page walk (as KVM
        # clears only the W bit of a shadow entry)
        self._wprot: dict[int, tuple] = {}
        self._tlb_io: dict[int, int] = {}           # (vpn << 2 | user << 1 | write) -> device page
        # Virtual-APIC reads: the local APIC's frame (host-physical; -1: none)
        # and its static registers (``LocalApic.vregs``, offset -> value).  A
        # linear page found to map that frame is remembered in ``_vapic_key``
        # (vpn << 1 | user; -1 after a TLB flush), and an aligned 32-bit read
        # there of a static register costs a dict lookup, not an MMIO exit.
        self.vapic_pfn = -1
        self.vapic: dict[int, int] = {}
        self._vapic_key = -1
        self.vapic_reads = 0
        self.blocks: dict[int, list] = {}
        self._page_blocks: dict[int, list[int]] = {}
        # Frames whose translated code stores have dropped, and how often:
        # code sharing a page with data a program writes (small user
        # programs) would otherwise be recompiled after every store; each
        # time, blocks there must run twice as often before translation.
        self._thrash: dict[int, int] = {}
        self._running: list | None = None          # the block being executed
        self._running_key = -1
        self._cur_block = None                     # the translated block running, if any
        self.block_abort = False                   # set when a translated block must stop early
        self.translate_blocks = True               # compile hot blocks (see translate.py)
        self.hot = HOT                             # executions before a block is compiled
        self._running_pfn = -1
        self.flat = False                          # ES/CS/SS/DS flat 32-bit (segments._flat)
        self.nonflat = 0xF                         # bit n: segment n (ES CS SS DS) is not flat
        self.watch_vpns: set[int] = set()          # pages kept out of the TLB (data breakpoints)
        self.read_watch = False                    # a load may hit one (debug.reads_watched)
        self.breakpoints: set[int] = set()         # debugger breakpoints, linear addresses
        self.bp_pages: frozenset | set = _NO_PAGES  # their pages (kept out of the TLB, see _refresh)
        self.watchpoints: list = []                # debugger watchpoints: (lin, len, kind)
        self.intr = False                          # INTR line from the interrupt controller
        self.intr_ack = None                       # callable -> vector
        self.intercept = None                      # see interrupts.deliver
        self.dead: Stop | None = None
        self.index = 0                             # which processor of its machine (APIC ID)
        self.wait_sipi = False                     # an application processor before its STARTUP IPI
        self.nmi_pending = False
        self.ferr = None                           # FERR# output (an IrqLine: IRQ 13 on a PC), see ops/x87.py
        self.reset()

    # ------------------------------------------------------------------ reset
    def reset(self) -> None:
        """Power-on state (SDM vol. 3, table 9-1)."""
        self.regs = [0, 0, CPUID_SIGNATURE, 0, 0, 0, 0, 0]   # EDX: the processor signature
        self.eip = 0xFFF0
        self.eflags = EFLAGS_FIXED
        self.lf_op = self.lf_a = self.lf_b = self.lf_res = 0
        self.cr0 = 0x60000010
        self.cr2 = self.cr3 = self.cr4 = 0
        self.dr = [0, 0, 0, 0, 0, 0, DR6_FIXED, 0x400]
        self.gdtr_base, self.gdtr_limit = 0, 0xFFFF
        self.idtr_base, self.idtr_limit = 0, 0xFFFF
        self.ldtr_sel, self.ldtr_base, self.ldtr_limit, self.ldtr_attr = 0, 0, 0xFFFF, 0x82
        self.tr_sel, self.tr_base, self.tr_limit, self.tr_attr = 0, 0, 0xFFFF, 0x8B
        self.msr: dict[int, int] = {MSR_APIC_BASE: 0xFEE00800 | (0x100 if self.index == 0 else 0)}
        self.tsc_offset = 0
        self.fpu = FPU()              # x87 power-on state (CW 0040H, tags 5555H); init_ipi keeps the old one
        self.protected = False
        self.cpl = 0
        self.seg_sel = [0] * 6
        self.seg_base = [0] * 6
        self.seg_limit = [0xFFFF] * 6
        self.seg_attr = [0x93] * 6
        self.seg_lo = [0] * 6
        self.seg_hi = [0xFFFF] * 6
        self.seg_whi = [0xFFFF] * 6
        self.code32 = False
        self.stack32 = False
        self.seg_attr[CS] = 0x9B
        for s in range(6):
            segments._bounds(self, s)
        segments.set_cache(self, CS, 0xF000, 0xFFFF0000, 0xFFFF, 0x9B)
        self.icount = getattr(self, "icount", 0)
        self.stop_at = self.icount
        self.halted = False
        self.inhibit = False          # interrupt shadow after STI / MOV SS / POP SS
        self.pending_db = 0           # DR6 bits of a debug trap to deliver after this instruction
        self.nmi_blocked = False      # an NMI was delivered and no IRET has run since
        self.delivering_nmi = False   # set while the NMI's delivery runs (the monitor logs it apart)
        self.stop_request: Stop | None = None
        # The instruction at EIP runs even if it holds a breakpoint (a resume
        # runs off the breakpoint it stopped at).  It applies to that
        # instruction only: ``run`` drops it when no breakpoint is at EIP, an
        # event taken before it runs drops it, and its own check consumes it.
        self.skip_bp_once = False
        self.a20_mask = M32
        self.dead = None
        self.fault_depth = 0
        # exceptions taken since an instruction last retired (interrupts.deliver_exception)
        self.stall_icount, self.stalls = -1, 0
        self.tlb_r, self.tlb_w = self._tlb_rs, self._tlb_ws
        self.flush_tlb(keep_global=False)
        self.blocks.clear()
        self._page_blocks.clear()
        self._decoded = 0                          # instructions decoded into cached blocks
        self._refresh()

    # ------------------------------------------------------------ mode changes
    def set_cpl(self, cpl: int) -> None:
        self.cpl = cpl
        if cpl == 3:
            self.tlb_r, self.tlb_w = self._tlb_ru, self._tlb_wu
        else:
            self.tlb_r, self.tlb_w = self._tlb_rs, self._tlb_ws

    def set_cr0(self, value: int) -> None:
        old = self.cr0
        self.cr0 = value | 0x10
        self.protected = bool(value & CR0_PE)
        if (old ^ value) & (CR0_PG | CR0_PE | 0x10000):
            self.flush_tlb(keep_global=False)
        if (old ^ value) & CR0_PE:
            segments.refresh_bounds(self)
            if not self.protected:
                self.set_cpl(0)

    def guest_cr(self, n: int) -> int:
        """CR0/CR2/CR3/CR4 as the software running on this CPU sees them (a
        virtual CPU in guest mode overrides this with the guest's values)."""
        return (self.cr0, 0, self.cr2, self.cr3, self.cr4)[n]

    def set_cr3(self, value: int) -> None:
        self.cr3 = value & 0xFFFFF018
        self.flush_tlb(keep_global=bool(self.cr4 & CR4_PGE))

    def set_cr4(self, value: int) -> None:
        old = self.cr4
        self.cr4 = value
        if (old ^ value) & 0xB0:  # PSE, PAE, PGE
            self.flush_tlb(keep_global=False)

    def get_eflags(self) -> int:
        return materialize(self)

    def set_eflags(self, value: int, mask: int = M32 & ~VM) -> None:
        """Write EFLAGS bits in ``mask`` (callers apply CPL/IOPL rules first).
        VM changes only when ``mask`` has it (IRET to VM86, task switches);
        the caller then loads the segment registers for the new mode
        (``segments.enter_vm86_segments``)."""
        cur = materialize(self)
        mask &= EFLAGS_WRITABLE
        self.eflags = (cur & ~mask) | (value & mask) | EFLAGS_FIXED
        self._refresh()

    def _refresh(self) -> None:
        """Recompute the flags the run loop polls between blocks."""
        # Debugger breakpoints slow down only the pages that hold them: the
        # run loop single-steps a block whose page is in ``bp_pages``.
        bps = self.breakpoints
        pages = {b >> 12 for b in bps} if bps else _NO_PAGES
        if pages != self.bp_pages:
            added = pages - self.bp_pages
            self.bp_pages = pages
            if added:
                self._keep_out_of_tlb(added)
        self.slow = bool(self.eflags & TF or (self.dr[7] & 0xFF and debug.exec_breakpoints(self)))
        self.attention = bool(self.stop_request or self.halted or self.inhibit or self.pending_db
                              or (self.intr and self.eflags & IF) or self.slow
                              or (self.nmi_pending and not self.nmi_blocked) or self.wait_sipi)

    # ------------------------------------------------ interprocessor messages
    def nmi(self) -> None:
        """An NMI arrives (an IPI, the local APIC's LINT1, the I/O APIC):
        latched, and taken before the next instruction whatever IF says —
        unless NMIs are blocked (an NMI handler is running: from the NMI's
        delivery to the next IRET, SDM vol. 3, 6.7.1), or the instruction
        boundary is in a MOV SS / STI shadow.  One NMI is latched; more
        arriving while one is pending are lost, as on hardware."""
        self.nmi_pending = True
        if not self.nmi_blocked:
            self.attention = True
            self.end_block()             # taken right after the instruction that sent it (an ICR store)

    def unblock_nmi(self) -> None:
        """IRET ends NMI blocking (a latched NMI is then taken)."""
        self.nmi_blocked = False
        if self.nmi_pending:
            self.attention = True

    def init_ipi(self) -> None:
        """INIT: the processor is reset (its instruction count kept); an
        application processor then waits for a STARTUP IPI.  The x87 state
        is kept (SDM vol. 3, table 9-1: INIT leaves the FPU unchanged)."""
        fpu = self.fpu
        self.reset()
        self.fpu = fpu
        self.nmi_pending = False
        self.wait_sipi = self.index != 0
        self._refresh()

    def startup_ipi(self, vector: int) -> None:
        """STARTUP: a processor waiting for it starts in real mode at
        ``vector << 12`` (CS = vector << 8, EIP = 0); otherwise ignored."""
        if not self.wait_sipi:
            return
        self.wait_sipi = False
        self.halted = False
        segments.set_cache(self, CS, (vector & 0xFF) << 8, (vector & 0xFF) << 12, 0xFFFF, 0x9B)
        self.eip = 0
        self._refresh()


    def set_intr(self, level: bool) -> None:
        """The interrupt controller drives the INTR pin."""
        self.intr = level
        if level:
            self._refresh()

    def request_stop(self, stop: Stop) -> None:
        """A device or the runner asks ``run`` to return after this instruction."""
        self.stop_request = stop
        self.attention = True

    # -------------------------------------------------------------------- TLB
    def flush_tlb(self, keep_global: bool) -> None:
        lists = (self._tlb_rs, self._tlb_ws, self._tlb_ru, self._tlb_wu)
        kept = {}
        for vpn, glob in self._tlb_filled.items():
            if keep_global and glob:
                kept[vpn] = True
                continue
            for t in lists:
                t[vpn] = None
        self._tlb_filled.clear()
        self._tlb_filled.update(kept)
        self._tlb_io.clear()
        self._vapic_key = -1
        self._wprot.clear()
        if not kept:
            self._tlb_large.clear()
            self._wmap.clear()

    def _keep_out_of_tlb(self, vpns) -> None:
        """Drop the TLB entries of linear pages that must not be in it: pages
        with a debugger breakpoint (``bp_pages``; ``translate`` does not fill
        them either).  Translated code checks the TLB wherever it enters a
        page other than its first (a join, a link to another page), so it
        leaves there, and the run loop runs a breakpoint page's code one
        instruction at a time, stopping at the breakpoint."""
        for vpn in vpns:
            for t in (self._tlb_rs, self._tlb_ws, self._tlb_ru, self._tlb_wu):
                t[vpn] = None
            self._tlb_filled.pop(vpn, None)
            for k in range(vpn << 2, (vpn << 2) + 4):
                self._tlb_io.pop(k, None)

    def _walk_faulted(self, e: CpuFault, lin: int, write: bool, user: bool):
        """The walk for a TLB miss raised ``e``.  ``ops.walk_fault`` sees it
        first, where the access is: under a monitor, a shadow miss is filled
        there and then (as VT-x exits on the fault and re-enters to the same
        access) and the walk is made once more; the access goes on with no
        instruction restarted.  A fault that stays (the architecture's, or
        one the monitor reflects) is raised, and delivered as any other."""
        e2 = self.ops.walk_fault(self, e)
        if e2 is not None:
            raise e2
        return walk(self, lin, write, user)

    def invlpg(self, lin: int) -> None:
        vpn = lin >> 12
        region = vpn >> 10
        if region not in self._tlb_large:
            # one page (the monitor calls this at every shadow fill)
            if vpn in self._tlb_filled:
                del self._tlb_filled[vpn]
                self._tlb_rs[vpn] = self._tlb_ws[vpn] = self._tlb_ru[vpn] = self._tlb_wu[vpn] = None
            if self._wprot:
                self._wprot.pop(vpn, None)
            if self._vapic_key >> 1 == vpn:
                self._vapic_key = -1
            io = self._tlb_io
            if io:
                for k in range(vpn << 2, (vpn << 2) + 4):
                    io.pop(k, None)
            return
        victims = [v for v in self._tlb_filled if v >> 10 == region]
        if self._wprot:
            for v in victims:
                self._wprot.pop(v, None)
        for v in victims:
            if v in self._tlb_filled:
                del self._tlb_filled[v]
                self._tlb_rs[v] = self._tlb_ws[v] = self._tlb_ru[v] = self._tlb_wu[v] = None
        if self._vapic_key >> 1 in victims:
            self._vapic_key = -1
        if self._tlb_io:
            if len(victims) > 1:
                self._tlb_io.clear()
            else:
                for k in range(vpn << 2, (vpn << 2) + 4):
                    self._tlb_io.pop(k, None)

    def translate(self, lin: int, write: bool, user: bool) -> int:
        """Linear -> physical for one access, filling the TLB; may raise #PF."""
        lin &= M32
        vpn = lin >> 12
        if write and self._wprot:
            pa = self._rearm(vpn, user)
            if pa is not None:
                return pa | (lin & 0xFFF)
        io_key = (vpn << 2) | (2 if user else 0) | (1 if write else 0)
        pa_page = self._tlb_io.get(io_key)
        if pa_page is not None:                      # a device page translated before
            return pa_page | (lin & 0xFFF)
        if self.cr0 & CR0_PG:
            try:
                pa_page, writable, glob, large = walk(self, lin, write, user)
            except CpuFault as e:
                pa_page, writable, glob, large = self._walk_faulted(e, lin, write, user)
        else:
            pa_page, writable, glob, large = lin & 0xFFFFF000, True, False, False
        pa_page &= self.a20_mask
        pfn = pa_page >> 12
        if self.mem.is_ram_page(pfn) and vpn not in self.watch_vpns and vpn not in self.bp_pages:
            delta = pa_page - (vpn << 12)
            if user:
                tr, tw = self._tlb_ru, self._tlb_wu
            else:
                tr, tw = self._tlb_rs, self._tlb_ws
            tr[vpn] = delta
            mem = self.mem
            if writable and pfn not in mem.code_pages and pfn not in mem.readonly_pages \
                    and pfn not in mem.write_watch:
                if mem.on_first_write is not None and pfn not in mem.dirty:
                    # dirty logging: a clean frame gets a write entry only when
                    # a store is about to use it, and that store is logged now
                    if write:
                        mem.log_write(pfn)
                        tw[vpn] = delta
                        self._wmap.setdefault(pfn, set()).add(vpn)
                else:
                    tw[vpn] = delta
                    self._wmap.setdefault(pfn, set()).add(vpn)
            self._tlb_filled[vpn] = glob
            if large:
                self._tlb_large.add(vpn >> 10)
        elif vpn not in self.watch_vpns and vpn not in self.bp_pages:
            # Not RAM (a device, a hole): accesses must reach memory's slow
            # path each time, but the walk need not be repeated.
            if pfn == self.vapic_pfn:
                self._vapic_key = vpn << 1 | user
            self._tlb_io[io_key & ~1] = pa_page
            if writable:
                self._tlb_io[io_key | 1] = pa_page
            if large:
                self._tlb_large.add(vpn >> 10)
        return pa_page | (lin & 0xFFF)

    # ------------------------------------------------------- memory (linear)
    def rd8(self, lin: int) -> int:
        d = self.tlb_r[lin >> 12]
        if d is not None:
            return self.ram[lin + d]
        return self._rd_slow(lin, 1)

    def rd16(self, lin: int) -> int:
        d = self.tlb_r[lin >> 12]
        if d is not None and lin & 0xFFF != 0xFFF:
            return u16_from(self.ram, lin + d)[0]
        return self._rd_slow(lin, 2)

    def rd32(self, lin: int) -> int:
        d = self.tlb_r[lin >> 12]
        if d is not None and not lin & 3:
            return self.ram32[lin + d >> 2]
        if d is not None and lin & 0xFFF <= 0xFFC:
            return u32_from(self.ram, lin + d)[0]
        return self._rd_slow(lin, 4)

    def wr8(self, lin: int, v: int) -> None:
        d = self.tlb_w[lin >> 12]
        if d is not None:
            self.ram[lin + d] = v
        else:
            self._wr_slow(lin, 1, v)

    def wr16(self, lin: int, v: int) -> None:
        d = self.tlb_w[lin >> 12]
        if d is not None and lin & 0xFFF != 0xFFF:
            p16_into(self.ram, lin + d, v)
        else:
            self._wr_slow(lin, 2, v)

    def wr32(self, lin: int, v: int) -> None:
        d = self.tlb_w[lin >> 12]
        if d is not None and not lin & 3:
            self.ram32[lin + d >> 2] = v
        elif d is not None and lin & 0xFFF <= 0xFFC:
            p32_into(self.ram, lin + d, v)
        else:
            self._wr_slow(lin, 4, v)

    def rd(self, lin: int, size: int) -> int:
        if size == 4:
            return self.rd32(lin)
        if size == 2:
            return self.rd16(lin)
        return self.rd8(lin)

    def wr(self, lin: int, size: int, v: int) -> None:
        if size == 4:
            self.wr32(lin, v)
        elif size == 2:
            self.wr16(lin, v)
        else:
            self.wr8(lin, v)

    def check_write(self, lin: int, size: int) -> None:
        """Fault now if a later write of ``size`` bytes at ``lin`` would fault
        (for instructions that must not change state before a store)."""
        self._translate_range(lin & M32, size, True, self.cpl == 3)

    def _translate_range(self, lin: int, size: int, write: bool, user: bool):
        pa0 = self.translate(lin, write, user)
        last = (lin + size - 1) & M32
        if (last ^ lin) >> 12:
            return pa0, self.translate(last & 0xFFFFF000, write, user)
        return pa0, None

    def _rd_slow(self, lin: int, size: int, user: bool | None = None) -> int:
        lin &= M32
        if user is None:
            user = self.cpl == 3
        if (lin >> 12 << 1 | user) == self._vapic_key and size == 4 and not lin & 0xF \
                and not self.watchpoints and not self.dr[7] & 0xFF:
            v = self.vapic.get(lin & 0xFFF)
            if v is not None:
                self.vapic_reads += 1
                return v
        pa0, pa1 = self._translate_range(lin, size, False, user)
        if self.watchpoints or self.dr[7] & 0xFF:
            self._check_watch(lin, size, False)
        if pa1 is None:
            return self.mem.read(pa0, size)
        n0 = 0x1000 - (lin & 0xFFF)
        lo = self.mem.read(pa0, n0)
        return lo | (self.mem.read(pa1, size - n0) << (8 * n0))

    def _wr_slow(self, lin: int, size: int, v: int, user: bool | None = None) -> None:
        lin &= M32
        if user is None:
            user = self.cpl == 3
        pa0, pa1 = self._translate_range(lin, size, True, user)
        if self.watchpoints or self.dr[7] & 0xFF:
            self._check_watch(lin, size, True)
        if pa1 is None:
            self.mem.write(pa0, size, v)
        else:
            n0 = 0x1000 - (lin & 0xFFF)
            self.mem.write(pa0, n0, v & ((1 << (8 * n0)) - 1))
            self.mem.write(pa1, size - n0, v >> (8 * n0))

    def sys_read(self, lin: int, size: int) -> int:
        """Implicit supervisor read (descriptor tables, TSS, IDT)."""
        lin &= M32
        d = self._tlb_rs[lin >> 12]
        if d is not None and (lin & 0xFFF) + size <= 0x1000:
            pa = lin + d
            return int.from_bytes(self.ram[pa:pa + size], "little")
        return self._rd_slow(lin, size, user=False)

    def sys_read_pair(self, lin: int) -> tuple[int, int]:
        """The two dwords of a descriptor or gate at ``lin`` (implicit supervisor
        reads, as ``sys_read``): one RAM access when the TLB maps the page."""
        lin &= M32
        d = self._tlb_rs[lin >> 12]
        if d is not None and (lin & 0xFFF) <= 0xFF8:
            return pair_from(self.ram, lin + d)
        return self.sys_read(lin, 4), self.sys_read(lin + 4, 4)

    def sys_write(self, lin: int, size: int, v: int) -> None:
        lin &= M32
        d = self._tlb_ws[lin >> 12]
        if d is not None and (lin & 0xFFF) + size <= 0x1000:
            pa = lin + d
            self.ram[pa:pa + size] = v.to_bytes(size, "little")
            return
        self._wr_slow(lin, size, v, user=False)

    def read_code_bytes(self, lin: int, n: int) -> bytes:
        """Up to ``n`` bytes at a linear address for error reports (no faults)."""
        out = bytearray()
        for i in range(n):
            try:
                out.append(self._rd_slow((lin + i) & M32, 1, user=False))
            except CpuFault:
                break
        return bytes(out)

    def _check_watch(self, lin: int, size: int, write: bool) -> None:
        debug.check_data_access(self, lin, size, write)

    # ----------------------------------------------------------- segmentation
    def seg_fault(self, seg: int, off: int = 0):
        raise CpuFault(SS if seg == SS_SEG else GP, 0)

    def lin(self, seg: int, off: int, write: bool = False) -> int:
        """Checked linear address of ``seg:off``."""
        hi = self.seg_whi[seg] if write else self.seg_hi[seg]
        if off > hi or off < self.seg_lo[seg]:
            self.seg_fault(seg, off)
        return (self.seg_base[seg] + off) & M32

    # ------------------------------------------------------------------ stack
    def push(self, v: int, size: int) -> None:
        if self.stack32:
            sp = (self.regs[4] - size) & M32
        else:
            sp = (self.regs[4] - size) & 0xFFFF
        if sp + size - 1 > self.seg_whi[SS_SEG] or sp < self.seg_lo[SS_SEG]:
            raise CpuFault(SS, 0)
        self.wr((self.seg_base[SS_SEG] + sp) & M32, size, v)
        if self.stack32:
            self.regs[4] = sp
        else:
            self.regs[4] = (self.regs[4] & 0xFFFF0000) | sp

    def push32(self, v: int) -> None:
        """PUSH of a dword; the common 32-bit-stack case goes straight through the TLB."""
        if not self.stack32:
            self.push(v, 4)
            return
        r = self.regs
        sp = (r[4] - 4) & M32
        if sp > self.seg_whi[2] - 3 or sp < self.seg_lo[2]:
            raise CpuFault(SS, 0)
        lin = (self.seg_base[2] + sp) & M32
        t = self.tlb_w[lin >> 12]
        if t is not None and not lin & 3:
            self.ram32[lin + t >> 2] = v
        elif t is not None and lin & 0xFFF <= 0xFFC:
            p32_into(self.ram, lin + t, v)
        else:
            self._wr_slow(lin, 4, v)
        r[4] = sp

    def stack_dwords(self, offset: int, count: int, write: bool) -> int:
        """Where ``count`` dwords at SS:[ESP + offset] are in ``ram32`` (the
        index of the first), when one plain access reaches them all: a
        32-bit stack, inside SS's limits with no wraparound, aligned, on one
        page the TLB maps to RAM (for writing when ``write``).  -1 otherwise,
        and the caller takes the checked per-item path (which faults where
        it must).  The TLB never maps watched pages, nor code pages for
        writing, so a hit needs no watchpoint or code-store check."""
        if not self.stack32:
            return -1
        sp = self.regs[4] + offset
        end = sp + 4 * count - 1
        if sp < self.seg_lo[2] or end > (self.seg_whi[2] if write else self.seg_hi[2]):
            return -1
        lin = self.seg_base[2] + sp
        if lin & 3 or (lin & 0xFFF) + 4 * count > 0x1000 or lin + 4 * count > 0x100000000:
            return -1
        t = (self.tlb_w if write else self.tlb_r)[lin >> 12]
        if t is None:
            return -1
        return (lin + t) >> 2

    def pop(self, size: int) -> int:
        v = self.peek(0, size)
        if self.stack32:
            self.regs[4] = (self.regs[4] + size) & M32
        else:
            self.regs[4] = (self.regs[4] & 0xFFFF0000) | ((self.regs[4] + size) & 0xFFFF)
        return v

    def peek(self, offset: int, size: int) -> int:
        """Read ``size`` bytes at SS:[eSP + offset] without popping."""
        sp = (self.regs[4] + offset) & (M32 if self.stack32 else 0xFFFF)
        if sp + size - 1 > self.seg_hi[SS_SEG] or sp < self.seg_lo[SS_SEG]:
            raise CpuFault(SS, 0)
        return self.rd((self.seg_base[SS_SEG] + sp) & M32, size)

    # ------------------------------------------------------ decoded-code cache
    def _protect_code_page(self, pfn: int) -> None:
        self.mem.code_pages.add(pfn)
        self.mem.revoke_writes(pfn)           # other processors sharing this memory too

    def drop_write_entries(self, pfn: int) -> None:
        """Forget the write-TLB entries for physical frame ``pfn`` (it just
        became a code page, or write-watched), so stores take the slow path."""
        for vpn in self._wmap.pop(pfn, ()):
            self._tlb_ws[vpn] = self._tlb_wu[vpn] = None

    def _rearm(self, vpn: int, user: bool) -> int | None:
        """A store to a page whose write entry dirty logging took away: log
        the frame and give the entry back (None: walk the tables as usual)."""
        saved = self._wprot.pop(vpn, None)
        if saved is None:
            return None
        delta = saved[1] if user else saved[0]
        pfn = saved[2]
        mem = self.mem
        if delta is None or pfn in mem.code_pages or pfn in mem.write_watch or pfn in mem.readonly_pages \
                or vpn in self.watch_vpns or vpn not in self._tlb_filled:
            return None
        if mem.on_first_write is not None:
            mem.log_write(pfn)
        if saved[0] is not None:
            self._tlb_ws[vpn] = saved[0]
        if saved[1] is not None:
            self._tlb_wu[vpn] = saved[1]
        self._wmap.setdefault(pfn, set()).add(vpn)
        return (vpn << 12) + delta

    def write_protect(self, pfn: int) -> None:
        """Dirty logging made frame ``pfn`` clean: drop its write entries but
        remember them (``_rearm``)."""
        ws, wu = self._tlb_ws, self._tlb_wu
        for vpn in self._wmap.pop(pfn, ()):
            self._wprot[vpn] = (ws[vpn], wu[vpn], pfn)
            ws[vpn] = wu[vpn] = None

    def drop_all_write_entries(self) -> None:
        """Forget every write-TLB entry (dirty logging starts)."""
        ws, wu = self._tlb_ws, self._tlb_wu
        for vpns in self._wmap.values():
            for vpn in vpns:
                ws[vpn] = wu[vpn] = None
        self._wmap.clear()
        self._wprot.clear()

    def _invalidate_code_page(self, pfn: int) -> None:
        more = []
        translated = False
        for key in self._page_blocks.pop(pfn, ()):
            b = self.blocks.pop(key, None)
            if b is not None:
                b.xpage = DEAD_XPAGE         # links to it from other pages are not followed
            if b is not None and b.fn is not None:
                translated = True
            if b is not None and len(b.pfns) > 1:
                # a unit spanning pages: blocks on its first page may link to it
                more.extend(p for p in b.pfns if p != pfn)
        if translated:
            self._thrash[pfn] = min(self._thrash.get(pfn, 0) + 1, MAX_THRASH)
        cur = self._cur_block
        if pfn == self._running_pfn or (self._running is None and cur is not None and pfn in cur.pfns):
            # Self-modifying code: end the running block after this store.
            self.end_block()
            self._running_pfn = -1
        for p in more:
            if p in self._page_blocks:
                self._invalidate_code_page(p)

    def end_block(self) -> None:
        """Make the running block end after the current instruction.

        The loop iterates ``self._running`` by index, so truncating it in place
        ends the loop; if that list is the cached block, the cache first gets
        a whole copy.
        """
        blk = self._running
        if blk is None:
            self.block_abort = True          # a translated block polls this
            return
        cached = self.blocks.get(self._running_key)
        if cached is not None and cached.insns is blk:
            cached.insns = blk[:]            # keep the cached block whole
            if cached.fn is None:
                cached.trace = cached.insns
                cached.n = len(blk)
        for i, d in enumerate(blk):
            if d.next == self.eip:
                del blk[i + 1:]
                break

    def _new_block(self, lin: int, pa: int, key: int) -> Block:
        """Decode the block at CS:EIP and put it in the cache when it may be."""
        insns, pfn2, cacheable = self._build_block(lin, pa)
        block = Block(insns)
        if pfn2 is not None:
            # an instruction running onto the next page: cached under both
            # frames, never translated (units assume their first page)
            block.hits = -1 << 30
            if not cacheable:
                return block
            key |= (pfn2 + 1) << CROSS_SHIFT
            for pfn in (pa >> 12, pfn2):
                keys = self._page_blocks.setdefault(pfn, [])
                if key not in keys:
                    keys.append(key)
            self.blocks[key] = block
        elif cacheable:
            self.blocks[key] = block
            self._page_blocks.setdefault(pa >> 12, []).append(key)
        else:
            block.hits = -1 << 30        # never translate an uncached block
        return block

    def _cached_crossing(self, lin: int, key: int):
        """The cached block at ``key`` whose instruction runs onto the next
        linear page, if the TLB maps that page (to the frame it was decoded
        from); None otherwise (the caller decodes, which may fault there)."""
        nxt = ((lin | 0xFFF) + 1) & M32
        d = self.tlb_r[nxt >> 12]
        if d is None:
            return None
        return self.blocks.get(key | (((nxt + d) >> 12) + 1) << CROSS_SHIFT)

    def _build_block(self, lin: int, pa: int) -> tuple[list, int | None, bool]:
        """Decode instructions starting at CS:EIP (linear ``lin``, physical ``pa``).

        Returns ``(insns, pfn2, cacheable)``: ``pfn2`` is the frame of the
        next page when the block is one instruction that runs onto it (None
        otherwise); ``cacheable``: every byte came from RAM (code pages are
        then write-protected, so a store drops the block).
        """
        code32 = self.code32
        cs_room = self.seg_hi[CS] - self.eip + 1
        if cs_room <= 0:
            raise CpuFault(GP, 0)
        page_room = 0x1000 - (pa & 0xFFF)
        room = min(page_room, cs_room, MAX_BLOCK * 15)
        ram_page = self.mem.is_ram_page(pa >> 12)
        if ram_page:
            if self._decoded >= MAX_CACHED_INSNS:
                self._trim_blocks()
            self._protect_code_page(pa >> 12)
            buf = self.ram[pa:pa + room]
        else:
            buf = self.mem.read_bytes(pa, room)
        insns = []
        pos = 0
        eip = self.eip
        while len(insns) < MAX_BLOCK and pos < room:
            try:
                d = decode(buf, pos, code32)
            except NeedBytes:
                if insns:
                    break
                d, pfn2 = self._decode_crossing(lin, buf, page_room, cs_room)
                cacheable = ram_page and self.mem.is_ram_page(pfn2)
                if cacheable:
                    self._protect_code_page(pfn2)
                    self._decoded += 1
                return [d], pfn2, cacheable
            if d.ends and d.rep and insns and d.mnem in ("MOVS", "CMPS", "STOS", "LODS", "SCAS", "INS", "OUTS"):
                break   # a REP string instruction is a block of its own
            insns.append(bind(d, eip, code32))
            pos += d.len
            eip = d.next
            if d.ends:
                break
        if ram_page:
            self._decoded += len(insns)
        return insns, None, ram_page

    def drop_translations(self) -> None:
        """A load may now hit a watch: forget every translated unit compiled
        without the checks after its loads (``Block.read_watch``), with its
        block (decoded again when it runs); links to them are not followed
        (``DEAD_XPAGE``), and a unit running now leaves after this
        instruction.  Units compiled with the checks stay, so a debugger
        that removes its watchpoints at every stop and puts them back at
        every resume (gdb does) costs no translation after the first."""
        blocks = self.blocks
        for key in [k for k, b in blocks.items() if b.fn is not None and not b.read_watch]:
            blocks.pop(key).xpage = DEAD_XPAGE
        self.end_block()

    def _trim_blocks(self) -> None:
        """The block cache has taken in ``MAX_CACHED_INSNS`` decoded
        instructions: count what it still holds (blocks dropped by stores are
        gone) and, if that is over half the bound, drop every block (the run
        loop calls this only between blocks; the hot ones come back)."""
        held = sum(len(b.insns) for b in self.blocks.values())
        if held > MAX_CACHED_INSNS // 2:
            self.blocks.clear()
            self._page_blocks.clear()
            held = 0
        self._decoded = held

    def _decode_crossing(self, lin: int, buf: bytes, page_room: int, cs_room: int):
        """An instruction that runs off the page (or off the CS limit):
        ``(insn, frame of the next page)``.  The next page is translated (and
        may fault) only because the instruction needs its bytes."""
        if cs_room <= page_room:
            raise CpuFault(GP, 0)
        nxt = ((lin | 0xFFF) + 1) & M32
        pa2 = self.translate(nxt, False, self.cpl == 3)
        more = []
        for i in range(min(15, cs_room - page_room)):
            try:
                d = decode(bytes(buf) + bytes(more), 0, self.code32)
                return bind(d, self.eip, self.code32), pa2 >> 12
            except NeedBytes:
                more.append(self.mem.read(pa2 + i, 1))
        try:
            d = decode(bytes(buf) + bytes(more), 0, self.code32)
        except NeedBytes:
            raise CpuFault(GP, 0) from None
        return bind(d, self.eip, self.code32), pa2 >> 12

    # ------------------------------------------------------------- running
    def run(self, max_insns: int) -> Stop:
        """Retire up to ``max_insns`` instructions; return why it stopped."""
        if self.dead is not None:
            return self.dead
        self.stop_at = self.icount + max_insns
        if self.skip_bp_once and (self.seg_base[1] + self.eip) & M32 not in self.breakpoints:
            self.skip_bp_once = False    # nothing to run off: the first breakpoint reached stops it
        try:
            return self._run()
        except Shutdown as e:
            self.halted = True
            self.dead = Stop(StopKind.SHUTDOWN, f"triple fault: {e}", {"eip": self.eip})
            return self.dead
        except Exception as e:  # a bug in tvmm: stop this machine only, with a report
            self.dead = self._internal_error(e)
            return self.dead
        finally:
            self._running = None
            self._cur_block = None
            self._running_pfn = -1

    def _internal_error(self, e: BaseException) -> Stop:
        import traceback
        lin = (self.seg_base[CS] + self.eip) & M32
        code = self.read_code_bytes(lin, 16)
        regs = " ".join(f"{n}={v:08x}" for n, v in zip(
            ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"), self.regs))
        detail = (f"internal error in tvmm ({type(e).__name__}: {e}) at cs:eip="
                  f"{self.seg_sel[CS]:04x}:{self.eip:08x} bytes={code.hex()} {regs}")
        return Stop(StopKind.ERROR, detail, {"traceback": traceback.format_exc(), "bytes": code})

    def _run(self) -> Stop:
        blocks = self.blocks
        prev = None          # last translated block, if it may be chained to the next
        while True:
            if self.attention:
                stop = self._service()
                if stop is not None:
                    return stop
            left = self.stop_at - self.icount
            if left <= 0:
                return Stop(StopKind.BUDGET)
            # -- fetch: linear CS:EIP -> physical -> decoded block
            eip = self.eip
            lin = (self.seg_base[1] + eip) & M32
            try:
                if eip > self.seg_hi[1] or eip < self.seg_lo[1]:
                    raise CpuFault(GP, 0)
                d = self.tlb_r[lin >> 12]
                pa = lin + d if d is not None else self.translate(lin, False, self.cpl == 3)
                key = (pa << 33) | (eip << 1) | self.code32
                block = blocks.get(key)
                if block is None and pa & 0xFFF > 0xFF1:
                    block = self._cached_crossing(lin, key)
                if block is None:
                    block = self._new_block(lin, pa, key)
            except CpuFault as e:
                self._deliver_fault(e)
                continue
            slow = self.slow or (lin >> 12) in self.bp_pages
            if not (slow or self.inhibit) and block.n <= left:
                fn = block.fn
                if fn is None:
                    block.hits += 1
                    if block.hits >= self.hot and self.translate_blocks \
                            and block.hits >= self.hot << self._thrash.get(pa >> 12, 0):
                        fn = block.fn = self._translate(block, key, lin, pa)
                elif block.flat and not self.flat:
                    fn = block.fn = self._translate(block, key, lin, pa)  # now for any segments
                if fn is not None and block.n <= left:
                    if prev is not None:
                        # chain: prev jumps straight here next time (to another
                        # page only while the TLB maps it the same: xpage)
                        if (lin >> 12) in prev.vpages:
                            prev.links[eip] = block
                        elif d is not None and self.flat:
                            prev.links[eip] = block
                            block.xpage = (lin >> 12, d)
                    self._running = None
                    self._running_pfn = pa >> 12
                    nxt = None
                    try:
                        while True:
                            self.block_abort = False
                            self._cur_block = block
                            nxt = fn(self)
                            if nxt is None or self.attention or self.block_abort \
                                    or nxt.n > self.stop_at - self.icount:
                                break
                            x = nxt.xpage
                            if x is not None and (self.tlb_r[x[0]] != x[1] or not self.flat):
                                nxt = None           # its page moved, or was dropped: look it up
                                break
                            block = nxt
                            fn = block.fn
                    except CpuFault as e:
                        # the unit has put EIP and the count at the faulting instruction
                        self.pending_db &= ~0x4000
                        self._running = self._cur_block = None   # insn_time() is icount in delivery
                        self._deliver_fault(e)
                        nxt = prev = None
                        continue
                    except Exception:
                        self._locate_in_block(block.trace)
                        raise
                    if nxt is None and block.linkable and not self.block_abort:
                        prev = block
                    else:
                        prev = None
                    continue
            prev = None
            blk = block.insns
            shadow = self.inhibit        # this one instruction runs in an interrupt shadow
            if slow or shadow:
                try:
                    stop = self._pre_step(lin)
                except CpuFault as e:
                    self._deliver_fault(e)
                    continue
                if stop is not None:
                    return stop
                left = 1
            if len(blk) > left:
                blk = blk[:left]
            self._running = blk
            self._running_key = key
            self._running_pfn = pa >> 12
            d = None
            try:
                for d in blk:
                    self.eip = d.next
                    d.fn(self, d)
                self.icount += len(blk)
            except CpuFault as e:
                self.icount += blk.index(d)
                self.eip = d.eip
                self.pending_db &= ~0x4000   # a faulting instruction does not single-step
                self._running = self._cur_block = None   # insn_time() is icount in delivery
                self._deliver_fault(e)
            except Exception:
                if d is not None:
                    self.eip = d.eip         # report the instruction that broke tvmm
                raise
            if shadow:
                # The shadow covers one instruction; one set by this block
                # (STI, MOV SS, POP SS end their block) covers the next one.
                self.inhibit = False
                self._refresh()

    def retired_before(self, d) -> int:
        """The instruction count as seen by instruction ``d`` while it runs.

        ``icount`` is brought up to date only between blocks (and between
        iterations of a translated self-loop); ``d``'s index in the running
        block is added.  Outside a run it is ``icount``.
        """
        blk = self._running
        if blk is None:
            cur = self._cur_block
            blk = cur.trace if cur is not None else ()
        for i, x in enumerate(blk):
            if x is d:
                return self.icount + i
        return self.icount

    def insn_time(self) -> int:
        """The instruction count as seen by the instruction executing now
        (found by its ``next`` in EIP); between runs, ``icount``."""
        blk = self._running
        if blk is None:
            cur = self._cur_block
            blk = cur.trace if cur is not None else ()
        eip = self.eip
        for i, d in enumerate(blk):
            if d.next == eip:
                return self.icount + i
        return self.icount

    def _locate_in_block(self, insns: list) -> int:
        """Index of the instruction that was executing when a translated
        block raised: the one whose ``next`` is in EIP (set before it ran)."""
        eip = self.eip
        for i, d in enumerate(insns):
            if d.next == eip:
                self.eip = d.eip
                return i
        return 0

    def _translate(self, block: Block, key: int, lin: int, pa: int):
        """Compile ``block`` (cache key ``key``) with what follows it; a unit
        spanning pages is registered under each of them (see translate.py)."""
        fn = translate_block(self, block, lin, pa)
        for pfn in block.pfns:
            if pfn != pa >> 12:
                keys = self._page_blocks.setdefault(pfn, [])
                if key not in keys:
                    keys.append(key)
        return fn

    def _fault_in_block(self, insns: list, e: CpuFault) -> None:
        self.icount += self._locate_in_block(insns)
        self.pending_db &= ~0x4000
        self._deliver_fault(e)

    def _pre_step(self, lin: int) -> Stop | None:
        """Checks made before an instruction in single-instruction mode."""
        if self.breakpoints and lin in self.breakpoints:
            if self.skip_bp_once:
                self.skip_bp_once = False
            else:
                return Stop(StopKind.BREAKPOINT, f"breakpoint at {lin:#010x}", {"lin": lin})
        self.skip_bp_once = False
        debug.check_exec_breakpoint(self, lin)
        if self.eflags & TF:
            # Single-step trap after this instruction (SDM vol. 3, 17.3.1.4).
            self.pending_db |= 0x4000
            self.attention = True
        return None

    def _service(self) -> Stop | None:
        """Work between blocks: stop requests, debug traps, interrupts, HLT."""
        if self.stop_request is not None:
            s, self.stop_request = self.stop_request, None
            self._refresh()
            return s
        if self.wait_sipi:
            self._refresh()
            return Stop(StopKind.HALTED, "waiting for a STARTUP IPI")
        if self.pending_db:
            bits, self.pending_db = self.pending_db, 0
            self.dr[6] = (self.dr[6] & ~0xF) | bits | DR6_FIXED
            self._deliver_event(DB, False)
        if self.nmi_pending and not self.nmi_blocked and not self.inhibit:
            self.nmi_pending = False
            self.nmi_blocked = True              # until the next IRET
            self.halted = False
            self.delivering_nmi = True
            try:
                self._deliver_event(NMI, True)
            finally:
                self.delivering_nmi = False
        if self.intr and self.eflags & IF and not self.inhibit and self.intr_ack is not None:
            vector = self.intr_ack()
            if vector is not None:
                self.halted = False
                self._deliver_event(vector, True)
        if self.stop_request is not None:        # e.g. an intercept claimed the event
            s, self.stop_request = self.stop_request, None
            self._refresh()
            return s
        if self.halted:
            self._refresh()
            return Stop(StopKind.HALTED, f"hlt at {self.eip:#x}")
        self._refresh()
        return None

    def _deliver_event(self, vector: int, external: bool) -> None:
        """Deliver a debug trap or an external interrupt between instructions.
        In guest mode a fault during delivery that the monitor fixes (a
        shadow miss) is invisible: the delivery is retried.  The instruction
        at EIP has not run: a breakpoint there stops it when it is returned
        to (``skip_bp_once`` is dropped)."""
        self.skip_bp_once = False
        for _ in range(MAX_DELIVERY_RETRIES):
            try:
                interrupts.deliver(self, vector, None, self.eip, external=external)
                return
            except CpuFault as e:
                e = self.ops.exception(self, e)
                if e is None:
                    continue
                self._deliver_fault(e)
                return
        raise Shutdown("event delivery keeps faulting in the monitor")

    def _deliver_fault(self, e: CpuFault) -> None:
        interrupts.deliver_exception(self, e)
        self._refresh()

