"""pool_grad(..., indices=...): the gradient of a selection routed by the indices its forward
returned, without recomputing the forward; against the NumPy reference, the path without
indices, PyTorch's max-pool backward, and bad indices."""

import numpy as np
import pytest

import numbapool
from numbapool import api
from reference import from_channels_first, ref_pool_grad, to_channels_first

SELECTIONS = [n for n in numbapool.poolers() if "indices" in numbapool.get(n).capabilities]

CASES = [  # (name, cf shape, options)
    ("max", (2, 5, 9, 11), dict(kernel_size=3, stride=2, padding=1)),  # overlapping windows
    ("max", (3, 4, 17), dict(kernel_size=3, stride=1, dilation=2, ceil_mode=True)),
    ("min", (2, 3, 4, 6, 5), dict(kernel_size=2, stride=1)),
    ("max", (1, 2, 6, 7), dict(kernel_size=(3, 2))),  # one sample: split into parts (CL)
    ("max", (3, 5, 8, 6), dict(kernel_size=2)),  # each element in one window
    ("min", (2, 3, 4, 6, 4), dict(kernel_size=2)),
    ("adaptive_max", (2, 3, 9, 8), dict(output_size=(4, 3))),
    ("global_max", (2, 3, 5, 4), {}),
    ("global_min", (2, 3, 5, 4), dict(keepdims=True)),
]


def _add_at(gy_cf, idx_cf, spatial):
    """The obvious scatter: gx[n, c].flat[idx] += gy."""
    n, c = gy_cf.shape[:2]
    gx = np.zeros((n, c, int(np.prod(spatial))))
    for a in range(n):
        for b in range(c):
            np.add.at(gx[a, b], idx_cf[a, b].ravel(), gy_cf[a, b].ravel())
    return gx.reshape(n, c, *spatial)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("name,shape,opts", CASES)
def test_routed_grad_matches_reference(name, shape, opts, layout):
    rng = np.random.default_rng(3)
    x_cf = rng.standard_normal(shape)
    x = from_channels_first(x_cf, layout)
    kw = dict(opts, layout=layout)
    y, idx = numbapool.pool(name, x, return_indices=True, **kw)
    gy = rng.standard_normal(y.shape)
    gy_before, idx_before = gy.copy(), idx.copy()
    got = numbapool.pool_grad(name, x, gy, indices=idx, **kw)
    assert got.shape == x.shape and got.dtype == x.dtype
    np.testing.assert_allclose(got, ref_pool_grad(name, x, gy, layout=layout, **opts),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got, numbapool.pool_grad(name, x, gy, **kw))
    np.testing.assert_array_equal(gy, gy_before)
    np.testing.assert_array_equal(idx, idx_before)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_indices_anywhere_in_the_plane_are_followed(layout):
    """Like PyTorch's max-pool backward, the gradient goes where an index points, even
    outside its window, and indices that repeat accumulate."""
    rng = np.random.default_rng(4)
    x_cf = rng.standard_normal((2, 3, 6, 8))
    x = from_channels_first(x_cf, layout)
    y = numbapool.pool("max", x, 2, layout=layout)
    idx_cf = rng.integers(0, 48, to_channels_first(y, layout).shape)
    idx_cf[0, 0] = 5  # every output of one plane to one element
    gy_cf = rng.standard_normal(idx_cf.shape)
    got = numbapool.pool_grad("max", x, from_channels_first(gy_cf, layout), 2, layout=layout,
                              indices=from_channels_first(idx_cf, layout))
    np.testing.assert_allclose(to_channels_first(got, layout),
                               _add_at(gy_cf, idx_cf, (6, 8)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_channels_last_route_split_into_parts(parts):
    """Channels last, a sample's positions split between tasks (as with fewer samples than
    threads): each index is added by the task that owns it, in output order, so the sums are
    the reference's and the same bits for any number of parts; out-of-range indices are
    counted once, not written."""
    from numbapool.kernels import routing

    rng = np.random.default_rng(6)
    n, outs, plane, c = 2, 13, 11, 5
    idx = rng.integers(0, plane, (n, outs, c))
    idx[0, 3] = plane - 1  # a row in one part, and rows across all of them
    idx[1, :, 2] = 4  # every output of one channel to one element
    bad = idx.copy()
    bad[1, 5, 1], bad[0, 0, 4], bad[0, 9, 0] = plane, -1, 2**40
    bad[0, 3, 2] = plane + 3  # (the rest of its row in the last part)
    gy = rng.standard_normal((n, outs, c)).astype(np.float32)
    want = np.stack([_add_at(gy[a].T[None], idx[a].T[None], (plane,))[0].T for a in range(n)])
    got = np.full((n, plane, c), np.nan, np.float32)
    assert routing._route_cl(gy, idx, got, np.float32(0), parts) == 0
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    once = np.empty_like(got)
    routing._route_cl(gy, idx, once, np.float32(0), 1)
    np.testing.assert_array_equal(got, once)
    assert routing._route_cl(gy, bad, got, np.float32(0), parts) == 4


def test_channels_last_route_parts_share_the_threads():
    """Too few samples to keep the threads busy: each is split into parts, so that every
    thread has a task and the tasks share evenly; never more than ceil(2 threads / samples)
    parts (each reads its sample's indices); one where samples are plenty."""
    import numba

    from numbapool.kernels import routing

    threads = numba.get_num_threads()
    assert routing._parts(1) == threads
    for samples in range(1, 4 * threads + 1):
        parts = routing._parts(samples)
        assert 1 <= parts <= -(-2 * threads // samples)
        assert samples * parts >= threads or samples >= threads
    assert routing._parts(2 * threads) == routing._parts(8 * threads + 1) == 1


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_routed_grad_keeps_dtype(dtype):
    x = np.random.default_rng(5).standard_normal((2, 3, 8, 8)).astype(dtype)
    y, idx = numbapool.pool("max", x, 2, return_indices=True)
    got = numbapool.pool_grad("max", x, np.ones_like(y), 2, indices=idx.astype(np.int32))
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, numbapool.pool_grad("max", x, np.ones_like(y), 2))


def test_stochastic_routes_by_given_indices():
    if "stochastic" not in SELECTIONS:
        pytest.skip("numbapool-learned is not installed")
    x = np.random.default_rng(6).uniform(0.1, 1.0, (2, 3, 8, 8))
    y, idx = numbapool.pool("stochastic", x, 2, seed=3, return_indices=True)
    gy = np.arange(y.size, dtype=np.float64).reshape(y.shape)
    np.testing.assert_array_equal(numbapool.pool_grad("stochastic", x, gy, 2, indices=idx),
                                  _add_at(gy, idx, (8, 8)))


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("bad", [-1, 64, 2**40])
def test_out_of_range_indices_raise(bad, layout):
    x = from_channels_first(np.random.default_rng(7).standard_normal((2, 3, 8, 8)), layout)
    y, idx = numbapool.pool("max", x, 2, return_indices=True, layout=layout)
    idx[1, 1, 1, 1] = bad
    with pytest.raises(ValueError, match=r"indices .*\[0, 64\); 1 of them"):
        numbapool.pool_grad("max", x, np.ones_like(y), 2, indices=idx, layout=layout)


def test_bad_indices_arguments():
    x = np.random.default_rng(8).standard_normal((2, 3, 8, 8))
    y, idx = numbapool.pool("max", x, 2, return_indices=True)
    gy = np.ones_like(y)
    with pytest.raises(TypeError, match="indices must be an integer array"):
        numbapool.pool_grad("max", x, gy, 2, indices=idx.astype(float))
    with pytest.raises(ValueError, match=r"indices must have shape \(2, 3, 4, 4\)"):
        numbapool.pool_grad("max", x, gy, 2, indices=idx[:, :, :3])
    with pytest.raises(TypeError, match="indices: pooler 'avg' does not select"):
        numbapool.pool_grad("avg", x, gy, 2, indices=idx)
    with pytest.raises(ValueError, match="grad_output must have shape"):
        numbapool.pool_grad("max", x, gy[:1], 2, indices=idx)


def test_every_selection_takes_indices():
    """Every registered pooler with indices (plugins' too) routes a gradient by them."""
    rng = np.random.default_rng(9)
    x = rng.uniform(0.1, 1.0, (2, 3, 9, 9))
    for name in SELECTIONS:
        opts = {} if name.startswith("global") else (
            dict(output_size=4) if name == "adaptive_max" else (
                dict(output_ratio=0.6, seed=1) if name.startswith("fractional") else
                dict(kernel_size=3, stride=2)))
        if name == "stochastic":
            opts["seed"] = 2
        y, idx = numbapool.pool(name, x, return_indices=True, **opts)
        gy = rng.standard_normal(y.shape)
        got = numbapool.pool_grad(name, x, gy, indices=idx, **opts)
        np.testing.assert_allclose(got, _add_at(gy, idx, (9, 9)), rtol=1e-12, atol=1e-12,
                                   err_msg=name)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_every_selection_returns_no_parameter_gradients(layout):
    """``return_param_grads=True`` on a pooler with indices (a selection, or stochastic
    pooling: no trainable parameters, and none its choice depends on smoothly) gives the
    gradient with respect to ``x`` and an empty dict, for every registered one (it raised,
    asking for a parameter-gradient kernel that selections do not have)."""
    rng = np.random.default_rng(10)
    x = rng.uniform(0.1, 1.0, (2, 3, 9, 9))
    if layout == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    for name in SELECTIONS:
        opts = {} if name.startswith("global") else (
            dict(output_size=4) if name == "adaptive_max" else (
                dict(output_ratio=0.6, seed=1) if name.startswith("fractional") else
                dict(kernel_size=3, stride=2, seed=2) if name == "stochastic" else
                dict(kernel_size=3, stride=2)))
        y = numbapool.pool(name, x, layout=layout, **opts)
        gy = rng.standard_normal(y.shape)
        got, grads = numbapool.pool_grad(name, x, gy, layout=layout, return_param_grads=True,
                                         **opts)
        assert grads == {}, name
        np.testing.assert_array_equal(
            got, numbapool.pool_grad(name, x, gy, layout=layout, **opts), err_msg=name)


@pytest.mark.parametrize("name,opts", [("max", dict(kernel_size=3, stride=1, padding=1)),
                                       ("min", dict(kernel_size=(2, 3), dilation=2)),
                                       ("adaptive_max", dict(output_size=(3, 4))),
                                       ("global_max", {})])
def test_channels_first_indices_through_channels_last(name, opts, monkeypatch):
    """With enough channels, channels-first selections with indices run as channels-last
    kernels between two transposes (where the row-by-row kernel of 2 or 3 taps at stride 2
    does not apply): the same values and indices (ties, NaNs) as the channels-first
    per-window kernel and as PyTorch."""
    from numbapool.kernels import cpu

    rng = np.random.default_rng(10)
    x = rng.integers(0, 4, (2, cpu.VIA_CHANNELS_LAST_MIN_CHANNELS + 1, 9, 11)).astype(
        np.float32)  # many ties
    x[0, 1, 2, 3] = x[1, 4, 5, 5] = x[1, 4, 5, 6] = np.nan
    calls = []
    to_last = cpu.transpose.to_channels_last
    monkeypatch.setattr(cpu.transpose, "to_channels_last",
                        lambda a: calls.append(a.shape) or to_last(a))
    y, idx = numbapool.pool(name, x, return_indices=True, **opts)
    assert calls == [(2, 9, 1, 9, 11)]  # (the 2-D problem lifted to 5-D)
    monkeypatch.setattr(cpu, "VIA_CHANNELS_LAST_MIN_CHANNELS", 10**9)
    monkeypatch.setattr(api, "_KNOWN_CALLS", {})  # (else the plan above is used again)
    y_direct, idx_direct = numbapool.pool(name, x, return_indices=True, **opts)
    assert calls == [(2, 9, 1, 9, 11)]  # (not transposed this time)
    np.testing.assert_array_equal(y, y_direct)
    np.testing.assert_array_equal(idx, idx_direct)
    if name == "max":
        torch = pytest.importorskip("torch")
        ty, tidx = torch.nn.functional.max_pool2d(torch.from_numpy(x), 3, 1, 1,
                                                  return_indices=True)
        np.testing.assert_array_equal(idx, tidx.numpy())



@pytest.mark.parametrize("shape", [(0, 6, 6, 3), (2, 6, 6, 0)])
def test_channels_last_empty_gradients(shape):
    """No samples or no channels, channels last over overlapping windows (where the gradient
    without indices is routed by the forward's): empty gradients of x's shape."""
    x = np.zeros(shape, np.float32)
    kw = dict(kernel_size=3, stride=2, padding=1, layout="channels_last")
    y, idx = numbapool.pool("max", x, return_indices=True, **kw)
    for got in (numbapool.pool_grad("max", x, np.ones_like(y), **kw),
                numbapool.pool_grad("max", x, np.ones_like(y), indices=idx, **kw)):
        assert got.shape == shape and got.dtype == np.float32
