"""Differential tests (tvmm vs unicorn), Flag instructions (LAHF, SAHF, CLC, STC, CMC, CLD, STD, SALC), NOP (90, 0F 1F /0), INT3,
INTO, UD2, BOUND (#BR).

Examples per (mode, group): 55 x TVMM_DIFF_EXAMPLES (default 1).
Reproduce a failure with ``check(gen.generate(seed, "misc", group, mode))``.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from . import gen
from .compare import COMMON_SETTINGS, MULTIPLIER, check

N = 55


@pytest.mark.diff
@pytest.mark.parametrize("group", gen.groups("misc"))
@pytest.mark.parametrize("mode", [32, 16])
@settings(max_examples=N * MULTIPLIER, deadline=None, derandomize=True, **COMMON_SETTINGS)
@given(seed=st.integers(0, 2 ** 64 - 1))
def test_diff_misc(mode, group, seed):
    check(gen.generate(seed, "misc", group, mode))
