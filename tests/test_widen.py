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
    # the pairs the CPU kernels see (Reduction.acc_dtype): a float with a zero of its type,
    # integers with int64, uint64 or float64 (bool arrays reach them as uint8)
    (np.float32(1.5), np.float32(0)),
    (np.float64(-2.25), np.float64(0)),
    (np.int8(-7), np.int64(0)),
    (np.uint8(200), np.uint64(0)),
    (np.uint32(4_000_000_000), np.uint64(0)),
    (np.int64(-3), np.float64(0)),
    (np.int8(-7), np.float64(0)),
    (np.uint64(2**63 + 5), np.float64(0)),  # (unsigned to float: not the signed conversion)
    # and others the intrinsic takes
    (np.float32(0.1), np.float64(0)),
    (True, np.int64(0)),
])
def test_widen_gives_the_type_and_value_of_the_addition(v, zero):
    got, want = _widened(v, zero), _added(v, zero)
    assert got == want
    sig = (numba.typeof(v), numba.typeof(zero))
    assert (_widened.overloads[sig].signature.return_type
            == _added.overloads[sig].signature.return_type)


def test_widen_keeps_the_sign_of_a_zero():
    assert np.signbit(_widened(np.float32(-0.0), np.float32(0)))
    assert not np.signbit(_added(np.float32(-0.0), np.float32(0)))  # (what it replaces)


_NEGATIVE_ZERO_CASES = [
    # (pooler, options, layout): kernels whose windows start with init and go on with take
    ("sum", dict(kernel_size=2), "channels_last"),  # a folded 2x2 loop
    ("avg", dict(kernel_size=3, stride=2, padding=1), "channels_last"),  # + window loops
    ("lp", dict(kernel_size=2, p=1.0), "channels_last"),  # not branchless: window loops
    ("lp", dict(kernel_size=2, p=1.0), "channels_first"),  # a row at a time
    ("avg", dict(kernel_size=2), "channels_first"),  # column-first: init on every element
    ("global_avg", {}, "channels_first"),  # the whole plane
    ("adaptive_avg", dict(output_size=3), "channels_last"),
    ("sum", dict(kernel_size=2), "channels_first"),
]


@pytest.mark.parametrize("name, options, layout", _NEGATIVE_ZERO_CASES)
def test_a_window_of_negative_zeros_gives_positive_zero(name, options, layout):
    # As NumPy's and PyTorch's sums, which start from +0.0: each window's first element
    # is converted by adding the zero (once a window), the others by widen alone, which
    # keeps their sign (-0.0 + -0.0 is -0.0).
    x = np.full((1, 3, 6, 6), -0.0, np.float32)
    if layout == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    y = numbapool.pool(name, x, layout=layout, **options)
    assert not np.signbit(x.reshape(-1)[:4].sum())
    assert y.size >= 3 and (y == 0).all()
    assert not np.signbit(y).any(), (name, options, layout)


def _calls(src: str, name: str) -> list[str]:
    return [line for line in src.splitlines() if f"{name}(" in line]


def test_cpu_kernels_convert_by_an_addition_once_a_window():
    """Every ``take`` gets its value through widen, every ``init`` through ``zero +``, and
    nothing else adds the zero to convert."""
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
            for line in _calls(src, "_init"):
                assert "zero + " in line and "_widen(" not in line, (layout, variant, line)
            assert all("_init(" in line for line in src.splitlines() if "zero + " in line), \
                (layout, variant)
    assert takes > 20
