"""Every registered pooler (built-ins and plugins) on the CUDA target gives the CPU's results:
forward, indices, gradients and parameter gradients, both layouts, ranks 1-3, the geometry
examples of each window rule.  The CPU kernels are tested against NumPy and PyTorch in
``tests/``; here they are the reference."""

import numpy as np
import pytest
from numba import cuda

import numbapool
from numbapool.testing import examples

SHAPES = {1: (2, 3, 9), 2: (2, 3, 6, 7), 3: (1, 2, 4, 5, 6)}


def _case_list():
    for name in numbapool.poolers():
        for rank in (1, 2, 3):
            opts = examples(name, rank)
            # Every example at rank 2; the first one at ranks 1 and 3 (the simulator is slow).
            for i, o in enumerate(opts if rank == 2 else opts[:1]):
                yield pytest.param(name, rank, o, id=f"{name}-{rank}d-{i}")


def _kwargs(name, rank, opts):
    pooler = numbapool.get(name)
    kw = dict(opts)
    if not pooler.deterministic:
        kw["seed"] = 3
    return kw


def _per_channel(name, channels):
    """Per-channel values for parameters that take them (else nothing)."""
    out = {}
    for p in numbapool.get(name).parameters:
        if p.kind == "float" and p.per_channel and p.size == 1 and p.default is not None:
            out[p.name] = float(p.default) * np.linspace(0.8, 1.2, channels)
    return out


def _to_layout(x, layout):
    return x if layout == "channels_first" else np.ascontiguousarray(np.moveaxis(x, 1, -1))


def _host(a):
    return a.copy_to_host()


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("name, rank, opts", list(_case_list()))
def test_matches_cpu(name, rank, opts, layout):
    rng = np.random.default_rng(rank)
    x = _to_layout(rng.uniform(0.5, 1.5, SHAPES[rank]), layout)
    pooler = numbapool.get(name)
    kw = dict(_kwargs(name, rank, opts), layout=layout)
    kw.update(_per_channel(name, x.shape[1] if layout == "channels_first" else x.shape[-1]))
    dx = cuda.to_device(x)

    want = numbapool.pool(name, x, **kw)
    got = numbapool.pool(name, dx, **kw)
    assert not isinstance(got, np.ndarray)
    np.testing.assert_allclose(_host(got), want, rtol=1e-12, atol=1e-12)

    if "indices" in pooler.capabilities:
        want_v, want_i = numbapool.pool(name, x, return_indices=True, **kw)
        got_v, got_i = numbapool.pool(name, dx, return_indices=True, **kw)
        np.testing.assert_array_equal(_host(got_i), want_i)
        np.testing.assert_allclose(_host(got_v), want_v, rtol=1e-12)

    gy = rng.standard_normal(want.shape)
    trainable = any(p.trainable for p in pooler.parameters)
    want_g = numbapool.pool_grad(name, x, gy, return_param_grads=trainable, **kw)
    got_g = numbapool.pool_grad(name, dx, cuda.to_device(gy), return_param_grads=trainable,
                                **kw)
    if trainable:
        (want_g, want_p), (got_g, got_p) = want_g, got_g
        assert want_p.keys() == got_p.keys()
        for k in want_p:
            np.testing.assert_allclose(got_p[k], want_p[k], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(_host(got_g), want_g, rtol=1e-9, atol=1e-12)
