"""numbapool.kernels.slots: parameter-gradient rows as bare pointers, read and written as
arrays are, and the channels-last parameter-gradient kernel that hands them out."""

from __future__ import annotations

import dataclasses
import re

import numba
import numpy as np
import pytest

import numbapool
from numbapool.builtin.reductions import sum_init, sum_take
from numbapool.kernels.cpu import VIA_CHANNELS_LAST_MIN_CHANNELS
from numbapool.kernels.slots import slot_row
from numbapool.kernels.templates import param_grad_uses_acc
from reference import ref_pool
from spies import kernel_layouts_asked


@numba.njit(error_model="numpy")
def _add_rows(gp, v, k):
    """gp (W, C) float64: channel c's row is column c; out[k] += v[c] for each channel."""
    gf = gp.reshape(-1)
    W, C = gp.shape
    for c in range(C):
        out = slot_row(gf, c, C, W)
        out[k] += v[c]
        out[k] = out[k] * 2.0


def test_a_slot_row_reads_and_writes_with_its_stride():
    gp = np.arange(12, dtype=np.float64).reshape(3, 4)
    v = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    want = gp.copy()
    want[1] = (want[1] + v) * 2.0
    _add_rows(gp, v, 1)
    np.testing.assert_array_equal(gp, want)
    ir = next(iter(_add_rows.inspect_llvm().values()))
    assert re.search(r"<\d+ x double>", ir), "the loop over channels did not vectorise"


def test_slot_row_takes_only_contiguous_float64():
    with pytest.raises(numba.TypingError):
        _add_rows(np.zeros((2, 3), np.float32), np.ones(3), 0)


def test_param_grad_uses_acc():
    pytest.importorskip("numbapool_learned")
    from numbapool_learned.reductions import GEM, GEM_CUBE, LSE, MIXED

    assert not param_grad_uses_acc(GEM) and not param_grad_uses_acc(GEM_CUBE)
    assert param_grad_uses_acc(LSE) and param_grad_uses_acc(MIXED)
    assert param_grad_uses_acc(_SCALED_SUM)


# y = s * sum(window): dy/ds = acc, read in param_grad_window; a scalar streaming reduction
# (folding as the built-in sum does), so the channels-last kernel folds each window's
# accumulator for it
@numba.njit
def _ss_finish(acc, div, prm):
    return prm[0] * acc


@numba.njit
def _ss_grad(v, tap, y, acc, div, prm):
    return prm[0] + 0.0 * v


@numba.njit
def _ss_pgrad(v, tap, y, acc, div, prm, g, out):
    pass


@numba.njit
def _ss_pgradw(y, acc, div, prm, g, out):
    out[0] += g * acc


_SCALED_SUM = numbapool.Streaming("scaled_sum_test", init=sum_init, take=sum_take,
                                  finish=_ss_finish, grad=_ss_grad, param_grad=_ss_pgrad,
                                  param_grad_window=_ss_pgradw, grad_uses_acc=False)


@pytest.fixture
def scaled_sum():
    numbapool.register(numbapool.Pooler(
        "scaled_sum_test", numbapool.Sliding(), _SCALED_SUM, "s * sum",
        parameters=(numbapool.Param("s", 1.0, "scale", trainable=True),)))
    yield "scaled_sum_test"
    numbapool.unregister("scaled_sum_test")


@pytest.mark.parametrize("layout,channels,param_layout", [
    ("channels_last", 3, "channels_last"),
    ("channels_first", VIA_CHANNELS_LAST_MIN_CHANNELS, "channels_last"),
    ("channels_first", VIA_CHANNELS_LAST_MIN_CHANNELS - 1, "channels_first"),
])
def test_param_grad_of_a_reduction_that_reads_its_accumulator(scaled_sum, layout, channels,
                                                              param_layout, monkeypatch):
    """dL/ds = sum(gy * window sums), the window sums from NumPy's reference sum pool, in
    the kernel each layout and channel count takes."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, channels, 7, 9))
    opts = dict(kernel_size=3, stride=2, padding=1)
    sums = ref_pool("sum", x, **opts)
    gy = rng.standard_normal(sums.shape)
    if layout == "channels_last":
        x, gy = (np.ascontiguousarray(np.moveaxis(a, 1, -1)) for a in (x, gy))
    asked = kernel_layouts_asked(monkeypatch)
    _, grads = numbapool.pool_grad(scaled_sum, x, gy, layout=layout, s=1.5,
                                   return_param_grads=True, **opts)
    assert (param_layout, "param_grad") in asked, asked
    gyc = gy if layout == "channels_first" else np.moveaxis(gy, -1, 1)
    assert grads["s"] == pytest.approx(float((gyc * sums).sum()), rel=1e-12)


@numba.njit
def _ends_and_sizes(gp, k):
    gf = gp.reshape(-1)
    W, C = gp.shape
    for c in range(C):
        out = slot_row(gf, c, C, W)
        out[-1] += len(out) + 10 * out.shape[0] + k


def test_a_slot_row_counts_negative_indices_from_its_end_and_has_a_length():
    buf = np.zeros(6 + 12)
    gp = buf[6:].reshape(3, 4)  # (a row before gp in memory: an index of -1 must not reach)
    _ends_and_sizes(gp, 100)
    np.testing.assert_array_equal(gp[2], np.full(4, 133.0))
    assert not gp[:2].any() and not buf[:6].any()


# the same reduction with its accumulator argument named otherwise, and with a slice of out
@numba.njit
def _renamed_pgradw(y, a, div, prm, g, out):
    out[0] += g * a


@numba.njit
def _sliced_pgradw(y, acc, div, prm, g, out):
    out[0:1] += g * acc


@pytest.mark.parametrize("pgradw,cl_kernel", [(_renamed_pgradw, True),
                                              (_sliced_pgradw, False)])
def test_param_grad_kernels_read_acc_by_position_and_take_array_rows(pgradw, cl_kernel,
                                                                     monkeypatch):
    """The accumulator is the second argument of param_grad_window whatever its name (it is
    folded for it); a function that uses out as only an array allows (a slice) does not
    compile in the channels-last kernel, and the channels-first kernel serves it."""
    red = dataclasses.replace(_SCALED_SUM, name="scaled_sum_test2", param_grad_window=pgradw)
    assert param_grad_uses_acc(red)
    numbapool.register(numbapool.Pooler(
        "scaled_sum_test2", numbapool.Sliding(), red, "s * sum",
        parameters=(numbapool.Param("s", 1.0, "scale", trainable=True),)))
    try:
        rng = np.random.default_rng(8)
        x = rng.standard_normal((2, 5, 6, 7))
        opts = dict(kernel_size=2, stride=2)
        sums = ref_pool("sum", x, **opts)
        gy = rng.standard_normal(sums.shape)
        want = float((gy * sums).sum())
        xl, gl = (np.ascontiguousarray(np.moveaxis(a, 1, -1)) for a in (x, gy))
        for _ in range(2):  # (the second call knows the kernel does not compile)
            asked = kernel_layouts_asked(monkeypatch)
            _, grads = numbapool.pool_grad("scaled_sum_test2", xl, gl, layout="channels_last",
                                           s=2.0, return_param_grads=True, **opts)
            assert grads["s"] == pytest.approx(want, rel=1e-12)
            assert (("channels_first", "param_grad") in asked) != cl_kernel, asked
    finally:
        numbapool.unregister("scaled_sum_test2")
