"""Channels-last windows folded in one loop over the channels, in kernels of their own
shape (templates.CL_FOLDS): streaming reductions declared ``branchless`` (2x2 to 3x3), with
values against the NumPy reference and, for a reduction that reads ``tap``, the tap
numbers; selections (3x3 and 2x2x2, with and without indices), values and indices against the
reference with ties and NaNs; and which kernel each call runs."""

import numba
import numpy as np
import pytest

import numbapool
from numbapool import Pooler, Sliding, Streaming
from numbapool.builtin.reductions import AVG, LP, LP_POW, LP_SQUARE, SUM
from numbapool.kernels.templates import CL_UNROLLED, cl_fold_variant, kernel_source
from reference import ref_pool, ref_pool_grad
from spies import kernels_asked

# kernel, stride, padding, dilation, ceil_mode: every shape of CL_UNROLLED, folded as whole
# windows beside the borders of the kernel, with gaps (dilation) and windows cut by the end
GEOMETRIES = [
    ((2, 2), 2, 0, 1, False),
    ((3, 3), 2, 1, 1, False),
    ((3, 3), 1, 1, 2, False),
    ((2, 3), 1, (1, 0), 1, True),
    ((3, 2), (2, 1), (0, 1), (1, 2), True),
    ((4, 3), 2, 1, 1, False),  # 4 rows: the loop a tap, beside 3x3 windows at the edges
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
@pytest.mark.parametrize("channels", [5, 19])
@pytest.mark.parametrize("name,dtype", [("avg", np.float64), ("sum", np.int64),
                                        ("avg", np.float32)])
def test_small_windows_channels_last_match_the_reference(geometry, channels, name, dtype):
    kernel, stride, padding, dilation, ceil_mode = geometry
    rng = np.random.default_rng(channels)
    x = rng.integers(-50, 50, (2, 9, 8, channels)).astype(dtype)
    opts = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                ceil_mode=ceil_mode)
    if name == "avg":
        opts["count_include_pad"] = False
    want = ref_pool(name, x, layout="channels_last", **opts)
    got = numbapool.pool(name, x, layout="channels_last", **opts)
    assert got.dtype == want.dtype
    if dtype == np.float32:
        np.testing.assert_allclose(got, want, rtol=2e-6)
    else:
        np.testing.assert_array_equal(got, want)


def test_divisor_override_with_small_windows():
    x = np.random.default_rng(3).standard_normal((1, 6, 7, 17))
    got = numbapool.pool("avg", x, 3, stride=2, padding=1, divisor_override=4,
                         layout="channels_last")
    want = ref_pool("sum", x, 3, stride=2, padding=1, layout="channels_last") / 4
    np.testing.assert_allclose(got, want, rtol=1e-13)


@numba.njit(cache=True)
def _tap_init(v, tap, prm):
    return v * (tap + 1)


@numba.njit(cache=True)
def _tap_take(acc, v, tap, prm):
    return acc + v * (tap + 1)


@numba.njit(cache=True)
def _tap_finish(acc, div, prm):
    return acc


@numba.njit(cache=True)
def _tap_grad(v, tap, y, acc, div, prm):
    return tap + 1.0


def _tap_weighted(x, kernel, stride, padding, dilation):
    """sum over the kernel of x * (tap + 1), taps numbered over the whole kernel in C order
    (zero padding adds nothing), channels last."""
    rank = len(kernel)
    xp = np.pad(x, ((0, 0), *[(padding, padding)] * rank, (0, 0)))
    outs = [(xp.shape[1 + a] - dilation * (kernel[a] - 1) - 1) // stride + 1
            for a in range(rank)]
    out = np.zeros((x.shape[0], *outs, x.shape[-1]))
    for tap, offsets in enumerate(np.ndindex(*kernel)):
        part = xp[(slice(None), *(slice(dilation * k, dilation * k + stride * o, stride)
                                  for k, o in zip(offsets, outs)))]
        out += part * (tap + 1)
    return out


@pytest.mark.parametrize("kernel,stride,padding,dilation",
                         [((3, 3), 2, 1, 1), ((2, 3), 1, 1, 2), ((3, 2), 1, 0, 1),
                          ((2, 2), 2, 1, 1), ((1, 3, 3), 1, 0, 1)])
@pytest.mark.parametrize("branchless", [True, False])
def test_a_reduction_reading_tap_gets_the_tap_numbers(kernel, stride, padding, dilation,
                                                      branchless, monkeypatch):
    """Folded (a kernel of the window's shape, for branchless reductions) or not, 2-D and
    3-D (one tap along the first axis)."""
    red = Streaming("tap_weighted", init=_tap_init, take=_tap_take, finish=_tap_finish,
                    grad=_tap_grad, branchless=branchless)
    k3 = (1,) * (3 - len(kernel)) + tuple(kernel)
    variant = cl_fold_variant(red, "forward", k3)
    assert (variant == f"forward_fold{''.join(map(str, k3))}") == branchless
    if branchless:  # (the path under test)
        assert "n0 == {} and n1 == {} and n2 == {}:".format(*k3) in kernel_source(
            red, "channels_last", variant)
    numbapool.register(Pooler("test_tap_weighted", Sliding(), red, "test"))
    asked = kernels_asked(monkeypatch)
    try:
        rng = np.random.default_rng(5)
        x = rng.standard_normal((2, 8, 9, 7) if len(kernel) == 2 else (2, 4, 6, 5, 7))
        got = numbapool.pool("test_tap_weighted", x, kernel, stride=stride, padding=padding,
                             dilation=dilation, layout="channels_last")
    finally:
        numbapool.unregister("test_tap_weighted")
    assert asked == [variant]
    np.testing.assert_allclose(got, _tap_weighted(x, kernel, stride, padding, dilation),
                               rtol=1e-12, atol=1e-12)


def test_only_branchless_reductions_fold_small_windows_in_one_loop():
    assert AVG.branchless and SUM.branchless and not LP.branchless
    for red in (AVG, SUM):
        for shape in CL_UNROLLED:
            variant = cl_fold_variant(red, "forward", shape)
            assert variant == "forward_fold" + "".join(map(str, shape))
            source = kernel_source(red, "channels_last", variant)
            assert source.count("for ch in range(C):\n") == 4  # (fold, init, take, finish)
            assert "n0 == {} and n1 == {} and n2 == {}:".format(*shape) in source
        assert cl_fold_variant(red, "forward", (1, 1, 3)) == "forward"  # (1-D: a tap a loop)
        assert "n2 == 3:" not in kernel_source(red, "channels_last", "forward")
    assert all(cl_fold_variant(LP, "forward", shape) == "forward" for shape in CL_UNROLLED)
    with pytest.raises(ValueError, match="channels-last"):
        kernel_source(AVG, "channels_first", "forward_fold133")
    with pytest.raises(ValueError, match="no 'forward_fold222' kernel"):
        kernel_source(AVG, "channels_last", "forward_fold222")
    with pytest.raises(ValueError, match="branchless"):
        kernel_source(LP, "channels_last", "forward_fold133")
    from numbapool.builtin.reductions import MAX
    for variant in ("forward_indices_rows2", "forward_cols3", "forward_rows"):
        with pytest.raises(ValueError, match="channels-first kernel"):
            kernel_source(MAX if variant != "forward_rows" else AVG, "channels_last", variant)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_lp_with_p_2_takes_squares_and_gives_lp_s_values(layout):
    lp = numbapool.get("lp")
    assert lp.resolve({"p": 2.0}) is LP_SQUARE and LP_SQUARE.branchless
    assert lp.resolve({"p": 3.0}) is LP and lp.resolve({"p": [1.0, 4.0]}) is LP
    assert lp.resolve({"p": 2.5}) is LP_POW and lp.resolve({"p": "two"}) is LP_POW
    x = np.random.default_rng(7).standard_normal((2, 9, 8, 6))
    if layout == "channels_first":
        x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    opts = dict(kernel_size=3, stride=2, padding=1, layout=layout)
    got = numbapool.pool("lp", x, p=2.0, **opts)
    want = ref_pool("lp", x, p=2.0, **opts)
    np.testing.assert_allclose(got, want, rtol=1e-13)
    g = np.random.default_rng(8).standard_normal(got.shape)
    gx = numbapool.pool_grad("lp", x, g, p=2.0, **opts)
    eps = 1e-6
    i = (1, 2, 3, 4) if layout == "channels_first" else (1, 3, 4, 2)
    xp, xm = x.copy(), x.copy()
    xp[i] += eps
    xm[i] -= eps
    fd = (np.sum(g * numbapool.pool("lp", xp, p=2.0, **opts))
          - np.sum(g * numbapool.pool("lp", xm, p=2.0, **opts))) / (2 * eps)
    assert gx[i] == pytest.approx(fd, rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_lp_square_gives_the_general_lp_s_values_bit_for_bit(dtype, layout):
    """On the CPU, where the parameters come in the accumulator's precision, lp with p = 2
    is the same computation either way (power(v, 2) is v * v, root(s, 2) np.sqrt(s))."""
    numbapool.register(Pooler("test_lp_general", Sliding(), LP, "test",
                              parameters=numbapool.get("lp").parameters))
    try:
        x = (np.random.default_rng(9).standard_normal((2, 6, 11, 10)) * 20).astype(dtype)
        for opts in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=(2, 3)),
                     dict(kernel_size=4, stride=3)):
            want = numbapool.pool("test_lp_general", x, p=2.0, layout=layout, **opts)
            got = numbapool.pool("lp", x, p=2.0, layout=layout, **opts)
            np.testing.assert_array_equal(got, want)
    finally:
        numbapool.unregister("test_lp_general")


# -- selections: CL_SELECT_UNROLLED (values) and CL_SELECT_INDICES_UNROLLED windows ----------
SELECT_GEOMETRIES = [
    ((3, 3), 2, 1, 1, False),  # 3x3 inside, 2x3/3x2/2x2 at the borders
    ((2, 3), 1, (0, 1), (2, 1), True),  # (2x3 and 3x2 kernels: not folded)
    ((3, 2), (2, 1), (1, 0), 1, True),
    ((3, 3), 1, 2, (1, 2), False),  # (gaps along the last axis)
    ((3, 3), 1, 2, (2, 1), True),  # (gaps between the rows)
    ((2, 2), 2, 0, 1, False),  # (not folded: a tap at a time)
    ((2, 2, 2), 2, 0, 1, False),
    ((2, 2, 2), 1, (1, 0, 1), (1, 2, 1), True),
    ((3, 3, 3), 2, 1, 1, False),  # (not folded)
]


@pytest.mark.parametrize("geometry", SELECT_GEOMETRIES, ids=str)
@pytest.mark.parametrize("name,dtype", [("max", np.float32), ("min", np.float64),
                                        ("max", np.int64)])
def test_selection_windows_channels_last_match_the_reference(geometry, name, dtype):
    """Values and indices in window order: ties (few distinct values) and NaNs (neighbours, so that
    windows hold several) choose as the reference does."""
    kernel, stride, padding, dilation, ceil_mode = geometry
    rng = np.random.default_rng(len(kernel) * 10 + stride if isinstance(stride, int) else 7)
    shape = (2, 5, 6, 7, 19) if len(kernel) == 3 else (2, 9, 8, 19)
    x = rng.integers(0, 3, shape).astype(dtype)
    if x.dtype.kind == "f":
        flat = x.reshape(-1)
        flat[rng.choice(flat.size, flat.size // 30, replace=False)] = np.nan
        x[0, 1, :3] = np.nan  # (neighbours: windows of several NaNs, some all NaN)
    before = x.copy()
    opts = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                ceil_mode=ceil_mode)
    want = ref_pool(name, x, layout="channels_last", **opts)
    got = numbapool.pool(name, x, layout="channels_last", **opts)
    np.testing.assert_array_equal(got, want)
    got, idx = numbapool.pool(name, x, layout="channels_last", return_indices=True, **opts)
    want, want_idx = ref_pool(name, x, layout="channels_last", return_indices=True, **opts)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("kernel,indices,variant", [
    ((3, 3), False, "forward_fold133"), ((2, 2, 2), False, "forward_fold222"),
    ((2, 2), False, "forward"), ((3, 3), True, "forward_indices32_fold133"),
    ((2, 2, 2), True, "forward_indices32_fold222"), ((2, 2), True, "forward_indices32")])
def test_channels_last_selections_fold_the_listed_windows(kernel, indices, variant,
                                                          monkeypatch):
    """Which kernels the channels-last selections run, and what their sources fold in one
    loop (structural: the values are checked above)."""
    from numbapool.builtin.reductions import MAX

    asked = kernels_asked(monkeypatch)
    x = np.zeros((1, *([6] * len(kernel)), 3), np.float32)
    numbapool.pool("max", x, kernel, layout="channels_last", return_indices=indices)
    assert asked == [variant]
    src = kernel_source(MAX, "channels_last", variant)
    # (with indices the folded loop keeps its choices in a scratch row, then stores them:
    # streamed where the call writes much, but for 3x3 windows; see test_streaming.py)
    folded = "bi[ch] = i" if indices else "of[numba.uint64(ob + ch)] = a"
    assert src.count(folded) == int("_fold" in variant)
    if "_fold" in variant:
        k3 = (1,) * (3 - len(kernel)) + kernel
        assert "n0 == {} and n1 == {} and n2 == {}:".format(*k3) in src


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("p", [2.5, 5.0])
def test_lp_with_p_other_than_1_to_4_takes_vpow_and_gives_lp_s_values(layout, p,
                                                                       monkeypatch):
    """p outside 1 to 4 (5 included) takes LP_POW, vpow with no tests on p in its loops
    (the channels-first column kernel of LP ran one element at a time for p = 2.5): the
    NumPy reference's values and gradient, in the column kernel channels first."""
    asked = kernels_asked(monkeypatch)
    x = np.random.default_rng(9).uniform(0.1, 2.0, (2, 5, 9, 8))
    if layout == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    opts = dict(kernel_size=3, stride=2, padding=1, layout=layout, p=p)
    got = numbapool.pool("lp", x, **opts)
    np.testing.assert_allclose(got, ref_pool("lp", x, **opts), rtol=1e-12)
    if layout == "channels_first":
        assert any(v.startswith("forward_cols") for v in asked), asked
    g = np.random.default_rng(10).standard_normal(got.shape)
    np.testing.assert_allclose(numbapool.pool_grad("lp", x, g, **opts),
                               ref_pool_grad("lp", x, g, **opts), rtol=1e-10, atol=1e-12)
