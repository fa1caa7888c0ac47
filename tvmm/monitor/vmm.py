"""The virtual machine monitor: several guests on one machine.

``Monitor`` owns the machine's host-physical memory and divides it: guest
RAM in frames (each guest's machine map), a pool of frames for shadow page
tables (with a limit), and the device aperture through which guest device
memory is emulated.  It time-slices the one processor among the guests and
records what it does in an event log.

The caller owns the loop: ``run(max_insns)`` gives every runnable guest up
to ``max_insns`` of its virtual time, in round-robin slices of
``slice_insns``, and returns what happened.  Fairness: each round gives each
runnable guest the same quantum of virtual time, so guests advance at the
same virtual speed; a halted guest's quantum costs nothing (its time jumps
to its next device event); a stopped one is skipped and its siblings go on.
A guest that is the only runnable one gets its whole ``max_insns`` at once
(nobody to be fair to; what a guest sees never depends on the slicing).

Invariants:
- One guest runs at a time (``current``); the device aperture routes to it.
- A guest's failure (triple fault, garbage, an internal error while
  emulating for it) stops that guest with a reason; no other guest is
  touched, and ``run`` never raises because of a guest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..guestspec import GuestSpec
from ..machine.memory import PhysicalMemory
from .aperture import DeviceAperture
from .dirty import DirtyLog
from .events import EventLog
from .guest import Guest
from .hostmem import MAX_HOST_RAM, FrameAllocator, OutOfMemory
from .shadow import ShadowPool
from .timeline import DEFAULT_BUDGET

PAGE = 4096
DEFAULT_POOL_FRAMES = 2048          # 8 MiB of shadow tables
DEFAULT_SLICE = 50_000


@dataclass
class RunResult:
    """What one ``Monitor.run`` call did."""
    stopped: list = field(default_factory=list)     # (guest, Stop) for guests that left RUNNING
    ran: dict = field(default_factory=dict)         # guest name -> virtual instructions advanced

    @property
    def idle(self) -> bool:
        return not self.ran


class Monitor:
    def __init__(self, host_mem: int, *, pool_frames: int = DEFAULT_POOL_FRAMES,
                 slice_insns: int = DEFAULT_SLICE):
        if host_mem > MAX_HOST_RAM or host_mem % PAGE:
            raise ValueError(f"host memory must be a multiple of 4 KiB, at most {MAX_HOST_RAM >> 20} MiB "
                             f"(host-physical frames are 32-bit and end at the device aperture)")
        self.host = PhysicalMemory(host_mem)
        self.frames = FrameAllocator(self.host)
        self.dirty = DirtyLog(self.host)
        # bytes of history (timeline.py) each guest may keep while a debugger
        # or the UI can go back; 0: none (tvmm run --history SIZE)
        self.history_budget = DEFAULT_BUDGET
        self.pool = ShadowPool(self.frames, pool_frames)
        self.aperture = DeviceAperture(self)
        self.aperture.attach(self.host)
        self.log = EventLog()
        self.guests: list[Guest] = []
        self.current: Guest | None = None
        self.slice_insns = slice_insns
        self.recorder = None                     # record.Recorder while a session is recorded

    @classmethod
    def with_guests(cls, specs, on_console=None) -> "Monitor":
        """A monitor sized for ``specs`` with each of them added (booted).
        Guests' memory is only committed when touched, but every guest frame
        needs a host-physical frame below the device aperture (shadow entries
        are 32-bit): guests that add up to more are refused with one line."""
        size = cls.host_size_for(specs)
        if size > MAX_HOST_RAM:
            total = sum(s.mem for s in specs)
            room = MAX_HOST_RAM - (size - total)
            raise ValueError(f"the guests' memory adds up to {total >> 20} MiB; all guests together can have "
                             f"at most {room >> 20} MiB (host-physical memory ends at {MAX_HOST_RAM:#x}, "
                             f"where the device aperture begins)")
        monitor = cls(size)
        for spec in specs:
            monitor.add_guest(spec, on_console=on_console)
        return monitor

    @staticmethod
    def host_size_for(specs, pool_frames: int = DEFAULT_POOL_FRAMES) -> int:
        """Enough host memory for these guests, their ROMs and the shadow pool."""
        from ..machine.boot import rom as romboot
        rom = romboot.MAX_SIZE + romboot.LOW_WINDOW          # the image and its copy below 1 MiB
        return sum(s.mem + (rom if s.boot == "rom" else 0) for s in specs) + (pool_frames + 16) * PAGE

    # -- guests ---------------------------------------------------------------------------
    def add_guest(self, spec: GuestSpec, on_console=None, boot: bool = True) -> Guest:
        """A new guest, booted as ``spec`` says (``boot=False``: left at the
        power-on state for the caller to load, as benchmarks do)."""
        if any(g.name == spec.name for g in self.guests):
            raise ValueError(f"two guests named {spec.name!r}")
        try:
            guest = Guest(self, spec, on_console, boot)
        except OutOfMemory as e:
            raise OutOfMemory(f"guest {spec.name}: {e}") from None
        self.guests.append(guest)
        return guest

    def guest(self, name: str) -> Guest:
        for g in self.guests:
            if g.name == name:
                return g
        raise KeyError(name)

    def remove_guest(self, guest: Guest) -> None:
        self.guests.remove(guest)
        guest.destroy()

    # -- the processor's time ------------------------------------------------------------------
    def run(self, max_insns: int) -> RunResult:
        """Advance each runnable guest by up to ``max_insns`` of its virtual time."""
        result = RunResult()
        left = {g.name: max_insns for g in self.guests}
        while True:
            progressed = False
            alone = sum(1 for g in self.guests if g.runnable) == 1
            for g in self.guests:
                if not g.runnable or left[g.name] <= 0:
                    continue
                start = g.now()
                stop = g.run(left[g.name] if alone else min(self.slice_insns, left[g.name]))
                advanced = g.now() - start
                left[g.name] -= max(advanced, 1)
                result.ran[g.name] = result.ran.get(g.name, 0) + advanced
                progressed = True
                if not g.runnable:
                    result.stopped.append((g, stop))
            if not progressed:
                return result

    # -- snapshots -------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Every guest's complete state (see snapshot.py); the monitor's own
        allocations do not change while guests run, and shadows are rebuilt."""
        from . import snapshot
        return {g.name: snapshot.take(g) for g in self.guests}

    def restore(self, snaps: dict) -> None:
        from . import snapshot
        for g in self.guests:
            snapshot.restore(g, snaps[g.name])

    @property
    def all_stopped(self) -> bool:
        """No guest will run again without someone resuming it."""
        return not any(g.runnable for g in self.guests)

    @property
    def all_finished(self) -> bool:
        """Every guest halted for good, exited or crashed (none is paused)."""
        return not any(g.alive for g in self.guests)
