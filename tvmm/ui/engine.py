"""The machine's thread: runs the monitor and publishes frozen views.

The UI never touches guests.  It submits commands (``pause``, ``step``,
``toggle_breakpoint``, …) which the engine applies between slices, and it
reads ``views`` — a dict replaced as a whole after each slice, whose values
are immutable ``GuestView`` objects.  A paused machine waits on the command
queue instead of spinning, so it costs no CPU.

A guest with several vCPUs is shown through the one the UI selected
(``show_vcpu``).  Stepping, step-over and run-to name the vCPU they act on:
a step of one vCPU is the guest's recorded ``step`` input (the others stay
put); run-to and step-over run the whole guest until *that* vCPU reaches the
address (another vCPU reaching it first is run past it).  What the engine
could not do (a vCPU that cannot step, a rejected input) is said in
``notices``, a queue the UI drains.

Nothing here imports Textual: tests drive ``Engine.step()`` directly.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time

from ..machine.errors import StopKind
from ..monitor import inspect
from ..monitor.view import GuestView, guest_view

SLICE = 50_000
VIEW_INTERVAL = 0.05          # seconds between published views while running


class Engine:
    def __init__(self, monitor, slice_insns: int = SLICE, server=None, history: bool = True, replay=None):
        """``server``: an optional GDB server (``start``/``poll``/``close``,
        asyncio) served from this thread, so debuggers and the machine never
        race for a guest."""
        self.monitor = monitor
        self.server = server
        self.endpoints: list = []
        self.slice = slice_insns
        self.commands: queue.Queue = queue.Queue()
        self.views: dict[str, GuestView] = {}
        self.speed: dict[str, float] = {g.name: 0.0 for g in monitor.guests}
        self.page_va: dict[str, int | None] = {}
        self.mem: dict[str, tuple[int, bool]] = {}
        self.temp_breaks: dict[str, set[int]] = {}
        self.run_targets: dict[str, tuple[int, int]] = {}   # guest -> (vcpu, addr) a run-to waits for
        self.vcpu: dict[str, int] = {}                      # guest -> the vCPU its view shows
        self.event_vcpu: dict[str, int | None] = {}         # guest -> only this vCPU's events
        self.notices: queue.Queue = queue.Queue()           # messages for the UI (any thread reads)
        self.generation = 0
        self.all_events: tuple = ()
        self._stop = threading.Event()
        self._last_publish = 0.0
        if history and monitor.history_budget:   # checkpoints as guests run: stepping back
            from ..monitor.timeline import Timeline
            for g in monitor.guests:
                g.timeline = Timeline(g, budget=monitor.history_budget)
        # a session being replayed: guest -> [(time, kind, data)] still to apply
        self.replay_inputs: dict[str, list] = {}
        for rec in replay or ():
            if rec.get("t") == "input":
                self.replay_inputs.setdefault(rec["guest"], []).append((rec["time"], rec["kind"], rec["data"]))
        self.publish()

    # -- commands (any thread) ----------------------------------------------------------
    def submit(self, fn) -> None:
        """Run ``fn(engine)`` in the machine thread before the next slice."""
        self.commands.put(fn)

    def pause(self, name: str) -> None:
        self.submit(lambda e: e._guest(name).pause("paused by the user"))

    def resume(self, name: str) -> None:
        self.submit(lambda e: e._resume(e._guest(name)))

    def pause_all(self) -> None:
        self.submit(lambda e: [g.pause("paused by the user") for g in e.monitor.guests])

    def resume_all(self) -> None:
        self.submit(lambda e: [e._resume(g) for g in e.monitor.guests])

    def step(self, name: str, vcpu: int = 0) -> None:
        """One instruction of vCPU ``vcpu`` (of the guest, when it has one)."""
        self.submit(lambda e: e._step(e._guest(name), vcpu))

    def step_over(self, name: str, vcpu: int = 0) -> None:
        self.submit(lambda e: e._step_over(e._guest(name), vcpu))

    def run_to(self, name: str, addr: int, vcpu: int = 0) -> None:
        """Run the guest until vCPU ``vcpu`` reaches ``addr``."""
        def go(e):
            g = e._guest(name)
            e._run_to(g, addr, vcpu)
            e._resume(g)
        self.submit(go)

    def show_vcpu(self, name: str, vcpu: int) -> None:
        """The guest's view shows vCPU ``vcpu``."""
        self.submit(lambda e: e.vcpu.__setitem__(name, vcpu))

    def filter_events(self, name: str, vcpu: int | None) -> None:
        """The guest's view holds only vCPU ``vcpu``'s events (None: all)."""
        self.submit(lambda e: e.event_vcpu.__setitem__(name, vcpu))

    def step_back(self, name: str) -> None:
        def back(e):
            g = e._guest(name)
            if g.timeline is not None and g.state == "paused":
                g.timeline.reverse_step()
        self.submit(back)

    def toggle_breakpoint(self, name: str, addr: int) -> None:
        def toggle(e):
            g = e._guest(name)
            g.vcpu.breakpoints.symmetric_difference_update({addr})     # one set, shared by every vCPU
            g.breakpoints_changed()
        self.submit(toggle)

    def reset(self, name: str) -> None:
        def reset(e):
            e._guest(name).apply_input("reset")
        self.submit(reset)

    def send(self, name: str, data: bytes) -> None:
        def send(e):
            e._guest(name).apply_input("serial", data.decode("latin-1"))
        self.submit(send)

    def key(self, name: str, scancodes: bytes) -> None:
        def press(e):
            e._guest(name).apply_input("key", scancodes.hex())
        self.submit(press)

    def show_pages(self, name: str, va: int | None) -> None:
        self.submit(lambda e: e.page_va.__setitem__(name, va))

    def show_memory(self, name: str, addr: int, physical: bool = False) -> None:
        self.submit(lambda e: e.mem.__setitem__(name, (addr, physical)))

    def stop(self) -> None:
        self._stop.set()
        self.commands.put(lambda e: None)

    # -- in the machine thread ---------------------------------------------------------------
    def _guest(self, name: str):
        return self.monitor.guest(name)

    def _notice(self, text: str) -> None:
        self.notices.put(text)

    @staticmethod
    def _cpu(g, vcpu: int):
        return g.vcpus[vcpu] if 0 <= vcpu < len(g.vcpus) else g.vcpu

    def _resume(self, g) -> None:
        if g.state == "paused":
            if len(g.vcpus) == 1:
                g.vcpu.skip_bp_once = True      # run off a breakpoint at EIP
            else:                               # each vCPU sitting on a breakpoint runs off it
                for cpu in g.vcpus:             # (a flag left on another would skip its next one)
                    cpu.skip_bp_once = (cpu.seg_base[1] + cpu.eip) & 0xFFFFFFFF in cpu.breakpoints
            g.resume()

    def _step(self, g, vcpu: int = 0) -> None:
        if g.state != "paused":
            return
        if len(g.vcpus) == 1:
            g.step()
            return
        from ..monitor.record import InputRejected
        cpu = self._cpu(g, vcpu)
        before = cpu.icount
        try:
            g.apply_input("step", {"vcpu": cpu.index})
        except InputRejected as e:
            self._notice(f"{g.name} cpu{cpu.index}: cannot step: {e}")
            return
        if cpu.icount == before and g.state == "paused":
            why = ("it is waiting for its STARTUP IPI" if cpu.wait_sipi else
                   "it is halted and no interrupt can wake it" if cpu.halted else
                   g.last_stop.detail if g.last_stop is not None else "")
            self._notice(f"{g.name} cpu{cpu.index} did not move: {why}")

    def _temp_break(self, g, addr: int) -> None:
        if addr not in g.vcpu.breakpoints:
            self.temp_breaks.setdefault(g.name, set()).add(addr)
            g.vcpu.breakpoints.add(addr)            # one set, shared by every vCPU
            g.breakpoints_changed()

    def _run_to(self, g, addr: int, vcpu: int = 0) -> None:
        """A temporary breakpoint at ``addr`` that only vCPU ``vcpu`` stops at."""
        self._temp_break(g, addr)
        if len(g.vcpus) > 1 and addr in self.temp_breaks.get(g.name, ()):   # (a user's breakpoint stops any vCPU)
            self.run_targets[g.name] = (self._cpu(g, vcpu).index, addr)

    def _step_over(self, g, vcpu: int = 0) -> None:
        """Step, but run a CALL to its return address."""
        if g.state != "paused":
            return
        from ..machine.decoder import decode, NeedBytes
        cpu = self._cpu(g, vcpu)
        lin = (cpu.seg_base[1] + cpu.eip) & 0xFFFFFFFF
        try:
            d = decode(inspect.read(g, lin, 16, cpu=cpu), 0, cpu.code32)
        except (inspect.AccessError, NeedBytes):
            d = None
        if d is not None and d.mnem == "CALL" and not (cpu.wait_sipi or cpu.dead is not None):
            self._run_to(g, lin + d.len, cpu.index)
            self._resume(g)
        else:
            self._step(g, cpu.index)

    def _drop_temp_breaks(self) -> None:
        for name, addrs in list(self.temp_breaks.items()):
            g = self._guest(name)
            if g.state == "running":
                continue
            if self._passed_by_another(g, addrs):
                g.pc.running.skip_bp_once = True    # run it off the temporary breakpoint
                g.resume()
                continue
            g.vcpu.breakpoints.difference_update(addrs)
            g.breakpoints_changed()
            del self.temp_breaks[name]
            self.run_targets.pop(name, None)

    def _passed_by_another(self, g, addrs) -> bool:
        """The guest stopped at a run-to's temporary breakpoint, but another
        vCPU than the one the run-to waits for reached it."""
        target = self.run_targets.get(g.name)
        stop = g.last_stop
        if target is None or g.state != "paused" or stop is None or stop.kind != StopKind.BREAKPOINT:
            return False
        lin = stop.data.get("lin")
        return lin in addrs and lin == target[1] and g.pc.running.index != target[0]

    def step_once(self, wait: float = 0.0) -> None:
        """Apply pending commands, run one slice if anything can run, and
        publish views (at most every VIEW_INTERVAL while running)."""
        block = wait > 0 and not any(g.runnable for g in self.monitor.guests)
        changed = False
        while True:
            try:
                fn = self.commands.get(timeout=wait) if block else self.commands.get_nowait()
            except queue.Empty:
                break
            block = False
            fn(self)
            changed = True
        if changed and self.temp_breaks:
            self._drop_temp_breaks()                # a run-to the user paused, or that could not start
        if any(g.runnable for g in self.monitor.guests):
            n = self._apply_replay_inputs(self.slice)
            t0 = time.perf_counter()
            result = self.monitor.run(n)
            dt = max(time.perf_counter() - t0, 1e-9)
            for name, n in result.ran.items():
                self.speed[name] = n / dt / 1e6
            if self.monitor.recorder is not None:
                self.monitor.recorder.checkpoint()
            for g in self.monitor.guests:
                if g.timeline is not None and g.alive:
                    g.timeline.note()
            self._drop_temp_breaks()
            changed = changed or bool(result.stopped)
        for g in self.monitor.guests:
            if not g.runnable:
                self.speed[g.name] = 0.0
        if changed or time.perf_counter() - self._last_publish > VIEW_INTERVAL:
            self.publish()

    def _apply_replay_inputs(self, n: int) -> int:
        """Apply recorded inputs that are due and shorten the slice so no
        guest runs past its next one (a replay in the UI is exact too)."""
        for g in self.monitor.guests:
            pending = self.replay_inputs.get(g.name)
            while pending and pending[0][0] <= g.now():
                _t, kind, data = pending.pop(0)
                g.apply_input(kind, data)
            if pending and g.runnable:
                n = min(n, pending[0][0] - g.now())
        return max(1, n)

    def publish(self) -> None:
        views = {}
        for g in self.monitor.guests:
            addr, phys = self.mem.get(g.name, (0x100000, False))
            views[g.name] = guest_view(g, vcpu=self.vcpu.get(g.name, 0), page_va=self.page_va.get(g.name),
                                       mem_addr=addr, mem_physical=phys,
                                       event_vcpu=self.event_vcpu.get(g.name))
        self.all_events = tuple(self.monitor.log.recent(limit=200))
        self.views = views                      # one assignment: readers see old or new, never half
        self.generation += 1
        self._last_publish = time.perf_counter()

    def run_forever(self) -> None:
        if self.server is not None:
            asyncio.run(self._run_with_server())
            return
        while not self._stop.is_set():
            self.step_once(wait=0.1)

    async def _run_with_server(self) -> None:
        self.endpoints = await self.server.start()
        try:
            while not self._stop.is_set():
                idle = not any(g.runnable for g in self.monitor.guests)
                self.step_once()
                self.server.poll()
                await asyncio.sleep(0.01 if idle else 0)
        finally:
            await self.server.close()


__all__ = ["Engine", "StopKind"]
