"""Repeated calls reuse their checked plan, and only when every argument is the same."""

import numpy as np
import pytest

import numbapool
from reference import ref_pool


def test_repeated_call_new_data_same_arguments(monkeypatch):
    """New data, same arguments: the plan is reused, and from the third call its kernel runs
    bound (launch.Bound: the fixed arguments packed once, only the new arrays' addresses
    filled in); the results stay right on every call."""
    from numbapool import api
    from numbapool.kernels import launch

    runs = []
    real = launch.Bound.__call__

    def spy(self, *arrays):
        runs.append(len(arrays))
        return real(self, *arrays)

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
    from numbapool import Pooler

    pooler = numbapool.register(Pooler("test_random_starts", _RandomStarts(),
                                       numbapool.get("max").reduction, "test",
                                       deterministic=False))
    try:
        x = np.random.default_rng(3).random((2, 3, 5, 40))
        for seed in (7, 7, 8, 7):
            np.testing.assert_array_equal(numbapool.pool(pooler.name, x, seed=seed),
                                          _random_starts_max(x, seed))
        unseeded = [numbapool.pool(pooler.name, x) for _ in range(3)]
        assert not np.array_equal(unseeded[0], unseeded[1])
        assert not np.array_equal(unseeded[1], unseeded[2])
        with pytest.raises(TypeError, match="seed"):
            numbapool.pool(pooler.name, x, seed=7.0)  # equal to 7, not an int
    finally:
        numbapool.unregister(pooler.name)
