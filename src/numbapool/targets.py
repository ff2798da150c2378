"""Where a call runs: ``"cpu"`` for host arrays, ``"cuda"`` for CUDA device arrays.

Plain Python; ``numba.cuda`` is imported only once a CUDA array or ``target="cuda"`` is seen,
so the CPU path works without numba-cuda and without a GPU.
"""

from __future__ import annotations

import numpy as np

from .kernels import cuda as cuda_kernels
from .kernels.cuda import is_device_array
from .options import check_array, check_indices
from .reduction import Reduction, Sampling, Selection

__all__ = ["TARGETS", "choose", "is_device_array", "check_device_array", "lift_device",
           "host_parameter", "astype_device", "restore_device_dtype", "check_device_grad", "engine"]

TARGETS = ("cpu", "cuda")


def _where(obj: object) -> str:
    return "a CUDA device array" if is_device_array(obj) else "a CPU array"


def choose(target: object, x: object, grad_output: object = None,
           has_grad: bool = False) -> str:
    """The target of a call: ``target`` if given, else where ``x`` lives.

    Raises
    ------
    TypeError
        ``target`` is not a string, or ``x`` and ``grad_output`` live in different places.
    ValueError
        ``target`` is not ``"cpu"``, ``"cuda"`` or None.
    """
    if target is not None:
        if not isinstance(target, str):
            raise TypeError(f"target must be 'cpu', 'cuda' or None, got {type(target).__name__}")
        if target not in TARGETS:
            raise ValueError(f"target must be 'cpu', 'cuda' or None, got {target!r}")
    on_device = is_device_array(x)
    if has_grad and is_device_array(grad_output) != on_device:
        raise TypeError(f"x is {_where(x)} but grad_output is {_where(grad_output)}: pass both "
                        "on the same device (numbapool does not move data between them "
                        "unless target= says so)")
    if target is None:
        return "cuda" if on_device else "cpu"
    return target


def to_target(obj: object, target: str, name: str) -> object:
    """``obj`` moved where ``target`` says (a copy), or as it is if already there."""
    if target == "cuda" and not is_device_array(obj):
        # x is checked as pool's input; grad_output's shape is checked against the result
        arr = check_array(obj, name) if name == "x" else np.asarray(obj)
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        return cuda_kernels.to_device(arr)
    if target == "cpu" and is_device_array(obj):
        return cuda_kernels.as_device_array(obj).copy_to_host()
    return obj


def engine(target: str):
    """The kernel module of a target: :mod:`.kernels.cpu` or :mod:`.kernels.cuda`."""
    if target == "cuda":
        return cuda_kernels
    from .kernels import cpu
    return cpu


def host_parameter(value: object, name: str, target: str) -> object:
    """A pooler parameter on the host: device arrays (small) are copied for CUDA calls."""
    if not is_device_array(value):
        return value
    if target != "cuda":
        raise TypeError(f"parameter {name} is a CUDA device array but x is a CPU array: pass "
                        "it as a number or a NumPy array")
    return cuda_kernels.as_device_array(value).copy_to_host()


def check_device_array(x: object, name: str = "x"):
    """``x`` as a Numba device array of a numeric dtype with 1 to 3 spatial axes."""
    arr = cuda_kernels.as_device_array(x)
    dtype = np.dtype(arr.dtype)
    if dtype.kind not in "biuf":
        raise TypeError(f"{name} must have a real numeric dtype, got {dtype}")
    if not dtype.isnative:
        raise TypeError(f"{name} must have native byte order on the device, got {dtype}")
    if arr.ndim not in (3, 4, 5):
        raise ValueError(
            f"{name} must have 3, 4 or 5 dimensions (batch, channels and 1 to 3 spatial axes), "
            f"got {arr.ndim} (shape {tuple(arr.shape)})")
    return arr


def _lift(arr, layout: str):
    """A 5-D view (size-1 spatial axes in front of the real ones), any strides; of a
    C-contiguous array, a C-contiguous view (the kernels' specialisation for that layout)."""
    shape, strides = tuple(arr.shape), tuple(arr.strides)
    k = 5 - len(shape)
    at = 2 if layout == "channels_first" else 1
    shape5 = shape[:at] + (1,) * k + shape[at:]
    if arr.is_c_contiguous():
        return arr.reshape(shape5)
    return cuda_kernels.lift(arr, shape5, strides[:at] + (0,) * k + strides[at:])


def lift_device(arr, layout: str):
    """The work array of a CUDA call: 5-D, in a dtype the kernels take (float16 computed in
    float32, bool as uint8)."""
    if np.dtype(arr.dtype) == np.bool_:
        arr = arr.view(np.uint8)
    work = _lift(arr, layout)
    if np.dtype(work.dtype) == np.float16:
        work = cuda_kernels.cast(work, np.float32)
    return work


def restore_device_dtype(out, dtype: np.dtype, reduction: Reduction):
    """A CUDA result in the caller's dtype (float16 back from float32, bool from uint8)."""
    if dtype == np.float16:
        return astype_device(out, np.float16)
    if dtype == np.bool_ and isinstance(reduction, (Selection, Sampling)):
        return out.view(np.bool_)
    return out


def check_device_grad(grad_output: object, expected: tuple[int, ...], layout: str,
                      acc: np.dtype):
    """``grad_output`` of a CUDA call as a 5-D device array in the accumulator dtype."""
    gy = cuda_kernels.as_device_array(grad_output)
    dtype = np.dtype(gy.dtype)
    if dtype.kind not in "biuf":
        raise TypeError(f"grad_output must have a real numeric dtype, got {dtype}")
    if tuple(gy.shape) != tuple(expected):
        raise ValueError(f"grad_output must have shape {tuple(expected)} (the shape pool() "
                         f"returns), got {tuple(gy.shape)}")
    return _lift(astype_device(gy, acc), layout)


def check_device_indices(indices: object, expected: tuple[int, ...], layout: str):
    """``indices`` of a CUDA ``pool_grad`` as a 5-D int64 device array."""
    idx = cuda_kernels.as_device_array(indices)
    check_indices(idx.dtype, idx.shape, expected)
    return _lift(astype_device(idx, np.int64), layout)


def astype_device(arr, dtype):
    """Device array ``arr`` (any strides) converted to ``dtype``: a new contiguous array, or
    ``arr`` itself when it has that dtype."""
    dtype = np.dtype(dtype)
    if np.dtype(arr.dtype) == dtype:
        return arr
    shape = tuple(arr.shape)
    k = 5 - len(shape)
    a5 = cuda_kernels.lift(arr, (1,) * k + shape, (0,) * k + tuple(arr.strides))
    return cuda_kernels.cast(a5, dtype).reshape(shape)
