"""Tests for the fractional pooling window geometry (PyTorch and Graham/TensorFlow rules)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from numbapool_fractional.sequences import (  # noqa: E402
    _checked_pseudo_random_sequence,
    _pseudo_random_sequence,
    _pseudo_random_u_max,
    graham_output_size,
    graham_sequence,
    graham_windows,
    torch_axis_starts,
    torch_output_size,
    torch_sample_column,
)

TORCH_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
# Largest integer up to which every integer is exact in the dtype (plane values stay below it).
EXACT_INTS = {"float64": 2**53, "float32": 2**24, "float16": 2048, "bfloat16": 256}


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def ref_max_pool(x, starts, kernel):
    """Plain NumPy max pooling of ``x`` (P, *spatial) over windows ``starts[d][p, o_d] + [0, k_d)``.

    Returns values and flat (per-plane, row-major) indices of the first maximum in row-major
    window order, which is what torch's kernel reports.
    """
    n_planes, spatial = x.shape[0], x.shape[1:]
    out_shape = tuple(s.shape[1] for s in starts)
    values = np.empty((n_planes, *out_shape), dtype=x.dtype)
    indices = np.empty((n_planes, *out_shape), dtype=np.int64)
    for p in range(n_planes):
        for o in np.ndindex(*out_shape):
            lo = [int(s[p, od]) for s, od in zip(starts, o)]
            window = x[p][tuple(slice(l, l + k) for l, k in zip(lo, kernel))]
            assert window.shape == tuple(kernel), "window runs past the input"
            j = np.unravel_index(np.argmax(window), window.shape)
            values[p][o] = window[j]
            indices[p][o] = np.ravel_multi_index(tuple(l + jj for l, jj in zip(lo, j)), spatial)
    return values, indices


def make_case(rng, batch, channels, spatial, dtype):
    """Plane-wise permuted integer values (exact in ``dtype``) and samples rounded to ``dtype``.

    Returns float64 NumPy arrays ``x`` (N, C, *spatial) and ``samples`` (N, C, rank); the
    samples are exactly representable in ``dtype``.
    """
    size = int(np.prod(spatial))
    planes = [rng.permutation(size) % EXACT_INTS[dtype] for _ in range(batch * channels)]
    x = np.stack(planes).reshape(batch, channels, *spatial).astype(np.float64)
    samples = torch.from_numpy(rng.random((batch, channels, len(spatial))))
    samples = samples.to(TORCH_DTYPES[dtype]).double().numpy()
    return x, samples


def torch_pool(x, kernel, output_size, samples, dtype):
    """torch fractional max pooling (2-D or 3-D) of float64 arrays cast to ``dtype``."""
    fn = {2: F.fractional_max_pool2d, 3: F.fractional_max_pool3d}[len(kernel)]
    tdt = TORCH_DTYPES[dtype]
    y, i = fn(
        torch.from_numpy(x).to(tdt),
        tuple(kernel),
        output_size=tuple(output_size),
        _random_samples=torch.from_numpy(samples).to(tdt),
        return_indices=True,
    )
    return y.double().numpy(), i.numpy()


def our_starts(samples, spatial, kernel, output_size, dtype, column=torch_sample_column):
    rank = len(spatial)
    return [
        torch_axis_starts(
            samples[..., column(rank, a)].reshape(-1), spatial[a], output_size[a], kernel[a], dtype
        )
        for a in range(rank)
    ]


def our_pool(x, samples, kernel, output_size, dtype, column=torch_sample_column):
    batch, channels, *spatial = x.shape
    starts = our_starts(samples, spatial, kernel, output_size, dtype, column)
    values, indices = ref_max_pool(x.reshape(batch * channels, *spatial), starts, kernel)
    shape = (batch, channels, *output_size)
    return values.reshape(shape), indices.reshape(shape)


def increasing(shape):
    """Row-major increasing planes: every window's maximum is its last element, so the reported
    index changes whenever a window start changes."""
    spatial = shape[2:]
    plane = np.arange(np.prod(spatial), dtype=np.float64).reshape(spatial)
    return np.broadcast_to(plane, shape).copy()


def check_against_torch(x, samples, kernel, output_size, dtype):
    ty, ti = torch_pool(x, kernel, output_size, samples, dtype)
    oy, oi = our_pool(x, samples, kernel, output_size, dtype)
    np.testing.assert_array_equal(oi, ti)
    np.testing.assert_array_equal(oy, ty)


# ----------------------------------------------------------------------------------------------
# PyTorch rule against torch
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    ("shape", "kernel", "output_size"),
    [
        ((1, 1, 8, 8), (3, 3), (6, 6)),  # output + kernel - 1 == input (torch's limit)
        ((2, 3, 11, 17), (2, 3), (5, 7)),  # non-square kernel and output
        ((2, 2, 9, 10), (3, 2), (1, 4)),  # output_size 1 along H
        ((1, 2, 9, 10), (2, 4), (1, 1)),  # output_size 1 along both axes
        ((1, 2, 5, 6), (1, 1), (5, 6)),  # identity
        ((3, 1, 20, 13), (4, 1), (9, 13)),
    ],
)
def test_torch_2d_cases(shape, kernel, output_size, dtype):
    rng = np.random.default_rng(sum(shape) + sum(kernel))
    x, samples = make_case(rng, shape[0], shape[1], shape[2:], dtype)
    check_against_torch(x, samples, kernel, output_size, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    ("shape", "kernel", "output_size"),
    [
        ((2, 2, 7, 8, 9), (2, 3, 2), (3, 4, 5)),
        ((1, 3, 6, 9, 8), (2, 2, 3), (1, 5, 4)),  # output_size 1 along T
        ((1, 1, 5, 6, 7), (2, 2, 2), (3, 4, 5)),  # output + kernel - 1 == input - 1 (3-D limit)
        ((2, 1, 4, 5, 6), (1, 1, 1), (3, 1, 5)),
    ],
)
def test_torch_3d_cases(shape, kernel, output_size, dtype):
    rng = np.random.default_rng(sum(shape) + sum(kernel))
    x, samples = make_case(rng, shape[0], shape[1], shape[2:], dtype)
    check_against_torch(x, samples, kernel, output_size, dtype)


@st.composite
def torch_geometries(draw, rank):
    kernel, output_size, spatial = [], [], []
    for _ in range(rank):
        k = draw(st.integers(1, 3))
        o = draw(st.integers(1, 6))
        extra = draw(st.integers(0, 6)) + (1 if rank == 3 else 0)
        kernel.append(k)
        output_size.append(o)
        spatial.append(o + k - 1 + extra)
    return tuple(spatial), tuple(kernel), tuple(output_size)


@settings(max_examples=40, deadline=None)
@given(
    geometry=torch_geometries(2),
    batch=st.integers(1, 2),
    channels=st.integers(1, 3),
    dtype=st.sampled_from(sorted(TORCH_DTYPES)),
    seed=st.integers(0, 2**32 - 1),
)
def test_torch_2d_property(geometry, batch, channels, dtype, seed):
    spatial, kernel, output_size = geometry
    x, samples = make_case(np.random.default_rng(seed), batch, channels, spatial, dtype)
    check_against_torch(x, samples, kernel, output_size, dtype)


@settings(max_examples=25, deadline=None)
@given(
    geometry=torch_geometries(3),
    batch=st.integers(1, 2),
    channels=st.integers(1, 2),
    dtype=st.sampled_from(sorted(TORCH_DTYPES)),
    seed=st.integers(0, 2**32 - 1),
)
def test_torch_3d_property(geometry, batch, channels, dtype, seed):
    spatial, kernel, output_size = geometry
    x, samples = make_case(np.random.default_rng(seed), batch, channels, spatial, dtype)
    check_against_torch(x, samples, kernel, output_size, dtype)


def test_sample_column_mapping():
    assert torch_sample_column(1, 0) == 0
    assert [torch_sample_column(2, a) for a in range(2)] == [1, 0]  # (H, W) <- columns (1, 0)
    assert [torch_sample_column(3, a) for a in range(3)] == [0, 1, 2]  # (T, H, W) <- (0, 1, 2)
    assert torch_sample_column(2, -1) == 0
    for rank, axis in [(0, 0), (4, 0), (2, 2), (3, -4)]:
        with pytest.raises(ValueError, match="rank|axis"):
            torch_sample_column(rank, axis)


@pytest.mark.parametrize(
    ("shape", "kernel", "output_size", "wrong"),
    [
        ((1, 2, 40, 37), (2, 3), (17, 13), lambda rank, axis: axis),  # 2-D read as (H, W)
        ((1, 2, 30, 31, 29), (2, 2, 3), (11, 13, 12), lambda rank, axis: rank - 1 - axis),
    ],
)
def test_sample_column_mapping_is_discriminated(shape, kernel, output_size, wrong):
    """The torch comparison fails with the other plausible column mapping."""
    rng = np.random.default_rng(3)
    _, samples = make_case(rng, shape[0], shape[1], shape[2:], "float64")
    x = increasing(shape)
    samples[..., 0], samples[..., -1] = 0.05, 0.95
    _, ti = torch_pool(x, kernel, output_size, samples, "float64")
    _, oi = our_pool(x, samples, kernel, output_size, "float64")
    _, wi = our_pool(x, samples, kernel, output_size, "float64", column=wrong)
    np.testing.assert_array_equal(oi, ti)
    assert not np.array_equal(wi, ti)


# (dtype, sample, input, output, kernel) where arithmetic in `dtype` gives other starts than in
# float64 (and, for the 16-bit types, than in float32); found by random search.
DTYPE_CASES = [
    ("float32", 0.19587442278862, 100, 26, 3),
    ("float16", 0.62255859375, 25, 16, 1),
    ("bfloat16", 0.04345703125, 28, 19, 2),
]


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize(("dtype", "u", "length", "out", "k"), DTYPE_CASES)
def test_torch_arithmetic_in_input_dtype(dtype, u, length, out, k, axis):
    """torch rounds in the input's dtype: the test can tell float32/16 from float64 rounding."""
    own = torch_axis_starts(np.array([u]), length, out, k, dtype)
    wider = ["float64"] + (["float32"] if dtype != "float32" else [])
    for other in wider:
        assert not np.array_equal(own, torch_axis_starts(np.array([u]), length, out, k, other))

    spatial, kernel, output_size = [5, 5], [2, 2], [3, 3]
    spatial[axis], kernel[axis], output_size[axis] = length, k, out
    rng = np.random.default_rng(0)
    _, samples = make_case(rng, 1, 2, tuple(spatial), dtype)
    x = increasing((1, 2, *spatial))
    samples[..., torch_sample_column(2, axis)] = u
    _, ti = torch_pool(x, kernel, output_size, samples, dtype)
    _, oi = our_pool(x, samples, kernel, output_size, dtype)
    np.testing.assert_array_equal(oi, ti)
    for other in wider:
        _, wi = our_pool(x, samples, kernel, output_size, other)
        assert not np.array_equal(wi, ti)
    # float64 input: torch follows float64 arithmetic.
    _, ti64 = torch_pool(x, kernel, output_size, samples, "float64")
    _, oi64 = our_pool(x, samples, kernel, output_size, "float64")
    np.testing.assert_array_equal(oi64, ti64)
    assert not np.array_equal(oi64, oi)


@pytest.mark.parametrize(
    ("dtype", "u", "length", "out", "k"),
    [("bfloat16", 0.74609375, 238, 194, 2), ("float16", 0.6865234375, 1806, 1784, 1)],
)
def test_low_precision_out_of_bounds_raises(dtype, u, length, out, k):
    """16-bit rounding can push a window past the end: torch asserts, we raise ValueError."""
    with pytest.raises(ValueError, match="outside the input"):
        torch_axis_starts(np.array([u]), length, out, k, dtype)
    x = torch.zeros(1, 1, 1, length, dtype=TORCH_DTYPES[dtype])
    s = torch.full((1, 1, 2), u, dtype=TORCH_DTYPES[dtype])
    with pytest.raises(RuntimeError):
        F.fractional_max_pool2d(x, (1, k), output_size=(1, out), _random_samples=s)


def test_rank1_matches_2d_emulation():
    """A 1-D pool emulated as (N, C, 1, L) in 2-D is driven by torch_sample_column(1, 0)."""
    rng = np.random.default_rng(11)
    x, samples = make_case(rng, 2, 3, (1, 23), "float32")
    _, ti = torch_pool(x, (1, 3), (1, 9), samples, "float32")
    col = samples[..., torch_sample_column(1, 0)].reshape(-1)
    starts = torch_axis_starts(col, 23, 9, 3, np.float32)
    _, oi = ref_max_pool(x.reshape(6, 23), [starts], (3,))
    np.testing.assert_array_equal(oi, ti.reshape(6, 9))


def test_torch_axis_starts_basics():
    starts = torch_axis_starts(np.array([0.0, 0.5, 0.999]), 10, 4, 2, np.float64)
    assert starts.dtype == np.int64 and starts.shape == (3, 4)
    assert np.all(starts[:, 0] == 0) and np.all(starts[:, -1] == 8)
    assert np.all(np.diff(starts, axis=1) >= 0)
    np.testing.assert_array_equal(torch_axis_starts(np.array([0.3]), 7, 1, 3, np.float32), [[4]])
    assert torch_axis_starts(np.zeros(0), 7, 3, 3, np.float32).shape == (0, 3)
    # dtype spellings
    a = torch_axis_starts(np.array([0.3]), 50, 20, 2, np.float32)
    for spelling in ("float32", np.dtype("float32"), torch.float32):
        np.testing.assert_array_equal(torch_axis_starts(np.array([0.3]), 50, 20, 2, spelling), a)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.array([0.5]), 8, 7, 3, np.float32), "output_size"),
        ((np.array([0.5]), 8, 0, 3, np.float32), "output_size"),
        ((np.array([0.5]), 8, 3, 0, np.float32), "pool_size"),
        ((np.array([0.5]), 0, 1, 1, np.float32), "input_size"),
        ((np.array([[0.5]]), 8, 3, 2, np.float32), "samples"),
        ((np.array([np.nan]), 8, 3, 2, np.float32), "samples"),
        ((np.array([0.5]), 8, 3, 2, np.int32), "dtype"),
        ((np.array([0.5]), 8, 3, 2, "float8"), "dtype"),
    ],
)
def test_torch_axis_starts_errors(args, match):
    with pytest.raises(ValueError, match=match):
        torch_axis_starts(*args)


def test_torch_output_size_values():
    assert torch_output_size(8, 3, 6) == 6
    assert torch_output_size(50, 3, output_ratio=0.5) == 25
    assert torch_output_size(32, 2, output_ratio=0.37) == int(32 * 0.37)
    assert torch_output_size(8, 3, 5, rank=3) == 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(input_size=8, kernel_size=3), "exactly one"),
        (dict(input_size=8, kernel_size=3, output_size=4, output_ratio=0.5), "exactly one"),
        (dict(input_size=8, kernel_size=3, output_ratio=1.0), "output_ratio"),
        (dict(input_size=8, kernel_size=3, output_ratio=0.0), "output_ratio"),
        (dict(input_size=8, kernel_size=3, output_ratio=0.1), "output_ratio"),  # int(0.8) == 0
        (dict(input_size=8, kernel_size=3, output_ratio=float("nan")), "output_ratio"),
        (dict(input_size=8, kernel_size=3, output_size=0), "output_size"),
        (dict(input_size=8, kernel_size=0, output_size=2), "kernel_size"),
        (dict(input_size=8, kernel_size=3, output_size=7), "kernel_size"),
        (dict(input_size=8, kernel_size=3, output_ratio=0.9), "kernel_size"),
        (dict(input_size=8, kernel_size=3, output_size=6, rank=3), "kernel_size"),
        (dict(input_size=8, kernel_size=3, output_size=2, rank=4), "rank"),
    ],
)
def test_torch_output_size_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        torch_output_size(**kwargs)


@settings(max_examples=40, deadline=None)
@given(
    length=st.integers(1, 9),
    k=st.integers(1, 4),
    out=st.integers(1, 10),
    rank=st.sampled_from([2, 3]),
)
def test_torch_output_size_agrees_with_torch_checks(length, k, out, rank):
    """torch_output_size raises exactly when torch rejects the geometry."""
    shape = (1, 1) + (length,) * rank
    fn = {2: F.fractional_max_pool2d, 3: F.fractional_max_pool3d}[rank]
    try:
        fn(torch.rand(shape, dtype=torch.float64), k, output_size=out)
        torch_ok = True
    except RuntimeError:
        torch_ok = False
    try:
        ours = torch_output_size(length, k, out, rank=rank)
    except ValueError:
        ours = None
    assert (ours is not None) == torch_ok
    if torch_ok:
        assert ours == out


@settings(max_examples=30, deadline=None)
@given(
    h=st.integers(4, 40),
    w=st.integers(4, 40),
    rh=st.floats(0.05, 0.95),
    rw=st.floats(0.05, 0.95),
)
def test_torch_output_ratio_matches_torch(h, w, rh, rw):
    if 0 in (int(h * rh), int(w * rw)):
        return  # torch happily returns an empty output; we raise (checked elsewhere)
    expected = (torch_output_size(h, 1, output_ratio=rh), torch_output_size(w, 1, output_ratio=rw))
    y = F.fractional_max_pool2d(torch.rand(1, 1, h, w), 1, output_ratio=(rh, rw))
    assert tuple(y.shape[-2:]) == expected


# ----------------------------------------------------------------------------------------------
# Graham / TensorFlow
# ----------------------------------------------------------------------------------------------


@st.composite
def lengths(draw, max_input=300):
    length = draw(st.integers(1, max_input))
    out = draw(st.integers(1, length))
    return length, out


@settings(max_examples=200, deadline=None)
@given(sizes=lengths(), seed=st.integers(0, 2**64 - 1), pseudo_random=st.booleans())
def test_graham_sequence_properties(sizes, seed, pseudo_random):
    length, out = sizes
    seq = graham_sequence(length, out, np.random.default_rng(seed), pseudo_random)
    assert seq.dtype == np.int64 and seq.shape == (out + 1,)
    assert seq[0] == 0 and seq[-1] == length
    steps = np.diff(seq)
    assert np.all(steps > 0)
    # TensorFlow's DCHECK: k <= step <= k + 1 with k = L // O, i.e. floor/ceil of alpha = L / O.
    k = length // out
    assert set(steps.tolist()) <= {k, k + 1}
    assert np.count_nonzero(steps == k + 1) == length % out
    again = graham_sequence(length, out, np.random.default_rng(seed), pseudo_random)
    np.testing.assert_array_equal(seq, again)


@settings(max_examples=200, deadline=None)
@given(sizes=lengths(1000), where=st.sampled_from(["zero", "top", "random"]), frac=st.floats(0, 1))
def test_graham_pseudo_random_formula_and_bounds(sizes, where, frac):
    """a_i = ceil(alpha (i + u)) - 1, and the steps stay in {k, k+1} for every u in [0, max_u).

    At u = nextafter(max_u, 0) (the largest draw) rounding can break TensorFlow's own bound;
    the checked variant then falls back to u = 0.
    """
    length, out = sizes
    if length % out == 0:
        return  # handled without drawing u
    u_max = _pseudo_random_u_max(length, out)
    assert u_max > 0
    u = {"zero": 0.0, "top": np.nextafter(u_max, 0.0), "random": min(frac, 0.999) * u_max}[where]
    raw = _pseudo_random_sequence(length, out, u)
    alpha = length / out
    i = np.arange(1, out)
    np.testing.assert_array_equal(raw[1:-1], np.ceil(alpha * (i + u)).astype(np.int64) - 1)
    assert raw[0] == 0 and raw[-1] == length

    k = length // out
    seq = _checked_pseudo_random_sequence(length, out, u)
    assert set(np.diff(seq).tolist()) <= {k, k + 1}
    if set(np.diff(raw).tolist()) <= {k, k + 1}:
        np.testing.assert_array_equal(seq, raw)
    else:
        assert where == "top"  # only the rounding edge breaks the bounds
        np.testing.assert_array_equal(seq, _pseudo_random_sequence(length, out, 0.0))


def test_graham_pseudo_random_rounding_edge():
    # Found by hypothesis: at the largest u the last step of the raw formula is k - 1 = 1.
    u = np.nextafter(_pseudo_random_u_max(715, 303), 0.0)
    assert np.diff(_pseudo_random_sequence(715, 303, u))[-1] == 1
    assert set(np.diff(_checked_pseudo_random_sequence(715, 303, u)).tolist()) == {2, 3}


def test_graham_pseudo_random_matches_tensorflow_comment_example():
    # fractional_pool_common.cc: alpha = 2.3, u = 0.7, Nin = 23, Nout = 10 gives the 1-based
    # sequence [1, 4, 7, 9, 11, 14, 16, 18, 21, 23, 24] (u > u_max2 = 0.565: last gap is 1).
    tf = np.array([1, 4, 7, 9, 11, 14, 16, 18, 21, 23, 24])
    np.testing.assert_array_equal(_pseudo_random_sequence(23, 10, 0.7), tf - 1)
    assert _pseudo_random_u_max(23, 10) == pytest.approx(0.5652, abs=1e-4)


def test_graham_pseudo_random_example_draw():
    # u = rng.random() * max_u with the generator's first double.
    rng = np.random.default_rng(1234)
    u = np.random.default_rng(1234).random() * _pseudo_random_u_max(25, 17)
    seq = graham_sequence(25, 17, rng, pseudo_random=True)
    alpha = 25 / 17
    expected = [0] + [int(np.ceil(alpha * (i + u))) - 1 for i in range(1, 17)] + [25]
    assert seq.tolist() == expected


def test_graham_random_is_shuffled_and_divisible_draws_nothing():
    orders = {
        tuple(np.diff(graham_sequence(10, 7, np.random.default_rng(s), False)).tolist())
        for s in range(40)
    }
    assert len(orders) > 5  # 35 possible orders of three 2s and four 1s
    for pseudo in (False, True):
        rng = np.random.default_rng(5)
        np.testing.assert_array_equal(graham_sequence(12, 4, rng, pseudo), [0, 3, 6, 9, 12])
        assert rng.random() == np.random.default_rng(5).random()  # no draw consumed


@settings(max_examples=200, deadline=None)
@given(sizes=lengths(), seed=st.integers(0, 2**32 - 1), pseudo_random=st.booleans())
def test_graham_windows_properties(sizes, seed, pseudo_random):
    length, out = sizes
    seq = graham_sequence(length, out, np.random.default_rng(seed), pseudo_random)

    start, count = graham_windows(seq, length, overlapping=False)
    assert start.dtype == np.int64 and count.dtype == np.int64
    assert start.shape == count.shape == (out,)
    np.testing.assert_array_equal(start, seq[:-1])
    np.testing.assert_array_equal(start + count, seq[1:])  # a partition of [0, L)
    covered = np.concatenate([np.arange(s, s + c) for s, c in zip(start, count)])
    np.testing.assert_array_equal(covered, np.arange(length))

    ostart, ocount = graham_windows(seq, length, overlapping=True)
    np.testing.assert_array_equal(ostart, start)
    last = ostart + ocount - 1
    np.testing.assert_array_equal(last[:-1], ostart[1:])  # shared boundary element
    assert last[-1] == length - 1  # clipped to the input
    np.testing.assert_array_equal(ocount[:-1], count[:-1] + 1)
    assert ocount[-1] == count[-1]
    hits = np.bincount(
        np.concatenate([np.arange(s, s + c) for s, c in zip(ostart, ocount)]), minlength=length
    )
    assert np.all(hits >= 1)
    np.testing.assert_array_equal(np.flatnonzero(hits == 2), seq[1:-1])


def test_graham_windows_examples():
    seq = np.array([0, 2, 3, 5])
    s, c = graham_windows(seq, 5, overlapping=False)
    assert s.tolist() == [0, 2, 3] and c.tolist() == [2, 1, 2]
    s, c = graham_windows(seq, 5, overlapping=True)
    assert s.tolist() == [0, 2, 3] and c.tolist() == [3, 2, 2]
    s, c = graham_windows(np.array([0, 4]), 4, overlapping=True)
    assert s.tolist() == [0] and c.tolist() == [4]


@pytest.mark.parametrize(
    ("sequence", "length", "match"),
    [
        ([0, 2, 2, 5], 5, "strictly increasing"),
        ([1, 2, 5], 5, "start at 0"),
        ([0, 2, 4], 5, "end at input_size"),
        ([0], 0, "input_size"),
        ([5], 5, "at least 2"),
        ([[0, 5]], 5, "1-D"),
    ],
)
def test_graham_windows_errors(sequence, length, match):
    with pytest.raises(ValueError, match=match):
        graham_windows(np.array(sequence), length, overlapping=False)
    with pytest.raises(TypeError, match="integer"):
        graham_windows(np.array([0.0, 5.0]), 5, overlapping=False)


def test_graham_sequence_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="output_size"):
        graham_sequence(5, 6, rng, True)
    with pytest.raises(ValueError, match="output_size"):
        graham_sequence(5, 0, rng, True)
    with pytest.raises(ValueError, match="input_size"):
        graham_sequence(0, 1, rng, True)
    with pytest.raises(TypeError, match="rng"):
        graham_sequence(5, 3, 0, True)
    with pytest.raises(TypeError, match="output_size"):
        graham_sequence(5, 3.0, rng, True)


def test_graham_output_size():
    assert graham_output_size(25, 17) == 17
    assert graham_output_size(25, output_ratio=1 / 1.44) == 17
    assert graham_output_size(25, output_ratio=1.0) == 25
    assert graham_output_size(25, 25) == 25
    for kwargs, match in [
        (dict(), "exactly one"),
        (dict(output_size=3, output_ratio=0.5), "exactly one"),
        (dict(output_size=26), "output_size"),
        (dict(output_size=0), "output_size"),
        (dict(output_ratio=1.5), "output_ratio"),
        (dict(output_ratio=0.0), "output_ratio"),
        (dict(output_ratio=0.01), "output_ratio"),
    ]:
        with pytest.raises(ValueError, match=match):
            graham_output_size(25, **kwargs)
