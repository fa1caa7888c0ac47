"""Every outside change a debugger makes goes through ``Guest.apply_input``
(recorded, applied as a replay applies it), requests nothing could honour
are refused, long requests run in slices, and a halted guest is a target.

Each item is checked through real gdb against ``tvmm run --headless --gdb``,
and in memory against the session where that is sharper."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.gdbstub.test_real_gdb import FLAKY, ROOT, Tvmm, gdb, pytestmark, ticker  # noqa: F401
from tests.gdbstub.test_session import Gdb, reg
from tests.monitor.kit import ENTRY, tiny_kernel
from tvmm.gdbstub.target import ALL
from tvmm.monitor.record import Recorder, apply_input, load, replay
from tvmm.monitor.vmm import Monitor

# -- a kernel whose console shows the debugger's inputs ------------------------------------
#   ENTRY:  mov edx, 0x3f8 ; lgdt [GDTR]
#   A:      out 'a', '\n' ; mov ecx, 1000 ; loop $ ; jmp A        (forever, without a debugger)
#   B:      out 'b' ; out fs:[0] ; out '\n' ; cli ; hlt            (only a debugger gets here)
# GDT: 0x08 flat code, 0x10 flat data, 0x18 data based at MARK (which holds 'X').
A, B = ENTRY + 0x0C, ENTRY + 0x1B
LOOP_END = A + 6                                       # mov ecx, 1000 (after A's output)
GDT, GDTR, MARK = ENTRY + 0x60, ENTRY + 0x80, ENTRY + 0x90


def switcher(tmp_path: Path) -> Path:
    code = bytearray(b"\xba\xf8\x03\x00\x00" + b"\x0f\x01\x15" + struct.pack("<I", GDTR))
    assert ENTRY + len(code) == A
    code += b"\xb0\x61\xee\xb0\x0a\xee" + b"\xb9" + struct.pack("<I", 1000) + b"\xe2\xfe"
    code += bytes((0xEB, (A - (ENTRY + len(code) + 2)) & 0xFF))
    assert ENTRY + len(code) == B
    code += b"\xb0\x62\xee" + b"\x64\xa0\x00\x00\x00\x00\xee" + b"\xb0\x0a\xee" + b"\xfa\xf4"
    code += bytes(GDT - ENTRY - len(code))
    lo = 0xFFFF | (MARK & 0xFFFF) << 16
    hi = (MARK >> 16) & 0xFF | 0x92 << 8 | 0xF << 16 | 0xC << 20 | MARK & 0xFF000000
    code += struct.pack("<QQQII", 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF, lo, hi)
    code += bytes(GDTR - ENTRY - len(code)) + struct.pack("<HI", 0x1F, GDT)
    code += bytes(MARK - ENTRY - len(code)) + b"X"
    path = tmp_path / "switcher.bin"
    path.write_bytes(tiny_kernel(bytes(code)))
    return path


def halter(tmp_path: Path) -> Path:
    """Prints "h", then cli; hlt: halted for good."""
    path = tmp_path / "halter.bin"
    path.write_bytes(tiny_kernel(b"\xba\xf8\x03\x00\x00\xb0\x68\xee\xb0\x0a\xee\xfa\xf4"))
    return path


def _replay(session: Path, tmp_path: Path, drop: str | None = None) -> subprocess.CompletedProcess:
    if drop is not None:                          # the same session without one kind of input
        lines = [ln for ln in session.read_text().splitlines()
                 if not (json.loads(ln).get("t") == "input" and json.loads(ln).get("kind") == drop)]
        session = tmp_path / f"without-{drop}.jsonl"
        session.write_text("\n".join(lines) + "\n")
    return subprocess.run([sys.executable, "-m", "tvmm", "replay", "--console", str(session)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


# -- item 6: every input recorded, through real gdb ------------------------------------------------
def test_jump_segment_and_resume_at_address_from_gdb_are_recorded_and_replay(tmp_path):
    session = tmp_path / "inputs.jsonl"
    tv = Tvmm("--wait-gdb", "--timeout", "90", "--record", str(session),
              "--guest", f"name=sw,kernel={switcher(tmp_path)}")
    r = gdb(f"""
run("set remotetimeout 30")
run("target remote 127.0.0.1:{tv.ports['sw']}")
pc = lambda: int(gdb.parse_and_eval("$pc")) & 0xffffffff
run("stepi")
run("stepi")
check(pc() == {A}, "two steps to A: %x" % pc())
run("maint packet Z0,{A:x},1")
out = run("maint packet c{LOOP_END:x}")                  # c ADDR: skips A's output, loops, stops at A
check("T05" in out and "swbreak" in out, "c ADDR stopped at the breakpoint: " + out)
run("maint packet z0,{A:x},1")
out = run("maint packet s{B:x}")                         # s ADDR: one instruction at B
check("T05" in out, "s ADDR: " + out)
run("maint flush register-cache")
check(pc() == {B + 2}, "s ADDR stepped at B: %x" % pc())
run("set $fs = 0x18")                                    # a segment register: P
check(int(gdb.parse_and_eval("$fs")) == 0x18, "fs written")
try:
    run("set $fs = 0x40")                                # beyond the GDT: refused
    check(False, "a selector beyond the GDT was accepted")
except gdb.error:
    pass
check(int(gdb.parse_and_eval("$fs")) == 0x18, "fs unchanged by the refused write")
run("set {{char}}{MARK:#x} = 90")                         # memory: 'Z'
run("set $eax = 0x1234")
run("jump *{B:#x}")                                      # EIP, then continue to the halt
check(pc() == {B + 15}, "halted after hlt: %x" % pc())
check("halted" in run("monitor info"), "monitor info says halted")
run("detach")
""", tmp_path)
    assert "FAILURES []" in r.stdout, r.stdout + r.stderr
    assert "Program received signal SIGTRAP" in r.stdout      # the halt, reported as a stop
    assert tv.finish() == 0                                   # the guest halted: exit 0
    console = "\n".join(line for _, line in tv.lines)
    assert console == "bZ", console
    records = [json.loads(ln) for ln in session.read_text().splitlines()]
    inputs = [(x["kind"], x["data"]) for x in records if x["t"] == "input"]
    assert ("reg", {"name": "eip", "value": LOOP_END}) in inputs           # c ADDR
    assert ("reg", {"name": "eip", "value": B}) in inputs                  # s ADDR and jump
    assert ("seg", {"name": "fs", "selector": 0x18}) in inputs
    assert not any(k == "seg" and d["selector"] == 0x40 for k, d in inputs)  # refused: not recorded
    assert ("mem", {"addr": MARK, "bytes": "5a"}) in inputs
    r = _replay(session, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "bZ\n"
    # each kind of input matters: without it the replay diverges
    for kind in ("seg", "reg", "mem"):
        assert _replay(session, tmp_path, drop=kind).returncode == 1, kind


def test_inputs_in_memory_go_through_the_recorder_and_replay(tmp_path):
    """The same inputs from the session in memory, replayed in process."""
    path = tmp_path / "m.jsonl"
    g = Gdb(cmdline="seed=5 fixed")
    rec = Recorder(str(path), g.monitor)
    g.monitor.recorder = rec
    cpu = g.guest.vcpu
    g.ask("vCont;c")
    for _ in range(3):                                   # into the kernel: its own GDT is loaded
        g.monitor.run(20_000)
    g.session.receive(b"\x03")
    fs, cs = ALL.index("fs"), ALL.index("cs")
    assert g.ask(f"P{fs:x}=20000000") == b"OK"           # user data (DPL 3): loadable at CPL 0
    assert cpu.seg_sel[4] == 0x20 and reg(g, "fs") == 0x20
    assert g.ask(f"P{fs:x}=30000000") == b"E0e"          # beyond the GDT
    assert g.ask(f"P{fs:x}=28000000") == b"E0e"          # the TSS: a system descriptor
    assert g.ask(f"P{cs:x}=18000000") == b"E0e"          # CS sets CPL: refused in protected mode
    assert g.ask(f"P{ALL.index('ss'):x}=00000000") == b"E0e"   # a null SS
    assert g.ask(f"P{fs:x}=00000000") == b"OK" and cpu.seg_sel[4] == 0
    assert g.ask(f"P{ALL.index('cr2'):x}=efbeadde") == b"OK" and cpu.cr2 == 0xDEADBEEF
    here = cpu.eip
    assert g.ask(f"s{here:x}") .startswith(b"T05")        # s ADDR at the same place: still an input
    assert g.ask("Z0,{:x},1".format(here)) == b"OK"
    assert g.ask(f"c{here:x}") is None
    g.run_until_stop()
    rec.checkpoint()
    rec.close()
    kinds = [(r["kind"], r["data"].get("name")) for r in map(json.loads, path.read_text().splitlines())
             if r["t"] == "input"]
    assert kinds == [("seg", "fs"), ("seg", "fs"), ("reg", "cr2"), ("reg", "eip"), ("reg", "eip")]
    head, records = load(str(path))
    from tvmm.monitor.record import specs_of
    again = Monitor.with_guests(specs_of(head))
    assert sum(replay(again, records).values()) >= 1
    assert again.guests[0].vcpu.cr2 == 0xDEADBEEF and again.guests[0].vcpu.eip == cpu.eip


def test_a_rejected_input_changes_and_records_nothing():
    g = Gdb()
    from tvmm.monitor.record import InputRejected
    seen = []
    g.guest.recorder = type("R", (), {"input": lambda self, guest, kind, data: seen.append(kind)})()
    before = list(g.guest.vcpu.regs)
    with pytest.raises(InputRejected):                   # all or none: eax would be fine, ss is not
        g.guest.apply_inputs([("reg", {"name": "eax", "value": 1}), ("seg", {"name": "ss", "selector": 0})])
    assert seen == [] and g.guest.vcpu.regs == before
    with pytest.raises(InputRejected):
        apply_input(g.guest, "mem", {"addr": 0xDEAD0000, "bytes": "00"})
    with pytest.raises(InputRejected):
        apply_input(g.guest, "reg", {"name": "eax", "value": 1 << 40})
    # G: the registers that change, all or none
    regs = bytearray(bytes.fromhex(g.ask("g").decode()))
    regs[0:4] = struct.pack("<I", 0x55AA55AA)
    regs[11 * 4:12 * 4] = struct.pack("<I", 0)           # a null SS: refused, so EAX is not written either
    assert g.ask("G" + regs.hex()) == b"E0e" and g.guest.vcpu.regs[0] == before[0]
    regs[11 * 4:12 * 4] = struct.pack("<I", g.guest.vcpu.seg_sel[2])
    assert g.ask("G" + regs.hex()) == b"OK" and g.guest.vcpu.regs[0] == 0x55AA55AA
    assert seen == ["reg"]


# -- item 7: watchpoints nothing could honour ---------------------------------------------------------
def test_watchpoints_nothing_could_honour_are_refused_in_memory():
    g = Gdb()
    for bad in ("Z2,0,ffffffffff", "Z2,0,fffffffff", "Z2,0,100000000", "Z2,ffffffff,2", "Z2,0,0",
                "Z3,100000000,4", "Z2,0,1000001", "Z0,100000000,1"):
        assert g.ask(bad).startswith(b"E"), bad
    assert g.ask("Z2,0,1000000") == b"OK"                 # 16 MiB: slow pages, but honoured
    assert g.ask("Z2,1000000,1000") == b"E0e"             # ... and that is all there is in total
    assert g.ask("z2,0,1000000") == b"OK" and g.ask("Z2,fffffffc,4") == b"OK"
    assert len(g.guest.vcpu.watch_vpns) <= 4096


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_huge_watchpoints_from_gdb_get_an_error_reply_and_cost_nothing(tmp_path):
    tv = Tvmm("--wait-gdb", "--timeout", "60", "--guest", f"name=f,kernel={FLAKY},cmdline=seed=5")
    time.sleep(0.5)
    before = _rss_kb(tv.proc.pid)
    r = gdb(f"""
run("target remote 127.0.0.1:{tv.ports['f']}")
for packet in ("Z2,0,ffffffffff", "Z2,0,fffffffff", "Z4,10,ffffffff"):
    out = run("maint packet " + packet)
    check('received: "E' in out, packet + ": " + out)
check("ticks" in run("info symbol &ticks"), "still attached")
out = run("watch ticks")
check("Hardware watchpoint" in out, "an ordinary watchpoint still works: " + out)
run("continue")
check(gdb.selected_frame().name() == "timer_interrupt", "it triggers")
run("delete")
run("detach")
""", tmp_path, FLAKY)
    assert "FAILURES []" in r.stdout, r.stdout + r.stderr
    grown = _rss_kb(tv.proc.pid) - before
    tv.proc.kill()
    tv.finish()
    assert grown < 100_000, f"the stub grew by {grown} KiB"


# -- item 7: a range step over the whole address space does not stall the sibling -----------------
def test_range_step_over_everything_runs_in_slices_beside_a_sibling(tmp_path):
    tv = Tvmm("--timeout", "90", "--guest", f"name=a,kernel={ticker(tmp_path, 'a')}",
              "--guest", f"name=b,kernel={ticker(tmp_path, 'b')}")
    loop, after = ENTRY + 0x10, ENTRY + 0x12             # ticker: `loop $`, then `jmp L`
    r = gdb(f"""
run("set remotetimeout 60")
run("target remote 127.0.0.1:{tv.ports['a']}")
run("set $pc = {loop:#x}")
run("set $ecx = 40000")                                  # 40000 single steps to leave the loop
run("maint packet Z0,{after:x},1")
print("RANGE_FROM", time.time())
out = run("maint packet vCont;r0,ffffffff")
print("RANGE_TO", time.time())
check("T05" in out and "swbreak" in out, "stopped at the breakpoint after the loop: " + out)
run("maint flush register-cache")
check(int(gdb.parse_and_eval("$pc")) == {after}, "at the breakpoint")
check(int(gdb.parse_and_eval("$ecx")) == 0, "every iteration was stepped")
run("maint packet z0,{after:x},1")
run("detach")
""", tmp_path)
    assert "FAILURES []" in r.stdout, r.stdout + r.stderr
    t0 = float(re.search(r"RANGE_FROM ([\d.]+)", r.stdout).group(1))
    t1 = float(re.search(r"RANGE_TO ([\d.]+)", r.stdout).group(1))
    time.sleep(0.5)
    tv.proc.kill()
    tv.finish()
    assert t1 - t0 > 0.3                                   # long enough to matter
    during = [line for t, line in tv.lines if t0 < t < t1]
    assert sum(line.startswith("b| ") for line in during) >= 3, (t1 - t0, during[:5])
    assert not any(line.startswith("a| ") for line in during)    # a was being stepped, not run


def test_interrupt_ends_a_range_step_and_a_continue_replaces_it():
    g = Gdb()
    start = g.guest.vcpu.eip
    assert g.ask("vCont;r0,ffffffff") is None            # in slices: answered later
    assert g.session.poll() == b"" and g.session.job is not None
    icount = g.guest.icount
    assert icount > 1
    assert g.replies(g.session.receive(b"\x03")) == [b"T02thread:01;"]
    assert g.session.job is None and g.guest.icount == icount and g.guest.vcpu.eip != start
    assert g.session.poll() == b""                       # exactly one stop reply
    assert g.ask("vCont;r0,ffffffff") is None
    assert g.ask("c") is None and g.session.job is None and g.guest.runnable
    assert g.replies(g.session.receive(b"\x03")) == [b"T02thread:01;"]


# -- item 7: a halted guest is a target ----------------------------------------------------------------
def test_halted_guest_is_reported_stopped_in_memory(tmp_path):
    from tests.monitor.kit import boot
    monitor, guest = boot(tmp_path, b"\xfa\xf4")
    monitor.run(100)
    assert guest.state == "halted"
    from tvmm.gdbstub.session import Session
    from tvmm.gdbstub.target import GuestTarget
    from tvmm.gdbstub.codec import Decoder, Packet, encode
    s = Session(GuestTarget(guest))
    ask = lambda p: [e.payload for e in Decoder().feed(s.receive(encode(p))) if isinstance(e, Packet)][0]
    assert ask("?") == b"T05thread:01;"
    assert ask("vCont;c") == b"T05thread:01;" and ask("s") == b"T05thread:01;"
    assert ask(f"m{ENTRY:x},2") == b"faf4"


def test_gdb_attaches_to_a_halted_guest(tmp_path):
    tv = Tvmm("--timeout", "60", "--guest", f"name=h,kernel={halter(tmp_path)}",
              "--guest", f"name=t,kernel={ticker(tmp_path, 't')}")
    deadline = time.monotonic() + 20
    while not any(line == "h| h" for _, line in tv.lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    r = gdb(f"""
run("target remote 127.0.0.1:{tv.ports['h']}")
check(int(gdb.parse_and_eval("$pc")) == {ENTRY + 13}, "after the hlt")
check(bytes(gdb.selected_inferior().read_memory({ENTRY + 11}, 2)) == b"\\xfa\\xf4", "memory readable")
check(int(gdb.parse_and_eval("$eflags")) & 0x200 == 0, "interrupts off")
check("halted" in run("monitor info"), "monitor info: halted")
out = run("stepi")
check(int(gdb.parse_and_eval("$pc")) == {ENTRY + 13}, "a step of a halted guest stays")
run("detach")
""", tmp_path)
    tv.proc.kill()
    tv.finish()
    assert "FAILURES []" in r.stdout, r.stdout + r.stderr
    assert "not running" not in r.stderr + r.stdout
