"""Differential tests (tvmm vs unicorn), Stack: PUSH/POP (50-5F, 68, 6A, FF /6, 8F /0), PUSHA/POPA, PUSHF/POPF, ENTER (levels 0..3)
and LEAVE.

Examples per (mode, group): 45 x TVMM_DIFF_EXAMPLES (default 1).
Reproduce a failure with ``check(gen.generate(seed, "stack", group, mode))``.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from . import gen
from .compare import COMMON_SETTINGS, MULTIPLIER, check

N = 45


@pytest.mark.diff
@pytest.mark.parametrize("group", gen.groups("stack"))
@pytest.mark.parametrize("mode", [32, 16])
@settings(max_examples=N * MULTIPLIER, deadline=None, derandomize=True, **COMMON_SETTINGS)
@given(seed=st.integers(0, 2 ** 64 - 1))
def test_diff_stack(mode, group, seed):
    check(gen.generate(seed, "stack", group, mode))
