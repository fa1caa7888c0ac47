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
