"""The IA-32 opcode map, one row per instruction form, in the SDM's notation.

This table is the single source of truth for decoding: the decoder reads the
operand notation to know whether a ModRM byte and which immediates follow, and
looks up the handler registered for ``(mnemonic, operands)``.

Operand notation (SDM vol. 2, appendix A.2):
  E  ModRM r/m (register or memory)   G  ModRM reg (general register)
  M  ModRM r/m, memory only           R  ModRM r/m, register only
  S  ModRM reg selects a segment reg  C/D ModRM reg selects CRn / DRn
  I  immediate ("Ibs": byte sign-extended to the operand size)
  J  relative branch target            O  moffs (absolute offset, address size)
  A  far pointer (offset:selector)     X/Y  DS:eSI / ES:eDI string operands
  Z  register in the opcode's low three bits
  P/Q/N  MMX: ModRM reg / r/m register or memory / r/m register only
  ST/STi x87: ST(0) / ST(i) with i = ModRM rm (rows in ``X87``, below)
  sizes: b byte, w word, d dword, v word or dword by operand size,
         z like v for immediates, p far pointer, a bound pair, s pseudo-descriptor, q qword,
         t ten bytes (m80fp, m80bcd)
  Fixed registers are written by name: AL, eAX, CL, DX, 1 (shift by one).

Row flags:
  j  ends a translated block (control transfer, or changes state that decoding,
     fetching or interrupt delivery of the next instruction depends on)
  L  may take a LOCK prefix (with a memory destination)
"""

from __future__ import annotations

Row = tuple  # (mnemonic, operands, flags)

ALU = ("ADD", "OR", "ADC", "SBB", "AND", "SUB", "XOR", "CMP")
CC = ("O", "NO", "B", "NB", "Z", "NZ", "BE", "NBE", "S", "NS", "P", "NP", "L", "NL", "LE", "NLE")

ONE_BYTE: dict[int, Row] = {}
TWO_BYTE: dict[int, Row] = {}
GROUPS: dict[str, tuple] = {}


def _alu_rows() -> None:
    for i, m in enumerate(ALU):
        lk = "" if m == "CMP" else "L"
        base = i * 8
        ONE_BYTE[base + 0] = (m, "Eb,Gb", lk)
        ONE_BYTE[base + 1] = (m, "Ev,Gv", lk)
        ONE_BYTE[base + 2] = (m, "Gb,Eb", "")
        ONE_BYTE[base + 3] = (m, "Gv,Ev", "")
        ONE_BYTE[base + 4] = (m, "AL,Ib", "")
        ONE_BYTE[base + 5] = (m, "eAX,Iz", "")


_alu_rows()
ONE_BYTE.update({
    0x06: ("PUSH", "ES", ""), 0x07: ("POP", "ES", ""),
    0x0E: ("PUSH", "CS", ""),
    0x16: ("PUSH", "SS", ""), 0x17: ("POP", "SS", "j"),
    0x1E: ("PUSH", "DS", ""), 0x1F: ("POP", "DS", ""),
    0x27: ("DAA", "", ""), 0x2F: ("DAS", "", ""), 0x37: ("AAA", "", ""), 0x3F: ("AAS", "", ""),
    0x60: ("PUSHA", "", ""), 0x61: ("POPA", "", ""),
    0x62: ("BOUND", "Gv,Ma", ""), 0x63: ("ARPL", "Ew,Gw", ""),
    0x68: ("PUSH", "Iz", ""), 0x69: ("IMUL", "Gv,Ev,Iz", ""),
    0x6A: ("PUSH", "Ibs", ""), 0x6B: ("IMUL", "Gv,Ev,Ibs", ""),
    0x6C: ("INS", "Yb,DX", "j"), 0x6D: ("INS", "Yz,DX", "j"),
    0x6E: ("OUTS", "DX,Xb", "j"), 0x6F: ("OUTS", "DX,Xz", "j"),
    0x80: ("GRP1", "Eb,Ib", ""), 0x81: ("GRP1", "Ev,Iz", ""),
    0x82: ("GRP1", "Eb,Ib", ""), 0x83: ("GRP1", "Ev,Ibs", ""),
    0x84: ("TEST", "Eb,Gb", ""), 0x85: ("TEST", "Ev,Gv", ""),
    0x86: ("XCHG", "Eb,Gb", "L"), 0x87: ("XCHG", "Ev,Gv", "L"),
    0x88: ("MOV", "Eb,Gb", ""), 0x89: ("MOV", "Ev,Gv", ""),
    0x8A: ("MOV", "Gb,Eb", ""), 0x8B: ("MOV", "Gv,Ev", ""),
    0x8C: ("MOV", "Ev,Sw", ""), 0x8D: ("LEA", "Gv,M", ""),
    0x8E: ("MOV", "Sw,Ew", "j"), 0x8F: ("GRP1A", "Ev", ""),
    0x90: ("NOP", "", ""),
    0x98: ("CBW", "", ""), 0x99: ("CWD", "", ""),
    0x9A: ("CALLF", "Ap", "j"), 0x9B: ("WAIT", "", ""),
    0x9C: ("PUSHF", "", ""), 0x9D: ("POPF", "", "j"),
    0x9E: ("SAHF", "", ""), 0x9F: ("LAHF", "", ""),
    0xA0: ("MOV", "AL,Ob", ""), 0xA1: ("MOV", "eAX,Ov", ""),
    0xA2: ("MOV", "Ob,AL", ""), 0xA3: ("MOV", "Ov,eAX", ""),
    0xA4: ("MOVS", "Yb,Xb", ""), 0xA5: ("MOVS", "Yv,Xv", ""),
    0xA6: ("CMPS", "Xb,Yb", ""), 0xA7: ("CMPS", "Xv,Yv", ""),
    0xA8: ("TEST", "AL,Ib", ""), 0xA9: ("TEST", "eAX,Iz", ""),
    0xAA: ("STOS", "Yb,AL", ""), 0xAB: ("STOS", "Yv,eAX", ""),
    0xAC: ("LODS", "AL,Xb", ""), 0xAD: ("LODS", "eAX,Xv", ""),
    0xAE: ("SCAS", "AL,Yb", ""), 0xAF: ("SCAS", "eAX,Yv", ""),
    0xC0: ("GRP2", "Eb,Ib", ""), 0xC1: ("GRP2", "Ev,Ib", ""),
    0xC2: ("RET", "Iw", "j"), 0xC3: ("RET", "", "j"),
    0xC4: ("LES", "Gv,Mp", ""), 0xC5: ("LDS", "Gv,Mp", ""),
    0xC6: ("GRP11", "Eb,Ib", ""), 0xC7: ("GRP11", "Ev,Iz", ""),
    0xC8: ("ENTER", "Iw,Ib", ""), 0xC9: ("LEAVE", "", ""),
    0xCA: ("RETF", "Iw", "j"), 0xCB: ("RETF", "", "j"),
    0xCC: ("INT3", "", "j"), 0xCD: ("INT", "Ib", "j"), 0xCE: ("INTO", "", "j"), 0xCF: ("IRET", "", "j"),
    0xD0: ("GRP2", "Eb,1", ""), 0xD1: ("GRP2", "Ev,1", ""),
    0xD2: ("GRP2", "Eb,CL", ""), 0xD3: ("GRP2", "Ev,CL", ""),
    0xD4: ("AAM", "Ib", ""), 0xD5: ("AAD", "Ib", ""), 0xD6: ("SALC", "", ""), 0xD7: ("XLAT", "", ""),
    0xE0: ("LOOPNZ", "Jb", "j"), 0xE1: ("LOOPZ", "Jb", "j"), 0xE2: ("LOOP", "Jb", "j"), 0xE3: ("JCXZ", "Jb", "j"),
    0xE4: ("IN", "AL,Ib", "j"), 0xE5: ("IN", "eAX,Ib", "j"),
    0xE6: ("OUT", "Ib,AL", "j"), 0xE7: ("OUT", "Ib,eAX", "j"),
    0xE8: ("CALL", "Jz", "j"), 0xE9: ("JMP", "Jz", "j"), 0xEA: ("JMPF", "Ap", "j"), 0xEB: ("JMP", "Jb", "j"),
    0xEC: ("IN", "AL,DX", "j"), 0xED: ("IN", "eAX,DX", "j"),
    0xEE: ("OUT", "DX,AL", "j"), 0xEF: ("OUT", "DX,eAX", "j"),
    0xF1: ("INT1", "", "j"), 0xF4: ("HLT", "", "j"), 0xF5: ("CMC", "", ""),
    0xF6: ("GRP3", "Eb", ""), 0xF7: ("GRP3", "Ev", ""),
    0xF8: ("CLC", "", ""), 0xF9: ("STC", "", ""), 0xFA: ("CLI", "", "j"), 0xFB: ("STI", "", "j"),
    0xFC: ("CLD", "", ""), 0xFD: ("STD", "", ""),
    0xFE: ("GRP4", "Eb", ""), 0xFF: ("GRP5", "Ev", ""),
})
for _r in range(8):
    ONE_BYTE[0x40 + _r] = ("INC", "Zv", "")
    ONE_BYTE[0x48 + _r] = ("DEC", "Zv", "")
    ONE_BYTE[0x50 + _r] = ("PUSH", "Zv", "")
    ONE_BYTE[0x58 + _r] = ("POP", "Zv", "")
    ONE_BYTE[0xB0 + _r] = ("MOV", "Zb,Ib", "")
    ONE_BYTE[0xB8 + _r] = ("MOV", "Zv,Iv", "")
    ONE_BYTE[0xD8 + _r] = ("ESC", "Ev", "")       # x87: the row is chosen from X87 by ModRM
    if _r:
        ONE_BYTE[0x90 + _r] = ("XCHG", "Zv,eAX", "")
for _c in range(16):
    ONE_BYTE[0x70 + _c] = ("J" + CC[_c], "Jb", "j")
    TWO_BYTE[0x80 + _c] = ("J" + CC[_c], "Jz", "j")
    TWO_BYTE[0x90 + _c] = ("SET" + CC[_c], "Eb", "")
    TWO_BYTE[0x40 + _c] = ("CMOV" + CC[_c], "Gv,Ev", "")
for _r in range(8):
    TWO_BYTE[0xC8 + _r] = ("BSWAP", "Zd", "")

TWO_BYTE.update({
    0x00: ("GRP6", "Ew", "j"), 0x01: ("GRP7", "", "j"),
    0x02: ("LAR", "Gv,Ew", ""), 0x03: ("LSL", "Gv,Ew", ""),
    0x06: ("CLTS", "", "j"), 0x08: ("INVD", "", ""), 0x09: ("WBINVD", "", ""),
    0x0B: ("UD2", "", "j"), 0x1F: ("NOP", "Ev", ""),
    0x20: ("MOV", "Rd,Cd", ""), 0x21: ("MOV", "Rd,Dd", ""),
    0x22: ("MOV", "Cd,Rd", "j"), 0x23: ("MOV", "Dd,Rd", "j"),
    0x30: ("WRMSR", "", "j"), 0x31: ("RDTSC", "", ""), 0x32: ("RDMSR", "", ""), 0x33: ("RDPMC", "", ""),
    0x34: ("SYSENTER", "", "j"), 0x35: ("SYSEXIT", "", "j"),
    0xA0: ("PUSH", "FS", ""), 0xA1: ("POP", "FS", ""), 0xA2: ("CPUID", "", ""),
    0xA3: ("BT", "Ev,Gv", ""), 0xA4: ("SHLD", "Ev,Gv,Ib", ""), 0xA5: ("SHLD", "Ev,Gv,CL", ""),
    0xA8: ("PUSH", "GS", ""), 0xA9: ("POP", "GS", ""),
    0xAB: ("BTS", "Ev,Gv", "L"), 0xAC: ("SHRD", "Ev,Gv,Ib", ""), 0xAD: ("SHRD", "Ev,Gv,CL", ""),
    0xAF: ("IMUL", "Gv,Ev", ""),
    0xB0: ("CMPXCHG", "Eb,Gb", "L"), 0xB1: ("CMPXCHG", "Ev,Gv", "L"),
    0xB2: ("LSS", "Gv,Mp", "j"), 0xB3: ("BTR", "Ev,Gv", "L"),
    0xB4: ("LFS", "Gv,Mp", ""), 0xB5: ("LGS", "Gv,Mp", ""),
    0xB6: ("MOVZX", "Gv,Eb", ""), 0xB7: ("MOVZX", "Gv,Ew", ""),
    0xBA: ("GRP8", "Ev,Ib", ""), 0xBB: ("BTC", "Ev,Gv", "L"),
    0xBC: ("BSF", "Gv,Ev", ""), 0xBD: ("BSR", "Gv,Ev", ""),
    0xBE: ("MOVSX", "Gv,Eb", ""), 0xBF: ("MOVSX", "Gv,Ew", ""),
    0xC0: ("XADD", "Eb,Gb", "L"), 0xC1: ("XADD", "Ev,Gv", "L"),
    0xC7: ("GRP9", "", ""),
    0xAE: ("GRP15", "", ""),
})

# MMX (Pentium II): P = MMX register in ModRM.reg, Q = MMX register or
# memory in r/m, N = MMX register in r/m (register form only); the SSE2
# forms (with 0x66) do not exist on this CPU, the prefix is ignored.
_MMX = {
    0x60: "PUNPCKLBW", 0x61: "PUNPCKLWD", 0x62: "PUNPCKLDQ", 0x63: "PACKSSWB", 0x64: "PCMPGTB",
    0x65: "PCMPGTW", 0x66: "PCMPGTD", 0x67: "PACKUSWB", 0x68: "PUNPCKHBW", 0x69: "PUNPCKHWD",
    0x6A: "PUNPCKHDQ", 0x6B: "PACKSSDW", 0x74: "PCMPEQB", 0x75: "PCMPEQW", 0x76: "PCMPEQD",
    0xD1: "PSRLW", 0xD2: "PSRLD", 0xD3: "PSRLQ", 0xD5: "PMULLW", 0xD8: "PSUBUSB", 0xD9: "PSUBUSW",
    0xDB: "PAND", 0xDC: "PADDUSB", 0xDD: "PADDUSW", 0xDF: "PANDN", 0xE1: "PSRAW", 0xE2: "PSRAD",
    0xE5: "PMULHW", 0xE8: "PSUBSB", 0xE9: "PSUBSW", 0xEB: "POR", 0xEC: "PADDSB", 0xED: "PADDSW",
    0xEF: "PXOR", 0xF1: "PSLLW", 0xF2: "PSLLD", 0xF3: "PSLLQ", 0xF5: "PMADDWD", 0xF8: "PSUBB",
    0xF9: "PSUBW", 0xFA: "PSUBD", 0xFC: "PADDB", 0xFD: "PADDW", 0xFE: "PADDD",
}
for _op, _m in _MMX.items():
    TWO_BYTE[_op] = (_m, "Pq,Qd" if _m.startswith("PUNPCKL") else "Pq,Qq", "")
TWO_BYTE.update({
    0x6E: ("MOVD", "Pd,Ed", ""), 0x6F: ("MOVQ", "Pq,Qq", ""),
    0x71: ("GRP12", "Nq,Ib", ""), 0x72: ("GRP13", "Nq,Ib", ""), 0x73: ("GRP14", "Nq,Ib", ""),
    0x77: ("EMMS", "", ""), 0x7E: ("MOVD", "Ed,Pd", ""), 0x7F: ("MOVQ", "Qq,Pq", ""),
})

# Groups: the ModRM reg field selects the row.  None is #UD.  A group row's
# operands, when given, replace those of the opcode row.
GROUPS.update({
    "GRP1": tuple((m, None, "" if m == "CMP" else "L") for m in ALU),
    "GRP1A": (("POP", "Ev", ""), None, None, None, None, None, None, None),
    "GRP2": tuple((m, None, "") for m in ("ROL", "ROR", "RCL", "RCR", "SHL", "SHR", "SHL", "SAR")),
    "GRP3": (("TEST", "EI", ""), ("TEST", "EI", ""), ("NOT", None, "L"), ("NEG", None, "L"),
             ("MUL", None, ""), ("IMUL", None, ""), ("DIV", None, ""), ("IDIV", None, "")),
    "GRP4": (("INC", "Eb", "L"), ("DEC", "Eb", "L"), None, None, None, None, None, None),
    "GRP5": (("INC", "Ev", "L"), ("DEC", "Ev", "L"), ("CALL", "Ev", "j"), ("CALLF", "Mp", "j"),
             ("JMP", "Ev", "j"), ("JMPF", "Mp", "j"), ("PUSH", "Ev", ""), None),
    "GRP6": (("SLDT", "Ev", ""), ("STR", "Ev", ""), ("LLDT", "Ew", ""), ("LTR", "Ew", ""),
             ("VERR", "Ew", ""), ("VERW", "Ew", ""), None, None),
    "GRP7": (("SGDT", "Ms", ""), ("SIDT", "Ms", ""), ("LGDT", "Ms", "j"), ("LIDT", "Ms", "j"),
             ("SMSW", "Ev", ""), None, ("LMSW", "Ew", "j"), ("INVLPG", "Mb", "j")),
    "GRP8": (None, None, None, None, ("BT", None, ""), ("BTS", None, "L"), ("BTR", None, "L"), ("BTC", None, "L")),
    "GRP9": (None, ("CMPXCHG8B", "Mq", "L"), None, None, None, None, None, None),
    "GRP11": (("MOV", None, ""), None, None, None, None, None, None, None),
    # FXSR without SSE (Pentium II): /2 LDMXCSR, /3 STMXCSR and the fences are #UD
    "GRP15": (("FXSAVE", "M", ""), ("FXRSTOR", "M", ""), None, None, None, None, None, None),
    "GRP12": (None, None, ("PSRLW", None, ""), None, ("PSRAW", None, ""), None, ("PSLLW", None, ""), None),
    "GRP13": (None, None, ("PSRLD", None, ""), None, ("PSRAD", None, ""), None, ("PSLLD", None, ""), None),
    "GRP14": (None, None, ("PSRLQ", None, ""), None, None, None, ("PSLLQ", None, ""), None),
})

# x87 escapes D8-DF (SDM vol. 2, A.5).  A memory form is keyed
# ``(opcode, reg)``; a register form ``(opcode, modrm)`` when it stands alone,
# else ``(opcode, reg, "r")`` for a family over ST(i) (i = ModRM rm).  A key
# that is absent is #UD.  Operands: Mw/Md/Mq m16/m32/m64 (int or fp by the
# mnemonic), Mt an 80-bit operand (m80fp or m80bcd), M the 14/28-byte
# environment or 94/108-byte state (by operand size); ST = ST(0), STi = ST(i).
# FISTTP (DB/DD/DF /1) is SSE3: #UD here.  The undocumented aliases the P6
# decodes are included: FCOM2 (DC D0+i), FCOMP3 (DC D8+i), FCOMP5 (DE D0+i),
# FXCH4 (DD C8+i), FXCH7 (DF C8+i), FSTP1 (D9 D8+i), FSTP8/9 (DF D0+i/D8+i),
# FFREEP (DF C0+i).
X87: dict[tuple, Row] = {}


def _x87_rows() -> None:
    arith = ("ADD", "MUL", "COM", "COMP", "SUB", "SUBR", "DIV", "DIVR")
    reverse = {"SUB": "SUBR", "SUBR": "SUB", "DIV": "DIVR", "DIVR": "DIV"}
    for r, m in enumerate(arith):
        X87[(0xD8, r)] = ("F" + m, "Md", "")
        X87[(0xDC, r)] = ("F" + m, "Mq", "")
        X87[(0xDA, r)] = ("FI" + m, "Md", "")
        X87[(0xDE, r)] = ("FI" + m, "Mw", "")
        if m.startswith("COM"):
            X87[(0xD8, r, "r")] = X87[(0xDC, r, "r")] = ("F" + m, "STi", "")
        else:
            X87[(0xD8, r, "r")] = ("F" + m, "ST,STi", "")
            # DC/DE E0-FF: the SDM's reversed encodings (DC E8+i is FSUB ST(i), ST(0))
            X87[(0xDC, r, "r")] = ("F" + reverse.get(m, m), "STi,ST", "")
            X87[(0xDE, r, "r")] = ("F" + reverse.get(m, m) + "P", "STi,ST", "")
    X87[(0xDE, 2, "r")] = ("FCOMP", "STi", "")
    X87[(0xDE, 0xD9)] = ("FCOMPP", "", "")
    X87.update({
        (0xD9, 0): ("FLD", "Md", ""), (0xD9, 2): ("FST", "Md", ""), (0xD9, 3): ("FSTP", "Md", ""),
        (0xD9, 4): ("FLDENV", "M", ""), (0xD9, 5): ("FLDCW", "Mw", ""),
        (0xD9, 6): ("FNSTENV", "M", ""), (0xD9, 7): ("FNSTCW", "Mw", ""),
        (0xD9, 0, "r"): ("FLD", "STi", ""), (0xD9, 1, "r"): ("FXCH", "STi", ""),
        (0xD9, 3, "r"): ("FSTP", "STi", ""),
        (0xDB, 0): ("FILD", "Md", ""), (0xDB, 2): ("FIST", "Md", ""), (0xDB, 3): ("FISTP", "Md", ""),
        (0xDB, 5): ("FLD", "Mt", ""), (0xDB, 7): ("FSTP", "Mt", ""),
        (0xDD, 0): ("FLD", "Mq", ""), (0xDD, 2): ("FST", "Mq", ""), (0xDD, 3): ("FSTP", "Mq", ""),
        (0xDD, 4): ("FRSTOR", "M", ""), (0xDD, 6): ("FNSAVE", "M", ""), (0xDD, 7): ("FNSTSW", "Mw", ""),
        (0xDD, 0, "r"): ("FFREE", "STi", ""), (0xDD, 1, "r"): ("FXCH", "STi", ""),
        (0xDD, 2, "r"): ("FST", "STi", ""), (0xDD, 3, "r"): ("FSTP", "STi", ""),
        (0xDD, 4, "r"): ("FUCOM", "STi", ""), (0xDD, 5, "r"): ("FUCOMP", "STi", ""),
        (0xDF, 0): ("FILD", "Mw", ""), (0xDF, 2): ("FIST", "Mw", ""), (0xDF, 3): ("FISTP", "Mw", ""),
        (0xDF, 4): ("FBLD", "Mt", ""), (0xDF, 5): ("FILD", "Mq", ""), (0xDF, 6): ("FBSTP", "Mt", ""),
        (0xDF, 7): ("FISTP", "Mq", ""),
        (0xDF, 0, "r"): ("FFREEP", "STi", ""), (0xDF, 1, "r"): ("FXCH", "STi", ""),
        (0xDF, 2, "r"): ("FSTP", "STi", ""), (0xDF, 3, "r"): ("FSTP", "STi", ""),
        (0xDF, 0xE0): ("FNSTSW", "AX", ""),
        (0xDF, 5, "r"): ("FUCOMIP", "STi", ""), (0xDF, 6, "r"): ("FCOMIP", "STi", ""),
        (0xDA, 0, "r"): ("FCMOVB", "ST,STi", ""), (0xDA, 1, "r"): ("FCMOVE", "ST,STi", ""),
        (0xDA, 2, "r"): ("FCMOVBE", "ST,STi", ""), (0xDA, 3, "r"): ("FCMOVU", "ST,STi", ""),
        (0xDA, 0xE9): ("FUCOMPP", "", ""),
        (0xDB, 0, "r"): ("FCMOVNB", "ST,STi", ""), (0xDB, 1, "r"): ("FCMOVNE", "ST,STi", ""),
        (0xDB, 2, "r"): ("FCMOVNBE", "ST,STi", ""), (0xDB, 3, "r"): ("FCMOVNU", "ST,STi", ""),
        (0xDB, 0xE0): ("FNENI", "", ""), (0xDB, 0xE1): ("FNDISI", "", ""),
        (0xDB, 0xE2): ("FNCLEX", "", ""), (0xDB, 0xE3): ("FNINIT", "", ""), (0xDB, 0xE4): ("FNSETPM", "", ""),
        (0xDB, 5, "r"): ("FUCOMI", "STi", ""), (0xDB, 6, "r"): ("FCOMI", "STi", ""),
    })
    d9 = {0xD0: "FNOP", 0xE0: "FCHS", 0xE1: "FABS", 0xE4: "FTST", 0xE5: "FXAM",
          0xE8: "FLD1", 0xE9: "FLDL2T", 0xEA: "FLDL2E", 0xEB: "FLDPI", 0xEC: "FLDLG2", 0xED: "FLDLN2",
          0xEE: "FLDZ", 0xF0: "F2XM1", 0xF1: "FYL2X", 0xF2: "FPTAN", 0xF3: "FPATAN", 0xF4: "FXTRACT",
          0xF5: "FPREM1", 0xF6: "FDECSTP", 0xF7: "FINCSTP", 0xF8: "FPREM", 0xF9: "FYL2XP1",
          0xFA: "FSQRT", 0xFB: "FSINCOS", 0xFC: "FRNDINT", 0xFD: "FSCALE", 0xFE: "FSIN", 0xFF: "FCOS"}
    for modrm, m in d9.items():
        X87[(0xD9, modrm)] = (m, "", "")


_x87_rows()


def x87_row(opcode: int, modrm: int):
    """The X87 row for escape ``opcode`` (D8-DF) and its ModRM byte, or None (#UD)."""
    if modrm >= 0xC0:
        return X87.get((opcode, modrm)) or X87.get((opcode, (modrm >> 3) & 7, "r"))
    return X87.get((opcode, (modrm >> 3) & 7))

PREFIXES = frozenset({0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3})
SEG_PREFIX = {0x26: 0, 0x2E: 1, 0x36: 2, 0x3E: 3, 0x64: 4, 0x65: 5}
STRING_OPS = frozenset({"MOVS", "CMPS", "STOS", "LODS", "SCAS", "INS", "OUTS"})
