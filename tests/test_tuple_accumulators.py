"""Reductions whose accumulator is a tuple (streaming and weighted) in their channels-last
kernels, which hold each component in an array of its own, and channels first through them
(between transposes, or on tiles of small planes), against a plain NumPy reference."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import numbapool
from numbapool.builtin.reductions import avg_finish, avg_grad, sum_init, sum_take
from numbapool.kernels import cpu
from numbapool.kernels.templates import accumulator_width
from spies import plans_made

_jit = numba.njit(nogil=True)


# alpha * max + (1 - alpha) * mean: acc = (max, sum), alpha a parameter a channel
@_jit
def _ms_init(v, tap, prm):
    return (v, v)


@_jit
def _ms_take(acc, v, tap, prm):
    m, s = acc
    return (v if v > m else m, s + v)


@_jit
def _ms_finish(acc, div, prm):
    a = prm[0]
    return a * acc[0] + (1.0 - a) * acc[1] / div


@_jit
def _ms_grad(v, tap, y, acc, div, prm):  # (not what these tests check)
    return (1.0 - prm[0]) / div


# a tuple whose second component starts as an integer and becomes a float in take: the
# kernel's arrays must hold the unified type (an int64 array would drop the quarters)
@_jit
def _mq_init(v, tap, prm):
    return (v, 0)


@_jit
def _mq_take(acc, v, tap, prm):
    return (max(acc[0], v), acc[1] + 0.25)


@_jit
def _mq_finish(acc, div, prm):
    return acc[0] + acc[1]


@_jit
def _mq_grad(v, tap, y, acc, div, prm):
    return 0.0


# weighted: y = sum(v**2) / sum(v), statistics (sum, count of taps)
@_jit
def _ws_init(v, tap, prm):
    return (v, 1.0)


@_jit
def _ws_take(acc, v, tap, prm):
    return (acc[0] + v, acc[1] + 1.0)


@_jit
def _ws_weight(v, tap, acc, div, prm):
    return v / acc[0]


@_jit
def _ws_grad(v, tap, y, acc, div, prm):
    return (2.0 * v - y) / acc[0]


# weighted with a parameter a channel: y = beta sum(v**2) / sum(v)
@_jit
def _wb_weight(v, tap, acc, div, prm):
    return prm[0] * v / acc[0]


@_jit
def _wb_grad(v, tap, y, acc, div, prm):
    return (2.0 * prm[0] * v - y) / acc[0]


# a mean kept as (sum, count): its gradient is linear (avg's, 1 / div)
@_jit
def _mp_finish(acc, div, prm):
    return acc[0] / div


MAX_MEAN = numbapool.Streaming("tuple_max_mean_test", init=_ms_init, take=_ms_take,
                               finish=_ms_finish, grad=_ms_grad, uses_divisor=True,
                               accumulator="tuple")
MAX_QUARTERS = numbapool.Streaming("tuple_max_quarters_test", init=_mq_init, take=_mq_take,
                                   finish=_mq_finish, grad=_mq_grad, accumulator="tuple")
SQUARES = numbapool.Weighted("tuple_squares_test", init=_ws_init, take=_ws_take,
                             weight=_ws_weight, grad=_ws_grad, accumulator="tuple")
SCALED_SQUARES = numbapool.Weighted("tuple_scaled_squares_test", init=_ws_init, take=_ws_take,
                                    weight=_wb_weight, grad=_wb_grad, accumulator="tuple")
MEAN_PAIR = numbapool.Streaming("tuple_mean_pair_test", init=_ws_init, take=_ws_take,
                                finish=_mp_finish, grad=avg_grad, uses_divisor=True,
                                accumulator="tuple", grad_uses_input=False,
                                grad_uses_output=False, grad_uses_acc=False)
# avg's functions, declared a tuple accumulator: its init returns a scalar, held as one
SCALAR_SUM = numbapool.Streaming("tuple_scalar_sum_test", init=sum_init, take=sum_take,
                                 finish=avg_finish, grad=avg_grad, uses_divisor=True,
                                 accumulator="tuple")


def _windows_reference(x, kernel, stride, padding, reduce):
    """``reduce(window values, axis=-1)`` over every window of channels-first ``x`` (windows
    of ``kernel`` at ``stride`` with ``padding`` on each side, padded elements left out)."""
    rank = x.ndim - 2
    pad = [(0, 0), (0, 0)] + [(padding, padding)] * rank
    xp = np.pad(x.astype(np.float64), pad, constant_values=np.nan)
    w = np.lib.stride_tricks.sliding_window_view(xp, (kernel,) * rank, axis=tuple(
        range(2, 2 + rank)))
    w = w[(slice(None), slice(None)) + (slice(None, None, stride),) * rank]
    w = w.reshape(*w.shape[:2 + rank], -1)
    out = np.empty(w.shape[:-1])
    for index in np.ndindex(*w.shape[:-1]):
        taps = w[index]
        out[index] = reduce(taps[~np.isnan(taps)], index[1])
    return out


@pytest.fixture
def poolers():
    alpha = numbapool.Param("alpha", 0.5, "share of the max", per_channel=True)
    added = [numbapool.register(numbapool.Pooler(
        "tuple_max_mean_test", numbapool.Sliding(), MAX_MEAN, "test only",
        parameters=(alpha,))),
        numbapool.register(numbapool.Pooler(
            "tuple_max_quarters_test", numbapool.Sliding(), MAX_QUARTERS, "test only")),
        numbapool.register(numbapool.Pooler(
            "tuple_squares_test", numbapool.Sliding(), SQUARES, "test only")),
        numbapool.register(numbapool.Pooler(
            "tuple_scaled_squares_test", numbapool.Sliding(), SCALED_SQUARES, "test only",
            parameters=(numbapool.Param("beta", 1.0, "scale", per_channel=True),))),
        numbapool.register(numbapool.Pooler(
            "tuple_mean_pair_test", numbapool.Sliding(), MEAN_PAIR, "test only")),
        numbapool.register(numbapool.Pooler(
            "tuple_scalar_sum_test", numbapool.Sliding(), SCALAR_SUM, "test only"))]
    yield
    for pooler in added:
        numbapool.unregister(pooler.name)


def test_component_counts():
    assert [accumulator_width(r) for r in (MAX_MEAN, MAX_QUARTERS, SQUARES)] == [2, 2, 2]
    assert accumulator_width(numbapool.get("avg").reduction) == 0
    assert accumulator_width(SCALAR_SUM) == 0  # (declared a tuple, returns a scalar)


def _call(name, x, layout, **kw):
    """``pool`` in ``layout`` of channels-first ``x``, returned channels first."""
    if layout == "channels_first":
        return numbapool.pool(name, x, layout=layout, **kw)
    y = numbapool.pool(name, np.ascontiguousarray(np.moveaxis(x, 1, -1)), layout=layout,
                       **kw)
    return np.moveaxis(y, -1, 1)


CASES = [  # (shape, kernel, stride, padding)
    ((2, 9, 7, 8), 3, 2, 1),
    ((2, 10, 13), 3, 2, 1),
    ((1, 8, 5, 6, 5), 2, 1, 0),
    ((2, 3, 7, 7), 2, 2, 0),  # (channels first: too few channels for the transposes)
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("shape, kernel, stride, padding", CASES)
def test_values(poolers, shape, kernel, stride, padding, layout, dtype):
    x = np.random.default_rng(len(shape) + shape[1]).uniform(0.5, 1.5, shape).astype(dtype)
    alpha = np.random.default_rng(1).uniform(0.1, 0.9, shape[1])
    geometry = dict(kernel_size=kernel, stride=stride, padding=padding)
    tol = dict(rtol=1e-12, atol=0) if dtype == np.float64 else dict(rtol=2e-6, atol=0)
    k = kernel ** (len(shape) - 2)
    for include_pad in (True, False):

        def max_mean(t, c, include_pad=include_pad):
            div = k if include_pad else t.size
            return alpha[c] * t.max() + (1 - alpha[c]) * t.sum() / div
        got = _call("tuple_max_mean_test", x, layout, alpha=alpha,
                    count_include_pad=include_pad, **geometry)
        assert got.dtype == dtype
        np.testing.assert_allclose(
            got, _windows_reference(x, kernel, stride, padding, max_mean), **tol)
    got = _call("tuple_max_quarters_test", x, layout, **geometry)
    np.testing.assert_allclose(got, _windows_reference(
        x, kernel, stride, padding, lambda t, c: t.max() + 0.25 * (t.size - 1)), **tol)
    got = _call("tuple_squares_test", x, layout, **geometry)
    np.testing.assert_allclose(got, _windows_reference(
        x, kernel, stride, padding, lambda t, c: (t * t).sum() / t.sum()), **tol)
    got = _call("tuple_scaled_squares_test", x, layout, beta=alpha, **geometry)
    np.testing.assert_allclose(got, _windows_reference(
        x, kernel, stride, padding, lambda t, c: alpha[c] * (t * t).sum() / t.sum()), **tol)
    got = _call("tuple_scalar_sum_test", x, layout, count_include_pad=False, **geometry)
    np.testing.assert_allclose(got, _windows_reference(
        x, kernel, stride, padding, lambda t, c: t.mean()), **tol)


def test_the_channels_last_kernels_run(poolers, monkeypatch):
    """Channels last the kernel is the channels-last forward (its per-channel twin for a
    parameter a channel); channels first with 8 channels or more, the same between
    transposes; small planes, on tiles; with fewer channels, the kernel a window at a
    time."""
    plans = plans_made(monkeypatch)
    rng = np.random.default_rng(2)
    x = rng.uniform(0.5, 1.5, (2, 9, 7, 8))
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    numbapool.pool("tuple_squares_test", xl, 3, stride=2, layout="channels_last")
    numbapool.pool("tuple_max_mean_test", xl, 3, stride=2, layout="channels_last",
                   alpha=rng.uniform(0.1, 0.9, 9))
    numbapool.pool("tuple_max_mean_test", x, 3, stride=2, alpha=rng.uniform(0.1, 0.9, 9))
    numbapool.pool("tuple_max_mean_test", x[:, :3], 3, stride=2)
    numbapool.pool("tuple_squares_test", rng.uniform(0.5, 1.5, (4, 32, 5, 5)), 2)
    names = [p.kernel.name.rsplit("/", 2)[-2:] for p in plans
             if isinstance(p, cpu.ForwardPlan)]
    assert names == [["channels_last", "forward"], ["channels_last", "forward_channels"],
                     ["channels_last", "forward_channels"], ["channels_first", "forward"]]
    assert isinstance(plans[3], cpu.ViaChannelsLast)
    assert isinstance(plans[5], cpu.TiledChannelsLast)


def test_tiles_of_small_planes(poolers):
    x = np.random.default_rng(3).uniform(0.5, 1.5, (4, 32, 5, 5))
    got = numbapool.pool("tuple_squares_test", x, 2)
    np.testing.assert_allclose(got, _windows_reference(
        x, 2, 2, 0, lambda t, c: (t * t).sum() / t.sum()), rtol=1e-12)


def _squares_grad_reference(x, gy, kernel, stride):
    """dL/dx of y = sum(v**2) / sum(v) over each window (no padding), L = sum(gy * y):
    dy/dv = (2 v - y) / sum(v), summed over the windows that read each element."""
    rank = x.ndim - 2
    gx = np.zeros(x.shape)
    for index in np.ndindex(*gy.shape):
        n, c, out = index[0], index[1], index[2:]
        window = (n, c) + tuple(slice(o * stride, o * stride + kernel) for o in out)
        v = x[window].astype(np.float64)
        y = (v * v).sum() / v.sum()
        gx[window] += gy[index] * (2 * v - y) / v.sum()
    assert rank == len(out)
    return gx


@pytest.mark.parametrize("scatter", [False, True])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("shape, kernel", [((4, 9, 7, 8), 3), ((1, 8, 5, 6, 5), 2),
                                           ((2, 70, 7, 6), 3)])
def test_gradient_folds_each_window_again(poolers, monkeypatch, shape, kernel, layout,
                                          scatter):
    """The channels-last gradient of a reduction whose grad reads the accumulator (channels
    first with 8 channels, between transposes): the gather folds each window again for
    every element, component by component; the scatter (enough tasks: samples times blocks
    of 64 channels, the last one partial for 70) folds each window once."""
    from spies import kernel_layouts_asked
    asked = kernel_layouts_asked(monkeypatch)
    monkeypatch.setattr(cpu, "CL_SCATTER_MIN_TASKS_PER_THREAD", 0 if scatter else 10**9)
    monkeypatch.setattr(cpu, "_threads", lambda: 2)  # (the rows a thread: as on 2 cores)
    rng = np.random.default_rng(4)
    x = rng.uniform(0.5, 1.5, shape)
    gy = rng.standard_normal(numbapool.pool("tuple_squares_test", x, kernel, stride=2).shape)
    want = _squares_grad_reference(x, gy, kernel, 2)
    if layout == "channels_last":
        x, gy = np.moveaxis(x, 1, -1), np.moveaxis(gy, 1, -1)
    got = numbapool.pool_grad("tuple_squares_test", x, gy, kernel, stride=2, layout=layout)
    if layout == "channels_last":
        got = np.moveaxis(got, -1, 1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    assert ("channels_last", "backward_scatter" if scatter else "backward") in asked
    assert ("channels_last", "backward" if scatter else "backward_scatter") not in asked


def _grad_reference(x, gy, kernel, stride, dydv):
    """dL/dx, L = sum(gy * y), for windows of ``kernel`` at ``stride`` (no padding) whose
    ``dydv(v, c)`` is each element's derivative of the window's result (v: the window)."""
    gx = np.zeros(x.shape)
    for index in np.ndindex(*gy.shape):
        window = index[:2] + tuple(slice(o * stride, o * stride + kernel) for o in index[2:])
        gx[window] += gy[index] * dydv(x[window].astype(np.float64), index[1])
    return gx


def _grad_call(name, x, gy, layout, **kw):
    if layout == "channels_first":
        return numbapool.pool_grad(name, x, gy, layout=layout, **kw)
    got = numbapool.pool_grad(name, np.moveaxis(x, 1, -1), np.moveaxis(gy, 1, -1),
                              layout=layout, **kw)
    return np.moveaxis(got, -1, 1)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_gradients_with_parameters_by_channel_and_linear_ones(poolers, layout):
    """A weighted reduction with a parameter a channel (the gradient kernel's per-channel
    twin) and a tuple accumulator whose gradient is linear (the row-by-row kernels)."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0.5, 1.5, (4, 9, 7, 8))
    beta = rng.uniform(0.5, 2.0, 9)
    gy = rng.standard_normal((4, 9, 3, 3))

    def scaled(v, c):
        y = beta[c] * (v * v).sum() / v.sum()
        return (2 * beta[c] * v - y) / v.sum()
    got = _grad_call("tuple_scaled_squares_test", x, gy, layout, kernel_size=3, stride=2,
                     beta=beta)
    np.testing.assert_allclose(got, _grad_reference(x, gy, 3, 2, scaled), rtol=1e-12,
                               atol=1e-14)
    got = _grad_call("tuple_mean_pair_test", x, gy, layout, kernel_size=3, stride=2)
    np.testing.assert_allclose(got, _grad_reference(x, gy, 3, 2, lambda v, c: 1 / v.size + 0 * v),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("scatter", [False, True])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_large_windows_are_not_folded_again_for_every_element(poolers, monkeypatch, layout,
                                                              scatter):
    """5x5 windows (25 taps, over REFOLD_MAX_TAPS): where the channels-last gradient would
    gather, it runs channels first, where each window is folded once; where it scatters
    (enough tasks), it runs channels last."""
    from spies import kernel_layouts_asked
    assert 9 <= cpu.REFOLD_MAX_TAPS < 25
    asked = kernel_layouts_asked(monkeypatch)
    monkeypatch.setattr(cpu, "CL_SCATTER_MIN_TASKS_PER_THREAD", 0 if scatter else 10**9)
    monkeypatch.setattr(cpu, "_threads", lambda: 2)  # (the rows a thread: as on 2 cores)
    rng = np.random.default_rng(6)
    x = rng.uniform(0.5, 1.5, (4, 9, 9, 8))
    gy = rng.standard_normal((4, 9, 3, 2))
    got = _grad_call("tuple_squares_test", x, gy, layout, kernel_size=5, stride=2)
    np.testing.assert_allclose(got, _grad_reference(
        x, gy, 5, 2, lambda v, c: (2 * v - (v * v).sum() / v.sum()) / v.sum()), rtol=1e-12,
        atol=1e-14)
    assert not any(lay == "channels_last" and variant == "backward"
                   for lay, variant in asked), asked
    assert (("channels_last", "backward_scatter") in asked) == scatter
    # (the channels-last scatter and the channels-first one fold and add alike: the same bits)
    monkeypatch.setattr(cpu, "CL_SCATTER_MIN_TASKS_PER_THREAD", 10**9 if scatter else 0)
    np.testing.assert_array_equal(
        _grad_call("tuple_squares_test", x, gy, layout, kernel_size=5, stride=2), got)
