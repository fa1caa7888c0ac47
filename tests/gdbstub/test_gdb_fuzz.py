"""Fuzzing the GDB stub: random, mutated and malformed packets against a
running guest with a sibling beside it.  Fixed seeds, bounded counts, so CI
runs the same packets every time.

- in memory: ``IN_MEMORY`` frames straight into a ``Session`` — nothing may
  raise, every well-formed packet gets exactly one reply (a resume's comes
  at its stop or the 0x03 that ends it), no call may stall the machine, and
  the sibling keeps running;
- over the wire: ``OVER_THE_WIRE`` frames into ``tvmm run --headless --gdb``
  — the connection is never dropped (only ``D`` and ``k`` end it, as they
  should), then real gdb still attaches, and the sibling still runs.

Each test prints its counts (``pytest -s`` shows them).  ``E0f`` — the
reply to a packet that raised inside the stub — fails either test."""

from __future__ import annotations

import random
import select
import shutil
import socket
import time
from collections import Counter

import pytest

from tests.gdbstub.test_real_gdb import FLAKY, Tvmm, gdb, ticker
from tests.monitor.kit import ENTRY
from tvmm.gdbstub import codec
from tvmm.gdbstub.session import Session
from tvmm.gdbstub.target import GuestTarget
from tvmm.guestspec import GuestSpec
from tvmm.monitor.vmm import Monitor

SEED = 20240612
IN_MEMORY = 1500
OVER_THE_WIRE = 250
SLOW_CALL = 2.0                   # seconds: no single receive/poll may take this long

_MONITOR_CMDS = ("help", "walk {a}", "shadow {a}", "events {n}", "phys on", "phys off", "info", "guests",
                 "walk", "events -{n}", "frobnicate {a}", "walk 0x{a}", "")


class Packets:
    """A packet generator: valid packets with interesting numbers, mutations
    of them, random payloads, and malformed framing."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.kinds: Counter = Counter()

    def num(self, bits: int = 32) -> str:
        r, rng = self.rng.random(), self.rng
        if r < 0.35:
            return rng.choice(["0", "1", "2", "4", "8", "ff", "fff", "1000", "ffff", "fffffff", "ffffffff",
                               "100000000", "ffffffffff", "fffffffff", "f" * 40, "-1", "0x10", " 1", "", "+1",
                               "1_0", "g"])
        if r < 0.6:
            return f"{rng.randrange(1 << bits):x}"
        return f"{rng.choice((ENTRY, 0x100000, 0x101000, 0x106000, 0x10b000, 0xb8000, 0x7000)) + rng.randrange(0x800):x}"

    def hexdata(self, n: int | None = None) -> str:
        n = self.rng.randrange(0, 40) if n is None else n
        return self.rng.randbytes(n).hex()

    def valid(self) -> bytes:
        rng, num = self.rng, self.num
        n = rng.randrange(0, 40)
        choices = [
            "?", "g", f"G{self.hexdata(rng.choice((64, 176, rng.randrange(200))))}", f"p{rng.randrange(0x30):x}",
            f"p{num()}", f"P{rng.randrange(0x30):x}={self.hexdata(rng.choice((4, 10, rng.randrange(12))))}",
            f"P{num()}={num()}", f"m{num()},{num()}", f"m{num()},{rng.randrange(0x2100):x}",
            f"M{num()},{n:x}:{self.hexdata(n)}", f"M{num()},{num()}:{self.hexdata()}",
            "c", f"c{num()}", "s", f"s{num()}", f"C{num(8)}", f"C05;{num()}", f"S{num(8)};{num()}",
            "vCont?", "vCont;c", "vCont;s:1", "vCont;s:1;c", f"vCont;C{num(8)}", f"vCont;S{num(8)}:{num()}",
            f"vCont;r{num()},{num()}", "vCont;r0,ffffffff", f"vCont;r{num()},{num()}:1;c", f"vCont;{num()}",
            f"Z{rng.randrange(6)},{num()},{num()}", f"z{rng.randrange(6)},{num()},{num()}",
            f"Z2,{num()},{rng.choice(('ffffffffff', 'fffffffff', '1000000', '1000001', '4'))}",
            "qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386",
            f"qXfer:features:read:target.xml:{num()},{num()}", f"qXfer:features:read:{num()}:0,ffb",
            "QStartNoAckMode", "qAttached", "qC", "qfThreadInfo", "qsThreadInfo", f"qThreadExtraInfo,{num()}",
            "Hg0", f"Hc{num()}", f"T{num()}", "vMustReplyEmpty", "qOffsets", "qSymbol::", "vKill;1",
            "qRcmd," + rng.choice(_MONITOR_CMDS).format(a=num(), n=rng.randrange(1 << 20)).encode().hex(),
            f"qRcmd,{self.hexdata()}", "bs", "bc", "!", "R00", "vFile:open:2f,0,0",
        ]
        text = rng.choice(choices)
        if rng.random() < 0.005:
            text = rng.choice(("D", "k"))            # detach / kill: the connection ends
        return text.encode("latin-1")

    def mutate(self, p: bytes) -> bytes:
        rng, p = self.rng, bytearray(p)
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(6)
            i = rng.randrange(len(p) + 1)
            if op == 0 and p:
                p[min(i, len(p) - 1)] ^= 1 << rng.randrange(8)
            elif op == 1:
                p[i:i] = bytes((rng.randrange(256),))
            elif op == 2:
                del p[i:i + rng.randrange(1, 6)]
            elif op == 3:
                p[i:i] = rng.choice((b",", b";", b":", b"=", b"-", b"ffffffffffffffff", b"\x00", b"}", b"*"))
            elif op == 4:
                p = p[:i]
            else:
                p += p[i:i + rng.randrange(1, 20)] * rng.randrange(1, 4)
        return bytes(p)

    def payload(self) -> tuple[str, bytes]:
        r = self.rng.random()
        if r < 0.55:
            return "valid", self.valid()
        if r < 0.85:
            return "mutated", self.mutate(self.valid())
        return "random", self.rng.randbytes(self.rng.randrange(0, 120))

    def frame(self) -> tuple[str, bytes, bool]:
        """(kind, bytes to send, well-formed?).  A well-formed frame carries
        a payload the codec decodes; malformed ones break the framing."""
        kind, p = self.payload()
        body = codec.escape(p)
        rng = self.rng
        if rng.random() < 0.12:
            bad = rng.randrange(5)
            kind = "malformed"
            if bad == 0:                                            # wrong checksum
                b2, cs = body, (codec.checksum(body) + 1) & 0xFF
            elif bad == 1:                                          # checksum digits that are not hex
                b2, cs = body, None
            elif bad == 2:                                          # an escape at the end
                b2, cs = body + b"}", -1
            elif bad == 3:                                          # run-length without a character / bad count
                b2, cs = rng.choice((b"*" + body, body + b"a*\x10", body + b"*")), -1
            else:                                                   # run-length that expands
                count = bytes((rng.choice([c for c in range(29, 127) if c not in b"#$"]),))
                b2, cs = (body[:1] or b"m") + b"*" + count + body[1:], -1
            if cs == -1:
                cs = codec.checksum(b2)
            frame = b"$" + b2 + b"#" + (b"zz" if cs is None else f"{cs:02x}".encode())
            try:
                good = cs is not None and cs == codec.checksum(b2) and codec.decode_body(b2) is not None
            except ValueError:
                good = False
            junk = bytes(b for b in rng.randbytes(rng.randrange(0, 8)) if b not in b"$#-+\x03}")
            self.kinds[kind] += 1
            return kind, junk + frame, good
        self.kinds[kind] += 1
        return kind, codec.encode(p), True


# -- in memory ---------------------------------------------------------------------------------------------
def test_fuzz_the_session_in_memory(tmp_path):
    specs = [GuestSpec(name="f", kernel=str(FLAKY), cmdline="seed=5 fixed", mem=16 << 20),
             GuestSpec(name="sib", kernel=str(ticker(tmp_path, "sib")), mem=8 << 20)]
    monitor = Monitor.with_guests(specs)
    guest, sibling = monitor.guests
    monitor.run(50_000)
    guest.pause("gdb")
    gen = Packets(SEED)
    stats: Counter = Counter()
    slowest = 0.0

    def call(fn, *args):
        nonlocal slowest
        t0 = time.perf_counter()
        out = fn(*args)
        slowest = max(slowest, time.perf_counter() - t0)
        return out

    session = Session(GuestTarget(guest))
    decoder = codec.Decoder()
    sibling_start = sibling.icount
    for i in range(IN_MEMORY):
        kind, frame, good = gen.frame()
        events = decoder.feed(call(session.receive, frame))
        replies = [e.payload for e in events if isinstance(e, codec.Packet)]
        if good is False:
            assert not replies, (frame, replies)
            assert session.noack or any(isinstance(e, codec.Nack) for e in events), frame
            stats["nack" if not session.noack else "ignored"] += 1
            continue
        if session.detached:                                   # D or k: a new connection
            stats["reconnects"] += 1
            session.detach()
            session, decoder = Session(GuestTarget(guest)), codec.Decoder()
            guest.pause("gdb")
            continue
        if not replies and session.running:                     # a resume: its stop reply comes later
            stats["resumed"] += 1
            for _ in range(3):
                monitor.run(1_000)
                replies = [e.payload for e in decoder.feed(call(session.poll)) if isinstance(e, codec.Packet)]
                if replies:
                    break
            else:
                stats["interrupted"] += 1
                replies = [e.payload for e in decoder.feed(call(session.receive, b"\x03"))
                           if isinstance(e, codec.Packet)]
        assert len(replies) == 1, (i, frame, replies)
        reply = replies[0]
        assert reply != b"E0f", (i, frame, "an internal error")
        stats["E" if reply[:1] == b"E" and len(reply) == 3 else "empty" if not reply else
              "stop" if reply[:1] in b"TWXS" and len(reply) < 64 else "other"] += 1
        monitor.run(1_000)                                      # the run loop goes on between packets
        if (not guest.alive and gen.rng.random() < 0.05) or i % 250 == 249:
            guest.apply_input("reset")          # (gdb would `run` again; and a guest fuzzed into garbage is slow)
    assert not session.running or session.receive(b"\x03")
    assert sibling.icount > sibling_start + IN_MEMORY * 500, "the sibling kept running"
    assert slowest < SLOW_CALL, f"a call took {slowest:.2f} s"
    print(f"\nin-memory fuzz: seed {SEED}, {IN_MEMORY} frames {dict(gen.kinds)}; replies {dict(stats)}; "
          f"slowest call {slowest * 1000:.0f} ms; sibling ran {sibling.icount - sibling_start} instructions")


# -- over the wire --------------------------------------------------------------------------------------
class Wire:
    """A raw client for one stub: frames out, replies in, reconnecting when
    a detach or kill ends the connection."""

    def __init__(self, port: int):
        self.port = port
        self.connect()

    def connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.decoder = codec.Decoder()
        self.noack = False
        self.pending: list = []
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def events(self, timeout: float) -> list:
        """Whatever arrives within ``timeout`` (at least one read if anything is there)."""
        if self.pending:
            out, self.pending = self.pending, []
            return out
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return []
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            return []
        return self.decoder.feed(data)

    def reply(self, timeout: float):
        """The next reply packet, a nack, or None (nothing within ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.closed:
            evs = self.events(deadline - time.monotonic())
            for i, e in enumerate(evs):
                if isinstance(e, (codec.Packet, codec.Nack)):
                    self.pending = evs[i + 1:] + self.pending
                    return e
        return None


@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed")
def test_fuzz_the_stub_over_the_wire_then_gdb_attaches_and_the_sibling_runs(tmp_path):
    tv = Tvmm("--timeout", "200", "--guest", f"name=f,kernel={FLAKY},cmdline=seed=5 fixed",
              "--guest", f"name=sib,kernel={ticker(tmp_path, 'sib')}")
    try:
        _fuzz_over_the_wire(tv, tmp_path)
    finally:
        if tv.proc.poll() is None:
            tv.proc.kill()
        tv.finish()


def _fuzz_over_the_wire(tv, tmp_path):
    gen = Packets(SEED + 1)
    wire = Wire(tv.ports["f"])
    stats: Counter = Counter()
    t_start = time.time()
    for i in range(OVER_THE_WIRE):
        kind, frame, good = gen.frame()
        wire.send(frame)
        if good is False:
            if not wire.noack:
                got = wire.reply(10)
                assert isinstance(got, codec.Nack), (i, frame, got)
                stats["nack"] += 1
            else:
                stats["ignored"] += 1
            continue
        payload = next((e.payload for e in codec.Decoder().feed(frame) if isinstance(e, codec.Packet)), b"")
        got = wire.reply(0.15)
        if got is None and not wire.closed:
            if payload[:1] == b"k":                             # no reply: the connection closes
                got = wire.reply(5)
            else:                                                # a resume: interrupt it
                stats["interrupted"] += 1
                wire.send(b"\x03")
                got = wire.reply(10)
        if wire.closed:
            assert payload[:1] in (b"D", b"k"), (i, frame, "the stub dropped the connection")
            stats["reconnects"] += 1
            time.sleep(0.05)
            wire.connect()
            continue
        assert isinstance(got, codec.Packet), (i, frame, got)
        reply = got.payload
        assert reply != b"E0f", (i, frame, "an internal error")
        if payload[:1] == b"D" and reply == b"OK":
            got = wire.reply(5)
            assert wire.closed, "detach closes the connection"
            stats["reconnects"] += 1
            wire.connect()
            continue
        if payload.startswith(b"QStartNoAckMode") and reply == b"OK":
            wire.noack = True
        stats["E" if reply[:1] == b"E" and len(reply) == 3 else "empty" if not reply else
              "stop" if reply[:1] in b"TWXS" and len(reply) < 64 else "other"] += 1
    # the fuzz may have crashed the guest (gdb cannot attach to that): a kill reboots it
    wire.send(codec.encode("k"))
    wire.reply(10)
    assert wire.closed, "kill ends the connection"
    wire.sock.close()
    t_end = time.time()
    time.sleep(0.5)
    assert tv.proc.poll() is None, "tvmm is still running"
    r = gdb(f"""
run("target remote 127.0.0.1:{tv.ports['f']}")
regs = run("info registers eip eflags cs")
check("eip" in regs and "eflags" in regs, "registers after the fuzz: " + regs)
check("instructions" in run("monitor info"), "monitor commands")
check("guest f" in run("monitor info"), "the right guest")
run("detach")
""", tmp_path)
    assert "FAILURES []" in r.stdout, r.stdout + r.stderr
    time.sleep(0.5)
    lines = [line for t, line in tv.lines if line.startswith("sib| ")]
    during = [line for t, line in tv.lines if t_start < t < t_end and line.startswith("sib| ")]
    after = [line for t, line in tv.lines if t > t_end and line.startswith("sib| ")]
    assert during and after, "the sibling ran during and after the fuzz"
    print(f"\nover-the-wire fuzz: seed {SEED + 1}, {OVER_THE_WIRE} frames {dict(gen.kinds)}; replies {dict(stats)}; "
          f"{t_end - t_start:.1f} s; sibling printed {len(lines)} lines ({len(during)} during the fuzz)")
