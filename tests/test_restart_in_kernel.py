"""New window starts written by a channels-first kernel's own threads (numbapool.kernels.restart):
each part writes every plane its part of the kernel reads, and a start outside the axis stops
the parts that read it."""

from __future__ import annotations

import contextlib
import ctypes
import itertools

import numba
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
    if plan.tasks is not None:  # (a masked kernel's flags; its fallback runs each part after)
        arrays += (np.full(plan.tasks, 1 if plan.fallback is None else 2, np.uint8),)
    args = (*arrays, *plan.args)
    kinds = tuple(launch.kind(a) for a in args)
    slots = launch.pack(kinds, args)
    kernels = [k.compiled(kinds).cfunc.ctypes for k in (plan.kernel, plan.fallback) if k]
    before = restart.before()
    ready = [0] * parts
    for part in reversed(range(parts)) if backwards else range(parts):
        ready[part] = _restart_part.ctypes(ctypes.c_void_p(before.slots_address), part, parts)
        if ready[part] == 1:
            for kernel in kernels:
                assert kernel(ctypes.c_void_p(slots.ctypes.data), part, parts) == 1
    if plan.tasks is not None and ready == [1] * parts:
        assert not np.any(arrays[-1] == 2), "a task the kernel did not take"
    return out, ready


@numba.cfunc(launch.SIGNATURE, cache=True)
def _copy_rows(slots, first, end):
    """A fill for the tests: for each axis (slots: the axes, then per axis the addresses of
    a source and of the starts, planes, out, and 1 if both are F-contiguous), planes
    ``first`` to ``end - 1`` of the source copied into the starts."""
    axes = launch.contiguous(launch.address(slots), (1,), np.int64)[0]
    s = launch.contiguous(launch.address(slots), (1 + 5 * axes,), np.int64)
    for a in range(axes):
        at = 1 + 5 * a
        planes, out = s[at + 2], s[at + 3]
        shape = (out, planes) if s[at + 4] else (planes, out)
        source = launch.contiguous(s[at], shape, np.int64)
        starts = launch.contiguous(s[at + 1], shape, np.int64)
        if s[at + 4]:
            starts[:, first:end] = source[:, first:end]
        else:
            starts[first:end] = source[first:end]
    return 1


@numba.cfunc(launch.SIGNATURE, cache=True)
def _copy_plane(slots, plane, into):
    """The plane callback of :class:`_CopiedInParts` (its slots): plane ``plane`` of each
    axis's source (C-contiguous) as int32 into the memory at ``into``, axis after axis."""
    axes = launch.contiguous(launch.address(slots), (1,), np.int64)[0]
    s = launch.contiguous(launch.address(slots), (1 + 5 * axes,), np.int64)
    at_out = 0
    for a in range(axes):
        at = 1 + 5 * a
        planes, out = s[at + 2], s[at + 3]
        source = launch.contiguous(s[at], (planes, out), np.int64)
        starts = launch.contiguous(into + 4 * at_out, (out,), np.int32)
        for o in range(out):
            starts[o] = source[plane, o]
        at_out += out
    return 1


@numba.cfunc(launch.POSITIONS_SIGNATURE, cache=True)
def _copy_positions(slots, first, count, into):
    """The by-position callback of :class:`_CopiedInParts` (its slots): planes ``first`` to
    ``first + count - 1`` of each axis's source (laid out as its starts) as int32 ``(out,
    count)`` into the memory at ``into``, axis after axis."""
    axes = launch.contiguous(launch.address(slots), (1,), np.int64)[0]
    s = launch.contiguous(launch.address(slots), (1 + 5 * axes,), np.int64)
    at_out = 0
    for a in range(axes):
        at = 1 + 5 * a
        planes, out = s[at + 2], s[at + 3]
        source = launch.contiguous(s[at], (planes * out,), np.int64)
        starts = launch.contiguous(into + 4 * at_out, (out, count), np.int32)
        for o in range(out):
            for j in range(count):
                p = first + j
                starts[o, j] = source[o * planes + p if s[at + 4] else p * out + o]
        at_out += out * count
    return 1


class _CopiedInParts:
    """A numbapool.windows.StartsInParts for ``starts`` whose draw writes ``draw(context)``
    into sources the threads copy (:func:`_copy_rows`); ``check`` raises ``error`` if set.
    ``planes``: with a ``plane_address`` (:func:`_copy_plane`); ``positions``: with a
    ``positions_address`` (:func:`_copy_positions`)."""

    def __init__(self, starts, draw=None, error=None, planes=False, positions=False):
        self.source = [np.zeros_like(s) for s in starts]  # (in the same order)
        self._draw, self._error = draw, error
        slots = [len(starts)]
        for source, into in zip(self.source, starts):
            slots += [source.ctypes.data, into.ctypes.data, *into.shape,
                      int(not into.flags.c_contiguous)]
        self._slots = np.array(slots, dtype=np.int64)
        self.address, self.slots = _copy_rows.address, self._slots.ctypes.data
        if planes:
            self.plane_address = _copy_plane.address
        if positions:
            self.positions_address = _copy_positions.address

    def draw(self, context):
        for source, new in zip(self.source, self._draw(context)):
            source[...] = new

    def check(self):
        if self._error is not None:
            raise self._error


@pytest.mark.parametrize("parts", [2, 3, 4])
@pytest.mark.parametrize("spatial", [(7, 9), (5, 6, 7)])
@pytest.mark.parametrize("reduction, with_indices, fill", [
    (MAX, False, False), (MAX, True, False), (AVG, False, False), (MAX, True, True)])
def test_each_part_writes_the_planes_its_tasks_read(reduction, with_indices, fill, spatial,
                                                    parts):
    """5 planes split 2, 3 or 4 ways: the column kernels' tasks are a plane (2-D) or an
    output slice of a volume (3-D), the per-window kernel's (with indices) an output row,
    so parts begin and end inside planes.  Run part by part, each part's restart just
    before its tasks, first to last and last to first, every output holds the new windows
    (the tables first held others).  With a ``fill``, the new starts are not in the starts
    arrays but in the fill's sources: each part must fill its planes' starts first."""
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
    starts = [s.copy() for s in (old if fill else new)]
    filled = _CopiedInParts(starts) if fill else None
    if fill:
        for source, s in zip(filled.source, new):
            source[...] = s
    restart = PlaneRestart(axes, starts, filled and (filled.address, filled.slots))
    want = _windows_max_avg(x, new, np.max if reduction is MAX else np.mean)
    for backwards in (False, True):
        for a, s, into in zip(axes, old, starts):  # (the old windows back in the tables)
            a.table[..., 0] = s
            into[...] = s if fill else into
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
    # (no plane callback: the rule's is taken away, so the restart runs as before it)
    from numbapool_fractional import window
    real_parts = window._TorchStartsInParts.__init__

    def without_planes(self, *args):
        real_parts(self, *args)
        del self.plane_address

    monkeypatch.setattr(window._TorchStartsInParts, "__init__", without_planes)
    x = np.random.default_rng(2).random((3, 5, 23, 19)).astype(np.float32)
    kw = dict(output_size=(10, 8), kernel_size=3)
    want = {s: numbapool.pool("fractional_max", x, seed=s, **kw) for s in range(2)}
    assert not steps  # (new arguments each: planned, not kept)
    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    for s in (0, 0, 0, 0, 1, 1, 1):  # (the seed is an argument: 1 is a new call)
        np.testing.assert_array_equal(numbapool.pool("fractional_max", x, seed=s, **kw), want[s])
    assert len(steps) == 3  # (from the third call of each)


class _TwoTaps(numbapool.WindowRule):
    """Windows of 2 taps along every axis, ``(length - 1) // 2`` of them, window ``o``
    starting at ``2 * o`` or one after at random, each plane its own; its ``redraw`` draws
    the same numbers in two steps (``in_parts``: :class:`_CopiedInParts`, with a plane
    callback if ``planes``, a by-position one if ``positions``), or, ``bad=True``, starts
    past the end of axis ``bad_axis`` (``bad="before"``: before its start), for which
    ``check`` raises ``error`` if given (``bad="middle"`` or ``"last"``: that start only,
    one before the end, its window's second tap past it; ``"wrap"``: starts 2**31 apart);
    with ``wide``, the redrawn starts of the last axis
    are two apart over the first batch's first two channels (:func:`_wide`); with
    ``mostly2``, the last axis's starts are mostly 2 apart (:func:`_mostly_2`)."""

    name = "two_taps"
    options = {"bad": False, "bad_axis": -1, "error": None, "planes": False,
               "positions": False, "wide": False, "from_plane": 0, "mostly2": False,
               "shared": False}
    drawn: list = []  # (the draws in two steps)

    def plan(self, spatial, context, *, bad=False, bad_axis=-1, error=None, planes=False,
             positions=False, wide=False, from_plane=0, mostly2=False, shared=False):
        axes = tuple(explicit_axis(n, s, K)
                     for n, s in zip(spatial, _two_taps(context, spatial, mostly2, shared)))

        def draw(context):  # (bad or wide: from plane ``from_plane`` on)
            self.drawn.append(1)
            new = _two_taps(context, spatial, mostly2, shared)
            if bad in ("middle", "last"):  # (one start a plane past the end: its window's
                # second tap; the middle one's neighbours inside)
                out = new[bad_axis].shape[1]
                new[bad_axis][from_plane:, out // 2 if bad == "middle" else -1] = (
                    spatial[bad_axis] - 1)
            elif bad == "wrap":  # (starts whose 32-bit steps wrap around to steps forward)
                new[bad_axis][from_plane:, 1:4] = [2**31 - 1, -2**31, -1]
            elif bad:  # (True: past the end; "before": before the start)
                new[bad_axis][from_plane:] += spatial[bad_axis] * (-1 if bad == "before" else 1)
            return _wide(new, from_plane) if wide else new

        def redraw(context, into):  # (not run: in_parts is, but for a plan of shared
            # windows along some axes only, which draws in one step)
            if not shared:
                raise AssertionError("redraw ran instead of in_parts")
            for target, new in zip(into, draw(context)):
                target[...] = new

        redraw.in_parts = lambda starts: _CopiedInParts(starts, draw, error, planes,
                                                        positions)
        redraw.any_layout = positions  # (channels last: starts by position, restarted in
        #                                  the kernel; _copy_rows takes either layout)
        return numbapool.WindowPlan(axes, redraw=redraw)


def _two_taps(context, spatial, mostly2=False, shared=False):
    if shared:
        return _shared_taps_starts(context.rng, context.batch * context.channels, spatial)
    starts = _two_taps_starts(context.rng, context.batch * context.channels, spatial)
    return [*starts[:-1], _mostly_2(starts[-1])] if mostly2 else starts


def _shared_taps_starts(rng, planes, spatial):
    """:class:`_TwoTaps`'s starts with ``shared``: window ``o`` at ``2 * o`` in every plane,
    but, one draw in three each, one after along the first axis in every plane (windows
    still shared, but not the kept ones), or along the last axis in the last plane only."""
    starts = [np.tile(2 * np.arange((n - 1) // 2), (planes, 1)) for n in spatial]
    kind = rng.integers(0, 3)
    if kind == 1:
        starts[0][:, 0] += 1
    elif kind == 2:
        starts[-1][-1, 0] += 1
    return starts


def _mostly_2(last):
    """``last`` (``(planes, out)`` starts) with the starts of every plane but every fourth
    2 apart from 0 but for one step of 3, each plane's at another window; every fourth
    plane's left as drawn (steps of 1 to 3, which may add up to twice their number)."""
    new = last.copy()
    o = np.arange(last.shape[1])
    for p in range(last.shape[0]):
        if p % 4 != 3:
            new[p] = 2 * o + (o >= (7 * p + 1) % last.shape[1])
    return new


def _two_taps_starts(rng, planes, spatial):
    """:class:`_TwoTaps`'s starts drawn from ``rng`` for ``planes`` planes."""
    return [2 * np.arange((n - 1) // 2) + rng.integers(0, 2, (planes, (n - 1) // 2))
            for n in spatial]


def _wide(starts, plane=0):
    """``starts`` with the last axis's windows after the first starting one tap before
    ``2 * o`` in plane ``plane`` and one after it in the next: two apart over those
    channels."""
    last = starts[-1].copy()
    later = 2 * np.arange(1, last.shape[1])
    last[plane, 1:], last[plane + 1, 1:] = later - 1, later + 1
    return [*starts[:-1], last]


@contextlib.contextmanager
def _two_taps_max(reduction=MAX):
    name = f"test_two_taps_{reduction.name}"
    numbapool.register(numbapool.Pooler(name, _TwoTaps(), reduction, "test",
                                        deterministic=False))
    try:
        yield name
    finally:
        numbapool.unregister(name)


def test_a_rule_drawing_in_parts(monkeypatch):
    """A rule whose ``redraw`` draws in two steps (``in_parts``): a kept channels-first pass
    draws on the calling thread and each kernel thread fills its planes' starts; the
    results are the seed's windows.  Starts drawn outside: the rule's ``check`` raises its
    own error, or, if it returns, the library's ValueError."""
    from numbapool import api

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    _TwoTaps.drawn = []
    x = np.random.default_rng(3).random((2, 5, 7, 8)).astype(np.float32)
    with _two_taps_max() as name:
        for seed in (4, 4, 4, 4):
            rng = np.random.default_rng(seed)
            starts = _two_taps_starts(rng, 10, x.shape[2:])
            want = _windows_max_avg(x, starts, np.max)
            np.testing.assert_array_equal(numbapool.pool(name, x, seed=seed), want)
        assert len(_TwoTaps.drawn) == 2  # (from the third call)
        error = KeyError("rule's own")  # (one object: the same arguments)
        for _ in range(2):  # (planned: the plan's windows are the rule's to check)
            numbapool.pool(name, x, seed=1, bad=True, error=error)
        with pytest.raises(KeyError, match="rule's own"):
            numbapool.pool(name, x, seed=1, bad=True, error=error)
        for _ in range(2):
            numbapool.pool(name, x, seed=1, bad=True)
        with pytest.raises(ValueError, match=r"_TwoTaps.*redrew windows outside spatial axis 1 "
                                             r"of length 8"):
            numbapool.pool(name, x, seed=1, bad=True)


@pytest.mark.parametrize("reduction, reduce", [(MAX, np.max), (AVG, np.mean)])
@pytest.mark.parametrize("shape", [(2, 5, 8), (2, 5, 7, 8), (1, 3, 7, 7, 8), (2, 5, 300)])
def test_a_rule_drawing_each_plane_in_the_kernel(monkeypatch, reduction, reduce, shape):
    """A rule whose two-step draw has a plane callback (``plane_address``): a kept
    channels-first pass runs the gather kernel that computes each plane's starts on its
    threads (``forward_cols_gather_planes``), and the results are the seed's windows, call
    after call, on 1 to 3 threads (rows of 8 and of 149 windows, whose steps of 1 to 3 the
    planner does not take for mostly 2 apart: the gather kernel).  Starts drawn outside:
    the rule's ``check`` raises its own error, or, if it returns, the library's ValueError;
    the next call is right."""
    from numbapool import api

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    filled = _kernels_bound(monkeypatch, "with_plane_fill")
    _TwoTaps.drawn = []
    rank = len(shape) - 2
    x = np.random.default_rng(3).random(shape).astype(np.float32)
    x.reshape(-1)[::5] = np.nan
    with _two_taps_max(reduction) as name:
        for threads in (1, 2, 3):
            with numba_threads(threads):
                for seed in (4, 4, 4, 4, 6):
                    rng = np.random.default_rng(seed)
                    starts = _two_taps_starts(rng, shape[0] * shape[1], shape[2:])
                    want = _windows_max_avg(x, starts, reduce)
                    got = numbapool.pool(name, x, seed=seed, planes=True)
                    np.testing.assert_allclose(got, want, rtol=1e-6)
        # (kept from the third call of seed 4 on, and from the third of seed 6)
        assert len(_TwoTaps.drawn) == 2 + 4 + 4 + 1
        assert filled == [f"{reduction.name}/channels_first/forward_cols_gather_planes"] * 2
        error = KeyError("rule's own")  # (one object: the same arguments)
        for _ in range(2):  # (planned: the plan's windows are the rule's to check)
            numbapool.pool(name, x, seed=1, bad=True, error=error, planes=True)
        with pytest.raises(KeyError, match="rule's own"):
            numbapool.pool(name, x, seed=1, bad=True, error=error, planes=True)
        for bad in (True, "before"):
            for _ in range(2):
                numbapool.pool(name, x, seed=1, bad=bad, planes=True)
            with pytest.raises(ValueError, match=rf"_TwoTaps.*redrew windows outside spatial "
                                                 rf"axis {rank - 1} of length {shape[-1]}"):
                numbapool.pool(name, x, seed=1, bad=bad, planes=True)
        got = numbapool.pool(name, x, seed=4, planes=True)  # (kept: its flags cleared)
        rng = np.random.default_rng(4)
        starts = _two_taps_starts(rng, shape[0] * shape[1], shape[2:])
        np.testing.assert_allclose(got, _windows_max_avg(x, starts, reduce), rtol=1e-6)


def test_a_rule_drawing_each_plane_mostly_at_stride_2(monkeypatch):
    """A kept channels-first pass of a selection whose rule draws each plane's windows of 2
    mostly 2 apart (:func:`_mostly_2`) runs the stride-2 gather kernel that computes each
    plane's starts (``forward_cols_gather_planes_by2``): the rows 2 apart but for a step
    are read by stretches, and every fourth plane's, whose steps of 1 to 3 may add up to
    twice their number, a window at a time (read by stretches, they came out wrong); the
    seed's windows, NaN included."""
    from numbapool import api

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    filled = _kernels_bound(monkeypatch, "with_plane_fill")
    shape = (2, 8, 300)
    x = np.random.default_rng(3).random(shape).astype(np.float32)
    x.reshape(-1)[::5] = np.nan
    with _two_taps_max() as name:
        for seed in (4, 4, 4, 4):
            starts = _two_taps_starts(np.random.default_rng(seed), 16, shape[2:])
            want = _windows_max_avg(x, [_mostly_2(starts[0])], np.max)
            got = numbapool.pool(name, x, seed=seed, planes=True, mostly2=True)
            np.testing.assert_allclose(got, want, rtol=0)
        # Starts outside, in a plane read by stretches or a window at a time: past the end
        # or before the start everywhere, the last one only (steps that never go back: the
        # check reads the first and the last), or one in the middle (a step back: the check
        # reads every start).
        for bad, from_plane in [(True, 5), ("before", 5), ("last", 5), ("last", 3),
                                ("middle", 5), ("middle", 3), ("wrap", 5)]:
            kw = dict(seed=1, planes=True, mostly2=True, bad=bad, from_plane=from_plane)
            for _ in range(2):
                numbapool.pool(name, x, **kw)
            with pytest.raises(ValueError, match=r"_TwoTaps.*redrew windows outside spatial "
                                                 r"axis 0 of length 300"):
                numbapool.pool(name, x, **kw)
    assert set(filled) == {"max/channels_first/forward_cols_gather_planes_by2"}


_VOLUME = (2, 3, 7, 9, 11)  # (each axis its own number of windows: 3, 4 and 5)


@pytest.mark.parametrize("reduction, reduce", [(MAX, np.max), (AVG, np.mean)])
@pytest.mark.parametrize("shape, layout, variant", [
    ((2, 5, 8), "channels_last", "forward_masked_rows1_cols2"),
    ((2, 5, 7, 8), "channels_last", "forward_masked_rows2_cols2"),
    ((1, 3, 7, 7, 8), "channels_last", "forward_masked_deep2_rows2_cols2"),
    (_VOLUME, "channels_last", "forward_masked_deep2_rows2_cols2"),
    ((1, 3, 7, 7, 8), "channels_last", "forward_masked"),  # (the planner made to give it)
    # (small planes: by chunks of batches, and on tiles of planes)
    ((2, 8, 7, 8), "channels_first", "forward_masked_rows2_cols2"),
    ((4, 8, 7, 8), "channels_first tiles", "forward_masked_rows2_cols2"),
    ((4, 8, 7, 8), "channels_first tiles", "forward_masked")])
def test_a_rule_drawing_each_batch_in_the_masked_kernel(monkeypatch, reduction, reduce, shape,
                                                        layout, variant):
    """A rule whose two-step draw has a by-position callback (``positions_address``): a
    kept channels-last pass (or a channels-first one of small planes, run channels last
    between transposes, by chunks of batches or on tiles of 16 planes) runs the masked
    kernel that computes each batch's starts on its threads (its ``_planes`` twin: 1-D, 2-D
    and 3-D windows take three different kernels, and the kernel for any windows is given
    3-D ones too),
    and the results are each call's windows, call after call, on 1 to 3 threads (every
    call draws new numbers: a kernel reading the tables of the call that built the pass
    would give that call's windows).  Starts drawn outside: the rule's ``check`` raises its
    own error, or, if it returns, the library's ValueError; the next call is right."""
    from numbapool import api, randomness
    from numbapool.kernels import masked_tiles

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    tiles = layout.endswith("tiles")
    layout = layout.split()[0]
    monkeypatch.setattr(masked_tiles, "TILE_WIDTHS", (16,) if tiles else ())
    keys = []  # (each call's generator: a new one every time, whatever the seed)

    def generator(seed):
        keys.append(100 + len(keys))
        return np.random.default_rng(keys[-1])

    monkeypatch.setattr(randomness, "generator", generator)
    filled = _kernels_bound(monkeypatch, "with_positions_fill")
    if variant == "forward_masked":
        monkeypatch.setattr(cpu, "masked_variant", lambda *args: variant)
    _TwoTaps.drawn = []
    rank = len(shape) - 2
    x = np.random.default_rng(3).random(shape).astype(np.float32)
    x.reshape(-1)[::29] = np.nan  # (few: windows of 8 in 3-D, most not NaN)
    given = x if layout == "channels_first" else np.ascontiguousarray(np.moveaxis(x, 1, -1))

    def pool(seed, **kw):
        got = numbapool.pool(name, given, seed=seed, layout=layout, positions=True, **kw)
        return got if layout == "channels_first" else np.moveaxis(got, -1, 1)

    def want():  # (the windows of the last call's generator)
        rng = np.random.default_rng(keys[-1])
        starts = _two_taps_starts(rng, shape[0] * shape[1], shape[2:])
        return _windows_max_avg(x, starts, reduce)

    with _two_taps_max(reduction) as name:
        for threads in (1, 2, 3):
            with numba_threads(threads):
                for seed in (4, 4, 4, 4, 6):
                    got = pool(seed)
                    np.testing.assert_allclose(got, want(), rtol=1e-6)
        # (kept from the third call of seed 4 on, and from the third of seed 6)
        assert len(_TwoTaps.drawn) == 2 + 4 + 4 + 1
        # (seed 4's pass built on its second call, and again for each larger thread count:
        # its scratch had rows for fewer; seed 6's on its second call, on threads[1], and
        # again on threads[2] if that is more; a pass on tiles binds the kernel once for
        # each thread)
        threads = [min(t, numba.config.NUMBA_NUM_THREADS) for t in (1, 2, 3)]
        builds = [threads[0], *(b for a, b in zip(threads, threads[1:]) if b > a),
                  threads[1], *threads[2:] * (threads[2] > threads[1])]
        binds = sum(builds) if tiles else len(builds)
        assert filled == [f"{reduction.name}/channels_last/{variant}_planes"] * binds
        if layout == "channels_first":
            kept = [k.redrawn._planes_plan for k in api._KNOWN_CALLS.values()
                    if k.redrawn is not None]
            assert kept and all(isinstance(p, masked_tiles.TiledMaskedPass if tiles
                                           else cpu.ChunkedViaChannelsLast) for p in kept)
        error = KeyError("rule's own")  # (one object: the same arguments)
        for _ in range(2):  # (planned: the plan's windows are the rule's to check)
            pool(1, bad=True, error=error)
        with pytest.raises(KeyError, match="rule's own"):
            pool(1, bad=True, error=error)
        for bad in (True, "before"):  # (1-D: the kernel checks the last axis's starts)
            for _ in range(2):
                pool(1, bad=bad)
            with pytest.raises(ValueError, match=rf"_TwoTaps.*redrew windows outside spatial "
                                                 rf"axis {rank - 1} of length {shape[-1]}"):
                pool(1, bad=bad)
        got = pool(4)  # (kept: its flags cleared)
        np.testing.assert_allclose(got, want(), rtol=1e-6)


def test_the_masked_kernel_refuses_starts_outside_each_axis(monkeypatch):
    """A kept channels-last pass of 3-D windows whose rule redraws starts past the end of
    axis 0, 1 or 2, or before its start: the error names that axis and its length (each
    axis has its flag in the kernel's ``pf``; the last axis's starts checked by the kernel
    as it reads them), and the next call is right."""
    from numbapool import api

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    x = np.random.default_rng(5).random(_VOLUME).astype(np.float32)
    given = np.ascontiguousarray(np.moveaxis(x, 1, -1))

    def pool(**kw):
        return numbapool.pool(name, given, seed=2, layout="channels_last", positions=True,
                              **kw)

    with _two_taps_max() as name:
        for axis, bad in itertools.product(range(3), (True, "before")):
            for _ in range(2):  # (planned: the plan's windows are the rule's)
                pool(bad=bad, bad_axis=axis)
            with pytest.raises(ValueError, match=rf"redrew windows outside spatial axis "
                                                 rf"{axis} of length {_VOLUME[2 + axis]}"):
                pool(bad=bad, bad_axis=axis)
        for _ in range(3):
            got = np.moveaxis(pool(), -1, 1)
        starts = _two_taps_starts(np.random.default_rng(2), 6, _VOLUME[2:])
        np.testing.assert_allclose(got, _windows_max_avg(x, starts, np.max), rtol=1e-6)


@pytest.mark.parametrize("reduction, reduce", [(MAX, np.max), (AVG, np.mean)])
@pytest.mark.parametrize("shape, variant", [
    ((2, 5, 8), "forward_masked_rows1_cols2"), ((2, 5, 7, 8), "forward_masked_rows2_cols2"),
    (_VOLUME, "forward_masked_deep2_rows2_cols2")])
def test_the_fallback_of_a_masked_kernel_computes_its_batches_too(monkeypatch, reduction,
                                                                  reduce, shape, variant):
    """A kept channels-last pass planned for windows whose starts are at most one apart
    over the channels, redrawn with two apart: the kernel for such windows leaves those
    tasks, and the kernel for any windows (``forward_masked_planes``, its fallback) runs
    them, computing their batches' starts itself; the results are each call's windows."""
    from numbapool import api

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    ran = _kernels_run(monkeypatch)
    filled = _kernels_bound(monkeypatch, "with_positions_fill")
    x = np.random.default_rng(6).random(shape).astype(np.float32)
    given = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    planes = shape[0] * shape[1]
    with _two_taps_max(reduction) as name:
        for call in range(4):  # (kept from the third: the rule's redraws are wide)
            ran.clear()
            got = numbapool.pool(name, given, seed=7, layout="channels_last", positions=True,
                                 wide=True)
            starts = _two_taps_starts(np.random.default_rng(7), planes, shape[2:])
            want = _windows_max_avg(x, _wide(starts) if call >= 2 else starts, reduce)
            np.testing.assert_allclose(np.moveaxis(got, -1, 1), want, rtol=1e-6)
            if call >= 2:
                assert f"{reduction.name}/channels_last/forward_masked_planes" in ran
        assert filled == [f"{reduction.name}/channels_last/{variant}_planes"]


def test_channels_first_passes_by_chunks_leave_tasks_and_refuse_starts(monkeypatch):
    """Channels first on small planes (8 channels, planes of 56): the kept pass runs the
    masked channels-last kernel a batch at a time (``VIA_CHUNK_BYTES``), each chunk's
    starts computed for its own batch (``FIRST_BATCH`` in ``pf``).  Redrawn starts two
    apart over two channels of the last batch: the kernel leaves those tasks to its
    fallback, which computes that batch's starts too; the results are each call's windows.
    Starts past the end of an axis in the last batch only: the error names that axis."""
    from numbapool import api

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    shape = (3, 8, 7, 8)
    monkeypatch.setattr(cpu, "VIA_CHUNK_BYTES", 8 * 7 * 8 * 4)  # (a batch a chunk)
    ran = _kernels_run(monkeypatch)
    x = np.random.default_rng(6).random(shape).astype(np.float32)
    last = 2 * 8  # (the last batch's first plane)
    with _two_taps_max() as name:
        for call in range(4):  # (kept from the third: the rule's redraws are wide)
            ran.clear()
            got = numbapool.pool(name, x, seed=7, positions=True, wide=True, from_plane=last)
            starts = _two_taps_starts(np.random.default_rng(7), 24, shape[2:])
            want = _windows_max_avg(x, _wide(starts, last) if call >= 2 else starts, np.max)
            np.testing.assert_allclose(got, want, rtol=1e-6)
            if call >= 2:
                assert "max/channels_last/forward_masked_planes" in ran
        kept = [k.redrawn for k in api._KNOWN_CALLS.values() if k.redrawn is not None]
        assert len(kept) == 1 and isinstance(kept[0]._planes_plan, cpu.ChunkedViaChannelsLast)
        assert kept[0]._planes_plan.inner.shape[0] == 1
        _refuses_starts_outside(name, x, last)


@pytest.mark.parametrize("spatial", [(7, 9), (7, 3)])  # (3: one window along the last axis)
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_windows_every_plane_shares_are_compared_on_the_threads(monkeypatch, layout,
                                                                 spatial):
    """A rule that draws in two steps and whose windows every plane shares along every axis
    (as fractional pooling with a whole step does): the kept pass has the threads write and
    compare their share of the planes' starts (``redraw._fill_and_compare``) instead of the
    calling thread.  A draw whose windows differ, in every plane or in the last plane only
    (the last thread's), is planned anew and the pass made again; every result is its
    call's windows."""
    from numbapool import api, randomness, redraw

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    handed = []

    def generator(seed):  # (a new known stream for every call)
        handed.append(2000 + len(handed))
        return np.random.default_rng(handed[-1])

    monkeypatch.setattr(randomness, "generator", generator)
    compared = []
    real = redraw._fill_and_compare

    def spy(*args):
        compared.append(real(*args))
        return compared[-1]

    monkeypatch.setattr(redraw, "_fill_and_compare", spy)
    shape = (2, 8, *spatial)
    x = np.random.default_rng(9).random(shape).astype(np.float32)
    arg = x if layout == "channels_first" else np.ascontiguousarray(np.moveaxis(x, 1, -1))
    kinds = []
    with _two_taps_max() as name:
        for _ in range(24):
            got = numbapool.pool(name, arg, shared=True, layout=layout)
            if layout == "channels_last":
                got = np.moveaxis(got, -1, 1)
            rng = np.random.default_rng(handed[-1])
            starts = _shared_taps_starts(rng, 16, shape[2:])
            kinds.append(int(np.random.default_rng(handed[-1]).integers(0, 3)))
            np.testing.assert_array_equal(got, _windows_max_avg(x, starts, np.max))
        # (a rule's callback that raised: the library's error)
        kept = [k.redrawn for k in api._KNOWN_CALLS.values() if k.redrawn is not None]
        assert len(kept) == 1 and kept[0]._all_shared is not None
        monkeypatch.setattr(kept[0]._all_shared[0], "address", _failing_fill.address)
        with pytest.raises(RuntimeError, match="raised in compiled code"):
            numbapool.pool(name, arg, shared=True, layout=layout)
    assert {0, 1, 2} <= set(kinds)
    assert 0 in compared and any(c > 0 for c in compared)
    # (the last plane alone: one share of one axis differs)
    assert 1 in compared


@numba.cfunc(launch.SIGNATURE)
def _failing_fill(slots, first, end):
    return 0


def test_channels_first_passes_by_tiles_leave_tasks_and_refuse_starts(monkeypatch):
    """Channels first on small planes whose count a tile width divides (48 planes, tiles of
    16 here): the kept pass runs the masked channels-last kernel on tiles of planes
    transposed in cache (:class:`masked_tiles.TiledMaskedPass`), each tile's starts computed
    for its own planes (``FIRST_BATCH`` of the part's ``pf``).  Redrawn starts two apart over
    two planes of the last tile (the second thread's): the kernel leaves those tasks to its
    fallback, run on the same tile; the results are each call's windows.  Starts past the end
    of an axis in the last tile only: the error names that axis."""
    from numbapool import api
    from numbapool.kernels import masked_tiles

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    monkeypatch.setattr(masked_tiles, "TILE_WIDTHS", (16,))
    shape = (3, 16, 7, 8)
    x = np.random.default_rng(6).random(shape).astype(np.float32)
    last = 2 * 16 + 5  # (a plane of the last tile, not its first)
    with _two_taps_max() as name:
        for call in range(4):  # (kept from the third: the rule's redraws are wide)
            got = numbapool.pool(name, x, seed=7, positions=True, wide=True, from_plane=last)
            starts = _two_taps_starts(np.random.default_rng(7), 48, shape[2:])
            want = _windows_max_avg(x, _wide(starts, last) if call >= 2 else starts, np.max)
            np.testing.assert_allclose(got, want, rtol=1e-6)
        kept = [k.redrawn for k in api._KNOWN_CALLS.values() if k.redrawn is not None]
        assert len(kept) == 1
        assert isinstance(kept[0]._planes_plan, masked_tiles.TiledMaskedPass)
        assert kept[0]._planes_plan.width == 16
        _refuses_starts_outside(name, x, last)


def _refuses_starts_outside(name, x, last):
    """Calls of pooler ``name`` (a :class:`_TwoTaps`) on channels-first ``x`` whose redrawn
    starts leave axis 0, then axis 1, from plane ``last`` on: planned the first two times
    (the plan's windows are the rule's), then kept, where the error names the axis."""
    for axis in range(2):
        for _ in range(2):
            numbapool.pool(name, x, seed=2, positions=True, bad=True, bad_axis=axis,
                           from_plane=last)
        with pytest.raises(ValueError, match=rf"outside spatial axis {axis} of length "
                                             rf"{x.shape[2 + axis]}"):
            numbapool.pool(name, x, seed=2, positions=True, bad=True, bad_axis=axis,
                           from_plane=last)


def _kernels_run(monkeypatch):
    """The names of the kernels launched unbound from now on (a kept pass's fallback)."""
    ran = []
    real = launch.Launcher.__call__

    def spy(self, *args, **kw):
        ran.append(self.name)
        return real(self, *args, **kw)

    monkeypatch.setattr(launch.Launcher, "__call__", spy)
    return ran


def _kernels_bound(monkeypatch, binder):
    """The names of the kernels that ``cpu.<binder>`` (``with_plane_fill`` or
    ``with_positions_fill``) binds from now on, None for each call that binds none."""
    bound = []
    real = getattr(cpu, binder)

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        bound.append(result[0].kernel.name if result else None)
        return result

    monkeypatch.setattr(cpu, binder, spy)
    return bound


@contextlib.contextmanager
def numba_threads(n):
    before = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("parts", [2, 3, 4])
@pytest.mark.parametrize("reduction, fill", [(MAX, False), (AVG, False), (MAX, True)])
@pytest.mark.parametrize("general", [False, True])
def test_each_part_writes_the_channels_last_tables_of_its_batches(reduction, fill, parts,
                                                                  general, monkeypatch):
    """Channels last, the masked kernels number their tasks batch by batch and read the
    per-channel tables of their batches: 5 batches of 3 channels split 2, 3 or 4 ways, run
    part by part (first to last, last to first), each part's restart just before its
    tasks, give the new windows (the tables first held others).  With a ``fill``, each
    part must first fill the starts of its batches' planes from the fill's sources.  The
    kernel for windows of 2 rows (its fallback run after it, part by part), or, ``general``,
    the kernel for any windows alone."""
    if general:
        monkeypatch.setattr(cpu, "masked_variant", lambda *args: "forward_masked")
    rng = np.random.default_rng(parts)
    n, c, spatial = 5, 3, (7, 9)
    x = rng.random((n, c, *spatial)).astype(np.float32)
    outs = [3, 4]

    def draw():  # (starts close across the channels: the masked kernel)
        return [2 * np.arange(o) + rng.integers(0, 2, (n * c, o)) for o in outs]

    old, new = draw(), draw()
    axes = [explicit_axis(length, s, K, extent=K).redrawable()
            for length, s in zip(spatial, old)]
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1)).reshape(n, 1, *spatial, c)
    plan = cpu.plan_forward(reduction, "channels_last", xl, (SINGLETON, *axes),
                            np.zeros((1, 0)))
    assert plan.kernel.name.endswith("/forward_masked" if general else
                                     "/forward_masked_rows2_cols2")
    tables = [a.tables_in(plan.args) for a in axes]
    assert tables == [{"by_channel"}, {"lo", "delta"}]
    starts = [np.asfortranarray(s) for s in (old if fill else new)]
    filled = _CopiedInParts(starts) if fill else None
    if fill:
        for source, s in zip(filled.source, new):
            source[...] = s
    restart = PlaneRestart(axes, starts, filled and (filled.address, filled.slots),
                           channels_last=(n, c, tables))
    want = _windows_max_avg(x, new, np.max if reduction is MAX else np.mean)
    for backwards in (False, True):
        for a, s, t, into in zip(axes, old, tables, starts):  # (the old windows back)
            assert a.restart(np.asfortranarray(s), t)
            into[...] = s if fill else into
        out, ready = _run_parts_in_order(plan, restart, xl, parts, backwards)
        assert ready == [1] * parts and restart.outside() is None
        got = np.moveaxis(out.reshape(n, *outs, c), -1, 1)
        np.testing.assert_allclose(got, want, rtol=1e-6)
    if fill:
        return
    starts[1][7, 2] = spatial[1] - K + 1  # (plane 7: batch 2, which both parts of 2 read)
    _, ready = _run_parts_in_order(plan, restart, xl, 2)
    assert ready == [2, 2] and restart.outside() == 1
    starts[1][7, 2], starts[0][1, 0] = 0, -1  # (plane 1: batch 0, the first part's)
    _, ready = _run_parts_in_order(plan, restart, xl, 2)
    assert ready == [2, 1] and restart.outside() == 0
