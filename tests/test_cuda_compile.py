"""Every CUDA kernel compiles with the real Numba CUDA compiler (to PTX: no GPU needed).

The CUDA simulator (``tests_cuda/``) runs kernels as Python, so it cannot tell whether the
generated source and the converted reduction functions type-check and compile for a GPU.
Here each pooler's calls run through a dry backend that records every kernel launch with its
arguments instead of launching; each recorded kernel is then compiled for sm_90 with those
argument types.  Skipped where numba-cuda or the CUDA compiler libraries (NVVM, NVRTC) are
missing.
"""

import os

import numpy as np
import pytest

import numbapool
from numbapool.kernels import cuda as cuda_kernels
from numbapool.testing import examples

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("compiles for a real GPU: not under the simulator", allow_module_level=True)
cuda = pytest.importorskip("numba.cuda")
numba = pytest.importorskip("numba")


def _compiler_available():
    def k(a):
        a[0] = 1.0
    try:
        cuda.compile_ptx(k, (numba.float32[:],), cc=(9, 0))
    except Exception as exc:  # noqa: BLE001 - any missing library means: cannot check here
        return str(exc).splitlines()[0]
    return None


_MISSING = _compiler_available()
pytestmark = pytest.mark.skipif(_MISSING is not None,
                                reason=f"no CUDA compiler libraries: {_MISSING}")


class _DryArray(np.ndarray):
    """A host array that answers ``copy_to_host`` like a device array."""

    def copy_to_host(self):
        return np.asarray(self).copy()

    def is_c_contiguous(self):
        return self.flags.c_contiguous


def _dry(a):
    return np.ascontiguousarray(a).view(_DryArray)


class _H100:
    compute_capability = (9, 0)


@pytest.fixture
def launches(monkeypatch):
    recorded = []
    # Device functions are compiled for the current device's compute capability: name one,
    # as no GPU (and no driver) is needed to generate PTX.
    from numba.cuda import dispatcher
    monkeypatch.setattr(dispatcher, "get_current_device", lambda: _H100())
    monkeypatch.setattr(cuda_kernels, "simulating", lambda: False)
    monkeypatch.setattr(cuda_kernels, "to_device", _dry)
    monkeypatch.setattr(cuda_kernels, "empty", lambda shape, dtype: _dry(np.zeros(shape,
                                                                                  dtype)))
    monkeypatch.setattr(cuda_kernels, "as_device_array", lambda a: a)
    monkeypatch.setattr(cuda_kernels, "_flag", lambda: np.zeros(1, np.int32))
    monkeypatch.setattr(cuda_kernels, "synchronize", lambda: None)
    monkeypatch.setattr(cuda_kernels, "lift", lambda a, shape, strides: np.lib.stride_tricks
                        .as_strided(a, shape, strides).view(_DryArray))
    monkeypatch.setattr(cuda_kernels, "_run", lambda kernel, total, *args:
                        recorded.append((kernel, args)))
    return recorded


def _compile_all(recorded):
    done = set()
    for kernel, args in recorded:
        sig = tuple(numba.typeof(np.asarray(a) if isinstance(a, np.ndarray) else a)
                    for a in args)
        if (id(kernel), sig) in done:
            continue
        done.add((id(kernel), sig))
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
        assert ".entry" in ptx
    return len(done)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("name", numbapool.poolers())
def test_every_kernel_compiles_for_a_gpu(name, layout, launches):
    pooler = numbapool.get(name)
    x = np.random.default_rng(0).uniform(0.5, 1.5, (2, 3, 6, 7)).astype(np.float32)
    if layout == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    kw = dict(examples(name, 2)[0], layout=layout)
    if not pooler.deterministic:
        kw["seed"] = 0
    y = numbapool.pool(name, x, target="cuda", **kw)
    if "indices" in pooler.capabilities:
        _, idx = numbapool.pool(name, x, target="cuda", return_indices=True, **kw)
        numbapool.pool_grad(name, x, np.ones(y.shape, np.float32), target="cuda",
                            indices=idx, **kw)  # (the range check of the indices)
    trainable = any(p.trainable for p in pooler.parameters)
    numbapool.pool_grad(name, x, np.ones(y.shape, np.float32), target="cuda",
                        return_param_grads=trainable, **kw)
    assert _compile_all(launches) >= 2


def test_general_gem_compiles_for_a_gpu(launches):
    """p other than 3 takes gem's general reduction (vpow), which the default does not."""
    x = np.random.default_rng(0).uniform(0.5, 1.5, (2, 3, 6, 7)).astype(np.float32)
    y = numbapool.pool("gem", x, 3, stride=2, p=2.5, target="cuda")
    numbapool.pool_grad("gem", x, np.ones(y.shape, np.float32), 3, stride=2, p=2.5,
                        target="cuda", return_param_grads=True)
    assert _compile_all(launches) >= 2


@pytest.mark.parametrize("dtype", ["float16", "float64", "int32", "uint8", "bool"])
def test_other_dtypes_compile(dtype, launches):
    x = (np.arange(2 * 3 * 6 * 7) % 5).reshape(2, 3, 6, 7).astype(dtype)
    numbapool.pool("max", x, 2, target="cuda")
    if dtype != "bool":
        numbapool.pool("sum", x, 2, target="cuda")
    if dtype.startswith("float"):
        numbapool.pool_grad("avg", x, np.ones((2, 3, 3, 3), dtype), 2, target="cuda")
    assert _compile_all(launches) >= 1


def test_packed_parameters_follow_numbas_array_layout():
    """kernels.cuda_launch packs an array as Numba does (meminfo, parent, nitems, itemsize,
    data, shape, byte strides) and scalars as ctypes of their Numba type; an argument type it
    does not know turns packing off (None)."""
    import ctypes

    from numbapool.kernels import cuda_launch

    class Pointer:
        value = 4096

    class Device:
        shape, strides, size, dtype = (2, 3), (24, 8), 6, np.dtype(np.float64)
        device_ctypes_pointer = Pointer()

    types = (numba.float64[:, :], numba.int64, numba.float32, numba.float64, numba.boolean)
    convert = cuda_launch._converters(types)
    params = cuda_launch.pack(convert, (Device(), 7, np.float32(0.5), 0.25, True))
    assert params[:9] == [0, 0, 6, 8, 4096, 2, 3, 24, 8]
    assert isinstance(params[9], ctypes.c_int64) and params[9].value == 7
    assert isinstance(params[10], ctypes.c_float) and params[10].value == 0.5
    assert isinstance(params[11], ctypes.c_double) and params[11].value == 0.25
    assert params[12] is True
    assert cuda_launch._converters((numba.types.UniTuple(numba.int64, 2),)) is None
    assert cuda_launch.kind(np.float32(1)) is np.float32
    assert cuda_launch.kind(7) is int
    assert cuda_launch.kind(np.zeros((2, 3))) == ("d", 2, "C")
    assert cuda_launch.kind(np.zeros((2, 3), np.int32).T) == ("i", 2, "F")
    assert cuda_launch.kind(np.zeros((2, 3))[:, ::2]) == ("d", 2, "A")


def test_a_bound_launch_fills_the_addresses_of_the_varying_arrays(monkeypatch):
    """kernels.cuda_launch.bind packs the fixed arguments once and records where each
    varying array's address goes (after meminfo, parent, nitems and itemsize of each array's
    5 + 2 * ndim parameters, one per scalar); a call puts the new addresses there."""
    from numbapool.kernels import cuda_launch

    class Pointer:
        def __init__(self, value):
            self.value = value

    class Device:
        def __init__(self, shape, address):
            self.shape, self.dtype = shape, np.dtype(np.float32)
            self.size = int(np.prod(shape))
            self.strides = tuple(int(s) for s in np.empty(shape, np.float32).strides)
            self.device_ctypes_pointer = Pointer(address)

        def is_c_contiguous(self):
            return True

        def is_f_contiguous(self):
            return False

    core = pytest.importorskip("cuda.core")
    launched = []
    monkeypatch.setattr(cuda_launch, "_config", lambda blocks, threads: (blocks, threads))
    monkeypatch.setattr(core, "launch", lambda *a: launched.append(a))
    x, table, out = Device((1, 2, 1, 4, 4), 100), Device((1, 3), 200), Device((1, 2, 1, 2, 2), 300)
    kernel = object()
    types = (numba.float32[:, :, :, :, ::1], numba.float32[:, ::1], numba.float64,
             numba.float32[:, :, :, :, ::1])
    args = (x, table, 0.5, out)
    cuda_launch._launchers[(kernel, *map(cuda_launch.kind, args))] = (
        "function", cuda_launch._converters(types), "stream")
    try:
        bound = cuda_launch.bind(kernel, 3, 256, args, (0, 3))
        assert bound.at == (4, 15 + 9 + 1 + 4)
        bound(1000, 3000)
    finally:
        cuda_launch.clear()
    (stream, config, function, *params), = launched
    assert (stream, config, function) == ("stream", (3, 256), "function")
    assert params[4] == 1000 and params[29] == 3000  # the new addresses
    assert params[15 + 4] == 200  # the table's, packed once
    assert params[15 + 9].value == 0.5
    assert bound.keep == [table, 0.5]
    assert cuda_launch.bind(object(), 3, 256, args, (0, 3)) is None  # never launched
