"""The x87 FPU's architectural state, and its exception bookkeeping.

Invariants:
- ``regs`` are the eight *physical* data registers R0..R7 as raw 80-bit
  ints; ST(i) is R[(top + i) & 7].  ``valid`` has bit i set when Ri is not
  empty (the P6 keeps one tag bit per register, as FXSAVE's abridged tag
  word); the two-bit tags of FNSTENV/FNSAVE are computed from the contents.
- ``sw`` is the status word without TOP (bits 11-13 are kept in ``top``);
  ``status()`` composes them.  ES and B are always ``any unmasked exception
  flag`` (SF counts with IE); ``update_es`` restores that after every change.
- ``fip``/``fcs``/``fop`` describe the last non-control instruction,
  ``fdp``/``fds`` its memory operand (left unchanged by one without).
- Nothing here touches the CPU: raising #MF or FERR# is the instruction
  handlers' business (``ops/x87.py``).
"""

from __future__ import annotations

from . import float80 as F

IE, DE, ZE, OE, UE, PE = F.IE, F.DE, F.ZE, F.OE, F.UE, F.PE
SF, ES = 0x40, 0x80
C0, C1, C2, C3 = 0x100, 0x200, 0x400, 0x4000
B = 0x8000
EXC = 0x3F
CW_INIT = 0x037F
CW_WRITABLE = 0x1F3F            # masks, PC, RC, X; bit 6 reads as one
CW_FIXED = 0x0040

TAG_VALID, TAG_ZERO, TAG_SPECIAL, TAG_EMPTY = 0, 1, 2, 3

FIELDS = ("regs", "top", "cw", "sw", "valid", "fip", "fcs", "fdp", "fds", "fop")


class FPU:
    __slots__ = FIELDS

    def __init__(self):
        self.power_on()

    def power_on(self) -> None:
        """RESET state (SDM vol. 3, table 9-1): CW 0040H, SW 0, every tag
        valid (5555H: the registers hold +0.0)."""
        self.regs = [0] * 8
        self.top = 0
        self.cw = 0x0040
        self.sw = 0
        self.valid = 0xFF
        self.fip = self.fcs = self.fdp = self.fds = self.fop = 0

    def init(self) -> None:
        """FNINIT."""
        self.cw = CW_INIT
        self.sw = 0
        self.top = 0
        self.valid = 0
        self.fip = self.fcs = self.fdp = self.fds = self.fop = 0

    # -------------------------------------------------------------- words
    def status(self) -> int:
        return self.sw | (self.top << 11)

    def set_status(self, v: int) -> None:
        self.top = (v >> 11) & 7
        self.sw = v & ~0x3800 & 0xFFFF
        self.update_es()

    def set_cw(self, v: int) -> None:
        self.cw = (v & CW_WRITABLE) | CW_FIXED
        self.update_es()

    def update_es(self) -> None:
        if self.sw & ~self.cw & EXC:
            self.sw |= ES | B
        else:
            self.sw &= ~(ES | B)

    def tag_of(self, phys: int) -> int:
        if not self.valid >> phys & 1:
            return TAG_EMPTY
        c = F.classify(self.regs[phys])
        if c == F.ZERO_C:
            return TAG_ZERO
        if c == F.NORMAL:
            return TAG_VALID
        return TAG_SPECIAL

    def tag_word(self) -> int:
        return sum(self.tag_of(i) << (2 * i) for i in range(8))

    def set_tag_word(self, tw: int) -> None:
        self.valid = sum(1 << i for i in range(8) if (tw >> (2 * i)) & 3 != TAG_EMPTY)

    # -------------------------------------------------------------- stack
    def phys(self, i: int) -> int:
        return (self.top + i) & 7

    def empty(self, i: int) -> bool:
        return not self.valid >> ((self.top + i) & 7) & 1

    def st(self, i: int) -> int:
        return self.regs[(self.top + i) & 7]

    def set_st(self, i: int, v: int) -> None:
        p = (self.top + i) & 7
        self.regs[p] = v
        self.valid |= 1 << p

    def push(self, v: int) -> None:
        self.top = (self.top - 1) & 7
        self.regs[self.top] = v
        self.valid |= 1 << self.top

    def pop(self) -> None:
        self.valid &= ~(1 << self.top)
        self.top = (self.top + 1) & 7

    def free(self, i: int) -> None:
        self.valid &= ~(1 << ((self.top + i) & 7))

    # ---------------------------------------------------------- exceptions
    def signal(self, flags: int) -> bool:
        """Record exception ``flags``; True when the result may be stored
        (no unmasked invalid-operation, denormal or zero-divide)."""
        if not flags:
            return True
        self.sw |= flags & (EXC | SF)
        unmasked = flags & ~self.cw & EXC
        if unmasked:
            self.sw |= ES | B
        return not unmasked & (IE | DE | ZE)

    def set_c1(self, up: bool) -> None:
        if up:
            self.sw |= C1
        else:
            self.sw &= ~C1

    def set_cc(self, c3: int, c2: int, c1: int, c0: int) -> None:
        self.sw = (self.sw & ~(C0 | C1 | C2 | C3)) | (C3 if c3 else 0) | (C2 if c2 else 0) \
            | (C1 if c1 else 0) | (C0 if c0 else 0)

    def stack_overflow(self) -> bool:
        """IE+SF with C1=1; True when masked (the caller pushes the indefinite)."""
        self.sw |= C1
        return self.signal(IE | SF)

    def stack_underflow(self) -> bool:
        """IE+SF with C1=0; True when masked (the indefinite is the result)."""
        self.sw &= ~C1
        return self.signal(IE | SF)

    # ----------------------------------------------------- save and restore
    def at_power_on(self) -> bool:
        return (self.cw == 0x0040 and self.sw == 0 and self.top == 0 and self.valid == 0xFF
                and not any(self.regs) and not (self.fip or self.fcs or self.fdp or self.fds or self.fop))

    def digest_state(self) -> tuple:
        return (tuple(self.regs), self.top, self.cw, self.sw, self.valid, self.fip, self.fcs, self.fdp,
                self.fds, self.fop)

    def snapshot(self) -> dict:
        return {f: (list(self.regs) if f == "regs" else getattr(self, f)) for f in FIELDS}

    def restore(self, d: dict) -> None:
        for f in FIELDS:
            setattr(self, f, list(d[f]) if f == "regs" else d[f])
