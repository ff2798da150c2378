"""Channels-first forward passes on small planes run as the channels-last kernel on tiles of
planes transposed in cache (``numbapool.kernels.tiles``, ``cpu.TiledChannelsLast``)."""

import numba
import numpy as np
import pytest

import numbapool
from numbapool.kernels import cpu, tiles
from reference import ref_pool, ref_pool_grad
from spies import kernel_layouts_asked, plans_made


@pytest.fixture
def asked(monkeypatch):
    return kernel_layouts_asked(monkeypatch)


def _ref(name, x, opts, params):
    """The NumPy reference; gem (a plugin) as the cube root of the average of the clamped
    cubes, padding counted as zeros (``avg_pool(x.clamp(eps) ** 3) ** (1 / 3)``)."""
    if name == "gem":
        return np.cbrt(ref_pool("avg", np.maximum(x, 1e-6) ** 3, **opts))
    return ref_pool(name, x, **opts, **params)


@pytest.mark.parametrize("name, params", [("max", {}), ("min", {}), ("avg", {}), ("sum", {}),
                                          ("lp", dict(p=3.0)), ("gem", {})])
@pytest.mark.parametrize("shape, opts", [
    # 70 planes: a whole tile and a partial one (6 planes); 7x7 rows, shorter than a vector
    ((7, 10, 7, 7), dict(kernel_size=3, stride=2, padding=1)),
    ((5, 26, 8, 8), dict(kernel_size=2)),  # 130 planes: two tiles and 2 planes
    ((2, 64, 9, 11), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=True)),
    ((3, 33, 12, 13), dict(kernel_size=3, stride=2, dilation=2)),
    ((1, 200, 14), dict(kernel_size=3, stride=2, padding=1)),  # 1-D
    ((2, 40, 4, 6, 5), dict(kernel_size=2, stride=(1, 2, 2))),  # 3-D
], ids=["7x7", "8x8", "ceil", "dilated", "1d", "3d"])
def test_small_planes_run_in_tiles(monkeypatch, name, params, shape, opts):
    x = np.random.default_rng(5).uniform(0.5, 1.5, shape)
    plans = plans_made(monkeypatch)
    got = numbapool.pool(name, x, **opts, **params)
    assert isinstance(plans[-1], cpu.TiledChannelsLast)
    tol = dict(rtol=1e-12, atol=0) if name not in ("lp", "gem") else dict(rtol=1e-10, atol=0)
    np.testing.assert_allclose(got, _ref(name, x, opts, params), **tol)
    # the same bits as the channels-last kernel it runs, on the transposed input
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    want = np.moveaxis(numbapool.pool(name, x_last, layout="channels_last", **opts, **params),
                       -1, 1)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.uint32,
                                   np.float16])
def test_tiles_keep_dtypes(monkeypatch, dtype):
    """Words of 4 and 8 bytes in and out (int32 averages are float64); float16 is pooled as
    float32 and returned as float16."""
    rng = np.random.default_rng(6)
    x = (rng.uniform(-50, 50, (3, 30, 7, 7)) if np.dtype(dtype).kind != "u"
         else rng.uniform(0, 100, (3, 30, 7, 7))).astype(dtype)
    plans = plans_made(monkeypatch)
    for name in ("max", "avg"):
        got = numbapool.pool(name, x, kernel_size=3, stride=2, padding=1)
        assert isinstance(plans[-1], cpu.TiledChannelsLast), name
        want = ref_pool(name, x, kernel_size=3, stride=2, padding=1)
        assert got.dtype == want.dtype
        # (float32 sums of signed values: absolute errors of a few ulps of the terms)
        tol = dict(float16=(1e-3, 0.05), float32=(1e-6, 1e-4)).get(np.dtype(dtype).name,
                                                                      (1e-12, 0))
        np.testing.assert_allclose(got, want, rtol=tol[0], atol=tol[1])


def test_averages_with_the_divisor_options(monkeypatch):
    x = np.random.default_rng(7).uniform(-1, 1, (4, 20, 7, 7))
    plans = plans_made(monkeypatch)
    for opts in (dict(count_include_pad=False), dict(divisor_override=5)):
        got = numbapool.pool("avg", x, kernel_size=3, stride=2, padding=1, **opts)
        assert isinstance(plans[-1], cpu.TiledChannelsLast)
        np.testing.assert_allclose(
            got, ref_pool("avg", x, kernel_size=3, stride=2, padding=1, **opts), rtol=1e-12)


def test_nan_and_infinities_pass_through(monkeypatch):
    x = np.random.default_rng(8).uniform(-1, 1, (2, 40, 7, 7))
    x[0, 3, 2, 2] = np.nan
    x[1, 39, 6, 6] = np.inf
    x[1, 0, 0, 0] = -np.inf
    plans = plans_made(monkeypatch)
    for name in ("max", "min", "avg"):
        got = numbapool.pool(name, x, kernel_size=3, stride=2, padding=1)
        assert isinstance(plans[-1], cpu.TiledChannelsLast)
        want = ref_pool(name, x, kernel_size=3, stride=2, padding=1)
        assert np.isnan(want).any() and np.isinf(want).any()
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)  # (NaN where NaN)


def test_tiles_are_only_for_small_planes_and_many_of_them(monkeypatch, asked):
    """Rows longer than TILES_MAX_ROW, planes over TILES_MAX_PLANE elements, fewer planes
    than a tile, per-channel parameters and indices keep the channels-first kernels."""
    rng = np.random.default_rng(9)
    small = rng.uniform(size=(2, 32, 7, 7))
    numbapool.pool("max", small, kernel_size=2)
    assert asked == [("channels_last", "forward")]
    cases = [
        (rng.uniform(size=(2, 32, 7, cpu.TILES_MAX_ROW + 1)), dict(kernel_size=2)),
        (rng.uniform(size=(2, 32, 64, 15)), dict(kernel_size=2)),  # 960 < 1024 elements
        (rng.uniform(size=(2, 32, 70, 15)), dict(kernel_size=2)),  # 1050 > 1024
        (rng.uniform(size=(1, tiles.TILE_PLANES - 1, 7, 7)), dict(kernel_size=2)),
    ]
    want = [False, True, False, False]
    for (x, opts), tiled in zip(cases, want):
        asked.clear()
        numbapool.pool("max", x, **opts)
        assert (asked[-1][0] == "channels_last") == tiled, x.shape
    asked.clear()
    numbapool.pool("gem", small, kernel_size=2, p=np.linspace(2, 4, 32))  # per channel
    numbapool.pool("avg", small, kernel_size=7)  # (one window a plane: the global kernel)
    assert all(layout == "channels_first" for layout, _ in asked)
    asked.clear()
    numbapool.pool("max", small, kernel_size=2, return_indices=True)
    assert asked == [("channels_last", "forward_indices32")]


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("shape, opts", [
    ((3, 30, 7, 7), dict(kernel_size=3, stride=2, padding=1)),
    ((2, 70, 9, 8), dict(kernel_size=2, ceil_mode=True)),
    ((1, 100, 12), dict(kernel_size=3, stride=2)),
], ids=["7x7", "ceil", "1d"])
def test_indices_in_tiles(monkeypatch, name, shape, opts):
    """Selections with indices on small planes: the channels-last kernel with indices on the
    tiles; the indices are positions within a plane, as channels first they are, and name
    the first element of the window holding the result (ties included)."""
    rng = np.random.default_rng(10)
    x = rng.integers(0, 4, shape).astype(np.float32)  # (many ties)
    plans = plans_made(monkeypatch)
    y, idx = numbapool.pool(name, x, return_indices=True, **opts)
    assert isinstance(plans[-1], cpu.TiledChannelsLast)
    np.testing.assert_array_equal(y, ref_pool(name, x, **opts))
    planes = x.reshape(x.shape[0] * x.shape[1], -1)
    np.testing.assert_array_equal(
        np.take_along_axis(planes, idx.reshape(planes.shape[0], -1), axis=1).reshape(y.shape),
        y)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    y_last, idx_last = numbapool.pool(name, x_last, layout="channels_last",
                                      return_indices=True, **opts)
    np.testing.assert_array_equal(idx, np.moveaxis(idx_last, -1, 1))
    # and the channels-first kernels' (fewer planes than a tile: the same indices)
    few = numbapool.pool(name, x[:, :10], return_indices=True, **opts)[1]
    assert not isinstance(plans[-1], cpu.TiledChannelsLast)
    np.testing.assert_array_equal(idx[:, :10], few)


@pytest.mark.parametrize("name, params", [("avg", {}), ("sum", {}), ("lp", dict(p=2.5)),
                                          ("gem", {})])
@pytest.mark.parametrize("shape, opts", [
    ((3, 30, 7, 7), dict(kernel_size=3, stride=2, padding=1)),
    ((2, 70, 9, 8), dict(kernel_size=2, ceil_mode=True)),
    ((2, 40, 4, 6, 5), dict(kernel_size=2, stride=(1, 2, 2))),
], ids=["7x7", "ceil", "3d"])
def test_gradients_in_tiles(monkeypatch, name, params, shape, opts):
    """Smooth gradients on small planes: a linear reduction's row-by-row channels-last
    kernel, or the gather (gem, lp), on tiles; against the NumPy reference (avg, sum, lp)
    or torch autograd (gem), the same gradient of fewer planes (the channels-first
    kernels) and the channels-last one."""
    rng = np.random.default_rng(11)
    x = rng.uniform(0.5, 1.5, shape)
    gy = rng.uniform(-1, 1, numbapool.pool(name, x, **opts, **params).shape)
    ran = []
    real = cpu._tiled_backward
    monkeypatch.setattr(cpu, "_tiled_backward", lambda *a: ran.append(1) or real(*a))
    gx = numbapool.pool_grad(name, x, gy, **opts, **params)
    assert ran == [1]
    few = numbapool.pool_grad(name, x[:, :5], gy[:, :5], **opts, **params)
    assert ran == [1]
    np.testing.assert_allclose(gx[:, :5], few, rtol=1e-12, atol=1e-15)
    if name in ("avg", "sum", "lp"):
        np.testing.assert_allclose(gx, ref_pool_grad(name, x, gy, **opts, **params),
                                   rtol=1e-10, atol=1e-14)
    else:  # gem against torch autograd of avg_pool(x.clamp(eps) ** 3) ** (1 / 3)
        torch = pytest.importorskip("torch")
        F = torch.nn.functional
        pool = {3: F.avg_pool1d, 4: F.avg_pool2d, 5: F.avg_pool3d}[x.ndim]
        tx = torch.from_numpy(x).requires_grad_(True)
        ty = pool(tx.clamp(min=1e-6) ** 3, **opts) ** (1 / 3)
        (tg,) = torch.autograd.grad(ty, tx, torch.from_numpy(gy))
        np.testing.assert_allclose(gx, tg.numpy(), rtol=1e-10, atol=1e-14)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    gl = numbapool.pool_grad(name, x_last, np.ascontiguousarray(np.moveaxis(gy, 1, -1)),
                             layout="channels_last", **opts, **params)
    np.testing.assert_array_equal(gx, np.moveaxis(gl, -1, 1))


def test_tile_transposes_move_every_element():
    """tile_in and tile_out on their own: plane counts below, at and above a block of
    lanes, planes shorter and longer than a block, and the copies of plane 0 in the
    unused lanes."""
    width = tiles.TILE_PLANES
    for dtype in (np.float32, np.int64):
        for planes in (1, 15, 16, 17, width):
            for plane in (1, 7, 16, 49, 50):
                src = np.arange(3 + planes * plane, dtype=dtype)  # (3 elements before)
                dst = np.full(plane * width, -1, dtype=dtype)
                _tile_in(src, 3, plane, planes, dst, width)
                t = dst.reshape(plane, width)
                x = src[3:].reshape(planes, plane)
                np.testing.assert_array_equal(t[:, :planes], x.T)
                np.testing.assert_array_equal(t[:, planes:], np.repeat(x[:1].T, width - planes,
                                                                       axis=1))
                back = np.full(3 + planes * plane + 2, -1, dtype=dtype)
                _tile_out(dst, width, back, 3, plane, planes)
                np.testing.assert_array_equal(back[3:-2], src[3:])
                assert (back[:3] == -1).all() and (back[-2:] == -1).all()


@numba.njit
def _tile_in(src, start, plane, planes, dst, width):
    tiles.tile_in(src, start, plane, planes, dst, width)


@numba.njit
def _tile_out(src, width, dst, start, plane, planes):
    tiles.tile_out(src, width, dst, start, plane, planes)


@pytest.mark.parametrize("name", ["max", "avg", "gem"])
def test_many_tiles_on_every_thread(monkeypatch, name):
    """Tens of tiles a thread, whose kernels allocate their own scratch between the tiles'
    moves: the tiles' memory must stay theirs for the whole run."""
    x = np.random.default_rng(12).uniform(0.5, 1.5, (16, 200, 7, 7)).astype(np.float32)
    plans = plans_made(monkeypatch)
    got = numbapool.pool(name, x, kernel_size=3, stride=2, padding=1)
    assert isinstance(plans[-1], cpu.TiledChannelsLast)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    want = numbapool.pool(name, x_last, kernel_size=3, stride=2, padding=1,
                          layout="channels_last")
    for _ in range(3):
        np.testing.assert_array_equal(numbapool.pool(name, x, kernel_size=3, stride=2,
                                                     padding=1), np.moveaxis(want, -1, 1))
    np.testing.assert_array_equal(got, np.moveaxis(want, -1, 1))


@pytest.mark.parametrize("name, builtin", [("fractional_max", "max"),
                                           ("fractional_avg", "avg")])
@pytest.mark.parametrize("with_indices", [False, True])
def test_repeated_fractional_calls_with_shared_windows(monkeypatch, name, builtin,
                                                       with_indices):
    """Fractional pooling whose windows every plane shares (9 to 8 with windows of 2: a
    step of 1) runs on tiles, and so does the kept plan its repeated calls redraw into
    (numbapool.redraw): the same windows as a sliding pool of stride 1, call after call."""
    if with_indices and name == "fractional_avg":
        pytest.skip("averages have no indices")
    x = np.random.default_rng(13).uniform(size=(2, 40, 9, 9))
    plans = plans_made(monkeypatch)
    want = numbapool.pool(builtin, x, 2, stride=1, return_indices=with_indices)
    for seed in (0, 0, 1, 2):
        got = numbapool.pool(name, x, 2, output_size=(8, 8), seed=seed,
                             return_indices=with_indices)
        if with_indices:
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert any(isinstance(p, cpu.TiledChannelsLast) for p in plans)


@pytest.mark.parametrize(("planes", "plane_bytes", "itemsize", "parts", "want"), [
    (256 * 64, 196, 4, 2, 256),  # (the widest that fits 64 KiB)
    (256, 196, 4, 1, 256),
    (256, 196, 4, 2, 128),  # (a tile for each part where one does)
    (256, 196, 4, 8, 32),
    (256, 196, 4, 64, 16),  # (no width gives 64 parts a tile each: the narrowest)
    (48, 196, 4, 2, 16),  # (the widths that divide the planes)
    (40, 196, 4, 1, None),
    (256, 576, 4, 1, 64),  # (12x12 float32: 113 planes fit 64 KiB)
    (256, 576, 8, 1, 64),
])
def test_tile_widths_of_masked_passes(planes, plane_bytes, itemsize, parts, want):
    """The planes of a tile of the masked channels-first pass: the widest of TILE_WIDTHS that
    divides the planes and keeps the tile within TILE_BYTES, but the widest that gives each
    part a tile where one does (one tile of 256 planes ran on one thread of two)."""
    from numbapool.kernels import masked_tiles, transpose

    lanes = transpose.VECTOR_BYTES // itemsize
    if want is not None and want < lanes:
        pytest.skip("narrower than this machine's vectors")
    assert masked_tiles.tile_width(planes, plane_bytes, itemsize, parts) == want
