"""Learned / smooth poolers of the numbapool-learned plugin against PyTorch autograd.

Every expected value comes from the textbook formula written in torch (float64) over the
sliding windows extracted with ``Tensor.unfold``; gradients (x and trainable parameters) come
from torch autograd of ``sum(grad_output * y)``.  numbapool is never compared with itself.
For ``layout="channels_last"`` the input is moved with ``np.moveaxis(x, 1, -1)`` and the
results are moved back before comparing.

Stochastic pooling in training mode is random; it is checked by its properties (outputs are
window elements, seeds reproduce, selection frequencies match ``relu(x) / sum(relu(x))``, the
gradient follows the selected element).
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import numbapool  # noqa: E402

RTOL64, ATOL64 = 1e-9, 1e-12
RTOL32, ATOL32 = 1e-4, 1e-5
C = 3  # channels in every test array (per-channel parameters have this length)

# The trainable parameters of each pooler (stochastic has none: training/seed are options).
TRAINABLE = {
    "gem": {"p"},
    "mixed": {"alpha"},
    "gated": {"w"},
    "lse": {"r"},
    "softpool": set(),
    "stochastic": set(),
}
POOLERS = list(TRAINABLE)


def _plugin_missing() -> bool:
    try:
        numbapool.get("softpool")
    except LookupError:
        return True
    return False


pytestmark = pytest.mark.skipif(_plugin_missing(),
                                reason="numbapool-learned is not installed")


# ----------------------------------------------------------------------------------------------
# helpers: the torch oracle
# ----------------------------------------------------------------------------------------------


def _tuple(v, rank):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * rank


def twindows(t, kernel, stride, dilation=1):
    """Sliding windows of ``t`` (N, C, *S) without padding: (N, C, *O, K).

    The last axis lists a window's taps in row-major order over the kernel's axes (tap ``t`` of
    the spec).  Built with ``Tensor.unfold`` (span ``(k - 1) * d + 1``, step ``stride``) and a
    ``::d`` slice for the dilation.
    """
    rank = t.dim() - 2
    k, s, d = _tuple(kernel, rank), _tuple(stride, rank), _tuple(dilation, rank)
    for i in range(rank):
        t = t.unfold(2 + i, (k[i] - 1) * d[i] + 1, s[i])[..., :: d[i]]
    return t.reshape(*t.shape[: 2 + rank], -1)


def _per_window(param, rank):
    """A scalar or (C,) parameter, shaped to broadcast against (N, C, *O)."""
    return param if param.dim() == 0 else param.reshape(1, -1, *([1] * rank))


def _per_tap(param, rank):
    """A scalar or (C,) parameter, shaped to broadcast against windows (N, C, *O, K)."""
    return param if param.dim() == 0 else param.reshape(1, -1, *([1] * rank), 1)


def torch_gem(xw, rank, p, eps=1e-6):
    return (xw.clamp(min=eps) ** _per_tap(p, rank)).mean(-1) ** (1.0 / _per_window(p, rank))


def torch_mixed(xw, rank, alpha):
    a = _per_window(alpha, rank)
    return a * xw.amax(-1) + (1.0 - a) * xw.mean(-1)


def torch_gated(xw, rank, w):
    if w.dim() == 0:
        wb = w
    elif w.dim() == 1:  # (K,)
        wb = w.reshape(*([1] * (2 + rank)), -1)
    else:  # (C, K)
        wb = w.reshape(1, w.shape[0], *([1] * rank), w.shape[1])
    z = (wb * xw).sum(-1)
    s = torch.sigmoid(z)
    return s * xw.amax(-1) + (1.0 - s) * xw.mean(-1)


def torch_lse(xw, rank, r):
    k = xw.shape[-1]
    # (1/r) * log(mean(exp(r x))) = (logsumexp(r x) - log K) / r
    return (torch.logsumexp(_per_tap(r, rank) * xw, -1) - math.log(k)) / _per_window(r, rank)


def torch_softpool(xw, rank):
    return (torch.softmax(xw, -1) * xw).sum(-1)


def torch_stochastic_eval(xw, rank):
    m = torch.relu(xw)
    return (m * xw).sum(-1) / m.sum(-1)


TORCH_FORMULA = {
    "gem": torch_gem,
    "mixed": torch_mixed,
    "gated": torch_gated,
    "lse": torch_lse,
    "softpool": torch_softpool,
    "stochastic": torch_stochastic_eval,
}


def T(a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def torch_reference(name, x, g, kernel, stride, dilation, tparams):
    """y, dL/dx and dL/dparam (L = sum(g * y)) from torch autograd, all float64 numpy."""
    rank = x.ndim - 2
    xt = T(x).requires_grad_(True)
    pt = {k: T(np.asarray(v)).requires_grad_(True) if k in TRAINABLE[name] else float(v)
          for k, v in tparams.items()}
    y = TORCH_FORMULA[name](twindows(xt, kernel, stride, dilation), rank, **pt)
    assert y.shape == g.shape, (y.shape, g.shape)
    (y * T(g)).sum().backward()
    pgrads = {k: t.grad.numpy().copy() for k, t in pt.items() if k in TRAINABLE[name]}
    return y.detach().numpy(), xt.grad.numpy().copy(), pgrads


def make_x(name, shape, seed):
    """Test data: positive for gem / stochastic, standard normal otherwise (no ties)."""
    rng = np.random.default_rng(seed)
    if name in ("gem", "stochastic"):
        return rng.uniform(0.1, 2.0, size=shape)
    return rng.standard_normal(size=shape)


def make_params(name, kind, kernel, rank, seed):
    """numbapool keyword parameters for ``name``: kind "scalar" or "per_channel"."""
    rng = np.random.default_rng(1000 + seed)
    K = int(np.prod(_tuple(kernel, rank)))
    per = kind == "per_channel"
    if name == "gem":
        return {"p": np.array([1.5, 3.0, 4.5]) if per else 2.5}
    if name == "mixed":
        return {"alpha": np.array([0.2, 0.55, 0.9]) if per else 0.3}
    if name == "gated":
        return {"w": 0.5 * rng.standard_normal((C, K) if per else K)}
    if name == "lse":
        return {"r": np.array([0.5, 1.0, 2.5]) if per else 1.7}
    if name == "stochastic":
        return {"training": False}
    return {}


def torch_params(name, params):
    """The float parameters the torch formula takes (stochastic's training flag is not one)."""
    return {k: v for k, v in params.items() if k != "training"}


def kernels_ran(monkeypatch) -> list[tuple[str, str]]:
    """The ``(layout, variant)`` of every CPU kernel the calls ask for from now on."""
    from numbapool.kernels import cpu

    ran: list[tuple[str, str]] = []
    real = cpu.get_kernel

    def spy(reduction, kernel_layout, variant):
        ran.append((kernel_layout, variant))
        return real(reduction, kernel_layout, variant)

    monkeypatch.setattr(cpu, "get_kernel", spy)
    return ran


def np_call(name, x, g, kernel, stride, dilation, layout, params):
    """numbapool's y, dL/dx and param grads, returned channels-first."""
    xin = np.moveaxis(x, 1, -1) if layout == "channels_last" else x
    gin = np.moveaxis(g, 1, -1) if layout == "channels_last" else g
    kw = dict(stride=stride, dilation=dilation, layout=layout, **params)
    y = numbapool.pool(name, xin, kernel, **kw)
    gx, pg = numbapool.pool_grad(name, xin, gin, kernel, return_param_grads=True, **kw)
    gx_only = numbapool.pool_grad(name, xin, gin, kernel, **kw)
    assert isinstance(gx_only, np.ndarray)
    # (the input gradient runs in the same kernels with or without parameter gradients)
    np.testing.assert_array_equal(gx_only, gx)
    assert y.dtype == x.dtype and gx.dtype == x.dtype
    assert gx.shape == xin.shape
    if layout == "channels_last":
        y, gx = np.moveaxis(y, -1, 1), np.moveaxis(gx, -1, 1)
    return y, gx, pg


def check_against_torch(name, x, kernel, stride, dilation, layout, params, *, seed=0,
                        rtol=RTOL64, atol=ATOL64):
    rank = x.ndim - 2
    x64 = x.astype(np.float64)
    tparams = torch_params(name, params)
    # grad_output: random, shape of the torch result
    with torch.no_grad():
        shape = TORCH_FORMULA[name](twindows(T(x64), kernel, stride, dilation), rank,
                                    **{k: T(np.asarray(v)) if k in TRAINABLE[name] else float(v)
                                       for k, v in tparams.items()}).shape
    g = np.random.default_rng(seed + 77).standard_normal(tuple(shape))
    y_ref, gx_ref, pg_ref = torch_reference(name, x64, g, kernel, stride, dilation, tparams)

    y, gx, pg = np_call(name, x, g.astype(x.dtype), kernel, stride, dilation, layout, params)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=rtol, atol=atol, err_msg=f"{name}: forward")
    np.testing.assert_allclose(gx, gx_ref, rtol=rtol, atol=atol, err_msg=f"{name}: dL/dx")

    assert isinstance(pg, dict)
    assert set(pg) == TRAINABLE[name], (set(pg), TRAINABLE[name])
    for k, ref in pg_ref.items():
        given = np.shape(params.get(k, 0.0))
        if given == ():
            assert isinstance(pg[k], float), (k, type(pg[k]))
        else:
            assert isinstance(pg[k], np.ndarray) and pg[k].shape == given, (k, np.shape(pg[k]))
        np.testing.assert_allclose(pg[k], ref, rtol=rtol, atol=atol,
                                   err_msg=f"{name}: dL/d{k}")


# ----------------------------------------------------------------------------------------------
# the oracle itself
# ----------------------------------------------------------------------------------------------


def test_oracle_windows_match_torch_pooling():
    """twindows() + max/mean agree with torch's own max_pool / avg_pool (and F.unfold)."""
    rng = np.random.default_rng(5)
    x2 = T(rng.standard_normal((2, 3, 9, 8)))
    w = twindows(x2, (3, 2), (2, 1))
    torch.testing.assert_close(w.amax(-1), F.max_pool2d(x2, (3, 2), (2, 1)))
    torch.testing.assert_close(w.mean(-1), F.avg_pool2d(x2, (3, 2), (2, 1)))
    # tap order: row-major over the kernel, as F.unfold lists it
    u = F.unfold(x2, (3, 2), dilation=2, stride=(2, 1))  # (N, C*K, L)
    wd = twindows(x2, (3, 2), (2, 1), 2)
    torch.testing.assert_close(wd.reshape(2, 3, -1, 6).permute(0, 1, 3, 2).reshape(2, 18, -1), u)
    torch.testing.assert_close(wd.amax(-1), F.max_pool2d(x2, (3, 2), (2, 1), dilation=2))
    x1 = T(rng.standard_normal((2, 3, 11)))
    torch.testing.assert_close(twindows(x1, 3, 2).mean(-1), F.avg_pool1d(x1, 3, 2))
    torch.testing.assert_close(twindows(x1, 3, 1, 2).amax(-1),
                               F.max_pool1d(x1, 3, 1, dilation=2))
    x3 = T(rng.standard_normal((2, 3, 5, 6, 5)))
    torch.testing.assert_close(twindows(x3, (2, 3, 2), (1, 2, 1)).mean(-1),
                               F.avg_pool3d(x3, (2, 3, 2), (1, 2, 1)))
    torch.testing.assert_close(twindows(x3, 2, 1, 2).amax(-1),
                               F.max_pool3d(x3, 2, 1, dilation=2))


# ----------------------------------------------------------------------------------------------
# values and gradients against torch autograd
# ----------------------------------------------------------------------------------------------

# (shape, kernel, stride, layout, parameter kind)
GEOMETRIES = [
    pytest.param((2, C, 7, 7), 3, 2, "channels_first", "scalar", id="2d-k3s2-cf-scalar"),
    pytest.param((2, C, 7, 7), 3, 2, "channels_last", "per_channel", id="2d-k3s2-cl-perch"),
    pytest.param((2, C, 8, 8), 2, 2, "channels_first", "per_channel", id="2d-k2s2-cf-perch"),
    pytest.param((2, C, 8, 8), 2, 2, "channels_last", "scalar", id="2d-k2s2-cl-scalar"),
    pytest.param((2, C, 7, 6), (3, 2), (2, 1), "channels_first", "per_channel",
                 id="2d-k3x2s2x1-cf-perch"),
    pytest.param((2, C, 11), 3, 2, "channels_first", "per_channel", id="1d-k3s2-cf-perch"),
    pytest.param((2, C, 5, 6, 5), (2, 3, 2), (1, 2, 1), "channels_last", "scalar",
                 id="3d-k232s121-cl-scalar"),
]


@pytest.mark.parametrize("shape, kernel, stride, layout, kind", GEOMETRIES)
@pytest.mark.parametrize("name", POOLERS)
def test_values_and_gradients(name, shape, kernel, stride, layout, kind):
    rank = len(shape) - 2
    x = make_x(name, shape, seed=zlib.crc32(repr((name, shape)).encode()) % 1000)
    params = make_params(name, kind, kernel, rank, seed=len(shape))
    check_against_torch(name, x, kernel, stride, 1, layout, params)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("name", POOLERS)
def test_dilation(name, layout):
    """dilation=2 (gem and lse are the spec's cases; the others ride along)."""
    x = make_x(name, (2, C, 9, 8), seed=11)
    kind = "per_channel" if layout == "channels_first" else "scalar"
    params = make_params(name, kind, 3, 2, seed=3)
    check_against_torch(name, x, 3, (1, 2), 2, layout, params)


@pytest.mark.parametrize("name", ["gem", "lse"])
def test_dilation_1d_3d(name):
    params = make_params(name, "per_channel", 2, 1, seed=4)
    check_against_torch(name, make_x(name, (2, C, 12), seed=12), 3, 2, 3, "channels_first",
                        params)
    params = make_params(name, "scalar", 2, 3, seed=4)
    check_against_torch(name, make_x(name, (1, C, 5, 6, 5), seed=13), 2, 1, (2, 1, 2),
                        "channels_first", params)


DEFAULTS = {
    "gem": {"p": 3.0, "eps": 1e-6},
    "mixed": {"alpha": 0.5},
    "lse": {"r": 1.0},
    "softpool": {},
}


@pytest.mark.parametrize("name", list(DEFAULTS))
def test_defaults(name):
    """Omitted parameters take their documented defaults."""
    x = make_x(name, (2, C, 8, 8), seed=21)
    g = np.random.default_rng(22).standard_normal((2, C, 4, 4))
    y_ref, gx_ref, pg_ref = torch_reference(name, x, g, 2, 2, 1, DEFAULTS[name])
    y = numbapool.pool(name, x, 2)
    gx, pg = numbapool.pool_grad(name, x, g, 2, return_param_grads=True)
    np.testing.assert_allclose(y, y_ref, rtol=RTOL64, atol=ATOL64)
    np.testing.assert_allclose(gx, gx_ref, rtol=RTOL64, atol=ATOL64)
    assert set(pg) == TRAINABLE[name]
    for k, ref in pg_ref.items():
        np.testing.assert_allclose(pg[k], ref, rtol=RTOL64, atol=ATOL64)


def test_gated_default_w_is_zero():
    """Default w = 0: sigmoid(0) = 1/2, y = (max + mean) / 2; x-gradient to match."""
    x = make_x("gated", (2, C, 8, 8), seed=23)
    g = np.random.default_rng(24).standard_normal((2, C, 4, 4))
    y_ref, gx_ref, _ = torch_reference("gated", x, g, 2, 2, 1, {"w": np.zeros(4)})
    np.testing.assert_allclose(numbapool.pool("gated", x, 2), y_ref, rtol=RTOL64, atol=ATOL64)
    np.testing.assert_allclose(numbapool.pool_grad("gated", x, g, 2), gx_ref, rtol=RTOL64,
                               atol=ATOL64)


def test_stochastic_eval_ignores_seed():
    """training=False is the expectation sum(x relu(x)) / sum(relu(x)); for positive x that is
    sum(x^2) / sum(x), independent of any seed."""
    x = make_x("stochastic", (2, C, 6, 6), seed=25)
    y = numbapool.pool("stochastic", x, 2, training=False, seed=1)
    xw = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(2, 3))[:, :, ::2, ::2]
    xw = xw.reshape(*xw.shape[:4], 4)
    np.testing.assert_allclose(y, (xw**2).sum(-1) / xw.sum(-1), rtol=RTOL64, atol=ATOL64)
    np.testing.assert_array_equal(y, numbapool.pool("stochastic", x, 2, training=False, seed=2))


def test_gem_values_below_eps():
    """Elements below eps (including negative ones) are clamped to eps: gradient zero there."""
    rng = np.random.default_rng(31)
    eps = 0.05
    x = rng.uniform(0.1, 2.0, size=(2, C, 7, 7))
    mask = rng.random(x.shape) < 0.3
    x[mask] = rng.uniform(-1.0, 0.03, size=int(mask.sum()))
    x[0, 0, :3, :3] = -0.5  # a whole window below eps: y = eps
    params = {"p": np.array([2.0, 3.0, 5.0]), "eps": eps}
    check_against_torch("gem", x, 3, 2, 1, "channels_first", params)
    check_against_torch("gem", x, 2, 2, 1, "channels_last", {"p": 3.5, "eps": eps})
    g = np.ones((2, C, 3, 3))
    gx = numbapool.pool_grad("gem", x, g, 3, stride=2, **params)
    assert np.all(gx[x < eps] == 0.0)
    assert numbapool.pool("gem", x, 3, stride=2, **params)[0, 0, 0, 0] == pytest.approx(eps)


def test_lse_r_must_be_positive():
    x = make_x("lse", (1, C, 4, 4), seed=42)
    for r in (0.0, -1.0, np.array([1.0, 0.0, 2.0])):
        with pytest.raises(ValueError, match="r"):
            numbapool.pool("lse", x, 2, r=r)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_mixed_ties_like_max_pool(layout):
    """With ties the max part's gradient goes to the first maximal element in row-major window
    order: the oracle is F.max_pool2d (whose CPU backward does that) plus F.avg_pool2d."""
    x = np.random.default_rng(43).integers(0, 3, size=(2, C, 9, 9)).astype(np.float64)
    g = np.random.default_rng(44).standard_normal((2, C, 4, 4))
    alpha = np.array([0.25, 0.5, 1.0])
    xt = T(x).requires_grad_(True)
    at = T(alpha).requires_grad_(True)
    a = at.reshape(1, C, 1, 1)
    y_ref = a * F.max_pool2d(xt, 3, 2) + (1 - a) * F.avg_pool2d(xt, 3, 2)
    (y_ref * T(g)).sum().backward()
    y, gx, pg = np_call("mixed", x, g, 3, 2, 1, layout, {"alpha": alpha})
    np.testing.assert_allclose(y, y_ref.detach().numpy(), rtol=RTOL64, atol=ATOL64)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=RTOL64, atol=ATOL64)
    np.testing.assert_allclose(pg["alpha"], at.grad.numpy(), rtol=RTOL64, atol=ATOL64)


def test_gated_scalar_w_param_grad():
    """A scalar w is shared by all taps, so its gradient is a float: the sum of the per-tap
    gradients."""
    x = make_x("gated", (2, C, 8, 8), seed=45)
    g = np.random.default_rng(46).standard_normal((2, C, 4, 4))
    y_ref, gx_ref, pg_ref = torch_reference("gated", x, g, 2, 2, 1, {"w": np.full(4, 0.3)})
    np.testing.assert_allclose(numbapool.pool("gated", x, 2, w=0.3), y_ref, rtol=RTOL64,
                               atol=ATOL64)
    gx, pg = numbapool.pool_grad("gated", x, g, 2, w=0.3, return_param_grads=True)
    np.testing.assert_allclose(gx, gx_ref, rtol=RTOL64, atol=ATOL64)
    assert isinstance(pg["w"], float)
    np.testing.assert_allclose(pg["w"], pg_ref["w"].sum(), rtol=RTOL64, atol=ATOL64)


def test_gated_default_w_param_grad():
    """The default w (0.0, all zeros) must not break return_param_grads; its gradient is the
    per-tap (K,) array, or (a default given as the scalar 0.0) their sum as a float."""
    x = make_x("gated", (2, C, 8, 8), seed=47)
    g = np.random.default_rng(48).standard_normal((2, C, 4, 4))
    _, gx_ref, pg_ref = torch_reference("gated", x, g, 2, 2, 1, {"w": np.zeros(4)})
    gx, pg = numbapool.pool_grad("gated", x, g, 2, return_param_grads=True)
    np.testing.assert_allclose(gx, gx_ref, rtol=RTOL64, atol=ATOL64)
    assert set(pg) == {"w"}
    if isinstance(pg["w"], float):
        np.testing.assert_allclose(pg["w"], pg_ref["w"].sum(), rtol=RTOL64, atol=ATOL64)
    else:
        assert pg["w"].shape == (4,)
        np.testing.assert_allclose(pg["w"], pg_ref["w"], rtol=RTOL64, atol=ATOL64)


def test_float32():
    x = make_x("gem", (2, C, 7, 7), seed=41).astype(np.float32)
    check_against_torch("gem", x, 3, 2, 1, "channels_first", {"p": np.array([1.5, 3.0, 4.5])},
                        rtol=RTOL32, atol=ATOL32)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gem_with_p_3_takes_cube_and_cube_root(layout, dtype):
    """p = 3 in every channel (the default) runs the cube / cube-root reduction; p of 1 to 4
    the general one (power's products); any other p vpow with no tests on p (GEM_POW).  All
    against torch, gradients and dL/dp included."""
    from numbapool_learned.reductions import GEM, GEM_CUBE, GEM_POW

    gem = numbapool.get("gem")
    assert gem.resolve({"p": 3.0, "eps": 1e-6}) is GEM_CUBE
    assert gem.resolve({"p": np.full(C, 3.0), "eps": 1e-6}) is GEM_CUBE
    assert gem.resolve({"p": np.array([3.0, 2.0, 4.0]), "eps": 1e-6}) is GEM
    assert gem.resolve({"p": np.array([3.0, 3.0, 2.5]), "eps": 1e-6}) is GEM_POW
    assert gem.resolve({"p": 2.5, "eps": 1e-6}) is GEM_POW
    x = make_x("gem", (2, C, 9, 8), seed=43).astype(dtype)
    x[0, 1, :3, :3] = 1e-9  # a window wholly below eps: the mean is eps**3
    tol = dict(rtol=RTOL32, atol=ATOL32) if dtype == np.float32 else {}
    check_against_torch("gem", x, 3, 2, 1, layout, {"p": 3.0}, **tol)
    check_against_torch("gem", x, (2, 3), 1, (2, 1), layout, {"p": np.full(C, 3.0)}, **tol)
    check_against_torch("gem", x, 3, 2, 1, layout, {"p": 2.5}, **tol)  # (GEM_POW)
    check_against_torch("gem", x, 3, 2, 1, layout, {"p": np.array([3.0, 2.0, 4.0])}, **tol)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_gem_cube_root_of_tiny_means(layout):
    """gem with p = 3 takes the cube root without the steps for subnormal numbers only where
    eps rules them out (eps >= GEM_CUBE_MIN_EPS, every divisor <= 2**63): at that bound,
    one real tap a window and divisor_override 2**63 give means of 2**-124 (float32's eps
    cubed is 2**-61), 4 times float32's smallest normal number; a smaller eps takes the
    full cube root, here of means that are subnormal in float32 (eps**3 = 1e-39).
    Against torch's avg_pool2d(clamp(x, eps) ** 3) ** (1 / 3) in float64."""
    from numbapool_learned.reductions import GEM_CUBE, GEM_CUBE_MIN_EPS, GEM_CUBE_SMALL_EPS

    gem = numbapool.get("gem")
    assert gem.resolve({"p": 3.0, "eps": 1e-6}) is GEM_CUBE
    assert gem.resolve({"p": 3.0, "eps": GEM_CUBE_MIN_EPS}) is GEM_CUBE
    assert gem.resolve({"p": 3.0, "eps": GEM_CUBE_MIN_EPS * 0.99}) is GEM_CUBE_SMALL_EPS
    assert gem.resolve({"p": 3.0, "eps": [1e-6, 1e-9]}) is GEM_CUBE_SMALL_EPS
    with pytest.raises(TypeError, match="parameter eps must be a real number"):
        numbapool.pool("gem", np.ones((1, 2, 4, 4), np.float32), 2, eps="1e-6")
    rng = np.random.default_rng(45)
    x = rng.uniform(-1.0, 2.0, (2, 16, 6, 6)).astype(np.float32)
    x[:, :8] = 0.0  # (every element below eps: the mean is eps**3 / divisor)
    for eps, kernel, opts in ((GEM_CUBE_MIN_EPS, 1, {"divisor_override": 2 ** 63}),
                              (GEM_CUBE_MIN_EPS, 3, {"divisor_override": 2 ** 62,
                                                     "padding": 1}),
                              (1e-13, 3, {}),
                              (1e-13, 3, {"padding": 1, "count_include_pad": True})):
        pad = opts.get("padding", 0)
        stride = 1 if kernel == 1 else 2
        xt = torch.from_numpy(x.astype(np.float64)).clamp(min=eps) ** 3
        div = opts.get("divisor_override")  # (torch takes at most 2**63 - 1: sums divided)
        include = opts.get("count_include_pad", True)
        want = (F.avg_pool2d(xt, kernel, stride, pad, count_include_pad=include)
                if div is None else
                F.avg_pool2d(xt, kernel, stride, pad, divisor_override=1) / div) ** (1 / 3)
        xin = x if layout == "channels_first" else np.ascontiguousarray(np.moveaxis(x, 1, -1))
        got = numbapool.pool("gem", xin, kernel, stride=stride, eps=eps, layout=layout, **opts)
        if layout == "channels_last":
            got = np.moveaxis(got, -1, 1)
        np.testing.assert_allclose(got, want.numpy(), rtol=2e-6, atol=0)


def test_gem_choice_leaves_bad_p_to_the_checks():
    """The choice of reduction sees p before it is checked; a bad p still gets the
    parameter's own error."""
    x = make_x("gem", (1, C, 6, 6), seed=44)
    for bad in ([[3.0], [3.0, 3.0]], "3", 1 + 2j):
        with pytest.raises(TypeError, match="parameter p must be a real number"):
            numbapool.pool("gem", x, 2, p=bad)


# ----------------------------------------------------------------------------------------------
# stochastic pooling, training mode
# ----------------------------------------------------------------------------------------------


def _plane_windows(spatial, kernel, stride):
    """Flat in-plane indices of every window's taps: (*O, K) int array (2-D, no padding)."""
    idx = np.arange(int(np.prod(spatial))).reshape(spatial)
    w = np.lib.stride_tricks.sliding_window_view(idx, kernel)[::stride, ::stride]
    return w.reshape(*w.shape[:2], -1)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_stochastic_training_picks_window_elements(layout):
    x = make_x("stochastic", (2, C, 9, 9), seed=51)
    xin = np.moveaxis(x, 1, -1) if layout == "channels_last" else x
    y, idx = numbapool.pool("stochastic", xin, 3, stride=2, layout=layout, seed=7,
                            return_indices=True)
    y_plain = numbapool.pool("stochastic", xin, 3, stride=2, layout=layout, seed=7)
    np.testing.assert_array_equal(y, y_plain)
    if layout == "channels_last":
        y, idx = np.moveaxis(y, -1, 1), np.moveaxis(idx, -1, 1)
    assert y.shape == (2, C, 4, 4) and idx.shape == y.shape
    assert idx.dtype == np.int64
    win = _plane_windows((9, 9), (3, 3), 2)
    planes = x.reshape(2, C, -1)
    for n in range(2):
        for c in range(C):
            for i in range(4):
                for j in range(4):
                    assert idx[n, c, i, j] in win[i, j]
                    assert y[n, c, i, j] == planes[n, c, idx[n, c, i, j]]
                    assert y[n, c, i, j] in planes[n, c, win[i, j]]


def test_stochastic_training_is_default_and_seeded():
    x = make_x("stochastic", (2, C, 16, 16), seed=52)
    a = numbapool.pool("stochastic", x, 2, seed=3)
    b = numbapool.pool("stochastic", x, 2, seed=3, training=True)
    c = numbapool.pool("stochastic", x, 2, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # training mode samples, it is not the expectation
    assert not np.allclose(a, numbapool.pool("stochastic", x, 2, training=False))
    xl = np.moveaxis(x, 1, -1)
    np.testing.assert_array_equal(
        numbapool.pool("stochastic", xl, 2, seed=9, layout="channels_last"),
        numbapool.pool("stochastic", xl, 2, seed=9, layout="channels_last"))


def _assert_frequencies(counts, probs, total, z=5.0):
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    assert counts.sum() == total
    se = np.sqrt(total * probs * (1 - probs))
    for k in range(len(probs)):
        if probs[k] == 0.0:
            assert counts[k] == 0, f"tap {k} has probability 0 but was chosen {counts[k]} times"
        else:
            assert abs(counts[k] - total * probs[k]) <= z * se[k], (k, counts, total * probs)


def test_stochastic_frequencies_tiled_windows():
    """One call on many identical 2x2 windows (kernel 2, stride 2)."""
    pattern = np.array([[1.0, 2.0], [3.0, 4.0]])
    x = np.tile(pattern, (2, 2, 60, 60))  # (2, 2, 120, 120): 14400 windows
    y, idx = numbapool.pool("stochastic", x, 2, seed=123, return_indices=True)
    rows, cols = np.divmod(idx, 120)
    taps = (rows % 2) * 2 + (cols % 2)
    np.testing.assert_array_equal(y, pattern.reshape(-1)[taps])
    _assert_frequencies(np.bincount(taps.ravel(), minlength=4), pattern.ravel() / 10.0, y.size)


def test_stochastic_frequencies_relu_mass():
    """Non-positive elements have mass relu(x) = 0: never selected."""
    pattern = np.array([[0.0, 1.0], [-2.0, 3.0]])
    x = np.tile(pattern, (1, 3, 50, 50))
    y = numbapool.pool("stochastic", x, 2, seed=5)
    values, counts = np.unique(y, return_counts=True)
    assert set(values.tolist()) <= {1.0, 3.0}
    _assert_frequencies([np.sum(y == v) for v in (0.0, 1.0, -2.0, 3.0)],
                        [0.0, 0.25, 0.0, 0.75], y.size)


def test_stochastic_frequencies_over_seeds():
    """2000 seeds on one window of a (1, 1, 2, 3) array (kernel (2, 3))."""
    x = np.array([[[[0.5, 1.0, 1.5], [2.0, 0.25, 0.75]]]])
    probs = x.ravel() / x.sum()
    counts = np.zeros(6, dtype=np.int64)
    for s in range(2000):
        y, idx = numbapool.pool("stochastic", x, (2, 3), seed=s, return_indices=True)
        assert y.shape == (1, 1, 1, 1)
        assert y[0, 0, 0, 0] == x.ravel()[idx[0, 0, 0, 0]]
        counts[idx[0, 0, 0, 0]] += 1
    _assert_frequencies(counts, probs, 2000)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_stochastic_training_gradient_follows_selection(layout):
    """pool_grad with the same seed sends grad_output to the sampled element (overlapping
    windows accumulate)."""
    x = make_x("stochastic", (2, C, 9, 8), seed=61)
    g = np.random.default_rng(62).standard_normal((2, C, 4, 3))
    xin = np.moveaxis(x, 1, -1) if layout == "channels_last" else x
    gin = np.moveaxis(g, 1, -1) if layout == "channels_last" else g
    for seed in (0, 1, 2):
        _, idx = numbapool.pool("stochastic", xin, 3, stride=2, layout=layout, seed=seed,
                                return_indices=True)
        gx = numbapool.pool_grad("stochastic", xin, gin, 3, stride=2, layout=layout, seed=seed)
        if layout == "channels_last":
            idx, gx = np.moveaxis(idx, -1, 1), np.moveaxis(gx, -1, 1)
        expected = np.zeros((2, C, 9 * 8))
        for n in range(2):
            for c in range(C):
                np.add.at(expected[n, c], idx[n, c].ravel(), g[n, c].ravel())
        np.testing.assert_allclose(gx, expected.reshape(x.shape), rtol=0, atol=1e-15)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("window", [(3, 2, 1), (2, 2, 0), None], ids=["k3s2p1", "k2s2", "whole"])
def test_gem_with_p_by_channel_runs_the_channels_last_gradients(monkeypatch, layout, window):
    """A trained gem has a p per channel: its forward channels last and its gradients run
    the channels-last kernels that read each channel's p (``forward_channels``, after the
    ``map`` kernel's powers where windows overlap, ``backward_channels``,
    ``param_grad_channels``; channels first
    between transposes, with 8 channels or more and 4 input rows a thread; whole planes,
    gem's global use, ``backward_global_channels`` channels last and the channels-first
    whole-plane kernel), not the channels-first scatter, and match torch.  Reading one
    channel's p for every channel, or the channel beside, fails."""
    from numbapool.kernels import cpu

    asked = kernels_ran(monkeypatch)
    monkeypatch.setattr(cpu, "_threads", lambda: 2)  # (the rows a thread: as on 2 cores)
    shape = (2, 16, 9, 10)
    kernel, stride, padding = window if window is not None else (shape[2:], None, 0)
    x = make_x("gem", shape, seed=21)
    p = np.random.default_rng(5).uniform(1.5, 4.5, shape[1])
    g_shape = numbapool.pool("gem", x, kernel, stride=stride, padding=padding, p=p).shape
    g = np.random.default_rng(6).standard_normal(g_shape)
    xin = np.moveaxis(x, 1, -1) if layout == "channels_last" else x
    gin = np.moveaxis(g, 1, -1) if layout == "channels_last" else g
    asked.clear()
    yn = numbapool.pool("gem", xin, kernel, stride=stride, padding=padding, layout=layout, p=p)
    if layout == "channels_last":  # (3x3/s2 windows raise each element to p first: map)
        first = [("channels_last", "map")] if window == (3, 2, 1) else []
        assert asked == [*first, ("channels_last", "forward_channels")]
        yn = np.moveaxis(yn, -1, 1)
    asked.clear()
    gx, pg = numbapool.pool_grad("gem", xin, gin, kernel, stride=stride, padding=padding,
                                 layout=layout, p=p, return_param_grads=True)
    backward = "backward" if window is not None else "backward_global"
    if window is not None or layout == "channels_last":
        assert ("channels_last", backward + "_channels") in asked
    else:
        assert ("channels_first", "backward_global") in asked
    assert ("channels_last", "param_grad_channels") in asked
    assert not any(v.startswith("backward_scatter") for _, v in asked)
    if layout == "channels_last":
        gx = np.moveaxis(gx, -1, 1)

    xt = torch.tensor(x, requires_grad=True)
    pt = torch.tensor(p, requires_grad=True)
    c = xt.clamp(min=1e-6) ** pt.view(1, -1, 1, 1)
    y = F.avg_pool2d(c, kernel, stride, padding, count_include_pad=True) ** (
        1.0 / pt.view(1, -1, 1, 1))
    (y * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(yn, y.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(pg["p"], pt.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("include_pad", [True, False])
def test_gem_with_a_general_p_raises_each_element_once(monkeypatch, layout, dtype,
                                                       include_pad):
    """gem with p = 3.2 over 3x3/s2/p1 windows (each element read about 2.25 times): the
    forward pass raises each element to p once (the ``map`` kernel: the reduction's
    ``premap``) and averages those powers, as torch's formula does; padding counted or
    not.  Float32 and float64 against torch in float64."""
    from numbapool import api
    from numbapool.kernels import cpu, mapped

    plans = []
    real = cpu.plan_forward

    def spy(*args, **kwargs):
        plans.append(real(*args, **kwargs))
        return plans[-1]

    monkeypatch.setattr(cpu, "plan_forward", spy)
    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    x = make_x("gem", (2, 16, 13, 12), seed=31).astype(dtype)
    xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if layout == "channels_last" else x
    got = numbapool.pool("gem", xin, 3, stride=2, padding=1, p=3.2, layout=layout,
                         count_include_pad=include_pad)
    if layout == "channels_last":
        got = np.moveaxis(got, -1, 1)
    xt = torch.tensor(x.astype(np.float64))
    want = F.avg_pool2d(xt.clamp(min=1e-6) ** 3.2, 3, 2, 1,
                        count_include_pad=include_pad) ** (1 / 3.2)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got, want.numpy(), **tol)
    assert any(isinstance(p, mapped.MappedPlan) for p in plans)


MANY = 9
"""Channels of :func:`test_many_channels`: channels first, with 8 or more, the reductions
with a tuple accumulator (and softpool's weighted sum) run their channels-last kernels
between transposes."""


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("name", ["mixed", "gated", "lse", "softpool"])
def test_many_channels(name, layout, dtype):
    """Values and gradients with a parameter a channel, float32 in float32 arithmetic, and
    lse and softpool on values whose exponentials overflow unless shifted by the window's
    maximum (r x up to about 250)."""
    rng = np.random.default_rng(51)
    scale = 40.0 if name in ("lse", "softpool") else 1.0
    x = (scale * make_x(name, (2, MANY, 9, 8), seed=52)).astype(dtype)
    params = {"mixed": {"alpha": rng.uniform(0.1, 0.9, MANY)},
              "gated": {"w": 0.5 * rng.standard_normal((MANY, 9))},
              "lse": {"r": rng.uniform(0.5, 2.5, MANY)},
              "softpool": {}}[name]
    tol = (dict(rtol=RTOL64, atol=ATOL64) if dtype == np.float64
           else dict(rtol=RTOL32, atol=ATOL32 * scale))
    check_against_torch(name, x, 3, 2, 1, layout, params, **tol)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_lse_whole_plane_windows(layout):
    """A window the size of the plane: the gradient's whole-plane kernels (lse's gradient
    reads the output, not the accumulator), a parameter a channel."""
    x = 20.0 * make_x("lse", (2, MANY, 5, 4), seed=53)
    check_against_torch("lse", x, (5, 4), 1, 1, layout, {"r": np.linspace(0.5, 2.5, MANY)})


def _stochastic_reference(x, seed, kernel, stride, padding, dilation):
    """Stochastic pooling in training mode, channels first, by plain loops: the uniforms are
    ``default_rng(seed).random((N, C, *out))`` (one an output, channels-first order), each
    window's masses ``max(v, 0)`` summed in float64 in the window's order (padding left
    out), and the first tap whose running sum passes ``u * total`` selected (the first tap
    where none does).  Values and flat in-plane indices."""
    rank = x.ndim - 2
    spatial = x.shape[2:]
    k, s, p, d = (np.broadcast_to(v, (rank,)) for v in (kernel, stride, padding, dilation))
    out = tuple((L + 2 * pp - dd * (kk - 1) - 1) // ss + 1
                for L, kk, ss, pp, dd in zip(spatial, k, s, p, d))
    u = np.random.default_rng(seed).random((*x.shape[:2], *out))
    y = np.empty(u.shape, dtype=x.dtype)
    idx = np.empty(u.shape, dtype=np.int64)
    for pos in np.ndindex(*u.shape):
        n, c, o = pos[0], pos[1], pos[2:]
        taps = [t for t in np.ndindex(*k)
                if all(0 <= o[a] * s[a] - p[a] + t[a] * d[a] < spatial[a] for a in range(rank))]
        at = [tuple(o[a] * s[a] - p[a] + t[a] * d[a] for a in range(rank)) for t in taps]
        masses = [max(float(x[(n, c, *w)]), 0.0) for w in at]
        total = 0.0
        for m in masses:
            total += m
        target = u[pos] * total
        pick, cum = 0, 0.0
        for i, m in enumerate(masses):
            cum += m
            if cum > target:
                pick = i
                break
        y[pos] = x[(n, c, *at[pick])]
        idx[pos] = np.ravel_multi_index(at[pick], spatial)
    return y, idx


@pytest.mark.parametrize("shape, kernel, stride, padding, dilation, via_last", [
    ((2, 9, 9, 9), 3, 2, 1, 1, True),
    ((2, 3, 9, 9), 3, 2, 1, 1, False),  # (channels first: fewer than 8 channels)
    ((2, 16, 17), 4, 3, 2, 2, False),  # (2 rows of 5 outputs: too few tasks to transpose)
    ((1, 8, 1100), 3, 2, 1, 1, True),  # (runs of an output row: 550 outputs)
    ((1, 8, 5, 6, 7), 2, 1, 1, 2, True),
    ((4, 16, 32, 32), 2, 2, 0, 1, True),  # (16,384 uniforms: drawn on the kernel threads)
    ((2, 1, 9, 9), 3, 2, 1, 1, False),
])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stochastic_training_matches_numpy(monkeypatch, shape, kernel, stride, padding,
                                           dilation, via_last, layout, dtype):
    """Stochastic pooling in training mode against plain loops over the seed's uniforms:
    the same selections (values and indices), bit for bit, in both layouts: channels last
    by selects over the channels (and channels first with 8 channels or more, between
    transposes), else an element at a time.  Windows of zero mass (non-positive elements)
    keep their first element."""
    from numbapool.kernels import cpu

    ran = kernels_ran(monkeypatch)
    monkeypatch.setattr(cpu, "_threads", lambda: 2)  # (the routes' thresholds: 2 threads)
    rng = np.random.default_rng(sum(shape))
    x = rng.uniform(-1.0, 2.0, size=shape).astype(dtype)
    x[0, 0] = -1.0  # (a plane of zero mass)
    want_y, want_idx = _stochastic_reference(x, 5, kernel, stride, padding, dilation)
    xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if layout == "channels_last" else x
    y, idx = numbapool.pool("stochastic", xin, kernel, stride=stride, padding=padding,
                            dilation=dilation, layout=layout, seed=5, return_indices=True)
    if layout == "channels_last":
        y, idx = np.moveaxis(y, -1, 1), np.moveaxis(idx, -1, 1)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(idx, want_idx)
    y = numbapool.pool("stochastic", xin, kernel, stride=stride, padding=padding,
                       dilation=dilation, layout=layout, seed=5)
    np.testing.assert_array_equal(y if layout == "channels_first" else np.moveaxis(y, -1, 1),
                                  want_y)
    last = layout == "channels_last" or via_last
    assert (("channels_last", "forward_indices") in ran) == last
    assert (("channels_first", "forward_indices") in ran) == (not last)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_stochastic_kernels_agree_on_nan_and_inf(monkeypatch, layout):
    """NaN and infinite elements: the channels-last kernel selects what the channels-first
    kernel does (the reference's Python ``max`` is no guide to Numba's on NaN)."""
    from numbapool.kernels import cpu

    ran = kernels_ran(monkeypatch)
    monkeypatch.setattr(cpu, "_threads", lambda: 2)  # (12 tasks: the channels-last kernel)
    x = np.random.default_rng(61).uniform(-1.0, 2.0, size=(2, 9, 11, 11)).astype(np.float32)
    flat = x.reshape(-1)
    flat[::7] = np.nan
    flat[3::11] = np.inf
    flat[5::13] = -np.inf
    kw = dict(stride=2, padding=1, seed=8, return_indices=True)
    xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if layout == "channels_last" else x
    y, idx = numbapool.pool("stochastic", xin, 3, layout=layout, **kw)
    if layout == "channels_last":
        y, idx = np.moveaxis(y, -1, 1), np.moveaxis(idx, -1, 1)
    assert [lay for lay, _ in ran] == ["channels_last"]
    monkeypatch.setattr(cpu, "VIA_CHANNELS_LAST_MIN_CHANNELS", 10**9)  # (channels first)
    want_y, want_idx = numbapool.pool("stochastic", x, 3, **kw)
    assert [lay for lay, _ in ran] == ["channels_last", "channels_first"]
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(idx, want_idx)


@pytest.mark.parametrize("kernel", [3, 2])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_stochastic_gradient_follows_the_forward_selection(monkeypatch, layout, kernel):
    """``pool_grad`` without indices (it draws the seed's uniforms again and selects again)
    routes each output's gradient to the element ``pool`` selected, 8 channels or more:
    channels last, the forward's indices scattered where windows overlap, gathered where
    they cover the input (2x2 windows)."""
    from numbapool.kernels import cpu

    monkeypatch.setattr(cpu, "_threads", lambda: 2)
    ran = kernels_ran(monkeypatch)
    x = np.random.default_rng(62).uniform(0.1, 2.0, size=(2, 12, 10, 10))
    xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if layout == "channels_last" else x
    y, idx = numbapool.pool("stochastic", xin, kernel, stride=2, layout=layout, seed=4,
                            return_indices=True)
    gy = np.random.default_rng(63).standard_normal(y.shape)
    del ran[:]
    gx = numbapool.pool_grad("stochastic", xin, gy, kernel, stride=2, layout=layout, seed=4)
    if layout == "channels_last":  # (no transposes to channels first)
        assert ("channels_last", "forward_indices") in ran
        assert ("channels_first", "forward_indices") not in ran
    if layout == "channels_last":
        gy, idx, gx = (np.moveaxis(a, -1, 1) for a in (gy, idx, gx))
    want = np.zeros((2, 12, 100))
    for n, c in np.ndindex(2, 12):
        np.add.at(want[n, c], idx[n, c].reshape(-1), gy[n, c].reshape(-1))
    np.testing.assert_allclose(gx.reshape(2, 12, 100), want, rtol=1e-12, atol=1e-12)


def test_stochastic_channels_last_with_few_outputs_runs_channels_first(monkeypatch):
    """Channels last, a window of the whole plane and one sample: one task of the
    channels-last kernel, so the call runs the channels-first kernel (a task a plane) on a
    transposed copy; the values are the reference's either way."""
    from numbapool.kernels import cpu

    ran = kernels_ran(monkeypatch)
    monkeypatch.setattr(cpu, "_threads", lambda: 2)
    x = np.random.default_rng(64).uniform(-1.0, 2.0, size=(1, 9, 5, 5))
    want_y, want_idx = _stochastic_reference(x, 2, 5, 1, 0, 1)
    y, idx = numbapool.pool("stochastic", np.ascontiguousarray(np.moveaxis(x, 1, -1)), 5,
                            layout="channels_last", seed=2, return_indices=True)
    np.testing.assert_array_equal(np.moveaxis(y, -1, 1), want_y)
    np.testing.assert_array_equal(np.moveaxis(idx, -1, 1), want_idx)
    assert ran == [("channels_first", "forward_indices")]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("name", ["mixed", "gated", "softpool"])
def test_gradients_scattered_by_blocks_of_channels(monkeypatch, name, layout, dtype):
    """Gradients that read each window's accumulator, with parameters every channel shares,
    run the channels-last scatter (a task a sample and block of 64 channels; 70 channels: a
    partial block), which folds each window once, channels first between transposes.
    Against torch autograd, on values whose exponentials overflow unshifted for softpool."""
    from numbapool.kernels import cpu

    ran = kernels_ran(monkeypatch)
    monkeypatch.setattr(cpu, "CL_SCATTER_MIN_TASKS_PER_THREAD", 0)
    monkeypatch.setattr(cpu, "_threads", lambda: 2)  # (the rows a thread: as on 2 cores)
    rng = np.random.default_rng(71)
    scale = 40.0 if name == "softpool" else 1.0
    x = (scale * make_x(name, (3, 70, 9, 8), seed=72)).astype(dtype)
    params = {"mixed": {"alpha": 0.3}, "gated": {"w": 0.5 * rng.standard_normal(9)},
              "softpool": {}}[name]
    tol = (dict(rtol=RTOL64, atol=ATOL64) if dtype == np.float64
           else dict(rtol=RTOL32, atol=ATOL32 * scale))
    check_against_torch(name, x, 3, 2, 1, layout, params, **tol)
    assert ("channels_last", "backward_scatter") in ran
    assert ("channels_last", "backward") not in ran


_DILATED = ((2, 70, 9, 8), 3, dict(stride=2, padding=1, dilation=2, ceil_mode=True))
_VOLUME = ((2, 66, 5, 6, 7), 2, dict(stride=1, padding=1))


@pytest.mark.parametrize("name, params, shape, kernel, opts", [
    (name, params, *case) for name, params in [
        ("mixed", {"alpha": 0.3}), ("gated", {"w": 0.4}), ("softpool", {}),
        ("stochastic", {"training": False})]
    for case in (_DILATED, _VOLUME)] + [
    ("mixed", {"alpha": 0.3}, (2, 70, 9, 8), 3,
     dict(stride=2, padding=1, count_include_pad=False)),
    ("mixed", {"alpha": 0.3}, (2, 66, 5, 6, 7), 2,
     dict(stride=1, padding=1, divisor_override=3.0)),
])
def test_scatter_and_gather_give_the_same_gradient(monkeypatch, name, params, shape, kernel,
                                                   opts):
    """The channels-last scatter adds each window's gradient in the gather's order (the
    windows in order, from zero): the same bits, with dilation, ceil mode, padding left out
    of or counted in the divisor, a divisor override, 3-D and a partial block of channels."""
    from numbapool.kernels import cpu

    ran = kernels_ran(monkeypatch)
    x = np.ascontiguousarray(np.moveaxis(make_x(name, shape, seed=81), 1, -1))
    kw = dict(layout="channels_last", **opts, **params)
    gy = np.random.default_rng(82).standard_normal(numbapool.pool(name, x, kernel, **kw).shape)
    got = {}
    for scatter in (True, False):
        monkeypatch.setattr(cpu, "CL_SCATTER_MIN_TASKS_PER_THREAD", 0 if scatter else 10**9)
        got[scatter] = numbapool.pool_grad(name, x, gy, kernel, **kw)
    np.testing.assert_array_equal(got[True], got[False])
    assert ("channels_last", "backward_scatter") in ran and ("channels_last", "backward") in ran


@pytest.mark.parametrize("name", ["max", "min"])
def test_selections_never_take_the_scatter(monkeypatch, name):
    """Selections route their channels-last gradient by indices, whatever the scatter's
    threshold (they have no channels-last scatter)."""
    from numbapool.kernels import cpu

    monkeypatch.setattr(cpu, "CL_SCATTER_MIN_TASKS_PER_THREAD", 0)
    x = np.random.default_rng(83).standard_normal((4, 70, 9, 8))
    gy = np.random.default_rng(84).standard_normal((4, 70, 5, 4))
    tx = T(x).requires_grad_(True)
    fn = F.max_pool2d if name == "max" else (lambda t, *a, **k: -F.max_pool2d(-t, *a, **k))
    (fn(tx, 3, 2, 1) * T(gy)).sum().backward()
    got = numbapool.pool_grad(name, np.ascontiguousarray(np.moveaxis(x, 1, -1)),
                              np.ascontiguousarray(np.moveaxis(gy, 1, -1)), 3, stride=2,
                              padding=1, layout="channels_last")
    np.testing.assert_allclose(np.moveaxis(got, -1, 1), tx.grad.numpy(), rtol=1e-12,
                               atol=1e-12)


def test_derived_reference_of_stochastic_pooling_channels_last(monkeypatch):
    """``numbapool.testing.derived_reference`` of a channels-last stochastic pool reads the
    uniforms channels first, as they are drawn (the channels-last kernel reads them so)."""
    from numbapool.kernels import cpu
    from numbapool.testing import derived_reference

    monkeypatch.setattr(cpu, "_threads", lambda: 2)  # (6 tasks: the channels-last kernel)
    ran = kernels_ran(monkeypatch)

    x = np.random.default_rng(91).uniform(0.1, 2.0, size=(2, 9, 8, 8))
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    got = numbapool.pool("stochastic", xl, 3, stride=2, layout="channels_last", seed=6)
    want = derived_reference("stochastic", xl, kernel_size=3, stride=2,
                             layout="channels_last", seed=6)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.moveaxis(want, -1, 1),
                                  _stochastic_reference(x, 6, 3, 2, 0, 1)[0])
    assert ("channels_last", "forward_indices") in ran
