"""The channels-first column-first kernels (any windows; 2 and 3 taps at stride 2, whose
column loops are specialised) against the NumPy reference, over every small geometry."""

import itertools

import numpy as np
import pytest

import numbapool
from numbapool.kernels.templates import cols_variant
from reference import ref_pool

GEOMETRIES = [dict(kernel_size=k, stride=2, padding=p, ceil_mode=c)
              for k, p, c in itertools.product((2, 3), (0, 1), (False, True)) if p <= k // 2]
GEOMETRIES += [dict(kernel_size=(2, 3), stride=(1, 3)), dict(kernel_size=3, stride=2, dilation=2)]


@pytest.mark.parametrize("name", ["max", "min", "avg", "sum", "lp"])
@pytest.mark.parametrize("opts", GEOMETRIES, ids=str)
def test_column_first_kernels(name, opts):
    rng = np.random.default_rng(11)
    extra = dict(p=2.0) if name == "lp" else {}
    for width in range(5, 12):
        x = rng.uniform(0.5, 1.5, (2, 3, 7, width))
        if name in ("max", "min"):
            x[0, 1, 2, width // 2] = np.nan
        got = numbapool.pool(name, x, **opts, **extra)
        want = ref_pool(name, x, **opts, **extra)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, err_msg=f"width {width}")


def test_the_specialised_loops_are_chosen():
    from numbapool.geometry import sliding_axis

    assert cols_variant(sliding_axis(9, 2, 2, 0, 0, 1, False)) == "forward_cols2"
    assert cols_variant(sliding_axis(9, 3, 2, 1, 1, 1, False)) == "forward_cols3"
    assert cols_variant(sliding_axis(9, 3, 2, 1, 1, 2, False)) == "forward_cols"  # dilated
    assert cols_variant(sliding_axis(9, 3, 1, 1, 1, 1, False)) == "forward_cols"


@pytest.mark.parametrize("name", ["avg", "lp"])
@pytest.mark.parametrize("height, width", [(5, 1100), (10, 201), (11, 201), (40, 9)])
def test_finished_in_runs_of_rows(name, height, width):
    """Smooth reductions finish FINISH_RUN (512) outputs or more at a time, in whole rows:
    one row per run (width 1100), two with a partial last run (201 wide, 9 output rows),
    two with full runs (10 output rows), or all rows in one (9 wide)."""
    from numbapool.kernels.templates import FINISH_RUN

    assert FINISH_RUN == 512
    rng = np.random.default_rng(12)
    x = rng.uniform(0.5, 1.5, (2, 3, height, width)).astype(np.float32)
    extra = dict(p=3.0) if name == "lp" else {}
    opts = dict(kernel_size=2, stride=1)
    got = numbapool.pool(name, x, **opts, **extra)
    want = ref_pool(name, x.astype(np.float64), **opts, **extra)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=0)
