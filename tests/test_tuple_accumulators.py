"""Reductions whose accumulator is a tuple (streaming and weighted) in their channels-last
kernels, which hold each component in an array of its own, and channels first through them
(between transposes, or on tiles of small planes), against a plain NumPy reference."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import numbapool
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


MAX_MEAN = numbapool.Streaming("tuple_max_mean_test", init=_ms_init, take=_ms_take,
                               finish=_ms_finish, grad=_ms_grad, uses_divisor=True,
                               accumulator="tuple")
MAX_QUARTERS = numbapool.Streaming("tuple_max_quarters_test", init=_mq_init, take=_mq_take,
                                   finish=_mq_finish, grad=_mq_grad, accumulator="tuple")
SQUARES = numbapool.Weighted("tuple_squares_test", init=_ws_init, take=_ws_take,
                             weight=_ws_weight, grad=_ws_grad, accumulator="tuple")


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
            "tuple_squares_test", numbapool.Sliding(), SQUARES, "test only"))]
    yield
    for pooler in added:
        numbapool.unregister(pooler.name)


def test_component_counts():
    assert [accumulator_width(r) for r in (MAX_MEAN, MAX_QUARTERS, SQUARES)] == [2, 2, 2]
    assert accumulator_width(numbapool.get("avg").reduction) == 0


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


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("shape", [(2, 9, 7, 8), (1, 8, 5, 6, 5)])
def test_gradient_folds_each_window_again(poolers, monkeypatch, shape, layout):
    """The channels-last gradient of a reduction whose grad reads the accumulator (channels
    first with 8 channels, between transposes) folds each window again, component by
    component."""
    from spies import kernel_layouts_asked
    asked = kernel_layouts_asked(monkeypatch)
    rng = np.random.default_rng(4)
    x = rng.uniform(0.5, 1.5, shape)
    gy = rng.standard_normal(numbapool.pool("tuple_squares_test", x, 3, stride=2).shape)
    want = _squares_grad_reference(x, gy, 3, 2)
    if layout == "channels_last":
        x, gy = np.moveaxis(x, 1, -1), np.moveaxis(gy, 1, -1)
    got = numbapool.pool_grad("tuple_squares_test", x, gy, 3, stride=2, layout=layout)
    if layout == "channels_last":
        got = np.moveaxis(got, -1, 1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    assert ("channels_last", "backward") in asked
