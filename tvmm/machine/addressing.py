"""ModRM/SIB effective addresses, compiled once per addressing form.

Decoding turns an addressing form such as ``[ebx+esi*4+disp]`` with a segment
into three small closures, stored on the decoded instruction:

  ``eoff(cpu)``  the offset within the segment (LEA, string setup, far pointers)
  ``ea(cpu)``    the linear address for a *read*, after the segment limit check
  ``eaw(cpu)``   the linear address for a *write* (or read-modify-write)

Invariant: ``ea``/``eaw`` either return a linear address whose first byte is
inside the segment's limits for that kind of access, or raise #GP/#SS through
``cpu.seg_fault``.  The check covers the first byte of the operand only; the
oracle (unicorn) does not model limits at all, and real kernels use flat or
real-mode segments, so the cheaper check is a documented simplification.
"""

from __future__ import annotations

from .consts import SS_SEG, DS

_FACTORIES: dict = {}

_EA_TEMPLATE = """
def make(disp):
    def {name}(cpu):
        r = cpu.regs
        off = {expr}
        if off > cpu.{hi}[{seg}] or off < cpu.seg_lo[{seg}]:
            cpu.seg_fault({seg}, off)
        return (cpu.seg_base[{seg}] + off) & 0xFFFFFFFF
    return {name}
"""

_OFF_TEMPLATE = """
def make(disp):
    def eoff(cpu):
        r = cpu.regs
        return {expr}
    return eoff
"""

# 16-bit addressing forms (SDM vol. 2, table 2-1): (base, index) register numbers
RM16 = ((3, 6), (3, 7), (5, 6), (5, 7), (6, None), (7, None), (5, None), (3, None))


def _expr(base, index, scale, a32: bool) -> str:
    terms = []
    if base is not None:
        terms.append(f"r[{base}]")
    if index is not None:
        terms.append(f"(r[{index}] << {scale})" if scale else f"r[{index}]")
    terms.append("disp")
    mask = "0xFFFFFFFF" if a32 else "0xFFFF"
    if len(terms) == 1:
        return "disp"
    return f"({' + '.join(terms)}) & {mask}"


def _factory(kind: str, base, index, scale, seg, a32):
    key = (kind, base, index, scale, seg, a32)
    f = _FACTORIES.get(key)
    if f is None:
        expr = _expr(base, index, scale, a32)
        if kind == "off":
            src = _OFF_TEMPLATE.format(expr=expr)
        else:
            src = _EA_TEMPLATE.format(name="eaw" if kind == "w" else "ea", expr=expr,
                                      hi="seg_whi" if kind == "w" else "seg_hi", seg=seg)
        ns: dict = {}
        exec(compile(src, f"<ea {key}>", "exec"), ns)
        f = _FACTORIES[key] = ns["make"]
    return f


class Address:
    """A decoded memory operand: offset expression plus segment."""

    __slots__ = ("base", "index", "scale", "disp", "seg", "a32")

    def __init__(self, base, index, scale, disp, seg, a32):
        self.base, self.index, self.scale, self.disp, self.seg, self.a32 = base, index, scale, disp, seg, a32

    def closures(self):
        disp = self.disp & (0xFFFFFFFF if self.a32 else 0xFFFF)
        args = (self.base, self.index, self.scale, self.seg, self.a32)
        return (_factory("off", *args)(disp), _factory("r", *args)(disp), _factory("w", *args)(disp))


def decode_modrm_address(buf, pos: int, modrm: int, a32: bool, seg_override):
    """Decode the memory form of ``modrm`` starting after it at ``buf[pos]``.

    Returns ``(Address, new_pos)``.  ``buf`` indexing past its end raises
    IndexError, which the decoder turns into "need more bytes".
    """
    mod, rm = modrm >> 6, modrm & 7
    if a32:
        base = index = None
        scale = 0
        seg = DS
        if rm == 4:
            sib = buf[pos]
            pos += 1
            scale, idx, b = sib >> 6, (sib >> 3) & 7, sib & 7
            if idx != 4:
                index = idx
            if b == 5 and mod == 0:
                if len(buf) < pos + 4:
                    raise IndexError
                disp = int.from_bytes(buf[pos:pos + 4], "little")
                pos += 4
            else:
                base = b
                disp = 0
            if base in (4, 5):
                seg = SS_SEG
        elif rm == 5 and mod == 0:
            if len(buf) < pos + 4:
                raise IndexError
            disp = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            base, disp = rm, 0
            if rm == 5:
                seg = SS_SEG
        if mod == 1:
            d8 = buf[pos]
            pos += 1
            disp = (disp + (d8 - 256 if d8 & 0x80 else d8)) & 0xFFFFFFFF
        elif mod == 2:
            if len(buf) < pos + 4:
                raise IndexError
            disp = (disp + int.from_bytes(buf[pos:pos + 4], "little")) & 0xFFFFFFFF
            pos += 4
    else:
        scale = 0
        if mod == 0 and rm == 6:
            if len(buf) < pos + 2:
                raise IndexError
            base = index = None
            disp = int.from_bytes(buf[pos:pos + 2], "little")
            pos += 2
            seg = DS
        else:
            base, index = RM16[rm]
            seg = SS_SEG if base == 5 else DS
            disp = 0
            if mod == 1:
                d8 = buf[pos]
                pos += 1
                disp = (d8 - 256 if d8 & 0x80 else d8) & 0xFFFF
            elif mod == 2:
                if len(buf) < pos + 2:
                    raise IndexError
                disp = int.from_bytes(buf[pos:pos + 2], "little")
                pos += 2
    if seg_override is not None:
        seg = seg_override
    return Address(base, index, scale, disp, seg, a32), pos


def absolute(offset: int, seg: int, a32: bool) -> Address:
    """A moffs operand (``mov al, [1234h]``)."""
    return Address(None, None, 0, offset, seg, a32)
