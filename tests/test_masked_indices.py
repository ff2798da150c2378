"""The channels-last selections with indices over per-plane windows
(:mod:`numbapool.kernels.masked_indices`): the folded kernels and the box loop against a
plain scan of each window, which kernel a call gets, the tasks a folded kernel leaves to the
box loop, and reads inside the arrays."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import numbapool
from numbapool.builtin.reductions import MAX, MIN
from numbapool.geometry import SINGLETON, explicit_axis
from numbapool.kernels import cpu
from numbapool.kernels.masked_indices import (
    MASKED_INDICES,
    MASKED_INDICES_MAX_BOX,
    fold_name,
    masked_indices_source,
    parse_fold,
)
from numbapool.kernels.templates import kernel_source
from spies import kernel_layouts_asked, kernels_asked

N = 2


def _starts(length: int, k: int, out: int, rng: np.random.Generator, channels: int,
            spread: int = 1, wide: frozenset[int] = frozenset()) -> np.ndarray:
    """``(N * channels, out)`` starts of windows of ``k`` along an axis of ``length``: at
    each output of each batch a smallest start, and each channel's up to ``spread`` after it
    (the last output's windows ending at the axis's end, or one before; every channel of the
    first and last batches at the end), and at the outputs in ``wide`` one channel a batch
    two further on.  (The batches' smallest starts differ, so that windows of spread 0 stay
    per-plane.)"""
    room = length - k - spread
    lo = np.concatenate([np.repeat(np.sort(rng.integers(0, room + 1, (1, out))), channels, 0)
                         for _ in range(N)])
    lo[channels:, 0] = (lo[0, 0] + 1) % (room + 1)  # (the batches' first windows differ)
    starts = lo + rng.integers(0, spread + 1, (N * channels, out))
    starts[:, -1] = length - k - rng.integers(0, spread + 1, N * channels)
    starts[:channels, -1] = length - k
    starts[-channels:, -1] = length - k  # (the kernels read x through one flat index:
    #                                       only a read past the last batch leaves it)
    for o in wide:
        starts[:, o] = np.minimum(starts[:, o], length - k - 2)
        starts[::channels, o] = starts[1::channels, o] + 2
    assert starts.min() >= 0 and starts.max() <= length - k
    return starts


def _reference(x: np.ndarray, starts: list[np.ndarray], ks: tuple[int, ...], better
               ) -> tuple[np.ndarray, np.ndarray]:
    """Each plane's windows scanned in row-major order, as the kernel a window at a time
    does: the first element, then each later one that is ``better`` (larger or smaller, or
    a NaN). ``x`` channels last, 5-D; values and flat positions in the plane."""
    n, s0, s1, s2, c = x.shape
    outs = [s.shape[1] for s in starts]
    vals = np.empty((n, *outs, c), x.dtype)
    pos = np.empty((n, *outs, c), np.int64)
    for b, ch in itertools.product(range(n), range(c)):
        pl = b * c + ch
        for o in itertools.product(*(range(m) for m in outs)):
            first = [int(starts[a][pl, o[a]]) for a in range(3)]
            best = None
            for t in itertools.product(*(range(k) for k in ks)):
                w = [first[a] + t[a] for a in range(3)]
                v = x[b, w[0], w[1], w[2], ch]
                if best is None or better(v, best):
                    best, at = v, (w[0] * s1 + w[1]) * s2 + w[2]
            vals[(b, *o, ch)], pos[(b, *o, ch)] = best, at
    return vals, pos


BETTER = {"max": (MAX, lambda v, b: v > b or v != v),
          "min": (MIN, lambda v, b: v < b or v != v)}


def _case(rng, dtype, lengths, ks, outs, channels, spreads, wide=()):
    """Input (channels last, 5-D, with NaNs and ties), per-axis starts, and the axes."""
    shape = (N, *lengths, channels)
    if np.dtype(dtype).kind == "f":
        x = rng.uniform(-1, 1, shape).astype(dtype)
        x.reshape(-1)[::23] = np.nan
    else:
        x = rng.integers(0, 5, shape).astype(dtype)  # (many ties)
    flat = x.reshape(-1)
    flat[4:-1:11] = flat[5::11]
    starts = []
    for a in range(3):
        if spreads[a] is None:  # (an axis every plane shares)
            starts.append(np.zeros((N * channels, outs[a]), np.int64)
                          + np.arange(outs[a]) * (lengths[a] - ks[a]) // max(outs[a] - 1, 1))
        else:
            starts.append(_starts(lengths[a], ks[a], outs[a], rng, channels, spreads[a],
                                  frozenset(wide[a]) if wide else frozenset()))
    axes = tuple(SINGLETON if lengths[a] == 1 and spreads[a] is None else
                 explicit_axis(lengths[a], starts[a][:1] if spreads[a] is None else starts[a],
                               ks[a], extent=ks[a]) for a in range(3))
    return x, starts, axes


CASES = [  # (lengths, kernel, outputs, spreads: None for an axis every plane shares)
    ((1, 1, 37), (1, 1, 3), (1, 1, 17), (None, None, 1)),  # (1-D)
    ((1, 1, 40), (1, 1, 2), (1, 1, 27), (None, None, 1)),
    ((1, 11, 13), (1, 2, 2), (1, 7, 8), (None, 1, 1)),  # (2-D)
    ((1, 12, 9), (1, 3, 2), (1, 5, 6), (None, 1, 1)),
    ((1, 10, 11), (1, 2, 3), (1, 6, 5), (None, 1, 0)),  # (an axis whose starts agree)
    ((1, 10, 11), (1, 4, 1), (1, 4, 9), (None, 1, 1)),
    ((7, 8, 9), (2, 2, 2), (4, 5, 5), (1, 1, 1)),  # (3-D)
    ((6, 7, 8), (2, 3, 2), (3, 4, 5), (1, 1, 1)),  # (a box of 36 taps: the box loop)
]


@pytest.mark.parametrize("name, dtype, nontemporal", [
    ("max", np.float32, False), ("max", np.float32, True), ("min", np.float32, False),
    ("max", np.float64, True), ("min", np.float64, False), ("max", np.int16, False),
    ("min", np.int16, True)])
@pytest.mark.parametrize("lengths, ks, outs, spreads", CASES)
def test_folded_kernels_match_the_window_scan(name, dtype, nontemporal, lengths, ks, outs,
                                              spreads, monkeypatch):
    """The planner gives the kernel folded for the windows (a spread of 1 along each
    per-plane axis; its twin with non-temporal stores for calls that write at least
    ``MASKED_INDICES_STREAM_MIN_BYTES``, here lowered to 0), or the box loop where there is
    none, and their values and positions are each window's row-major scan: the first of
    equal values, the last NaN."""
    red, better = BETTER[name]
    if nontemporal:
        monkeypatch.setattr(cpu, "MASKED_INDICES_STREAM_MIN_BYTES", 0)
    rng = np.random.default_rng(sum(lengths) + sum(ks))
    channels = 19  # (a vector of 16 lanes, and three more)
    x, starts, axes = _case(rng, dtype, lengths, ks, outs, channels, spreads)
    plan = cpu.plan_forward(red, "channels_last", x, axes, np.zeros((1, 0)),
                            with_indices=True)
    variant = fold_name(ks, tuple(int(s is not None) for s in spreads), nontemporal)
    if variant is None:  # (a box of more than MASKED_INDICES_MAX_BOX taps: the box loop)
        assert plan.kernel.name == f"{name}/channels_last/{MASKED_INDICES}"
        assert plan.fallback is None
    else:
        assert plan.kernel.name == f"{name}/channels_last/{variant}"
        assert plan.fallback.name == f"{name}/channels_last/{MASKED_INDICES}"
    got, idx = plan.run(x)
    want, at = _reference(x, starts, ks, better)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(idx, at)


@pytest.mark.parametrize("lengths, ks, outs, spreads, wide", [
    ((1, 11, 13), (1, 2, 2), (1, 7, 8), (None, 1, 1), (set(), {2, 5}, set())),
    ((1, 11, 13), (1, 2, 2), (1, 7, 8), (None, 1, 1), (set(), set(), {0, 7})),
    ((7, 8, 9), (2, 2, 2), (4, 5, 5), (1, 1, 1), ({1}, set(), {3})),
    ((1, 1, 40), (1, 1, 2), (1, 1, 27), (None, None, 1), (set(), set(), {26})),
])
def test_wider_windows_are_left_to_the_box_loop(lengths, ks, outs, spreads, wide):
    """Starts two or more apart over the channels at a few outputs: the planner gives the
    box loop (where it gives a masked kernel: 3-D windows that far apart read too much);
    the folded kernel, given them, flags exactly the tasks (output rows) holding such an
    output, and the box loop computes them (the results are the window scan's either
    way)."""
    rng = np.random.default_rng(len(wide[1]) + 7 * len(wide[2]))
    x, starts, axes = _case(rng, np.float32, lengths, ks, outs, 16, spreads, wide)
    want, at = _reference(x, starts, ks, BETTER["max"][1])
    plans = []
    if cpu.masked_indices_channels_last(MAX, axes, x.shape):
        chosen = cpu.plan_forward(MAX, "channels_last", x, axes, np.zeros((1, 0)),
                                  with_indices=True)
        assert chosen.kernel.name == f"max/channels_last/{MASKED_INDICES}"
        assert chosen.fallback is None
        plans.append(chosen)
    else:
        assert len(lengths) == 3 and lengths[0] > 1
    variant = fold_name(ks, tuple(int(s is not None) for s in spreads))
    shape = (N, *outs, 16)
    folded = cpu.ForwardPlan(cpu.get_kernel(MAX, "channels_last", variant), shape,
                             x.dtype, True, True,
                             tuple(cpu._masked_indices_tables(axes, N, 16)), False,
                             N * outs[0] * outs[1],
                             cpu.get_kernel(MAX, "channels_last", MASKED_INDICES))
    out = np.full(shape, 9.0, np.float32)
    idx = np.full(shape, -5, np.int64)
    miss = np.full(folded.tasks, 7, np.uint8)
    folded.kernel(x, out, idx, miss, *folded.args)
    missed = [o0 in wide[0] or o1 in wide[1] or bool(wide[2])
              for o0 in range(outs[0]) for o1 in range(outs[1])]
    assert miss.tolist() == [int(m) for m in missed] * N
    kept = ~np.array(missed * N, bool)
    np.testing.assert_array_equal(out.reshape(-1, outs[2], 16)[kept],
                                  want.reshape(-1, outs[2], 16)[kept])
    for plan in (*plans, folded):
        got, idx = plan.run(x)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(idx, at)


def test_the_box_loop_takes_the_flagged_tasks_only():
    """The kernel for any windows computes the tasks flagged in ``miss`` and leaves the
    others' outputs as they were."""
    rng = np.random.default_rng(2)
    x, starts, axes = _case(rng, np.float64, (1, 11, 13), (1, 2, 2), (1, 7, 8), 16,
                            (None, 1, 1))
    plan = cpu.plan_forward(MAX, "channels_last", x, axes, np.zeros((1, 0)),
                            with_indices=True)
    box = cpu.get_kernel(MAX, "channels_last", MASKED_INDICES)
    out = np.full(plan.shape, 9.0)
    idx = np.full(plan.shape, -5, np.int64)
    miss = np.zeros(plan.tasks, np.uint8)
    miss[[3, 9]] = 1
    box(x, out, idx, miss, *plan.args)
    want, at = _reference(x, starts, (1, 2, 2), BETTER["max"][1])
    rows = out.reshape(plan.tasks, -1)
    for r in range(plan.tasks):
        if r in (3, 9):
            np.testing.assert_array_equal(rows[r], want.reshape(plan.tasks, -1)[r])
            np.testing.assert_array_equal(idx.reshape(plan.tasks, -1)[r],
                                          at.reshape(plan.tasks, -1)[r])
        else:
            assert (rows[r] == 9.0).all() and (idx.reshape(plan.tasks, -1)[r] == -5).all()


def test_which_calls_run_the_kernels(monkeypatch):
    """Channels last, with indices: per-plane windows with at least 8 channels run a masked
    kernel with indices in place; fewer channels, windows every plane shares, or values only
    do not.  Channels first, planes of at most ``VIA_INDICES_MAX_PLANE`` elements run it
    between transposes."""
    seen = kernels_asked(monkeypatch)
    rng = np.random.default_rng(0)

    def variants(shape, layout="channels_last", **opts):
        seen.clear()
        x = rng.random(shape).astype(np.float32)
        numbapool.pool("fractional_max", x, seed=1, layout=layout, **opts)
        return set(seen)

    ratio = dict(output_ratio=0.7)
    assert variants((2, 12, 13, 8), return_indices=True, **ratio) == {
        "forward_masked_indices_k122_s011", MASKED_INDICES}
    assert not any(v.startswith(MASKED_INDICES)
                   for v in variants((2, 12, 13, 7), return_indices=True, **ratio))
    assert not any(v.startswith(MASKED_INDICES)  # (2x2 windows at half: shared)
                   for v in variants((2, 12, 12, 8), return_indices=True, output_ratio=0.5))
    assert not any(v.startswith(MASKED_INDICES) for v in variants((2, 12, 13, 8), **ratio))
    side = int(np.sqrt(cpu.VIA_INDICES_MAX_PLANE))
    assert MASKED_INDICES in variants((2, 8, side, side), "channels_first",
                                      return_indices=True, **ratio)
    assert not any(v.startswith(MASKED_INDICES)
                   for v in variants((2, 8, side + 1, side + 1), "channels_first",
                                     return_indices=True, **ratio))


def test_fold_names():
    assert fold_name((1, 2, 2), (0, 1, 1)) == "forward_masked_indices_k122_s011"
    assert parse_fold("forward_masked_indices_k122_s011") == ((1, 2, 2), (0, 1, 1), False)
    assert fold_name((1, 2, 2), (0, 1, 1), True) == "forward_masked_indices_k122_s011_nt"
    assert parse_fold("forward_masked_indices_k122_s011_nt") == ((1, 2, 2), (0, 1, 1), True)
    assert parse_fold("forward_masked_indices_k122_s011_n") is None
    assert fold_name((1, 2, 5), (0, 1, 1)) is None  # (longer windows)
    assert fold_name((3, 3, 3), (1, 1, 1)) is None  # (a box of 64 taps)
    assert fold_name((2, 3, 3), (1, 1, 0)) is None  # (3 * 4 * 3 = 36: too many)
    assert fold_name((2, 2, 2), (1, 1, 1)) is not None  # (27)
    assert parse_fold("forward_masked_indices_k125_s011") is None
    assert parse_fold("forward_masked_indices_k122_s021") is None
    with pytest.raises(ValueError, match="channels-last kernel"):
        kernel_source(MAX, "channels_first", "forward_masked_indices_k122_s011")
    from numbapool.builtin.reductions import AVG
    with pytest.raises(ValueError, match="no 'forward_masked_indices' kernel"):
        masked_indices_source(AVG, MASKED_INDICES)
    assert MASKED_INDICES_MAX_BOX == 32


def test_kernels_read_inside_their_arrays(tmp_path):
    """Under Numba's bounds checking (``NUMBA_BOUNDSCHECK=1``, in a child process with a
    kernel cache of its own), the folded kernels and the box loop index every array inside
    its bounds, on windows that reach the ends of every axis (the spare tap past a window
    at the end is read inside the axis)."""
    code = textwrap.dedent("""
        import numpy as np
        import test_masked_indices as t
        from numbapool.builtin.reductions import MAX
        from numbapool.kernels import cpu
        rng = np.random.default_rng(5)
        for lengths, ks, outs, spreads, wide in [
                ((1, 1, 40), (1, 1, 2), (1, 1, 27), (None, None, 1), ()),
                ((1, 11, 13), (1, 2, 2), (1, 7, 8), (None, 1, 1), ()),
                ((1, 11, 13), (1, 2, 2), (1, 7, 8), (None, 1, 1), (set(), {6}, {7})),
                ((7, 8, 9), (2, 2, 2), (4, 5, 5), (1, 1, 1), ())]:
            x, starts, axes = t._case(rng, np.float32, lengths, ks, outs, 9, spreads,
                                      wide)
            plan = cpu.plan_forward(MAX, "channels_last", x, axes, np.zeros((1, 0)),
                                    with_indices=True)
            got, idx = plan.run(x)
            want, at = t._reference(x, starts, ks, t.BETTER["max"][1])
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(idx, at)
        print("inside")
    """)
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBAPOOL_CACHE_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "inside" in result.stdout, result.stderr[-3000:]


def test_channels_last_gradient_routes_by_the_masked_kernels_indices(monkeypatch):
    """``pool_grad`` of a channels-last fractional max pool without indices (8 channels)
    runs the masked kernel with indices in place and routes the output gradient by them:
    each output's gradient added to the element its window scan chose (overlapping windows
    add up), as routing the indices ``pool`` returns gives."""
    seen = kernel_layouts_asked(monkeypatch)
    routed = []
    route = cpu.routing.route
    monkeypatch.setattr(cpu.routing, "route",
                        lambda gy, idx, gx, layout: routed.append(layout) or route(gy, idx, gx,
                                                                                 layout))
    rng = np.random.default_rng(6)
    x = rng.random((2, 41, 37, 8))  # (planes larger than VIA_INDICES_MAX_PLANE)
    x[0, 3:5, 3:5, 2] = 0.5  # (ties)
    opts = dict(output_ratio=0.7, samples=rng.random((2, 8, 2)), layout="channels_last")
    y, idx = numbapool.pool("fractional_max", x, return_indices=True, **opts)
    gy = rng.random(y.shape)
    seen.clear()
    gx = numbapool.pool_grad("fractional_max", x, gy, **opts)
    assert sorted(seen) == [("channels_last", "backward"),
                            ("channels_last", MASKED_INDICES),
                            ("channels_last", "forward_masked_indices_k122_s011")]
    assert routed == ["channels_last"]
    want = np.zeros((2, 41 * 37, 8))
    for n, c in itertools.product(range(2), range(8)):
        np.add.at(want[n, :, c], idx[n, ..., c].reshape(-1), gy[n, ..., c].reshape(-1))
    np.testing.assert_allclose(gx, want.reshape(x.shape), rtol=1e-12, atol=0)
    # (and the channels-first gradient, whose indices come from the gather kernel: planes
    # this large do not run the masked kernel)
    cf = {**opts, "layout": "channels_first"}
    gf = numbapool.pool_grad("fractional_max", np.moveaxis(x, -1, 1), np.moveaxis(gy, -1, 1),
                             **cf)
    np.testing.assert_allclose(np.moveaxis(gf, 1, -1), gx, rtol=1e-12, atol=0)
    # (a selection has no parameters: their gradients are none)
    g2, grads = numbapool.pool_grad("fractional_max", x, gy, return_param_grads=True, **opts)
    assert grads == {}
    np.testing.assert_array_equal(g2, gx)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_a_gradient_routed_by_indices_outside_their_planes_raises(layout, monkeypatch):
    """A selection's gradient without indices routes by those of a forward with indices; an
    index outside its plane (a kernel's fault: made here by hand) raises, rather than
    leaving that output's gradient out."""
    real = cpu.forward

    def broken(*args, **kwargs):
        out, idx = real(*args, **kwargs)
        if idx is not None:
            idx = idx.copy()
            idx.reshape(-1)[7] = 10**6
        return out, idx

    monkeypatch.setattr(cpu, "forward", broken)
    monkeypatch.setattr(cpu, "_indexed_forward", lambda red, x, axes, prm: _Broken(
        cpu.plan_forward(red, "channels_first", x, axes, prm, with_indices=True)))
    rng = np.random.default_rng(8)
    x = rng.random((2, 8, 41, 37) if layout == "channels_first" else (2, 41, 37, 8))
    opts = dict(output_ratio=0.7, seed=3, layout=layout)
    y = numbapool.pool("fractional_max", x, **opts)
    with pytest.raises(RuntimeError, match="indices outside their planes"):
        numbapool.pool_grad("fractional_max", x, np.ones_like(y), **opts)


class _Broken:
    """A forward plan whose indices hold one outside its plane."""

    def __init__(self, plan):
        self.plan = plan

    def run(self, x):
        out, idx = self.plan.run(x)
        idx.reshape(-1)[7] = 10**6
        return out, idx
