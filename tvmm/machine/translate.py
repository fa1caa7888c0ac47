"""Basic-block translation: a hot decoded block becomes one Python function.

The interpreter runs a block as ``for insn: cpu.eip = insn.next;
insn.fn(cpu, insn)``.  Once a block has run ``HOT`` times, this module writes
Python source for the whole block and compiles it:

- instructions with a source template (the ALU/MOV family, INC/DEC, LEA,
  NOP, and the branch that ends the block) are inlined, with register numbers,
  immediates and effective-address closures turned into constants;
- every other instruction becomes a direct call of its handler, exactly as the
  interpreter would make it;
- a lazy-flag record is dropped when a later instruction of the block
  overwrites the flags before anything can read them — including a fault
  handler, so no instruction that can fault may sit in between;
- a conditional branch tests the result of the instruction that set the flags
  directly when that instruction is in the block.

Contract with the run loop (``CPU._run``):
- ``fn(cpu)`` runs the whole block and leaves ``cpu.eip`` at the next
  instruction to execute; it is used only when the budget allows the whole
  block and no single-stepping is in force.
- Before every instruction that can fault or calls a handler, ``cpu.eip`` is
  set to that instruction's ``next``, so on a ``CpuFault`` the loop finds the
  faulting instruction the same way it does for interpreted blocks.
- After any instruction that may store to memory, the function returns early
  if ``cpu.block_abort`` is set (a store hit decoded code, or a data
  breakpoint fired): the rest of the block is stale or must not run.
- The function adds the instructions it retired to ``cpu.icount`` itself.
  A block that branches back to its own start loops inside the function
  while the budget allows a whole iteration and ``cpu.attention`` is clear.
"""

from __future__ import annotations

from . import flags as lf
from .flags import get_cf

HOT = 8                 # executions before a block is translated
_NONFAULT = frozenset({"rmr", "reg", "acc", "imm", "z"})


# Block endings that keep CS, CPL and the paging mode: a block ending so may
# hand its successor straight to the run loop (see ``Block.links``).
LINKABLE = frozenset({"JMP", "CALL", "RET", "LOOP", "LOOPZ", "LOOPNZ", "JCXZ"}
                     | {"J" + cc for cc in ("O", "NO", "B", "NB", "Z", "NZ", "BE", "NBE",
                                             "S", "NS", "P", "NP", "L", "NL", "LE", "NLE")})


class Block:
    """A decoded block in the cache: its instructions and, once hot, its code.

    ``links`` maps an EIP this block ended at to the translated block that
    starts there *on the same linear page*; the compiled function returns
    that block so the run loop can skip the lookup.  Same page means same
    physical page under the mapping the block itself was fetched through, and
    a write to the page drops every block on it, links included.
    """

    __slots__ = ("insns", "fn", "hits", "n", "links", "linkable")

    def __init__(self, insns: list):
        self.insns = insns
        self.fn = None
        self.hits = 0
        self.n = len(insns)
        self.links: dict = {}
        last = insns[-1]
        self.linkable = last.mnem in LINKABLE and last.spec != "Mp" or not last.ends


# Which Jcc conditions can be decided from the last inlined result alone.
_CC_FROM_RES = {"JZ": "res == 0", "JNZ": "res != 0"}


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


class _Emitter:
    """Collects the constants (handlers, decoded instructions, EA closures)
    a compiled block binds as default arguments."""

    def __init__(self):
        from .cpu import p16_into, p32_into, u16_from, u32_from
        self.consts: dict[str, object] = {"get_cf": get_cf, "u16": u16_from, "u32": u32_from,
                                          "p16": p16_into, "p32": p32_into}
        self.lines: list[str] = []

    def const(self, prefix: str, value) -> str:
        name = f"{prefix}{len(self.consts)}"
        self.consts[name] = value
        return name


_U = {1: None, 2: "u16", 4: "u32"}
_P = {1: None, 2: "p16", 4: "p32"}
_EDGE = {1: None, 2: "lin & 0xFFF != 0xFFF", 4: "lin & 0xFFF <= 0xFFC"}


def _inline_rd(size: int) -> str:
    """A read through the TLB, falling back to the slow path (same as cpu.rdN)."""
    if size == 1:
        return "(ram[lin + t] if (t := tlb_r[lin >> 12]) is not None else cpu._rd_slow(lin, 1))"
    return (f"({_U[size]}(ram, lin + t)[0] if (t := tlb_r[lin >> 12]) is not None and {_EDGE[size]} "
            f"else cpu._rd_slow(lin, {size}))")


def _inline_wr(size: int, v: str) -> list[str]:
    if size == 1:
        return ["t = tlb_w[lin >> 12]", f"if t is not None: ram[lin + t] = {v}",
                f"else: cpu._wr_slow(lin, 1, {v})"]
    return ["t = tlb_w[lin >> 12]", f"if t is not None and {_EDGE[size]}: {_P[size]}(ram, lin + t, {v})",
            f"else: cpu._wr_slow(lin, {size}, {v})"]


def _plan(d):
    """Classify one instruction: (kind, info) where kind is 'alu', 'incdec',
    'lea', 'nop', 'jmp', 'jcc' or 'call'."""
    m = d.mnem
    if m in ("INC", "DEC") and d.spec == "Zv":
        return "incdec", None
    if m == "LEA":
        return "lea", None
    if m == "NOP":
        return "nop", None
    if m == "JMP" and d.spec in ("Jb", "Jz"):
        return "jmp", None
    if m.startswith("J") and d.spec in ("Jb", "Jz") and m not in ("JCXZ", "JMP"):
        return "jcc", None
    form = _alu_form(d)
    if form is not None:
        return "alu", form
    if m in ("SHL", "SHR", "SAR") and d.rm >= 0 and d.spec in ("Eb,Ib", "Ev,Ib", "Eb,1", "Ev,1"):
        from .ops import shift
        size = 1 if d.spec[1] == "b" else d.osz
        count = 1 if d.spec.endswith(",1") else d.imm
        emitted = shift.emit_shift_reg_imm(m, size, d.rm, count)
        if emitted is not None:
            return "shift", emitted
    if d.osz == 4:
        if m == "PUSH" and d.spec == "Zv":
            return "push", None
        if m == "POP" and d.spec == "Zv":
            return "pop", None
        if m == "CALL" and d.spec == "Jz":
            return "callrel", None
        if m == "RET" and d.spec == "":
            return "ret", None
    return "handler", None


# CF of the last inlined flag-setter, as an expression over its locals.
_CF_EXPR = {"ADD": "(1 if res < a else 0)", "SUB": "(1 if a < b else 0)", "CMP": "(1 if a < b else 0)",
            "AND": "0", "OR": "0", "XOR": "0", "TEST": "0", "INC": "b", "DEC": "b"}


def _classify(insns, plans):
    """Per instruction: (writes all flags, reads flags, may fault, may store,
    CF expression known statically or None)."""
    rows = []
    cf_expr = None          # CF of the latest inlined flag writer, from locals
    for d, (kind, info) in zip(insns, plans):
        known = None
        if kind == "alu":
            dst, src, _size = info
            mem = "rmm" in (dst, src)
            row = [d.mnem != "MOV", d.mnem in ("ADC", "SBB"), mem,
                   mem and dst == "rmm" and d.mnem not in ("CMP", "TEST")]
            if d.mnem != "MOV":
                cf_expr = _CF_EXPR.get(d.mnem)
        elif kind == "incdec":
            known = cf_expr
            row = [True, known is None, False, False]
            cf_expr = "b"
        elif kind == "shift":
            row = [True, False, False, False]
            cf_expr = None
        elif kind in ("lea", "nop"):
            row = [False, False, False, False]
        elif kind in ("jmp", "jcc"):
            row = [False, kind == "jcc", True, False]
        elif kind in ("push", "pop", "callrel", "ret"):
            row = [False, False, True, kind in ("push", "callrel")]
        else:
            row = [False, True, True, True]
            cf_expr = None
        rows.append((*row, known))
    return rows


def translate(insns: list, code32: bool, links: dict | None = None):
    """Compile a block; returns ``fn(cpu) -> Block | None`` (see the module docstring)."""
    from .ops import alu
    em = _Emitter()
    em.consts["links"] = links if links is not None else {}
    last = insns[-1]
    ret = "return links.get(cpu.eip)" if (last.mnem in LINKABLE or not last.ends) else "return None"
    plans = [_plan(d) for d in insns]
    n = len(insns)
    rows = _classify(insns, plans)
    writes = [r[0] for r in rows]
    reads = [r[1] for r in rows]
    faults = [r[2] for r in rows]
    stores = [r[3] for r in rows]

    def flags_dead(i: int) -> bool:
        for j in range(i + 1, n):
            if reads[j] or faults[j]:
                return False
            if writes[j]:
                return True
        return False

    loop = plans[-1][0] in ("jcc", "jmp") and last.imm == insns[0].eip and n > 1
    ind = "    " if loop else ""
    out = ["regs = cpu.regs", "ram = cpu.ram", "tlb_r = cpu.tlb_r", "tlb_w = cpu.tlb_w"]
    if loop:
        out.append("while True:")
    res_valid = False      # the local ``res`` holds the result the flags describe

    def emit(lines):
        out.extend(ind + line for line in lines)

    def abort_check(i):
        emit(["if cpu.block_abort:", f"    cpu.icount += {i + 1}", "    return"])

    for i, (d, (kind, info)) in enumerate(zip(insns, plans)):
        ops = {"rm": str(d.rm), "reg": str(d.reg), "imm": hex(d.imm) if isinstance(d.imm, int) else "0"}
        if kind == "alu":
            dst, src, size = info
            if "rmm" in (dst, src):
                ops["ea"] = em.const("ea", d.ea) + "(cpu)"
                ops["eaw"] = em.const("eaw", d.eaw) + "(cpu)"
                ops["rd"] = _inline_rd
                ops["wr"] = _inline_wr
                emit([f"cpu.eip = {d.next:#x}"])
            body, flag_lines = alu.emit_binary(d.mnem, size, dst, src, ops)
            emit(body)
            if flag_lines:
                res_valid = True
                if not flags_dead(i):
                    emit(flag_lines)
            if stores[i]:
                abort_check(i)
        elif kind == "incdec":
            delta = "+ 1" if d.mnem == "INC" else "- 1"
            kind_code = (lf.INC if d.mnem == "INC" else lf.DEC) << 2
            cf = rows[i][4] or "get_cf(cpu)"
            if d.osz == 4:
                emit([f"b = {cf}", f"res = regs[{d.reg}] = (regs[{d.reg}] {delta}) & 0xFFFFFFFF"])
                kind_code |= 2
            else:
                emit([f"b = {cf}", f"res = (regs[{d.reg}] {delta}) & 0xFFFF",
                      f"regs[{d.reg}] = (regs[{d.reg}] & 0xFFFF0000) | res"])
                kind_code |= 1
            res_valid = True
            if not flags_dead(i):
                emit([f"cpu.lf_op = {kind_code}", "cpu.lf_b = b", "cpu.lf_res = res"])
        elif kind == "shift":
            body, flag_lines = info
            emit(body)
            res_valid = True
            if not flags_dead(i):
                emit(flag_lines)
        elif kind in ("push", "callrel"):
            # 32-bit push through the TLB when SS is a 32-bit stack and the slot
            # is inside its limits; anything else goes to the handler.
            h, dd = em.const("h", d.fn), em.const("d", d)
            value = f"regs[{d.reg}]" if kind == "push" else f"{d.next:#x}"
            guard = "cpu.stack32 and cpu.seg_lo[2] <= sp <= cpu.seg_whi[2] - 3"
            if kind == "callrel":
                guard += f" and {d.imm:#x} <= cpu.seg_hi[1]"
            emit([f"cpu.eip = {d.next:#x}",
                  "sp = (regs[4] - 4) & 0xFFFFFFFF",
                  f"if {guard}:",
                  "    lin = (cpu.seg_base[2] + sp) & 0xFFFFFFFF"]
                 + ["    " + line for line in _inline_wr(4, value)]
                 + ["    regs[4] = sp"]
                 + ([f"    cpu.eip = {d.imm:#x}"] if kind == "callrel" else [])
                 + ["else:", f"    {h}(cpu, {dd})"])
            if kind == "push" and i + 1 < n:
                abort_check(i)
            if kind == "callrel":
                emit([f"cpu.icount += {n}"])
        elif kind in ("pop", "ret"):
            h, dd = em.const("h", d.fn), em.const("d", d)
            emit([f"cpu.eip = {d.next:#x}",
                  "sp = regs[4]",
                  "if cpu.stack32 and cpu.seg_lo[2] <= sp <= cpu.seg_hi[2] - 3:",
                  "    lin = (cpu.seg_base[2] + sp) & 0xFFFFFFFF",
                  f"    v = {_inline_rd(4)}"])
            if kind == "pop":
                emit(["    regs[4] = (sp + 4) & 0xFFFFFFFF", f"    regs[{d.reg}] = v",
                      "else:", f"    {h}(cpu, {dd})"])
            else:
                emit(["    if v <= cpu.seg_hi[1]:",
                      "        regs[4] = (sp + 4) & 0xFFFFFFFF",
                      "        cpu.eip = v",
                      "    else:",
                      f"        {h}(cpu, {dd})",
                      "else:", f"    {h}(cpu, {dd})",
                      f"cpu.icount += {n}"])
        elif kind == "lea":
            eoff = em.const("eoff", d.eoff)
            if d.osz == 4:
                emit([f"regs[{d.reg}] = {eoff}(cpu)"])
            else:
                emit([f"regs[{d.reg}] = (regs[{d.reg}] & 0xFFFF0000) | ({eoff}(cpu) & 0xFFFF)"])
        elif kind == "nop":
            pass
        elif kind in ("jmp", "jcc"):
            h, dd = em.const("h", d.fn), em.const("d", d)
            cond = "True" if kind == "jmp" else (_CC_FROM_RES.get(d.mnem) if res_valid else None)
            budget = f"cpu.attention or cpu.stop_at - cpu.icount < {n}"
            emit([f"cpu.eip = {d.next:#x}"])
            if cond is None:
                # The handler evaluates the condition (the flags are exact here).
                emit([f"{h}(cpu, {dd})", f"cpu.icount += {n}"])
                if loop:
                    emit([f"if cpu.eip != {insns[0].eip:#x} or {budget}:", f"    {ret}"])
            elif loop:
                emit([f"if {cond}:",
                      f"    if {d.imm:#x} <= cpu.seg_hi[1]:",
                      f"        cpu.icount += {n}",
                      f"        if {budget}:",
                      f"            cpu.eip = {d.imm:#x}",
                      f"            {ret}",
                      "        continue",
                      f"    {h}(cpu, {dd})      # target past the CS limit: #GP",
                      f"cpu.icount += {n}",
                      ret])
            else:
                emit([f"if {cond}:",
                      f"    if {d.imm:#x} <= cpu.seg_hi[1]:",
                      f"        cpu.eip = {d.imm:#x}",
                      "    else:",
                      f"        {h}(cpu, {dd})  # target past the CS limit: #GP",
                      f"cpu.icount += {n}"])
        else:
            h, dd = em.const("h", d.fn), em.const("d", d)
            emit([f"cpu.eip = {d.next:#x}", f"{h}(cpu, {dd})"])
            res_valid = False
            if i + 1 < n:
                if stores[i]:
                    abort_check(i)
            else:
                emit([f"cpu.icount += {n}"])
    if plans[-1][0] not in ("jmp", "jcc", "handler", "callrel", "ret"):
        emit([f"cpu.eip = {last.next:#x}", f"cpu.icount += {n}"])
    out.append(ret)
    params = ", ".join(f"{k}={k}" for k in em.consts)
    src = f"def tb(cpu, {params}):\n" + "".join(f"    {line}\n" for line in out)
    ns = dict(em.consts)
    exec(compile(src, f"<tb {insns[0].eip:#x}>", "exec"), ns)
    fn = ns["tb"]
    fn.source = src
    return fn
