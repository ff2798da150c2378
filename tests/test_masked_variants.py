"""The channels-last masked kernels for windows of a few rows (``forward_masked_rows*``) and
their fallback: which one a call gets, and that tasks whose windows they do not take are
left to the kernel for any windows (``forward_masked``), against a plain loop."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from numbapool.builtin.reductions import AVG, LP, MAX, MIN, SUM
from numbapool.geometry import SINGLETON, explicit_axis
from numbapool.kernels import batch_starts, cpu
from numbapool.kernels.templates import MASKED_VARIANTS, kernel_source

N, C = 2, 5


def _starts(out: int, wide: set[int], rng: np.random.Generator, end: int | None = None,
            channels: int = C) -> np.ndarray:
    """Per-plane starts near ``2 * o``, at most one apart over the channels, except at the
    outputs in ``wide``, where one channel of each batch starts two further on; with
    ``end``, the last output's windows end there or one before (the kernels for rows read
    their folded rows one column past the last start)."""
    starts = 2 * np.arange(out) + rng.integers(0, 2, (N * channels, out))
    if end is not None:  # (the first and last batches' all at the end: the smallest start
        #                    is the last one; the kernels read the input through one flat
        #                    index, so only a read past the last batch leaves the array)
        starts[:, -1] = end - rng.integers(0, 2, N * channels)
        starts[:channels, -1] = end
        starts[-channels:, -1] = end
    for o in wide:
        starts[::channels, o] = 2 * o + 2
        starts[1::channels, o] = 2 * o
    return starts


def _reference(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, k: int, fold,
               k_rows: int | None = None) -> np.ndarray:
    """Windows of ``k_rows`` (default ``k``) rows and ``k`` columns at per-plane starts."""
    n, _, _, _, c = x.shape
    k_rows = k if k_rows is None else k_rows
    rows, cols = rows.reshape(n, c, -1), cols.reshape(n, c, -1)
    want = np.empty((n, 1, rows.shape[2], cols.shape[2], c))
    for i, ch, a, b in itertools.product(range(n), range(c), range(rows.shape[2]),
                                         range(cols.shape[2])):
        r0, c0 = rows[i, ch, a], cols[i, ch, b]
        want[i, 0, a, b, ch] = fold(x[i, 0, r0:r0 + k_rows, c0:c0 + k, ch].astype(np.float64))
    return want


def _plan(red, x, rows, cols, k, variant, monkeypatch):
    axes = (SINGLETON, explicit_axis(x.shape[2], rows, k, extent=k),
            explicit_axis(x.shape[3], cols, k, extent=k))
    if variant is not None:
        monkeypatch.setattr(cpu, "masked_variant", lambda *args: variant)
    return cpu.plan_forward(red, "channels_last", x, axes, np.zeros((1, 0)))


def _misses(plan, x) -> np.ndarray:
    """The flags the plan's kernel leaves (1: a task for its fallback), run alone."""
    out = np.empty(plan.shape, plan.dtype)
    miss = np.full(plan.tasks, 7, np.uint8)
    plan.kernel(x, out, miss, *plan.args)
    return miss


FOLDS = {"max": (MAX, np.max), "min": (MIN, np.min), "avg": (AVG, np.mean),
         "sum": (SUM, np.sum)}
LP3 = (LP, lambda w: np.sum(w ** 3) ** (1 / 3), np.array([[3.0]]))
"""The Lp pool for p = 3 (PyTorch's: no absolute value; given values of one sign): a
reduction whose ``_init`` is not the identity (each input element taken once, cubed)."""


@pytest.mark.parametrize("name", ["max", "avg"])
@pytest.mark.parametrize("k, wide_rows, wide_cols", [
    (2, set(), set()), (2, {3}, set()), (2, set(), {2}), (2, {0, 5}, {4}),
    (3, {5}, {0}), (4, {2}, set()), (4, set(), {1})])
def test_tasks_the_kernel_for_rows_leaves(name, k, wide_rows, wide_cols, monkeypatch):
    """Windows of ``k`` rows and columns, their starts over the channels a row and a column
    apart but for a few output rows (``wide_rows``) or columns (``wide_cols``) where they are
    two apart: the planner gives the kernel for any windows where they are wide, the kernel
    for rows (and columns, for 2 or 3) otherwise; that one, given the wide windows all the same,
    leaves exactly the tasks (pairs of output rows) holding a wide row or column to its
    fallback, and their results are the plain loop's."""
    red, fold = FOLDS[name]
    rng = np.random.default_rng(k + len(wide_rows) + 3 * len(wide_cols))
    h, w = 17, 15
    out_rows, out_cols = (h - k - 2) // 2 + 1, (w - k - 2) // 2 + 1  # (k < 4: 7 rows)
    rows = _starts(out_rows, wide_rows, rng, h - k)
    cols = _starts(out_cols, wide_cols, rng, w - k)
    x = rng.uniform(-1, 1, (N, 1, h, w, C)).astype(np.float32)
    if name == "max":
        x[1, 0, 5, 6, 2] = np.nan
    want = _reference(x, rows, cols, k, fold)
    chosen = _plan(red, x, rows, cols, k, None, monkeypatch)
    rows_variant = "forward_masked_rows" + (str(k) if k < 4 else "k")
    if k < 4:
        rows_variant += f"_cols{k}"
    wide = bool(wide_rows or wide_cols)
    assert chosen.kernel.name.endswith("/forward_masked" if wide else "/" + rows_variant)
    assert (chosen.fallback is None) == wide
    plan = _plan(red, x, rows, cols, k, rows_variant, monkeypatch)
    assert plan.kernel.name.endswith("/" + rows_variant)
    assert plan.fallback.name.endswith("/forward_masked")
    missed = [bool(wide_cols) or 2 * t in wide_rows or 2 * t + 1 in wide_rows
              for t in range((out_rows + 1) // 2)]
    assert _misses(plan, x).tolist() == [int(m) for m in missed] * N
    for p in (chosen, plan):
        got, _ = p.run(x)
        tol = dict(rtol=0, atol=0) if name == "max" else dict(rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got, want, **tol)


@pytest.mark.parametrize("variant", ["forward_masked_rows3", "forward_masked_rows2_cols3",
                                     "forward_masked_rowsk"])
def test_kernel_for_other_windows_leaves_every_task(variant, monkeypatch):
    """A kernel for rows given windows of another size (2x2) takes no task: its fallback
    computes them all."""
    rng = np.random.default_rng(1)
    rows, cols = _starts(5, set(), rng), _starts(6, set(), rng)
    x = rng.uniform(-1, 1, (N, 1, 12, 14, C)).astype(np.float32)
    plan = _plan(MAX, x, rows, cols, 2, variant, monkeypatch)
    assert _misses(plan, x).tolist() == [1] * plan.tasks
    np.testing.assert_array_equal(plan.run(x)[0], _reference(x, rows, cols, 2, np.max))


@pytest.mark.parametrize("name", ["max", "min", "avg", "sum"])
@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("channels", [C, 1])
def test_kernels_for_rows_with_ties_and_signs(name, k, channels):
    """Every channel's window a row or a column after another's (or one channel), the last
    windows at the end of the axes, on values with many ties (integers from -2 to 2) and
    NaNs for the selections: the chosen kernel for rows takes every task and agrees with the
    plain loop."""
    red, fold = FOLDS[name]
    rng = np.random.default_rng(k)
    h, w = 4 * k + 3, 3 * k + 4
    out_rows, out_cols = (h - k - 1) // 2 + 1, (w - k - 1) // 2 + 1
    rows = _starts(out_rows, set(), rng, h - k, channels)
    cols = _starts(out_cols, set(), rng, w - k, channels)
    x = rng.integers(-2, 3, (N, 1, h, w, channels)).astype(np.float64)
    if name in ("max", "min"):
        x[rng.random(x.shape) < 0.03] = np.nan
    axes = (SINGLETON, explicit_axis(h, rows, k, extent=k), explicit_axis(w, cols, k, extent=k))
    plan = cpu.plan_forward(red, "channels_last", x, axes, np.zeros((1, 0)))
    assert "/forward_masked_rows" in plan.kernel.name
    assert not _misses(plan, x).any()
    np.testing.assert_allclose(plan.run(x)[0], _reference(x, rows, cols, k, fold),
                               rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", ["max", "min", "avg", "sum"])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("h, channels", [(1, C), (1, 1), (6, C)])
def test_kernels_for_one_row(name, k, h, channels):
    """Windows of one row (1-D pooling, ``h`` 1, or 2-D windows of height 1), the same row
    for every channel, and ``k`` columns a column apart over the channels, the last at the
    end of the row; values with many ties and NaNs for the selections: the kernel for one
    row (``forward_masked_rows1_cols{k}``) takes every task and agrees with the plain
    loop."""
    red, fold = FOLDS[name]
    rng = np.random.default_rng(k + h)
    w = 4 * k + 5
    out_cols = (w - k - 1) // 2 + 1
    rows = np.broadcast_to(np.arange(h), (N * channels, h))
    cols = _starts(out_cols, set(), rng, w - k, channels)
    x = rng.integers(-2, 3, (N, 1, h, w, channels)).astype(np.float64)
    if name in ("max", "min"):
        x[rng.random(x.shape) < 0.05] = np.nan
    axes = (SINGLETON, explicit_axis(h, np.ascontiguousarray(rows), 1, extent=1),
            explicit_axis(w, cols, k, extent=k))
    plan = cpu.plan_forward(red, "channels_last", x, axes, np.zeros((1, 0)))
    assert plan.kernel.name.endswith(f"/forward_masked_rows1_cols{k}")
    assert not _misses(plan, x).any()
    np.testing.assert_allclose(plan.run(x)[0], _reference(x, rows, cols, k, fold, 1),
                               rtol=1e-15, atol=0)


def test_kernel_for_one_row_leaves_rows_the_channels_do_not_share(monkeypatch):
    """Given windows of one row whose channels read different rows at output row 3, the
    kernel for one row leaves that row's task (output rows 2 and 3) to its fallback, and a
    window wider than its columns every task."""
    rng = np.random.default_rng(5)
    h, w, k = 6, 13, 3
    rows = np.repeat(np.arange(h)[None], N * C, axis=0)
    rows[1::C, 3] = 4
    cols = _starts((w - k - 1) // 2 + 1, set(), rng, w - k)
    x = rng.uniform(-1, 1, (N, 1, h, w, C)).astype(np.float32)
    monkeypatch.setattr(cpu, "masked_variant", lambda *args: "forward_masked_rows1_cols3")
    axes = (SINGLETON, explicit_axis(h, rows, 1, extent=1), explicit_axis(w, cols, k, extent=k))
    plan = cpu.plan_forward(MAX, "channels_last", x, axes, np.zeros((1, 0)))
    assert plan.kernel.name.endswith("/forward_masked_rows1_cols3")
    assert plan.fallback.name.endswith("/forward_masked")
    assert _misses(plan, x).tolist() == [0, 1, 0] * N
    np.testing.assert_array_equal(plan.run(x)[0], _reference(x, rows, cols, k, np.max, 1))
    x = rng.uniform(-1, 1, (N, 1, 12, 14, C)).astype(np.float32)
    wide = _plan(MAX, x, _starts(5, set(), rng), _starts(6, set(), rng), 2,
                 "forward_masked_rows1_cols3", monkeypatch)
    assert _misses(wide, x).tolist() == [1] * wide.tasks


def _reference_3d(x: np.ndarray, starts: list[np.ndarray], ks: tuple[int, int, int],
                  fold) -> np.ndarray:
    """Windows of ``ks`` at per-plane starts (one ``(N * C, out)`` array an axis) of
    channels-last ``x`` (N, D, H, W, C)."""
    n, *_, c = x.shape
    starts = [s.reshape(n, c, -1) for s in starts]
    want = np.empty((n, *(s.shape[2] for s in starts), c))
    for i, ch in itertools.product(range(n), range(c)):
        for o in itertools.product(*(range(s.shape[2]) for s in starts)):
            window = x[(i, *(slice(s[i, ch, a], s[i, ch, a] + k)
                             for s, a, k in zip(starts, o, ks)), ch)]
            want[(i, *o, ch)] = fold(window.astype(np.float64))
    return want


@pytest.mark.parametrize("name", ["max", "min", "avg", "sum", "lp"])
@pytest.mark.parametrize("ks", [(2, 2, 2), (3, 3, 3), (2, 3, 2), (3, 2, 5)])
@pytest.mark.parametrize("channels", [C, 1])
def test_kernels_for_volumes(name, ks, channels):
    """3-D windows of 2 or 3 planes and rows, each channel's a plane, a row and a column
    after another's, the last windows at the ends of the axes, on values with many ties
    and NaNs for the selections: the chosen kernel (``forward_masked_deep*``, the rows
    folded over the planes first) takes every task and agrees with the plain loop (for
    the Lp pool, each element taken once: the rows folded over the planes hold
    accumulators)."""
    red, fold, prm = LP3 if name == "lp" else (*FOLDS[name], np.zeros((1, 0)))
    rng = np.random.default_rng(sum(ks) + channels)
    shape = (2 * ks[0] + 4, 3 * ks[1] + 3, 2 * ks[2] + 5)
    starts = [_starts((length - k - 1) // 2 + 1, set(), rng, length - k, channels)
              for length, k in zip(shape, ks)]
    x = rng.integers(-2, 3, (N, *shape, channels)).astype(np.float64)
    if name in ("max", "min"):
        x[rng.random(x.shape) < 0.03] = np.nan
    if name == "lp":
        x = np.abs(x)
    axes = tuple(explicit_axis(length, s, k, extent=k) for length, s, k in zip(shape, starts, ks))
    plan = cpu.plan_forward(red, "channels_last", x, axes, prm)
    cols = f"_cols{ks[2]}" if ks[2] < 4 else ""
    assert plan.kernel.name.endswith(f"/forward_masked_deep{ks[0]}_rows{ks[1]}{cols}")
    assert not _misses(plan, x).any()
    np.testing.assert_allclose(plan.run(x)[0], _reference_3d(x, starts, ks, fold),
                               rtol=1e-14 if name == "lp" else 1e-15, atol=0)


def test_kernel_for_volumes_leaves_planes_apart(monkeypatch):
    """Where one channel's window starts two planes after another's (output plane 1), the
    kernel for volumes leaves that plane's tasks to its fallback; both agree with the plain
    loop."""
    rng = np.random.default_rng(8)
    shape, ks = (10, 11, 10), (3, 2, 2)
    starts = [_starts((length - k - 1) // 2 + 1, wide, rng, length - k)
              for length, k, wide in zip(shape, ks, ({1}, set(), set()))]
    x = rng.uniform(-1, 1, (N, *shape, C)).astype(np.float32)
    axes = tuple(explicit_axis(length, s, k, extent=k) for length, s, k in zip(shape, starts, ks))
    assert cpu.plan_forward(MAX, "channels_last", x, axes, np.zeros((1, 0))
                            ).kernel.name.endswith("/forward_masked")
    monkeypatch.setattr(cpu, "masked_variant", lambda *args: "forward_masked_deep3_rows2_cols2")
    plan = cpu.plan_forward(MAX, "channels_last", x, axes, np.zeros((1, 0)))
    assert plan.fallback.name.endswith("/forward_masked")
    tasks = (starts[1].shape[1] + 1) // 2
    assert _misses(plan, x).tolist() == ([0] * tasks + [1] * tasks
                                         + [0] * tasks * (starts[0].shape[1] - 2)) * N
    np.testing.assert_array_equal(plan.run(x)[0], _reference_3d(x, starts, ks, np.max))


@pytest.mark.parametrize("k0, spread0, k1, k2, spreads, want", [
    (1, 0, 2, 2, (1, 1), "forward_masked_rows2_cols2"),
    (1, 0, 3, 3, (1, 0), "forward_masked_rows3_cols3"),
    (1, 0, 3, 2, (0, 1), "forward_masked_rows3_cols2"),
    (1, 0, 2, 1, (1, 0), "forward_masked_rows2"),
    (1, 0, 5, 4, (1, 1), "forward_masked_rowsk"),
    (1, 0, 6, 3, (1, 1), "forward_masked_rowsk_cols3"),
    (2, 1, 2, 2, (1, 1), "forward_masked_deep2_rows2_cols2"),
    (3, 0, 3, 3, (1, 0), "forward_masked_deep3_rows3_cols3"),
    (3, 1, 2, 5, (1, 1), "forward_masked_deep3_rows2"),
    (2, 2, 2, 2, (1, 1), "forward_masked"),
    (4, 1, 2, 2, (1, 1), "forward_masked"),
    (2, 1, 4, 2, (1, 1), "forward_masked"),
    (1, 0, 1, 3, (0, 1), "forward_masked_rows1_cols3"),
    (1, 0, 1, 2, (0, 0), "forward_masked_rows1_cols2"),
    (1, 0, 1, 4, (0, 1), "forward_masked"),
    (1, 0, 1, 3, (0, 2), "forward_masked"),
    (1, 0, 2, 2, (2, 1), "forward_masked"),
    (1, 0, 2, 2, (1, 2), "forward_masked"),
    (1, 0, 1, 2, (1, 1), "forward_masked"),
    (1, 1, 2, 2, (1, 1), "forward_masked")])
def test_masked_variant(k0, spread0, k1, k2, spreads, want):
    """The planner's choice among :data:`MASKED_VARIANTS`: by the kernel's extents and the
    spread of the starts over the channels along each axis."""
    def axis(k, spread, out=4):
        starts = 3 * np.arange(out) + np.arange(N * C)[:, None] % (spread + 1)
        return explicit_axis(3 * out + k + spread, starts, k, extent=k)
    axes = (axis(k0, spread0), axis(k1, spreads[0]), axis(k2, spreads[1]))
    assert cpu.masked_variant(axes, N, C) == want


def test_masked_variant_names():
    """Every masked kernel generates for channels last (flags in ``miss``), and not for
    channels first."""
    for name, (rows, _, _) in MASKED_VARIANTS.items():
        for red in (MAX, AVG):
            src = kernel_source(red, "channels_last", name)
            assert src.startswith("def kernel(x, out, miss, ")
            assert ("miss[r] = 1" in src) == bool(rows)
        with pytest.raises(ValueError, match="channels-last kernel"):
            kernel_source(MAX, "channels_first", name)



def test_kernel_for_any_windows_takes_the_flagged_tasks_only(monkeypatch):
    """The fallback runs the tasks flagged in ``miss`` and leaves the others' outputs (the
    kernel for rows wrote them)."""
    rng = np.random.default_rng(2)
    rows, cols = _starts(7, set(), rng), _starts(6, set(), rng)
    x = rng.uniform(-1, 1, (N, 1, 17, 15, C)).astype(np.float32)
    plan = _plan(MAX, x, rows, cols, 2, None, monkeypatch)
    assert plan.tasks == N * 4 and plan.fallback is not None
    miss = np.zeros(plan.tasks, np.uint8)
    miss[[1, 7]] = 1  # (batch 0, output rows 2 and 3; batch 1, output row 6 alone)
    out = np.full(plan.shape, 9.0, np.float32)
    plan.fallback(x, out, miss, *plan.args)
    want = np.full(plan.shape, 9.0)
    ref = _reference(x, rows, cols, 2, np.max)
    want[0, :, 2:4], want[1, :, 6:] = ref[0, :, 2:4], ref[1, :, 6:]
    np.testing.assert_array_equal(out, want)


def test_masked_kernels_read_inside_their_arrays(tmp_path):
    """Under Numba's bounds checking (``NUMBA_BOUNDSCHECK=1``, in a child process with a
    kernel cache of its own), the kernels for rows and their fallback index every array
    inside its bounds, the spare column of their rows included, on windows that reach the
    ends of both axes (an error there raises in the kernel, and the call fails)."""
    code = textwrap.dedent("""
        import numpy as np
        import test_masked_variants as t
        from numbapool.builtin.reductions import AVG, MAX
        from numbapool.geometry import SINGLETON, explicit_axis
        from numbapool.kernels import cpu
        rng = np.random.default_rng(4)
        for red, fold, k, channels, wide in [(MAX, np.max, 2, 1, set()),
                                             (AVG, np.mean, 3, 5, set()),
                                             (MAX, np.max, 3, 5, {1})]:
            if k == 2:  # (and the kernel for one row: 1-D windows to the row's end)
                w = 4 * k + 5
                rows = np.zeros((t.N * channels, 1), dtype=np.int64)
                cols = t._starts((w - k - 1) // 2 + 1, set(), rng, w - k, channels)
                x = rng.uniform(-1, 1, (t.N, 1, 1, w, channels))
                axes = (SINGLETON, explicit_axis(1, rows, 1, extent=1),
                        explicit_axis(w, cols, k, extent=k))
                plan = cpu.plan_forward(red, "channels_last", x, axes, np.zeros((1, 0)))
                assert plan.kernel.name.endswith("/forward_masked_rows1_cols2")
                np.testing.assert_allclose(plan.run(x)[0],
                                           t._reference(x, rows, cols, k, fold, 1),
                                           rtol=1e-12, atol=0)
            h, w = 4 * k + 3, 3 * k + 4
            out_rows, out_cols = (h - k - 1) // 2 + 1, (w - k - 1) // 2 + 1
            rows = t._starts(out_rows, wide, rng, h - k, channels)
            cols = t._starts(out_cols, set(), rng, w - k, channels)
            x = rng.uniform(-1, 1, (t.N, 1, h, w, channels))
            axes = (SINGLETON, explicit_axis(h, rows, k, extent=k),
                    explicit_axis(w, cols, k, extent=k))
            plan = cpu.plan_forward(red, "channels_last", x, axes, np.zeros((1, 0)))
            if wide:  # (the kernel for rows, leaving the wide rows' tasks to its fallback)
                plan = type(plan)(cpu.get_kernel(red, "channels_last",
                                                 f"forward_masked_rows{k}_cols{k}"),
                                  *[getattr(plan, f) for f in ("shape", "dtype", "with_indices",
                                                               "return_indices", "args",
                                                               "sampling", "tasks")],
                                  cpu.get_kernel(red, "channels_last", "forward_masked"))
            assert "/forward_masked" in plan.kernel.name, plan.kernel.name
            got = plan.run(x)[0]
            want = t._reference(x, rows, cols, k, fold)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
        for red, fold, ks, prm in [(MAX, np.max, (2, 3, 2), np.zeros((1, 0))),
                                   (AVG, np.mean, (3, 2, 3), np.zeros((1, 0))),
                                   (t.LP3[0], t.LP3[1], (2, 2, 3), t.LP3[2])]:
            shape = (2 * ks[0] + 4, 3 * ks[1] + 3, 2 * ks[2] + 5)  # (volumes: to the ends)
            starts = [t._starts((length - k - 1) // 2 + 1, set(), rng, length - k, 5)
                      for length, k in zip(shape, ks)]
            x = rng.uniform(0 if prm.size else -1, 1, (t.N, *shape, 5))
            axes = tuple(explicit_axis(length, s, k, extent=k)
                         for length, s, k in zip(shape, starts, ks))
            plan = cpu.plan_forward(red, "channels_last", x, axes, prm)
            assert "/forward_masked_deep" in plan.kernel.name, plan.kernel.name
            np.testing.assert_allclose(plan.run(x)[0], t._reference_3d(x, starts, ks, fold),
                                       rtol=1e-12, atol=0)
        print("inside")
    """)
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBAPOOL_CACHE_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "inside" in result.stdout, result.stderr[-3000:]


def test_channels_first_passes_by_chunks_of_batches(monkeypatch):
    """A channels-first pass of the masked kernel with each batch's starts computed on its
    threads runs by chunks of batches (:class:`cpu.ChunkedViaChannelsLast`) of at most
    ``VIA_CHUNK_BYTES`` of input, at least one batch; with divisor tables of a row per plane
    (read by plane, not by the chunk's batch) it keeps the whole-array transposes."""
    shape = (7, 16, 1, 6, 6)  # (a batch: 16 * 36 * 4 = 2304 bytes of float32)
    pf = np.zeros(batch_starts.PF_SIZE, np.int64)

    def plan(divisors):  # (7 batches' output, a task per batch and pair of rows; the
        #                    arguments of a smooth reduction's pass: 4 tables, dk, the
        #                    divisors, override, zero, the parameters and pf)
        tables = [np.zeros((2, 3, 16), np.int64)] * 4
        return cpu.ForwardPlan(None, (7, 1, 3, 3, 16), np.dtype(np.float32), False, False,
                               (*tables, np.ones((2, 3), np.int64), np.ones((1, 1)),
                                np.ones((1, 3)), divisors, 0.0, np.float32(0),
                                np.zeros((1, 0)), pf), False, tasks=7 * 2)

    for budget, chunk in ((2304 * 3, 3), (2304 * 3 + 2303, 3), (100, 1), (10 ** 9, 7)):
        monkeypatch.setattr(cpu, "VIA_CHUNK_BYTES", budget)
        chunked = cpu.via_channels_last(plan(np.ones((1, 3))), pf, shape, np.float32)
        assert isinstance(chunked, cpu.ChunkedViaChannelsLast)
        assert chunked.inner.shape == (chunk, 1, 3, 3, 16)
        assert chunked.inner.tasks == chunk * 2 and chunked.pf is pf
    whole = cpu.via_channels_last(plan(np.ones((112, 3))), pf, shape, np.float32)
    assert isinstance(whole, cpu.ViaChannelsLast)
