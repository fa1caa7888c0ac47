"""A guest's virtual CPU: the processor in guest mode plus the monitor's
handlers for its exits.

``VirtualCpu`` is a ``machine.cpu.CPU`` running on host-physical memory
built with the monitor's ``ops`` (``exits.VMX_OPS``), so its privileged
operations exit to the monitor (see ``machine/vmx.py`` for which ones and
when, ``exits.py`` for what the monitor does).  It keeps the guest's own
control registers (``vcr0``, ``vcr3``, ``vcr4``: what the guest wrote and
reads back) apart from the real ones the processor uses (``cr0`` with PG
and WP always set, ``cr3`` = the shadow page directory, ``cr4`` without PSE).

``set_cr0``/``set_cr3``/``set_cr4`` take *guest* values: the boot loaders,
the gdb stub and the exit handlers all mean the guest's registers.

Invariants:
- What a guest reads from CR0/CR3/CR4 (and SMSW) is what it wrote.
- The real CR3 always points at this guest's shadow; the real CR0 always
  has PG (even for a real-mode guest: the shadow is then an identity map of
  guest-physical memory) and WP (dirty tracking).
- Every exit is recorded in the monitor's event log with the guest's
  instruction count.
"""

from __future__ import annotations

from ..machine.consts import CR0_PE, CR0_PG, CR0_WP, CR4_PGE, CR4_PSE, M32, PF_VEC
from ..machine.cpu import CPU
from . import events as ev
from .exits import VMX_OPS

ET = 0x10
CR0_RESET = 0x60000010


class VirtualCpu(CPU):
    def __init__(self, host_mem, guest, io, index: int = 0):
        self.guest = guest
        self.shadow = guest.shadow
        self.log = guest.log
        self.vcr0, self.vcr3, self.vcr4 = CR0_RESET, 0, 0
        self.a20 = M32
        self._string_io = False
        self._irq_blocked_since: int | None = None
        self._last_dispatch = None
        self._ack_waited: int | None = None
        super().__init__(host_mem, io, cpuid_hypervisor=True, ops=VMX_OPS)
        self.index = index
        self.intercept = self._dispatched

    # -- real state from guest state ---------------------------------------------------
    def reset(self) -> None:
        super().reset()
        self.vcr0, self.vcr3, self.vcr4 = CR0_RESET, 0, 0
        self.a20 = M32
        if getattr(self, "shadow", None) is not None:
            self.shadow.reset_all(self)
            self._apply_real()

    def _apply_real(self) -> None:
        """Load the real control registers from the guest's: the shadow root
        for the guest's CR3 (or the identity shadow), PG and WP on, no PSE."""
        self.cr3 = self.shadow.switch(self, self)
        CPU.set_cr0(self, (self.vcr0 & ~CR0_PG) | CR0_PG | CR0_WP)
        CPU.set_cr4(self, self.vcr4 & ~CR4_PSE)
        self.flush_tlb(keep_global=False)

    def _mode_changed(self, why: str) -> None:
        n = self.shadow.reset_all(self)
        self._record(ev.SHADOW_FLUSH, f"{why}: every shadow root dropped ({n} entries)")

    def _record(self, kind: str, detail) -> None:
        pc = getattr(self.guest, "pc", None)
        others = pc._others if pc is not None and pc.running is self else 0
        self.log.record(self.guest.name, self.insn_time() + others, kind, detail, vcpu=self.index)

    # -- the guest's control registers ------------------------------------------------------
    def set_cr0(self, value: int) -> None:
        old, self.vcr0 = self.vcr0, value | ET
        if (old ^ value) & (CR0_PG | CR0_PE | CR0_WP):
            self._mode_changed(f"CR0 {old:#x} -> {self.vcr0:#x}")
        self._apply_real()

    def set_cr3(self, value: int) -> None:
        self.vcr3 = value & 0xFFFFF018
        if self.vcr0 & CR0_PG:
            self.cr3 = self.shadow.switch(self, self)
        self.flush_tlb(keep_global=bool(self.vcr4 & CR4_PGE))

    def set_cr4(self, value: int) -> None:
        old, self.vcr4 = self.vcr4, value
        if (old ^ value) & (CR4_PSE | CR4_PGE):
            self._mode_changed(f"CR4 {old:#x} -> {value:#x}")
        self._apply_real()

    def set_a20(self, enabled: bool) -> None:
        """The guest's A20 gate masks guest-physical addresses: a shadow matter."""
        self.a20 = M32 if enabled else 0xFFEFFFFF
        self._mode_changed("A20 " + ("on" if enabled else "off"))
        self._apply_real()

    def guest_cr(self, n: int) -> int:
        return (self.vcr0, 0, self.cr2, self.vcr3, self.vcr4)[n]

    # -- exits (the handlers are exits.VmxOps) ---------------------------------------------------
    def _io_exit(self, detail) -> None:
        """One port access: an exit of its own, or part of a REP INS/OUTS."""
        s = self._string_io
        if s is False:
            self._record(ev.EXIT_IO, detail())
        elif s is not True:
            self._record(ev.EXIT_IO, s)
            self._string_io = True

    # -- events reaching the guest's IDT ---------------------------------------------------------
    def _dispatched(self, vector, error_code, return_eip, soft, external) -> bool:
        """Logs every event delivered to the guest (never claims it).  A
        delivery retried after a hidden fault on the guest's stack or IDT is
        the same event: same vector, return address and instruction count."""
        key = (vector, return_eip, self.icount)
        if key == self._last_dispatch:
            return False
        self._last_dispatch = key
        if external and self.delivering_nmi:
            self._record(ev.NMI_EVENT, f"delivered through vector 2 at {return_eip:#010x}; "
                         "NMIs blocked until the next IRET")
        elif external:
            waited, self._ack_waited = self._ack_waited, None
            if waited is not None:
                self._record(ev.IRQ_WINDOW, f"vector {vector:#x} waited {self.icount - waited} insns for IF")
            self._record(ev.IRQ_INJECT, f"vector {vector:#x}")
        elif soft:
            self._record(ev.GUEST_SOFTINT, f"int {vector:#x} from {return_eip:#010x}")
        elif vector != PF_VEC:
            err = "" if error_code is None else f" err {error_code:#x}"
            self._record(ev.GUEST_EXCEPTION, f"vector {vector}{err} at {self.eip:#010x}")
        return False

    def nmi(self) -> None:
        """An NMI reaches this vCPU (IPI, LINT1, I/O APIC): logged when it
        has to wait (NMIs blocked by a running NMI handler) or is lost (one
        is already latched); its delivery is logged by ``_dispatched``."""
        if self.nmi_blocked:
            self._record(ev.NMI_EVENT, "lost: one NMI already latched" if self.nmi_pending
                         else "latched: NMIs blocked until the handler's IRET")
        super().nmi()

    def acknowledging(self, ack):
        """Wraps the interrupt controller's acknowledge: notes whether the
        interrupt being taken had to wait for an interrupt window (INTR
        drops during the acknowledge, before the delivery is logged)."""
        def intr_ack():
            self._ack_waited = self._irq_blocked_since
            self._irq_blocked_since = None
            return ack()
        return intr_ack

    def set_intr(self, level: bool) -> None:
        """The guest's virtual interrupt controller drives INTR; while the
        guest has interrupts disabled the interrupt waits for a window."""
        if level and self._irq_blocked_since is None and not (self.eflags & 0x200):
            self._irq_blocked_since = self.icount
        if not level:
            self._irq_blocked_since = None
        super().set_intr(level)


class ExitPort:
    """The vCPU's port space: every IN/OUT is an I/O exit emulated against
    the guest's virtual devices (a REP INS/OUTS is one exit)."""

    def __init__(self, vcpu_ref, bus):
        self._vcpu = vcpu_ref                 # callable -> VirtualCpu (built after the port)
        self._bus = bus

    def port_in(self, port: int, size: int) -> int:
        v = self._bus.port_in(port, size)
        self._vcpu()._io_exit(lambda: f"in {port:#x}/{size} -> {v:#x}")
        return v

    def port_out(self, port: int, size: int, value: int) -> None:
        self._vcpu()._io_exit(lambda: f"out {port:#x}/{size} <- {value:#x}")
        self._bus.port_out(port, size, value)
