"""How parameters reach the CPU kernels (numbapool.kernels.params): a tuple of columns, read
as a tuple of scalars per channel, in the accumulator's precision; or the array itself."""

import numba
import numpy as np
import pytest

from numbapool.kernels.params import MAX_TUPLE_WIDTH, for_kernel, lane, row, rows
from numbapool.vmath import vexp


def test_narrow_parameters_become_columns_in_the_accumulators_precision():
    prm = np.arange(6, dtype=np.float64).reshape(3, 2) + 0.1
    cols = for_kernel(prm, np.float64(0))
    assert isinstance(cols, tuple) and len(cols) == 2
    assert all(c.dtype == np.float64 and c.flags.c_contiguous for c in cols)
    np.testing.assert_array_equal(cols[1], prm[:, 1])
    cols32 = for_kernel(prm, np.float32(0))
    assert all(c.dtype == np.float32 for c in cols32)
    assert for_kernel(prm, np.int64(0))[0].dtype == np.float64  # (an integer sum)


@pytest.mark.parametrize("width", [0, MAX_TUPLE_WIDTH + 1])
def test_none_or_wide_parameters_stay_an_array(width):
    prm = np.ones((4, width))
    assert for_kernel(prm, np.float32(0)) is prm


@numba.njit
def _read(prm, c):
    pr = row(prm, c)
    return pr[0] + 10.0 * pr[len(pr) - 1], rows(prm)


@pytest.mark.parametrize("shape", [(1, 3), (5, 3), (5, 12)])
def test_row_reads_the_same_channel_from_either_form(shape):
    prm = np.random.default_rng(0).uniform(size=shape)
    for c in range(7):
        want = (prm[c % shape[0], 0] + 10.0 * prm[c % shape[0], -1], shape[0])
        for form in (prm, for_kernel(prm, np.float64(0))):
            assert _read(form, c) == pytest.approx(want, rel=1e-15)
            got = row(form, c)
            assert float(got[0]) == prm[c % shape[0], 0] and rows(form) == shape[0]


@numba.njit
def _read_lane(prm, c):
    pr = lane(prm, c)
    return pr[0] + 10.0 * pr[len(pr) - 1]


@pytest.mark.parametrize("shape", [(5, 3), (5, 12)])
def test_lane_reads_a_channels_own_row_from_either_form(shape):
    """``lane``: channel ``c``'s row where every channel has one (the loops over channels of
    the kernels for parameters by channel)."""
    prm = np.random.default_rng(1).uniform(size=shape)
    for c in range(shape[0]):
        for form in (prm, for_kernel(prm, np.float64(0))):
            assert _read_lane(form, c) == pytest.approx(prm[c, 0] + 10.0 * prm[c, -1],
                                                        rel=1e-15)


def test_the_channels_last_forward_takes_its_twin_or_refuses_parameters_by_channel():
    """A channels-last forward with a row of parameters a channel runs the kernel that reads
    each channel's (``forward_channels``: each channel's generalised mean with its own p,
    against NumPy); windows that differ by plane, which no such kernel takes, are refused
    rather than given channel 0's row for all."""
    from numbapool.api import REGISTRY
    from numbapool.geometry import SINGLETON, explicit_axis, sliding_axis
    from numbapool.kernels import cpu

    axes = (SINGLETON, sliding_axis(5, 2, 2, 0, 0, 1, False),
            sliding_axis(4, 2, 2, 0, 0, 1, False))
    rng = np.random.default_rng(3)
    x = rng.uniform(0.1, 2.0, (2, 1, 5, 4, 3))
    p = np.array([1.5, 2.0, 3.5])
    red = REGISTRY.get("gem").resolve({"p": p, "eps": 1e-6})
    prm = np.stack([p, np.full(3, 1e-6)], axis=1)  # (gem's rows: p, eps)
    plan = cpu.plan_forward(red, "channels_last", x, axes, prm)
    assert plan.kernel.name.endswith("/forward_channels")
    got, _ = plan.run(x)
    want = np.empty((2, 1, 2, 2, 3))
    for n in range(2):
        for i in range(2):
            for j in range(2):
                for c in range(3):
                    window = x[n, 0, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c]
                    want[n, 0, i, j, c] = np.mean(window ** p[c]) ** (1 / p[c])
    np.testing.assert_allclose(got, want, rtol=1e-13)
    by_plane = explicit_axis(4, np.array([[0, 2], [1, 2]] * 3), 2)
    with pytest.raises(ValueError, match="one row of parameters"):
        cpu.plan_forward(red, "channels_last", x, axes[:2] + (by_plane,), prm)


@pytest.mark.parametrize("variant", ["forward_channels", "backward_channels",
                                     "backward_global_channels", "param_grad_channels"])
def test_the_kernels_for_parameters_by_channel_are_channels_last_only(variant):
    from numbapool.api import REGISTRY
    from numbapool.kernels.templates import kernel_source

    red = REGISTRY.get("lp").resolve({"p": 2.0})
    assert "_lane(prm, ch)" in kernel_source(red, "channels_last", variant)
    with pytest.raises(ValueError, match="channels-last kernel"):
        kernel_source(red, "channels_first", variant)


# A weight a tap, y = sum(w[tap] v); its (test) parameter gradient adds into out[tap], at a
# variable index, in a kernel that inlines vmath's vexp
@numba.njit
def _tw_init(v, tap, prm):
    return prm[tap] * v


@numba.njit
def _tw_take(acc, v, tap, prm):
    return acc + prm[tap] * v


@numba.njit
def _tw_finish(acc, div, prm):
    return acc


@numba.njit
def _tw_grad(v, tap, y, acc, div, prm):
    return prm[tap]


@numba.njit
def _gate(z):
    return 1.0 / (1.0 + vexp(-z))


@numba.njit
def _tw_param_grad(v, tap, y, acc, div, prm, g, out):  # (not the true gradient: a test)
    out[tap] += g * v * _gate(acc)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("width", [4, 9])  # (a tuple of columns; an array)
@pytest.mark.parametrize("by_channel", [True, False])
def test_parameter_gradients_written_at_a_variable_index(monkeypatch, layout, width,
                                                         by_channel):
    """dL/dw[tap] = sum over windows of g v[tap] gate(y), in the channels-last kernel
    (channels first too, with 8 channels), a row of weights a channel or one for all.
    Inlined in Numba's IR, the kernels' parameter gradients lost their stores
    ``out[tap] += ...`` to the dead-code pass run after inlining vexp: all zeros, with no
    error."""
    import numbapool
    from spies import kernel_layouts_asked

    asked = kernel_layouts_asked(monkeypatch)

    red = numbapool.Streaming("tap_weights_test", init=_tw_init, take=_tw_take,
                              finish=_tw_finish, grad=_tw_grad, grad_uses_acc=False,
                              param_grad=_tw_param_grad)
    numbapool.register(numbapool.Pooler(
        "tap_weights_test", numbapool.Sliding(), red, "test only",
        parameters=(numbapool.Param("w", 1.0, "a weight a tap", trainable=True,
                                    size="window", per_channel=True),)))
    try:
        k = 2 if width == 4 else 3
        rng = np.random.default_rng(7)
        x = rng.standard_normal((2, 8, 7, 7))
        w = rng.standard_normal((8, k * k) if by_channel else (k * k,))
        gy = rng.standard_normal((2, 8, 3, 3))
        taps = [x[:, :, i:i + 5:2, j:j + 5:2] for i in range(k) for j in range(k)]
        wc = w if by_channel else np.broadcast_to(w, (8, k * k))
        y = sum(wc[None, :, t, None, None] * taps[t] for t in range(k * k))
        gated = gy / (1.0 + np.exp(-y))
        want = np.stack([np.einsum("ncab,ncab->c", gated, taps[t]) for t in range(k * k)],
                        axis=1)
        if not by_channel:
            want = want.sum(axis=0)
        kw = dict(kernel_size=k, stride=2, w=w, return_param_grads=True, layout=layout)
        if layout == "channels_last":
            _, pg = numbapool.pool_grad("tap_weights_test", np.moveaxis(x, 1, -1),
                                        np.moveaxis(gy, 1, -1), **kw)
        else:
            _, pg = numbapool.pool_grad("tap_weights_test", x, gy, **kw)
        np.testing.assert_allclose(pg["w"], want, rtol=1e-12, atol=1e-12)
        kernel = "param_grad_channels" if by_channel else "param_grad"
        assert ("channels_last", kernel) in asked
    finally:
        numbapool.unregister("tap_weights_test")
