"""Control transfer: JMP, Jcc, CALL, RET, LOOP/LOOPZ/LOOPNZ/JCXZ (near);
JMPF, CALLF, RETF (far, real and protected mode, call gates); INT n, INT3,
INTO, INT1, IRET; BOUND; SYSENTER/SYSEXIT.

Invariants:
- For J operands the decoder already turned ``d.imm`` into the absolute
  target offset, truncated to 16 bits when the operand size is 16.
- Near targets are checked against the CS limit (``cpu.seg_hi[CS]``) before
  anything changes: #GP(0).  The lower bound is not tested: CS always holds a
  code segment (or a real-mode segment), which is never expand-down, so
  ``cpu.seg_lo[CS]`` is 0.
- Precise exceptions: every check (descriptor, privilege, limit, stack room)
  happens before any register changes; a far transfer reads every stack
  slot before committing, and writes a new stack before loading SS:ESP, CS
  and EIP.  Stores that precede a fault may remain, as on hardware.
- After a CS change (``segments.load_cs``) CPL and the TLB privilege are
  already right; nothing else needs to be told.

Not modelled (documented in docs/ARCHITECTURE.md as "not modelled"):
- (Task switches are modelled: a far JMP/CALL whose selector names a TSS or
  a task gate, and IRET with EFLAGS.NT set, switch tasks in ``tasks.py``.)

Virtual-8086 mode (EFLAGS.VM; SDM vol. 3, chapter 20): far JMP/CALL/RETF
work as in real mode (``segments.load_plain``); INT n and IRET are
IOPL-sensitive there (#GP(0) unless IOPL is 3; INT3, INTO and INT1 are
not); IRET at CPL 0 popping an EFLAGS image with VM set enters VM86
(``_iret_to_vm86``); leaving it is an interrupt or exception
(``interrupts.deliver``) or SYSENTER.
"""

from __future__ import annotations

from .. import flags as lf
from .. import interrupts, segments, tasks
from ..consts import (AC, BR, CS, DESC_CODE, DESC_CONFORMING, DESC_EXPDOWN, DESC_P, DESC_RW,
                      DESC_S, GP, ID, IF, IOPL, M32, MSR_SYSENTER_CS, MSR_SYSENTER_EIP,
                      MSR_SYSENTER_ESP, NP, NT, OF, RF, SS, SS_SEG, TS, VM)
from ..cpu import EFLAGS_WRITABLE, u32_from
from ..errors import CpuFault
from ..flags import CONDITIONS, get_cf, materialize
from ..optable import CC
from ..registry import register
from .common import compile_handler, read_rm, sext
from .stack import check_push_room, push_all, sp_add, vm86_iopl3


# ===================================================================== near
def _jmp_rel(cpu, d):
    """JMP rel8/rel16/rel32."""
    t = d.imm
    if t > cpu.seg_hi[1]:
        raise CpuFault(GP, 0)
    cpu.eip = t


register("JMP", "Jb", _jmp_rel)
register("JMP", "Jz", _jmp_rel)


def _jmp_ev(size: int):
    def jmp_ev(cpu, d):
        """JMP r/m16 / r/m32 (the 16-bit target is zero-extended)."""
        t = read_rm(cpu, d, size)
        if t > cpu.seg_hi[1]:
            raise CpuFault(GP, 0)
        cpu.eip = t
    return jmp_ev


register("JMP", "Ev", {2: _jmp_ev(2), 4: _jmp_ev(4)})


# Jcc: one generated handler per condition.  The common conditions are
# evaluated inline from the lazy-flag record (see flags.py); the rest call
# the condition function once.
_CC_INLINE = {
    "B": f"(cpu.lf_a < cpu.lf_b if cpu.lf_op >> 2 == {lf.SUB} else get_cf(cpu))",
    "Z": "(cpu.lf_res == 0 if cpu.lf_op else cpu.eflags & 0x40)",
}

_JCC_TEMPLATE = """
def {name}(cpu, d):
    if {cond}:
        t = d.imm
        if t > cpu.seg_hi[1]:
            raise CpuFault(13, 0)
        cpu.eip = t
"""


def _gen_jcc(i: int):
    base = CC[i & ~1]
    expr = _CC_INLINE.get(base, "C(cpu)")
    cond = f"not {expr}" if i & 1 else expr
    name = "j" + CC[i].lower()
    return compile_handler(_JCC_TEMPLATE.format(name=name, cond=cond), name,
                           {"C": CONDITIONS[i & ~1], "get_cf": get_cf, "CpuFault": CpuFault})


for _i, _cc in enumerate(CC):
    _h = _gen_jcc(_i)
    register("J" + _cc, "Jb", _h)
    register("J" + _cc, "Jz", _h)


def _call32_rel(cpu, d):
    """CALL rel32: the target is checked before the return address is pushed."""
    t = d.imm
    if t > cpu.seg_hi[1]:
        raise CpuFault(GP, 0)
    cpu.push32(d.next)
    cpu.eip = t


def _call16_rel(cpu, d):
    t = d.imm
    if t > cpu.seg_hi[1]:
        raise CpuFault(GP, 0)
    cpu.push(d.next & 0xFFFF, 2)
    cpu.eip = t


register("CALL", "Jz", {2: _call16_rel, 4: _call32_rel})


def _call_ev(size: int):
    def call_ev(cpu, d):
        """CALL r/m: the target is read (with the old ESP) before the push."""
        t = read_rm(cpu, d, size)
        if t > cpu.seg_hi[1]:
            raise CpuFault(GP, 0)
        cpu.push(d.next & (M32 if size == 4 else 0xFFFF), size)
        cpu.eip = t
    return call_ev


register("CALL", "Ev", {2: _call_ev(2), 4: _call_ev(4)})


def _ret32(cpu, d):
    """RET / RET imm16 with a 32-bit operand; ESP moves only after the target
    passed the CS limit check."""
    r = cpu.regs
    if cpu.stack32:
        sp = r[4]
        if sp > cpu.seg_hi[2] - 3 or sp < cpu.seg_lo[2]:
            raise CpuFault(SS, 0)
        lin = (cpu.seg_base[2] + sp) & M32
        w = cpu.tlb_r[lin >> 12]
        if w is not None and lin & 0xFFF <= 0xFFC:
            t = u32_from(cpu.ram, lin + w)[0]
        else:
            t = cpu._rd_slow(lin, 4)
        if t > cpu.seg_hi[1]:
            raise CpuFault(GP, 0)
        r[4] = (sp + 4 + d.imm) & M32
    else:
        t = cpu.peek(0, 4)
        if t > cpu.seg_hi[1]:
            raise CpuFault(GP, 0)
        sp_add(cpu, 4 + d.imm)
    cpu.eip = t


def _ret16(cpu, d):
    t = cpu.peek(0, 2)
    if t > cpu.seg_hi[1]:
        raise CpuFault(GP, 0)
    sp_add(cpu, 2 + d.imm)
    cpu.eip = t


# RET without an immediate has d.imm == 0, so one handler serves both forms.
register("RET", "", {2: _ret16, 4: _ret32})
register("RET", "Iw", {2: _ret16, 4: _ret32})


_ZF = CONDITIONS[4]          # ZF == 1, from the lazy-flag record


def _loop_kind(kind: int):
    """LOOP (kind 0), LOOPZ (1), LOOPNZ (2): decrement eCX (the address size
    picks CX or ECX; flags unchanged) and branch while it is non-zero (and ZF
    matches).  The count is written only once the branch target passed the
    limit check."""
    def loop(cpu, d):
        r = cpu.regs
        if d.asz == 4:
            c = (r[1] - 1) & M32
        else:
            c = (r[1] - 1) & 0xFFFF
        take = c != 0
        if take and kind:
            z = _ZF(cpu)
            take = z if kind == 1 else not z
        if take:
            t = d.imm
            if t > cpu.seg_hi[1]:
                raise CpuFault(GP, 0)
            cpu.eip = t
        if d.asz == 4:
            r[1] = c
        else:
            r[1] = (r[1] & 0xFFFF0000) | c
    return loop


def _jcxz(cpu, d):
    """JCXZ / JECXZ (address size selects CX or ECX)."""
    c = cpu.regs[1] if d.asz == 4 else cpu.regs[1] & 0xFFFF
    if not c:
        t = d.imm
        if t > cpu.seg_hi[1]:
            raise CpuFault(GP, 0)
        cpu.eip = t


register("LOOP", "Jb", _loop_kind(0))
register("LOOPZ", "Jb", _loop_kind(1))
register("LOOPNZ", "Jb", _loop_kind(2))
register("JCXZ", "Jb", _jcxz)


# ====================================================== far: shared helpers
_TASK_TYPES = frozenset({0x1, 0x3, 0x5, 0x9, 0xB})   # TSS (16/32, available/busy), task gate
_CALL_GATES = {0x4: 2, 0xC: 4}                        # type -> operand size


def _mem_far_ptr(cpu, d) -> tuple[int, int]:
    """(offset, selector) of an Mp memory operand: the offset (operand size)
    then the 16-bit selector."""
    size = d.osz
    off = cpu.rd(d.ea(cpu), size)
    amask = M32 if d.asz == 4 else 0xFFFF
    sel = cpu.rd(cpu.lin(d.seg, (d.eoff(cpu) + size) & amask), 2)
    return off, sel


def _code_or_fault(cpu, sel: int, null_err: int = 0):
    """Read a descriptor; return (lo, hi, addr, attr).  Null -> #GP(null_err)."""
    if not sel & 0xFFFC:
        raise CpuFault(GP, null_err)
    lo, hi, addr = segments.read_descriptor(cpu, sel)
    return lo, hi, addr, segments.desc_attr(hi)


def _check_direct_code(cpu, sel: int, attr: int) -> None:
    """JMP/CALL straight to a code segment (SDM vol. 2, JMP/CALL, protected
    mode): conforming needs DPL <= CPL, non-conforming RPL <= CPL and
    DPL == CPL; then it must be present."""
    err = sel & 0xFFFC
    if not attr & DESC_S or not attr & DESC_CODE:
        raise CpuFault(GP, err)
    dpl = segments.dpl(attr)
    if attr & DESC_CONFORMING:
        if dpl > cpu.cpl:
            raise CpuFault(GP, err)
    elif (sel & 3) > cpu.cpl or dpl != cpu.cpl:
        raise CpuFault(GP, err)
    if not attr & DESC_P:
        raise CpuFault(NP, err)


def _check_return_code(cpu, sel: int, attr: int) -> None:
    """RETF/IRET target code segment (SDM vol. 2, RET/IRET): RPL >= CPL,
    conforming DPL <= RPL, non-conforming DPL == RPL, present."""
    err = sel & 0xFFFC
    rpl = sel & 3
    if not attr & DESC_S or not attr & DESC_CODE or rpl < cpu.cpl:
        raise CpuFault(GP, err)
    dpl = segments.dpl(attr)
    if (dpl > rpl) if attr & DESC_CONFORMING else (dpl != rpl):
        raise CpuFault(GP, err)
    if not attr & DESC_P:
        raise CpuFault(NP, err)


def _check_outer_ss(cpu, sel: int, rpl: int) -> tuple[int, int, int]:
    """The SS popped by a return to an outer ring: non-null, RPL == DPL ==
    the new CPL, a writable data segment, present (#GP(sel) / #SS(sel)).
    Returns the descriptor ``(lo, hi, addr)`` for ``segments.commit_ss``."""
    if not sel & 0xFFFC:
        raise CpuFault(GP, 0)
    lo, hi, addr = segments.read_descriptor(cpu, sel)
    attr = segments.desc_attr(hi)
    err = sel & 0xFFFC
    if (sel & 3) != rpl or segments.dpl(attr) != rpl or not attr & DESC_S \
            or attr & DESC_CODE or not attr & DESC_RW:
        raise CpuFault(GP, err)
    if not attr & DESC_P:
        raise CpuFault(SS, err)
    return lo, hi, addr


def _data_bounds(attr: int, limit: int) -> tuple[int, int]:
    """Valid offsets [lo, hi] of a data segment (expand-down aware)."""
    if attr & DESC_EXPDOWN:
        return limit + 1, (M32 if attr & segments.ATTR_DB else 0xFFFF)
    return 0, limit


def _outer_esp(cpu, value: int) -> int:
    """ESP after loading a new SS with ``value`` as its stack pointer (only SP
    changes when the new stack is 16-bit)."""
    if cpu.stack32:
        return value & M32
    return (cpu.regs[4] & 0xFFFF0000) | (value & 0xFFFF)


# ================================================================ JMPF
def _jmpf(cpu, d, off: int, sel: int) -> None:
    """JMP ptr16:16/32 and JMP m16:16/32 to ``sel:off``."""
    if not cpu.protected or cpu.eflags & VM:
        if off > cpu.seg_hi[CS]:
            raise CpuFault(GP, 0)
        segments.load_plain(cpu, CS, sel)
        cpu.eip = off
        return
    lo, hi, addr, attr = _code_or_fault(cpu, sel)
    if attr & DESC_S:
        _check_direct_code(cpu, sel, attr)
        if off > segments.desc_limit(lo, hi):
            raise CpuFault(GP, 0)
        segments.load_cs(cpu, sel, lo, hi, addr, cpu.cpl)
        cpu.eip = off
        return
    gtype = attr & 0xF
    if gtype in _CALL_GATES:
        csel, clo, chi, caddr, goff, gsize, cattr = _through_gate(cpu, sel, lo, hi, attr)
        if not cattr & DESC_CONFORMING and segments.dpl(cattr) != cpu.cpl:
            raise CpuFault(GP, csel & 0xFFFC)
        if not cattr & DESC_P:
            raise CpuFault(NP, csel & 0xFFFC)
        if goff > segments.desc_limit(clo, chi):
            raise CpuFault(GP, 0)
        segments.load_cs(cpu, csel, clo, chi, caddr, cpu.cpl)
        cpu.eip = goff
        return
    if gtype in _TASK_TYPES:
        tasks.jmp_call(cpu, sel, lo, hi, attr, tasks.JMP, d.next)
        return
    raise CpuFault(GP, sel & 0xFFFC)


def _through_gate(cpu, sel: int, lo: int, hi: int, attr: int):
    """Checks common to JMP and CALL through a call gate, up to the target
    code descriptor's type and DPL <= CPL.  Returns (code selector, lo, hi,
    addr, gate offset, gate size, code attr)."""
    err = sel & 0xFFFC
    gdpl = segments.dpl(attr)
    if gdpl < cpu.cpl or gdpl < (sel & 3):
        raise CpuFault(GP, err)
    if not attr & DESC_P:
        raise CpuFault(NP, err)
    gsize = _CALL_GATES[attr & 0xF]
    csel = lo >> 16
    goff = ((lo & 0xFFFF) | (hi & 0xFFFF0000)) if gsize == 4 else lo & 0xFFFF
    clo, chi, caddr, cattr = _code_or_fault(cpu, csel)
    if not cattr & DESC_S or not cattr & DESC_CODE or segments.dpl(cattr) > cpu.cpl:
        raise CpuFault(GP, csel & 0xFFFC)
    return csel, clo, chi, caddr, goff, gsize, cattr


# ================================================================ CALLF
def _callf(cpu, d, off: int, sel: int) -> None:
    """CALL ptr16:16/32 and CALL m16:16/32 to ``sel:off``."""
    size = d.osz
    ret = d.next & (M32 if size == 4 else 0xFFFF)
    if not cpu.protected or cpu.eflags & VM:
        check_push_room(cpu, 2 * size)
        if off > cpu.seg_hi[CS]:
            raise CpuFault(GP, 0)
        push_all(cpu, (cpu.seg_sel[CS], ret), size)
        segments.load_plain(cpu, CS, sel)
        cpu.eip = off
        return
    lo, hi, addr, attr = _code_or_fault(cpu, sel)
    if attr & DESC_S:
        _check_direct_code(cpu, sel, attr)
        check_push_room(cpu, 2 * size)
        if off > segments.desc_limit(lo, hi):
            raise CpuFault(GP, 0)
        push_all(cpu, (cpu.seg_sel[CS], ret), size)
        segments.load_cs(cpu, sel, lo, hi, addr, cpu.cpl)
        cpu.eip = off
        return
    if attr & 0xF in _CALL_GATES:
        _callf_gate(cpu, d, sel, lo, hi, attr)
        return
    if attr & 0xF in _TASK_TYPES:
        tasks.jmp_call(cpu, sel, lo, hi, attr, tasks.CALL, d.next)
        return
    raise CpuFault(GP, sel & 0xFFFC)


def _callf_gate(cpu, d, sel: int, lo: int, hi: int, attr: int) -> None:
    """CALL through a call gate (SDM vol. 2, CALL: CALL-GATE,
    MORE-PRIVILEGE / SAME-PRIVILEGE).  The gate's size sets the size of every
    slot pushed, of the copied parameters, and of the new EIP."""
    csel, clo, chi, caddr, goff, gsize, cattr = _through_gate(cpu, sel, lo, hi, attr)
    cerr = csel & 0xFFFC
    if not cattr & DESC_P:
        raise CpuFault(NP, cerr)
    climit = segments.desc_limit(clo, chi)
    cdpl = segments.dpl(cattr)
    vmask = M32 if gsize == 4 else 0xFFFF
    ret = d.next & vmask
    if cattr & DESC_CONFORMING or cdpl == cpu.cpl:
        check_push_room(cpu, 2 * gsize)
        if goff > climit:
            raise CpuFault(GP, 0)
        push_all(cpu, (cpu.seg_sel[CS], ret), gsize)
        segments.load_cs(cpu, csel, clo, chi, caddr, cpu.cpl)
        cpu.eip = goff
        return
    # More privilege: new stack from the TSS, parameters copied across.
    new_cpl = cdpl
    new_ss, new_esp = interrupts._tss_stack(cpu, new_cpl, 0)
    serr = new_ss & 0xFFFC
    slo, shi, _ = segments.read_descriptor(cpu, new_ss, TS)
    sattr = segments.desc_attr(shi)
    if (new_ss & 3) != new_cpl or segments.dpl(sattr) != new_cpl or not sattr & DESC_S \
            or sattr & DESC_CODE or not sattr & DESC_RW:
        raise CpuFault(TS, serr)
    if not sattr & DESC_P:
        raise CpuFault(SS, serr)
    count = hi & 0x1F
    params = [cpu.peek(i * gsize, gsize) for i in range(count)]   # caller's stack, caller's CPL
    frame = [cpu.seg_sel[SS_SEG], cpu.regs[4] & vmask]
    frame.extend(reversed(params))
    frame += [cpu.seg_sel[CS], ret]
    s32 = bool(sattr & segments.ATTR_DB)
    smask = M32 if s32 else 0xFFFF
    sbase = segments.desc_base(slo, shi)
    lo_b, hi_b = _data_bounds(sattr, segments.desc_limit(slo, shi))
    sp = new_esp & smask
    slots = []
    for v in frame:
        sp = (sp - gsize) & smask
        if sp < lo_b or sp + gsize - 1 > hi_b:
            raise CpuFault(SS, serr)
        slots.append(((sbase + sp) & M32, v & vmask))
    if goff > climit:
        raise CpuFault(GP, 0)
    for lin, v in slots:
        cpu.sys_write(lin, gsize, v)
    segments.load_ss(cpu, new_ss, cpl=new_cpl)
    cpu.regs[4] = sp if s32 else (new_esp & 0xFFFF0000) | sp
    segments.load_cs(cpu, csel, clo, chi, caddr, new_cpl)
    cpu.eip = goff


def _jmpf_ap(cpu, d):
    _jmpf(cpu, d, d.imm, d.imm2)


def _jmpf_mp(cpu, d):
    off, sel = _mem_far_ptr(cpu, d)
    _jmpf(cpu, d, off, sel)


def _callf_ap(cpu, d):
    _callf(cpu, d, d.imm, d.imm2)


def _callf_mp(cpu, d):
    off, sel = _mem_far_ptr(cpu, d)
    _callf(cpu, d, off, sel)


register("JMPF", "Ap", _jmpf_ap)
register("JMPF", "Mp", _jmpf_mp)
register("CALLF", "Ap", _callf_ap)
register("CALLF", "Mp", _callf_mp)


# ================================================================ RETF
def _retf(cpu, d):
    """RETF / RETF imm16 (SDM vol. 2, RET): same privilege, or to an outer
    ring popping SS:ESP and nulling data segments the new CPL may not use.
    ``d.imm`` (0 without an immediate) is released on both stacks."""
    size = d.osz
    imm = d.imm
    t_eip = cpu.peek(0, size)
    t_cs = cpu.peek(size, size) & 0xFFFF
    if not cpu.protected or cpu.eflags & VM:
        if t_eip > cpu.seg_hi[CS]:
            raise CpuFault(GP, 0)
        segments.load_plain(cpu, CS, t_cs)
        cpu.eip = t_eip
        sp_add(cpu, 2 * size + imm)
        return
    lo, hi, addr, attr = _code_or_fault(cpu, t_cs)
    _check_return_code(cpu, t_cs, attr)
    limit = segments.desc_limit(lo, hi)
    rpl = t_cs & 3
    if rpl == cpu.cpl:
        if t_eip > limit:
            raise CpuFault(GP, 0)
        segments.load_cs(cpu, t_cs, lo, hi, addr, rpl)
        cpu.eip = t_eip
        sp_add(cpu, 2 * size + imm)
        return
    n = 2 * size + imm
    t_esp = cpu.peek(n, size)
    t_ss = cpu.peek(n + size, size) & 0xFFFF
    ss_desc = _check_outer_ss(cpu, t_ss, rpl)
    if t_eip > limit:
        raise CpuFault(GP, 0)
    segments.load_cs(cpu, t_cs, lo, hi, addr, rpl)
    cpu.eip = t_eip
    segments.commit_ss(cpu, t_ss, *ss_desc)
    cpu.regs[4] = _outer_esp(cpu, t_esp + imm)
    segments.revalidate_data_segments(cpu)


register("RETF", "", _retf)
register("RETF", "Iw", _retf)


# =========================================================== interrupts
def _int_ib(cpu, d):
    """INT imm8: a software interrupt (the gate DPL is checked against CPL).
    In VM86 it is IOPL-sensitive: #GP(0) unless IOPL is 3 (CD 03 included;
    the one-byte INT3, INTO and INT1 are not sensitive)."""
    vm86_iopl3(cpu)
    interrupts.deliver(cpu, d.imm, None, d.next, external=False, soft=True)


def _int3(cpu, d):
    interrupts.deliver(cpu, 3, None, d.next, external=False, soft=True)


def _into(cpu, d):
    """INTO: #OF (vector 4) as a trap, only when OF is set."""
    if materialize(cpu) & OF:
        interrupts.deliver(cpu, 4, None, d.next, external=False, soft=True)


def _int1(cpu, d):
    """INT1 / ICEBP (F1): vector 1 as a trap, without the gate DPL check of
    INT n."""
    interrupts.deliver(cpu, 1, None, d.next, external=False, soft=False, insn=True)


register("INT", "Ib", _int_ib)
register("INT3", "", _int3)
register("INTO", "", _into)
register("INT1", "", _int1)


# Flags IRET always restores in protected mode (SDM vol. 2, IRET).
_IRET_BASE = 0x4DD5 | (1 << 8)       # CF PF AF ZF SF TF DF OF NT
_IRET_REAL32 = 0x257FD5


def iret_mask(cpu, osz: int) -> int:
    """EFLAGS bits a protected-mode IRET restores, by the CPL and IOPL in
    force *before* the return: IF only if CPL <= IOPL, IOPL only at CPL 0;
    RF/AC/ID only with a 32-bit operand; bits 16+ never with a 16-bit one."""
    mask = _IRET_BASE
    cpl = cpu.cpl
    if cpl <= (cpu.eflags & IOPL) >> 12:
        mask |= IF
    if cpl == 0:
        mask |= IOPL
    if osz == 4:
        mask |= RF | AC | ID
    else:
        mask &= 0xFFFF
    return mask


def _iret(cpu, d):
    """IRET / IRETD.  Real mode; protected mode to the same ring or to an
    outer ring (pops ESP and SS, nulls data segments the new CPL may not use);
    from CPL 0 to virtual-8086 mode; inside VM86 (IOPL 3 only).  NT set in
    protected mode: a task return (``tasks.iret``).  Every IRET ends NMI
    blocking first (as Bochs does, and as the SDM's "until the next
    execution of IRET" and VT-x's "NMI unblocking due to IRET" describe:
    the unblocking stands even when the IRET then faults)."""
    size = d.osz
    if cpu.nmi_blocked:                  # any IRET ends NMI blocking, even one that faults
        cpu.unblock_nmi()
    if cpu.eflags & VM:
        _iret_in_vm86(cpu, size)
        return
    if cpu.protected and materialize(cpu) & NT:
        tasks.iret(cpu, d.next)          # return to the task in the back link (nothing popped)
        return
    at = cpu.stack_dwords(0, 3, False) if size == 4 else -1
    if at >= 0:
        t_eip, t_cs, t_fl = cpu.ram32[at:at + 3]
        t_cs &= 0xFFFF
    else:
        t_eip = cpu.peek(0, size)
        t_cs = cpu.peek(size, size) & 0xFFFF
        t_fl = cpu.peek(2 * size, size)
    if not cpu.protected:
        if t_eip > cpu.seg_hi[CS]:
            raise CpuFault(GP, 0)
        segments.load_real(cpu, CS, t_cs)
        cpu.eip = t_eip
        sp_add(cpu, 3 * size)
        cpu.set_eflags(t_fl, _IRET_REAL32 if size == 4 else 0xFFFF)
        return
    if size == 4 and t_fl & VM and cpu.cpl == 0:
        _iret_to_vm86(cpu, t_eip, t_cs, t_fl)
        return
    lo, hi, addr, attr = _code_or_fault(cpu, t_cs)
    _check_return_code(cpu, t_cs, attr)
    limit = segments.desc_limit(lo, hi)
    rpl = t_cs & 3
    mask = iret_mask(cpu, size)
    if rpl == cpu.cpl:
        if t_eip > limit:
            raise CpuFault(GP, 0)
        segments.load_cs(cpu, t_cs, lo, hi, addr, rpl)
        cpu.eip = t_eip
        sp_add(cpu, 3 * size)
        cpu.set_eflags(t_fl, mask)
        return
    t_esp = cpu.peek(3 * size, size)
    t_ss = cpu.peek(4 * size, size) & 0xFFFF
    ss_desc = _check_outer_ss(cpu, t_ss, rpl)
    if t_eip > limit:
        raise CpuFault(GP, 0)
    cpu.set_eflags(t_fl, mask)
    segments.load_cs(cpu, t_cs, lo, hi, addr, rpl)
    cpu.eip = t_eip
    segments.commit_ss(cpu, t_ss, *ss_desc)
    cpu.regs[4] = _outer_esp(cpu, t_esp)
    segments.revalidate_data_segments(cpu)


def _iret_to_vm86(cpu, t_eip: int, t_cs: int, t_fl: int) -> None:
    """IRETD at CPL 0 with VM set in the popped EFLAGS (SDM vol. 2, IRET:
    RETURN-TO-VIRTUAL-8086-MODE): ESP, SS, ES, DS, FS, GS follow EIP, CS,
    EFLAGS on the stack (a dword each, selectors in the low word); every
    flag is restored, VM and IOPL included; the six segment registers are
    loaded VM86 style; CPL becomes 3.  The new EIP must lie within the new
    CS limit (0xFFFF), else #GP(0) before anything changes."""
    esp, ss, es, ds, fs, gs = (cpu.peek(12 + 4 * i, 4) for i in range(6))
    if t_eip > 0xFFFF:
        raise CpuFault(GP, 0)
    cpu.set_eflags(t_fl, M32)
    segments.enter_vm86_segments(cpu, (es, t_cs, ss, ds, fs, gs))
    cpu.regs[4] = esp
    cpu.eip = t_eip


def _iret_in_vm86(cpu, size: int) -> None:
    """IRET in virtual-8086 mode (SDM vol. 2, IRET:
    RETURN-FROM-VIRTUAL-8086-MODE): #GP(0) unless IOPL is 3; then a
    real-mode style return that leaves VM and IOPL (and VIF/VIP) alone and
    requires the new EIP within the CS limit."""
    vm86_iopl3(cpu)
    t_eip = cpu.peek(0, size)
    t_cs = cpu.peek(size, size) & 0xFFFF
    t_fl = cpu.peek(2 * size, size)
    if t_eip > 0xFFFF:
        raise CpuFault(GP, 0)
    segments.load_vm86(cpu, CS, t_cs)
    cpu.eip = t_eip
    sp_add(cpu, 3 * size)
    mask = EFLAGS_WRITABLE & ~(VM | IOPL)
    cpu.set_eflags(t_fl, mask if size == 4 else mask & 0xFFFF)


register("IRET", "", _iret)


# ================================================================ BOUND
def _bound(cpu, d):
    """BOUND r, m: #BR unless lower <= index <= upper (signed, operand size)."""
    size = d.osz
    lin = d.ea(cpu)
    lower = sext(cpu.rd(lin, size), size)
    amask = M32 if d.asz == 4 else 0xFFFF
    upper = sext(cpu.rd(cpu.lin(d.seg, (d.eoff(cpu) + size) & amask), size), size)
    idx = sext(cpu.regs[d.reg] & (M32 if size == 4 else 0xFFFF), size)
    if idx < lower or idx > upper:
        raise CpuFault(BR)


register("BOUND", "Gv,Ma", _bound)


# ======================================================= SYSENTER / SYSEXIT
_FLAT_CODE0 = 0xC09B   # G, D, P, DPL 0, code, execute/read, accessed
_FLAT_DATA0 = 0xC093   # G, B, P, DPL 0, data, read/write, accessed
_FLAT_CODE3 = 0xC0FB
_FLAT_DATA3 = 0xC0F3


def _sysenter(cpu, d):
    """SYSENTER (SDM vol. 2): #GP(0) outside protected mode or with a null
    IA32_SYSENTER_CS; flat ring-0 CS/SS caches from the MSR, ESP/EIP from
    the MSRs; VM, IF and RF cleared (from VM86 too: DS, ES, FS and GS keep
    their VM86 caches, as on hardware)."""
    cs = cpu.msr.get(MSR_SYSENTER_CS, 0) & 0xFFFF
    if not cpu.protected or not cs & 0xFFFC:
        raise CpuFault(GP, 0)
    cpu.set_eflags(0, VM | IF | RF)
    segments.set_cache(cpu, CS, cs & 0xFFFC, 0, M32, _FLAT_CODE0)
    segments.set_cache(cpu, SS_SEG, (cs & 0xFFFC) + 8, 0, M32, _FLAT_DATA0)
    cpu.set_cpl(0)
    cpu.regs[4] = cpu.msr.get(MSR_SYSENTER_ESP, 0) & M32
    cpu.eip = cpu.msr.get(MSR_SYSENTER_EIP, 0) & M32


def _sysexit(cpu, d):
    """SYSEXIT (SDM vol. 2): #GP(0) outside protected mode, at CPL != 0 or
    with a null IA32_SYSENTER_CS; flat ring-3 CS = SYSENTER_CS+16 and
    SS = SYSENTER_CS+24 (RPL 3); ESP = ECX, EIP = EDX."""
    cs = cpu.msr.get(MSR_SYSENTER_CS, 0) & 0xFFFF
    if not cpu.protected or not cs & 0xFFFC or cpu.cpl != 0:
        raise CpuFault(GP, 0)
    r = cpu.regs
    segments.set_cache(cpu, CS, ((cs + 16) & 0xFFFC) | 3, 0, M32, _FLAT_CODE3)
    segments.set_cache(cpu, SS_SEG, ((cs + 24) & 0xFFFC) | 3, 0, M32, _FLAT_DATA3)
    cpu.set_cpl(3)
    cpu.regs[4] = r[1]
    cpu.eip = r[2]


register("SYSENTER", "", _sysenter)
register("SYSEXIT", "", _sysexit)
