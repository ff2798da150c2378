"""Forward passes of a sum of one value per element (``Streaming.premap``): map, then sum.

gem with a trained ``p`` adds ``clamp(v, eps) ** p`` over a window, a ``vpow`` (about 90
vector instructions a 16 elements) per tap: a 3x3/s2 window reads each element 2.25 times on
average, so the pass raised each element to ``p`` 2.25 times, where PyTorch's
``avg_pool(x.clamp(eps) ** p) ** (1 / p)`` raises it once.  A reduction that declares
``premap`` (``init(v) == premap(v)``, ``take(acc, v) == acc + premap(v)``) runs here as the
``map`` kernel (:func:`numbapool.kernels.templates._map`), ``premap`` of every element into a
scratch array, then the kernels of :func:`summed`, the same reduction over those values
(``init`` the value, ``take`` a sum, its ``finish``), on every layout and path the planner
gives a linear reduction (column-first kernels, folded channels-last windows, tiles of small
planes).  Where windows overlap less (:data:`MAP_MIN_READS`) the extra pass over memory costs
more than the powers it saves, and the reduction runs as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from .. import buffers
from ..builtin.reductions import sum_init, sum_merge, sum_take
from ..geometry import AxisWindows
from ..reduction import Reduction, Streaming

__all__ = ["MAP_MIN_READS", "MappedPlan", "pays", "summed"]

MAP_MIN_READS = 1.5
"""The reads of each input element (window taps over input elements) from which a forward
pass maps first: 3x3/s2 windows read each 2.25 times, 2x2/s2 and whole planes once."""

@numba.njit(cache=True, nogil=True)
def _forward_only(v, tap, y, acc, div, prm):
    raise ValueError("the sum of mapped values runs forward passes only")


_SUMMED: dict[int, tuple[Reduction, Streaming]] = {}


def summed(reduction: Streaming) -> Streaming:
    """``reduction`` over the values its ``premap`` gave: the built-in sum's ``init``,
    ``take`` and ``merge``, its own ``finish`` and divisors; forward only (its ``grad``
    raises).  One object per reduction (kernels are kept by reduction)."""
    entry = _SUMMED.get(id(reduction))
    if entry is None:
        entry = _SUMMED[id(reduction)] = (reduction, Streaming(
            f"{reduction.name}_summed", init=sum_init, take=sum_take, finish=reduction.finish,
            grad=_forward_only, integer_result=reduction.integer_result,
            uses_divisor=reduction.uses_divisor, grad_uses_acc=False, merge=sum_merge,
            uses_tap=False, branchless=True))
    return entry[1]


def pays(reduction: Reduction, x: np.ndarray, axes: Sequence[AxisWindows],
         with_indices: bool) -> bool:
    """Whether the forward pass of ``x`` maps first: a reduction with ``premap``, values
    only, floating input that it accumulates in its own type, not empty (no channels: the
    channels-last map kernel steps by the channels), windows every plane shares, and each
    element read at least :data:`MAP_MIN_READS` times."""
    if (not isinstance(reduction, Streaming) or reduction.premap is None or with_indices
            or x.size == 0 or x.dtype.kind != "f" or reduction.acc_dtype(x.dtype) != x.dtype
            or any(a.planes != 1 for a in axes)):
        return False
    taps = math.prod(int(a.count[0].sum()) for a in axes)
    return taps >= MAP_MIN_READS * math.prod(a.length for a in axes)


@dataclass(frozen=True)
class MappedPlan:
    """The ``map`` kernel (``premap`` of every element into a scratch array of the input's
    shape), then ``inner``, the plan of :func:`summed` for that array."""

    kernel: object  # (the reduction's ``map`` kernel, a Launcher)
    inner: object
    zero: np.generic
    prm: object  # (for_kernel's form)

    @property
    def args(self) -> tuple:
        """The inner plan's arguments after its arrays (as :attr:`ForwardPlan.args`)."""
        return self.inner.args

    def run(self, x: np.ndarray, u: np.ndarray | None = None, before: object = None
            ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(out, None)`` for ``x``, C-contiguous 5-D (no ``u`` or ``before``)."""
        if u is not None or before is not None:
            raise ValueError("a mapped pass takes neither u nor before")
        mapped = buffers.empty(x.shape, x.dtype)
        self.kernel(x, mapped, self.zero, self.prm)
        return self.inner.run(mapped)
