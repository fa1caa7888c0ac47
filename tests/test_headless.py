"""`tvmm run --headless`: the command-line contract (output, exit status, errors)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELLO = ROOT / "samples" / "build" / "hello.elf"


def tvmm(*args):
    return subprocess.run([sys.executable, "-m", "tvmm", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_hello_runs_and_exits_0_when_the_guest_halts():
    r = tvmm("run", "--headless", str(HELLO))
    assert r.returncode == 0
    assert "Hello from the hello sample kernel!" in r.stdout
    assert "multiboot magic 0x2badb002 ok" in r.stdout
    assert r.stderr == ""


def test_guest_spec_memory_reaches_the_guest():
    r = tvmm("run", "--headless", "--guest", f"name=h,kernel={HELLO},mem=48M")
    assert "memory: 48 MiB" in r.stdout


def test_screen_is_printed_at_exit():
    r = tvmm("run", "--headless", "--screen", str(HELLO))
    assert r.stdout.rstrip().endswith("bye")


def test_budget_exhausted_is_exit_1_with_a_reason():
    r = tvmm("run", "--headless", "--max-insns", "1000", str(HELLO))
    assert r.returncode == 1 and "budget" in r.stderr and r.stderr.count("\n") == 1


def test_user_errors_are_one_line_and_exit_2(tmp_path):
    notelf = tmp_path / "x.elf"
    notelf.write_bytes(b"hello")
    for args, words in [((str(tmp_path / "missing.elf"),), "no such kernel file"),
                        ((str(notelf),), "no Multiboot header"),
                        (("--guest", "kernel=k,colour=red"), "unknown guest option"),
                        (("--frobnicate",), "unrecognized arguments"),
                        ((), "no guest given")]:
        r = tvmm("run", "--headless", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert words in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_expect_script_completes_with_status_0():
    r = tvmm("run", "--headless", "--expect", "magic 0x2badb002 ok", "--expect", "guest0:bye\\r\\n", str(HELLO))
    assert r.returncode == 0, r.stderr


def test_expect_never_seen_is_exit_1_naming_the_text():
    r = tvmm("run", "--headless", "--expect", "bye", "--expect", "login: ", str(HELLO))
    assert r.returncode == 1
    assert "'login: '" in r.stderr and r.stderr.count("\n") == 1


def test_send_types_into_com1():
    # hello never reads its UART; the bytes must still reach the device's
    # receive FIFO (LSR.DR), which the in-process check below confirms.
    from tvmm.guestspec import GuestSpec
    from tvmm.headless import _advance_script
    from tvmm.monitor.vmm import Monitor
    spec = GuestSpec(name="h", kernel=str(HELLO), mem=8 << 20)
    monitor = Monitor(Monitor.host_size_for([spec]))
    pc = monitor.add_guest(spec).pc
    pc.com1.port_write(0x3FA, 1, 0x07)                 # the guest driver enables the FIFO
    script = [("send", "h", b"ls\n"), ("expect", "h", b"never")]
    _advance_script(monitor, script, {})
    assert script == [("expect", "h", b"never")]
    pc.clock.advance(pc.clock.now + 10_000_000)
    assert pc.com1.port_read(0x3FD, 1) & 1            # data ready
    assert bytes(pc.com1.port_read(0x3F8, 1) for _ in range(3)) == b"ls\n"


def test_disk_boot_from_an_image_file(tmp_path):
    from tests.machine.boot.test_disk_boot import BOOT_SECTOR
    img = tmp_path / "boot.img"
    img.write_bytes(BOOT_SECTOR + b"hi from disk\n\0".ljust(512, b"\0") + bytes(1024))
    r = tvmm("run", "--headless", "--guest", f"disk0={img}")
    assert r.returncode == ((0x80 << 1) | 1) & 0xFF and r.stdout == "hi from disk\n"   # exit codes are 8 bits
    assert img.read_bytes()[:512] == BOOT_SECTOR              # copy-on-write: the file is untouched


def test_bad_disk_images_are_one_line_errors(tmp_path):
    odd = tmp_path / "odd.img"
    odd.write_bytes(b"x" * 100)
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(1024))
    for spec, words in [(f"disk0={tmp_path / 'none.img'}", "not found"),
                        (f"disk0={odd}", "512"),
                        (f"disk0={blank}", "not a bootable disk")]:
        r = tvmm("run", "--headless", "--guest", spec)
        assert r.returncode == 2 and words in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_several_guests_run_side_by_side_with_prefixed_consoles():
    r = tvmm("run", "--headless", "--guest", f"name=a,kernel={HELLO},mem=16M",
             "--guest", f"name=b,kernel={HELLO},mem=32M")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "a| Hello from the hello sample kernel!" in lines and "b| memory: 32 MiB" in lines
    assert "a| memory: 16 MiB" in lines and sum(line.endswith("| bye") for line in lines) == 2


def test_a_crashing_guest_fails_the_run_but_its_sibling_finishes(tmp_path):
    bad = tmp_path / "bad.bin"         # Multiboot a.out-kludge image whose code is ud2 with no IDT
    import struct
    magic, flags = 0x1BADB002, 0x00010000
    bad.write_bytes(struct.pack("<8I", magic, flags, (-(magic + flags)) & 0xFFFFFFFF, 0x100000, 0x100000,
                                0, 0, 0x100020) + b"\x0f\x0b")
    r = tvmm("run", "--headless", "--guest", f"name=bad,kernel={bad}", "--guest", f"name=ok,kernel={HELLO}")
    assert r.returncode == 1
    assert "ok| bye" in r.stdout.splitlines()
    assert "guest bad" in r.stderr and "triple fault" in r.stderr


def test_two_guests_with_one_name_is_a_usage_error():
    r = tvmm("run", "--headless", "--guest", f"name=x,kernel={HELLO}", "--guest", f"name=x,kernel={HELLO}")
    assert r.returncode == 2 and "two guests are named 'x'" in r.stderr and r.stderr.count("\n") == 1


def test_a_big_guest_costs_nothing_until_touched():
    # 2 GiB of guest memory: host memory is committed only for touched pages.
    # The child reports its own peak resident size.
    # (VmHWM: the high-water mark of this process image; ru_maxrss would
    # include the parent's resident size inherited at fork.)
    probe = ("import sys; from tvmm.cli import main; "
             f"rc = main(['run', '--headless', '--guest', 'kernel={HELLO},mem=2G']); "
             "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
             "print('peak', hwm, file=sys.stderr); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and "memory: 2048 MiB" in r.stdout
    peak_kib = int(r.stderr.split("peak")[1])
    assert peak_kib < 300 * 1024, peak_kib


def test_guests_from_a_configuration_file(tmp_path):
    cfg = tmp_path / "guests.toml"
    cfg.write_text(f'[[guest]]\nname = "one"\nkernel = "{HELLO}"\nmem = "16M"\n\n'
                   f'[[guest]]\nname = "two"\nkernel = "{HELLO}"\nmem = "24M"\n')
    r = tvmm("run", "--headless", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "one| memory: 16 MiB" in r.stdout and "two| memory: 24 MiB" in r.stdout
    bad = tvmm("run", "--headless", "--config", str(tmp_path / "missing.toml"))
    assert bad.returncode == 2 and "no such configuration file" in bad.stderr and bad.stderr.count("\n") == 1


def test_a_guest_waiting_for_an_interrupt_no_device_will_raise_is_named(tmp_path):
    """sti; hlt with no timer armed (the PIC and PIT never programmed): the run
    ends, as a deliberate cli; hlt does, but says why the guest stopped."""
    import struct
    waits = tmp_path / "waits.bin"
    magic, flags = 0x1BADB002, 0x00010000
    waits.write_bytes(struct.pack("<8I", magic, flags, (-(magic + flags)) & 0xFFFFFFFF, 0x100000, 0x100000,
                                  0, 0, 0x100020) + b"\xfb\xf4")
    r = tvmm("run", "--headless", str(waits))
    assert r.returncode == 0
    assert r.stderr == "tvmm run: guest guest0 halted with no interrupt to come " \
                       "(no device timer armed, nothing can wake it)\n"
    r = tvmm("run", "--headless", "--guest", f"name=w,kernel={waits}", "--guest", f"name=h,kernel={HELLO}")
    assert r.returncode == 0 and r.stderr.count("\n") == 1 and "guest w halted" in r.stderr
