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
