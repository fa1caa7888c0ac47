"""Recording a session and replaying it exactly.

Guest time is each guest's own instruction count (plus halted time skipped
to its next device event: ``Guest.now()``), and nothing else reaches a
guest but its configuration and the inputs it is given.  So a session is:
the configuration, every input stamped with the guest and the guest time at
which it was applied, and — to check a replay — periodic digests of each
guest's state and the console output produced since the previous digest.

The file is JSON lines, append-only and flushed after every line (a crash
loses nothing written before it)::

    {"t": "session", "format": 1, "tvmm": "0.1.0", "guests": [{"spec": {...}, "files": {"kernel": "<sha256>"}}]}
    {"t": "input", "guest": "g", "time": 1234, "kind": "serial", "data": "ls\\n"}
    {"t": "digest", "guest": "g", "time": 2000000, "regs": "<sha256>", "mem": "<crc32>-<frames>", "out": "console text"}
    {"t": "end", "guest": "g", "time": 4571, "state": "halted", "reason": "..."}

Input kinds: ``serial`` (bytes typed into COM1, latin-1 text), ``key``
(scancodes, hex), ``reset``, ``reg`` (a debugger's register write: name and
value) and ``mem`` (a debugger's memory write: guest-virtual address and hex
bytes).  Replaying runs each guest to exactly each recorded time (guests are
independent, so each is replayed on its own), applies the input, and
compares digests; the first difference is reported with the guest, its time
and what differed.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import asdict
from pathlib import Path

from .. import __version__
from ..guestspec import GuestSpec

FORMAT = 1
DIGEST_EVERY = 2_000_000          # guest time between digests
FILE_KEYS = ("kernel", "disk0", "disk1", "rom")


class SessionError(Exception):
    """A session file that cannot be replayed (one line says why)."""


# -- state digests ------------------------------------------------------------------------
def regs_digest(guest) -> str:
    c = guest.vcpu
    state = (tuple(c.regs), c.eip, c.get_eflags(), tuple(c.seg_sel), tuple(c.seg_base), tuple(c.seg_limit),
             c.guest_cr(0), c.cr2, c.guest_cr(3), c.guest_cr(4), c.cpl, c.halted)
    return hashlib.sha256(repr(state).encode()).hexdigest()[:32]


def mem_digest(guest) -> str:
    """A checksum of the guest's RAM in guest-physical order, read in place
    (CRC-32 per run of contiguous host frames, chained: replays are not
    adversarial, and this is several times faster than a cryptographic hash)."""
    view = memoryview(guest.monitor.host.ram)
    frames = guest.frames
    crc, i = 0, 0
    while i < len(frames):                        # runs of contiguous host frames at once
        j = i
        while j + 1 < len(frames) and frames[j + 1] == frames[j] + 1:
            j += 1
        crc = zlib.crc32(view[frames[i] * 4096:(frames[j] + 1) * 4096], crc)
        i = j + 1
    return f"{crc:08x}-{len(frames)}"


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
                     "mem": mem_digest(guest), "out": self._out(guest)})

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
    if not records or records[0].get("t") != "session":
        raise SessionError(f"{path}: not a tvmm session (no session header)")
    head = records[0]
    if head.get("format") != FORMAT:
        raise SessionError(f"{path}: session format {head.get('format')} (this tvmm reads format {FORMAT})")
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


def apply_input(guest, kind: str, data) -> None:
    if kind == "serial":
        guest.pc.com1.feed(data.encode("latin-1"))
    elif kind == "key":
        guest.pc.kbc.press(bytes.fromhex(data))
    elif kind == "reset":
        guest.reset()
    elif kind == "reg":
        _set_register(guest, data["name"], data["value"])
    elif kind == "mem":
        from . import inspect
        inspect.write(guest, data["addr"], bytes.fromhex(data["bytes"]))
    else:
        raise SessionError(f"unknown input kind {kind!r}")


def _set_register(guest, name: str, value: int) -> None:
    cpu = guest.vcpu
    gprs = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
    if name in gprs:
        cpu.regs[gprs.index(name)] = value
    elif name == "eip":
        cpu.eip = value
    elif name == "eflags":
        cpu.set_eflags(value)
    else:
        raise SessionError(f"cannot replay a write to register {name!r}")


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
    for rec in records:
        kind = rec.get("t")
        if kind not in ("input", "digest", "end"):
            continue
        g = monitor.guest(rec["guest"])
        _run_to(g, rec["time"])
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
            if mem_digest(g) != rec["mem"]:
                raise Divergence(g.name, rec["time"], "memory differs")
            checked[g.name] += 1
        elif kind == "end":
            if g.state != rec["state"]:
                raise Divergence(g.name, rec["time"], f"expected the guest {rec['state']} ({rec['reason']}), "
                                                      f"it is {g.state} {g.reason}".rstrip())
        if on_progress:
            on_progress(g, rec)
    return checked


def _run_to(guest, time: int) -> None:
    """Run one guest to exactly guest time ``time`` (or until it stops)."""
    while guest.now() < time and guest.runnable:
        guest.run(min(1_000_000, time - guest.now()))
    if guest.now() > time:
        raise Divergence(guest.name, guest.now(), f"the guest is already past time {time}")
