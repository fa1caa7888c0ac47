"""Record/replay figures for ``tvmm bench``: what recording costs, how big
and how quick a snapshot is, how long seeking back takes.

The workload is the bundled ``flaky`` sample with a surviving seed (timer
interrupts, paging, about 1.5 M instructions), located in the source tree.
"""

from __future__ import annotations

import os
import tempfile
import time

from ..bundled import BUILD
from ..guestspec import GuestSpec
from ..monitor import snapshot
from ..monitor.record import DIGEST_EVERY, Recorder
from ..monitor.timeline import Timeline
from ..monitor.vmm import Monitor


def _guest():
    spec = GuestSpec(name="flaky", kernel=str(BUILD / "flaky.elf"), cmdline="seed=1", mem=32 << 20)
    monitor = Monitor(Monitor.host_size_for([spec]))
    return monitor, monitor.add_guest(spec)


def _run(monitor, recorder=None) -> tuple[float, int]:
    g = monitor.guests[0]
    t0 = time.perf_counter()
    while g.alive:
        monitor.run(200_000)
        if recorder is not None:
            recorder.checkpoint()
    return time.perf_counter() - t0, g.icount


def run() -> dict | None:
    if not (BUILD / "flaky.elf").exists():
        return None
    monitor, _ = _guest()
    plain, insns = _run(monitor)
    monitor, _ = _guest()
    fd, path = tempfile.mkstemp(suffix=".jsonl")
    os.close(fd)
    try:
        rec = Recorder(path, monitor, DIGEST_EVERY // 4)
        recorded, _ = _run(monitor, rec)
        rec.close()
        session_bytes = os.path.getsize(path)
    finally:
        os.unlink(path)
    monitor, g = _guest()
    timeline = Timeline(g, every=200_000)
    while g.alive and g.icount < insns // 2:
        g.run(100_000)
        timeline.note()
    t0 = time.perf_counter()
    snap = snapshot.take(g)
    take_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    snapshot.restore(g, snap)
    restore_s = time.perf_counter() - t0
    target = g.icount - 150_000
    t0 = time.perf_counter()
    timeline.seek(target)
    seek_s = time.perf_counter() - t0
    return {"instructions": insns, "record_overhead_pct": round(100 * (recorded / plain - 1), 1),
            "session_bytes": session_bytes, "snapshot_bytes": snap.size,
            "snapshot_take_ms": round(take_s * 1000, 1), "snapshot_restore_ms": round(restore_s * 1000, 1),
            "seek_back_150k_ms": round(seek_s * 1000, 1)}
