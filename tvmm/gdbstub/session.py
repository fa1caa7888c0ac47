"""One debugger's conversation with one guest, without any I/O.

``Session.receive(data)`` takes the bytes gdb sent and returns the bytes to
send back.  A ``c``/``vCont;c`` resumes the guest and sends nothing: the
reply is the stop reply, produced by ``Session.poll()`` once the guest has
stopped (the driver calls it after each slice of machine time).  A single
step runs synchronously (it is one instruction).  Anything longer runs in
slices like the guests do, so siblings keep running: a range step
(``vCont;r``) takes up to ``RANGE_STEP_SLICE`` instructions or
``RANGE_STEP_TIME`` seconds per ``poll()``, and a reverse continue one
history window per ``poll()`` (the target's ``reverse_continue_steps``, a
generator); either is answered like a continue.  A 0x03
interrupt ends whatever runs and answers with one stop reply.

Malformed or unknown packets get an error or the empty reply; they never
raise.  A halted guest (HLT with interrupts off) is still a target: it is
reported stopped with SIGTRAP, so its registers and memory can be read.

Threads: each vCPU of the guest is a thread, id = vCPU index + 1
(``qfThreadInfo``, ``qThreadExtraInfo`` — "CPU#1 halted" —, ``qC``, ``T``).
``Hg`` selects the vCPU whose registers ``g``/``G``/``p``/``P`` read and
write and through whose page tables memory is accessed; ``Hc`` the one
``s`` steps (0 or -1: any, the schedule picks).  A stop reply names the vCPU
that stopped (``thread:N;``) and the ``Hg`` selection follows it, as real
stubs do.  ``vCont`` with a step or range step for one thread (``s:2``,
``s:2;c``, ``rS,E:2;c``) runs that vCPU alone while the others stay put
(scheduler locking: the recorded ``step`` input); a continue, for any
thread, runs the whole guest.  Stopping the guest stops all its vCPUs; its
siblings (other guests) keep running.  With one vCPU this is what it always
was: one thread, and ``guest.step()``.

Reverse execution: ``bs``/``bc`` are dispatched to the target's
``reverse_step``/``reverse_continue_steps`` when it has them (a target with
a history) and ``ReverseStep+``/``ReverseContinue+`` are then advertised.
"""

from __future__ import annotations

import time

from . import codec
from .target import GuestTarget, TargetError, stop_signal
from .tdesc import target_xml
from ..machine.consts import M32
from ..machine.errors import StopKind

PACKET_SIZE = 0x4000
RANGE_STEP_SLICE = 1000         # instructions a range step takes per poll at most (about 15 ms) …
RANGE_STEP_TIME = 0.02          # … and seconds: steps of code that cannot be cached cost far more
_HEX = frozenset("0123456789abcdefABCDEF")


def _hex(text: str, limit: int = M32) -> int:
    """A hex number as gdb writes it (no sign, prefix, spaces), at most ``limit``."""
    if not text or len(text) > 16 or not _HEX.issuperset(text):
        raise ValueError(f"bad hex number {text[:20]!r}")
    n = int(text, 16)
    if n > limit:
        raise ValueError(f"{n:#x} is out of range")
    return n


def _hex_bytes(text: str) -> bytes:
    if len(text) % 2 or not _HEX.issuperset(text):
        raise ValueError("bad hex data")
    return bytes.fromhex(text)


class Session:
    def __init__(self, target: GuestTarget, log=None):
        self.target = target
        self.decoder = codec.Decoder()
        self.noack = False
        self.running = False                  # resumed for gdb; a stop reply is owed
        self.job = None                       # while running: a long operation poll() advances
        self.last_sent = b""
        self.detached = False
        self.log = log
        self._xml = target_xml().encode()
        self.cont_thread: int | None = None   # Hc: the vCPU index s steps (None: any)
        self.stepped: int | None = None       # the vCPU the last step ran (the one that stopped)

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
                    self._end_job()
                    self.target.pause("interrupted by gdb")
                    out += self._stop_reply()
            elif isinstance(event, codec.Nack):
                out += self.last_sent
        return bytes(out)

    def poll(self) -> bytes:
        """The guest's stop reply if it stopped while running for gdb; a
        long operation in progress advances one slice first."""
        if not self.running:
            return b""
        if self.job is not None:
            try:
                done = self.job()
            except Exception:                  # the guest's own failures end as its state
                done = True
            if not done:
                return b""
            self.job = None
        elif self.target.guest.runnable:
            return b""
        return self._stop_reply()

    def _start_job(self, job) -> None:
        """Run ``job()`` (True when finished) a slice per poll; the stop reply comes then."""
        self.job = job
        self.running = True

    def _end_job(self) -> None:
        job, self.job = self.job, None
        cancel = getattr(job, "cancel", None)
        if cancel is not None:
            try:
                cancel()
            except Exception:                  # never out of receive(): the stop reply still goes
                pass

    def _send(self, payload: str | bytes) -> bytes:
        frame = codec.encode(payload)
        self.last_sent = frame
        return frame

    def _stop_reply(self) -> bytes:
        self.running = False
        return self._send(self.stop_reason())

    def stopped_thread(self) -> int:
        """The thread id of the vCPU that stopped: the one a step ran, or
        else the one that ran last."""
        index = self.stepped if self.stepped is not None else self.target.stopped_cpu()
        return (index if 0 <= index < self.target.ncpus else 0) + 1

    def stop_reason(self) -> str:
        g = self.target.guest
        stop = g.last_stop
        if g.state == "exited":
            return f"W{(g.exit_status or 0) & 0xFF:02x}"
        if g.state == "crashed":
            return f"X{stop_signal(stop):02x}"
        # running, paused, or halted for good: a target that can be inspected
        sig = stop_signal(stop)
        extra = ""
        thread = self.stopped_thread()
        self.target.select(thread - 1)        # gdb's selection follows the thread that stopped
        timeline = getattr(self.target, "timeline", None)
        if timeline is not None and timeline.at_beginning:
            return f"T{sig:02x}thread:{thread:02x};replaylog:begin;"
        if stop is not None and stop.kind == StopKind.BREAKPOINT:
            kind = self.target.bp_kinds.get(stop.data.get("lin"), "sw")
            extra = "swbreak:;" if kind == "sw" else "hwbreak:;"
        elif stop is not None and stop.kind == StopKind.WATCHPOINT:
            name = {"w": "watch", "r": "rwatch", "a": "awatch"}[stop.data["kind"]]
            extra = f"{name}:{stop.data['lin']:x};"
        return f"T{sig:02x}thread:{thread:02x};{extra}"

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
            handler = _EXACT.get(text)
            if handler is not None:
                return handler(self, "")
            for prefix, fn in _PREFIXED:
                if text.startswith(prefix):
                    return fn(self, text[len(prefix):])
            return ""                          # unknown: the empty reply
        except TargetError:
            return "E0e"
        except (ValueError, IndexError, KeyError, TypeError, OverflowError):
            return "E01"                       # malformed
        except Exception:                      # a bug of ours must not drop the connection either
            return "E0f"

    # ? g G p P m M X c s k D H T Z z
    def _question(self, _):
        return self.stop_reason()

    def _g(self, _):
        return self.target.read_registers().hex()

    def _G(self, arg):
        self.target.write_registers(_hex_bytes(arg))
        return "OK"

    def _p(self, arg):
        return self.target.read_register(_hex(arg, 0xFFFF)).hex()

    def _P(self, arg):
        n, value = arg.split("=")
        self.target.write_register(_hex(n, 0xFFFF), _hex_bytes(value))
        return "OK"

    def _m(self, arg):
        addr, length = arg.split(",")
        addr, length = _hex(addr), _hex(length)
        if length > PACKET_SIZE // 2:
            raise ValueError("too long")
        return self.target.read_memory(addr, length).hex()

    def _M(self, arg):
        where, data = arg.split(":")
        addr, length = where.split(",")
        addr, length = _hex(addr), _hex(length)
        payload = _hex_bytes(data)
        if len(payload) != length:
            raise ValueError("length mismatch")
        if length:
            self.target.write_memory(addr, payload)
        return "OK"

    def _X(self, arg):
        where, _, data = arg.partition(":")
        addr, length = where.split(",")
        addr, length = _hex(addr), _hex(length)
        payload = data.encode("latin-1")
        if len(payload) != length:
            raise ValueError("length mismatch")
        if length:
            self.target.write_memory(addr, payload)
        return "OK"

    def _resume_at(self, addr: str) -> None:
        """``c ADDR``/``s ADDR``/``C sig;ADDR``: EIP is written as a recorded
        input (of the ``Hc`` thread, or else the ``Hg`` one)."""
        if addr:
            self.target.set_pc(_hex(addr), self.cont_thread)

    def _c(self, arg):
        self._resume_at(arg)
        return self._continue()

    def _C(self, arg):
        sig, _, addr = arg.partition(";")
        _hex(sig, 0xFF)                        # no signals reach a guest: the number is ignored
        self._resume_at(addr)
        return self._continue()

    def _continue(self):
        self._end_job()
        g = self.target.guest
        if not g.alive:
            return self.stop_reason()
        self.stepped = None
        self.target.resume()
        self.running = True
        return None                            # the stop reply comes later (poll)

    def _s(self, arg):
        self._resume_at(arg)
        return self._step(self.cont_thread)

    def _S(self, arg):
        sig, _, addr = arg.partition(";")
        _hex(sig, 0xFF)
        self._resume_at(addr)
        return self._step(self.cont_thread)

    def _step(self, vcpu: int | None = None):
        """One instruction: of vCPU ``vcpu`` alone, or (None) of the one
        the schedule picks."""
        self._end_job()
        self.running = False
        self.stepped = None
        self.target.step(vcpu=vcpu)
        self.stepped = vcpu                    # the thread asked about, even if it could not move
        return self.stop_reason()

    def _k(self, _):
        self._end_job()
        self.running = False
        self.stepped = None
        self.target.reset()                    # this guest only; never the process
        self.detached = True
        return None

    def _D(self, _):
        self.detach()
        return "OK"

    def detach(self) -> None:
        """Detach or a dropped connection: breakpoints go, the guest runs on."""
        self._end_job()
        self.target.clear_debug_state()
        self.running = False
        self.stepped = None
        self.target.resume()
        self.detached = True

    def _H(self, arg):
        """``Hg N``: registers and memory of thread N; ``Hc N``: what ``s``
        steps (0 or -1: any)."""
        op, tid = arg[:1], arg[1:]
        if op not in ("g", "c"):
            return "OK"                        # other operations name nothing we keep
        n = _thread(tid)
        if n not in (0, -1) and not 1 <= n <= self.target.ncpus:
            return "E01"
        if op == "g":
            if n > 0:
                self.target.select(n - 1)
        else:
            self.cont_thread = n - 1 if n > 0 else None
        return "OK"

    def _T(self, arg):
        n = _thread(arg)
        return "OK" if n in (0, -1) or 1 <= n <= self.target.ncpus else "E01"

    def _Z(self, arg, insert=True):
        kind, addr, length = arg.split(";")[0].split(",")
        kind, addr, length = _hex(kind, 0xFF), _hex(addr), _hex(length)
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
        offset, length = span.split(",")
        offset, length = _hex(offset), _hex(length)
        chunk = self._xml[offset:offset + length]
        return (b"l" if offset + length >= len(self._xml) else b"m") + chunk

    def _QStartNoAckMode(self, _):
        self.noack = True
        return "OK"

    def _qAttached(self, _):
        return "1"

    def _qC(self, _):
        return f"QC{self.target.cpu_index + 1:02x}"

    def _qfThreadInfo(self, _):
        return "m" + ",".join(f"{i + 1:02x}" for i in range(self.target.ncpus))

    def _qsThreadInfo(self, _):
        return "l"

    def _qThreadExtraInfo(self, arg):
        g = self.target.guest
        if self.target.ncpus == 1:
            return f"guest {g.name} ({g.state})".encode().hex()
        n = _thread(arg)
        if not 1 <= n <= self.target.ncpus:
            return "E01"
        return f"CPU#{n - 1} {self.target.cpu_state(n - 1)}".encode().hex()

    def _vCont_query(self, _):
        return "vCont;c;C;s;S;r"

    def _vCont_args(self, arg):
        actions = arg.split(";")
        n = self.target.ncpus
        if n > 1:
            # a step (or range step) of one thread runs that vCPU alone; the
            # others stay put for it, whatever their action (gdb's stepi of a
            # thread with scheduler locking off is `s:N;c`)
            others_run = any(a.partition(":")[0][:1] in ("c", "C") for a in actions)
            for action in actions:
                what, _, thread = action.partition(":")
                if thread and what[:1] in ("s", "S", "r") and 1 <= _thread(thread) <= n:
                    return self._vCont_action(what, _thread(thread) - 1, others_run)
        # the leftmost action that applies to a thread of ours wins
        for action in actions:
            what, _, thread = action.partition(":")
            if thread and _thread(thread) not in (-1, 0) and not 1 <= _thread(thread) <= n:
                continue
            return self._vCont_action(what, None)
        return "E01"

    def _vCont_action(self, what: str, vcpu: int | None, others_run: bool = False):
        """One vCont action, for vCPU ``vcpu`` (None: no thread named);
        ``others_run``: the other threads continue meanwhile (``;c``)."""
        op = what[:1]
        if op in ("c", "C"):
            if op == "C":
                _hex(what[1:], 0xFF)
            elif what[1:]:
                raise ValueError(f"bad vCont action {what!r}")
            return self._continue()            # any continue runs the whole guest
        if op in ("s", "S"):
            if op == "S":
                _hex(what[1:], 0xFF)
            elif what[1:]:
                raise ValueError(f"bad vCont action {what!r}")
            return self._step(vcpu)
        if op == "r":
            start, end = what[1:].split(",")
            return self._range_step(_hex(start), _hex(end), vcpu, others_run)
        raise ValueError(f"unsupported vCont action {what!r}")

    def _range_step(self, start: int, end: int, vcpu: int | None = None, others_run: bool = False):
        """Step while EIP stays in [start, end) (gdb's `next`/`step` over a
        line): the first step at once, the rest ``RANGE_STEP_SLICE`` per
        poll, answered like a continue.  Several vCPUs: vCPU ``vcpu``
        (default the selected one) alone; it ends if that vCPU cannot move
        (halted, or waiting for its STARTUP IPI).  With ``others_run`` (gdb
        sent ``;c``: scheduler locking off) the whole guest runs as its
        schedule says until that vCPU leaves the range — a ``next`` over a
        spin lock another vCPU holds then ends."""
        self._end_job()
        t = self.target
        if vcpu is None:
            vcpu = t.cpu_index
        g = t.guest
        self.stepped = vcpu
        if not g.alive:
            return self.stop_reason()

        def one(off_breakpoint: bool) -> bool:
            """A step; True when the range step is over."""
            cpu = g.vcpus[vcpu]
            before = (cpu.icount, cpu.eip)
            if others_run:
                stop = t.step(off_breakpoint=off_breakpoint)
                cpu = g.vcpus[vcpu]
                return stop.kind != StopKind.STEP or not start <= cpu.eip < end
            stop = t.step(off_breakpoint=off_breakpoint, vcpu=vcpu)
            cpu = g.vcpus[vcpu]                # (a reset rebuilds the vCPUs)
            if stop.kind != StopKind.STEP or not start <= cpu.eip < end:
                return True
            return t.ncpus > 1 and (cpu.icount, cpu.eip) == before     # it cannot move

        if one(True):
            return self.stop_reason()

        def advance() -> bool:
            # how many steps a slice takes never changes what the guest does
            deadline = time.perf_counter() + RANGE_STEP_TIME
            for i in range(RANGE_STEP_SLICE):
                if one(False):                 # a breakpoint inside the range stops it
                    return True
                if time.perf_counter() > deadline:
                    break
            return False
        self._start_job(advance)
        return None

    def _qRcmd(self, arg):
        from .monitor_cmds import run_command
        text = _hex_bytes(arg).decode("latin-1")
        return run_command(self.target, text).encode("latin-1").hex() or "OK"

    def _bs(self, _):
        if not hasattr(self.target, "reverse_step"):
            return ""
        self._end_job()
        self.running = False
        self.stepped = None
        self.target.reverse_step()
        return self.stop_reason()

    def _bc(self, _):
        if not hasattr(self.target, "reverse_continue_steps"):
            return ""
        self._end_job()
        self.running = False
        self.stepped = None
        self._start_job(_ReverseContinue(self.target, self.target.reverse_continue_steps()))
        return None


def _thread(text: str) -> int:
    """A thread id: hex, or -1 (all)."""
    return -1 if text == "-1" else _hex(text)


class _ReverseContinue:
    """A reverse continue one history window per poll.  Interrupted, it
    stops where its search has got to (the start of the last window)."""

    def __init__(self, target, steps):
        self.target, self.steps, self.reached = target, steps, None

    def __call__(self) -> bool:
        try:
            self.reached = next(self.steps)
        except StopIteration:
            return True
        return False

    def cancel(self) -> None:
        self.steps.close()
        timeline = getattr(self.target, "timeline", None)
        if self.reached is not None and timeline is not None:
            timeline.seek(self.reached)            # a checkpoint: nothing to run


_SIMPLE = {"?": Session._question, "g": Session._g, "G": Session._G, "p": Session._p, "P": Session._P,
           "m": Session._m, "M": Session._M, "X": Session._X, "c": Session._c, "s": Session._s,
           "C": Session._C, "S": Session._S,
           "k": Session._k, "D": Session._D, "H": Session._H, "T": Session._T, "Z": Session._Z,
           "z": Session._z}
# packets whose name is the whole packet ("qC" is not "qCRC:…")
_EXACT = {"QStartNoAckMode": Session._QStartNoAckMode, "qfThreadInfo": Session._qfThreadInfo,
          "qsThreadInfo": Session._qsThreadInfo, "qC": Session._qC, "vCont?": Session._vCont_query,
          "bs": Session._bs, "bc": Session._bc}
# packets with arguments, by prefix
_PREFIXED = [("qSupported", Session._qSupported), ("qXfer:features:read:", Session._qXfer_features),
             ("qAttached", Session._qAttached), ("qThreadExtraInfo,", Session._qThreadExtraInfo),
             ("vCont;", Session._vCont_args), ("qRcmd,", Session._qRcmd)]
