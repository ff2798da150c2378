"""How CUDA arrays enter and leave the library: array types, target=, dtypes, strides,
errors, determinism."""

import numpy as np
import pytest
from numba import cuda

import numbapool
from numbapool.kernels.cuda import simulating


class ForeignGpuArray:
    """Any object with ``__cuda_array_interface__`` (as CuPy arrays and PyTorch CUDA tensors
    have): a foreign owner of device memory."""

    def __init__(self, dev):
        self._dev = dev  # keeps the memory alive
        if simulating():  # the simulator's device memory is host memory
            host = dev._ary
            self.__cuda_array_interface__ = {
                "shape": host.shape, "strides": host.strides, "typestr": host.dtype.str,
                "data": (host.ctypes.data, False), "version": 3}
        else:
            self.__cuda_array_interface__ = dev.__cuda_array_interface__


def _transposed(dev, axes):
    """A non-contiguous device view of ``dev`` with its axes permuted (Numba's device arrays
    transpose only 2-D arrays on a GPU; the simulator's, any)."""
    if simulating():
        return dev.transpose(axes)
    desc = dict(dev.__cuda_array_interface__)
    desc.update(shape=tuple(dev.shape[a] for a in axes),
                strides=tuple(dev.strides[a] for a in axes))
    return cuda.from_cuda_array_interface(desc, owner=dev)


def _x(shape=(2, 3, 6, 7), dtype=np.float64, seed=0):
    return np.random.default_rng(seed).uniform(-2, 2, shape).astype(dtype)


def test_device_array_in_device_array_out():
    x = _x()
    got = numbapool.pool("max", cuda.to_device(x), 3, stride=2, padding=1)
    assert cuda.devicearray.is_cuda_ndarray(got)
    np.testing.assert_array_equal(got.copy_to_host(),
                                  numbapool.pool("max", x, 3, stride=2, padding=1))


def test_cuda_array_interface_objects_are_taken_without_copy():
    x = _x()
    dev = cuda.to_device(x)
    foreign = ForeignGpuArray(dev)
    got = numbapool.pool("avg", foreign, 2)
    assert cuda.devicearray.is_cuda_ndarray(got)
    np.testing.assert_allclose(got.copy_to_host(), numbapool.pool("avg", x, 2), rtol=1e-12)
    gy = np.ones((2, 3, 3, 3))
    gx = numbapool.pool_grad("avg", foreign, ForeignGpuArray(cuda.to_device(gy)), 2)
    np.testing.assert_allclose(gx.copy_to_host(), numbapool.pool_grad("avg", x, gy, 2))


def test_target_cuda_copies_a_host_array_to_the_device():
    x = np.abs(_x())
    got = numbapool.pool("lp", x, 2, p=3.0, target="cuda")
    assert cuda.devicearray.is_cuda_ndarray(got)
    np.testing.assert_allclose(got.copy_to_host(), numbapool.pool("lp", x, 2, p=3.0),
                               rtol=1e-12)


def test_target_cpu_copies_a_device_array_to_the_host():
    x = _x()
    got = numbapool.pool("min", cuda.to_device(x), 2, target="cpu")
    assert type(got) is np.ndarray
    np.testing.assert_array_equal(got, numbapool.pool("min", x, 2))


def test_mixed_cpu_and_gpu_arguments_are_an_error():
    x = _x()
    with pytest.raises(TypeError, match="x is a CUDA device array but grad_output is a CPU"):
        numbapool.pool_grad("max", cuda.to_device(x), np.ones((2, 3, 3, 3)), 2)
    with pytest.raises(TypeError, match="x is a CPU array but grad_output is a CUDA"):
        numbapool.pool_grad("max", x, cuda.to_device(np.ones((2, 3, 3, 3))), 2)
    with pytest.raises(TypeError, match="parameter p is a CUDA device array but x is a CPU"):
        numbapool.pool("gem", x, 2, p=cuda.to_device(np.array([2.0, 2.0, 2.0])))


def test_bad_target_is_named():
    with pytest.raises(ValueError, match="target must be 'cpu', 'cuda' or None, got 'gpu'"):
        numbapool.pool("max", _x(), 2, target="gpu")
    with pytest.raises(TypeError, match="target must be"):
        numbapool.pool("max", _x(), 2, target=1)


def test_bad_grad_output_shape_is_named():
    with pytest.raises(ValueError, match=r"grad_output must have shape \(2, 3, 3, 3\)"):
        numbapool.pool_grad("max", cuda.to_device(_x()), cuda.to_device(np.ones((2, 3, 3))),
                            2)


def test_device_parameters_are_read_on_the_host():
    x = np.abs(_x()) + 0.1
    p = np.array([1.5, 2.0, 3.0])  # one per channel
    got = numbapool.pool("gem", x, 2, p=cuda.to_device(p), target="cuda")
    np.testing.assert_allclose(got.copy_to_host(), numbapool.pool("gem", x, 2, p=p),
                               rtol=1e-12)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_strided_device_views(layout):
    """A non-contiguous device array (a transposed view) is read through its strides."""
    base = _x((2, 6, 7, 3)) if layout == "channels_first" else _x((2, 3, 6, 7))
    axes = (0, 3, 1, 2) if layout == "channels_first" else (0, 2, 3, 1)
    view = _transposed(cuda.to_device(base), axes)
    host = np.transpose(base, axes)
    assert not view.is_c_contiguous()
    got = numbapool.pool("avg", view, 3, stride=2, padding=1, layout=layout)
    np.testing.assert_allclose(got.copy_to_host(),
                               numbapool.pool("avg", host, 3, stride=2, padding=1,
                                              layout=layout), rtol=1e-12)
    gy = np.random.default_rng(1).standard_normal(got.shape)
    gx = numbapool.pool_grad("max", view, cuda.to_device(gy), 3, stride=2, padding=1,
                             layout=layout)
    np.testing.assert_array_equal(gx.copy_to_host(),
                                  numbapool.pool_grad("max", host, gy, 3, stride=2, padding=1,
                                                      layout=layout))


@pytest.mark.parametrize("name, dtype", [
    ("max", np.float16), ("max", np.float32), ("max", np.int32), ("max", np.uint8),
    ("max", np.bool_), ("min", np.int64), ("sum", np.int16), ("sum", np.uint32),
    ("avg", np.int32), ("avg", np.float16), ("global_max", np.int8)])
def test_dtypes_follow_the_cpu(name, dtype):
    x = (np.arange(2 * 3 * 6 * 7) * 7 % 11).reshape(2, 3, 6, 7).astype(dtype)
    kw = {} if name.startswith("global") else dict(kernel_size=2)
    want = numbapool.pool(name, x, **kw)
    got = numbapool.pool(name, cuda.to_device(x), **kw).copy_to_host()
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_float16_gradient_has_the_input_dtype():
    x = _x(dtype=np.float16)
    gy = np.ones((2, 3, 3, 3), np.float16)
    want = numbapool.pool_grad("avg", x, gy, 2)
    got = numbapool.pool_grad("avg", cuda.to_device(x), cuda.to_device(gy), 2).copy_to_host()
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, want)


def test_nan_and_ties_route_as_on_the_cpu():
    x = np.zeros((1, 2, 4, 4))
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 2, 3] = np.nan
    x[0, 1] = 1.0  # all ties
    gy = np.arange(8.0).reshape(1, 2, 2, 2) + 1
    d = cuda.to_device(x)
    v, i = numbapool.pool("max", d, 3, stride=1, return_indices=True)
    wv, wi = numbapool.pool("max", x, 3, stride=1, return_indices=True)
    np.testing.assert_array_equal(i.copy_to_host(), wi)
    np.testing.assert_array_equal(v.copy_to_host(), wv)
    np.testing.assert_array_equal(
        numbapool.pool_grad("max", d, cuda.to_device(gy), 3, stride=1).copy_to_host(),
        numbapool.pool_grad("max", x, gy, 3, stride=1))


@pytest.mark.parametrize("name", ["max", "stochastic"])
def test_selections_return_no_parameter_gradients(name):
    """``return_param_grads=True`` of a pooler with indices on the device: the gradient
    with respect to ``x`` and an empty dict, as on the CPU (it asked for a parameter-gradient
    kernel selections do not have)."""
    x = _x()
    opts = dict(kernel_size=2, seed=3) if name == "stochastic" else dict(kernel_size=2)
    d = cuda.to_device(x)
    y = numbapool.pool(name, d, **opts)
    gy = cuda.to_device(np.ones(y.shape))
    got, grads = numbapool.pool_grad(name, d, gy, return_param_grads=True, **opts)
    assert grads == {}
    np.testing.assert_array_equal(got.copy_to_host(),
                                  numbapool.pool_grad(name, d, gy, **opts).copy_to_host())


def test_backward_is_deterministic_and_leaves_inputs_alone():
    x = _x((1, 2, 9, 9))
    gy = np.random.default_rng(2).standard_normal((1, 2, 4, 4))
    dx, dgy = cuda.to_device(x), cuda.to_device(gy)
    runs = [numbapool.pool_grad("avg", dx, dgy, 3, stride=2).copy_to_host() for _ in range(3)]
    for r in runs[1:]:
        assert r.tobytes() == runs[0].tobytes()
    np.testing.assert_array_equal(dx.copy_to_host(), x)
    np.testing.assert_array_equal(dgy.copy_to_host(), gy)


def test_stochastic_samples_agree_with_the_cpu_for_a_seed():
    x = np.abs(_x((2, 3, 8, 8))) + 0.1
    want, wi = numbapool.pool("stochastic", x, 2, seed=11, return_indices=True)
    got, gi = numbapool.pool("stochastic", cuda.to_device(x), 2, seed=11,
                             return_indices=True)
    np.testing.assert_array_equal(gi.copy_to_host(), wi)
    np.testing.assert_array_equal(got.copy_to_host(), want)


def test_cuda_bench_runs_and_reports():
    from numbapool.bench import Case
    from numbapool.bench_cuda import run_cuda

    lines = []
    rows = run_cuda([Case("tiny", "max", (1, 2, 6, 6), dict(kernel_size=2))],
                    layouts=("channels_last",), backward=True, repeat=1, out=lines.append,
                    bandwidth=1e9)
    assert [r["pass_"] for r in rows] == ["forward", "fwd+idx", "backward"]
    assert all(r["ours"] > 0 for r in rows)
    assert lines[0].startswith("device: ")
    assert any(line.startswith("tiny") for line in lines)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_gradient_routed_by_given_device_indices(layout):
    x = _x((2, 3, 9, 8), seed=4)
    if layout == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    kw = dict(kernel_size=3, stride=2, padding=1, layout=layout)
    y, idx = numbapool.pool("max", x, return_indices=True, **kw)
    gy = np.random.default_rng(5).standard_normal(y.shape)
    want = numbapool.pool_grad("max", x, gy, indices=idx, **kw)
    dy, didx = numbapool.pool("max", cuda.to_device(x), return_indices=True, **kw)
    got = numbapool.pool_grad("max", cuda.to_device(x), cuda.to_device(gy), indices=didx, **kw)
    np.testing.assert_array_equal(got.copy_to_host(), want)
    np.testing.assert_array_equal(didx.copy_to_host(), idx)
    bad = idx.copy()
    bad[0, 0, 0, 0] = 72
    bad.flat[-1] = -1
    with pytest.raises(ValueError, match=r"indices .*\[0, 72\); 2 of them"):
        numbapool.pool_grad("max", cuda.to_device(x), cuda.to_device(gy),
                            indices=cuda.to_device(bad), **kw)
    again = numbapool.pool_grad("max", cuda.to_device(x), cuda.to_device(gy), indices=didx,
                                **kw)  # (the device's flag is cleared for each check)
    np.testing.assert_array_equal(again.copy_to_host(), want)
    with pytest.raises(TypeError, match="indices must be an integer array"):
        numbapool.pool_grad("max", cuda.to_device(x), cuda.to_device(gy),
                            indices=cuda.to_device(idx.astype(float)), **kw)


@pytest.mark.skipif(simulating(), reason="the simulator launches every kernel through Numba")
def test_launches_after_the_first_are_packed():
    """After a kernel's first launch with given argument kinds, later ones pack the
    parameters themselves (kernels.cuda_launch); the results stay the CPU's, contiguous or
    strided, with float and integer scalars and with indices."""
    from numbapool.kernels import cuda_launch

    cuda_launch.clear()
    x = _x((2, 3, 9, 8), seed=6)
    dense = cuda.to_device(x)
    strided = _transposed(cuda.to_device(np.ascontiguousarray(np.moveaxis(x, 1, -1))),
                          (0, 3, 1, 2))
    kw = dict(kernel_size=3, stride=2, padding=1)
    want_avg = numbapool.pool("avg", x, **kw)
    want_max, want_idx = numbapool.pool("max", x, return_indices=True, **kw)
    for _ in range(3):
        for arr in (dense, strided):
            got = numbapool.pool("avg", arr, **kw)
            np.testing.assert_allclose(got.copy_to_host(), want_avg, rtol=1e-12)
            got, idx = numbapool.pool("max", arr, return_indices=True, **kw)
            np.testing.assert_array_equal(got.copy_to_host(), want_max)
            np.testing.assert_array_equal(idx.copy_to_host(), want_idx)
    kept = list(cuda_launch._launchers.values())
    assert len(kept) >= 2 and all(entry is not None for entry in kept)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_repeated_device_calls_run_a_remembered_plan(layout, monkeypatch):
    """A repeated call on a contiguous device array runs the plan remembered by the first
    (on a GPU bound by its first run: packed launches from the third call); every call
    gives the CPU's results, in the caller's shape, for new data each time."""
    from numbapool import api
    from numbapool.kernels import cuda as kcuda

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    kw = dict(kernel_size=3, stride=2, padding=1, layout=layout)
    shape = (2, 3, 9, 8) if layout == "channels_first" else (2, 9, 8, 3)
    for seed in range(4):
        x = _x(shape, np.float32, seed=seed)
        d = cuda.to_device(x)
        got = numbapool.pool("avg", d, **kw)
        np.testing.assert_allclose(got.copy_to_host(), numbapool.pool("avg", x, **kw),
                                   rtol=1e-5, atol=1e-6)  # (float32 sums, in any order)
        got, idx = numbapool.pool("max", d, return_indices=True, **kw)
        want, want_idx = numbapool.pool("max", x, return_indices=True, **kw)
        assert got.shape == want.shape and idx.shape == want.shape
        np.testing.assert_array_equal(got.copy_to_host(), want)
        np.testing.assert_array_equal(idx.copy_to_host(), want_idx)
    plans = [k.plan for k in api._KNOWN_CALLS.values()
             if isinstance(k.plan, kcuda.ForwardPlan)]
    assert len(plans) == 2
    if not simulating():
        assert all(p._bound is not None for p in plans)
