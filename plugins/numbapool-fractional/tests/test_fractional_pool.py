"""End-to-end tests of ``numbapool.pool("fractional_max" | "fractional_avg", ...)``.

PyTorch's rule is checked against ``torch.nn.functional.fractional_max_pool2d/3d`` (values,
indices and autograd gradients); everything else (average pooling, Graham's sequences, seeds)
against plain NumPy references built from the windows :func:`pooling_sequences` reports, so
that the numbapool kernels are never their own oracle.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import numbapool
from numbapool_fractional import pooling_sequences

TORCH_FN = {2: F.fractional_max_pool2d, 3: F.fractional_max_pool3d}
TOL = {np.float64: {"rtol": 1e-12, "atol": 1e-12}, np.float32: {"rtol": 2e-5, "atol": 2e-6}}


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def tol(dtype):
    return TOL[np.dtype(dtype).type]


def make_x(rng, shape, dtype=np.float64):
    """Random normal input (ties have probability ~0, so the argmax is unique)."""
    return rng.standard_normal(shape).astype(dtype)


def make_samples(rng, batch, channels, rank, dtype=np.float64):
    """Uniform samples in ``[0, 1)`` exactly representable in ``dtype``."""
    s = rng.random((batch, channels, rank)).astype(dtype)
    return np.minimum(s, np.nextafter(dtype(1), dtype(0)))


def torch_max(x, kernel, samples, *, output_size=None, output_ratio=None, grad_output=None):
    """torch's fractional max pooling of ``x`` (N, C, *spatial, rank 2 or 3).

    Returns values, indices and, with ``grad_output``, the autograd gradient w.r.t. ``x``.
    """
    rank = x.ndim - 2
    tx = torch.from_numpy(x.copy()).requires_grad_(grad_output is not None)
    if output_ratio is None:
        kwargs = {"output_size": output_size}
    else:  # torch.nn.functional wants one ratio per axis (the nn modules expand a scalar)
        kwargs = {"output_ratio": tuple(np.broadcast_to(output_ratio, (rank,)).tolist())}
    y, idx = TORCH_FN[rank](tx, kernel, _random_samples=torch.from_numpy(samples.copy()),
                            return_indices=True, **kwargs)
    gx = None
    if grad_output is not None:
        y.backward(torch.from_numpy(grad_output.copy()))
        gx = tx.grad.numpy()
    return y.detach().numpy(), idx.numpy(), gx


def torch_windows(starts, kernel):
    """Per-axis ``(start, count)`` tables ``(P, out)`` from PyTorch-rule starts ``(N, C, out)``."""
    kernel = np.broadcast_to(kernel, (len(starts),))
    starts = [np.asarray(s).reshape(-1, np.shape(s)[-1]) for s in starts]
    return starts, [np.full(s.shape, k) for s, k in zip(starts, kernel)]


def graham_windows(seqs, spatial, overlapping, planes):
    """Per-axis ``(start, count)`` tables ``(P, out)``: ``[a_i, a_{i+1})``, or ``[a_i,
    a_{i+1}]`` clipped to ``L - 1`` when overlapping, the same for every plane."""
    starts, counts = [], []
    for seq, length in zip(seqs, spatial):
        seq = np.asarray(seq)
        lo = seq[:-1]
        hi = np.minimum(seq[1:] if overlapping else seq[1:] - 1, length - 1)
        starts.append(np.broadcast_to(lo, (planes, lo.size)))
        counts.append(np.broadcast_to(hi - lo + 1, (planes, lo.size)))
    return starts, counts


def ref_pool(x, starts, counts, op, grad_output=None):
    """NumPy pooling of channels-first ``x`` (N, C, *spatial) over explicit windows.

    ``starts[d][p, o]`` and ``counts[d][p, o]`` give the window of output ``o`` along axis ``d``
    in plane ``p`` (row-major over ``(N, C)``).  Returns ``(values, indices, grad)``: max
    values / averages (computed in float64), flat per-plane indices of the first maximum in
    row-major order (max only), and the gradient for ``grad_output`` (or None).
    """
    batch, channels, *spatial = x.shape
    planes = batch * channels
    xp = x.reshape(planes, *spatial)
    out_shape = tuple(np.shape(s)[1] for s in starts)
    values = np.empty((planes, *out_shape), dtype=np.float64)
    indices = np.full((planes, *out_shape), -1, dtype=np.int64)
    gy = None if grad_output is None else grad_output.reshape(planes, *out_shape)
    gx = np.zeros((planes, *spatial), dtype=np.float64)
    for p in range(planes):
        for o in np.ndindex(*out_shape):
            lo = [int(s[p, od]) for s, od in zip(starts, o)]
            cnt = [int(c[p, od]) for c, od in zip(counts, o)]
            assert all(c >= 1 for c in cnt), "empty window"
            assert all(0 <= a and a + c <= n for a, c, n in zip(lo, cnt, spatial)), \
                "window outside the input"
            sl = tuple(slice(a, a + c) for a, c in zip(lo, cnt))
            window = xp[p][sl].astype(np.float64)
            if op == "max":
                j = np.unravel_index(np.argmax(window), window.shape)
                values[p][o] = window[j]
                flat = np.ravel_multi_index(tuple(a + jj for a, jj in zip(lo, j)), spatial)
                indices[p][o] = flat
                if gy is not None:
                    gx[p].flat[flat] += gy[p][o]
            else:
                values[p][o] = window.mean()
                if gy is not None:
                    gx[p][sl] += gy[p][o] / window.size
    shape = (batch, channels, *out_shape)
    return (values.reshape(shape), indices.reshape(shape),
            None if gy is None else gx.reshape(x.shape))


def to_last(a):
    return np.moveaxis(a, 1, -1)


def to_first(a):
    return np.moveaxis(a, -1, 1)


# ----------------------------------------------------------------------------------------------
# 1. PyTorch's rule against torch
# ----------------------------------------------------------------------------------------------

TORCH_CASES = [
    # shape, kernel, output_size (None: use the ratio), output_ratio
    pytest.param((2, 3, 11, 17), (2, 3), (5, 7), None, id="2d-nonsquare"),
    pytest.param((1, 2, 9, 10), 3, (7, 8), None, id="2d-overlapping-k3"),
    pytest.param((2, 2, 13, 10), 2, None, (0.6, 0.75), id="2d-ratio-pair"),
    pytest.param((1, 3, 12, 9), (3, 2), None, 0.5, id="2d-ratio-scalar"),
    pytest.param((2, 2, 7, 8, 9), (2, 3, 2), (3, 4, 5), None, id="3d-nonsquare"),
    pytest.param((1, 2, 6, 7, 8), 2, (4, 5, 6), None, id="3d-limit"),  # out + k - 1 == L - 1
    pytest.param((1, 2, 9, 7, 8), (3, 2, 2), None, (0.6, 0.5, 0.75), id="3d-ratio"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("shape", "kernel", "output_size", "output_ratio"), TORCH_CASES)
def test_max_matches_torch(shape, kernel, output_size, output_ratio, dtype):
    rng = np.random.default_rng(sum(shape))
    rank = len(shape) - 2
    x = make_x(rng, shape, dtype)
    s = make_samples(rng, shape[0], shape[1], rank, dtype)
    x0, s0 = x.copy(), s.copy()
    ty, ti, _ = torch_max(x, kernel, s, output_size=output_size, output_ratio=output_ratio)
    opts = dict(kernel_size=kernel, output_size=output_size, output_ratio=output_ratio,
                samples=s)
    y, idx = numbapool.pool("fractional_max", x, return_indices=True, **opts)
    assert y.dtype == dtype and idx.dtype == np.int64
    assert y.shape == ty.shape
    np.testing.assert_array_equal(idx, ti)
    np.testing.assert_array_equal(y, ty)
    # without indices, the same values
    np.testing.assert_array_equal(numbapool.pool("fractional_max", x, **opts), ty)
    # pooling_sequences reports torch's windows: NumPy max over them is torch's result
    starts = pooling_sequences(x, **opts)
    assert [np.shape(a) for a in starts] == [(shape[0], shape[1], o) for o in ty.shape[2:]]
    ry, ri, _ = ref_pool(x, *torch_windows(starts, kernel), "max")
    np.testing.assert_array_equal(ri, ti)
    np.testing.assert_array_equal(ry.astype(dtype), ty)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(s, s0)


# (dtype, sample, input, output, kernel) where torch's arithmetic in the input's dtype gives
# other window starts than float64 arithmetic would (from test_sequences.py's search).
LOW_PRECISION_CASES = [
    (np.float32, 0.19587442278862, 100, 26, 3),
    (np.float16, 0.62255859375, 25, 16, 1),
]


@pytest.mark.parametrize(("dtype", "u", "length", "out", "k"), LOW_PRECISION_CASES)
def test_max_arithmetic_in_input_dtype(dtype, u, length, out, k):
    """End to end: the windows follow torch's rounding in the input's dtype, on both axes of a
    2-D call and in 1-D, and that rounding really changes the result here."""
    rng = np.random.default_rng(17)
    for axis in (0, 1):
        spatial, kernel, output_size = [6, 7], [2, 2], [3, 4]
        spatial[axis], kernel[axis], output_size[axis] = length, k, out
        x = make_x(rng, (1, 2, *spatial), dtype)
        s = make_samples(rng, 1, 2, 2, dtype)
        s[..., 1 - axis] = u  # column 1 drives H, column 0 drives W
        ty, ti, _ = torch_max(x, tuple(kernel), s, output_size=tuple(output_size))
        opts = dict(kernel_size=tuple(kernel), output_size=tuple(output_size))
        y, idx = numbapool.pool("fractional_max", x, samples=s, return_indices=True, **opts)
        assert y.dtype == dtype
        np.testing.assert_array_equal(idx, ti)
        np.testing.assert_array_equal(y, ty)
        _, idx64 = numbapool.pool("fractional_max", x.astype(np.float64),
                                  samples=s.astype(np.float64), return_indices=True, **opts)
        assert not np.array_equal(idx64, idx)
    x1 = make_x(rng, (1, 2, length), dtype)
    s1 = np.full((1, 2, 1), u, dtype=dtype)
    ty, ti, _ = torch_max(x1[:, :, None, :], (1, k),
                          np.concatenate([s1, make_samples(rng, 1, 2, 1, dtype)], axis=-1),
                          output_size=(1, out))
    y, idx = numbapool.pool("fractional_max", x1, kernel_size=k, output_size=out, samples=s1,
                            return_indices=True)
    np.testing.assert_array_equal(idx, ti[:, :, 0])
    np.testing.assert_array_equal(y, ty[:, :, 0])


def test_max_default_kernel_is_2():
    rng = np.random.default_rng(1)
    x = make_x(rng, (2, 2, 10, 9))
    s = make_samples(rng, 2, 2, 2)
    ty, ti, _ = torch_max(x, 2, s, output_size=(6, 5))
    y, idx = numbapool.pool("fractional_max", x, output_size=(6, 5), samples=s,
                            return_indices=True)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(idx, ti)


def test_max_sample_columns_are_torchs():
    """Swapping the two sample columns of a 2-D call changes the result the way torch's does."""
    rng = np.random.default_rng(2)
    x = np.broadcast_to(np.arange(13.0 * 14).reshape(13, 14), (2, 3, 13, 14)).copy()
    s = make_samples(rng, 2, 3, 2)
    for samples in (s, s[..., ::-1].copy()):
        ty, ti, _ = torch_max(x, (2, 3), samples, output_size=(5, 6))
        y, idx = numbapool.pool("fractional_max", x, kernel_size=(2, 3), output_size=(5, 6),
                                samples=samples, return_indices=True)
        np.testing.assert_array_equal(idx, ti)
        np.testing.assert_array_equal(y, ty)


GRAD_CASES = [
    # shape, kernel, output_size, whether windows overlap enough to share maxima
    pytest.param((2, 3, 11, 17), (2, 3), (5, 7), False, id="2d"),
    pytest.param((2, 2, 9, 10), 3, (7, 8), True, id="2d-overlapping-k3"),
    pytest.param((1, 2, 12, 12), (3, 4), (10, 9), True, id="2d-overlapping-at-limit"),
    pytest.param((2, 2, 7, 8, 9), (2, 3, 2), (3, 4, 5), False, id="3d"),
    pytest.param((1, 2, 7, 8, 9), 3, (4, 5, 6), True, id="3d-overlapping-k3"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("shape", "kernel", "output_size", "overlap"), GRAD_CASES)
def test_max_grad_matches_torch(shape, kernel, output_size, overlap, dtype):
    rng = np.random.default_rng(sum(shape) + 7)
    rank = len(shape) - 2
    x = make_x(rng, shape, dtype)
    s = make_samples(rng, shape[0], shape[1], rank, dtype)
    gy = make_x(rng, (*shape[:2], *output_size), dtype)
    x0, gy0 = x.copy(), gy.copy()
    _, ti, tgx = torch_max(x, kernel, s, output_size=output_size, grad_output=gy)
    gx = numbapool.pool_grad("fractional_max", x, gy, kernel_size=kernel,
                             output_size=output_size, samples=s)
    assert gx.dtype == dtype and gx.shape == x.shape
    np.testing.assert_allclose(gx, tgx, **tol(dtype))
    if overlap:
        # the case really makes one element the maximum of several windows (accumulation)
        counts = [np.bincount(row, minlength=np.prod(shape[2:]))
                  for row in ti.reshape(np.prod(shape[:2]), -1)]
        assert max(c.max() for c in counts) > 1
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(gy, gy0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("shape", "kernel", "output_size"), [
    ((2, 3, 11, 17), (2, 3), (5, 7)),
    ((2, 3, 11, 17), 3, (5, 7)),  # (the masked kernel's passes for windows of 2, 3 and
    ((2, 3, 13, 12), (4, 2), (5, 6)),  # more rows)
    ((2, 2, 7, 8, 9), (2, 3, 2), (3, 4, 5)),
    # (8 channels or more: channels last with indices, the masked kernel with indices)
    ((2, 9, 11, 17), (2, 3), (5, 7)),
    ((2, 8, 7, 8, 9), (2, 2, 2), (3, 4, 5)),
])
def test_max_channels_last_same_as_channels_first(shape, kernel, output_size, dtype):
    rng = np.random.default_rng(3)
    x = make_x(rng, shape, dtype)
    s = make_samples(rng, shape[0], shape[1], len(shape) - 2, dtype)
    gy = make_x(rng, (*shape[:2], *output_size), dtype)
    opts = dict(kernel_size=kernel, output_size=output_size, samples=s)
    y, idx = numbapool.pool("fractional_max", x, return_indices=True, **opts)
    gx = numbapool.pool_grad("fractional_max", x, gy, **opts)
    ty, ti, tgx = torch_max(x, kernel, s, output_size=output_size, grad_output=gy)
    np.testing.assert_array_equal(y, ty)
    # (the indices against torch's: with 8 channels or more both layouts run the masked
    # kernel with indices, channels first between transposes)
    np.testing.assert_array_equal(idx, ti)
    for xl in (to_last(x), np.ascontiguousarray(to_last(x))):
        yl, il = numbapool.pool("fractional_max", xl, return_indices=True,
                                layout="channels_last", **opts)
        assert yl.shape == to_last(y).shape
        np.testing.assert_array_equal(to_first(yl), y)
        np.testing.assert_array_equal(to_first(il), idx)
        # (values only: the masked kernel, in place)
        np.testing.assert_array_equal(
            to_first(numbapool.pool("fractional_max", xl, layout="channels_last", **opts)), y)
        gl = numbapool.pool_grad("fractional_max", xl, to_last(gy), layout="channels_last",
                                 **opts)
        assert gl.shape == xl.shape
        np.testing.assert_allclose(to_first(gl), gx, **tol(dtype))
        np.testing.assert_allclose(to_first(gl), tgx, **tol(dtype))
        starts = pooling_sequences(xl, layout="channels_last", **opts)
        for a, b in zip(starts, pooling_sequences(x, **opts)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("length", "kernel", "out"), [(20, 3, 9), (11, 2, 10), (15, 4, 5)])
def test_max_1d_matches_torch_2d_emulation(length, kernel, out, dtype):
    """1-D: torch 2-D on (N, C, 1, L), the 1-D samples in column 0 (which drives the width);
    column 1 drives the height of size 1, whose only window starts at 0 whatever it is."""
    rng = np.random.default_rng(length + kernel)
    x = make_x(rng, (2, 3, length), dtype)
    s1 = make_samples(rng, 2, 3, 1, dtype)
    s2 = np.concatenate([s1, make_samples(rng, 2, 3, 1, dtype)], axis=-1)
    gy = make_x(rng, (2, 3, out), dtype)
    ty, ti, tgx = torch_max(x[:, :, None, :], (1, kernel), s2, output_size=(1, out),
                            grad_output=gy[:, :, None, :])
    y, idx = numbapool.pool("fractional_max", x, kernel_size=kernel, output_size=out,
                            samples=s1, return_indices=True)
    np.testing.assert_array_equal(y, ty[:, :, 0])
    np.testing.assert_array_equal(idx, ti[:, :, 0])
    gx = numbapool.pool_grad("fractional_max", x, gy, kernel_size=kernel, output_size=out,
                             samples=s1)
    np.testing.assert_allclose(gx, tgx[:, :, 0], **tol(dtype))
    # the ratio form gives the same output length as torch's int(L * ratio)
    ratio = (out + 0.5) / length
    yr = numbapool.pool("fractional_max", x, kernel_size=kernel, output_ratio=ratio,
                        samples=s1)
    np.testing.assert_array_equal(yr, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "kernel", "out", "by2"), [
    ((2, 16, 600), 3, 300, True),  # (all 2 apart but one step of 1 a row, anywhere)
    ((2, 16, 601), 2, 300, True),  # (all 2 apart but one step of 3)
    ((2, 16, 600), 3, 299, True),
    ((2, 16, 600), 3, 297, False),  # (five steps of 3: gathered)
    ((2, 16, 600), 2, 290, False),
    ((2, 16, 600), 3, 420, False),  # (steps of 1 and 2 alike)
    ((2, 16, 600), 2, 300, False),  # (all 2 apart from 0: (600 - 2) / 299 = 2, the windows
    #                                   every plane's, the sliding kernel's)
    ((1, 6, 11, 520), 3, (4, 260), True),  # (2-D: rows of 260 windows)
    ((2, 4, 130), 3, 64, True),  # (the shortest row read by stretches)
    ((2, 4, 128), 3, 63, False),
])
def test_max_rows_at_stride_2_match_torch(monkeypatch, dtype, shape, kernel, out, by2):
    """Channels first, rows of at least 64 windows of 2 or 3 that start 2 apart but for a
    few steps (output about half the input) take the stride-2 gather kernels, which read
    them by stretches straight from the row; the others the gather kernels.  Against torch,
    with the samples given (the kernel reading the window tables) and seeded, call after
    call (the kept pass, its threads computing each plane's starts, new windows each call),
    NaN included, the steps that break the stride falling anywhere in a row across the
    planes."""
    from numbapool.kernels import cpu

    names = []
    real = cpu.get_kernel

    def spy(reduction, layout, variant):
        names.append(variant)
        return real(reduction, layout, variant)

    monkeypatch.setattr(cpu, "get_kernel", spy)
    # (the same call each time, kept from the third, its generator drawing another seed's
    # numbers each time: new windows)
    from numbapool import randomness

    key = [0]
    monkeypatch.setattr(randomness, "generator", lambda seed: np.random.default_rng(key[0]))
    rank = len(shape) - 2
    x = make_x(np.random.default_rng(sum(shape)), shape, dtype)
    x.reshape(-1)[::13] = np.nan
    x2 = x if rank == 2 else x[:, :, None, :]
    out2 = out if rank == 2 else (1, out)
    k2 = kernel if rank == 2 else (1, kernel)
    for key[0] in (3, 4, 5, 6):
        seed = 3
        s = np.random.default_rng(key[0]).random((*shape[:2], rank)).astype(dtype)
        s2 = s if rank == 2 else np.concatenate([s, s], axis=-1)
        ty = torch_max(x2, k2, s2, output_size=out2)[0]
        want = ty if rank == 2 else ty[:, :, 0]
        np.testing.assert_array_equal(numbapool.pool(
            "fractional_max", x, kernel_size=kernel, output_size=out, seed=seed), want)
        np.testing.assert_array_equal(numbapool.pool(
            "fractional_max", x, kernel_size=kernel, output_size=out, samples=s), want)
    by2_kernels = {"forward_cols_gather_by2", "forward_cols_gather_planes_by2"}
    assert (by2_kernels <= set(names)) == by2
    assert bool(by2_kernels & set(names)) == by2


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("shape, kernel, opts", [
    ((2, 3, 40), 2, dict(output_size=27)),
    ((2, 9, 300), 3, dict(output_size=150)),  # (the rows read at stride 2)
    ((2, 9, 11, 12), 2, dict(output_ratio=0.7)),
    ((1, 8, 10, 12), 2, dict(output_ratio=0.5)),  # (windows every plane shares)
    ((1, 4, 6, 7, 8), 2, dict(output_size=(4, 5, 5))),
])
@pytest.mark.parametrize("dtype, sdtype", [(np.float32, np.float64), (np.float64, np.float32)])
def test_repeated_calls_with_new_samples_match_torch(monkeypatch, layout, shape, kernel, opts,
                                                      dtype, sdtype):
    """``samples`` is data (``Fractional.data_options``): the same call repeated with new
    samples is as fast as a seeded one (from the third call the kept pass runs, its threads
    computing each plane's starts from the new samples), and every call's windows are its
    own samples', against torch; the samples are not changed.  Bad samples on a repeated
    call are still a ValueError."""
    from numbapool import api, redraw

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    runs = []
    real = redraw.RedrawnForward.run

    def spy(self, x, data=None):
        runs.append(real(self, x, data))
        return runs[-1]

    monkeypatch.setattr(redraw.RedrawnForward, "run", spy)
    rank = len(shape) - 2
    rng = np.random.default_rng(sum(shape))
    x = make_x(rng, shape, dtype)
    arg = x if layout == "channels_first" else np.ascontiguousarray(np.moveaxis(x, 1, -1))
    x4 = x if rank > 1 else x[:, :, None, :]
    for _ in range(4):
        s = make_samples(rng, *shape[:2], rank, sdtype)
        held = s.copy()
        s4 = s if rank > 1 else np.concatenate([s, s], axis=-1)
        k4 = kernel if rank > 1 else (1, kernel)
        o4 = opts if rank > 1 else {k: (1, v) for k, v in opts.items()}
        ty, ti, _ = torch_max(x4, k4, s4.astype(dtype), **o4)
        y, idx = numbapool.pool("fractional_max", arg, kernel_size=kernel, samples=s,
                                layout=layout, return_indices=True, **opts)
        if layout == "channels_last":
            y, idx = np.moveaxis(y, -1, 1), np.moveaxis(idx, -1, 1)
        np.testing.assert_array_equal(y, ty.reshape(y.shape))
        np.testing.assert_array_equal(idx, ti.reshape(idx.shape))
        y = numbapool.pool("fractional_max", arg, kernel_size=kernel, samples=s,
                           layout=layout, **opts)
        if layout == "channels_last":
            y = np.moveaxis(y, -1, 1)
        np.testing.assert_array_equal(y, ty.reshape(y.shape))
        np.testing.assert_array_equal(s, held)
    assert any(r is not None for r in runs)
    for value in (np.nan, 1.0, -0.25):
        bad = make_samples(rng, *shape[:2], rank, sdtype)
        bad[-1, -1, -1] = value
        with pytest.raises(ValueError, match=r"samples must lie in \[0, 1\)"):
            numbapool.pool("fractional_max", arg, kernel_size=kernel, samples=bad,
                           layout=layout, **opts)


def test_repeated_calls_with_samples_not_an_array():
    """Samples given as a list, or as one torch tensor refilled between calls (PyTorch's
    ``_random_samples``), repeat a call too: each call's windows are its values', past the
    third call (the kept pass)."""
    rng = np.random.default_rng(21)
    x = make_x(rng, (2, 5, 11, 12), np.float32)
    tensor = torch.zeros((2, 5, 2), dtype=torch.float64)
    for _ in range(5):
        s = make_samples(rng, 2, 5, 2)
        want = torch_max(x, 2, s.astype(np.float32), output_ratio=0.7)[0]
        np.testing.assert_array_equal(numbapool.pool(
            "fractional_max", x, output_ratio=0.7, samples=s.tolist()), want)
        tensor.copy_(torch.from_numpy(s))
        np.testing.assert_array_equal(numbapool.pool(
            "fractional_max", x, output_ratio=0.7, samples=tensor), want)


# ----------------------------------------------------------------------------------------------
# 2. fractional_avg with samples against a NumPy reference
# ----------------------------------------------------------------------------------------------

AVG_CASES = [
    pytest.param((2, 3, 20), 3, 9, id="1d"),
    pytest.param((2, 3, 11, 17), (2, 3), (5, 7), id="2d"),
    pytest.param((1, 2, 9, 10), 3, (7, 8), id="2d-overlapping-k3"),
    pytest.param((2, 2, 7, 8, 9), (2, 3, 2), (3, 4, 5), id="3d"),
    # (12 and 24 planes: the gradient's plane-by-plane kernels, which run from 8 planes;
    # channels last, from 8 samples of up to 16 channels)
    pytest.param((8, 3, 13, 15), (2, 3), (7, 9), id="2d-24-planes"),
    pytest.param((4, 3, 29), 3, 13, id="1d-12-planes"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("shape", "kernel", "output_size"), AVG_CASES)
def test_avg_with_samples_matches_numpy(shape, kernel, output_size, dtype):
    rng = np.random.default_rng(sum(shape) + 11)
    rank = len(shape) - 2
    x = make_x(rng, shape, dtype)
    s = make_samples(rng, shape[0], shape[1], rank, dtype)
    out = np.broadcast_to(output_size, (rank,))
    gy = make_x(rng, (*shape[:2], *out), dtype)
    x0 = x.copy()
    opts = dict(kernel_size=kernel, output_size=output_size, samples=s)
    starts = pooling_sequences(x, **opts)
    # the avg windows are the max windows, i.e. torch's
    _, mi = numbapool.pool("fractional_max", x, return_indices=True, **opts)
    np.testing.assert_array_equal(ref_pool(x, *torch_windows(starts, kernel), "max")[1], mi)
    ry, _, rgx = ref_pool(x, *torch_windows(starts, kernel), "avg", grad_output=gy)
    y = numbapool.pool("fractional_avg", x, **opts)
    assert y.dtype == dtype and y.shape == ry.shape
    np.testing.assert_allclose(y, ry, **tol(dtype))
    gx = numbapool.pool_grad("fractional_avg", x, gy, **opts)
    assert gx.dtype == dtype and gx.shape == x.shape
    np.testing.assert_allclose(gx, rgx, **tol(dtype))
    np.testing.assert_array_equal(x, x0)
    # channels_last gives the same
    yl = numbapool.pool("fractional_avg", to_last(x), layout="channels_last", **opts)
    np.testing.assert_allclose(to_first(yl), y, **tol(dtype))
    gl = numbapool.pool_grad("fractional_avg", to_last(x), to_last(gy), layout="channels_last",
                             **opts)
    np.testing.assert_allclose(to_first(gl), rgx, **tol(dtype))


def test_avg_with_samples_matches_torch_unfold():
    """An oracle independent of pooling_sequences: torch's own windows (read off its max
    indices) averaged by torch (stride-1 average pooling gives every window's mean)."""
    rng = np.random.default_rng(5)
    x = make_x(rng, (2, 2, 10, 13))
    s = make_samples(rng, 2, 2, 2)
    k, out = (3, 2), (6, 8)
    # torch's windows: with an input whose value is its own flat index, the max of each window
    # is its bottom-right element, so torch's indices give the window starts.
    plane = np.arange(10.0 * 13).reshape(10, 13)
    _, ti, _ = torch_max(np.broadcast_to(plane, x.shape).copy(), k, s, output_size=out)
    r0, c0 = np.divmod(ti, 13)
    r0, c0 = r0 - (k[0] - 1), c0 - (k[1] - 1)
    # every window mean via unfold (all k-sized windows), then pick torch's
    means = F.avg_pool2d(torch.from_numpy(x), k, stride=1).numpy()
    want = np.take_along_axis(
        means.reshape(2, 2, -1), (r0 * means.shape[-1] + c0).reshape(2, 2, -1), axis=-1
    ).reshape(2, 2, *out)
    y = numbapool.pool("fractional_avg", x, kernel_size=k, output_size=out, samples=s)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# 3. seeds and pooling_sequences
# ----------------------------------------------------------------------------------------------

MODES = [
    pytest.param({"kernel_size": (2, 3), "output_size": (9, 11)}, id="torch"),
    pytest.param({"output_ratio": 0.7}, id="torch-ratio-k2"),
    pytest.param({"output_ratio": (0.7, 0.6), "pseudo_random": True}, id="graham-pseudo"),
    pytest.param({"output_ratio": (0.7, 0.6), "pseudo_random": True, "overlapping": True},
                 id="graham-pseudo-overlap"),
    pytest.param({"output_size": (11, 13), "pseudo_random": False}, id="graham-random"),
    pytest.param({"output_size": (11, 13), "pseudo_random": False, "overlapping": True},
                 id="graham-random-overlap"),
]


def windows_of(x, seqs, opts, layout="channels_first"):
    """Channels-first per-plane ``(start, count)`` tables of the sequences ``seqs``."""
    if layout == "channels_last":
        x = to_first(x)
    if opts.get("pseudo_random") is None:
        rank = x.ndim - 2
        k = opts.get("kernel_size")
        return torch_windows(seqs, (2,) * rank if k is None else k)
    return graham_windows(seqs, x.shape[2:], opts.get("overlapping", False),
                          x.shape[0] * x.shape[1])


def check_sequences(x, seqs, opts):
    batch, channels, *spatial = x.shape
    assert len(seqs) == len(spatial)
    if opts.get("pseudo_random") is None:
        for seq in seqs:
            assert seq.shape[:2] == (batch, channels)
        return
    for seq, length in zip(seqs, spatial):
        assert seq.ndim == 1 and seq[0] == 0 and seq[-1] == length
        out = seq.size - 1
        k = length // out
        assert set(np.diff(seq).tolist()) <= {k, k + 1}


@pytest.mark.parametrize("opts", MODES)
@pytest.mark.parametrize("name", ["fractional_max", "fractional_avg"])
def test_same_seed_same_output(name, opts):
    x = make_x(np.random.default_rng(6), (2, 3, 16, 19))
    a = numbapool.pool(name, x, seed=123, **opts)
    b = numbapool.pool(name, x, seed=123, **opts)
    np.testing.assert_array_equal(a, b)
    sa = pooling_sequences(x, seed=123, **opts)
    sb = pooling_sequences(x, seed=123, **opts)
    for u, v in zip(sa, sb):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("opts", MODES)
def test_different_seeds_different_windows(opts):
    x = make_x(np.random.default_rng(7), (2, 3, 16, 19))
    seeds = range(8)
    seqs = [pooling_sequences(x, seed=s, **opts) for s in seeds]
    keys = [b"".join(np.ascontiguousarray(a).tobytes() for a in q) for q in seqs]
    if opts.get("pseudo_random") is True:
        # a single offset u per axis, and few distinct sequences: some seeds must differ
        assert len(set(keys)) >= 2
    else:
        assert len(set(keys)) == len(keys)
    # the outputs follow the windows (averages of different windows differ)
    outs = [numbapool.pool("fractional_avg", x, seed=s, **opts) for s in seeds]
    for i in range(len(keys)):
        for j in range(i):
            assert (keys[i] == keys[j]) == np.array_equal(outs[i], outs[j])


@pytest.mark.parametrize("opts", MODES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pooling_sequences_are_the_windows_used(opts, dtype):
    rng = np.random.default_rng(8)
    x = make_x(rng, (2, 3, 16, 19), dtype)
    x0 = x.copy()
    for seed in (0, 1, 2):
        seqs = pooling_sequences(x, seed=seed, **opts)
        check_sequences(x, seqs, opts)
        starts, counts = windows_of(x, seqs, opts)
        out = tuple(np.shape(s)[1] for s in starts)
        gy = make_x(rng, (2, 3, *out), dtype)

        y, idx = numbapool.pool("fractional_max", x, seed=seed, return_indices=True, **opts)
        ry, ri, rgx = ref_pool(x, starts, counts, "max", grad_output=gy)
        np.testing.assert_array_equal(idx, ri)
        np.testing.assert_array_equal(y, ry.astype(dtype))
        gx = numbapool.pool_grad("fractional_max", x, gy, seed=seed, **opts)
        np.testing.assert_allclose(gx, rgx, **tol(dtype))

        ay = numbapool.pool("fractional_avg", x, seed=seed, **opts)
        ry, _, rgx = ref_pool(x, starts, counts, "avg", grad_output=gy)
        np.testing.assert_allclose(ay, ry, **tol(dtype))
        gx = numbapool.pool_grad("fractional_avg", x, gy, seed=seed, **opts)
        np.testing.assert_allclose(gx, rgx, **tol(dtype))
    np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize("opts", MODES)
def test_seeded_channels_last_uses_the_same_windows(opts):
    rng = np.random.default_rng(9)
    x = make_x(rng, (2, 3, 16, 19))
    xl = to_last(x)
    seqs = pooling_sequences(xl, seed=4, layout="channels_last", **opts)
    for a, b in zip(seqs, pooling_sequences(x, seed=4, **opts)):
        np.testing.assert_array_equal(a, b)
    starts, counts = windows_of(xl, seqs, opts, layout="channels_last")
    out = tuple(np.shape(s)[1] for s in starts)
    gy = make_x(rng, (2, 3, *out))
    cl = dict(seed=4, layout="channels_last", **opts)
    ry, ri, rgx = ref_pool(x, starts, counts, "max", grad_output=gy)
    y, idx = numbapool.pool("fractional_max", xl, return_indices=True, **cl)
    np.testing.assert_array_equal(to_first(y), ry)
    np.testing.assert_array_equal(to_first(idx), ri)
    xc = np.ascontiguousarray(xl)
    for _ in range(3):  # (planned, then windows redrawn into the kept plan)
        np.testing.assert_array_equal(numbapool.pool("fractional_max", xc, **cl), y)
    gx = numbapool.pool_grad("fractional_max", xl, to_last(gy), **cl)
    np.testing.assert_allclose(to_first(gx), rgx, rtol=1e-12, atol=1e-12)
    ry, _, rgx = ref_pool(x, starts, counts, "avg", grad_output=gy)
    for _ in range(3):
        ay = numbapool.pool("fractional_avg", xc, **cl)
        np.testing.assert_allclose(to_first(ay), ry, rtol=1e-12, atol=1e-12)
    gx = numbapool.pool_grad("fractional_avg", xl, to_last(gy), **cl)
    np.testing.assert_allclose(to_first(gx), rgx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("shape", "opts"), [
    ((2, 3, 23), {"output_ratio": 0.7, "pseudo_random": True, "overlapping": True}),
    ((2, 3, 23), {"output_size": 15, "pseudo_random": False}),
    ((1, 2, 7, 9, 11), {"output_size": (5, 6, 7), "pseudo_random": True}),
    ((1, 2, 7, 9, 11), {"output_ratio": 0.7, "pseudo_random": False, "overlapping": True}),
    ((2, 3, 23), {"kernel_size": 3, "output_size": 12}),
    ((1, 2, 9, 9, 11), {"kernel_size": (2, 3, 2), "output_size": (5, 6, 7)}),
])
def test_pooling_sequences_other_ranks(shape, opts):
    rng = np.random.default_rng(10)
    x = make_x(rng, shape)
    seqs = pooling_sequences(x, seed=3, **opts)
    check_sequences(x, seqs, opts)
    starts, counts = windows_of(x, seqs, opts)
    ry, ri, _ = ref_pool(x, starts, counts, "max")
    y, idx = numbapool.pool("fractional_max", x, seed=3, return_indices=True, **opts)
    np.testing.assert_array_equal(idx, ri)
    np.testing.assert_array_equal(y, ry)
    ay = numbapool.pool("fractional_avg", x, seed=3, **opts)
    np.testing.assert_allclose(ay, ref_pool(x, starts, counts, "avg")[0], rtol=1e-12,
                               atol=1e-12)


def test_graham_divisible_is_regular_pooling():
    """L % O == 0: every increment is L / O, i.e. plain non-overlapping max pooling."""
    x = make_x(np.random.default_rng(11), (2, 3, 12, 15))
    for pseudo_random in (True, False):
        y = numbapool.pool("fractional_max", x, output_size=(4, 5), pseudo_random=pseudo_random,
                           seed=0)
        want = F.max_pool2d(torch.from_numpy(x), 3).numpy()
        np.testing.assert_array_equal(y, want)


# ----------------------------------------------------------------------------------------------
# 4. errors
# ----------------------------------------------------------------------------------------------

SHAPE = (2, 3, 10, 12)
S_OK = np.full((2, 3, 2), 0.5)

ERRORS = [
    pytest.param({}, ValueError, "output_size or output_ratio", id="no-size"),
    pytest.param({"pseudo_random": True}, ValueError, "output_size or output_ratio",
                 id="no-size-graham"),
    pytest.param({"output_size": 5, "output_ratio": 0.5}, ValueError,
                 "output_size or output_ratio", id="both"),
    pytest.param({"output_size": (5, 5), "samples": np.full((2, 3), 0.5)}, ValueError,
                 "samples", id="samples-2d"),
    pytest.param({"output_size": (5, 5), "samples": np.full((3, 2, 2), 0.5)}, ValueError,
                 "samples", id="samples-swapped"),
    pytest.param({"output_size": (5, 5), "samples": np.full((2, 3, 3), 0.5)}, ValueError,
                 "samples", id="samples-rank"),
    pytest.param({"output_size": (5, 5), "samples": np.full((1, 3, 2), 0.5)}, ValueError,
                 "samples", id="samples-batch"),
    pytest.param({"output_size": (5, 5), "samples": np.where(np.arange(12).reshape(2, 3, 2)
                                                              == 5, 1.0, 0.5)},
                 ValueError, "samples", id="samples-one"),
    pytest.param({"output_size": (5, 5), "samples": np.where(np.arange(12).reshape(2, 3, 2)
                                                              == 0, -1e-9, 0.5)},
                 ValueError, "samples", id="samples-negative"),
    pytest.param({"output_size": (5, 5), "samples": np.where(np.arange(12).reshape(2, 3, 2)
                                                              == 7, np.nan, 0.5)},
                 ValueError, "samples", id="samples-nan"),
    pytest.param({"output_size": (5, 5), "samples": np.zeros((2, 3, 2), dtype=np.int64)},
                 TypeError, "samples", id="samples-int"),
    pytest.param({"output_size": (5, 5), "samples": np.zeros((2, 3, 2), dtype=bool)},
                 TypeError, "samples", id="samples-bool"),
    pytest.param({"output_size": (5, 5), "pseudo_random": True, "kernel_size": 2},
                 ValueError, "kernel_size", id="kernel-graham"),
    pytest.param({"output_size": (5, 5), "pseudo_random": False, "kernel_size": 2},
                 ValueError, "kernel_size", id="kernel-graham-random"),
    pytest.param({"output_size": (5, 5), "pseudo_random": True, "samples": S_OK},
                 ValueError, "samples", id="samples-graham"),
    pytest.param({"output_size": (5, 5), "overlapping": True}, ValueError, "overlapping",
                 id="overlapping-torch"),
    pytest.param({"output_size": (5, 5), "overlapping": True, "samples": S_OK}, ValueError,
                 "overlapping", id="overlapping-torch-samples"),
    pytest.param({"output_size": (9, 5), "kernel_size": 3}, ValueError, "kernel_size",
                 id="too-large-h"),
    pytest.param({"output_size": (5, 12)}, ValueError, "kernel_size", id="too-large-w-k2"),
    pytest.param({"output_size": (10, 12), "kernel_size": 1, "samples": S_OK}, None, None,
                 id="identity-ok"),
    pytest.param({"output_ratio": 1.0}, ValueError, "output_ratio", id="ratio-one-torch"),
    pytest.param({"output_ratio": 0.0}, ValueError, "output_ratio", id="ratio-zero"),
    pytest.param({"output_ratio": (0.5, 1.5), "pseudo_random": True}, ValueError,
                 "output_ratio", id="ratio-big-graham"),
    pytest.param({"output_size": (5, 5, 5)}, ValueError, "output_size", id="size-count"),
    pytest.param({"output_ratio": (0.5, 0.5, 0.5)}, ValueError, "output_ratio",
                 id="ratio-count"),
    pytest.param({"output_size": (11, 5), "pseudo_random": True}, ValueError, "output_size",
                 id="graham-too-large"),
]


def _call(func, x, opts):
    if func == "pool":
        return numbapool.pool("fractional_max", x, **opts)
    if func == "pool_avg":
        return numbapool.pool("fractional_avg", x, **opts)
    if func == "pool_grad":
        return numbapool.pool_grad("fractional_max", x, np.zeros(SHAPE), **opts)
    return pooling_sequences(x, **opts)


@pytest.mark.parametrize("func", ["pool", "pool_avg", "pool_grad", "pooling_sequences"])
@pytest.mark.parametrize(("opts", "exc", "match"), ERRORS)
def test_errors(func, opts, exc, match):
    x = make_x(np.random.default_rng(12), SHAPE)
    x0 = x.copy()
    samples0 = None if opts.get("samples") is None else np.array(opts["samples"], copy=True)
    if exc is None:
        _call(func, x, opts)
    else:
        with pytest.raises(exc, match=match):
            _call(func, x, opts)
    np.testing.assert_array_equal(x, x0)
    if samples0 is not None:
        np.testing.assert_array_equal(opts["samples"], samples0)


@pytest.mark.parametrize(("shape", "kernel", "output_size"), [
    ((1, 1, 8, 8), 2, (8, 7)),
    ((1, 1, 8, 8), 3, (6, 7)),
    ((1, 1, 8, 9), (2, 3), (6, 8)),
    ((1, 1, 5, 6, 7), 2, (4, 4, 5)),  # 3-D: out + k - 1 == L is already too large
    ((1, 1, 5, 6, 7), 2, (3, 5, 5)),
    ((1, 1, 5, 6, 7), (1, 2, 3), (3, 4, 5)),
])
def test_too_large_output_agrees_with_torch(shape, kernel, output_size):
    """The size check is torch's: where torch refuses, so does pool (naming kernel_size)."""
    rng = np.random.default_rng(13)
    x = make_x(rng, shape)
    s = make_samples(rng, 1, 1, len(shape) - 2)
    with pytest.raises(RuntimeError, match="too large"):
        torch_max(x, kernel, s, output_size=output_size)
    with pytest.raises(ValueError, match="kernel_size"):
        numbapool.pool("fractional_max", x, kernel_size=kernel, output_size=output_size,
                       samples=s)


@pytest.mark.parametrize(("shape", "kernel", "output_size"), [
    ((1, 1, 8, 8), 2, (7, 7)),
    ((1, 1, 8, 9), (2, 3), (7, 7)),
    ((1, 1, 5, 6, 7), 2, (3, 4, 5)),  # 3-D limit: out + k - 1 == L - 1
    ((1, 1, 5, 6, 7), (1, 2, 3), (4, 4, 4)),
])
def test_largest_output_accepted_like_torch(shape, kernel, output_size):
    rng = np.random.default_rng(14)
    x = make_x(rng, shape)
    s = make_samples(rng, 1, 1, len(shape) - 2)
    ty, ti, _ = torch_max(x, kernel, s, output_size=output_size)
    y, idx = numbapool.pool("fractional_max", x, kernel_size=kernel, output_size=output_size,
                            samples=s, return_indices=True)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(idx, ti)


# ----------------------------------------------------------------------------------------------
# 5. indices in Graham's mode
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlapping", [False, True])
@pytest.mark.parametrize("pseudo_random", [True, False])
@pytest.mark.parametrize(("shape", "output_ratio"), [
    ((2, 3, 25), 1 / 1.44),
    ((2, 3, 13, 17), 0.7),
    ((1, 2, 7, 9, 11), (0.6, 0.7, 0.8)),
])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_graham_indices_point_at_outputs(shape, output_ratio, pseudo_random, overlapping,
                                         layout):
    rng = np.random.default_rng(15)
    x = make_x(rng, shape)
    opts = dict(output_ratio=output_ratio, pseudo_random=pseudo_random,
                overlapping=overlapping, seed=21)
    xin = to_last(x) if layout == "channels_last" else x
    y, idx = numbapool.pool("fractional_max", xin, return_indices=True, layout=layout, **opts)
    if layout == "channels_last":
        y, idx = to_first(y), to_first(idx)
    batch, channels = shape[:2]
    flat = x.reshape(batch, channels, -1)
    assert idx.min() >= 0 and idx.max() < flat.shape[-1]
    picked = np.take_along_axis(flat, idx.reshape(batch, channels, -1), axis=-1)
    np.testing.assert_array_equal(picked.reshape(y.shape), y)
    # and they are the first maximum of the window pooling_sequences reports
    seqs = pooling_sequences(xin, layout=layout, **opts)
    ry, ri, _ = ref_pool(x, *graham_windows(seqs, shape[2:], overlapping, batch * channels),
                         "max")
    np.testing.assert_array_equal(idx, ri)
    np.testing.assert_array_equal(y, ry)


def test_graham_indices_with_ties_point_at_outputs():
    """Many ties (a few distinct values): the index still points at an element equal to the
    output, the first maximum of its window in row-major order."""
    rng = np.random.default_rng(16)
    x = rng.integers(0, 3, size=(2, 2, 13, 17)).astype(np.float64)
    opts = dict(output_ratio=0.7, pseudo_random=True, overlapping=True, seed=5)
    y, idx = numbapool.pool("fractional_max", x, return_indices=True, **opts)
    flat = x.reshape(2, 2, -1)
    picked = np.take_along_axis(flat, idx.reshape(2, 2, -1), axis=-1).reshape(y.shape)
    np.testing.assert_array_equal(picked, y)
    seqs = pooling_sequences(x, **opts)
    ry, ri, _ = ref_pool(x, *graham_windows(seqs, x.shape[2:], True, 4), "max")
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(idx, ri)


@pytest.mark.parametrize("good, bad", [
    ({"kernel_size": 1}, {"kernel_size": True}),
    ({"output_size": (5, 5)}, {"output_size": (5, True)}),
    ({"output_size": (5, 5)}, {"output_size": (5.0, 5)}),
])
def test_kept_geometry_is_not_taken_for_equal_arguments_of_another_type(good, bad):
    # The checked geometry of PyTorch's rule is kept by the arguments; an argument equal to a
    # kept one but of a type the checks refuse must still be refused, after the good call.
    x = np.random.default_rng(0).random((1, 2, 10, 12))
    opts = {"output_size": (5, 5), **good}
    numbapool.pool("fractional_max", x, **opts, seed=1)
    with pytest.raises(TypeError):
        numbapool.pool("fractional_max", x, **{**opts, **bad}, seed=1)
    with pytest.raises(TypeError):  # (the window rule itself, without the call's checks)
        from numbapool import WindowContext
        from numbapool_fractional.window import Fractional
        Fractional().plan((10, 12), WindowContext(1, 2, x.dtype, np.random.default_rng(0)),
                          **{**opts, **bad})


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_torch_rule_with_a_whole_step_shares_its_windows(layout):
    """(L - k) / (out - 1) a whole number: every plane gets the same windows (PyTorch's
    arithmetic, unless a sample lies close enough to 1 for rounding to move a window), and
    the rule's windows are then shared, which runs the sliding-window kernels.  Both cases
    against torch."""
    from numbapool import WindowContext
    from numbapool_fractional import Fractional

    rng = np.random.default_rng(5)
    x = make_x(rng, (2, 3, 56, 30), np.float32)
    s = make_samples(rng, 2, 3, 2, np.float32)
    opts = dict(kernel_size=2, output_size=(28, 15))  # (56 - 2) / 27 = 2, (30 - 2) / 14 = 2
    context = WindowContext(2, 3, np.dtype(np.float32), None)
    assert [a.planes for a in Fractional().plan((56, 30), context, samples=s, **opts).axes] \
        == [1, 1]
    near_one = s.copy()
    # (column 0 is the last axis', as in PyTorch): (13 + u) * 2 rounds to 28 in float32
    near_one[1, 2, 0] = np.nextafter(np.float32(1), np.float32(0))
    assert [a.planes for a in Fractional().plan((56, 30), context, samples=near_one,
                                                **opts).axes] == [1, 6]
    want_max = F.max_pool2d(torch.from_numpy(x), 2).numpy()
    for samples in (s, near_one):
        ty, ti, _ = torch_max(x, 2, samples, output_size=(28, 15))
        xin = x if layout == "channels_first" else np.ascontiguousarray(np.moveaxis(x, 1, -1))
        y, idx = numbapool.pool("fractional_max", xin, return_indices=True, samples=samples,
                                layout=layout, **opts)
        if layout == "channels_last":
            y, idx = np.moveaxis(y, -1, 1), np.moveaxis(idx, -1, 1)
        np.testing.assert_array_equal(y, ty)
        np.testing.assert_array_equal(idx, ti)
    np.testing.assert_array_equal(torch_max(x, 2, s, output_size=(28, 15))[0], want_max)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "kernel", "out"), [
    ((2, 5, 23, 19), 3, (10, 8)),
    ((2, 4, 9, 10, 11), 2, (4, 6, 6)),  # (no whole step (L - k) / (out - 1): per-plane)
])
def test_repeated_calls_compute_their_starts_on_the_kernel_threads(monkeypatch, dtype, shape,
                                                                  kernel, out, layout):
    """From the third call with the same arguments, the samples are drawn on the calling
    thread and each kernel thread computes its planes' starts from them
    (``_TorchStartsInParts``; channels last, laid out by position, for its batches): the
    values are still torch's for the seed's samples, call after call."""
    from numbapool import api
    from numbapool_fractional import window

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    draws = []
    real = window._TorchStartsInParts.draw

    def spy(self, context):
        draws.append(1)
        return real(self, context)

    monkeypatch.setattr(window._TorchStartsInParts, "draw", spy)
    x = make_x(np.random.default_rng(11), shape, dtype)
    for seed in (3, 3, 3, 3, 5, 5, 5):
        samples = np.random.default_rng(seed).random((*shape[:2], len(out))).astype(dtype)
        ry, _, _ = torch_max(x, kernel, samples, output_size=out)
        if layout == "channels_first":
            y = numbapool.pool("fractional_max", x, kernel_size=kernel, output_size=out,
                               seed=seed)
        else:
            y = to_first(numbapool.pool("fractional_max", np.ascontiguousarray(to_last(x)),
                                        kernel_size=kernel, output_size=out, seed=seed,
                                        layout=layout))
        np.testing.assert_array_equal(y, ry)
    assert len(draws) == 3  # (the third and fourth calls of seed 3, the third of seed 5)


def test_starts_computed_in_parts_outside_raise_the_rounding_error():
    """``check`` after starts found outside: the same error as a first call's."""
    from numbapool import WindowContext
    from numbapool_fractional import Fractional

    context = WindowContext(1, 2, np.dtype(np.float32), np.random.default_rng(0))
    redraw = Fractional().plan((10, 12), context, output_size=(4, 5), kernel_size=2).redraw
    starts = (np.zeros((2, 4), dtype=np.int64), np.zeros((2, 5), dtype=np.int64))
    parts = redraw.in_parts(starts)
    parts.check()  # (inside: returns)
    starts[1][1, 4] = 12 - 2 + 1
    with pytest.raises(ValueError, match=r"float32 rounding puts a window outside the input "
                                         r"\(start range \[0, 11\], allowed \[0, 10\]\)"):
        parts.check()
    by_position = np.zeros((5, 2), dtype=np.int64).T
    assert redraw.in_parts((starts[0], by_position)) is not None
    assert redraw.in_parts((starts[0], np.zeros((2, 10), np.int64)[:, ::2])) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("spatial", "out", "kernel"), [
    ((4096,), (2048,), 3), ((10, 12), (4, 5), 2), ((9, 7, 11), (4, 3, 5), (2, 3, 2))])
def test_the_three_callbacks_write_the_same_starts(dtype, spatial, out, kernel):
    """The fills of a kept pass: every plane's starts as int64 (``address``), one plane's
    as int32 (``plane_address``, for the channels-first kernel) and a batch's by position
    as int32 (``positions_address``, for the masked channels-last kernels) hold the same
    starts, PyTorch's for the rule's samples (its formula in NumPy, in the input's type)."""
    import ctypes

    from numbapool import WindowContext
    from numbapool_fractional import Fractional

    batch, channels = 3, 5
    planes = batch * channels
    context = WindowContext(batch, channels, np.dtype(dtype), np.random.default_rng(0))
    redraw = Fractional().plan(spatial, context, output_size=out, kernel_size=kernel).redraw
    starts = tuple(np.zeros((planes, o), dtype=np.int64) for o in out)
    parts = redraw.in_parts(starts)
    parts.draw(WindowContext(batch, channels, np.dtype(dtype), np.random.default_rng(9)))
    samples = np.random.default_rng(9).random((batch, channels, len(out))).astype(dtype)
    kernels = (kernel,) * len(out) if isinstance(kernel, int) else kernel
    columns = {1: [0], 2: [1, 0], 3: [0, 1, 2]}[len(out)]  # (PyTorch's, as torch_max reads)
    want = []
    for a, (length, o, k) in enumerate(zip(spatial, out, kernels)):
        u = samples[..., columns[a]].reshape(-1, 1)
        alpha = dtype(length - k) / dtype(o - 1)
        w = ((np.arange(o - 1, dtype=dtype) + u) * alpha).astype(np.int64) - (
            u * alpha).astype(np.int64)
        want.append(np.concatenate([w, np.full((planes, 1), length - k)], axis=1))
    intp = ctypes.c_ssize_t
    fill = ctypes.CFUNCTYPE(intp, ctypes.c_void_p, intp, intp)(parts.address)
    assert fill(parts.slots, 0, planes) == 1
    for got, w in zip(starts, want):
        np.testing.assert_array_equal(got, w)
    plane = ctypes.CFUNCTYPE(intp, ctypes.c_void_p, intp, intp)(parts.plane_address)
    into = np.full(sum(out), -7, dtype=np.int32)
    for p in range(planes):
        assert plane(parts.slots, p, into.ctypes.data) == 1
        np.testing.assert_array_equal(into, np.concatenate([w[p] for w in want]))
    positions = ctypes.CFUNCTYPE(intp, ctypes.c_void_p, intp, intp, intp)(
        parts.positions_address)
    into = np.full(sum(out) * channels, -7, dtype=np.int32)
    for n in range(batch):
        assert positions(parts.slots, n * channels, channels, into.ctypes.data) == 1
        block = np.concatenate([w[n * channels:(n + 1) * channels].T.reshape(-1)
                                for w in want])
        np.testing.assert_array_equal(into, block)


@pytest.mark.parametrize("passes", ["tiles", "chunks", "chunks of 2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "kernel", "out"), [
    ((3, 9, 7, 7), 3, (4, 4)),
    ((3, 16, 7, 7), 3, (4, 4)),
    ((2, 8, 4, 5, 6), 2, (2, 3, 3)),
    ((2, 16, 12, 11), (2, 3), (5, 6)),
    ((5, 8, 6, 6), 2, (4, 4)),
    ((4, 8, 7, 7), (1, 2), (5, 5)),  # (rows one tap, spread: the kernel for any windows)
])
def test_small_channels_first_planes_run_channels_last(monkeypatch, dtype, shape, kernel, out,
                                                       passes):
    """Channels first, planes of at most VIA_MAX_PLANE elements and 8 channels or more
    with each plane's windows: the masked channels-last kernel between transposes
    (ViaChannelsLast), first call and repeated ones.  The kept pass computes the starts on
    the kernel's threads: ``tiles`` (of 16 planes here), on tiles of planes transposed in
    cache where 16 divides the planes (TiledMaskedPass), else, and for ``chunks``, a chunk
    of batches at a time (ChunkedViaChannelsLast; ``chunks of 2``: two batches and a
    shorter last one, the kernel told which batches each holds).  Max against torch with
    the seed's samples, avg against the NumPy reference on the same windows, NaN included,
    call after call."""
    from numbapool import api
    from numbapool.kernels import batch_starts, cpu, masked_tiles

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    monkeypatch.setattr(masked_tiles, "TILE_WIDTHS", (16,) if passes == "tiles" else ())
    if passes == "chunks of 2":
        per_batch = int(np.prod(shape[1:])) * np.dtype(dtype).itemsize
        monkeypatch.setattr(cpu, "VIA_CHUNK_BYTES", 2 * per_batch)
    plans = []
    real = cpu.plan_forward

    def spy(*args, **kwargs):
        plan = real(*args, **kwargs)
        if args[1] == "channels_first":  # (not the inner channels-last plans)
            plans.append(plan)
        return plan

    monkeypatch.setattr(cpu, "plan_forward", spy)
    rank = len(shape) - 2
    x = make_x(np.random.default_rng(5), shape, dtype)
    x.reshape(-1)[::11] = np.nan
    for seed in (2, 2, 2, 2, 7):
        samples = np.random.default_rng(seed).random((*shape[:2], rank)).astype(dtype)
        ry, _, _ = torch_max(x, kernel, samples, output_size=out)
        y = numbapool.pool("fractional_max", x, kernel_size=kernel, output_size=out, seed=seed)
        np.testing.assert_array_equal(y, ry)
        starts = pooling_sequences(x, kernel_size=kernel, output_size=out, samples=samples)
        ra, _, _ = ref_pool(x, *torch_windows(starts, kernel), "avg")
        a = numbapool.pool("fractional_avg", x, kernel_size=kernel, output_size=out,
                           seed=seed)
        np.testing.assert_allclose(a, ra, **tol(dtype))
    assert plans and all(isinstance(p, cpu.ViaChannelsLast) for p in plans)
    kept = [k.redrawn._planes_plan for k in api._KNOWN_CALLS.values() if k.redrawn is not None]
    if len(shape) == 5:  # (its 2x2x2 windows along the first and last axes are every plane's)
        return
    assert len(kept) == 2
    if passes == "tiles" and shape[0] * shape[1] % 16 == 0:
        assert all(isinstance(p, masked_tiles.TiledMaskedPass) and p.width == 16 for p in kept)
        return
    assert all(isinstance(p, cpu.ChunkedViaChannelsLast) for p in kept)
    if passes == "chunks of 2":
        assert all(p.inner.shape[0] == min(2, shape[0]) for p in kept)
        assert all(p.pf[batch_starts.FIRST_BATCH] == 0 for p in kept)  # (set back)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_a_call_on_another_thread_while_the_kept_pass_is_built(monkeypatch, layout):
    """The call that builds the kept pass of a repeated call runs its plan (bound to the
    pass's tables) before the pass is kept: a call with the same arguments on another thread
    meanwhile plans its own windows and does not redraw that call's tables under it
    (found by review: both results were the other call's windows).  Channels first on small
    planes the pass is the masked channels-last kernel between transposes."""
    import os
    import threading

    from numbapool import api, randomness
    from numbapool.kernels import cpu

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    shape = (4, 16, 7, 7)
    x = make_x(np.random.default_rng(1), shape, np.float32)
    if layout == "channels_last":
        x = np.ascontiguousarray(to_last(x))
    opts = dict(kernel_size=2, output_size=(4, 4), layout=layout)

    def fresh(seed):  # (the calling thread's numbers for seed=None)
        randomness._local.pid = os.getpid()
        randomness._local.fresh = np.random.default_rng(seed)

    def expected(seed):  # (torch, with the seed's samples)
        samples = np.random.default_rng(seed).random((4, 16, 2)).astype(np.float32)
        y = torch_max(x if layout == "channels_first" else to_first(x), 2, samples,
                      output_size=(4, 4))[0]
        return y if layout == "channels_first" else to_last(y)

    out, armed = {}, [False]

    def other_thread():
        fresh(2)
        out["other"] = numbapool.pool("fractional_max", x, **opts)

    for plan_type in (cpu.ViaChannelsLast, cpu.ForwardPlan):
        real = plan_type.run

        def run(self, *args, real=real, **kwargs):
            if armed[0]:  # (the other thread's whole call, before this plan runs)
                armed[0] = False
                thread = threading.Thread(target=other_thread)
                thread.start()
                thread.join()
            return real(self, *args, **kwargs)

        monkeypatch.setattr(plan_type, "run", run)
    fresh(0)
    numbapool.pool("fractional_max", x, **opts)  # (planned; its arguments kept)
    armed[0] = True
    fresh(1)
    y = numbapool.pool("fractional_max", x, **opts)  # (builds the kept pass)
    assert not armed[0] and "other" in out
    np.testing.assert_array_equal(out["other"], expected(2))
    np.testing.assert_array_equal(y, expected(1))
    kept = [k.redrawn for k in api._KNOWN_CALLS.values() if k.redrawn is not None]
    want = cpu.ViaChannelsLast if layout == "channels_first" else cpu.ForwardPlan
    assert len(kept) == 1 and isinstance(kept[0].plan, want)
    fresh(3)
    np.testing.assert_array_equal(numbapool.pool("fractional_max", x, **opts), expected(3))


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("shape,dtype", [((2, 2100, 9, 9), np.float32),
                                         ((2, 2100, 9, 9), np.float64),
                                         ((1, 2800, 5, 6, 7), np.float32)])
def test_a_seed_draws_default_rngs_samples_in_large_calls(shape, dtype, layout, monkeypatch):
    """A seeded call of PyTorch's rule with enough planes draws its samples in compiled code
    on every thread (numbapool.randomness.uniform_rows, in the passes that later calls keep):
    the windows are those of the samples ``default_rng(seed).random((N, C, rank))``, call
    after call."""
    from numbapool.kernels import pcg64
    drawn = []
    draw_rows = pcg64.draw_rows

    def spy(rng, out, parts):
        drawn.append(draw_rows(rng, out, parts))
        return drawn[-1]

    monkeypatch.setattr(pcg64, "draw_rows", spy)
    rank = len(shape) - 2
    assert shape[0] * shape[1] * rank >= 8192  # (the compiled draw's smallest)
    x = make_x(np.random.default_rng(3), shape, dtype)
    if layout == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    opts = dict(output_size=(3,) * rank, layout=layout)
    samples = np.random.default_rng(17).random((shape[0], shape[1], rank)).astype(dtype)
    for name in ("fractional_max", "fractional_avg"):
        want = numbapool.pool(name, x, samples=samples, **opts)
        for _ in range(4):
            np.testing.assert_array_equal(numbapool.pool(name, x, seed=17, **opts), want)
    assert drawn and all(drawn)
