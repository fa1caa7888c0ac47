"""Differential tests (tvmm vs unicorn), String instructions MOVS/CMPS/STOS/LODS/SCAS (A4-A7, AA-AF) with and without REP/REPE/REPNE,
DF 0 and 1, 16- and 32-bit addressing, small counts.

Examples per (mode, group): 65 x TVMM_DIFF_EXAMPLES (default 1).
Reproduce a failure with ``check(gen.generate(seed, "string", group, mode))``.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from . import gen
from .compare import COMMON_SETTINGS, MULTIPLIER, check

N = 65


@pytest.mark.diff
@pytest.mark.parametrize("group", gen.groups("string"))
@pytest.mark.parametrize("mode", [32, 16])
@settings(max_examples=N * MULTIPLIER, deadline=None, derandomize=True, **COMMON_SETTINGS)
@given(seed=st.integers(0, 2 ** 64 - 1))
def test_diff_string(mode, group, seed):
    check(gen.generate(seed, "string", group, mode))
