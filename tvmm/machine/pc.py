"""A PC/AT-compatible machine: processors, memory, buses and the standard devices.

With several processors (``ncpus``), each has its own local APIC; the
bootstrap processor's LINT0 carries the 8259, the I/O APIC and IPIs reach
any of them (apic.py), and they take turns as the schedule says (sched.py).

Wiring (as on a PC with an integrated APIC in virtual-wire mode):
  ISA IRQ n --+--> 8259A pair input n --INTR--> local APIC LINT0 (ExtINT) --> CPU INTR
              +--> I/O APIC pin n (IRQ 0 on pin 2) --> local APIC
The CPU acknowledges through the local APIC, which hands over the 8259's
vector for ExtINT, so a kernel that never touches the APIC still gets 8259
interrupts, and one that programs the APIC gets its own.

Invariants:
- Virtual time is every processor's ``icount`` plus ``idle``: ``idle`` counts
  instructions skipped while every processor was halted waiting for the
  next device event.
- ``run()`` runs the CPU in slices that end at the next device deadline, so a
  device event happens at an exact instruction count; between deadlines a
  device access sets ``clock.now`` to the exact count of the instruction
  making it (no event can be due before the slice ends).
- Nothing here reads a wall clock.
"""

from __future__ import annotations

from . import apic
from .boot import firmware_tables
from .bus import PortBus
from .clock import DEFAULT_IPS, Clock
from .cpu import CPU
from .devices.cga import Cga
from .devices.fpu_port import FpuErrorPort
from .devices.ide import Disk, IdeChannel
from .devices.ioapic import IoApic
from .devices.kbd import Kbc, SystemControlPortA
from .devices.lapic import APIC_BASE, LocalApic
from .devices.pic import Pic
from .devices.pit import Pit, SystemControlPortB
from .devices.qemu_testdev import DebugExit, FwCfg, PcTestdev, PostCodePort
from .devices.rtc import Rtc
from .devices.uart import Uart
from .consts import IF, MSR_APIC_BASE
from .errors import Stop, StopKind
from .irq import IrqLine
from .memory import PhysicalMemory
from .sched import Schedule

COM1, COM2 = 0x3F8, 0x2F8


class _Timed:
    """Wraps a port bus or an MMIO device so ``clock.now`` is exact at each access."""

    def __init__(self, pc: "PC", target):
        self._pc, self._t = pc, target

    def port_in(self, port, size):
        self._pc.sync_clock()
        return self._t.port_in(port, size)

    def port_out(self, port, size, value):
        self._pc.sync_clock()
        self._t.port_out(port, size, value)

    def mmio_read(self, off, size):
        self._pc.sync_clock()
        return self._t.mmio_read(off, size)

    def mmio_write(self, off, size, value):
        self._pc.sync_clock()
        self._t.mmio_write(off, size, value)


class PC:
    def __init__(self, mem_size: int = 128 << 20, *, ips: int = DEFAULT_IPS, on_console=None,
                 on_console2=None, disks: tuple = (None, None), testdevs: bool = True, on_post=None,
                 mem=None, make_cpu=None, on_a20=None, ncpus: int = 1, sched: str = "rr"):
        """A bare PC by default.  A monitor builds each guest's virtual PC by
        passing the guest-physical address space (``mem``), a factory for the
        guest's virtual CPUs (``make_cpu(pc, index)``, called for each once
        the port bus exists) and ``on_a20`` (the A20 gate masks
        guest-physical addresses, which the monitor's shadow applies).
        ``ncpus`` processors interleave as the schedule ``sched`` says
        (sched.py); the first is the bootstrap processor, the others wait
        for INIT and STARTUP IPIs."""
        self.clock = clock = Clock(ips)
        self.mem = mem if mem is not None else PhysicalMemory(mem_size)
        self.bus = PortBus()
        self.on_a20 = on_a20
        self.cpus = [make_cpu(self, i) if make_cpu is not None else CPU(self.mem, self.timed_bus())
                     for i in range(ncpus)]
        for i, c in enumerate(self.cpus):
            c.index = i
            if i:
                c.wait_sipi = True
                c.msr[MSR_APIC_BASE] = APIC_BASE | 0x800          # enabled, not the BSP
            c._refresh()
        self.on_switch = None                     # called with the processor about to run
        self.cpu = cpu = self.cpus[0]             # the bootstrap processor
        self.running = cpu                        # the processor executing (or that last did)
        self._others = 0                          # instructions retired by the others
        self.schedule = Schedule(sched)
        self.quantum_end: int | None = None       # running.icount at which its quantum ends
        self.idle = 0
        self.exit_status: int | None = None
        clock.on_new_deadline = self._new_deadline
        # -- interrupt fabric
        pic_out = IrqLine("pic-intr")
        self.pic = Pic(pic_out)
        self.ioapic = IoApic(self._ioapic_deliver, firmware_tables.IOAPIC_ID)
        self.lapics = []
        for i, c in enumerate(self.cpus):
            bsp = i == 0
            lapic = LocalApic(clock, i, on_eoi=self.ioapic.eoi, send_ipi=self._ipi_sender(i),
                              extint_pending=(lambda: pic_out.level) if bsp else None,
                              extint_ack=self.pic.acknowledge if bsp else None,
                              intr=IrqLine(f"cpu{i}-intr", c.set_intr), virtual_wire=bsp,
                              name="lapic" if bsp else f"lapic{i}", nmi=c.nmi)
            c.intr_ack = lapic.acknowledge
            c.vapic = lapic.vregs                 # its static registers, read without an MMIO exit
            if c.mem is self.mem:                 # a bare PC (a monitor maps its vCPUs' APIC page itself)
                c.vapic_pfn = APIC_BASE >> 12
            self.lapics.append(lapic)
        self.lapic = self.lapics[0]
        pic_out.connect(self.lapic.extint_changed)
        self.irq = [self._isa_line(n) for n in range(16)]
        # -- devices
        self.pit = Pit(clock, self.irq[0])
        self.port61 = SystemControlPortB(clock, self.pit)
        # As QEMU's PC (whose behaviour kernels are tested against), the UART's
        # interrupt reaches its IRQ line whatever MCR.OUT2 says: xv6 writes
        # MCR = 0 and still expects receive interrupts.  What reaches a COM
        # port from outside is the user's input (the UI, --send, a replayed
        # session): flow-controlled, so it waits for the guest instead of
        # overrunning a receiver without FIFOs (QEMU's serial back end does
        # the same).  Loopback still overruns.
        self.com1 = Uart(clock, self.irq[4], COM1, on_console, name="com1", out2_gates_irq=False,
                         flow_control=True)
        self.com2 = Uart(clock, self.irq[3], COM2, on_console2, name="com2", out2_gates_irq=False,
                         flow_control=True)
        self.rtc = Rtc(clock, self.irq[8], mem_size=mem_size)
        self.kbc = Kbc(self.irq[1], irq12=self.irq[12], on_reset=self._reset_request, on_a20=self._a20)
        self.port92 = SystemControlPortA(on_reset=self._reset_request, on_a20=self._a20)
        self.cga = Cga(clock)
        self.disks = [d if d is None or isinstance(d, Disk) else Disk(d) for d in disks]
        self.ide = IdeChannel(clock, self.irq[14], self.disks[0], self.disks[1])
        self.fpu_error = FpuErrorPort(self.irq[13])        # FERR# -> IRQ 13, cleared by port F0h
        self.fpu_error.attach(self.bus)
        self.cpu.ferr = self.irq[13]
        self.devices = [self.pic, self.pit, self.port61, self.com1, self.com2, self.rtc, self.kbc,
                        self.port92, self.cga, self.ide]
        for dev in (self.pic, self.pit, self.port61, self.com1, self.com2, self.rtc, self.kbc,
                    self.port92, self.ide):
            dev.attach(self.bus)
        self.cga.attach(self.bus, self.mem)
        if ncpus == 1:
            self.lapic.attach(_MmioMem(self, self.mem))
        else:                                     # one page, each processor's own APIC
            _MmioMem(self, self.mem).add_mmio(APIC_BASE, APIC_BASE + 0x1000, _RunningLapic(self), "lapic")
        self.ioapic.attach(_MmioMem(self, self.mem))
        self.devices += [self.lapic, self.ioapic]
        if testdevs:
            self.debug_exit = DebugExit(self._debug_exit)
            self.fw_cfg = FwCfg(mem_size, nb_cpus=ncpus)
            self.testdev = PcTestdev(lambda n: self.irq[n] if 0 <= n < 16 else None)
            self.post = PostCodePort(clock, on_post)
            for dev in (self.debug_exit, self.fw_cfg, self.post):
                dev.attach(self.bus)
            self.testdev.attach(self.bus, self.mem)
            self.devices += [self.debug_exit, self.fw_cfg, self.testdev, self.post]
        self.devices += self.lapics[1:]            # after the rest: 1-CPU snapshots keep their shape
        firmware_tables.install(self.mem, ncpus)   # what the BIOS would have left

    # -- wiring helpers
    def _isa_line(self, n: int) -> IrqLine:
        pic_in = self.pic.irq_line(n) if n != 2 else None
        apic_in = self.ioapic.irq_line(2 if n == 0 else n)

        def sink(level: bool) -> None:
            if pic_in is not None:
                pic_in.set(level)
            apic_in.set(level)
        return IrqLine(f"irq{n}", sink)

    def _ioapic_deliver(self, dest, dest_mode, vector, delivery_mode, level_triggered):
        apic.deliver(self, apic.targets(self.lapics, dest, dest_mode), delivery_mode, vector, level_triggered)

    def _ipi_sender(self, source: int):
        def send(dest, mode, vector, shorthand, level, dest_mode):
            apic.send_ipi(self, source, dest, mode, vector, shorthand, level, dest_mode)
        return send

    def nmi(self) -> bool:
        """The chipset raises NMI (what a front-panel NMI button, a parity or
        I/O channel check does; QEMU's ``nmi`` command does the same): unless
        port 0x70 bit 7 masks it, an edge reaches LINT1 of every local APIC
        (the MP table's wiring), which delivers it as its LVT LINT1 entry
        says.  Returns False when port 0x70 masked it."""
        if self.rtc.nmi_masked:
            return False
        for lapic in self.lapics:
            lapic.lint1()
        return True

    def _debug_exit(self, status: int) -> None:
        self.exit_status = status
        self.running.request_stop(Stop(StopKind.REQUEST, f"debug-exit status {status}", {"exit_status": status}))

    def _reset_request(self) -> None:
        self.running.request_stop(Stop(StopKind.REQUEST, "reset requested by the guest", {"reset": True}))

    def timed_bus(self) -> "_Timed":
        """The port bus as a CPU must reach it (each access syncs the clock)."""
        return _Timed(self, self.bus)

    def _a20(self, enabled: bool) -> None:
        if self.on_a20 is not None:
            self.on_a20(enabled)
            return
        for cpu in self.cpus:
            cpu.a20_mask = 0xFFFFFFFF if enabled else 0xFFEFFFFF
            cpu.flush_tlb(keep_global=False)

    # -- time
    def now(self) -> int:
        """Virtual time: every processor's retired instructions plus the
        time skipped while all of them were halted."""
        return self.running.icount + self._others + self.idle

    def _new_deadline(self, deadline: int) -> None:
        """A device scheduled an event inside the running slice: end the slice
        there.  Port I/O ends its block, so the CPU stops exactly at the
        deadline; an event scheduled by a memory-mapped store is taken at the
        end of that store's block (a few instructions late, the same in
        every run)."""
        cpu = self.running
        at = deadline - self.idle - self._others
        if at < cpu.stop_at:
            cpu.stop_at = at
            cpu.attention = True         # translated units re-check the budget only when told

    def sync_clock(self) -> None:
        """Make ``clock.now`` the count of the instruction executing right now."""
        t = self.running.insn_time() + self._others + self.idle
        if t > self.clock.now:
            self.clock.now = t

    def switch_to(self, index: int) -> None:
        """Make processor ``index`` the running one (between instructions)."""
        old, new = self.running, self.cpus[index]
        if new is not old:
            self._others += old.icount - new.icount
            self.running = new
            if self.on_switch is not None:
                self.on_switch(new)

    def run(self, max_insns: int) -> Stop:
        """Run up to ``max_insns`` of virtual time (halted time included)."""
        if len(self.cpus) > 1:
            return self._run_smp(max_insns)
        cpu, clock = self.cpu, self.clock
        end = self.now() + max_insns
        while True:
            clock.advance(max(self.now(), clock.now))
            now = self.now()
            if now >= end:
                return Stop(StopKind.BUDGET)
            deadline = clock.next_deadline()
            slice_end = end if deadline is None else min(end, max(deadline, now + 1))
            stop = cpu.run(slice_end - now)
            if stop.kind == StopKind.BUDGET:
                continue
            if stop.kind == StopKind.HALTED:
                deadline = clock.next_deadline()
                if deadline is None or not cpu.eflags & IF:
                    # nothing can ever wake it: no device event is due, or it cannot take one
                    return Stop(StopKind.HALTED, stop.detail, {"interrupts_enabled": bool(cpu.eflags & IF)})
                skip = min(deadline, end) - self.now()
                if skip > 0:
                    self.idle += skip
                continue
            return stop


    def _run_smp(self, max_insns: int) -> Stop:
        """``run`` for several processors: the schedule picks which one runs
        and for how long (its quantum, counted in its own instructions,
        outlives this call); a slice also ends at the next device deadline.
        A halted processor is skipped until an interrupt can wake it; when
        none can run, time skips to the next device event."""
        clock, cpus = self.clock, self.cpus
        end = self.now() + max_insns
        while True:
            clock.advance(max(self.now(), clock.now))
            now = self.now()
            if now >= end:
                return Stop(StopKind.BUDGET)
            deadline = clock.next_deadline()
            slice_end = end if deadline is None else min(end, max(deadline, now + 1))
            cpu = self.running
            qend = self.quantum_end
            if qend is None or cpu.icount >= qend or not runnable(cpu):
                ready = [i for i, c in enumerate(cpus) if runnable(c)]
                if not ready:
                    if deadline is None or not any(c.eflags & IF and not c.wait_sipi and c.dead is None
                                                   for c in cpus):
                        return self._halted_for_good()
                    self.idle += min(deadline, end) - now
                    self.quantum_end = None
                    continue
                index, quantum = self.schedule.pick(self.running.index, ready)
                self.switch_to(index)
                cpu = self.running
                qend = self.quantum_end = cpu.icount + quantum
            stop = cpu.run(min(slice_end - now, qend - cpu.icount))
            if stop.kind == StopKind.BUDGET:
                continue
            if stop.kind == StopKind.HALTED and cpu.dead is None:
                self.quantum_end = None                  # its quantum ends with the HLT
                if not any(runnable(c) for c in cpus):
                    deadline = clock.next_deadline()
                    if deadline is None or not any(c.eflags & IF and not c.wait_sipi and c.dead is None
                                                   for c in cpus):
                        # halted for good now, not at the next budget (replays stop at this time)
                        return self._halted_for_good()
                continue
            return stop

    def _halted_for_good(self) -> Stop:
        enabled = any(c.eflags & IF and not c.wait_sipi and c.dead is None for c in self.cpus)
        return Stop(StopKind.HALTED, "every processor halted: nothing will wake them",
                    {"interrupts_enabled": enabled})

    def step_cpu(self, index: int) -> Stop:
        """One instruction of processor ``index`` alone (a debugger's step
        of one vCPU while the others stay put)."""
        self.switch_to(index)
        self.quantum_end = None
        self.clock.advance(max(self.now(), self.clock.now))
        return self.running.run(1)

    # -- processor state for snapshots
    def smp_state(self) -> dict:
        return {"running": self.running.index, "others": self._others, "quantum_end": self.quantum_end,
                "schedule": self.schedule.snapshot()}

    def restore_smp_state(self, state: dict) -> None:
        self.running = self.cpus[state["running"]]
        if self.on_switch is not None:
            self.on_switch(self.running)
        self._others = state["others"]
        self.quantum_end = state["quantum_end"]
        self.schedule.restore(state["schedule"])


def runnable(cpu) -> bool:
    """The schedule may give this processor a quantum: started, alive, and
    not halted unless something (an interrupt, NMI, a stop request) wakes it."""
    if cpu.wait_sipi or cpu.dead is not None:
        return False
    if not cpu.halted:
        return True
    return bool(cpu.stop_request or (cpu.nmi_pending and not cpu.nmi_blocked) or (cpu.intr and cpu.eflags & IF))


class _RunningLapic:
    """The local-APIC page of a multiprocessor PC: every processor sees its own APIC there."""

    def __init__(self, pc: PC):
        self._pc = pc

    def mmio_read(self, off, size):
        return self._pc.lapics[self._pc.running.index].mmio_read(off, size)

    def mmio_write(self, off, size, value):
        self._pc.lapics[self._pc.running.index].mmio_write(off, size, value)


class _MmioMem:
    """An add_mmio front that wraps devices so their accesses sync the clock."""

    def __init__(self, pc: PC, mem: PhysicalMemory):
        self._pc, self._mem = pc, mem

    def add_mmio(self, start, end, device, name=""):
        return self._mem.add_mmio(start, end, _Timed(self._pc, device), name)
