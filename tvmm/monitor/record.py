"""Recording a session and replaying it exactly.

Guest time is each guest's own instruction count (plus halted time skipped
to its next device event: ``Guest.now()``), and nothing else reaches a
guest but its configuration and the inputs it is given.  So a session is:
the configuration, every input stamped with the guest and the guest time at
which it was applied, and — to check a replay — periodic digests of each
guest's state and the console output produced since the previous digest.

The file is JSON lines, append-only and flushed after every line (a crash
loses nothing written before it)::

    {"t": "session", "format": 2, "tvmm": "0.1.0", "guests": [{"spec": {...}, "files": {"kernel": "<sha256>"}}]}
    {"t": "input", "guest": "g", "time": 1234, "kind": "serial", "data": "ls\\n"}
    {"t": "digest", "guest": "g", "time": 2000000, "regs": "<sha256>", "mem": "<digest>-<frames>", "out": "console text"}
    {"t": "end", "guest": "g", "time": 4571, "state": "halted", "reason": "..."}

Input kinds (every outside change goes through ``Guest.apply_input``, which
records it and applies it with ``apply_input`` below, as a replay does):
``serial`` (bytes typed into COM1, latin-1 text), ``key`` (scancodes, hex),
``reset``, ``reg`` (a debugger's register write, ``{"name", "value"}``: the
general registers, ``eip`` — also ``c ADDR``/``s ADDR`` — ``eflags``,
``cr0``/``cr2``/``cr3``/``cr4``, ``gdtr_base``/``gdtr_limit``/``idtr_base``/
``idtr_limit``), ``seg`` (a debugger's segment register load,
``{"name": "ds", "selector": 16}``: the descriptor is read from the guest's
own tables without setting its accessed bit, with the processor's checks;
CS only outside protected mode) and ``mem`` (a debugger's memory write,
``{"addr", "bytes"}``: guest-virtual address and hex bytes, with
``"physical": true`` for a guest-physical one) and ``step`` (a debugger
ran one instruction of one vCPU alone, ``{"vcpu": 1}``: it changes the
interleaving, so it is an input).  ``reg`` and ``seg`` inputs name the vCPU
with ``"vcpu"`` (default 0, the bootstrap processor); ``mem`` inputs
translate through vCPU 0's page tables unless ``"vcpu"`` says otherwise.

The memory digest (format 2) is ``digest.MemoryDigest``: 16 hex digits,
kept current from the dirty log, so recording costs what the guest writes
rather than what it owns; format 1 sessions (a CRC-32 of all RAM, 8 hex
digits) still replay.  Replaying runs each guest to exactly each recorded
time (guests are independent, so each is replayed on its own), applies the
input, and compares digests; the first difference is reported with the
guest, its time and what differed.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import asdict
from pathlib import Path

from .. import __version__
from ..guestspec import GuestSpec
from .digest import MemoryDigest
from . import session_schema

FORMAT = 2
FORMATS = (1, 2)                  # what this tvmm replays
DIGEST_EVERY = 2_000_000          # guest time between digests
FILE_KEYS = ("kernel", "disk0", "disk1", "rom")


class SessionError(Exception):
    """A session file that cannot be replayed (one line says why)."""


# -- state digests ------------------------------------------------------------------------
def regs_digest(guest) -> str:
    """Every vCPU's registers (one vCPU: the same digest as ever), its NMI
    latch and blocking when either is set, and its x87 state once it left
    the power-on state."""
    states = []
    for c in guest.vcpus:
        state = (tuple(c.regs), c.eip, c.get_eflags(), tuple(c.seg_sel), tuple(c.seg_base), tuple(c.seg_limit),
                 c.guest_cr(0), c.cr2, c.guest_cr(3), c.guest_cr(4), c.cpl, c.halted)
        if c.nmi_pending or c.nmi_blocked:   # only then: digests of sessions without NMIs are unchanged
            state += ("nmi", c.nmi_pending, c.nmi_blocked)
        if not c.fpu.at_power_on():          # likewise: sessions that never used the x87 keep their digests
            state += ("x87",) + c.fpu.digest_state()
        states.append(state if c.index == 0 else state + (c.wait_sipi, c.icount))
    return hashlib.sha256(repr(states[0] if len(states) == 1 else tuple(states)).encode()).hexdigest()[:32]


def mem_digest(guest) -> str:
    """Format 1: a checksum of the guest's RAM in guest-physical order, read in
    place (CRC-32 over runs of contiguous host frames, chained: replays are
    not adversarial).  Frames the host never backed are zeros and are fed
    from a zero buffer instead of being touched."""
    view = memoryview(guest.monitor.host.ram)
    populated = guest.monitor.host.populated_pages()
    frames = guest.frames
    crc, i, n = 0, 0, len(frames)
    while i < n:
        backed = populated is None or frames[i] in populated
        j = i                                     # a run: contiguous host frames, all backed or all holes
        while j + 1 < n and frames[j + 1] == frames[j] + 1 \
                and (populated is None or (frames[j + 1] in populated) == backed):
            j += 1
        if backed:
            crc = zlib.crc32(view[frames[i] * 4096:(frames[j] + 1) * 4096], crc)
        else:
            for k in range(i, j + 1, 256):
                crc = zlib.crc32(_ZEROS[:min(256, j + 1 - k) * 4096], crc)
        i = j + 1
    return f"{crc:08x}-{len(frames)}"


_ZEROS = bytes(256 * 4096)


def file_hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def spec_record(spec: GuestSpec) -> dict:
    files = {k: file_hash(getattr(spec, k)) for k in FILE_KEYS if getattr(spec, k)}
    return {"spec": asdict(spec), "files": files}


# -- recording ---------------------------------------------------------------------------------
class Recorder:
    """Writes a session while the monitor runs.  Call ``input`` when an
    input is applied to a guest and ``checkpoint`` after each slice."""

    def __init__(self, path: str, monitor, digest_every: int = DIGEST_EVERY):
        self.monitor = monitor
        self.every = digest_every
        self.f = open(path, "w", encoding="utf-8")
        self.next_digest = {g.name: digest_every for g in monitor.guests}
        self.console_at = {g.name: 0 for g in monitor.guests}
        self.ended: set[str] = set()
        self.digests = {g.name: MemoryDigest(g) for g in monitor.guests}
        self._write({"t": "session", "format": FORMAT, "tvmm": __version__,
                     "digest_every": digest_every, "guests": [spec_record(g.spec) for g in monitor.guests]})
        for g in monitor.guests:
            g.recorder = self

    def _write(self, record: dict) -> None:
        self.f.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.f.flush()

    def input(self, guest, kind: str, data) -> None:
        self._write({"t": "input", "guest": guest.name, "time": guest.now(), "kind": kind, "data": data})

    def _out(self, guest) -> str:
        start = self.console_at[guest.name]
        self.console_at[guest.name] = len(guest.console)
        return bytes(guest.console[start:]).decode("latin-1")

    def digest(self, guest) -> None:
        self._write({"t": "digest", "guest": guest.name, "time": guest.now(), "regs": regs_digest(guest),
                     "mem": self.digests[guest.name].value(), "out": self._out(guest)})

    def checkpoint(self) -> None:
        """Digest each guest whose time passed its next digest point (its
        time now, not the point: replays run to exactly that time)."""
        for g in self.monitor.guests:
            if g.name in self.ended:
                continue
            if not g.alive or g.state == "halted":
                self.digest(g)
                self._write({"t": "end", "guest": g.name, "time": g.now(), "state": g.state, "reason": g.reason})
                self.ended.add(g.name)
            elif g.now() >= self.next_digest[g.name]:
                self.digest(g)
                self.next_digest[g.name] = (g.now() // self.every + 1) * self.every

    def close(self) -> None:
        for g in self.monitor.guests:
            if g.name not in self.ended:
                self.digest(g)
        for d in self.digests.values():
            d.close()
        self.f.close()


# -- reading and replaying --------------------------------------------------------------------------
def load(path: str) -> tuple[dict, list[dict]]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise SessionError(f"{path}: no such session file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SessionError(f"{path}: cannot read ({e})") from None
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines):
                break                               # a crash mid-line: the rest is intact
            raise SessionError(f"{path}:{n}: not a JSON line") from None
    session_schema.validate(path, records)          # the documented structure, one line per problem
    if not records or records[0].get("t") != "session":
        raise SessionError(f"{path}: not a tvmm session (no session header)")
    head = records[0]
    if head.get("format") not in FORMATS:
        raise SessionError(f"{path}: session format {head.get('format')} (this tvmm reads formats "
                           f"{', '.join(map(str, FORMATS))})")
    return head, records[1:]


def specs_of(head: dict, check_files: bool = True) -> list[GuestSpec]:
    specs = []
    for g in head["guests"]:
        spec = GuestSpec(**g["spec"])
        if check_files:
            for key, want in g["files"].items():
                path = getattr(spec, key)
                try:
                    got = file_hash(path)
                except OSError:
                    raise SessionError(f"guest {spec.name}: {key} {path} is missing") from None
                if got != want:
                    raise SessionError(f"guest {spec.name}: {key} {path} is not the file recorded "
                                       f"(content hash differs)")
        specs.append(spec)
    return specs


class InputRejected(SessionError):
    """An input that cannot be applied to the guest as it is now (a selector
    its tables do not describe, memory it does not map, a read-only
    register): nothing was changed, nothing was recorded."""


def apply_input(guest, kind: str, data) -> None:
    """Apply one recorded input (replay, the timeline, and through
    ``Guest.apply_input`` every live outside change)."""
    prepare_input(guest, kind, data)()


def prepare_input(guest, kind: str, data):
    """Check an input against the guest's state now and return the function
    that applies it.  Raises ``InputRejected`` — before anything changes —
    when it cannot be applied, so a caller can record it only once it is
    sure to take effect."""
    try:
        if kind == "serial":
            text = data.encode("latin-1")
            return lambda: guest.pc.com1.feed(text)
        if kind == "key":
            codes = bytes.fromhex(data)
            return lambda: guest.pc.kbc.press(codes)
        if kind == "reset":
            return guest.reset
        if kind == "reg":
            value = data["value"]
            return _prepare_register(_vcpu(guest, data), data["name"],
                                     _u80(value) if data["name"] in _X87_ST else _u32(value))
        if kind == "seg":
            return _prepare_segment(_vcpu(guest, data), data["name"], _u32(data["selector"]))
        if kind == "mem":
            return _prepare_memory(guest, _u32(data["addr"]), bytes.fromhex(data["bytes"]),
                                   bool(data.get("physical", False)), _vcpu(guest, data))
        if kind == "step":
            cpu = _vcpu(guest, data)
            return lambda: guest.step_vcpu(cpu.index)
    except (TypeError, KeyError, ValueError, AttributeError, UnicodeError) as e:
        raise InputRejected(f"malformed {kind} input {data!r}: {e}") from None
    raise SessionError(f"unknown input kind {kind!r}")


def _vcpu(guest, data):
    """The vCPU an input names (``"vcpu"``, default 0)."""
    index = data.get("vcpu", 0) if isinstance(data, dict) else 0
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(guest.vcpus):
        raise InputRejected(f"guest {guest.name} has no vCPU {index!r}")
    return guest.vcpus[index]


def _u32(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{value!r} is not a 32-bit value")
    return value


def _u80(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 80:
        raise ValueError(f"{value!r} is not an 80-bit value")
    return value


_GPRS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
# x87 registers by gdb's names: ST(i) (80 bits, stack-relative), then the control registers
_X87_ST = tuple(f"st{i}" for i in range(8))
_X87_CTRL = ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")
_TABLE_REGS = ("gdtr_base", "gdtr_limit", "idtr_base", "idtr_limit")
SEGMENT_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")       # the processor's order (ES=0 … GS=5)


def _prepare_x87(cpu, name: str, value: int):
    """A debugger's write to an x87 register: ST(i) becomes non-empty; the
    tag word is the full (FNSTENV) form, only 'empty' matters."""
    f = cpu.fpu
    if name in _X87_ST:
        return lambda: f.set_st(int(name[2]), value)
    setter = {"fctrl": lambda: f.set_cw(value & 0xFFFF), "fstat": lambda: f.set_status(value & 0xFFFF),
              "ftag": lambda: f.set_tag_word(value & 0xFFFF), "fiseg": lambda: setattr(f, "fcs", value & 0xFFFF),
              "fioff": lambda: setattr(f, "fip", value), "foseg": lambda: setattr(f, "fds", value & 0xFFFF),
              "fooff": lambda: setattr(f, "fdp", value), "fop": lambda: setattr(f, "fop", value & 0x7FF)}
    return setter[name]


def _prepare_register(cpu, name: str, value: int):
    if name in _X87_ST or name in _X87_CTRL:
        return _prepare_x87(cpu, name, value)
    if name in _GPRS:
        i = _GPRS.index(name)
        return lambda: cpu.regs.__setitem__(i, value)
    if name == "eip":
        return lambda: setattr(cpu, "eip", value)
    if name == "eflags":
        def set_eflags():
            cpu.set_eflags(value)
            cpu._refresh()                     # TF decides single-instruction mode
        return set_eflags
    if name in ("cr0", "cr3", "cr4"):
        return lambda: getattr(cpu, f"set_{name}")(value)   # the monitor's view: shadows follow
    if name == "cr2":
        return lambda: setattr(cpu, "cr2", value)
    if name in _TABLE_REGS:
        v = value if name.endswith("base") else value & 0xFFFF
        return lambda: setattr(cpu, name, v)
    raise InputRejected(f"register {name!r} cannot be written")


def _prepare_segment(cpu, name: str, sel: int):
    """A segment register load from outside: the descriptor read side-effect
    free from the guest's own tables, the checks MOV Sreg makes."""
    from ..machine import segments
    from ..machine.consts import DESC_CODE, DESC_CONFORMING, DESC_P, DESC_RW, DESC_S
    if name not in SEGMENT_NAMES:
        raise InputRejected(f"no segment register {name!r}")
    seg = SEGMENT_NAMES.index(name)
    if sel > 0xFFFF:
        raise InputRejected(f"selector {sel:#x} is wider than 16 bits")
    if not cpu.protected:
        return lambda: segments.load_real(cpu, seg, sel)
    if cpu.eflags & 0x20000:                   # EFLAGS.VM: virtual-8086 loads read no descriptor
        return lambda: segments.load_vm86(cpu, seg, sel)
    if name == "cs":
        raise InputRejected("CS cannot be loaded from outside in protected mode (it sets the privilege level)")
    if not sel & 0xFFFC:
        if name == "ss":
            raise InputRejected("SS cannot hold a null selector")
        return lambda: segments.set_cache(cpu, seg, sel, 0, 0, 0)
    if sel & 4:
        if not cpu.ldtr_sel & 0xFFFC:
            raise InputRejected(f"selector {sel:#x} names the LDT and there is none")
        base, limit = cpu.ldtr_base, cpu.ldtr_limit
    else:
        base, limit = cpu.gdtr_base, cpu.gdtr_limit
    index = sel & 0xFFF8
    if index + 7 > limit:
        raise InputRejected(f"selector {sel:#x} is beyond its descriptor table's limit")
    from . import inspect
    try:
        raw = inspect.read(cpu.guest, (base + index) & 0xFFFFFFFF, 8, cpu=cpu)
    except inspect.AccessError as e:
        raise InputRejected(f"selector {sel:#x}: its descriptor cannot be read ({e})") from None
    lo, hi = int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:], "little")
    attr = segments.desc_attr(hi)
    rpl, dpl = sel & 3, segments.dpl(attr)
    if not attr & DESC_S:
        raise InputRejected(f"selector {sel:#x} is a system descriptor")
    if name == "ss":
        ok = attr & DESC_RW and not attr & DESC_CODE and rpl == cpu.cpl and dpl == cpu.cpl
    else:
        ok = (not attr & DESC_CODE or attr & DESC_RW) and \
            (attr & DESC_CODE and attr & DESC_CONFORMING or dpl >= max(cpu.cpl, rpl))
    if not ok:
        raise InputRejected(f"selector {sel:#x} cannot be loaded into {name.upper()} at CPL {cpu.cpl}")
    if not attr & DESC_P:
        raise InputRejected(f"selector {sel:#x}: the segment is not present")
    base_, limit_ = segments.desc_base(lo, hi), segments.desc_limit(lo, hi)
    return lambda: segments.set_cache(cpu, seg, sel, base_, limit_, attr)


def _prepare_memory(guest, addr: int, data: bytes, physical: bool, cpu=None):
    from . import inspect
    try:
        inspect.read(guest, addr, len(data), physical, cpu)  # every page is guest RAM, or nothing is written
    except inspect.AccessError as e:
        raise InputRejected(str(e)) from None
    return lambda: inspect.write(guest, addr, data, physical, cpu)


class Divergence(Exception):
    def __init__(self, guest: str, time: int, what: str):
        super().__init__(f"guest {guest} diverged at instruction count {time}: {what}")
        self.guest, self.time, self.what = guest, time, what


def replay(monitor, records: list[dict], on_progress=None) -> dict[str, int]:
    """Re-run every guest of ``monitor`` (built from the session's specs)
    through the recorded inputs, checking each digest.  Raises
    ``Divergence`` at the first difference; returns the digests checked per
    guest."""
    checked = {g.name: 0 for g in monitor.guests}
    console_at = {g.name: 0 for g in monitor.guests}
    digests: dict = {}

    def memory(g, recorded) -> str:
        if len(str(recorded).split("-")[0]) == 8:           # format 1
            return mem_digest(g)
        if g.name not in digests:
            digests[g.name] = MemoryDigest(g)
        return digests[g.name].value()
    ends = {rec.get("guest"): rec for rec in records if rec.get("t") == "end"}
    try:
        for rec in records:
            kind = rec.get("t")
            if kind not in ("input", "digest", "end"):
                continue
            g = monitor.guest(rec["guest"])
            _run_to(g, rec["time"])
            end = ends.get(g.name)
            if kind != "input" and g.runnable and end is not None and end.get("time") == rec["time"] \
                    and end.get("state") not in ("running", "paused"):
                # the guest ended at this time without retiring an instruction
                # (a triple fault): let it take that last step
                g.run(1)
            if kind == "input":
                apply_input(g, rec["kind"], rec["data"])
            elif kind == "digest":
                out = bytes(g.console[console_at[g.name]:]).decode("latin-1")
                console_at[g.name] = len(g.console)
                if out != rec["out"]:
                    raise Divergence(g.name, rec["time"], f"console output differs: expected {rec['out'][:60]!r}, "
                                                          f"got {out[:60]!r}")
                if regs_digest(g) != rec["regs"]:
                    raise Divergence(g.name, rec["time"], f"registers differ (eip now {g.vcpu.eip:#010x})")
                if memory(g, rec["mem"]) != rec["mem"]:
                    raise Divergence(g.name, rec["time"], "memory differs")
                checked[g.name] += 1
            elif kind == "end":
                if g.state != rec["state"]:
                    raise Divergence(g.name, rec["time"], f"expected the guest {rec['state']} ({rec['reason']}), "
                                                          f"it is {g.state} {g.reason}".rstrip())
            if on_progress:
                on_progress(g, rec)
    finally:
        for d in digests.values():
            d.close()
    return checked


def _run_to(guest, time: int) -> None:
    """Run one guest to exactly guest time ``time`` (or until it stops)."""
    while guest.now() < time and guest.runnable:
        guest.run(min(1_000_000, time - guest.now()))
    if guest.now() > time:
        raise Divergence(guest.name, guest.now(), f"the guest is already past time {time}")
