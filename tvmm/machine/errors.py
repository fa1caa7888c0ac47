"""Faults raised inside the CPU model, and the reasons ``run()`` returns.

Invariant: a ``CpuFault`` never escapes ``CPU.run``.  It is the Python
representation of an architectural exception *before* delivery; the run loop
catches it, restores EIP to the faulting instruction and delivers it through
the guest's IDT.  A ``Shutdown`` (triple fault) and any other Python exception
end the run with a ``Stop`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .consts import EXCEPTION_NAMES, PF_VEC


class CpuFault(Exception):
    """An architectural exception raised while executing one instruction.

    ``error_code`` is None for vectors without one.  ``cr2`` is set for #PF.
    ``trap`` marks exceptions reported with EIP after the instruction.
    """

    __slots__ = ("vector", "error_code", "cr2")

    def __init__(self, vector: int, error_code: int | None = None, cr2: int | None = None):
        super().__init__(vector)
        self.vector = vector
        self.error_code = error_code
        self.cr2 = cr2

    def __str__(self) -> str:
        name = EXCEPTION_NAMES.get(self.vector, f"vector {self.vector}")
        s = name
        if self.error_code is not None:
            s += f" error={self.error_code:#x}"
        if self.vector == PF_VEC and self.cr2 is not None:
            s += f" cr2={self.cr2:#010x}"
        return s


class Shutdown(Exception):
    """Triple fault: the processor enters shutdown (SDM vol. 3, 6.15, #DF)."""


class StopKind(str, Enum):
    BUDGET = "budget"          # max_insns retired
    HALTED = "halted"          # hlt with nothing to wake it
    SHUTDOWN = "shutdown"      # triple fault
    BREAKPOINT = "breakpoint"  # a debugger breakpoint (not the guest's own int3)
    STEP = "step"              # single step requested by the runner
    WATCHPOINT = "watchpoint"  # a debugger data watchpoint
    REQUEST = "request"        # a device or the runner asked to stop (e.g. debug-exit)
    ERROR = "error"            # the model itself failed; the machine is dead


@dataclass(frozen=True)
class Stop:
    """Why ``run()`` returned.  ``detail`` is for humans; ``data`` for code."""

    kind: StopKind
    detail: str = ""
    data: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.detail}" if self.detail else self.kind.value
