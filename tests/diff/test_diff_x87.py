"""Differential tests (tvmm vs unicorn), x87 FPU: arithmetic in every form
(register, m32fp/m64fp, m16int/m32int) under random rounding and precision
control, loads and stores of every format, compares (FCOM/FUCOM/FICOM/FTST/
FXAM/FCOMI/FUCOMI/FCMOVcc), FNSTSW/FNSTCW/FLDCW/FNCLEX/FFREE/FINCSTP,
FSCALE/FXTRACT/constants, transcendentals within a bound, and MMX; operands biased
to zeros, denormals, infinities, NaNs and extreme exponents.  What unicorn
2.1.4 (QEMU 5.0's x87) gets wrong is not generated or not compared:
``gen_x87.UNICORN_EXCLUSIONS`` gives each case with the SDM's rule; the
directed tests (tests/machine/test_x87*.py) cover those against the SDM.

Examples per (mode, group): N x TVMM_DIFF_EXAMPLES (default 1).
Reproduce a failure with ``check(gen_x87.generate(seed, group, mode))``.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from . import gen_x87
from .compare import COMMON_SETTINGS, MULTIPLIER, check

N = 60


@pytest.mark.diff
@pytest.mark.parametrize("group", sorted(gen_x87.GROUPS))
@pytest.mark.parametrize("mode", [32, 16])
@settings(max_examples=N * MULTIPLIER, deadline=None, derandomize=True, **COMMON_SETTINGS)
@given(seed=st.integers(0, 2 ** 64 - 1))
def test_diff_x87(mode, group, seed):
    check(gen_x87.generate(seed, group, mode))


def test_exclusions_documented():
    """Every exclusion names its reason."""
    assert all(isinstance(v, str) and len(v) > 40 for v in gen_x87.UNICORN_EXCLUSIONS.values())
