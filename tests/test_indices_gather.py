"""Channels-first selections with indices over windows that are whole kernels run the
gather kernel (templates._cf_forward_indices_gather): each input row folded along the row,
then gathered at the windows' starts.  Values and indices against plain NumPy loops over
each window in row-major order (a tie keeps the first element, a NaN wins and a later NaN
replaces an earlier one), with ties and NaNs; windows a table per plane (as fractional
pooling draws them) and windows every plane shares."""

import numpy as np
import pytest

import numbapool
from numbapool.builtin.reductions import MAX, MIN
from numbapool.geometry import explicit_axis
from numbapool.kernels import cpu
from reference import ref_pool
from spies import kernels_asked


def _windows_reference(x, axes, better):
    """Values and flat in-plane indices of each window, x (N, C, S0, S1, S2), scanned
    tap after tap in row-major order."""
    n, c = x.shape[:2]
    s0, s1, s2 = x.shape[2:]
    outs = [a.start.shape[1] for a in axes]
    y = np.empty((n, c, *outs), dtype=x.dtype)
    idx = np.empty((n, c, *outs), dtype=np.int64)
    counts = [np.broadcast_to(a.count, a.start.shape) for a in axes]
    for p in range(n * c):
        plane = x[p // c, p % c]
        q = [p % a.start.shape[0] for a in axes]
        for o in np.ndindex(*outs):
            taps = [[axes[a].start[q[a], o[a]] + k * axes[a].step
                     for k in range(counts[a][q[a], o[a]])] for a in range(3)]
            best = pos = None
            for w0 in taps[0]:
                for w1 in taps[1]:
                    for w2 in taps[2]:
                        v = plane[w0, w1, w2]
                        if best is None or better(v, best):
                            best, pos = v, (w0 * s1 + w1) * s2 + w2
            y[(p // c, p % c, *o)] = best
            idx[(p // c, p % c, *o)] = pos
    return y, idx


def _max_better(v, best):
    return v > best or v != v


def _min_better(v, best):
    return v < best or v != v


def _data(shape, dtype, rng):
    x = rng.integers(0, 3, shape).astype(dtype)  # many ties
    if np.dtype(dtype).kind == "f" and x.size:
        flat = x.reshape(-1)
        flat[rng.choice(flat.size, max(2, flat.size // 30), replace=False)] = np.nan
        flat[:3] = np.nan  # (neighbours: NaNs in one window)
    return x


def _per_plane_axis(rng, planes, length, out, kernel, step):
    """Whole windows of ``kernel`` taps ``step`` apart, their starts drawn for each plane
    (sorted, repeats allowed, the last window inside the axis)."""
    last = length - 1 - (kernel - 1) * step
    start = np.sort(rng.integers(0, last + 1, (planes, out)), axis=1)
    return explicit_axis(length, start, kernel, step=step)


@pytest.mark.parametrize("reduction,better", [(MAX, _max_better), (MIN, _min_better)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
@pytest.mark.parametrize("kernel,step", [((1, 2, 2), (1, 1, 1)), ((1, 3, 2), (1, 2, 1)),
                                         ((2, 2, 3), (1, 1, 2)), ((1, 1, 3), (1, 1, 1)),
                                         ((2, 2, 2), (2, 1, 1))])
def test_windows_of_each_plane_match_the_reference(reduction, better, dtype, kernel, step,
                                                   monkeypatch):
    rng = np.random.default_rng(sum(kernel) + len(np.dtype(dtype).name))
    n, c, spatial = 2, 3, (4 if kernel[0] > 1 else 1, 7, 11)
    outs = (2 if kernel[0] > 1 else 1, 4, 6)
    x = _data((n, c, *spatial), dtype, rng)
    before = x.copy()
    axes = [_per_plane_axis(rng, n * c, spatial[a], outs[a], kernel[a], step[a])
            for a in range(3)]
    assert all(a.full for a in axes) and axes[2].planes == n * c
    asked = kernels_asked(monkeypatch)
    y, idx = cpu.forward(reduction, "channels_first", x, axes, np.zeros((1, 0)),
                         with_indices=True)
    assert asked == ["forward_indices_gather"]
    want, want_idx = _windows_reference(x, axes, better)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(idx, want_idx)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("opts", [dict(kernel_size=2, stride=1),
                                  dict(kernel_size=(2, 4), stride=(1, 3)),
                                  dict(kernel_size=3, stride=2, dilation=2)], ids=str)
def test_shared_windows_through_pool_match_the_reference(opts, monkeypatch):
    """Windows every plane shares, on few channels (the channels-last kernels between
    transposes take 8 or more), where the row kernel with indices does not apply."""
    rng = np.random.default_rng(7)
    x = _data((2, 3, 9, 14), np.float32, rng)
    asked = kernels_asked(monkeypatch)
    y, idx = numbapool.pool("max", x, return_indices=True, **opts)
    assert asked == ["forward_indices_gather"]
    want, want_idx = ref_pool("max", x, return_indices=True, **opts)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(idx, want_idx)


def test_windows_cut_by_padding_take_the_per_window_kernel(monkeypatch):
    asked = kernels_asked(monkeypatch)
    x = _data((1, 2, 6, 9), np.float64, np.random.default_rng(1))
    y, idx = numbapool.pool("max", x, 3, stride=1, padding=1, return_indices=True)
    assert asked == ["forward_indices"]
    want, want_idx = ref_pool("max", x, 3, stride=1, padding=1, return_indices=True)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(idx, want_idx)


@pytest.mark.parametrize("opts,routed", [
    (dict(kernel_size=2, stride=1), "forward_indices_gather"),  # (whole windows, 3 channels)
    (dict(kernel_size=3, stride=2, padding=1), "forward_indices_rows3"),
    (dict(kernel_size=3, stride=1, padding=1), None),  # (cut windows, 3 channels: a search)
], ids=str)
def test_grad_without_indices_routes_by_the_forwards_indices(opts, routed, monkeypatch):
    """Channels first, a selection's gradient without indices takes the forward's indices
    where a kernel that does not walk each window gives them, else the search by value
    (backward_scatter, 8 planes or more): the reference's gradient either way, with ties
    and NaNs."""
    from reference import ref_pool_grad

    rng = np.random.default_rng(11)
    x = _data((3, 3, 9, 12), np.float64, rng)
    gy = rng.standard_normal(numbapool.pool("max", x, **opts).shape)
    asked = kernels_asked(monkeypatch)
    got = numbapool.pool_grad("max", x, gy, **opts)
    if routed is None:
        assert "backward_scatter" in asked, asked  # (planned with indices first, not run)
    else:
        assert asked == [routed], asked
    np.testing.assert_array_equal(got, ref_pool_grad("max", x, gy, **opts))


def test_sparse_windows_keep_the_per_window_kernel(monkeypatch):
    """Windows over 32 input elements apart along the row: folding whole rows would read
    every element for a few windows."""
    rng = np.random.default_rng(2)
    x = _data((1, 2, 1, 3, 200), np.float32, rng)
    axes = [_per_plane_axis(rng, 2, 1, 1, 1, 1), _per_plane_axis(rng, 2, 3, 2, 2, 1),
            _per_plane_axis(rng, 2, 200, 6, 2, 1)]
    asked = kernels_asked(monkeypatch)
    y, idx = cpu.forward(MAX, "channels_first", x, axes, np.zeros((1, 0)), with_indices=True)
    assert asked == ["forward_indices"]
    want, want_idx = _windows_reference(x, axes, _max_better)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(idx, want_idx)


@pytest.mark.parametrize("shape", [(0, 3, 6, 6), (2, 0, 6, 6), (1, 3, 6, 6)], ids=str)
def test_grad_without_indices_on_no_planes_or_few(shape, monkeypatch):
    """No planes (an empty gradient) and fewer planes than the scatter takes (the gather
    through the inverse map, given the forward's indices)."""
    from reference import ref_pool_grad

    rng = np.random.default_rng(4)
    x = _data(shape, np.float64, rng)
    opts = dict(kernel_size=2, stride=1)
    gy = rng.standard_normal(numbapool.pool("max", x, **opts).shape)
    asked = kernels_asked(monkeypatch)
    got = numbapool.pool_grad("max", x, gy, **opts)
    assert got.shape == x.shape
    assert "backward_scatter" not in asked
    np.testing.assert_array_equal(got, ref_pool_grad("max", x, gy, **opts))
