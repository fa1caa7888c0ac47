"""Differential tests (tvmm vs unicorn), Bit instructions: BT/BTS/BTR/BTC (0FA3/AB/B3/BB, 0FBA /4-/7, register bit offsets reaching
outside the addressed operand), BSF/BSR (including a zero source), BSWAP, SETcc.

Examples per (mode, group): 45 x TVMM_DIFF_EXAMPLES (default 1).
Reproduce a failure with ``check(gen.generate(seed, "bits", group, mode))``.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from . import gen
from .compare import COMMON_SETTINGS, MULTIPLIER, check

N = 45


@pytest.mark.diff
@pytest.mark.parametrize("group", gen.groups("bits"))
@pytest.mark.parametrize("mode", [32, 16])
@settings(max_examples=N * MULTIPLIER, deadline=None, derandomize=True, **COMMON_SETTINGS)
@given(seed=st.integers(0, 2 ** 64 - 1))
def test_diff_bits(mode, group, seed):
    check(gen.generate(seed, "bits", group, mode))
