"""The stack: PUSH/POP (registers, immediates, r/m, segment registers),
PUSHA/POPA, PUSHF/POPF, ENTER, LEAVE.  Also the stack helpers the control
transfer family shares (``push_all``, ``sp_add``, ``check_push_room``).

Invariants:
- Every handler is precise: a fault (#SS(0) at the stack limit, #PF, or a
  segment-load fault for POP Sreg) leaves every register, ESP included, as it
  was.  Memory stores that precede a fault may remain (as on hardware).
- The stack-address size is SS.B (``cpu.stack32``) at the time of the access;
  the operand size (``d.osz``) is the size of each slot.
- The hot forms (PUSH/POP of a general register, PUSH imm with a 32-bit
  operand) have hand-specialised 32-bit versions that go straight through the
  software TLB on a 32-bit stack; every other case goes through
  ``cpu.push``/``cpu.pop``/``cpu.peek``, which implement the same checks.
"""

from __future__ import annotations

from array import array

from .. import segments
from ..consts import ES, FS, GS, DS, CS, GP, IF, IOPL, M32, RF, SS, SS_SEG, VM
from ..cpu import EFLAGS_WRITABLE, u32_from
from ..errors import CpuFault
from ..flags import materialize
from ..registry import register
from .common import MASKS, set_reg


# ----------------------------------------------------------------- helpers
def sp_add(cpu, n: int) -> None:
    """eSP += n, wrapping at the stack-address size (SP only on a 16-bit stack)."""
    r = cpu.regs
    if cpu.stack32:
        r[4] = (r[4] + n) & M32
    else:
        r[4] = (r[4] & 0xFFFF0000) | ((r[4] + n) & 0xFFFF)


def check_push_room(cpu, nbytes: int) -> None:
    """#SS(0) unless ``nbytes`` can be pushed below eSP within the SS limits
    (used before a transfer commits anything; does not touch memory)."""
    if cpu.stack32:
        sp = (cpu.regs[4] - nbytes) & M32
    else:
        sp = (cpu.regs[4] - nbytes) & 0xFFFF
    if sp < cpu.seg_lo[SS_SEG] or sp + nbytes - 1 > cpu.seg_whi[SS_SEG]:
        raise CpuFault(SS, 0)


def push_all(cpu, values, size: int) -> None:
    """Push ``values`` in order, all or nothing as far as ESP is concerned:
    if any push faults, ESP is restored and the fault propagates."""
    esp = cpu.regs[4]
    try:
        for v in values:
            cpu.push(v, size)
    except CpuFault:
        cpu.regs[4] = esp
        raise


# ------------------------------------------------------- PUSH/POP register
def _push32_r(cpu, d):
    """PUSH r32 (also PUSH Ev register form).  PUSH ESP pushes the value from
    before the decrement (SDM vol. 2, PUSH)."""
    cpu.push32(cpu.regs[d.rm])


def _push16_r(cpu, d):
    cpu.push(cpu.regs[d.rm] & 0xFFFF, 2)


def _pop32_r(cpu, d):
    """POP r32 (also POP Ev register form).  POP ESP leaves the popped value
    in ESP (the increment happens first)."""
    r = cpu.regs
    if cpu.stack32:
        sp = r[4]
        if sp > cpu.seg_hi[2] - 3 or sp < cpu.seg_lo[2]:
            raise CpuFault(SS, 0)
        lin = (cpu.seg_base[2] + sp) & M32
        t = cpu.tlb_r[lin >> 12]
        if t is not None and lin & 0xFFF <= 0xFFC:
            v = u32_from(cpu.ram, lin + t)[0]
        else:
            v = cpu._rd_slow(lin, 4)
        r[4] = (sp + 4) & M32
    else:
        v = cpu.pop(4)
    r[d.rm] = v


def _pop16_r(cpu, d):
    v = cpu.pop(2)
    r = cpu.regs
    r[d.rm] = (r[d.rm] & 0xFFFF0000) | v


register("PUSH", "Zv", {2: _push16_r, 4: _push32_r})
register("POP", "Zv", {2: _pop16_r, 4: _pop32_r})


# ---------------------------------------------------------- PUSH immediate
def _push32_imm(cpu, d):
    cpu.push32(d.imm)


def _push16_imm(cpu, d):
    cpu.push(d.imm, 2)


# The decoder already sign-extended Ibs to the operand size.
register("PUSH", "Iz", {2: _push16_imm, 4: _push32_imm})
register("PUSH", "Ibs", {2: _push16_imm, 4: _push32_imm})


# ----------------------------------------------------------- PUSH/POP r/m
def _push_m(size: int):
    def push_m(cpu, d):
        """PUSH m: the address is computed with ESP before the decrement."""
        cpu.push(cpu.rd(d.ea(cpu), size), size)
    return push_m


def _pop_m(size: int):
    def pop_m(cpu, d):
        """POP m (SDM vol. 2, POP): an ESP-based address is computed after
        ESP is incremented; if the store faults, ESP is restored."""
        v = cpu.peek(0, size)
        r = cpu.regs
        old = r[4]
        sp_add(cpu, size)
        try:
            cpu.wr(d.eaw(cpu), size, v)
        except CpuFault:
            r[4] = old
            raise
    return pop_m


register("PUSH", "Ev", {2: (_push16_r, _push_m(2)), 4: (_push32_r, _push_m(4))})
register("POP", "Ev", {2: (_pop16_r, _pop_m(2)), 4: (_pop32_r, _pop_m(4))})


# ------------------------------------------------- segment registers
def _push_sreg(seg: int):
    def push_sreg(cpu, d):
        """PUSH Sreg.  With a 32-bit operand the selector is zero-extended and
        four bytes are written (what unicorn/QEMU do; the SDM allows either
        that or a 16-bit store with a 4-byte decrement)."""
        cpu.push(cpu.seg_sel[seg], d.osz)
    return push_sreg


def _pop_sreg(seg: int):
    def pop_sreg(cpu, d):
        """POP Sreg: the load's checks run before ESP moves (a faulting load
        leaves ESP alone); the increment uses the stack size before the load."""
        size = d.osz
        sel = cpu.peek(0, size) & 0xFFFF
        r = cpu.regs
        if cpu.stack32:
            new_esp = (r[4] + size) & M32
        else:
            new_esp = (r[4] & 0xFFFF0000) | ((r[4] + size) & 0xFFFF)
        segments.load_data(cpu, seg, sel)
        r[4] = new_esp
    return pop_sreg


def _pop_ss(cpu, d):
    """POP SS: like the others, then an interrupt shadow for one instruction
    (SDM vol. 2, POP: interrupts are inhibited until after the next one)."""
    size = d.osz
    sel = cpu.peek(0, size) & 0xFFFF
    r = cpu.regs
    if cpu.stack32:
        new_esp = (r[4] + size) & M32
    else:
        new_esp = (r[4] & 0xFFFF0000) | ((r[4] + size) & 0xFFFF)
    segments.load_ss(cpu, sel)
    r[4] = new_esp
    cpu.inhibit = True
    cpu.attention = True


for _name, _seg in (("ES", ES), ("CS", CS), ("SS", SS_SEG), ("DS", DS), ("FS", FS), ("GS", GS)):
    register("PUSH", _name, _push_sreg(_seg))
    if _name == "SS":
        register("POP", "SS", _pop_ss)
    elif _name != "CS":          # POP CS does not exist (0F is the two-byte escape)
        register("POP", _name, _pop_sreg(_seg))


# --------------------------------------------------------- PUSHA / POPA
def _pusha(cpu, d):
    """PUSHA/PUSHAD: eAX eCX eDX eBX (original eSP) eBP eSI eDI."""
    size = d.osz
    r = cpu.regs
    if size == 4:
        at = cpu.stack_dwords(-32, 8, True)
        if at >= 0:
            cpu.ram32[at:at + 8] = array("I", r[::-1])
            r[4] = (r[4] - 32) & M32
            return
    m = MASKS[size]
    push_all(cpu, [v & m for v in r], size)


def _popa(cpu, d):
    """POPA/POPAD: eDI eSI eBP (skipped eSP slot) eBX eDX eCX eAX.  All eight
    slots are read before any register changes."""
    size = d.osz
    if size == 4:
        at = cpu.stack_dwords(0, 8, False)
        if at >= 0:
            r = cpu.regs
            r[7], r[6], r[5], _, r[3], r[2], r[1], r[0] = cpu.ram32[at:at + 8]
            r[4] = (r[4] + 32) & M32
            return
    vals = [cpu.peek(i * size, size) for i in range(8)]
    for i, reg in enumerate((7, 6, 5, -1, 3, 2, 1, 0)):
        if reg >= 0:
            set_reg(cpu, reg, size, vals[i])
    sp_add(cpu, 8 * size)


register("PUSHA", "", _pusha)
register("POPA", "", _popa)


# --------------------------------------------------------- PUSHF / POPF
_VM_RF = (1 << 17) | RF


def vm86_iopl3(cpu) -> None:
    """The IOPL-sensitive instructions of virtual-8086 mode (PUSHF, POPF,
    INT n, IRET; CLI/STI by their CPL check): #GP(0) unless IOPL is 3, so
    the VM86 monitor can emulate them (SDM vol. 3, 20.2.7; no VME)."""
    if cpu.eflags & VM and cpu.eflags & IOPL != IOPL:
        raise CpuFault(GP, 0)


def _pushf(cpu, d):
    """PUSHF/PUSHFD: the image has VM and RF clear (SDM vol. 2, PUSHF); in
    VM86 only with IOPL 3."""
    vm86_iopl3(cpu)
    v = materialize(cpu)
    if d.osz == 4:
        cpu.push(v & ~_VM_RF & M32, 4)
    else:
        cpu.push(v & 0xFFFF, 2)


def popf_mask(cpu, osz: int) -> int:
    """EFLAGS bits POPF may write (SDM vol. 2, POPF): never VM; CPL 0 (or
    real mode): every other writable flag; CPL > 0: not IOPL, and not IF
    unless CPL <= IOPL (in VM86, CPL 3 with IOPL 3: IF but not IOPL).  16-bit
    forms touch bits 0-15 only."""
    mask = EFLAGS_WRITABLE & ~VM
    cpl = cpu.cpl
    if cpl:
        mask &= ~IOPL
        if cpl > (cpu.eflags & IOPL) >> 12:
            mask &= ~IF
    if osz == 2:
        mask &= 0xFFFF
    return mask


def _popf(cpu, d):
    """POPF/POPFD; the 32-bit form clears RF; VM is never written; in VM86
    only with IOPL 3."""
    vm86_iopl3(cpu)
    size = d.osz
    v = cpu.peek(0, size)
    mask = popf_mask(cpu, size)
    sp_add(cpu, size)
    cpu.set_eflags(v & ~RF, mask)


register("PUSHF", "", _pushf)
register("POPF", "", _popf)


# --------------------------------------------------------- ENTER / LEAVE
def _ss_slot(cpu, off: int, size: int, write: bool) -> int:
    """Checked linear address of SS:off for ``size`` bytes (#SS(0) outside)."""
    hi = cpu.seg_whi[SS_SEG] if write else cpu.seg_hi[SS_SEG]
    if off < cpu.seg_lo[SS_SEG] or off + size - 1 > hi:
        raise CpuFault(SS, 0)
    return (cpu.seg_base[SS_SEG] + off) & M32


def _enter(cpu, d):
    """ENTER alloc, level (SDM vol. 2, ENTER): push eBP, copy level-1 frame
    pointers from the enclosing frame, push FrameTemp, then eBP = FrameTemp
    and eSP = FrameTemp - alloc - level*size.  Slots are ``d.osz`` wide;
    addresses, eBP and eSP wrap at the stack size.  Registers change only
    after every access succeeded."""
    size = d.osz
    alloc = d.imm
    level = d.imm2 & 31
    smask = M32 if cpu.stack32 else 0xFFFF
    vmask = MASKS[size]
    r = cpu.regs
    ebp = r[5]
    frame = (r[4] - size) & smask
    cpu.wr(_ss_slot(cpu, frame, size, True), size, ebp & vmask)
    if level:
        for i in range(1, level):
            v = cpu.rd(_ss_slot(cpu, (ebp - size * i) & smask, size, False), size)
            cpu.wr(_ss_slot(cpu, (frame - size * i) & smask, size, True), size, v)
        cpu.wr(_ss_slot(cpu, (frame - size * level) & smask, size, True), size, frame & vmask)
    esp = (frame - alloc - size * level) & smask
    if esp < cpu.seg_lo[SS_SEG] or esp > cpu.seg_whi[SS_SEG]:
        raise CpuFault(SS, 0)
    if smask == M32:
        r[5] = frame
        r[4] = esp
    else:
        r[5] = (r[5] & 0xFFFF0000) | frame
        r[4] = (r[4] & 0xFFFF0000) | esp


def _leave(cpu, d):
    """LEAVE: eSP = eBP (stack size), then eBP = pop (operand size)."""
    size = d.osz
    r = cpu.regs
    if cpu.stack32:
        sp = r[5]
        v = cpu.rd(_ss_slot(cpu, sp, size, False), size)
        r[4] = (sp + size) & M32
    else:
        sp = r[5] & 0xFFFF
        v = cpu.rd(_ss_slot(cpu, sp, size, False), size)
        r[4] = (r[4] & 0xFFFF0000) | ((sp + size) & 0xFFFF)
    set_reg(cpu, 5, size, v)


register("ENTER", "Iw,Ib", _enter)
register("LEAVE", "", _leave)
