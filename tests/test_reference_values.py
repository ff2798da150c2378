"""Compare numbapool.pool / numbapool.pool_grad with the plain NumPy reference
in tests/reference.py (itself checked against hand-computed values and
torch.nn.functional in TestReferenceSelfCheck below).

Every distinct dtype/layout/rank combination compiles a Numba kernel, so the
grid is deliberately small: most option combinations run on rank-2
channels-first float64 data.
"""

import os
import sys

import numpy as np
import pytest

import numbapool

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from reference import (  # noqa: E402
    SLIDING,
    expected_output_shape,
    output_dtype,
    ref_pool,
    ref_pool_grad,
)

CF = "channels_first"
CL = "channels_last"

# spatial shape / options used for the rank x layout sweeps
RANK_CASES = {
    1: dict(spatial=(9,), opts=dict(kernel_size=3, stride=2, padding=1)),
    2: dict(spatial=(7, 6), opts=dict(kernel_size=(3, 2), stride=(2, 1),
                                      padding=(1, 0))),
    3: dict(spatial=(5, 4, 6), opts=dict(kernel_size=2, stride=(1, 2, 2),
                                         padding=1)),
}


# ---------------------------------------------------------------------------
# data and comparison helpers
# ---------------------------------------------------------------------------


def distinct_data(shape, dtype=np.float64, seed=0):
    """Values without ties (a shuffled arange), centred around 0 when the
    dtype is signed; used for max/min so that argmax is unambiguous."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    perm = np.random.default_rng(seed).permutation(size)
    if dtype.kind == "u":
        assert size <= np.iinfo(dtype).max + 1
        return perm.reshape(shape).astype(dtype)
    vals = perm - size // 2
    if dtype.kind == "i":
        assert size // 2 <= np.iinfo(dtype).max
        return vals.reshape(shape).astype(dtype)
    # floats: quarter steps, exactly representable in float16 for size < 2048
    return (vals / 4.0).reshape(shape).astype(dtype)


def normal_data(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def positive_data(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 2.0, shape).astype(dtype)


def small_int_data(shape, dtype, seed=0):
    lo = 0 if np.dtype(dtype).kind == "u" else -4
    return np.random.default_rng(seed).integers(lo, 5, shape).astype(dtype)


def data_for(name, shape, dtype=np.float64, seed=0, p=None):
    dtype = np.dtype(dtype)
    if name in ("max", "min", "global_max", "global_min", "adaptive_max"):
        return distinct_data(shape, dtype, seed)
    if dtype.kind in "iu":
        return small_int_data(shape, dtype, seed)
    if name == "lp":
        return positive_data(shape, dtype, seed)
    return normal_data(shape, dtype, seed)


def make_shape(spatial, layout, n=2, c=3):
    spatial = tuple(spatial)
    return (n, c) + spatial if layout == CF else (n,) + spatial + (c,)


def tolerances(dtype):
    dtype = np.dtype(dtype)
    if dtype == np.float16:
        return dict(rtol=2e-2, atol=5e-2)
    if dtype == np.float32:
        return dict(rtol=2e-5, atol=2e-5)
    return dict(rtol=1e-10, atol=1e-12)


def assert_values(got, expected, exact=False):
    assert isinstance(got, np.ndarray), type(got)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    if exact or expected.dtype.kind in "iu":
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got.astype(np.float64),
                                   expected.astype(np.float64),
                                   **tolerances(expected.dtype))


def check_pool(name, x, **kw):
    """Run library and reference on x, compare, and check x is untouched."""
    x_before = np.array(x, copy=True)
    got = numbapool.pool(name, x, **kw)
    np.testing.assert_array_equal(x, x_before)  # input never modified
    exp = ref_pool(name, x, **kw)
    exact = name in ("max", "min", "global_max", "global_min", "adaptive_max")
    if kw.get("return_indices"):
        assert isinstance(got, tuple) and len(got) == 2
        assert_values(got[0], exp[0], exact=exact)
        assert got[1].dtype == np.int64, got[1].dtype
        assert got[1].shape == exp[1].shape, (got[1].shape, exp[1].shape)
        np.testing.assert_array_equal(got[1], exp[1])
    else:
        assert_values(got, exp, exact=exact)
    return got


def check_grad(name, x, grad_output=None, seed=1, **kw):
    """Compare pool_grad with the reference gradient."""
    if grad_output is None:
        out_shape = expected_output_shape(
            name, x.shape, kw.get("kernel_size"), kw.get("stride"),
            kw.get("padding", 0), kw.get("dilation", 1),
            kw.get("ceil_mode", False), kw.get("layout", CF),
            kw.get("output_size"), kw.get("keepdims", False))
        grad_output = normal_data(out_shape, x.dtype, seed)
    x_before = np.array(x, copy=True)
    g_before = np.array(grad_output, copy=True)
    got = numbapool.pool_grad(name, x, grad_output, **kw)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(grad_output, g_before)
    exp = ref_pool_grad(name, x, grad_output, **kw)
    assert isinstance(got, np.ndarray), type(got)
    assert got.shape == x.shape, (got.shape, x.shape)
    assert got.dtype.kind == "f", got.dtype
    np.testing.assert_allclose(got.astype(np.float64), exp,
                               **tolerances(x.dtype))
    return got


# ---------------------------------------------------------------------------
# the reference itself
# ---------------------------------------------------------------------------

HAND = np.array([[1, 3, 2, 4], [5, 6, 7, 8], [9, 10, 11, 12],
                 [13, 14, 15, 16]], dtype=np.float64)[None, None]


class TestReferenceSelfCheck:
    """The reference must be right before it can judge the library."""

    def test_hand_example(self):
        np.testing.assert_array_equal(ref_pool("max", HAND, 2)[0, 0],
                                      [[6, 8], [14, 16]])
        np.testing.assert_array_equal(ref_pool("avg", HAND, 2)[0, 0],
                                      [[3.75, 5.25], [11.5, 13.5]])
        np.testing.assert_array_equal(ref_pool("min", HAND, 2)[0, 0],
                                      [[1, 2], [9, 11]])
        np.testing.assert_array_equal(ref_pool("sum", HAND, 2)[0, 0],
                                      [[15, 21], [46, 54]])
        assert ref_pool("global_avg", HAND).tolist() == [[8.5]]
        assert ref_pool("global_avg", HAND, keepdims=True).shape == (1, 1, 1, 1)
        _, idx = ref_pool("max", HAND, 2, return_indices=True)
        np.testing.assert_array_equal(idx[0, 0], [[5, 7], [13, 15]])
        # 'same' with k=3, s=3 on 4: out 2, total pad 2 -> (1, 1)
        np.testing.assert_array_equal(
            ref_pool("max", HAND, 3, padding="same")[0, 0], [[6, 8], [14, 16]])
        # count_include_pad with ceil_mode: window [2, 4) of a length-3 input
        # padded by 0 counts 1 tap (taps beyond the right padding excluded)
        x = np.array([[[1.0, 2.0, 4.0]]])
        np.testing.assert_array_equal(
            ref_pool("avg", x, 2, ceil_mode=True, count_include_pad=True),
            [[[1.5, 4.0]]])

    @pytest.mark.parametrize("rank", [1, 2, 3])
    def test_vs_torch(self, rank):
        torch = pytest.importorskip("torch")
        F = torch.nn.functional
        mp = getattr(F, f"max_pool{rank}d")
        ap = getattr(F, f"avg_pool{rank}d")
        lp = getattr(F, f"lp_pool{rank}d")
        amp = getattr(F, f"adaptive_max_pool{rank}d")
        aap = getattr(F, f"adaptive_avg_pool{rank}d")
        spatial = (7, 6, 5)[:rank]
        shape = (2, 2) + spatial
        x = distinct_data(shape)
        xp = positive_data(shape)
        g = np.random.default_rng(5)
        cases = [
            dict(kernel_size=2, stride=1, padding=0, dilation=1, ceil_mode=False),
            dict(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True),
            dict(kernel_size=2, stride=2, padding=1, dilation=2, ceil_mode=True),
            dict(kernel_size=3, stride=3, padding=1, dilation=1, ceil_mode=True),
        ]
        for c in cases:
            xt = torch.tensor(x, requires_grad=True)
            v, i = mp(xt, c["kernel_size"], c["stride"], c["padding"],
                      c["dilation"], c["ceil_mode"], return_indices=True)
            rv, ri = ref_pool("max", x, return_indices=True, **c)
            np.testing.assert_array_equal(v.detach().numpy(), rv)
            np.testing.assert_array_equal(i.numpy(), ri)
            go = g.standard_normal(rv.shape)
            v.backward(torch.tensor(go))
            np.testing.assert_allclose(xt.grad.numpy(),
                                       ref_pool_grad("max", x, go, **c))
            np.testing.assert_array_equal(
                -mp(torch.tensor(-x), c["kernel_size"], c["stride"],
                    c["padding"], c["dilation"], c["ceil_mode"]).numpy(),
                ref_pool("min", x, **c))
            if c["dilation"] != 1:
                continue
            for cip in (True, False):
                for dov in ((None,) if rank == 1 else (None, 3)):
                    kw = {} if rank == 1 else dict(divisor_override=dov)
                    xt = torch.tensor(x, requires_grad=True)
                    v = ap(xt, c["kernel_size"], c["stride"], c["padding"],
                           c["ceil_mode"], cip, **kw)
                    rkw = dict(c, count_include_pad=cip, divisor_override=dov)
                    np.testing.assert_allclose(v.detach().numpy(),
                                               ref_pool("avg", x, **rkw))
                    go = g.standard_normal(v.shape)
                    v.backward(torch.tensor(go))
                    np.testing.assert_allclose(
                        xt.grad.numpy(), ref_pool_grad("avg", x, go, **rkw))
        # lp: torch rescales partial (ceil_mode) windows, so no ceil_mode here
        for p in (1, 2, 3, 1.5):
            xt = torch.tensor(xp, requires_grad=True)
            k = 2 if rank == 1 else (2,) * rank
            v = lp(xt, p, k, 1)
            np.testing.assert_allclose(
                v.detach().numpy(), ref_pool("lp", xp, 2, stride=1, p=p))
            go = g.standard_normal(v.shape)
            v.backward(torch.tensor(go))
            np.testing.assert_allclose(
                xt.grad.numpy(), ref_pool_grad("lp", xp, go, 2, stride=1, p=p))
        for osz in (1, 3, (4, 7, 2)[:rank]):
            xt = torch.tensor(x, requires_grad=True)
            v, i = amp(xt, osz, return_indices=True)
            rv, ri = ref_pool("adaptive_max", x, output_size=osz,
                              return_indices=True)
            np.testing.assert_array_equal(v.detach().numpy(), rv)
            np.testing.assert_array_equal(i.numpy(), ri)
            go = g.standard_normal(v.shape)
            v.backward(torch.tensor(go))
            np.testing.assert_allclose(
                xt.grad.numpy(),
                ref_pool_grad("adaptive_max", x, go, output_size=osz))
            xt = torch.tensor(x, requires_grad=True)
            v = aap(xt, osz)
            np.testing.assert_allclose(
                v.detach().numpy(), ref_pool("adaptive_avg", x, output_size=osz))
            v.backward(torch.tensor(go))
            np.testing.assert_allclose(
                xt.grad.numpy(),
                ref_pool_grad("adaptive_avg", x, go, output_size=osz))

    def test_same_padding_vs_torch(self):
        torch = pytest.importorskip("torch")
        F = torch.nn.functional
        x = distinct_data((1, 2, 7, 8))
        for k, s, d in [(3, 2, 1), (4, 3, 1), (2, 1, 2), ((3, 2), (2, 3), (1, 2))]:
            kk = (k, k) if isinstance(k, int) else k
            ss = (s, s) if isinstance(s, int) else s
            dd = (d, d) if isinstance(d, int) else d
            pads = []
            for L, k_, s_, d_ in zip((7, 8), kk, ss, dd):
                out = -(-L // s_)
                tot = max((out - 1) * s_ + (k_ - 1) * d_ + 1 - L, 0)
                pads.append((tot // 2, tot - tot // 2))
            tpad = (pads[1][0], pads[1][1], pads[0][0], pads[0][1])
            xt = F.pad(torch.tensor(x), tpad, value=-np.inf)
            exp = F.max_pool2d(xt, kk, ss, 0, dd).numpy()
            got = ref_pool("max", x, k, stride=s, dilation=d, padding="same")
            np.testing.assert_array_equal(got, exp)
            assert got.shape[2:] == (-(-7 // ss[0]), -(-8 // ss[1]))
            if dd == (1, 1):
                # 'same' defaults to count_include_pad=False
                num = F.avg_pool2d(F.pad(torch.tensor(x), tpad), kk, ss,
                                   divisor_override=1).numpy()
                den = F.avg_pool2d(F.pad(torch.ones_like(torch.tensor(x)),
                                         tpad), kk, ss,
                                   divisor_override=1).numpy()
                np.testing.assert_allclose(
                    ref_pool("avg", x, k, stride=s, padding="same"), num / den)

    def test_nan_and_ties_vs_torch(self):
        torch = pytest.importorskip("torch")
        F = torch.nn.functional
        x = np.array([[[1.0, np.nan, 3.0, np.nan, 2.0, 2.0, 5.0, 5.0]]])
        for k, s in [(5, 5), (3, 1), (2, 2)]:
            v, i = F.max_pool1d(torch.tensor(x), k, s, ceil_mode=True,
                                return_indices=True)
            rv, ri = ref_pool("max", x, k, stride=s, ceil_mode=True,
                              return_indices=True)
            np.testing.assert_array_equal(v.numpy(), rv)
            np.testing.assert_array_equal(i.numpy(), ri)
        v, i = F.adaptive_max_pool1d(torch.tensor(x), 3, return_indices=True)
        rv, ri = ref_pool("adaptive_max", x, output_size=3, return_indices=True)
        np.testing.assert_array_equal(v.numpy(), rv)
        np.testing.assert_array_equal(i.numpy(), ri)
        _, ri = ref_pool("max", x, 8, return_indices=True)
        assert ri.item() == 3  # last NaN
        _, ri = ref_pool("min", x, 8, return_indices=True)
        assert ri.item() == 3
        _, ri = ref_pool("max", x[..., 4:], 4, return_indices=True)
        assert ri.item() == 2  # first of the tied 5s


# ---------------------------------------------------------------------------
# library vs reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name,expected", [
    ("max", [[6, 8], [14, 16]]),
    ("min", [[1, 2], [9, 11]]),
    ("avg", [[3.75, 5.25], [11.5, 13.5]]),
    ("sum", [[15, 21], [46, 54]]),
    ("lp", [[15, 21], [46, 54]]),  # p = 1
])
def test_hand_example(name, expected):
    kw = dict(p=1) if name == "lp" else {}
    got = numbapool.pool(name, HAND, 2, **kw)
    np.testing.assert_allclose(got[0, 0], expected, rtol=1e-12)
    assert got.dtype == np.float64


def test_hand_example_global():
    np.testing.assert_allclose(numbapool.pool("global_avg", HAND), [[8.5]])
    np.testing.assert_array_equal(numbapool.pool("global_max", HAND), [[16]])
    np.testing.assert_array_equal(numbapool.pool("global_min", HAND), [[1]])


@pytest.mark.parametrize("layout", [CF, CL])
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("name", SLIDING)
def test_sliding_rank_layout(name, rank, layout):
    case = RANK_CASES[rank]
    kw = dict(case["opts"], layout=layout)
    if name == "lp":
        kw["p"] = 2
    x = data_for(name, make_shape(case["spatial"], layout), seed=rank)
    check_pool(name, x, **kw)


# (name, spatial, options) on channels-first float64
OPTION_CASES = [
    ("max", (7, 6), dict(kernel_size=3, stride=1)),
    ("max", (7, 6), dict(kernel_size=3, padding=1)),
    ("max", (7, 6), dict(kernel_size=(3, 2), padding=((0, 1), (1, 0)))),
    ("max", (7, 6), dict(kernel_size=3, stride=2, padding="same")),
    ("max", (7, 6), dict(kernel_size=(2, 4), stride=(3, 1), padding="same")),
    ("max", (7, 6), dict(kernel_size=3, stride=2, padding="valid")),
    ("max", (7, 6), dict(kernel_size=2, stride=1, dilation=2)),
    ("max", (8, 7), dict(kernel_size=3, stride=2, padding=(1, 2), dilation=(1, 2))),
    ("max", (8, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("max", (8, 7), dict(kernel_size=2, stride=3, dilation=2, ceil_mode=True)),
    ("max", (9, 8), dict(kernel_size=3, stride=2, dilation=2, padding="same")),
    ("min", (7, 6), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0),
                         ceil_mode=True)),
    ("min", (7, 6), dict(kernel_size=2, stride=1, dilation=(2, 1),
                         padding=((1, 0), (0, 1)))),
    ("min", (7, 6), dict(kernel_size=3, stride=2, padding="same")),
    ("avg", (7, 6), dict(kernel_size=3, stride=2, padding=1)),
    ("avg", (7, 6), dict(kernel_size=3, stride=2, padding=1,
                         count_include_pad=False)),
    ("avg", (7, 6), dict(kernel_size=3, stride=2, padding=1,
                         count_include_pad=True, ceil_mode=True)),
    ("avg", (8, 7), dict(kernel_size=3, stride=2, padding=1,
                         count_include_pad=False, ceil_mode=True)),
    ("avg", (8, 7), dict(kernel_size=2, stride=2, ceil_mode=True)),
    ("avg", (7, 6), dict(kernel_size=3, stride=2, padding="same")),
    ("avg", (7, 6), dict(kernel_size=3, stride=2, padding="same",
                         count_include_pad=True)),
    ("avg", (7, 6), dict(kernel_size=(3, 2), padding=((1, 0), (0, 1)))),
    ("avg", (7, 6), dict(kernel_size=3, stride=1, padding=1, divisor_override=5)),
    ("avg", (8, 7), dict(kernel_size=2, stride=1, dilation=2, padding=1)),
    ("avg", (8, 7), dict(kernel_size=2, stride=1, dilation=2, padding=1,
                         count_include_pad=False, ceil_mode=True)),
    ("avg", (7, 6), dict(kernel_size=3, stride=2, padding="valid",
                         count_include_pad=True)),
    ("sum", (7, 6), dict(kernel_size=3, stride=1, padding=((0, 1), (2, 1)))),
    ("sum", (8, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("sum", (8, 7), dict(kernel_size=2, dilation=(2, 3), stride=1)),
    ("sum", (7, 6), dict(kernel_size=(2, 3), stride=2, padding="same")),
    ("lp", (7, 6), dict(kernel_size=2, p=1)),
    ("lp", (7, 6), dict(kernel_size=3, stride=1, p=3)),
    ("lp", (7, 6), dict(kernel_size=3, stride=2, p=1.5, ceil_mode=True)),
    ("lp", (8, 7), dict(kernel_size=2, stride=1, p=2, padding=1, dilation=2)),
    ("lp", (7, 6), dict(kernel_size=3, stride=2, p=2, padding="same")),
]


@pytest.mark.parametrize("name,spatial,opts", OPTION_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(OPTION_CASES)])
def test_sliding_options(name, spatial, opts):
    x = data_for(name, make_shape(spatial, CF), seed=len(spatial))
    check_pool(name, x, **opts)


@pytest.mark.parametrize("name", ["max", "avg"])
def test_same_padding_with_ceil_mode(name):
    """The spec defines padding='same' (pads) and ceil_mode (output length)
    independently and lists no error for combining them."""
    x = data_for(name, make_shape((9, 8), CF), seed=2)
    check_pool(name, x, kernel_size=3, stride=2, dilation=2, padding="same",
               ceil_mode=True)
    # L=6, s=4, k=1: TF 'same' gives no padding and out=ceil(6/4)=2; the
    # ceil_mode formula gives 3 and the PyTorch rule takes it back to 2
    x = data_for(name, make_shape((6,), CF), seed=3)
    got = check_pool(name, x, kernel_size=1, stride=4, padding="same",
                     ceil_mode=True)
    assert got.shape == (2, 3, 2)


# a few option combos on ranks 1 and 3 and channels-last
OPTION_CASES_OTHER = [
    ("max", (9,), CF, dict(kernel_size=3, stride=2, padding="same", dilation=2)),
    ("avg", (9,), CF, dict(kernel_size=4, stride=3, padding=((1, 2),),
                           ceil_mode=True)),
    ("avg", (9,), CL, dict(kernel_size=3, stride=2, padding=1,
                           count_include_pad=False, ceil_mode=True)),
    ("max", (5, 4, 6), CF, dict(kernel_size=(2, 3, 2), stride=2, padding=(1, 1, 0),
                                ceil_mode=True)),
    ("avg", (5, 4, 6), CF, dict(kernel_size=3, stride=(2, 1, 2), padding="same")),
    ("avg", (5, 4, 6), CL, dict(kernel_size=(2, 2, 3), stride=1, padding=1,
                                divisor_override=7)),
    ("sum", (5, 4, 6), CL, dict(kernel_size=2, stride=1, dilation=(1, 2, 2))),
    ("min", (7, 6), CL, dict(kernel_size=3, stride=2, padding="same")),
    ("avg", (8, 7), CL, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
]


@pytest.mark.parametrize(
    "name,spatial,layout,opts", OPTION_CASES_OTHER,
    ids=[f"{c[0]}-r{len(c[1])}-{c[2][9:]}-{i}"
         for i, c in enumerate(OPTION_CASES_OTHER)])
def test_sliding_options_other_ranks(name, spatial, layout, opts):
    x = data_for(name, make_shape(spatial, layout), seed=len(spatial))
    check_pool(name, x, layout=layout, **opts)


@pytest.mark.parametrize("rank,layout", [(1, CF), (2, CF), (3, CF), (2, CL), (3, CL)])
@pytest.mark.parametrize("name", ["max", "min"])
def test_return_indices(name, rank, layout):
    case = RANK_CASES[rank]
    x = distinct_data(make_shape(case["spatial"], layout), seed=7)
    check_pool(name, x, layout=layout, return_indices=True, **case["opts"])
    check_pool(name, x, layout=layout, return_indices=True,
               kernel_size=2, stride=2, padding=1, ceil_mode=True, dilation=2)


@pytest.mark.parametrize("rank,layout", [(1, CF), (2, CF), (3, CF), (2, CL)])
def test_return_indices_adaptive(rank, layout):
    spatial = RANK_CASES[rank]["spatial"]
    x = distinct_data(make_shape(spatial, layout), seed=8)
    for osz in (3, (2, 5, 4)[:rank]):
        check_pool("adaptive_max", x, layout=layout, output_size=osz,
                   return_indices=True)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("rank,layout", [(1, CF), (2, CF), (3, CF), (2, CL), (3, CL)])
@pytest.mark.parametrize("name", ["global_max", "global_avg", "global_min"])
def test_global(name, rank, layout, keepdims):
    x = data_for(name, make_shape(RANK_CASES[rank]["spatial"], layout), seed=3)
    got = check_pool(name, x, layout=layout, keepdims=keepdims)
    if not keepdims:
        assert got.shape == (2, 3)
    elif layout == CF:
        assert got.shape == (2, 3) + (1,) * rank
    else:
        assert got.shape == (2,) + (1,) * rank + (3,)


@pytest.mark.parametrize("rank,layout", [(1, CF), (2, CF), (3, CF), (2, CL), (3, CL)])
@pytest.mark.parametrize("name", ["adaptive_max", "adaptive_avg"])
def test_adaptive(name, rank, layout):
    spatial = RANK_CASES[rank]["spatial"]
    x = data_for(name, make_shape(spatial, layout), seed=4)
    # int, tuple, exact divisor, output larger than input (overlapping bins)
    for osz in (1, 3, (3, 2, 4)[:rank], tuple(spatial),
                tuple(s + 2 for s in spatial)):
        check_pool(name, x, layout=layout, output_size=osz)


DTYPE_CASES = (
    [(n, np.float32) for n in SLIDING + ("global_avg", "adaptive_avg",
                                         "adaptive_max")]
    + [(n, np.float16) for n in SLIDING + ("global_max",)]
    + [(n, dt) for n in ("max", "min", "sum")
       for dt in (np.int8, np.int32, np.uint8)]
    + [("max", np.int64), ("avg", np.int32), ("avg", np.uint8),
       ("lp", np.int32), ("global_avg", np.int32), ("adaptive_avg", np.int8)]
)


@pytest.mark.parametrize("name,dtype", DTYPE_CASES,
                         ids=[f"{n}-{np.dtype(d).name}" for n, d in DTYPE_CASES])
def test_dtypes(name, dtype):
    shape = make_shape((6, 5), CF)
    kw = {}
    if name in SLIDING:
        kw = dict(kernel_size=3, stride=2, padding=1)
    elif name.startswith("adaptive"):
        kw = dict(output_size=(4, 2))
    if name == "lp":
        kw["p"] = 2
    x = data_for(name, shape, dtype, seed=11)
    got = check_pool(name, x, **kw)
    assert got.dtype == output_dtype(name, dtype)
    if name in ("max", "min"):
        got, idx = numbapool.pool(name, x, return_indices=True, **kw)
        exp, eidx = ref_pool(name, x, return_indices=True, **kw)
        np.testing.assert_array_equal(got, exp)
        np.testing.assert_array_equal(idx, eidx)


def test_int_avg_returns_float64_exactly():
    x = np.arange(2 * 3 * 4 * 4, dtype=np.int16).reshape(2, 3, 4, 4)
    got = numbapool.pool("avg", x, 3, stride=1)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref_pool("avg", x, 3, stride=1), rtol=1e-12)


def test_int8_sum_keeps_dtype_without_overflow():
    x = np.full((1, 1, 4, 4), 7, dtype=np.int8)
    got = numbapool.pool("sum", x, 2)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, np.full((1, 1, 2, 2), 28, dtype=np.int8))


# ---------------------------------------------------------------------------
# memory layouts of the input
# ---------------------------------------------------------------------------


def _noncontig_variants(x):
    """(description, array) pairs with the same logical channels-first
    content as a rank-2 array x of shape (N, C, H, W)."""
    ro = x.copy()
    ro.setflags(write=False)
    # channels-first view of a channels-last buffer
    cl_buffer = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    # negative strides: store reversed, view back
    rev = np.ascontiguousarray(x[:, ::-1, ::-1, ::-1])[:, ::-1, ::-1, ::-1]
    # strided slice of a larger buffer
    big = np.zeros(x.shape[:2] + (2 * x.shape[2], 3 * x.shape[3]))
    big[:, :, ::2, ::3] = x
    # spatially transposed buffer
    tr = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    return [
        ("fortran", np.asfortranarray(x)),
        ("readonly", ro),
        ("moveaxis_view", np.moveaxis(cl_buffer, -1, 1)),
        ("negative_strides", rev),
        ("strided_slice", big[:, :, ::2, ::3]),
        ("transposed_view", tr),
    ]


@pytest.mark.parametrize("name,opts", [
    ("max", dict(kernel_size=3, stride=2, padding=1, return_indices=True)),
    ("avg", dict(kernel_size=(3, 2), stride=1, padding=(1, 0), ceil_mode=True)),
    ("sum", dict(kernel_size=2, stride=1, dilation=2)),
    ("global_avg", dict()),
    ("adaptive_max", dict(output_size=(3, 4), return_indices=True)),
])
def test_noncontiguous_inputs(name, opts):
    x = data_for(name, (2, 3, 7, 6), seed=21)
    expected = ref_pool(name, x, **opts)
    for desc, xv in _noncontig_variants(x):
        np.testing.assert_array_equal(xv, x)
        got = check_pool(name, xv, **opts)
        if opts.get("return_indices"):
            np.testing.assert_array_equal(got[1], expected[1], err_msg=desc)
            got = got[0]
            expected_v = expected[0]
        else:
            expected_v = expected
        np.testing.assert_allclose(got, expected_v, rtol=1e-12, err_msg=desc)


def test_noncontiguous_channels_last():
    """A channels_last array that is a transposed view of a
    channels-first buffer (and the other way round)."""
    x_cf = distinct_data((2, 3, 7, 6), seed=22)
    x_cl_view = np.moveaxis(x_cf, 1, -1)  # non-contiguous (N, H, W, C)
    assert not x_cl_view.flags.c_contiguous
    check_pool("max", x_cl_view, kernel_size=3, stride=2, padding=1,
               layout=CL, return_indices=True)
    check_pool("avg", x_cl_view, kernel_size=2, stride=1, layout=CL)
    check_grad("max", x_cl_view, kernel_size=3, stride=2, padding=1, layout=CL)
    rev = x_cl_view[:, ::-1, :, ::-1]
    check_pool("min", rev, kernel_size=2, stride=1, layout=CL)


@pytest.mark.parametrize("name,opts", [
    ("max", dict(kernel_size=3, stride=1, padding=1)),
    ("avg", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
])
def test_noncontiguous_grad(name, opts):
    x = data_for(name, (2, 3, 7, 6), seed=23)
    out_shape = expected_output_shape(name, x.shape, **{
        k: v for k, v in opts.items() if k != "count_include_pad"})
    g = normal_data(out_shape, seed=24)
    expected = ref_pool_grad(name, x, g, **opts)
    for (dx, xv), (dg, gv) in zip(_noncontig_variants(x), _noncontig_variants(g)):
        got = check_grad(name, xv, gv, **opts)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14,
                                   err_msg=f"{dx}/{dg}")


def test_input_not_modified_all_poolers():
    x = normal_data((2, 3, 6, 5), seed=30)
    before = x.copy()
    for name in SLIDING:
        kw = dict(p=2) if name == "lp" else {}
        numbapool.pool(name, np.abs(x) if name == "lp" else x, 2, **kw)
        g = np.ones((2, 3, 3, 2))
        numbapool.pool_grad(name, np.abs(x) if name == "lp" else x, g, 2, **kw)
    for name in ("global_max", "global_avg", "global_min"):
        numbapool.pool(name, x)
    for name in ("adaptive_max", "adaptive_avg"):
        numbapool.pool(name, x, output_size=2)
    np.testing.assert_array_equal(x, before)


# ---------------------------------------------------------------------------
# NaN propagation and ties
# ---------------------------------------------------------------------------


def _with_nans(shape, seed, frac=0.2):
    rng = np.random.default_rng(seed)
    x = distinct_data(shape, seed=seed)
    x[rng.random(shape) < frac] = np.nan
    return x


@pytest.mark.parametrize("rank,layout", [(1, CF), (2, CF), (2, CL)])
@pytest.mark.parametrize("name", ["max", "min"])
def test_nan_propagation(name, rank, layout):
    case = RANK_CASES[rank]
    x = _with_nans(make_shape(case["spatial"], layout), seed=40 + rank)
    got = check_pool(name, x, layout=layout, return_indices=True, **case["opts"])
    v = ref_pool(name, x, layout=layout, **case["opts"])
    assert np.isnan(v).any() and not np.isnan(v).all()
    assert np.isnan(got[0]).sum() == np.isnan(v).sum()
    check_grad(name, x, layout=layout, **case["opts"])


def test_nan_window_explicit():
    x = np.array([[[1.0, np.nan, 3.0, np.nan, 2.0, 9.0]]])
    v, i = numbapool.pool("max", x, 6, return_indices=True)
    assert np.isnan(v).all() and i.item() == 3  # last NaN in scan order
    v, i = numbapool.pool("min", x, 6, return_indices=True)
    assert np.isnan(v).all() and i.item() == 3
    v = numbapool.pool("max", x, 2)
    np.testing.assert_array_equal(v, [[[np.nan, np.nan, 9.0]]])
    v = numbapool.pool("min", x, 3, stride=3)
    np.testing.assert_array_equal(v, [[[np.nan, np.nan]]])
    g = numbapool.pool_grad("max", x, np.array([[[1.0, 2.0, 4.0]]]), 2)
    np.testing.assert_array_equal(g, [[[0.0, 1.0, 0.0, 2.0, 0.0, 4.0]]])


@pytest.mark.parametrize("name,kw", [
    ("global_max", {}),
    ("global_min", {}),
    ("adaptive_max", dict(output_size=(3, 2))),
])
def test_nan_propagation_global_adaptive(name, kw):
    x = _with_nans((2, 3, 6, 5), seed=45, frac=0.05)
    check_pool(name, x, **kw)
    if name == "adaptive_max":
        check_pool(name, x, return_indices=True, **kw)


@pytest.mark.parametrize("name", ["max", "min"])
def test_ties_first_in_scan_order(name):
    rng = np.random.default_rng(50)
    x = rng.integers(0, 3, (2, 3, 7, 6)).astype(np.float64)  # many ties
    for kw in (dict(kernel_size=3, stride=1, padding=1),
               dict(kernel_size=(2, 3), stride=2, dilation=(2, 1),
                    ceil_mode=True)):
        check_pool(name, x, return_indices=True, **kw)
        check_grad(name, x, **kw)
    c = np.zeros((1, 2, 5, 5))
    _, idx = numbapool.pool(name, c, 3, stride=1, padding=1, return_indices=True)
    _, eidx = ref_pool(name, c, 3, stride=1, padding=1, return_indices=True)
    np.testing.assert_array_equal(idx, eidx)
    assert idx[0, 0, 0, 0] == 0 and idx[0, 0, 1, 1] == 0 and idx[0, 0, 2, 2] == 6


def test_ties_adaptive_max():
    x = np.random.default_rng(51).integers(0, 2, (2, 2, 7, 5)).astype(np.float64)
    check_pool("adaptive_max", x, output_size=(3, 2), return_indices=True)
    check_grad("adaptive_max", x, output_size=(3, 2))


def test_ties_integer_dtype():
    x = np.random.default_rng(52).integers(0, 3, (2, 3, 6, 6)).astype(np.int32)
    check_pool("max", x, kernel_size=3, stride=1, return_indices=True)
    check_pool("min", x, kernel_size=3, stride=1, return_indices=True)


# ---------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("rank,layout", [(1, CF), (2, CF), (3, CF), (2, CL)])
@pytest.mark.parametrize("name", SLIDING)
def test_grad_rank_layout(name, rank, layout):
    case = RANK_CASES[rank]
    kw = dict(case["opts"], layout=layout)
    if name == "lp":
        kw["p"] = 3
    x = data_for(name, make_shape(case["spatial"], layout), seed=60 + rank)
    check_grad(name, x, **kw)


GRAD_CASES = [
    ("max", dict(kernel_size=3, stride=1, padding=1)),
    ("max", dict(kernel_size=2, stride=2, dilation=2, padding=1, ceil_mode=True)),
    ("max", dict(kernel_size=3, stride=2, padding="same")),
    ("min", dict(kernel_size=(3, 2), stride=1, padding=((1, 0), (0, 1)))),
    ("avg", dict(kernel_size=3, stride=1, padding=1)),
    ("avg", dict(kernel_size=3, stride=1, padding=1, count_include_pad=False)),
    ("avg", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("avg", dict(kernel_size=3, stride=2, padding="same")),
    ("avg", dict(kernel_size=2, stride=1, divisor_override=3, dilation=(1, 2))),
    ("sum", dict(kernel_size=3, stride=1, padding=(1, 2), ceil_mode=True)),
    ("sum", dict(kernel_size=2, stride=1, dilation=2)),
    ("lp", dict(kernel_size=3, stride=1, p=2)),
    ("lp", dict(kernel_size=2, stride=1, p=1.5, padding=1, ceil_mode=True)),
    ("lp", dict(kernel_size=3, stride=2, p=1)),
]


@pytest.mark.parametrize("name,opts", GRAD_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(GRAD_CASES)])
def test_grad_options(name, opts):
    x = data_for(name, (2, 3, 8, 7), seed=70)
    check_grad(name, x, **opts)


@pytest.mark.parametrize("layout", [CF, CL])
@pytest.mark.parametrize("name,kw", [
    ("global_max", {}), ("global_min", {}), ("global_avg", {}),
    ("global_avg", dict(keepdims=True)),
    ("adaptive_max", dict(output_size=(3, 4))),
    ("adaptive_avg", dict(output_size=(3, 4))),
    ("adaptive_avg", dict(output_size=(9, 8))),
])
def test_grad_global_adaptive(name, kw, layout):
    x = data_for(name, make_shape((7, 6), layout), seed=80)
    check_grad(name, x, layout=layout, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("name", ["max", "avg"])
def test_grad_low_precision(name, dtype):
    x = data_for(name, (2, 3, 7, 6), dtype, seed=90)
    check_grad(name, x, kernel_size=3, stride=2, padding=1)


def test_grad_hand_example():
    g = numbapool.pool_grad("max", HAND, np.ones((1, 1, 2, 2)), 2)
    np.testing.assert_array_equal(g[0, 0], [[0, 0, 0, 0], [0, 1, 0, 1],
                                            [0, 0, 0, 0], [0, 1, 0, 1]])
    g = numbapool.pool_grad("avg", HAND, np.ones((1, 1, 3, 3)), 2, stride=1)
    np.testing.assert_allclose(g[0, 0], np.array([[1, 2, 2, 1], [2, 4, 4, 2],
                                                  [2, 4, 4, 2], [1, 2, 2, 1]]) / 4)


# ---------------------------------------------------------------------------
# errors required by the spec
# ---------------------------------------------------------------------------


def test_kernel_larger_than_padded_input_raises():
    x = np.ones((1, 1, 3, 3))
    with pytest.raises(ValueError):
        numbapool.pool("max", x, 4)
    with pytest.raises(ValueError):
        numbapool.pool("avg", x, 6, padding=1)
    with pytest.raises(ValueError):
        numbapool.pool("max", x, 3, dilation=2)


def test_window_without_real_element_raises():
    # L=2, k=2, d=3, pad=1: the single window covers positions -1 and 2
    x = np.ones((1, 1, 2))
    with pytest.raises(ValueError):
        ref_pool("max", x, 2, dilation=3, padding=1)
    with pytest.raises(ValueError):
        numbapool.pool("max", x, 2, dilation=3, padding=1)
