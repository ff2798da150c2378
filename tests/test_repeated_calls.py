"""Repeated calls reuse their checked plan, and only when every argument is the same."""

import contextlib

import numpy as np
import pytest

import numbapool
from reference import ref_pool


@contextlib.contextmanager
def _max_pooler(name, rule):
    """A max pooler over ``rule``'s windows (drawn: not deterministic), registered as
    ``name`` for the block."""
    pooler = numbapool.register(numbapool.Pooler(name, rule, numbapool.get("max").reduction,
                                                 "test", deterministic=False))
    try:
        yield pooler
    finally:
        numbapool.unregister(name)


def test_repeated_call_new_data_same_arguments(monkeypatch):
    """New data, same arguments: the plan is reused, and from the third call its kernel runs
    bound (launch.Bound: the fixed arguments packed once, only the new arrays' addresses
    filled in); the results stay right on every call."""
    from numbapool import api
    from numbapool.kernels import launch

    runs = []
    real = launch.Bound.__call__

    def spy(self, *arrays, before=None):
        runs.append(len(arrays))
        return real(self, *arrays, before=before)

    monkeypatch.setattr(launch.Bound, "__call__", spy)
    monkeypatch.setattr(api, "_KNOWN_CALLS", type(api._KNOWN_CALLS)())  # (no plans yet)
    rng = np.random.default_rng(0)
    for _ in range(4):
        x = rng.random((2, 3, 9, 8))
        np.testing.assert_allclose(numbapool.pool("avg", x, 3, stride=2, padding=1),
                                   ref_pool("avg", x, 3, stride=2, padding=1), rtol=1e-12)
        y, idx = numbapool.pool("max", x, 3, stride=2, return_indices=True)
        np.testing.assert_array_equal(y, ref_pool("max", x, 3, stride=2))
        assert idx.dtype == np.int64
        np.testing.assert_array_equal(np.take_along_axis(x.reshape(2, 3, -1),
                                                         idx.reshape(2, 3, -1), 2),
                                      y.reshape(2, 3, -1))
    assert runs == [2, 3, 2, 3]  # (avg: x and out; max with indices: x, out and idx)


def test_values_equal_to_valid_ones_are_still_checked():
    x = np.random.default_rng(1).random((1, 2, 6, 6))
    numbapool.pool("max", x, 2, ceil_mode=True)
    numbapool.pool("max", x, (2, 2))
    with pytest.raises(TypeError, match="ceil_mode"):
        numbapool.pool("max", x, 2, ceil_mode=1)  # 1 == True, but not a bool
    with pytest.raises(TypeError, match="kernel_size"):
        numbapool.pool("max", x, (2.0, 2.0))  # 2.0 == 2, but not an int
    with pytest.raises(TypeError, match="kernel_size"):
        numbapool.pool("max", x, 2.0)
    np.testing.assert_array_equal(numbapool.pool("max", x, [2, 2]), ref_pool("max", x, 2))
    np.testing.assert_array_equal(numbapool.pool("max", x, [2, 2]), ref_pool("max", x, 2))
    with pytest.raises(TypeError, match="kernel_size"):
        numbapool.pool("max", x, [2.0, 2])  # a list equal to a valid one, with a float
    numbapool.pool("max", x, (2, 1))
    with pytest.raises(TypeError, match="kernel_size"):
        numbapool.pool("max", x, (2, True))  # an element equal to a valid one, a bool
    numbapool.pool("max", x, 2, padding=((1, 1), (0, 0)))
    with pytest.raises(ValueError, match="padding"):
        numbapool.pool("max", x, 2, padding=((1, 1), (0, 0.0)))  # nested, with a float
    numbapool.pool("lp", x, 2, p=1)
    with pytest.raises(TypeError, match="parameter p"):
        numbapool.pool("lp", x, 2, p=True)  # a pooler's parameter: 1 == True


def test_reregistered_name_is_planned_again():
    x = np.random.default_rng(2).random((1, 1, 4, 4))
    first = numbapool.pool("max", x, 2)
    pooler = numbapool.unregister("max")
    try:
        numbapool.register(numbapool.Pooler("max", numbapool.Sliding(),
                                            numbapool.get("min").reduction, "min in disguise"))
        np.testing.assert_array_equal(numbapool.pool("max", x, 2),
                                      ref_pool("min", x, 2))
    finally:
        numbapool.unregister("max")
        from numbapool.registry import REGISTRY

        REGISTRY._poolers["max"] = pooler  # back as the built-in, with its source
    np.testing.assert_array_equal(numbapool.pool("max", x, 2), first)


class _RandomStarts(numbapool.WindowRule):
    """Windows of 2 taps at random starts along the last axis, new on every call (drawn from
    the call's generator), the whole first axis in each: a pooler with
    ``deterministic=False``."""

    name = "random_starts"
    options = {"out": 4, "seed": None}

    def plan(self, spatial, context, *, out=4, seed=None):
        rows, cols = spatial
        starts = context.rng.integers(0, cols - 1, (context.batch * context.channels, out))
        return numbapool.WindowPlan((numbapool.geometry.global_axis(rows),
                                     numbapool.explicit_axis(cols, starts, 2, extent=2)))


def _random_starts_max(x, seed, out=4):
    starts = np.random.default_rng(seed).integers(0, x.shape[-1] - 1,
                                                  (x.shape[0] * x.shape[1], out))
    starts = starts.reshape(x.shape[0], x.shape[1], out)
    want = np.empty((x.shape[0], x.shape[1], 1, out))
    for n, c, o in np.ndindex(*starts.shape):
        want[n, c, 0, o] = x[n, c, :, starts[n, c, o]:starts[n, c, o] + 2].max()
    return want


def test_repeated_calls_of_a_random_pooler_draw_new_windows():
    """A pooler that draws its windows skips the argument checks when called again with the
    same arguments, but draws new windows every time: the same ones for the same seed, new
    ones without."""

    with _max_pooler("test_random_starts", _RandomStarts()) as pooler:
        x = np.random.default_rng(3).random((2, 3, 5, 40))
        for seed in (7, 7, 8, 7):
            np.testing.assert_array_equal(numbapool.pool(pooler.name, x, seed=seed),
                                          _random_starts_max(x, seed))
        unseeded = [numbapool.pool(pooler.name, x) for _ in range(3)]
        assert not np.array_equal(unseeded[0], unseeded[1])
        assert not np.array_equal(unseeded[1], unseeded[2])
        with pytest.raises(TypeError, match="seed"):
            numbapool.pool(pooler.name, x, seed=7.0)  # equal to 7, not an int


class _RedrawnStarts(numbapool.WindowRule):
    """Windows of 2 taps along both axes, window ``o`` starting at ``2 * o`` or one after,
    at random, each plane its own, new on every call (close enough across the channels for
    the masked channels-last kernel); with a ``redraw`` that draws the same numbers into the
    library's arrays (or, ``bad=True``, starts past the end of the last axis)."""

    name = "redrawn_starts"
    options = {"out": 3, "bad": False, "shared": False, "any_layout": False}
    orders: list = []  # (each redraw's arrays: C-contiguous or not)

    def plan(self, spatial, context, *, out=3, bad=False, shared=False, any_layout=False):
        starts = self._draw(spatial, context, out, shared)
        axes = tuple(numbapool.explicit_axis(n, s, 2) for n, s in zip(spatial, starts))

        def redraw(context, into):
            self.orders.append(tuple(bool(a.flags.c_contiguous) for a in into))
            for i, s in enumerate(self._draw(spatial, context, out, shared)):
                into[i][...] = s + (spatial[i] if bad and i == len(spatial) - 1 else 0)

        redraw.any_layout = any_layout
        return numbapool.WindowPlan(axes, redraw=redraw)

    @staticmethod
    def _draw(spatial, context, out, shared):
        """``shared``: the first axis's windows the same in every plane (and drawn anew)."""
        planes = context.batch * context.channels
        return [2 * np.arange(out) + context.rng.integers(0, 2, (1 if shared and i == 0
                                                                else planes, out))
                .repeat(planes if shared and i == 0 else 1, axis=0)
                for i in range(len(spatial))]


def _redrawn_starts_max(x, seed, out=3, shared=False):
    """The reference: the windows of _RedrawnStarts for ``seed``, channels first."""
    rng = np.random.default_rng(seed)
    n, c = x.shape[:2]
    s0, s1 = ((2 * np.arange(out) + rng.integers(0, 2, (1 if shared and i == 0 else n * c,
                                                        out)))
              .repeat(n * c if shared and i == 0 else 1, axis=0).reshape(n, c, out)
              for i in range(2))
    want = np.empty((n, c, out, out), dtype=x.dtype)
    for i, j, a, b in np.ndindex(n, c, out, out):
        want[i, j, a, b] = x[i, j, s0[i, j, a]:s0[i, j, a] + 2, s1[i, j, b]:s1[i, j, b] + 2].max()
    return want


def _kept_runs(monkeypatch) -> list:
    """No plans kept yet; the list then receives what every run of a kept pass of a
    redrawing rule (numbapool.redraw.RedrawnForward.run) returns, None where it declined."""
    from numbapool import api, redraw

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    runs = []
    real = redraw.RedrawnForward.run

    def spy(self, x, data=None):
        runs.append(real(self, x, data))
        return runs[-1]

    monkeypatch.setattr(redraw.RedrawnForward, "run", spy)
    return runs


@pytest.mark.parametrize("channels", [5, 8])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_a_rule_that_redraws_runs_the_kept_kernel_with_new_windows(monkeypatch, layout,
                                                                    channels):
    """From the second call on, a rule with ``redraw`` draws into the kept kernel's tables
    (numbapool.redraw): the results are those of the seed's windows on every call, new
    without a seed, and with indices too."""

    runs = _kept_runs(monkeypatch)
    with _max_pooler("test_redrawn_starts", _RedrawnStarts()) as pooler:
        x = np.random.default_rng(4).random((2, channels, 7, 9)).astype(np.float32)
        xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        arg = x if layout == "channels_first" else xl

        def pool(**kw):
            got = numbapool.pool(pooler.name, arg, layout=layout, **kw)
            if layout == "channels_first":
                return got
            return tuple(np.moveaxis(g, -1, 1) for g in got) if isinstance(got, tuple) \
                else np.moveaxis(got, -1, 1)

        for seed in (7, 7, 7, 7, 8, 8, 8):  # (the seed is an argument: 8 is a new call)
            np.testing.assert_array_equal(pool(seed=seed), _redrawn_starts_max(x, seed))
        assert len(runs) == 3  # (from the third call of each)
        for seed in (5, 5, 5):
            y, idx = pool(seed=seed, return_indices=True)
            np.testing.assert_array_equal(y, _redrawn_starts_max(x, seed))
            np.testing.assert_array_equal(
                np.take_along_axis(x.reshape(2, channels, -1),
                                   idx.reshape(2, channels, -1), 2),
                y.reshape(2, channels, -1))
        # (channels-last indices of fewer than 8 channels come from the channels-first
        # kernel between transposes, which is planned on every call; of 8 or more, from the
        # masked kernel with indices, whose pass is kept)
        kept = layout == "channels_first" or channels >= 8
        assert len(runs) == (4 if kept else 3)
        unseeded = [pool() for _ in range(4)]
        assert all(not np.array_equal(a, b) for a, b in zip(unseeded, unseeded[1:]))
        assert len(runs) == (6 if kept else 5)


@pytest.mark.parametrize("any_layout", [False, True])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_a_redraw_gets_starts_in_the_order_it_takes(monkeypatch, layout, any_layout):
    """A rule's ``redraw`` is given C-contiguous starts unless it says it takes either order
    (``any_layout``); then channels-last kernels, which lay the starts out by channel, give
    it F-contiguous ones.  The results are the seed's windows either way."""

    runs = _kept_runs(monkeypatch)
    rule = _RedrawnStarts()
    rule.orders = []
    with _max_pooler("test_redrawn_orders", rule) as pooler:
        x = np.random.default_rng(5).random((2, 5, 7, 9)).astype(np.float32)
        arg = x if layout == "channels_first" else np.ascontiguousarray(np.moveaxis(x, 1, -1))
        for _ in range(4):
            y = numbapool.pool(pooler.name, arg, layout=layout, seed=3, any_layout=any_layout)
            if layout == "channels_last":
                y = np.moveaxis(y, -1, 1)
            np.testing.assert_array_equal(y, _redrawn_starts_max(x, 3))
        assert len(runs) == 2 and rule.orders
        by_position = any_layout and layout == "channels_last"
        assert all(order == (not by_position,) * 2 for order in rule.orders)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_windows_the_planes_share_are_kept_until_a_draw_differs(monkeypatch, layout):
    """Windows every plane shares in the kept plan stay (their kernel may use their
    regularity); a call whose new windows along that axis differ is planned anew, and the
    kept pass made again from it."""
    from numbapool import randomness

    handed = []

    def generator(seed):  # (a new known stream for every draw: unseeded calls, checked)
        handed.append(1000 + len(handed))
        return np.random.default_rng(handed[-1])

    monkeypatch.setattr(randomness, "generator", generator)
    runs = _kept_runs(monkeypatch)
    with _max_pooler("test_redrawn_shared", _RedrawnStarts()) as pooler:
        x = np.random.default_rng(7).random((2, 4, 7, 8)).astype(np.float32)
        arg = x if layout == "channels_first" else np.ascontiguousarray(np.moveaxis(x, 1, -1))
        for _ in range(16):
            y = numbapool.pool(pooler.name, arg, shared=True, layout=layout)
            if layout == "channels_last":
                y = np.moveaxis(y, -1, 1)
            np.testing.assert_array_equal(y, _redrawn_starts_max(x, handed[-1], shared=True))
        done = [r is not None for r in runs]
        assert True in done and False in done  # (both: kept, and planned anew)


@pytest.mark.parametrize("any_layout", [False, True])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_a_redraw_outside_the_input_is_an_error(monkeypatch, layout, any_layout):
    """Starts a rule redraws are checked: outside the axis, a ValueError naming the rule and
    the axis, not a read outside the array.  (Channels last, the masked kernel's per-channel
    tables are refilled, and the pass that makes them checks the starts: on the calling
    thread, or, for starts laid out by position, ``any_layout``, on the kernel's.)"""
    from numbapool import api
    from numbapool.kernels import launch

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})

    def pool(**kw):
        arg = x if layout == "channels_first" else np.ascontiguousarray(np.moveaxis(x, 1, -1))
        y = numbapool.pool("test_redrawn_bad", arg, layout=layout, any_layout=any_layout, **kw)
        return y if layout == "channels_first" else np.moveaxis(y, -1, 1)

    with _max_pooler("test_redrawn_bad", _RedrawnStarts()):
        x = np.random.default_rng(5).random((2, 3, 7, 7))
        for _ in range(2):  # (planned; then planned and kept)
            np.testing.assert_array_equal(pool(bad=True, seed=1), _redrawn_starts_max(x, 1))
        ran = []  # (the kernels run: a part whose tables were refused runs neither the
        # masked kernel for these windows nor its fallback, which would read outside)
        call = launch.Launcher.__call__
        monkeypatch.setattr(launch.Launcher, "__call__",
                            lambda self, *a, **kw: ran.append(self.name) or call(self, *a, **kw))
        with pytest.raises(ValueError, match=r"_RedrawnStarts.*redrew windows outside "
                                             r"spatial axis 1 of length 7"):
            pool(bad=True, seed=1)
        assert not any(name.endswith("/forward_masked") for name in ran)
        monkeypatch.setattr(launch.Launcher, "__call__", call)
        np.testing.assert_array_equal(pool(seed=1), _redrawn_starts_max(x, 1))


def test_repeated_fractional_max_with_indices_on_shared_windows(monkeypatch):
    """Fractional max at half the size with windows of 2 gives every plane the windows of a
    2x2, stride-2 pool; with indices, channels first and 8 channels or more, that runs the
    channels-last kernel between transposes, which the kept pass runs too (it raised
    AttributeError on the second call)."""
    runs = _kept_runs(monkeypatch)
    x = np.random.default_rng(7).random((2, 8, 10, 12)).astype(np.float32)
    blocks = x.reshape(2, 8, 5, 2, 6, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 8, 5, 6, 4)
    want = blocks.max(axis=-1)
    pick = blocks.argmax(axis=-1)  # (0..3 within the block: row-major over its 2x2)
    rows = np.arange(5)[:, None] * 2 + pick // 2
    cols = np.arange(6)[None, :] * 2 + pick % 2
    want_idx = rows * 12 + cols
    for _ in range(4):
        y, idx = numbapool.pool("fractional_max", x, kernel_size=2, output_ratio=0.5, seed=3,
                                return_indices=True)
        np.testing.assert_array_equal(y, want)
        np.testing.assert_array_equal(idx, want_idx)
    assert len(runs) == 2  # (the kept pass, from the third call)


def test_threads_share_a_redrawn_call():
    """Threads calling one redrawing pooler with the same arguments: one runs the kept
    kernel at a time, the others plan their own; every result is its seed's."""
    from concurrent.futures import ThreadPoolExecutor

    x = np.random.default_rng(6).random((4, 8, 20, 20)).astype(np.float32)
    kw = dict(output_size=(9, 9), kernel_size=3)
    want = {s: numbapool.pool("fractional_max", x, seed=s, **kw) for s in range(6)}
    with ThreadPoolExecutor(3) as ex:
        got = list(ex.map(lambda s: (s, numbapool.pool("fractional_max", x, seed=s, **kw)),
                          [s % 6 for s in range(60)]))
    for s, y in got:
        np.testing.assert_array_equal(y, want[s])


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_repeated_routed_gradient(monkeypatch, layout):
    """pool_grad(..., indices=) called again with the same arguments routes straight away
    (no planning), with the same results as the reference each time; a gradient or indices
    it cannot take as they are (another dtype, strides, shape, type) go through the checks,
    and indices out of range still raise."""
    from numbapool import api
    from reference import from_channels_first, ref_pool_grad

    monkeypatch.setattr(api, "_KNOWN_ROUTES", {})
    planned = []
    real = api._plan_call
    monkeypatch.setattr(api, "_plan_call", lambda *a: planned.append(1) or real(*a))
    rng = np.random.default_rng(12)
    kw = dict(kernel_size=3, stride=2, padding=1, layout=layout)
    x = np.ascontiguousarray(
        from_channels_first(rng.standard_normal((2, 3, 9, 8)).astype(np.float32), layout))
    y, idx = numbapool.pool("max", x, return_indices=True, **kw)
    want = ref_pool_grad("max", x, np.ones_like(y), **kw)
    for _ in range(3):
        gy = rng.standard_normal(y.shape).astype(np.float32)
        got = numbapool.pool_grad("max", x, gy, indices=idx, **kw)
        assert got.dtype == np.float32 and got.shape == x.shape
        np.testing.assert_allclose(got, ref_pool_grad("max", x, gy, **kw), rtol=1e-6)
    assert len(planned) == 2  # (the forward and the first gradient)
    for gy, ix in [(np.ones(y.shape), idx), (np.ones_like(y), idx.astype(np.int32)),
                   (np.asfortranarray(np.ones_like(y)), idx), (np.ones_like(y).tolist(), idx)]:
        np.testing.assert_allclose(numbapool.pool_grad("max", x, gy, indices=ix, **kw), want,
                                   rtol=1e-6)
    assert len(planned) == 6
    with pytest.raises(ValueError, match="grad_output must have shape"):
        numbapool.pool_grad("max", x, np.ones_like(y)[:1], indices=idx, **kw)
    bad = idx.copy()
    bad.flat[5] = 10**6
    with pytest.raises(ValueError, match="indices"):
        numbapool.pool_grad("max", x, np.ones_like(y), indices=bad, **kw)
    with pytest.raises(ValueError, match=r"indices must have shape"):
        numbapool.pool_grad("max", x, np.ones_like(y), indices=idx[:1], **kw)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("name, kw", [
    ("avg", dict(kernel_size=3, stride=2, padding=1)),
    ("sum", dict(kernel_size=2)),
    ("avg", dict(kernel_size=(2, 3), stride=1, count_include_pad=False, padding=1)),
])
def test_repeated_linear_gradient(monkeypatch, layout, name, kw):
    """pool_grad of a sum or a mean called again with the same arguments runs its bound
    kernel straight away (no planning), with the reference's results for each new x and
    gradient; a gradient it cannot take as it is (another dtype, strides, type) goes through
    the checks, and one of the wrong shape still raises.  Other arguments plan again."""
    from numbapool import api
    from reference import from_channels_first, ref_pool_grad

    monkeypatch.setattr(api, "_KNOWN_GRADS", {})
    planned = []
    real = api._plan_call
    monkeypatch.setattr(api, "_plan_call", lambda *a: planned.append(1) or real(*a))
    rng = np.random.default_rng(13)
    kw = dict(kw, layout=layout)
    shape = from_channels_first(np.empty((2, 3, 9, 8)), layout).shape
    y = numbapool.pool(name, np.ones(shape, np.float32), **kw)
    del planned[:]
    for _ in range(3):
        x = rng.standard_normal(shape).astype(np.float32)
        gy = rng.standard_normal(y.shape).astype(np.float32)
        got = numbapool.pool_grad(name, x, gy, **kw)
        assert got.dtype == np.float32 and got.shape == x.shape
        np.testing.assert_allclose(got, ref_pool_grad(name, x, gy, **kw), rtol=1e-5,
                                   atol=1e-6)
    assert len(planned) == 1 and len(api._KNOWN_GRADS) == 1
    want = ref_pool_grad(name, x, np.ones(y.shape), **kw)
    for gy in [np.ones(y.shape), np.asfortranarray(np.ones(y.shape, np.float32)),
               np.ones(y.shape, np.float32).tolist()]:
        np.testing.assert_allclose(numbapool.pool_grad(name, x, gy, **kw), want, rtol=1e-5)
    assert len(planned) == 4
    with pytest.raises(ValueError, match="grad_output must have shape"):
        numbapool.pool_grad(name, x, np.ones(y.shape, np.float32)[:1], **kw)
    # (x of another dtype or shape, other options: their own plans)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(numbapool.pool_grad(name, x64, np.ones(y.shape), **kw), want,
                               rtol=1e-12)
    other = dict(kw, divisor_override=2.0) if name == "avg" else dict(kw, stride=1)
    np.testing.assert_allclose(
        numbapool.pool_grad(name, x, np.ones(numbapool.pool(name, x, **other).shape,
                                             np.float32), **other),
        ref_pool_grad(name, x, np.ones(numbapool.pool(name, x, **other).shape), **other),
        rtol=1e-5)
    assert len(api._KNOWN_GRADS) == 3


def test_kept_linear_gradient_keeps_no_input_alive(monkeypatch):
    """The kept plan of a mean's gradient holds no reference to the first call's x (nor to
    its gradient): the caller's arrays are freed when the caller drops them."""
    import gc
    import weakref

    from numbapool import api

    monkeypatch.setattr(api, "_KNOWN_GRADS", {})
    x = np.ones((2, 3, 8, 8), np.float32)
    gy = np.ones((2, 3, 4, 4), np.float32)
    gx = numbapool.pool_grad("avg", x, gy, 2)
    assert len(api._KNOWN_GRADS) == 1 and float(gx.sum()) == 2 * 3 * 16
    refs = weakref.ref(x), weakref.ref(gy), weakref.ref(gx)
    del x, gy, gx
    gc.collect()
    assert all(r() is None for r in refs)


class _GivenStarts(numbapool.WindowRule):
    """Windows of 2 taps along both axes, window ``o`` starting at ``2 * o + jitter[n, c,
    axis]``: ``jitter``, an ``(N, C, 2)`` array of 0s and 1s, is a data option (the call's
    data, as fractional pooling's samples).  ``redraws``: the plan has a ``redraw`` that
    reads a repeated call's jitter from ``context.data``."""

    name = "given_starts"
    options = {"out": 3, "jitter": None, "redraws": True}
    data_options = frozenset({"jitter"})

    def plan(self, spatial, context, *, out=3, jitter=None, redraws=True):
        starts = self._starts(context, jitter, out)
        axes = tuple(numbapool.explicit_axis(n, s, 2) for n, s in zip(spatial, starts))

        def redraw(context, into):
            for i, s in enumerate(self._starts(context, context.data["jitter"], out)):
                into[i][...] = s

        return numbapool.WindowPlan(axes, redraw=redraw if redraws else None)

    @staticmethod
    def _starts(context, jitter, out):
        jitter = np.asarray(jitter)
        if jitter.shape != (context.batch, context.channels, 2):
            raise ValueError(f"jitter must have shape {(context.batch, context.channels, 2)}")
        flat = jitter.reshape(-1, 2).astype(np.int64)
        return [2 * np.arange(out) + flat[:, i:i + 1] for i in range(2)]


def _given_starts_max(x, jitter, out=3):
    """The reference, channels first: a plain loop over the windows."""
    n, c = x.shape[:2]
    want = np.empty((n, c, out, out), dtype=x.dtype)
    for i, j, a, b in np.ndindex(n, c, out, out):
        r, s = 2 * a + jitter[i, j, 0], 2 * b + jitter[i, j, 1]
        want[i, j, a, b] = x[i, j, r:r + 2, s:s + 2].max()
    return want


@pytest.mark.parametrize("redraws", [True, False])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_data_options_are_the_calls_own(monkeypatch, layout, redraws):
    """A window rule's data options (``WindowRule.data_options``) are data: a call repeated
    with a new array for one, every other argument the same, skips the checks and, from its
    second repetition, runs the kept pass, redrawn from the new array (``context.data``);
    without a ``redraw`` it is planned with the new array.  Each call's result is its own
    array's windows, never those of the call that was kept, and the kept call does not hold
    the first call's array.  A deterministic pooler's calls with an array option are planned
    every time."""
    import gc
    import weakref

    runs = _kept_runs(monkeypatch)
    rng = np.random.default_rng(11)
    x = rng.random((2, 5, 7, 9)).astype(np.float32)
    arg = x if layout == "channels_first" else np.ascontiguousarray(np.moveaxis(x, 1, -1))

    def pool(name, jitter):
        y = numbapool.pool(name, arg, layout=layout, jitter=jitter, redraws=redraws)
        return y if layout == "channels_first" else np.moveaxis(y, -1, 1)

    with _max_pooler("test_given_starts", _GivenStarts()) as pooler:
        first = rng.integers(0, 2, (2, 5, 2))
        np.testing.assert_array_equal(pool(pooler.name, first), _given_starts_max(x, first))
        kept = weakref.ref(first)
        del first
        gc.collect()
        assert kept() is None
        for _ in range(5):
            jitter = rng.integers(0, 2, (2, 5, 2))
            held = jitter.copy()
            np.testing.assert_array_equal(pool(pooler.name, jitter),
                                          _given_starts_max(x, jitter))
            np.testing.assert_array_equal(jitter, held)  # (not changed)
        if redraws:
            assert len(runs) == 4 and all(r is not None for r in runs)
        else:
            assert runs == []
        del runs[:]
        with pytest.raises(ValueError, match="jitter must have shape"):
            pool(pooler.name, np.zeros((2, 5, 3), dtype=np.int64))  # (another key: checked)
        listed = rng.integers(0, 2, (2, 5, 2))
        for _ in range(4):  # (a list: the same values repeat the call, handed on as given)
            np.testing.assert_array_equal(pool(pooler.name, listed.tolist()),
                                          _given_starts_max(x, listed))
        assert len(runs) == (2 if redraws else 0)
    pooler = numbapool.register(numbapool.Pooler("test_given_fixed", _GivenStarts(),
                                                 numbapool.get("max").reduction, "test"))
    try:
        for _ in range(3):
            jitter = rng.integers(0, 2, (2, 5, 2))
            np.testing.assert_array_equal(pool(pooler.name, jitter),
                                          _given_starts_max(x, jitter))
    finally:
        numbapool.unregister(pooler.name)


@pytest.mark.parametrize("data", ["jitter", frozenset({"shift"})])
def test_data_options_must_be_a_set_of_the_rules_options(data):
    rule = _GivenStarts()
    rule.data_options = data
    with pytest.raises(TypeError, match="data_options must be a set of its option names"):
        numbapool.Pooler("test_bad_data", rule, numbapool.get("max").reduction, "test",
                         deterministic=False)
