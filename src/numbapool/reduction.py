"""Reductions: what a pooler computes over the real elements of one window.

A reduction is a handful of small Numba-jitted scalar functions.  The kernel templates in
:mod:`numbapool.kernels` splice them into loops; a reduction never sees array indices, padding
or layouts.  In every signature ``v`` is one element (already converted to the accumulator
dtype; ``init`` gets a window's first element as ``+0.0 + v``, the others keep the sign of
a zero), ``tap`` its flat position in the full kernel window (row-major over the kernel's axes;
useful for per-tap weights), ``prm`` the pooler's float parameters for this channel (a 1-D
float64 array, in declared order), and ``div`` the window's divisor (see
``count_include_pad``; at most :data:`MAX_DIVISOR`).  Four families:

:class:`Selection` (max, min)
    ``better(v, best) -> bool``: whether ``v`` replaces the current choice; the window's first
    real element starts as the choice.  Gradients go to the selected element; indices come free.

:class:`Sampling` (stochastic pooling)
    ``mass(v, prm) -> float``: non-negative weight of an element.  Given a uniform ``u`` per
    output (drawn from the call's ``seed``), selects the first element whose cumulative mass
    exceeds ``u * total``.  Gradients and indices as for a selection.

:class:`Streaming` (sum, avg, lp, and most learned poolers)
    ``init(v, tap, prm) -> acc`` (first element), ``take(acc, v, tap, prm) -> acc`` (the
    others), ``finish(acc, div, prm) -> y``, and ``grad(v, tap, y, acc, div, prm) -> dy/dv``.
    The accumulator may be a scalar or a tuple.

:class:`Weighted` (softmax-like: two passes)
    First pass: statistics ``acc`` with ``init``/``take`` as above.  Second pass:
    ``y = sum(weight(v, tap, acc, div, prm) * v)``; ``grad(v, tap, y, acc, div, prm)``.

Trainable parameters (Streaming and Weighted): ``param_grad(v, tap, y, acc, div, prm, g, out)``
is called for every element of every window and adds ``g * (partial dy/dprm[k])`` into
``out[k]``; ``param_grad_window(y, acc, div, prm, g, out)`` adds the terms that belong to the
whole window.  Either may be omitted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numba
import numpy as np

__all__ = ["Reduction", "Selection", "Sampling", "Streaming", "Weighted", "MAX_DIVISOR",
           "function_fingerprint"]


MAX_DIVISOR = 2.0 ** 63
"""The largest ``div`` that ``finish`` and ``grad`` see (and the smallest is 1, or
``1 / MAX_DIVISOR`` for ``divisor_override``): ``pool`` rejects a ``divisor_override``
beyond these bounds, and windows that count more than this many taps of the padded input
(``count_include_pad``); a window of real elements holds fewer.  A reduction may rely on
it, as gem's cube root does to rule out subnormal means."""


@numba.njit(cache=True, nogil=True)
def no_param_grad(v, tap, y, acc, div, prm, g, out):
    """The default per-element parameter gradient: nothing."""


@numba.njit(cache=True, nogil=True)
def no_param_grad_window(y, acc, div, prm, g, out):
    """The default per-window parameter gradient: nothing."""


def _dispatcher_check(fn: object, role: str, owner: str) -> None:
    if not hasattr(fn, "py_func"):
        raise TypeError(
            f"reduction {owner!r}: {role} must be a numba.njit function, got {type(fn).__name__}"
        )


def function_fingerprint(fn: object, _seen: frozenset[int] = frozenset()) -> str:
    """A stable hash of a jitted function's code and of the jitted helpers it calls (through
    its globals or closure, recursively), so that kernels built on it are rebuilt (and
    their on-disk cache invalidated) when any of them changes: Numba's own cache checks the
    kernel's file, not the functions inlined into it."""
    py = getattr(fn, "py_func", fn)
    code = py.__code__
    h = hashlib.sha256()
    h.update(code.co_code)
    h.update(repr(code.co_consts).encode())
    h.update(repr(code.co_names).encode())
    h.update(f"{py.__module__}.{py.__qualname__}".encode())
    seen = _seen | {id(py)}
    scope = getattr(py, "__globals__", {})
    reached = [scope.get(name) for name in code.co_names]
    reached += [cell.cell_contents for cell in (getattr(py, "__closure__", None) or ())
                if _filled(cell)]
    for obj in reached:
        inner = getattr(obj, "py_func", None)
        if inner is not None and hasattr(inner, "__code__") and id(inner) not in seen:
            h.update(function_fingerprint(obj, seen).encode())
    return h.hexdigest()[:16]


def _filled(cell: object) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


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
class Sampling(Reduction):
    """Selects one element per window at random, with probability proportional to its mass.

    Parameters
    ----------
    name : str
        Identifier used in generated kernel names.
    mass : numba dispatcher ``(v, prm) -> float``
        Non-negative mass of an element.  A window of zero total mass selects its first
        element.
    """

    mass: Callable = None  # type: ignore[assignment]
    kind: str = field(init=False, default="sampling")

    def __post_init__(self) -> None:
        _dispatcher_check(self.mass, "mass", self.name)

    def functions(self) -> dict[str, Callable]:
        return {"mass": self.mass}

    def acc_dtype(self, dtype: np.dtype) -> np.dtype:
        return self.out_dtype(dtype)

    def out_dtype(self, dtype: np.dtype) -> np.dtype:
        return np.dtype(dtype)


@dataclass(frozen=True, eq=False)
class _Folding(Reduction):
    """Shared parts of the reductions that fold a window into an accumulator."""

    init: Callable = None  # type: ignore[assignment]
    take: Callable = None  # type: ignore[assignment]
    grad: Callable = None  # type: ignore[assignment]
    param_grad: Callable = no_param_grad
    param_grad_window: Callable = no_param_grad_window
    integer_result: str = "float64"
    uses_divisor: bool = False
    accumulator: str = "scalar"
    uses_tap: bool = True
    grad_uses_output: bool = True
    grad_uses_input: bool = True
    _roles: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        for role in self._roles + ("param_grad", "param_grad_window"):
            _dispatcher_check(getattr(self, role), role, self.name)
        if self.integer_result not in ("keep", "float64"):
            raise ValueError("integer_result must be 'keep' or 'float64'")
        if self.accumulator not in ("scalar", "tuple"):
            raise ValueError("accumulator must be 'scalar' or 'tuple'")

    def functions(self) -> dict[str, Callable]:
        fns = {role: getattr(self, role) for role in self._roles}
        fns["pgrad"] = self.param_grad
        fns["pgradw"] = self.param_grad_window
        for role in ("merge", "premap"):
            if getattr(self, role, None) is not None:
                fns[role] = getattr(self, role)
        return fns

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


@dataclass(frozen=True, eq=False)
class Streaming(_Folding):
    """Folds a window into an accumulator, then finishes it (smooth gradient).

    Parameters
    ----------
    name : str
        Identifier used in generated kernel names.
    init, take, finish, grad : numba dispatchers
        See the module docstring.
    param_grad, param_grad_window : numba dispatchers, optional
        Gradients with respect to trainable parameters (module docstring).
    integer_result : {"keep", "float64"}
        Result dtype for integer input: the input dtype (accumulating in 64-bit integers, as a
        sum does) or float64 (as a mean does).
    uses_divisor : bool
        Whether ``finish``/``grad`` use ``div``; if so the pooler accepts
        ``count_include_pad`` and ``divisor_override``.
    accumulator : {"scalar", "tuple"}
        The accumulator's kind.  The channels-last kernels (forward, gradients) hold a
        tuple as an array a component, so that their loops over the channels vectorise (if
        ``init`` and ``take`` do: see docs/plugins.md, "Tuple accumulators"); channels
        first they fold a window at a time, one element at a time.
    grad_uses_acc : bool
        Whether ``grad`` reads ``acc``.  If not, backward kernels skip recomputing each window's
        accumulator and pass a zero instead.
    grad_uses_output : bool
        Whether ``grad`` reads ``y``.  If not (a sum, a mean), ``pool_grad`` skips the forward
        pass that computes it and ``y`` is meaningless there.
    grad_uses_input : bool
        Whether ``grad`` reads ``v`` or ``tap``.  A reduction whose ``grad`` reads none of
        ``v``, ``tap``, ``y`` and ``acc`` (a sum, a mean) is linear: its input gradient is
        the output gradient times one weight per window, summed over the windows that read
        each element.  Channels-first backward passes over shared windows then gather it
        row by row without reading the input.
    merge : numba dispatcher ``(acc_a, acc_b, prm) -> acc``, optional
        Combines the accumulators of two disjoint parts of a window (``take`` is then
        associative).  Lets large windows (global pooling) fold with several independent
        accumulators.
    uses_tap : bool
        Whether ``init``/``take`` read ``tap``.  If not, and with ``merge``, channels-first
        windows fold column by column (each window's rows first, then its columns), which
        is several times faster for 2-D and 3-D windows.
    branchless : bool
        Whether ``init`` and ``take`` have no branches once compiled (conditional
        expressions that become selects are fine; a test on a parameter, such as
        :func:`numbapool.vmath.power`'s, is a branch), and return the accumulator's type (a
        float32 sum stays float32, as the loops that store it make it).  If so, channels-last
        2-D windows of 2x2 to 3x3 taps fold in one loop over the channels, the accumulator
        in a register (avg 3x3/s2 of (8, 56, 56, 64) float32 about 1.5x faster).  Leave it
        False when in doubt: with a branch in that loop the compiler no longer vectorises it
        (lp's ``power`` made the pass 5 times slower, a general gem's 13 times).
    premap : numba dispatcher ``(v, prm) -> acc``, optional
        What each element adds to a window's sum, where the reduction is such a sum:
        ``init(v, tap, prm) == premap(v, prm)`` and ``take(acc, v, tap, prm) == acc +
        premap(v, prm)`` (with ``merge`` the sum, and ``uses_tap`` False).  Where windows
        overlap, the forward pass may then compute it once per element, into a scratch
        array, and sum that (:class:`numbapool.kernels.mapped.MappedPlan`), rather than
        once per tap.  Declare it where it is costly: a power by ``vpow`` (gem and lp with a
        general ``p``).
    """

    finish: Callable = None  # type: ignore[assignment]
    grad_uses_acc: bool = True
    merge: Callable | None = None
    branchless: bool = False
    premap: Callable | None = None
    kind: str = field(init=False, default="streaming")
    _roles: tuple[str, ...] = field(init=False, default=("init", "take", "finish", "grad"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.premap is not None:
            _dispatcher_check(self.premap, "premap", self.name)
            if self.merge is None or self.uses_tap or self.accumulator != "scalar":
                raise ValueError(f"reduction {self.name!r}: premap needs merge, a scalar "
                                 "accumulator and uses_tap=False (a sum of one value per "
                                 "element)")


@dataclass(frozen=True, eq=False)
class Weighted(_Folding):
    """Two passes: statistics of the window, then a weighted sum ``sum(weight(v) * v)``.

    Parameters
    ----------
    name : str
        Identifier used in generated kernel names.
    init, take : numba dispatchers
        First pass: the window's statistics (scalar or tuple accumulator).
    weight : numba dispatcher ``(v, tap, acc, div, prm) -> float``
        Second pass: each element's weight.
    grad : numba dispatcher ``(v, tap, y, acc, div, prm) -> float``
        ``dy/dv`` (including the weights' dependence on ``v``).
    param_grad, param_grad_window, integer_result, uses_divisor, accumulator, uses_tap, \
grad_uses_output, grad_uses_input
        As for :class:`Streaming`.
    """

    weight: Callable = None  # type: ignore[assignment]
    kind: str = field(init=False, default="weighted")
    _roles: tuple[str, ...] = field(init=False, default=("init", "take", "weight", "grad"))
