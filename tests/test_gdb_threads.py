"""vCPUs are threads: the GDB stub against multiprocessor guests.

In memory (packets straight into a ``Session``): the thread list and each
thread's state, ``Hg``/``Hc``, ``thread:`` in stop replies (and the
selection following it), ``vCont`` stepping one vCPU while the others stay
put, range steps of one vCPU, breakpoints hit by either vCPU, memory through
the selected vCPU, the recorded ``step`` inputs replaying exactly, reverse
stepping over them, and a guest stopped by its debugger with all its vCPUs
while its sibling runs on.  One vCPU behaves as it always did.  Then real
gdb: ``info threads``, ``thread 2``, ``stepi`` of one thread, a sibling
running meanwhile."""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from tvmm.gdbstub.codec import Decoder, Packet, encode
from tvmm.gdbstub.session import Session
from tvmm.gdbstub.target import ALL, GuestTarget
from tvmm.guestspec import GuestSpec
from tvmm.monitor.vmm import Monitor

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "samples" / "build"
SMPRACE, MULTITASK, FLAKY = BUILD / "smprace.elf", BUILD / "multitask.elf", BUILD / "flaky.elf"
FOREVER = "iters=100000000 fixed"              # smprace: both CPUs loop (correctly) for a long time
EIP, EAX = ALL.index("eip"), ALL.index("eax")

needs_smprace = pytest.mark.skipif(not SMPRACE.exists(), reason="samples/build/smprace.elf is not built")


def symbol(elf: Path, name: str) -> int:
    with open(elf, "rb") as f:
        return ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)[0]["st_value"]


class Gdb:
    """Plays gdb's side in memory, against one guest (and maybe a sibling)."""

    def __init__(self, kernel: Path, cmdline: str = "", cpus: int = 2, sibling: bool = False, timeline=False):
        specs = [GuestSpec(name="smp", kernel=str(kernel), cmdline=cmdline, mem=16 << 20, cpus=cpus)]
        if sibling:
            specs.append(GuestSpec(name="sib", kernel=str(FLAKY), cmdline="seed=5 fixed", mem=8 << 20))
        self.monitor = Monitor(Monitor.host_size_for(specs))
        self.guest = self.monitor.add_guest(specs[0])
        self.sibling = self.monitor.add_guest(specs[1]) if sibling else None
        self.decoder = Decoder()
        self.timeline = timeline
        self.attach()

    def attach(self) -> None:
        self.guest.pause("stopped by gdb")
        if self.timeline and self.guest.timeline is None:
            from tvmm.monitor.timeline import Timeline
            self.guest.timeline = Timeline(self.guest, every=20_000)
        self.session = Session(GuestTarget(self.guest, self.guest.timeline))

    def replies(self, out: bytes) -> list[bytes]:
        return [e.payload for e in self.decoder.feed(out) if isinstance(e, Packet)]

    def ask(self, payload) -> bytes | None:
        got = self.replies(self.session.receive(encode(payload)))
        return got[0] if got else None

    def run_until_stop(self, limit=200) -> bytes:
        for _ in range(limit):
            self.monitor.run(20_000)
            got = self.replies(self.session.poll())
            if got:
                return got[0]
        raise AssertionError("guest did not stop")

    def interrupt(self) -> bytes:
        return self.replies(self.session.receive(b"\x03"))[0]

    def reg(self, name: str) -> int:
        return struct.unpack("<I", bytes.fromhex(self.ask(f"p{ALL.index(name):x}").decode()))[0]

    def monitor_cmd(self, text: str) -> str:
        return bytes.fromhex(self.ask("qRcmd," + text.encode().hex()).decode()).decode()


def cpu_state(cpu) -> tuple:
    return (tuple(cpu.regs), cpu.eip, cpu.get_eflags(), tuple(cpu.seg_sel), cpu.icount, cpu.halted)


def both_running(kernel=SMPRACE, **kw) -> Gdb:
    """smprace with both CPUs in their loops (the AP started), stopped by gdb."""
    g = Gdb(kernel, FOREVER, **kw)
    g.guest.resume()
    loop = symbol(SMPRACE, "cpu_loop")
    for _ in range(100):
        g.monitor.run(50_000)
        if all(not c.wait_sipi for c in g.guest.vcpus) and g.guest.vcpus[1].icount > 20_000:
            break
    assert g.guest.state == "running" and all(not c.halted for c in g.guest.vcpus), g.guest.reason
    assert g.guest.vcpus[1].icount > 20_000 and loop
    g.attach()
    return g


# -- one vCPU: nothing changes -----------------------------------------------------------------
def test_one_vcpu_is_one_thread_as_before():
    g = Gdb(FLAKY, "seed=5", cpus=1)
    assert g.ask("qfThreadInfo") == b"m01" and g.ask("qsThreadInfo") == b"l" and g.ask("qC") == b"QC01"
    assert bytes.fromhex(g.ask("qThreadExtraInfo,1").decode()) == b"guest smp (paused)"
    assert g.ask("T1") == b"OK" and g.ask("T0") == b"OK" and g.ask("T2") == b"E01"
    assert g.ask("Hg0") == b"OK" and g.ask("Hc-1") == b"OK" and g.ask("Hg1") == b"OK" and g.ask("Hc1") == b"OK"
    assert g.ask("Hg2") == b"E01" and g.ask("Hc2") == b"E01"          # no such thread
    seen = []
    g.guest.recorder = type("R", (), {"input": lambda self, guest, kind, data: seen.append((kind, data))})()
    eip = g.guest.vcpu.eip
    assert g.ask("vCont;s:1;c") == b"T05thread:01;" and g.guest.vcpu.eip != eip and g.guest.icount == 1
    assert g.ask("s") == b"T05thread:01;" and g.guest.icount == 2
    assert g.ask("P0=78563412") == b"OK"
    assert seen == [("reg", {"name": "eax", "value": 0x12345678})]     # no "vcpu", no "step" input
    assert "CPU#" not in g.monitor_cmd("info")


# -- an application processor waiting for its STARTUP IPI ------------------------------------------
def test_an_ap_waiting_for_sipi_is_a_thread_that_does_not_move():
    g = Gdb(MULTITASK)
    assert g.ask("qfThreadInfo") == b"m01,02" and g.ask("qsThreadInfo") == b"l"
    info = lambda n: bytes.fromhex(g.ask(f"qThreadExtraInfo,{n:x}").decode()).decode()
    assert info(1) == "CPU#0 running" and info(2) == "CPU#1 waiting for SIPI"
    assert g.ask("qThreadExtraInfo,3") == b"E01" and g.ask("T2") == b"OK" and g.ask("T3") == b"E01"
    bsp, ap = g.guest.vcpus
    assert g.ask("Hg2") == b"OK" and g.ask("qC") == b"QC02"
    assert g.reg("eip") == ap.eip and g.reg("cs") == ap.seg_sel[1]     # the AP's reset state
    assert g.ask("Hg1") == b"OK" and g.reg("eip") == bsp.eip != ap.eip
    before = cpu_state(bsp), cpu_state(ap)
    assert g.ask("vCont;s:2;c") == b"T05thread:02;"                     # stepping it: it cannot move
    assert (cpu_state(bsp), cpu_state(ap)) == before
    assert g.ask("qC") == b"QC02" and g.reg("eip") == ap.eip            # the selection followed the stop
    assert g.ask("vCont;s:1;c") == b"T05thread:01;"
    assert cpu_state(ap) == before[1] and bsp.icount == 1 and g.reg("eip") == bsp.eip
    out = g.monitor_cmd("info")
    assert f"CPU#0 (thread 1): running, EIP {bsp.eip:#010x}" in out
    assert f"CPU#1 (thread 2): waiting for SIPI, EIP {ap.eip:#010x}" in out


# -- two running vCPUs ---------------------------------------------------------------------------------
@needs_smprace
def test_registers_follow_hg_and_a_step_of_one_thread_leaves_the_other_put():
    g = both_running()
    bsp, ap = g.guest.vcpus
    info = lambda n: bytes.fromhex(g.ask(f"qThreadExtraInfo,{n:x}").decode()).decode()
    assert info(1) == "CPU#0 running" and info(2) == "CPU#1 running"
    for n, cpu in ((1, bsp), (2, ap)):
        assert g.ask(f"Hg{n}") == b"OK"
        regs = bytes.fromhex(g.ask("g").decode())
        assert struct.unpack_from("<9I", regs) == (*cpu.regs, cpu.eip)
    seen = []
    g.guest.recorder = type("R", (), {"input": lambda self, guest, kind, data: seen.append((kind, data))})()
    # stepi of thread 2 with scheduler locking off (gdb's s:2;c) and on (s:2)
    for packet in ("vCont;s:2;c", "vCont;s:2"):
        before_bsp, ap_icount, total = cpu_state(bsp), ap.icount, g.guest.icount
        assert g.ask(packet) == b"T05thread:02;"
        assert cpu_state(bsp) == before_bsp and ap.icount == ap_icount + 1 and g.guest.icount == total + 1
        assert g.ask("qC") == b"QC02" and g.reg("eip") == ap.eip
    assert seen == [("step", {"vcpu": 1})] * 2                            # recorded: it changes the interleaving
    # legacy s: the Hc thread alone; Hc0 (any): whichever the schedule picks
    before_ap = cpu_state(ap)
    assert g.ask("Hc1") == b"OK" and g.ask("s") == b"T05thread:01;" and cpu_state(ap) == before_ap
    assert g.ask("qC") == b"QC01"
    assert g.ask("Hc0") == b"OK"
    total = g.guest.icount
    reply = g.ask("s")
    assert reply == f"T05thread:{g.guest.pc.running.index + 1:02x};".encode() and g.guest.icount == total + 1
    # register writes go to the selected vCPU, recorded with it
    seen.clear()
    eax0 = bsp.regs[0]
    assert g.ask("Hg2") == b"OK" and g.ask(f"P{EAX:x}=efbeadde") == b"OK"
    assert ap.regs[0] == 0xDEADBEEF and bsp.regs[0] == eax0
    assert seen == [("reg", {"name": "eax", "value": 0xDEADBEEF, "vcpu": 1})]
    # a thread that does not exist
    assert g.ask("Hg3") == b"E01" and g.ask("Hc3") == b"E01" and g.ask("T3") == b"E01"
    assert g.ask("vCont;s:3") == b"E01"                                 # no action for a thread of ours


@needs_smprace
def test_breakpoints_stop_the_vcpu_that_reaches_them_and_name_it():
    g = both_running()
    work_on = symbol(SMPRACE, "work_on")
    assert g.ask(f"Z0,{work_on:x},1") == b"OK"
    threads = set()
    for _ in range(8):
        assert g.ask("vCont;c") is None
        reply = g.run_until_stop()
        m = re.fullmatch(rb"T05thread:(\w\w);swbreak:;", reply)
        assert m, reply
        n = int(m.group(1), 16)
        cpu = g.guest.vcpus[n - 1]
        assert cpu is g.guest.pc.running and cpu.eip == work_on
        assert g.ask("qC") == f"QC{n:02x}".encode() and g.reg("eip") == work_on   # the selection followed
        threads.add(n)
        # the other vCPU, stopped with it, is elsewhere: stepping this one runs it off the breakpoint
        assert g.ask(f"vCont;s:{n:x};c") == f"T05thread:{n:02x};".encode() and cpu.eip != work_on
    assert threads == {1, 2}                                            # each vCPU hit it
    assert g.ask(f"z0,{work_on:x},1") == b"OK" and not g.guest.vcpus[1].breakpoints


@needs_smprace
def test_a_range_step_runs_one_vcpu_alone_until_interrupted():
    g = both_running()
    bsp, ap = g.guest.vcpus
    before, ap_icount = cpu_state(bsp), ap.icount
    assert g.ask("vCont;r0,ffffffff:2") is None                         # in slices, answered later
    for _ in range(3):
        g.monitor.run(20_000)
        assert g.session.poll() == b""
    assert g.interrupt() == b"T02thread:02;"
    assert cpu_state(bsp) == before and ap.icount > ap_icount + 100
    # a range that the first step leaves: answered at once
    eip = ap.eip
    reply = g.ask(f"vCont;r{eip:x},{eip + 1:x}:2")
    assert reply == b"T05thread:02;" and cpu_state(bsp) == before
    # with ";c" (scheduler locking off) the other vCPUs run meanwhile, as scheduled
    bsp_icount, ap_icount = bsp.icount, ap.icount
    assert g.ask("vCont;r0,ffffffff:2;c") is None
    for _ in range(500):                     # a poll steps for 20 ms of wall time: a loaded machine needs more
        g.monitor.run(20_000)
        g.session.poll()
        if bsp.icount > bsp_icount + 100 and ap.icount > ap_icount + 100:
            break
    g.interrupt()
    assert bsp.icount > bsp_icount + 100 and ap.icount > ap_icount + 100
    before = cpu_state(bsp)
    # Hg names the vCPU of a range step that names none
    assert g.ask("Hg1") == b"OK"
    eip, ap_state = bsp.eip, cpu_state(ap)
    assert g.ask(f"vCont;r{eip:x},{eip + 1:x}") == b"T05thread:01;" and cpu_state(ap) == ap_state


@needs_smprace
def test_memory_goes_through_the_selected_vcpu_and_writes_are_recorded_physically():
    g = both_running()
    pool = symbol(SMPRACE, "pool")
    seen = []
    g.guest.recorder = type("R", (), {"input": lambda self, guest, kind, data: seen.append((kind, data))})()
    assert g.ask("Hg2") == b"OK"
    assert g.ask(f"m{pool:x},4") == g.guest.gmem.read_bytes(pool, 4).hex().encode()
    assert g.ask(f"M{pool:x},4:78563412") == b"OK"
    assert g.guest.gmem.read_bytes(pool, 4) == bytes.fromhex("78563412")
    # vCPU 1's translation, applied by guest-physical address (the mem input translates through vCPU 0)
    assert seen == [("mem", {"addr": pool, "bytes": "78563412", "physical": True})]
    assert g.ask("M0,1:00") == b"E0e" and len(seen) == 1                # page 0 is unmapped: nothing written
    seen.clear()
    assert g.ask("Hg1") == b"OK" and g.ask(f"M{pool:x},4:00000000") == b"OK"
    assert seen == [("mem", {"addr": pool, "bytes": "00000000"})]      # vCPU 0: as ever


@needs_smprace
def test_steps_of_one_vcpu_replay_exactly(tmp_path):
    from tvmm.monitor.record import Recorder, load, regs_digest, replay, specs_of
    path = tmp_path / "smp.jsonl"
    g = Gdb(SMPRACE, FOREVER)
    rec = Recorder(str(path), g.monitor)
    g.monitor.recorder = rec
    g.guest.resume()
    for _ in range(30):
        g.monitor.run(50_000)
        if not g.guest.vcpus[1].wait_sipi and g.guest.vcpus[1].icount > 20_000:
            break
    g.attach()
    for _ in range(5):
        assert g.ask("vCont;s:2;c") == b"T05thread:02;"
    assert g.ask("Hg2") == b"OK" and g.ask(f"P{EAX:x}=44332211") == b"OK"
    for _ in range(3):
        assert g.ask("vCont;s:1;c") == b"T05thread:01;"
    assert g.ask("vCont;c") is None
    g.monitor.run(100_000)
    g.interrupt()
    want = regs_digest(g.guest), g.guest.icount
    rec.checkpoint()
    rec.close()
    kinds = [(r["kind"], r["data"]) for r in map(json.loads, path.read_text().splitlines()) if r["t"] == "input"]
    assert kinds == [("step", {"vcpu": 1})] * 5 + [("reg", {"name": "eax", "value": 0x11223344, "vcpu": 1})] \
        + [("step", {"vcpu": 0})] * 3
    head, records = load(str(path))
    again = Monitor.with_guests(specs_of(head))
    replay(again, records)
    assert (regs_digest(again.guests[0]), again.guests[0].icount) == want


@needs_smprace
def test_reverse_step_goes_back_over_a_step_of_one_vcpu():
    g = both_running(timeline=True)
    assert "ReverseStep+" in g.ask("qSupported").decode()
    bsp, ap = g.guest.vcpus
    g.guest.timeline.note()
    start = cpu_state(bsp), cpu_state(ap), g.guest.icount
    for n in (2, 2, 1):
        assert g.ask(f"vCont;s:{n};c") == f"T05thread:{n:02x};".encode()
        g.guest.timeline.note()
    for _ in range(3):
        assert g.ask("bs").startswith(b"T05thread:0")
    bsp, ap = g.guest.vcpus                                               # (a seek may rebuild them)
    assert (cpu_state(bsp), cpu_state(ap), g.guest.icount) == start


@needs_smprace
def test_stopping_the_guest_stops_all_its_vcpus_and_not_its_sibling():
    g = both_running(sibling=True)
    g.sibling.resume()
    assert g.ask("vCont;c") is None
    g.monitor.run(100_000)
    assert g.interrupt().startswith(b"T02thread:0")
    assert g.guest.state == "paused"
    before = [cpu_state(c) for c in g.guest.vcpus]
    sib = g.sibling.icount
    for _ in range(5):
        g.monitor.run(20_000)
        assert g.session.poll() == b""
    assert [cpu_state(c) for c in g.guest.vcpus] == before              # neither vCPU moved
    assert g.sibling.icount > sib + 50_000                                # the sibling ran on
    # a step of one thread moves that vCPU only, and never the sibling
    sib = g.sibling.icount
    assert g.ask("vCont;s:2;c") == b"T05thread:02;"
    assert cpu_state(g.guest.vcpus[0]) == before[0] and g.sibling.icount == sib
    out = g.monitor_cmd("info")
    assert "CPU#0 (thread 1): running" in out and "CPU#1 (thread 2): running" in out and "EIP" in out


@needs_smprace
def test_halted_vcpus_are_threads_that_can_be_inspected():
    g = Gdb(SMPRACE, "iters=20 fixed")
    g.guest.resume()
    for _ in range(100):
        g.monitor.run(50_000)
        if g.guest.state != "running":
            break
    assert g.guest.state == "halted" and "smprace: ok" in g.guest.console.decode()
    g.session = Session(GuestTarget(g.guest))
    assert g.ask("?").startswith(b"T05thread:0")
    info = lambda n: bytes.fromhex(g.ask(f"qThreadExtraInfo,{n:x}").decode()).decode()
    assert info(1) == "CPU#0 halted" and info(2) == "CPU#1 halted"
    ap = cpu_state(g.guest.vcpus[1])
    assert g.ask("vCont;s:2;c") == b"T05thread:02;" and cpu_state(g.guest.vcpus[1]) == ap
    assert g.ask("Hg2") == b"OK" and g.reg("eip") == g.guest.vcpus[1].eip
    assert "CPU#1 (thread 2): halted" in g.monitor_cmd("info")


@needs_smprace
def test_a_continue_of_one_thread_runs_the_whole_guest():
    """``vCont;c:2`` (gdb's continue with scheduler locking on) cannot run
    one vCPU alone: the guest runs, as for ``vCont;c``."""
    g = both_running()
    before = [c.icount for c in g.guest.vcpus]
    assert g.ask("vCont;c:2") is None
    g.monitor.run(100_000)
    assert g.interrupt().startswith(b"T02thread:0")
    assert all(c.icount > b + 10_000 for c, b in zip(g.guest.vcpus, before))


@needs_smprace
def test_fuzz_thread_packets_in_memory():
    """Random packets, thread-heavy, against two running vCPUs and a
    sibling: one reply each, never an internal error, the sibling runs."""
    import random

    from tests.gdbstub.test_gdb_fuzz import Packets
    g = both_running(sibling=True)
    g.sibling.resume()
    rng, gen = random.Random(1312), Packets(1312)
    tid = lambda: rng.choice(["0", "-1", "1", "2", "3", "ff", "", "x", "-2"])
    sib = g.sibling.icount
    for i in range(400):
        if rng.random() < 0.6:
            p = rng.choice([f"Hg{tid()}", f"Hc{tid()}", f"T{tid()}", f"qThreadExtraInfo,{tid()}", "qC",
                            "qfThreadInfo", "qsThreadInfo", "g", "p8", f"P0={rng.randrange(1 << 32):08x}",
                            f"vCont;s:{tid()}", f"vCont;s:{tid()};c", f"vCont;S05:{tid()};c", "s", "vCont;s",
                            f"vCont;r{rng.randrange(1 << 21):x},{rng.randrange(1 << 21):x}:{tid()};c",
                            f"vCont;c:{tid()}", "vCont;c", "?", f"m{rng.randrange(1 << 21):x},10",
                            f"M{rng.randrange(1 << 21):x},2:abcd", "qRcmd," + b"info".hex(), "bs"])
        else:
            p = gen.valid().decode("latin-1")
            if p in ("D", "k"):
                continue
        replies = g.replies(g.session.receive(encode(p)))
        if not replies and g.session.running:
            for _ in range(2):
                g.monitor.run(2_000)
                replies = g.replies(g.session.poll())
                if replies:
                    break
            else:
                replies = g.replies(g.session.receive(b"\x03"))
        assert len(replies) == 1 and replies[0] != b"E0f", (i, p, replies)
        g.monitor.run(1_000)
        if not g.guest.alive:
            g.guest.apply_input("reset")
            g.attach()
    assert g.sibling.icount > sib + 400 * 1_000


# -- real gdb -----------------------------------------------------------------------------------------------
@needs_smprace
@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed")
def test_real_gdb_threads_select_and_step_one_vcpu_while_a_sibling_runs(tmp_path):
    from tests.gdbstub.test_real_gdb import Tvmm, gdb, ticker
    tv = Tvmm("--guest", f"name=smp,kernel={SMPRACE},cpus=2,wait-gdb=yes,cmdline={FOREVER}",
              "--guest", f"name=sib,kernel={ticker(tmp_path, 'sib')}", "--timeout", "120")
    port = tv.ports["smp"]
    r = gdb(f"""
run("set remotelogfile {tmp_path / 'remote.log'}")
run("target remote 127.0.0.1:{port}")
threads = run("info threads")
check("CPU#1 waiting for SIPI" in threads, "held at power-on: the AP not started yet: " + threads)
run("break ap_main")
out = run("continue")                    # the BSP starts the AP, which stops first in ap_main
check("Switching to Thread 2" in out, "the AP's stop names its thread: " + out)
check(gdb.selected_thread().num == 2, "gdb switched to thread 2")
threads = run("info threads")
print("THREADS", threads)
check(len(gdb.selected_inferior().threads()) == 2, "two threads: " + threads)
check("CPU#0" in threads and "CPU#1" in threads, "the vCPUs named: " + threads)
run("delete")
time.sleep(0.2)
threading.Timer(1.0, lambda: gdb.post_event(lambda: gdb.execute("interrupt"))).start()
run("continue")                          # both in their loops now
def pc_of(n):
    run(f"thread {{n}}")
    return int(gdb.parse_and_eval("$pc"))
def regs_of(n):
    run(f"thread {{n}}")
    return run("info registers eax ecx edx ebx esp ebp esi edi eip eflags")
out = run("thread 2")
check("Switching to thread 2" in out, "thread 2: " + out)
check(gdb.selected_thread().num == 2, "thread 2 selected")
check(pc_of(1) != pc_of(2) or regs_of(1) != regs_of(2), "the threads are different vCPUs")
two = regs_of(2)
one_pc = pc_of(1)
for _ in range(3):
    run("stepi")
    check(gdb.selected_thread().num == 1, "stepi stays on thread 1")
check(pc_of(1) != one_pc, "thread 1 moved")
check(regs_of(2) == two, "thread 2 did not move: " + two + " vs " + regs_of(2))
run("thread 2")
two_pc = int(gdb.parse_and_eval("$pc"))
run("stepi")
check(gdb.selected_thread().num == 2, "stepi on thread 2 stays on thread 2")
check(int(gdb.parse_and_eval("$pc")) != two_pc, "thread 2 moved")
count = lambda text, name: int(text.split(name + ": ")[1].split()[1])
first = run("monitor guests")
time.sleep(1.0)
second = run("monitor guests")
check(count(first, "smp") == count(second, "smp"), "smp held with both vCPUs: " + first + second)
check(count(second, "sib") > count(first, "sib") + 100000, "the sibling ran on: " + first + second)
info = run("monitor info")
print("INFO", info)
check("CPU#1 (thread 2)" in info and "EIP" in info, "monitor info lists the vCPUs: " + info)
run("detach")
""", tmp_path, SMPRACE)
    log = (tmp_path / "remote.log").read_text(errors="replace") if (tmp_path / "remote.log").exists() else ""
    assert "FAILURES []" in r.stdout, r.stdout + r.stderr + log[-3000:]
    assert r.returncode == 0
    assert "Thread 2 hit Breakpoint 1, ap_main" in r.stdout
    tv.proc.kill()
    tv.finish()
