"""Checks of the generator itself, on the oracle only (no tvmm involved).

* every generated snippet runs on unicorn without touching unmapped memory
  and either reaches the end of its code or stops on an exception the
  generator meant to produce (#DE, #BP, #OF, #BR, #UD);
* no group faults on every snippet;
* every row of the opcode table is emitted, and every ModRM/SIB addressing
  form shows up, within a fixed set of seeds.
"""

import collections

import pytest

from . import gen
from .oracle import disassembler, run_unicorn
from .snippet import CODE_BASE

SEEDS = range(15)
GROUPS = [(f, g) for f in gen.FAMILIES for g in gen.groups(f)]


@pytest.mark.diff
@pytest.mark.parametrize("family,group", GROUPS, ids=[f"{f}-{g}" for f, g in GROUPS])
@pytest.mark.parametrize("mode", [32, 16])
def test_snippets_run_as_intended_on_unicorn(mode, family, group):
    completed = 0
    for seed in SEEDS:
        s = gen.generate(seed, family, group, mode)
        out = run_unicorn(s)
        where = f"{s.label} code={s.code.hex()}"
        if out.exception is None:
            assert out.regs["eip"] == CODE_BASE + len(s.code), f"stopped early: {where}"
            completed += 1
        else:
            assert out.exception in s.faults, f"unintended exception {out.exception}: {where}"
    assert completed >= len(SEEDS) // 3, f"{family}/{group} mode {mode}: only {completed} snippets completed"


@pytest.mark.diff
def test_every_row_and_addressing_form_is_generated():
    rows = collections.Counter()
    modrm = {2: set(), 4: set()}
    sib_fields = collections.defaultdict(set)
    for family, group in GROUPS:
        for mode in (32, 16):
            for seed in range(120):
                s = gen.generate(seed, family, group, mode)
                rows.update(str(r) for r in s.rows)
                for insn in disassembler(mode).disasm(s.code, CODE_BASE):
                    if not insn.modrm_offset or insn.modrm >> 6 == 3:
                        continue
                    mod, rm = insn.modrm >> 6, insn.modrm & 7
                    modrm[insn.addr_size].add((mod, rm))
                    if insn.addr_size == 4 and rm == 4:
                        sib = insn.sib
                        sib_fields["mod"].add(mod)
                        sib_fields["scale"].add(sib >> 6)
                        sib_fields["index"].add((sib >> 3) & 7)      # 4 = no index
                        sib_fields["base"].add(sib & 7)
                        if sib & 7 == 5 and mod == 0:
                            sib_fields["disp32-no-base"].add(True)
    missing = [str(r) for r in gen.ALL_ROWS if not rows[str(r)]]
    assert not missing, f"rows never generated: {missing}"
    assert modrm[2] == {(m, r) for m in range(3) for r in range(8)}, "16-bit ModRM forms missing"
    assert modrm[4] == {(m, r) for m in range(3) for r in range(8)}, "32-bit ModRM forms missing"
    assert sib_fields["scale"] == set(range(4)) and sib_fields["index"] == set(range(8))
    assert sib_fields["base"] == set(range(8)) and sib_fields["mod"] == set(range(3))
    assert sib_fields["disp32-no-base"]
