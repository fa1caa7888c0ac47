"""The public API (tvmm/api.py), driven through the pytest plugin's own
fixtures (tvmm/pytest_plugin.py): our sample kernels as a user tests theirs."""

from __future__ import annotations

from pathlib import Path

import pytest

import tvmm
from tvmm import api

ROOT = Path(__file__).resolve().parents[1]
HELLO = str(ROOT / "samples/build/hello.elf")
FLAKY = str(ROOT / "samples/build/flaky.elf")


@pytest.mark.tvmm(kernel=HELLO, mem="16M")
def test_hello_boots_prints_and_halts(tvmm_guest):
    g = tvmm_guest
    assert g.expect("memory: 16 MiB").startswith("Hello from the hello sample kernel!")
    assert g.run(until="halt") == "halted"
    assert g.console.endswith("bye\n") and g.exit_status is None
    assert g.icount == 4577                              # the stored session's count


@pytest.mark.tvmm(f"name=echo,kernel={HELLO},cmdline=echo,mem=16M")
def test_send_reaches_the_guest_and_is_recorded(tvmm_guest, tmp_path):
    g = tvmm_guest
    g.expect("type a line: ")
    g.send("hello tvmm\n")
    g.expect("you typed: HELLO TVMM")
    g.run(until="end")
    path = g.machine.stop_recording()
    assert '"kind":"serial"' in Path(path).read_text()
    from tvmm.monitor.record import load, replay, specs_of
    from tvmm.monitor.vmm import Monitor
    head, recs = load(path)
    monitor = Monitor.with_guests(specs_of(head))
    replay(monitor, recs)
    assert monitor.guest("echo").console == g.console_bytes


@pytest.mark.parametrize("tvmm_guest", [f"kernel={HELLO},mem=16M"], indirect=True)
def test_until_a_symbol_stops_there_and_memory_and_registers_read(tvmm_guest):
    g = tvmm_guest
    kmain = g.symbol("kmain")
    assert g.run(until=api.Symbol("kmain")) == "address"
    assert g.registers["eip"] == kmain and g.state == "running"
    assert g.read(kmain, 4) == g.read(kmain, 4, physical=True)   # identity-mapped kernel
    assert g.run(until="halt") == "halted"                        # goes on from the breakpoint


@pytest.mark.tvmm(kernel=HELLO, mem="16M")
def test_writes_are_inputs_and_snapshots_restore(tvmm_guest):
    g = tvmm_guest
    g.run(until=g.symbol("kmain"))
    snap = g.snapshot()
    g.set_register("eax", 0x1234)
    assert g.registers["eax"] == 0x1234
    g.write(0x200000, b"tvmm", physical=True)
    assert g.read(0x200000, 4, physical=True) == b"tvmm"
    g.run(until="halt")
    g.restore(snap)
    assert g.state == "running" and g.registers["eip"] == g.symbol("kmain")
    assert g.read(0x200000, 4, physical=True) == bytes(4)
    assert g.machine.recorder is None and "restored" in g.machine.record_note
    g.run(until="halt")
    assert g.console.endswith("bye\n")


@pytest.mark.tvmm(kernel=HELLO, mem="16M")
def test_events_are_the_monitors(tvmm_guest):
    tvmm_guest.run(until="halt")
    io = tvmm_guest.events(kind="io")
    assert io and all(e.kind == "io" for e in io)
    assert io[0].icount <= io[-1].icount
    assert tvmm_guest.event_counts()["io"] >= len(io)


@pytest.mark.tvmm(kernel=FLAKY, cmdline="seed=5")
def test_the_flaky_race_crashes_with_seed_5(tvmm_guest):
    assert tvmm_guest.run(until="exit") == "exited"
    assert tvmm_guest.exit_status == 3                  # (1 << 1) | 1: the oops handler exits with 1
    assert "BUG: unable to handle page fault at 0xdead" in tvmm_guest.console


@pytest.mark.tvmm(f"name=a,kernel={HELLO},mem=16M", f"name=b,kernel={FLAKY},cmdline=seed=5")
def test_a_machine_runs_guests_side_by_side(tvmm_machine):
    tvmm_machine.run(1_000_000)
    assert tvmm_machine["a"].state == "halted" and tvmm_machine["b"].state == "exited"
    with pytest.raises(api.UsageError, match="no guest named 'c'"):
        tvmm_machine["c"]


def test_a_missed_expectation_says_what_and_where():
    g = tvmm.boot(kernel=HELLO, mem="16M")
    with pytest.raises(tvmm.GuestEnded, match=r"halted .* at instruction count 4577 before 'nope'") as e:
        g.expect("nope")
    assert "  | bye" in str(e.value)
    g = tvmm.boot(kernel=FLAKY, cmdline="seed=1")
    with pytest.raises(tvmm.ExpectTimeout, match="waited 1000 instructions for 'survived'"):
        g.expect("survived", timeout_insns=1000)


@pytest.mark.parametrize("call, message", [
    (lambda: tvmm.boot(), "boot\\(\\) needs a guest"),
    (lambda: tvmm.boot(kernel="/nonexistent.elf"), "is not a file"),
    (lambda: tvmm.boot(kernel=HELLO, colour="red"), "unknown guest option 'colour'"),
    (lambda: tvmm.boot(kernel=HELLO, mem="12X"), "bad memory size"),
    (lambda: tvmm.boot(kernel=HELLO).symbol("kmian"), "no symbol 'kmian'.*did you mean kmain"),
    (lambda: tvmm.boot(kernel=HELLO).read(0xF0000000, 4), "cannot access memory"),
    (lambda: tvmm.boot(kernel=HELLO).run(), "needs insns= or until="),
    (lambda: tvmm.boot(kernel=HELLO).run(until=3.5), "until=3.5"),
    (lambda: tvmm.boot(kernel=HELLO).set_register("cs", 8), "cannot be written"),
    (lambda: tvmm.boot(kernel=str(ROOT / "README.md")), "."),
])
def test_usage_errors_are_one_line(call, message):
    with pytest.raises(tvmm.UsageError, match=message) as e:
        call()
    assert "\n" not in str(e.value)


def test_import_tvmm_stays_cheap():
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", "import sys, tvmm; print('tvmm.monitor.vmm' in sys.modules)"],
                       capture_output=True, text=True)
    assert r.stdout.strip() == "False"


@pytest.mark.asyncio
@pytest.mark.tvmm(f"name=echo,kernel={HELLO},cmdline=echo,mem=16M")
async def test_async_variants_wait_without_blocking_the_event_loop(tvmm_guest):
    import asyncio
    g = tvmm_guest
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)
    t = asyncio.create_task(ticker())
    await g.aexpect("type a line: ")
    g.send("async\n")
    assert await g.arun(until="you typed: ASYNC") == "text"
    assert await g.arun(until="end") in ("halted", "exited")
    t.cancel()
    assert ticks > 0                                    # the loop ran while the guest did
