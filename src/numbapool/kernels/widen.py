"""Convert an input value to the accumulator's type without adding anything.

The CPU kernels convert each input element to the type of the accumulator (float16 to
float32, integers to int64 or float64) before handing it to a reduction.  Written
``zero + v``, that is an addition per element, which the compiler must keep even where the
two types are the same: ``-0.0 + 0.0`` is ``+0.0``.  In a loop bound by the machine's
floating-point units it costs time (gem, p = 3, channels last 3x3/s2 of (8, 56, 56, 64):
9 additions per 16 outputs beside 34 multiplies and multiply-adds).  :func:`widen` gives
the type that ``zero + v`` has, by a conversion alone: nothing at all where the types are
the same.  The one difference in value is the sign of a zero: ``-0.0`` stays ``-0.0``.

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
