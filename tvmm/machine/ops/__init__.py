"""Instruction families.  Importing this package registers every handler.

One module per family; each registers ``(mnemonic, operands)`` handlers in
``tvmm.machine.registry``.  Handler contract: ``fn(cpu, d)`` with ``d`` the
decoded ``Insn``; when it runs, ``cpu.eip`` already holds ``d.next``.  A
handler raises ``CpuFault`` *before* changing any register (memory stores
that precede a fault are allowed, as on hardware).
"""

from . import alu, bits, control, io, muldiv, shift, stack, string, system, x87, mmx  # noqa: F401
