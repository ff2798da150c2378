"""Reductions: what a pooler computes over the real elements of one window.

A reduction is a handful of small Numba-jitted scalar functions.  The kernel templates in
:mod:`numbapool.kernels` splice them into loops; a reduction never sees array indices, padding
or layouts.  Two families cover the built-in poolers:

:class:`Selection`
    Picks one element of the window (max, min).  ``better(v, best) -> bool`` says whether ``v``
    replaces the current choice; the first real element of the window starts as the choice.
    The gradient goes to the selected element; indices come for free.

:class:`Streaming`
    Folds the window into an accumulator, then finishes it::

        acc = init(v0, prm)          # first real element
        acc = take(acc, v, prm)      # every other real element
        y   = finish(acc, div, prm)  # div: the window's divisor (see count_include_pad)
        dy/dv = grad(v, y, div, prm) # smooth gradient of y with respect to one element v

``prm`` is a float64 array holding the pooler's parameters in declared order.  Values reach the
functions already converted to the accumulator dtype.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Reduction", "Selection", "Streaming", "function_fingerprint"]


def _dispatcher_check(fn: object, role: str, owner: str) -> None:
    if not hasattr(fn, "py_func"):
        raise TypeError(
            f"reduction {owner!r}: {role} must be a numba.njit function, got {type(fn).__name__}"
        )


def function_fingerprint(fn: object) -> str:
    """A stable hash of a jitted function's code, so that kernels built on it are rebuilt
    (and their on-disk cache invalidated) when the function changes."""
    py = getattr(fn, "py_func", fn)
    code = py.__code__
    h = hashlib.sha256()
    h.update(code.co_code)
    h.update(repr(code.co_consts).encode())
    h.update(repr(code.co_names).encode())
    h.update(f"{py.__module__}.{py.__qualname__}".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Reduction:
    """Base class of reductions; see the module docstring for the contract."""

    name: str
    kind: str = field(init=False, default="")

    def functions(self) -> dict[str, Callable]:
        """The jitted functions, by the name the kernel templates call them."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        parts = [self.kind] + [f"{k}:{function_fingerprint(f)}"
                               for k, f in sorted(self.functions().items())]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    # dtype rules ---------------------------------------------------------------------------
    def accepts(self, dtype: np.dtype) -> bool:
        """Whether input arrays of ``dtype`` are supported."""
        return dtype.kind in "fiu"

    def acc_dtype(self, dtype: np.dtype) -> np.dtype:
        """Dtype the kernel accumulates in for input ``dtype``."""
        raise NotImplementedError

    def out_dtype(self, dtype: np.dtype) -> np.dtype:
        """Dtype of the result for input ``dtype``."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Selection(Reduction):
    """Selects one element per window (gradient routed to it; indices available).

    Parameters
    ----------
    name : str
        Identifier used in generated kernel names.
    better : numba dispatcher ``(v, best) -> bool``
        True when ``v`` should replace the current choice ``best``.  Scan order is row-major
        over the window, so returning False on ties keeps the first element.
    """

    better: Callable = None  # type: ignore[assignment]
    kind: str = field(init=False, default="selection")

    def __post_init__(self) -> None:
        _dispatcher_check(self.better, "better", self.name)

    def functions(self) -> dict[str, Callable]:
        return {"better": self.better}

    def accepts(self, dtype: np.dtype) -> bool:
        return dtype.kind in "fiub"

    def acc_dtype(self, dtype: np.dtype) -> np.dtype:
        return self.out_dtype(dtype)

    def out_dtype(self, dtype: np.dtype) -> np.dtype:
        return np.dtype(dtype)


@dataclass(frozen=True, eq=False)
class Streaming(Reduction):
    """Folds a window into an accumulator (smooth gradient).

    Parameters
    ----------
    name : str
        Identifier used in generated kernel names.
    init, take, finish, grad : numba dispatchers
        See the module docstring.
    integer_result : {"keep", "float64"}
        Result dtype for integer input: the input dtype (accumulating in 64-bit integers, as a
        sum does) or float64 (as a mean does).
    uses_divisor : bool
        Whether ``finish``/``grad`` use ``div``; if so the pooler accepts
        ``count_include_pad`` and ``divisor_override``.
    """

    init: Callable = None  # type: ignore[assignment]
    take: Callable = None  # type: ignore[assignment]
    finish: Callable = None  # type: ignore[assignment]
    grad: Callable = None  # type: ignore[assignment]
    integer_result: str = "float64"
    uses_divisor: bool = False
    kind: str = field(init=False, default="streaming")

    def __post_init__(self) -> None:
        for role in ("init", "take", "finish", "grad"):
            _dispatcher_check(getattr(self, role), role, self.name)
        if self.integer_result not in ("keep", "float64"):
            raise ValueError("integer_result must be 'keep' or 'float64'")

    def functions(self) -> dict[str, Callable]:
        return {"init": self.init, "take": self.take, "finish": self.finish, "grad": self.grad}

    def acc_dtype(self, dtype: np.dtype) -> np.dtype:
        dtype = np.dtype(dtype)
        if dtype.kind == "f":
            return np.dtype(np.float64 if dtype.itemsize == 8 else np.float32)
        if self.integer_result == "keep":
            return np.dtype(np.uint64 if dtype.kind == "u" else np.int64)
        return np.dtype(np.float64)

    def out_dtype(self, dtype: np.dtype) -> np.dtype:
        dtype = np.dtype(dtype)
        if dtype.kind == "f" or self.integer_result == "keep":
            return dtype
        return np.dtype(np.float64)
