"""The contract between the differential-test generators and the two engines.

A ``Snippet`` is a short piece of straight-line (or locally branching) code
with an initial register file and the contents of two small memory pages.  The
same snippet is run by unicorn (``oracle.py``) and by tvmm (``ours.py``); the
tests compare the resulting ``Outcome`` values.

Memory layout, identical in both engines and in both modes (guest-physical
equals linear; in 32-bit mode all segments are flat, in 16-bit real mode every
segment register is 0):

    CODE_BASE  .. +0x1000   code (execution starts at CODE_BASE)
    DATA_BASE  .. +0x1000   data page the generated memory operands hit
    STACK_BASE .. +0x1000   stack page; ESP starts at STACK_TOP

Execution stops when EIP reaches ``CODE_BASE + len(code)`` or when the CPU
raises an exception (the vector is reported, EIP is that of the faulting
instruction for faults, and no handler runs), or after ``MAX_STEPS``
instructions (loops), whichever is first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CODE_BASE = 0x1000
DATA_BASE = 0x2000
STACK_BASE = 0x3000
STACK_TOP = 0x3F00
PAGE = 0x1000
MAX_STEPS = 2000

GPRS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")

# EFLAGS bits
CF, PF, AF, ZF, SF, TF, IF, DF, OF = 1, 4, 0x10, 0x40, 0x80, 0x100, 0x200, 0x400, 0x800
ARITH_FLAGS = CF | PF | AF | ZF | SF | OF


@dataclass(frozen=True)
class Snippet:
    mode: int                      # 32: flat protected mode; 16: real mode
    code: bytes
    regs: dict                     # GPRS plus "eflags"; missing ones are 0 (eflags: 0x2)
    data: bytes = bytes(PAGE)      # initial contents of the data page
    flags_mask: int = 0xFFFFFFFF   # EFLAGS bits to compare (undefined ones cleared)
    label: str = ""                # human-readable description for failure messages


@dataclass
class Outcome:
    regs: dict                     # GPRS plus "eip" and "eflags"
    data: bytes                    # final data page
    stack: bytes                   # final stack page
    exception: int | None = None   # vector of the exception that stopped the run
    extra: dict = field(default_factory=dict)
