"""Forward passes that map each element first (``Streaming.premap``: lp with a general p),
against the NumPy reference and PyTorch's lp_pool; which windows map; the contract's
checks."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import numbapool
from numbapool import Streaming
from numbapool.builtin.reductions import LP_POW, lpv_init, lpv_take
from numbapool.kernels import cpu, mapped
from reference import ref_pool
from spies import plans_made


def _x(shape, dtype, seed=3):
    return np.random.default_rng(seed).uniform(0.0, 2.0, shape).astype(dtype)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "opts"), [
    ((2, 5, 11, 12), dict(kernel_size=3, stride=2, padding=1)),
    ((2, 5, 9, 10), dict(kernel_size=3, stride=1)),
    ((1, 3, 40), dict(kernel_size=4, stride=2)),
    ((1, 3, 6, 7, 8), dict(kernel_size=2, stride=1)),
    ((1, 64, 7, 7), dict(kernel_size=3, stride=2, padding=1)),  # (small planes: tiles)
    ((1, 2, 70, 70), dict(kernel_size=3, stride=1)),  # (planes of two MAP_BLOCK runs)
])
def test_lp_with_a_general_p_maps_then_sums(monkeypatch, layout, dtype, shape, opts):
    """lp with p = 2.5 (LP_POW) over windows that read each element at least 1.5 times: the
    ``map`` kernel raises every element to p once, and the kernels of the sum of those
    values finish the windows.  The NumPy reference's values, both layouts, 1-D to 3-D."""
    plans = plans_made(monkeypatch)
    x = _x(shape, dtype)
    want = ref_pool("lp", x, p=2.5, **opts)
    xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if layout == "channels_last" else x
    for _ in range(3):  # (repeated calls keep the plan)
        got = numbapool.pool("lp", xin, p=2.5, layout=layout, **opts)
        if layout == "channels_last":
            got = np.moveaxis(got, -1, 1)
        np.testing.assert_allclose(got, want, rtol=2e-6 if dtype == np.float32 else 1e-12)
    # (planned once: the mapped plan and, inside it, the plan of the sum)
    assert len(plans) == 2 and isinstance(plans[1], mapped.MappedPlan)
    assert plans[1].inner is plans[0] and not isinstance(plans[0], mapped.MappedPlan)
    if shape == (1, 64, 7, 7) and layout == "channels_first":
        assert isinstance(plans[0], cpu.TiledChannelsLast)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_lp_maps_as_torch_lp_pool(layout):
    """lp with p = 2.5 and p = 5 (both LP_POW), 3x3 windows at stride 1, against PyTorch's
    lp_pool2d (float64)."""
    torch = pytest.importorskip("torch")
    x = _x((2, 4, 10, 9), np.float64, seed=8)
    for p in (2.5, 5.0):
        want = torch.nn.functional.lp_pool2d(torch.from_numpy(x), p, 3, stride=1).numpy()
        xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if layout == "channels_last" else x
        got = numbapool.pool("lp", xin, 3, stride=1, p=p, layout=layout)
        if layout == "channels_last":
            got = np.moveaxis(got, -1, 1)
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize(("shape", "dtype", "opts"), [
    ((2, 5, 12, 12), np.float32, dict(kernel_size=2, stride=2)),  # (each element read once)
    ((2, 5, 12, 12), np.float32, dict(kernel_size=12)),  # (whole planes)
    ((2, 5, 12, 12), np.float32, dict(kernel_size=3, stride=3)),
    ((2, 5, 12, 12), np.int32, dict(kernel_size=3, stride=1)),  # (accumulated in float64)
])
def test_windows_that_read_elements_once_do_not_map(monkeypatch, shape, dtype, opts):
    """Windows that read each element fewer than MAP_MIN_READS times, and input the reduction
    accumulates in another type, run the reduction's own kernels; the values are the
    reference's."""
    plans = plans_made(monkeypatch)
    x = _x(shape, np.float64, seed=4)
    x = (x * 10).astype(dtype) if dtype == np.int32 else x.astype(dtype)
    got = numbapool.pool("lp", x, p=2.5, **opts)
    want = ref_pool("lp", x, p=2.5, **opts)
    np.testing.assert_allclose(got, want, rtol=2e-6 if dtype == np.float32 else 1e-12)
    assert plans and not any(isinstance(p, mapped.MappedPlan) for p in plans)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_empty_input_does_not_map(layout):
    """No channels, or no batch: an empty result, as the per-tap pass gives (the
    channels-last map kernel steps by the channels)."""
    for shape in ((2, 6, 6, 0), (0, 6, 6, 3)):
        x = np.zeros(shape, np.float32)
        if layout == "channels_first":
            x = np.moveaxis(x, -1, 1)
        got = numbapool.pool("lp", x, 3, stride=1, p=2.5, layout=layout)
        want = (shape[0], 4, 4, shape[3])
        assert got.shape == (want if layout == "channels_last"
                             else (want[0], want[3], *want[1:3]))


def test_the_map_pays_from_1_5_reads():
    """``pays``: each element read at least 1.5 times, windows shared by the planes, values
    only, floating input accumulated in its own type, a reduction with premap."""
    from numbapool.geometry import SINGLETON, sliding_axis

    x = np.zeros((1, 1, 1, 12, 12), np.float32)

    def axes(k, s, pad=0):
        return (SINGLETON, *(sliding_axis(12, k, s, pad, pad, 1, False) for _ in range(2)))

    assert mapped.pays(LP_POW, x, axes(3, 1), False)  # (30 taps of 12 an axis: 6.25 reads)
    assert mapped.pays(LP_POW, x, axes(3, 2, 1), False)  # (17 of 12: 2.01)
    assert mapped.pays(LP_POW, x, axes(3, 2), False)  # (15 of 12: 1.56)
    assert not mapped.pays(LP_POW, x, axes(2, 2), False)  # (1.0)
    assert not mapped.pays(LP_POW, x, axes(3, 3), False)
    assert not mapped.pays(LP_POW, x, axes(3, 2), True)  # (indices)
    assert not mapped.pays(LP_POW, x.astype(np.float16), axes(3, 1), False)
    from numbapool.builtin.reductions import AVG
    assert not mapped.pays(AVG, x, axes(3, 1), False)  # (no premap)


def test_premap_needs_a_sum_of_one_value_per_element():
    """A reduction declaring premap must fold by a sum (``merge``), ignore ``tap`` and keep a
    scalar accumulator; premap must be jitted."""
    premap = numba.njit(lambda v, prm: v * v)
    ok = dict(init=lpv_init, take=lpv_take, finish=LP_POW.finish, grad=LP_POW.grad,
              merge=LP_POW.merge, uses_tap=False)
    Streaming("ok", premap=premap, **ok)
    with pytest.raises(ValueError, match="premap needs merge"):
        Streaming("bad", premap=premap, **dict(ok, uses_tap=True))
    with pytest.raises(ValueError, match="premap needs merge"):
        Streaming("bad", premap=premap, **dict(ok, merge=None))
    with pytest.raises(TypeError, match="premap must be a numba.njit function"):
        Streaming("bad", premap=lambda v, prm: v, **ok)


def test_the_sum_of_mapped_values_is_forward_only():
    """``summed(reduction)``: the same finish and divisors, one object per reduction, and a
    gradient that raises (the gradients run the reduction itself)."""
    s = mapped.summed(LP_POW)
    assert s is mapped.summed(LP_POW)
    assert s.finish is LP_POW.finish and s.uses_divisor == LP_POW.uses_divisor
    assert s.branchless and s.merge is not None and not s.uses_tap
    with pytest.raises(ValueError, match="forward passes only"):
        s.grad(1.0, 0, 1.0, 1.0, 1.0, np.ones(1))
