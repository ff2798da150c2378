"""The built-in reductions, written exactly as a plugin would write its own."""

from __future__ import annotations

import numba

from ..reduction import Selection, Streaming
from ..vmath import power, root, vpow

__all__ = ["MAX", "MIN", "SUM", "AVG", "LP", "LP_SQUARE", "LP_POW"]

_jit = numba.njit(cache=True, nogil=True)


# Selection: NaN wins (PyTorch's rule: a NaN replaces the choice, so NaN propagates) -------
@_jit
def max_better(v, best):
    return (v > best) | (v != v)  # no short-circuit: compiles to a select, vectorises


@_jit
def min_better(v, best):
    return (v < best) | (v != v)


# Sum and mean ------------------------------------------------------------------------------
@_jit
def sum_init(v, tap, prm):
    return v


@_jit
def sum_take(acc, v, tap, prm):
    return acc + v


@_jit
def sum_merge(a, b, prm):
    return a + b


@_jit
def sum_finish(acc, div, prm):
    return acc


@_jit
def sum_grad(v, tap, y, acc, div, prm):
    return 1.0


@_jit
def avg_finish(acc, div, prm):
    return acc / div


@_jit
def avg_grad(v, tap, y, acc, div, prm):
    return 1.0 / div


# Power mean without the mean: (sum v**p) ** (1/p), PyTorch's lp_pool; prm[0] = p ---------
@_jit
def lp_init(v, tap, prm):
    return power(v, prm[0])


@_jit
def lp_take(acc, v, tap, prm):
    return acc + power(v, prm[0])


@_jit
def lp_finish(acc, div, prm):
    return root(acc, prm[0])


@_jit
def lp_grad(v, tap, y, acc, div, prm):
    if y == 0.0:  # an all-zero window: 0, as PyTorch's lp_pool gives
        return 0.0 * v
    p = prm[0]
    return power(v / y, p - 1.0)  # v**(p-1) y**(1-p): one power, so the loop vectorises


# lp with p = 2 (its default): the same pooler with squares and a square root, which have no
# branches (power's tests on p are branches), so channels-last windows up to 3x3 fold in one
# loop (Streaming.branchless); on the CPU the results are LP's with p = 2, bit for bit (on a
# GPU, LP's powers of float32 values come out float64, from the float64 p, and LP_SQUARE's
# float32: the last bits may differ there)
@_jit
def lp2_init(v, tap, prm):
    return v * v


@_jit
def lp2_take(acc, v, tap, prm):
    return acc + v * v


@_jit
def lp2_finish(acc, div, prm):
    return root(acc, 2.0)  # (np.sqrt once compiled; math.sqrt on a GPU)


# lp with p other than 1 to 4: vpow itself, no tests on p.  power(v, p)'s tests stay in the
# channels-first column kernels' loops (as products for p of 1 to 4 they cost little), which
# then raise one element at a time to p: lp with p = 2.5, (8, 64, 56, 56) float32 3x3/s2/p1
# channels first, took 22.7 ms against 2.4 ms with vpow (avg: 0.27 ms).  The same values as
# LP's for such p, bit for bit (power is vpow there), but for the gradient at p = 5, where
# LP's power(v / y, 4) multiplies (a few ulp apart).
@_jit
def lpv_init(v, tap, prm):
    return vpow(v, prm[0])


@_jit
def lpv_take(acc, v, tap, prm):
    return acc + vpow(v, prm[0])


@_jit
def lpv_finish(acc, div, prm):
    return vpow(acc, 1.0 / prm[0])


@_jit
def lpv_premap(v, prm):
    return vpow(v, prm[0])


@_jit
def lpv_grad(v, tap, y, acc, div, prm):
    if y == 0.0:
        return 0.0 * v
    return vpow(v / y, prm[0] - 1.0)


MAX = Selection("max", better=max_better)
MIN = Selection("min", better=min_better)
SUM = Streaming("sum", init=sum_init, take=sum_take, finish=sum_finish, grad=sum_grad,
                integer_result="keep", grad_uses_acc=False, grad_uses_output=False,
                grad_uses_input=False, merge=sum_merge, uses_tap=False, branchless=True)
AVG = Streaming("avg", init=sum_init, take=sum_take, finish=avg_finish, grad=avg_grad,
                uses_divisor=True, grad_uses_acc=False, grad_uses_output=False,
                grad_uses_input=False, merge=sum_merge, uses_tap=False, branchless=True)
LP = Streaming("lp", init=lp_init, take=lp_take, finish=lp_finish, grad=lp_grad,
               grad_uses_acc=False, merge=sum_merge, uses_tap=False)
LP_POW = Streaming("lp_pow", init=lpv_init, take=lpv_take, finish=lpv_finish, grad=lpv_grad,
                   grad_uses_acc=False, merge=sum_merge, uses_tap=False, premap=lpv_premap)
LP_SQUARE = Streaming("lp_square", init=lp2_init, take=lp2_take, finish=lp2_finish,
                      grad=lp_grad, grad_uses_acc=False, merge=sum_merge, uses_tap=False,
                      branchless=True)
