"""The processor's privileged operations: one interface, ``cpu.ops``.

Every ``CPU`` has an ``ops`` object (given at construction, never changed),
in the shape of KVM's ``kvm_x86_ops``: one method per privileged operation
the instruction handlers and the exception path need.  The handlers do the
architectural checks that come *before* any exit (CPL, reserved bits,
#UD/#GP in the SDM's order) and then call ``cpu.ops.<method>(cpu, ...)``
unconditionally, so each instruction has one code path:

=================  ==========================================================
``cr_read``        MOV r32, CR0/CR3/CR4; SMSW, LMSW and CLTS read CR0
``cr_write``       MOV CR0/CR3/CR4 (after the #GP checks), LMSW, CLTS
``invlpg``         INVLPG of a linear address
``hlt``            HLT at CPL 0: the processor halts
``cpuid``          CPUID: the answer for the leaf in EAX into EAX..EDX
``rdmsr``          RDMSR at CPL 0 (#GP for an MSR the processor lacks)
``wrmsr``          WRMSR at CPL 0 (#GP for a bad index or value)
``io_string``      a REP INS/OUTS of ``count`` elements begins
``io_string_done`` ... and ended (completed, interrupted or faulted)
``exception``      an exception is about to be delivered (also one raised
                   while delivering an event): None when it was resolved
                   (the instruction or the delivery restarts), else the
                   fault to deliver
``task_switch``    a hardware task switch committed (``tasks.py``; its CR3
                   load went through ``cr_write``): told, nothing to answer
=================  ==========================================================

CR2 is not behind the interface: it is state the processor itself keeps
(hardware does not exit on it either).  Port I/O is not either: it reaches
``cpu.io``, which a monitor replaces with its exit port.

``NativeOps`` is the bare processor: the architecture, nothing else.  The
monitor's implementation (``tvmm/monitor/exits.py`` ``VmxOps``) turns these
into exits to the monitor; see ``vmx.py`` for what guest mode means.

The ops objects hold no per-processor state (the processor is an argument),
so one instance serves every CPU, as KVM's tables do.
"""

from __future__ import annotations

from typing import Protocol

from .consts import (GP, M32, MSR_APIC_BASE, MSR_BIOS_SIGN_ID, MSR_EVNTSEL0, MSR_EVNTSEL1, MSR_PERFCTR0,
                     MSR_PERFCTR1, MSR_SYSENTER_CS, MSR_SYSENTER_EIP, MSR_TSC)
from .errors import CpuFault

M64 = (1 << 64) - 1

# ==================================================================== CPUID
CPUID_MAX_LEAF = 2
# Family 6, model 5, stepping 2: a Pentium II ("Deschutes"), the P6 with MMX
# and FXSAVE; SEP is valid on it (Intel: ignore SEP below model 3 stepping 3).
CPUID_SIGNATURE = 0x00000652
# EDX feature bits of leaf 1: only what tvmm implements.  Deliberately absent:
# VME(1) MCE(7) MTRR(12) MCA(14) PAT(16) PSE36(17) PAE(6) SSE(25).
CPUID_FEATURES = ((1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 9) | (1 << 11)
                  | (1 << 13) | (1 << 15)      # DE PSE TSC MSR CX8 APIC SEP PGE CMOV
                  | (1 << 0) | (1 << 23) | (1 << 24))      # FPU MMX FXSR (ops/x87.py, ops/mmx.py)
CPUID_HYPERVISOR = 1 << 31               # leaf 1 ECX: "running under a hypervisor"
_VENDOR = (0x756E6547, 0x49656E69, 0x6C65746E)    # "Genu" "ineI" "ntel" (EBX EDX ECX)
# Leaf 2, a Pentium II's cache and TLB descriptors (AL = 1: one CPUID 2 call
# gives them all): 01 ITLB 4K, 02 ITLB 4M, 03 DTLB 4K; 43 L2 512K, 08 L1I
# 16K, 04 DTLB 4M, 0C L1D 16K.  Descriptive only: no cache or TLB size is modelled.
CPUID_LEAF2 = (0x03020101, 0, 0, 0x0C040843)      # EAX EBX ECX EDX

_APIC_BASE_WRITABLE = 0xFFFFF900        # base (12-31), EN (11), BSP (8)
_EVNTSEL_RESERVED = 1 << 21             # P6 PerfEvtSel: bit 21 (and EDX) reserved
M40 = (1 << 40) - 1
# MSRs that are plain storage here (``cpu.msr``): the SYSENTER triple and the
# P6 performance-monitoring registers (the counters never count).
_STORED = frozenset({MSR_SYSENTER_CS, MSR_SYSENTER_CS + 1, MSR_SYSENTER_EIP, MSR_PERFCTR0, MSR_PERFCTR1,
                     MSR_EVNTSEL0, MSR_EVNTSEL1})


class CpuOps(Protocol):
    """What every processor's ``ops`` provides (see the module docstring)."""

    def cr_read(self, cpu, n: int) -> int:
        """CR0, CR3 or CR4 as the running software sees it."""

    def cr_write(self, cpu, n: int, value: int) -> None:
        """Load CR0, CR3 or CR4 (the value passed the architectural checks)."""

    def invlpg(self, cpu, lin: int) -> None:
        """Invalidate the translation of linear address ``lin``."""

    def hlt(self, cpu) -> None:
        """Halt until an interrupt (EIP already points past HLT)."""

    def cpuid(self, cpu) -> None:
        """Answer CPUID for the leaf in EAX, into EAX, EBX, ECX, EDX."""

    def rdmsr(self, cpu, index: int, now: int) -> int:
        """The 64-bit value of MSR ``index``; ``now`` is the instruction
        count as RDMSR sees it (the time-stamp counter's base)."""

    def wrmsr(self, cpu, index: int, value: int, now: int) -> None:
        """Write the 64-bit ``value`` (EDX:EAX) to MSR ``index``."""

    def io_string(self, cpu, port: int, size: int, out: bool, count: int) -> None:
        """A REP INS/OUTS of ``count`` elements begins (its element accesses
        still reach ``cpu.io``)."""

    def io_string_done(self, cpu) -> None:
        """The REP INS/OUTS ended (completed, interrupted or faulted)."""

    def exception(self, cpu, fault: CpuFault) -> CpuFault | None:
        """An exception is about to be delivered: None if it was resolved
        (the instruction or the delivery restarts), else the fault to deliver."""

    def walk_fault(self, cpu, fault: CpuFault) -> CpuFault | None:
        """The page walk of a TLB miss raised ``fault`` (a #PF), where the
        access is: None if it was resolved (the walk is made again and the
        access goes on), else the fault to raise (``exception`` is then
        offered it as usual, at delivery)."""

    def task_switch(self, cpu, old_sel: int, new_sel: int, source: str) -> None:
        """A task switch from TSS ``old_sel`` to ``new_sel`` committed
        (``source``: "jmp", "call", "iret" or "int")."""


class NativeOps:
    """The bare processor: every operation as the architecture defines it."""

    name = "native"

    def cr_read(self, cpu, n: int) -> int:
        return cpu.cr0 if n == 0 else cpu.cr3 if n == 3 else cpu.cr4

    def cr_write(self, cpu, n: int, value: int) -> None:
        if n == 0:
            cpu.set_cr0(value)
        elif n == 3:
            cpu.set_cr3(value)
        else:
            cpu.set_cr4(value)

    def invlpg(self, cpu, lin: int) -> None:
        cpu.invlpg(lin)

    def hlt(self, cpu) -> None:
        cpu.halted = True
        cpu.attention = True

    def cpuid(self, cpu) -> None:
        """A Pentium II answer.  Leaf 0: max leaf 2 and
        "GenuineIntel"; leaf 1: signature, APIC ID (``cpu.apic_id`` if
        present) in EBX[31:24], the hypervisor bit in ECX only when
        ``cpu.cpuid_hypervisor``, and the features above in EDX; leaf 2: the
        descriptors above.  Any other leaf (including 0x40000000 and
        0x80000000) returns leaf 2, the highest basic leaf, as Intel parts do
        for leaves above the maximum; in particular 0x80000000 does not
        report extended leaves (EAX 0x03020101 < 0x80000000)."""
        r = cpu.regs
        if r[0] == 0:
            r[0] = CPUID_MAX_LEAF
            r[3], r[2], r[1] = _VENDOR
        elif r[0] != 1:
            r[0], r[3], r[1], r[2] = CPUID_LEAF2
        else:
            r[0] = CPUID_SIGNATURE
            r[3] = (getattr(cpu, "apic_id", 0) & 0xFF) << 24
            r[1] = CPUID_HYPERVISOR if cpu.cpuid_hypervisor else 0
            r[2] = CPUID_FEATURES

    def rdmsr(self, cpu, index: int, now: int) -> int:
        """TSC, APIC base, BIOS_SIGN_ID (microcode revision 0), the SYSENTER
        MSRs and the P6 performance counters and event selects; any other
        index (MTRRs, machine check, DEBUGCTL, ...) is #GP(0)."""
        if index == MSR_TSC:
            return (now + cpu.tsc_offset) & M64
        if index == MSR_APIC_BASE or index in _STORED:
            return cpu.msr.get(index, 0)
        if index == MSR_BIOS_SIGN_ID:
            return 0
        raise CpuFault(GP, 0)

    def wrmsr(self, cpu, index: int, value: int, now: int) -> None:
        """- TSC: P6 writes only the low 32 bits (EAX) and clears the high
          half (SDM vol. 3, 17.17); ``tsc_offset`` is set so the counter
          reads the written value at this instruction and keeps counting.
        - APIC base: #GP(0) for reserved bits (0-7, 9-10, and EDX: the
          physical address width is 32 bits).
        - SYSENTER_CS/ESP/EIP: 32-bit registers on this CPU; EAX is stored.
        - BIOS_SIGN_ID: accepted and ignored (it reads revision 0).
        - PERFCTR0/1: as on P6, EAX is written and bits 32-39 are its bit 31
          sign-extended (40-bit counters); they never count.
        - EVNTSEL0/1: #GP(0) for EDX or reserved bit 21; stored, no event is
          counted and no overflow interrupt is raised.
        Any other index is #GP(0)."""
        lo, hi = value & M32, value >> 32
        if index == MSR_TSC:
            cpu.tsc_offset = lo - now
        elif index == MSR_APIC_BASE:
            if hi or lo & ~_APIC_BASE_WRITABLE:
                raise CpuFault(GP, 0)
            cpu.msr[index] = lo
        elif MSR_SYSENTER_CS <= index <= MSR_SYSENTER_EIP:
            cpu.msr[index] = lo
        elif index == MSR_PERFCTR0 or index == MSR_PERFCTR1:
            cpu.msr[index] = (lo | (0xFF << 32 if lo & 0x80000000 else 0)) & M40
        elif index == MSR_EVNTSEL0 or index == MSR_EVNTSEL1:
            if hi or lo & _EVNTSEL_RESERVED:
                raise CpuFault(GP, 0)
            cpu.msr[index] = lo
        elif index != MSR_BIOS_SIGN_ID:
            raise CpuFault(GP, 0)

    def io_string(self, cpu, port: int, size: int, out: bool, count: int) -> None:
        pass

    def io_string_done(self, cpu) -> None:
        pass

    def exception(self, cpu, fault: CpuFault) -> CpuFault | None:
        return fault

    def walk_fault(self, cpu, fault: CpuFault) -> CpuFault | None:
        return fault

    def task_switch(self, cpu, old_sel: int, new_sel: int, source: str) -> None:
        pass


NATIVE_OPS = NativeOps()
