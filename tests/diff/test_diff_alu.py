"""Differential tests (tvmm vs unicorn), ALU family: ADD/OR/ADC/SBB/AND/SUB/XOR/CMP (00-3D, 80-83), INC/DEC (40-4F, FE/FF /0 /1),
TEST (84, 85, A8, A9, F6/F7 /0), NOT/NEG (F6/F7 /2 /3), XADD, CMPXCHG, CMPXCHG8B, with LOCK on memory forms.

Examples per (mode, group): 50 x TVMM_DIFF_EXAMPLES (default 1).
Reproduce a failure with ``check(gen.generate(seed, "alu", group, mode))``.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from . import gen
from .compare import COMMON_SETTINGS, MULTIPLIER, check

N = 50


@pytest.mark.diff
@pytest.mark.parametrize("group", gen.groups("alu"))
@pytest.mark.parametrize("mode", [32, 16])
@settings(max_examples=N * MULTIPLIER, deadline=None, derandomize=True, **COMMON_SETTINGS)
@given(seed=st.integers(0, 2 ** 64 - 1))
def test_diff_alu(mode, group, seed):
    check(gen.generate(seed, "alu", group, mode))
