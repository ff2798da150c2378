"""Convert an input value to the accumulator's type without adding anything.

The CPU kernels convert each input element to the type of the accumulator (a float to
itself, integers to int64, uint64 or float64) before handing it to a reduction.  Written
``zero + v``, that is an addition per element, which the compiler must keep even where the
two types are the same: ``-0.0 + 0.0`` is ``+0.0``.  In a loop bound by the machine's
floating-point units it costs time: gem (p = 3) channels last, 3x3/s2 of (8, 56, 56, 64),
made 9 such additions per 16 outputs beside 34 multiplies and multiply-adds (18 for the
cubes, 16 for the mean and its cube root).  :func:`widen` gives the type that ``zero + v``
has, by a conversion alone: nothing at all where the types are the same.  It differs in
value only in the sign of a zero (``-0.0`` stays ``-0.0``) and in that a signalling NaN is
not made quiet (the reduction's next operation does that).

The kernels use it for every value given to ``take``, ``grad``, ``weight`` and
``param_grad``; ``init`` still gets ``zero + v``, once a window, so that a window of negative
zeros sums to +0.0 as NumPy's and PyTorch's sums do.  Measured on an AMD Zen 4, each kernel
against itself with the additions, in one process (2 threads, (8, 64, 56, 56) 3x3/s2/p1):
gem channels last 0.86-0.92 of the time, avg 0.81-1.0, the channels-first column kernels
(which fold with ``init`` and ``merge``) unchanged.

(Generated CUDA modules define their own ``_widen`` as ``zero + v``
(:data:`numbapool.kernels.cuda_templates.CUDA_HEADER`): they also run under Numba's CUDA
simulator, which runs a kernel as Python and cannot call an intrinsic.)
"""

from __future__ import annotations

import operator

from numba.core import types
from numba.extending import intrinsic

__all__ = ["widen"]


@intrinsic
def widen(typingctx, v, like):
    """``v`` as a value of the type of ``like + v`` (NumPy's promotion, as Numba types the
    addition), converted without adding ``like``; for numbers only."""
    if not all(isinstance(t, (types.Number, types.Boolean)) for t in (v, like)):
        return None
    result = typingctx.resolve_function_type(operator.add, (like, v), {})
    if result is None:
        return None
    target = result.return_type

    def codegen(context, builder, signature, args):
        return context.cast(builder, args[0], signature.args[0], target)

    return target(v, like), codegen
