"""Delivering interrupts and exceptions (SDM vol. 3, chapter 6).

``deliver`` performs what the processor does between instructions when an
interrupt or exception is taken: real mode through the IVT, protected mode
through an interrupt or trap gate of the IDT, with the privilege checks, the
stack switch from the TSS on a change to an inner ring, and the frame pushed
exactly as hardware pushes it.  State is committed only after every check and
every stack write has succeeded, so a fault during delivery leaves the
interrupted context intact for the double-fault rule in
``deliver_exception``.

From virtual-8086 mode (EFLAGS.VM) an event leaves VM86: the gate must lead
to a non-conforming ring-0 code segment (else #GP(selector)); the ring-0
stack comes from the TSS and receives GS, FS, DS, ES, then SS, ESP, EFLAGS
(VM set), CS, EIP and any error code; DS, ES, FS and GS become null and VM
is cleared with TF, NT and RF (SDM vol. 3, 20.3.1.1).  INT n's IOPL check
in VM86 is the instruction's (ops/control.py).

A task gate in the IDT switches tasks (``tasks.interrupt``): the new task's
state is loaded from its TSS, NT set and the back link written, and an
exception's error code is pushed on the new task's stack; nothing is pushed
on the interrupted task's stack.  This is how a kernel survives its own
stack overflow: #DF through a task gate runs on a known-good stack.
"""

from __future__ import annotations

from . import segments, tasks
from .consts import (AC, CONTRIBUTORY, CS, DESC_CODE, DESC_CONFORMING, DESC_EXPDOWN, DESC_P, DESC_RW, DESC_S,
                     DF_VEC, DS, ES, EXCEPTION_NAMES, FS, GP, GS, IF, M32, NP, NT, PF_VEC, RF, SS, SS_SEG, TF,
                     TS, VM)
from .errors import CpuFault, Shutdown
from .flags import materialize
from .vmx import MAX_DELIVERY_RETRIES

# Exceptions (delivered, or hidden page faults the monitor fixes) a processor
# may take in a row without retiring an instruction.  A handler whose first
# instruction faults again (its own vector, or a fetch past the CS limit)
# would make hardware take the same exception forever, with no instruction
# ever retiring, so neither an instruction budget nor the guest's clock would
# end it; past this many the processor shuts down as after a triple fault.
# A real instruction needs a handful (code, data, stack, descriptor pages).
MAX_STALLED_EXCEPTIONS = 1024

GATE_TYPES = {0x6: (2, False), 0x7: (2, True), 0xE: (4, False), 0xF: (4, True)}  # size, trap
TASK_GATE = 0x5                  # an IDT task gate: the event switches tasks (tasks.py)


def deliver(cpu, vector: int, error_code, return_eip: int, external: bool, soft: bool = False,
            insn: bool = False) -> None:
    """Transfer control to the handler for ``vector``.

    ``return_eip`` is the EIP pushed (the faulting instruction for faults, the
    next one for traps and software interrupts).  ``soft`` marks INT n / INT3 /
    INTO, which check the gate's DPL against CPL; ``insn`` (implied by
    ``soft``) marks an event raised by the executing instruction (INT1 too),
    which matters for a task gate: a fault after its task switch committed is
    delivered in the new task (tasks.py), not handed back to the instruction.

    ``cpu.intercept``, when set, sees every event first and may claim it by
    returning True (the way a VM exit on an exception-bitmap bit does); test
    harnesses and the monitor use it.
    """
    if soft:
        cpu.pending_db &= ~0x4000
    hook = cpu.intercept
    if hook is not None and hook(vector, error_code, return_eip, soft, external):
        return
    if not cpu.protected:
        _deliver_real(cpu, vector, return_eip)
        return
    ext = 1 if external else 0
    if vector * 8 + 7 > cpu.idtr_limit:
        raise CpuFault(GP, vector * 8 + 2 + ext)
    addr = (cpu.idtr_base + vector * 8) & M32
    lo, hi = cpu.sys_read_pair(addr)
    gtype = (hi >> 8) & 0x1F
    if gtype == TASK_GATE:
        if soft and (hi >> 13) & 3 < cpu.cpl:
            raise CpuFault(GP, vector * 8 + 2)
        if not hi & (1 << 15):
            raise CpuFault(NP, vector * 8 + 2 + ext)
        tasks.interrupt(cpu, lo, error_code, return_eip, ext, in_insn=soft or insn)
        return
    gate = GATE_TYPES.get(gtype)
    if gate is None:
        raise CpuFault(GP, vector * 8 + 2 + ext)
    size, trap = gate
    gdpl = (hi >> 13) & 3
    if soft and gdpl < cpu.cpl:
        raise CpuFault(GP, vector * 8 + 2)
    if not hi & (1 << 15):
        raise CpuFault(NP, vector * 8 + 2 + ext)
    sel = lo >> 16
    offset = (lo & 0xFFFF) | (hi & 0xFFFF0000) if size == 4 else lo & 0xFFFF
    if not sel & 0xFFFC:
        raise CpuFault(GP, ext)
    clo, chi, caddr = segments.read_descriptor(cpu, sel)
    _cbase, climit, cattr = segments.parse(clo, chi)
    cdpl = segments.dpl(cattr)
    err_sel = (sel & 0xFFFC) + ext
    if not cattr & DESC_S or not cattr & DESC_CODE or cdpl > cpu.cpl:
        raise CpuFault(GP, err_sel)
    if not cattr & DESC_P:
        raise CpuFault(NP, err_sel)
    vm86 = cpu.eflags & VM
    if vm86 and (cattr & DESC_CONFORMING or cdpl != 0):
        raise CpuFault(GP, err_sel)       # VM86 leaves only for a ring-0 non-conforming handler
    if offset > climit:
        raise CpuFault(GP, 0)
    eflags = materialize(cpu)
    old_cs = cpu.seg_sel[CS]
    has_err = error_code is not None
    if not cattr & DESC_CONFORMING and cdpl < cpu.cpl:
        # Inner-ring handler: new stack from the TSS.
        new_ss, new_esp = _tss_stack(cpu, cdpl, ext)
        slo, shi, saddr = segments.read_descriptor(cpu, new_ss, TS)
        sbase, slimit, sattr = segments.parse(slo, shi)
        serr = (new_ss & 0xFFFC) + ext
        if (new_ss & 3) != cdpl or segments.dpl(sattr) != cdpl or not sattr & DESC_S \
                or sattr & DESC_CODE or not sattr & DESC_RW:
            raise CpuFault(TS, serr)
        if not sattr & DESC_P:
            raise CpuFault(SS, serr)
        s32 = bool(sattr & segments.ATTR_DB)
        frame = [cpu.seg_sel[SS_SEG], cpu.regs[4], eflags, old_cs, return_eip]
        if vm86:                          # from VM86: GS FS DS ES go first (SDM vol. 3, 20.3.1.1)
            frame[:0] = [cpu.seg_sel[s] for s in (GS, FS, DS, ES)]
        if has_err:
            frame.append(error_code)
        sp = new_esp if s32 else new_esp & 0xFFFF
        if not sattr & DESC_EXPDOWN and (sp > slimit + 1 or sp < size * len(frame)):
            raise CpuFault(SS, serr)      # the new stack cannot hold the frame
        for v in frame:
            sp = (sp - size) & (M32 if s32 else 0xFFFF)
            cpu.sys_write((sbase + sp) & M32, size, v & ((1 << (8 * size)) - 1))
        if vm86:
            cpu.eflags &= ~VM             # protected-mode loads from here on
            for seg in (ES, DS, FS, GS):
                segments.set_cache(cpu, seg, 0, 0, 0, 0)
        segments.commit_ss(cpu, new_ss, slo, shi, saddr)
        cpu.regs[4] = sp if s32 else (new_esp & 0xFFFF0000) | sp
        new_cpl = cdpl
    else:
        frame = [eflags, old_cs, return_eip]
        if has_err:
            frame.append(error_code)
        s32 = cpu.stack32
        sp = cpu.regs[4] if s32 else cpu.regs[4] & 0xFFFF
        lins = []
        for v in frame:
            sp = (sp - size) & (M32 if s32 else 0xFFFF)
            if sp + size - 1 > cpu.seg_whi[SS_SEG] or sp < cpu.seg_lo[SS_SEG]:
                raise CpuFault(SS, ext)
            lins.append(((cpu.seg_base[SS_SEG] + sp) & M32, v & ((1 << (8 * size)) - 1)))
        for lin, v in lins:
            cpu.wr(lin, size, v)
        cpu.regs[4] = sp if s32 else (cpu.regs[4] & 0xFFFF0000) | sp
        new_cpl = cpu.cpl
    segments.load_cs(cpu, sel, clo, chi, caddr, new_cpl)
    cpu.eip = offset
    clear = TF | NT | RF | VM | (0 if trap else IF)
    cpu.eflags &= ~clear
    cpu._refresh()


def _tss_stack(cpu, new_cpl: int, ext: int) -> tuple[int, int]:
    tss32 = (cpu.tr_attr & 0xF) in (0x9, 0xB)
    if tss32:
        off = 4 + 8 * new_cpl
        if off + 5 > cpu.tr_limit:
            raise CpuFault(TS, (cpu.tr_sel & 0xFFFC) + ext)
        esp = cpu.sys_read((cpu.tr_base + off) & M32, 4)
        ss = cpu.sys_read((cpu.tr_base + off + 4) & M32, 2)
    else:
        off = 2 + 4 * new_cpl
        if off + 3 > cpu.tr_limit:
            raise CpuFault(TS, (cpu.tr_sel & 0xFFFC) + ext)
        esp = cpu.sys_read((cpu.tr_base + off) & M32, 2)
        ss = cpu.sys_read((cpu.tr_base + off + 2) & M32, 2)
    if not ss & 0xFFFC:
        raise CpuFault(TS, ext)
    return ss, esp


def _deliver_real(cpu, vector: int, return_eip: int) -> None:
    if vector * 4 + 3 > cpu.idtr_limit:
        raise CpuFault(GP, vector * 8 + 2)
    addr = (cpu.idtr_base + vector * 4) & M32
    ip = cpu.sys_read(addr, 2)
    cs = cpu.sys_read(addr + 2, 2)
    flags = materialize(cpu)
    cpu.check_write((cpu.seg_base[SS_SEG] + ((cpu.regs[4] - 6) & 0xFFFF)) & M32, 6)
    cpu.push(flags & 0xFFFF, 2)
    cpu.push(cpu.seg_sel[CS], 2)
    cpu.push(return_eip & 0xFFFF, 2)
    segments.load_real(cpu, CS, cs)
    cpu.eip = ip
    cpu.eflags &= ~(IF | TF | AC | RF)
    cpu._refresh()


def _double_fault_class(first: int, second: int) -> bool:
    """True when ``second`` during delivery of ``first`` is a double fault."""
    if first in CONTRIBUTORY and second in CONTRIBUTORY:
        return True
    if first == PF_VEC and (second == PF_VEC or second in CONTRIBUTORY):
        return True
    return False


def deliver_exception(cpu, e: CpuFault) -> None:
    """Deliver a fault raised by an instruction (EIP already points at it).

    Applies the double-fault rule; a fault while delivering #DF raises
    ``Shutdown``, and so does the exception after ``MAX_STALLED_EXCEPTIONS``
    in a row with no instruction retired between them.
    """
    if cpu.icount != cpu.stall_icount:  # an instruction retired since the last exception
        cpu.stall_icount, cpu.stalls = cpu.icount, 0
    cpu.stalls += 1
    if cpu.stalls > MAX_STALLED_EXCEPTIONS:
        raise Shutdown(f"{MAX_STALLED_EXCEPTIONS} exceptions without an instruction retiring, the last "
                       f"{EXCEPTION_NAMES.get(e.vector, e.vector)} at eip {cpu.eip:#x} (no forward progress)")
    ops = cpu.ops                        # in guest mode the monitor sees every exception first
    e = ops.exception(cpu, e)
    if e is None:
        return
    chain = [e.vector]
    retries = 0
    while True:
        if e.vector == PF_VEC and e.cr2 is not None:
            cpu.cr2 = e.cr2
        try:
            deliver(cpu, e.vector, e.error_code, cpu.eip, external=False)
            return
        except CpuFault as e2:
            if retries < MAX_DELIVERY_RETRIES:
                retries += 1
                e3 = ops.exception(cpu, e2)
                if e3 is None:
                    continue             # a shadow miss during delivery: deliver again
                e2 = e3
            first = e.vector
            if first == DF_VEC:
                raise Shutdown(_describe(chain + [e2.vector])) from None
            if _double_fault_class(first, e2.vector):
                if e2.vector == PF_VEC and e2.cr2 is not None:
                    cpu.cr2 = e2.cr2
                chain.append(e2.vector)
                e = CpuFault(DF_VEC, 0)
            else:
                e = e2
            chain.append(e.vector)
            if len(chain) > 8:
                raise Shutdown(_describe(chain)) from None


def _describe(chain) -> str:
    return " -> ".join(EXCEPTION_NAMES.get(v, str(v)) for v in chain)
