"""The gradient of a linear reduction (avg, sum) over windows of each plane's own
(``backward_linear_planes``, both layouts: fractional average pooling's), against a plain
loop over the windows, in 1-D to 3-D, with whole windows (spread from their starts) and
clipped ones (each tap added), dilated taps, per-plane divisors and ``divisor_override``;
and which calls the channels-last kernel takes."""

import itertools

import numpy as np
import pytest

import numbapool
from numbapool import Pooler
from spies import kernel_layouts_asked


class _PerPlaneRandom(numbapool.WindowRule):
    """Every plane its own windows along every axis: ``out`` windows of ``k`` taps ``step``
    apart at random starts (unsorted, repeats allowed); with ``clip``, some windows lose
    taps at their end; with ``divisors``, each window's divisor is its count plus the
    plane's number mod 3 (else its count)."""

    name = "per_plane_random"
    options = {"k": 2, "step": 1, "clip": False, "divisors": False, "seed": 0}

    def plan(self, spatial, context, *, k=2, step=1, clip=False, divisors=False, seed=0):
        planes = context.batch * context.channels
        rng = np.random.default_rng(seed)
        axes = []
        for length in spatial:
            kk = min(k, (length - 1) // step + 1)
            out = max(1, length // 2)
            starts = rng.integers(0, length - (kk - 1) * step, (planes, out))
            count = np.full((planes, out), kk)
            if clip:
                count = rng.integers(1, kk + 1, (planes, out))
            pad = None
            if divisors:
                pad = count + (np.arange(planes) % 3)[:, None]
            axes.append(numbapool.explicit_axis(length, starts, count, step,
                                                padded_count=pad, extent=kk))
        return numbapool.WindowPlan(tuple(axes), count_include_pad=divisors)


def _reference(plan, x_shape, gy, name, override):
    """The gradient of sum(pool(x) * gy) by a loop over every window of every plane."""
    n, c = x_shape[:2]
    spatial = x_shape[2:]
    gx = np.zeros((n * c, *spatial))
    g = gy.reshape(n * c, *gy.shape[2:]).astype(np.float64)
    for p in range(n * c):
        per_axis = []
        for a in plan.axes:
            rows = (np.broadcast_to(t, (n * c, a.out))[p]
                    for t in (a.start, a.count, a.padded_count))
            per_axis.append([(int(b), int(m), float(d)) for b, m, d in zip(*rows)])
        for o in itertools.product(*(range(len(w)) for w in per_axis)):
            wins = [per_axis[i][j] for i, j in enumerate(o)]
            div = np.prod([d for _, _, d in wins]) if override is None else override
            weight = g[(p, *o)] / div if name == "avg" else g[(p, *o)]
            for taps in itertools.product(*(range(m) for _, m, _ in wins)):
                at = tuple(b + t * a.step for (b, _, _), t, a in zip(wins, taps, plan.axes))
                gx[(p, *at)] += weight
    return gx.reshape(x_shape)


GEOMETRIES = [  # (k, step, clip, divisors, divisor_override)
    (2, 1, False, False, None),
    (3, 1, False, True, None),   # (whole windows, spread by two shifted adds)
    (3, 2, False, False, None),  # (dilated: shifts of 2 and 4)
    (3, 1, True, False, None),   # (clipped windows: every tap added)
    (2, 2, True, True, None),
    (2, 1, False, False, 2.5),
]


@pytest.mark.parametrize("name, k, step, clip, divisors, override",
                         [("avg", *g) for g in GEOMETRIES]
                         + [("sum", *g) for g in GEOMETRIES if not g[3] and g[4] is None])
@pytest.mark.parametrize("spatial", [(17,), (6, 9), (12, 13), (4, 5, 7)], ids=str)
@pytest.mark.parametrize("layout, c", [("channels_first", 5), ("channels_last", 5),
                                       ("channels_last", 20)])
def test_linear_grad_over_per_plane_windows(name, spatial, k, step, clip, divisors, override,
                                            layout, c, monkeypatch):
    """Channels last with 20 channels (a block of LINEAR_PLANES_BLOCK = 16, whose output
    gradients and gradient are transposed through registers where the 12x13 input's 36
    outputs and every plane hold whole blocks of the vector width, and one of 4) runs the
    channels-last kernel; with 5 (4 tasks), the channels-first one between transposes."""
    from numbapool.kernels.templates import LINEAR_PLANES_BLOCK

    assert LINEAR_PLANES_BLOCK == 16
    rule = _PerPlaneRandom()
    pooler = numbapool.register(Pooler(f"test_lpg_{name}", rule,
                                       numbapool.get(name).reduction, "test"))
    try:
        n = 4  # (20 planes or more: the plane-by-plane kernel runs from 8)
        rng = np.random.default_rng(len(spatial) + k + step)
        x = rng.uniform(-1, 1, (n, c, *spatial))
        rule_opts = dict(k=k, step=step, clip=clip, divisors=divisors)
        plan = rule.plan(spatial, numbapool.WindowContext(n, c, x.dtype, None), **rule_opts)
        opts = dict(rule_opts, divisor_override=override)
        assert any(a.planes == n * c for a in plan.axes)
        y = numbapool.pool(pooler.name, x, **opts)
        gy = rng.standard_normal(y.shape)
        want = _reference(plan, x.shape, gy, name, override)
        asked = kernel_layouts_asked(monkeypatch)

        def grad(xx, gg):
            if layout == "channels_first":
                return numbapool.pool_grad(pooler.name, xx, gg, **opts)
            return np.moveaxis(numbapool.pool_grad(
                pooler.name, np.ascontiguousarray(np.moveaxis(xx, 1, -1)),
                np.ascontiguousarray(np.moveaxis(gg, 1, -1)), layout="channels_last",
                **opts), -1, 1)

        got = grad(x, gy)
        kernel_layout = "channels_last" if c == 20 else "channels_first"
        assert asked == [(kernel_layout, "backward_linear_planes")], asked
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        assert np.abs(want).max() > 0.1
        # float32: the same within float32 rounding
        got32 = grad(x.astype(np.float32), gy.astype(np.float32))
        assert got32.dtype == np.float32
        np.testing.assert_allclose(got32, want, rtol=1e-5, atol=1e-5)
    finally:
        numbapool.unregister(pooler.name)


def test_fewer_planes_keep_the_gather_kernel(monkeypatch):
    """Under SCATTER_MIN_PLANES planes (each a task of the plane-by-plane kernel) the
    gradient gathers through the inverse maps, which share out input rows; same values."""
    from numbapool.kernels.cpu import SCATTER_MIN_PLANES

    rule = _PerPlaneRandom()
    pooler = numbapool.register(Pooler("test_lpg_few", rule, numbapool.get("avg").reduction,
                                       "test"))
    try:
        n, c = 1, SCATTER_MIN_PLANES - 1
        x = np.random.default_rng(1).uniform(-1, 1, (n, c, 6, 9))
        plan = rule.plan((6, 9), numbapool.WindowContext(n, c, x.dtype, None), k=3)
        gy = np.random.default_rng(2).standard_normal(numbapool.pool(pooler.name, x, k=3).shape)
        asked = kernel_layouts_asked(monkeypatch)
        got = numbapool.pool_grad(pooler.name, x, gy, k=3)
        assert ("channels_first", "backward_linear_planes") not in asked, asked
        np.testing.assert_allclose(got, _reference(plan, x.shape, gy, "avg", None),
                                   rtol=1e-12, atol=1e-12)
    finally:
        numbapool.unregister(pooler.name)


def test_which_channels_last_calls_run_in_place():
    """At least SCATTER_MIN_PLANES tasks (a sample and 16 channels each) and planes of at
    most LINEAR_PLANES_MAX_PLANE elements; per-plane windows and a linear reduction."""
    from numbapool.geometry import SINGLETON, explicit_axis, sliding_axis
    from numbapool.kernels.cpu import (
        LINEAR_PLANES_MAX_PLANE,
        SCATTER_MIN_PLANES,
        linear_planes_channels_last,
    )

    avg, lp = numbapool.get("avg").reduction, numbapool.get("lp").reduction

    def axes(length, planes):
        starts = np.zeros((planes, 2), dtype=np.int64)
        starts[1:, 1] = 1  # (plane 0 differs from the others: per-plane windows)
        return (SINGLETON, SINGLETON, explicit_axis(length, starts, 2))

    n = SCATTER_MIN_PLANES
    assert linear_planes_channels_last(avg, axes(LINEAR_PLANES_MAX_PLANE, n * 16), n, 16)
    assert not linear_planes_channels_last(avg, axes(LINEAR_PLANES_MAX_PLANE + 1, n * 16), n,
                                           16)
    assert linear_planes_channels_last(avg, axes(9, (n // 2) * 17), n // 2, 17)  # (2 blocks)
    assert not linear_planes_channels_last(avg, axes(9, (n - 1) * 16), n - 1, 16)
    assert not linear_planes_channels_last(lp, axes(9, n * 16), n, 16)  # (not linear)
    shared = (SINGLETON, SINGLETON, sliding_axis(9, 2, 2, 0, 0, 1, False))
    assert not linear_planes_channels_last(avg, shared, n, 16)  # (its own kernels)
