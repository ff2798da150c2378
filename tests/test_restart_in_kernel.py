"""New window starts written by a channels-first kernel's own threads (numbapool.kernels.restart):
each part writes every plane its part of the kernel reads, and a start outside the axis stops
the parts that read it."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import numbapool
from numbapool.builtin.reductions import AVG, MAX
from numbapool.geometry import SINGLETON, explicit_axis
from numbapool.kernels import cpu, launch
from numbapool.kernels.restart import PlaneRestart, _restart_part

K = 2


def _windows_max_avg(x, starts, reduce):
    """The plain reference: ``reduce`` over each K-wide window of per-plane ``starts`` (one
    (planes, out) array per spatial axis) of channels-first ``x``."""
    n, c, *spatial = x.shape
    outs = [s.shape[1] for s in starts]
    want = np.empty((n, c, *outs), dtype=np.float64)
    for i, j in np.ndindex(n, c):
        p = i * c + j
        for o in np.ndindex(*outs):
            window = x[(i, j, *(slice(s[p, k], s[p, k] + K) for s, k in zip(starts, o)))]
            want[(i, j, *o)] = reduce(window)
    return want


def _run_parts_in_order(plan, restart, x, parts, backwards=False):
    """Run ``plan``'s kernel as drive_after would, but one part after the other on this
    thread (from the last if ``backwards``): part p's restart, then part p's tasks, then the
    next part's restart.  A part that read a plane written only by a part after it would
    read the old windows.  Returns the output and what each part's restart returned."""
    out = np.empty(plan.shape, plan.dtype)
    arrays = (x, out) + ((np.empty(plan.shape, np.int64),) if plan.with_indices else ())
    args = (*arrays, *plan.args)
    kinds = tuple(launch.kind(a) for a in args)
    slots = launch.pack(kinds, args)
    kernel = plan.kernel.compiled(kinds).cfunc.ctypes
    before = restart.before()
    ready = [0] * parts
    for part in reversed(range(parts)) if backwards else range(parts):
        ready[part] = _restart_part.ctypes(ctypes.c_void_p(before.slots_address), part, parts)
        if ready[part] == 1:
            assert kernel(ctypes.c_void_p(slots.ctypes.data), part, parts) == 1
    return out, ready


@pytest.mark.parametrize("parts", [2, 3, 4])
@pytest.mark.parametrize("spatial", [(7, 9), (5, 6, 7)])
@pytest.mark.parametrize("reduction, with_indices", [(MAX, False), (MAX, True), (AVG, False)])
def test_each_part_writes_the_planes_its_tasks_read(reduction, with_indices, spatial, parts):
    """5 planes split 2, 3 or 4 ways: the column kernels' tasks are a plane (2-D) or an
    output slice of a volume (3-D), the per-window kernel's (with indices) an output row,
    so parts begin and end inside planes.  Run part by part, each part's restart just
    before its tasks, first to last and last to first, every output holds the new windows
    (the tables first held others)."""
    rng = np.random.default_rng(len(spatial) * 10 + parts)
    n, c = 1, 5
    x = rng.random((n, c, *spatial)).astype(np.float32)
    outs = [(length - K) // 2 + 1 for length in spatial]
    old = [rng.integers(0, length - K + 1, (n * c, o)) for length, o in zip(spatial, outs)]
    new = [np.ascontiguousarray(rng.integers(0, length - K + 1, (n * c, o)))
           for length, o in zip(spatial, outs)]
    axes = [explicit_axis(length, s, K, extent=K).redrawable()
            for length, s in zip(spatial, old)]
    lifted = (SINGLETON,) * (3 - len(axes)) + tuple(axes)
    x5 = x.reshape(n, c, *(1,) * (3 - len(spatial)), *spatial)
    plan = cpu.plan_forward(reduction, "channels_first", x5, lifted, np.zeros((1, 0)),
                            with_indices=with_indices)
    restart = PlaneRestart(axes, new)
    want = _windows_max_avg(x, new, np.max if reduction is MAX else np.mean)
    for backwards in (False, True):
        for a, s in zip(axes, old):  # (the old windows back in the tables)
            a.table[..., 0] = s
        out, ready = _run_parts_in_order(plan, restart, x5, parts, backwards)
        assert ready == [1] * parts and restart.outside() is None
        np.testing.assert_allclose(out.reshape(want.shape), want, rtol=1e-6)


def test_a_start_outside_stops_the_parts_that_read_it():
    """A start past the last whole window, in plane 3 of 5 along the second axis: the parts
    whose planes hold it (of 2: the second; of 3: the second and third, which share plane
    3) refuse, and ``outside`` names that axis."""
    rng = np.random.default_rng(1)
    spatial, outs = (7, 9), (3, 4)
    x5 = rng.random((1, 5, 1, *spatial)).astype(np.float32)
    axes = [explicit_axis(length, rng.integers(0, length - K + 1, (5, o)), K,
                          extent=K).redrawable() for length, o in zip(spatial, outs)]
    new = [rng.integers(0, length - K + 1, (5, o)) for length, o in zip(spatial, outs)]
    new[1][3, 2] = spatial[1] - K + 1
    plan = cpu.plan_forward(MAX, "channels_first", x5, (SINGLETON, *axes), np.zeros((1, 0)))
    restart = PlaneRestart(axes, new)
    for parts, refused in ((2, [1, 2]), (3, [1, 2, 2]), (5, [1, 1, 1, 2, 1])):
        _, ready = _run_parts_in_order(plan, restart, x5, parts)
        assert ready == refused
        assert restart.outside() == 1
    new[1][3, 2] = -1
    _, ready = _run_parts_in_order(plan, restart, x5, 2)
    assert ready == [1, 2] and restart.outside() == 1
    new[1][3, 2] = 0
    assert _run_parts_in_order(plan, restart, x5, 2)[1] == [1, 1]
    assert restart.outside() is None


def test_repeated_fractional_calls_channels_first_restart_in_the_kernel(monkeypatch):
    """The kept pass of a channels-first fractional max pool runs its restart on the
    kernel's threads, and its results are its seed's windows (those of a first call,
    planned from scratch, with the same seed)."""
    from numbapool import api
    from numbapool.kernels import restart as restart_module

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    steps = []
    real = restart_module.PlaneRestart.before

    def spy(self):
        steps.append(self)
        return real(self)

    monkeypatch.setattr(restart_module.PlaneRestart, "before", spy)
    x = np.random.default_rng(2).random((3, 5, 23, 19)).astype(np.float32)
    kw = dict(output_size=(10, 8), kernel_size=3)
    want = {s: numbapool.pool("fractional_max", x, seed=s, **kw) for s in range(2)}
    assert not steps  # (new arguments each: planned, not kept)
    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    for s in (0, 0, 0, 0, 1, 1, 1):  # (the seed is an argument: 1 is a new call)
        np.testing.assert_array_equal(numbapool.pool("fractional_max", x, seed=s, **kw), want[s])
    assert len(steps) == 3  # (from the third call of each)
