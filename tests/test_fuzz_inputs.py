"""Malformed user files (issue 12, item 7): kernels, disk images, ROMs, TOML
configurations and session files, mutated with a fixed seed and bounded
counts, through ``tvmm.cli.main`` in-process.  Whatever tvmm makes of
one — a guest that runs, or a refusal — it is never a traceback, and a
refusal is one line with exit status 2.

Counts (module constants): KERNELS mutated kernels, IMAGES disk images,
ROMS ROM images, CONFIGS TOML files, SESSIONS session files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tvmm.cli import main

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "samples" / "build"
HELLO = BUILD / "hello.elf"
STORED = ROOT / "tests" / "sessions"

SEED = 127
KERNELS, IMAGES, ROMS, CONFIGS, SESSIONS = 80, 40, 40, 60, 150
BUDGET = ["--max-insns", "3000", "--timeout", "20"]


def _cli(capsysbinary, *args) -> tuple[int, str]:
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:                      # only a clean exit is allowed to leave main
        rc = e.code
    _out, err = capsysbinary.readouterr()
    return rc, err.decode("utf-8", "replace")


def _check(rc, err: str, what: str, tally: dict) -> None:
    assert isinstance(rc, int), (what, rc, err)
    assert "Traceback" not in err, (what, err)
    if rc == 2:
        assert err.count("\n") == 1 and err.startswith("tvmm "), (what, err)
    tally[rc] = tally.get(rc, 0) + 1


def _flip(rng: random.Random, data: bytes, region: int | None = None) -> bytes:
    b = bytearray(data)
    if not b:
        return bytes(rng.randbytes(rng.randint(0, 64)))
    how = rng.randrange(5)
    if how == 0:                                         # bit flips, mostly in the headers
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(min(len(b), region or len(b)))
            b[pos] ^= 1 << rng.randrange(8)
    elif how == 1:                                       # random 32-bit words in the headers
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(max(1, min(len(b), region or len(b)) - 4))
            b[pos:pos + 4] = rng.choice([0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, len(b), len(b) + 1,
                                         rng.getrandbits(32)]).to_bytes(4, "little")
    elif how == 2:                                       # truncated
        del b[rng.randrange(len(b)):]
    elif how == 3:                                       # random bytes spliced in
        pos = rng.randrange(len(b))
        b[pos:pos + rng.randint(1, 64)] = rng.randbytes(rng.randint(1, 64))
    else:                                                # random file
        b = bytearray(rng.randbytes(rng.choice([0, 1, 12, 511, 512, 4096, 8192])))
    return bytes(b)


def _aout_kernel(rng: random.Random) -> bytes:
    """A Multiboot kernel with the a.out kludge and random load addresses."""
    import struct
    magic, flags = 0x1BADB002, 0x00010000 | rng.choice([0, 1, 2, 4, 8, 0x10000])
    words = [rng.choice([0, 0x1000, 0x100000, 0xFFFFFFFF, rng.getrandbits(32)]) for _ in range(5)]
    hdr = struct.pack("<8I", magic, flags, (-(magic + flags)) & 0xFFFFFFFF, *words)
    return rng.randbytes(rng.choice([0, 4, 64])) + hdr + rng.randbytes(rng.randint(0, 256))


def test_malformed_kernels(capsysbinary, tmp_path):
    rng = random.Random(SEED)
    hello = HELLO.read_bytes()
    tally: dict = {}
    path = tmp_path / "k.elf"
    for i in range(KERNELS):
        path.write_bytes(_aout_kernel(rng) if i % 4 == 3 else _flip(rng, hello, region=52 + 2 * 32))
        rc, err = _cli(capsysbinary, "run", "--headless", *BUDGET, path)
        _check(rc, err, f"kernel {i}", tally)
    assert tally.get(2, 0) >= KERNELS // 4, tally
    print('kernels', tally)


def test_malformed_disk_images(capsysbinary, tmp_path):
    rng = random.Random(SEED + 1)
    base = (BUILD / "disk.img").read_bytes()[:64 * 512]
    tally: dict = {}
    path = tmp_path / "d.img"
    for i in range(IMAGES):
        path.write_bytes(_flip(rng, base, region=1024))
        spec = f"boot=disk,disk0={path}" if i % 2 else f"kernel={BUILD / 'disk.elf'},disk0={path}"
        rc, err = _cli(capsysbinary, "run", "--headless", *BUDGET, "--guest", spec)
        _check(rc, err, f"image {i}", tally)
    assert tally.get(2, 0) >= 1, tally


def test_malformed_roms(capsysbinary, tmp_path):
    rng = random.Random(SEED + 2)
    tally: dict = {}
    path = tmp_path / "r.bin"
    for i in range(ROMS):
        size = rng.choice([0, 1, 4095, 4096, 8192, 65536, 65537, 128 << 10, 1 << 20])
        path.write_bytes(rng.randbytes(size))
        rc, err = _cli(capsysbinary, "run", "--headless", "--max-insns", "1000", "--guest", f"boot=rom,rom={path}")
        _check(rc, err, f"rom {i} ({size} bytes)", tally)
    assert tally.get(2, 0) >= 1, tally


CONFIG = f"""[[guest]]
name = "a"
kernel = "{HELLO}"
cmdline = "x"
mem = "16M"

[[guest]]
name = "b"
kernel = "{HELLO}"
mem = 33554432
"""

TOML_PIECES = ["[[guest]]", "[guest]", "name = ", "kernel = ", "mem = ", "boot = ", "rom = ", "disk0 = ",
               "'", '"', "[", "]", "{", "}", "=", "\n", "1e9", "-1", "true", "٣M", "99999999999999999999",
               "\\u0000", "\x00", "\xff", "[[", "]]", "'''", "inf", "nan", "2026-12-04", ","]


def test_malformed_toml_configs(capsysbinary, tmp_path):
    rng = random.Random(SEED + 3)
    tally: dict = {}
    path = tmp_path / "c.toml"
    for i in range(CONFIGS):
        if i % 3 == 0:
            data = _flip(rng, CONFIG.encode())
        else:
            text = list(CONFIG)
            for _ in range(rng.randint(1, 6)):
                pos = rng.randrange(len(text))
                text[pos:pos + rng.randint(0, 8)] = rng.choice(TOML_PIECES)
            data = "".join(text).encode("utf-8", "surrogateescape")
        path.write_bytes(data)
        rc, err = _cli(capsysbinary, "run", "--headless", *BUDGET, "--config", path)
        _check(rc, err, f"config {i}: {data[:200]!r}", tally)
    assert tally.get(2, 0) >= CONFIGS // 3, tally
    print('configs', tally)


# -- sessions ----------------------------------------------------------------------------------------

def _random_value(rng: random.Random, depth: int = 0):
    choices = [None, True, False, 0, -1, -4096, 1 << 32, 10 ** 12, 10 ** 30, 1.5, "", "x", "zz", "00ff",
               "\u20ac", "hello", "serial", "mem", "reg", "eax", [], {}]
    v = rng.choice(choices)
    if depth < 3 and rng.random() < 0.2:
        v = [_random_value(rng, depth + 1)] if rng.random() < 0.5 else {"addr": _random_value(rng, depth + 1),
                                                                         "bytes": _random_value(rng, depth + 1)}
    return v


def _paths(value):
    """Every (container, key) inside a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield value, k
            yield from _paths(v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield value, i
            yield from _paths(v)


def _mutate_session(rng: random.Random, records: list) -> str:
    how = rng.randrange(6)
    if how == 0:                                         # one field replaced by a random value
        rec = rng.choice(records)
        spots = list(_paths(rec))
        if spots:
            container, key = rng.choice(spots)
            container[key] = _random_value(rng)
    elif how == 1:                                       # one field deleted
        rec = rng.choice(records)
        spots = [(c, k) for c, k in _paths(rec) if isinstance(c, dict)]
        if spots:
            container, key = rng.choice(spots)
            del container[key]
    elif how == 2:                                       # an input of random shape inserted
        rec = {"t": "input", "guest": records[0]["guests"][0]["spec"]["name"],
               "time": rng.choice([0, 1, 100, 10 ** 12, -1]),
               "kind": rng.choice(["serial", "key", "reset", "reg", "seg", "mem", "nope"]),
               "data": rng.choice([_random_value(rng), {"addr": rng.choice([-4096, 0, 0x1000, 0xFFFFFFFF,
                                                                            0xE0000000, 1 << 40]),
                                                        "bytes": rng.choice(["00", "0011", "zz", ""])},
                                   {"name": rng.choice(["eax", "eip", "cr3", "xmm0", "ds", "cs"]),
                                    "value": rng.choice([0, 0x100000, -1, 1 << 33]),
                                    "selector": rng.choice([0, 0x10, 0x1B, 0x10000])}])}
        records.insert(rng.randrange(1, len(records) + 1), rec)
    elif how == 3:                                       # a record of the wrong type
        records.insert(rng.randrange(0, len(records) + 1), _random_value(rng))
    elif how == 4:                                       # records reordered or dropped
        if len(records) > 1:
            i = rng.randrange(len(records))
            records.insert(rng.randrange(len(records)), records.pop(i))
    lines = [json.dumps(r) for r in records]
    if how == 5:                                         # raw text damage
        i = rng.randrange(len(lines))
        line = lines[i]
        pos = rng.randrange(len(line) + 1)
        lines[i] = line[:pos] + rng.choice(["[" * 3000, "{", "}", '"', "\\", "\x00", "\xff", "9" * 5000,
                                            "", "\n"]) + line[pos + rng.randint(0, 5):]
    return "\n".join(lines) + "\n"


def test_malformed_sessions(capsysbinary, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)                              # stored sessions name files relative to it
    rng = random.Random(SEED + 4)
    stored = {name: [json.loads(line) for line in (STORED / f"{name}.tvmm.jsonl").read_text().splitlines()]
              for name in ("hello", "console", "paging", "two-guests")}
    tally: dict = {}
    path = tmp_path / "s.jsonl"
    for i in range(SESSIONS):
        name = rng.choice(sorted(stored))
        records = json.loads(json.dumps(stored[name]))
        text = _mutate_session(rng, records)
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        rc, err = _cli(capsysbinary, "replay", "--max-insns", "400000", "--timeout", "20", path)
        _check(rc, err, f"session {i} (from {name}): {text[:300]!r}", tally)
    assert tally.get(2, 0) >= SESSIONS // 4, tally
    print("sessions:", tally)
