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
from . import cpu
from .codegen import cache_dir, get_kernel, load_module
from .cuda_templates import CAST_SOURCE, OUTSIDE_SOURCE

__all__ = ["cuda_api", "simulating", "is_device_array", "as_device_array", "lift",
           "empty", "cast", "forward", "backward", "param_grad"]

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


def _numba_device_array(obj: object) -> bool:
    """A Numba device array (the simulator's too, which has no CUDA array interface)."""
    return getattr(type(obj), "__cuda_ndarray__", False) is True


def is_device_array(obj: object) -> bool:
    """Whether ``obj`` lives on a CUDA device: it has ``__cuda_array_interface__`` (Numba,
    CuPy, PyTorch CUDA tensors) or is a Numba (or simulator) device array."""
    if isinstance(obj, np.ndarray):
        return False
    return _numba_device_array(obj) or hasattr(obj, "__cuda_array_interface__")


class _HostInterface:
    """An ``__array_interface__`` over a simulator "device" pointer (which is a host one)."""

    def __init__(self, desc: dict, owner: object) -> None:
        self.__array_interface__ = {k: v for k, v in desc.items() if k != "stream"}
        self.__array_interface__["version"] = 3
        self.owner = owner


def as_device_array(obj: object):
    """A Numba device array viewing ``obj``'s memory (no copy)."""
    cuda = cuda_api()
    if _numba_device_array(obj):
        return obj
    if simulating():
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
        desc = obj.__cuda_array_interface__
        return FakeCUDAArray(np.asarray(_HostInterface(desc, obj)))
    return cuda.as_cuda_array(obj)


def lift(arr, shape: tuple[int, ...], strides: tuple[int, ...]):
    """A view of device array ``arr`` with another shape and byte strides (same memory)."""
    if simulating():
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
        host = np.lib.stride_tricks.as_strided(arr._ary, shape, strides)
        return FakeCUDAArray(host)
    cuda = cuda_api()
    desc = dict(arr.__cuda_array_interface__)
    desc.update(shape=tuple(shape), strides=tuple(strides), stream=None)
    return cuda.from_cuda_array_interface(desc, owner=arr, sync=False)


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
    path = cache_dir() / "np_cuda_outside_v1.py"
    return load_module(path, OUTSIDE_SOURCE, {}).kernel


def count_outside(idx5, plane: int) -> int:
    """How many elements of the 5-D int64 device array ``idx5`` lie outside [0, plane)."""
    bad = to_device(np.zeros(1, np.int64))
    _run(_outside_kernel(), math.prod(idx5.shape), idx5, np.int64(plane), bad)
    return int(bad.copy_to_host()[0])


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
        kernel[blocks, threads](*args)


def forward(reduction: Reduction, layout: str, x, axes: Sequence[AxisWindows],
            prm: np.ndarray, include_pad: bool = True, override: float | None = None,
            with_indices: bool = False, u: np.ndarray | None = None) -> tuple:
    """Pool device array ``x``; returns ``(out, indices or None)`` as device arrays."""
    shape = out_shape(x, axes, layout)
    total = math.prod(shape)
    tables = _tables(axes)
    dtype = np.dtype(x.dtype)
    if isinstance(reduction, Selection):
        out = empty(shape, dtype)
        if with_indices:
            idx = empty(shape, np.int64)
            _run(get_kernel(reduction, layout, "forward_indices", "cuda"), total,
                 x, out, idx, *tables)
            return out, idx
        _run(get_kernel(reduction, layout, "forward", "cuda"), total, x, out, *tables)
        return out, None
    if isinstance(reduction, Sampling):
        out = empty(shape, dtype)
        idx = empty(shape, np.int64)
        _run(get_kernel(reduction, layout, "forward_indices", "cuda"), total,
             x, out, idx, *tables, np.float64(0.0), _prm(prm), to_device(u))
        return out, (idx if with_indices else None)
    if with_indices:
        raise ValueError(f"reduction {reduction.name!r} has no indices")
    out = empty(shape, reduction.out_dtype(dtype))
    _run(get_kernel(reduction, layout, "forward", "cuda"), total,
         x, out, *tables, *_divisors(axes, include_pad, override), _zero(reduction, dtype),
         _prm(prm))
    return out, None


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
    ``(N, C, n_params)``.  One partial sum per output, added on the host in a fixed order."""
    y, _ = forward(reduction, layout, x, axes, prm, include_pad, override)
    shape = out_shape(x, axes, layout)
    n, c = (shape[0], shape[1]) if layout == "channels_first" else (shape[0], shape[4])
    outs = math.prod(shape) // (n * c)
    gp = empty((n * c * outs, prm.shape[1]), np.float64)  # each thread zeroes its row
    _run(get_kernel(reduction, layout, "param_grad", "cuda"), math.prod(shape),
         x, y, grad_out, gp, *_tables(axes), *_divisors(axes, include_pad, override),
         _zero(reduction, np.dtype(x.dtype)), _prm(prm))
    return gp.copy_to_host().reshape(n, c, outs, prm.shape[1]).sum(axis=2)

