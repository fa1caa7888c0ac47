"""x87 FPU instructions (D8-DF, WAIT, FXSAVE/FXRSTOR).

The decoder picks the row for an escape from ``optable.X87`` by its ModRM
byte; each row's ``(mnemonic, operands)`` has a handler here.  Arithmetic,
rounding and exceptions are in ``machine/x87`` (``float80``: the numbers;
``state``: the registers and exception flags).

Every x87 instruction, in this order (SDM vol. 1, 8.6 and vol. 3, 2.5):
1. CR0.EM or CR0.TS set: #NM (WAIT/FWAIT: only when MP and TS are both set).
2. A *waiting* instruction (all but FNINIT, FNCLEX, FNSTCW, FNSTSW,
   FNSTENV, FNSAVE, and FXSAVE/FXRSTOR) finds a pending unmasked exception
   (FSW.ES): with CR0.NE, #MF (vector 16) with EIP at this instruction;
   without it, the FERR# output is asserted (``cpu.ferr``, an IRQ line: the
   PC wires it to IRQ 13, and port F0h, FNCLEX or FNINIT deassert it), the
   running block ends so the interrupt is taken right after this
   instruction, and the instruction executes, as on a PC where IGNNE# is
   asserted (QEMU behaves the same way).
3. Memory operands are read (a #PF or #GP leaves the FPU unchanged); stores
   check the destination before anything changes.
4. A non-control instruction records FIP/FCS/FOP (and FDP/FDS with a memory
   operand).
5. The operation: an unmasked IE, DE or ZE stores nothing (and pops
   nothing); unmasked OE/UE scale a register result by 2^-+24576 and store
   nothing to memory; the flags raise ES, signalled at step 2 of the next
   waiting instruction.
"""

from __future__ import annotations

from ..consts import AF, CF, CR0_EM, CR0_MP, CR0_NE, CR0_TS, CS, GP, M32, MF, NM, OF, PF, SF as SF_FLAG, VM, ZF
from ..errors import CpuFault
from ..flags import materialize
from ..optable import PREFIXES
from ..registry import register
from ..x87 import float80 as F
from ..x87.state import C1, C2, DE, ES, EXC, B, IE, SF

M64 = (1 << 64) - 1
FLAGS_MASK = ZF | PF | CF | OF | SF_FLAG | AF

# ================================================================ prologue


def _avail(cpu) -> None:
    if cpu.cr0 & (CR0_EM | CR0_TS):
        raise CpuFault(NM)


def _begin(cpu):
    """Steps 1 and 2 for a waiting instruction; returns the FPU."""
    if cpu.cr0 & (CR0_EM | CR0_TS):
        raise CpuFault(NM)
    f = cpu.fpu
    if f.sw & ES:
        _signal_pending(cpu)
    return f


def _signal_pending(cpu) -> None:
    if cpu.cr0 & CR0_NE:
        raise CpuFault(MF)
    ferr = cpu.ferr
    if ferr is not None and not ferr.level:
        ferr.raise_()
        cpu.end_block()


def _ferr_clear(cpu) -> None:
    ferr = cpu.ferr
    if ferr is not None and ferr.level:
        ferr.lower()


def _modrm(d) -> int:
    raw = d.raw
    i = 0
    while raw[i] in PREFIXES:
        i += 1
    return raw[i + 1]


def _ptrs(cpu, f, d) -> None:
    """Step 4: the last non-control instruction (and its memory operand)."""
    f.fip = d.eip
    f.fcs = cpu.seg_sel[CS]
    f.fop = ((d.op & 7) << 8) | _modrm(d)
    if d.rm < 0:
        f.fdp = d.eoff(cpu)
        f.fds = cpu.seg_sel[d.seg]


def _underflow(f, *regs) -> bool:
    """True when one of the registers ``regs`` is empty: a stack underflow,
    whose masked response puts the indefinite in ST(0); the instruction
    then does nothing else."""
    for r in regs:
        if f.empty(r):
            if f.stack_underflow():
                f.set_st(0, F.INDEFINITE)
            return True
    return False


# ============================================================ memory access
def _read(cpu, d, n: int) -> int:
    lin = d.ea(cpu)
    if n <= 4:
        return cpu.rd(lin, n)
    v = 0
    for k in range(0, n, 4):
        c = 4 if n - k >= 4 else n - k
        v |= cpu.rd((lin + k) & M32, c) << (8 * k)
    return v


def _write_lin(cpu, d, n: int) -> int:
    """The destination's linear address, every byte checked writable."""
    lin = d.eaw(cpu)
    cpu.check_write(lin, n)
    return lin


def _store(cpu, lin: int, n: int, v: int) -> None:
    for k in range(0, n, 4):
        c = 4 if n - k >= 4 else n - k
        cpu.wr((lin + k) & M32, c, (v >> (8 * k)) & ((1 << (8 * c)) - 1))


# =================================================== operand formats (memory)
def _ld_single(v):
    return _ld_fp(v, F.SINGLE)


def _ld_double(v):
    return _ld_fp(v, F.DOUBLE)


def _ld_fp(v, fmt):
    """For arithmetic: an SNaN stays signalling (the operation decides)."""
    x, flags = F.load_fp(v, fmt)
    if flags & IE:
        x &= ~F.QBIT
    return x, flags & DE


def _ld_int(bits):
    def load(v):
        if v >> (bits - 1):
            v -= 1 << bits
        return F.from_int(v), 0
    return load


MEM_SRC = {   # operand spec of an arithmetic row -> (bytes, converter) per float/int
    ("f", "Md"): (4, _ld_single), ("f", "Mq"): (8, _ld_double),
    ("i", "Md"): (4, _ld_int(32)), ("i", "Mw"): (2, _ld_int(16)),
}

# ================================================================ arithmetic
ARITH = {
    "ADD": lambda a, b, cw: F.add(a, b, cw),
    "MUL": lambda a, b, cw: F.mul(a, b, cw),
    "SUB": lambda a, b, cw: F.add(a, b, cw, True),
    "SUBR": lambda a, b, cw: F.add(b, a, cw, True),
    "DIV": lambda a, b, cw: F.div(a, b, cw),
    "DIVR": lambda a, b, cw: F.div(b, a, cw),
}


def _arith_mem(op, size, load):
    def h(cpu, d):
        f = _begin(cpu)
        src, lflags = load(_read(cpu, d, size))
        _ptrs(cpu, f, d)
        if _underflow(f, 0):
            return
        res, flags, up = op(f.st(0), src, f.cw)
        if f.signal(flags | lflags):
            f.set_st(0, res)
            f.set_c1(up)
    return h


def _arith_reg(op, dest_is_i: bool, pop: bool):
    def h(cpu, d):
        f = _begin(cpu)
        _ptrs(cpu, f, d)
        i = d.rm
        dst, src = (i, 0) if dest_is_i else (0, i)
        if f.empty(0) or f.empty(i):
            if f.stack_underflow():
                f.set_st(dst, F.INDEFINITE)
                if pop:
                    f.pop()
            return
        res, flags, up = op(f.st(dst), f.st(src), f.cw)
        if f.signal(flags):
            f.set_st(dst, res)
            f.set_c1(up)
            if pop:
                f.pop()
    return h


for _name, _op in ARITH.items():
    register("F" + _name, "Md", _arith_mem(_op, 4, _ld_single))
    register("F" + _name, "Mq", _arith_mem(_op, 8, _ld_double))
    register("FI" + _name, "Md", _arith_mem(_op, 4, _ld_int(32)))
    register("FI" + _name, "Mw", _arith_mem(_op, 2, _ld_int(16)))
    register("F" + _name, "ST,STi", _arith_reg(_op, False, False))
    register("F" + _name, "STi,ST", _arith_reg(_op, True, False))
    register("F" + _name + "P", "STi,ST", _arith_reg(_op, True, True))


# ================================================================= compares
_CC = {"gt": (0, 0, 0), "lt": (0, 0, 1), "eq": (1, 0, 0), "un": (1, 1, 1)}


def _compare_into_cc(f, a, b, quiet: bool, pops: int, a_empty: bool, b_empty: bool) -> None:
    if a_empty or b_empty:
        if f.stack_underflow():
            f.set_cc(1, 1, 0, 1)
            for _ in range(pops):
                f.pop()
        return
    rel, flags = F.compare(a, b, quiet)
    if f.signal(flags):
        c3, c2, c0 = _CC[rel]
        f.set_cc(c3, c2, 0, c0)
        for _ in range(pops):
            f.pop()


def _fcom_mem(size, load, pops):
    def h(cpu, d):
        f = _begin(cpu)
        src, lflags = load(_read(cpu, d, size))
        _ptrs(cpu, f, d)
        if lflags and not f.empty(0) and not f.signal(lflags):
            return
        _compare_into_cc(f, f.st(0), src, False, pops, f.empty(0), False)
    return h


def _fcom_reg(quiet, pops, second=None):
    def h(cpu, d):
        f = _begin(cpu)
        _ptrs(cpu, f, d)
        i = d.rm if second is None else second
        _compare_into_cc(f, f.st(0), f.st(i), quiet, pops, f.empty(0), f.empty(i))
    return h


for _m, _pops in (("FCOM", 0), ("FCOMP", 1)):
    register(_m, "Md", _fcom_mem(4, _ld_single, _pops))
    register(_m, "Mq", _fcom_mem(8, _ld_double, _pops))
    register("FI" + _m[1:], "Md", _fcom_mem(4, _ld_int(32), _pops))
    register("FI" + _m[1:], "Mw", _fcom_mem(2, _ld_int(16), _pops))
    register(_m, "STi", _fcom_reg(False, _pops))
register("FCOMPP", "", _fcom_reg(False, 2, second=1))
register("FUCOM", "STi", _fcom_reg(True, 0))
register("FUCOMP", "STi", _fcom_reg(True, 1))
register("FUCOMPP", "", _fcom_reg(True, 2, second=1))


def _ftst(cpu, d):
    f = _begin(cpu)
    _ptrs(cpu, f, d)
    _compare_into_cc(f, f.st(0), 0, False, 0, f.empty(0), False)


register("FTST", "", _ftst)


def _fcomi(quiet, pop):
    """FCOMI/FUCOMI(P): ZF PF CF as the comparison; OF SF AF cleared."""
    def h(cpu, d):
        f = _begin(cpu)
        _ptrs(cpu, f, d)
        i = d.rm
        f.sw &= ~C1
        if f.empty(0) or f.empty(i):
            if not f.stack_underflow():
                return
            rel = "un"
        else:
            rel, flags = F.compare(f.st(0), f.st(i), quiet)
            if not f.signal(flags):
                return
        bits = {"gt": 0, "lt": CF, "eq": ZF, "un": ZF | PF | CF}[rel]
        cpu.eflags = (materialize(cpu) & ~FLAGS_MASK) | bits
        if pop:
            f.pop()
    return h


register("FCOMI", "STi", _fcomi(False, False))
register("FCOMIP", "STi", _fcomi(False, True))
register("FUCOMI", "STi", _fcomi(True, False))
register("FUCOMIP", "STi", _fcomi(True, True))


def _fcmov(cond, negate):
    def h(cpu, d):
        f = _begin(cpu)
        _ptrs(cpu, f, d)
        i = d.rm
        f.sw &= ~C1
        if _underflow(f, 0, i):
            return
        if bool(materialize(cpu) & cond) != negate:
            f.set_st(0, f.st(i))
    return h


for _m, _cond in (("B", CF), ("E", ZF), ("BE", CF | ZF), ("U", PF)):
    register("FCMOV" + _m, "ST,STi", _fcmov(_cond, False))
    register("FCMOVN" + _m, "ST,STi", _fcmov(_cond, True))


def _fxam(cpu, d):
    f = _begin(cpu)
    _ptrs(cpu, f, d)
    x = f.st(0)
    sign = x >> 79
    if f.empty(0):
        f.set_cc(1, 0, sign, 1)
        return
    c = F.classify(x)
    c3, c2, c0 = {F.UNSUPP: (0, 0, 0), F.QNAN: (0, 0, 1), F.SNAN: (0, 0, 1), F.NORMAL: (0, 1, 0),
                  F.INF: (0, 1, 1), F.ZERO_C: (1, 0, 0), F.DENORM: (1, 1, 0)}[c]
    f.set_cc(c3, c2, sign, c0)


register("FXAM", "", _fxam)


# ==================================================================== loads
def _push_value(f, value: int, flags: int = 0) -> None:
    """Push after the stack-overflow check (ST(7) must be empty)."""
    if not f.empty(7):
        if f.stack_overflow():
            f.push(F.INDEFINITE)
        return
    f.sw &= ~C1
    if f.signal(flags):
        f.push(value)


def _fld_mem(size, conv):
    def h(cpu, d):
        f = _begin(cpu)
        v = _read(cpu, d, size)
        _ptrs(cpu, f, d)
        x, flags = conv(v)
        _push_value(f, x, flags)
    return h


register("FLD", "Md", _fld_mem(4, lambda v: F.load_fp(v, F.SINGLE)))
register("FLD", "Mq", _fld_mem(8, lambda v: F.load_fp(v, F.DOUBLE)))
register("FLD", "Mt", _fld_mem(10, lambda v: (v, 0)))
register("FILD", "Mw", _fld_mem(2, _ld_int(16)))
register("FILD", "Md", _fld_mem(4, _ld_int(32)))
register("FILD", "Mq", _fld_mem(8, _ld_int(64)))
register("FBLD", "Mt", _fld_mem(10, lambda v: (F.from_bcd(v), 0)))


def _fld_st(cpu, d):
    f = _begin(cpu)
    _ptrs(cpu, f, d)
    i = d.rm
    if f.empty(i):
        if not f.empty(7):
            if f.stack_overflow():
                f.push(F.INDEFINITE)
        elif f.stack_underflow():
            f.push(F.INDEFINITE)
        return
    _push_value(f, f.st(i))


register("FLD", "STi", _fld_st)


def _fld_const(name):
    def h(cpu, d):
        f = _begin(cpu)
        _ptrs(cpu, f, d)
        if name == "1":
            v = F.ONE
        elif name == "z":
            v = 0
        else:
            v = F.constant(name, f.cw)
        _push_value(f, v)
    return h


for _m, _c in (("FLD1", "1"), ("FLDZ", "z"), ("FLDPI", "pi"), ("FLDL2E", "l2e"), ("FLDL2T", "l2t"),
               ("FLDLG2", "lg2"), ("FLDLN2", "ln2")):
    register(_m, "", _fld_const(_c))


# =================================================================== stores
_INDEF = {4: 0xFFC00000, 8: 0xFFF8000000000000, 10: F.INDEFINITE}


def _fst_mem(size, pop, conv, indef):
    """``conv(x, cw) -> (bits or None, flags, up)``."""
    def h(cpu, d):
        f = _begin(cpu)
        lin = _write_lin(cpu, d, size)
        _ptrs(cpu, f, d)
        if f.empty(0):
            if f.stack_underflow():
                _store(cpu, lin, size, indef)
                if pop:
                    f.pop()
            return
        bits, flags, up = conv(f.st(0), f.cw)
        if f.signal(flags) and bits is not None:
            _store(cpu, lin, size, bits)
            f.set_c1(up)
            if pop:
                f.pop()
    return h


def _to_int(bits):
    return lambda x, cw: F.to_int(x, bits, cw)


for _m, _pop in (("FST", False), ("FSTP", True)):
    register(_m, "Md", _fst_mem(4, _pop, lambda x, cw: F.store_fp(x, F.SINGLE, cw), _INDEF[4]))
    register(_m, "Mq", _fst_mem(8, _pop, lambda x, cw: F.store_fp(x, F.DOUBLE, cw), _INDEF[8]))
for _m, _pop in (("FIST", False), ("FISTP", True)):
    register(_m, "Mw", _fst_mem(2, _pop, _to_int(16), 0x8000))
    register(_m, "Md", _fst_mem(4, _pop, _to_int(32), 0x80000000))
register("FISTP", "Mq", _fst_mem(8, True, _to_int(64), 1 << 63))
register("FSTP", "Mt", _fst_mem(10, True, lambda x, cw: (x, 0, False), F.INDEFINITE))
register("FBSTP", "Mt", _fst_mem(10, True, F.to_bcd, F.BCD_INDEFINITE))


def _fst_st(pop):
    def h(cpu, d):
        f = _begin(cpu)
        _ptrs(cpu, f, d)
        f.sw &= ~C1
        if f.empty(0):
            if f.stack_underflow():
                f.set_st(d.rm, F.INDEFINITE)
                if pop:
                    f.pop()
            return
        f.set_st(d.rm, f.st(0))
        if pop:
            f.pop()
    return h


register("FST", "STi", _fst_st(False))
register("FSTP", "STi", _fst_st(True))


def _fxch(cpu, d):
    f = _begin(cpu)
    _ptrs(cpu, f, d)
    i = d.rm
    f.sw &= ~C1
    if f.empty(0) or f.empty(i):
        if not f.stack_underflow():
            return
        if f.empty(0):
            f.set_st(0, F.INDEFINITE)
        if f.empty(i):
            f.set_st(i, F.INDEFINITE)
    a, b = f.st(0), f.st(i)
    f.set_st(0, b)
    f.set_st(i, a)


register("FXCH", "STi", _fxch)


# ====================================================== one-operand (ST(0))
def _unary(fn):
    """ST(0) = fn(ST(0), cw) -> (result, flags, up)."""
    def h(cpu, d):
        f = _begin(cpu)
        _ptrs(cpu, f, d)
        if _underflow(f, 0):
            return
        res, flags, up = fn(f.st(0), f.cw)
        if f.signal(flags):
            f.set_st(0, res)
            f.set_c1(up)
    return h


register("FCHS", "", _unary(lambda x, cw: (x ^ F.SIGN, 0, False)))
register("FABS", "", _unary(lambda x, cw: (x & ~F.SIGN, 0, False)))
register("FSQRT", "", _unary(F.sqrt))
register("FRNDINT", "", _unary(F.round_int))
register("F2XM1", "", _unary(lambda x, cw: F.f2xm1(x, cw) + (False,)))


def _fscale(cpu, d):
    f = _begin(cpu)
    _ptrs(cpu, f, d)
    if _underflow(f, 0, 1):
        return
    res, flags, up = F.scale(f.st(0), f.st(1), f.cw)
    if f.signal(flags):
        f.set_st(0, res)
        f.set_c1(up)


register("FSCALE", "", _fscale)


def _fprem(nearest):
    def h(cpu, d):
        f = _begin(cpu)
        _ptrs(cpu, f, d)
        if _underflow(f, 0, 1):
            return
        res, flags, q, complete = F.partial_remainder(f.st(0), f.st(1), f.cw, nearest)
        if f.signal(flags):
            f.set_st(0, res)
            if complete:
                f.set_cc(q & 2, 0, q & 1, q & 4)
            else:
                f.set_cc(0, 1, 0, 0)
    return h


register("FPREM", "", _fprem(False))
register("FPREM1", "", _fprem(True))


def _fxtract(cpu, d):
    f = _begin(cpu)
    _ptrs(cpu, f, d)
    if f.empty(0):
        if f.stack_underflow():
            f.set_st(0, F.INDEFINITE)
            f.push(F.INDEFINITE)
        return
    if not f.empty(7):
        if f.stack_overflow():
            f.set_st(0, F.INDEFINITE)
            f.push(F.INDEFINITE)
        return
    exp, sig, flags = F.extract(f.st(0))
    f.sw &= ~C1
    if f.signal(flags):
        f.set_st(0, exp)
        f.push(sig)


register("FXTRACT", "", _fxtract)


# ============================================================ transcendentals
def _trig(which):
    def h(cpu, d):
        f = _begin(cpu)
        _ptrs(cpu, f, d)
        pushes = which in ("sincos", "tan")
        if f.empty(0):
            if f.stack_underflow():
                f.set_st(0, F.INDEFINITE)
                if pushes:
                    f.push(F.INDEFINITE)
            return
        if pushes and not f.empty(7):
            if f.stack_overflow():
                f.set_st(0, F.INDEFINITE)
                f.push(F.INDEFINITE)
            return
        results, flags, in_range = F.trig(f.st(0), f.cw, which)
        f.sw &= ~(C1 | C2)
        if not in_range:
            f.sw |= C2
            f.signal(flags)
            return
        if not f.signal(flags):
            return
        if which == "sincos":
            f.set_st(0, results[0])
            f.push(results[1])
        elif which == "tan":
            f.set_st(0, results[0])
            f.push(F.ONE)
        else:
            f.set_st(0, results[0])
    return h


register("FSIN", "", _trig("sin"))
register("FCOS", "", _trig("cos"))
register("FSINCOS", "", _trig("sincos"))
register("FPTAN", "", _trig("tan"))


def _binary_pop(fn):
    """ST(1) = fn(ST(1), ST(0), cw) -> (result, flags); pop."""
    def h(cpu, d):
        f = _begin(cpu)
        _ptrs(cpu, f, d)
        f.sw &= ~C1
        if f.empty(0) or f.empty(1):
            if f.stack_underflow():
                f.set_st(1, F.INDEFINITE)
                f.pop()
            return
        res, flags = fn(f.st(1), f.st(0), f.cw)
        if f.signal(flags):
            f.set_st(1, res)
            f.pop()
    return h


register("FPATAN", "", _binary_pop(F.atan2))
register("FYL2X", "", _binary_pop(lambda y, x, cw: F.yl2x(y, x, cw, False)))
register("FYL2XP1", "", _binary_pop(lambda y, x, cw: F.yl2x(y, x, cw, True)))


# ============================================================ stack control
def _fincstp(cpu, d):
    f = _begin(cpu)
    _ptrs(cpu, f, d)
    f.top = (f.top + 1) & 7
    f.sw &= ~C1


def _fdecstp(cpu, d):
    f = _begin(cpu)
    _ptrs(cpu, f, d)
    f.top = (f.top - 1) & 7
    f.sw &= ~C1


def _ffree(pop):
    def h(cpu, d):
        f = _begin(cpu)
        _ptrs(cpu, f, d)
        f.free(d.rm)
        if pop:
            f.pop()
    return h


def _fnop(cpu, d):
    f = _begin(cpu)
    _ptrs(cpu, f, d)


def _nop_nowait(cpu, d):
    """FNENI/FNDISI/FNSETPM: 8087/287 controls, no-ops since the 387."""
    _avail(cpu)


register("FINCSTP", "", _fincstp)
register("FDECSTP", "", _fdecstp)
register("FFREE", "STi", _ffree(False))
register("FFREEP", "STi", _ffree(True))
register("FNOP", "", _fnop)
for _m in ("FNENI", "FNDISI", "FNSETPM"):
    register(_m, "", _nop_nowait)


# ================================================================== control
def _fninit(cpu, d):
    _avail(cpu)
    cpu.fpu.init()
    _ferr_clear(cpu)


def _fnclex(cpu, d):
    _avail(cpu)
    f = cpu.fpu
    f.sw &= ~(EXC | SF | ES | B)
    _ferr_clear(cpu)


def _fldcw(cpu, d):
    f = _begin(cpu)
    f.set_cw(_read(cpu, d, 2))


def _fnstcw(cpu, d):
    _avail(cpu)
    lin = _write_lin(cpu, d, 2)
    cpu.wr16(lin, cpu.fpu.cw)


def _fnstsw(cpu, d):
    _avail(cpu)
    lin = _write_lin(cpu, d, 2)
    cpu.wr16(lin, cpu.fpu.status())


def _fnstsw_ax(cpu, d):
    _avail(cpu)
    cpu.regs[0] = (cpu.regs[0] & 0xFFFF0000) | cpu.fpu.status()


register("FNINIT", "", _fninit)
register("FNCLEX", "", _fnclex)
register("FLDCW", "Mw", _fldcw)
register("FNSTCW", "Mw", _fnstcw)
register("FNSTSW", "Mw", _fnstsw)
register("FNSTSW", "AX", _fnstsw_ax)


def _wait(cpu, d):
    """WAIT/FWAIT: #NM when CR0.MP and CR0.TS are both set; then a pending
    unmasked x87 exception is signalled."""
    if cpu.cr0 & (CR0_MP | CR0_TS) == CR0_MP | CR0_TS:
        raise CpuFault(NM)
    if cpu.fpu.sw & ES:
        _signal_pending(cpu)


register("WAIT", "", _wait)


# ============================================================== environment
def _real_format(cpu) -> bool:
    return not cpu.protected or bool(cpu.eflags & VM)


def env_bytes(cpu, f, osz: int) -> bytes:
    """The FNSTENV image (SDM vol. 1, figures 8-9 to 8-12): 28 bytes for a
    32-bit operand size, 14 for 16-bit; real-mode formats hold the 20/32-bit
    linear instruction and operand pointers.  Reserved bits read as ones."""
    cw, sw, tw = f.cw, f.status(), f.tag_word()
    if _real_format(cpu):
        fip = (f.fcs << 4) + f.fip
        fdp = (f.fds << 4) + f.fdp
        if osz == 4:
            words = (cw | 0xFFFF0000, sw | 0xFFFF0000, tw | 0xFFFF0000, (fip & 0xFFFF) | 0xFFFF0000,
                     ((fip >> 16) & 0xFFFF) << 12 | f.fop, (fdp & 0xFFFF) | 0xFFFF0000,
                     ((fdp >> 16) & 0xFFFF) << 12)
            return b"".join((w & M32).to_bytes(4, "little") for w in words)
        words = (cw, sw, tw, fip & 0xFFFF, ((fip >> 16) & 0xF) << 12 | f.fop, fdp & 0xFFFF,
                 ((fdp >> 16) & 0xF) << 12)
        return b"".join(w.to_bytes(2, "little") for w in words)
    if osz == 4:
        words = (cw | 0xFFFF0000, sw | 0xFFFF0000, tw | 0xFFFF0000, f.fip, f.fcs | (f.fop << 16),
                 f.fdp, f.fds | 0xFFFF0000)
        return b"".join((w & M32).to_bytes(4, "little") for w in words)
    words = (cw, sw, tw, f.fip & 0xFFFF, f.fcs, f.fdp & 0xFFFF, f.fds)
    return b"".join(w.to_bytes(2, "little") for w in words)


def load_env(cpu, f, b: bytes, osz: int) -> None:
    if osz == 4:
        w = [int.from_bytes(b[i:i + 4], "little") for i in range(0, 28, 4)]
    else:
        w = [int.from_bytes(b[i:i + 2], "little") for i in range(0, 14, 2)]
    f.cw = (w[0] & 0x1F3F) | 0x40
    f.set_tag_word(w[2] & 0xFFFF)
    if _real_format(cpu):
        sh = 16 if osz == 4 else 4
        hi = 0xFFFF if osz == 4 else 0xF
        fip = (w[3] & 0xFFFF) | (((w[4] >> 12) & hi) << 16)
        fdp = (w[5] & 0xFFFF) | (((w[6] >> 12) & hi) << 16)
        f.fop = w[4] & 0x7FF
        f.fcs, f.fip = 0, fip & ((1 << (16 + sh)) - 1)
        f.fds, f.fdp = 0, fdp & ((1 << (16 + sh)) - 1)
    elif osz == 4:
        f.fip, f.fcs, f.fop = w[3], w[4] & 0xFFFF, (w[4] >> 16) & 0x7FF
        f.fdp, f.fds = w[5], w[6] & 0xFFFF
    else:
        f.fip, f.fcs, f.fdp, f.fds = w[3], w[4], w[5], w[6]
    f.set_status(w[1] & 0xFFFF)


def _env_size(d) -> int:
    return 28 if d.osz == 4 else 14


def _fnstenv(cpu, d):
    """FNSTENV: store the environment, then mask every exception."""
    _avail(cpu)
    f = cpu.fpu
    n = _env_size(d)
    lin = _write_lin(cpu, d, n)
    _store(cpu, lin, n, int.from_bytes(env_bytes(cpu, f, d.osz), "little"))
    f.cw |= EXC
    f.update_es()


def _fldenv(cpu, d):
    f = _begin(cpu)
    n = _env_size(d)
    b = _read(cpu, d, n).to_bytes(n, "little")
    load_env(cpu, f, b, d.osz)


def _fnsave(cpu, d):
    """FNSAVE: environment + ST(0)..ST(7), then FNINIT."""
    _avail(cpu)
    f = cpu.fpu
    n = _env_size(d)
    lin = _write_lin(cpu, d, n + 80)
    img = env_bytes(cpu, f, d.osz) + b"".join(f.st(i).to_bytes(10, "little") for i in range(8))
    _store(cpu, lin, n + 80, int.from_bytes(img, "little"))
    f.init()
    _ferr_clear(cpu)


def _frstor(cpu, d):
    f = _begin(cpu)
    n = _env_size(d)
    b = _read(cpu, d, n + 80).to_bytes(n + 80, "little")
    load_env(cpu, f, b, d.osz)
    for i in range(8):
        f.regs[(f.top + i) & 7] = int.from_bytes(b[n + 10 * i:n + 10 * i + 10], "little")


register("FNSTENV", "M", _fnstenv)
register("FLDENV", "M", _fldenv)
register("FNSAVE", "M", _fnsave)
register("FRSTOR", "M", _frstor)


# ========================================================== FXSAVE/FXRSTOR
def fxsave_bytes(f) -> bytes:
    """The 512-byte FXSAVE image as this CPU (FXSR, no SSE) writes it: the
    x87 part (bytes 0-23 and 32-159); MXCSR and MXCSR_MASK (24-31) are
    written as zeros (there is no MXCSR); bytes 160-511 (XMM registers and
    reserved) are not written (``None`` marks them here)."""
    head = (f.cw.to_bytes(2, "little") + f.status().to_bytes(2, "little") + bytes([f.valid, 0])
            + f.fop.to_bytes(2, "little") + f.fip.to_bytes(4, "little") + f.fcs.to_bytes(2, "little")
            + b"\0\0" + f.fdp.to_bytes(4, "little") + f.fds.to_bytes(2, "little") + b"\0\0"
            + bytes(8))
    regs = b"".join(f.st(i).to_bytes(10, "little") + bytes(6) for i in range(8))
    return head + regs


def _fx_lin(cpu, d, write: bool) -> int:
    _avail(cpu)
    lin = d.eaw(cpu) if write else d.ea(cpu)
    if lin & 15:
        raise CpuFault(GP, 0)
    return lin


def _fxsave(cpu, d):
    """FXSAVE m512 (#NM with CR0.EM or TS, #GP(0) unless 16-byte aligned;
    no pending-exception check, the FPU state is kept)."""
    lin = _fx_lin(cpu, d, True)
    cpu.check_write(lin, 512)
    _store(cpu, lin, 160, int.from_bytes(fxsave_bytes(cpu.fpu), "little"))


def fxrstor_from(f, b: bytes) -> None:
    f.cw = (int.from_bytes(b[0:2], "little") & 0x1F3F) | 0x40
    f.valid = b[4]
    f.fop = int.from_bytes(b[6:8], "little") & 0x7FF
    f.fip = int.from_bytes(b[8:12], "little")
    f.fcs = int.from_bytes(b[12:14], "little")
    f.fdp = int.from_bytes(b[16:20], "little")
    f.fds = int.from_bytes(b[20:22], "little")
    f.set_status(int.from_bytes(b[2:4], "little"))
    for i in range(8):
        f.regs[(f.top + i) & 7] = int.from_bytes(b[32 + 16 * i:42 + 16 * i], "little")


def _fxrstor(cpu, d):
    """FXRSTOR m512: the x87 part; MXCSR and the XMM area are ignored (no SSE)."""
    lin = _fx_lin(cpu, d, False)
    v = _read_lin(cpu, lin, 160)
    fxrstor_from(cpu.fpu, v.to_bytes(160, "little"))


def _read_lin(cpu, lin: int, n: int) -> int:
    v = 0
    for k in range(0, n, 4):
        v |= cpu.rd((lin + k) & M32, 4) << (8 * k)
    return v


register("FXSAVE", "M", _fxsave)
register("FXRSTOR", "M", _fxrstor)
