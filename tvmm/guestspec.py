"""Guest specifications from the command line: ``name=NAME,kernel=ELF,...``.

``parse_guest(text)`` turns one ``--guest`` value into a ``GuestSpec`` or
raises ``SpecError`` with one line saying what is wrong.  Paths are checked
for existence when the machine is built, not here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BOOT_METHODS = ("multiboot", "disk", "rom")
DEFAULT_MEM = 128 << 20
MIN_MEM = 2 << 20
MAX_MEM = 3 << 30           # below the 32-bit device hole


class SpecError(ValueError):
    """A malformed guest specification or option value."""


@dataclass(frozen=True)
class GuestSpec:
    name: str
    kernel: str | None = None
    cmdline: str = ""
    disk0: str | None = None
    disk1: str | None = None
    mem: int = DEFAULT_MEM
    boot: str = "multiboot"
    rom: str | None = None
    wait_gdb: bool = False      # hold this guest until its debugger continues it (needs --gdb)
    cpus: int = 1               # virtual processors (1-16); the first is the bootstrap processor
    sched: str = "rr"           # how they interleave: "rr" or "random:SEED" (machine/sched.py)


KEYS = ("name", "kernel", "cmdline", "disk0", "disk1", "mem", "boot", "rom", "wait-gdb", "cpus", "sched")
MAX_CPUS = 16


def parse_cpus(text: str) -> int:
    value = text.strip()
    if not re.fullmatch(r"[0-9]{1,3}", value, re.ASCII) or not 1 <= int(value) <= MAX_CPUS:
        raise SpecError(f"bad value {text!r} for guest option 'cpus' (a number from 1 to {MAX_CPUS})")
    return int(value)


def parse_sched(text: str) -> str:
    """``rr`` or ``random:SEED`` (SEED a decimal number below 2**64),
    returned in its canonical spelling."""
    value = text.strip().lower()
    if value == "rr":
        return value
    m = re.fullmatch(r"random:([0-9]{1,20})", value, re.ASCII)
    if m and int(m.group(1)) < 1 << 64:
        return f"random:{int(m.group(1))}"
    raise SpecError(f"bad value {text!r} for guest option 'sched' (use rr or random:SEED)")


def parse_yes_no(key: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("yes", "no"):
        return value == "yes"
    raise SpecError(f"bad value {text!r} for guest option {key!r} (use yes or no)")


def size_in_bytes(text: str) -> int | None:
    """``64M``, ``1G``, ``512K``, ``65536`` -> bytes (binary units; ASCII
    digits only); None when it is not a size."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([KMG]?)(i?B)?\s*", text, re.IGNORECASE | re.ASCII)
    if not m:
        return None
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2).upper()]


def parse_size(text: str) -> int:
    """A guest's memory size (``mem=``), in bytes."""
    n = size_in_bytes(text)
    if n is None:
        raise SpecError(f"bad memory size {text!r} (use e.g. 64M or 1G)")
    if n < MIN_MEM or n > MAX_MEM:
        raise SpecError(f"memory size {text} out of range ({MIN_MEM >> 20} MiB to {MAX_MEM >> 30} GiB)")
    if n % 4096:
        raise SpecError(f"memory size {text} is not a multiple of 4 KiB")
    return n


def _split(text: str) -> list[str]:
    """Split on commas, except inside a cmdline value quoted with '…' or "…"."""
    parts, cur, quote = [], [], None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
            else:
                cur.append(ch)
        elif ch in "'\"":
            quote = ch
        elif ch == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if quote:
        raise SpecError(f"unterminated quote in guest specification {text!r}")
    parts.append("".join(cur))
    return parts


def parse_guest(text: str, default_name: str = "guest0") -> GuestSpec:
    fields: dict[str, str] = {}
    if "=" not in text and text.strip():
        # a bare path is shorthand for kernel=PATH
        return GuestSpec(name=default_name, kernel=text.strip())
    for part in _split(text):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq:
            raise SpecError(f"guest option {part!r} needs a value (KEY=VALUE)")
        if key not in KEYS:
            raise SpecError(f"unknown guest option {key!r} (known: {', '.join(KEYS)})")
        if key in fields:
            raise SpecError(f"guest option {key!r} given twice")
        fields[key] = value
    name = fields.pop("name", default_name).strip()
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", name):
        raise SpecError(f"bad guest name {name!r} (letters, digits, '_', '.', '-'; at most 32)")
    boot = fields.pop("boot", "").strip().lower()
    mem = parse_size(fields.pop("mem")) if "mem" in fields else DEFAULT_MEM
    wait_gdb = parse_yes_no("wait-gdb", fields.pop("wait-gdb")) if "wait-gdb" in fields else False
    cpus = parse_cpus(fields.pop("cpus")) if "cpus" in fields else 1
    sched = parse_sched(fields.pop("sched")) if "sched" in fields else "rr"
    spec = dict(name=name, mem=mem, wait_gdb=wait_gdb, cpus=cpus, sched=sched,
                **{k: v for k, v in fields.items()})
    if not boot:
        boot = "multiboot" if spec.get("kernel") else ("rom" if spec.get("rom") else "disk")
    if boot not in BOOT_METHODS:
        raise SpecError(f"unknown boot method {boot!r} (use {', '.join(BOOT_METHODS)})")
    spec["boot"] = boot
    need = {"multiboot": "kernel", "disk": "disk0", "rom": "rom"}[boot]
    if not spec.get(need):
        raise SpecError(f"guest {name!r}: boot={boot} needs {need}=PATH")
    return GuestSpec(**spec)


def load_config(path: str) -> list[GuestSpec]:
    """Guests from a TOML file, one ``[[guest]]`` table each, with the same
    keys as ``--guest`` (``mem`` may be a size string or a number of bytes;
    ``wait-gdb`` true/false or "yes"/"no"; relative paths are relative to the
    file)::

        [[guest]]
        name = "flaky"
        kernel = "samples/build/flaky.elf"
        cmdline = "seed=5"
        mem = "32M"
        wait-gdb = true
    """
    import tomllib
    from pathlib import Path
    from .machine.boot.errors import read_file      # regular files only, at most 1 MiB
    data = read_file(path, "configuration", limit=1 << 20, error=SpecError)
    try:
        doc = tomllib.loads(data[:1 << 20].decode("utf-8"))
    except (ValueError, RecursionError) as e:       # TOMLDecodeError, UnicodeDecodeError, huge ints
        reason = "too deeply nested" if isinstance(e, RecursionError) else str(e).splitlines()[0]
        raise SpecError(f"{path}: not a valid TOML configuration ({reason})") from None
    guests = doc.get("guest")
    if not isinstance(guests, list) or not guests or not all(isinstance(g, dict) for g in guests):
        raise SpecError(f"{path}: expected one or more [[guest]] tables")
    unknown = set(doc) - {"guest"}
    if unknown:
        raise SpecError(f"{path}: unknown top-level key {sorted(unknown)[0]!r}")
    base = Path(path).resolve().parent
    specs = []
    for i, table in enumerate(guests):
        parts = []
        for key, value in table.items():
            if key in ("kernel", "disk0", "disk1", "rom") and isinstance(value, str):
                value = str(base / value)
            if key == "wait-gdb" and isinstance(value, bool):
                value = "yes" if value else "no"
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise SpecError(f"{path}: guest {i + 1}: {key} must be a string or a number")
            text = str(value).replace("'", "")
            parts.append(f"{key}='{text}'")
        try:
            specs.append(parse_guest(",".join(parts), f"guest{i}"))
        except SpecError as e:
            raise SpecError(f"{path}: guest {i + 1}: {e}") from None
    return specs
