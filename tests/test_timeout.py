"""`--timeout`: the wall-clock limit holds within a fraction of a second
whatever the guest runs, even a loop on device memory where every access is
emulated (a few hundred thousand instructions a second), and it changes
nothing a guest sees before the deadline."""

from __future__ import annotations

import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.monitor.kit import tiny_kernel
from tvmm.cli import main

ROOT = Path(__file__).resolve().parents[1]
MULTITASK = ROOT / "samples" / "build" / "multitask.elf"
HELLO = ROOT / "samples" / "build" / "hello.elf"

ADD_AL_TO_EAX = b"\x00\x00"                     # addb %al, (%eax)


def device_loop(tmp_path: Path, name: str, address: int) -> Path:
    """Three instructions: mov $address, %eax; L: addb %al, (%eax); jmp L."""
    code = b"\xb8" + struct.pack("<I", address) + ADD_AL_TO_EAX + b"\xeb\xfc"
    path = tmp_path / f"{name}.bin"
    path.write_bytes(tiny_kernel(code))
    return path


def zeros(tmp_path: Path) -> Path:
    """A kernel of zero bytes (what a kernel whose segment lies past the end
    of its file loads): addb %al, (%eax) over and over, with EAX the
    Multiboot magic 0x2BADB002 — an address with nothing behind it."""
    path = tmp_path / "zeros.bin"
    path.write_bytes(tiny_kernel(bytes(64 << 10)))
    return path


KERNELS = {
    "lapic": lambda tmp: device_loop(tmp, "lapic", 0xFEE00000),    # the local APIC page
    "cga": lambda tmp: device_loop(tmp, "cga", 0xB8000),           # CGA text memory
    "zeros": zeros,
}


def timed(args: list[str], capfd) -> tuple[int, float, str]:
    start = time.monotonic()
    status = main(args)
    elapsed = time.monotonic() - start
    return status, elapsed, capfd.readouterr().err


@pytest.mark.parametrize("bare", [False, True], ids=["monitor", "bare"])
@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_a_device_memory_loop_stops_at_the_timeout(kernel, bare, tmp_path, capfd):
    path = KERNELS[kernel](tmp_path)
    status, elapsed, err = timed(["run", "--headless", *(["--bare"] if bare else []), "--timeout", "1", str(path)],
                                 capfd)
    assert status == 1
    assert err == "tvmm run: timed out after 1 s\n"
    assert 1.0 <= elapsed < 2.0, elapsed


def test_the_timeout_holds_through_the_cli_process(tmp_path):
    path = device_loop(tmp_path, "lapic", 0xFEE00000)
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "tvmm", "run", "--headless", "--timeout", "1", str(path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    elapsed = time.monotonic() - start
    assert r.returncode == 1 and r.stderr == "tvmm run: timed out after 1 s\n"
    assert elapsed < 3.0, elapsed                 # 1 s, the interpreter's start and the boot


def test_the_timeout_holds_for_one_slow_guest_among_fast_ones(tmp_path, capfd):
    slow = device_loop(tmp_path, "slow", 0xFEE00000)
    status, elapsed, err = timed(["run", "--headless", "--timeout", "1", "--guest", f"name=slow,kernel={slow}",
                                  "--guest", f"name=mt,kernel={MULTITASK},cmdline=forever"], capfd)
    assert status == 1 and err == "tvmm run: timed out after 1 s\n"
    assert elapsed < 2.0, elapsed


def test_the_timeout_holds_with_gdb_stubs_open(tmp_path, capfd):
    path = device_loop(tmp_path, "lapic", 0xFEE00000)
    status, elapsed, err = timed(["run", "--headless", "--gdb", "127.0.0.1:0", "--timeout", "1", str(path)], capfd)
    assert status == 1 and err.endswith("tvmm run: timed out after 1 s\n")
    assert elapsed < 2.0, elapsed


def test_the_timeout_reason_names_the_awaited_text(tmp_path, capfd):
    path = device_loop(tmp_path, "cga", 0xB8000)
    status, elapsed, err = timed(["run", "--headless", "--timeout", "1", "--expect", "login: ", str(path)], capfd)
    assert status == 1 and elapsed < 2.0
    assert err == "tvmm run: timed out after 1 s before guest guest0's console showed 'login: '\n"


def test_a_timeout_that_does_not_expire_changes_nothing_the_guest_sees(capfdbinary):
    """Same bytes with and without --timeout (slices end at the same virtual
    times; the watchdog acts only once the deadline has passed), and the
    stats show the same instruction and exit counts."""
    def run(*extra):
        status = main(["run", "--headless", "--stats", "--max-insns", "3000000", *extra,
                       "--guest", f"kernel={MULTITASK},cmdline=forever"])
        out = capfdbinary.readouterr()
        return status, out.out, out.err
    without = run()
    with_timeout = run("--timeout", "600")
    assert without == with_timeout
    assert without[0] == 1 and b"budget of 3000000 used up" in without[2]
    assert b"A30 B30 C30 D30" in without[1]


def test_the_timeout_reports_the_guest_as_running_in_its_stats(tmp_path, capfd):
    path = device_loop(tmp_path, "lapic", 0xFEE00000)
    status, _, err = timed(["run", "--headless", "--stats", "--screen", "--timeout", "1", str(path)], capfd)
    assert status == 1
    assert err.startswith("tvmm run: timed out after 1 s\nstats: guest guest0 (running)\n")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_timeout_must_be_a_positive_number_of_seconds(value, capfd):
    assert main(["run", "--headless", "--timeout", value, str(HELLO)]) == 2
    assert capfd.readouterr().err == "tvmm run: --timeout must be a positive number of seconds\n"
