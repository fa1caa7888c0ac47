"""The public Python API: boot guest kernels, drive them, look inside them.

A small, stable surface over the monitor, for tests and scripts; nothing in
it needs the UI::

    import tvmm
    g = tvmm.boot(kernel="samples/build/hello.elf", mem="16M")
    g.expect("memory: 16 MiB")
    g.run(until="halt")
    assert g.state == "halted" and "bye" in g.console

- ``boot(spec=None, *, record=None, **keys) -> Guest`` — one guest; the spec
  is a ``GuestSpec``, a ``--guest`` string (``"name=a,kernel=K.elf,cmdline=x"``
  or a bare kernel path) or the same keys as keyword arguments
  (``kernel=``, ``cmdline=``, ``mem=`` as bytes or ``"16M"``, ``name=``,
  ``disk0=``, ``disk1=``, ``boot=``, ``rom=``).
- ``Machine(*specs, record=None)`` — several guests side by side, each
  independent (``machine["name"]``, ``machine.guests``, ``machine.run``).
- ``Guest.run(insns=None, until=None)``: ``until`` is an address (``int``),
  ``Symbol("name")``, console text (a ``str``, or ``Text("...")`` for text
  that is also a keyword), or one of the keywords ``"halt"`` (halted or
  exited through debug-exit), ``"exit"``, ``"crash"`` or ``"end"`` (any of
  those).  ``expect(text, timeout_insns=…)``, ``send(text)``, ``registers``,
  ``read(addr, n, physical=False)``, ``write(addr, data, physical=False)``,
  ``set_register(name, value)``, ``symbol(name)``, ``events(kind=None)``,
  ``exit_status``, ``console``, ``snapshot()`` / ``restore(snap)``,
  ``record(path)``.

Every outside change (``send``, ``write``, ``set_register``) goes through
``Guest.apply_input``, so a recorded session replays exactly.  Usage errors
raise ``UsageError`` (one line); a wait that is not satisfied raises
``ExpectTimeout``, a guest that ended before it was satisfied ``GuestEnded``
— both ``AssertionError`` subclasses, so pytest reports them as failures,
with the guest, its instruction count and the console's last lines.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, replace

__all__ = ["boot", "Machine", "Guest", "Symbol", "Text", "Snapshot", "TvmmError", "UsageError",
           "ExpectTimeout", "GuestEnded", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 50_000_000        # guest instructions a wait may take unless told otherwise
SLICE = 10_000                       # console waits are checked this often (guest instructions)
DIGEST_EVERY = 200_000              # a recording's state digests, in guest time
KEYWORDS = {"halt": ("halted", "exited"), "exit": ("exited",), "crash": ("crashed",),
            "end": ("halted", "exited", "crashed")}
_SPEC_KEYS = ("name", "kernel", "cmdline", "disk0", "disk1", "mem", "boot", "rom")
_TAIL_LINES = 12


class TvmmError(Exception):
    """Base of the API's errors."""


class UsageError(TvmmError, ValueError):
    """The API was called wrongly (a bad spec, an unknown symbol, memory the
    guest does not map, ...): the message is one line."""


class ExpectTimeout(TvmmError, AssertionError):
    """What a run waited for did not happen within its instruction budget."""


class GuestEnded(TvmmError, AssertionError):
    """The guest halted, exited or crashed before what a run waited for."""


@dataclass(frozen=True)
class Symbol:
    """``run(until=Symbol("main"))``: stop when the guest reaches that symbol."""
    name: str


@dataclass(frozen=True)
class Text:
    """``run(until=Text("halt"))``: console text, even when it is a keyword."""
    text: str


@dataclass(frozen=True)
class Snapshot:
    """A guest's complete state (``Guest.snapshot``), to ``restore`` later."""
    guest: str
    icount: int
    _state: object
    _expect_at: int


# -- specs -------------------------------------------------------------------------------------
def _quote(value: str) -> str:
    return f"'{value}'" if "'" not in value else f'"{value}"'


def make_spec(spec=None, default_name: str = "guest0", **keys):
    """A ``GuestSpec`` from a spec, a ``--guest`` string or keyword arguments;
    file paths become absolute (a recorded session then replays from anywhere)."""
    from .guestspec import GuestSpec, SpecError, parse_guest
    try:
        if spec is not None and keys:
            raise UsageError("give a guest spec or keyword arguments, not both")
        if isinstance(spec, GuestSpec):
            result = spec
        elif isinstance(spec, (str, os.PathLike)):
            result = parse_guest(os.fspath(spec), default_name)
        elif spec is None:
            unknown = sorted(set(keys) - set(_SPEC_KEYS))
            if unknown:
                raise UsageError(f"unknown guest option {unknown[0]!r} (known: {', '.join(_SPEC_KEYS)})")
            if not keys:
                raise UsageError("boot() needs a guest: a spec string, a GuestSpec or kernel=PATH")
            parts = []
            for k, v in keys.items():
                if v is None:
                    continue
                if k == "mem" and isinstance(v, int):
                    v = str(v)
                parts.append(f"{k}={_quote(os.fspath(v) if isinstance(v, os.PathLike) else str(v))}")
            result = parse_guest(",".join(parts), default_name)
        else:
            raise UsageError(f"a guest spec must be a string or GuestSpec, not {type(spec).__name__}")
    except SpecError as e:
        raise UsageError(str(e)) from None
    paths = {k: os.path.abspath(getattr(result, k)) for k in ("kernel", "disk0", "disk1", "rom")
             if getattr(result, k)}
    for k, p in paths.items():
        if not os.path.isfile(p):
            raise UsageError(f"guest {result.name}: {k} {getattr(result, k)} is not a file")
    return replace(result, **paths)


def boot(spec=None, *, record=None, **keys) -> "Guest":
    """Boot one guest (see the module docstring for ``spec``); with
    ``record=PATH`` its session is recorded from its first instruction."""
    return Machine(make_spec(spec, **keys), record=record).guests[0]


# -- machine -------------------------------------------------------------------------------------
class Machine:
    """Several guests side by side under one monitor (each one independent:
    running one never changes what another sees)."""

    def __init__(self, *specs, record=None):
        from .monitor.vmm import Monitor
        if len(specs) == 1 and isinstance(specs[0], (list, tuple)):
            specs = tuple(specs[0])
        if not specs:
            raise UsageError("a machine needs at least one guest")
        built = [make_spec(s, default_name=f"guest{i}") if not isinstance(s, dict)
                 else make_spec(default_name=f"guest{i}", **s) for i, s in enumerate(specs)]
        names = [s.name for s in built]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup:
            raise UsageError(f"two guests named {dup!r} (give each a name=)")
        try:
            self.monitor = Monitor.with_guests(built)
        except UsageError:
            raise
        except Exception as e:                   # a bad kernel or image, too much memory
            raise UsageError(_one_line(e)) from None
        self.guests = [Guest(self, g) for g in self.monitor.guests]
        self.recorder = None
        self.record_path: str | None = None
        self.record_note = ""                    # why a recording stopped early, if it did
        self._auto_record = False                # the pytest plugin's recording (record() replaces it)
        if record is not None:
            self.record(record)

    def __getitem__(self, name: str) -> "Guest":
        for g in self.guests:
            if g.name == name:
                return g
        raise UsageError(f"no guest named {name!r} (guests: {', '.join(g.name for g in self.guests)})")

    def __iter__(self):
        return iter(self.guests)

    def __len__(self) -> int:
        return len(self.guests)

    def run(self, insns: int) -> None:
        """Give every running guest up to ``insns`` more of its virtual time,
        side by side (round-robin, as the monitor schedules them)."""
        _check_count("insns", insns)
        left = insns
        while left > 0 and not self.monitor.all_stopped:
            n = min(left, DIGEST_EVERY if self.recorder else left, 1_000_000)
            self.monitor.run(n)
            left -= n
            self._checkpoint()

    # -- recording ---------------------------------------------------------------------------
    def record(self, path, digest_every: int = DIGEST_EVERY, _auto: bool = False) -> str:
        """Record this machine's session to ``path`` (a ``*.tvmm.jsonl`` file
        replays with ``tvmm replay FILE`` or as a pytest item).  Only before
        the guests have run: a session starts at boot."""
        from .monitor.record import Recorder
        if self.recorder is not None and not self._auto_record:
            raise UsageError(f"this machine is already recording to {self.record_path}")
        if any(g._g.now() for g in self.guests):
            raise UsageError("record() must be called before the guests run (a session starts at boot)")
        if self.recorder is not None:            # the plugin's automatic recording: the user's file wins
            old = self.record_path
            self.stop_recording()
            try:
                os.unlink(old)
            except OSError:
                pass
        path = os.fspath(path)
        try:
            self.recorder = Recorder(path, self.monitor, digest_every)
        except OSError as e:
            raise UsageError(f"cannot record to {path}: {e.strerror or e}") from None
        self.monitor.recorder = self.recorder
        self.record_path, self._auto_record, self.record_note = path, _auto, ""
        return path

    def stop_recording(self, note: str = "") -> str | None:
        """Close the recording (the file replays up to here); returns its path."""
        rec = self.recorder
        if rec is None:
            return self.record_path
        rec.checkpoint()
        rec.close()
        for g in self.monitor.guests:
            if g.recorder is rec:
                g.recorder = None
        self.monitor.recorder = None
        self.recorder = None
        self.record_note = note
        return self.record_path

    def _checkpoint(self) -> None:
        if self.recorder is not None:
            self.recorder.checkpoint()

    def snapshot(self) -> dict:
        """Every guest's state (``restore`` puts it back)."""
        return {g.name: g.snapshot() for g in self.guests}

    def restore(self, snaps: dict) -> None:
        for g in self.guests:
            g.restore(snaps[g.name])

    def close(self) -> None:
        """Finish any recording and give the guests' memory back."""
        self.stop_recording()
        for g in list(self.monitor.guests):
            self.monitor.remove_guest(g)

    def __enter__(self) -> "Machine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- guest ---------------------------------------------------------------------------------------
class Guest:
    """One guest kernel (from ``boot`` or a ``Machine``)."""

    def __init__(self, machine: Machine, guest):
        self.machine = machine
        self._g = guest
        self._expect_at = 0              # expect() searches the console from here
        self._symbols: dict[str, int] | None = None

    def __repr__(self) -> str:
        return f"<tvmm.Guest {self.name} {self.state} at {self.icount}>"

    # -- state -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._g.name

    @property
    def spec(self):
        return self._g.spec

    @property
    def state(self) -> str:
        """``running``, ``paused``, ``halted``, ``exited`` or ``crashed``."""
        return self._g.state

    @property
    def reason(self) -> str:
        return self._g.reason

    @property
    def icount(self) -> int:
        """Instructions retired (its time, without the idle skips: ``now``)."""
        return self._g.icount

    @property
    def now(self) -> int:
        """The guest's time: instructions retired plus halted time skipped."""
        return self._g.now()

    @property
    def exit_status(self) -> int | None:
        """The value the guest wrote to the debug-exit port, or None."""
        return self._g.exit_status

    @property
    def console(self) -> str:
        """Everything the guest printed on its serial console ("\\r" dropped)."""
        return _text(self._g.console)

    @property
    def console_bytes(self) -> bytes:
        return bytes(self._g.console)

    @property
    def registers(self) -> dict[str, int]:
        """General registers, ``eip``, ``eflags``, the control registers as the
        guest sees them, ``shadow_cr3`` and the segment selectors, by name."""
        from .monitor import view
        return view.registers(self._g).named()

    def events(self, kind=None, limit: int = 1000) -> list:
        """The monitor's recent events for this guest (oldest first): each has
        ``icount``, ``kind`` and ``detail``.  ``kind`` is one kind or several."""
        kinds = None if kind is None else ({kind} if isinstance(kind, str) else set(kind))
        return list(reversed(self.machine.monitor.log.recent(self.name, kinds=kinds, limit=limit)))

    def event_counts(self) -> dict[str, int]:
        """Exact counts of every event kind since boot."""
        return self.machine.monitor.log.by_kind(self.name)

    # -- memory and symbols --------------------------------------------------------------------
    def read(self, addr: int, n: int, physical: bool = False) -> bytes:
        """``n`` bytes at a guest-virtual address (through the guest's page
        tables) or a guest-physical one."""
        from .monitor import inspect
        addr = self._addr(addr)
        _check_count("n", n, zero=True)
        try:
            return inspect.read(self._g, addr, n, physical)
        except inspect.AccessError as e:
            raise UsageError(f"guest {self.name}: {e}") from None

    def read_u32(self, addr: int, physical: bool = False) -> int:
        return int.from_bytes(self.read(addr, 4, physical), "little")

    def write(self, addr: int, data: bytes, physical: bool = False) -> None:
        """Write guest memory (a recorded input, like a debugger's write)."""
        addr = self._addr(addr)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise UsageError(f"write() takes bytes, not {type(data).__name__}")
        data = {"addr": addr, "bytes": bytes(data).hex()}
        if physical:
            data["physical"] = True
        self._input("mem", data)

    def set_register(self, name: str, value: int) -> None:
        """Write a register (``eax``…``edi``, ``eip``, ``eflags``, ``cr0``…``cr4``;
        a recorded input)."""
        if not isinstance(value, int) or isinstance(value, bool):
            raise UsageError(f"register value must be an int, not {type(value).__name__}")
        self._input("reg", {"name": str(name).lower(), "value": value & 0xFFFFFFFF})

    def symbol(self, name: str) -> int:
        """The address of a symbol in the guest's kernel (ELF, pyelftools)."""
        table = self._symbol_table()
        if name not in table:
            near = difflib.get_close_matches(name, list(table), n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise UsageError(f"guest {self.name}: no symbol {name!r} in {self.spec.kernel}{hint}")
        return table[name]

    def _symbol_table(self) -> dict[str, int]:
        if self._symbols is None:
            if not self.spec.kernel:
                raise UsageError(f"guest {self.name} has no kernel ELF file to take symbols from")
            self._symbols = read_symbols(self.spec.kernel)
        return self._symbols

    def _addr(self, addr) -> int:
        if isinstance(addr, Symbol):
            return self.symbol(addr.name)
        if isinstance(addr, str):
            return self.symbol(addr)
        if not isinstance(addr, int) or isinstance(addr, bool) or not 0 <= addr <= 0xFFFFFFFF:
            raise UsageError(f"bad address {addr!r} (a 32-bit int or a symbol name)")
        return addr

    # -- input ---------------------------------------------------------------------------------
    def send(self, text: str | bytes) -> None:
        """Type ``text`` into the guest's serial console (a recorded input)."""
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("latin-1")
        if not isinstance(text, str):
            raise UsageError(f"send() takes text, not {type(text).__name__}")
        try:
            text.encode("latin-1")
        except UnicodeEncodeError:
            raise UsageError("send() text must be latin-1 (the serial line carries bytes)") from None
        self._input("serial", text)

    def _input(self, kind: str, data) -> None:
        from .monitor.record import SessionError
        if not self._g.alive:
            raise UsageError(f"guest {self.name} is {self.state}; it takes no more input")
        try:
            self._g.apply_input(kind, data)
        except SessionError as e:
            raise UsageError(f"guest {self.name}: {e}") from None

    # -- running --------------------------------------------------------------------------------
    def run(self, insns: int | None = None, until=None) -> str:
        """Run this guest (its siblings wait).  Without ``until``: ``insns``
        instructions or until it stops; returns its state.  With ``until``
        (see the module docstring): until that happens, within ``insns``
        (default ``DEFAULT_TIMEOUT``); returns what happened (``"address"``,
        ``"text"`` or the state reached).  Raises ``ExpectTimeout`` or
        ``GuestEnded`` when it does not happen."""
        if until is None:
            if insns is None:
                raise UsageError("run() needs insns= or until=")
            _check_count("insns", insns)
            self._loop(insns, lambda stop: False)
            return self.state
        budget = DEFAULT_TIMEOUT if insns is None else _check_count("insns", insns)
        if isinstance(until, str) and until in KEYWORDS:
            states = KEYWORDS[until]
            if self.state in states:
                return self.state
            self._loop(budget, lambda stop: self.state in states)
            if self.state in states:
                return self.state
            return self._missed(f"the guest to {until} ({' or '.join(states)})", budget)
        if isinstance(until, (str, Text)):
            text = until.text if isinstance(until, Text) else until
            if not text:
                raise UsageError("until= text is empty")
            start = max(0, len(self.console) - len(text) + 1)
            if self._loop(budget, lambda stop: self.console.find(text, start) >= 0):
                return "text"
            return self._missed(f"{text!r} on the console", budget)
        if isinstance(until, (int, Symbol)) and not isinstance(until, bool):
            addr = self._addr(until)
            what = f"{until.name} ({addr:#010x})" if isinstance(until, Symbol) else f"address {addr:#010x}"
            if self._run_to_address(addr, budget):
                return "address"
            return self._missed(what, budget)
        raise UsageError(f"until={until!r}: use an address, Symbol(name), console text or one of "
                         f"{', '.join(KEYWORDS)}")

    def expect(self, text: str, timeout_insns: int = DEFAULT_TIMEOUT) -> str:
        """Run until ``text`` appears on the console after the previous
        ``expect``'s match; returns the console from there to the end of the
        match.  ``ExpectTimeout``/``GuestEnded`` when it does not."""
        if not isinstance(text, str) or not text:
            raise UsageError("expect() takes non-empty text")
        _check_count("timeout_insns", timeout_insns)
        start = self._expect_at
        found = self.console.find(text, start)
        if found < 0 and self._loop(timeout_insns, lambda stop: self.console.find(text, start) >= 0):
            found = self.console.find(text, start)
        if found < 0:
            self._missed(f"{text!r} on the console", timeout_insns)
        self._expect_at = found + len(text)
        return self.console[start:self._expect_at]

    # -- the same, for asyncio (pytest-asyncio tests) -------------------------------------------
    async def arun(self, insns: int | None = None, until=None) -> str:
        """``run`` without blocking the event loop: the guest runs in a worker
        thread while the caller awaits (touch the guest only after it
        returns; what the guest does is the same as with ``run``)."""
        import asyncio
        return await asyncio.to_thread(self.run, insns, until)

    async def aexpect(self, text: str, timeout_insns: int = DEFAULT_TIMEOUT) -> str:
        """``expect`` without blocking the event loop (see ``arun``)."""
        import asyncio
        return await asyncio.to_thread(self.expect, text, timeout_insns)

    def _run_to_address(self, addr: int, budget: int) -> bool:
        from .machine.errors import StopKind
        cpu = self._g.vcpu
        ours = addr not in cpu.breakpoints
        if ours:
            cpu.breakpoints.add(addr)
            cpu._refresh()
        try:
            return self._loop(budget, lambda stop: stop is not None and stop.kind == StopKind.BREAKPOINT
                              and cpu.eip == addr, breakpoints=True)
        finally:
            if ours:
                cpu.breakpoints.discard(addr)
                cpu._refresh()
            if self._g.state == "paused" and ours and cpu.eip == addr:
                self._g.resume()              # our own breakpoint: the guest goes on running next time

    def _loop(self, budget: int, done, breakpoints: bool = False) -> bool:
        """Run up to ``budget`` of guest time in slices, checking ``done``
        after each; True once it holds."""
        g, machine = self._g, self.machine
        if g.state == "paused":
            g.vcpu.skip_bp_once = True            # a breakpoint at EIP: run off it first
            g.resume()
        start = g.now()
        while g.runnable:
            left = budget - (g.now() - start)
            if left <= 0:
                break
            n = min(left, SLICE if not breakpoints else 1_000_000)
            if machine.recorder is not None:
                n = min(n, machine.recorder.every)
            stop = g.run(n)
            machine._checkpoint()
            if done(stop):
                return True
        return done(None)

    def _missed(self, what: str, budget: int):
        if self._g.alive:
            raise ExpectTimeout(f"guest {self.name}: waited {budget} instructions for {what}; it did not "
                                f"happen (instruction count {self.icount}, {self.state})\n{self._tail()}")
        raise GuestEnded(f"guest {self.name} {self.state} ({self.reason}) at instruction count {self.icount} "
                         f"before {what}\n{self._tail()}")

    def _tail(self) -> str:
        lines = self.console.splitlines()[-_TAIL_LINES:]
        return "console ends with:\n" + "\n".join(f"  | {line}" for line in lines) if lines else "console is empty"

    # -- snapshots and recording ----------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """This guest's complete state (registers, devices, RAM, console)."""
        from .monitor import snapshot
        return Snapshot(self.name, self.icount, snapshot.take(self._g), self._expect_at)

    def restore(self, snap: Snapshot) -> None:
        """Put back a ``snapshot()`` of this guest.  A recording stops here
        (a session holds inputs, not restores): it replays up to this point."""
        from .monitor import snapshot
        if not isinstance(snap, Snapshot) or snap.guest != self.name:
            raise UsageError(f"restore() takes a snapshot of guest {self.name}")
        if self.machine.recorder is not None:
            self.machine.stop_recording(f"recording stopped when guest {self.name} was restored to a snapshot "
                                        f"at instruction count {snap.icount}")
        snapshot.restore(self._g, snap._state)
        self._expect_at = snap._expect_at

    def record(self, path, digest_every: int = DIGEST_EVERY) -> str:
        """Record this guest's machine to ``path`` (before it runs)."""
        return self.machine.record(path, digest_every)


# -- helpers -------------------------------------------------------------------------------------
def read_symbols(path: str) -> dict[str, int]:
    """Function and object symbols of an ELF file, by name."""
    try:
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile
        with open(path, "rb") as f:
            tab = ELFFile(f).get_section_by_name(".symtab")
            if tab is None:
                return {}
            return {s.name: s["st_value"] for s in tab.iter_symbols()
                    if s.name and s["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE")
                    and s["st_shndx"] != "SHN_UNDEF"}
    except (OSError, ELFError, ValueError) as e:
        raise UsageError(f"cannot read symbols from {path}: {_one_line(e)}") from None


def _text(raw) -> str:
    return bytes(raw).decode("latin-1").replace("\r", "")


def _check_count(what: str, n, zero: bool = False) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < (0 if zero else 1):
        raise UsageError(f"{what} must be a {'non-negative' if zero else 'positive'} int, not {n!r}")
    return n


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
