"""The channels-first column-first kernels (any windows; 2 and 3 taps at stride 2, whose
column loops are specialised) against the NumPy reference, over every small geometry."""

import itertools

import numpy as np
import pytest

import numbapool
from numbapool.kernels.templates import cols_variant
from reference import ref_pool
from spies import kernels_asked

GEOMETRIES = [dict(kernel_size=k, stride=2, padding=p, ceil_mode=c)
              for k, p, c in itertools.product((2, 3), (0, 1), (False, True)) if p <= k // 2]
GEOMETRIES += [dict(kernel_size=(2, 3), stride=(1, 3)), dict(kernel_size=3, stride=2, dilation=2)]


@pytest.mark.parametrize("name", ["max", "min", "avg", "sum", "lp"])
@pytest.mark.parametrize("opts", GEOMETRIES, ids=str)
def test_column_first_kernels(name, opts):
    rng = np.random.default_rng(11)
    extra = dict(p=2.0) if name == "lp" else {}
    for width in range(5, 12):
        x = rng.uniform(0.5, 1.5, (2, 3, 7, width))
        if name in ("max", "min"):
            x[0, 1, 2, width // 2] = np.nan
        got = numbapool.pool(name, x, **opts, **extra)
        want = ref_pool(name, x, **opts, **extra)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, err_msg=f"width {width}")


def test_the_specialised_loops_are_chosen():
    from numbapool.geometry import sliding_axis

    assert cols_variant(sliding_axis(9, 2, 2, 0, 0, 1, False)) == "forward_cols2"
    assert cols_variant(sliding_axis(9, 3, 2, 1, 1, 1, False)) == "forward_cols3"
    assert cols_variant(sliding_axis(9, 3, 2, 1, 1, 2, False)) == "forward_cols"  # dilated
    assert cols_variant(sliding_axis(9, 3, 1, 1, 1, 1, False)) == "forward_cols"


@pytest.mark.parametrize("name", ["avg", "lp"])
@pytest.mark.parametrize("height, width",
                         [(5, 1100), (10, 201), (11, 201), (40, 9), (33, 33), (2, 40)])
@pytest.mark.parametrize("opts", [dict(kernel_size=2, stride=1),
                                  dict(kernel_size=2, stride=2),
                                  dict(kernel_size=3, stride=2, padding=1)], ids=str)
def test_finished_in_runs_of_rows(name, height, width, opts):
    """Smooth reductions gather whole rows until FINISH_RUN (512) outputs or more wait, then
    finish the largest multiple of FINISH_STEP (64) of them and carry the rest into the next
    run; the last run of a plane finishes everything.  Width 1100: every row a run, 11, 22,
    33 outputs carried; 201 wide: three rows a run, 24 then 48 carried, then a last run of
    648 (9 output rows), or 640 and a last 208 (10 rows); 9 wide: one run of 312; 33 wide:
    two runs of exactly 512, nothing carried; 40 wide: one row of 39 (for the 2-tap window
    at stride 1; the stride-2 windows take the specialised 2- and 3-tap loops, with other
    counts carried)."""
    from numbapool.kernels.templates import FINISH_RUN, FINISH_STEP

    assert (FINISH_RUN, FINISH_STEP) == (512, 64)
    rng = np.random.default_rng(12)
    x = rng.uniform(0.5, 1.5, (2, 3, height, width)).astype(np.float32)
    extra = dict(p=3.0) if name == "lp" else {}
    got = numbapool.pool(name, x, **opts, **extra)
    want = ref_pool(name, x.astype(np.float64), **opts, **extra)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=0)


class _PerPlaneSteps(numbapool.WindowRule):
    """Random per-plane windows of ``k`` taps ``step`` apart along the last axis (the
    ``forward_cols_gather`` kernel), sliding 2 taps along the first."""

    name = "per_plane_steps"
    options = {"k": 2, "step": 1, "seed": 0}

    def plan(self, spatial, context, *, k=2, step=1, seed=0):
        rows, cols = spatial
        planes = context.batch * context.channels
        rng = np.random.default_rng(seed)
        last = cols - 1 - (k - 1) * step
        starts = np.sort(rng.integers(0, last + 1, (planes, 5)), axis=1)
        row_axis = numbapool.geometry.sliding_axis(rows, 2, 1, 0, 0, 1, False)
        return numbapool.WindowPlan((row_axis, numbapool.explicit_axis(cols, starts, k, step,
                                                                        extent=k)))


@pytest.mark.parametrize("name", ["max", "min", "avg", "sum"])
@pytest.mark.parametrize("k, step", [(1, 1), (2, 1), (3, 1), (2, 2), (3, 3)])
def test_irregular_whole_windows_kernel(name, k, step):
    from numbapool import Pooler

    rule = _PerPlaneSteps()
    red = numbapool.get(name).reduction
    pooler = numbapool.register(Pooler(f"test_pps_{name}", rule, red, "test"))
    try:
        x = np.random.default_rng(3).uniform(-1, 1, (2, 3, 6, 13))
        x[1, 2, 3, 4] = np.nan
        plan = rule.plan((6, 13), numbapool.WindowContext(2, 3, x.dtype, None), k=k, step=step)
        assert cols_variant(plan.axes[1]) == "forward_cols_gather"
        got = numbapool.pool(pooler.name, x, k=k, step=step)
        starts = plan.axes[1].start.reshape(2, 3, 5)
        want = np.empty((2, 3, 5, 5))
        fold = {"max": np.max, "min": np.min, "avg": np.mean, "sum": np.sum}[name]
        for n, c, r, o in itertools.product(range(2), range(3), range(5), range(5)):
            s = starts[n, c, o]
            want[n, c, r, o] = fold(x[n, c, r:r + 2, s:s + (k - 1) * step + 1:step])
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)
    finally:
        numbapool.unregister(pooler.name)


class _MostlyAtStride2(numbapool.WindowRule):
    """Per-plane windows of ``k`` taps along the last axis, 200 of them, starting 2 apart
    but for a step of 1 (planes 0, 4, ...), of 3 (1, 5, ...) or two of 3 where blocks of
    64 windows meet (2, 6, ...), and starting at ``2 * o`` or one after at random (3, 7,
    ...); ``rows`` taps sliding along the first axis."""

    name = "mostly_at_stride_2"
    options = {"k": 3, "rows": 1}

    def plan(self, spatial, context, *, k=3, rows=1):
        height, width = spatial
        planes = context.batch * context.channels
        rng = np.random.default_rng(planes)
        o = np.arange(200)
        starts = np.empty((planes, 200), dtype=np.int64)
        for p in range(planes):
            b = rng.integers(1, 200)
            starts[p] = [2 * o + 1 - (o >= b), 2 * o + (o >= b),
                         2 * o + (o >= 64) + (o >= 128), 2 * o + rng.integers(0, 2, 200)][p % 4]
        row_axis = numbapool.geometry.sliding_axis(height, rows, 1, 0, 0, 1, False)
        return numbapool.WindowPlan((row_axis, numbapool.explicit_axis(width, starts, k,
                                                                        extent=k)))


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("k, rows", [(2, 1), (3, 1), (3, 2)])
def test_windows_mostly_at_stride_2(monkeypatch, name, k, rows):
    """A selection's windows of 2 or 3 taps whose starts are mostly 2 apart take the
    stride-2 gather kernel (``forward_cols_gather_by2``): rows at stride 2 but for a few
    steps, wherever they fall, read by stretches, the others (every fourth plane) a window
    at a time; against NumPy, NaN included."""
    from numbapool import Pooler

    names = kernels_asked(monkeypatch)
    rule = _MostlyAtStride2()
    pooler = numbapool.register(Pooler(f"test_by2_{name}", rule,
                                       numbapool.get(name).reduction, "test"))
    try:
        x = np.random.default_rng(4).uniform(-1, 1, (2, 4, 5, 404)).astype(np.float32)
        x.reshape(-1)[::7] = np.nan
        got = numbapool.pool(pooler.name, x, k=k, rows=rows)
        assert "forward_cols_gather_by2" in names
        plan = rule.plan((5, 404), numbapool.WindowContext(2, 4, x.dtype, None), k=k,
                         rows=rows)
        starts = plan.axes[1].start.reshape(2, 4, 200)
        fold = {"max": np.max, "min": np.min}[name]
        want = np.empty_like(got)
        for n, c, r, o in itertools.product(range(2), range(4), range(6 - rows), range(200)):
            window = x[n, c, r:r + rows, starts[n, c, o]:starts[n, c, o] + k]
            want[n, c, r, o] = np.nan if np.isnan(window).any() else fold(window)
        np.testing.assert_array_equal(got, want)
    finally:
        numbapool.unregister(pooler.name)


def test_the_rows_read_by_stretches_at_stride_2():
    """The stride-2 gather kernel's choice for a row (``templates._BY2_PLANE``, run as
    Python): windows of 2 or 3 taps 1 apart, at least 64 of them, whose steps are all 2 but
    for a few (at most one a 64 windows), all on one side of 2."""
    import textwrap

    from numbapool.kernels.templates import _BY2_PLANE

    def by2(starts, k=3, d=1):
        scope = dict(np=np, st2=np.asarray(starts, dtype=np.int32), O2=len(starts), d2=d,
                     K2=k)
        exec(textwrap.dedent(_BY2_PLANE), scope)  # noqa: S102 - the template's own text
        return scope["by2"]

    o = np.arange(200)
    assert by2(2 * o) and by2(2 * o, k=2) and by2(2 * o + 5)
    assert by2(2 * o + (o >= 77)) and by2(2 * o - (o >= 77))  # (a step of 3; of 1)
    assert by2(2 * o + (o >= 1) + (o >= 64) + (o >= 199))  # (3 * 64 <= 200)
    assert not by2(2 * o + (o >= 1) + (o >= 64) + (o >= 128) + (o >= 199))  # (4 * 64)
    assert not by2(2 * o + o % 2)  # (steps of 3 and 1)
    assert not by2(2 * o + (o >= 50) - (o >= 150))  # (one of 3, one of 1: they add up)
    assert not by2(2 * o, k=1) and not by2(2 * o, k=4) and not by2(2 * o, d=2)
    assert by2(2 * o[:64]) and not by2(2 * o[:63])
    assert not by2(3 * o) and not by2(o)


class _PerPlaneBoth(numbapool.WindowRule):
    """Per-plane windows of ``k`` consecutive taps along both axes, their starts near
    ``o * stride`` (``spread``: how far apart channels' starts may be); for the masked
    channels-last kernel."""

    name = "per_plane_both"
    options = {"k": 2, "spread": 1, "seed": 0}

    def plan(self, spatial, context, *, k=2, spread=1, seed=0):
        planes = context.batch * context.channels
        rng = np.random.default_rng(seed)
        axes = []
        for length in spatial:
            out = max(1, (length - k - spread) // 2 + 1)
            starts = np.arange(out) * 2 + rng.integers(0, spread + 1, (planes, out))
            axes.append(numbapool.explicit_axis(length, starts, k, extent=k))
        return numbapool.WindowPlan(tuple(axes))


@pytest.mark.parametrize("name", ["max", "min", "avg", "sum"])
@pytest.mark.parametrize("k, spread, masked", [(1, 0, False), (2, 0, False), (1, 1, True),
                                               (2, 1, True), (3, 1, True), (4, 1, True),
                                               (3, 2, True), (2, 5, False)])
def test_per_plane_windows_channels_last(name, k, spread, masked):
    """Channels last, every channel its own windows: the masked kernel (candidate rows
    folded under per-channel masks, no transposes; windows of several rows starting at most
    a row apart fold their shared rows once, then each channel takes its own end row) where
    the starts are close together, the transposing path otherwise; both against a plain
    loop, NaN included.  (With no spread every plane has the same windows, which
    explicit_axis makes shared: the sliding-window kernels.)"""
    _check_per_plane_channels_last(name, k, spread, masked, 19)


@pytest.mark.parametrize("name", ["max", "avg"])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_per_plane_windows_channels_last_same_start(name, k):
    """Two channels: many output rows where both channels' windows start on the same input
    row (no end row beyond the shared ones), beside rows where they do not."""
    _check_per_plane_channels_last(name, k, 1, True, 2)


def _check_per_plane_channels_last(name, k, spread, masked, c):
    from numbapool import Pooler
    from numbapool.geometry import SINGLETON
    from numbapool.kernels import cpu

    rule = _PerPlaneBoth()
    red = numbapool.get(name).reduction
    pooler = numbapool.register(Pooler(f"test_ppb_{name}", rule, red, "test"))
    try:
        n, h, w = 2, 11, 14
        x = np.random.default_rng(5).uniform(-1, 1, (n, h, w, c)).astype(np.float32)
        if name in ("max", "min"):
            x[1, 3, 4, 7 % c] = np.nan
            x[0, 5, :, 2 % c] = np.nan
        plan = rule.plan((h, w), numbapool.WindowContext(n, c, x.dtype, None), k=k,
                         spread=spread)
        axes = (SINGLETON, *plan.axes)
        assert [a.planes for a in plan.axes] == [1 if spread == 0 else n * c] * 2
        assert cpu.masked_channels_last(red, axes, np.zeros((1, 0)), n, c) == masked
        got = numbapool.pool(pooler.name, x, layout="channels_last", k=k, spread=spread)
        sr, sc = (np.broadcast_to(a.start, (n * c, a.out)).reshape(n, c, -1)
                  for a in plan.axes)
        fold = {"max": np.max, "min": np.min, "avg": np.mean, "sum": np.sum}[name]
        want = np.empty((n, sr.shape[2], sc.shape[2], c))
        for i, ch, a, b in itertools.product(range(n), range(c), range(sr.shape[2]),
                                             range(sc.shape[2])):
            r0, c0 = sr[i, ch, a], sc[i, ch, b]
            want[i, a, b, ch] = fold(x[i, r0:r0 + k, c0:c0 + k, ch].astype(np.float64))
        # float32 sums of k*k terms in [-1, 1], in another order: a few float32 ulp of k*k
        exact = name in ("max", "min")
        tol = dict(rtol=0, atol=0) if exact else dict(rtol=1e-6, atol=k * k * 1e-6)
        np.testing.assert_allclose(got, want, **tol)
        first = numbapool.pool(pooler.name, np.ascontiguousarray(np.moveaxis(x, -1, 1)),
                               k=k, spread=spread)
        np.testing.assert_allclose(np.moveaxis(first, 1, -1), want, **tol)
    finally:
        numbapool.unregister(pooler.name)


@pytest.mark.parametrize("name", ["fractional_max", "fractional_avg"])
@pytest.mark.parametrize("shape", [(2, 10, 10, 0), (0, 10, 10, 3)])
def test_per_plane_windows_channels_last_empty(name, shape):
    """No channels or no samples: an empty result of the right shape (the masked kernel's
    per-channel tables are not built), as channels first gives."""
    pytest.importorskip("numbapool_fractional")
    x = np.ones(shape, np.float32)
    got = numbapool.pool(name, x, output_size=5, seed=0, layout="channels_last")
    assert got.shape == (shape[0], 5, 5, shape[3]) and got.dtype == np.float32
    first = numbapool.pool(name, np.ascontiguousarray(np.moveaxis(x, -1, 1)), output_size=5,
                           seed=0)
    assert first.shape == (shape[0], shape[3], 5, 5)


class _PerPlaneDivisors(numbapool.WindowRule):
    """Per-plane windows of 2 taps along both axes whose divisors may differ from plane to
    plane (``padded_count`` 2 + the plane's number mod 3 along the rows with ``vary``, else 2;
    2 along the columns): the masked kernel must not take one plane's divisors for all."""

    name = "per_plane_divisors"
    options = {"vary": True}

    def plan(self, spatial, context, *, vary=True):
        planes = context.batch * context.channels
        rng = np.random.default_rng(3)
        axes = []
        for i, length in enumerate(spatial):
            out = (length - 3) // 2 + 1
            starts = np.arange(out) * 2 + rng.integers(0, 2, (planes, out))
            pad = np.full((planes, out), 2.0)
            if vary and i == 0:
                pad += (np.arange(planes) % 3)[:, None]
            axes.append(numbapool.explicit_axis(length, starts, 2, padded_count=pad, extent=2))
        return numbapool.WindowPlan(tuple(axes), count_include_pad=True)


@pytest.mark.parametrize("vary", [True, False])
def test_per_plane_divisors_channels_last(vary):
    """The masked channels-last kernel with per-plane divisors, different across planes or
    all alike (then passed to it as one row), against a plain loop and channels first."""
    from numbapool import Pooler
    from numbapool.geometry import SINGLETON
    from numbapool.kernels import cpu

    rule = _PerPlaneDivisors()
    pooler = numbapool.register(Pooler("test_ppd_avg", rule, numbapool.get("avg").reduction,
                                       "test"))
    try:
        n, h, w, c = 2, 9, 12, 5
        x = np.random.default_rng(6).uniform(-1, 1, (n, h, w, c))
        plan = rule.plan((h, w), numbapool.WindowContext(n, c, x.dtype, None), vary=vary)
        assert cpu.masked_channels_last(pooler.reduction, (SINGLETON, *plan.axes),
                                        np.zeros((1, 0)), n, c)
        got = numbapool.pool(pooler.name, x, layout="channels_last", vary=vary)
        sr = plan.axes[0].start.reshape(n, c, -1)
        sc = plan.axes[1].start.reshape(n, c, -1)
        dr = plan.axes[0].padded_count.reshape(n, c, -1)
        dc = plan.axes[1].padded_count.reshape(n, c, -1)
        want = np.empty((n, sr.shape[2], sc.shape[2], c))
        for i, ch, a, b in itertools.product(range(n), range(c), range(sr.shape[2]),
                                             range(sc.shape[2])):
            r0, c0 = sr[i, ch, a], sc[i, ch, b]
            want[i, a, b, ch] = (x[i, r0:r0 + 2, c0:c0 + 2, ch].sum()
                                 / (dr[i, ch, a] * dc[i, ch, b]))
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)
        first = numbapool.pool(pooler.name, np.ascontiguousarray(np.moveaxis(x, -1, 1)),
                               vary=vary)
        np.testing.assert_allclose(np.moveaxis(first, 1, -1), want, rtol=1e-13, atol=0)
    finally:
        numbapool.unregister(pooler.name)


DIRECT_GEOMETRIES = [
    dict(kernel_size=2),
    dict(kernel_size=2, padding=1, ceil_mode=True),
    dict(kernel_size=3, stride=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=2, padding=1, divisor_override=2.5),
]


@pytest.fixture
def variants_run(monkeypatch):
    """The names of the CPU kernels a test's calls run (planned afresh: repeated calls
    would reuse an earlier test's plan)."""
    return kernels_asked(monkeypatch)


@pytest.mark.parametrize("name", ["avg", "sum", "lp"])
@pytest.mark.parametrize("opts", DIRECT_GEOMETRIES, ids=str)
@pytest.mark.parametrize("shape, extra", [
    ((2, 3, 261), {}),  # 1-D: each output row reads one input row, in place
    ((2, 3, 5, 133), {}),  # rows folded first
    ((1, 2, 4, 133), dict(kernel_size=(1, 3), stride=(1, 2))),  # one row a window, in 2-D
], ids=["1d", "2d", "2d-one-row"])
def test_direct_kernels(name, opts, shape, extra, variants_run):
    """Smooth reductions: rows of 64 outputs or more whose interior windows share a divisor
    finish as they are folded (``forward_cols2_direct`` / ``forward_cols3_direct``), in place
    where a window has one input row; borders, ceil mode, both divisor rules and an override
    included."""
    opts = {**opts, **extra}
    if "kernel_size" in extra:
        opts.pop("padding", None)
        opts.pop("ceil_mode", None)
    if name != "avg":
        opts.pop("count_include_pad", None)
        opts.pop("divisor_override", None)
    k = opts["kernel_size"] if np.ndim(opts["kernel_size"]) == 0 else opts["kernel_size"][-1]
    params = dict(p=3.0) if name == "lp" else {}
    x = np.random.default_rng(13).uniform(0.5, 1.5, shape)
    got = numbapool.pool(name, x, **opts, **params)
    np.testing.assert_allclose(got, ref_pool(name, x, **opts, **params), rtol=1e-12, atol=0)
    assert variants_run == [f"forward_cols{k}_direct"]
    # float32 computes in float32 (divisors too), as the batched kernels do
    x32 = x.astype(np.float32)
    got32 = numbapool.pool(name, x32, **opts, **params)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, ref_pool(name, x, **opts, **params), rtol=2e-6, atol=0)


class _UnevenDivisors(numbapool.WindowRule):
    """Windows of 2 taps at stride 2 along the last axis (the 2-tap column kernels), each
    with its own divisor 2 + (o mod 3): the interior windows do not share one."""

    name = "uneven_divisors"
    options = {}

    def plan(self, spatial, context):
        rows, cols = spatial
        out = cols // 2
        start = np.arange(out) * 2
        row_axis = numbapool.geometry.sliding_axis(rows, 1, 1, 0, 0, 1, False)
        return numbapool.WindowPlan(
            (row_axis, numbapool.explicit_axis(cols, start, 2, padded_count=2.0 + start % 3,
                                               extent=2)), count_include_pad=True)


def test_direct_kernels_need_one_interior_divisor(variants_run):
    """Interior windows with different divisors take the batched kernel, which divides each
    by its own (the direct kernels divide the interior by the first one's: a wrong choice
    fails here)."""
    from numbapool import Pooler

    pooler = numbapool.register(Pooler("test_uneven_avg", _UnevenDivisors(),
                                       numbapool.get("avg").reduction, "test"))
    try:
        x = np.random.default_rng(14).uniform(0.5, 1.5, (2, 3, 3, 200))
        got = numbapool.pool(pooler.name, x)
        start = np.arange(100) * 2
        want = (x[..., start] + x[..., start + 1]) / (2.0 + start % 3)
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)
        assert variants_run == ["forward_cols2"]
    finally:
        numbapool.unregister(pooler.name)


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("opts", [o for o in DIRECT_GEOMETRIES
                                  if "divisor_override" not in o and "count_include_pad" not in o],
                         ids=str)
@pytest.mark.parametrize("shape, extra, direct", [
    ((2, 3, 261), {}, True),
    ((2, 3, 9), {}, True),  # (short rows too: nothing to finish)
    ((1, 2, 4, 133), dict(kernel_size=(1, 3), stride=(1, 2)), True),
    ((2, 3, 5, 133), {}, False),  # windows of several rows: the rows are folded first
], ids=["1d", "1d-short", "2d-one-row", "2d"])
def test_direct_kernels_selections(name, opts, shape, extra, direct, variants_run):
    """Selections read a window's one input row in place (``forward_cols*_direct``), NaN and
    ties as the other kernels: the first NaN wins, ties keep the first."""
    opts = {**opts, **extra}
    if "kernel_size" in extra:
        opts.pop("padding", None)
        opts.pop("ceil_mode", None)
    k = opts["kernel_size"] if np.ndim(opts["kernel_size"]) == 0 else opts["kernel_size"][-1]
    rng = np.random.default_rng(15)
    x = rng.integers(0, 4, shape).astype(np.float64)  # (many ties)
    x.reshape(-1)[rng.choice(x.size, 5, replace=False)] = np.nan
    got, idx = numbapool.pool(name, x, **opts, return_indices=True)
    np.testing.assert_array_equal(got, ref_pool(name, x, **opts))
    _, want_idx = ref_pool(name, x, **opts, return_indices=True)
    np.testing.assert_array_equal(numbapool.pool(name, x, **opts), got)
    np.testing.assert_array_equal(idx, want_idx)
    assert variants_run[-1] == f"forward_cols{k}" + ("_direct" if direct else "")


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [1, 5, 64])
@pytest.mark.parametrize("geometry", [
    dict(kernel_size=3, stride=2, padding=1),             # rows of 3 taps, 2 at the borders
    dict(kernel_size=(2, 3), stride=1, dilation=(1, 2)),  # 3 taps, dilated
    dict(kernel_size=(3, 2), stride=2, ceil_mode=True),   # rows of 2 taps, 1 at the end
    dict(kernel_size=(1, 4), stride=(1, 3)),              # rows of 4 taps
])
def test_channels_last_selection_rows(name, dtype, channels, geometry):
    """Channels-last max/min values fold a window row of three taps in one loop over C and
    other rows a tap at a time (_CL_SELECT), into the output: against the reference, with
    NaNs and ties, 2-D and 3-D."""
    rng = np.random.default_rng(channels)
    for spatial in [(9, 11), (3, 9, 11)]:
        k = geometry.get("kernel_size")
        opts = dict(geometry) if len(spatial) == 2 else {
            key: (v if not isinstance(v, tuple) else (1, *v)) for key, v in geometry.items()}
        if len(spatial) == 3 and isinstance(k, int):
            opts["kernel_size"] = (2, k, k)
        x = rng.integers(0, 4, (2, *spatial, channels)).astype(dtype)  # many ties
        x[rng.random(x.shape) < 0.03] = np.nan
        got = numbapool.pool(name, x, layout="channels_last", **opts)
        want = ref_pool(name, x, layout="channels_last", **opts)
        np.testing.assert_array_equal(got, want.astype(dtype))
        assert np.isnan(got).any()
