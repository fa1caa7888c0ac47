"""Real gdb reads and writes the x87 registers of a guest: a boot sector
loads pi and 1.0 (``fninit; fldpi; fld1``), gdb stops after it and shows
them with ``info registers float`` and ``p $st0``, then writes ST(0) and
sees the guest store the new value."""

from __future__ import annotations

import shutil

import pytest

from .test_real_gdb import Tvmm, gdb

pytestmark = pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed")

# 7C00: fninit; fldpi; fld1; (7C06) fstp qword [0x7E00]; (7C0A) jmp $
BOOT = bytes.fromhex("dbe3d9ebd9e8") + b"\xdd\x1e\x00\x7e" + b"\xeb\xfe"


def test_gdb_shows_and_writes_x87_registers(tmp_path):
    disk = tmp_path / "boot.img"
    disk.write_bytes(BOOT + bytes(510 - len(BOOT)) + b"\x55\xaa" + bytes(512 * 15))
    tv = Tvmm("--wait-gdb", "--guest", f"name=fpu,boot=disk,disk0={disk}")
    try:
        _session(tv, tmp_path)
    finally:
        tv.proc.kill()                   # the guest spins in `jmp $` after the debugger detaches
        tv.proc.wait(timeout=30)


def _session(tv, tmp_path):
    port = tv.ports["fpu"]
    r = gdb(f"""
run("target remote 127.0.0.1:{port}")
run("break *0x7c06")
run("continue")
floats = run("info registers float")
print(floats)
st0 = float(gdb.parse_and_eval("$st0"))
st1 = float(gdb.parse_and_eval("$st1"))
check(st0 == 1.0, f"st0 = {{st0}}")
check(abs(st1 - 3.141592653589793) < 1e-15, f"st1 = {{st1}}")
check(int(gdb.parse_and_eval("$fctrl")) == 0x37f, "fctrl")
check((int(gdb.parse_and_eval("$fstat")) >> 11) & 7 == 6, "TOP = 6")
check(int(gdb.parse_and_eval("$ftag")) == 0x0fff, "ftag")
check(int(gdb.parse_and_eval("$fioff")) == 0x7c04, "fioff: the last FLD1")
check(int(gdb.parse_and_eval("$fop")) == 0x1e8, "fop: D9 E8")
run("set var $st0 = 2.5")
check(float(gdb.parse_and_eval("$st0")) == 2.5, "st0 written")
run("break *0x7c0a")
run("continue")
check(float(gdb.parse_and_eval("*(double*)0x7e00")) == 2.5, "the guest stored the written st0")
check(float(gdb.parse_and_eval("$st0")) == st1, "popped")
run("detach")
""", tmp_path)
    assert "FAILURES []" in r.stdout, r.stdout + r.stderr
    assert "st0" in r.stdout and "3.14159" in r.stdout
