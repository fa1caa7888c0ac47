"""Differential tests (tvmm vs unicorn), Control flow: Jcc short/near, JMP EB/E9/FF /4, LOOP/LOOPE/LOOPNE/JCXZ and a DEC/JNZ loop,
CALL E8/FF /2 to a RET (C3/C2 imm16) inside the snippet.

Examples per (mode, group): 40 x TVMM_DIFF_EXAMPLES (default 1).
Reproduce a failure with ``check(gen.generate(seed, "control", group, mode))``.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from . import gen
from .compare import COMMON_SETTINGS, MULTIPLIER, check

N = 40


@pytest.mark.diff
@pytest.mark.parametrize("group", gen.groups("control"))
@pytest.mark.parametrize("mode", [32, 16])
@settings(max_examples=N * MULTIPLIER, deadline=None, derandomize=True, **COMMON_SETTINGS)
@given(seed=st.integers(0, 2 ** 64 - 1))
def test_diff_control(mode, group, seed):
    check(gen.generate(seed, "control", group, mode))
