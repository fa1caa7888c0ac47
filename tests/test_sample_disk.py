"""The disk sample end to end: an IDE driver sleeping on IRQ14 — IDENTIFY,
READ SECTORS/MULTIPLE, WRITE SECTORS + CACHE FLUSH, the slave select bit —
and tvmm's copy-on-write disk images."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ELF = ROOT / "samples" / "build" / "disk.elf"
IMG = ROOT / "samples" / "build" / "disk.img"
sys.path.insert(0, str(ROOT / "samples" / "disk"))
import mkimage  # noqa: E402


def run(*extra: str):
    spec = f"kernel={ELF},disk0={IMG}" + "".join(f",{e}" for e in extra)
    r = subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", "--max-insns", "20000000",
                        "--guest", spec], capture_output=True, text=True, cwd=ROOT, timeout=120)
    return r.returncode, r.stdout.replace("\r", ""), r.stderr


def checksum(first: int, count: int) -> int:
    crc = 0
    data = mkimage.image()
    for block in range(count // 4):
        s = 0
        chunk = data[(first + 4 * block) * 512:(first + 4 * block + 4) * 512]
        for i in range(0, len(chunk), 2):
            s = (s * 33 + int.from_bytes(chunk[i:i + 2], "little")) & 0xFFFFFFFF
        crc = (crc * 7 + s) & 0xFFFFFFFF
    return crc


def test_committed_image_is_what_mkimage_writes():
    assert IMG.read_bytes() == mkimage.image()


def test_driver_reads_verifies_writes_and_reads_back_through_interrupts():
    before = hashlib.sha256(IMG.read_bytes()).hexdigest()
    status, out, err = run()
    assert status == 0, err
    lines = out.splitlines()
    assert 'disk: master "TVMM ATA DISK", 128 sectors' in lines
    assert "disk: READ SECTORS 0-3: 4 interrupts" in lines                 # one per sector
    assert f"disk: READ MULTIPLE 4-11: 2 interrupts, checksum 0x{checksum(4, 8):08x}" in lines
    assert "disk: 12 sectors checked, 0 mismatches" in lines
    assert "disk: wrote sectors 100-101, flushed, read them back: identical" in lines
    assert "disk: no slave" in lines and lines[-1] == "disk: done"
    assert hashlib.sha256(IMG.read_bytes()).hexdigest() == before         # copy-on-write: untouched


def test_slave_select_reaches_disk1(tmp_path):
    slave = tmp_path / "slave.img"
    slave.write_bytes(b"TVMM SLAVE DISK, FIRST SECTOR...".ljust(16 * 512, b"\0"))
    status, out, _ = run(f"disk1={slave}")
    assert status == 0
    assert 'disk: slave  "TVMM ATA DISK", 16 sectors' in out
    assert 'disk: slave sector 0 starts "TVMM SLAVE DISK, FIRST SECTOR..."' in out


def test_a_missing_image_is_one_line_and_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", "--guest",
                        f"kernel={ELF},disk0={tmp_path / 'nope.img'}"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nope.img" in r.stderr
