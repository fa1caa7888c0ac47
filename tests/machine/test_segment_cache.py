"""The segment-register cache's derived state: ``cpu.flat`` kept incrementally
by ``segments._bounds`` agrees with its definition (``segments._flat``) after
any sequence of loads, and memoized descriptor parsing matches the fields."""

from __future__ import annotations

import random

from tvmm.machine import CPU, PhysicalMemory, segments
from tvmm.machine.segments import ATTR_DB, ATTR_G

FLAT_CODE, FLAT_DATA = 0xC09B, 0xC093


def _definition(cpu) -> bool:
    saved = cpu.flat
    segments._flat(cpu)
    defined, cpu.flat = cpu.flat, saved
    return defined


def test_flat_follows_every_load_of_es_cs_ss_ds():
    cpu = CPU(PhysicalMemory(1 << 20))
    rng = random.Random(7)
    attrs = [FLAT_CODE, FLAT_DATA, 0x9B, 0x93, FLAT_DATA & ~ATTR_DB, 0xC091, 0xC097, 0x4093, 0]
    limits = [0xFFFFFFFF, 0xFFFF, 0xFFFFF, 0x1000]
    seen = set()
    for _ in range(3000):
        cpu.protected = rng.random() < 0.9
        seg = rng.randrange(6)
        if rng.random() < 0.8:               # mostly flat loads, so both states come and go
            base, limit, attr = 0, 0xFFFFFFFF, FLAT_CODE if seg == 1 else FLAT_DATA
        else:
            base, limit, attr = rng.choice([0, 0x1000]), rng.choice(limits), rng.choice(attrs)
        segments.set_cache(cpu, seg, 8, base, limit, attr)
        assert cpu.flat == _definition(cpu)
        seen.add(cpu.flat)
    # and the all-flat state is reachable, then lost by any one segment
    cpu.protected = True
    for seg, attr in ((0, FLAT_DATA), (1, FLAT_CODE), (2, FLAT_DATA), (3, FLAT_DATA)):
        segments.set_cache(cpu, seg, 8, 0, 0xFFFFFFFF, attr)
    assert cpu.flat and _definition(cpu)
    segments.set_cache(cpu, 3, 8, 0x10, 0xFFFFFFFF, FLAT_DATA)
    assert not cpu.flat
    segments.set_cache(cpu, 3, 8, 0, 0xFFFFFFFF, FLAT_DATA)
    assert cpu.flat
    segments.set_cache(cpu, 5, 8, 0x10, 0xFF, 0x93)          # GS does not take part
    assert cpu.flat
    assert seen == {True, False}


def test_parse_matches_the_descriptor_fields():
    rng = random.Random(11)
    for _ in range(2000):
        lo, hi = rng.getrandbits(32), rng.getrandbits(32)
        assert segments.parse(lo, hi) == (segments.desc_base(lo, hi), segments.desc_limit(lo, hi),
                                          segments.desc_attr(hi))
    lo, hi = 0x0000FFFF, 0x00CF9A00 | (ATTR_G << 8)
    assert segments.parse(lo, hi) == (0, 0xFFFFFFFF, 0xC09A)


def test_data_segment_loads_through_the_memo_match_full_loads(monkeypatch):
    # ``load_data`` installs a descriptor it has checked before from
    # ``_DATA_LOADS``; against a CPU that checks every load afresh, over
    # random descriptors (any type, DPL, present bit, accessed bit), edits
    # of the table between loads, CPLs and RPLs: the same faults, the same
    # hidden caches and derived bounds, the same accessed bits in memory.
    from tvmm.machine.errors import CpuFault
    rng = random.Random(23)
    gdt, n = 0x1000, 16
    cpus = [CPU(PhysicalMemory(1 << 20)) for _ in range(2)]
    for cpu in cpus:
        cpu.protected = True
        cpu.gdtr_base, cpu.gdtr_limit = gdt, 8 * n - 1
    class Memo(dict):
        hits = 0

        def get(self, key, default=None):
            v = super().get(key, default)
            Memo.hits += v is not None
            return v

    memo = Memo()
    types = [0x93, 0x92, 0x91, 0x97, 0x9B, 0x9A, 0x98, 0x9F, 0x9E, 0x82, 0x13]

    def descriptor():
        base = rng.choice([0, 0, 0x10000, rng.getrandbits(32)])
        limit = rng.choice([0xFFFFF, 0xFFFF, rng.getrandbits(20)])
        access = rng.choice(types) | (rng.randrange(4) << 5)
        if rng.random() < 0.3:
            access &= ~1                                  # not yet accessed
        flags = rng.choice([0xC, 0x4, 0x8, 0x0])
        lo = (limit & 0xFFFF) | (base & 0xFFFF) << 16
        hi = (base >> 16 & 0xFF) | access << 8 | (limit >> 16) << 16 | flags << 20 | (base & 0xFF000000)
        return lo, hi

    def outcome(cpu, seg, sel):
        try:
            segments.load_data(cpu, seg, sel)
        except CpuFault as e:
            return ("fault", e.vector, e.error_code)
        return (cpu.seg_sel[seg], cpu.seg_base[seg], cpu.seg_limit[seg], cpu.seg_attr[seg], cpu.seg_lo[seg],
                cpu.seg_hi[seg], cpu.seg_whi[seg], cpu.nonflat, cpu.flat)

    pool = [descriptor() for _ in range(24)]       # few enough that each recurs, accessed or not
    pool += [(0x0000FFFF, 0x00CF9300), (0x0000FFFF, 0x00CF9100), (0x0000FFFF, 0x00CFF300)]  # flat RW, RO, DPL 3
    for i in range(1, n):
        lo, hi = rng.choice(pool)
        for cpu in cpus:
            cpu.mem.write(gdt + 8 * i, 4, lo)
            cpu.mem.write(gdt + 8 * i + 4, 4, hi)
    for _ in range(6000):
        if rng.random() < 0.05:
            i = rng.randrange(1, n)
            lo, hi = rng.choice(pool)
            for cpu in cpus:
                cpu.mem.write(gdt + 8 * i, 4, lo)
                cpu.mem.write(gdt + 8 * i + 4, 4, hi)
        cpl, seg = rng.randrange(4), rng.choice([0, 3, 4, 5])
        sel = rng.randrange(1, n) << 3 | rng.randrange(4)
        results = []
        for cpu, table in zip(cpus, ({}, memo)):
            cpu.set_cpl(cpl)
            monkeypatch.setattr(segments, "_DATA_LOADS", table)
            results.append(outcome(cpu, seg, sel))
        assert results[0] == results[1]
        assert cpus[0].mem.read_bytes(gdt, 8 * n) == cpus[1].mem.read_bytes(gdt, 8 * n)
    assert Memo.hits > 1000 and len(memo) > 20
