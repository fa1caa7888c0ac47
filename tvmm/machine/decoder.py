"""Table-driven IA-32 instruction decoder.

``decode(buf, pos, code32)`` reads one instruction from ``buf`` and returns an
immutable-by-convention ``Insn``: the handler to call plus every operand the
handler needs.  Handlers never fetch bytes themselves.

Invariants:
- Decoding never raises an architectural exception.  An opcode the table does
  not define (or a LOCK where none is allowed, or a register form of an
  M-only operand) decodes to an ``Insn`` whose handler raises #UD, so the
  fault happens when, and only if, the instruction executes.
- If the instruction runs past the end of ``buf`` the decoder raises
  ``NeedBytes``; the caller supplies more (the next page) or, at the segment
  limit, raises #GP itself.
- An instruction longer than 15 bytes decodes to a #GP(0) handler.
"""

from __future__ import annotations

from .addressing import absolute, decode_modrm_address
from .optable import GROUPS, ONE_BYTE, PREFIXES, SEG_PREFIX, STRING_OPS, TWO_BYTE, x87_row
from . import registry

MAX_LEN = 15


class NeedBytes(Exception):
    """The instruction continues past the end of the buffer."""


class Insn:
    """One decoded instruction.

    eip/next  offsets in CS of this and the following instruction
    osz/asz   operand and address size in bytes (1/2/4 and 2/4)
    reg       ModRM reg field (register number, or the segment/CR/DR number)
    rm        register number for a register operand, -1 for memory
    eoff/ea/eaw  memory operand closures (see addressing.py), None without one
    addr      the memory operand's ``Address`` (base, index, scale, disp, seg),
              which the block translator inlines; None without one
    seg       segment of the memory operand (or of DS:eSI for string ops)
    imm, imm2 immediates; for J operands (``jrel``) ``imm`` is the displacement
              until ``bind(eip)`` turns it into the absolute target offset
    rep       0, 0xF3 (REP/REPE) or 0xF2 (REPNE)
    """

    __slots__ = ("fn", "eip", "next", "len", "osz", "asz", "reg", "rm", "eoff", "ea", "eaw",
                 "seg", "imm", "imm2", "rep", "lock", "mnem", "spec", "ends", "raw", "op", "jrel", "addr")

    def __init__(self):
        self.fn = None
        self.eip = self.next = 0
        self.len = 0
        self.osz = 4
        self.asz = 4
        self.reg = 0
        self.rm = -1
        self.eoff = self.ea = self.eaw = None
        self.addr = None
        self.seg = 3
        self.imm = 0
        self.imm2 = 0
        self.rep = 0
        self.lock = False
        self.mnem = ""
        self.spec = ""
        self.ends = False
        self.raw = b""
        self.op = 0
        self.jrel = False

    def __repr__(self) -> str:
        return f"<Insn {self.mnem} {self.spec} @{self.eip:#x} len={self.len} raw={self.raw.hex()}>"


def _has_modrm(spec: str, _cache: dict = {}) -> bool:
    """True when an operand is ModRM-encoded: "Eb", "Gv", "M", "Sw", "Cd",
    the MMX "Pq"/"Qq"/"Nq"...
    (fixed registers such as "DX", "CL" or "CS" are not)."""
    r = _cache.get(spec)
    if r is None:
        r = _cache[spec] = any(t[0] in "EGMRSCDPQN" and (len(t) == 1 or t[1].islower())
                               for t in spec.split(",") if t)
    return r


def _sx8(v: int) -> int:
    return v - 256 if v & 0x80 else v


def _imm(buf, pos: int, n: int) -> int:
    if len(buf) < pos + n:
        raise NeedBytes
    return int.from_bytes(buf[pos:pos + n], "little")


def decode(buf, pos: int, code32: bool) -> Insn:
    """Decode the instruction at ``buf[pos]`` for a CS with D=``code32``."""
    try:
        return _decode(buf, pos, code32)
    except IndexError:
        raise NeedBytes from None


def _decode(buf, pos: int, code32: bool) -> Insn:
    start = pos
    d = Insn()
    o32 = a32 = code32
    seg_override = None
    rep = 0
    lock = False
    while True:
        b = buf[pos]
        if b not in PREFIXES:
            break
        pos += 1
        if b == 0x66:
            o32 = not code32
        elif b == 0x67:
            a32 = not code32
        elif b == 0xF0:
            lock = True
        elif b in (0xF2, 0xF3):
            rep = b
        else:
            seg_override = SEG_PREFIX[b]
        if pos - start >= MAX_LEN:
            return _bad(d, buf, start, pos, "GP")
    pos += 1
    if b == 0x0F:
        b2 = buf[pos]
        pos += 1
        row = TWO_BYTE.get(b2)
        opcode = 0x0F00 | b2
    else:
        row = ONE_BYTE.get(b)
        opcode = b
    d.osz = 4 if o32 else 2
    d.asz = 4 if a32 else 2
    d.rep = rep
    d.lock = lock
    d.op = opcode
    if row is None:
        return _bad(d, buf, start, pos, "UD")
    mnem, spec, flags = row
    modrm = None
    needs_modrm = mnem.startswith("GRP") or _has_modrm(spec)
    if needs_modrm:
        modrm = buf[pos]
        pos += 1
        reg = (modrm >> 3) & 7
        d.reg = reg
        if mnem.startswith("GRP"):
            grow = GROUPS[mnem][reg]
            if grow is None:
                return _bad(d, buf, start, pos, "UD")
            gm, gspec, gflags = grow
            if gspec == "EI":
                gspec = spec + (",Ib" if spec == "Eb" else ",Iz")
            elif gspec is None:
                gspec = spec
            if mnem == "GRP7" and modrm >> 6 == 3:
                if gm not in ("SMSW", "LMSW"):
                    return _bad(d, buf, start, pos, "UD")
            mnem, spec, flags = gm, gspec, gflags
        elif mnem == "ESC":                    # x87: the ModRM byte selects the row
            xrow = x87_row(opcode, modrm)
            if xrow is None:
                return _bad(d, buf, start, pos, "UD")
            mnem, spec, flags = xrow
        if modrm >> 6 == 3 or spec[:1] == "R" or spec.endswith(",Rd"):
            # MOV to/from CRn/DRn ignores mod: the operand is always a register.
            d.rm = modrm & 7
        else:
            addr, pos = decode_modrm_address(buf, pos, modrm, a32, seg_override)
            d.seg = addr.seg
            d.addr = addr
            d.eoff, d.ea, d.eaw = addr.closures()
    toks = [t for t in spec.split(",") if t]
    nimm = 0
    for t in toks:
        k = t[0]
        if (k == "M" and d.rm >= 0) or (k == "N" and d.rm < 0):
            return _bad(d, buf, start, pos, "UD")
        if k == "I":
            if t in ("Ib", "Ibs"):
                v = buf[pos]
                pos += 1
                if t == "Ibs":
                    v = _sx8(v) & (0xFFFFFFFF if o32 else 0xFFFF)
            else:
                n = 2 if t == "Iw" or not o32 else 4
                v = _imm(buf, pos, n)
                pos += n
            if nimm:
                d.imm2 = v
            else:
                d.imm = v
            nimm += 1
        elif k == "J":
            n = 1 if t == "Jb" else (4 if o32 else 2)
            v = _imm(buf, pos, n)
            pos += n
            d.imm = v - (1 << (8 * n)) if v >> (8 * n - 1) else v
            d.jrel = True
        elif t == "Ap":
            n = 4 if o32 else 2
            d.imm = _imm(buf, pos, n)
            d.imm2 = _imm(buf, pos + n, 2)
            pos += n + 2
        elif k == "O":
            n = 4 if a32 else 2
            off = _imm(buf, pos, n)
            pos += n
            addr = absolute(off, 3 if seg_override is None else seg_override, a32)
            d.seg = addr.seg
            d.addr = addr
            d.eoff, d.ea, d.eaw = addr.closures()
    if mnem in STRING_OPS or mnem == "XLAT":   # implicit DS:eSI / DS:eBX operand
        d.seg = 3 if seg_override is None else seg_override
    if lock and ("L" not in flags or d.rm >= 0):
        return _bad(d, buf, start, pos, "UD")
    if pos - start > MAX_LEN:
        return _bad(d, buf, start, pos, "GP")
    if "Z" in spec:
        d.reg = opcode & 7
        d.rm = opcode & 7
    d.len = pos - start
    d.mnem = mnem
    d.spec = spec
    d.ends = "j" in flags or (mnem in STRING_OPS and rep != 0)
    d.raw = bytes(buf[start:pos])
    d.fn = registry.resolve(mnem, spec, d)
    return d


def _bad(d: Insn, buf, start: int, pos: int, kind: str) -> Insn:
    d.len = max(1, pos - start)
    d.raw = bytes(buf[start:start + d.len])
    d.mnem = "(bad)"
    d.spec = ""
    d.ends = True
    d.fn = registry.raise_ud if kind == "UD" else registry.raise_gp0
    return d


def bind(d: Insn, eip: int, code32: bool) -> Insn:
    """Place a decoded instruction at CS offset ``eip``: fills eip/next and
    turns a relative branch displacement into the absolute target."""
    d.eip = eip
    d.next = (eip + d.len) & (0xFFFFFFFF if code32 else 0xFFFF)
    if d.jrel:
        d.imm = (d.next + d.imm) & (0xFFFFFFFF if d.osz == 4 else 0xFFFF)
        d.jrel = False
    return d
