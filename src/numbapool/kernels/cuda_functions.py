"""CUDA device functions from a reduction's CPU functions: one source for both targets.

A reduction is written as ``numba.njit`` functions.  For the GPU each is recompiled from its
Python function with ``numba.cuda.jit(device=True)``; jitted helpers it calls through module
globals or closures (``_pow``, ``_sigmoid``, ...) are converted the same way, recursively, so
a plugin author never writes CUDA code.  Builtins and ``math`` functions need nothing: Numba's
CUDA target implements them; :mod:`numbapool.vmath`'s functions become the GPU's ``exp``,
``log`` and ``pow``.
"""

from __future__ import annotations

from collections.abc import Callable

from numba import config

from ..vmath import DEVICE_EQUIVALENTS
from .rebind import is_jitted, rebound

__all__ = ["device_function", "device_functions"]

_converted: dict[int, tuple[object, Callable]] = {}


def _device_equivalent(obj: object) -> Callable | None:
    """The device function standing for a :mod:`numbapool.vmath` function, else None."""
    entry = DEVICE_EQUIVALENTS.get(id(obj))
    if entry is None or entry[0] is not obj:
        return None
    from numba import cuda

    key = id(entry[1])
    if key not in _converted:
        plain = entry[0] if config.ENABLE_CUDASIM else entry[1]
        if isinstance(plain, str):  # a numba.cuda function, called through the module
            scope: dict[str, object] = {"cuda": cuda}
            exec(f"def {plain}(x):\n    return cuda.{plain}(x)\n", scope)  # noqa: S102
            plain = scope[plain]
        plain = getattr(plain, "py_func", plain)  # (a jitted one runs as Python there)
        _converted[key] = (entry[1], cuda.jit(device=True)(plain))
    return _converted[key][1]


def _device_version(obj: object) -> Callable | None:
    """What a function's global or closure cell becomes on the GPU (None: unchanged)."""
    equivalent = _device_equivalent(obj)
    if equivalent is not None:
        return equivalent
    return device_function(obj) if is_jitted(obj) else None


def device_function(fn: Callable) -> Callable:
    """The CUDA device function compiled from the jitted CPU function ``fn``."""
    from numba import cuda

    entry = _converted.get(id(fn))
    if entry is not None:
        return entry[1]
    clone = rebound(fn, _device_version)
    device = cuda.jit(device=True)(clone)
    _converted[id(fn)] = (fn, device)  # keeps fn alive, so its id is not reused
    return device


def device_functions(functions: dict[str, Callable]) -> dict[str, Callable]:
    """:meth:`Reduction.functions` with every function converted for CUDA."""
    return {role: device_function(fn) for role, fn in functions.items()}
