"""The session state machine driven in memory against a real guest: what
each packet does and answers, stops reported when the guest stops,
malformed packets answered with errors."""

from __future__ import annotations

import struct
from pathlib import Path

from elftools.elf.elffile import ELFFile

from tvmm.gdbstub.codec import Decoder, Packet, encode
from tvmm.gdbstub.session import Session
from tvmm.gdbstub.target import ALL, GuestTarget
from tvmm.guestspec import GuestSpec
from tvmm.monitor.vmm import Monitor

ROOT = Path(__file__).resolve().parents[2]
FLAKY = ROOT / "samples" / "build" / "flaky.elf"


def symbol(name: str) -> int:
    with open(FLAKY, "rb") as f:
        return ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)[0]["st_value"]


class Gdb:
    """Plays gdb's side in memory."""

    def __init__(self, cmdline="seed=5", **guests):
        specs = [GuestSpec(name="f", kernel=str(FLAKY), cmdline=cmdline, mem=16 << 20)]
        self.monitor = Monitor(Monitor.host_size_for(specs))
        self.guest = self.monitor.add_guest(specs[0])
        self.guest.pause("waiting for gdb")
        self.session = Session(GuestTarget(self.guest))
        self.decoder = Decoder()

    def replies(self, out: bytes) -> list[bytes]:
        return [e.payload for e in self.decoder.feed(out) if isinstance(e, Packet)]

    def ask(self, payload) -> bytes | None:
        got = self.replies(self.session.receive(encode(payload)))
        return got[0] if got else None

    def run_until_stop(self, limit=50):
        for _ in range(limit):
            self.monitor.run(20_000)
            got = self.replies(self.session.poll())
            if got:
                return got[0]
        raise AssertionError("guest did not stop")


def reg(g: Gdb, name: str) -> int:
    return struct.unpack("<I", bytes.fromhex(g.ask(f"p{ALL.index(name):x}").decode()))[0]


def test_handshake_advertises_only_what_is_implemented():
    g = Gdb()
    feats = g.ask("qSupported:multiprocess+;swbreak+;hwbreak+").decode().split(";")
    assert "qXfer:features:read+" in feats and "swbreak+" in feats and "QStartNoAckMode+" in feats
    assert not any(f.startswith("Reverse") for f in feats)          # no replay yet: not advertised
    assert g.ask("vMustReplyEmpty") == b""
    assert g.ask("qAttached") == b"1" and g.ask("qC") == b"QC01" and g.ask("qfThreadInfo") == b"m01"
    assert g.ask("?") == b"T02thread:01;"                            # held by --wait-gdb
    xml = b""
    while True:
        chunk = g.ask(f"qXfer:features:read:target.xml:{len(xml):x},200")
        xml += chunk[1:]
        if chunk[:1] == b"l":
            break
    assert b"org.gnu.gdb.i386.core" in xml and b'name="shadow_cr3"' in xml and xml.endswith(b"</target>\n")


def test_registers_read_and_write():
    g = Gdb()
    regs = bytes.fromhex(g.ask("g").decode())
    assert struct.unpack_from("<I", regs, 8 * 4)[0] == g.guest.vcpu.eip == symbol("_start")
    assert struct.unpack_from("<I", regs, 0)[0] == 0x2BADB002                 # Multiboot magic in EAX
    assert g.ask(f"P0={struct.pack('<I', 0x12345678).hex()}") == b"OK"
    assert g.guest.vcpu.regs[0] == 0x12345678
    assert reg(g, "cr0") & 1 and reg(g, "shadow_cr3") == g.guest.shadow.root_hpa
    assert g.ask(f"P{ALL.index('shadow_cr3'):x}=00000000") == b"E0e"        # read-only
    assert g.ask("p999") == b"E0e"


def test_memory_through_the_guests_page_tables_and_errors_for_unmapped():
    g = Gdb()
    ticks = symbol("ticks")
    assert g.ask(f"m{ticks:x},4") == b"00000000"
    assert g.ask(f"M{ticks:x},4:2a000000") == b"OK"
    assert g.guest.gmem.read(ticks, 4) == 42
    assert g.ask(f"X{ticks:x},2:\x07\x00") == b"OK" and g.guest.gmem.read(ticks, 4) == 7
    assert g.ask(f"X{ticks:x},0:") == b"OK"
    assert g.ask("mdead0000,4") == b"E0e"                                    # beyond this guest's memory
    assert g.ask("mfee00000,4") == b"E0e"                                    # device memory: never read


def test_breakpoint_stops_only_there_and_reads_show_original_bytes():
    g = Gdb()
    push = symbol("list_push")
    before = g.ask(f"m{push:x},4")
    assert g.ask(f"Z0,{push:x},1") == b"OK"
    assert g.ask(f"m{push:x},4") == before                                 # not patched into memory
    assert g.ask("c") is None                                               # reply comes at the stop
    assert g.run_until_stop() == b"T05thread:01;swbreak:;"
    assert g.guest.vcpu.eip == push
    assert g.ask("s").startswith(b"T05") and g.guest.vcpu.eip != push        # steps off the breakpoint
    assert g.ask(f"z0,{push:x},1") == b"OK"


def test_write_watchpoint_reports_the_address():
    g = Gdb()
    ticks = symbol("ticks")
    assert g.ask(f"Z2,{ticks:x},4") == b"OK"
    g.ask("vCont;c")
    assert g.run_until_stop() == f"T05thread:01;watch:{ticks:x};".encode()
    assert g.guest.gmem.read(ticks, 4) == 1                                # after the write
    assert g.ask(f"z2,{ticks:x},4") == b"OK"


def test_read_and_access_watchpoints_name_their_kind():
    g = Gdb()
    head = symbol("head")
    assert g.ask(f"Z3,{head:x},4") == b"OK"                    # rwatch: the first read of head
    g.ask("c")
    assert g.run_until_stop() == f"T05thread:01;rwatch:{head:x};".encode()
    g.ask(f"z3,{head:x},4")
    assert g.ask(f"Z4,{head:x},4") == b"OK"                    # awatch: any access
    g.ask("c")
    assert g.run_until_stop() == f"T05thread:01;awatch:{head:x};".encode()


def test_range_step_and_interrupt():
    g = Gdb()
    start = g.guest.vcpu.eip
    reply = g.ask(f"vCont;r{start:x},{start + 5:x}")
    assert reply.startswith(b"T05") and not start <= g.guest.vcpu.eip < start + 5      # left at the first step
    g.ask("c")
    g.monitor.run(20_000)
    assert g.replies(g.session.receive(b"\x03")) == [b"T02thread:01;"]
    assert not g.guest.runnable


def test_malformed_and_unknown_packets_get_replies_not_crashes():
    g = Gdb()
    for bad in ("m", "mzz,4", "M10,4:zz", "Pzz", "Z9,0,1", "X10,5:ab", "vCont;q", "qRcmd,zz", "T"):
        reply = g.ask(bad)
        assert reply is not None and (reply.startswith(b"E") or reply == b""), (bad, reply)
    assert g.ask("qSomethingNew") == b""
    out = g.session.receive(b"$g#00")                                      # bad checksum: a nack
    assert out == b"-"


def test_no_ack_mode_and_retransmit_on_nack():
    g = Gdb()
    assert g.session.receive(encode("QStartNoAckMode")) == b"+" + encode("OK")
    assert not g.session.receive(encode("qC")).startswith(b"+")
    assert g.session.receive(b"-") == encode("QC01")


def test_monitor_commands():
    g = Gdb()
    def mon(cmd):
        return bytes.fromhex(g.ask("qRcmd," + cmd.encode().hex()).decode()).decode()
    assert "walk ADDR" in mon("help")
    g.ask("c")
    g.monitor.run(50_000)                                                  # paging is on by now
    g.session.receive(b"\x03")
    walk = mon(f"walk {symbol('ticks'):#x}")
    assert "PDE[0]" in walk and f"-> guest-physical {symbol('ticks'):#010x}" in walk
    assert "host-physical" in mon(f"shadow {symbol('kmain'):#x}")
    assert "io: out 0x3f8" in mon("events 500") and "instructions" in mon("info")
    assert "guest-physical" in mon("phys on") and g.session.target.physical
    assert "unknown monitor command" in mon("frobnicate")


def test_kill_resets_this_guest_only_and_detach_resumes():
    g = Gdb()
    g.ask(f"Z0,{symbol('list_push'):x},1")
    g.ask("c")
    g.run_until_stop()
    g.session.receive(encode("D"))
    assert g.guest.runnable and not g.guest.vcpu.breakpoints                # detached: runs on, no breakpoints
    g2 = Gdb()
    other = g2.monitor.add_guest(GuestSpec(name="other", kernel=str(FLAKY), cmdline="seed=1", mem=8 << 20))
    g2.guest.resume()
    g2.monitor.run(1000)
    g2.session.receive(encode("k"))
    assert g2.guest.icount == 0 and g2.guest.runnable                        # rebooted
    assert other.icount == 1000 and other.alive                             # its sibling untouched


def test_reverse_continue_stops_at_the_previous_watchpoint_hit():
    from tvmm.monitor.timeline import Timeline
    g = Gdb()
    g.guest.timeline = Timeline(g.guest, every=20_000)
    g.session = Session(GuestTarget(g.guest, g.guest.timeline))
    assert "ReverseContinue+" in g.ask("qSupported").decode()
    ticks = symbol("ticks")
    g.ask(f"Z2,{ticks:x},4")
    hits = []
    for _ in range(3):                                   # three timer ticks forward
        g.ask("c")
        g.run_until_stop()
        g.guest.timeline.note()
        hits.append((g.guest.icount, g.guest.gmem.read(ticks, 4)))
    assert [v for _, v in hits] == [1, 2, 3]
    # a reverse continue runs a history window per poll, answered like a continue
    assert g.ask("bc") is None
    assert g.run_until_stop() == f"T05thread:01;watch:{ticks:x};".encode()  # back to the second write
    assert (g.guest.icount, g.guest.gmem.read(ticks, 4)) == hits[1]
    assert g.ask("bc") is None
    assert g.run_until_stop().startswith(b"T05") and g.guest.icount == hits[0][0]
    assert g.ask("bc") is None
    assert g.run_until_stop() == b"T05thread:01;replaylog:begin;"      # nothing earlier: the beginning
