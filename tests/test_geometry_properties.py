"""Hypothesis property tests: random geometry (rank, kernel, stride, padding,
dilation, ceil_mode, layout) -> numbapool's output shape equals the formula
from the spec and its values equal the plain reference (tests/reference.py).
"""

import math
import os
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numbapool

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from reference import ref_pool, ref_pool_grad  # noqa: E402

CF = "channels_first"
CL = "channels_last"

SETTINGS = dict(deadline=None, derandomize=False)


# ---------------------------------------------------------------------------
# the spec's formulas, written out again independently of reference.py
# ---------------------------------------------------------------------------


def spec_pads(padding, spatial, kernel, stride, dilation):
    rank = len(spatial)
    if padding == "valid":
        return [(0, 0)] * rank
    if padding == "same":
        pads = []
        for L, k, s, d in zip(spatial, kernel, stride, dilation):
            out = math.ceil(L / s)
            total = max((out - 1) * s + (k - 1) * d + 1 - L, 0)
            pads.append((total // 2, total - total // 2))
        return pads
    if isinstance(padding, int):
        return [(padding, padding)] * rank
    return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


def spec_out_len(L, k, s, d, pb, pa, ceil_mode):
    eff = (k - 1) * d + 1
    num = L + pb + pa - eff
    if ceil_mode:
        out = math.ceil(num / s) + 1
        if (out - 1) * s >= L + pb:
            out -= 1
        return out
    return math.floor(num / s) + 1


def spec_has_empty_window(L, k, s, d, pb, out):
    for o in range(out):
        if not any(0 <= o * s - pb + j * d < L for j in range(k)):
            return True
    return False


# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------


def _per_axis(draw, values, as_int_allowed=True):
    values = tuple(values)
    if as_int_allowed and len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return values


@st.composite
def sliding_cases(draw, names=("max", "avg")):
    rank = draw(st.integers(1, 3))
    max_len = 8 if rank < 3 else 5
    spatial = tuple(draw(st.integers(1, max_len)) for _ in range(rank))
    kernel = tuple(draw(st.sampled_from([1, 2, 2, 3, 3, 4])) for _ in range(rank))
    dilation = tuple(draw(st.sampled_from([1, 1, 1, 2, 3])) for _ in range(rank))
    stride_t = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    stride = None if draw(st.booleans()) else _per_axis(draw, stride_t)
    eff_half = [((k - 1) * d + 1) // 2 for k, d in zip(kernel, dilation)]
    kind = draw(st.sampled_from(["int", "per_axis", "pairs", "same", "valid"]))
    if kind == "int":
        padding = draw(st.integers(0, min(eff_half)))
    elif kind == "per_axis":
        padding = tuple(draw(st.integers(0, h)) for h in eff_half)
    elif kind == "pairs":
        padding = tuple((draw(st.integers(0, h)), draw(st.integers(0, h)))
                        for h in eff_half)
    else:
        padding = kind
    name = draw(st.sampled_from(names))
    opts = dict(
        kernel_size=_per_axis(draw, kernel),
        stride=stride,
        padding=padding,
        dilation=_per_axis(draw, dilation),
        # ceil_mode + 'same' is covered by a dedicated test in
        # test_reference_values.py (the library currently rejects it)
        ceil_mode=False if padding == "same" else draw(st.booleans()),
        layout=draw(st.sampled_from([CF, CL])),
    )
    if name == "avg":
        cip = draw(st.sampled_from([None, True, False]))
        if cip is not None:
            opts["count_include_pad"] = cip
        if draw(st.integers(0, 4)) == 0:
            opts["divisor_override"] = draw(st.integers(1, 5))
    n = draw(st.integers(1, 2))
    c = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    return name, spatial, n, c, opts, seed


def _make_x(name, spatial, n, c, layout, seed):
    shape = (n, c) + spatial
    rng = np.random.default_rng(seed)
    if name in ("max", "min", "adaptive_max"):
        x = rng.permutation(int(np.prod(shape))).reshape(shape) / 8.0 - 3.0
    else:
        x = rng.standard_normal(shape)
    if layout == CL:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    return x


def _expected_geometry(spatial, opts):
    rank = len(spatial)

    def tup(v):
        return (v,) * rank if isinstance(v, int) else tuple(v)

    kernel = tup(opts["kernel_size"])
    stride = kernel if opts["stride"] is None else tup(opts["stride"])
    dilation = tup(opts["dilation"])
    pads = spec_pads(opts["padding"], spatial, kernel, stride, dilation)
    too_big = any(L + pb + pa < (k - 1) * d + 1 for L, k, d, (pb, pa)
                  in zip(spatial, kernel, dilation, pads))
    if too_big:
        return None, True
    out = tuple(spec_out_len(L, k, s, d, pb, pa, opts["ceil_mode"])
                for L, k, s, d, (pb, pa)
                in zip(spatial, kernel, stride, dilation, pads))
    empty = any(spec_has_empty_window(L, k, s, d, pb, o)
                for L, k, s, d, (pb, _), o
                in zip(spatial, kernel, stride, dilation, pads, out))
    if opts["padding"] == "same":
        assert out == tuple(math.ceil(L / s) for L, s in zip(spatial, stride))
    return out, empty


def _layout_shape(n, c, out, layout):
    return (n, c) + out if layout == CF else (n,) + out + (c,)


# ---------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------


@settings(max_examples=60, **SETTINGS)
@given(case=sliding_cases())
def test_sliding_shape_and_values(case):
    name, spatial, n, c, opts, seed = case
    x = _make_x(name, spatial, n, c, opts["layout"], seed)
    out, invalid = _expected_geometry(spatial, opts)
    if invalid:
        # kernel larger than the padded input, or a window with no real
        # input element: the spec requires ValueError
        with pytest.raises(ValueError):
            ref_pool(name, x, **opts)
        with pytest.raises(ValueError):
            numbapool.pool(name, x, **opts)
        return
    got = numbapool.pool(name, x, **opts)
    assert got.shape == _layout_shape(n, c, out, opts["layout"])
    expected = ref_pool(name, x, **opts)
    assert got.dtype == expected.dtype == np.float64
    if name == "max":
        np.testing.assert_array_equal(got, expected)
        v, idx = numbapool.pool(name, x, return_indices=True, **opts)
        ev, eidx = ref_pool(name, x, return_indices=True, **opts)
        np.testing.assert_array_equal(v, ev)
        np.testing.assert_array_equal(idx, eidx)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@settings(max_examples=40, **SETTINGS)
@given(case=sliding_cases(names=("max", "avg", "sum", "min")))
def test_sliding_grad(case):
    name, spatial, n, c, opts, seed = case
    x = _make_x("max" if name == "min" else name, spatial, n, c,
                opts["layout"], seed)
    out, invalid = _expected_geometry(spatial, opts)
    if invalid:
        with pytest.raises(ValueError):
            numbapool.pool_grad(name, x, np.ones(1), **opts)
        return
    g = np.random.default_rng(seed + 1).standard_normal(
        _layout_shape(n, c, out, opts["layout"]))
    got = numbapool.pool_grad(name, x, g, **opts)
    assert got.shape == x.shape
    np.testing.assert_allclose(got, ref_pool_grad(name, x, g, **opts),
                               rtol=1e-10, atol=1e-12)


@settings(max_examples=40, **SETTINGS)
@given(
    name=st.sampled_from(["adaptive_max", "adaptive_avg"]),
    spatial_out=st.integers(1, 3).flatmap(
        lambda r: st.tuples(st.lists(st.integers(1, 7), min_size=r, max_size=r),
                            st.lists(st.integers(1, 8), min_size=r, max_size=r))),
    layout=st.sampled_from([CF, CL]),
    seed=st.integers(0, 2**31 - 1),
)
def test_adaptive_shape_and_values(name, spatial_out, layout, seed):
    spatial, osz = map(tuple, spatial_out)
    x = _make_x(name, spatial, 2, 2, layout, seed)
    output_size = osz[0] if len(set(osz)) == 1 else osz
    got = numbapool.pool(name, x, output_size=output_size, layout=layout)
    assert got.shape == _layout_shape(2, 2, osz, layout)
    expected = ref_pool(name, x, output_size=output_size, layout=layout)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    g = np.random.default_rng(seed + 1).standard_normal(got.shape)
    np.testing.assert_allclose(
        numbapool.pool_grad(name, x, g, output_size=output_size, layout=layout),
        ref_pool_grad(name, x, g, output_size=output_size, layout=layout),
        rtol=1e-10, atol=1e-12)
