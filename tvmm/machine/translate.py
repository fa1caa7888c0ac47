"""Translation: a hot decoded block, with the blocks it calls and jumps to,
becomes one Python function.

The interpreter runs a block as ``for insn: cpu.eip = insn.next;
insn.fn(cpu, insn)``.  Once a block has run ``HOT`` times, ``translate_block``
writes Python source for it and compiles it:

- **Traces.** The translated unit starts with the hot block and goes on
  through the blocks it reaches: the target of a direct ``JMP``/``CALL``;
  after a ``CALL`` in the unit, the return address of the matching ``RET``
  (guarded: a popped value that differs leaves the unit there); the
  fall-through of ``CLI``; and the side of a conditional branch whose block
  has run more often so far (``Block.hits``), the other side being a *side
  exit* that leaves the unit like any other end.  Only blocks already
  decoded and cached are followed, a block at most once, up to
  ``MAX_TRACE`` instructions.  A unit may span linear pages:
  entering a page other than the first checks that the read TLB still maps
  it to the physical page the code was decoded from (``tlb_r[vpn] == delta``)
  and leaves the unit otherwise.  The unit is registered under every
  physical page it holds, so a store to any of them drops it.
- **Flat mode.** When CS, SS, DS and ES are flat 32-bit segments (base 0,
  4 GiB limits: ``cpu.flat``), the unit is compiled without segment checks,
  with effective addresses inline and the guest registers in Python locals
  (loaded on entry, written back before every handler call, at every exit
  and on a fault).  A unit compiled flat runs only while ``cpu.flat`` holds
  (the run loop checks on entry; an instruction that may reload a segment
  leaves the unit when it stops holding).  Otherwise (real mode, 16-bit
  code, non-flat segments) the unit works on ``cpu.regs`` with the decoded
  effective-address closures, which check the limits.
- Instructions with a source template (the ALU/MOV family, INC/DEC, LEA,
  shifts by a constant, XCHG of registers, branches; in flat mode also
  MOVZX/MOVSX, PUSH/POP/CALL/RET/LEAVE/PUSH imm/PUSHF, MOV moffs, CLI, and
  INC, DEC and XCHG on memory) are inlined; every other instruction becomes a
  direct call of its handler, exactly as the interpreter would make it.
- A lazy-flag record is dropped when a later instruction of the unit
  overwrites the flags before anything can read them, including a fault
  handler, so no instruction that can fault may sit in between.  A
  conditional branch tests the operands or result of the instruction that
  set the flags directly when that instruction is in the unit.

Contract with the run loop (``CPU._run``):
- ``fn(cpu)`` runs the unit and leaves ``cpu.eip`` at the next instruction to
  execute; it is used only when the budget allows the whole unit
  (``block.n``) and no single-stepping is in force.
- Before every handler call and every slow-path memory access ``cpu.eip`` is
  that instruction's ``next`` (so ``CPU.insn_time`` finds it in
  ``block.trace``, which holds no instruction twice); in flat mode the slow
  paths (``_rd_at``/``_wr_at``) set it, so inline fast paths never store it.  On a ``CpuFault`` the
  function itself writes the registers back, points ``cpu.eip`` at the
  faulting instruction, adds the instructions retired before it to
  ``cpu.icount`` and re-raises: the loop only delivers the fault.
- After any instruction that may store to memory, the function returns early
  (by raising ``Leave``, which it catches itself) if ``cpu.block_abort`` is set (a store hit decoded code, or a data
  breakpoint fired).  Between the blocks of a unit it returns early if
  ``cpu.attention`` is set, which whatever moves ``cpu.stop_at`` closer (a
  device event inside the slice, ``PC._new_deadline``) also sets: the
  interpreter looks at both between blocks too, so interpreted and
  translated runs stay the same run.
- The function adds the instructions it retired to ``cpu.icount`` itself.
  A unit that branches back to its own start loops inside the function while
  the budget allows a whole iteration and ``cpu.attention`` is clear.
- It returns the successor block from ``links`` when it ended normally (the
  run loop may then skip the lookup), else None.  The run loop follows a
  returned block whose ``xpage`` is set only if the TLB still maps that
  page as it did (``Block``).
"""

from __future__ import annotations

import re

from . import codecache
from . import flags as lf
from .consts import ARITH
from .errors import CpuFault
from .flags import get_cf

DEAD_XPAGE = (0, -1)    # ``Block.xpage`` of a dropped block: no TLB entry is -1
HOT = 32                # executions before a block is translated (xv6 runs many blocks a few dozen times)
MAX_TRACE = 64          # instructions in one translated unit
M32 = 0xFFFFFFFF

# Block endings that keep CS, CPL and the paging mode: a block ending so may
# hand its successor straight to the run loop (see ``Block.links``).
LINKABLE = frozenset({"JMP", "CALL", "RET", "LOOP", "LOOPZ", "LOOPNZ", "JCXZ",
                      "MOVS", "STOS", "LODS", "CMPS", "SCAS"}      # REP forms: a block of their own
                     | {"J" + cc for cc in ("O", "NO", "B", "NB", "Z", "NZ", "BE", "NBE",
                                             "S", "NS", "P", "NP", "L", "NL", "LE", "NLE")})

# MOV between the accumulator and a direct memory offset.
_MOFFS = frozenset({"AL,Ob", "eAX,Ov", "Ob,AL", "Ov,eAX"})
_VM_RF = 0x30000        # PUSHF clears VM and RF in the pushed image

# Conditional branches a trace may continue through (with a side exit).
_JCC = frozenset("J" + cc for cc in ("O", "NO", "B", "NB", "Z", "NZ", "BE", "NBE",
                                     "S", "NS", "P", "NP", "L", "NL", "LE", "NLE"))

# Handlers after which the segment registers may no longer be flat (the ones
# that end a block anyway are not listed: nothing follows them in a unit).
_SEG_WRITERS = frozenset({"MOV", "POP", "LDS", "LES", "LFS", "LGS", "LSS"})


class Block:
    """A decoded block in the cache: its instructions and, once hot, its code.

    ``fn`` is the translated unit that starts with this block; ``trace`` the
    instructions it may execute (this block's first, no instruction twice),
    ``n`` their number (the budget a run of ``fn`` needs), ``vpages`` the
    linear pages whose mapping a normal end of ``fn`` has checked, ``pfns``
    the physical pages it was decoded from, ``flat`` whether it was compiled
    for flat segments, ``read_watch`` whether with a check after every load
    (``translate``'s ``read_watch``).

    ``links`` maps an EIP the unit ended at to the translated block that
    starts there; the compiled function returns that block so the run loop
    can skip the lookup.  A write to any page of the unit drops the unit,
    and every block on its first page, links included.  A link to a block
    on another page than the unit's ``vpages`` (a return to a caller on
    another page) is followed only while that block's ``xpage``, the
    ``(vpn, delta)`` its page had in the read TLB when the link was made,
    still holds and the segments are flat; a dropped block gets
    ``DEAD_XPAGE``, which never holds, so a stale link is never followed.
    """

    __slots__ = ("insns", "fn", "hits", "n", "links", "linkable", "trace", "vpages", "pfns", "flat",
                 "xpage", "read_watch")

    def __init__(self, insns: list):
        self.insns = insns
        self.fn = None
        self.hits = 0
        self.n = len(insns)
        self.links: dict = {}
        self.trace = insns
        self.vpages: frozenset = frozenset()
        self.pfns: tuple = ()
        self.flat = False
        self.xpage = None
        self.read_watch = False
        last = insns[-1]
        self.linkable = last.mnem in LINKABLE and last.spec != "Mp" or not last.ends


def _alu_form(d):
    """The (dst kind, src kind, size) of an inlinable ALU/MOV instruction, or None."""
    from .ops import alu
    form = alu.FORMS.get(d.spec)
    if form is None or d.mnem not in alu.EXPR:
        return None
    (dst, src), byte = form
    size = 1 if byte else d.osz
    kinds = tuple(("rmr" if d.rm >= 0 else "rmm") if k == "rm" else k for k in (dst, src))
    return kinds[0], kinds[1], size


# Words and dwords go through RAM seen as 16- and 32-bit items (``m16``,
# ``m32``): a TLB delta is a multiple of 4096, so an aligned linear address
# is an aligned item; an unaligned one (rare in compiled code) takes the
# slow path, which also handles page crossings.
_VIEW = {2: ("m16", 1), 4: ("m32", 2)}


def _inline_rd(size: int) -> str:
    """A read through the TLB, falling back to the slow path (same as cpu.rdN)."""
    if size == 1:
        return "(ram[lin + t] if (t := tlb_r[lin >> 12]) is not None else cpu._rd_slow(lin, 1))"
    view, shift = _VIEW[size]
    return (f"({view}[lin + t >> {shift}] if (t := tlb_r[lin >> 12]) is not None and not lin & {size - 1} "
            f"else cpu._rd_slow(lin, {size}))")


def _inline_wr(size: int, v: str) -> list[str]:
    if size == 1:
        return ["t = tlb_w[lin >> 12]", f"if t is not None: ram[lin + t] = {v}",
                f"else: cpu._wr_slow(lin, 1, {v})"]
    view, shift = _VIEW[size]
    return ["t = tlb_w[lin >> 12]", f"if t is not None and not lin & {size - 1}: {view}[lin + t >> {shift}] = {v}",
            f"else: cpu._wr_slow(lin, {size}, {v})"]


def _plan(d, flat: bool):
    """Classify one instruction: (kind, info)."""
    m = d.mnem
    if m in ("INC", "DEC") and d.spec == "Zv":
        return "incdec", None
    if m == "LEA" and (not flat or d.addr is not None):
        return "lea", None
    if m == "NOP":
        return "nop", None
    if m == "JMP" and d.spec in ("Jb", "Jz"):
        return "jmp", None
    if m.startswith("J") and d.spec in ("Jb", "Jz") and m not in ("JCXZ", "JMP"):
        return "jcc", None
    if flat and d.addr is not None and d.rm < 0:
        if m == "MOV" and d.spec in _MOFFS:
            return "moffs", (1 if "b" in d.spec else d.osz, d.spec[0] == "O")
        if m in ("INC", "DEC") and d.spec in ("Eb", "Ev"):
            return "incdecm", 1 if d.spec == "Eb" else d.osz
        if m == "XCHG" and d.spec == "Ev,Gv" and d.osz == 4:
            return "xchgm", None
    if flat and m == "PUSHF" and d.osz == 4:
        return "pushf", None
    if flat and m == "CLI":
        return "cli", None
    if flat and m == "STI":
        return "sti", None
    if flat and m in _STRING_INLINE and not d.rep and d.asz == 4 and (m == "STOS" or d.seg in (0, 2, 3)):
        return "string", 1 if "b" in d.spec else d.osz
    if m == "XCHG" and d.spec == "Ev,Gv" and d.osz == 4 and d.rm >= 0:
        return "xchgr", None
    form = _alu_form(d)
    if form is not None:
        return "alu", form
    if m in ("SHL", "SHR", "SAR") and d.rm >= 0 and d.spec in ("Ev,Ib", "Ev,1"):
        from .ops import shift
        size = d.osz
        count = 1 if d.spec.endswith(",1") else d.imm
        emitted = shift.emit_shift_reg_imm(m, size, d.rm, count)
        if emitted is not None:
            body, flag_lines = emitted
            body = [line.replace("regs[rm]", f"regs[{d.rm}]") for line in body if line != f"rm = {d.rm}"]
            return "shift", (body, flag_lines)
    if flat and m in ("MOVZX", "MOVSX") and d.osz == 4 and (d.rm >= 0 or d.addr is not None):
        return "movx", None
    if m == "IMUL" and d.osz == 4 and d.spec in _IMUL_FORMS and (d.rm >= 0 or (flat and d.addr is not None)):
        return "imul", None
    if d.osz == 4:
        if m == "PUSH" and d.spec == "Zv":
            return "push", None
        if m == "POP" and d.spec == "Zv":
            return "pop", None
        if m == "CALL" and d.spec == "Jz":
            return "callrel", None
        if m == "RET" and d.spec == "":
            return "ret", None
        if flat and m == "PUSH" and d.spec in ("Iz", "Ibs"):
            return "pushi", None
        if flat and m == "LEAVE":
            return "leave", None
    return "handler", None


# MOVS, STOS and LODS without REP, 32-bit addresses, source in a flat segment:
# inline (xv6-style byte loops ``movsb; cmp; jne``), as ``ops/string.py`` does
# one element: read, then write, then step eSI/eDI by DF (exact on a fault).
_STRING_INLINE = ("MOVS", "STOS", "LODS")

# IMUL r32, r/m32 [, imm]: inline (``_plan``), flags as ``ops/muldiv.py`` records them.
_IMUL_FORMS = ("Gv,Ev", "Gv,Ev,Iz", "Gv,Ev,Ibs")

# CF of the last inlined flag-setter, as an expression over its locals.
_CF_EXPR = {"ADD": "(1 if res < a else 0)", "SUB": "(1 if a < b else 0)", "CMP": "(1 if a < b else 0)",
            "AND": "0", "OR": "0", "XOR": "0", "TEST": "0", "INC": "b", "DEC": "b"}

# Lazy-flag kinds of the inlined flag setters (for conditions).
_KIND = {"ADD": "add", "SUB": "sub", "CMP": "sub", "AND": "logic", "OR": "logic", "XOR": "logic",
         "TEST": "logic", "INC": "incdec", "DEC": "incdec", "SHL": "shift", "SHR": "shift",
         "SAR": "shift"}


def _arith_expr(kind: str, size: int, parity: str) -> str | None:
    """EFLAGS' six arithmetic bits, as ``flags.arith_flags`` computes them,
    as an expression over the locals ``a``, ``b``, ``res`` of the inlined
    32-bit ADD/SUB/CMP or logic instruction that set them last (``parity``:
    the name of ``flags.PARITY``); None for other setters."""
    if size != 4 or kind not in ("add", "sub", "logic"):
        return None
    common = f"{parity}[res & 0xFF] | (0x40 if res == 0 else 0) | (res >> 24 & 0x80)"
    if kind == "logic":
        return common
    cf = "(1 if res < a else 0)" if kind == "add" else "(1 if a < b else 0)"
    of = "(a ^ res) & (b ^ res)" if kind == "add" else "(a ^ b) & (a ^ res)"
    return f"{common} | {cf} | (({of}) >> 20 & 0x800) | ((a ^ b ^ res) & 0x10)"


def _condition(mnem: str, kind: str, size: int) -> str | None:
    """A Jcc condition as an expression over the locals ``a``, ``b``, ``res``
    of the inlined instruction that set the flags, or None."""
    s = hex(lf.SIGN[{1: 0, 2: 1, 4: 2}[size]])
    cc = mnem[1:]
    common = {"Z": "res == 0", "NZ": "res != 0", "S": f"res & {s}", "NS": f"not res & {s}"}
    if cc in common:
        return common[cc]
    if kind == "sub":
        return {"B": "a < b", "NB": "a >= b", "BE": "a <= b", "NBE": "a > b",
                "L": f"(a ^ {s}) < (b ^ {s})", "NL": f"(a ^ {s}) >= (b ^ {s})",
                "LE": f"(a ^ {s}) <= (b ^ {s})", "NLE": f"(a ^ {s}) > (b ^ {s})"}.get(cc)
    if kind == "logic":
        return {"B": "False", "NB": "True", "BE": "res == 0", "NBE": "res != 0", "O": "False",
                "NO": "True", "L": f"res & {s}", "NL": f"not res & {s}",
                "LE": f"res == 0 or res & {s}", "NLE": f"res != 0 and not res & {s}"}.get(cc)
    if kind == "add":
        return {"B": "res < a", "NB": "res >= a", "BE": "res == 0 or res < a",
                "NBE": "res != 0 and res >= a"}.get(cc)
    return None


def _rows(insns, plans):
    """Per instruction: (writes all flags, reads flags, may fault, may store)."""
    rows = []
    for d, (kind, info) in zip(insns, plans):
        if kind == "alu":
            dst, src, _size = info
            mem = "rmm" in (dst, src)
            row = (d.mnem != "MOV", d.mnem in ("ADC", "SBB"), mem,
                   mem and dst == "rmm" and d.mnem not in ("CMP", "TEST"))
        elif kind == "incdec":
            row = (True, True, False, False)      # reads CF unless known (refined below)
        elif kind == "shift":
            row = (True, False, False, False)
        elif kind in ("lea", "nop", "xchgr"):
            row = (False, False, False, False)
        elif kind == "moffs":
            row = (False, False, True, info[1])
        elif kind == "incdecm":
            row = (True, True, True, True)
        elif kind == "xchgm":
            row = (False, False, True, True)
        elif kind == "pushf":
            row = (False, True, True, True)
        elif kind in ("cli", "sti"):
            row = (False, False, True, False)
        elif kind == "string":
            row = (False, False, True, d.mnem != "LODS")
        elif kind == "movx":
            row = (False, False, d.rm < 0, False)
        elif kind == "imul":
            row = (True, False, d.rm < 0, False)
        elif kind in ("jmp", "jcc"):
            row = (False, kind == "jcc", True, False)
        elif kind in ("push", "pop", "callrel", "ret", "pushi", "leave"):
            row = (False, False, True, kind in ("push", "callrel", "pushi"))
        else:
            row = (False, True, True, True)
        rows.append(row)
    return rows


_REG = re.compile(r"regs\[(\d)\]")
_REG_WRITE = re.compile(r"regs\[(\d)\]\s*=(?!=)")


class Leave(Exception):
    """A unit's rare early exit, raised in it and caught at its end: after
    ``n`` instructions, with EIP ``eip`` (``cpu.attention`` between blocks,
    ``cpu.block_abort`` after a store, a join whose page moved).  One line
    at each such point instead of a write-back of every register keeps
    units short, and compiling them is much of translation's cost."""

    def __init__(self, n: int, eip: int):
        self.n = n
        self.eip = eip


def _rd_at(cpu, eip: int, lin: int, size: int) -> int:
    """The slow read path of an inline instruction whose ``next`` is ``eip``.
    A read of a static virtual-APIC register is answered here, before the
    call, with the test ``CPU._rd_slow`` makes first (xv6's ``mycpu`` reads
    the APIC ID at every lock operation)."""
    if ((lin >> 12 << 1) | (cpu.cpl == 3)) == cpu._vapic_key and size == 4 and not lin & 0xF:
        v = cpu.vapic.get(lin & 0xFFF)
        if v is not None and not cpu.watchpoints and not cpu.dr[7] & 0xFF:
            cpu.vapic_reads += 1
            return v
    cpu.eip = eip
    return cpu._rd_slow(lin, size)


def _wr_at(cpu, eip: int, lin: int, size: int, v: int) -> None:
    cpu.eip = eip
    cpu._wr_slow(lin, size, v)


class _Unit:
    """Source being written for one translated unit."""

    def __init__(self, flat: bool):
        self.flat = flat
        self.next = 0           # EIP after the instruction being emitted
        self.consts: dict[str, object] = {"get_cf": get_cf, "materialize": lf.materialize,
                                          "rd_at": _rd_at, "wr_at": _wr_at, "CpuFault": CpuFault,
                                          "Leave": Leave}
        self.out: list[str] = []
        self.ind = ""
        self.used: set[int] = set()

    def const(self, prefix: str, value) -> str:
        name = f"{prefix}{len(self.consts)}"
        self.consts[name] = value
        return name

    def emit(self, lines) -> None:
        """Inline code: ``regs[N]`` becomes the local ``rN`` in flat mode,
        where the slow memory paths also set EIP (``next``) themselves: the
        fast paths never need it, so inline instructions do not store it."""
        for line in lines:
            if self.flat:
                for m in _REG.finditer(line):
                    self.used.add(int(m.group(1)))
                line = _REG.sub(r"r\1", line)
                if "_slow(" in line:
                    line = line.replace("cpu._rd_slow(", f"(ab := rd_at)(cpu, {self.next:#x}, ").replace(
                        "cpu._wr_slow(", f"(ab := wr_at)(cpu, {self.next:#x}, ")
            self.out.append(self.ind + line)

    def raw(self, lines) -> None:
        """Code emitted as is (register sync, handler calls)."""
        self.out.extend(self.ind + line for line in lines)

    # register sync around handler calls (flat mode only)
    def store_regs(self) -> None:
        if self.flat:
            self.raw(["SYNC_OUT"])

    def load_regs(self) -> None:
        if self.flat:
            self.raw(["SYNC_IN"])


def _offset(a) -> str:
    """The offset of decoded operand ``a`` (``Address``) as an expression
    over ``regs``, wrapped to the address size."""
    terms = []
    if a.base is not None:
        terms.append(f"regs[{a.base}]")
    if a.index is not None:
        terms.append(f"(regs[{a.index}] << {a.scale})" if a.scale else f"regs[{a.index}]")
    mask = 0xFFFFFFFF if a.a32 else 0xFFFF
    disp = a.disp & mask
    if not terms:
        return f"{disp:#x}"
    if disp:
        terms.append(f"{disp:#x}")
    return f"({' + '.join(terms)}) & {mask:#x}" if (len(terms) > 1 or not a.a32) else terms[0]


def _ea_lines(d, write: bool, flat: bool, em: _Unit) -> list[str]:
    """Lines leaving the linear address of ``d``'s memory operand in ``lin``."""
    a = d.addr
    if not flat or a is None:
        return [f"lin = {em.const('eaw' if write else 'ea', d.eaw if write else d.ea)}(cpu)"]
    off = _offset(a)
    if a.seg in (0, 2, 3):          # ES, SS, DS: flat
        return [f"lin = {off}"]
    hi = "cpu.seg_whi" if write else "cpu.seg_hi"
    return [f"off = {off}", f"if off > {hi}[{a.seg}] or off < cpu.seg_lo[{a.seg}]: cpu.seg_fault({a.seg}, off)",
            f"lin = (cpu.seg_base[{a.seg}] + off) & 0xFFFFFFFF"]


def _stack_write(v: str) -> list[str]:
    """Flat mode: store dword ``v`` at ``sp`` (the new ESP) through the TLB."""
    return ["t = tlb_w[sp >> 12]", f"if t is not None and not sp & 3: m32[sp + t >> 2] = {v}",
            f"else: cpu._wr_slow(sp, 4, {v})"]


def _stack_read() -> list[str]:
    return ["t = tlb_r[sp >> 12]",
            "v = m32[sp + t >> 2] if t is not None and not sp & 3 else cpu._rd_slow(sp, 4)"]


def gather(cpu, block, lin: int) -> tuple[list, list, list]:
    """The blocks of the unit that starts with ``block`` at linear ``lin``:
    ``(insns, joins, pages)``.

    ``joins[i]`` is None or ``(vpn, delta)``: instruction ``i`` starts a
    block on linear page ``vpn`` other than the first, which must still map
    with ``delta`` (``pa - lin``) when the unit reaches it.  A block is
    followed only after an unconditional direct JMP or CALL, or a RET whose
    CALL is in the unit (its return address known); only cached blocks,
    each once, decoded for the current code size.
    """
    insns = list(block.insns)
    joins: list = [None] * len(insns)
    seen = {id(block)}
    calls: list[int] = []           # return addresses of CALLs in the unit, innermost last
    pages = {lin >> 12}
    base = cpu.seg_base[1]
    first_vpn = lin >> 12
    cur = block
    while True:
        last = cur.insns[-1]
        if last.mnem == "CALL" and last.spec == "Jz" and last.osz == 4:
            calls.append(last.next)
            target = last.imm
        elif last.mnem == "JMP" and last.spec in ("Jb", "Jz"):
            target = last.imm
        elif last.mnem == "RET" and last.spec == "" and last.osz == 4 and calls:
            target = calls.pop()
        elif last.mnem in ("CLI", "STI"):
            target = last.next          # it ends a block (STI: the next one is its shadow)
        elif last.mnem in _JCC and last.spec in ("Jb", "Jz"):
            target = _likelier(cpu, base, last, seen)
            if target is None:
                break
        else:
            break
        tlin = (base + target) & M32
        vpn = tlin >> 12
        if vpn in cpu.bp_pages:
            break
        delta = cpu.tlb_r[vpn]
        if delta is None:
            break
        pa = tlin + delta
        nxt = cpu.blocks.get((pa << 33) | (target << 1) | cpu.code32)
        if nxt is None or id(nxt) in seen or len(insns) + len(nxt.insns) > MAX_TRACE:
            break
        if not cpu.mem.is_ram_page(pa >> 12):
            break
        seen.add(id(nxt))
        joins.append((vpn, delta) if vpn != first_vpn else None)
        joins.extend([None] * (len(nxt.insns) - 1))
        insns.extend(nxt.insns)
        pages.add(vpn)
        cur = nxt
    return insns, joins, sorted(pages)


def _cached(cpu, base: int, eip: int):
    """The cached block at ``eip`` (current CS base, TLB and code size), or None."""
    lin = (base + eip) & M32
    delta = cpu.tlb_r[lin >> 12]
    if delta is None:
        return None
    return cpu.blocks.get(((lin + delta) << 33) | (eip << 1) | cpu.code32)


def _likelier(cpu, base: int, jcc, seen: set):
    """The side of a conditional branch a trace follows: the one whose block
    has run more often so far (``Block.hits``), if cached and not already in
    the unit; None to end the unit at the branch."""
    best, best_hits = None, 0
    for eip in (jcc.next, jcc.imm):
        b = _cached(cpu, base, eip)
        if b is not None and b.hits > best_hits:
            best, best_hits = (eip, b), b.hits
    if best is None or id(best[1]) in seen:
        return None
    return best[0]


def translate_block(cpu, block, lin: int, pa: int):
    """Compile the unit starting with ``block`` (at linear ``lin``, physical
    ``pa``) for the CPU's current mode; fills ``block.trace``, ``n``,
    ``vpages``, ``pfns`` and ``flat`` and returns the function."""
    flat = bool(cpu.flat)
    if flat:
        insns, joins, pages = gather(cpu, block, lin)
    else:
        insns, joins, pages = list(block.insns), [None] * block.n, [lin >> 12]
    pfns = {pa >> 12}
    for j in joins:
        if j is not None:
            pfns.add((j[0] << 12) + j[1] >> 12)
    fn = translate(insns, cpu.code32, block.links, flat=flat, joins=joins, read_watch=cpu.read_watch)
    block.trace = insns
    block.n = len(insns)
    block.vpages = frozenset(pages)
    block.pfns = tuple(sorted(pfns))
    block.flat = flat
    block.read_watch = cpu.read_watch
    last = insns[-1]
    block.linkable = last.mnem in LINKABLE and last.spec != "Mp" or not last.ends
    return fn


def translate(insns: list, code32: bool, links: dict | None = None, flat: bool = False,
              joins: list | None = None, read_watch: bool = False):
    """Compile a unit; returns ``fn(cpu) -> Block | None`` (see the module
    docstring).  ``read_watch``: a load may hit a watchpoint or data
    breakpoint (``debug.reads_watched``), so loads are followed by
    ``abort_check`` too; units compiled without it are dropped when that
    becomes true."""
    from .ops import alu
    em = _Unit(flat)
    em.consts["links"] = links if links is not None else {}
    n = len(insns)
    joins = joins or [None] * n
    last = insns[-1]
    ret_link = "return links.get(cpu.eip)" if (last.mnem in LINKABLE or not last.ends) else "return None"
    plans = [_plan(d, flat) for d in insns]
    if plans[-1][0] == "sti":
        plans[-1] = ("handler", None)   # nothing of its shadow in the unit: the handler sets it
    rows = _rows(insns, plans)
    # A RET followed by more of the unit is a guarded return (see gather).
    writes = [r[0] for r in rows]
    reads = [r[1] for r in rows]
    faults = [r[2] for r in rows]
    stores = [r[3] for r in rows]
    if flat:
        # flat segments: a jump cannot pass the CS limit, so branches never fault
        for i, (kind, _) in enumerate(plans):
            if kind in ("jmp", "jcc"):
                faults[i] = False
    # a block boundary inside the unit is an exit point: flags must be exact there
    starts = [False] + [joins[i] is not None or insns[i].eip != insns[i - 1].next
                        or insns[i - 1].ends for i in range(1, n)]
    # An inline STI's shadow: the instruction after it starts a block but
    # takes no interrupt check (``boundary``); the one after that does.
    shadow = [False] + [plans[i - 1][0] == "sti" for i in range(1, n)]
    for i in range(1, n - 1):
        if shadow[i]:
            starts[i + 1] = True
    for i in range(1, n):
        if starts[i]:
            reads[i] = True

    def flags_dead(i: int) -> bool:
        for j in range(i + 1, n):
            if reads[j] or faults[j]:
                return False
            if writes[j]:
                return True
        return False

    # A unit whose last branch goes back to its start loops in the function:
    # on the branch taken, or (``loop_falls``) on its fall-through, as in a
    # compiled loop entered in its middle (xv6's mappages).
    loop_falls = plans[-1][0] == "jcc" and last.next == insns[0].eip != last.imm and n > 1
    loop = loop_falls or plans[-1][0] in ("jcc", "jmp") and last.imm == insns[0].eip and n > 1
    # ... or (``loop_ret``) on its final RET, when the CALL it returns from is
    # in the unit and returns to the unit's start (a loop that calls, entered
    # after the call: ``pop; dec; jnz; push; call f; ... ret``); the popped
    # address is compared, so any other return leaves as usual.
    loop_ret = False
    if flat and plans[-1][0] == "ret" and n > 1:
        returns = []
        for d, (kind, _info) in zip(insns[:-1], plans):
            if kind == "callrel":
                returns.append(d.next)
            elif kind == "ret" and returns:
                returns.pop()
        loop_ret = bool(returns) and returns[-1] == insns[0].eip
        loop = loop or loop_ret
    # ... or (``side_loop``) when a conditional branch inside the unit leaves
    # for the unit's start (a loop whose back edge the trace did not follow
    # last: a compiled ``while`` whose exit test comes after the back edge).
    side_loop = flat and n > 1 and any(
        kind == "jcc" and i + 1 < n and insns[0].eip in (d.imm, d.next) and insns[i + 1].eip != insns[0].eip
        for i, (d, (kind, _info)) in enumerate(zip(insns, plans)))
    if loop or side_loop:
        em.ind = "    "
    copy = _copy_loop(insns, plans) if flat and loop and not loop_falls and not loop_ret else None
    fstate = None        # (kind, size) of the inlined flag setter whose a/b/res locals are live
    cf_known = None      # CF of that setter as an expression over its locals

    def exit_lines(count: int, eip_expr: str, result: str = "return None") -> list[str]:
        return (["SYNC_OUT"] if flat else []) + [f"cpu.icount += {count}", f"cpu.eip = {eip_expr}", result]

    def abort_check(i, eip=None, handler=False):
        """Leave after instruction ``i`` (a store or a load) if it hit decoded
        code, a data breakpoint or a watchpoint; EIP becomes ``eip`` (default:
        the next instruction).  Those pages never enter the TLB, so in flat
        mode only a slow path (``rd_at``/``wr_at``, which the inline code
        names through the local ``ab``) or a ``handler`` can set
        ``block_abort``: until one has run, the test is one local."""
        eip = insns[i].next if eip is None else eip
        test = "ab and cpu.block_abort" if flat and not handler else "cpu.block_abort"
        em.raw([f"if {test}: raise Leave({i + 1}, {eip:#x})"])

    def load_check(i, eip=None):
        """``abort_check`` after a load, needed only while loads are watched."""
        if read_watch:
            abort_check(i, eip)

    def boundary(i):
        """Instruction ``i`` starts another block of the unit."""
        d = insns[i]
        # The unit was entered with room for all n instructions (icount moves
        # only at exits and back edges), and whatever lowers ``stop_at`` sets
        # ``attention`` (PC._new_deadline, request_stop): one test suffices.
        lines = [] if shadow[i] else [f"if cpu.attention: raise Leave({i}, {d.eip:#x})"]
        j = joins[i]
        if j is not None:
            # leaving at an STI's shadow instruction leaves the shadow in force
            keep = "cpu.inhibit = True; cpu._refresh(); " if shadow[i] else ""
            lines.append(f"if tlb_r[{j[0]:#x}] != {j[1]}: {keep}raise Leave({i}, {d.eip:#x})")
        em.raw(lines)

    if copy is not None:
        from .ops.string import MOVS_BULK
        em.emit(_copy_lines(em.const("movs_bulk", MOVS_BULK[copy[0]]), em.const("d", insns[0]), insns[0].eip,
                            *copy))
    for i, (d, (kind, info)) in enumerate(zip(insns, plans)):
        if starts[i]:
            boundary(i)
        em.next = d.next
        em.raw([f"k = {i}"] if faults[i] and kind != "handler" else [])
        ops = {"rm": str(d.rm), "reg": str(d.reg), "imm": hex(d.imm) if isinstance(d.imm, int) else "0"}
        if kind == "alu":
            dst, src, size = info
            if "rmm" in (dst, src):
                if flat:
                    ea = _ea_lines(d, dst == "rmm" and d.mnem not in ("CMP", "TEST"), True, em)
                    em.emit(ea[:-1])
                    ops["ea"] = ops["eaw"] = ea[-1][len("lin = "):]
                else:
                    ops["ea"] = em.const("ea", d.ea) + "(cpu)"
                    ops["eaw"] = em.const("eaw", d.eaw) + "(cpu)"
                    em.raw([f"cpu.eip = {d.next:#x}"])
                ops["rd"] = _inline_rd
                ops["wr"] = _inline_wr
            body, flag_lines = alu.emit_binary(d.mnem, size, dst, src, ops)
            em.emit(body)
            if flag_lines:
                fstate = (_KIND.get(d.mnem), size)
                cf_known = _CF_EXPR.get(d.mnem)
                if not flags_dead(i):
                    em.emit(flag_lines)
            if stores[i]:
                abort_check(i)
            elif "rmm" in (dst, src):
                load_check(i)
        elif kind == "incdec":
            delta = "+ 1" if d.mnem == "INC" else "- 1"
            kind_code = (lf.INC if d.mnem == "INC" else lf.DEC) << 2
            cf = cf_known or "get_cf(cpu)"
            if d.osz == 4:
                em.emit([f"b = {cf}", f"res = regs[{d.reg}] = (regs[{d.reg}] {delta}) & 0xFFFFFFFF"])
                kind_code |= 2
            else:
                em.emit([f"b = {cf}", f"res = (regs[{d.reg}] {delta}) & 0xFFFF",
                         f"regs[{d.reg}] = (regs[{d.reg}] & 0xFFFF0000) | res"])
                kind_code |= 1
            fstate, cf_known = ("incdec", d.osz), "b"
            if not flags_dead(i):
                em.emit([f"cpu.lf_op = {kind_code}", "cpu.lf_b = b", "cpu.lf_res = res"])
        elif kind == "shift":
            body, flag_lines = info
            em.emit(body)
            fstate, cf_known = ("shift", d.osz), None
            if not flags_dead(i):
                em.emit(flag_lines)
        elif kind == "movx":
            size = 1 if d.spec.endswith("b") else 2
            if d.rm >= 0:
                from .ops.alu import _rd_reg
                src = _rd_reg(str(d.rm), size)
            else:
                ea = _ea_lines(d, False, True, em)
                em.emit(ea)
                src = _inline_rd(size)
            if d.mnem == "MOVZX":
                em.emit([f"regs[{d.reg}] = {src}"])
            else:
                sign = 0x80 if size == 1 else 0x8000
                em.emit([f"v = {src}", f"regs[{d.reg}] = (v - {sign << 1:#x}) & 0xFFFFFFFF if v & {sign:#x} else v"])
            if d.rm < 0:
                load_check(i)
        elif kind == "imul":
            from .ops import muldiv
            if d.rm >= 0:
                em.emit([f"b = regs[{d.rm}]"])
            else:
                em.emit(_ea_lines(d, False, True, em))
                em.emit([f"b = {_inline_rd(4)}"])
            if d.spec == "Gv,Ev":
                em.emit([f"a = regs[{d.reg}]"])
                factor = "(a - ((a & 0x80000000) << 1))"
            else:
                imm = d.imm & M32
                factor = str(imm - ((imm & 0x80000000) << 1))
            em.emit([f"p = {factor} * (b - ((b & 0x80000000) << 1))",
                     f"res = regs[{d.reg}] = p & 0xFFFFFFFF"])
            fstate = cf_known = None
            if not flags_dead(i):
                ov = em.const("imul_overflowed", muldiv._overflowed)
                em.emit(["if -0x80000000 <= p <= 0x7FFFFFFF:",
                         f"    cpu.lf_op = {muldiv._LOGIC32}", "    cpu.lf_res = res",
                         "else:", f"    {ov}(cpu, res, 4)"])
            if d.rm < 0:
                load_check(i)
        elif kind in ("push", "callrel", "pushi") and flat:
            value = {"push": f"regs[{d.reg}]", "callrel": f"{d.next:#x}", "pushi": f"{d.imm & M32:#x}"}[kind]
            em.emit(["sp = (regs[4] - 4) & 0xFFFFFFFF"] + _stack_write(value) + ["regs[4] = sp"])
            if i + 1 < n:
                abort_check(i, d.imm if kind == "callrel" else d.next)
            elif kind == "callrel":
                em.raw([f"cpu.eip = {d.imm:#x}"])
        elif kind in ("pop", "ret", "leave") and flat:
            if kind == "leave":
                em.emit(["sp = regs[5]"] + _stack_read() + ["regs[4] = (sp + 4) & 0xFFFFFFFF", "regs[5] = v"])
            elif kind == "pop":
                em.emit(["sp = regs[4]"] + _stack_read() + ["regs[4] = (sp + 4) & 0xFFFFFFFF",
                                                            f"regs[{d.reg}] = v"])
            if kind != "ret":
                if i + 1 < n:
                    load_check(i)
            else:
                em.emit(["sp = regs[4]"] + _stack_read() + ["regs[4] = (sp + 4) & 0xFFFFFFFF"])
                if i + 1 < n:       # a guarded return into the rest of the unit
                    em.raw([f"if v != {insns[i + 1].eip:#x}:"]
                           + ["    " + x for x in exit_lines(i + 1, "v")])
                    load_check(i, insns[i + 1].eip)
                elif loop_ret:
                    em.raw([f"if v == {insns[0].eip:#x}:",
                            f"    cpu.icount += {n}",
                            f"    if cpu.attention or cpu.stop_at - cpu.icount < {n}:",
                            "        SYNC_OUT",
                            "        cpu.eip = v",
                            f"        {ret_link}",
                            "    continue",
                            "cpu.eip = v"])
                else:
                    em.raw(["cpu.eip = v"])
        elif kind in ("push", "callrel"):
            # 32-bit push through the TLB when SS is a 32-bit stack and the slot
            # is inside its limits; anything else goes to the handler.
            h, dd = em.const("h", d.fn), em.const("d", d)
            value = f"regs[{d.reg}]" if kind == "push" else f"{d.next:#x}"
            guard = "cpu.stack32 and cpu.seg_lo[2] <= sp <= cpu.seg_whi[2] - 3"
            if kind == "callrel":
                guard += f" and {d.imm:#x} <= cpu.seg_hi[1]"
            em.emit([f"cpu.eip = {d.next:#x}",
                     "sp = (regs[4] - 4) & 0xFFFFFFFF",
                     f"if {guard}:",
                     "    lin = (cpu.seg_base[2] + sp) & 0xFFFFFFFF"]
                    + ["    " + line for line in _inline_wr(4, value)]
                    + ["    regs[4] = sp"]
                    + ([f"    cpu.eip = {d.imm:#x}"] if kind == "callrel" else [])
                    + ["else:", f"    {h}(cpu, {dd})"])
            if kind == "push" and i + 1 < n:
                abort_check(i)
        elif kind in ("pop", "ret"):
            h, dd = em.const("h", d.fn), em.const("d", d)
            em.emit([f"cpu.eip = {d.next:#x}",
                     "sp = regs[4]",
                     "if cpu.stack32 and cpu.seg_lo[2] <= sp <= cpu.seg_hi[2] - 3:",
                     "    lin = (cpu.seg_base[2] + sp) & 0xFFFFFFFF",
                     f"    v = {_inline_rd(4)}"])
            if kind == "pop":
                em.emit(["    regs[4] = (sp + 4) & 0xFFFFFFFF", f"    regs[{d.reg}] = v",
                         "else:", f"    {h}(cpu, {dd})"])
                if i + 1 < n:
                    load_check(i)
            else:
                em.emit(["    if v <= cpu.seg_hi[1]:",
                         "        regs[4] = (sp + 4) & 0xFFFFFFFF",
                         "        cpu.eip = v",
                         "    else:",
                         f"        {h}(cpu, {dd})",
                         "else:", f"    {h}(cpu, {dd})"])
        elif kind == "moffs":
            size, store = info
            ea = _ea_lines(d, store, True, em)
            em.emit(ea)
            if store:
                value = {1: "regs[0] & 0xFF", 2: "regs[0] & 0xFFFF", 4: "regs[0]"}[size]
                em.emit(_inline_wr(size, value))
                abort_check(i)
            else:
                keep = {1: "(regs[0] & 0xFFFFFF00) | ", 2: "(regs[0] & 0xFFFF0000) | ", 4: ""}[size]
                em.emit([f"regs[0] = {keep}{_inline_rd(size)}"])
                load_check(i)
        elif kind == "incdecm":
            size = info
            delta = "+ 1" if d.mnem == "INC" else "- 1"
            kind_code = (lf.INC if d.mnem == "INC" else lf.DEC) << 2 | {1: 0, 2: 1, 4: 2}[size]
            em.emit(_ea_lines(d, True, True, em))
            em.emit([f"b = {cf_known or 'get_cf(cpu)'}",
                     f"res = ({_inline_rd(size)} {delta}) & {lf.MASK[{1: 0, 2: 1, 4: 2}[size]]:#x}"]
                    + _inline_wr(size, "res"))
            fstate, cf_known = ("incdec", size), "b"
            if not flags_dead(i):
                em.emit([f"cpu.lf_op = {kind_code}", "cpu.lf_b = b", "cpu.lf_res = res"])
            abort_check(i)
        elif kind == "xchgm":
            em.emit(_ea_lines(d, True, True, em))
            em.emit([f"v = {_inline_rd(4)}"] + _inline_wr(4, f"regs[{d.reg}]") + [f"regs[{d.reg}] = v"])
            abort_check(i)
        elif kind == "xchgr":
            if d.rm != d.reg:
                em.emit([f"regs[{d.rm}], regs[{d.reg}] = regs[{d.reg}], regs[{d.rm}]"])
        elif kind == "pushf":
            # the flags of an inlined setter whose a/b/res are live are
            # computed here, leaving the lazy state as it is
            arith = _arith_expr(*fstate, em.const("parity", lf.PARITY)) if fstate is not None else None
            if arith is not None:
                image = f"v = (cpu.eflags & {~(ARITH | _VM_RF) & M32:#x}) | {arith}"
            else:
                image = f"v = materialize(cpu) & {~_VM_RF & M32:#x}"
            em.emit([image, "sp = (regs[4] - 4) & 0xFFFFFFFF"]
                    + _stack_write("v") + ["regs[4] = sp"])
            if i + 1 < n:
                abort_check(i)
        elif kind in ("cli", "sti"):
            # Ring 0 clears or sets IF in line (xv6's pushcli and popcli);
            # after STI the next instruction runs in its shadow (no interrupt
            # check before it, one after it: ``shadow``).  CPL > IOPL: the
            # handler, which raises #GP(0).
            h, dd = em.const("h", d.fn), em.const("d", d)
            # (IF is never lazy: the arithmetic flags are left as they are)
            change = ("if cpu.eflags & 0x200: cpu.eflags &= 0xFFFFFDFF; cpu._refresh()" if kind == "cli"
                      else "if not cpu.eflags & 0x200: cpu.eflags |= 0x200; cpu._refresh()")
            em.raw(["if cpu.cpl <= (cpu.eflags >> 12 & 3):",
                    f"    {change}",
                    "else:",
                    "    SYNC_OUT",
                    f"    k = {~i}",
                    f"    cpu.eip = {d.next:#x}",
                    f"    {h}(cpu, {dd})",
                    "    SYNC_IN"])
        elif kind == "string":
            size = info
            mask = {1: "0xFF", 2: "0xFFFF", 4: "0xFFFFFFFF"}[size]
            lines = [f"st = {-size} if cpu.eflags & 0x400 else {size}"]
            if d.mnem == "MOVS":
                lines += ["lin = regs[6]", f"v = {_inline_rd(size)}", "lin = regs[7]"] + _inline_wr(size, "v")
            elif d.mnem == "STOS":
                lines += ["lin = regs[7]"] + _inline_wr(size, "regs[0]" if size == 4 else f"regs[0] & {mask}")
            else:
                keep = {1: "(regs[0] & 0xFFFFFF00) | ", 2: "(regs[0] & 0xFFFF0000) | ", 4: ""}[size]
                lines += ["lin = regs[6]", f"regs[0] = {keep}{_inline_rd(size)}"]
            if d.mnem != "STOS":
                lines.append("regs[6] = (regs[6] + st) & 0xFFFFFFFF")
            if d.mnem != "LODS":
                lines.append("regs[7] = (regs[7] + st) & 0xFFFFFFFF")
            em.emit(lines)
            if stores[i]:
                abort_check(i)
            else:
                load_check(i)
        elif kind == "lea":
            if flat:
                off = _offset(d.addr)
            else:
                off = em.const("eoff", d.eoff) + "(cpu)"
            if d.osz == 4:
                em.emit([f"regs[{d.reg}] = {off}"])
            else:
                em.emit([f"regs[{d.reg}] = (regs[{d.reg}] & 0xFFFF0000) | (({off}) & 0xFFFF)"])
        elif kind == "nop":
            pass
        elif kind in ("jmp", "jcc"):
            h, dd = em.const("h", d.fn), em.const("d", d)
            cond = "True" if kind == "jmp" else None
            if cond is None and fstate is not None:
                cond = _condition(d.mnem, *fstate)
            budget = f"cpu.attention or cpu.stop_at - cpu.icount < {n}"
            limit_ok = "True" if flat else f"{d.imm:#x} <= cpu.seg_hi[1]"
            if i + 1 < n:
                # Inside the unit: a JMP continues at its target (gather); a
                # Jcc continues on the side gather chose and leaves the unit
                # on the other (a side exit, linked like any other end).
                if kind == "jcc":
                    follow = insns[i + 1].eip
                    other = d.next if follow == d.imm else d.imm
                    if cond is None:
                        em.store_regs()
                        em.raw([f"k = {~i}", f"cpu.eip = {d.next:#x}", f"{h}(cpu, {dd})",
                                f"if cpu.eip != {follow:#x}:"]
                               + ["    " + x for x in exit_lines(i + 1, "cpu.eip", "return links.get(cpu.eip)")])
                    elif side_loop and other == insns[0].eip:
                        leave = cond if follow == d.next else f"not ({cond})"
                        em.raw([f"if {leave}:",
                                f"    cpu.icount += {i + 1}",
                                f"    if {budget}:",
                                "        SYNC_OUT",
                                f"        cpu.eip = {other:#x}",
                                "        return links.get(cpu.eip)",
                                "    continue"])
                    else:
                        leave = cond if follow == d.next else f"not ({cond})"
                        em.raw([f"if {leave}:"] + ["    " + x for x in exit_lines(i + 1, f"{other:#x}",
                                                                        "return links.get(cpu.eip)")])
                continue
            if cond is None:
                # The handler evaluates the condition (the flags are exact here;
                # it changes no register, so the locals stay valid).
                em.store_regs()
                em.raw([f"k = {~i}", f"cpu.eip = {d.next:#x}", f"{h}(cpu, {dd})", f"cpu.icount += {n}"])
                if loop:
                    em.raw([f"if cpu.eip != {insns[0].eip:#x} or {budget}:", f"    {ret_link}"])
                else:
                    em.raw([ret_link])
            elif loop_falls:
                em.raw([f"if not ({cond}):",
                        f"    cpu.icount += {n}",
                        f"    if {budget}:",
                        "        SYNC_OUT",
                        f"        cpu.eip = {d.next:#x}",
                        f"        {ret_link}",
                        "    continue",
                        f"if {limit_ok}:",
                        f"    cpu.eip = {d.imm:#x}",
                        "else:",
                        f"    cpu.eip = {d.next:#x}",
                        "    SYNC_OUT",
                        f"    k = {~i}",
                        f"    {h}(cpu, {dd})  # target past the CS limit: #GP",
                        "SYNC_OUT",
                        f"cpu.icount += {n}",
                        ret_link])
            elif loop:
                em.raw([f"if {cond}:",
                        f"    if {limit_ok}:",
                        f"        cpu.icount += {n}",
                        f"        if {budget}:",
                        "            SYNC_OUT",
                        f"            cpu.eip = {d.imm:#x}",
                        f"            {ret_link}",
                        "        continue",
                        "    SYNC_OUT",
                        f"    k = {~i}",
                        f"    {h}(cpu, {dd})      # target past the CS limit: #GP",
                        "    SYNC_IN",
                        "else:",
                        f"    cpu.eip = {d.next:#x}",
                        "SYNC_OUT",
                        f"cpu.icount += {n}",
                        ret_link])
            else:
                em.raw([f"if {cond}:",
                        f"    if {limit_ok}:",
                        f"        cpu.eip = {d.imm:#x}",
                        "    else:",
                        f"        cpu.eip = {d.next:#x}",
                        "        SYNC_OUT",
                        f"        k = {~i}",
                        f"        {h}(cpu, {dd})  # target past the CS limit: #GP",
                        "else:",
                        f"    cpu.eip = {d.next:#x}",
                        "SYNC_OUT",
                        f"cpu.icount += {n}",
                        ret_link])
            break
        else:
            h, dd = em.const("h", d.fn), em.const("d", d)
            em.store_regs()
            em.raw([f"k = {~i}", f"cpu.eip = {d.next:#x}", f"{h}(cpu, {dd})"])
            em.load_regs()
            fstate = cf_known = None
            if i + 1 < n:
                if flat and d.mnem in _SEG_WRITERS:
                    em.raw(["if not cpu.flat:"] + ["    " + x for x in exit_lines(i + 1, "cpu.eip")])
                if stores[i]:
                    abort_check(i, handler=True)
            else:
                em.raw(["SYNC_OUT", f"cpu.icount += {n}", ret_link])
                break
    else:
        # no branch ended the unit: a CALL or RET did, or the block was cut at
        # the page or size limit
        em.raw(["SYNC_OUT", f"cpu.icount += {n}"])
        if plans[-1][0] not in ("callrel", "ret"):
            em.raw([f"cpu.eip = {last.next:#x}"])
        em.raw([ret_link])
    return _compile(em, insns, loop or side_loop, n)


def _copy_loop(insns: list, plans: list):
    """``(size, index, end, a, b)`` when the unit is a compiler's copy loop
    ``1: movs ; cmp a, b ; jne 1b`` with ``{a, b} = {index, end}`` and the
    index ESI or EDI (xv6's ``memmove``), else None."""
    if len(insns) != 3 or plans[0][0] != "string" or insns[0].mnem != "MOVS":
        return None
    cmp, jne = insns[1], insns[2]
    if cmp.mnem != "CMP" or cmp.osz != 4 or cmp.spec not in ("Ev,Gv", "Gv,Ev") or cmp.rm < 0 \
            or jne.mnem != "JNZ" or jne.imm != insns[0].eip:
        return None
    pair = {cmp.rm, cmp.reg}
    index = pair & {6, 7}
    if len(pair) != 2 or len(index) != 1:
        return None
    a, b = (cmp.rm, cmp.reg) if cmp.spec == "Ev,Gv" else (cmp.reg, cmp.rm)
    return plans[0][1], index.pop(), (pair - index).pop(), a, b


def _copy_lines(bulk: str, d: str, eip: int, size: int, index: int, end: int, a: int, b: int) -> list[str]:
    """The head of a copy loop's iteration (see ``_copy_loop``): the
    iterations before the last one, within the budget, through MOVS's own
    bulk step (``ops.string``'s, as REP MOVS: one page at a time, either
    direction, overlaps element-exact, nothing on a page the TLB keeps out
    of bulk access — decoded code, watched data — and a #PF of the first
    element raised as the MOVS's).  The flags are left as the last of those
    iterations' CMP ``a, b`` leaves them; the last iteration and anything
    the bulk step declines run element by element."""
    shift = size.bit_length() - 1
    return ["if not cpu.attention:",
            "    back = cpu.eflags & 0x400",
            f"    c = (regs[{index}] - regs[{end}] if back else regs[{end}] - regs[{index}]) & 0xFFFFFFFF",
            # (not a whole number of elements away: the loop has no end, and any count is right)
            f"    c = min((c >> {shift}) - 1, (cpu.stop_at - cpu.icount) // 3 - 1)",
            "    if c > 0:",
            f"        cpu.eip = {eip:#x}",
            f"        c = {bulk}(cpu, {d}, regs[6], regs[7], c, back, 0xFFFFFFFF)",
            "        if c:",
            f"            nb = -c * {size} if back else c * {size}",
            "            regs[6] = (regs[6] + nb) & 0xFFFFFFFF",
            "            regs[7] = (regs[7] + nb) & 0xFFFFFFFF",
            "            cpu.icount += 3 * c",
            f"            cpu.lf_op = {lf.SUB << 2 | 2}",
            f"            cpu.lf_a = regs[{a}]",
            f"            cpu.lf_b = regs[{b}]",
            f"            cpu.lf_res = (regs[{a}] - regs[{b}]) & 0xFFFFFFFF"]


def _compile(em: _Unit, insns: list, loop: bool, n: int):
    regs_used = sorted(em.used)
    if em.flat and regs_used:
        load = ", ".join(f"r{r}" for r in range(8)) + " = regs" if len(regs_used) > 2 else \
            "; ".join(f"r{r} = regs[{r}]" for r in regs_used)
        store = "; ".join(f"regs[{r}] = r{r}" for r in regs_used)
    else:
        load = store = "pass"
    body = []
    for line in em.out:
        stripped = line.strip()
        pad = line[:len(line) - len(line.lstrip())]
        if stripped == "SYNC_OUT":
            if store != "pass":
                body.append(pad + store)
        elif stripped == "SYNC_IN":
            if load != "pass":
                body.append(pad + load)
        else:
            body.append(line)
    eips = tuple(d.eip for d in insns)
    em.consts["eips"] = eips
    head = ["regs = cpu.regs", "ram = cpu.ram", "tlb_r = cpu.tlb_r", "tlb_w = cpu.tlb_w", "k = 0"]
    if em.flat:
        head.append("ab = None")      # the slow path last taken (see ``abort_check``)
    for view in ("m16", "m32"):
        if any(view + "[" in line for line in body):
            head.append(f"{view} = cpu.ram{view[1:]}")
    if load != "pass":
        head.append(load)
    lines = ["try:"] + ["    " + x for x in (["while True:"] if loop else [])] + \
        ["    " + x for x in body] + \
        ["except Leave as x:",
         f"    {store}",
         "    cpu.icount += x.n",
         "    cpu.eip = x.eip",
         "    return None",
         "except CpuFault:",
         "    if k >= 0:",
         f"        {store}",
         "    else:",
         "        k = ~k",
         "    cpu.eip = eips[k]",
         "    cpu.icount += k",
         "    raise"]
    params = ", ".join(f"{k}={k}" for k in em.consts)
    src = f"def tb(cpu, {params}):\n" + "".join(f"    {line}\n" for line in head + lines)
    ns = dict(em.consts)
    exec(codecache.compile_unit(src, f"<tb {insns[0].eip:#x}>"), ns)
    fn = ns["tb"]
    fn.source = src
    return fn
