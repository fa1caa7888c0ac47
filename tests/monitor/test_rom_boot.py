"""Firmware ROM boot: the image at the top of 4 GiB and below 1 MiB,
execution from the reset vector F000:FFF0, writes to ROM dropped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def rom_image(size: int = 64 << 10) -> bytes:
    rom = bytearray(b"\xff" * size)
    # reset vector (linear 0xFFFFFFF0): jmp far f000:e000, i.e. into the copy below 1 MiB
    rom[size - 16:size - 11] = b"\xea\x00\xe0\x00\xf0"
    code = (b"\xba\xf8\x03"                     # mov dx, 0x3f8
            b"\xb0\x52\xee"                     # mov al, 'R'; out dx, al
            b"\x2e\xc6\x06\x00\xe1\x11"         # mov byte [cs:0xe100], 0x11  (ROM: dropped)
            b"\x2e\xa0\x00\xe1\xee"             # mov al, [cs:0xe100]; out dx, al
            b"\x66\x2e\xa1\xf0\xff\xee"         # mov eax, [cs:0xfff0] (the reset vector's bytes); out
            b"\xb0\x0a\xee"                     # newline
            b"\xfa\xf4")                        # cli; hlt
    rom[0xE000:0xE000 + len(code)] = code
    rom[0xE100] = ord("k")
    return bytes(rom)


def tvmm(*args):
    return subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", *args], capture_output=True,
                          cwd=ROOT, timeout=60)


def test_rom_boots_from_the_reset_vector_and_ignores_writes(tmp_path):
    path = tmp_path / "bios.bin"
    path.write_bytes(rom_image())
    r = tvmm("--guest", f"name=fw,boot=rom,rom={path}")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"Rk\xea\n"                         # 0xEA: the far jump at F000:FFF0


def test_bad_rom_files_are_one_line_errors(tmp_path):
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x90" * 1000)
    for spec, words in [(f"boot=rom,rom={tmp_path / 'none.bin'}", b"no such ROM file"),
                        (f"boot=rom,rom={odd}", b"multiple of 4 KiB"),
                        ("boot=rom", b"boot=rom needs rom=PATH")]:
        r = tvmm("--guest", spec)
        assert r.returncode == 2 and words in r.stderr and r.stderr.count(b"\n") == 1, r.stderr
