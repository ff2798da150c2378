"""CUDA device functions from a reduction's CPU functions: one source for both targets.

A reduction is written as ``numba.njit`` functions.  For the GPU each is recompiled from its
Python function with ``numba.cuda.jit(device=True)``; jitted helpers it calls through module
globals or closures (``_pow``, ``_sigmoid``, ...) are converted the same way, recursively, so
a plugin author never writes CUDA code.  Builtins and ``math`` functions need nothing: Numba's
CUDA target implements them.
"""

from __future__ import annotations

import types
from collections.abc import Callable

from numba.core.dispatcher import Dispatcher

__all__ = ["device_function", "device_functions"]

_converted: dict[int, tuple[object, Callable]] = {}


def _is_jitted(obj: object) -> bool:
    return isinstance(obj, Dispatcher) and hasattr(obj, "py_func")


def device_function(fn: Callable) -> Callable:
    """The CUDA device function compiled from the jitted CPU function ``fn``."""
    from numba import cuda

    entry = _converted.get(id(fn))
    if entry is not None:
        return entry[1]
    py = fn.py_func
    names = set(py.__code__.co_names)
    scope = dict(py.__globals__)
    for name in names:
        if _is_jitted(scope.get(name)):
            scope[name] = device_function(scope[name])
    closure = None
    if py.__closure__:
        closure = tuple(
            types.CellType(device_function(cell.cell_contents))
            if _is_jitted(cell.cell_contents) else cell for cell in py.__closure__)
    clone = types.FunctionType(py.__code__, scope, py.__name__, py.__defaults__, closure)
    clone.__qualname__ = py.__qualname__
    clone.__module__ = py.__module__
    device = cuda.jit(device=True)(clone)
    _converted[id(fn)] = (fn, device)  # keeps fn alive, so its id is not reused
    return device


def device_functions(functions: dict[str, Callable]) -> dict[str, Callable]:
    """:meth:`Reduction.functions` with every function converted for CUDA."""
    return {role: device_function(fn) for role, fn in functions.items()}
