"""Differential tests (tvmm vs unicorn), Data movement: MOV (88-8B, A0-A3, B0-BF, C6, C7), LEA, XCHG (86, 87, 91-97), MOVZX/MOVSX,
CMOVcc, CBW/CWDE, CWD/CDQ, XLAT.

Examples per (mode, group): 40 x TVMM_DIFF_EXAMPLES (default 1).
Reproduce a failure with ``check(gen.generate(seed, "moves", group, mode))``.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from . import gen
from .compare import COMMON_SETTINGS, MULTIPLIER, check

N = 40


@pytest.mark.diff
@pytest.mark.parametrize("group", gen.groups("moves"))
@pytest.mark.parametrize("mode", [32, 16])
@settings(max_examples=N * MULTIPLIER, deadline=None, derandomize=True, **COMMON_SETTINGS)
@given(seed=st.integers(0, 2 ** 64 - 1))
def test_diff_moves(mode, group, seed):
    check(gen.generate(seed, "moves", group, mode))
