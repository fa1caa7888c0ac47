"""A guest's history (monitor/timeline.py): checkpoints that hold only the
pages written after them, a restore that composes the chain, thinning
within a memory budget, and the incremental memory digest — all checked
against straight runs of an identical guest."""

from __future__ import annotations

from pathlib import Path


from tvmm.guestspec import GuestSpec
from tvmm.monitor import timeline as tlmod
from tvmm.monitor.digest import MemoryDigest
from tvmm.monitor.record import mem_digest, regs_digest
from tvmm.monitor.timeline import Timeline
from tvmm.monitor.vmm import Monitor

B = Path(__file__).resolve().parents[2] / "samples" / "build"
SPEC = dict(name="mt", kernel=str(B / "multitask.elf"), cmdline="forever", mem=32 << 20)


def guest():
    spec = GuestSpec(**SPEC)
    return Monitor(Monitor.host_size_for([spec])).add_guest(spec)


def run_to(g, icount):
    while g.icount < icount:
        g.run(icount - g.icount)


def fingerprint(g):
    state = "running" if g.state == "paused" else g.state      # a seek leaves the guest paused
    return (g.icount, g.now(), regs_digest(g), mem_digest(g), bytes(g.console), state)


def references(targets):
    """Fingerprints of a straight run at each target (ascending)."""
    g = guest()
    out = {}
    for t in sorted(targets):
        run_to(g, t)
        out[t] = fingerprint(g)
    return out


def grow(g, tl, until, slice_=10_000):
    while g.icount < until:
        g.run(min(slice_, until - g.icount))
        tl.note()


def test_seeking_back_through_a_chain_of_checkpoints_is_exact():
    targets = [590_000, 400_001, 123_457, 31_000, 0]
    want = references(targets + [300_000, 600_000])
    g = guest()
    tl = Timeline(g, every=30_000)
    grow(g, tl, 600_000)
    assert len(tl.cps) >= 15
    assert fingerprint(g) == want[600_000]
    for t in targets:                                   # each seek goes further back
        tl.seek(t)
        assert fingerprint(g) == want[t], t
    # forward again (new checkpoints, old undo maps reused where still valid), then back
    grow(g, tl, 600_000)
    assert fingerprint(g) == want[600_000]
    tl.seek(300_000)
    assert fingerprint(g) == want[300_000]


def test_a_checkpoint_holds_only_the_pages_written_after_it():
    g = guest()
    tl = Timeline(g, every=50_000)
    grow(g, tl, 400_000)
    closed = tl.cps[:-1]
    written = max(cp.pages for cp in closed)
    assert 0 < written < 64                            # multitask touches a handful of pages, of 8192
    for cp in closed:
        for gpfn, data in cp.undo.items():
            assert 0 < len(data) <= 4096 and gpfn not in dict(cp.filled_pages())


def _accounted(tl):
    """What the history holds, recomputed from what is stored."""
    total = 0
    for cp in tl.cps:
        total += cp.state_bytes + sum(len(bm) + 60 for bm in cp.fills.values())
        for data in cp.undo.values():
            total += tlmod._ENTRY_OVERHEAD + len(data)
    return total


def test_history_stays_within_its_budget_by_thinning_and_stays_exact():
    budget = 400 << 10
    g = guest()
    tl = Timeline(g, every=10_000, budget=budget)
    taken = 0
    while g.icount < 1_500_000:
        n = len(tl.cps)
        g.run(10_000)
        tl.note()
        taken += len(tl.cps) > n or tl.thinned
        assert tl.bytes <= budget
        assert tl.bytes == _accounted(tl)
    assert tl.thinned > 0
    assert tl.start == 0                                # merging keeps the beginning reachable
    gaps = [b.icount - a.icount for a, b in zip(tl.cps, tl.cps[1:])]
    assert gaps[0] > gaps[-1]                           # sparse far back, dense near now
    want = references([5_000, 700_003, 1_499_999])
    for t in (1_499_999, 700_003, 5_000):
        tl.seek(t)
        assert fingerprint(g) == want[t], t


def test_a_history_too_small_for_two_checkpoints_drops_the_oldest():
    g = guest()
    tl = Timeline(g, every=10_000, budget=1)
    grow(g, tl, 100_000)
    assert len(tl.cps) == 1 and tl.start > 0


def test_a_reset_starts_the_history_again():
    g = guest()
    tl = Timeline(g, every=20_000)
    grow(g, tl, 100_000)
    g.record_input("reset")
    g.reset()
    assert len(tl.cps) == 1 and tl.start == g.icount and not tl.inputs
    start = g.icount
    grow(g, tl, start + 60_000)
    tl.seek(start + 10_000)
    assert g.icount == start + 10_000


def test_logging_is_off_without_history_and_after_it():
    g = guest()
    host = g.monitor.host
    g.run(50_000)
    assert host.on_first_write is None
    tl = Timeline(g)
    assert host.on_first_write is not None
    tl.close()
    assert host.on_first_write is None and not g.monitor.dirty.owner


def test_the_incremental_memory_digest_equals_a_fresh_one():
    g = guest()
    kept = MemoryDigest(g)
    kept.value()
    for _ in range(5):
        g.run(70_000)
        fresh = MemoryDigest(g)
        assert kept.value() == fresh.value()
        fresh.close()
    # a change the guest did not make (a debugger's write) is seen too
    g.gmem.write_bytes(0x700000, b"debugger")
    before = kept.value()
    g.gmem.write_bytes(0x700000, b"DEBUGGER")
    assert kept.value() != before
    kept.close()


def test_two_consumers_each_see_every_write():
    """A digest's marks must not hide pages from a history, nor the reverse."""
    want = references([200_000])
    g = guest()
    tl = Timeline(g, every=25_000)
    d = MemoryDigest(g)
    while g.icount < 300_000:
        g.run(7_000)
        tl.note()
        if g.icount % 3:
            d.value()
    fresh = MemoryDigest(g)
    assert d.value() == fresh.value()
    tl.seek(200_000)
    assert fingerprint(g) == want[200_000]
    assert d.value() == fresh.value()                   # the restore's writes reached the digest too


def test_a_ram_filled_at_boot_costs_a_bit_per_page_and_restores_exactly():
    """bigmem poisons all of its RAM at boot, as real kernels do: the zero
    pages it overwrote, and the poisoned pages its free list then wrote, are
    kept as bitmaps, and going back into the fill puts them back."""
    spec = GuestSpec(name="big", kernel=str(B / "bigmem.elf"), mem=64 << 20, cmdline="rounds=1")

    def fresh():
        return Monitor(Monitor.host_size_for([spec])).add_guest(spec)
    g = fresh()
    tl = Timeline(g, every=2_000_000)
    grow(g, tl, 17_000_000, slice_=500_000)
    assert b"working set" in g.console                 # the fill is done
    assert sum(cp.nfilled for cp in tl.cps) > 15_000   # about every page of 64 MiB, zeros then poison
    assert tl.bytes < 1 << 20                           # a bit per page, not an entry
    ref = fresh()
    run_to(ref, 3_000_000)
    want = fingerprint(ref)
    tl.seek(3_000_000)
    assert fingerprint(g) == want
