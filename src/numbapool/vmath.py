"""Elementary functions that vectorise: ``vexp``, ``vlog`` and ``vpow``.

Numba lowers ``math.exp``, ``math.log`` and ``**`` with a non-integer exponent to a libm call
per element, and llvmlite is built without a vector math library (``numba -s``: no SVML), so a
loop that calls them runs one element at a time: a generalised mean's ``(mean) ** (1/p)``
costs more than the rest of the pooling.  These are written in arithmetic, selects and bit
casts only; Numba inlines them (they are overloads with ``inline="always"``), so a loop
over them becomes SIMD code.

They compute in the precision of their (first) argument: float32 in float32 (twice the lanes
of float64), anything else in float64.

Accuracy, in units in the last place (ulp) of the result's type: ``vlog`` and ``vexp`` within
2.  ``vpow(x, y)`` is ``vexp(y * vlog(x))``, so the rounding of ``t = y * log(x)`` adds up to
about ``2.5 |t|`` ulp (``|t|`` is below 88 for a finite float32 result, and a few units for a
mean's root); libm's ``pow`` is within 1 ulp.  Special values follow C's ``exp``/``log``/``pow``
where a pooler meets them (zeros, infinities, NaN, subnormals; ``vpow(x, 0) = vpow(1, y) = 1``);
a negative base gives NaN.

Called from Python they are plain (slower) functions with the same results to rounding, and
:mod:`numbapool.kernels.cuda_functions` gives CUDA device functions the GPU's own ``exp``,
``log`` and ``pow`` (``DEVICE_EQUIVALENTS``).  Import the names into a reduction's module
(``from numbapool.vmath import vpow``) so that the CUDA conversion finds them.
"""

from __future__ import annotations

import math
import struct
from decimal import Decimal, localcontext

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

__all__ = ["vexp", "vlog", "vpow", "DEVICE_EQUIVALENTS"]


# Exponent and mantissa by bit operations, in the float's own width -----------------------------
# (Written in LLVM IR: in Python the integer arithmetic would widen to int64, which halves the
# float32 lanes per vector.)  ``_FORMAT``: float type -> (int bits, mantissa bits, bias).
_FORMAT = {types.float32: (32, 23, 127), types.float64: (64, 52, 1023)}


def _float_ir(ty):
    return ir.FloatType() if ty == types.float32 else ir.DoubleType()


def _fmuladd(builder, ty):
    f = _float_ir(ty)
    return builder.module.declare_intrinsic("llvm.fmuladd", [f], ir.FunctionType(f, [f, f, f]))


@intrinsic
def _mantissa(typingctx, x):
    """``x``'s significand as a float in [1, 2) (``x`` positive and normal)."""
    if x not in _FORMAT:
        return None
    width, mbits, bias = _FORMAT[x]

    def codegen(context, builder, signature, args):
        it = ir.IntType(width)
        b = builder.bitcast(args[0], it)
        b = builder.and_(b, ir.Constant(it, (1 << mbits) - 1))
        b = builder.or_(b, ir.Constant(it, bias << mbits))
        return builder.bitcast(b, _float_ir(x))
    return x(x), codegen


@intrinsic
def _exponent(typingctx, x):
    """``x``'s unbiased binary exponent, as a float (``x`` positive and normal)."""
    if x not in _FORMAT:
        return None
    width, mbits, bias = _FORMAT[x]

    def codegen(context, builder, signature, args):
        it = ir.IntType(width)
        b = builder.lshr(builder.bitcast(args[0], it), ir.Constant(it, mbits))
        b = builder.sub(b, ir.Constant(it, bias))
        return builder.sitofp(b, _float_ir(x))
    return x(x), codegen


@intrinsic
def _scale2(typingctx, p, k):
    """``p * 2**k`` for an integral float ``k`` whose halves are normal exponents, in two
    multiplications by powers of two (so a subnormal or overflowing result rounds once)."""
    if p not in _FORMAT or k != p:
        return None
    width, mbits, bias = _FORMAT[p]

    def codegen(context, builder, signature, args):
        it = ir.IntType(width)
        ki = builder.fptosi(args[1], it)
        k1 = builder.ashr(ki, ir.Constant(it, 1))
        k2 = builder.sub(ki, k1)
        out = args[0]
        for half in (k1, k2):
            bits = builder.shl(builder.add(half, ir.Constant(it, bias)), ir.Constant(it, mbits))
            out = builder.fmul(out, builder.bitcast(bits, _float_ir(p)))
        return out
    return p(p, k), codegen


# Constants, derived here rather than copied -------------------------------------------------
def _ln2_split(fmt: str, int_fmt: str, zero_bits: int) -> tuple[float, float]:
    """ln 2 as hi + lo in a float format, ``hi`` with its ``zero_bits`` low mantissa bits
    zero, so that ``k * hi`` is exact for the exponents ``k`` met here."""
    with localcontext() as ctx:
        ctx.prec = 60
        ln2 = Decimal(2).ln()
        bits = struct.unpack(int_fmt, struct.pack(fmt, float(ln2)))[0]
        hi = struct.unpack(fmt, struct.pack(int_fmt, bits & ~((1 << zero_bits) - 1)))[0]
        lo = struct.unpack(fmt, struct.pack(fmt, float(ln2 - Decimal(hi))))[0]
    return hi, lo


LN2_HI, LN2_LO = _ln2_split("<d", "<q", 32)
LN2_HI32, LN2_LO32 = (np.float32(v) for v in _ln2_split("<f", "<i", 12))
INV_LN2 = 1.0 / math.log(2.0)
SQRT2 = math.sqrt(2.0)
# log(m) = 2 atanh(s), s = (m - 1) / (m + 1) = 2 (s + s^3/3 + s^5/5 + ...), |s| <= 0.1716 for
# m in [sqrt(1/2), sqrt(2)): ten terms leave a truncation below 2**-55 of the result, five
# below 2**-26.  exp(r), |r| <= ln(2)/2: Taylor to r**13 (remainder below 2**-57), to r**7
# for float32 (below 2**-27).
_L = tuple(1.0 / k for k in range(3, 20, 2))
_E = tuple(1.0 / math.factorial(k) for k in range(2, 14))
L3, L5, L7, L9, L11, L13, L15, L17, L19 = _L
E2, E3, E4, E5, E6, E7, E8, E9, E10, E11, E12, E13 = _E
F_L3, F_L5, F_L7, F_L9 = (np.float32(v) for v in _L[:4])
F_E2, F_E3, F_E4, F_E5, F_E6, F_E7 = (np.float32(v) for v in _E[:6])
F_INV_LN2 = np.float32(INV_LN2)
F_SQRT2 = np.float32(SQRT2)
F_HALF = np.float32(0.5)
F_ONE = np.float32(1.0)
F_TWO = np.float32(2.0)
F_ZERO = np.float32(0.0)
F_TWO25 = np.float32(2.0 ** 25)
F_25 = np.float32(25.0)
F_TINY = np.float32(2.0 ** -126)  # the smallest normal float32
F_EXP_LO = np.float32(-110.0)  # beyond the float32 range on either side: the result is
F_EXP_HI = np.float32(100.0)  # 0 or inf, and the scaling below stays in range
F_INF = np.float32(np.inf)
F_NAN = np.float32(np.nan)


@intrinsic
def _where(typingctx, cond, a, b):
    """``a if cond else b`` as one select instruction: no branch (and no phi in Numba's IR,
    whose inliner mishandles some), so it vectorises."""
    if not isinstance(cond, types.Boolean) or a not in _FORMAT or b != a:
        return None

    def codegen(context, builder, signature, args):
        return builder.select(args[0], args[1], args[2])
    return a(cond, a, b), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c``, fused where the machine has a fast fused multiply-add (LLVM's
    ``fmuladd``), else a multiplication and an addition; vectorises either way."""
    if a not in _FORMAT or b != a or c != a:
        return None

    def codegen(context, builder, signature, args):
        return builder.call(_fmuladd(builder, a), args)
    return a(a, b, c), codegen


@intrinsic
def _horner(typingctx, x, coeffs):
    """``c[0] + x * (c[1] + x * (c[2] + ...))`` for a tuple of constants ``c``, unrolled into
    a chain of :func:`_fma`."""
    if x not in _FORMAT or not isinstance(coeffs, types.UniTuple) or coeffs.dtype != x:
        return None

    def codegen(context, builder, signature, args):
        fn = _fmuladd(builder, x)
        acc = builder.extract_value(args[1], coeffs.count - 1)
        for i in range(coeffs.count - 2, -1, -1):
            acc = builder.call(fn, [acc, args[0], builder.extract_value(args[1], i)])
        return acc
    return x(x, coeffs), codegen


# float64 -------------------------------------------------------------------------------------
def _log64(x):
    xf = float(x)
    tiny = xf < 2.2250738585072014e-308  # subnormal (or not positive): scale into range first
    xs = _where(tiny, xf * 18014398509481984.0, xf)  # 2**54
    m1 = _mantissa(xs)  # in [1, 2)
    big = m1 > SQRT2
    m = _where(big, m1 * 0.5, m1)
    e = _exponent(xs) - _where(tiny, 54.0, 0.0) + _where(big, 1.0, 0.0)
    s = np.true_divide(m - 1.0, m + 1.0)  # (no zero-division check: it would not vectorise)
    z = s * s
    tail = z * _horner(z, (L3, L5, L7, L9, L11, L13, L15, L17, L19))
    r = _fma(e, LN2_HI, _fma(e, LN2_LO, _fma(2.0 * s, tail, 2.0 * s)))
    r0 = _where(xf == 0.0, -math.inf, _where(xf == math.inf, xf, r))
    return _where((xf < 0.0) | (xf != xf), math.nan, r0)


def _exp64(t):
    tf = float(t)
    tc = _where(tf != tf, 0.0, _where(tf < -1100.0, -1100.0, _where(tf > 1100.0, 1100.0, tf)))
    k = np.floor(tc * INV_LN2 + 0.5)
    r = _fma(-k, LN2_LO, _fma(-k, LN2_HI, tc))
    p = _horner(r, (1.0, 1.0, E2, E3, E4, E5, E6, E7, E8, E9, E10, E11, E12, E13))
    return _where(tf != tf, tf, _scale2(p, k))


def _pow64(x, y):
    xf = float(x)
    yf = float(y)
    return _where((yf == 0.0) | (xf == 1.0), 1.0, vexp(yf * vlog(xf)))


# float32 -------------------------------------------------------------------------------------
def _log32(x):
    tiny = x < F_TINY
    xs = _where(tiny, x * F_TWO25, x)
    m1 = _mantissa(xs)
    big = m1 > F_SQRT2
    m = _where(big, m1 * F_HALF, m1)
    e = _exponent(xs) - _where(tiny, F_25, F_ZERO) + _where(big, F_ONE, F_ZERO)
    s = np.true_divide(m - F_ONE, m + F_ONE)
    z = s * s
    tail = z * _horner(z, (F_L3, F_L5, F_L7, F_L9))
    r = _fma(e, LN2_HI32, _fma(e, LN2_LO32, _fma(F_TWO * s, tail, F_TWO * s)))
    r0 = _where(x == F_ZERO, -F_INF, _where(x == F_INF, x, r))
    return _where((x < F_ZERO) | (x != x), F_NAN, r0)


def _exp32(t):
    tc = _where(t != t, F_ZERO, _where(t < F_EXP_LO, F_EXP_LO, _where(t > F_EXP_HI, F_EXP_HI, t)))
    k = np.floor(tc * F_INV_LN2 + F_HALF)
    r = _fma(-k, LN2_LO32, _fma(-k, LN2_HI32, tc))
    p = _horner(r, (F_ONE, F_ONE, F_E2, F_E3, F_E4, F_E5, F_E6, F_E7))
    return _where(t != t, t, _scale2(p, k))


def _pow32(x, y):
    yf = np.float32(y)
    return _where((yf == F_ZERO) | (x == F_ONE), F_ONE, vexp(yf * vlog(x)))


# The public functions: plain Python, and an inlined overload per precision ------------------
def vlog(x):
    """Natural logarithm: -inf at 0, NaN below 0 (vectorises in compiled code)."""
    x = float(x)
    if x > 0.0:
        return math.log(x) if x != math.inf else math.inf
    return -math.inf if x == 0.0 else math.nan


def vexp(t):
    """``e ** t``: overflows to inf, underflows to 0 (vectorises in compiled code)."""
    t = float(t)
    try:
        return math.exp(t)
    except OverflowError:
        return math.inf


def vpow(x, y):
    """``x ** y`` for ``x >= 0``, as ``exp(y * log(x))``; ``vpow(x, 0) = vpow(1, y) = 1``,
    NaN for a negative ``x`` (vectorises in compiled code)."""
    x, y = float(x), float(y)
    if y == 0.0 or x == 1.0:
        return 1.0
    if x != x or x < 0.0:
        return math.nan
    if x == 0.0:
        return 0.0 if y > 0.0 else (math.inf if y < 0.0 else math.nan)
    return vexp(y * math.log(x)) if x != math.inf else (math.inf if y > 0.0 else 0.0)


def _real(t) -> bool:
    return isinstance(t, (types.Float, types.Integer, types.Boolean))


@overload(vlog, inline="always", target="cpu")
def _vlog(x):
    if x == types.float32:
        return _log32
    if _real(x):
        return _log64
    return None


@overload(vexp, inline="always", target="cpu")
def _vexp(t):
    if t == types.float32:
        return _exp32
    if _real(t):
        return _exp64
    return None


@overload(vpow, inline="always", target="cpu")
def _vpow(x, y):
    if not (_real(x) and _real(y)):
        return None
    return _pow32 if x == types.float32 else _pow64


# CUDA: the GPU's own functions (numbapool.kernels.cuda_functions swaps them in) -------------
def _device_exp(t):
    return math.exp(t)


def _device_log(x):
    return math.log(x)


def _device_pow(x, y):
    return x ** y


DEVICE_EQUIVALENTS = {id(vexp): (vexp, _device_exp), id(vlog): (vlog, _device_log),
                      id(vpow): (vpow, _device_pow)}
"""``id(f)``: ``(f, the function it becomes in a CUDA device function)``.  Under Numba's CUDA
simulator, where device functions run as Python, ``f`` itself serves."""
