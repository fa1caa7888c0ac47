"""Differential tests (tvmm vs unicorn), MUL/IMUL/DIV/IDIV (F6/F7 /4-/7) including #DE (divide by zero, quotient overflow),
IMUL 0FAF/69/6B.

Examples per (mode, group): 60 x TVMM_DIFF_EXAMPLES (default 1).
Reproduce a failure with ``check(gen.generate(seed, "muldiv", group, mode))``.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from . import gen
from .compare import COMMON_SETTINGS, MULTIPLIER, check

N = 60


@pytest.mark.diff
@pytest.mark.parametrize("group", gen.groups("muldiv"))
@pytest.mark.parametrize("mode", [32, 16])
@settings(max_examples=N * MULTIPLIER, deadline=None, derandomize=True, **COMMON_SETTINGS)
@given(seed=st.integers(0, 2 ** 64 - 1))
def test_diff_muldiv(mode, group, seed):
    check(gen.generate(seed, "muldiv", group, mode))
