"""numbapool.vmath: accuracy against NumPy (float64 references), special values, the plain
Python versions, and that a loop over them compiles to vector code."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import numba
import numpy as np
import pytest

from numbapool.vmath import vcbrt, vcbrt_normal, vconst, vexp, vfma, vlog, vpow


@numba.njit(error_model="numpy")
def _exp_loop(a, out):
    for i in range(a.size):
        out[i] = vexp(a[i])


@numba.njit(error_model="numpy")
def _log_loop(a, out):
    for i in range(a.size):
        out[i] = vlog(a[i])


@numba.njit(error_model="numpy")
def _pow_loop(a, y, out):
    for i in range(a.size):
        out[i] = vpow(a[i], y)


@numba.njit(error_model="numpy")
def _cbrt_loop(a, out):
    for i in range(a.size):
        out[i] = vcbrt(a[i])


@numba.njit(error_model="numpy")
def _cbrt_normal_loop(a, out):
    for i in range(a.size):
        out[i] = vcbrt_normal(a[i])


@numba.njit(error_model="numpy")
def _fma_loop(a, b, c, out):
    for i in range(a.size):
        out[i] = vfma(a[i], b[i], c[i])


def _ulps(got: np.ndarray, ref: np.ndarray, dtype) -> float:
    """Largest error in units in the last place of ``dtype``, over finite normal results."""
    ref_t = ref.astype(dtype)
    keep = np.isfinite(ref) & (np.abs(ref) >= np.finfo(dtype).tiny)
    spacing = np.spacing(np.abs(ref_t[keep])).astype(np.float64)
    return float(np.max(np.abs(got[keep].astype(np.float64) - ref[keep]) / spacing))


def _run(loop, a, *args):
    out = np.empty_like(a)
    loop(a, *args, out)
    return out


RANGES = {np.float64: (-745.0, 709.0), np.float32: (-103.0, 88.0)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_and_log_within_two_ulps(dtype):
    rng = np.random.default_rng(0)
    lo, hi = RANGES[dtype]
    t = np.concatenate([rng.uniform(lo, hi, 200_000), rng.normal(size=20_000),
                        rng.normal(size=1000) * 1e-6]).astype(dtype)
    with np.errstate(over="ignore", under="ignore"):
        assert _ulps(_run(_exp_loop, t), np.exp(t.astype(np.float64)), dtype) <= 2
    x = np.concatenate([np.exp(rng.uniform(lo, hi, 200_000)), rng.uniform(0.5, 2.0, 20_000),
                        1 + rng.normal(size=1000) * 1e-5]).astype(dtype)
    x = x[x > 0]
    assert _ulps(_run(_log_loop, x), np.log(x.astype(np.float64)), dtype) <= 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("y", [1 / 3, 0.5, 2.5, 3.0, -1.5, 7.25, 5.0, -3.0])
def test_pow_error_grows_only_with_y_log_x(dtype, y):
    x = np.random.default_rng(1).uniform(1e-3, 10.0, 100_000).astype(dtype)
    if y == int(y):  # negative bases to integer powers
        x[::2] *= -1
    got = _run(_pow_loop, x, y)
    ref = x.astype(np.float64) ** np.float64(dtype(y))
    t = np.abs(np.float64(dtype(y)) * np.log(np.abs(x.astype(np.float64))))
    spacing = np.spacing(np.abs(ref.astype(dtype))).astype(np.float64)
    err = np.abs(got.astype(np.float64) - ref) / spacing
    assert np.array_equal(np.signbit(got), np.signbit(ref))
    assert np.all(err <= 3 + 2.5 * t), float(np.max((err - 3) / t))


def _all_magnitudes(dtype, n):
    """``n`` values spread evenly over every exponent of ``dtype`` (random bit patterns of
    the positive finite numbers, subnormals included), half of them negative."""
    rng = np.random.default_rng(3)
    ints = np.int32 if dtype == np.float32 else np.int64
    top = np.array([np.inf], dtype).view(ints)[0]
    x = rng.integers(1, top, n, dtype=np.int64).astype(ints).view(dtype).copy()
    x[::2] *= -1
    return x


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cbrt_within_one_ulp(dtype):
    if dtype == np.float64 and np.finfo(np.longdouble).nmant <= 52:
        pytest.skip("the reference needs a long double wider than a double")
    x = np.concatenate([_all_magnitudes(dtype, 400_000),
                        np.linspace(1.0, 8.0, 20_001).astype(dtype)])  # (one period)
    got = _run(_cbrt_loop, x)
    ref = np.cbrt(x.astype(np.longdouble))
    spacing = np.spacing(np.abs(ref.astype(dtype))).astype(np.longdouble)
    err = np.abs(got.astype(np.longdouble) - ref) / spacing
    assert float(err.max()) <= 1.0, float(err.max())
    assert np.array_equal(np.signbit(got), np.signbit(x))
    cubes = np.arange(-20, 21).astype(dtype)
    np.testing.assert_array_equal(_run(_cbrt_loop, cubes ** 3), cubes)  # exact cubes


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cbrt_special_values_and_python_version(dtype):
    info = np.finfo(dtype)
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, info.smallest_subnormal,
                  -info.smallest_subnormal, info.tiny, info.max, -27.0], dtype)
    got = _run(_cbrt_loop, x)
    want = np.cbrt(x.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=2 * info.eps)
    assert np.array_equal(np.signbit(got), np.signbit(want))
    assert np.array_equal(np.isnan(got), np.isnan(x))
    plain = np.array([vcbrt(v) for v in x.astype(np.float64)])
    np.testing.assert_allclose(plain, want, rtol=1e-15)
    assert np.array_equal(np.signbit(plain), np.signbit(want))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cbrt_normal_is_cbrt_where_it_holds(dtype):
    """vcbrt_normal skips vcbrt's steps for signs and subnormals: on every other number
    (random bit patterns over all positive normal numbers, 0, -0, inf, NaN) it gives
    vcbrt's bits, which test_cbrt_within_one_ulp checks against long double; a subnormal
    is where it is wrong, as documented."""
    info = np.finfo(dtype)
    ints = np.uint32 if dtype == np.float32 else np.uint64
    lo = np.array(info.tiny, dtype).view(ints)
    hi = np.array(np.inf, dtype).view(ints)
    rng = np.random.default_rng(17)
    x = np.concatenate([rng.integers(lo, hi, 200_000, dtype=ints).view(dtype),
                        np.array([0.0, -0.0, np.inf, np.nan, -np.nan, info.tiny, info.max,
                                  1.0, 27.0, 8e-3], dtype)])
    got = _run(_cbrt_normal_loop, x)
    want = _run(_cbrt_loop, x)
    np.testing.assert_array_equal(got.view(ints)[~np.isnan(x)], want.view(ints)[~np.isnan(x)])
    assert np.isnan(got[np.isnan(x)]).all()
    np.testing.assert_allclose(got[-4:], np.cbrt(x[-4:].astype(np.float64)), rtol=info.eps)
    # (the steps for subnormals are gone, which is the point: the value is then wrong)
    sub = np.array([info.smallest_subnormal * 3], dtype)
    assert _run(_cbrt_normal_loop, sub)[0] != _run(_cbrt_loop, sub)[0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fma_rounds_once_or_twice(dtype):
    """a * b + c: fused (one rounding) where the machine can, else the plain expression."""
    rng = np.random.default_rng(4)
    a, b, c = (rng.standard_normal(1000).astype(dtype) for _ in range(3))
    got = np.empty_like(a)
    _fma_loop(a, b, c, got)
    # (rounded once from the exact value: fractions; float64 to float32 rounds a second
    # time, which can differ only at an exact float32 halfway point)
    fused = np.array([float(Fraction(float(p)) * Fraction(float(q)) + Fraction(float(r)))
                      for p, q, r in zip(a, b, c)]).astype(dtype)
    plain = a * b + c
    assert np.all((got == fused) | (got == plain))
    assert vfma(2.0, 3.0, 1.0) == 7.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_special_values(dtype):
    info = np.finfo(dtype)
    inf, nan = np.inf, np.nan
    t = np.array([0.0, -0.0, inf, -inf, nan, RANGES[dtype][1] + 2, RANGES[dtype][0] - 50],
                 dtype)
    with np.errstate(over="ignore", under="ignore"):
        np.testing.assert_array_equal(_run(_exp_loop, t), np.exp(t))
    x = np.array([0.0, -0.0, -1.0, inf, -inf, nan, info.smallest_subnormal, info.tiny / 3, 1.0],
                 dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        ref = np.log(x.astype(np.float64))
    got = _run(_log_loop, x)
    np.testing.assert_allclose(got, ref, rtol=4 * info.eps)  # (subnormals: rounded input)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    # C's pow (C99 Annex F), including the cases where NumPy's power differs (it takes a
    # square root for y = 0.5: -0.0 and NaN for the last two)
    cases = [(0.0, 2.0, 0.0), (0.0, -2.0, inf), (0.0, 0.0, 1.0), (inf, 2.0, inf),
             (inf, -2.0, 0.0), (1.0, nan, 1.0), (nan, 0.0, 1.0), (nan, 1.0, nan),
             (4.0, 0.5, 2.0), (-2.0, 3.0, -8.0), (-2.0, 2.0, 4.0), (-2.0, 2.5, nan),
             (-2.0, -1.0, -0.5), (-0.0, 3.0, -0.0), (-0.0, -3.0, -inf), (-0.0, -2.0, inf),
             (-1.0, inf, 1.0), (-1.0, nan, nan), (-inf, 3.0, -inf), (-inf, -3.0, -0.0),
             (-inf, 2.0, inf), (0.5, inf, 0.0), (2.0, -inf, 0.0), (-0.0, 0.5, 0.0),
             (-inf, 0.5, inf)]
    for xv, yv, want in cases:
        got = _run(_pow_loop, np.array([xv], dtype), yv)[0]
        for value, kind in ((got, "compiled"), (vpow(xv, yv), "python")):
            np.testing.assert_allclose(value, want, rtol=4 * info.eps,
                                       err_msg=f"{kind} vpow({xv}, {yv})")
            assert np.signbit(value) == np.signbit(want), f"{kind} vpow({xv}, {yv}): sign"


def test_python_versions_agree_with_compiled():
    x = np.random.default_rng(2).uniform(0.01, 50.0, 200)
    compiled = _run(_pow_loop, x, 0.37)
    plain = np.array([vpow(v, 0.37) for v in x])
    np.testing.assert_allclose(compiled, plain, rtol=1e-14)
    assert vlog(0.0) == -math.inf and math.isnan(vlog(-2.0)) and vexp(1000.0) == math.inf
    assert vexp(-1000.0) == 0.0 and vlog(math.e) == pytest.approx(1.0, rel=1e-15)


def test_precision_follows_the_argument():
    @numba.njit
    def kinds(a32, a64):
        return vpow(a32, 0.5), vpow(a64, np.float32(0.5)), vexp(a32), vlog(a64)

    r = kinds(np.float32(2.0), 2.0)
    assert kinds.nopython_signatures[0].return_type.types == (
        numba.float32, numba.float64, numba.float32, numba.float64)
    assert r[0] == pytest.approx(math.sqrt(2.0), rel=2e-7)


def test_const_takes_the_type_of_its_second_argument():
    @numba.njit
    def kinds(a32, a64, i):
        s = a32 + vconst(1.0, a32)  # (a32 + 1.0 would be float64)
        return s, vconst(0.1, a64), vconst(3, a32), vconst(2.5, i), a32 + 1.0

    r = kinds(np.float32(2.0), 2.0, 7)
    assert kinds.nopython_signatures[0].return_type.types == (
        numba.float32, numba.float64, numba.float32, numba.float64, numba.float64)
    assert r[:4] == (3.0, 0.1, 3.0, 2.5) and r[1] == 0.1
    assert float(vconst(0.1, np.float32(1.0))) == float(np.float32(0.1)) != 0.1
    assert type(vconst(0.1, np.float32(1.0))) is np.float32
    assert vconst(1, np.float64(2.0)) == 1.0 and vconst(0.5, 3) == 0.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loop", ["pow", "cbrt", "cbrt_normal"])
def test_a_loop_over_vpow_or_vcbrt_is_vector_code(dtype, loop):
    """The point of the module: no call per element (llvmlite has no vector math library)."""
    x = np.ones(64, dtype)
    fn = {"pow": _pow_loop, "cbrt": _cbrt_loop, "cbrt_normal": _cbrt_normal_loop}[loop]
    _run(fn, x, 0.5) if loop == "pow" else _run(fn, x)
    sig = [s for s in fn.signatures if s[0].dtype == numba.from_dtype(np.dtype(dtype))]
    ir = fn.inspect_llvm(sig[0])
    scalar = "float" if dtype == np.float32 else "double"
    assert re.search(rf"<\d+ x {scalar}>", ir), "the loop did not vectorise"
    assert not re.search(r"call [^@]*@(pow|exp|log|cbrt)f?\(", ir)


def test_power_and_root_fast_paths_agree_with_vpow():
    from numbapool.vmath import power, root

    @numba.njit
    def both(x, y):
        return power(x, y), root(x, y)

    x = np.float32(2.5)
    for y in (1.0, 2.0, 3.0, 4.0, 2.5, 0.5):
        p, r = both(x, np.float32(y))
        assert p == pytest.approx(2.5 ** y, rel=3e-6) and r == pytest.approx(2.5 ** (1 / y),
                                                                             rel=3e-6)
    assert both(2.5, 2.0) == (6.25, math.sqrt(2.5))  # exact: a product and a square root
    assert both(-2.0, 3.0)[0] == -8.0 and math.isnan(both(-4.0, 2.0)[1])
    sig = both.nopython_signatures[0]
    assert sig.return_type.types == (numba.float32, numba.float32)
