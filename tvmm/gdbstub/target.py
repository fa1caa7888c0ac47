"""What a debugger sees of one guest: registers, memory, breakpoints,
watchpoints, and running it.

``GuestTarget`` adapts a monitor ``Guest`` to the session.  Memory goes
through the guest's own page tables (what the guest would see) — never the
shadow, never another guest's frames — or, in physical mode, straight to
guest-physical addresses.  Device memory and unmapped addresses are errors,
so reading memory through the debugger never disturbs a device.
Breakpoints and watchpoints live in the processor model (``cpu.breakpoints``,
``cpu.watchpoints``), not in guest memory: reads show the original bytes.

Every change a debugger makes to the guest — registers (EIP included, for
``c ADDR``/``s ADDR`` too), segment registers, system registers, memory, a
kill's reset — goes through ``Guest.apply_input``: recorded, and applied by
the same function a replay uses.  Requests nothing could honour (a
watchpoint over more than the address space, a selector the guest's tables
do not describe) are refused with ``TargetError`` before anything changes.

Several processors: each vCPU is a thread of the debugger.  ``cpu_index``
selects the vCPU whose registers are read and written (inputs carry
``"vcpu"`` when it is not the bootstrap processor) and through whose page
tables guest-virtual memory is read; a write through another vCPU's tables
than the bootstrap processor's is translated here and applied as
guest-physical ``mem`` inputs (the ``mem`` input translates through vCPU 0).
Breakpoints and watchpoints are the guest's, shared by all its vCPUs.
``step(vcpu=i)`` runs one instruction of vCPU ``i`` alone while the others
stay put (the recorded ``step`` input); ``step()`` lets the schedule pick.
With one vCPU everything is as it always was.
"""

from __future__ import annotations

import struct

from ..machine import debug
from ..machine.consts import M32
from ..monitor import inspect
from ..monitor.guest import vcpu_state
from ..monitor.record import SEGMENT_NAMES, InputRejected
from ..machine.errors import Stop, StopKind

# gdb's i386 register numbers (org.gnu.gdb.i386.core, then our system feature)
GPRS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
SEG_ORDER = (1, 2, 3, 0, 4, 5)                 # gdb: cs ss ds es fs gs; ours: ES CS SS DS FS GS
CORE = GPRS + ("eip", "eflags", "cs", "ss", "ds", "es", "fs", "gs")
X87 = tuple(f"st{i}" for i in range(8)) + ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")
SYSTEM = ("cr0", "cr2", "cr3", "cr4", "gdtr_base", "gdtr_limit", "idtr_base", "idtr_limit", "tr", "ldtr",
          "shadow_cr3")
ALL = CORE + X87 + SYSTEM
SIZES = {name: (10 if name.startswith("st") else 4) for name in ALL}
READ_ONLY = ("tr", "ldtr", "shadow_cr3")
MAX_BREAKPOINTS = 4096


class TargetError(Exception):
    """The request cannot be done (an error reply)."""


class GuestTarget:
    def __init__(self, guest, timeline=None):
        self.guest = guest
        self.physical = False                   # memory access mode (monitor command)
        self.bp_kinds: dict[int, str] = {}      # address -> "sw" | "hw"
        self.timeline = timeline
        self.cpu_index = 0                      # the selected vCPU (gdb's Hg thread - 1)
        if timeline is not None:                # only then can the session offer bs/bc
            self.reverse_step = timeline.reverse_step
            self.reverse_continue_steps = timeline.reverse_continue_steps   # in slices, one window per poll

    @property
    def cpu(self):
        """The selected vCPU (a reset rebuilds the vCPUs: looked up each time)."""
        vcpus = self.guest.vcpus
        return vcpus[self.cpu_index] if self.cpu_index < len(vcpus) else vcpus[0]

    @property
    def ncpus(self) -> int:
        return len(self.guest.vcpus)

    def select(self, index: int) -> None:
        """Make vCPU ``index`` the one registers and memory go through."""
        if not 0 <= index < self.ncpus:
            raise TargetError(f"no vCPU {index}")
        self.cpu_index = index

    def _vcpu_field(self, data: dict, index: int | None = None) -> dict:
        """An input's data naming the vCPU (only when it is not vCPU 0:
        single-processor recordings stay as they were)."""
        index = self.cpu.index if index is None else index
        if index:
            data["vcpu"] = index
        return data

    # -- registers -------------------------------------------------------------------
    def read_register(self, n: int) -> bytes:
        if not 0 <= n < len(ALL):
            raise TargetError("no such register")
        name, cpu = ALL[n], self.cpu
        if n < 8:
            v = cpu.regs[n]
        elif name == "eip":
            v = cpu.eip
        elif name == "eflags":
            v = cpu.get_eflags()
        elif n < 16:
            v = cpu.seg_sel[SEG_ORDER[n - 10]]
        elif name in X87:
            return _x87_value(cpu.fpu, name)
        else:
            v = {"cr0": lambda: cpu.guest_cr(0), "cr2": lambda: cpu.guest_cr(2), "cr3": lambda: cpu.guest_cr(3),
                 "cr4": lambda: cpu.guest_cr(4), "gdtr_base": lambda: cpu.gdtr_base,
                 "gdtr_limit": lambda: cpu.gdtr_limit, "idtr_base": lambda: cpu.idtr_base,
                 "idtr_limit": lambda: cpu.idtr_limit, "tr": lambda: cpu.tr_sel, "ldtr": lambda: cpu.ldtr_sel,
                 "shadow_cr3": lambda: cpu.cr3}[name]()
        return struct.pack("<I", v & M32)

    def _input_for(self, n: int, data: bytes) -> tuple[str, dict] | None:
        """The input that writes ``data`` into register ``n`` (None: nothing to do)."""
        if not 0 <= n < len(ALL) or len(data) != SIZES[ALL[n]]:
            raise TargetError("bad register write")
        name = ALL[n]
        if name in X87:
            if _x87_value(self.cpu.fpu, name) == data:
                return None                         # gdb writes back what it read
            return "reg", self._vcpu_field({"name": name, "value": int.from_bytes(data, "little")})
        if name in READ_ONLY:
            raise TargetError(f"{name} is read-only here")
        v = struct.unpack("<I", data)[0]
        if name in SEGMENT_NAMES:
            if v > 0xFFFF:
                raise TargetError(f"{name}: a selector is 16 bits")
            if self.cpu.seg_sel[SEGMENT_NAMES.index(name)] == v:
                return None                         # gdb writes back what it read
            return "seg", self._vcpu_field({"name": name, "selector": v})
        return "reg", self._vcpu_field({"name": name, "value": v})

    def write_register(self, n: int, data: bytes) -> None:
        item = self._input_for(n, data)
        if item is not None:
            self._apply([item])

    def _apply(self, inputs: list) -> None:
        try:
            self.guest.apply_inputs(inputs)
        except InputRejected as e:
            raise TargetError(str(e)) from None
        self.guest.note_debugger_write()

    def set_pc(self, addr: int, vcpu: int | None = None) -> None:
        """``c ADDR``/``s ADDR``: resume at another address (a recorded
        input), of vCPU ``vcpu`` (default the selected one)."""
        if not 0 <= addr <= M32:
            raise TargetError("address beyond 32 bits")
        if vcpu is not None and not 0 <= vcpu < self.ncpus:
            raise TargetError(f"no vCPU {vcpu}")
        self._apply([("reg", self._vcpu_field({"name": "eip", "value": addr}, vcpu))])

    def read_registers(self) -> bytes:
        return b"".join(self.read_register(n) for n in range(len(CORE) + len(X87)))

    def write_registers(self, data: bytes) -> None:
        """``G``: the registers that change, all or none."""
        inputs, pos = [], 0
        for n in range(len(CORE) + len(X87)):
            size = SIZES[ALL[n]]
            if pos + size > len(data):
                break
            chunk = data[pos:pos + size]
            pos += size
            if self.read_register(n) == chunk:
                continue
            item = self._input_for(n, chunk)
            if item is not None:
                inputs.append(item)
        if pos != len(data):
            raise TargetError("G: more bytes than registers")
        if inputs:
            self._apply(inputs)

    # -- memory ----------------------------------------------------------------------------
    def read_memory(self, addr: int, length: int) -> bytes:
        try:
            return inspect.read(self.guest, addr, length, self.physical, cpu=self.cpu)
        except inspect.AccessError as e:
            raise TargetError(str(e)) from None

    def write_memory(self, addr: int, data: bytes) -> None:
        if not 0 <= addr <= M32:
            raise TargetError("address beyond 32 bits")
        cpu = self.cpu
        if not self.physical and cpu.index != 0:
            self._apply(self._physical_writes(cpu, addr, data))
            return
        item = {"addr": addr, "bytes": data.hex()}
        if self.physical:
            item["physical"] = True
        self._apply([("mem", item)])

    def _physical_writes(self, cpu, addr: int, data: bytes) -> list:
        """A guest-virtual write as vCPU ``cpu`` maps it: one guest-physical
        ``mem`` input per page (applied all or none)."""
        inputs, pos = [], 0
        while pos < len(data):
            chunk = min(len(data) - pos, 0x1000 - (addr & 0xFFF))
            gpa = inspect.translate(self.guest, addr, cpu=cpu)
            if gpa is None:
                raise TargetError(f"cannot access memory at {addr:#x}")
            inputs.append(("mem", {"addr": gpa, "bytes": data[pos:pos + chunk].hex(), "physical": True}))
            addr = (addr + chunk) & M32
            pos += chunk
        return inputs

    # -- breakpoints and watchpoints -----------------------------------------------------------
    def add_breakpoint(self, addr: int, kind: str) -> None:
        if not 0 <= addr <= M32:
            raise TargetError("address beyond 32 bits")
        if addr not in self.cpu.breakpoints and len(self.cpu.breakpoints) >= MAX_BREAKPOINTS:
            raise TargetError(f"at most {MAX_BREAKPOINTS} breakpoints")
        self.bp_kinds[addr] = kind
        self.cpu.breakpoints.add(addr)              # one set, shared by every vCPU
        self.guest.breakpoints_changed()

    def remove_breakpoint(self, addr: int) -> None:
        self.bp_kinds.pop(addr, None)
        self.cpu.breakpoints.discard(addr)
        self.guest.breakpoints_changed()

    def add_watchpoint(self, addr: int, length: int, kind: str) -> None:
        problem = debug.watch_problem(self.cpu, addr, length)
        if problem is not None:
            raise TargetError(problem)
        self.cpu.watchpoints.append((addr, length, kind))
        self.guest.breakpoints_changed()

    def remove_watchpoint(self, addr: int, length: int, kind: str) -> None:
        try:
            self.cpu.watchpoints.remove((addr, length, kind))
        except ValueError:
            pass
        self.guest.breakpoints_changed()

    def clear_debug_state(self) -> None:
        """Detach: forget every breakpoint and watchpoint of this debugger."""
        cpu = self.cpu
        cpu.breakpoints.clear()
        cpu.watchpoints.clear()
        self.bp_kinds.clear()
        self.guest.breakpoints_changed()

    # -- execution -------------------------------------------------------------------------------
    def step(self, off_breakpoint: bool = True, vcpu: int | None = None) -> Stop:
        """Exactly one instruction.  A breakpoint at EIP does not stop it
        (``off_breakpoint``, the first step of a resume) or stops it before
        it runs (later steps of a range step).  With several vCPUs, ``vcpu``
        names the one that runs it alone (a recorded ``step`` input; one
        halted or waiting for its STARTUP IPI does not move); None lets the
        schedule pick, as running would."""
        g = self.guest
        if not g.alive:
            return g.last_stop
        if self.timeline is not None:
            self.timeline.at_beginning = False
        if len(g.vcpus) == 1:
            g.vcpu.skip_bp_once = off_breakpoint
            return g.step()
        if vcpu is None:
            self._run_off_breakpoints(off_breakpoint)
            return g.step()
        if not 0 <= vcpu < len(g.vcpus):
            raise TargetError(f"no vCPU {vcpu}")
        self._run_off_breakpoints(off_breakpoint, only=vcpu)
        previous = g.last_stop
        try:
            g.apply_input("step", {"vcpu": vcpu})
        except InputRejected as e:
            raise TargetError(str(e)) from None
        g.vcpus[vcpu].skip_bp_once = False       # not consumed when it could not move
        if g.last_stop is previous:
            # a vCPU that cannot move (halted, waiting for its STARTUP IPI)
            # leaves the guest's last stop as it was: this step is the stop now
            g.last_stop = Stop(StopKind.STEP, f"CPU#{vcpu} did not move")
        return g.last_stop

    def _run_off_breakpoints(self, enable: bool = True, only: int | None = None) -> None:
        """Several vCPUs: each one sitting on a breakpoint (or only vCPU
        ``only``) runs off it on its next instruction; the flag is cleared on
        the others, so none left over skips a later breakpoint."""
        for cpu in self.guest.vcpus:
            at = (cpu.seg_base[1] + cpu.eip) & M32
            cpu.skip_bp_once = enable and (only is None or cpu.index == only) and at in cpu.breakpoints

    def reset(self) -> None:
        """A kill: this guest reboots (a recorded input); never the process."""
        self.clear_debug_state()
        self._apply([("reset", None)])

    def resume(self) -> None:
        if self.timeline is not None:
            self.timeline.at_beginning = False
        if len(self.guest.vcpus) == 1:
            self.guest.vcpu.skip_bp_once = True  # a breakpoint at EIP: run off it first
        else:
            self._run_off_breakpoints()
        self.guest.resume(debugger=True)

    # -- threads (vCPUs) ------------------------------------------------------------------------
    def stopped_cpu(self) -> int:
        """The index of the vCPU that ran last (the one that stopped)."""
        running = getattr(self.guest.pc, "running", None)
        index = getattr(running, "index", 0)
        return index if 0 <= index < self.ncpus else 0

    def cpu_state(self, index: int) -> str:
        return vcpu_state(self.guest.vcpus[index])

    def pause(self, reason: str) -> None:
        """A 0x03: stop running (a guest paused for a range step or a reverse
        search is stopped by the interrupt too)."""
        g = self.guest
        if g.state == "paused":
            g.last_stop = Stop(StopKind.REQUEST, reason, {"interrupt": True})
        else:
            g.pause(reason)


def stop_signal(stop: Stop | None) -> int:
    """The signal number gdb is told for a stop."""
    if stop is None:
        return 5
    if stop.kind == StopKind.REQUEST and stop.data.get("interrupt"):
        return 2                                 # SIGINT
    if stop.kind in (StopKind.SHUTDOWN, StopKind.ERROR):
        return 11                                # SIGSEGV: the guest died
    return 5                                     # SIGTRAP


def _x87_value(f, name: str) -> bytes:
    """gdb's view of the x87 (its i386 layout): ST(i) stack-relative, 80 bits;
    fstat with TOP; ftag the full two-bit tag word (as FNSTENV stores it);
    fiseg:fioff = FCS:FIP, foseg:fooff = FDS:FDP, fop the 11-bit opcode."""
    if name.startswith("st"):
        return f.st(int(name[2])).to_bytes(10, "little")
    v = {"fctrl": f.cw, "fstat": f.status(), "ftag": f.tag_word(), "fiseg": f.fcs, "fioff": f.fip,
         "foseg": f.fds, "fooff": f.fdp, "fop": f.fop}[name]
    return struct.pack("<I", v & M32)
