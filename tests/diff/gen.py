"""Table-driven hypothesis strategies for the differential tests.

One table row per opcode form, in the SDM's notation (vol. 2 opcode column and
appendix A.2 operand notation), e.g. ``Row("ADD", "01", "Ev,Gv", "L")``.  From
a row the generator builds an encoding with random prefixes (0x66 operand
size, 0x67 address size, segment overrides, LOCK, REP/REPE/REPNE), a random
ModRM/SIB/displacement (every mod/rm, every SIB base/index/scale including
index=100 and base=101 with mod=00, the eight 16-bit forms with disp8/disp16),
random immediates, and an initial register file / data page that keeps every
memory access inside the data page (or the stack page) in both engines.

Opcode column:   "01"  "80 /0" (ModRM.reg fixed)  "0F AF"  "B8+r" (register in
                 the low three bits)
Operand column:  E G M (ModRM r/m, reg, memory-only r/m), I (immediate; "Ibs"
                 is a byte sign-extended to the operand size), J (relative
                 target), O (moffs), X/Y (DS:eSI / ES:eDI), Z (register in the
                 opcode), fixed registers by name (AL, eAX, CL) and 1.
                 Sizes: b byte, w word, d dword, v word/dword by operand
                 size, z like v for immediates, q qword, a bound pair.
Attributes:      L  LOCK is valid with a memory destination
                 R  REP (F3) is valid (MOVS, STOS, LODS)
                 C  REPE/REPNE (F3/F2) are valid (CMPS, SCAS)

Snippets are short sequences (each group's length range in ``FAMILIES``) so
that flag state flows between instructions (tvmm evaluates flags lazily).
The generator tracks statically, instruction by instruction:

* the register file: a register is *free* (initial value not chosen yet),
  *known* (pinned initial value, or a value the generator can compute, e.g.
  ESP after a push or ESI after MOVSB), or *unknown* (written by an earlier
  instruction).  Registers that form an address, a CL shift count, a BT bit
  offset, a string pointer/count or a loop counter must be free or known; a
  free one is solved for so that the access lands in the data page (or the
  stack page for [eBP]/[eSP]-based forms).  In 16-bit addressing only the low
  16 bits are solved; the upper halves are random and must not matter;
* the EFLAGS bits currently undefined (``UNDEFINED_FLAGS``, ``shift_flags``):
  an instruction that would read one (DAA after AND reads AF, RCL after SHL by
  >= the operand size reads CF, LAHF/PUSHF/SETcc after MUL, ...) is not
  generated, and the snippet's ``flags_mask`` clears the flags that are
  undefined at the end -- or at any instruction that may fault, since a fault
  ends the snippet with the flags of that moment.  A few flags that unicorn
  computes wrongly are treated the same way (``Ctx.unicorn_bug``, README).

Destination registers the SDM leaves undefined are never produced: SHLD/SHRD
with a 16-bit operand and a masked count > 16 are not generated, BSWAP is only
generated with a 32-bit operand.  BSF/BSR with a zero source leave the
destination unchanged on Intel hardware and in unicorn (AMD documents it), so
that case *is* generated and compared.

Entry points: ``generate(seed, family, group, mode)`` builds one snippet
deterministically from an integer seed; ``snippets(family, group, mode)`` is
the hypothesis strategy (one drawn seed per example).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from hypothesis import strategies as st

from .snippet import (AF, CF, CODE_BASE, DATA_BASE, DF, OF, PAGE, PF, SF, STACK_BASE, STACK_TOP, ZF,
                      Snippet)

ARITH = CF | PF | AF | ZF | SF | OF
EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)
REG_NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
DATA_END = DATA_BASE + PAGE
STACK_END = STACK_BASE + PAGE

CC = ("O", "NO", "B", "NB", "Z", "NZ", "BE", "NBE", "S", "NS", "P", "NP", "L", "NL", "LE", "NLE")
CC_READS = (OF, OF, CF, CF, ZF, ZF, CF | ZF, CF | ZF, SF, SF, PF, PF, SF | OF, SF | OF,
            ZF | SF | OF, ZF | SF | OF)

EDGES32 = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
           0x80000000, 0xFFFFFFFF, 0xFFFFFFFE, 0x80000001, 0xFFFF8000, 0xFFFFFF80, 0x7FFFFF7F)
EDGE_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, 0x81)


# --------------------------------------------------------------------------
# Undefined flags (Intel SDM vol. 2, "Flags Affected" of each instruction)
# --------------------------------------------------------------------------

UNDEFINED_FLAGS = {
    # AND/OR/XOR/TEST: "The OF and CF flags are cleared; the SF, ZF, and PF flags
    # are set according to the result. The state of the AF flag is undefined."
    "AND": AF, "OR": AF, "XOR": AF, "TEST": AF,
    # MUL: "The OF and CF flags are set to 0 if the upper half of the result is 0;
    # otherwise, they are set to 1. The SF, ZF, AF, and PF flags are undefined."
    "MUL": SF | ZF | AF | PF,
    # IMUL (all three forms): "The SF, ZF, AF, and PF flags are undefined."
    "IMUL": SF | ZF | AF | PF,
    # DIV/IDIV: "The CF, OF, SF, ZF, AF, and PF flags are undefined."
    "DIV": ARITH, "IDIV": ARITH,
    # DAA/DAS: "The OF flag is undefined."
    "DAA": OF, "DAS": OF,
    # AAA/AAS: "The OF, SF, ZF, and PF flags are undefined."
    "AAA": OF | SF | ZF | PF, "AAS": OF | SF | ZF | PF,
    # AAM/AAD: "The OF, AF, and CF flags are undefined."
    "AAM": OF | AF | CF, "AAD": OF | AF | CF,
    # BT/BTS/BTR/BTC: "The ZF flag is unaffected. The OF, SF, AF, and PF flags
    # are undefined."
    "BT": OF | SF | AF | PF, "BTS": OF | SF | AF | PF, "BTR": OF | SF | AF | PF, "BTC": OF | SF | AF | PF,
    # BSF/BSR: "The CF, OF, SF, AF, and PF flags are undefined."
    "BSF": CF | OF | SF | AF | PF, "BSR": CF | OF | SF | AF | PF,
    # SAL/SAR/SHL/SHR: "For a non-zero count, the AF flag is undefined"; OF is
    # undefined unless the count is 1; CF is undefined for SHL and SHR when the
    # count >= the operand size.  Count 0: no flag is affected.  -> per snippet,
    # see shift_flags().
    "SHL": AF | OF | CF, "SHR": AF | OF | CF, "SAR": AF | OF,
    # ROL/ROR/RCL/RCR: "the OF flag is defined only for the 1-bit rotates; it is
    # undefined in all other cases"; a zero (masked) count affects no flag.
    "ROL": OF, "ROR": OF, "RCL": OF, "RCR": OF,
    # SHLD/SHRD: "For a 1-bit shift, the OF flag is set if a sign change
    # occurred; ... for shifts greater than 1 bit, the OF flag is undefined.
    # If a shift occurs, the AF flag is undefined. ... If the count is greater
    # than the operand size, the flags are undefined" (not generated).
    "SHLD": AF | OF, "SHRD": AF | OF,
}

# Flags read (R) and written (W) by each mnemonic (defined or not).
_FLAGS_RW = {
    "ADD": (0, ARITH), "SUB": (0, ARITH), "CMP": (0, ARITH), "NEG": (0, ARITH),
    "ADC": (CF, ARITH), "SBB": (CF, ARITH), "XADD": (0, ARITH), "CMPXCHG": (0, ARITH),
    "AND": (0, ARITH), "OR": (0, ARITH), "XOR": (0, ARITH), "TEST": (0, ARITH),
    "INC": (0, ARITH & ~CF), "DEC": (0, ARITH & ~CF),
    "MUL": (0, ARITH), "IMUL": (0, ARITH), "DIV": (0, ARITH), "IDIV": (0, ARITH),
    "DAA": (AF | CF, ARITH), "DAS": (AF | CF, ARITH), "AAA": (AF, ARITH), "AAS": (AF, ARITH),
    "AAM": (0, ARITH), "AAD": (0, ARITH),
    "BT": (0, CF | OF | SF | AF | PF), "BTS": (0, CF | OF | SF | AF | PF),
    "BTR": (0, CF | OF | SF | AF | PF), "BTC": (0, CF | OF | SF | AF | PF),
    "BSF": (0, ARITH), "BSR": (0, ARITH), "CMPXCHG8B": (0, ZF),
    "LAHF": (SF | ZF | AF | PF | CF, 0), "SAHF": (0, SF | ZF | AF | PF | CF),
    "CLC": (0, CF), "STC": (0, CF), "CMC": (CF, CF), "CLD": (0, DF), "STD": (0, DF),
    "SALC": (CF, 0), "INTO": (OF, 0), "PUSHF": (ARITH | DF, 0), "POPF": (0, ARITH | DF),
    "CMPS": (DF, ARITH), "SCAS": (DF, ARITH), "MOVS": (DF, 0), "STOS": (DF, 0), "LODS": (DF, 0),
    "LOOPE": (ZF, 0), "LOOPNE": (ZF, 0),
}
for _i, _c in enumerate(CC):
    _FLAGS_RW["J" + _c] = (CC_READS[_i], 0)
    _FLAGS_RW["SET" + _c] = (CC_READS[_i], 0)
    _FLAGS_RW["CMOV" + _c] = (CC_READS[_i], 0)


def shift_flags(mnem: str, bits: int, count: int) -> tuple[int, int, int]:
    """(read, written, undefined) flags of a shift/rotate with ``count`` (SDM)."""
    c = count & 0x1F
    if c == 0:
        return 0, 0, 0                       # "If the count is 0, the flags are not affected"
    und = 0 if c == 1 else OF
    if mnem in ("SHL", "SHR", "SAR"):
        und |= AF
        if mnem != "SAR" and c >= bits:
            und |= CF
        return 0, ARITH, und
    if mnem in ("ROL", "ROR"):
        return 0, CF | OF, und
    if mnem in ("RCL", "RCR"):
        t = c % (bits + 1) if bits < 32 else c
        return CF, OF | (CF if t else 0), und
    if mnem in ("SHLD", "SHRD"):
        assert c <= bits, "count > operand size: flags and result undefined (not generated)"
        return 0, ARITH, und | AF
    raise KeyError(mnem)


def flag_effect(mnem: str) -> tuple[int, int, int]:
    r, w = _FLAGS_RW.get(mnem, (0, 0))
    return r, w, UNDEFINED_FLAGS.get(mnem, 0) & w


# --------------------------------------------------------------------------
# The opcode table
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    mnem: str
    opcode: str
    operands: str = ""
    attrs: str = ""

    def __str__(self):
        return f"{self.mnem} {self.opcode} {self.operands}".strip()


@dataclass(frozen=True)
class Parsed:
    opbytes: bytes
    digit: int | None
    plus_r: bool
    ops: tuple
    modrm: bool


@functools.lru_cache(maxsize=None)
def parse(row: Row) -> Parsed:
    toks = row.opcode.split()
    ob, digit, plus_r = [], None, False
    for t in toks:
        if t.startswith("/"):
            digit = int(t[1:])
        elif t.endswith("+r"):
            ob.append(int(t[:-2], 16))
            plus_r = True
        else:
            ob.append(int(t, 16))
    ops = tuple(o for o in row.operands.split(",") if o)
    modrm = digit is not None or any(o[0] in "EGM" for o in ops)
    return Parsed(bytes(ob), digit, plus_r, ops, modrm)


ALU = ("ADD", "OR", "ADC", "SBB", "AND", "SUB", "XOR", "CMP")
SHIFTS = ("ROL", "ROR", "RCL", "RCR", "SHL", "SHR", "SHL", "SAR")   # /6: undocumented SAL alias


def _alu_rows():
    rows = []
    for i, m in enumerate(ALU):
        lk = "" if m == "CMP" else "L"
        b = i * 8
        rows += [Row(m, f"{b:02X}", "Eb,Gb", lk), Row(m, f"{b + 1:02X}", "Ev,Gv", lk),
                 Row(m, f"{b + 2:02X}", "Gb,Eb"), Row(m, f"{b + 3:02X}", "Gv,Ev"),
                 Row(m, f"{b + 4:02X}", "AL,Ib"), Row(m, f"{b + 5:02X}", "eAX,Iz"),
                 Row(m, f"80 /{i}", "Eb,Ib", lk), Row(m, f"81 /{i}", "Ev,Iz", lk),
                 Row(m, f"82 /{i}", "Eb,Ib", lk), Row(m, f"83 /{i}", "Ev,Ibs", lk)]
    return rows


ALU_ROWS = _alu_rows()
INCDEC_ROWS = [Row("INC", "40+r", "Zv"), Row("DEC", "48+r", "Zv"),
               Row("INC", "FE /0", "Eb", "L"), Row("DEC", "FE /1", "Eb", "L"),
               Row("INC", "FF /0", "Ev", "L"), Row("DEC", "FF /1", "Ev", "L")]
TEST_ROWS = [Row("TEST", "84", "Eb,Gb"), Row("TEST", "85", "Ev,Gv"), Row("TEST", "A8", "AL,Ib"),
             Row("TEST", "A9", "eAX,Iz"), Row("TEST", "F6 /0", "Eb,Ib"), Row("TEST", "F7 /0", "Ev,Iz")]
NOTNEG_ROWS = [Row("NOT", "F6 /2", "Eb", "L"), Row("NOT", "F7 /2", "Ev", "L"),
               Row("NEG", "F6 /3", "Eb", "L"), Row("NEG", "F7 /3", "Ev", "L")]
XCHGOP_ROWS = [Row("XADD", "0F C0", "Eb,Gb", "L"), Row("XADD", "0F C1", "Ev,Gv", "L"),
               Row("CMPXCHG", "0F B0", "Eb,Gb", "L"), Row("CMPXCHG", "0F B1", "Ev,Gv", "L"),
               Row("CMPXCHG8B", "0F C7 /1", "Mq", "L")]
MULDIV_ROWS = [Row("MUL", "F6 /4", "Eb"), Row("MUL", "F7 /4", "Ev"),
               Row("IMUL", "F6 /5", "Eb"), Row("IMUL", "F7 /5", "Ev"),
               Row("DIV", "F6 /6", "Eb"), Row("DIV", "F7 /6", "Ev"),
               Row("IDIV", "F6 /7", "Eb"), Row("IDIV", "F7 /7", "Ev"),
               Row("IMUL", "0F AF", "Gv,Ev"), Row("IMUL", "69", "Gv,Ev,Iz"), Row("IMUL", "6B", "Gv,Ev,Ibs")]
SHIFT_ROWS = [Row(m, f"{op} /{i}", f"{dst},{cnt}")
              for i, m in enumerate(SHIFTS)
              for op, dst, cnt in (("C0", "Eb", "Ib"), ("C1", "Ev", "Ib"), ("D0", "Eb", "1"),
                                   ("D1", "Ev", "1"), ("D2", "Eb", "CL"), ("D3", "Ev", "CL"))]
SHXD_ROWS = [Row("SHLD", "0F A4", "Ev,Gv,Ib"), Row("SHLD", "0F A5", "Ev,Gv,CL"),
             Row("SHRD", "0F AC", "Ev,Gv,Ib"), Row("SHRD", "0F AD", "Ev,Gv,CL")]
BCD_ROWS = [Row("DAA", "27"), Row("DAS", "2F"), Row("AAA", "37"), Row("AAS", "3F"),
            Row("AAM", "D4", "Ib"), Row("AAD", "D5", "Ib")]
BT_ROWS = [Row("BT", "0F A3", "Ev,Gv"), Row("BTS", "0F AB", "Ev,Gv", "L"),
           Row("BTR", "0F B3", "Ev,Gv", "L"), Row("BTC", "0F BB", "Ev,Gv", "L"),
           Row("BT", "0F BA /4", "Ev,Ib"), Row("BTS", "0F BA /5", "Ev,Ib", "L"),
           Row("BTR", "0F BA /6", "Ev,Ib", "L"), Row("BTC", "0F BA /7", "Ev,Ib", "L")]
BSX_ROWS = [Row("BSF", "0F BC", "Gv,Ev"), Row("BSR", "0F BD", "Gv,Ev"), Row("BSWAP", "0F C8+r", "Zd")]
# SETcc: the SDM gives no /digit; ModRM.reg is not used -- generated as 0 (AMD: "0F 9x /0").
SETCC_ROWS = [Row("SET" + c, f"0F {0x90 + i:02X} /0", "Eb") for i, c in enumerate(CC)]
CMOV_ROWS = [Row("CMOV" + c, f"0F {0x40 + i:02X}", "Gv,Ev") for i, c in enumerate(CC)]
MOV_ROWS = [Row("MOV", "88", "Eb,Gb"), Row("MOV", "89", "Ev,Gv"), Row("MOV", "8A", "Gb,Eb"),
            Row("MOV", "8B", "Gv,Ev"), Row("MOV", "A0", "AL,Ob"), Row("MOV", "A1", "eAX,Ov"),
            Row("MOV", "A2", "Ob,AL"), Row("MOV", "A3", "Ov,eAX"), Row("MOV", "B0+r", "Zb,Ib"),
            Row("MOV", "B8+r", "Zv,Iv"), Row("MOV", "C6 /0", "Eb,Ib"), Row("MOV", "C7 /0", "Ev,Iz")]
LEA_XCHG_ROWS = [Row("LEA", "8D", "Gv,M"), Row("XCHG", "86", "Eb,Gb", "L"), Row("XCHG", "87", "Ev,Gv", "L"),
                 Row("XCHG", "90+r", "Zv,eAX")]          # 91..97 (90 itself is NOP)
EXT_ROWS = [Row("MOVZX", "0F B6", "Gv,Eb"), Row("MOVZX", "0F B7", "Gv,Ew"),
            Row("MOVSX", "0F BE", "Gv,Eb"), Row("MOVSX", "0F BF", "Gv,Ew"),
            Row("CBW", "98"), Row("CWD", "99"), Row("XLAT", "D7")]
JCC_ROWS = ([Row("J" + c, f"{0x70 + i:02X}", "Jb") for i, c in enumerate(CC)]
            + [Row("J" + c, f"0F {0x80 + i:02X}", "Jz") for i, c in enumerate(CC)])
JMP_ROWS = [Row("JMP", "EB", "Jb"), Row("JMP", "E9", "Jz"), Row("JMP", "FF /4", "Ev")]
LOOP_ROWS = [Row("LOOPNE", "E0", "Jb"), Row("LOOPE", "E1", "Jb"), Row("LOOP", "E2", "Jb"),
             Row("JCXZ", "E3", "Jb"), Row("JNZ", "75", "Jb", "B")]   # B: "dec ecx; jnz" backward loop
CALL_ROWS = [Row("CALL", "E8", "Jz"), Row("CALL", "FF /2", "Ev"), Row("RET", "C3"), Row("RET", "C2", "Iw")]
STACK_ROWS = [Row("PUSH", "50+r", "Zv"), Row("POP", "58+r", "Zv"), Row("PUSH", "68", "Iz"),
              Row("PUSH", "6A", "Ibs"), Row("PUSH", "FF /6", "Ev"), Row("POP", "8F /0", "Ev"),
              Row("PUSHA", "60"), Row("POPA", "61")]
FLAGSTACK_ROWS = [Row("PUSHF", "9C"), Row("POPF", "9D")]
FRAME_ROWS = [Row("ENTER", "C8", "Iw,Ib"), Row("LEAVE", "C9")]
STRING_ROWS = [Row("MOVS", "A4", "Yb,Xb", "R"), Row("MOVS", "A5", "Yv,Xv", "R"),
               Row("CMPS", "A6", "Xb,Yb", "C"), Row("CMPS", "A7", "Xv,Yv", "C"),
               Row("STOS", "AA", "Yb,AL", "R"), Row("STOS", "AB", "Yv,eAX", "R"),
               Row("LODS", "AC", "AL,Xb", "R"), Row("LODS", "AD", "eAX,Xv", "R"),
               Row("SCAS", "AE", "AL,Yb", "C"), Row("SCAS", "AF", "eAX,Yv", "C")]
FLAGOP_ROWS = [Row("LAHF", "9F"), Row("SAHF", "9E"), Row("CLC", "F8"), Row("STC", "F9"),
               Row("CMC", "F5"), Row("CLD", "FC"), Row("STD", "FD"), Row("SALC", "D6")]
MISC_ROWS = [Row("NOP", "90"), Row("NOP", "0F 1F /0", "Ev"), Row("INT3", "CC"), Row("INTO", "CE"),
             Row("UD2", "0F 0B"), Row("BOUND", "62", "Gv,Ma")]

# Register-only ALU forms used as fillers inside control-flow templates.
FILLER_ROWS = [r for r in ALU_ROWS if r.operands in ("Ev,Gv", "Gv,Ev", "Eb,Gb", "AL,Ib")
               and r.mnem in ("ADD", "SUB", "XOR", "CMP", "OR")] + INCDEC_ROWS[:2]
SETTER_ROWS = [r for r in ALU_ROWS if r.mnem in ("ADD", "SUB", "CMP", "ADC", "SBB", "XOR", "AND")] \
    + INCDEC_ROWS + NOTNEG_ROWS[2:] + TEST_ROWS[:3]

# family -> group -> (rows, sequence length range, setter rows mixed in)
FAMILIES = {
    "alu": {
        "arith": (ALU_ROWS, (1, 4)),
        "incdec_neg_not": (INCDEC_ROWS + NOTNEG_ROWS + ALU_ROWS[:10], (1, 4)),
        "test": (TEST_ROWS + ALU_ROWS[40:50], (1, 3)),
        "xadd_cmpxchg": (XCHGOP_ROWS, (1, 3)),
    },
    "shift": {
        "shift": (SHIFT_ROWS, (1, 3)),
        "shld_shrd": (SHXD_ROWS, (1, 3)),
    },
    "muldiv": {
        "mul": (MULDIV_ROWS[:4] + MULDIV_ROWS[8:], (1, 3)),
        "div": (MULDIV_ROWS[4:8], (1, 2)),
    },
    "bcd": {
        "bcd": (BCD_ROWS * 4 + [r for r in ALU_ROWS if r.mnem in ("ADD", "ADC", "SUB", "SBB")
                                and r.operands.split(",")[0] in ("Eb", "Gb", "AL")], (1, 4)),
    },
    "bits": {
        "bt": (BT_ROWS, (1, 3)),
        "bsf_bsr_bswap": (BSX_ROWS, (1, 3)),
        "setcc": (SETCC_ROWS * 2 + SETTER_ROWS[:16], (1, 3)),
    },
    "moves": {
        "mov": (MOV_ROWS, (1, 4)),
        "lea_xchg": (LEA_XCHG_ROWS, (1, 4)),
        "ext_cbw_xlat": (EXT_ROWS, (1, 4)),
        "cmovcc": (CMOV_ROWS * 2 + SETTER_ROWS[:16], (1, 3)),
    },
    "control": {
        "jcc": (JCC_ROWS, (1, 2)),
        "jmp": (JMP_ROWS, (1, 2)),
        "loop": (LOOP_ROWS, (1, 2)),
        "call_ret": (CALL_ROWS, (1, 2)),
    },
    "stack": {
        "push_pop": (STACK_ROWS, (2, 6)),
        "pushf_popf": (FLAGSTACK_ROWS * 6 + STACK_ROWS[:4] + SETTER_ROWS[:8], (2, 5)),
        "enter_leave": (FRAME_ROWS * 4 + STACK_ROWS[:4], (1, 4)),
    },
    "string": {
        "movs_stos_lods": (STRING_ROWS[:2] + STRING_ROWS[4:8], (1, 2)),
        "cmps_scas": (STRING_ROWS[2:4] + STRING_ROWS[8:], (1, 2)),
    },
    "misc": {
        "flagops": (FLAGOP_ROWS * 4 + SETTER_ROWS[:24], (1, 4)),
        "nop_int_ud_bound": (MISC_ROWS + SETTER_ROWS[:10], (1, 3)),
        # every memory operand with a segment override (26 2E 36 3E 64 65), CS-override
        # writes included in real mode
        # cross-family sequences: lazy flags produced by one kind of instruction and
        # consumed by another (SHL then SETcc, BT then ADC, IMUL then JO-free CMOVcc, ...)
        "mix": (ALU_ROWS + INCDEC_ROWS + TEST_ROWS + NOTNEG_ROWS + XCHGOP_ROWS + MULDIV_ROWS + SHIFT_ROWS
                + SHXD_ROWS + BCD_ROWS + BT_ROWS + BSX_ROWS + SETCC_ROWS + CMOV_ROWS + MOV_ROWS
                + LEA_XCHG_ROWS + EXT_ROWS + FLAGOP_ROWS + MISC_ROWS, (2, 5)),
        "segovr": (MOV_ROWS[:4] + MOV_ROWS[10:] + ALU_ROWS[:10] + INCDEC_ROWS[2:] + [STRING_ROWS[i] for i in (0, 1, 2, 6)]
                   + EXT_ROWS[-1:], (1, 3)),
    },
}

ALL_ROWS = sorted({r for fam in FAMILIES.values() for rows, _ in fam.values() for r in rows},
                  key=lambda r: (r.opcode, r.mnem))


def groups(family: str) -> list[str]:
    return list(FAMILIES[family])


# --------------------------------------------------------------------------
# Generation context
# --------------------------------------------------------------------------

class Reject(Exception):
    """This instruction cannot be generated in the current state; draw another."""


FREE, UNKNOWN = "free", "unknown"


@dataclass(frozen=True)
class GenSnippet(Snippet):
    parts: tuple = ()              # (offset, length) of each top-level instruction, for reports
    rows: tuple = ()               # table rows emitted (coverage)
    faults: frozenset = frozenset()  # exception vectors the generator deliberately allows
    family: str = ""

    def __repr__(self):
        return f"<GenSnippet {self.label} code={self.code.hex()}>"


class Ctx:
    def __init__(self, rng: random.Random, mode: int, family: str):
        self.rng = rng
        self.mode = mode
        self.family = family
        self.state: list = [FREE] * 8
        self.init: dict[int, int] = {}
        self.mem: dict[int, int] = {}          # initial data-page bytes wished for
        self.mem_hard: set[int] = set()        # bytes whose initial value matters for safety
        self.mem_written: set[int] = set()     # bytes written by generated instructions
        self.undef = 0
        self.monotone = False                  # branches: undefined flags only accumulate
        self.protect: set[int] = set()         # registers generated code must not write
        self.no_mem = False                    # register-only forms (loop bodies)
        self.data_only = family in ("control",)
        self.code = bytearray()
        self.parts: list = []
        self.desc: list = []
        self.faults: set[int] = set()
        self.rows: list = []                   # rows emitted (coverage reports)
        self.stack32 = mode == 32
        self.df = 0
        self.eflags0 = 0x2
        self.flags_touched = False             # an earlier instruction wrote flags (lazily, in an engine)
        self.uc_mask = 0                       # flags not compared because unicorn gets them wrong
        self.sticky = 0                        # flags masked for good (state at a possible fault)
        self.force_seg = False                 # every memory operand gets a segment override
        self.cs_write_ok = False               # CS override on a memory write (real mode only)

    # -- hypothesis helpers ---------------------------------------------------
    def rint(self, a, b):
        return self.rng.randint(a, b)

    def coin(self, p=0.5):
        return self.rng.random() < p

    def choice(self, seq):
        return self.rng.choice(seq)

    def rand(self, size=4):
        bits = 8 * size
        k = self.rint(0, 5)
        if k == 0:
            v = self.choice(EDGES32)
        elif k == 1:
            v = self.rint(0, 0xFF) if size == 1 else self.rint(0, 0xFFFF)
        elif k == 2:
            v = 0
            for i in range(size):
                b = self.choice(EDGE_BYTES) if self.coin(0.7) else self.rint(0, 255)
                v |= b << (8 * i)
        elif k == 3:
            v = (-self.rint(1, 0x100)) & 0xFFFFFFFF
        else:
            v = self.rint(0, (1 << bits) - 1)
        return v & ((1 << bits) - 1)

    def rdisp8(self):
        return self.choice((0, 1, 4, 0x7F, -0x80, -1, -4)) if self.coin(0.4) else self.rint(-128, 127)

    # -- state ------------------------------------------------------------------
    def snapshot(self):
        return (list(self.state), dict(self.init), dict(self.mem), set(self.mem_hard), set(self.mem_written),
                self.undef, len(self.code), len(self.parts), len(self.desc), set(self.faults), self.df,
                set(self.protect), self.flags_touched, self.uc_mask, len(self.rows), self.sticky)

    def restore(self, s):
        (self.state, self.init, self.mem, self.mem_hard, self.mem_written, self.undef, ncode, nparts,
         ndesc, self.faults, self.df, self.protect, self.flags_touched, self.uc_mask, nrows, self.sticky) = s
        del self.rows[nrows:]
        del self.code[ncode:]
        del self.parts[nparts:]
        del self.desc[ndesc:]

    def _pin(self, r, v):
        assert self.state[r] is FREE
        self.init[r] = v & 0xFFFFFFFF
        self.state[r] = v & 0xFFFFFFFF

    def value(self, r):
        """Current 32-bit value of register ``r`` if statically known (a free one is pinned)."""
        s = self.state[r]
        if s is FREE:
            self._pin(r, self.rand(4))
            return self.state[r]
        return None if s is UNKNOWN else s

    def want(self, r, value, mask=0xFFFFFFFF, shift=0) -> bool:
        """Make bits ``mask << shift`` of register ``r`` equal ``value`` now, if possible."""
        m = (mask << shift) & 0xFFFFFFFF
        v = (value << shift) & m
        s = self.state[r]
        if s is FREE:
            self._pin(r, (self.rand(4) & ~m) | v)
            return True
        if s is UNKNOWN:
            return False
        return (s & m) == v

    def known(self, r):
        s = self.state[r]
        return None if s is FREE or s is UNKNOWN else s

    def clobber(self, r):
        if r in self.protect:
            raise Reject(f"writes protected {REG_NAMES[r]}")
        self.state[r] = UNKNOWN

    def set_known(self, r, v):
        if r in self.protect:
            raise Reject(f"writes protected {REG_NAMES[r]}")
        self.state[r] = v & 0xFFFFFFFF

    def wish_mem(self, addr, value, size):
        """Soft wish for the initial content of memory (data page only)."""
        for i in range(size):
            a = addr + i
            if DATA_BASE <= a < DATA_END and a not in self.mem_hard and a not in self.mem_written:
                self.mem[a] = (value >> (8 * i)) & 0xFF

    def pin_mem(self, addr, value, size):
        for i in range(size):
            a, b = addr + i, (value >> (8 * i)) & 0xFF
            if not (DATA_BASE <= a < DATA_END) or a in self.mem_written:
                raise Reject("memory pin impossible")
            if a in self.mem_hard and self.mem.get(a) != b:
                raise Reject("memory pin conflict")
        for i in range(size):
            self.mem[addr + i] = (value >> (8 * i)) & 0xFF
            self.mem_hard.add(addr + i)

    def mem_initial(self, addr, size):
        """The initial value of memory if it is pinned/wished and not yet written, else None."""
        v = 0
        for i in range(size):
            a = addr + i
            if a in self.mem_written or a not in self.mem:
                return None
            v |= self.mem[a] << (8 * i)
        return v

    def write_mem(self, addr, size):
        self.mem_written.update(range(addr, addr + size))

    def flags(self, reads, writes, undef):
        if reads & self.undef:
            raise Reject("reads an undefined flag")
        if self.monotone:
            self.undef |= undef
        else:
            self.undef = (self.undef & ~writes) | undef
        if writes:
            self.flags_touched = True

    def may_fault(self, helper=False):
        """The next instruction may stop the snippet with an exception, leaving the flags as
        they are now: what is undefined now stays masked whatever follows.  ``helper``: the
        exception is raised inside a unicorn helper (DIV/IDIV #DE, BOUND #BR), which loses
        pending lazily-evaluated flags (README) -- mask them all then."""
        self.sticky |= self.undef
        if helper and self.flags_touched:
            self.sticky |= ARITH
            self.uc_mask |= ARITH

    def unicorn_bug(self, flags):
        """unicorn leaves ``flags`` wrong here (README): treat them as undefined -- masked at
        the end and never read -- until an instruction defines them again."""
        self.undef |= flags
        self.uc_mask |= flags

    def seg_prefix(self, writes_mem):
        """A segment-override prefix, or None.  CS-override writes: #GP in protected mode (SDM
        vol. 3, 5.4.1: code segments are not writable), unchecked by unicorn -> only in real mode
        and only where cs_write_ok."""
        if not (self.force_seg or self.coin(0.2)):
            return None
        segs = [p for p in SEG_PREFIXES
                if not (p == 0x2E and writes_mem and (self.mode == 32 or not self.cs_write_ok))]
        return self.choice(segs)

    # -- stack ------------------------------------------------------------------
    @property
    def smask(self):
        return 0xFFFFFFFF if self.stack32 else 0xFFFF

    def push(self, size):
        esp = self.known(ESP)
        if esp is None:
            raise Reject("ESP unknown")
        new = (esp & ~self.smask) | ((esp - size) & self.smask)
        a = new & self.smask
        if not (STACK_BASE + 0x40 <= a and a + size <= STACK_END):
            raise Reject("stack overflow")
        self.set_known(ESP, new)
        self.write_mem(a, size)
        return a

    def pop(self, size):
        esp = self.known(ESP)
        if esp is None:
            raise Reject("ESP unknown")
        a = esp & self.smask
        if not (STACK_BASE + 0x40 <= a and a + size <= STACK_END):
            raise Reject("stack underflow")
        self.set_known(ESP, (esp & ~self.smask) | ((esp + size) & self.smask))
        return a


# --------------------------------------------------------------------------
# Operands, ModRM and address solving
# --------------------------------------------------------------------------

@dataclass
class Op:
    kind: str            # reg, mem, imm, one
    size: int
    reg: int = 0         # physical register 0..7
    shift: int = 0       # 8 for AH/CH/DH/BH
    ea: int = 0
    value: int = 0
    sx: bool = False     # imm: byte sign-extended


def reg_op(idx, size):
    if size == 1:
        return Op("reg", 1, idx & 3, 8 if idx >= 4 else 0)
    return Op("reg", size, idx)


def reg_value(ctx, op):
    v = ctx.value(op.reg)
    return None if v is None else (v >> op.shift) & ((1 << (8 * op.size)) - 1)


RM16 = {0: (EBX, ESI), 1: (EBX, EDI), 2: (EBP, ESI), 3: (EBP, EDI), 4: (ESI,), 5: (EDI,), 6: (EBP,), 7: (EBX,)}


@dataclass
class MemForm:
    mod: int
    rm: int
    sib: int | None
    disp: bytes
    ea: int
    ss_default: bool
    regs: tuple


def _regions(ctx, width, ss_default, data_only):
    regs = [(DATA_BASE, DATA_END - width)]
    if ss_default and not data_only and not ctx.data_only:
        regs.append((STACK_BASE, STACK_END - width))
    return regs


def mem_operand(ctx, asz, width, *, data_only=False, access=True, esp_now=None) -> MemForm:
    """Draw a ModRM memory form (mod 0-2) and make its EA land in range.

    ``access``: False for LEA (no memory access: any register values).
    """
    mod = ctx.rint(0, 2)
    amask = 0xFFFFFFFF if asz == 4 else 0xFFFF
    sib = None
    if asz == 2:
        rm = ctx.rint(0, 7)
        if mod == 0 and rm == 6:
            terms, dkind = [], 16
        else:
            terms, dkind = list(RM16[rm]), {0: 0, 1: 8, 2: 16}[mod]
        ss = rm in (2, 3) or (rm == 6 and mod != 0)
        terms = [(r, 1) for r in terms]
    else:
        rm = 4 if ctx.coin(0.35) else ctx.rint(0, 7)      # SIB forms are the most numerous
        dkind = {0: 0, 1: 8, 2: 32}[mod]
        if rm == 4:
            scale, index, base = ctx.rint(0, 3), ctx.rint(0, 7), ctx.rint(0, 7)
            sib = (scale << 6) | (index << 3) | base
            terms = []
            if base == 5 and mod == 0:
                dkind = 32
                ss = False
            else:
                terms.append((base, 1))
                ss = base in (ESP, EBP)
            if index != 4:
                terms.append((index, 1 << scale))
        elif rm == 5 and mod == 0:
            terms, dkind, ss = [], 32, False
        else:
            terms, ss = [(rm, 1)], rm == EBP
    merged: dict[int, int] = {}
    for r, m in terms:
        merged[r] = merged.get(r, 0) + m
    regs = tuple(merged)

    if not access:
        # LEA: nothing is accessed, registers keep whatever values they get.
        dval = {0: 0, 8: ctx.rdisp8(), 16: ctx.rint(0, 0xFFFF), 32: ctx.rand(4)}[dkind]
        return MemForm(mod, rm, sib, _disp_bytes(dkind, dval), 0, ss, regs)

    fixed, free = 0, []
    for r, m in merged.items():
        if r == ESP and esp_now is not None:
            fixed += esp_now * m
            continue
        v = ctx.known(r)
        if ctx.state[r] is UNKNOWN:
            raise Reject(f"address register {REG_NAMES[r]} unknown")
        if v is None:
            free.append((r, m))
        else:
            fixed += (v & amask) * m

    regions = _regions(ctx, width, ss, data_only)
    lo, hi = ctx.choice(regions)
    k = ctx.rint(0, 3)
    t = lo if k == 0 else hi if k == 1 else ctx.rint(lo, hi)
    natural = ctx.coin(0.5)

    def rnd_disp():
        if dkind == 8:
            return ctx.rdisp8()
        if dkind == 0:
            return 0
        full = (1 << dkind) - 1
        return ctx.rint(-64, 64) & full if natural else ctx.rint(0, full)

    solver = None
    odd = [f for f in free if f[1] % 2 == 1]
    if odd:
        solver = ctx.choice(odd)
    elif free:
        solver = free[0]                       # [reg+reg*1]: multiplier 2
    if solver is not None:
        for r, m in free:
            if r == solver[0]:
                continue
            v = ctx.rint(0, 0x40) if natural else ctx.rand(4)
            ctx.want(r, v, amask)
            fixed += (v & amask) * m
        dval = rnd_disp()
        need = (t - dval - fixed) & amask
        r, m = solver
        k = (m & -m).bit_length() - 1           # m = odd << k (SIB scale with no odd term)
        if k:
            rem = need % (1 << k)
            if rem:
                t = t - rem if t - rem >= lo else t + (1 << k) - rem
                need = (t - dval - fixed) & amask
        nbits = amask.bit_length()
        sub = 1 << (nbits - k)
        v = ((need >> k) * pow(m >> k, -1, sub)) % sub
        v += ctx.rint(0, (1 << k) - 1) * sub
        ctx.want(r, v, amask)
        fixed += v * m
    elif dkind == 32 or (dkind == 16 and asz == 2):
        dval = (t - fixed) & amask
    else:
        dval = rnd_disp()
        ea = (fixed + dval) & amask
        if not any(a <= ea <= b for a, b in regions) and dkind == 8:
            # search a disp8 that reaches one of the regions
            base = fixed & amask
            cands = [d for d in (-128, -64, -16, 0, 16, 64, 127)
                     if any(a <= ((base + d) & amask) <= b for a, b in regions)]
            if not cands:
                raise Reject("no disp8 reaches memory")
            dval = ctx.choice(cands)
    ea = (fixed + dval) & amask
    if not any(a <= ea <= b for a, b in regions):
        raise Reject("EA outside memory")
    return MemForm(mod, rm, sib, _disp_bytes(dkind, dval), ea, ss, regs)


def _disp_bytes(dkind, dval):
    if dkind == 0:
        return b""
    return (dval & ((1 << dkind) - 1)).to_bytes(dkind // 8, "little")


def imm_bytes(v, size):
    return (v & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


SEG_PREFIXES = (0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65)

# mnemonic -> operand roles: "rw" first operand read+written, "w" written only,
# "r" not written, "rw2" both operands read+written.
_NO_WRITE = {"CMP", "TEST", "BT", "BOUND", "PUSH", "NOP", "CALL", "JMP"}
_WRITE_ONLY = {"MOV", "LEA", "MOVZX", "MOVSX", "POP", "BSF", "BSR"} | {"SET" + c for c in CC} | \
    {"CMOV" + c for c in CC}
_BOTH = {"XCHG", "XADD"}
# Implicit register writes (32-bit registers).
_IMPLICIT_W = {
    "CBW": (EAX,), "CWD": (EDX,), "LAHF": (EAX,), "SALC": (EAX,), "XLAT": (EAX,),
    "DAA": (EAX,), "DAS": (EAX,), "AAA": (EAX,), "AAS": (EAX,), "AAM": (EAX,), "AAD": (EAX,),
    "CMPXCHG": (EAX,), "CMPXCHG8B": (EAX, EDX),
}


# --------------------------------------------------------------------------
# Instruction emitters
# --------------------------------------------------------------------------

@dataclass
class Insn:
    row: Row
    osz: int
    asz: int
    ops: list
    mem: MemForm | None
    prefixes: list
    count: int | None = None


def _osz_toggle(ctx, p, row):
    sizes = "".join(o[1:] for o in p.ops if len(o) > 1 and o[0] in "EGMIZOXYJ")
    return ("v" in sizes or "z" in sizes or "a" in sizes or row.mnem in ("CBW", "CWD")
            or row.operands in ("eAX,Iz", "eAX,Ov", "Ov,eAX", "Zv,eAX"))


JCC_MNEMS = frozenset("J" + c for c in CC)


def _handler(row: Row):
    if "B" in row.attrs:
        return emit_loop
    h = SPECIAL.get(row.mnem)
    if h is not None:
        return h
    if row.mnem in JCC_MNEMS:
        return emit_jcc
    return emit_generic


def emit(ctx: Ctx, row: Row) -> bool:
    """Append one instance of ``row`` (or a small template for control rows)."""
    snap = ctx.snapshot()
    start = len(ctx.code)
    try:
        _handler(row)(ctx, row)
    except Reject:
        ctx.restore(snap)
        return False
    if len(ctx.code) > start:
        ctx.parts.append((start, len(ctx.code) - start))
    ctx.rows.append(row)
    return True


def _prefix_bytes(ctx, pfx):
    pfx = list(pfx)
    if len(pfx) > 1:
        ctx.rng.shuffle(pfx)
    return bytes(pfx)


def emit_generic(ctx: Ctx, row: Row):
    p = parse(row)
    mode = ctx.mode
    osz = 4 if mode == 32 else 2
    asz = osz
    pfx = []
    if row.mnem == "BSWAP":
        if mode == 16:
            osz = 4
            pfx.append(0x66)      # BSWAP with a 16-bit operand is undefined (SDM): 32-bit only
    elif _osz_toggle(ctx, p, row) and ctx.coin(0.35):
        osz = 6 - osz
        pfx.append(0x66)
    mem_capable = p.modrm or any(o[0] == "O" for o in p.ops) or row.mnem == "XLAT"
    if mem_capable and ctx.coin(0.3):
        asz = 6 - asz
        pfx.append(0x67)

    mod = reg = rm = None
    memf = None
    mem_width = 0
    if p.modrm:
        reg = p.digit if p.digit is not None else ctx.rint(0, 7)
        eop = next((o for o in p.ops if o[0] in "EM"), None)
        if eop is not None:
            mem_width = _size(eop[1:], osz)
        only_mem = eop is not None and eop[0] == "M"
        if only_mem:
            mod = 0
        elif ctx.no_mem:
            mod = 3
        else:
            mod = 3 if ctx.coin(0.4) else 0
        if mod == 3:
            rm = ctx.rint(0, 7)
        else:
            if ctx.no_mem:
                raise Reject("memory form in a register-only context")
            access = row.mnem not in ("LEA",)
            memf = mem_operand(ctx, asz, mem_width, access=access,
                               data_only=row.mnem in DATA_ONLY)
            mod, rm = memf.mod, memf.rm
    zreg = None
    if p.plus_r:
        zreg = ctx.rint(1, 7) if row.mnem == "XCHG" else ctx.rint(0, 7)

    ops = []
    for o in p.ops:
        k, sz = o[0], o[1:]
        if o == "AL":
            ops.append(reg_op(EAX, 1))
        elif o == "eAX":
            ops.append(reg_op(EAX, osz))
        elif o == "CL":
            ops.append(reg_op(ECX, 1))
        elif o == "1":
            ops.append(Op("one", 1, value=1))
        elif k == "E" or k == "M":
            size = _size(sz, osz)
            if memf is None:
                ops.append(reg_op(rm, size))
            else:
                ops.append(Op("mem", size, ea=memf.ea))
        elif k == "G":
            ops.append(reg_op(reg, _size(sz, osz)))
        elif k == "Z":
            ops.append(reg_op(zreg, _size(sz, osz)))
        elif k == "I":
            size = 1 if sz in ("b", "bs") else 2 if sz == "w" else osz
            ops.append(Op("imm", size, value=ctx.rand(size), sx=sz == "bs"))
        elif k == "O":
            size = _size(sz, osz)
            lo, hi = DATA_BASE, DATA_END - size
            ea = ctx.choice((lo, hi)) if ctx.coin(0.2) else ctx.rint(lo, hi)
            ops.append(Op("mem", size, ea=ea))
            memf = MemForm(None, None, None, imm_bytes(ea, asz), ea, False, ())
        else:
            raise AssertionError(f"operand {o} of {row}")

    ins = Insn(row, osz, asz, ops, memf, pfx)
    locked = "L" in row.attrs and memf is not None and memf.mod is not None and ctx.coin(0.25)
    touched = ctx.flags_touched
    hook = HOOKS.get(row.mnem) or (HOOKS["SHIFT"] if row.mnem in SHIFTS + ("SHLD", "SHRD") else None)
    if hook is not None:
        hook(ctx, ins)
    else:
        _default_values(ctx, ins)

    # flags
    if row.mnem in ("DIV", "IDIV", "BOUND"):
        ctx.may_fault(helper=True)
    elif row.mnem == "AAM" and ops[0].value == 0:
        ctx.may_fault()
    if row.mnem in SHIFTS + ("SHLD", "SHRD"):
        bits = 8 * ops[0].size
        ctx.flags(*shift_flags(row.mnem, bits, ins.count))
    else:
        ctx.flags(*flag_effect(row.mnem))
    if locked and row.mnem == "NEG":
        # unicorn: LOCK NEG computes SF/ZF/PF/AF/OF from the operand before negation
        ctx.unicorn_bug(SF | ZF | PF | AF | OF)
    if row.mnem == "CMPXCHG8B" and touched:
        # unicorn: CMPXCHG8B recomputes CF/PF/AF/SF/OF from a stale lazy-flags state
        ctx.unicorn_bug(CF | PF | AF | SF | OF)

    # register / memory writes
    m = row.mnem
    writes_mem = False
    if m not in _NO_WRITE and ops:
        targets = ops[:2] if m in _BOTH else ops[:1]
        if m in ("CMPXCHG8B",):
            targets = []
        for op in targets:
            if op.kind == "reg":
                ctx.clobber(op.reg)
            elif op.kind == "mem":
                ctx.write_mem(op.ea, op.size)
                writes_mem = True
    if m in ("CMPXCHG8B", "CMPXCHG") and memf is not None:
        ctx.write_mem(memf.ea, mem_width or 8)
        writes_mem = True
    if m in ("MUL", "IMUL", "DIV", "IDIV") and len(ops) == 1:
        ctx.clobber(EAX)
        if ops[0].size > 1:
            ctx.clobber(EDX)
    for r in _IMPLICIT_W.get(m, ()):
        ctx.clobber(r)

    # segment override / lock
    if memf is not None:
        sp = ctx.seg_prefix(writes_mem)
        if sp is not None:
            pfx.append(sp)
    if locked:
        pfx.append(0xF0)

    code = bytearray(_prefix_bytes(ctx, pfx))
    ob = bytearray(p.opbytes)
    if p.plus_r:
        ob[-1] += zreg
    code += ob
    if p.modrm:
        code.append((mod << 6) | (reg << 3) | rm)
        if memf is not None:
            if memf.sib is not None:
                code.append(memf.sib)
            code += memf.disp
    elif memf is not None and memf.mod is None:
        code += memf.disp                       # moffs
    for op in ins.ops:
        if op.kind == "imm":
            code += imm_bytes(op.value, op.size)
    assert len(code) <= 15, (row, code.hex())
    ctx.code += code
    ctx.desc.append(f"{row}{' o16' if osz == 2 and mode == 32 else ' o32' if osz == 4 and mode == 16 else ''}"
                    f"{' a16' if asz == 2 and mode == 32 else ' a32' if asz == 4 and mode == 16 else ''}"
                    )
    return ins


def _size(sz, osz):
    return {"b": 1, "w": 2, "d": 4, "v": osz, "z": osz, "q": 8, "a": 2 * osz, "": 0, "bs": 1}[sz]


DATA_ONLY = {"DIV", "IDIV", "BOUND", "CMPXCHG8B", "CMPXCHG", "BT", "BTS", "BTR", "BTC", "BSF", "BSR"}


def _default_values(ctx, ins):
    """Give memory source operands an edge-case value now and then."""
    for op in ins.ops:
        if op.kind == "mem" and ctx.coin(0.5):
            ctx.wish_mem(op.ea, ctx.rand(op.size), op.size)


# -- hooks: interesting values for particular mnemonics ---------------------

def _set_operand(ctx, op, value) -> int | None:
    """Try to give operand ``op`` the value; return the value it will really have."""
    mask = (1 << (8 * op.size)) - 1
    if op.kind == "reg":
        if ctx.want(op.reg, value, mask, op.shift):
            return value & mask
        v = ctx.known(op.reg)
        return None if v is None else (v >> op.shift) & mask
    if op.kind == "mem":
        ctx.wish_mem(op.ea, value, op.size)
        return ctx.mem_initial(op.ea, op.size)
    return None


def _signed(v, bits):
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


def hook_div(ctx, ins):
    """Mostly in-range quotients, plus divide by zero and quotient overflow (#DE)."""
    ctx.faults.add(0)
    op = ins.ops[0]
    s = op.size
    bits = 8 * s
    m = (1 << bits) - 1
    signed = ins.row.mnem == "IDIV"
    case = ctx.choice(("ok",) * 6 + ("zero", "overflow", "random"))
    halves = [(EAX, 0xFFFF, 0)] if s == 1 else [(EAX, m, 0), (EDX, m, bits)]
    overlap = op.kind == "reg" and op.reg in (EAX, EDX) and (s > 1 or op.reg == EAX)
    if case == "random" or overlap:
        return
    div_free = op.kind == "mem" or ctx.state[op.reg] is FREE
    dvd_free = all(ctx.state[r] is FREE for r, _, _ in halves)
    if dvd_free or not div_free:
        # divisor first, then a dividend that gives the wanted quotient
        d = _set_operand(ctx, op, 0 if case == "zero" else (ctx.rand(s) or 1))
        if d is None or d == 0:
            return
        sd = _signed(d, bits) if signed else d
        if case == "ok":
            if signed:
                q = ctx.rint(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
                r0 = ctx.rint(0, abs(sd) - 1)
                n = q * sd + (r0 if q * sd >= 0 else -r0)
            else:
                n = ctx.rint(0, m) * d + ctx.rint(0, d - 1)
        elif signed:
            q = ctx.choice((1 << (bits - 1), -(1 << (bits - 1)) - 1, 1 << bits))
            n = q * sd
        else:
            n = (ctx.rint(d, m) << bits) | ctx.rint(0, m)
        n &= (1 << (2 * bits)) - 1
        for r, mask, sh in halves:
            ctx.want(r, n >> sh, mask)
        return
    # dividend already fixed (e.g. EAX is an address register): pick the divisor
    n = 0
    for r, mask, sh in halves:
        v = ctx.value(r)
        if v is None:
            return
        n |= (v & mask) << sh
    if case == "zero":
        d = 0
    elif not signed:
        hi = n >> bits
        if case == "ok":
            if hi >= m:
                return
            d = ctx.rint(hi + 1, m)
        else:
            d = ctx.rint(1, hi) if hi else 1
            if not hi:
                return
    else:
        sn = _signed(n, 2 * bits)
        top = (1 << (bits - 1)) - 1
        if case == "ok":
            low = -(-abs(sn) // top) if sn else 1
            if low > top:
                return
            d = ctx.rint(max(low, 1), top)
        else:
            d = ctx.choice((1, 2)) if abs(sn) > 2 * top + 2 else 1
        if ctx.coin():
            d = -d
    _set_operand(ctx, op, d & m)


def hook_shift(ctx, ins):
    m = ins.row.mnem
    dst = ins.ops[0]
    bits = 8 * dst.size
    cnt = ins.ops[-1]
    limit = bits if m in ("SHLD", "SHRD") else None

    def draw_count():
        c = ctx.rint(0, 40) if ctx.coin(0.85) else ctx.rint(0, 255)
        if limit is not None and (c & 31) > limit:
            c = ctx.rint(0, limit) | (ctx.choice((0, 32, 64, 224)))
        return c

    if cnt.kind == "one":
        ins.count = 1
    elif cnt.kind == "imm":
        cnt.value = draw_count()
        ins.count = cnt.value
    else:                                   # CL
        c = draw_count()
        if not ctx.want(ECX, c, 0xFF):
            v = ctx.known(ECX)
            if v is None:
                raise Reject("CL unknown")
            c = v & 0xFF
        if limit is not None and (c & 31) > limit:
            raise Reject("SHLD/SHRD count > operand size: undefined result")
        ins.count = c
    _default_values(ctx, ins)


def hook_bt(ctx, ins):
    dst, src = ins.ops
    if dst.kind == "mem" and src.kind == "reg":
        n = dst.size
        kmin = -((dst.ea - DATA_BASE) // n)
        kmax = (DATA_END - n - dst.ea) // n
        k = ctx.choice((0, kmin, kmax)) if ctx.coin(0.3) else ctx.rint(max(kmin, -64), min(kmax, 64))
        off = k * 8 * n + ctx.rint(0, 8 * n - 1)
        if not ctx.want(src.reg, off, (1 << (8 * n)) - 1):
            raise Reject("bit offset register not free")
    elif src.kind == "imm" and ctx.coin(0.5):
        src.value = ctx.rint(0, 8 * dst.size - 1)
    _default_values(ctx, ins)


def hook_bsx(ctx, ins):
    if ins.row.mnem == "BSWAP":
        return
    src = ins.ops[1]
    k = ctx.rint(0, 3)
    if k == 0:
        _set_operand(ctx, src, 0)
    elif k == 1:
        _set_operand(ctx, src, 1 << ctx.rint(0, 8 * src.size - 1))
    else:
        _default_values(ctx, ins)


def hook_cmpxchg(ctx, ins):
    dst, src = ins.ops
    if ctx.coin(0.5):
        acc = reg_op(EAX, dst.size)
        if dst.kind == "reg":
            v = reg_value(ctx, dst)
            if v is not None:
                _set_operand(ctx, acc, v)
        else:
            v = reg_value(ctx, acc)
            if v is not None:
                ctx.wish_mem(dst.ea, v, dst.size)
    else:
        _default_values(ctx, ins)


def hook_cmpxchg8b(ctx, ins):
    mem = ins.ops[0]
    if ctx.coin(0.5):
        lo, hi = ctx.value(EAX), ctx.value(EDX)
        if lo is not None and hi is not None:
            ctx.wish_mem(mem.ea, lo | (hi << 32), 8)
    else:
        ctx.wish_mem(mem.ea, ctx.rand(4) | (ctx.rand(4) << 32), 8)


def hook_bound(ctx, ins):
    ctx.faults.add(5)
    g, mem = ins.ops
    n = g.size
    bits = 8 * n
    idx = reg_value(ctx, g)
    if idx is None:
        raise Reject("BOUND index unknown")
    sidx = idx - (1 << bits) if idx >> (bits - 1) else idx
    lo_lim, hi_lim = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    case = ctx.choice(("in", "in", "below", "above", "edge"))
    if case == "in" or (case == "below" and sidx == hi_lim) or (case == "above" and sidx == lo_lim):
        lower, upper = ctx.rint(lo_lim, sidx), ctx.rint(sidx, hi_lim)
    elif case == "below":                  # index < lower
        lower = ctx.rint(sidx + 1, hi_lim)
        upper = ctx.rint(lower, hi_lim)
    elif case == "above":                  # index > upper
        upper = ctx.rint(lo_lim, sidx - 1)
        lower = ctx.rint(lo_lim, upper)
    else:
        lower, upper = sidx, sidx
    m = (1 << bits) - 1
    ctx.pin_mem(mem.ea, (lower & m) | ((upper & m) << bits), 2 * n)


def hook_aam(ctx, ins):
    imm = ins.ops[0]
    if ins.row.mnem == "AAM" and ctx.coin(0.15):
        imm.value = 0                                   # D4 00: #DE
    else:
        imm.value = ctx.choice((10, 10, 10, 0, 1, 2, 16, 0xFF, 7)) if ctx.coin(0.8) else ctx.rint(0, 255)
    if ins.row.mnem == "AAM" and imm.value == 0:
        ctx.faults.add(0)
    ctx.want(EAX, ctx.rand(2), 0xFFFF)


def hook_bcd(ctx, ins):
    if ctx.coin(0.7):
        ctx.want(EAX, ctx.choice((0x00, 0x09, 0x0A, 0x0F, 0x10, 0x19, 0x99, 0x9A, 0x9F, 0xA0, 0xF9, 0xFA,
                                  0xFF, 0x05, 0x06)), 0xFF)


def hook_traps(ctx, ins):
    ctx.faults.add({"INT3": 3, "INTO": 4, "UD2": 6}[ins.row.mnem])


HOOKS = {
    "DIV": hook_div, "IDIV": hook_div, "SHIFT": hook_shift,
    "BT": hook_bt, "BTS": hook_bt, "BTR": hook_bt, "BTC": hook_bt,
    "BSF": hook_bsx, "BSR": hook_bsx, "BSWAP": hook_bsx,
    "CMPXCHG": hook_cmpxchg, "CMPXCHG8B": hook_cmpxchg8b, "BOUND": hook_bound,
    "AAM": hook_aam, "AAD": hook_aam, "DAA": hook_bcd, "DAS": hook_bcd, "AAA": hook_bcd, "AAS": hook_bcd,
    "INT3": hook_traps, "INTO": hook_traps, "UD2": hook_traps,
}


# -- special emitters (rows whose operands are implicit) ---------------------

def emit_xlat(ctx, row):
    mode = ctx.mode
    asz = 4 if mode == 32 else 2
    pfx = []
    if ctx.coin(0.3):
        asz = 6 - asz
        pfx.append(0x67)
    amask = 0xFFFFFFFF if asz == 4 else 0xFFFF
    al = ctx.rint(0, 255)
    if not ctx.want(EAX, al, 0xFF):
        v = ctx.known(EAX)
        if v is None:
            raise Reject("AL unknown")
        al = v & 0xFF
    t = ctx.rint(DATA_BASE, DATA_END - 1)
    if not ctx.want(EBX, (t - al) & amask, amask):
        b = ctx.known(EBX)
        if b is None or not DATA_BASE <= ((b & amask) + al) & amask < DATA_END:
            raise Reject("EBX unusable for XLAT")
    ctx.clobber(EAX)
    sp = ctx.seg_prefix(False)
    if sp is not None:
        pfx.append(sp)
    ctx.code += _prefix_bytes(ctx, pfx) + b"\xD7"
    ctx.desc.append(f"{row}{' a16' if asz == 2 and mode == 32 else ' a32' if asz == 4 and mode == 16 else ''}")


def emit_simple(ctx, row):
    """Rows with no operands (and CBW/CWD with their operand-size forms)."""
    p = parse(row)
    m = row.mnem
    pfx = []
    osz = 4 if ctx.mode == 32 else 2
    if m in ("CBW", "CWD") and ctx.coin(0.5):
        pfx.append(0x66)
        osz = 6 - osz
    r, w, u = flag_effect(m)
    if m in ("INT3", "INTO", "UD2"):
        ctx.may_fault()
    ctx.flags(r, w, u)
    for reg in _IMPLICIT_W.get(m, ()):
        ctx.clobber(reg)
    if m == "CLD":
        ctx.df = 0
    elif m == "STD":
        ctx.df = 1
    elif m in ("INT3", "INTO", "UD2"):
        hook_traps(ctx, Insn(row, osz, osz, [], None, pfx))
    elif m in ("DAA", "DAS", "AAA", "AAS"):
        hook_bcd(ctx, None)
    elif m == "SAHF" and ctx.coin(0.5):
        ctx.want(EAX, ctx.rand(1), 0xFF, 8)
    ctx.code += bytes(pfx) + p.opbytes
    ctx.desc.append(f"{row}{' o16' if osz == 2 and ctx.mode == 32 else ' o32' if osz == 4 and ctx.mode == 16 else ''}")


def emit_string(ctx, row):
    p = parse(row)
    m = row.mnem
    mode = ctx.mode
    osz = asz = 4 if mode == 32 else 2
    pfx = []
    if "v" in row.operands and ctx.coin(0.35):
        osz = 6 - osz
        pfx.append(0x66)
    if ctx.coin(0.35):
        asz = 6 - asz
        pfx.append(0x67)
    amask = 0xFFFFFFFF if asz == 4 else 0xFFFF
    w = 1 if row.operands.endswith("b") else osz
    rep = None
    if "R" in row.attrs and ctx.coin(0.6):
        rep = 0xF3
    elif "C" in row.attrs and ctx.coin(0.7):
        rep = ctx.choice((0xF3, 0xF2))
    if rep is not None:
        pfx.append(rep)
        n = ctx.choice((0, 1, 2, 3, 4, 5, 7, 8)) if ctx.coin(0.8) else ctx.rint(0, 16)
        if not ctx.want(ECX, n, amask):
            v = ctx.known(ECX)
            if v is None or (v & amask) > 16:
                raise Reject("string count unknown")
            n = v & amask
    else:
        n = 1
    df = ctx.df
    span = max(n, 1) * w
    uses_src = m in ("MOVS", "CMPS", "LODS")
    uses_dst = m in ("MOVS", "CMPS", "STOS", "SCAS")
    starts = {}
    for r, used in ((ESI, uses_src), (EDI, uses_dst)):
        if not used:
            continue
        # lowest/highest start keeping [start - (n-1)w, start + w) (DF=1) or [start, start + nw) in the page
        if df:
            lo, hi = DATA_BASE + span - w, DATA_END - w
        else:
            lo, hi = DATA_BASE, DATA_END - span
        if r == EDI and uses_src and ESI in starts and ctx.coin(0.3):
            s = min(max(starts[ESI] + ctx.choice((-2 * w, -w, w, 2 * w, 0)), lo), hi)   # overlapping
        else:
            k = ctx.rint(0, 3)
            s = lo if k == 0 else hi if k == 1 else ctx.rint(lo, hi)
        if not ctx.want(r, s, amask):
            v = ctx.known(r)
            if v is None or not lo <= (v & amask) <= hi:
                raise Reject("string pointer unusable")
            s = v & amask
        starts[r] = s
    if n and m in ("CMPS", "SCAS"):
        # REPE runs while equal, REPNE while different: lay out data that keeps them going
        # for a while and then (often) stops them early
        lo_s = starts[EDI] - (n - 1) * w if df else starts[EDI]
        stop_at = ctx.rint(0, n - 1) if ctx.coin(0.6) else None
        equal = rep != 0xF2
        if m == "CMPS":
            slo = starts[ESI] - (n - 1) * w if df else starts[ESI]
            src = [ctx.rand(w) for _ in range(n)]
            for i in range(n):
                same = equal != (i == stop_at)
                ctx.wish_mem(slo + i * w, src[i], w)
                ctx.wish_mem(lo_s + i * w, src[i] if same else src[i] ^ (1 << ctx.rint(0, 8 * w - 1)), w)
        else:
            acc = ctx.value(EAX)
            if acc is not None:
                a = acc & ((1 << (8 * w)) - 1)
                for i in range(n):
                    same = equal != (i == stop_at)
                    ctx.wish_mem(lo_s + i * w, a if same else a ^ (1 << ctx.rint(0, 8 * w - 1)), w)
    if m in ("STOS",) or (m == "MOVS"):
        dlo = starts[EDI] - (n - 1) * w if df else starts[EDI]
        ctx.write_mem(dlo, n * w)
    # flags
    r, wr, u = flag_effect(m)
    if rep is not None and n == 0:
        wr = 0
    ctx.flags(r, wr, u)
    # final register state
    cond = m in ("CMPS", "SCAS") and rep is not None
    step = (-w if df else w)
    for r_ in starts:
        if cond:
            ctx.clobber(r_)
        else:
            v = ctx.known(r_)
            ctx.set_known(r_, (v & ~amask) | ((v + step * n) & amask))
    if rep is not None:
        if cond:
            ctx.clobber(ECX)
        else:
            ctx.set_known(ECX, ctx.known(ECX) & ~amask)
    if m == "LODS" and n:
        ctx.clobber(EAX)
    if uses_src:
        sp = ctx.seg_prefix(False)          # the override applies to DS:eSI, a read
        if sp is not None:
            pfx.append(sp)
    ctx.code += _prefix_bytes(ctx, pfx) + p.opbytes
    tag = {None: "", 0xF3: "rep " if m in ("MOVS", "STOS", "LODS") else "repe ", 0xF2: "repne "}[rep]
    ctx.desc.append(f"{tag}{row} n={n} df={df}"
                    f"{' o16' if osz == 2 and mode == 32 else ' o32' if osz == 4 and mode == 16 else ''}"
                    f"{' a16' if asz == 2 and mode == 32 else ' a32' if asz == 4 and mode == 16 else ''}")


# -- stack -------------------------------------------------------------------

def _stack_osz(ctx):
    osz = 4 if ctx.mode == 32 else 2
    if ctx.coin(0.3):
        return 6 - osz, [0x66]
    return osz, []


def emit_push_pop(ctx, row):
    p = parse(row)
    m = row.mnem
    if p.plus_r or p.ops and p.ops[0][0] == "I" or not p.ops:
        osz, pfx = _stack_osz(ctx)
        code = bytearray(p.opbytes)
        if p.plus_r:
            r = ctx.rint(0, 7)
            code[-1] += r
            if m == "PUSH":
                ctx.push(osz)
            else:
                ctx.pop(osz)
                ctx.clobber(r)
        elif p.ops:
            size = 1 if p.ops[0] == "Ibs" else osz
            v = ctx.rand(size)
            code += imm_bytes(v, size)
            ctx.push(osz)
        elif m == "PUSHA":
            ctx.push(8 * osz)
        elif m == "POPA":
            ctx.pop(8 * osz)
            for r in range(8):
                if r != ESP:
                    ctx.clobber(r)
        ctx.code += bytes(pfx) + code
        ctx.desc.append(f"{row}{' o16' if osz == 2 and ctx.mode == 32 else ' o32' if osz == 4 and ctx.mode == 16 else ''}")
        return
    # PUSH Ev (FF /6) / POP Ev (8F /0): ModRM operand, then the stack effect
    _emit_stack_modrm(ctx, row, pop=m == "POP")


def _emit_stack_modrm(ctx, row, pop):
    p = parse(row)
    mode = ctx.mode
    osz, pfx = _stack_osz(ctx)
    asz = 4 if mode == 32 else 2
    if ctx.coin(0.3):
        asz = 6 - asz
        pfx.append(0x67)
    esp = ctx.known(ESP)
    if esp is None:
        raise Reject("ESP unknown")
    mod = 3 if ctx.coin(0.3) else 0
    memf = None
    if pop:
        ctx.pop(osz)                    # "POP [ESP+x]": EA computed with the incremented ESP
    if mod == 3:
        rm = ctx.rint(0, 7)
        if pop:
            if rm == ESP:
                ctx.state[ESP] = UNKNOWN
            else:
                ctx.clobber(rm)
    else:
        memf = mem_operand(ctx, asz, osz, esp_now=ctx.known(ESP))
        mod, rm = memf.mod, memf.rm
        if pop:
            ctx.write_mem(memf.ea, osz)
    if not pop:
        ctx.push(osz)
    if memf is not None:
        sp = ctx.seg_prefix(pop)
        if sp is not None:
            pfx.append(sp)
    code = bytearray(_prefix_bytes(ctx, pfx)) + p.opbytes + bytes([(mod << 6) | (p.digit << 3) | rm])
    if memf is not None:
        if memf.sib is not None:
            code.append(memf.sib)
        code += memf.disp
    ctx.code += code
    ctx.desc.append(f"{row}{' o16' if osz == 2 and mode == 32 else ' o32' if osz == 4 and mode == 16 else ''}"
                    f"{' a16' if asz == 2 and mode == 32 else ' a32' if asz == 4 and mode == 16 else ''}")


def emit_pushf_popf(ctx, row):
    osz, pfx = _stack_osz(ctx)
    if row.mnem == "PUSHF":
        ctx.flags(ARITH | DF, 0, 0)
        ctx.push(osz)
        ctx.code += bytes(pfx) + b"\x9C"
        ctx.desc.append(f"PUSHF 9C{' o16' if osz == 2 and ctx.mode == 32 else ' o32' if osz == 4 and ctx.mode == 16 else ''}")
        return
    # POPF: pop an image whose system bits are 0 (except bit 1): push one first
    image = 0x2
    for f in (CF, PF, AF, ZF, SF, OF, DF):
        if ctx.coin(0.5):
            image |= f
    if ctx.coin(0.3):
        ctx.flags(ARITH | DF, 0, 0)          # PUSHF; POPF
        ctx.push(osz)
        ctx.pop(osz)
        ctx.code += bytes(pfx) + b"\x9C" + bytes(pfx) + b"\x9D"
        ctx.desc.append("PUSHF 9C; POPF 9D")
        return
    ctx.push(osz)
    ctx.pop(osz)
    ctx.code += bytes(pfx) + b"\x68" + imm_bytes(image, osz) + bytes(pfx) + b"\x9D"
    ctx.flags(0, ARITH | DF, 0)
    ctx.df = 1 if image & DF else 0
    ctx.desc.append(f"PUSH 68 Iz; POPF 9D image={image:#x}"
                    f"{' o16' if osz == 2 and ctx.mode == 32 else ' o32' if osz == 4 and ctx.mode == 16 else ''}")


def _ensure_ebp(ctx, need_lo):
    """EBP must point into the stack page (>= need_lo); pin it if free."""
    ebp = ctx.known(EBP)
    esp = ctx.known(ESP)
    if esp is None:
        raise Reject("ESP unknown")
    if ebp is None:
        if ctx.state[EBP] is UNKNOWN:
            raise Reject("EBP unknown")
        target = min(max((esp & ctx.smask) + 4 * ctx.rint(0, 12), need_lo), STACK_END - 8)
        upper = 0 if ctx.mode == 32 else ctx.choice((0, 0xABCD, 0xFFFF))
        ctx._pin(EBP, (upper << 16) | target)
        ebp = ctx.known(EBP)
    b = ebp & ctx.smask
    if not (need_lo <= b <= STACK_END - 8) or (ctx.mode == 32 and ebp >> 16 != 0):
        raise Reject("EBP outside the stack page")
    return ebp


def emit_enter(ctx, row):
    osz, pfx = _stack_osz(ctx)
    alloc = ctx.choice((0, 4, 8, 0x10, 3, 0x20)) if ctx.coin(0.7) else ctx.rint(0, 0x40)
    level = ctx.choice((0, 0, 1, 2, 3)) if ctx.coin(0.9) else ctx.choice((32, 33))
    lvl = level % 32
    if lvl > 1:
        _ensure_ebp(ctx, STACK_BASE + 0x40 + osz * lvl)
    ebp = ctx.value(EBP)
    ctx.push(osz)                          # push EBP; FrameTemp = ESP
    esp_after = ctx.known(ESP)
    for _ in range(lvl - 1 if lvl else 0):
        ctx.push(osz)
    if lvl:
        ctx.push(osz)
    esp = ctx.known(ESP)
    new_esp = (esp & ~ctx.smask) | ((esp - alloc) & ctx.smask)
    if not STACK_BASE + 0x40 <= new_esp & ctx.smask:
        raise Reject("stack overflow")
    ctx.set_known(ESP, new_esp)
    if osz == 4:
        ctx.set_known(EBP, esp_after)
    elif ebp is not None:
        ctx.set_known(EBP, (ebp & 0xFFFF0000) | (esp_after & 0xFFFF))
    else:
        ctx.clobber(EBP)
    ctx.code += bytes(pfx) + b"\xC8" + imm_bytes(alloc, 2) + bytes([level])
    ctx.desc.append(f"ENTER C8 Iw,Ib alloc={alloc} level={level}"
                    f"{' o16' if osz == 2 and ctx.mode == 32 else ' o32' if osz == 4 and ctx.mode == 16 else ''}")


def emit_leave(ctx, row):
    osz, pfx = _stack_osz(ctx)
    ebp = _ensure_ebp(ctx, STACK_BASE + 0x40)
    esp = ctx.known(ESP)
    ctx.set_known(ESP, (esp & ~ctx.smask) | (ebp & ctx.smask))
    ctx.pop(osz)
    ctx.clobber(EBP)
    ctx.code += bytes(pfx) + b"\xC9"
    ctx.desc.append(f"LEAVE C9{' o16' if osz == 2 and ctx.mode == 32 else ' o32' if osz == 4 and ctx.mode == 16 else ''}")


# -- control flow templates --------------------------------------------------

def _fillers(ctx, lo, hi):
    n = ctx.rint(lo, hi)
    saved = ctx.no_mem
    ctx.no_mem = True
    try:
        for _ in range(n):
            for _try in range(4):
                if _emit_inner(ctx, ctx.choice(FILLER_ROWS)):
                    break
    finally:
        ctx.no_mem = saved


def _emit_inner(ctx, row):
    snap = ctx.snapshot()
    try:
        emit_generic(ctx, row)
        ctx.rows.append(row)
        return True
    except Reject:
        ctx.restore(snap)
        return False


def _jz_size(ctx):
    osz = 4 if ctx.mode == 32 else 2
    if ctx.coin(0.25):
        return 6 - osz, [0x66]
    return osz, []


def _patch_rel(ctx, pos, size, target):
    """Patch the rel field ending at ``pos + size`` to reach ``target`` (code offsets)."""
    rel = target - (pos + size)
    lim = 1 << (8 * size - 1)
    if not -lim <= rel < lim:
        raise Reject("branch out of range")
    ctx.code[pos:pos + size] = imm_bytes(rel, size)


def emit_jcc(ctx, row):
    ctx.monotone = True
    p = parse(row)
    if ctx.coin(0.7):
        for _ in range(3):
            if _emit_inner(ctx, ctx.choice(SETTER_ROWS)):
                break
    cc = CC.index(row.mnem[1:])
    ctx.flags(CC_READS[cc], 0, 0)
    if p.ops[0] == "Jb":
        size, pfx = 1, []
    else:
        size, pfx = _jz_size(ctx)
    ctx.code += bytes(pfx) + p.opbytes
    pos = len(ctx.code)
    ctx.code += bytes(size)
    ctx.desc.append(f"{row}{' rel16' if size == 2 else ''}")
    _fillers(ctx, 0, 3)
    _patch_rel(ctx, pos, size, len(ctx.code))
    _fillers(ctx, 0, 2)


def emit_jmp(ctx, row):
    ctx.monotone = True
    p = parse(row)
    if p.ops[0] in ("Jb", "Jz"):
        if p.ops[0] == "Jb":
            size, pfx = 1, []
        else:
            size, pfx = _jz_size(ctx)
        ctx.code += bytes(pfx) + p.opbytes
        pos = len(ctx.code)
        ctx.code += bytes(size)
        ctx.desc.append(str(row))
        _fillers(ctx, 0, 3)
        _patch_rel(ctx, pos, size, len(ctx.code))
        _fillers(ctx, 0, 2)
        return
    _, set_target = _indirect(ctx, row, call=False)
    _fillers(ctx, 0, 3)
    set_target(len(ctx.code))
    _fillers(ctx, 0, 2)


def _indirect(ctx, row, call):
    """JMP/CALL r/m (FF /4, FF /2) to a target laid out later in the snippet."""
    mode = ctx.mode
    osz, pfx = _jz_size(ctx)
    asz = 4 if mode == 32 else 2
    if ctx.coin(0.3):
        asz = 6 - asz
        pfx.append(0x67)
    digit = 2 if call else 4
    memf = None
    if ctx.coin(0.5):
        rm = ctx.rint(0, 7)
        if rm == ESP or ctx.state[rm] is not FREE:
            raise Reject("target register not free")
        mod = 3
        ctx.protect.add(rm)
    else:
        memf = mem_operand(ctx, asz, osz, data_only=True)
        mod, rm = memf.mod, memf.rm
        sp = ctx.seg_prefix(False)
        if sp is not None:
            pfx.append(sp)
    code = bytearray(_prefix_bytes(ctx, pfx)) + b"\xFF" + bytes([(mod << 6) | (digit << 3) | rm])
    if memf is not None:
        if memf.sib is not None:
            code.append(memf.sib)
        code += memf.disp
    ctx.code += code
    ctx.desc.append(f"{'CALL FF /2' if call else 'JMP FF /4'} Ev{' o16' if osz == 2 and mode == 32 else ' o32' if osz == 4 and mode == 16 else ''}")

    def set_target(off):
        target = CODE_BASE + off
        if memf is None:
            ctx.protect.discard(rm)
            if not ctx.want(rm, target, (1 << (8 * osz)) - 1):
                raise Reject("target register taken")
        else:
            ctx.pin_mem(memf.ea, target, osz)
    return osz, set_target


def emit_loop(ctx, row):
    ctx.monotone = True
    m = row.mnem
    mode = ctx.mode
    asz = 4 if mode == 32 else 2
    pfx = []
    if ctx.coin(0.3):
        asz = 6 - asz
        pfx.append(0x67)
    amask = 0xFFFFFFFF if asz == 4 else 0xFFFF
    if m == "JNZ":
        amask = 0xFFFFFFFF if mode == 32 else 0xFFFF
        pfx = []
    if m == "JCXZ":
        v = ctx.choice((0, 1, 0x10000, 0xFFFF, 0x12340000, 5))
        if not ctx.want(ECX, v):
            raise Reject("ECX taken")
        ctx.code += bytes(pfx) + b"\xE3"
        pos = len(ctx.code)
        ctx.code += b"\0"
        ctx.desc.append(f"{row}{' a16' if asz == 2 and mode == 32 else ' a32' if asz == 4 and mode == 16 else ''}")
        _fillers(ctx, 0, 3)
        _patch_rel(ctx, pos, 1, len(ctx.code))
        _fillers(ctx, 0, 2)
        return
    n = ctx.rint(1, 6)
    if not ctx.want(ECX, n, amask):
        raise Reject("ECX taken")
    ctx.protect.add(ECX)
    top = len(ctx.code)
    _fillers(ctx, 1, 3)
    if m == "JNZ":
        ctx.protect.discard(ECX)
        ctx.code += b"\x49"          # dec ecx / dec cx
        ctx.flags(0, ARITH & ~CF, 0)
        ctx.code += b"\x75"
    else:
        if m != "LOOP":
            ctx.flags(ZF, 0, 0)
            # unicorn: LOOPE/LOOPNE clobber the arithmetic flags when the count reaches 0
            ctx.unicorn_bug(ARITH)
        ctx.code += bytes(pfx) + parse(row).opbytes
    pos = len(ctx.code)
    ctx.code += b"\0"
    _patch_rel(ctx, pos, 1, top)
    ctx.protect.discard(ECX)
    ctx.clobber(ECX)
    ctx.desc.append(f"{'DEC ECX; JNZ back' if m == 'JNZ' else row} n={n}"
                    f"{' a16' if asz == 2 and mode == 32 else ' a32' if asz == 4 and mode == 16 else ''}")


def emit_call(ctx, row):
    ctx.monotone = True
    if row.mnem == "RET" and row.opcode == "C3":
        imm = None
    elif row.mnem == "RET":
        imm = ctx.choice((0, 2, 4, 8, 1, 3, 0x10, 6))
    else:
        imm = None if ctx.coin(0.6) else ctx.choice((0, 2, 4, 8, 3))
    ctx.protect.add(ESP)
    try:
        if row.mnem == "CALL" and row.opcode == "FF /2":
            osz, set_target = _indirect(ctx, row, call=True)
        else:
            osz, pfx = _jz_size(ctx)
            ctx.code += bytes(pfx) + b"\xE8"
            pos = len(ctx.code)
            ctx.code += bytes(osz)
            ctx.desc.append(f"CALL E8 Jz{' o16' if osz == 2 and ctx.mode == 32 else ' o32' if osz == 4 and ctx.mode == 16 else ''}")

            def set_target(off, pos=pos, osz=osz):
                _patch_rel(ctx, pos, osz, off)
        esp = ctx.known(ESP)
        if esp is None:
            raise Reject("ESP unknown")
        ctx.protect.discard(ESP)
        ctx.push(osz)
        ctx.protect.add(ESP)
        _fillers(ctx, 0, 2)                   # after the call returns
        ctx.code += b"\xEB\0"                 # jmp over the function
        jpos = len(ctx.code) - 1
        func = len(ctx.code)
        _fillers(ctx, 0, 2)                   # function body
        rpfx = b"\x66" if osz != (4 if ctx.mode == 32 else 2) else b""
        if imm is None:
            ctx.code += rpfx + b"\xC3"
        else:
            ctx.code += rpfx + b"\xC2" + imm_bytes(imm, 2)
        ctx.protect.discard(ESP)
        ctx.pop(osz + (imm or 0))
        _patch_rel(ctx, jpos, 1, len(ctx.code))
        set_target(func)
        ctx.desc.append(f"RET {'C3' if imm is None else f'C2 {imm}'}")
    finally:
        ctx.protect.discard(ESP)


SPECIAL = {
    "XLAT": emit_xlat,
    "CBW": emit_simple, "CWD": emit_simple, "LAHF": emit_simple, "SAHF": emit_simple, "CLC": emit_simple,
    "STC": emit_simple, "CMC": emit_simple, "CLD": emit_simple, "STD": emit_simple, "SALC": emit_simple,
    "INT3": emit_simple, "INTO": emit_simple, "UD2": emit_simple, "DAA": emit_simple, "DAS": emit_simple,
    "AAA": emit_simple, "AAS": emit_simple,
    "MOVS": emit_string, "CMPS": emit_string, "STOS": emit_string, "LODS": emit_string, "SCAS": emit_string,
    "PUSH": emit_push_pop, "POP": emit_push_pop, "PUSHA": emit_push_pop, "POPA": emit_push_pop,
    "PUSHF": emit_pushf_popf, "POPF": emit_pushf_popf, "ENTER": emit_enter, "LEAVE": emit_leave,
    "JMP": emit_jmp, "LOOP": emit_loop, "LOOPE": emit_loop, "LOOPNE": emit_loop, "JCXZ": emit_loop,
    "CALL": emit_call, "RET": emit_call,
}


def _nop(ctx, row):
    if row.opcode == "90":
        emit_simple(ctx, row)
    else:
        emit_generic(ctx, row)


SPECIAL["NOP"] = _nop


# --------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------

def _initial_esp(ctx):
    if ctx.family == "stack":
        return STACK_TOP - 4 * ctx.rint(0, 32)
    return STACK_TOP


def generate(seed: int, family: str, group: str, mode: int) -> "GenSnippet":
    """The snippet of ``family``/``group`` in ``mode`` determined by ``seed``."""
    rows, (nmin, nmax) = FAMILIES[family][group]
    ctx = Ctx(random.Random(seed), mode, family)
    ctx.seed, ctx.group = seed, group
    if group == "segovr":
        ctx.force_seg = ctx.cs_write_ok = True
    ctx._pin(ESP, _initial_esp(ctx))
    # initial flags: random arithmetic flags and DF; TF/IF and the rest 0, bit 1 set
    ef = 0x2
    for f in (CF, PF, AF, ZF, SF, OF):
        if ctx.coin(0.5):
            ef |= f
    if ctx.coin(0.5 if family == "string" else 0.2):
        ef |= DF
        ctx.df = 1
    ctx.eflags0 = ef
    n = ctx.rint(nmin, nmax)
    for _ in range(n):
        for _try in range(6):
            if emit(ctx, ctx.choice(rows)):
                break
    if not ctx.code:
        # everything rejected: fall back to a NOP so that the example is still valid
        ctx.code += b"\x90"
        ctx.desc.append("NOP 90 (fallback)")
    return finish(ctx, family, group)


def snippets(family: str, group: str, mode: int):
    """Hypothesis strategy of snippets of one family/group in one mode.

    Hypothesis draws one 64-bit seed per example (reproducible under
    ``derandomize=True``); the program, register file and data page are
    expanded from it by ``generate``.  (Drawing every choice through
    hypothesis made its example mutator emit many near-identical programs.)
    """
    return st.integers(0, 2 ** 64 - 1).map(lambda seed: generate(seed, family, group, mode))


def finish(ctx: Ctx, family: str, group: str) -> GenSnippet:
    regs = {}
    for r in range(8):
        regs[REG_NAMES[r]] = ctx.init[r] if r in ctx.init else ctx.rand(4)
    regs["eflags"] = ctx.eflags0
    data = bytearray(ctx.rng.randbytes(PAGE))
    for a, b in ctx.mem.items():
        data[a - DATA_BASE] = b
    label = (f"{family}/{group} mode{ctx.mode} (gen.generate({ctx.seed:#x}, {family!r}, {group!r}, {ctx.mode})): "
             + "; ".join(ctx.desc))
    parts = tuple(ctx.parts) if family not in ("control",) else ()
    return GenSnippet(mode=ctx.mode, code=bytes(ctx.code), regs=regs, data=bytes(data),
                      flags_mask=0xFFFFFFFF & ~(ctx.undef | ctx.sticky), label=label, parts=parts,
                      faults=frozenset(ctx.faults), family=family, rows=tuple(ctx.rows))
