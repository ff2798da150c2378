"""The backward strategies against the NumPy reference: channels-first scatters per (n, c)
plane when there are at least SCATTER_MIN_PLANES planes and gathers otherwise; selections
scatter by value (first element equal to the result; the last NaN for a NaN result); linear
reductions (sum, avg) over shared windows run row by row; smooth non-linear ones (lp, gem)
with enough channels and rows run their channels-last kernels between transposes."""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numbapool
from numbapool.builtin.reductions import avg_finish, sum_init, sum_merge, sum_take
from numbapool.kernels.cpu import SCATTER_MIN_PLANES, VIA_CHANNELS_LAST_MIN_CHANNELS
from numbapool.kernels.templates import LINEAR_WEIGHTS_MAX
from reference import ref_pool, ref_pool_grad
from spies import kernel_layouts_asked, kernels_asked

CASES = [
    ("max", dict(kernel_size=3, stride=2, padding=1)),
    ("max", dict(kernel_size=3, stride=1, dilation=2, ceil_mode=True)),
    ("min", dict(kernel_size=2)),
    ("avg", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("sum", dict(kernel_size=3, stride=1)),
    ("lp", dict(kernel_size=2, stride=1, p=3.0)),
    ("global_max", {}),
    ("global_avg", {}),
    ("max", dict(kernel_size=(3, 2))),  # windows cover every element exactly once
    ("avg", dict(kernel_size=(3, 4))),
    ("lp", dict(kernel_size=(3, 2), p=2.0)),
    ("adaptive_max", dict(output_size=(4, 3))),
    ("adaptive_avg", dict(output_size=(4, 3))),
]


@pytest.mark.parametrize("planes", [(1, 3), (2, 5)])  # below and above the scatter threshold
@pytest.mark.parametrize("name,opts", CASES)
def test_grad_matches_reference(name, opts, planes):
    rng = np.random.default_rng(1)
    x = rng.uniform(0.5, 1.5, (*planes, 9, 8))
    y = numbapool.pool(name, x, **opts)
    gy = rng.standard_normal(y.shape)
    got = numbapool.pool_grad(name, x, gy, **opts)
    np.testing.assert_allclose(got, ref_pool_grad(name, x, gy, **opts), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("planes", [(1, 3), (2, 5)])
def test_selection_grad_with_ties_and_nans(planes):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 3, (*planes, 9, 8)).astype(np.float64)  # many ties
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 2, 2] = np.nan  # two NaNs in one window: the last one is selected
    x[-1, -1, 5:7, 5:7] = np.nan
    for name, opts in (("max", dict(kernel_size=3, stride=2, padding=1)),
                       ("min", dict(kernel_size=3, stride=2, padding=1)),
                       ("max", dict(kernel_size=(3, 2))), ("min", dict(kernel_size=(3, 4)))):
        gy = rng.standard_normal(numbapool.pool(name, x, **opts).shape)
        got = numbapool.pool_grad(name, x, gy, **opts)
        np.testing.assert_allclose(got, ref_pool_grad(name, x, gy, **opts), rtol=1e-12,
                                   atol=1e-12, err_msg=name)


def test_threshold_splits_the_cases():
    assert 1 * 3 < SCATTER_MIN_PLANES <= 2 * 5


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_global_selection_grad_with_ties_and_nans(layout):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 3, (2, 5, 4, 3)).astype(np.float64)  # ties everywhere
    x[0, 1, 0, 1] = np.nan
    x[0, 1, 2, 2] = np.nan  # the last NaN of the plane is the one selected
    if layout == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    for name in ("global_max", "global_min"):
        for keepdims in (False, True):
            gy = rng.standard_normal(numbapool.pool(name, x, layout=layout,
                                                    keepdims=keepdims).shape)
            got = numbapool.pool_grad(name, x, gy, layout=layout, keepdims=keepdims)
            np.testing.assert_allclose(
                got, ref_pool_grad(name, x, gy, layout=layout, keepdims=keepdims),
                rtol=1e-12, atol=1e-12, err_msg=f"{name} keepdims={keepdims}")


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 3, 4), (2, 4, 3, 2, 5)])
@pytest.mark.parametrize("name,opts", [("global_avg", {})])
def test_channels_last_global_grad(name, opts, shape, keepdims):
    """The channels-last whole-plane backward (a task per row of channels) and the skipped
    forward pass of a mean's gradient, against the reference."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape)
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    kw = dict(opts, keepdims=keepdims)
    y = numbapool.pool(name, xl, layout="channels_last", **kw)
    gy = rng.standard_normal(y.shape)
    got = numbapool.pool_grad(name, xl, gy, layout="channels_last", **kw)
    want = ref_pool_grad(name, xl, gy, layout="channels_last", **kw)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# -- the row-by-row backward of linear reductions (sum, avg) ---------------------------------


@pytest.mark.parametrize("name,opts,variant", [
    ("avg", dict(kernel_size=3, stride=2, padding=1), "backward_linear"),
    ("sum", dict(kernel_size=2), "backward_linear_cover"),
    ("avg", dict(kernel_size=(3, 2), stride=(2, 2)), "backward_linear_cover"),
    ("adaptive_avg", dict(output_size=(4, 3)), "backward_linear"),
    # (stride 1 along the rows: the interior spread by a shifted add a tap)
    ("avg", dict(kernel_size=3, stride=1, padding=1), "backward_linear"),
    ("sum", dict(kernel_size=(2, 3), stride=1, dilation=(1, 2), padding=(0, 2)),
     "backward_linear"),
    ("avg", dict(kernel_size=(2, 1), stride=(2, 1)), "backward_linear_cover"),
    ("avg", dict(kernel_size=(3, 2), stride=(1, 3)), "backward_linear"),  # (the table)
])
@pytest.mark.parametrize("planes", [(1, 3), (2, 5)])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_linear_backward_is_taken_and_right(monkeypatch, name, opts, variant, planes, layout):
    """Both layouts (channels last has one variant: it assigns each position from its first
    window, covered or not)."""
    asked = kernels_asked(monkeypatch)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((*planes, 9, 8))
    if layout == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        variant = "backward_linear"
    gy = rng.standard_normal(numbapool.pool(name, x, layout=layout, **opts).shape)
    asked.clear()
    got = numbapool.pool_grad(name, x, gy, layout=layout, **opts)
    assert asked == [variant]
    np.testing.assert_allclose(got, ref_pool_grad(name, x, gy, layout=layout, **opts),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,opts,layout", [
    ("lp", dict(kernel_size=2, p=2.0), "channels_first"),  # grad reads the element
    ("lp", dict(kernel_size=2, p=2.0), "channels_last"),
])
def test_linear_backward_is_not_taken_otherwise(monkeypatch, name, opts, layout):
    asked = kernels_asked(monkeypatch)
    x = np.random.default_rng(6).uniform(0.5, 1.5, (2, 5, 9, 8))
    if layout == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    gy = np.ones(numbapool.pool(name, x, layout=layout, **opts).shape)
    asked.clear()
    numbapool.pool_grad(name, x, gy, layout=layout, **opts)
    assert not any(v.startswith("backward_linear") for v in asked)


@pytest.mark.parametrize("shape, kw, variant", [
    ((1, 2, 7, 6), dict(kernel_size=3, stride=1, dilation=2), "backward_linear_cover"),
    ((1, 1, 3, 6), dict(kernel_size=(1, 3), stride=1, dilation=(1, 2)),
     "backward_linear_cover"),
    ((2, 3, 5, 4), dict(kernel_size=(1, 2), stride=1, dilation=(1, 2)),
     "backward_linear_cover"),
    ((2, 3, 5, 3), dict(kernel_size=(2, 3), stride=1), "backward_linear_cover"),
    ((2, 3, 5, 7), dict(kernel_size=(1, 2), stride=1, dilation=(1, 2)), "backward_linear"),
])
def test_linear_backward_at_stride_one_with_dilation(monkeypatch, shape, kw, variant):
    """Windows at stride 1 whose dilated taps cover a row once (each tap's shifted copy of
    the row assigns its own elements, none zeroed first) or overlap (they add)."""
    asked = kernels_asked(monkeypatch)
    x = np.random.default_rng(0).standard_normal(shape)
    gy = np.random.default_rng(1).standard_normal(numbapool.pool("avg", x, **kw).shape)
    del asked[:]
    got = numbapool.pool_grad("avg", x, gy, **kw)
    assert asked == [variant]
    np.testing.assert_allclose(got, ref_pool_grad("avg", x, gy, **kw), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("length, table", [(LINEAR_WEIGHTS_MAX, True),
                                           (LINEAR_WEIGHTS_MAX + 1, False)])
def test_linear_backward_weights_table_and_beyond(monkeypatch, length, table):
    """The channels-first row-by-row gradient of a mean makes its windows' weights once a
    part where an output plane has at most LINEAR_WEIGHTS_MAX windows, else for each row
    it gathers: the same values either side of the bound (1-D, 3/s1/p1 so that the windows
    at the ends have 2 taps, the others 3)."""
    asked = kernels_asked(monkeypatch)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 8, length))  # (8 rows: a part has a plane's row, to 8 parts)
    opts = dict(kernel_size=3, stride=1, padding=1, count_include_pad=False)
    gy = rng.standard_normal((1, 8, length))
    del asked[:]
    got = numbapool.pool_grad("avg", x, gy, **opts)
    assert asked == ["backward_linear"]
    want = np.zeros_like(x)  # (each window's gradient over its taps, as a NumPy sum)
    w = gy / np.r_[2.0, np.full(length - 2, 3.0), 2.0]
    want[..., :-1] += w[..., 1:]
    want += w
    want[..., 1:] += w[..., :-1]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    if table:  # (and the reference on a short stretch of it)
        short = x[..., :40].copy()
        np.testing.assert_allclose(
            numbapool.pool_grad("avg", short, gy[..., :40], **opts),
            ref_pool_grad("avg", short, gy[..., :40], **opts), rtol=1e-12, atol=1e-12)


def test_linear_backward_weights_table_in_volumes(monkeypatch):
    """The table of weights holds every output row of a volume's plane, by its place along
    the first two axes (windows clipped at each end of each axis divide differently)."""
    asked = kernels_asked(monkeypatch)
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 3, 5, 6, 7))
    opts = dict(kernel_size=3, stride=1, padding=1, count_include_pad=False)
    gy = rng.standard_normal(x.shape)
    del asked[:]
    got = numbapool.pool_grad("avg", x, gy, **opts)
    assert asked == ["backward_linear"]
    np.testing.assert_allclose(got, ref_pool_grad("avg", x, gy, **opts), rtol=1e-12,
                               atol=1e-12)


def test_linear_backward_weights_keep_their_precision(monkeypatch):
    """float32: each element's gradient is its window's float32 output gradient times the
    mean's weight, 1 / 3 in float64, rounded once to float32 (the table holds the weights in
    the type the reduction's grad gives them, not the gradient's).  Windows of 3 rows that
    cover the input once, so that no sum intervenes."""
    asked = kernels_asked(monkeypatch)
    rng = np.random.default_rng(14)
    x = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    opts = dict(kernel_size=(3, 1), stride=(3, 1))
    gy = rng.standard_normal((2, 4, 3, 8)).astype(np.float32)
    del asked[:]
    got = numbapool.pool_grad("avg", x, gy, **opts)
    assert asked == ["backward_linear_cover"]
    want = np.repeat((gy.astype(np.float64) * (1.0 / 3.0)).astype(np.float32), 3, axis=2)
    np.testing.assert_array_equal(got, want)


@numba.njit(cache=True)
def _checked_mean_grad(v, tap, y, acc, div, prm):
    if div < 1.0:  # (the library's promise: MAX_DIVISOR)
        raise ValueError("a divisor below 1")
    return 1.0 / div


CHECKED_MEAN = numbapool.Streaming(
    "checked_mean_test", init=sum_init, take=sum_take, finish=avg_finish,
    grad=_checked_mean_grad, uses_divisor=True, grad_uses_input=False,
    grad_uses_output=False, grad_uses_acc=False, merge=sum_merge, uses_tap=False)


def test_linear_backward_gives_grad_only_divisors_of_one_or_more():
    """A reduction may rely on its divisors being at least 1 (without an override): the
    weights' table is typed without a call with another."""
    pooler = numbapool.register(numbapool.Pooler(
        "checked_mean_test", numbapool.Sliding(), CHECKED_MEAN, "test only"))
    try:
        x = np.random.default_rng(15).standard_normal((2, 3, 8, 8))
        gy = np.ones((2, 3, 4, 4))
        got = numbapool.pool_grad(pooler.name, x, gy, kernel_size=2, stride=2)
    finally:
        numbapool.unregister(pooler.name)
    np.testing.assert_array_equal(got, np.full(x.shape, 0.25))


@numba.njit(cache=True)
def _scaled_mean_finish(acc, div, prm):
    return acc * prm[0] / div


@numba.njit(cache=True)
def _scaled_mean_grad(v, tap, y, acc, div, prm):
    return prm[0] / div


SCALED_MEAN = numbapool.Streaming(
    "scaled_mean_test", init=sum_init, take=sum_take, finish=_scaled_mean_finish,
    grad=_scaled_mean_grad, uses_divisor=True, grad_uses_input=False, grad_uses_output=False,
    grad_uses_acc=False, merge=sum_merge, uses_tap=False)


@pytest.fixture
def scaled_mean():
    pooler = numbapool.register(numbapool.Pooler(
        "scaled_mean_test", numbapool.Sliding(), SCALED_MEAN, "test only",
        parameters=(numbapool.Param("s", 1.0, "scale", per_channel=True),)))
    yield pooler.name
    numbapool.unregister(pooler.name)


@pytest.mark.parametrize("scale", [[2.0], [0.5, -3.0, 4.0]])
def test_linear_backward_with_a_parameter_per_channel(monkeypatch, scaled_mean, scale):
    """A linear reduction whose weight reads a parameter of each channel and the divisor:
    the weights' table serves calls with one row of parameters; one a channel computes them
    row by row.  Both give each channel's mean gradient times its scale."""
    asked = kernels_asked(monkeypatch)
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 3, 9, 8))
    opts = dict(kernel_size=3, stride=1, padding=1)
    gy = rng.standard_normal(numbapool.pool("avg", x, **opts).shape)
    s = np.array(scale * (3 // len(scale)))
    del asked[:]
    got = numbapool.pool_grad(scaled_mean, x, gy, s=s if len(scale) > 1 else scale[0], **opts)
    assert asked == ["backward_linear"]
    want = ref_pool_grad("avg", x, gy, **opts) * s[None, :, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@settings(max_examples=80, deadline=None)
@given(rank=st.integers(1, 3), data=st.data())
def test_linear_backward_geometry(rank, data):
    """sum and avg, both layouts, over random windows: padding, dilation, ceil mode,
    count_include_pad, divisor_override, gaps between windows (stride > kernel)."""
    name = data.draw(st.sampled_from(["avg", "sum"]))
    spatial = tuple(data.draw(st.integers(3, 9)) for _ in range(rank))
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(rank))
    stride = tuple(data.draw(st.integers(1, 4)) for _ in range(rank))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(rank))
    padding = tuple(data.draw(st.integers(0, k // 2)) for k in kernel)
    opts = dict(kernel_size=kernel, stride=stride, dilation=dilation, padding=padding,
                ceil_mode=data.draw(st.booleans()))
    if name == "avg":
        opts["count_include_pad"] = data.draw(st.booleans())
        opts["divisor_override"] = data.draw(st.sampled_from([None, 3.0]))
    planes = data.draw(st.sampled_from([(1, 2), (3, 4)]))
    layout = data.draw(st.sampled_from(["channels_first", "channels_last"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.standard_normal((*planes, *spatial))
    if layout == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    opts["layout"] = layout
    try:
        want_y = ref_pool(name, x, **opts)
    except ValueError:  # a window of padding only, or a kernel larger than the input
        return
    gy = rng.standard_normal(want_y.shape)
    got = numbapool.pool_grad(name, x, gy, **opts)
    np.testing.assert_allclose(got, ref_pool_grad(name, x, gy, **opts), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("name,opts,via", [
    ("lp", dict(kernel_size=3, stride=2, padding=1, p=2.0), True),
    ("lp", dict(kernel_size=2, p=3.0), True),
    ("lp", dict(kernel_size=(2, 3), stride=2, p=1.5, ceil_mode=True), True),
    ("avg", dict(kernel_size=3, stride=2, padding=1), False),  # (linear: its own kernel)
    ("global_avg", {}, False),  # (a whole plane: its own kernel)
])
@pytest.mark.parametrize("channels", [VIA_CHANNELS_LAST_MIN_CHANNELS - 1,
                                      VIA_CHANNELS_LAST_MIN_CHANNELS])
def test_channels_first_smooth_grad_via_channels_last(name, opts, via, channels, monkeypatch):
    """With enough channels, a smooth non-linear reduction's channels-first gradient runs the
    channels-last kernels between transposes; the values are the reference's either way."""
    asked = kernel_layouts_asked(monkeypatch)
    rng = np.random.default_rng(3)
    x = rng.uniform(0.5, 1.5, (2, channels, 9, 8))
    gy = rng.standard_normal(numbapool.pool(name, x, **opts).shape)
    del asked[:]
    got = numbapool.pool_grad(name, x, gy, **opts)
    np.testing.assert_allclose(got, ref_pool_grad(name, x, gy, **opts), rtol=1e-12,
                               atol=1e-12)
    expect = via and channels >= VIA_CHANNELS_LAST_MIN_CHANNELS
    assert (("channels_last", "backward") in asked) == expect, asked
    backward = [layout for layout, variant in asked if variant.startswith("backward")]
    assert backward and all(layout == "channels_last" for layout in backward) == expect, asked
    # (the forward result it reads comes from pool()'s channels-first kernels, transposed)
    assert all(layout == "channels_first" for layout, variant in asked
               if variant.startswith("forward")), asked


def test_one_dimensional_grad_of_one_sample_keeps_the_channels_first_kernels(monkeypatch):
    # (1, C, L): one input row, which the channels-last kernels could not share among threads
    asked = kernel_layouts_asked(monkeypatch)
    rng = np.random.default_rng(4)
    x = rng.uniform(0.5, 1.5, (1, VIA_CHANNELS_LAST_MIN_CHANNELS, 40))
    opts = dict(kernel_size=3, stride=2, p=2.0)
    gy = rng.standard_normal(numbapool.pool("lp", x, **opts).shape)
    got = numbapool.pool_grad("lp", x, gy, **opts)
    np.testing.assert_allclose(got, ref_pool_grad("lp", x, gy, **opts), rtol=1e-12,
                               atol=1e-12)
    assert ("channels_first", "backward_scatter") in asked, asked
    assert ("channels_last", "backward") not in asked, asked


@pytest.mark.parametrize("opts", [
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=2, divisor_override=3, p=2.5),
    dict(kernel_size=3, stride=1, dilation=2),  # (no dilation in torch's avg_pool2d)
])
def test_gem_grad_via_channels_last_matches_the_scatter(opts, monkeypatch):
    """gem (a plugin: no NumPy reference here) in float32, channels-last kernels between
    transposes against the channels-first scatter, forced by raising the threshold, and
    against PyTorch's autograd of (avg_pool2d(x ** p)) ** (1 / p) where it has the options."""
    pytest.importorskip("numbapool_learned")
    from numbapool.kernels import cpu

    rng = np.random.default_rng(5)
    x = rng.uniform(0.1, 2.0, (2, VIA_CHANNELS_LAST_MIN_CHANNELS, 11, 10)).astype(np.float32)
    gy = rng.standard_normal(numbapool.pool("gem", x, **opts).shape).astype(np.float32)
    asked = kernel_layouts_asked(monkeypatch)
    via = numbapool.pool_grad("gem", x, gy, **opts)
    assert ("channels_last", "backward") in asked, asked
    monkeypatch.setattr(cpu, "VIA_CHANNELS_LAST_MIN_CHANNELS", 10**6)
    del asked[:]
    scatter = numbapool.pool_grad("gem", x, gy, **opts)
    assert ("channels_first", "backward_scatter") in asked, asked
    np.testing.assert_allclose(via, scatter, rtol=2e-5, atol=1e-6)
    assert np.abs(via).max() > 0.01
    torch = pytest.importorskip("torch")
    if "dilation" in opts:
        return
    t = torch.tensor(x.astype(np.float64), requires_grad=True)  # (all above gem's eps)
    p = opts.get("p", 3.0)
    pooled = torch.nn.functional.avg_pool2d(
        t ** p, **{k: v for k, v in opts.items() if k != "p"}) ** (1.0 / p)
    pooled.backward(torch.tensor(gy.astype(np.float64)))
    np.testing.assert_allclose(via, t.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layout,channels,param_layout,moves", [
    ("channels_last", VIA_CHANNELS_LAST_MIN_CHANNELS, "channels_last", []),
    ("channels_first", VIA_CHANNELS_LAST_MIN_CHANNELS, "channels_last",
     ["to_channels_last"] * 3 + ["to_channels_first"]),  # (x, grad_output, y; gx, shared)
    ("channels_first", VIA_CHANNELS_LAST_MIN_CHANNELS - 1, "channels_first", []),
])
@pytest.mark.parametrize("p", [3.0, 2.5])
def test_param_grads_run_channels_last(layout, channels, param_layout, moves, p, monkeypatch):
    """Parameter gradients of a scalar streaming reduction with one parameter row run in
    the channels-last kernel, which vectorises over the channels: for channels-last x with
    no transposes (the input gradient stays channels last too), for channels-first x with
    enough channels between transposes of x, grad_output and the forward result that the
    input gradient shares; fewer channels keep the channels-first kernels.  The gradient
    and dL/dp against PyTorch's autograd of (avg_pool2d(x ** p)) ** (1 / p)."""
    pytest.importorskip("numbapool_learned")
    torch = pytest.importorskip("torch")
    from numbapool.kernels import transpose

    rng = np.random.default_rng(6)
    x = rng.uniform(0.1, 2.0, (2, channels, 11, 10))
    opts = dict(kernel_size=3, stride=2, padding=1, layout=layout)
    if layout == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    gy = rng.standard_normal(numbapool.pool("gem", x, p=p, **opts).shape)
    asked = kernel_layouts_asked(monkeypatch)
    moved = []
    for name in ("to_channels_first", "to_channels_last"):
        real = getattr(transpose, name)
        monkeypatch.setattr(transpose, name,
                            lambda a, real=real, name=name: moved.append(name) or real(a))
    gx, grads = numbapool.pool_grad("gem", x, gy, p=p, return_param_grads=True, **opts)
    assert (param_layout, "param_grad") in asked and len(
        [v for _, v in asked if v == "param_grad"]) == 1, asked
    if layout == "channels_last":
        assert [lay for lay, v in asked if v.startswith("backward")] == [layout], asked
    assert moved == moves, moved
    cf = (lambda a: np.moveaxis(a, -1, 1)) if layout == "channels_last" else (lambda a: a)
    tx = torch.tensor(cf(x), requires_grad=True)
    tp = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    pooled = torch.nn.functional.avg_pool2d(tx ** tp, 3, 2, 1) ** (1.0 / tp)
    pooled.backward(torch.tensor(cf(gy)))
    np.testing.assert_allclose(cf(gx), tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["p"], tp.grad.numpy(), rtol=1e-9)
