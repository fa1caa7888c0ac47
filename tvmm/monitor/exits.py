"""The monitor's implementation of the processor's privileged operations.

``VmxOps`` is the ``ops`` object of every ``VirtualCpu`` (the interface is
``machine/native.py`` ``CpuOps``; what guest mode means is
``machine/vmx.py``): each operation is an exit, handled here against the
guest's state the vCPU keeps (``vcr0``/``vcr3``/``vcr4``, its shadow, its
event log) and recorded with the guest's instruction count.  What the
monitor does not change it leaves to ``NativeOps`` (MSRs, the CPUID answer,
halting), so the architectural behaviour has one implementation.

Like KVM's ``vmx_x86_ops`` the object holds no state of its own: ``VMX_OPS``
serves every vCPU.
"""

from __future__ import annotations

from ..machine.consts import CR0_PG, PF_VEC
from ..machine.errors import CpuFault
from ..machine.native import NativeOps
from . import events as ev


class VmxOps(NativeOps):
    name = "vmx"

    def cr_read(self, cpu, n: int) -> int:
        v = cpu.guest_cr(n)
        cpu._record(ev.EXIT_CR_READ, f"CR{n} -> {v:#x}")
        return v

    def cr_write(self, cpu, n: int, value: int) -> None:
        """The vCPU's ``set_cr0``/``set_cr3``/``set_cr4`` take guest values:
        they keep them and load the real registers (shadow root, PG, WP)."""
        shadow = cpu.shadow
        hits = shadow.root_hits
        (cpu.set_cr0, None, None, cpu.set_cr3, cpu.set_cr4)[n](value)
        note = ""
        if n == 3 and cpu.vcr0 & CR0_PG:
            note = " (cached shadow root)" if shadow.root_hits > hits else " (new shadow root)"
        cpu._record(ev.EXIT_CR_WRITE, f"CR{n} <- {value:#x}{note}")

    def invlpg(self, cpu, lin: int) -> None:
        cpu._record(ev.EXIT_INVLPG, f"{lin:#010x}")
        cpu.shadow.invlpg(cpu, lin)

    def hlt(self, cpu) -> None:
        cpu._record(ev.EXIT_HLT, f"at {cpu.eip:#010x}")
        NativeOps.hlt(self, cpu)

    def cpuid(self, cpu) -> None:
        NativeOps.cpuid(self, cpu)            # with the hypervisor bit (cpu.cpuid_hypervisor)
        cpu._record(ev.EXIT_CPUID, f"-> eax={cpu.regs[0]:#x} (hypervisor bit set)")

    def rdmsr(self, cpu, index: int, now: int) -> int:
        cpu._record(ev.EXIT_MSR, f"rdmsr {index:#x}")
        return NativeOps.rdmsr(self, cpu, index, now)

    def wrmsr(self, cpu, index: int, value: int, now: int) -> None:
        cpu._record(ev.EXIT_MSR, f"wrmsr {index:#x}")
        NativeOps.wrmsr(self, cpu, index, value, now)

    def io_string(self, cpu, port: int, size: int, out: bool, count: int) -> None:
        # Recorded at the first element's port access (ExitPort): an attempt
        # that takes a hidden page fault on its memory operand first is not
        # an exit.
        cpu._string_io = f"rep {'outs' if out else 'ins'} port {port:#x} x{count} size {size}"

    def io_string_done(self, cpu) -> None:
        cpu._string_io = False

    def task_switch(self, cpu, old_sel: int, new_sel: int, source: str) -> None:
        """VT-x exits on every task switch; the switch itself is the
        processor's (``machine/tasks.py``), its CR3 load a ``cr_write`` exit."""
        cpu._record(ev.EXIT_TASK_SWITCH, f"{source} tss {old_sel:#06x} -> {new_sel:#06x} eip {cpu.eip:#010x}")

    def walk_fault(self, cpu, fault: CpuFault) -> CpuFault | None:
        """A shadow miss, where the access is: hidden ones are filled and
        logged here; a reflected one is raised, marked ``walked``, and
        logged by ``exception`` at its delivery (with the faulting
        instruction's EIP, which is only known then), not walked again."""
        if fault.cr2 is None:
            return fault
        shadow = cpu.shadow
        reflected = shadow.page_fault(cpu, cpu, fault)
        if reflected is None:
            cpu._record(ev.PF_HIDDEN, (_hidden_detail, fault.cr2, fault.error_code, shadow.entry(fault.cr2)))
            return None
        reflected.walked = True
        return reflected

    def exception(self, cpu, fault: CpuFault) -> CpuFault | None:
        if fault.vector != PF_VEC or fault.cr2 is None:
            return fault                      # the guest's own; logged when dispatched
        if getattr(fault, "examined", False):
            return fault                      # already reflected (a task switch's step): log it once
        if getattr(fault, "walked", False):   # reflected by walk_fault: log it now, once
            fault.walked = False
            cpu._record(ev.PF_REFLECTED, f"{fault.cr2:#010x} err {fault.error_code:#x} eip {cpu.eip:#010x}")
            return fault
        shadow = cpu.shadow
        reflected = shadow.page_fault(cpu, cpu, fault)
        if reflected is None:
            cpu._record(ev.PF_HIDDEN, (_hidden_detail, fault.cr2, fault.error_code, shadow.entry(fault.cr2)))
        else:
            cpu._record(ev.PF_REFLECTED, f"{reflected.cr2:#010x} err {reflected.error_code:#x} "
                        f"eip {cpu.eip:#010x}")
        return reflected


def _hidden_detail(cr2: int, error_code: int, entry: int) -> str:
    return f"{cr2:#010x} err {error_code:#x} -> shadow {entry:#010x}"


VMX_OPS = VmxOps()
