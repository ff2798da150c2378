"""The reductions of the learned poolers: small jitted scalar functions, nothing else.

Conventions (see ``numbapool.reduction``): ``v`` an element, ``tap`` its position in the
kernel, ``prm`` this channel's float parameters in declared order, ``div`` the number of
elements the mean divides by, ``acc`` the accumulator, ``y`` the pooled value.
"""

from __future__ import annotations

import numba

from numbapool import MAX_DIVISOR, Sampling, Streaming, Weighted
from numbapool.vmath import power, vcbrt, vcbrt_normal, vconst, vexp, vfma, vlog, vpow

_jit = numba.njit(cache=True, nogil=True)


# gem: prm = [p, eps]; acc = sum(clamp(v, eps) ** p) -------------------------------------
@_jit
def _clamp(v, eps):
    """``max(v, eps)``, NaN kept, written as the select it is: with ``max(v, eps)`` the
    channels-first column kernel of gem ran 1.4x slower (measured against this form, which
    costs nothing beside avg)."""
    return eps if v < eps else v


@_jit
def gem_init(v, tap, prm):
    return power(_clamp(v, prm[1]), prm[0])


@_jit
def gem_take(acc, v, tap, prm):
    return acc + power(_clamp(v, prm[1]), prm[0])


@_jit
def gem_merge(a, b, prm):
    return a + b


@_jit
def gem_finish(acc, div, prm):
    return vpow(acc / div, 1.0 / prm[0])


@_jit
def gem_grad(v, tap, y, acc, div, prm):
    if v < prm[1]:  # clamped
        return 0.0
    p = prm[0]
    return power(v / y, p - 1.0) / div  # v**(p-1) y**(1-p): one power, so the loop vectorises


@_jit
def gem_param_grad(v, tap, y, acc, div, prm, g, out):
    p = prm[0]
    c = _clamp(v, prm[1])
    # (y**(1-p) c**p; vpow, not power(): power's tests on p stayed in the channels-last
    # loop, which then ran one element at a time)
    out[0] += g * y * vpow(c / y, p) * vlog(c) / (p * div)


@_jit
def gem_param_grad_window(y, acc, div, prm, g, out):
    out[0] -= g * y * vlog(y) / prm[0]


GEM = Streaming("gem", init=gem_init, take=gem_take, finish=gem_finish, grad=gem_grad,
                param_grad=gem_param_grad, param_grad_window=gem_param_grad_window,
                uses_divisor=True, grad_uses_acc=False, merge=gem_merge, uses_tap=False)


# gem with p other than 1 to 4 (as a trained p becomes): vpow itself, no tests on p.
# power()'s tests stay in the channels-first column kernels' loops, which then raised one
# element at a time to p: p = 2.5, (8, 64, 56, 56) float32 3x3/s2/p1 channels first, 28.9
# ms against 2.9 ms with vpow (avg: 0.27 ms).  The same values as GEM's for such p (but the
# gradient at p = 5, whose power(v / y, 4) GEM multiplies); with p per channel, one such p
# sends every channel through vpow, those with p of 1 to 4 too (their last bits may move).
@_jit
def gemv_init(v, tap, prm):
    return vpow(_clamp(v, prm[1]), prm[0])


@_jit
def gemv_take(acc, v, tap, prm):
    return acc + vpow(_clamp(v, prm[1]), prm[0])


@_jit
def gemv_premap(v, prm):
    return vpow(_clamp(v, prm[1]), prm[0])


@_jit
def gemv_grad(v, tap, y, acc, div, prm):
    if v < prm[1]:
        return 0.0
    return vpow(v / y, prm[0] - 1.0) / div


GEM_POW = Streaming("gem_pow", init=gemv_init, take=gemv_take, finish=gem_finish,
                    grad=gemv_grad, param_grad=gem_param_grad,
                    param_grad_window=gem_param_grad_window, uses_divisor=True,
                    grad_uses_acc=False, merge=gem_merge, uses_tap=False,
                    premap=gemv_premap)


# gem with p = 3 (its default): the same pooler, with products for the powers and a cube root
# for the root, chosen by the pooler when every channel's p is 3.  vpow(m, 1/3) is about 90
# vector instructions per 16 outputs and cost gem 1.7-2.2x the time of avg; vcbrt about 30.
@_jit
def gem3_init(v, tap, prm):
    c = _clamp(v, prm[1])
    return c * c * c


@_jit
def gem3_take(acc, v, tap, prm):
    c = _clamp(v, prm[1])
    return vfma(c * c, c, acc)


@_jit
def gem3_finish(acc, div, prm):
    # the mean as a product in the precision of acc (vfma converts 1 / div to it), so that
    # the division is made once per window, not once per channel
    return vcbrt_normal(vfma(acc, 1.0 / div, 0.0))


@_jit
def gem3_finish_small_eps(acc, div, prm):
    return vcbrt(vfma(acc, 1.0 / div, 0.0))


@_jit
def gem3_param_grad(v, tap, y, acc, div, prm, g, out):
    # gem_param_grad with p = 3: (c / y)**3 as products, no test on p in the loop (power()'s
    # tests stayed in the channels-last loop, which then ran one element at a time)
    c = _clamp(v, prm[1])
    r = c / y
    out[0] += g * y * (r * r * r) * vlog(c) / (3.0 * div)


@_jit
def gem3_grad(v, tap, y, acc, div, prm):
    if v < prm[1]:
        return 0.0
    r = v / y
    return r * r / div


GEM_CUBE = Streaming("gem_cube", init=gem3_init, take=gem3_take, finish=gem3_finish,
                     grad=gem3_grad, param_grad=gem3_param_grad,
                     param_grad_window=gem_param_grad_window, uses_divisor=True,
                     grad_uses_acc=False, merge=gem_merge, uses_tap=False, branchless=True)

# Its finish takes the cube root of a mean of clamp(v, eps)**3, at least eps**3 / div: with
# div at most MAX_DIVISOR (2**63) and eps**3 at least 2**-61 that is 2**-124 or more, four
# times float32's smallest normal number (room for the roundings of the cubes, their sum and
# 1 / div), and never negative; so vcbrt_normal, without the steps for subnormals and signs
# (gem 3x3/s2 of (8, 56, 56, 64) float32 channels last 0.90 of the time, channels first
# 0.94).  A smaller eps (below 7.6e-7; the default is 1e-6) takes GEM_CUBE_SMALL_EPS.
GEM_CUBE_MIN_EPS = (2.0 ** -124 * MAX_DIVISOR) ** (1.0 / 3.0)
GEM_CUBE_SMALL_EPS = Streaming(
    "gem_cube_small_eps", init=gem3_init, take=gem3_take, finish=gem3_finish_small_eps,
    grad=gem3_grad, param_grad=gem3_param_grad, param_grad_window=gem_param_grad_window,
    uses_divisor=True, grad_uses_acc=False, merge=gem_merge, uses_tap=False,
    branchless=True)


# mixed: prm = [alpha]; acc = (max, tap of the first max, sum) ----------------------------
@_jit
def max_sum_init(v, tap, prm):
    return (v, tap, v)


@_jit
def max_sum_take(acc, v, tap, prm):
    m, mt, s = acc
    if v > m or v != v:  # as max pooling: NaN wins, ties keep the first
        return (v, tap, s + v)
    return (m, mt, s + v)


@_jit
def mixed_finish(acc, div, prm):
    a = prm[0]
    return a * acc[0] + (1.0 - a) * acc[2] / div


@_jit
def mixed_grad(v, tap, y, acc, div, prm):
    a = prm[0]
    return a * (tap == acc[1]) + (1.0 - a) / div


@_jit
def mixed_param_grad_window(y, acc, div, prm, g, out):
    out[0] += g * (acc[0] - acc[2] / div)


MIXED = Streaming("mixed", init=max_sum_init, take=max_sum_take, finish=mixed_finish,
                  grad=mixed_grad, param_grad_window=mixed_param_grad_window,
                  uses_divisor=True, accumulator="tuple")


# gated: prm = w (one weight per tap); acc = (max, tap of max, sum, z = sum w[tap] v) -----
@_jit
def gated_init(v, tap, prm):
    return (v, tap, v, prm[tap] * v)


@_jit
def gated_take(acc, v, tap, prm):
    m, mt, s, z = acc
    z = z + prm[tap] * v
    if v > m or v != v:
        return (v, tap, s + v, z)
    return (m, mt, s + v, z)


@_jit
def _sigmoid(z):
    return 1.0 / (1.0 + vexp(-z))


@_jit
def gated_finish(acc, div, prm):
    g = _sigmoid(acc[3])
    return g * acc[0] + (1.0 - g) * acc[2] / div


@_jit
def gated_grad(v, tap, y, acc, div, prm):
    g = _sigmoid(acc[3])
    return g * (tap == acc[1]) + (1.0 - g) / div + g * (1.0 - g) * prm[tap] * (
        acc[0] - acc[2] / div)


@_jit
def gated_param_grad(v, tap, y, acc, div, prm, g, out):
    s = _sigmoid(acc[3])
    out[tap] += g * s * (1.0 - s) * (acc[0] - acc[2] / div) * v


GATED = Streaming("gated", init=gated_init, take=gated_take, finish=gated_finish,
                  grad=gated_grad, param_grad=gated_param_grad, uses_divisor=True,
                  accumulator="tuple")


# lse: prm = [r]; acc = (max, sum exp(r (v - max))) -----------------------------------------
@_jit
def max_expsum_init(v, tap, prm):
    """(running max, sum of exp(r (v - max))): 1 for the first element (also softpool's),
    in the element's type (a float64 1.0 made float32 sums float64)."""
    return (v, vconst(1.0, v))


# The takes compute one exp, of -|r (v - max)|, and both branches are a few operations on
# it: the channels-last loops then vectorise (an exp in each branch did not: lse 3x3/s2 of
# (8, 56, 56, 64) float32 on one thread, 22.9 against 1.9 ms in a prototype kernel).
@_jit
def lse_take(acc, v, tap, prm):
    m, s = acc
    e = vexp(-abs(prm[0] * (v - m)))
    if v > m:  # (exp(r (m - v)): the old sum rescaled to the new max)
        return (v, vfma(s, e, 1.0))
    return (m, s + e)


@_jit
def lse_finish(acc, div, prm):
    return acc[0] + vlog(vfma(acc[1], 1.0 / div, 0.0)) / prm[0]


# The input's gradient reads y, not the accumulator: exp(r (v - max)) / s is
# exp(r (v - y)) / div, since y = max + log(s / div) / r (PyTorch's logsumexp backward is the
# same exp(x - y)), and r (v - y) is at most log(div), so it does not overflow.  The backward
# kernels then fold no window again: lse 3x3/s2/p1 of (8, 56, 56, 64) float32, pool_grad
# channels last 13.2 -> 2.6 ms.  (dL/dr keeps the accumulator: it sums v exp(r (v - y)) / r
# and subtracts y / r, which cancel, and float32's rounding of y then showed, 1e-3 of it.)
@_jit
def lse_grad(v, tap, y, acc, div, prm):
    return vexp(prm[0] * (v - y)) / div


@_jit
def lse_param_grad(v, tap, y, acc, div, prm, g, out):
    r = prm[0]
    out[0] += g * v * vexp(r * (v - acc[0])) / (r * acc[1])


@_jit
def lse_param_grad_window(y, acc, div, prm, g, out):
    out[0] -= g * y / prm[0]


LSE = Streaming("lse", init=max_expsum_init, take=lse_take, finish=lse_finish, grad=lse_grad,
                param_grad=lse_param_grad, param_grad_window=lse_param_grad_window,
                uses_divisor=True, accumulator="tuple", grad_uses_acc=False)


# softpool: weights softmax(x) over the window; stats = (max, sum exp(v - max)) ------------
@_jit
def softmax_take(acc, v, tap, prm):
    m, s = acc
    e = vexp(-abs(v - m))  # (one exp, as lse_take)
    if v > m:
        return (v, vfma(s, e, 1.0))
    return (m, s + e)


@_jit
def softpool_weight(v, tap, acc, div, prm):
    return vexp(v - acc[0]) / acc[1]


@_jit
def softpool_grad(v, tap, y, acc, div, prm):
    return vexp(v - acc[0]) / acc[1] * (1.0 + v - y)


SOFTPOOL = Weighted("softpool", init=max_expsum_init, take=softmax_take, weight=softpool_weight,
                    grad=softpool_grad, accumulator="tuple")


# stochastic: mass relu(v); expectation weights relu(v) / sum relu ------------------------
@_jit
def relu_mass(v, prm):
    return max(v, 0.0)


@_jit
def relu_sum_init(v, tap, prm):
    return max(v, 0.0)


@_jit
def relu_sum_take(acc, v, tap, prm):
    return acc + max(v, 0.0)


@_jit
def expectation_weight(v, tap, acc, div, prm):
    if acc <= 0.0:
        return 0.0
    return max(v, 0.0) / acc


@_jit
def expectation_grad(v, tap, y, acc, div, prm):
    if acc <= 0.0 or v <= 0.0:
        return 0.0
    return (2.0 * v - y) / acc


STOCHASTIC = Sampling("stochastic", mass=relu_mass)
STOCHASTIC_EXPECTATION = Weighted("stochastic_expectation", init=relu_sum_init,
                                  take=relu_sum_take, weight=expectation_weight,
                                  grad=expectation_grad)
