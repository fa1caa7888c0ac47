"""String instructions MOVS CMPS STOS LODS SCAS, their REP forms, and XLAT.

Operands (SDM vol. 1, 7.3.9 and vol. 2, "MOVS"/"CMPS"/...): the source is
``d.seg``:eSI (DS or the segment override), the destination ES:eDI (never
overridable).  The address size picks SI/DI/CX (16-bit offsets wrap at 64 KiB
and leave the upper register halves alone) or ESI/EDI/ECX; EFLAGS.DF picks
the direction.  CMPS compares [eSI] - [eDI], SCAS eAX - [eDI].

REP (SDM vol. 2, "REP/REPE/REPZ/REPNE/REPNZ").  ``make_rep`` builds the loop
that every REP form, INS and OUTS included (io.py), runs:
- eCX = 0 at entry: nothing happens, no memory access.
- Each iteration counts as one retired instruction.  A REP instruction is a
  translated block of its own, so ``cpu.stop_at - cpu.icount`` at entry is
  the budget left; at most that many iterations run.  The loop also stops
  after an iteration when something needs the run loop (a stop request, a
  debug trap such as a data breakpoint or TF, a deliverable interrupt).  When
  it stops with iterations left it leaves EIP at the instruction, exactly
  the state after an interrupt taken between iterations, so the next run
  resumes it.  ``icount`` then advances by the iterations done.
- A fault in iteration k leaves eSI/eDI/eCX describing the k iterations done
  (precise); those k iterations are counted as retired.
- REPE/REPNE end CMPS/SCAS when ZF = 0 / ZF = 1 after an iteration.  On the
  other string instructions F2 acts as REP (as on Intel hardware and QEMU).

Bulk fast paths: a run of elements that lies within one 4 KiB page on each
side, inside the segment limits without offset wraparound, and on pages the
software TLB maps straight to RAM, is done with slice operations on
``cpu.ram``.  The TLB never maps pages holding decoded code for writing, nor
pages with watchpoints/data breakpoints at all, so those always take the
per-element path through ``cpu.rd``/``cpu.wr`` with its checks.  Everything
else (page crossings, MMIO, faults) also takes the per-element path, which is
the definition the fast paths reproduce.
"""

from __future__ import annotations

from .. import flags as lf
from ..consts import DF, ES, IF, M32, RF
from ..cpu import CPU
from ..errors import CpuFault
from ..registry import register

_RD = {1: CPU.rd8, 2: CPU.rd16, 4: CPU.rd32}
_WR = {1: CPU.wr8, 2: CPU.wr16, 4: CPU.wr32}
_MASK = {1: 0xFF, 2: 0xFFFF, 4: M32}
_SUB = {1: lf.SUB << 2 | 0, 2: lf.SUB << 2 | 1, 4: lf.SUB << 2 | 2}


# ----------------------------------------------------------------- REP engine
def must_yield(cpu) -> bool:
    """True when the run loop has to see the CPU before the next iteration
    (only meaningful while ``cpu.attention`` is set)."""
    return bool(cpu.stop_request is not None or cpu.pending_db or cpu.halted
                or (cpu.intr and cpu.eflags & IF) or (cpu.nmi_pending and not cpu.nmi_blocked))


def _resume_here(cpu, d) -> None:
    """Leave the REP instruction to be resumed (as after an interrupt between
    iterations).  With instruction breakpoints armed, set RF so that resuming
    does not report the breakpoint at this instruction again (SDM vol. 3,
    17.3.1.1); the next instruction-breakpoint check clears it."""
    cpu.eip = d.eip
    if cpu.dr[7] & 0xFF and cpu.slow:
        cpu.eflags |= RF


def make_rep(s: int, one, bulk, use_si: bool, use_di: bool, compare: bool):
    """The REP loop for an element size ``s``.

    ``one(cpu, d, si, di)`` performs one iteration at offsets si/di through the
    checked slow path (it may fault; it changes no register but AL/AX/EAX and
    the lazy flags).  ``bulk(cpu, d, si, di, n, back, amask)`` (or None) does
    up to ``n`` iterations at once and returns how many (0: not possible
    here), never faulting.  ``use_si``/``use_di`` say which pointers advance;
    ``compare`` marks CMPS/SCAS (REPE/REPNE termination on the lazy ZF).
    """
    def rep(cpu, d):
        r = cpu.regs
        amask = M32 if d.asz == 4 else 0xFFFF
        keep = ~amask
        cnt = r[1] & amask
        if not cnt:
            return
        n = cpu.stop_at - cpu.icount
        if cpu.attention and must_yield(cpu):
            n = 1                      # e.g. TF: trap after a single iteration
        if n > cnt:
            n = cnt
        back = cpu.eflags & DF
        want_zero = d.rep == 0xF3
        done = 0
        ended = False
        try:
            while done < n:
                si = r[6] & amask
                di = r[7] & amask
                k = bulk(cpu, d, si, di, n - done, back, amask) if bulk is not None else 0
                if not k:
                    one(cpu, d, si, di)
                    k = 1
                delta = -k * s if back else k * s
                if use_si:
                    r[6] = (r[6] & keep) | ((si + delta) & amask)
                if use_di:
                    r[7] = (r[7] & keep) | ((di + delta) & amask)
                done += k
                r[1] = (r[1] & keep) | (cnt - done)
                if compare and (cpu.lf_res == 0) != want_zero:
                    ended = True
                    break
                if cpu.attention and must_yield(cpu):
                    break
        except CpuFault:
            cpu.icount += done         # the iterations before the fault retired
            raise
        if done < cnt and not ended:
            _resume_here(cpu, d)
        cpu.icount += done - 1         # the run loop counts the instruction once
    return rep


def span(cpu, seg: int, off: int, s: int, n: int, back, write: bool, amask: int):
    """Bulk window for up to ``n`` elements of ``s`` bytes at ``seg:off``.

    Returns ``(k, pa)``: the ``k`` (>= 1) next elements, stepping down when
    ``back``, lie in one page, within the segment's limits for that access
    without offset wraparound, and the page is RAM mapped by the TLB for this
    access at this CPL; ``pa`` is the physical address of the first element.
    ``(0, 0)`` means: use the per-element path.  A missing TLB entry is filled
    by ``cpu.translate``, which may raise the element's own #PF.
    """
    lin = (cpu.seg_base[seg] + off) & M32
    po = lin & 0xFFF
    lo = cpu.seg_lo[seg]
    hi = cpu.seg_whi[seg] if write else cpu.seg_hi[seg]
    if po + s > 0x1000 or off < lo or off + s - 1 > hi or off + s - 1 > amask:
        return 0, 0
    if back:
        k = min(n, po // s + 1, (off - lo) // s + 1)
    else:
        k = min(n, (0x1000 - po) // s, (hi - off + 1) // s, (amask - off + 1) // s)
    tlb = cpu.tlb_w if write else cpu.tlb_r
    ent = tlb[lin >> 12]
    if ent is None:
        cpu.translate(lin, write, cpu.cpl == 3)
        ent = tlb[lin >> 12]
        if ent is None:
            return 0, 0
    return k, lin + ent


def _set_cmp(cpu, s: int, a: int, b: int) -> None:
    cpu.lf_op = _SUB[s]
    cpu.lf_a = a
    cpu.lf_b = b
    cpu.lf_res = (a - b) & _MASK[s]


# ----------------------------------------------------------------------- MOVS
# MOVS's bulk step by element size: REP MOVS and translated copy loops
# (``translate._copy_loop``) share it.
MOVS_BULK: dict = {}


def _movs(s: int):
    rd, wr = _RD[s], _WR[s]

    def one(cpu, d, si, di):
        v = rd(cpu, cpu.lin(d.seg, si))
        wr(cpu, cpu.lin(ES, di, True), v)

    def bulk(cpu, d, si, di, n, back, amask):
        k, ps = span(cpu, d.seg, si, s, n, back, False, amask)
        if not k:
            return 0
        k, pd = span(cpu, ES, di, s, k, back, True, amask)
        if not k:
            return 0
        ram = cpu.ram
        if back:
            # ps/pd address the first (highest) elements.  Copying downwards
            # onto a lower overlapping range, an element may read what an
            # earlier one wrote: take at most the distance per chunk, so no
            # chunk reads bytes its own stores change.
            if 0 < ps - pd < k * s:
                k = (ps - pd) // s
                if not k:
                    return 0
            nb = k * s
            ps -= nb - s
            pd -= nb - s
        else:
            if 0 < pd - ps < k * s:
                # Copying upwards onto a higher overlapping range replicates
                # the first ``dist`` bytes (element-by-element semantics,
                # not memmove's).
                dist = pd - ps
                nb = k * s
                if dist % s == 0:
                    ram[pd:pd + nb] = (ram[ps:pd] * (nb // dist + 1))[:nb]
                    return k
                k = dist // s
                if not k:
                    return 0
            nb = k * s
        ram[pd:pd + nb] = ram[ps:ps + nb]
        return k

    def movs(cpu, d):
        if d.rep:
            return rep(cpu, d)
        r = cpu.regs
        step = -s if cpu.eflags & DF else s
        if d.asz == 4:
            si, di = r[6], r[7]
            v = rd(cpu, cpu.lin(d.seg, si))
            wr(cpu, cpu.lin(ES, di, True), v)
            r[6] = (si + step) & M32
            r[7] = (di + step) & M32
        else:
            si, di = r[6] & 0xFFFF, r[7] & 0xFFFF
            v = rd(cpu, cpu.lin(d.seg, si))
            wr(cpu, cpu.lin(ES, di, True), v)
            r[6] = (r[6] & 0xFFFF0000) | ((si + step) & 0xFFFF)
            r[7] = (r[7] & 0xFFFF0000) | ((di + step) & 0xFFFF)

    rep = make_rep(s, one, bulk, True, True, False)
    MOVS_BULK[s] = bulk
    return movs


# ----------------------------------------------------------------------- STOS
def _stos(s: int):
    wr, mask = _WR[s], _MASK[s]

    def one(cpu, d, si, di):
        wr(cpu, cpu.lin(ES, di, True), cpu.regs[0] & mask)

    def bulk(cpu, d, si, di, n, back, amask):
        k, pd = span(cpu, ES, di, s, n, back, True, amask)
        if not k:
            return 0
        if back:
            pd -= (k - 1) * s
        cpu.ram[pd:pd + k * s] = (cpu.regs[0] & mask).to_bytes(s, "little") * k
        return k

    def stos(cpu, d):
        if d.rep:
            return rep(cpu, d)
        r = cpu.regs
        step = -s if cpu.eflags & DF else s
        if d.asz == 4:
            di = r[7]
            wr(cpu, cpu.lin(ES, di, True), r[0] & mask)
            r[7] = (di + step) & M32
        else:
            di = r[7] & 0xFFFF
            wr(cpu, cpu.lin(ES, di, True), r[0] & mask)
            r[7] = (r[7] & 0xFFFF0000) | ((di + step) & 0xFFFF)

    rep = make_rep(s, one, bulk, False, True, False)
    return stos


# ----------------------------------------------------------------------- LODS
def _lods(s: int):
    rd = _RD[s]
    keep = ~_MASK[s]

    def one(cpu, d, si, di):
        v = rd(cpu, cpu.lin(d.seg, si))
        cpu.regs[0] = (cpu.regs[0] & keep) | v

    def lods(cpu, d):
        if d.rep:
            return rep(cpu, d)
        r = cpu.regs
        step = -s if cpu.eflags & DF else s
        if d.asz == 4:
            si = r[6]
            v = rd(cpu, cpu.lin(d.seg, si))
            r[6] = (si + step) & M32
        else:
            si = r[6] & 0xFFFF
            v = rd(cpu, cpu.lin(d.seg, si))
            r[6] = (r[6] & 0xFFFF0000) | ((si + step) & 0xFFFF)
        r[0] = (r[0] & keep) | v

    rep = make_rep(s, one, None, True, False, False)   # REP LODS is rare: no bulk path
    return lods


# ----------------------------------------------------------------------- CMPS
def _cmps(s: int):
    rd = _RD[s]

    def one(cpu, d, si, di):
        a = rd(cpu, cpu.lin(d.seg, si))
        b = rd(cpu, cpu.lin(ES, di))
        _set_cmp(cpu, s, a, b)

    def bulk(cpu, d, si, di, n, back, amask):
        """REPE CMPS upwards (memcmp): compare whole windows, stop at the
        first element that differs."""
        if back or d.rep != 0xF3:
            return 0
        k, ps = span(cpu, d.seg, si, s, n, False, False, amask)
        if not k:
            return 0
        k, pd = span(cpu, ES, di, s, k, False, False, amask)
        if not k:
            return 0
        nb = k * s
        ram = cpu.ram
        a = ram[ps:ps + nb]
        b = ram[pd:pd + nb]
        if a == b:
            it = k
        else:
            x = int.from_bytes(a, "little") ^ int.from_bytes(b, "little")
            it = (((x & -x).bit_length() - 1) >> 3) // s + 1
        o = (it - 1) * s
        _set_cmp(cpu, s, int.from_bytes(a[o:o + s], "little"), int.from_bytes(b[o:o + s], "little"))
        return it

    def cmps(cpu, d):
        if d.rep:
            return rep(cpu, d)
        r = cpu.regs
        step = -s if cpu.eflags & DF else s
        if d.asz == 4:
            si, di = r[6], r[7]
            one(cpu, d, si, di)
            r[6] = (si + step) & M32
            r[7] = (di + step) & M32
        else:
            si, di = r[6] & 0xFFFF, r[7] & 0xFFFF
            one(cpu, d, si, di)
            r[6] = (r[6] & 0xFFFF0000) | ((si + step) & 0xFFFF)
            r[7] = (r[7] & 0xFFFF0000) | ((di + step) & 0xFFFF)

    rep = make_rep(s, one, bulk, True, True, True)
    return cmps


# ----------------------------------------------------------------------- SCAS
def _scasb_bulk(cpu, d, si, di, n, back, amask):
    """REPE/REPNE SCASB upwards (strlen, memchr): search a whole window."""
    if back:
        return 0
    k, pd = span(cpu, ES, di, 1, n, False, False, amask)
    if not k:
        return 0
    data = cpu.ram[pd:pd + k]
    al = cpu.regs[0] & 0xFF
    if d.rep == 0xF3:                  # REPE: runs while equal
        m = k - len(data.lstrip(bytes((al,))))
        it = k if m == k else m + 1
    else:                              # REPNE: runs while different
        i = data.find(al)
        it = k if i < 0 else i + 1
    _set_cmp(cpu, 1, al, data[it - 1])
    return it


def _scas(s: int):
    rd, mask = _RD[s], _MASK[s]

    def one(cpu, d, si, di):
        b = rd(cpu, cpu.lin(ES, di))
        _set_cmp(cpu, s, cpu.regs[0] & mask, b)

    def scas(cpu, d):
        if d.rep:
            return rep(cpu, d)
        r = cpu.regs
        step = -s if cpu.eflags & DF else s
        if d.asz == 4:
            di = r[7]
            one(cpu, d, 0, di)
            r[7] = (di + step) & M32
        else:
            di = r[7] & 0xFFFF
            one(cpu, d, 0, di)
            r[7] = (r[7] & 0xFFFF0000) | ((di + step) & 0xFFFF)

    rep = make_rep(s, one, _scasb_bulk if s == 1 else None, False, True, True)
    return scas


# ----------------------------------------------------------------------- XLAT
def _xlat(cpu, d):
    """AL = [seg:eBX + unsigned AL] (SDM vol. 2, "XLAT"); the sum wraps at the
    address size."""
    r = cpu.regs
    off = (r[3] + (r[0] & 0xFF)) & (M32 if d.asz == 4 else 0xFFFF)
    r[0] = (r[0] & ~0xFF) | cpu.rd8(cpu.lin(d.seg, off))


# --------------------------------------------------------------- registration
def _both(make, v_spec: str, b_spec: str, mnem: str) -> None:
    register(mnem, b_spec, make(1))
    register(mnem, v_spec, {2: make(2), 4: make(4)})


_both(_movs, "Yv,Xv", "Yb,Xb", "MOVS")
_both(_cmps, "Xv,Yv", "Xb,Yb", "CMPS")
_both(_stos, "Yv,eAX", "Yb,AL", "STOS")
_both(_lods, "eAX,Xv", "AL,Xb", "LODS")
_both(_scas, "eAX,Yv", "AL,Yb", "SCAS")
register("XLAT", "", _xlat)
