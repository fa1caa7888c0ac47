"""Handler registry: ``(mnemonic, operands)`` from the opcode table -> code.

Instruction-family modules (``tvmm/machine/ops/``) register handlers here; the
decoder resolves one per decoded instruction.  A registered value is:
  - a function ``fn(cpu, insn)``, used for every form and size;
  - a pair ``(reg_fn, mem_fn)``: the first for a register r/m operand, the
    second for a memory one;
  - a dict keyed by operand size in bytes (2 or 4) whose values are either of
    the above.

Invariant: every row of ``optable`` resolves to a handler (checked by
``tests/machine/test_decoder.py``); a missing one is a bug in tvmm, never a
guest-visible outcome, and stops the machine with an error.
"""

from __future__ import annotations

from .consts import GP, UD
from .errors import CpuFault

HANDLERS: dict[tuple[str, str], object] = {}


def register(mnem: str, spec: str, handler) -> None:
    key = (mnem, spec)
    if key in HANDLERS:
        raise ValueError(f"handler for {mnem} {spec} registered twice")
    HANDLERS[key] = handler


def handler(mnem: str, *specs: str):
    """Decorator: register ``fn`` for ``mnem`` with each of ``specs``."""
    def deco(fn):
        for s in specs or ("",):
            register(mnem, s, fn)
        return fn
    return deco


def raise_ud(cpu, d):
    raise CpuFault(UD)


def raise_gp0(cpu, d):
    raise CpuFault(GP, 0)


class Unimplemented(Exception):
    """tvmm has no handler for a table row: a bug in tvmm, not in the guest."""


def _unimplemented(cpu, d):
    raise Unimplemented(f"no handler for {d.mnem} {d.spec} ({d.raw.hex()})")


def resolve(mnem: str, spec: str, d):
    h = HANDLERS.get((mnem, spec))
    if h is None:
        return _unimplemented
    if isinstance(h, dict):
        h = h.get(d.osz) or h.get(0)
        if h is None:
            return _unimplemented
    if isinstance(h, tuple):
        return h[0] if d.rm >= 0 else h[1]
    return h
