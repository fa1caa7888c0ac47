"""The documented structure of a session file, checked before anything runs.

A session (record.py's docstring, README "Recording and replaying a
session") is JSON lines: a header, then records.  ``validate(path, records)``
checks every line against the schema below and raises ``SessionError``
with one line naming the line and what is wrong, so a structurally wrong
session never reaches the replayer (no ``KeyError``/``TypeError`` deep in a
replay, no negative address reaching guest memory).  ``precheck(path)``
refuses, before the file is parsed, what JSON parsing itself cannot survive:
a file that is not a regular file or is too large, and nesting too deep for
the parser's recursion.

Schema (extra keys are allowed and ignored, as are records of other types):

- header ``{"t": "session", "format": INT >= 1, "guests": [GUEST, ...]}``,
  optional ``"tvmm": STR``, ``"digest_every": INT > 0``;
  GUEST ``{"spec": SPEC, "files": {KEY: SHA256_HEX}}`` where SPEC has the
  fields of ``GuestSpec`` with their types (name as ``--guest`` allows,
  ``mem`` a multiple of 4 KiB in range, ``boot`` a known method with the
  file it needs) and ``files`` holds a hash for each file the spec names
  (``kernel``, ``disk0``, ``disk1``, ``rom``) and nothing else.  Guest names
  are unique.
- ``{"t": "input", "guest": NAME, "time": TIME, "kind": KIND, "data": …}``
  with KIND and data: ``serial`` latin-1 text; ``key`` hex bytes;
  ``reset`` (data ignored); ``reg`` ``{"name": REG, "value": U32}`` (an
  80-bit value for the x87 data registers ``st0``..``st7``);
  ``seg`` ``{"name": SREG, "selector": U16}``; ``mem`` ``{"addr": U32,
  "bytes": HEX, "physical": BOOL (optional)}`` with the bytes inside the
  32-bit address space.  Which registers exist, and whether an input fits
  the guest's state when it is applied, is record.py's ``prepare_input``
  to say (``InputRejected``, also one line).
- ``{"t": "digest", "guest": NAME, "time": TIME, "regs": HEX, "mem": DIGEST,
  "out": latin-1 text}`` where DIGEST is a non-negative integer or a string
  of hex digits (groups joined by ``-``, as ``crc-frames``).
- ``{"t": "end", "guest": NAME, "time": TIME, "state": STATE, "reason":
  STR}``, STATE one of running paused halted exited crashed.

NAME must be a guest of the header; TIME is an integer from 0 to 2**53
(far beyond any run: ``tvmm replay --timeout``/``--max-insns`` bound the
ones that are merely long).
"""

from __future__ import annotations

import dataclasses
import re

MAX_SESSION_BYTES = 256 << 20
MAX_DEPTH = 16               # the documented records nest 4 deep
MAX_TIME = 1 << 53
MAX_MEM_INPUT = 1 << 20      # bytes in one debugger memory write
U32 = 1 << 32
MAX_CPUS = 16                # guestspec.MAX_CPUS

INPUT_KINDS = ("serial", "key", "reset", "reg", "seg", "mem", "step")
STATES = ("running", "paused", "halted", "exited", "crashed")
FILE_KEYS = ("kernel", "disk0", "disk1", "rom")

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_DIGEST = re.compile(r"[0-9a-fA-F]{1,128}(?:-[0-9a-fA-F]{1,128}){0,8}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_REGNAME = re.compile(r"[a-z][a-z0-9_]{0,15}")


def _error(message: str) -> Exception:
    from .record import SessionError          # record imports this module: import when needed
    return SessionError(message)


# -- before parsing -----------------------------------------------------------------------
def precheck(path: str) -> None:
    """Refuse a session file JSON parsing must not see: not a regular file,
    larger than ``MAX_SESSION_BYTES``, or nested deeper than ``MAX_DEPTH``."""
    from ..machine.boot.errors import read_file
    data = read_file(path, "session", limit=MAX_SESSION_BYTES, error=_error_class())
    brackets = re.compile(rb'"(?:[^"\\\n]|\\.)*"|[\[\]{}]')
    for n, line in enumerate(data.splitlines(), 1):
        if b"[" not in line and b"{" not in line:
            continue
        depth = 0
        for m in brackets.finditer(line):
            c = m.group()
            if c in (b"[", b"{"):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _error(f"{path}:{n}: nested more than {MAX_DEPTH} deep (not a tvmm session line)")
            elif c in (b"]", b"}"):
                depth -= 1


def _error_class() -> type[Exception]:
    from .record import SessionError
    return SessionError


# -- after parsing ------------------------------------------------------------------------
def validate(path: str, records: list) -> None:
    """Check the parsed lines of a session (header first) against the schema."""
    if not records or not isinstance(records[0], dict) or records[0].get("t") != "session":
        raise _error(f"{path}: not a tvmm session (no session header)")
    names = _header(path, records[0])
    for n, rec in enumerate(records[1:], 2):
        where = f"{path}: record {n}"
        if not isinstance(rec, dict):
            raise _error(f"{where}: expected a JSON object, got {_type(rec)}")
        t = rec.get("t")
        if not isinstance(t, str):
            raise _error(f"{where}: no record type (\"t\")")
        if t == "session":
            raise _error(f"{where}: a second session header")
        if t not in ("input", "digest", "end"):
            continue                                        # replay ignores other records
        where = f"{where} ({t})"
        name = rec.get("guest")
        if not isinstance(name, str) or name not in names:
            raise _error(f"{where}: \"guest\" must name a guest of the session, not {_show(name)}")
        _int(where, rec, "time", 0, MAX_TIME)
        if t == "input":
            _input(where, rec)
        elif t == "digest":
            _str(where, rec, "regs", _DIGEST)
            mem = rec.get("mem")
            if not (_is_int(mem) and mem >= 0 or isinstance(mem, str) and _DIGEST.fullmatch(mem)):
                raise _error(f"{where}: \"mem\" must be a non-negative integer or hex digits, not {_show(mem)}")
            _latin1(where, rec, "out")
        else:
            state = rec.get("state")
            if state not in STATES:
                raise _error(f"{where}: \"state\" must be one of {', '.join(STATES)}, not {_show(state)}")
            _str(where, rec, "reason")


def _header(path: str, head: dict) -> set[str]:
    where = f"{path}: session header"
    fmt = head.get("format")
    if not _is_int(fmt) or fmt < 1:
        raise _error(f"{where}: \"format\" must be a positive integer, not {_show(fmt)}")
    if "tvmm" in head and not isinstance(head["tvmm"], str):
        raise _error(f"{where}: \"tvmm\" must be a string")
    if "digest_every" in head:
        _int(where, head, "digest_every", 1, MAX_TIME)
    guests = head.get("guests")
    if not isinstance(guests, list) or not guests:
        raise _error(f"{where}: \"guests\" must be a non-empty list")
    names: set[str] = set()
    for i, g in enumerate(guests, 1):
        gwhere = f"{where}: guest {i}"
        if not isinstance(g, dict):
            raise _error(f"{gwhere}: expected an object with \"spec\" and \"files\"")
        spec = _spec(gwhere, g.get("spec"))
        if spec["name"] in names:
            raise _error(f"{gwhere}: two guests are named {spec['name']!r}")
        names.add(spec["name"])
        files = g.get("files")
        if not isinstance(files, dict):
            raise _error(f"{gwhere}: \"files\" must be an object of content hashes")
        for key, digest in files.items():
            if key not in FILE_KEYS or not isinstance(spec.get(key), str):
                raise _error(f"{gwhere}: \"files\" has a hash for {_show(key)}, a file the spec does not name")
            if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
                raise _error(f"{gwhere}: the hash of {key} must be 64 lower-case hex digits")
        for key in FILE_KEYS:
            if spec.get(key) and key not in files:
                raise _error(f"{gwhere}: no content hash for its {key}")
    return names


def _spec(where: str, spec) -> dict:
    from ..guestspec import BOOT_METHODS, MAX_MEM, MIN_MEM, GuestSpec, SpecError, parse_cpus, parse_sched
    if not isinstance(spec, dict):
        raise _error(f"{where}: \"spec\" must be an object")
    fields = {f.name: f for f in dataclasses.fields(GuestSpec)}
    for key, value in spec.items():
        f = fields.get(key)
        if f is None:
            raise _error(f"{where}: unknown spec key {_show(key)}")
        kinds = str(f.type)
        ok = ((value is None and "None" in kinds)
              or (isinstance(value, bool) and "bool" in kinds)
              or (_is_int(value) and "int" in kinds)
              or (isinstance(value, str) and "str" in kinds))
        if not ok:
            raise _error(f"{where}: spec {key} must be {kinds.replace(' | ', ' or ')}, not {_show(value)}")
        if isinstance(value, str) and "\0" in value:
            raise _error(f"{where}: spec {key} holds a NUL character")
    for f in fields.values():
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in spec:
            raise _error(f"{where}: spec has no {f.name}")
    name = spec["name"]
    if not _NAME.fullmatch(name):
        raise _error(f"{where}: bad guest name {name!r} (letters, digits, '_', '.', '-'; at most 32)")
    mem = spec.get("mem", fields["mem"].default)
    if not MIN_MEM <= mem <= MAX_MEM or mem % 4096:
        raise _error(f"{where}: spec mem {mem} is not a multiple of 4 KiB from {MIN_MEM >> 20} MiB "
                     f"to {MAX_MEM >> 30} GiB")
    try:
        parse_cpus(str(spec.get("cpus", 1)))
        if parse_sched(spec.get("sched", "rr")) != spec.get("sched", "rr"):
            raise SpecError(f"sched {spec['sched']!r} is not in its canonical form")
    except SpecError as e:
        raise _error(f"{where}: spec: {e}") from None
    boot = spec.get("boot", fields["boot"].default)
    if boot not in BOOT_METHODS:
        raise _error(f"{where}: unknown boot method {_show(boot)} (use {', '.join(BOOT_METHODS)})")
    need = {"multiboot": "kernel", "disk": "disk0", "rom": "rom"}[boot]
    if not spec.get(need):
        raise _error(f"{where}: boot={boot} needs {need}")
    return spec


def _input(where: str, rec: dict) -> None:
    kind, data = rec.get("kind"), rec.get("data")
    if kind not in INPUT_KINDS:
        raise _error(f"{where}: unknown input kind {_show(kind)} (known: {', '.join(INPUT_KINDS)})")
    if kind == "serial":
        _latin1(where, rec, "data")
    elif kind == "key":
        _str(where, rec, "data", _HEX)
    elif kind in ("reg", "seg"):
        value = "value" if kind == "reg" else "selector"
        if not isinstance(data, dict):
            raise _error(f"{where}: a {kind} input's data must be {{\"name\": NAME, \"{value}\": N}}")
        name = _str(where, data, "name", _REGNAME)
        st = kind == "reg" and name in ("st0", "st1", "st2", "st3", "st4", "st5", "st6", "st7")
        _int(where, data, value, 0, ((1 << 80) - 1) if st else U32 - 1 if kind == "reg" else 0xFFFF)
        if "vcpu" in data:
            _int(where, data, "vcpu", 0, MAX_CPUS - 1)
    elif kind == "step":
        if not isinstance(data, dict):
            raise _error(f"{where}: a step input's data must be {{\"vcpu\": N}}")
        _int(where, data, "vcpu", 0, MAX_CPUS - 1)
    elif kind == "mem":
        if not isinstance(data, dict):
            raise _error(f"{where}: a mem input's data must be {{\"addr\": N, \"bytes\": HEX}}")
        addr = _int(where, data, "addr", 0, U32 - 1)
        raw = _str(where, data, "bytes", _HEX)
        if len(raw) // 2 > MAX_MEM_INPUT:
            raise _error(f"{where}: a memory input of {len(raw) // 2} bytes (at most {MAX_MEM_INPUT})")
        if addr + len(raw) // 2 > U32:
            raise _error(f"{where}: memory input at {addr:#x} runs past the 32-bit address space")
        if not isinstance(data.get("physical", False), bool):
            raise _error(f"{where}: \"physical\" must be true or false")
        if "vcpu" in data:
            _int(where, data, "vcpu", 0, MAX_CPUS - 1)


# -- field checks ---------------------------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(where: str, rec: dict, key: str, lo: int, hi: int) -> int:
    v = rec.get(key)
    if not _is_int(v) or not lo <= v <= hi:
        raise _error(f"{where}: \"{key}\" must be an integer from {lo} to {hi}, not {_show(v)}")
    return v


def _str(where: str, rec: dict, key: str, pattern: re.Pattern | None = None) -> str:
    v = rec.get(key)
    if not isinstance(v, str) or (pattern is not None and not pattern.fullmatch(v)):
        what = "hex digits" if pattern is not None else "a string"
        raise _error(f"{where}: \"{key}\" must be {what}, not {_show(v)}")
    return v


def _latin1(where: str, rec: dict, key: str) -> str:
    v = _str(where, rec, key)
    try:
        v.encode("latin-1")
    except UnicodeEncodeError:
        raise _error(f"{where}: \"{key}\" holds characters outside latin-1 (bytes are stored as U+0000-U+00FF)")
    return v


def _type(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number")


def _show(v) -> str:
    text = repr(v) if not isinstance(v, (dict, list)) else _type(v)
    return text if len(text) <= 40 else text[:37] + "..."
