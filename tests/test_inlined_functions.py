"""Reduction functions are compiled again for the kernels (numbapool.kernels.codegen.
kernel_version): inlined with the kernels' flags, their jitted helpers too."""

import numba
import numpy as np
import pytest

import numbapool
from numbapool import Pooler, Sliding, Streaming
from numbapool.kernels.codegen import kernel_version


@numba.njit(cache=True)
def _ratio(a, b):  # a helper, reached through the reduction's globals
    return a / b


@numba.njit(cache=True)
def _first(v, tap, prm):
    return v


@numba.njit(cache=True)
def _plus(acc, v, tap, prm):
    return acc + v


@numba.njit(cache=True)
def _merge(a, b, prm):
    return a + b


@numba.njit(cache=True)
def _over_zero(acc, div, prm):
    return _ratio(acc, div - div)  # a division by zero, on purpose


@numba.njit(cache=True)
def _grad(v, tap, y, acc, div, prm):
    return 1.0


@pytest.mark.parametrize("merge", [None, _merge], ids=["generic", "column-first"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_a_division_by_zero_in_a_reduction_gives_inf_not_an_exception(merge, layout):
    red = Streaming("over_zero", init=_first, take=_plus, finish=_over_zero, grad=_grad,
                    uses_divisor=True, merge=merge, uses_tap=merge is None)
    numbapool.register(Pooler("test_over_zero", Sliding(), red, "test"))
    try:
        x = np.array([[[[1.0, -2.0], [0.0, 0.0]]]])
        if layout == "channels_last":
            x = np.moveaxis(x, 1, -1)
        got = numbapool.pool("test_over_zero", x, 1, layout=layout).ravel()
        with np.errstate(divide="ignore", invalid="ignore"):
            want = np.array([1.0, -2.0, 0.0, 0.0]) / 0.0
        np.testing.assert_array_equal(got, want)
    finally:
        numbapool.unregister("test_over_zero")
    with pytest.raises(ZeroDivisionError):
        _over_zero(1.0, 1.0, None)  # (the function itself keeps Python's error model)


def test_kernel_versions_are_made_once_and_convert_helpers():
    version = kernel_version(_over_zero)
    assert kernel_version(_over_zero) is version
    assert kernel_version(_over_zero, reassoc=True) is not version
    assert version.targetoptions["inline"] == "always"
    assert version.targetoptions["error_model"] == "numpy"
    helper = version.py_func.__globals__["_ratio"]
    assert helper is kernel_version(_ratio) and helper is not _ratio
    assert _over_zero.py_func.__globals__["_ratio"] is _ratio  # the original is untouched


@numba.njit(cache=True)
def _take_non_negative(acc, v, tap, prm):
    if v < 0:
        raise ValueError("negative input")
    return acc + v


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_an_exception_in_a_reduction_is_raised_not_a_wrong_result(layout):
    """A reduction function that raises inside a kernel (a C callback, which cannot pass it
    on) makes the call raise, instead of returning an output the kernel did not finish."""
    red = Streaming("non_negative", init=_first, take=_take_non_negative, finish=_over_zero,
                    grad=_grad, uses_divisor=True)
    numbapool.register(Pooler("test_non_negative", Sliding(), red, "test"))
    try:
        x = np.ones((1, 2, 4, 4))
        if layout == "channels_last":
            x = np.moveaxis(x, 1, -1).copy()
        numbapool.pool("test_non_negative", x, 2, layout=layout)  # fine
        x[0, 1, 1, 1] = -1.0
        with pytest.raises(RuntimeError, match="raised an exception in compiled code"):
            numbapool.pool("test_non_negative", x, 2, layout=layout)
    finally:
        numbapool.unregister("test_non_negative")
