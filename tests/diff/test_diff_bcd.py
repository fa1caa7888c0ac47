"""Differential tests (tvmm vs unicorn), BCD adjustments: DAA, DAS, AAA, AAS, AAM/AAD with various bases (D4 00 -> #DE),
mixed with the byte ADD/ADC/SUB/SBB that normally precede them.

Examples per (mode, group): 80 x TVMM_DIFF_EXAMPLES (default 1).
Reproduce a failure with ``check(gen.generate(seed, "bcd", group, mode))``.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from . import gen
from .compare import COMMON_SETTINGS, MULTIPLIER, check

N = 80


@pytest.mark.diff
@pytest.mark.parametrize("group", gen.groups("bcd"))
@pytest.mark.parametrize("mode", [32, 16])
@settings(max_examples=N * MULTIPLIER, deadline=None, derandomize=True, **COMMON_SETTINGS)
@given(seed=st.integers(0, 2 ** 64 - 1))
def test_diff_bcd(mode, group, seed):
    check(gen.generate(seed, "bcd", group, mode))
