"""One guest: its memory, its virtual PC, its virtual CPU, its shadow, its state.

A guest is built from a ``GuestSpec``: the monitor gives it host frames
(its machine map), a virtual PC (the standard devices, each the guest's own)
whose CPU is a ``VirtualCpu`` in guest mode, a shadow page table from the
monitor's pool, and boots it the way the spec says (Multiboot kernel, disk
boot sector or firmware ROM).

Lifecycle (``state``): ``running`` → ``halted`` (HLT with nothing left to
wake it), ``exited`` (debug-exit; ``exit_status``), ``crashed`` (triple
fault, an internal error; ``reason``), ``paused`` (a debugger or the user);
``reset()`` brings any state back to a fresh boot.

Invariants:
- Guest time is the guest's own instruction count plus its idle skips
  (``pc.now()``): what siblings do never changes what this guest sees.
- Nothing a guest does raises out of ``run``: its faults end as a state
  with a reason.
"""

from __future__ import annotations

from ..guestspec import GuestSpec
from ..machine.boot import boot
from ..machine import debug
from ..machine.errors import Stop, StopKind
from ..machine.pc import PC, runnable
from . import events as ev
from .aperture import GuestApertureMap
from .guestmem import GuestPhysicalMemory
from .shadow import ShadowMmu
from .vcpu import ExitPort, VirtualCpu

PAGE = 4096

RUNNING, PAUSED, HALTED, EXITED, CRASHED = "running", "paused", "halted", "exited", "crashed"
RESET = "reset"                          # not a state: what a guest's reset request leads to


def state_after(stop: Stop, exit_status: int | None) -> tuple[str, str]:
    """The state a (non-budget) stop leaves a guest in, with the reason:
    halted for good, exited through debug-exit, crashed, paused (breakpoints,
    steps, requests), or ``RESET`` when the guest asked to be reset.  Shared
    by monitored guests and ``tvmm run --bare``."""
    kind = stop.kind
    if kind == StopKind.HALTED:
        if stop.data.get("interrupts_enabled"):
            return HALTED, "halted with no interrupt to come (no device timer armed, nothing can wake it)"
        return HALTED, "halted with interrupts disabled (nothing can wake it)"
    if kind == StopKind.REQUEST and exit_status is not None:
        return EXITED, f"debug-exit status {exit_status}"
    if kind == StopKind.REQUEST and stop.data.get("reset"):
        return RESET, "reset requested by the guest"
    if kind in (StopKind.SHUTDOWN, StopKind.ERROR):
        return CRASHED, str(stop)
    return PAUSED, str(stop)


def vcpu_state(cpu) -> str:
    """One processor's own state: crashed, waiting for SIPI (an application
    processor not started yet), halted, or running."""
    if cpu.dead is not None:
        return "crashed"
    if cpu.wait_sipi:
        return "waiting for SIPI"
    return "halted" if cpu.halted else "running"


class Guest:
    def __init__(self, monitor, spec: GuestSpec, on_console=None, boot: bool = True):
        self.monitor = monitor
        self.spec = spec
        self.name = spec.name
        self.log = monitor.log
        self.console = bytearray()
        self._on_console = on_console
        self.state = RUNNING
        self.reason = ""
        self.exit_status: int | None = None
        self.last_stop: Stop | None = None       # why the guest last left RUNNING
        self.debugger_attached = False
        self.recorder = None                     # a record.Recorder while a session is recorded
        self.timeline = None                     # a timeline.Timeline while a debugger may go back
        self.pages = None                        # a dirty.GuestPages once something logs its writes
        self._boots = boot                  # False: left at power-on state for the caller to load
        self.frames = monitor.frames.alloc(spec.mem // PAGE)
        self.extra_frames: list[int] = []         # ROM contents
        try:
            self._build()
        except BaseException:
            monitor.frames.free(self.frames + self.extra_frames)
            raise

    def _rom_frames(self, n: int) -> list[int]:
        frames = self.monitor.frames.alloc(n)
        self.extra_frames += frames
        return frames

    def _build(self) -> None:
        spec, monitor = self.spec, self.monitor
        self.gmem = GuestPhysicalMemory(spec.mem, monitor.host, self.frames)
        self.gmem.host_frames_for_rom = self._rom_frames
        self.aperture = GuestApertureMap(self)
        self.shadow = ShadowMmu(self.gmem, monitor.pool, self.aperture.hpa,
                                on_table_write=self._table_write)
        self.vcpus: list[VirtualCpu] = []
        self.pc = PC(spec.mem, mem=self.gmem, on_console=self._console_byte,
                     disks=(spec.disk0, spec.disk1), make_cpu=self._make_vcpu,
                     on_a20=self._set_a20, ncpus=spec.cpus, sched=spec.sched)
        self.vcpu: VirtualCpu = self.pc.cpu          # the bootstrap processor
        for cpu in self.vcpus:
            cpu.intr_ack = cpu.acknowledging(cpu.intr_ack)
            # a debugger's breakpoints and watchpoints are the guest's: every vCPU checks them
            cpu.breakpoints, cpu.watchpoints = self.vcpu.breakpoints, self.vcpu.watchpoints
        self.pc.on_switch = self.shadow.activate
        self.shadow.activate(self.vcpu)
        self.aperture.map_vapic()
        if self._boots:
            self._boot()

    def _make_vcpu(self, pc: PC, index: int) -> VirtualCpu:
        port = ExitPort(lambda: self.pc.running, pc.timed_bus())
        cpu = VirtualCpu(self.monitor.host, self, port, index)
        self.vcpus.append(cpu)
        return cpu

    def _set_a20(self, enabled: bool) -> None:
        for cpu in self.vcpus:
            cpu.set_a20(enabled)

    def _boot(self) -> None:
        boot(self.spec, self.gmem, self.vcpu, self.pc.disks[0])

    def _table_write(self, hpa: int, size: int) -> None:
        pc = getattr(self, "pc", None)
        cpu = pc.running if pc is not None else None
        if cpu is not None and self.monitor.current is self:
            cpu._record(ev.PT_WRITE, f"host {hpa:#010x}/{size}")

    def _console_byte(self, b: int) -> None:
        self.console.append(b)
        if self._on_console is not None:
            self._on_console(self, b)

    # -- time and state --------------------------------------------------------------------
    @property
    def icount(self) -> int:
        """Instructions retired by all of the guest's processors."""
        pc = self.pc
        return pc.running.icount + pc._others

    def now(self) -> int:
        return self.pc.now()

    @property
    def runnable(self) -> bool:
        return self.state == RUNNING

    def run(self, max_insns: int) -> Stop:
        """Run up to ``max_insns`` of this guest's virtual time.  A stop
        that ends the guest sets its state (and is returned)."""
        monitor = self.monitor
        monitor.current = self
        try:
            stop = self.pc.run(max_insns)
        finally:
            monitor.current = None
        return self._after(stop)

    def _after(self, stop: Stop) -> Stop:
        """The guest's state after a stop of its machine."""
        if stop.kind == StopKind.BUDGET:
            return stop
        self.last_stop = stop
        state, reason = state_after(stop, self.pc.exit_status)
        if state == RESET:
            self.log.record(self.name, self.icount, ev.GUEST_STOP, reason)
            self.reset()
        elif state == PAUSED:                  # breakpoints, steps, watchpoints, other requests
            self.state, self.reason = state, reason
        else:
            self.exit_status = self.pc.exit_status if state == EXITED else self.exit_status
            self._end(state, reason)
        return stop

    def _end(self, state: str, reason: str) -> None:
        self.state, self.reason = state, reason
        self.log.record(self.name, self.icount, ev.GUEST_STOP, f"{state}: {reason}", vcpu=self.pc.running.index)

    @property
    def alive(self) -> bool:
        """Running or paused: it can still execute."""
        return self.state in (RUNNING, PAUSED)

    def pause(self, reason: str = "paused") -> None:
        """Stop scheduling this guest (a debugger's interrupt, the user)."""
        if self.state == RUNNING:
            self.state, self.reason = PAUSED, reason
            self.last_stop = Stop(StopKind.REQUEST, reason, {"interrupt": True})

    def resume(self, debugger: bool = False) -> None:
        if self.state == PAUSED:
            self.state, self.reason = RUNNING, ""

    def step(self) -> Stop:
        """Execute one instruction of a paused guest; it stays paused unless
        the instruction ends it (halt for good, triple fault, exit).  A
        halted guest sleeps until its next device event and stops at the
        first instruction of the interrupt handler."""
        was = self.state
        start = self.icount
        stop = Stop(StopKind.HALTED, "halted: nothing will wake it")
        for _ in range(10_000):
            n = 1
            if not any(runnable(c) for c in self.vcpus):
                # A halted processor's next instruction is the first one of the
                # handler of the interrupt that wakes it: run to each device
                # event until one wakes it (with several vCPUs: until one can run).
                deadline = self.pc.clock.next_deadline()
                if deadline is None or not any(c.eflags & 0x200 and not c.wait_sipi for c in self.vcpus):
                    break
                n = max(1, deadline - self.now() + 1)
            stop = self.run(n)
            if self.icount != start or stop.kind != StopKind.BUDGET or self.state not in (RUNNING, PAUSED):
                break
        if self.state == RUNNING:
            self.state = was
        if stop.kind == StopKind.BUDGET:
            stop = Stop(StopKind.STEP, "single step")
        self.last_stop = stop
        return stop

    def step_vcpu(self, index: int) -> Stop:
        """One instruction of vCPU ``index`` alone while the others stay
        put (a debugger stepping one thread).  It changes the interleaving,
        so it is an outside input: call it through ``apply_input("step",
        {"vcpu": index})`` to have it recorded.  A vCPU that is halted or
        waiting for its STARTUP IPI does not move."""
        cpu = self.vcpus[index]
        was = self.state
        if cpu.wait_sipi or not runnable(cpu):
            self.last_stop = Stop(StopKind.STEP, f"CPU#{index} is {vcpu_state(cpu)}: it did not move")
            return self.last_stop
        self.monitor.current = self
        try:
            stop = self.pc.step_cpu(index)
        finally:
            self.monitor.current = None
        stop = self._after(stop)
        if self.state == RUNNING:
            self.state = was
        if stop.kind in (StopKind.BUDGET, StopKind.HALTED):
            stop = Stop(StopKind.STEP, "single step")
        self.last_stop = stop
        return stop

    def breakpoints_changed(self) -> None:
        """A debugger changed the breakpoints or watchpoints (shared by all
        vCPUs): every vCPU's run loop and watched pages follow."""
        for cpu in self.vcpus:
            debug.update_watch_pages(cpu)
            cpu._refresh()

    def apply_input(self, kind: str, data=None) -> None:
        """The one way an outside change reaches this guest (console input,
        keys, a reset, a debugger's register, segment and memory writes; the
        kinds are listed in record.py): checked against the guest's state,
        then recorded (the session's recorder, the timeline) and applied with
        the function a replay uses, so a recorded session replays exactly.
        Raises ``record.InputRejected``, with nothing changed or recorded,
        when it cannot be applied."""
        self.apply_inputs([(kind, data)])

    def apply_inputs(self, inputs) -> None:
        """Several inputs at once, all or none (a debugger's ``G`` packet):
        each is checked before any is recorded or applied."""
        from .record import prepare_input
        ready = [(kind, data, prepare_input(self, kind, data)) for kind, data in inputs]
        for kind, data, apply in ready:
            self.record_input(kind, data)
            apply()

    def record_input(self, kind: str, data=None) -> None:
        """An outside input is being applied now (see record.py).  Only for
        callers that apply it themselves; prefer ``apply_input``."""
        if self.recorder is not None:
            self.recorder.input(self, kind, data)
        if self.timeline is not None:
            self.timeline.record(kind, data)

    def note_debugger_write(self) -> None:
        """A debugger changed the guest's registers or memory (an outside input)."""
        self.log.record(self.name, self.icount, ev.DEBUGGER, "registers or memory written by the debugger")

    def reset(self) -> None:
        """A fresh boot in the same memory (zeroed), same configuration."""
        monitor = self.monitor
        breakpoints, watchpoints = set(self.vcpu.breakpoints), list(self.vcpu.watchpoints)
        self.shadow.release()
        if self.pages is not None:
            self.pages.release_frames()
        monitor.frames.free(self.frames + self.extra_frames)
        self.extra_frames = []
        self.frames = monitor.frames.alloc(self.spec.mem // PAGE)
        self.console.clear()
        self.state, self.reason, self.exit_status = RUNNING, "", None
        self._build()
        if self.pages is not None:
            self.pages.frames_replaced()
        self.vcpu.breakpoints.update(breakpoints)      # a debugger's breakpoints outlive a reboot
        self.vcpu.watchpoints.extend(watchpoints)
        self.breakpoints_changed()
        self.log.record(self.name, self.icount, ev.GUEST_STOP, "reset: booted again")

    def destroy(self) -> None:
        self.shadow.release()
        if self.pages is not None:
            for c in list(self.pages.consumers):
                self.pages.unsubscribe(c)
        self.monitor.frames.free(self.frames + self.extra_frames)
        self.frames, self.extra_frames = [], []

    # -- what the guest sees ------------------------------------------------------------------
    def cr(self, n: int) -> int:
        return self.vcpu.guest_cr(n)
