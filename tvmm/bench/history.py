"""History figures for ``tvmm bench``, on a guest that behaves like a real
kernel's memory: the bundled ``bigmem`` sample fills all of its RAM at boot
(256 MiB), then runs processes over a small working set forever (printing
a line every 16 rounds).

Reported: the guest's speed headless, in the UI's engine (history on), with
a gdb stub attached and continuing (over a real socket), and while
recording (digests every 2 M instructions), each also as a ratio to
headless; a checkpoint's time and size when little changed; the history's
size after a long run; and the time to seek back 1 M, 10 M and 100 M
instructions.
"""

from __future__ import annotations

import asyncio
import os
import resource
import tempfile
import time

from ..bundled import BUILD
from ..guestspec import GuestSpec
from ..monitor.record import DIGEST_EVERY, Recorder
from ..monitor.vmm import Monitor

KERNEL = BUILD / "bigmem.elf"
SLICE = 2_000_000           # the headless runner's slice
BOOTED = b"processes, working set"          # printed once RAM is filled
REPEAT = 2


def _monitor(mem: int):
    # a round line every 16 rounds: the console (CGA scrolling is emulated
    # access by access) should not be what the figures measure
    spec = GuestSpec(name="bigmem", kernel=str(KERNEL), mem=mem, cmdline="every=16")
    monitor = Monitor(Monitor.host_size_for([spec]))
    return monitor, monitor.add_guest(spec)


class _Clock:
    """Wall time of a run, split where the guest finished filling its RAM."""

    def __init__(self, g):
        self.g, self.t0, self.boot = g, time.perf_counter(), None

    def tick(self) -> None:
        if self.boot is None and BOOTED in self.g.console:
            self.boot = time.perf_counter() - self.t0

    def done(self) -> tuple[float, float]:
        total = time.perf_counter() - self.t0
        boot = total if self.boot is None else self.boot
        return boot, total - boot


def headless(mem: int, insns: int) -> tuple[float, float]:
    monitor, g = _monitor(mem)
    clock = _Clock(g)
    while g.icount < insns and g.alive:
        monitor.run(min(SLICE, insns - g.icount))
        clock.tick()
    return clock.done()


def engine(mem: int, insns: int) -> tuple[tuple[float, float], object]:
    from ..ui.engine import Engine
    monitor, g = _monitor(mem)
    e = Engine(monitor, history=True)
    clock = _Clock(g)
    while g.icount < insns and g.alive:
        e.step_once()
        clock.tick()
    return clock.done(), g


def recording(mem: int, insns: int) -> tuple[tuple[float, float], int]:
    monitor, g = _monitor(mem)
    fd, path = tempfile.mkstemp(suffix=".tvmm.jsonl")
    os.close(fd)
    try:
        rec = Recorder(path, monitor, DIGEST_EVERY)
        monitor.recorder = rec
        clock = _Clock(g)
        while g.icount < insns and g.alive:
            monitor.run(min(SLICE, insns - g.icount))
            rec.checkpoint()
            clock.tick()
        times = clock.done()
        rec.close()
        return times, os.path.getsize(path)
    finally:
        os.unlink(path)


def gdb_continuing(mem: int, insns: int) -> tuple[float, float]:
    """A debugger attached over TCP that said ``continue``: the loop of
    ``tvmm run --headless --gdb`` (slices of ``GDB_SLICE``, stop replies
    polled between them)."""
    from ..gdbstub.server import GdbServer
    from ..headless import GDB_SLICE
    monitor, g = _monitor(mem)

    async def go() -> tuple[float, float]:
        server = GdbServer(monitor, "127.0.0.1", 0)
        (_, host, port), = await server.start()
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while not server.conns:
                await asyncio.sleep(0.001)
            writer.write(b"$c#63")
            await writer.drain()
            while not g.runnable:
                await asyncio.sleep(0.001)
            clock = _Clock(g)
            while g.icount < insns and g.alive:
                monitor.run(min(GDB_SLICE, insns - g.icount))
                server.poll()
                clock.tick()
                await asyncio.sleep(0)
            return clock.done()
        finally:
            writer.close()
            await server.close()
    return asyncio.run(go())


def run(mem: int = 256 << 20, insns: int = 100_000_000, long: int = 160_000_000,
        seeks=(1_000_000, 10_000_000, 100_000_000), repeat: int = REPEAT) -> dict | None:
    """``insns``: each speed run's length (the fill is about 63 M of a
    256 MiB guest's); ``long``: the history run; ``seeks``: how far back to
    seek from its end."""
    if not KERNEL.exists():
        return None
    # each configuration twice, interleaved, keeping the quicker run (the
    # machine's own noise is as large as the differences measured)
    runs: dict[str, list] = {"base": [], "ui": [], "gdb": [], "rec": []}
    for _ in range(repeat):
        runs["base"].append(headless(mem, insns))
        runs["ui"].append(engine(mem, insns)[0])
        runs["gdb"].append(gdb_continuing(mem, insns))
        t, session_bytes = recording(mem, insns)
        runs["rec"].append(t)
    base, ui, gdb, rec = (tuple(min(x[i] for x in runs[k]) for i in (0, 1)) for k in ("base", "ui", "gdb", "rec"))

    def ratios(name, t):
        return {f"{name}_ratio": round(sum(base) / sum(t), 3),
                f"{name}_fill_ratio": round(base[0] / t[0], 3),
                f"{name}_steady_ratio": round(base[1] / t[1], 3)}
    out = {"guest_mib": mem >> 20, "instructions": insns, "headless_s": round(sum(base), 2),
           "headless_fill_s": round(base[0], 2), "headless_mips": round(insns / sum(base) / 1e6, 2),
           **ratios("ui_history", ui), **ratios("gdb_continue", gdb), **ratios("recording", rec),
           "session_bytes": session_bytes}
    # a long run in the engine: the history it keeps, a quiet checkpoint, seeks back
    long_s, g = engine(mem, long)
    tl = g.timeline
    out.update(history_after=long, history_bytes=tl.bytes, history_checkpoints=len(tl.cps),
               history_thinned=tl.thinned, history_start=tl.start, long_run_mips=round(long / sum(long_s) / 1e6, 2))
    g.run(100_000)
    t0 = time.perf_counter()
    tl._checkpoint()
    out.update(checkpoint_quiet_ms=round((time.perf_counter() - t0) * 1000, 2),
               checkpoint_quiet_bytes=tl.cps[-2].bytes)
    end = g.icount
    for back in seeks:
        t0 = time.perf_counter()
        tl.seek(end - back)
        out[f"seek_back_{back / 1e6:g}M_s"] = round(time.perf_counter() - t0, 3)
        assert g.icount == end - back
    out["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def describe(h: dict) -> str:
    def r(name):
        return (f"{h[name + '_ratio']} (fill {h[name + '_fill_ratio']}, "
                f"steady {h[name + '_steady_ratio']})")
    return (f"{'history (bigmem)':18} {h['guest_mib']} MiB guest, {h['instructions']:,} insns headless in "
            f"{h['headless_s']} s (RAM fill {h['headless_fill_s']} s); speed as a ratio to headless:\n"
            f"{'':18} UI with history {r('ui_history')}, gdb continuing {r('gdb_continue')}, "
            f"recording {r('recording')}\n"
            f"{'':18} quiet checkpoint {h['checkpoint_quiet_ms']} ms, {h['checkpoint_quiet_bytes']:,} bytes; "
            f"history after {h['history_after']:,} insns: {h['history_bytes'] / 2**20:.1f} MiB in "
            f"{h['history_checkpoints']} checkpoints ({h['history_thinned']} thinned)\n"
            f"{'':18} seek back " + ", ".join(f"{k[10:-2]} {v} s" for k, v in h.items()
                                               if k.startswith("seek_back_")))
