"""The x87 state is part of a guest's snapshot and of the replay register
digest: the fpu86 sample (two tasks doing x87 work, lazily switched on #NM)
snapshotted mid-run, run on, restored and re-run gives the same future, and
a changed x87 register changes the digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from tvmm.guestspec import GuestSpec
from tvmm.monitor import snapshot
from tvmm.monitor.record import mem_digest, regs_digest
from tvmm.monitor.vmm import Monitor

ELF = Path(__file__).resolve().parents[2] / "samples" / "build" / "fpu86.elf"
pytestmark = pytest.mark.skipif(not ELF.exists(), reason="samples/build/fpu86.elf not built")


def fingerprint(g):
    return (g.icount, g.now(), regs_digest(g), mem_digest(g), bytes(g.console), g.state,
            g.vcpu.fpu.digest_state())


def test_fpu_state_survives_snapshot_and_restore():
    spec = GuestSpec(name="fpu86", mem=16 << 20, kernel=str(ELF))
    g = Monitor(Monitor.host_size_for([spec])).add_guest(spec)
    g.run(400_000)
    assert not g.vcpu.fpu.at_power_on()
    snap = snapshot.take(g)
    assert snap.cpu["fpu"]["cw"] == g.vcpu.fpu.cw
    g.run(300_000)
    future = fingerprint(g)
    snapshot.restore(g, snap)
    g.run(300_000)
    assert fingerprint(g) == future
    before = regs_digest(g)
    g.vcpu.fpu.regs[0] ^= 1
    assert regs_digest(g) != before
