"""Guest mode: the processor's support for a trap-and-emulate monitor.

The model is first-generation hardware virtualization before nested paging
(VT-x with "unrestricted guest" but without EPT, as KVM used it with shadow
paging).  A CPU runs a guest deprivileged when it was built with the
monitor's ``ops`` (``tvmm/monitor/exits.py`` ``VmxOps``; the interface is
``native.CpuOps``):

- The guest keeps its own rings, segments, IDT and real/protected mode; its
  CPL and privilege checks are architectural.  Faults the guest's own rules
  cause (CPL 3 ``mov cr3``, an I/O-bitmap denial) are raised *before* any
  exit, exactly as the SDM orders VM exits after those checks, so they reach
  the guest's IDT and are never emulated away.
- The paging hardware always walks the *real* CR3, the monitor's shadow page
  table in host-physical memory; ``cpu.cr0``/``cr3``/``cr4`` hold the real
  values.  The guest's own CR0/CR3/CR4 live in the monitor, and every read
  or write of them exits (``ops.cr_read``/``ops.cr_write``), as do SMSW,
  LMSW, CLTS and INVLPG (``ops.invlpg``).  CR2 is guest state the processor
  itself keeps.
- HLT, CPUID, RDMSR/WRMSR exit (``ops.hlt``, ``ops.cpuid``, ``ops.rdmsr``,
  ``ops.wrmsr``); the monitor performs them, and may change what they do.
- Port I/O reaches whatever ``cpu.io`` is; the monitor installs its exit
  port there.  A REP INS/OUTS is announced (``ops.io_string``) so the
  monitor counts it as one exit.
- Every exception is offered to ``ops.exception`` before delivery (the
  exception bitmap with every bit set): the monitor returns None when it
  dealt with the fault (a hidden page fault: the instruction restarts) or
  the fault to deliver to the guest (a reflected one, with the guest's error
  code and CR2).  A fault raised while an event is being delivered is
  offered too, and when the monitor fixes it the delivery is retried (a
  shadow miss on the guest's stack or IDT is invisible to the guest), at
  most ``MAX_DELIVERY_RETRIES`` times per event.  A #PF from the walk of a
  TLB miss is offered first to ``ops.walk_fault``, where the walk failed: a
  shadow miss is filled there, the walk made again and the access goes on,
  nothing restarted; a fault it returns is raised and then offered to
  ``ops.exception`` at delivery like any other.

Exits are synchronous calls into the monitor at the point where hardware
would exit; the instruction then completes with what the monitor emulated
(or restarts, for a fault ``ops.exception`` resolved).  The guest-visible effect is that of
exit, emulate, resume; the interpreter just does not unwind to do it.
"""

from __future__ import annotations

MAX_DELIVERY_RETRIES = 16     # hidden faults one event delivery may take (IDT, GDT, TSS, stack pages)
