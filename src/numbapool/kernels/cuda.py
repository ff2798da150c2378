"""Run the CUDA kernels on device arrays.

Mirrors :mod:`.cpu`: inputs are checked and lifted to 5-D (three spatial axes) in their own
layout; ``axes`` holds three :class:`~numbapool.geometry.AxisWindows`; ``prm`` is float64
``(1 or C, n_params)``.  Window tables are computed on the host (NumPy) and copied to the
device once per distinct table.  ``numba.cuda`` is imported only when a CUDA call is made.

Works on a real GPU and under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), where
device arrays are wrapped NumPy arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from ..geometry import AxisWindows
from ..options import indices_out_of_range
from ..reduction import Reduction, Sampling, Selection
from . import cpu, cuda_launch
from .codegen import cache_dir, get_kernel, load_module
from .cuda_templates import CAST_SOURCE, OUTSIDE_SOURCE

__all__ = ["cuda_api", "simulating", "is_device_array", "is_numba_device_array",
           "as_device_array", "lift", "empty", "cast", "ForwardPlan", "forward", "backward",
           "param_grad"]

THREADS = 256
"""Threads per block on a GPU (the simulator runs at most 64: each is a Python thread)."""


@lru_cache(maxsize=1)
def simulating() -> bool:
    """Whether Numba's CUDA simulator is on (``NUMBA_ENABLE_CUDASIM=1``, read when
    ``numba.cuda`` is first imported)."""
    cuda_api()
    try:
        from numba.cuda.core import config  # numba-cuda
    except ImportError:  # pragma: no cover - numba's own (deprecated) numba.cuda
        from numba.core import config
    return bool(config.ENABLE_CUDASIM)


def cuda_api():
    """``numba.cuda``, with an error that says what to install when it is missing."""
    try:
        from numba import cuda
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("the CUDA target needs numba-cuda: pip install 'numbapool[cuda]'"
                          ) from exc
    return cuda


def is_numba_device_array(obj: object) -> bool:
    """A Numba device array (the simulator's too, which has no CUDA array interface)."""
    return getattr(type(obj), "__cuda_ndarray__", False) is True


def is_device_array(obj: object) -> bool:
    """Whether ``obj`` lives on a CUDA device: it has ``__cuda_array_interface__`` (Numba,
    CuPy, PyTorch CUDA tensors) or is a Numba (or simulator) device array."""
    if isinstance(obj, np.ndarray):
        return False
    return is_numba_device_array(obj) or hasattr(obj, "__cuda_array_interface__")


class _HostInterface:
    """An ``__array_interface__`` over a simulator "device" pointer (which is a host one)."""

    def __init__(self, desc: dict, owner: object) -> None:
        self.__array_interface__ = {k: v for k, v in desc.items() if k != "stream"}
        self.__array_interface__["version"] = 3
        self.owner = owner


def as_device_array(obj: object):
    """A Numba device array viewing ``obj``'s memory (no copy)."""
    cuda = cuda_api()
    if is_numba_device_array(obj):
        return obj
    if simulating():
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
        desc = obj.__cuda_array_interface__
        return FakeCUDAArray(np.asarray(_HostInterface(desc, obj)))
    return cuda.as_cuda_array(obj)


def lift(arr, shape: tuple[int, ...], strides: tuple[int, ...]):
    """A view of Numba device array ``arr`` with another shape and byte strides (same
    memory)."""
    if simulating():
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
        host = np.lib.stride_tricks.as_strided(arr._ary, shape, strides)
        return FakeCUDAArray(host)
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    # The same memory object (which keeps its owner alive), without the checks, pointer
    # query and new memory object of cuda.from_cuda_array_interface.
    return DeviceNDArray(tuple(shape), tuple(strides), arr.dtype, gpu_data=arr.gpu_data)


def empty(shape: tuple[int, ...], dtype) -> object:
    return cuda_api().device_array(shape, dtype=np.dtype(dtype))


def to_device(host: np.ndarray):
    return cuda_api().to_device(np.ascontiguousarray(host))


def _launch(total: int) -> tuple[int, int]:
    """(blocks, threads) for a grid-stride loop over ``total`` elements."""
    if simulating():
        threads = min(64, max(1, total))
        return min(4, max(1, math.ceil(total / threads))), threads
    threads = THREADS
    return max(1, min(math.ceil(total / threads), 65535)), threads


@lru_cache(maxsize=1)
def _cast_kernel():
    path = cache_dir() / "np_cuda_cast_v1.py"
    return load_module(path, CAST_SOURCE, {}).kernel


@lru_cache(maxsize=1)
def _outside_kernel():
    path = cache_dir() / "np_cuda_outside_v2.py"
    return load_module(path, OUTSIDE_SOURCE, {}).kernel


@lru_cache(maxsize=1)
def _flag():
    """One int32 in pinned host memory mapped for the device: what the range check writes,
    read after a synchronisation (no device allocation and no copy per check)."""
    return cuda_api().mapped_array(1, np.int32)


def synchronize() -> None:
    """Wait for the device's work so far."""
    cuda_api().synchronize()


def count_outside(idx5, plane: int) -> int:
    """How many elements of the 5-D int64 device array ``idx5`` lie outside [0, plane)
    (counted on the host only when the device found any)."""
    flag = _flag()
    flag[0] = 0
    _run(_outside_kernel(), math.prod(idx5.shape), idx5, np.int64(plane), flag)
    synchronize()
    if not flag[0]:
        return 0
    host = idx5.copy_to_host()
    return int(np.count_nonzero((host < 0) | (host >= plane)))


def cast(arr5, dtype):
    """A new contiguous 5-D device array: ``arr5`` converted to ``dtype``."""
    out = empty(tuple(arr5.shape), dtype)
    _run(_cast_kernel(), math.prod(arr5.shape), arr5, out)
    return out


# Device copies of the (immutable, lru-cached) host tables, by identity.  Per-plane tables
# (fractional pooling) are made anew by every call, so they are copied without being kept.
_device_tables: dict[int, tuple[np.ndarray, object]] = {}
_DEVICE_TABLES_MAX = 512


def _dev(host: np.ndarray, keep: bool = True):
    if not keep:
        return to_device(host)
    entry = _device_tables.get(id(host))
    if entry is None or entry[0] is not host:
        if len(_device_tables) >= _DEVICE_TABLES_MAX:
            _device_tables.clear()
        entry = (host, to_device(host))
        _device_tables[id(host)] = entry
    return entry[1]


_device_params: dict[tuple, object] = {}


def _prm(prm: np.ndarray):
    """The parameters on the device, by value (at least one column: no empty arrays)."""
    if prm.shape[1] == 0:
        prm = np.zeros((prm.shape[0], 1))
    key = (prm.shape, prm.tobytes())
    dev = _device_params.get(key)
    if dev is None:
        if len(_device_params) >= _DEVICE_TABLES_MAX:
            _device_params.clear()
        dev = _device_params[key] = to_device(prm)
    return dev


def _shared(axes: Sequence[AxisWindows]) -> bool:
    return all(a.planes == 1 for a in axes)


def _tables(axes: Sequence[AxisWindows]) -> list:
    return [_dev(t, _shared(axes)) for t in cpu._tables(tuple(axes))]


def _divisors(axes: Sequence[AxisWindows], include_pad: bool, override: float | None) -> list:
    *factors, over = cpu._divisors(axes, include_pad, override)
    return [_dev(f, _shared(axes)) for f in factors] + [over]


def _inverse(axes: Sequence[AxisWindows]) -> list:
    return [_dev(a, _shared(axes)) for a in cpu._inverse(axes)]


_zero = cpu._zero
out_shape = cpu.out_shape


def _run(kernel, total: int, *args) -> None:
    if total:
        blocks, threads = _launch(total)
        cuda_launch.launch(kernel, blocks, threads, args, packed=not simulating())


class ForwardPlan:
    """A CUDA forward pass planned once: its kernel, device tables and parameters, and the
    output's shape and dtype (not for a sampling reduction, which draws per call).

    ``run`` pools a 5-D device array.  ``run_as`` pools a C-contiguous device array of the
    planned input's size into results of the caller's shape; after its first launch it
    launches with every parameter but the arrays' addresses packed once
    (:func:`.cuda_launch.bind`), on a GPU."""

    def __init__(self, reduction: Reduction, layout: str, x, axes: Sequence[AxisWindows],
                 prm: np.ndarray, include_pad: bool = True, override: float | None = None,
                 with_indices: bool = False) -> None:
        if isinstance(reduction, Sampling):
            raise ValueError("a sampling reduction draws its uniforms per call: no plan")
        selection = isinstance(reduction, Selection)
        if with_indices and not selection:
            raise ValueError(f"reduction {reduction.name!r} has no indices")
        dtype = np.dtype(x.dtype)
        self.x_shape = tuple(x.shape)
        self.shape = out_shape(x, axes, layout)
        self.total = math.prod(self.shape)
        self.with_indices = with_indices
        self.dtype = dtype if selection else reduction.out_dtype(dtype)
        variant = "forward_indices" if with_indices else "forward"
        self.kernel = get_kernel(reduction, layout, variant, "cuda")
        tables = _tables(axes)
        self.rest = tuple(tables) if selection else (
            *tables, *_divisors(axes, include_pad, override), _zero(reduction, dtype), _prm(prm))
        self._bound = None

    def _arrays(self, x, out, idx) -> tuple:
        return (x, out) if idx is None else (x, out, idx)

    def run(self, x) -> tuple:
        """Pool the 5-D device array ``x``: ``(out, indices or None)``, 5-D."""
        out = empty(self.shape, self.dtype)
        idx = empty(self.shape, np.int64) if self.with_indices else None
        _run(self.kernel, self.total, *self._arrays(x, out, idx), *self.rest)
        return out, idx

    def run_as(self, x, shape: tuple[int, ...]) -> tuple:
        """Pool the C-contiguous device array ``x`` (the planned input's elements, in any
        shape): ``(out, indices or None)`` in ``shape``."""
        out = empty(shape, self.dtype)
        idx = empty(shape, np.int64) if self.with_indices else None
        if not self.total:
            return out, idx
        bound = self._bound
        if bound is not None:
            bound(*map(cuda_launch.address, self._arrays(x, out, idx)))
            return out, idx
        arrays = self._arrays(x.reshape(self.x_shape), out.reshape(self.shape),
                              None if idx is None else idx.reshape(self.shape))
        _run(self.kernel, self.total, *arrays, *self.rest)
        if not simulating():
            self._bound = cuda_launch.bind(self.kernel, *_launch(self.total),
                                           (*arrays, *self.rest), tuple(range(len(arrays))))
        return out, idx


def forward(reduction: Reduction, layout: str, x, axes: Sequence[AxisWindows],
            prm: np.ndarray, include_pad: bool = True, override: float | None = None,
            with_indices: bool = False, u: np.ndarray | None = None) -> tuple:
    """Pool device array ``x``; returns ``(out, indices or None)`` as device arrays."""
    if isinstance(reduction, Sampling):
        shape = out_shape(x, axes, layout)
        out = empty(shape, np.dtype(x.dtype))
        idx = empty(shape, np.int64)
        _run(get_kernel(reduction, layout, "forward_indices", "cuda"), math.prod(shape),
             x, out, idx, *_tables(axes), np.float64(0.0), _prm(prm), to_device(u))
        return out, (idx if with_indices else None)
    return ForwardPlan(reduction, layout, x, axes, prm, include_pad, override,
                       with_indices).run(x)


def backward(reduction: Reduction, layout: str, x, grad_out, axes: Sequence[AxisWindows],
             prm: np.ndarray, include_pad: bool = True, override: float | None = None,
             u: np.ndarray | None = None, indices=None):
    """Gradient with respect to ``x`` (a device array in the accumulator dtype), given the
    output gradient ``grad_out`` (device, 5-D, the forward result's shape, accumulator
    dtype).  Each thread gathers the gradient of the input element it owns.  A selection's
    gradient is routed by ``indices`` (5-D int64, checked here) when given, else by the
    indices of a forward pass."""
    dtype = np.dtype(x.dtype)
    acc = reduction.acc_dtype(dtype)
    gx = empty(tuple(x.shape), acc)
    total = math.prod(x.shape)
    kernel = get_kernel(reduction, layout, "backward", "cuda")
    if isinstance(reduction, (Selection, Sampling)):
        if indices is None:
            y, idx = forward(reduction, layout, x, axes, prm, with_indices=True, u=u)
        else:
            plane = math.prod(a.length for a in axes)
            bad = count_outside(indices, plane)
            if bad:
                raise indices_out_of_range(bad, plane)
            y, idx = grad_out, indices  # (the routed kernels read y's shape only)
        _run(kernel, total, x, y, grad_out, gx, idx, *_inverse(axes), acc.type(0))
        return gx
    if reduction.grad_uses_output:
        y, _ = forward(reduction, layout, x, axes, prm, include_pad, override)
    else:  # (sum, avg: grad does not read y; the same shape, not read)
        y = grad_out
    _run(kernel, total, x, y, grad_out, gx, *_inverse(axes), *_tables(axes),
         *_divisors(axes, include_pad, override), acc.type(0), _prm(prm))
    return gx


def param_grad(reduction: Reduction, layout: str, x, grad_out, axes: Sequence[AxisWindows],
               prm: np.ndarray, include_pad: bool = True, override: float | None = None
               ) -> np.ndarray:
    """Gradient with respect to the parameters, per (n, c) plane: host float64
    ``(N, C, n_params)``.  One partial sum per output, added on the host in a fixed order.
    Zeros for a selection or a sampling reduction (see :func:`numbapool.kernels.cpu.
    param_grad`)."""
    shape = out_shape(x, axes, layout)
    n, c = (shape[0], shape[1]) if layout == "channels_first" else (shape[0], shape[4])
    if isinstance(reduction, (Selection, Sampling)):
        return np.zeros((n, c, prm.shape[1]))
    y, _ = forward(reduction, layout, x, axes, prm, include_pad, override)
    outs = math.prod(shape) // (n * c)
    gp = empty((n * c * outs, prm.shape[1]), np.float64)  # each thread zeroes its row
    _run(get_kernel(reduction, layout, "param_grad", "cuda"), math.prod(shape),
         x, y, grad_out, gp, *_tables(axes), *_divisors(axes, include_pad, override),
         _zero(reduction, np.dtype(x.dtype)), _prm(prm))
    return gp.copy_to_host().reshape(n, c, outs, prm.shape[1]).sum(axis=2)

