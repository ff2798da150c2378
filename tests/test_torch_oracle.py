"""Compare numbapool against PyTorch CPU (torch.nn.functional) as an independent oracle.

Every expected value here comes from torch; numbapool is never compared to itself.
For layout="channels_last" the input is moved with np.moveaxis(x, 1, -1) before
calling numbapool and the result is moved back before comparing with torch.
"""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import numbapool  # noqa: E402

RTOL64 = 1e-10
ATOL64 = 1e-12
RTOL32 = 1e-5
ATOL32 = 1e-6

LAYOUTS = ["channels_first", "channels_last"]

# small shapes, one per spatial rank: (N, C, *spatial)
SHAPES = {1: (2, 3, 11), 2: (2, 3, 9, 8), 3: (2, 2, 6, 7, 5)}


# --------------------------------------------------------------------------- helpers


def rand(shape, seed, dtype=np.float64, positive=False):
    rng = np.random.default_rng(seed)
    if positive:
        a = rng.uniform(0.1, 2.0, size=shape)
    else:
        a = rng.standard_normal(size=shape)
    return a.astype(dtype)


def T(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def to_np(t):
    return t.detach().cpu().numpy()


def tfun(kind, rank):
    return getattr(F, f"{kind}{rank}d")



def _one(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def torch_avg(t, rank, kernel_size, stride=None, padding=0, ceil_mode=False,
              count_include_pad=True, divisor_override=None):
    """torch avg_pool{rank}d; rank 1 goes through avg_pool2d on (N, C, L, 1) because
    avg_pool1d has no divisor_override."""
    if rank != 1:
        return tfun("avg_pool", rank)(t, kernel_size, stride=stride, padding=padding,
                                      ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                                      divisor_override=divisor_override)
    k = _one(kernel_size) + (1,)
    s = (_one(stride) if stride is not None else _one(kernel_size)) + (1,)
    p = _one(padding) + (0,)
    out = F.avg_pool2d(t.unsqueeze(-1), k, stride=s, padding=p, ceil_mode=ceil_mode,
                       count_include_pad=count_include_pad, divisor_override=divisor_override)
    return out.squeeze(-1)


def _to_cf(a):
    """channels_last result -> channels_first (works for (N, C) too: identity)."""
    a = np.asarray(a)
    return np.moveaxis(a, -1, 1)


def np_pool(name, x, layout, *args, contiguous=True, **kw):
    """Call numbapool.pool with x given channels_first; return channels_first result(s)."""
    if layout == "channels_last":
        xl = np.moveaxis(x, 1, -1)
        if contiguous:
            xl = np.ascontiguousarray(xl)
        before = xl.copy()
        res = numbapool.pool(name, xl, *args, layout=layout, **kw)
        np.testing.assert_array_equal(xl, before)  # input must not be modified
        if isinstance(res, tuple):
            return tuple(_to_cf(r) for r in res)
        return _to_cf(res)
    before = x.copy()
    res = numbapool.pool(name, x, *args, layout=layout, **kw)
    np.testing.assert_array_equal(x, before)
    if isinstance(res, tuple):
        return tuple(np.asarray(r) for r in res)
    return np.asarray(res)


def np_grad(name, x, g, layout, *args, **kw):
    """numbapool.pool_grad with x, g given channels_first; return channels_first grad."""
    if layout == "channels_last":
        xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        gl = np.ascontiguousarray(np.moveaxis(g, 1, -1))
        gx = np.asarray(numbapool.pool_grad(name, xl, gl, *args, layout=layout, **kw))
        assert gx.shape == xl.shape
        return np.moveaxis(gx, -1, 1)
    g_before = g.copy()
    x_before = x.copy()
    gx = np.asarray(numbapool.pool_grad(name, x, g, *args, layout=layout, **kw))
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(g, g_before)
    assert gx.shape == x.shape
    return gx


def torch_grad(fn, x, seed=1234):
    """Run fn on a torch leaf made from x, backprop a random grad_output.

    Returns (grad_output numpy, x.grad numpy)."""
    xt = T(x.copy()).requires_grad_(True)
    y = fn(xt)
    if isinstance(y, tuple):
        y = y[0]
    g = rand(tuple(y.shape), seed, dtype=x.dtype)
    y.backward(T(g))
    return g, to_np(xt.grad)


def close(actual, expected, dtype=np.float64):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if dtype == np.float32:
        np.testing.assert_allclose(actual, expected, rtol=RTOL32, atol=ATOL32)
    else:
        np.testing.assert_allclose(actual, expected, rtol=RTOL64, atol=ATOL64)


def same_indices(actual, expected):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == np.int64, actual.dtype
    np.testing.assert_array_equal(actual, expected)


def with_layouts(cases, cl_ranks=(2,), rank_of=lambda c: c[0]):
    """Append a layout to each case: channels_first always, channels_last only for
    the spatial ranks in cl_ranks (each (dtype, layout, rank) compiles a kernel)."""
    out = []
    for c in cases:
        out.append(tuple(c) + ("channels_first",))
        if rank_of(c) in cl_ranks:
            out.append(tuple(c) + ("channels_last",))
    return out


def ids(cases):
    return [f"r{r}-" + "-".join(f"{k}={v}" for k, v in kw.items()) for r, kw in cases]


# --------------------------------------------------------------------------- max / min

MAX_CASES = [
    (1, dict(kernel_size=3)),
    (1, dict(kernel_size=3, stride=2, padding=1)),
    (1, dict(kernel_size=2, stride=2, ceil_mode=True)),
    (1, dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)),
    (1, dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),
    (1, dict(kernel_size=3, stride=1)),
    (1, dict(kernel_size=2, stride=3)),  # stride > kernel: gaps
    (1, dict(kernel_size=13, padding=1)),  # kernel == padded length: one window
    (1, dict(kernel_size=11, stride=4, ceil_mode=True)),  # kernel == input length
    (2, dict(kernel_size=2)),
    (2, dict(kernel_size=(9, 8))),  # whole plane
    (2, dict(kernel_size=2, stride=(3, 1), padding=(1, 0), ceil_mode=True)),
    (2, dict(kernel_size=3, stride=2, padding=1)),
    (2, dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1))),
    (2, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (2, dict(kernel_size=(2, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True)),
    (2, dict(kernel_size=3, stride=1)),
    (2, dict(kernel_size=(4, 3), stride=(3, 2), padding=(2, 1), dilation=(1, 2), ceil_mode=True)),
    (3, dict(kernel_size=2)),
    (3, dict(kernel_size=(3, 2, 2), stride=(2, 1, 2), padding=(1, 1, 0), ceil_mode=True)),
    (3, dict(kernel_size=2, stride=1, dilation=2)),
]


@pytest.mark.parametrize("rank,kw", MAX_CASES, ids=ids(MAX_CASES))
def test_max_pool_values_and_indices(rank, kw):
    x = rand(SHAPES[rank], seed=rank)
    ev, ei = tfun("max_pool", rank)(T(x), return_indices=True, **kw)
    v = np_pool("max", x, "channels_first", **kw)
    close(v, to_np(ev))
    v2, i2 = np_pool("max", x, "channels_first", return_indices=True, **kw)
    close(v2, to_np(ev))
    same_indices(i2, to_np(ei))


CL_MAX_CASES = [
    (1, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (2, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (2, dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1))),
    (3, dict(kernel_size=(3, 2, 2), stride=(2, 1, 2), padding=(1, 1, 0), ceil_mode=True)),
]


@pytest.mark.parametrize("rank,kw", CL_MAX_CASES, ids=ids(CL_MAX_CASES))
def test_max_pool_channels_last(rank, kw):
    x = rand(SHAPES[rank], seed=10 + rank)
    ev, ei = tfun("max_pool", rank)(T(x), return_indices=True, **kw)
    v, i = np_pool("max", x, "channels_last", return_indices=True, **kw)
    close(v, to_np(ev))
    same_indices(i, to_np(ei))
    v = np_pool("max", x, "channels_last", **kw)
    close(v, to_np(ev))


def test_max_pool_channels_last_noncontiguous_view():
    x = rand(SHAPES[2], seed=21)
    kw = dict(kernel_size=3, stride=2, padding=1)
    ev = tfun("max_pool", 2)(T(x), **kw)
    v = np_pool("max", x, "channels_last", contiguous=False, **kw)
    close(v, to_np(ev))


def test_max_pool_noncontiguous_channels_first():
    base = rand((2, 3, 18, 8), seed=22)
    x = base[:, :, ::2, :]  # strided view
    assert not x.flags.c_contiguous
    kw = dict(kernel_size=3, stride=2, padding=1)
    ev, ei = tfun("max_pool", 2)(T(x), return_indices=True, **kw)
    v, i = numbapool.pool("max", x, return_indices=True, **kw)
    close(v, to_np(ev))
    same_indices(i, to_np(ei))


MIN_CASES = [
    (1, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (2, dict(kernel_size=3, stride=2, padding=1)),
    (2, dict(kernel_size=(2, 3), stride=(2, 2), padding=(1, 1), dilation=(2, 1), ceil_mode=True)),
    (3, dict(kernel_size=2, stride=1)),
]


@pytest.mark.parametrize("rank,kw,layout", with_layouts(MIN_CASES))
def test_min_pool_matches_negated_max_pool(rank, kw, layout):
    x = rand(SHAPES[rank], seed=30 + rank)
    ev, ei = tfun("max_pool", rank)(T(-x), return_indices=True, **kw)
    v, i = np_pool("min", x, layout, return_indices=True, **kw)
    close(v, -to_np(ev))
    same_indices(i, to_np(ei))


def test_max_pool_integer_input():
    rng = np.random.default_rng(5)
    x = rng.permutation(2 * 3 * 9 * 8).reshape(2, 3, 9, 8).astype(np.int64)
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    ev, ei = F.max_pool2d(T(x.astype(np.float64)), return_indices=True, **kw)
    v, i = numbapool.pool("max", x, return_indices=True, **kw)
    np.testing.assert_array_equal(np.asarray(v).astype(np.float64), to_np(ev))
    same_indices(i, to_np(ei))


TIE_CASES = [
    (1, dict(kernel_size=3, stride=1, padding=1)),
    (2, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (2, dict(kernel_size=(2, 3), stride=1, dilation=(2, 1))),
    (3, dict(kernel_size=2, stride=1)),
]


def _ties(shape, seed):
    """Values in {0, 1, 2}: nearly every window has tied maxima and minima."""
    return np.random.default_rng(seed).integers(0, 3, size=shape).astype(np.float64)


@pytest.mark.parametrize("rank,kw,layout", with_layouts(TIE_CASES))
def test_max_min_pool_ties_pick_torch_index(rank, kw, layout):
    """Tied maxima: torch reports the first one in scan order."""
    x = _ties(SHAPES[rank], seed=300 + rank)
    ev, ei = tfun("max_pool", rank)(T(x), return_indices=True, **kw)
    v, i = np_pool("max", x, layout, return_indices=True, **kw)
    close(v, to_np(ev))
    same_indices(i, to_np(ei))
    ev, ei = tfun("max_pool", rank)(T(-x), return_indices=True, **kw)
    v, i = np_pool("min", x, layout, return_indices=True, **kw)
    close(v, -to_np(ev))
    same_indices(i, to_np(ei))


@pytest.mark.parametrize("rank,kw", TIE_CASES)
def test_max_pool_grad_ties(rank, kw):
    """With ties the whole gradient goes to torch's (first) argmax."""
    x = _ties(SHAPES[rank], seed=310 + rank)
    g, expected = torch_grad(lambda t: tfun("max_pool", rank)(t, **kw), x)
    close(np_grad("max", x, g, "channels_first", **kw), expected)


@pytest.mark.parametrize("shape,out", [((2, 3, 7, 10), (3, 4)), ((2, 3, 11), 4)])
def test_adaptive_max_ties(shape, out):
    rank = len(shape) - 2
    x = _ties(shape, seed=320)
    ev, ei = tfun("adaptive_max_pool", rank)(T(x), out, return_indices=True)
    v, i = np_pool("adaptive_max", x, "channels_first", output_size=out, return_indices=True)
    close(v, to_np(ev))
    same_indices(i, to_np(ei))
    g, expected = torch_grad(lambda t: tfun("adaptive_max_pool", rank)(t, out), x)
    close(np_grad("adaptive_max", x, g, "channels_first", output_size=out), expected)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_max_pool_padding_is_not_zero(layout):
    """Padding never wins a max: with all-negative input every output is negative."""
    x = -rand(SHAPES[2], seed=330, positive=True)
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    ev, ei = F.max_pool2d(T(x), return_indices=True, **kw)
    v, i = np_pool("max", x, layout, return_indices=True, **kw)
    assert np.all(v < 0)
    close(v, to_np(ev))
    same_indices(i, to_np(ei))
    ev, ei = F.max_pool2d(T(x), return_indices=True, **kw)  # min of -x == -max(x)
    v, i = np_pool("min", -x, layout, return_indices=True, **kw)
    assert np.all(v > 0)
    close(v, -to_np(ev))
    same_indices(i, to_np(ei))


def test_max_pool_all_minus_inf_window():
    """A window holding only -inf: value -inf, index = torch's (first valid position)."""
    x = rand((1, 2, 6, 6), seed=340)
    x[0, 0, :3, :3] = -np.inf
    x[0, 1, 2:5, 1:4] = -np.inf
    kw = dict(kernel_size=3, stride=1, padding=1)
    ev, ei = F.max_pool2d(T(x), return_indices=True, **kw)
    v, i = np_pool("max", x, "channels_first", return_indices=True, **kw)
    close(v, to_np(ev))
    same_indices(i, to_np(ei))
    # min over -x (windows of +inf) == -max over x
    v, i = np_pool("min", -x, "channels_first", return_indices=True, **kw)
    close(v, -to_np(ev))
    same_indices(i, to_np(ei))


# --------------------------------------------------------------------------- "same"/pairs/"valid"


def _same_pads(in_sizes, k, s, d):
    pads = []
    for n, kk, ss, dd in zip(in_sizes, k, s, d):
        out = -(-n // ss)
        eff = (kk - 1) * dd + 1
        total = max((out - 1) * ss + eff - n, 0)
        pads.append((total // 2, total - total // 2))
    return pads


def _torch_pad_arg(pads):
    flat = []
    for b, a in reversed(pads):
        flat += [b, a]
    return flat


def _padded_index_to_original(idx, padded_spatial, pads, spatial):
    coords = np.unravel_index(idx, padded_spatial)
    coords = [c - p[0] for c, p in zip(coords, pads)]
    for c, n in zip(coords, spatial):
        assert np.all((c >= 0) & (c < n))
    return np.ravel_multi_index(coords, spatial).astype(np.int64)


EXPLICIT_PAD_CASES = [
    # rank, kernel, stride, dilation, padding-spec (None -> "same")
    (1, (3,), (2,), (1,), None),
    (2, (3, 3), (2, 2), (1, 1), None),
    (2, (4, 2), (1, 3), (1, 1), None),
    (2, (3, 2), (2, 1), (2, 1), None),
    (2, (3, 3), (2, 2), (1, 1), ((1, 0), (0, 2))),
    (2, (2, 3), (1, 2), (1, 1), ((0, 1), (2, 1))),
    (3, (2, 3, 2), (2, 2, 1), (1, 1, 1), None),
]


def _explicit_pads(rank, k, s, d, spec):
    spatial = SHAPES[rank][2:]
    if spec is None:
        return "same", _same_pads(spatial, k, s, d)
    return spec, list(spec)


@pytest.mark.parametrize("rank,k,s,d,spec,layout", with_layouts(EXPLICIT_PAD_CASES))
def test_max_pool_same_and_pair_padding(rank, k, s, d, spec, layout):
    x = rand(SHAPES[rank], seed=40 + rank)
    padding, pads = _explicit_pads(rank, k, s, d, spec)
    xp = F.pad(T(x), _torch_pad_arg(pads), value=-np.inf)
    ev, ei = tfun("max_pool", rank)(xp, k, stride=s, dilation=d, return_indices=True)
    v, i = np_pool("max", x, layout, kernel_size=k, stride=s, dilation=d,
                   padding=padding, return_indices=True)
    close(v, to_np(ev))
    expected_idx = _padded_index_to_original(to_np(ei), tuple(xp.shape[2:]), pads, x.shape[2:])
    same_indices(i, expected_idx)


@pytest.mark.parametrize("count_include_pad", [None, False, True])
@pytest.mark.parametrize("rank,k,s,d,spec", [c for c in EXPLICIT_PAD_CASES if c[3] == (1,) * c[0]])
def test_avg_pool_same_and_pair_padding(rank, k, s, d, spec, count_include_pad):
    x = rand(SHAPES[rank], seed=50 + rank)
    padding, pads = _explicit_pads(rank, k, s, d, spec)
    pad_arg = _torch_pad_arg(pads)
    sums = torch_avg(F.pad(T(x), pad_arg, value=0.0), rank, k, stride=s, divisor_override=1)
    ones = torch_avg(F.pad(T(np.ones_like(x)), pad_arg, value=0.0), rank, k, stride=s,
                     divisor_override=1)
    include = count_include_pad if count_include_pad is not None else (spec is not None)
    if include:
        expected = sums / float(np.prod(k))
    else:
        expected = sums / ones
    kwargs = dict(kernel_size=k, stride=s, padding=padding)
    if count_include_pad is not None:
        kwargs["count_include_pad"] = count_include_pad
    v = np_pool("avg", x, "channels_first", **kwargs)
    close(v, to_np(expected))


def test_valid_padding_is_zero_padding():
    x = rand(SHAPES[2], seed=55)
    ev = F.max_pool2d(T(x), 3, stride=2)
    close(np_pool("max", x, "channels_first", kernel_size=3, stride=2, padding="valid"), to_np(ev))
    ea = F.avg_pool2d(T(x), 3, stride=2)
    close(np_pool("avg", x, "channels_first", kernel_size=3, stride=2, padding="valid"), to_np(ea))


# --------------------------------------------------------------------------- avg / sum

AVG_BASE = [
    (1, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    # last window hangs past the right padding: padded length 15, window [12, 16)
    (1, dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),
    # last window hangs past the input with no padding at all
    (1, dict(kernel_size=2, stride=2, padding=0, ceil_mode=True)),
    (1, dict(kernel_size=3, stride=1, padding=1)),
    (1, dict(kernel_size=2, stride=3, padding=1, ceil_mode=True)),  # stride > kernel
    (1, dict(kernel_size=13, padding=1)),  # kernel == padded length: one window
    (2, dict(kernel_size=(9, 8))),  # whole plane
    (2, dict(kernel_size=2, stride=(3, 1), padding=(1, 0), ceil_mode=True)),
    # W: padded len 10, last window [8, 11) hangs past right padding
    (2, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (2, dict(kernel_size=(4, 3), stride=(3, 2), padding=(2, 1), ceil_mode=True)),
    (2, dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), ceil_mode=False)),
    (2, dict(kernel_size=2, stride=1)),
    (3, dict(kernel_size=(3, 2, 3), stride=2, padding=(1, 0, 1), ceil_mode=True)),
    (3, dict(kernel_size=2, stride=1, padding=1)),
]

AVG_CASES = [
    (r, dict(kw, count_include_pad=cip, divisor_override=div))
    for (r, kw), cip, div in itertools.product(AVG_BASE, [True, False], [None, 5])
]


@pytest.mark.parametrize("rank,kw", AVG_CASES, ids=ids(AVG_CASES))
def test_avg_pool(rank, kw):
    x = rand(SHAPES[rank], seed=60 + rank)
    expected = torch_avg(T(x), rank, **kw)
    v = np_pool("avg", x, "channels_first", **kw)
    close(v, to_np(expected))


@pytest.mark.parametrize("rank,kw", AVG_BASE, ids=ids(AVG_BASE))
def test_avg_pool_default_count_include_pad_is_true(rank, kw):
    x = rand(SHAPES[rank], seed=70 + rank)
    expected = torch_avg(T(x), rank, **kw)  # torch default count_include_pad=True
    v = np_pool("avg", x, "channels_first", **kw)
    close(v, to_np(expected))


CL_AVG_CASES = [
    (r, dict(kw, count_include_pad=cip, divisor_override=div))
    for (r, kw), cip, div in itertools.product(
        [AVG_BASE[i] for i in (1, 8, 9, 12)], [True, False], [None, 3]
    )
]


@pytest.mark.parametrize("rank,kw", CL_AVG_CASES, ids=ids(CL_AVG_CASES))
def test_avg_pool_channels_last(rank, kw):
    x = rand(SHAPES[rank], seed=80 + rank)
    expected = torch_avg(T(x), rank, **kw)
    v = np_pool("avg", x, "channels_last", **kw)
    close(v, to_np(expected))


SUM_CASES = [AVG_BASE[i] for i in (1, 2, 4, 7, 8, 9, 11, 12, 13)]


@pytest.mark.parametrize("rank,kw,layout", with_layouts(SUM_CASES))
def test_sum_pool(rank, kw, layout):
    x = rand(SHAPES[rank], seed=90 + rank)
    expected = torch_avg(T(x), rank, divisor_override=1, **kw)
    v = np_pool("sum", x, layout, **kw)
    close(v, to_np(expected))


# --------------------------------------------------------------------------- float32


@pytest.mark.parametrize("layout", LAYOUTS)
def test_float32_max_avg(layout):
    x = rand(SHAPES[2], seed=100, dtype=np.float32)
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    ev, ei = F.max_pool2d(T(x), return_indices=True, **kw)
    v, i = np_pool("max", x, layout, return_indices=True, **kw)
    close(v, to_np(ev), dtype=np.float32)
    same_indices(i, to_np(ei))
    ea = F.avg_pool2d(T(x), count_include_pad=False, **kw)
    va = np_pool("avg", x, layout, count_include_pad=False, **kw)
    close(va, to_np(ea), dtype=np.float32)


def test_float32_lp_and_adaptive():
    x = rand(SHAPES[2], seed=101, dtype=np.float32, positive=True)
    e = F.lp_pool2d(T(x), 2, 3, stride=2)
    close(np_pool("lp", x, "channels_first", 3, stride=2, p=2), to_np(e), dtype=np.float32)
    e = F.adaptive_avg_pool2d(T(x), (4, 3))
    close(np_pool("adaptive_avg", x, "channels_first", output_size=(4, 3)), to_np(e),
          dtype=np.float32)


# --------------------------------------------------------------------------- lp

LP_CASES = [
    (1, 2, dict(kernel_size=3)),
    (1, 3, dict(kernel_size=3, stride=2)),
    (1, 2, dict(kernel_size=4, stride=1)),
    (2, 2, dict(kernel_size=2)),
    (2, 3, dict(kernel_size=3, stride=2)),
    (2, 2, dict(kernel_size=(3, 2), stride=(1, 3))),
    (2, 3, dict(kernel_size=(2, 3), stride=1)),
    (2, 1.5, dict(kernel_size=3, stride=2)),
]


def _lp_torch(x, rank, p, kw):
    return tfun("lp_pool", rank)(x, p, kw["kernel_size"], stride=kw.get("stride"))


@pytest.mark.parametrize("rank,p,kw,layout", with_layouts(LP_CASES))
def test_lp_pool(rank, p, kw, layout):
    x = rand(SHAPES[rank], seed=110 + rank, positive=True)
    expected = _lp_torch(T(x), rank, p, kw)
    v = np_pool("lp", x, layout, p=p, **kw)
    close(v, to_np(expected))


# --------------------------------------------------------------------------- adaptive

ADAPTIVE_CASES = [
    ((2, 3, 11), 3),
    ((2, 3, 11), 4),
    ((2, 3, 10), (4,)),
    ((2, 3, 7), 3),
    ((2, 3, 11), 1),
    ((2, 3, 11), 11),
    ((2, 3, 7, 10), (3, 4)),
    ((2, 3, 9, 8), (4, 3)),
    ((2, 3, 9, 8), 5),
    ((2, 3, 9, 8), (1, 8)),
    ((2, 2, 6, 7, 5), (4, 3, 2)),
    ((2, 2, 7, 10, 5), (3, 4, 5)),
]


@pytest.mark.parametrize("shape,out,layout",
                         with_layouts(ADAPTIVE_CASES, (2, 3), lambda c: len(c[0]) - 2))
def test_adaptive_max_pool(shape, out, layout):
    rank = len(shape) - 2
    x = rand(shape, seed=120 + rank)
    ev, ei = tfun("adaptive_max_pool", rank)(T(x), out, return_indices=True)
    v = np_pool("adaptive_max", x, layout, output_size=out)
    close(v, to_np(ev))
    v, i = np_pool("adaptive_max", x, layout, output_size=out, return_indices=True)
    close(v, to_np(ev))
    same_indices(i, to_np(ei))


@pytest.mark.parametrize("shape,out,layout",
                         with_layouts(ADAPTIVE_CASES, (2, 3), lambda c: len(c[0]) - 2))
def test_adaptive_avg_pool(shape, out, layout):
    rank = len(shape) - 2
    x = rand(shape, seed=130 + rank)
    expected = tfun("adaptive_avg_pool", rank)(T(x), out)
    v = np_pool("adaptive_avg", x, layout, output_size=out)
    close(v, to_np(expected))


@pytest.mark.parametrize("shape,out", [((2, 3, 5), 7), ((2, 3, 4, 5), (6, 8))])
def test_adaptive_output_larger_than_input(shape, out):
    """PyTorch allows output_size > input size (overlapping, repeated bins)."""
    rank = len(shape) - 2
    x = rand(shape, seed=140)
    ev, ei = tfun("adaptive_max_pool", rank)(T(x), out, return_indices=True)
    v, i = np_pool("adaptive_max", x, "channels_first", output_size=out, return_indices=True)
    close(v, to_np(ev))
    same_indices(i, to_np(ei))
    ea = tfun("adaptive_avg_pool", rank)(T(x), out)
    close(np_pool("adaptive_avg", x, "channels_first", output_size=out), to_np(ea))


# --------------------------------------------------------------------------- global

GLOBAL = {
    "global_max": lambda t, dims, keep: t.amax(dim=dims, keepdim=keep),
    "global_min": lambda t, dims, keep: t.amin(dim=dims, keepdim=keep),
    "global_avg": lambda t, dims, keep: t.mean(dim=dims, keepdim=keep),
}


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("rank,layout", with_layouts([(1,), (2,), (3,)]))
@pytest.mark.parametrize("name", sorted(GLOBAL))
def test_global_pool(name, rank, layout, keepdims):
    x = rand(SHAPES[rank], seed=150 + rank)
    dims = tuple(range(2, 2 + rank))
    expected = to_np(GLOBAL[name](T(x), dims, keepdims))
    if layout == "channels_last":
        xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        v = np.asarray(numbapool.pool(name, xl, layout=layout, keepdims=keepdims))
        if keepdims:
            assert v.shape == (x.shape[0],) + (1,) * rank + (x.shape[1],)
        else:
            assert v.shape == x.shape[:2]
        v = _to_cf(v)
    else:
        v = np.asarray(numbapool.pool(name, x, keepdims=keepdims))
    if keepdims:
        assert v.shape == x.shape[:2] + (1,) * rank
    else:
        assert v.shape == x.shape[:2]
    close(v, expected)


# --------------------------------------------------------------------------- NaN


@pytest.mark.parametrize("layout", LAYOUTS)
def test_max_pool_nan_single_per_window(layout):
    x = rand((2, 3, 8, 8), seed=160)
    x[0, 0, 0, 0] = np.nan
    x[0, 1, 3, 2] = np.nan
    x[1, 2, 7, 7] = np.nan
    x[1, 0, 4, 5] = np.nan
    kw = dict(kernel_size=2, stride=2)
    ev, ei = F.max_pool2d(T(x), return_indices=True, **kw)
    v, i = np_pool("max", x, layout, return_indices=True, **kw)
    np.testing.assert_array_equal(np.isnan(v), np.isnan(to_np(ev)))
    assert np.isnan(v).sum() == 4
    close(v, to_np(ev))  # assert_allclose treats NaN == NaN
    same_indices(i, to_np(ei))


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_max_pool_nan_overlapping_padding(rank):
    x = rand(SHAPES[rank], seed=161)
    flat = x.reshape(-1)
    flat[[0, 7, 40, 41, 60]] = np.nan
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    ev, ei = tfun("max_pool", rank)(T(x), return_indices=True, **kw)
    v, i = np_pool("max", x, "channels_first", return_indices=True, **kw)
    np.testing.assert_array_equal(np.isnan(v), np.isnan(to_np(ev)))
    close(v, to_np(ev))
    same_indices(i, to_np(ei))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_max_pool_nan_several_in_one_window_index(layout):
    """Two NaNs in one window: torch reports the index of the last NaN scanned."""
    x = rand((1, 2, 4, 4), seed=162)
    x[0, 0, 0, 0] = np.nan
    x[0, 0, 1, 1] = np.nan
    x[0, 1, 2, 3] = np.nan
    x[0, 1, 3, 2] = np.nan
    ev, ei = F.max_pool2d(T(x), 2, return_indices=True)
    v, i = np_pool("max", x, layout, kernel_size=2, return_indices=True)
    np.testing.assert_array_equal(np.isnan(v), np.isnan(to_np(ev)))
    close(v, to_np(ev))
    same_indices(i, to_np(ei))


@pytest.mark.parametrize("name", ["min", "global_max", "global_min", "adaptive_max"])
def test_nan_propagates_other_maxlike(name):
    x = rand((2, 3, 9, 8), seed=163)
    x[0, 1, 4, 4] = np.nan
    if name == "min":
        expected = -to_np(F.max_pool2d(T(-x), 3, stride=2))
        v = np_pool("min", x, "channels_first", kernel_size=3, stride=2)
    elif name == "adaptive_max":
        expected = to_np(F.adaptive_max_pool2d(T(x), (4, 3)))
        v = np_pool("adaptive_max", x, "channels_first", output_size=(4, 3))
    else:
        t = T(x)
        expected = to_np(t.amax(dim=(2, 3)) if name == "global_max" else t.amin(dim=(2, 3)))
        v = np_pool(name, x, "channels_first")
    np.testing.assert_array_equal(np.isnan(v), np.isnan(expected))
    close(v, expected)


# --------------------------------------------------------------------------- gradients

MAX_GRAD_CASES = [
    (1, dict(kernel_size=3, stride=1)),
    (1, dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),
    (2, dict(kernel_size=3, stride=1, padding=1)),
    (2, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (2, dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1))),
    (2, dict(kernel_size=2, stride=2)),
    (3, dict(kernel_size=(3, 2, 2), stride=(2, 1, 1), padding=(1, 1, 0), ceil_mode=True)),
    (3, dict(kernel_size=2, stride=1, dilation=2)),
]


@pytest.mark.parametrize("rank,kw,layout", with_layouts(MAX_GRAD_CASES, (2, 3)))
def test_max_pool_grad(rank, kw, layout):
    x = rand(SHAPES[rank], seed=200 + rank)
    g, expected = torch_grad(lambda t: tfun("max_pool", rank)(t, **kw), x)
    close(np_grad("max", x, g, layout, **kw), expected)


@pytest.mark.parametrize("rank,kw", MIN_CASES, ids=ids(MIN_CASES))
def test_min_pool_grad(rank, kw):
    x = rand(SHAPES[rank], seed=210 + rank)
    g, expected = torch_grad(lambda t: -tfun("max_pool", rank)(-t, **kw), x)
    close(np_grad("min", x, g, "channels_first", **kw), expected)


AVG_GRAD_CASES = [
    (r, dict(kw, count_include_pad=cip, divisor_override=div))
    for (r, kw), cip, div in itertools.product(
        [AVG_BASE[i] for i in (1, 2, 4, 7, 8, 9, 11, 12, 13)],
        [True, False],
        [None, 5],
    )
]


@pytest.mark.parametrize("rank,kw", AVG_GRAD_CASES, ids=ids(AVG_GRAD_CASES))
def test_avg_pool_grad(rank, kw):
    x = rand(SHAPES[rank], seed=220 + rank)
    g, expected = torch_grad(lambda t: torch_avg(t, rank, **kw), x)
    close(np_grad("avg", x, g, "channels_first", **kw), expected)


@pytest.mark.parametrize("rank,kw", CL_AVG_CASES[:8], ids=ids(CL_AVG_CASES[:8]))
def test_avg_pool_grad_channels_last(rank, kw):
    x = rand(SHAPES[rank], seed=230 + rank)
    g, expected = torch_grad(lambda t: torch_avg(t, rank, **kw), x)
    close(np_grad("avg", x, g, "channels_last", **kw), expected)


@pytest.mark.parametrize("rank,kw", SUM_CASES, ids=ids(SUM_CASES))
def test_sum_pool_grad(rank, kw):
    x = rand(SHAPES[rank], seed=235 + rank)
    g, expected = torch_grad(lambda t: torch_avg(t, rank, divisor_override=1, **kw), x)
    close(np_grad("sum", x, g, "channels_first", **kw), expected)


@pytest.mark.parametrize("rank,p,kw,layout", with_layouts(LP_CASES))
def test_lp_pool_grad(rank, p, kw, layout):
    x = rand(SHAPES[rank], seed=240 + rank, positive=True)
    g, expected = torch_grad(lambda t: _lp_torch(t, rank, p, kw), x)
    close(np_grad("lp", x, g, layout, p=p, **kw), expected)


ADAPTIVE_GRAD_CASES = [
    ((2, 3, 11), 4),
    ((2, 3, 7), 3),
    ((2, 3, 7, 10), (3, 4)),
    ((2, 3, 9, 8), (4, 3)),
    ((2, 2, 6, 7, 5), (4, 3, 2)),
    ((2, 3, 4, 5), (6, 8)),
]


@pytest.mark.parametrize("shape,out,layout",
                         with_layouts(ADAPTIVE_GRAD_CASES, (2, 3), lambda c: len(c[0]) - 2))
@pytest.mark.parametrize("name", ["adaptive_max", "adaptive_avg"])
def test_adaptive_pool_grad(name, shape, out, layout):
    rank = len(shape) - 2
    x = rand(shape, seed=250 + rank)
    kind = "adaptive_max_pool" if name == "adaptive_max" else "adaptive_avg_pool"
    g, expected = torch_grad(lambda t: tfun(kind, rank)(t, out), x)
    close(np_grad(name, x, g, layout, output_size=out), expected)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("name", sorted(GLOBAL))
def test_global_pool_grad(name, keepdims):
    x = rand(SHAPES[2], seed=260)
    g, expected = torch_grad(lambda t: GLOBAL[name](t, (2, 3), keepdims), x)
    close(np_grad(name, x, g, "channels_first", keepdims=keepdims), expected)


def test_float32_grads():
    x = rand(SHAPES[2], seed=270, dtype=np.float32)
    kw = dict(kernel_size=3, stride=1, padding=1)
    g, expected = torch_grad(lambda t: F.max_pool2d(t, **kw), x)
    close(np_grad("max", x, g, "channels_first", **kw), expected, dtype=np.float32)
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    g, expected = torch_grad(lambda t: F.avg_pool2d(t, **kw), x)
    close(np_grad("avg", x, g, "channels_first", **kw), expected, dtype=np.float32)


# --------------------------------------------------------------------------- memory layouts


@pytest.mark.parametrize("order", ["readonly", "fortran"])
def test_readonly_and_fortran_inputs(order):
    x = rand(SHAPES[2], seed=400)
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    g, expected_grad = torch_grad(lambda t: F.max_pool2d(t, **kw), x)
    ev, ei = F.max_pool2d(T(x), return_indices=True, **kw)
    ea = F.avg_pool2d(T(x), **kw)
    if order == "readonly":
        xi = x.copy()
        xi.setflags(write=False)
        gi = g.copy()
        gi.setflags(write=False)
    else:
        xi = np.asfortranarray(x)
        gi = np.asfortranarray(g)
    v, i = numbapool.pool("max", xi, return_indices=True, **kw)
    close(v, to_np(ev))
    same_indices(i, to_np(ei))
    close(numbapool.pool("avg", xi, **kw), to_np(ea))
    close(numbapool.pool_grad("max", xi, gi, **kw), expected_grad)
