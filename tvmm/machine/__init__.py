"""The modelled x86 machine: IA-32 CPU, physical memory, MMU (and, later, devices).

Imports neither Textual nor asyncio, nor any other tvmm layer.
"""

from . import ops  # noqa: F401  (registers every instruction handler)
from .cpu import CPU
from .errors import CpuFault, Stop, StopKind
from .memory import PhysicalMemory

__all__ = ["CPU", "CpuFault", "PhysicalMemory", "Stop", "StopKind"]
