"""Elementary functions that vectorise: ``vexp``, ``vlog``, ``vpow`` and ``vcbrt`` (and
``vfma``, a fused multiply-add).

Numba lowers ``math.exp``, ``math.log`` and ``**`` with a non-integer exponent to a libm call
per element, and llvmlite is built without a vector math library (``numba -s``: no SVML), so a
loop that calls them runs one element at a time: a generalised mean's ``(mean) ** (1/p)``
costs more than the rest of the pooling.  These are arithmetic, selects and bit casts only,
emitted as LLVM instructions where they are called (Numba intrinsics), so a loop over them
becomes SIMD code, and using them adds almost nothing to a kernel's compile time.

They compute in the precision of their (first) argument: float32 in float32 (twice the lanes
of float64), anything else in float64.

Accuracy, in units in the last place (ulp) of the result's type: ``vlog`` and ``vexp`` within
2, ``vcbrt`` within 1 (and 2.5 times as fast as ``vpow(x, 1 / 3)``, with no division).
``vpow(x, y)`` is ``vexp(y * vlog(x))``, so the rounding of ``t = y * log(x)`` adds up to
about ``2.5 |t|`` ulp (``|t|`` is below 88 for a finite float32 result, and a few units for a
mean's root); libm's ``pow`` is within 1 ulp.  Special values (zeros, infinities, NaN,
subnormals, negative bases) follow C's ``exp``, ``log``, ``pow`` and ``cbrt``.

Called from Python they are plain (slower) functions with the same results to rounding, and
:mod:`numbapool.kernels.cuda_functions` gives CUDA device functions the GPU's own ``exp``,
``log``, ``pow`` and ``cbrt`` (``DEVICE_EQUIVALENTS``).  Import the names into a reduction's
module (``from numbapool.vmath import vpow``) so that the CUDA conversion finds them.

``vcbrt_normal`` is ``vcbrt`` for numbers the caller knows are neither negative nor
subnormal, a fifth faster, and wrong for those.
"""

from __future__ import annotations

import math
import struct
from decimal import Decimal, localcontext

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

__all__ = ["vexp", "vlog", "vpow", "vcbrt", "vcbrt_normal", "vfma", "vconst", "power", "root",
           "DEVICE_EQUIVALENTS"]


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


class _Format:
    """What the code below needs of a float format."""

    def __init__(self, ty, width, mbits, bias, zero_bits, log_terms, exp_degree, exp_range,
                 cbrt_steps):
        self.ir = ir.FloatType() if width == 32 else ir.DoubleType()
        self.int = ir.IntType(width)
        self.mbits, self.bias = mbits, bias
        self.ln2_hi, self.ln2_lo = _ln2_split("<f" if width == 32 else "<d",
                                              "<i" if width == 32 else "<q", zero_bits)
        self.tiny = 2.0 ** (1 - bias)  # the smallest normal number
        self.sub_shift = mbits + 2  # subnormals are scaled by 2**sub_shift first
        # log(m) = 2 atanh(s), s = (m - 1) / (m + 1) = 2 (s + s^3/3 + s^5/5 + ...), with
        # |s| <= 0.1716 for m in [sqrt(1/2), sqrt(2)): 10 terms leave a truncation below 2**-55
        # of the result, 5 below 2**-26.  exp(r), |r| <= ln(2)/2: Taylor to r**13 (remainder
        # below 2**-57), to r**7 for float32 (below 2**-27).
        self.log_coeffs = tuple(1.0 / k for k in range(3, 2 * log_terms + 1, 2))
        self.exp_coeffs = tuple(1.0 / math.factorial(k) for k in range(exp_degree + 1))
        # beyond the format's range on either side: the result is 0 or inf, and the scaling
        # by 2**k stays within two normal powers of two
        self.exp_lo, self.exp_hi = exp_range
        # 1 / cbrt(x) from the bits of x: bits(x) / 3 is about 2**mbits (log2(x) / 3 + (bias -
        # sigma) / 3), so K - bits(x) / 3 has log2 about -log2(x) / 3, with K = 4/3 2**mbits
        # (bias - sigma).  sigma = 0.0496 minimises the guess's largest relative error (3.4%,
        # from a search over x in [1, 8)); the third-order step leaves below 2e-5, each Newton
        # step after it squares that (times 2), and the final step on y = cbrt(x) squares it
        # again (times about 8).  A subnormal's bits as a number are x 2**(mbits + bias - 1):
        # 2**(3 shift) times x once the rest is taken off the exponent.
        self.cbrt_magic = round(4 / 3 * 2.0 ** mbits * (bias - 0.0496))
        self.cbrt_steps = cbrt_steps
        self.cbrt_shift, self.cbrt_rest = divmod(mbits + bias - 1, 3)
        self.sign = 1 << (width - 1)


_FORMAT = {
    types.float32: _Format(types.float32, 32, 23, 127, 12, 5, 7, (-110.0, 100.0), 0),
    types.float64: _Format(types.float64, 64, 52, 1023, 32, 10, 13, (-1100.0, 1100.0), 1),
}


# The functions, as LLVM IR -------------------------------------------------------------------
class _Emit:
    """Builds the IR of one call in one format."""

    def __init__(self, builder: ir.IRBuilder, fmt: _Format):
        self.b, self.f = builder, fmt
        mod = builder.module
        ft = fmt.ir
        self._fma = mod.declare_intrinsic("llvm.fmuladd", [ft], ir.FunctionType(ft, [ft] * 3))
        self._floor = mod.declare_intrinsic("llvm.floor", [ft], ir.FunctionType(ft, [ft]))
        self._fabs = mod.declare_intrinsic("llvm.fabs", [ft], ir.FunctionType(ft, [ft]))

    def c(self, value: float) -> ir.Constant:
        return ir.Constant(self.f.ir, value)

    def i(self, value: int) -> ir.Constant:
        return ir.Constant(self.f.int, value)

    def fma(self, a, b, c):
        """``a * b + c``, fused where the machine has a fast fused multiply-add (LLVM's
        ``fmuladd``); vectorises either way."""
        return self.b.call(self._fma, [a, b, c])

    def poly(self, x, coeffs):
        """``coeffs[0] + coeffs[1] x + coeffs[2] x^2 + ...`` by Estrin's scheme: pairs
        ``c[i] + c[i+1] x``, then pairs of those with ``x^2``, then ``x^4``...  A chain of
        about log2(n) fused multiply-adds instead of Horner's n (measured 1.37 -> 0.9 ns a
        float32 ``vpow``, whose loops are bound by the length of the chain)."""
        terms = [self.c(c) for c in coeffs]
        power = x
        while len(terms) > 1:
            pairs = [self.fma(terms[i + 1], power, terms[i]) for i in range(0, len(terms) - 1, 2)]
            terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
            power = self.b.fmul(power, power) if len(terms) > 1 else power
        return terms[0]

    def lt(self, a, b):
        return self.b.fcmp_ordered("<", a, b)

    def gt(self, a, b):
        return self.b.fcmp_ordered(">", a, b)

    def eq(self, a, b):
        return self.b.fcmp_ordered("==", a, b)

    def isnan(self, a):
        return self.b.fcmp_unordered("uno", a, a)

    def log(self, x):
        b, f = self.b, self.f
        tiny = self.lt(x, self.c(f.tiny))  # subnormal (or not positive): scale into range
        xs = b.select(tiny, b.fmul(x, self.c(2.0 ** f.sub_shift)), x)
        bits = b.bitcast(xs, f.int)
        m1 = b.bitcast(b.or_(b.and_(bits, self.i((1 << f.mbits) - 1)), self.i(f.bias << f.mbits)),
                       f.ir)  # the significand, in [1, 2)
        e0 = b.sitofp(b.sub(b.lshr(bits, self.i(f.mbits)), self.i(f.bias)), f.ir)
        big = self.gt(m1, self.c(math.sqrt(2.0)))
        m = b.select(big, b.fmul(m1, self.c(0.5)), m1)
        e = b.fadd(b.fsub(e0, b.select(tiny, self.c(f.sub_shift), self.c(0.0))),
                   b.select(big, self.c(1.0), self.c(0.0)))
        s = b.fdiv(b.fsub(m, self.c(1.0)), b.fadd(m, self.c(1.0)))
        z = b.fmul(s, s)
        tail = b.fmul(z, self.poly(z, f.log_coeffs))
        s2 = b.fmul(s, self.c(2.0))
        r = self.fma(e, self.c(f.ln2_hi), self.fma(e, self.c(f.ln2_lo), self.fma(s2, tail, s2)))
        r = b.select(self.eq(x, self.c(0.0)), self.c(-math.inf),
                     b.select(self.eq(x, self.c(math.inf)), x, r))
        return b.select(b.or_(self.lt(x, self.c(0.0)), self.isnan(x)), self.c(math.nan), r)

    def exp(self, t):
        b, f = self.b, self.f
        nan = self.isnan(t)
        lo, hi = self.c(f.exp_lo), self.c(f.exp_hi)
        tc = b.select(nan, self.c(0.0),
                      b.select(self.lt(t, lo), lo, b.select(self.gt(t, hi), hi, t)))
        k = b.call(self._floor, [self.fma(tc, self.c(1.0 / math.log(2.0)), self.c(0.5))])
        nk = b.fneg(k)
        r = self.fma(nk, self.c(f.ln2_lo), self.fma(nk, self.c(f.ln2_hi), tc))
        y = self.poly(r, f.exp_coeffs)
        # times 2**k, as two normal powers of two: a subnormal or huge result rounds once
        ki = b.fptosi(k, f.int)
        k1 = b.ashr(ki, self.i(1))
        for half in (k1, b.sub(ki, k1)):
            scale = b.shl(b.add(half, self.i(f.bias)), self.i(f.mbits))
            y = b.fmul(y, b.bitcast(scale, f.ir))
        return b.select(nan, t, y)

    def cbrt(self, x, normal_only=False):
        """C's ``cbrt``: the real cube root, odd in ``x``.  No division and no polynomial of
        ``log``: a guess of ``r = 1 / cbrt(|x|)`` from the bits of ``|x|``, one step of third
        order on ``r`` (and Newton steps for float64), then ``y = |x| r**2`` and one Newton
        step on ``y**3 = |x|`` (``r**2`` for ``1 / y**2``) that brings it within an ulp (0.76
        measured over 4 million float32 and float64 values).  About 30 vector instructions
        for 16 float32 lanes (``vpow`` takes 90), 14 of them multiplies or multiply-adds: the
        machine's multiply-add units are what bound a loop of cube roots, so subnormals are
        scaled by integer arithmetic, not multiplied (18 with two Newton steps and scaling
        by products: 0.42 -> 0.38 ns a float32 cube root on one thread).

        ``normal_only``: for ``x`` that is 0, a normal positive number, +inf or NaN (the
        caller has shown it cannot be negative or subnormal), without the steps for the sign
        and for subnormals: 11 vector instructions fewer, 0.30 against 0.38 ns a float32
        cube root on one thread (Zen 4).  Negative and subnormal ``x`` give wrong values."""
        b, f = self.b, self.f
        if normal_only:
            return self._cbrt_core(x, b.bitcast(x, f.int), None)
        ax = b.call(self._fabs, [x])
        ax_bits = b.bitcast(ax, f.int)
        # (compares of the bits as integers, where the machine's float units are the busy
        # ones: below the smallest normal number, 0 included; and 0, inf or NaN)
        tiny = b.icmp_unsigned("<", ax_bits, self.i(1 << f.mbits))
        # a subnormal's bits, read as an integer, are |x| 2**T exactly (T = mbits + bias - 1):
        # as a float that is |x| 2**(3 s) once the rest of T is taken off its exponent
        scaled = b.sitofp(ax_bits, f.ir)
        if f.cbrt_rest:
            scaled = b.bitcast(b.sub(b.bitcast(scaled, f.int), self.i(f.cbrt_rest << f.mbits)),
                               f.ir)
        xs = b.select(tiny, scaled, ax)
        y = self._cbrt_core(xs, ax_bits, tiny)
        sign = b.and_(b.bitcast(x, f.int), self.i(f.sign))
        return b.bitcast(b.or_(b.bitcast(y, f.int), sign), f.ir)

    def cbrt_normal(self, x):
        return self.cbrt(x, normal_only=True)

    def _cbrt_core(self, xs, ax_bits, tiny):
        """The cube root of ``xs`` (not negative, not subnormal; a subnormal's scaled form
        where ``tiny``, scaled back), and ``|x|`` itself for 0, inf and NaN (``ax_bits``, the
        bits of ``|x|``)."""
        b, f = self.b, self.f
        guess = self.fma(b.sitofp(b.bitcast(xs, f.int), f.ir), self.c(-1.0 / 3.0),
                         self.c(float(f.cbrt_magic)))  # (K - bits / 3, in floating point)
        r = b.bitcast(b.fptosi(guess, f.int), f.ir)
        # with m = xs r**3 - 1, 1 / cbrt(xs) = r (1 + m)**(-1/3) = r (1 - m/3 + 2 m**2/9
        # - 14 m**3/81 + 35 m**4/243 ...): three terms leave 35/243 m**4, below 2e-5 of r
        m = self.fma(xs, b.fmul(b.fmul(r, r), r), self.c(-1.0))
        p = self.fma(self.fma(m, self.c(-14.0 / 81.0), self.c(2.0 / 9.0)), m,
                     self.c(-1.0 / 3.0))
        r = self.fma(b.fmul(r, m), p, r)
        for _ in range(f.cbrt_steps):  # Newton: r (1 - m / 3), squaring the error (times 2)
            m = self.fma(xs, b.fmul(b.fmul(r, r), r), self.c(-1.0))
            r = self.fma(b.fmul(r, m), self.c(-1.0 / 3.0), r)
        r2 = b.fmul(r, r)
        y = b.fmul(xs, r2)
        e = self.fma(b.fmul(y, y), y, b.fneg(xs))  # y**3 - |x|, one rounding
        y = self.fma(b.fmul(e, r2), self.c(-1.0 / 3.0), y)
        if tiny is not None:
            y = b.select(tiny, b.bitcast(b.sub(b.bitcast(y, f.int),
                                               self.i(f.cbrt_shift << f.mbits)), f.ir),
                         y)  # (cbrt(xs) is normal: times 2**-s exactly)
        # 0, inf and NaN are their own cube roots (the steps would give NaN for 0 and inf):
        # the bits of |x| minus 1 wrap around for 0, and are inf's minus 1 or more for the others
        inf_bits = (2 ** (f.int.width - 1 - f.mbits) - 1) << f.mbits
        special = b.icmp_unsigned(">=", b.sub(ax_bits, self.i(1)), self.i(inf_bits - 1))
        return b.select(special, b.bitcast(ax_bits, f.ir), y)

    def pow(self, x, y):
        """C's ``pow``: ``|x| ** y`` as ``exp(y log|x|)``; a negative ``x`` gives NaN unless
        ``y`` is an integer, and the sign of ``x`` if ``y`` is an odd one."""
        b = self.b
        ax = b.call(self._fabs, [x])
        one = self.c(1.0)
        r = b.select(self.eq(ax, one), one, self.exp(b.fmul(y, self.log(ax))))
        whole = self.eq(b.call(self._floor, [y]), y)  # (false for NaN; true for +-inf)
        half = b.fmul(y, self.c(0.5))
        odd = b.and_(whole, b.fcmp_ordered("!=", b.call(self._floor, [half]), half))
        negative = b.icmp_signed("<", b.bitcast(x, self.f.int), self.i(0))  # (-0.0 too)
        r = b.select(b.and_(negative, odd), b.fneg(r), r)
        finite_neg = b.and_(self.lt(x, self.c(0.0)), self.gt(x, self.c(-math.inf)))
        r = b.select(b.and_(finite_neg, b.not_(whole)), self.c(math.nan), r)
        return b.select(self.eq(y, self.c(0.0)), one, r)


def _real(t) -> bool:
    return isinstance(t, (types.Float, types.Integer, types.Boolean))


def _precision(t):
    """The format a function computes in for an argument of type ``t``."""
    return types.float32 if t == types.float32 else types.float64


def _intrinsic_of(method: str, arity: int):
    """An intrinsic computing ``_Emit.<method>`` in its first argument's precision."""
    def typer(typingctx, *args):
        if len(args) != arity or not all(_real(a) for a in args):
            return None
        ty = _precision(args[0])

        def codegen(context, builder, signature, values):
            cast = [context.cast(builder, v, t, ty) for v, t in zip(values, signature.args)]
            return getattr(_Emit(builder, _FORMAT[ty]), method)(*cast)
        return ty(*args), codegen

    # (intrinsic needs the parameters spelled out)
    if arity == 1:
        return intrinsic(lambda typingctx, x: typer(typingctx, x))
    if arity == 3:
        return intrinsic(lambda typingctx, x, y, z: typer(typingctx, x, y, z))
    return intrinsic(lambda typingctx, x, y: typer(typingctx, x, y))


_log_ir = _intrinsic_of("log", 1)
_exp_ir = _intrinsic_of("exp", 1)
_pow_ir = _intrinsic_of("pow", 2)
_cbrt_ir = _intrinsic_of("cbrt", 1)
_cbrt_normal_ir = _intrinsic_of("cbrt_normal", 1)
_fma_ir = _intrinsic_of("fma", 3)


# The public functions: plain Python, compiled as the IR above -----------------------------
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


def _odd_integer(y: float) -> bool:
    return math.isfinite(y) and y == int(y) and int(y) % 2 == 1


def vpow(x, y):
    """``x ** y`` with C's ``pow`` semantics (a negative ``x`` needs an integer ``y``, else
    NaN), computed as ``exp(y * log|x|)`` (vectorises in compiled code)."""
    x, y = float(x), float(y)
    try:
        return math.pow(x, y)
    except OverflowError:
        return -math.inf if x < 0.0 and _odd_integer(y) else math.inf
    except ValueError:  # where C gives NaN (a negative x to a non-integer power), or +-inf
        if x == 0.0:  # (0 to a negative power)
            return math.copysign(math.inf, x) if _odd_integer(y) else math.inf
        return math.nan


def vcbrt(x):
    """The real cube root, ``-cbrt(-x)`` for negative ``x`` (C's ``cbrt``; vectorises in
    compiled code).  Within 1 ulp, where ``vpow(x, 1 / 3)`` is within ``3 + 2.5 |log x| / 3``
    and is NaN below 0."""
    x = float(x)
    if _math_cbrt is not None:
        return _math_cbrt(x)
    if x != x or x in (0.0, math.inf, -math.inf):  # (Python 3.10)
        return x
    return math.copysign(abs(x) ** (1.0 / 3.0), x)


_math_cbrt = getattr(math, "cbrt", None)  # (Python 3.11)


def vcbrt_normal(x):
    """:func:`vcbrt` for ``x`` that the caller has shown to be 0, a normal positive number,
    +inf or NaN: in compiled code it skips the steps for negative and subnormal numbers (11
    vector instructions of about 30; 0.30 against 0.38 ns a float32 cube root on one thread,
    Zen 4), and gives **wrong values** for them.  For a mean of numbers bounded below, as
    gem's ``clamp(v, eps) ** 3`` with a large enough ``eps``.  Called from Python, and on
    CUDA, it is the full cube root."""
    return vcbrt(x)


@overload(vlog, target="cpu", inline="always")
def _vlog(x):
    if _real(x):
        return lambda x: _log_ir(x)
    return None


@overload(vexp, target="cpu", inline="always")
def _vexp(t):
    if _real(t):
        return lambda t: _exp_ir(t)
    return None


@overload(vpow, target="cpu", inline="always")
def _vpow(x, y):
    if _real(x) and _real(y):
        return lambda x, y: _pow_ir(x, y)
    return None


def vfma(a, b, c):
    """``a * b + c``, rounded once where the machine has a fused multiply-add (the compiler
    decides: LLVM's ``fmuladd``), else twice; one instruction in place of two in a loop.
    Like the others, it computes in the precision of its first argument: ``b`` and ``c``
    are converted to it (a float64 ``c`` is rounded to float32 if ``a`` is float32)."""
    return float(a) * float(b) + float(c)


@overload(vfma, target="cpu", inline="always")
def _vfma(a, b, c):
    if _real(a) and _real(b) and _real(c):
        return lambda a, b, c: _fma_ir(a, b, c)
    return None


def vconst(c, like):
    """The number ``c`` in the floating type of ``like`` (float32 or float64): a constant
    for a reduction's accumulator that does not widen float32 arithmetic to float64, as a
    Python float literal does (``s + 1.0`` is float64 for a float32 ``s``; ``s +
    vconst(1.0, s)`` is float32).  Called from Python: ``c`` as ``like``'s NumPy type, or a
    float."""
    dtype = np.asarray(like).dtype
    return dtype.type(c) if dtype.kind == "f" else float(c)


@intrinsic
def _const_ir(typingctx, c, like):
    if not (_real(c) and isinstance(like, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        return context.cast(builder, args[0], signature.args[0], like)
    return like(c, like), codegen


@overload(vconst, target="cpu", inline="always")
def _vconst(c, like):
    if _real(c) and isinstance(like, types.Float):
        return lambda c, like: _const_ir(c, like)
    if _real(c) and _real(like):  # (an integer or bool like: a float64, as 1.0 is)
        return lambda c, like: float(c)
    return None


@overload(vcbrt, target="cpu", inline="always")
def _vcbrt(x):
    if _real(x):
        return lambda x: _cbrt_ir(x)
    return None


@overload(vcbrt_normal, target="cpu", inline="always")
def _vcbrt_normal(x):
    if _real(x):
        return lambda x: _cbrt_normal_ir(x)
    return None


@numba.njit(cache=True, nogil=True)
def power(x, y):
    """``x ** y``: exact products for ``y`` in 1, 2, 3 and 4, :func:`vpow` otherwise.

    In a kernel's loop where ``y`` does not change (a pooler's parameter), the compiler can
    move the test on ``y`` out of the loop and vectorise the branch taken (it does for the
    channels-last folds of gem and lp; not in the channels-first column kernels, where an
    exponent outside 1-4 then runs one element at a time, so gem and lp call :func:`vpow`
    themselves for those; see also :func:`root`); the products are exact where
    ``exp(y log|x|)`` is within a few ulp.
    """
    if y == 2.0:
        return x * x
    if y == 3.0:
        return x * x * x
    if y == 1.0:
        return x
    if y == 4.0:
        x2 = x * x
        return x2 * x2
    return vpow(x, y)


@numba.njit(cache=True, nogil=True)
def root(x, p):
    """``x ** (1 / p)``: a square root for ``p`` 2 (one correctly rounded instruction), ``x``
    for ``p`` 1, :func:`vpow` otherwise.  Whether the tests on ``p`` leave the loop depends
    on the loop: lp's finish with ``p`` 2 runs at the speed of an average, but gem's
    channels-last finish with ``p`` 3 was 1.5x slower than ``vpow(x, 1 / p)``, so gem
    uses that."""
    if p == 2.0:
        return np.sqrt(x)  # (NaN below 0, no exception)
    if p == 1.0:
        return x
    return vpow(x, 1.0 / p)


# CUDA: the GPU's own functions (numbapool.kernels.cuda_functions swaps them in) -------------
def _device_exp(t):
    return math.exp(t)


def _device_log(x):
    return math.log(x)


def _device_pow(x, y):
    return x ** y


def _device_fma(a, b, c):
    return a * b + c  # (NVVM contracts it to one fused instruction)


def _device_const(c, like):
    return c  # (the GPU computes float32 constants' arithmetic in float64: slower, not wrong)


def _device_root(x, p):
    if p == 2.0:
        return math.sqrt(x)  # (np.sqrt has no CUDA scalar version)
    if p == 1.0:
        return x
    return x ** (1.0 / p)


DEVICE_EQUIVALENTS = {id(vexp): (vexp, _device_exp), id(vlog): (vlog, _device_log),
                      id(vpow): (vpow, _device_pow), id(vcbrt): (vcbrt, "cbrt"),
                      id(vcbrt_normal): (vcbrt_normal, "cbrt"),
                      id(vfma): (vfma, _device_fma), id(vconst): (vconst, _device_const),
                      id(root): (root, _device_root)}
"""``id(f)``: ``(f, the function it becomes in a CUDA device function)``, or the name of a
one-argument ``numba.cuda`` function (``"cbrt"``: libdevice's ``cbrt``/``cbrtf``, in the
argument's precision).  Under Numba's CUDA simulator, where device functions run as Python,
``f`` itself serves."""
