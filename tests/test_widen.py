"""The conversion of input values to the accumulator's type (numbapool.kernels.widen)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import numbapool
from numbapool.kernels.templates import (
    CL_UNROLLED,
    MASKED_VARIANTS,
    VARIANTS,
    cl_fold_variant,
    kernel_source,
)
from numbapool.kernels.widen import widen


@numba.njit
def _widened(v, zero):
    return widen(v, zero)


@numba.njit
def _added(v, zero):
    return zero + v


@pytest.mark.parametrize("v, zero", [
    (np.float32(1.5), np.float32(0)),
    (np.float64(-2.25), np.float64(0)),
    (np.int8(-7), np.int64(0)),
    (np.uint8(200), np.uint64(0)),
    (np.int64(-3), np.float64(0)),
    (np.uint64(2**63 + 5), np.int64(0)),  # (NumPy promotes these two to float64)
    (np.float32(0.1), np.float64(0)),
    (True, np.int64(0)),
])
def test_widen_gives_the_type_and_value_of_the_addition(v, zero):
    got, want = _widened(v, zero), _added(v, zero)
    assert type(got) is type(want)
    assert got == want


def test_widen_keeps_the_sign_of_a_zero():
    assert np.signbit(_widened(np.float32(-0.0), np.float32(0)))
    assert not np.signbit(_added(np.float32(-0.0), np.float32(0)))  # (what it replaces)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("name", ["sum", "avg"])
def test_a_window_of_negative_zeros_sums_to_positive_zero(name, layout):
    # As NumPy's and PyTorch's sums, which start from +0.0: each window's first element
    # is converted by adding the zero (once a window), the others by widen alone.
    x = np.full((1, 3, 4, 4), -0.0, np.float32)
    if layout == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    y = numbapool.pool(name, x, 2, layout=layout)
    assert not np.signbit(x.reshape(-1)[:4].sum())
    assert y.shape == ((1, 3, 2, 2) if layout == "channels_first" else (1, 2, 2, 3))
    assert (y == 0).all() and not np.signbit(y).any()


def _calls(src: str, name: str) -> list[str]:
    return [line for line in src.splitlines() if f"{name}(" in line]


def test_cpu_kernels_convert_by_an_addition_once_a_window():
    """Every ``take`` gets its value through widen; ``zero +`` is left to ``init``."""
    red = numbapool.get("avg").reduction
    folds = [cl_fold_variant(red, "forward", shape) for shape in CL_UNROLLED]
    assert all(v != "forward" for v in folds)
    takes = 0
    for variant in [*VARIANTS["streaming"], *MASKED_VARIANTS, *folds]:
        for layout in ("channels_first", "channels_last"):
            try:
                src = kernel_source(red, layout, variant)
            except ValueError:  # (no such kernel for this layout)
                continue
            for line in _calls(src, "_take"):
                assert "zero + " not in line and "_widen(" in line, (layout, variant, line)
                takes += 1
            assert all("_init(" in line for line in src.splitlines() if "zero + " in line), \
                (layout, variant)
    assert takes > 20
