"""System instructions: flag operations, segment-register moves and far
pointer loads, descriptor tables (SGDT/SIDT/LGDT/LIDT/SLDT/STR/LLDT/LTR),
descriptor probes (LAR/LSL/VERR/VERW/ARPL), control and debug registers,
SMSW/LMSW/CLTS, INVLPG/INVD/WBINVD, the time-stamp counter, MSRs, CPUID,
HLT, CLI/STI and UD2 (the x87 escapes and WAIT are in ``x87.py``).

Invariants:
- Precise exceptions: every privilege, mode and descriptor check happens
  before any register or descriptor-table byte changes.  Privileged
  instructions test CPL before touching their memory operand (as QEMU and
  the SDM's exception order do).  CPL is 0 in real mode, so "CPL 0 only"
  checks need no mode test.
- The privileged operations themselves (CR0/CR3/CR4 reads and writes,
  INVLPG, HLT, CPUID, RDMSR/WRMSR) go through ``cpu.ops`` (``native.py``)
  after the architectural checks; the handlers have no other code path.
- Instructions the SDM says are "not recognized in real-address mode" and
  in virtual-8086 mode (SLDT STR LLDT LTR VERR VERW LAR LSL ARPL) raise #UD
  there.  Everything "CPL 0 only" is #GP(0) in VM86, where CPL is 3; CLI
  and STI are IOPL-sensitive there by the same CPL <= IOPL rule.
- The time-stamp counter *is* the instruction count (determinism): it reads
  ``instructions retired before this one + cpu.tsc_offset``.  The run loop
  adds a block's count to ``cpu.icount`` only when the block ends, so the
  position of the instruction inside the running block is added here (see
  ``_tsc``).
- CPUID advertises only what tvmm implements.
- Segment selectors stored to a 32-bit register are zero-extended (P6
  behaviour); stored to memory they are always 16 bits.

Not modelled: the VME/PVI virtual interrupt flags (CR4 refuses them), PAE,
MTRRs, machine checks, counting by the performance counters (RDPMC reads
what WRMSR left in PERFCTR0/1).  (LTR only loads TR and marks it busy;
task switches themselves are ``tasks.py``.)
"""

from __future__ import annotations

from .. import debug, segments
from ..consts import (AF, CF, CR0_CD, CR0_NW, CR0_PE, CR0_PG, CR0_TS, CR0_VALID, CR4_DE,
                      CR4_PCE, CR4_TSD, CR4_VALID, DB, DESC_CODE, DESC_CONFORMING, DESC_P, DESC_RW,
                      DESC_S, DF, DR6_BD, DR6_FIXED, DR7_GD, GP, IF, IOPL, M32, MSR_PERFCTR0, NP, PF, SF,
                      SS_SEG, SYS_LDT, SYS_TSS16_AVAIL, SYS_TSS32_AVAIL, UD, VM, ZF)
from ..errors import CpuFault
from ..flags import get_cf, materialize, set_arith
from ..registry import raise_ud, register
from .common import read_rm, set_reg

M64 = (1 << 64) - 1


# ============================================================== helpers
def _cpl0(cpu) -> None:
    """#GP(0) unless CPL is 0 (always true in real mode)."""
    if cpu.cpl:
        raise CpuFault(GP, 0)


def _pmode(cpu) -> None:
    """#UD outside protected mode proper, for the instructions the SDM lists
    as "not recognized in real-address mode" and "in virtual-8086 mode"."""
    if not cpu.protected or cpu.eflags & VM:
        raise CpuFault(UD)


def _second(cpu, d, delta: int, write: bool = False) -> int:
    """Checked linear address of the memory operand's offset + ``delta``
    (wrapping at the address size): the selector of an Mp operand, the base
    of an Ms one."""
    off = (d.eoff(cpu) + delta) & (M32 if d.asz == 4 else 0xFFFF)
    return cpu.lin(d.seg, off, write)


def _retired_before(cpu, d) -> int:
    """Instructions retired before ``d`` (see ``CPU.retired_before``)."""
    return cpu.retired_before(d)


def _tsc(cpu, d) -> int:
    """The 64-bit time-stamp counter as seen by instruction ``d``."""
    return (_retired_before(cpu, d) + cpu.tsc_offset) & M64


def _set_edx_eax(cpu, v: int) -> None:
    cpu.regs[0] = v & M32
    cpu.regs[2] = (v >> 32) & M32


# ======================================================== flag instructions
def _clc(cpu, d):
    set_arith(cpu, 0, CF)


def _stc(cpu, d):
    set_arith(cpu, CF, CF)


def _cmc(cpu, d):
    set_arith(cpu, CF ^ get_cf(cpu), CF)


def _cld(cpu, d):
    """CLD/STD write DF straight into ``cpu.eflags``: DF is always live there
    (flags.py) and none of the run loop's attention flags depend on it, so
    ``set_eflags`` (materialize + refresh) would only cost time in memcpy
    prologues."""
    cpu.eflags &= ~DF


def _std(cpu, d):
    cpu.eflags |= DF


_LAHF_BITS = SF | ZF | AF | PF | CF


def _lahf(cpu, d):
    """AH = SF:ZF:0:AF:0:PF:1:CF (bit 1 of EFLAGS always reads 1)."""
    r = cpu.regs
    r[0] = (r[0] & 0xFFFF00FF) | ((materialize(cpu) & 0xFF) << 8)


def _sahf(cpu, d):
    """SF ZF AF PF CF = AH; OF is untouched."""
    set_arith(cpu, (cpu.regs[0] >> 8) & _LAHF_BITS, _LAHF_BITS)


def _salc(cpu, d):
    """SALC (undocumented D6): AL = 0xFF if CF else 0; flags unchanged."""
    r = cpu.regs
    r[0] = (r[0] & 0xFFFFFF00) | (0xFF if get_cf(cpu) else 0)


register("CLC", "", _clc)
register("STC", "", _stc)
register("CMC", "", _cmc)
register("CLD", "", _cld)
register("STD", "", _std)
register("LAHF", "", _lahf)
register("SAHF", "", _sahf)
register("SALC", "", _salc)


# ================================================ CLI / STI / HLT
def _cli(cpu, d):
    """CLI: allowed when CPL <= IOPL (always in real mode), else #GP(0).
    VME/PVI are not modelled."""
    f = cpu.eflags
    if cpu.cpl > (f & IOPL) >> 12:
        raise CpuFault(GP, 0)
    if f & IF:
        cpu.set_eflags(0, IF)


def _sti(cpu, d):
    """STI: as CLI; when IF was 0 the next instruction runs in an interrupt
    shadow (SDM vol. 2, STI: interrupts are recognised after it completes)."""
    f = cpu.eflags
    if cpu.cpl > (f & IOPL) >> 12:
        raise CpuFault(GP, 0)
    if not f & IF:
        cpu.inhibit = True           # before set_eflags, whose refresh sees it
        cpu.set_eflags(IF, IF)


def _hlt(cpu, d):
    """HLT (CPL 0): EIP already points past it; the run loop returns HALTED
    until an interrupt wakes the CPU."""
    _cpl0(cpu)
    cpu.ops.hlt(cpu)


register("CLI", "", _cli)
register("STI", "", _sti)
register("HLT", "", _hlt)


# ===================================== segment registers and far pointers
def _mov_ev_sw_reg(size: int):
    def mov_ev_sw_reg(cpu, d):
        """MOV r16/r32, Sreg: a 32-bit destination gets the selector
        zero-extended (P6 behaviour); reg fields 6/7 are #UD."""
        seg = d.reg
        if seg > 5:
            raise CpuFault(UD)
        set_reg(cpu, d.rm, size, cpu.seg_sel[seg])
    return mov_ev_sw_reg


def _mov_ev_sw_mem(cpu, d):
    """MOV m16, Sreg: always a 16-bit store, whatever the operand size."""
    seg = d.reg
    if seg > 5:
        raise CpuFault(UD)
    cpu.wr16(d.eaw(cpu), cpu.seg_sel[seg])


register("MOV", "Ev,Sw", {2: (_mov_ev_sw_reg(2), _mov_ev_sw_mem),
                          4: (_mov_ev_sw_reg(4), _mov_ev_sw_mem)})


def _load_ds_like(seg: int):
    def load(cpu, sel):
        segments.load_data(cpu, seg, sel)
    return load


def _load_ss_shadow(cpu, sel):
    """MOV SS: the next instruction runs in an interrupt (and debug-trap)
    shadow, so that MOV SS; MOV ESP is atomic (SDM vol. 2, MOV)."""
    segments.load_ss(cpu, sel)
    cpu.inhibit = True
    cpu.attention = True


def _load_ud(cpu, sel):
    raise CpuFault(UD)


# Indexed by the ModRM reg field: ES CS SS DS FS GS, then two undefined.
# MOV CS, r/m is #UD (only far transfers load CS).
_SREG_LOADERS = (_load_ds_like(0), _load_ud, _load_ss_shadow, _load_ds_like(3),
                 _load_ds_like(4), _load_ds_like(5), _load_ud, _load_ud)


def _mov_sw_ew_reg(cpu, d):
    _SREG_LOADERS[d.reg](cpu, cpu.regs[d.rm] & 0xFFFF)


def _mov_sw_ew_mem(cpu, d):
    loader = _SREG_LOADERS[d.reg]
    if loader is _load_ud:
        raise CpuFault(UD)                   # before the memory operand is read
    loader(cpu, cpu.rd16(d.ea(cpu)))


register("MOV", "Sw,Ew", (_mov_sw_ew_reg, _mov_sw_ew_mem))


def _lxs(seg: int):
    def lxs(cpu, d):
        """LDS/LES/LFS/LGS/LSS r, m16:16/32: offset (operand size) then the
        selector; the segment is loaded first so a faulting load leaves the
        general register untouched.  LSS makes no interrupt shadow."""
        size = d.osz
        off = cpu.rd(d.ea(cpu), size)
        sel = cpu.rd16(_second(cpu, d, size))
        segments.load(cpu, seg, sel)
        set_reg(cpu, d.reg, size, off)
    return lxs


for _mn, _seg in (("LES", 0), ("LSS", SS_SEG), ("LDS", 3), ("LFS", 4), ("LGS", 5)):
    register(_mn, "Gv,Mp", _lxs(_seg))


# ======================================================= descriptor tables
def _sdt(which: str):
    def sdt(cpu, d):
        """SGDT/SIDT m: limit (16 bits) then base (32 bits).  With a 16-bit
        operand only 24 bits of base are stored and the top byte is 0 (SDM
        vol. 2, SGDT, P6-era pseudocode; QEMU does the same).  Not
        privileged."""
        base = getattr(cpu, which + "_base")
        limit = getattr(cpu, which + "_limit")
        if d.osz == 2:
            base &= 0xFFFFFF
        lin = d.eaw(cpu)
        lin2 = _second(cpu, d, 2, write=True)
        cpu.check_write(lin2, 4)
        cpu.wr16(lin, limit)
        cpu.wr32(lin2, base)
    return sdt


def _ldt_reg(which: str):
    def ldt(cpu, d):
        """LGDT/LIDT m (CPL 0): limit then base; a 16-bit operand loads only
        24 bits of base (the top byte becomes 0)."""
        _cpl0(cpu)
        limit = cpu.rd16(d.ea(cpu))
        base = cpu.rd32(_second(cpu, d, 2))
        if d.osz == 2:
            base &= 0xFFFFFF
        setattr(cpu, which + "_base", base)
        setattr(cpu, which + "_limit", limit)
    return ldt


register("SGDT", "Ms", _sdt("gdtr"))
register("SIDT", "Ms", _sdt("idtr"))
register("LGDT", "Ms", _ldt_reg("gdtr"))
register("LIDT", "Ms", _ldt_reg("idtr"))


def _store_selector(getter):
    """SLDT/STR r/m: protected mode only; a 32-bit register gets the selector
    zero-extended (P6), a 16-bit register its low half, memory 16 bits."""
    def reg16(cpu, d):
        _pmode(cpu)
        set_reg(cpu, d.rm, 2, getter(cpu))

    def reg32(cpu, d):
        _pmode(cpu)
        cpu.regs[d.rm] = getter(cpu)

    def mem(cpu, d):
        _pmode(cpu)
        cpu.wr16(d.eaw(cpu), getter(cpu))
    return {2: (reg16, mem), 4: (reg32, mem)}


register("SLDT", "Ev", _store_selector(lambda cpu: cpu.ldtr_sel))
register("STR", "Ev", _store_selector(lambda cpu: cpu.tr_sel))


def _gdt_system_descriptor(cpu, sel: int):
    """(lo, hi, addr) of the GDT descriptor for LLDT/LTR: a selector with
    TI=1 or outside the GDT is #GP(selector)."""
    if sel & 4:
        raise CpuFault(GP, sel & 0xFFFC)
    return segments.read_descriptor(cpu, sel)


def _lldt(cpu, d):
    """LLDT r/m16 (SDM vol. 2, LLDT): CPL 0, protected mode.  A null
    selector makes LDTR unusable (every later LDT reference faults); otherwise
    the GDT entry must be a present LDT descriptor (#GP(sel) / #NP(sel))."""
    _pmode(cpu)
    _cpl0(cpu)
    sel = read_rm(cpu, d, 2)
    if not sel & 0xFFFC:
        cpu.ldtr_sel, cpu.ldtr_base, cpu.ldtr_limit, cpu.ldtr_attr = sel, 0, 0, 0
        return
    lo, hi, _ = _gdt_system_descriptor(cpu, sel)
    attr = segments.desc_attr(hi)
    err = sel & 0xFFFC
    if attr & (DESC_S | 0xF) != SYS_LDT:
        raise CpuFault(GP, err)
    if not attr & DESC_P:
        raise CpuFault(NP, err)
    cpu.ldtr_sel, cpu.ldtr_base = sel, segments.desc_base(lo, hi)
    cpu.ldtr_limit, cpu.ldtr_attr = segments.desc_limit(lo, hi), attr


def _ltr(cpu, d):
    """LTR r/m16 (SDM vol. 2, LTR): CPL 0, protected mode; null selector
    #GP(0); the GDT entry must be an available 16- or 32-bit TSS (#GP(sel)),
    present (#NP(sel)); it is marked busy in the GDT and loaded into TR."""
    _pmode(cpu)
    _cpl0(cpu)
    sel = read_rm(cpu, d, 2)
    if not sel & 0xFFFC:
        raise CpuFault(GP, 0)
    lo, hi, addr = _gdt_system_descriptor(cpu, sel)
    attr = segments.desc_attr(hi)
    err = sel & 0xFFFC
    if attr & (DESC_S | 0xF) not in (SYS_TSS16_AVAIL, SYS_TSS32_AVAIL):
        raise CpuFault(GP, err)
    if not attr & DESC_P:
        raise CpuFault(NP, err)
    hi |= 0x200                       # type bit 1: busy
    cpu.sys_write(addr + 4, 4, hi)
    cpu.tr_sel, cpu.tr_base = sel, segments.desc_base(lo, hi)
    cpu.tr_limit, cpu.tr_attr = segments.desc_limit(lo, hi), segments.desc_attr(hi)


register("LLDT", "Ew", _lldt)
register("LTR", "Ew", _ltr)


# ======================================================== descriptor probes
def _probe(cpu, sel: int):
    """``(lo, hi)`` of the descriptor ``sel`` names, or None when the
    selector is null, names an unusable LDT, or lies outside its table.
    Never faults for the selector itself (reading the table may #PF)."""
    if not sel & 0xFFFC:
        return None
    if sel & 4:
        if not cpu.ldtr_sel & 0xFFFC:
            return None
        base, limit = cpu.ldtr_base, cpu.ldtr_limit
    else:
        base, limit = cpu.gdtr_base, cpu.gdtr_limit
    index = sel & 0xFFF8
    if index + 7 > limit:
        return None
    addr = (base + index) & M32
    return cpu.sys_read(addr, 4), cpu.sys_read((addr + 4) & M32, 4)


def _visible(cpu, sel: int, attr: int) -> bool:
    """The privilege rule shared by LAR, LSL, VERR and VERW: a conforming
    code segment is always visible, anything else needs DPL >= CPL and
    DPL >= RPL."""
    if attr & (DESC_S | DESC_CODE | DESC_CONFORMING) == DESC_S | DESC_CODE | DESC_CONFORMING:
        return True
    dpl = segments.dpl(attr)
    return dpl >= cpu.cpl and dpl >= (sel & 3)


# System types LAR / LSL accept (SDM vol. 2, LAR and LSL, non-64-bit modes).
_LAR_SYSTEM = frozenset({0x1, 0x2, 0x3, 0x4, 0x5, 0x9, 0xB, 0xC})
_LSL_SYSTEM = frozenset({0x1, 0x2, 0x3, 0x9, 0xB})


def _lookup(cpu, d, system_ok):
    """Common part of LAR/LSL: ``(lo, hi)`` when ZF is to be set, else None
    (and ZF is cleared here)."""
    _pmode(cpu)
    sel = read_rm(cpu, d, 2)
    desc = _probe(cpu, sel)
    if desc is not None:
        attr = segments.desc_attr(desc[1])
        if (attr & DESC_S or attr & 0xF in system_ok) and _visible(cpu, sel, attr):
            set_arith(cpu, ZF, ZF)
            return desc
    set_arith(cpu, 0, ZF)
    return None


def _lar(cpu, d):
    """LAR r, r/m16: the access rights dword ``hi & 0x00F0FF00`` (a 16-bit
    operand gets ``hi & 0xFF00``) and ZF=1, or ZF=0 and no write."""
    desc = _lookup(cpu, d, _LAR_SYSTEM)
    if desc is not None:
        if d.osz == 4:
            cpu.regs[d.reg] = desc[1] & 0x00F0FF00
        else:
            set_reg(cpu, d.reg, 2, desc[1] & 0xFF00)


def _lsl(cpu, d):
    """LSL r, r/m16: the byte-granular segment limit (G applied) and ZF=1,
    or ZF=0 and no write.  A 16-bit operand gets the low 16 bits."""
    desc = _lookup(cpu, d, _LSL_SYSTEM)
    if desc is not None:
        limit = segments.desc_limit(desc[0], desc[1])
        if d.osz == 4:
            cpu.regs[d.reg] = limit
        else:
            set_reg(cpu, d.reg, 2, limit & 0xFFFF)


register("LAR", "Gv,Ew", _lar)
register("LSL", "Gv,Ew", _lsl)


def _ver(write: bool):
    def ver(cpu, d):
        """VERR/VERW r/m16: ZF=1 when the segment could be read (readable
        code or any data) / written (writable data) from CPL with the
        selector's RPL.  System descriptors never verify; the present bit is
        not examined (SDM vol. 2, VERR/VERW; QEMU agrees)."""
        _pmode(cpu)
        sel = read_rm(cpu, d, 2)
        desc = _probe(cpu, sel)
        ok = False
        if desc is not None:
            attr = segments.desc_attr(desc[1])
            if attr & DESC_S and _visible(cpu, sel, attr):
                if write:
                    ok = not attr & DESC_CODE and bool(attr & DESC_RW)
                else:
                    ok = not attr & DESC_CODE or bool(attr & DESC_RW)
        set_arith(cpu, ZF if ok else 0, ZF)
    return ver


register("VERR", "Ew", _ver(False))
register("VERW", "Ew", _ver(True))


def _arpl_reg(cpu, d):
    """ARPL r/m16, r16: raise the destination's RPL to the source's (ZF=1),
    else ZF=0.  Protected mode only."""
    _pmode(cpu)
    dst = cpu.regs[d.rm] & 0xFFFF
    src_rpl = cpu.regs[d.reg] & 3
    if dst & 3 < src_rpl:
        set_reg(cpu, d.rm, 2, (dst & 0xFFFC) | src_rpl)
        set_arith(cpu, ZF, ZF)
    else:
        set_arith(cpu, 0, ZF)


def _arpl_mem(cpu, d):
    """ARPL m16, r16: a read-modify-write of the memory operand (the write
    access is checked even when the RPL does not change; nothing is stored
    then)."""
    _pmode(cpu)
    lin = d.eaw(cpu)
    dst = cpu.rd16(lin)
    src_rpl = cpu.regs[d.reg] & 3
    if dst & 3 < src_rpl:
        cpu.wr16(lin, (dst & 0xFFFC) | src_rpl)
        set_arith(cpu, ZF, ZF)
    else:
        set_arith(cpu, 0, ZF)


register("ARPL", "Ew,Gw", (_arpl_reg, _arpl_mem))


# ========================================================= control registers
def _read_cr(cpu, n: int) -> int:
    """CR2 is the processor's own; CR0/CR3/CR4 go through ``cpu.ops``."""
    if n == 2:
        return cpu.cr2
    if n == 0 or n == 3 or n == 4:
        return cpu.ops.cr_read(cpu, n)
    raise CpuFault(UD)


def _mov_r_cr(cpu, d):
    """MOV r32, CRn (CPL 0; CR1 and CR5-7 are #UD).  Always 32 bits."""
    _cpl0(cpu)
    cpu.regs[d.rm] = _read_cr(cpu, d.reg)


def _write_cr0(cpu, v: int) -> None:
    """CR0 (SDM vol. 3, 2.5): reserved bits, PG without PE and NW without CD
    are #GP(0).  ET is hardwired to 1 (``cpu.set_cr0``)."""
    if v & ~CR0_VALID or (v & CR0_PG and not v & CR0_PE) or (v & CR0_NW and not v & CR0_CD):
        raise CpuFault(GP, 0)
    cpu.ops.cr_write(cpu, 0, v)


def _write_cr2(cpu, v: int) -> None:
    cpu.cr2 = v


def _write_cr4(cpu, v: int) -> None:
    """CR4: any bit tvmm does not implement (VME, PVI, PAE, reserved) is
    #GP(0)."""
    if v & ~CR4_VALID:
        raise CpuFault(GP, 0)
    cpu.ops.cr_write(cpu, 4, v)


def _write_cr3(cpu, v: int) -> None:
    cpu.ops.cr_write(cpu, 3, v)


_CR_WRITERS = (_write_cr0, None, _write_cr2, _write_cr3, _write_cr4, None, None, None)


def _mov_cr_r(cpu, d):
    """MOV CRn, r32 (CPL 0; CR1 and CR5-7 are #UD)."""
    _cpl0(cpu)
    w = _CR_WRITERS[d.reg]
    if w is None:
        raise CpuFault(UD)
    w(cpu, cpu.regs[d.rm])


register("MOV", "Rd,Cd", _mov_r_cr)
register("MOV", "Cd,Rd", _mov_cr_r)


def _cr0(cpu) -> int:
    """CR0 as the running code sees it (the guest's value in guest mode)."""
    return cpu.ops.cr_read(cpu, 0)


def _smsw_reg16(cpu, d):
    set_reg(cpu, d.rm, 2, _cr0(cpu) & 0xFFFF)


def _smsw_reg32(cpu, d):
    """SMSW r32: the SDM leaves bits 16-31 undefined; P6 (and QEMU) store
    all of CR0."""
    cpu.regs[d.rm] = _cr0(cpu)


def _smsw_mem(cpu, d):
    """SMSW m16: the low 16 bits of CR0.  Not privileged."""
    cpu.wr16(d.eaw(cpu), _cr0(cpu) & 0xFFFF)


register("SMSW", "Ev", {2: (_smsw_reg16, _smsw_mem), 4: (_smsw_reg32, _smsw_mem)})


def _lmsw(cpu, d):
    """LMSW r/m16 (CPL 0): loads CR0 bits 0-3 (PE MP EM TS); PE can be set
    but not cleared."""
    _cpl0(cpu)
    v = read_rm(cpu, d, 2)
    cr0 = _cr0(cpu)
    new = (cr0 & ~0xF) | (v & 0xF) | (cr0 & CR0_PE)
    cpu.ops.cr_write(cpu, 0, new)


def _clts(cpu, d):
    """CLTS (CPL 0): CR0.TS = 0."""
    _cpl0(cpu)
    ops = cpu.ops
    ops.cr_write(cpu, 0, ops.cr_read(cpu, 0) & ~CR0_TS)


def _invlpg(cpu, d):
    """INVLPG m (CPL 0): drop the TLB entry for the operand's linear address
    (no segment-limit check, as on hardware and QEMU)."""
    _cpl0(cpu)
    lin = (cpu.seg_base[d.seg] + d.eoff(cpu)) & M32
    cpu.ops.invlpg(cpu, lin)


def _cache_op(cpu, d):
    """INVD/WBINVD (CPL 0): no caches are modelled, so nothing to do."""
    _cpl0(cpu)


register("LMSW", "Ew", _lmsw)
register("CLTS", "", _clts)
register("INVLPG", "Mb", _invlpg)
register("INVD", "", _cache_op)
register("WBINVD", "", _cache_op)


# =========================================================== debug registers
def _dr_index(cpu, n: int) -> int:
    """Checks common to MOV to/from DRn, in the SDM's order: #GP(0) unless
    CPL 0; DR4/DR5 are #UD with CR4.DE, else aliases of DR6/DR7; with
    DR7.GD set, a #DB fault with DR6.BD (GD is cleared, as the processor does
    on entering the handler; SDM vol. 3, 17.2.4).  Returns the register
    number."""
    _cpl0(cpu)
    if n == 4 or n == 5:
        if cpu.cr4 & CR4_DE:
            raise CpuFault(UD)
        n += 2
    if cpu.dr[7] & DR7_GD:
        cpu.dr[6] |= DR6_BD
        cpu.dr[7] &= ~DR7_GD
        raise CpuFault(DB)
    return n


def _mov_r_dr(cpu, d):
    cpu.regs[d.rm] = cpu.dr[_dr_index(cpu, d.reg)]


# Bits software can change: DR6 B0-B3, BD, BS, BT (the rest read as fixed
# ones, bit 12 as zero); DR7 L0-G3 (0-7), LE GE (8-9), GD (13), RW/LEN
# (16-31); bit 10 reads as one.
_DR6_WRITABLE = 0xE00F
_DR7_WRITABLE = 0xFFFF23FF


def _mov_dr_r(cpu, d):
    n = _dr_index(cpu, d.reg)
    v = cpu.regs[d.rm]
    if n == 6:
        cpu.dr[6] = (v & _DR6_WRITABLE) | DR6_FIXED
        return
    if n == 7:
        v = (v & _DR7_WRITABLE) | 0x400
    cpu.dr[n] = v
    debug.update_watch_pages(cpu)        # also refreshes the run loop's flags


register("MOV", "Rd,Dd", _mov_r_dr)
register("MOV", "Dd,Rd", _mov_dr_r)


# ============================================================ TSC, PMC, MSRs
def _rdtsc(cpu, d):
    """RDTSC: EDX:EAX = instructions retired before this one + tsc_offset.
    #GP(0) with CR4.TSD at CPL > 0."""
    if cpu.cr4 & CR4_TSD and cpu.cpl:
        raise CpuFault(GP, 0)
    _set_edx_eax(cpu, _tsc(cpu, d))


def _rdpmc(cpu, d):
    """RDPMC: #GP(0) unless CPL 0 or CR4.PCE (VM86 included), or when ECX
    names a counter the P6 does not have (only 0 and 1).  EDX:EAX = the
    40-bit PERFCTR0/1 MSR: what software last wrote there, since no event
    is counted (the counters exist but stand still)."""
    if cpu.cpl and not cpu.cr4 & CR4_PCE:
        raise CpuFault(GP, 0)
    ecx = cpu.regs[1]
    if ecx > 1:
        raise CpuFault(GP, 0)
    _set_edx_eax(cpu, cpu.msr.get(MSR_PERFCTR0 + ecx, 0))


def _rdmsr(cpu, d):
    """RDMSR (CPL 0): ``cpu.ops.rdmsr`` (see ``native.NativeOps.rdmsr``:
    TSC, APIC base and the SYSENTER MSRs; any other index is #GP(0))."""
    _cpl0(cpu)
    _set_edx_eax(cpu, cpu.ops.rdmsr(cpu, cpu.regs[1], _retired_before(cpu, d)))


def _wrmsr(cpu, d):
    """WRMSR (CPL 0): EDX:EAX to ``cpu.ops.wrmsr`` (see
    ``native.NativeOps.wrmsr`` for the MSRs and their #GP cases)."""
    _cpl0(cpu)
    r = cpu.regs
    cpu.ops.wrmsr(cpu, r[1], (r[2] << 32) | r[0], _retired_before(cpu, d))


register("RDTSC", "", _rdtsc)
register("RDPMC", "", _rdpmc)
register("RDMSR", "", _rdmsr)
register("WRMSR", "", _wrmsr)


# ==================================================================== CPUID
def _cpuid(cpu, d):
    """CPUID: ``cpu.ops.cpuid`` (the bare processor's Pentium Pro-class
    answer is ``native.NativeOps.cpuid``)."""
    cpu.ops.cpuid(cpu)


register("CPUID", "", _cpuid)


# ===================================================================== #UD
# (the x87 escapes D8-DF, WAIT and FXSAVE/FXRSTOR are in ops/x87.py)
register("UD2", "", raise_ud)
