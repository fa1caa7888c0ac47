"""What a debugger sees of one guest: registers, memory, breakpoints,
watchpoints, and running it.

``GuestTarget`` adapts a monitor ``Guest`` to the session.  Memory goes
through the guest's own page tables (what the guest would see) — never the
shadow, never another guest's frames — or, in physical mode, straight to
guest-physical addresses.  Device memory and unmapped addresses are errors,
so reading memory through the debugger never disturbs a device.
Breakpoints and watchpoints live in the processor model (``cpu.breakpoints``,
``cpu.watchpoints``), not in guest memory: reads show the original bytes.
"""

from __future__ import annotations

import struct

from ..machine import debug, segments
from ..machine.consts import M32
from ..monitor import inspect
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


class TargetError(Exception):
    """The request cannot be done (an error reply)."""


class GuestTarget:
    def __init__(self, guest, timeline=None):
        self.guest = guest
        self.physical = False                   # memory access mode (monitor command)
        self.bp_kinds: dict[int, str] = {}      # address -> "sw" | "hw"
        self.timeline = timeline
        if timeline is not None:                # only then can the session offer bs/bc
            self.reverse_step = timeline.reverse_step
            self.reverse_continue = timeline.reverse_continue

    @property
    def cpu(self):
        return self.guest.vcpu

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
            return bytes(SIZES[name])           # no FPU: reads as zero
        else:
            v = {"cr0": lambda: cpu.guest_cr(0), "cr2": lambda: cpu.guest_cr(2), "cr3": lambda: cpu.guest_cr(3),
                 "cr4": lambda: cpu.guest_cr(4), "gdtr_base": lambda: cpu.gdtr_base,
                 "gdtr_limit": lambda: cpu.gdtr_limit, "idtr_base": lambda: cpu.idtr_base,
                 "idtr_limit": lambda: cpu.idtr_limit, "tr": lambda: cpu.tr_sel, "ldtr": lambda: cpu.ldtr_sel,
                 "shadow_cr3": lambda: cpu.cr3}[name]()
        return struct.pack("<I", v & M32)

    def write_register(self, n: int, data: bytes) -> None:
        if not 0 <= n < len(ALL) or len(data) != SIZES[ALL[n]]:
            raise TargetError("bad register write")
        name, cpu = ALL[n], self.cpu
        if name in X87:
            if any(data):
                raise TargetError("no FPU")
            return
        v = struct.unpack("<I", data)[0]
        if n < 10:                                  # general registers, EIP, EFLAGS: replayable inputs
            self.guest.record_input("reg", {"name": name, "value": v})
        if n < 8:
            cpu.regs[n] = v
        elif name == "eip":
            cpu.eip = v
        elif name == "eflags":
            cpu.set_eflags(v)
        elif n < 16:
            self._load_segment(SEG_ORDER[n - 10], v & 0xFFFF)
        elif name in ("cr0", "cr3", "cr4"):
            getattr(cpu, f"set_{name}")(v)
        elif name == "cr2":
            cpu.cr2 = v
        elif name in ("gdtr_base", "gdtr_limit", "idtr_base", "idtr_limit"):
            setattr(cpu, name, v if name.endswith("base") else v & 0xFFFF)
        else:
            raise TargetError(f"{name} is read-only here")
        self.guest.note_debugger_write()

    def _load_segment(self, seg: int, sel: int) -> None:
        cpu = self.cpu
        if cpu.seg_sel[seg] == sel:
            return
        if not cpu.protected:
            segments.load_real(cpu, seg, sel)
            return
        try:
            if seg == 1:
                raise TargetError("cannot change CS from the debugger in protected mode")
            segments.load_data(cpu, seg, sel) if seg != 2 else segments.load_ss(cpu, sel)
        except Exception as e:                  # a bad selector: the guest is left as it was
            raise TargetError(f"cannot load selector {sel:#x}: {e}") from None

    def read_registers(self) -> bytes:
        return b"".join(self.read_register(n) for n in range(len(CORE) + len(X87)))

    def write_registers(self, data: bytes) -> None:
        pos = 0
        for n in range(len(CORE) + len(X87)):
            size = SIZES[ALL[n]]
            if pos + size > len(data):
                break
            chunk = data[pos:pos + size]
            if n < len(CORE) or any(chunk):
                if n < len(CORE) and self.read_register(n) == chunk:
                    pos += size
                    continue
                self.write_register(n, chunk)
            pos += size

    # -- memory ----------------------------------------------------------------------------
    def read_memory(self, addr: int, length: int) -> bytes:
        try:
            return inspect.read(self.guest, addr, length, self.physical)
        except inspect.AccessError as e:
            raise TargetError(str(e)) from None

    def write_memory(self, addr: int, data: bytes) -> None:
        try:
            if not self.physical:
                inspect.translate(self.guest, addr)     # (fails below before anything is recorded)
            inspect.write(self.guest, addr, data, self.physical)
        except inspect.AccessError as e:
            raise TargetError(str(e)) from None
        if not self.physical:
            self.guest.record_input("mem", {"addr": addr, "bytes": data.hex()})
        self.guest.note_debugger_write()

    # -- breakpoints and watchpoints -----------------------------------------------------------
    def add_breakpoint(self, addr: int, kind: str) -> None:
        self.bp_kinds[addr] = kind
        self.cpu.breakpoints.add(addr)
        self.cpu._refresh()

    def remove_breakpoint(self, addr: int) -> None:
        self.bp_kinds.pop(addr, None)
        self.cpu.breakpoints.discard(addr)
        self.cpu._refresh()

    def add_watchpoint(self, addr: int, length: int, kind: str) -> None:
        self.cpu.watchpoints.append((addr, length, kind))
        debug.update_watch_pages(self.cpu)

    def remove_watchpoint(self, addr: int, length: int, kind: str) -> None:
        try:
            self.cpu.watchpoints.remove((addr, length, kind))
        except ValueError:
            pass
        debug.update_watch_pages(self.cpu)

    def clear_debug_state(self) -> None:
        """Detach: forget every breakpoint and watchpoint of this debugger."""
        cpu = self.cpu
        cpu.breakpoints.clear()
        cpu.watchpoints.clear()
        self.bp_kinds.clear()
        debug.update_watch_pages(cpu)

    # -- execution -------------------------------------------------------------------------------
    def step(self) -> Stop:
        """Exactly one instruction (a breakpoint at EIP does not stop it)."""
        g = self.guest
        if not g.alive:
            return g.last_stop
        if self.timeline is not None:
            self.timeline.at_beginning = False
        self.cpu.skip_bp_once = True
        stop = g.step()
        return stop

    def resume(self) -> None:
        if self.timeline is not None:
            self.timeline.at_beginning = False
        self.cpu.skip_bp_once = True            # a breakpoint at EIP: run off it first
        self.guest.resume(debugger=True)

    def pause(self, reason: str) -> None:
        self.guest.pause(reason)


def stop_signal(stop: Stop | None) -> int:
    """The signal number gdb is told for a stop."""
    if stop is None:
        return 5
    if stop.kind == StopKind.REQUEST and stop.data.get("interrupt"):
        return 2                                 # SIGINT
    if stop.kind in (StopKind.SHUTDOWN, StopKind.ERROR):
        return 11                                # SIGSEGV: the guest died
    return 5                                     # SIGTRAP
