"""Hardware task switching (SDM vol. 3, chapter 7 "Task Management").

A task switch is started by a far JMP or CALL whose selector names a TSS or
a task gate (GDT or LDT), by an interrupt or exception whose IDT entry is a
task gate, or by IRET with EFLAGS.NT set (the return to the task in the
current TSS's back link).  ``jmp_call``, ``interrupt`` and ``iret`` do the
checks of their source (SDM vol. 2, JMP/CALL/INT n/IRET) and then ``switch``.

Invariants:

- Before the commit point (the new TR is loaded) every fault is the *old*
  task's: nothing the guest can see has changed except stores that hardware
  makes too (the outgoing state saved in the old TSS, busy bits, the back
  link), and those are made only once every page they touch is known to be
  writable, so a fault (or a monitor's hidden page fault) restarts the
  instruction or the event delivery from scratch with nothing half done.
- After the commit point every fault is the *new* task's (SDM table 7-1):
  EIP, EFLAGS, the general registers, TR, CR3 (when paging is on), LDTR and
  the segment selectors are the new task's; a segment that failed its
  checks, and those after it, are left unusable (null caches).  A hidden page
  fault after the commit point (a monitor's shadow miss on the new GDT, LDT
  or stack) is resolved and the step retried in place (``_post``), never by
  restarting the switch; a true one is marked ``examined`` so the monitor,
  offered it again by the delivery, reflects (and logs) it once.  Then, when the switch was started by an
  instruction (JMP, CALL, IRET, INT n), the fault is delivered here, in the
  new task, and the instruction counts as retired; when it was started by an
  event, the fault propagates to the event delivery, which applies the
  double-fault rule with the new task's EIP.
- Busy bits, the back link and NT follow SDM table 7-2: JMP clears the old
  busy bit and sets the new one; CALL and interrupts keep the old one set,
  set the new one, write the old TR into the new TSS's back link and set NT
  in the new EFLAGS; IRET clears the old busy bit (the new one is already
  set) and saves the outgoing EFLAGS with NT clear.
- CR0.TS is set by every task switch; DR7's local enables (L0-L3, LE) are
  cleared; CR3 is loaded from a 32-bit TSS only when paging is on, and
  always through ``cpu.ops.cr_write`` (in guest mode that is the monitor's
  MOV CR3 exit, which switches the shadow page table); ``cpu.ops.task_switch``
  is told of every switch (in guest mode: a task-switch exit in the event log).
- The new task's segment registers are loaded by one function,
  ``load_segments_for_eflags``: protected-mode rules, or, when the EFLAGS
  image has VM=1, ``load_segments_vm86`` (base = selector << 4, limit 0xFFFF,
  CPL 3).  That is the hook the virtual-8086 mode work reuses.
- The new TSS's T bit makes #DB (DR6.BT) pending: it is taken after the
  switch, before the new task's first instruction.
- A 16-bit TSS (types 1/3) is supported for the fields the SDM defines for
  it: IP, FLAGS (low 16 bits), the low halves of the general registers, ES,
  CS, SS, DS and the LDT selector; FS and GS become null and CR3 is unchanged.

Not modelled: the I/O permission bitmap is read elsewhere (port I/O checks),
not here; VM86 beyond the segment-loading hook (the other engineer's work).
"""

from __future__ import annotations

from . import debug, interrupts, segments
from .consts import (CR0_PG, CR0_TS, CS, DESC_CODE, DESC_CONFORMING, DESC_P, DESC_RW, DESC_S,
                     EFLAGS_FIXED, GP, M32, NP, NT, PF_VEC, SS, SS_SEG, TS, VM)
from .errors import CpuFault, Shutdown
from .flags import materialize
from .vmx import MAX_DELIVERY_RETRIES

# Sources of a task switch (SDM table 7-2).
JMP, CALL, IRET, INT = "jmp", "call", "iret", "int"

TASK_GATE = 0x5
TSS16_AVAIL, TSS16_BUSY, TSS32_AVAIL, TSS32_BUSY = 0x1, 0x3, 0x9, 0xB
TSS_TYPES = frozenset({TSS16_AVAIL, TSS16_BUSY, TSS32_AVAIL, TSS32_BUSY})
BUSY = 0x2                       # type bit 1 (bit 9 of a descriptor's high dword)
MIN_LIMIT32, MIN_LIMIT16 = 0x67, 0x2B
DR6_BT = 1 << 15                 # #DB caused by a TSS's T bit
DR7_LOCAL = 0x155                # L0 L1 L2 L3 LE
# EFLAGS bits a task switch loads from a 32-bit TSS (a 16-bit TSS: the low 16)
TASK_EFLAGS = 0x00257FD5 | VM
# The selectors of a TSS are in ES CS SS DS FS GS order; they are loaded (and
# checked) in this order, as QEMU does: CS, SS, ES, DS, FS, GS.
_SEG_ORDER = (CS, SS_SEG, 0, 3, 4, 5)
VM86_ATTR = 0xF3                 # present, DPL 3, read/write data, accessed


# ===================================================================== sources
def jmp_call(cpu, sel: int, lo: int, hi: int, attr: int, source: str, next_eip: int) -> None:
    """A far JMP or CALL whose descriptor (``lo``, ``hi``, ``attr``) is a TSS
    or a task gate (SDM vol. 2, JMP/CALL: TASK-GATE, TASK-STATE-SEGMENT)."""
    err = sel & 0xFFFC
    dpl = segments.dpl(attr)
    if attr & 0xF == TASK_GATE:
        if dpl < cpu.cpl or dpl < (sel & 3):
            raise CpuFault(GP, err)
        if not attr & DESC_P:
            raise CpuFault(NP, err)
        tss_sel = lo >> 16
        lo, hi = _gdt_tss(cpu, tss_sel, GP, 0)
        tattr = segments.desc_attr(hi)
        if tattr & 0xF not in (TSS16_AVAIL, TSS32_AVAIL):
            raise CpuFault(GP, tss_sel & 0xFFFC)
        if not tattr & DESC_P:
            raise CpuFault(NP, tss_sel & 0xFFFC)
    else:
        tss_sel = sel
        if sel & 4 or dpl < cpu.cpl or dpl < (sel & 3) or attr & BUSY:
            raise CpuFault(GP, err)          # (a TSS descriptor must be in the GDT)
        if not attr & DESC_P:
            raise CpuFault(NP, err)
    switch(cpu, tss_sel, lo, hi, source, next_eip, in_insn=True)


def interrupt(cpu, gate_lo: int, error_code, return_eip: int, ext: int, in_insn: bool) -> None:
    """An interrupt or exception through a present task gate of the IDT (the
    gate's DPL was checked by the caller for INT n).  SDM vol. 2, INT n:
    TASK-GATE.  ``error_code`` (or None) is pushed on the new task's stack."""
    tss_sel = gate_lo >> 16
    lo, hi = _gdt_tss(cpu, tss_sel, GP, ext)
    tattr = segments.desc_attr(hi)
    if tattr & 0xF not in (TSS16_AVAIL, TSS32_AVAIL):
        raise CpuFault(GP, (tss_sel & 0xFFFC) + ext)
    if not tattr & DESC_P:
        raise CpuFault(NP, (tss_sel & 0xFFFC) + ext)
    switch(cpu, tss_sel, lo, hi, INT, return_eip, error_code=error_code, ext=ext, in_insn=in_insn)


def iret(cpu, next_eip: int) -> None:
    """IRET with EFLAGS.NT set in protected mode: return to the task named
    by the current TSS's back link (SDM vol. 2, IRET: TASK-RETURN)."""
    back = cpu.sys_read(cpu.tr_base, 2)
    lo, hi = _gdt_tss(cpu, back, TS, 0)
    attr = segments.desc_attr(hi)
    if attr & 0xF not in (TSS16_BUSY, TSS32_BUSY):
        raise CpuFault(TS, back & 0xFFFC)
    if not attr & DESC_P:
        raise CpuFault(NP, back & 0xFFFC)
    switch(cpu, back, lo, hi, IRET, next_eip, in_insn=True)


def _gdt_tss(cpu, sel: int, vector: int, ext: int) -> tuple[int, int]:
    """(lo, hi) of the GDT descriptor a TSS selector names: TI=1, a null
    selector or an index past the GDT limit is ``vector``(selector)."""
    err = (sel & 0xFFFC) + ext
    if sel & 4 or not sel & 0xFFFC or (sel & 0xFFF8) + 7 > cpu.gdtr_limit:
        raise CpuFault(vector, err)
    addr = (cpu.gdtr_base + (sel & 0xFFF8)) & M32
    lo, hi = cpu.sys_read(addr, 4), cpu.sys_read(addr + 4, 4)
    if hi & (DESC_S << 8):
        raise CpuFault(vector, err)
    return lo, hi


# ===================================================================== the switch
class _Tss:
    """The fields of a TSS a switch reads (32-bit or 16-bit layout)."""

    def __init__(self, cpu, base: int, is32: bool):
        rd = cpu.sys_read
        if is32:
            self.cr3 = rd(base + 0x1C, 4)
            self.eip = rd(base + 0x20, 4)
            self.eflags = rd(base + 0x24, 4)
            self.regs = [rd(base + 0x28 + 4 * i, 4) for i in range(8)]
            self.sels = [rd(base + 0x48 + 4 * i, 2) for i in range(6)]
            self.ldt = rd(base + 0x60, 2)
            self.trap = rd(base + 0x64, 2) & 1
        else:
            self.cr3 = None
            self.eip = rd(base + 0x0E, 2)
            self.eflags = rd(base + 0x10, 2)
            self.regs = [rd(base + 0x12 + 2 * i, 2) for i in range(8)]
            self.sels = [rd(base + 0x22 + 2 * i, 2) for i in range(4)] + [0, 0]
            self.ldt = rd(base + 0x2A, 2)
            self.trap = 0


def _is32(attr: int) -> bool:
    return bool(attr & 0x8)


def _touch_write(cpu, lin: int, size: int) -> None:
    """Fault now (supervisor write) if a later store of ``size`` bytes at
    ``lin`` would: stores before the commit point are made only after this."""
    cpu._translate_range(lin & M32, size, True, False)


def switch(cpu, tss_sel: int, lo: int, hi: int, source: str, next_eip: int, *,
           error_code=None, ext: int = 0, in_insn: bool = False) -> None:
    """Switch to the task whose TSS descriptor is (``lo``, ``hi``) in the GDT
    (SDM vol. 3, 7.3).  ``next_eip`` is the EIP saved for the outgoing task."""
    attr = segments.desc_attr(hi)
    err = (tss_sel & 0xFFFC) + ext
    if not attr & DESC_P:
        raise CpuFault(NP, err)
    new32 = _is32(attr)
    base, limit = segments.desc_base(lo, hi), segments.desc_limit(lo, hi)
    if limit < (MIN_LIMIT32 if new32 else MIN_LIMIT16):
        raise CpuFault(TS, err)
    # -- read the new task's state; make sure every store below can be made
    new = _Tss(cpu, base, new32)
    old32 = _is32(cpu.tr_attr)
    old_base = cpu.tr_base
    if old32:
        _touch_write(cpu, old_base + 0x20, 0x40)
    else:
        _touch_write(cpu, old_base + 0x0E, 0x1C)
    old_desc = (cpu.gdtr_base + (cpu.tr_sel & 0xFFF8)) & M32
    new_desc = (cpu.gdtr_base + (tss_sel & 0xFFF8)) & M32
    clear_old = source in (JMP, IRET) and cpu.tr_sel & 0xFFFC and (cpu.tr_sel & 0xFFF8) + 7 <= cpu.gdtr_limit
    if clear_old:
        _touch_write(cpu, old_desc + 4, 4)
    if source != IRET:
        _touch_write(cpu, new_desc + 4, 4)
    if source in (CALL, INT):
        _touch_write(cpu, base, 2)
    # -- the stores hardware makes before it commits
    if clear_old:
        cpu.sys_write(old_desc + 4, 4, cpu.sys_read(old_desc + 4, 4) & ~(BUSY << 8))
    eflags = materialize(cpu)
    if source == IRET:
        eflags &= ~NT
    _save(cpu, old_base, old32, next_eip, eflags)
    new_eflags = new.eflags
    if source in (CALL, INT):
        cpu.sys_write(base, 2, cpu.tr_sel)
        new_eflags |= NT
    if source != IRET:
        cpu.sys_write(new_desc + 4, 4, hi | (BUSY << 8))
    hi |= BUSY << 8
    # -- commit: from here on, faults are the new task's
    old_sel = cpu.tr_sel
    cpu.tr_sel, cpu.tr_base, cpu.tr_limit, cpu.tr_attr = tss_sel, base, limit, segments.desc_attr(hi)
    try:
        _load_new(cpu, new, new32, new_eflags, error_code, ext)
    except CpuFault as e:
        cpu.ops.task_switch(cpu, old_sel, tss_sel, source)
        cpu._refresh()
        if not in_insn:
            raise                          # the event delivery applies the double-fault rule
        interrupts.deliver_exception(cpu, e)
        cpu._refresh()
        return
    cpu.ops.task_switch(cpu, old_sel, tss_sel, source)
    if new.trap:
        cpu.pending_db |= DR6_BT
    cpu._refresh()


def _save(cpu, base: int, is32: bool, eip: int, eflags: int) -> None:
    """The outgoing task's dynamic state into its TSS (SDM 7.2.1)."""
    wr = cpu.sys_write
    if is32:
        wr(base + 0x20, 4, eip & M32)
        wr(base + 0x24, 4, eflags & M32)
        for i, v in enumerate(cpu.regs):
            wr(base + 0x28 + 4 * i, 4, v)
        for i, s in enumerate(cpu.seg_sel):
            wr(base + 0x48 + 4 * i, 2, s)
    else:
        wr(base + 0x0E, 2, eip & 0xFFFF)
        wr(base + 0x10, 2, eflags & 0xFFFF)
        for i, v in enumerate(cpu.regs):
            wr(base + 0x12 + 2 * i, 2, v & 0xFFFF)
        for i in range(4):
            wr(base + 0x22 + 2 * i, 2, cpu.seg_sel[i])


def _set_ts(cpu) -> None:
    """CR0.TS = 1 (the guest's CR0 in guest mode: ``set_cr0`` takes guest values)."""
    cr0 = cpu.guest_cr(0)
    if not cr0 & CR0_TS:
        cpu.set_cr0(cr0 | CR0_TS)


def _load_new(cpu, new: _Tss, new32: bool, eflags: int, error_code, ext: int) -> None:
    """After the commit point: the new task's state, then its descriptors."""
    _set_ts(cpu)
    if new32 and cpu.guest_cr(0) & CR0_PG:
        cpu.ops.cr_write(cpu, 3, new.cr3)        # as MOV CR3: in guest mode, the monitor's exit
    cpu.eip = new.eip
    cur = materialize(cpu)
    if new32:
        cpu.eflags = (eflags & TASK_EFLAGS) | EFLAGS_FIXED
        cpu.regs[:] = new.regs
    else:
        cpu.eflags = (cur & ~0xFFFF) | (eflags & TASK_EFLAGS & 0xFFFF) | EFLAGS_FIXED
        cpu.regs[:] = [(r & 0xFFFF0000) | v for r, v in zip(cpu.regs, new.regs)]
    if cpu.dr[7] & DR7_LOCAL:
        cpu.dr[7] &= ~DR7_LOCAL
        debug.update_watch_pages(cpu)
    cpu.set_cpl(3 if cpu.eflags & VM else new.sels[CS] & 3)
    # selectors first, unusable: a fault below leaves the rest unusable
    for seg, sel in enumerate(new.sels):
        segments.set_cache(cpu, seg, sel, 0, 0, 0)
    cpu.ldtr_sel, cpu.ldtr_base, cpu.ldtr_limit, cpu.ldtr_attr = new.ldt & ~4, 0, 0, 0
    _post(cpu, _load_ldt, cpu, new.ldt, ext)
    load_segments_for_eflags(cpu, cpu.eflags, new.sels, ext)
    if error_code is not None:
        _post(cpu, _push_error_code, cpu, error_code, 4 if new32 else 2, ext)
    if cpu.eip > cpu.seg_hi[CS]:
        raise CpuFault(GP, ext)


def _post(cpu, fn, *args):
    """One step after the commit point.  A page fault the monitor resolves
    (``ops.exception`` returns None: a shadow miss) retries the step; any
    other fault is raised, in the new task's context."""
    for _ in range(MAX_DELIVERY_RETRIES):
        try:
            return fn(*args)
        except CpuFault as e:
            if e.vector != PF_VEC:
                raise
            e2 = cpu.ops.exception(cpu, e)
            if e2 is not None:
                e2.examined = True         # the monitor saw it: not offered (and logged) twice
                raise e2 from None
    raise Shutdown("a task switch keeps faulting in the monitor")


def _load_ldt(cpu, sel: int, ext: int) -> None:
    """LDTR from the new TSS: null leaves it unusable; otherwise a present
    LDT descriptor in the GDT, else #TS(LDT selector) (SDM table 7-1)."""
    if not sel & 0xFFFC:
        return
    err = (sel & 0xFFFC) + ext
    if sel & 4 or (sel & 0xFFF8) + 7 > cpu.gdtr_limit:
        raise CpuFault(TS, err)
    addr = (cpu.gdtr_base + (sel & 0xFFF8)) & M32
    lo, hi = cpu.sys_read(addr, 4), cpu.sys_read(addr + 4, 4)
    attr = segments.desc_attr(hi)
    if attr & (DESC_S | 0xF) != 0x2 or not attr & DESC_P:
        raise CpuFault(TS, err)
    cpu.ldtr_sel, cpu.ldtr_base = sel, segments.desc_base(lo, hi)
    cpu.ldtr_limit, cpu.ldtr_attr = segments.desc_limit(lo, hi), attr


def _push_error_code(cpu, code: int, size: int, ext: int) -> None:
    """The error code of an exception delivered through a task gate, pushed
    on the new task's stack (#SS(EXT) if it does not fit)."""
    s32 = cpu.stack32
    mask = M32 if s32 else 0xFFFF
    sp = ((cpu.regs[4] & mask) - size) & mask
    if sp + size - 1 > cpu.seg_whi[SS_SEG] or sp < cpu.seg_lo[SS_SEG]:
        raise CpuFault(SS, ext)
    cpu.wr((cpu.seg_base[SS_SEG] + sp) & M32, size, code & ((1 << (8 * size)) - 1))
    cpu.regs[4] = sp if s32 else (cpu.regs[4] & 0xFFFF0000) | sp


# ============================================================ segment loading
def load_segments_for_eflags(cpu, eflags: int, sels, ext: int = 0) -> None:
    """Load ES, CS, SS, DS, FS, GS from ``sels`` (in that order) for a context
    whose EFLAGS is ``eflags``: virtual-8086 style when VM=1, else with the
    task-switch checks of SDM table 7-1 against CPL = CS.RPL.

    This is the one place a task switch loads segment registers; the
    virtual-8086 work calls it (or ``load_segments_vm86``) too."""
    if eflags & VM:
        load_segments_vm86(cpu, sels)
        return
    cpl = sels[CS] & 3
    for seg in _SEG_ORDER:
        _post(cpu, _load_checked, cpu, seg, sels[seg], cpl, ext)


def load_segments_vm86(cpu, sels) -> None:
    """Virtual-8086 mode: every segment register real-mode style (base =
    selector << 4, limit 0xFFFF, a present read/write DPL-3 segment), CPL 3.
    The virtual-8086 work's ``segments.enter_vm86_segments`` does exactly
    this and is used when present (one implementation for IRET and tasks)."""
    enter = getattr(segments, "enter_vm86_segments", None)
    if enter is not None:
        enter(cpu, sels)
        return
    for seg, sel in enumerate(sels):
        segments.set_cache(cpu, seg, sel & 0xFFFF, (sel & 0xFFFF) << 4, 0xFFFF, VM86_ATTR)
    cpu.set_cpl(3)


def _load_checked(cpu, seg: int, sel: int, cpl: int, ext: int) -> None:
    """One segment register of the new task (SDM table 7-1, items 5-17):
    #TS(selector) for a bad selector, type or privilege, #NP (#SS for SS)
    when not present."""
    err = (sel & 0xFFFC) + ext
    if not sel & 0xFFFC:
        if seg in (CS, SS_SEG):
            raise CpuFault(TS, ext)
        return                               # a null data segment: unusable, no fault
    if sel & 4:
        if not cpu.ldtr_sel & 0xFFFC:
            raise CpuFault(TS, err)
        tbase, tlimit = cpu.ldtr_base, cpu.ldtr_limit
    else:
        tbase, tlimit = cpu.gdtr_base, cpu.gdtr_limit
    if (sel & 0xFFF8) + 7 > tlimit:
        raise CpuFault(TS, err)
    addr = (tbase + (sel & 0xFFF8)) & M32
    lo, hi = cpu.sys_read(addr, 4), cpu.sys_read(addr + 4, 4)
    attr = segments.desc_attr(hi)
    rpl, dpl = sel & 3, segments.dpl(attr)
    if not attr & DESC_S:
        raise CpuFault(TS, err)
    if seg == CS:
        if not attr & DESC_CODE:
            raise CpuFault(TS, err)
        if (dpl > rpl) if attr & DESC_CONFORMING else (dpl != rpl):
            raise CpuFault(TS, err)
        if not attr & DESC_P:
            raise CpuFault(NP, err)
        segments.load_cs(cpu, sel, lo, hi, addr, cpl)
        return
    if seg == SS_SEG:
        if attr & DESC_CODE or not attr & DESC_RW or dpl != cpl or rpl != cpl:
            raise CpuFault(TS, err)
        if not attr & DESC_P:
            raise CpuFault(SS, err)
    else:
        if attr & DESC_CODE and not attr & DESC_RW:
            raise CpuFault(TS, err)
        if not (attr & DESC_CODE and attr & DESC_CONFORMING) and (dpl < cpl or dpl < rpl):
            raise CpuFault(TS, err)
        if not attr & DESC_P:
            raise CpuFault(NP, err)
    hi = segments.set_accessed(cpu, addr, hi)
    segments.set_cache(cpu, seg, sel, segments.desc_base(lo, hi), segments.desc_limit(lo, hi),
                       segments.desc_attr(hi))
