"""A PC/AT-compatible machine: one CPU, memory, buses and the standard devices.

Wiring (as on a PC with an integrated APIC in virtual-wire mode):
  ISA IRQ n --+--> 8259A pair input n --INTR--> local APIC LINT0 (ExtINT) --> CPU INTR
              +--> I/O APIC pin n (IRQ 0 on pin 2) --> local APIC
The CPU acknowledges through the local APIC, which hands over the 8259's
vector for ExtINT, so a kernel that never touches the APIC still gets 8259
interrupts, and one that programs the APIC gets its own.

Invariants:
- Virtual time is ``cpu.icount + idle``: ``idle`` counts instructions skipped
  while the CPU was halted waiting for the next device event.
- ``run()`` runs the CPU in slices that end at the next device deadline, so a
  device event happens at an exact instruction count; between deadlines a
  device access sets ``clock.now`` to the exact count of the instruction
  making it (no event can be due before the slice ends).
- Nothing here reads a wall clock.
"""

from __future__ import annotations

from .boot import firmware_tables
from .bus import PortBus
from .clock import DEFAULT_IPS, Clock
from .cpu import CPU
from .devices.cga import Cga
from .devices.ide import Disk, IdeChannel
from .devices.ioapic import IoApic
from .devices.kbd import Kbc, SystemControlPortA
from .devices.lapic import LocalApic
from .devices.pic import Pic
from .devices.pit import Pit, SystemControlPortB
from .devices.qemu_testdev import DebugExit, FwCfg, PcTestdev, PostCodePort
from .devices.rtc import Rtc
from .devices.uart import Uart
from .consts import IF
from .errors import Stop, StopKind
from .irq import IrqLine
from .memory import PhysicalMemory

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
                 mem=None, make_cpu=None, on_a20=None):
        """A bare PC by default.  A monitor builds each guest's virtual PC by
        passing the guest-physical address space (``mem``), a factory for the
        guest's virtual CPU (``make_cpu(pc)``, called once the port bus
        exists) and ``on_a20`` (the A20 gate masks guest-physical
        addresses, which the monitor's shadow applies)."""
        self.clock = clock = Clock(ips)
        self.mem = mem if mem is not None else PhysicalMemory(mem_size)
        self.bus = PortBus()
        self.on_a20 = on_a20
        self.cpu = cpu = make_cpu(self) if make_cpu is not None else CPU(self.mem, self.timed_bus())
        self.idle = 0
        self.exit_status: int | None = None
        clock.on_new_deadline = self._new_deadline
        # -- interrupt fabric
        pic_out = IrqLine("pic-intr")
        self.pic = Pic(pic_out)
        self.ioapic = IoApic(self._ioapic_deliver, firmware_tables.IOAPIC_ID)
        self.lapic = LocalApic(clock, 0, on_eoi=self.ioapic.eoi, extint_pending=lambda: pic_out.level,
                               extint_ack=self.pic.acknowledge, intr=IrqLine("cpu-intr", cpu.set_intr))
        pic_out.connect(self.lapic.extint_changed)
        cpu.intr_ack = self.lapic.acknowledge
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
        self.devices = [self.pic, self.pit, self.port61, self.com1, self.com2, self.rtc, self.kbc,
                        self.port92, self.cga, self.ide]
        for dev in (self.pic, self.pit, self.port61, self.com1, self.com2, self.rtc, self.kbc,
                    self.port92, self.ide):
            dev.attach(self.bus)
        self.cga.attach(self.bus, self.mem)
        self.lapic.attach(_MmioMem(self, self.mem))
        self.ioapic.attach(_MmioMem(self, self.mem))
        self.devices += [self.lapic, self.ioapic]
        if testdevs:
            self.debug_exit = DebugExit(self._debug_exit)
            self.fw_cfg = FwCfg(mem_size)
            self.testdev = PcTestdev(lambda n: self.irq[n] if 0 <= n < 16 else None)
            self.post = PostCodePort(clock, on_post)
            for dev in (self.debug_exit, self.fw_cfg, self.post):
                dev.attach(self.bus)
            self.testdev.attach(self.bus, self.mem)
            self.devices += [self.debug_exit, self.fw_cfg, self.testdev, self.post]
        firmware_tables.install(self.mem)          # what the BIOS would have left

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
        self.lapic.accept(vector, level_triggered)

    def _debug_exit(self, status: int) -> None:
        self.exit_status = status
        self.cpu.request_stop(Stop(StopKind.REQUEST, f"debug-exit status {status}", {"exit_status": status}))

    def _reset_request(self) -> None:
        self.cpu.request_stop(Stop(StopKind.REQUEST, "reset requested by the guest", {"reset": True}))

    def timed_bus(self) -> "_Timed":
        """The port bus as a CPU must reach it (each access syncs the clock)."""
        return _Timed(self, self.bus)

    def _a20(self, enabled: bool) -> None:
        if self.on_a20 is not None:
            self.on_a20(enabled)
            return
        self.cpu.a20_mask = 0xFFFFFFFF if enabled else 0xFFEFFFFF
        self.cpu.flush_tlb(keep_global=False)

    # -- time
    def now(self) -> int:
        return self.cpu.icount + self.idle

    def _new_deadline(self, deadline: int) -> None:
        """A device scheduled an event inside the running slice: end the slice
        there.  Port I/O ends its block, so the CPU stops exactly at the
        deadline; an event scheduled by a memory-mapped store is taken at the
        end of that store's block (a few instructions late, the same in
        every run)."""
        at = deadline - self.idle
        if at < self.cpu.stop_at:
            self.cpu.stop_at = at

    def sync_clock(self) -> None:
        """Make ``clock.now`` the count of the instruction executing right now."""
        t = self.cpu.insn_time() + self.idle
        if t > self.clock.now:
            self.clock.now = t

    def run(self, max_insns: int) -> Stop:
        """Run up to ``max_insns`` of virtual time (halted time included)."""
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
                    return stop                  # nothing can ever wake it
                skip = min(deadline, end) - self.now()
                if skip > 0:
                    self.idle += skip
                continue
            return stop


class _MmioMem:
    """An add_mmio front that wraps devices so their accesses sync the clock."""

    def __init__(self, pc: PC, mem: PhysicalMemory):
        self._pc, self._mem = pc, mem

    def add_mmio(self, start, end, device, name=""):
        return self._mem.add_mmio(start, end, _Timed(self._pc, device), name)
