"""Guest mode: the processor's support for a trap-and-emulate monitor.

The model is first-generation hardware virtualization before nested paging
(VT-x with "unrestricted guest" but without EPT, as KVM used it with shadow
paging).  A CPU whose ``vmx`` attribute is set runs a guest deprivileged:

- The guest keeps its own rings, segments, IDT and real/protected mode; its
  CPL and privilege checks are architectural.  Faults the guest's own rules
  cause (CPL 3 ``mov cr3``, an I/O-bitmap denial) are raised *before* any
  exit, exactly as the SDM orders VM exits after those checks, so they reach
  the guest's IDT and are never emulated away.
- The paging hardware always walks the *real* CR3, the monitor's shadow page
  table in host-physical memory; ``cpu.cr0``/``cr3``/``cr4`` hold the real
  values.  The guest's own CR0/CR3/CR4 live in the monitor, and every read
  or write of them exits (``cr_read``/``cr_write``), as do SMSW, LMSW, CLTS
  and INVLPG (``invlpg_exit``).  CR2 is guest state the processor itself keeps.
- HLT, CPUID, RDMSR/WRMSR notify the monitor (``hlt``, ``cpuid``, ``msr_exit``),
  which may change what the instruction does.
- Port I/O reaches whatever ``cpu.io`` is; the monitor installs its exit
  port there.
- Every exception is offered to ``exception(fault)`` before delivery (the
  exception bitmap with every bit set): the monitor returns None when it
  dealt with the fault (a hidden page fault: the instruction restarts) or
  the fault to deliver to the guest (a reflected one, with the guest's error
  code and CR2).  A fault raised while an event is being delivered is
  offered too, and when the monitor fixes it the delivery is retried (a
  shadow miss on the guest's stack or IDT is invisible to the guest).

Exits are synchronous calls into the monitor at the point where hardware
would exit; the instruction then completes with what the monitor emulated
(or restarts, for a hidden fault).  The guest-visible effect is that of
exit, emulate, resume; the interpreter just does not unwind to do it.
"""

from __future__ import annotations

from typing import Protocol

from .errors import CpuFault


class VmExits(Protocol):
    """What a monitor provides to a CPU running in guest mode."""

    def cr_read(self, n: int) -> int:
        """MOV r32, CR0/CR3/CR4 and SMSW: the guest's value."""

    def cr_write(self, n: int, value: int) -> None:
        """MOV CR0/CR3/CR4, LMSW, CLTS (after the architectural #GP checks)."""

    def invlpg_exit(self, lin: int) -> None:
        """INVLPG of a guest-linear address."""

    def hlt(self) -> None:
        """HLT at CPL 0 (the CPU then halts as usual)."""

    def cpuid(self) -> None:
        """CPUID, after the CPU computed its answer into EAX..EDX."""

    def msr_exit(self, write: bool, index: int) -> None:
        """RDMSR/WRMSR of ``index``, before the CPU performs it."""

    def io_string(self, port: int, size: int, out: bool, count: int) -> None:
        """A REP INS/OUTS of ``count`` elements begins: one exit for all of
        them (the element accesses still reach ``cpu.io``)."""

    def io_string_done(self) -> None:
        """The REP INS/OUTS ended (completed, interrupted or faulted)."""

    def exception(self, fault: CpuFault) -> CpuFault | None:
        """An exception is about to be delivered: None if the monitor
        handled it (the instruction restarts), else the fault to deliver."""


MAX_DELIVERY_RETRIES = 16     # hidden faults one event delivery may take (IDT, GDT, TSS, stack pages)
