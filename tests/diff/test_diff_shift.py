"""Differential tests (tvmm vs unicorn), Shifts and rotates: C0, C1, D0-D3 /0-/7 (counts 0..40 and beyond), SHLD/SHRD 0FA4/A5/AC/AD.

Examples per (mode, group): 75 x TVMM_DIFF_EXAMPLES (default 1).
Reproduce a failure with ``check(gen.generate(seed, "shift", group, mode))``.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from . import gen
from .compare import COMMON_SETTINGS, MULTIPLIER, check

N = 75


@pytest.mark.diff
@pytest.mark.parametrize("group", gen.groups("shift"))
@pytest.mark.parametrize("mode", [32, 16])
@settings(max_examples=N * MULTIPLIER, deadline=None, derandomize=True, **COMMON_SETTINGS)
@given(seed=st.integers(0, 2 ** 64 - 1))
def test_diff_shift(mode, group, seed):
    check(gen.generate(seed, "shift", group, mode))
