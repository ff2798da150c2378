"""A jitted function's Python function again, with some of what it calls replaced.

Both compilations of a reduction's functions that the kernels need, the version inlined into
CPU kernels (:func:`numbapool.kernels.codegen.kernel_version`) and the CUDA device function
(:func:`numbapool.kernels.cuda_functions.device_function`), recompile the Python function
with the jitted helpers it reaches through its globals or closure converted the same way.
"""

from __future__ import annotations

import types
from collections.abc import Callable

from numba.core.dispatcher import Dispatcher

__all__ = ["is_jitted", "rebound"]


def is_jitted(obj: object) -> bool:
    """Whether ``obj`` is a Numba dispatcher with its Python function."""
    return isinstance(obj, Dispatcher) and hasattr(obj, "py_func")


def rebound(fn: Callable, replace: Callable[[object], object | None]) -> types.FunctionType:
    """``fn``'s Python function with every global it names and every closure cell's content
    replaced by ``replace(value)`` wherever that is not None (``fn`` itself is untouched)."""
    py = fn.py_func
    scope = dict(py.__globals__)
    for name in py.__code__.co_names:
        new = replace(scope.get(name))
        if new is not None:
            scope[name] = new
    closure = None
    if py.__closure__:
        closure = tuple(cell if (new := replace(cell.cell_contents)) is None
                        else types.CellType(new) for cell in py.__closure__)
    clone = types.FunctionType(py.__code__, scope, py.__name__, py.__defaults__, closure)
    clone.__qualname__ = py.__qualname__
    clone.__module__ = py.__module__
    return clone
