"""Issue 12, item 7: bad input from users is one clear line on stderr and
exit status 2, never a traceback, and never the end of a sibling guest.

Each case goes through the real interface (``tvmm.cli.main``, or a
subprocess where a hang must be bounded)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tvmm.cli import main

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "samples" / "build"
HELLO = BUILD / "hello.elf"
MULTITASK = BUILD / "multitask.elf"
DISK_ELF, DISK_IMG = BUILD / "disk.elf", BUILD / "disk.img"
SESSIONS = ROOT / "tests" / "sessions"


def cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(rc: int, err: str, *words: str) -> None:
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


def subprocess_tvmm(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tvmm", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


# -- disk images -------------------------------------------------------------------------------

def test_a_directory_as_disk_image_is_refused_at_start_and_its_sibling_is_not_started(capsys, tmp_path):
    rc, out, err = cli(capsys, "run", "--headless", "--max-insns", "100000",
                       "--guest", f"name=mt,kernel={MULTITASK},cmdline=forever",
                       "--guest", f"name=d,kernel={DISK_ELF},disk0={tmp_path}")
    one_line(rc, err, str(tmp_path), "is a directory, not a disk image file")


@pytest.mark.parametrize("spec", ["kernel={hello},disk1={bad}", "kernel={hello},disk0={bad}",
                                  "boot=disk,disk0={bad}", "boot=rom,rom={rom},disk1={bad}"])
def test_every_image_is_checked_whatever_the_boot_path(capsys, tmp_path, spec):
    rom = tmp_path / "bios.bin"
    rom.write_bytes(b"\xf4" * 4096)
    for bad, words in [(tmp_path, "is a directory"), ("/dev/zero", "is a device"),
                       (tmp_path / "gone.img", "disk image not found")]:
        rc, out, err = cli(capsys, "run", "--headless", "--max-insns", "1000",
                           "--guest", spec.format(hello=HELLO, bad=bad, rom=rom))
        one_line(rc, err, words)


def test_a_fifo_as_disk_image_does_not_block(tmp_path, fifo):
    r = subprocess_tvmm("run", "--headless", "--guest", f"kernel={HELLO},disk0={fifo}", timeout=30)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is a FIFO" in r.stderr, r.stderr


def test_an_image_deleted_while_its_guest_runs_still_reads_as_it_did(tmp_path):
    from tvmm.guestspec import GuestSpec
    from tvmm.monitor.vmm import Monitor

    def console(delete: bool) -> bytes:
        img = tmp_path / f"disk-{delete}.img"
        shutil.copy(DISK_IMG, img)
        spec = GuestSpec(name="d", kernel=str(DISK_ELF), disk0=str(img))
        monitor = Monitor.with_guests([spec])
        g = monitor.guests[0]
        monitor.run(20_000)
        if delete:
            img.unlink()
        for _ in range(200):
            if not g.runnable:
                break
            monitor.run(100_000)
        return g.state, bytes(g.console)

    assert console(True) == console(False)


def test_a_guest_reset_after_its_image_was_deleted_boots_from_the_same_image(tmp_path):
    from tvmm.guestspec import GuestSpec
    from tvmm.monitor.vmm import Monitor
    img = tmp_path / "disk.img"
    shutil.copy(DISK_IMG, img)
    monitor = Monitor.with_guests([GuestSpec(name="d", kernel=str(DISK_ELF), disk0=str(img))])
    g = monitor.guests[0]
    monitor.run(20_000)
    img.unlink()
    g.reset()                                   # rebuilds the PC and its drives from the spec
    for _ in range(200):
        if not g.runnable:
            break
        monitor.run(100_000)
    first = bytes(g.console)
    assert g.state != "crashed" and first


def test_a_host_read_error_is_a_bad_sector_for_that_drive(monkeypatch):
    from tests.machine.devices.test_ide import STATUS, ERROR, Rig, image
    from tvmm.machine.devices.ide import ABRT, DRQ, ERR, UNC, Disk

    disk = Disk.from_bytes(image(64))
    rig = Rig(master=disk, delay=0)

    def fail(lba, count):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(disk, "_read_image", fail)
    rig.lba_command(0x20, 5, 2)
    status = rig.inb(STATUS)
    assert status & ERR and not status & DRQ and rig.inb(ERROR) == UNC
    monkeypatch.undo()
    rig.lba_command(0x20, 5, 1)                    # the drive works again afterwards
    assert rig.inb(STATUS) & DRQ and rig.read_block()[:4] == (5).to_bytes(4, "little")

    def fail_write(lba, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(disk, "write", fail_write)
    rig.lba_command(0x30, 3, 1)
    rig.write_block(b"\x55" * 512)
    assert rig.inb(STATUS) & ERR and rig.inb(ERROR) == ABRT


def test_host_io_errors_at_run_time_touch_only_that_guest(monkeypatch):
    from tvmm.guestspec import GuestSpec
    from tvmm.machine.devices import ide
    from tvmm.monitor.vmm import Monitor

    def run(specs):
        monitor = Monitor.with_guests(specs)
        for _ in range(40):
            monitor.run(50_000)
        return {g.name: bytes(g.console) for g in monitor.guests}, monitor

    mt = GuestSpec(name="mt", kernel=str(MULTITASK), cmdline="forever")
    alone, _ = run([mt])
    real_read = ide.Disk._read_image

    def flaky(self, lba, count):
        if lba > 0:
            raise OSError(errno.EIO, "Input/output error")
        return real_read(self, lba, count)
    monkeypatch.setattr(ide.Disk, "_read_image", flaky)
    both, monitor = run([mt, GuestSpec(name="d", kernel=str(DISK_ELF), disk0=str(DISK_IMG))])
    assert both["mt"] == alone["mt"]
    assert monitor.guest("mt").state == "running"


# -- kernels ---------------------------------------------------------------------------------------

def _hello_with(tmp_path, offset: int, fmt: str, value: int) -> Path:
    data = bytearray(HELLO.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    path = tmp_path / "bad.elf"
    path.write_bytes(data)
    return path


def test_a_segment_past_the_end_of_the_file_is_a_bad_kernel(capsys, tmp_path):
    size = HELLO.stat().st_size
    phoff = struct.unpack_from("<I", HELLO.read_bytes(), 28)[0]
    bad = _hello_with(tmp_path, phoff + 4, "<I", size + 4096)           # first p_offset
    rc, out, err = cli(capsys, "run", "--headless", "--max-insns", "1000", bad)
    one_line(rc, err, "runs past the end of the file")
    bad = _hello_with(tmp_path, phoff + 16, "<I", size * 4)              # first p_filesz
    rc, out, err = cli(capsys, "run", "--headless", "--max-insns", "1000", bad)
    one_line(rc, err, "runs past the end of the file")
    bad = _hello_with(tmp_path, 28, "<I", size - 8)                      # e_phoff
    rc, out, err = cli(capsys, "run", "--headless", "--max-insns", "1000", bad)
    one_line(rc, err, "program headers")


def test_special_files_are_not_read_as_kernels(capsys, tmp_path, fifo):
    rc, out, err = cli(capsys, "run", "--headless", "/dev/zero")
    one_line(rc, err, "/dev/zero: is a device, not a kernel file")
    r = subprocess_tvmm("run", "--headless", "--timeout", "5", fifo, timeout=30)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is a FIFO" in r.stderr, r.stderr
    big = tmp_path / "big.elf"
    with open(big, "wb") as f:
        f.truncate((256 << 20) + 1)                                   # sparse: costs nothing
    rc, out, err = cli(capsys, "run", "--headless", big)
    one_line(rc, err, "more than the 256 MiB")


def test_special_files_as_roms_configs_and_sessions(capsys, tmp_path, fifo):
    rc, out, err = cli(capsys, "run", "--headless", "--guest", "boot=rom,rom=/dev/zero")
    one_line(rc, err, "is a device, not a ROM file")
    rc, out, err = cli(capsys, "run", "--headless", "--config", "/dev/zero")
    one_line(rc, err, "is a device, not a configuration file")
    rc, out, err = cli(capsys, "replay", "/dev/zero")
    one_line(rc, err, "is a device, not a session file")
    rc, out, err = cli(capsys, "replay", tmp_path)
    one_line(rc, err, "is a directory")
    for args in (["run", "--headless", "--guest", f"boot=rom,rom={fifo}"],
                 ["run", "--headless", "--config", fifo], ["replay", fifo]):
        r = subprocess_tvmm(*args, timeout=30)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is a FIFO" in r.stderr, (args, r.stderr)


# -- ROMs --------------------------------------------------------------------------------------------

def _rom(size: int) -> bytes:
    from tests.monitor.test_rom_boot import rom_image
    small = rom_image()
    return b"\xff" * (size - len(small)) + small          # the code sits in the last 64 KiB


def test_the_largest_documented_rom_boots_clear_of_every_device(capsysbinary, tmp_path):
    from tvmm.machine.boot import rom
    path = tmp_path / "bios.bin"
    path.write_bytes(_rom(rom.MAX_SIZE))
    rc, out, err = cli(capsysbinary, "run", "--headless", "--max-insns", "100000", "--guest", f"boot=rom,rom={path}")
    assert rc == 0, err
    assert out == b"Rk\xea\n"


def test_a_rom_above_the_documented_limit_is_one_line(capsys, tmp_path):
    from tvmm.machine.boot import rom
    path = tmp_path / "big.bin"
    path.write_bytes(_rom(16 << 20))
    rc, out, err = cli(capsys, "run", "--headless", "--guest", f"boot=rom,rom={path}")
    one_line(rc, err, f"more than the {rom.MAX_SIZE >> 20} MiB a ROM may have")


def test_the_rom_window_holds_no_device():
    from tvmm.guestspec import GuestSpec
    from tvmm.machine.boot import rom
    from tvmm.monitor.vmm import Monitor
    g = Monitor.with_guests([GuestSpec(name="g", kernel=str(HELLO))]).guests[0]
    top = (1 << 32) - rom.MAX_SIZE
    devices = [r for r in g.gmem._map.regions if r.end > top]
    assert devices == []
    assert any(r.name.endswith("iomem") for r in g.gmem._map.regions)     # pc-testdev is where QEMU has it


# -- options -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mem", ["٣M", "３M", "1٠M", "64 M\u00a0"])
def test_only_ascii_digits_make_a_memory_size(capsys, mem):
    rc, out, err = cli(capsys, "run", "--headless", "--guest", f"kernel={HELLO},mem={mem}")
    one_line(rc, err, "bad memory size")


@pytest.mark.parametrize("count, size", [(16, "256M"), (2, "3G")])
def test_guests_beyond_host_memory_are_refused_with_the_real_limit(capsys, count, size):
    guests = [a for i in range(count) for a in ("--guest", f"name=g{i},kernel={HELLO},mem={size}")]
    rc, out, err = cli(capsys, "run", "--headless", "--max-insns", "1000", *guests)
    total = count * (int(size[:-1]) << (10 if size.endswith("G") else 0))
    one_line(rc, err, f"the guests' memory adds up to {total} MiB; all guests together can have at most")


def test_guests_up_to_the_limit_run(capsys):
    guests = [a for i in range(14) for a in ("--guest", f"name=g{i},kernel={HELLO},mem=256M")]
    rc, out, err = cli(capsys, "run", "--headless", "--max-insns", "50000", *guests)
    assert rc == 0, err
    assert out.count("Hello from the hello sample kernel!") == 14


def test_bad_toml_configurations(capsys, tmp_path):
    cases = {"binary.toml": b"\xff\xfe[[guest]]\n", "deep.toml": b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n",
             "huge-int.toml": b"[[guest]]\nkernel = 'k'\nmem = " + b"9" * 5000 + b"\n",
             "syntax.toml": b"[[guest]\n"}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        rc, out, err = cli(capsys, "run", "--headless", "--config", path)
        one_line(rc, err, str(path))


# -- replay ----------------------------------------------------------------------------------------------

def _session(tmp_path, change, name="hello") -> Path:
    lines = [json.loads(line) for line in (SESSIONS / f"{name}.tvmm.jsonl").read_text().splitlines()]
    change(lines)
    path = tmp_path / "s.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def _input(**kw):
    rec = {"t": "input", "guest": "hello", "time": 100, "kind": "serial", "data": "x"}
    rec.update(kw)
    return rec


BAD_SESSIONS = {
    "header is a list": lambda ls: ls.__setitem__(0, [1, 2]),
    "guests is a string": lambda ls: ls[0].__setitem__("guests", "hello"),
    "spec without name": lambda ls: ls[0]["guests"][0]["spec"].pop("name"),
    "spec mem is text": lambda ls: ls[0]["guests"][0]["spec"].__setitem__("mem", "16M"),
    "files names a missing key": lambda ls: ls[0]["guests"][0]["files"].__setitem__("rom", "0" * 64),
    "record without guest": lambda ls: ls[1].pop("guest"),
    "record of an unknown guest": lambda ls: ls[1].__setitem__("guest", "nobody"),
    "time is text": lambda ls: ls[1].__setitem__("time", "soon"),
    "time is negative": lambda ls: ls[1].__setitem__("time", -5),
    "time is true": lambda ls: ls[1].__setitem__("time", True),
    "time is astronomical": lambda ls: ls[1].__setitem__("time", 10 ** 30),
    "mem at -4096": lambda ls: ls.insert(1, _input(kind="mem", data={"addr": -4096, "bytes": "00"})),
    "mem past 4 GiB": lambda ls: ls.insert(1, _input(kind="mem", data={"addr": 0xFFFFFFFF, "bytes": "0000"})),
    "mem bytes not hex": lambda ls: ls.insert(1, _input(kind="mem", data={"addr": 0x1000, "bytes": "zz"})),
    "reg value too big": lambda ls: ls.insert(1, _input(kind="reg", data={"name": "eax", "value": 1 << 40})),
    "reg data is a list": lambda ls: ls.insert(1, _input(kind="reg", data=["eax", 1])),
    "unknown input kind": lambda ls: ls.insert(1, _input(kind="teleport")),
    "serial data beyond latin-1": lambda ls: ls.insert(1, _input(data="\u20ac")),
    "digest mem is negative": lambda ls: ls[1].__setitem__("mem", -1),
    "end state unknown": lambda ls: ls[2].__setitem__("state", "asleep"),
    "deep nesting": lambda ls: ls.insert(1, "[" * 100_000 + "]" * 100_000),
    "deep nesting in a field": lambda ls: ls.insert(1, '{"t": "input", "data": ' + "[" * 50 + "]" * 50 + "}"),
    "a 5000-digit time": lambda ls: ls.insert(1, '{"t": "input", "guest": "hello", "time": ' + "9" * 5000 + "}"),
    "not JSON": lambda ls: ls.insert(1, "{nope"),
    "a record that is a number": lambda ls: ls.insert(1, "42"),
}


@pytest.mark.parametrize("what", BAD_SESSIONS)
def test_structurally_wrong_sessions_are_one_line(capsys, tmp_path, monkeypatch, what):
    monkeypatch.chdir(ROOT)                     # stored sessions name files relative to the repository
    path = _session(tmp_path, BAD_SESSIONS[what])
    rc, out, err = cli(capsys, "replay", path)
    one_line(rc, err, "tvmm replay: ")


def test_an_unmapped_memory_input_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    path = _session(tmp_path, lambda ls: ls.insert(1, _input(kind="mem", data={"addr": 0xE0000000, "bytes": "00"})))
    rc, out, err = cli(capsys, "replay", path)
    one_line(rc, err, "0xe0000000")


def test_a_far_future_input_is_ended_by_timeout_or_max_insns(capsys, tmp_path):
    path = tmp_path / "forever.jsonl"
    rc, out, err = cli(capsys, "run", "--headless", "--record", path, "--max-insns", "100000",
                       "--guest", f"name=mt,kernel={MULTITASK},cmdline=forever")
    assert rc == 1 and path.exists(), err                   # the budget ended the run
    with open(path, "a") as f:
        f.write(json.dumps(_input(guest="mt", time=10 ** 12)) + "\n")
    import time
    t0 = time.monotonic()
    rc, out, err = cli(capsys, "replay", "--timeout", "1", path)
    assert rc == 1 and "timed out after 1 s" in err and err.count("\n") == 1, err
    assert time.monotonic() - t0 < 10
    rc, out, err = cli(capsys, "replay", "--max-insns", "300000", path)
    assert rc == 1 and "--max-insns 300000" in err and err.count("\n") == 1, err


def test_replay_options_are_checked(capsys):
    for args in (["--timeout", "0"], ["--timeout", "nan"], ["--timeout", "x"], ["--max-insns", "-1"],
                 ["--ui", "--timeout", "3"]):
        rc, out, err = cli(capsys, "replay", *args, SESSIONS / "hello.tvmm.jsonl")
        one_line(rc, err, "tvmm replay: ")


def test_stored_sessions_pass_the_schema():
    from tvmm.monitor.record import load
    from tvmm.monitor.session_schema import precheck
    for path in SESSIONS.glob("*.jsonl"):
        precheck(str(path))
        load(str(path))
