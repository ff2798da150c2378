"""How a CPU kernel receives a pooler's float parameters, and reads one channel's.

``prm`` is float64 ``(rows, width)`` with ``rows`` 1 (shared) or C (per channel).  A kernel
that indexes a row of that array inside its loops reloads the parameters on every element:
the compiler cannot prove that the stores to the output leave them unchanged, so a reduction's
test on a parameter (``if p == 3.0``, say) stays inside the loop, and the loop does not
vectorise.  So narrow parameter sets go to the kernels as a tuple of columns (one array per
parameter), and :func:`row` turns one channel's into a tuple of scalars: values in
registers, hoisted out of the loops.  Reductions index either form the same way
(``prm[0]``).

The columns are in the accumulator's precision when that is float32, so that a float32
reduction computes in float32 (twice the SIMD lanes of float64, and no conversions): as
PyTorch computes float32 pooling.
"""

from __future__ import annotations

import numpy as np
from numba.core import types
from numba.extending import overload

__all__ = ["MAX_TUPLE_WIDTH", "for_kernel", "lane", "row", "rows"]

MAX_TUPLE_WIDTH = 8
"""Wider parameter sets (per-tap weights of large windows) stay one array: a tuple's
elements indexed by a run-time position compile to a chain of branches."""


def for_kernel(prm: np.ndarray, zero: np.generic) -> np.ndarray | tuple[np.ndarray, ...]:
    """The form of ``prm`` the CPU kernels take: a tuple of its columns if it has 1 to
    :data:`MAX_TUPLE_WIDTH` of them (float32 if the accumulator ``zero`` is), else the float64
    array itself."""
    if not 0 < prm.shape[1] <= MAX_TUPLE_WIDTH:
        return prm
    dtype = np.float32 if np.asarray(zero).dtype == np.float32 else np.float64
    return tuple(np.ascontiguousarray(prm[:, k], dtype=dtype) for k in range(prm.shape[1]))


def row(prm, i):
    """Channel ``i``'s parameters (``i`` taken modulo the number of rows)."""
    if isinstance(prm, tuple):
        return tuple(col[i % col.shape[0]] for col in prm)
    return prm[i % prm.shape[0]]


def lane(prm, i):
    """Channel ``i``'s parameters where every channel has its own (``0 <= i < rows``), for
    the loops over the channels of the channels-last kernels: one parameter of consecutive
    channels is consecutive in its column, so such a loop vectorises (no modulo, no negative
    index)."""
    if isinstance(prm, tuple):
        return tuple(col[i] for col in prm)
    return prm[i]


def rows(prm):
    """The number of parameter rows (1 or the channel count)."""
    return prm[0].shape[0] if isinstance(prm, tuple) else prm.shape[0]


def _tuple_of(width: int, index: str):
    """The implementation for a tuple of ``width`` columns: the tuple of column ``k``'s
    element ``j`` for each ``k``, ``j`` being ``index`` (an expression of ``prm`` and
    ``i``)."""
    items = "".join(f"prm[{k}][j], " for k in range(width))
    scope: dict = {"np": np}
    exec(f"def impl(prm, i):\n    j = {index}\n    return ({items})\n",  # noqa: S102
         scope)
    return scope["impl"]


# (Compiled as functions of their own, which LLVM inlines into the kernels: inlined in
# Numba's IR instead, ``row`` took 0.25 s of a fractional avg kernel's 1.75 s compile.)
@overload(row, inline="never")
def _row(prm, i):
    if isinstance(prm, types.Array):
        return lambda prm, i: prm[i % prm.shape[0]]
    if isinstance(prm, types.UniTuple) and isinstance(prm.dtype, types.Array):
        return _tuple_of(prm.count, "i % prm[0].shape[0]")
    return None


@overload(lane, inline="never")
def _lane(prm, i):
    if isinstance(prm, types.Array):
        return lambda prm, i: prm[np.uint64(i)]
    if isinstance(prm, types.UniTuple) and isinstance(prm.dtype, types.Array):
        return _tuple_of(prm.count, "np.uint64(i)")
    return None


@overload(rows, inline="never")
def _rows(prm):
    if isinstance(prm, types.Array):
        return lambda prm: prm.shape[0]
    if isinstance(prm, types.UniTuple) and isinstance(prm.dtype, types.Array):
        return lambda prm: prm[0].shape[0]
    return None
