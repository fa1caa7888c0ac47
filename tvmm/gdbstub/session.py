"""One debugger's conversation with one guest, without any I/O.

``Session.receive(data)`` takes the bytes gdb sent and returns the bytes to
send back.  A ``c``/``vCont;c`` resumes the guest and sends nothing: the
reply is the stop reply, produced by ``Session.poll()`` once the guest has
stopped (the driver calls it after each slice of machine time).  Steps run
synchronously.  A 0x03 interrupt pauses the guest and answers with one stop
reply.  Malformed or unknown packets get an error or the empty reply; they
never raise.

Room for reverse execution: ``bs``/``bc`` are dispatched to the target's
``reverse_step``/``reverse_continue`` when it has them (record/replay adds
them) and ``ReverseStep+``/``ReverseContinue+`` are then advertised.
"""

from __future__ import annotations

from . import codec
from .target import GuestTarget, TargetError, stop_signal
from .tdesc import target_xml
from ..machine.errors import StopKind

PACKET_SIZE = 0x4000
THREAD = 1


class Session:
    def __init__(self, target: GuestTarget, log=None):
        self.target = target
        self.decoder = codec.Decoder()
        self.noack = False
        self.running = False                  # resumed for gdb; a stop reply is owed
        self.last_sent = b""
        self.detached = False
        self.log = log
        self._xml = target_xml().encode()

    # -- bytes in, bytes out ----------------------------------------------------------
    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        for event in self.decoder.feed(data):
            if isinstance(event, codec.Packet):
                if not self.noack:
                    out += b"+"
                reply = self._dispatch(event.payload)
                if reply is not None:
                    out += self._send(reply)
            elif isinstance(event, codec.BadPacket):
                if not self.noack:
                    out += b"-"                # ask again
            elif isinstance(event, codec.Interrupt):
                if self.running:
                    self.target.pause("interrupted by gdb")
                    out += self._stop_reply()
            elif isinstance(event, codec.Nack):
                out += self.last_sent
        return bytes(out)

    def poll(self) -> bytes:
        """The guest's stop reply if it stopped while running for gdb."""
        if not self.running:
            return b""
        if self.target.guest.runnable:
            return b""
        return self._stop_reply()

    def _send(self, payload: str | bytes) -> bytes:
        frame = codec.encode(payload)
        self.last_sent = frame
        return frame

    def _stop_reply(self) -> bytes:
        self.running = False
        return self._send(self.stop_reason())

    def stop_reason(self) -> str:
        g = self.target.guest
        stop = g.last_stop
        if not g.alive:
            if g.state == "exited":
                return f"W{(g.exit_status or 0) & 0xFF:02x}"
            return f"X{stop_signal(stop):02x}"
        sig = stop_signal(stop)
        extra = ""
        timeline = getattr(self.target, "timeline", None)
        if timeline is not None and timeline.at_beginning:
            return f"T{sig:02x}thread:{THREAD:02x};replaylog:begin;"
        if stop is not None and stop.kind == StopKind.BREAKPOINT:
            kind = self.target.bp_kinds.get(stop.data.get("lin"), "sw")
            extra = "swbreak:;" if kind == "sw" else "hwbreak:;"
        elif stop is not None and stop.kind == StopKind.WATCHPOINT:
            name = {"w": "watch", "r": "rwatch", "a": "awatch"}[stop.data["kind"]]
            extra = f"{name}:{stop.data['lin']:x};"
        return f"T{sig:02x}thread:{THREAD:02x};{extra}"

    # -- packets -----------------------------------------------------------------------------
    def _dispatch(self, p: bytes) -> str | bytes | None:
        try:
            text = p.decode("latin-1")
            if not text:
                return ""
            head = text[0]
            handler = _SIMPLE.get(head)
            if handler is not None:
                return handler(self, text[1:])
            for prefix, fn in _PREFIXED:
                if text.startswith(prefix):
                    return fn(self, text[len(prefix):])
            return ""                          # unknown: the empty reply
        except TargetError:
            return "E0e"
        except (ValueError, IndexError, KeyError, TypeError):
            return "E01"                       # malformed

    # ? g G p P m M X c s k D H T Z z
    def _question(self, _):
        return self.stop_reason()

    def _g(self, _):
        return self.target.read_registers().hex()

    def _G(self, arg):
        self.target.write_registers(bytes.fromhex(arg))
        return "OK"

    def _p(self, arg):
        return self.target.read_register(int(arg, 16)).hex()

    def _P(self, arg):
        n, value = arg.split("=")
        self.target.write_register(int(n, 16), bytes.fromhex(value))
        return "OK"

    def _m(self, arg):
        addr, length = (int(x, 16) for x in arg.split(","))
        if length > PACKET_SIZE // 2:
            raise ValueError("too long")
        return self.target.read_memory(addr, length).hex()

    def _M(self, arg):
        where, data = arg.split(":")
        addr, length = (int(x, 16) for x in where.split(","))
        payload = bytes.fromhex(data)
        if len(payload) != length:
            raise ValueError("length mismatch")
        self.target.write_memory(addr, payload)
        return "OK"

    def _X(self, arg):
        where, _, data = arg.partition(":")
        addr, length = (int(x, 16) for x in where.split(","))
        payload = data.encode("latin-1")
        if len(payload) != length:
            raise ValueError("length mismatch")
        if length:
            self.target.write_memory(addr, payload)
        return "OK"

    def _c(self, arg):
        if arg:
            self.target.cpu.eip = int(arg, 16)
        return self._continue()

    def _continue(self):
        g = self.target.guest
        if not g.alive:
            return self.stop_reason()
        self.target.resume()
        self.running = True
        return None                            # the stop reply comes later (poll)

    def _s(self, arg):
        if arg:
            self.target.cpu.eip = int(arg, 16)
        self.target.step()
        return self.stop_reason()

    def _k(self, _):
        self.target.clear_debug_state()
        self.target.guest.record_input("reset")
        self.target.guest.reset()              # this guest only; never the process
        self.detached = True
        return None

    def _D(self, _):
        self.detach()
        return "OK"

    def detach(self) -> None:
        """Detach or a dropped connection: breakpoints go, the guest runs on."""
        self.target.clear_debug_state()
        self.running = False
        self.target.resume()
        self.detached = True

    def _H(self, _):
        return "OK"

    def _T(self, arg):
        return "OK" if int(arg, 16) in (THREAD, 0, -1) else "E01"

    def _Z(self, arg, insert=True):
        kind, addr, length = arg.split(";")[0].split(",")
        kind, addr, length = int(kind), int(addr, 16), int(length, 16)
        t = self.target
        if kind in (0, 1):
            (t.add_breakpoint(addr, "sw" if kind == 0 else "hw") if insert else t.remove_breakpoint(addr))
        elif kind in (2, 3, 4):
            wkind = {2: "w", 3: "r", 4: "a"}[kind]
            (t.add_watchpoint if insert else t.remove_watchpoint)(addr, length, wkind)
        else:
            return ""
        return "OK"

    def _z(self, arg):
        return self._Z(arg, insert=False)

    # q / Q / v packets
    def _qSupported(self, _):
        feats = [f"PacketSize={PACKET_SIZE:x}", "qXfer:features:read+", "QStartNoAckMode+", "swbreak+",
                 "hwbreak+", "vContSupported+"]
        if hasattr(self.target, "reverse_step"):
            feats += ["ReverseStep+", "ReverseContinue+"]
        return ";".join(feats)

    def _qXfer_features(self, arg):
        annex, _, span = arg.partition(":")
        if annex != "target.xml":
            return "E00"
        offset, length = (int(x, 16) for x in span.split(","))
        chunk = self._xml[offset:offset + length]
        return (b"l" if offset + length >= len(self._xml) else b"m") + chunk

    def _QStartNoAckMode(self, _):
        self.noack = True
        return "OK"

    def _qAttached(self, _):
        return "1"

    def _qC(self, _):
        return f"QC{THREAD:02x}"

    def _qfThreadInfo(self, _):
        return f"m{THREAD:02x}"

    def _qsThreadInfo(self, _):
        return "l"

    def _qThreadExtraInfo(self, _):
        g = self.target.guest
        return f"guest {g.name} ({g.state})".encode().hex()

    def _vCont_query(self, _):
        return "vCont;c;C;s;S;r"

    def _vCont(self, arg):
        # leftmost action that applies to our one thread wins
        for action in arg.split(";")[1:]:
            what, _, thread = action.partition(":")
            if thread and int(thread, 16) not in (THREAD, -1, 0):
                continue
            op = what[0]
            if op in "cC":
                return self._continue()
            if op in "sS":
                self.target.step()
                return self.stop_reason()
            if op == "r":
                start, end = (int(x, 16) for x in what[1:].split(","))
                return self._range_step(start, end)
            raise ValueError(f"unsupported vCont action {what!r}")
        return "E01"

    def _range_step(self, start: int, end: int):
        """Step while EIP stays in [start, end) (gdb's `next`/`step` over a line)."""
        t = self.target
        for _ in range(1_000_000):
            stop = t.step()
            if stop.kind != StopKind.STEP or not start <= t.cpu.eip < end:
                break
        return self.stop_reason()

    def _qRcmd(self, arg):
        from .monitor_cmds import run_command
        text = bytes.fromhex(arg).decode("latin-1")
        return run_command(self.target, text).encode("latin-1").hex() or "OK"

    def _bs(self, _):
        if not hasattr(self.target, "reverse_step"):
            return ""
        self.target.reverse_step()
        return self.stop_reason()

    def _bc(self, _):
        if not hasattr(self.target, "reverse_continue"):
            return ""
        self.target.reverse_continue()
        return self.stop_reason()


_SIMPLE = {"?": Session._question, "g": Session._g, "G": Session._G, "p": Session._p, "P": Session._P,
           "m": Session._m, "M": Session._M, "X": Session._X, "c": Session._c, "s": Session._s,
           "k": Session._k, "D": Session._D, "H": Session._H, "T": Session._T, "Z": Session._Z,
           "z": Session._z}
# longest prefixes first
_PREFIXED = [("qSupported", Session._qSupported), ("qXfer:features:read:", Session._qXfer_features),
             ("QStartNoAckMode", Session._QStartNoAckMode), ("qAttached", Session._qAttached),
             ("qfThreadInfo", Session._qfThreadInfo), ("qsThreadInfo", Session._qsThreadInfo),
             ("qThreadExtraInfo,", Session._qThreadExtraInfo), ("qC", Session._qC),
             ("vCont?", Session._vCont_query), ("vCont", Session._vCont), ("qRcmd,", Session._qRcmd),
             ("bs", Session._bs), ("bc", Session._bc)]

