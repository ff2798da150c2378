"""Plain, slow, obviously-correct NumPy reference for numbapool.

Written from the public API spec only (never from the library source), so
that the tests comparing the library against it are independent checks.

Everything is done with explicit Python loops over output positions and
window taps (``itertools.product``), on channels-first data, computing in
float64 (or exact int64 for integer max/min/sum).  Channels-last inputs are
transposed to channels-first, processed, and transposed back.

Conventions (see the spec in the tests' docstrings):

* A *tap* is one kernel position ``o*s - pb + j*d`` (per axis).  A tap is
  *real* when it lies inside the input on every axis, and *in the padded
  input* when it lies in ``[-pb, L + pa)`` on every axis.
* max/min only look at real taps; ties go to the first real tap in scan
  order (row-major over the window); a NaN replaces the current value
  (PyTorch's ``v > cur or isnan(v)`` rule) so a NaN window yields NaN and
  the index of the LAST NaN in scan order.
* sum adds real taps only (padding is zero).
* avg divides the sum of real taps by ``divisor_override`` if given, else by
  the number of taps in the padded input (count_include_pad) or the number of
  real taps.
* lp is ``(sum over real taps of x**p) ** (1/p)``.
* A window without any real tap raises ValueError, as does a kernel larger
  than the padded input.
"""

import itertools
import math
import operator

import numpy as np

SLIDING = ("max", "min", "sum", "avg", "lp")
GLOBAL = ("global_max", "global_avg", "global_min")
ADAPTIVE = ("adaptive_max", "adaptive_avg")
ALL_POOLERS = SLIDING + GLOBAL + ADAPTIVE

_MAX_LIKE = ("max", "global_max", "adaptive_max")
_MIN_LIKE = ("min", "global_min")
_AVG_LIKE = ("avg", "global_avg", "adaptive_avg")
_INDEXED = ("max", "min", "adaptive_max", "global_max", "global_min")


# ---------------------------------------------------------------------------
# argument normalisation
# ---------------------------------------------------------------------------


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _per_axis(value, rank, what):
    if _is_int(value):
        return (int(value),) * rank
    value = tuple(value)
    if len(value) != rank or not all(_is_int(v) for v in value):
        raise ValueError(f"{what} must be an int or {rank} ints, got {value!r}")
    return tuple(int(v) for v in value)


def same_padding(spatial, kernel, stride, dilation):
    """TensorFlow 'same' rule, one (before, after) pair per axis."""
    pads = []
    for L, k, s, d in zip(spatial, kernel, stride, dilation):
        out = -(-L // s)  # ceil(L / s)
        total = max((out - 1) * s + (k - 1) * d + 1 - L, 0)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def normalize_padding(padding, spatial, kernel, stride, dilation):
    rank = len(spatial)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * rank
        if padding == "same":
            return same_padding(spatial, kernel, stride, dilation)
        raise ValueError(f"unknown padding {padding!r}")
    if _is_int(padding):
        return ((int(padding), int(padding)),) * rank
    padding = tuple(padding)
    if len(padding) != rank:
        raise ValueError(f"padding needs {rank} entries, got {padding!r}")
    pads = []
    for p in padding:
        if _is_int(p):
            pads.append((int(p), int(p)))
        else:
            pb, pa = p
            pads.append((int(pb), int(pa)))
    return tuple(pads)


def out_length(L, k, s, d, pb, pa, ceil_mode):
    """Sliding-window output length along one axis (PyTorch rule)."""
    eff = (k - 1) * d + 1
    num = L + pb + pa - eff
    if num < 0:
        raise ValueError("kernel larger than the padded input")
    if ceil_mode:
        out = -(-num // s) + 1
        # the last window must start inside the input or the left padding
        if (out - 1) * s >= L + pb:
            out -= 1
    else:
        out = num // s + 1
    return out


def sliding_geometry(spatial, kernel_size, stride=None, padding=0, dilation=1,
                     ceil_mode=False):
    """Return (kernel, stride, dilation, pads, out_shape) for sliding pools."""
    rank = len(spatial)
    kernel = _per_axis(kernel_size, rank, "kernel_size")
    stride = kernel if stride is None else _per_axis(stride, rank, "stride")
    dilation = _per_axis(dilation, rank, "dilation")
    if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1:
        raise ValueError("kernel_size, stride and dilation must be >= 1")
    pads = normalize_padding(padding, spatial, kernel, stride, dilation)
    if any(pb < 0 or pa < 0 for pb, pa in pads):
        raise ValueError("padding must be >= 0")
    out_shape = tuple(
        out_length(L, k, s, d, pb, pa, ceil_mode)
        for L, k, s, d, (pb, pa) in zip(spatial, kernel, stride, dilation, pads)
    )
    return kernel, stride, dilation, pads, out_shape


# ---------------------------------------------------------------------------
# window plans: for every output position, the real taps (scan order) and
# the avg divisor
# ---------------------------------------------------------------------------


def _sliding_plan(spatial, kernel_size, stride, padding, dilation, ceil_mode,
                  count_include_pad, divisor_override):
    kernel, stride, dilation, pads, out_shape = sliding_geometry(
        spatial, kernel_size, stride, padding, dilation, ceil_mode)
    if count_include_pad is None:
        count_include_pad = not (isinstance(padding, str) and padding == "same")
    rank = len(spatial)
    plan = []
    for o in itertools.product(*(range(n) for n in out_shape)):
        real = []
        n_padded = 0
        for j in itertools.product(*(range(k) for k in kernel)):
            pos = tuple(o[a] * stride[a] - pads[a][0] + j[a] * dilation[a]
                        for a in range(rank))
            if all(0 <= pos[a] < spatial[a] for a in range(rank)):
                real.append(pos)
            if all(-pads[a][0] <= pos[a] < spatial[a] + pads[a][1]
                   for a in range(rank)):
                n_padded += 1
        if not real:
            raise ValueError(f"window {o} has no real input element")
        if divisor_override is not None:
            divisor = divisor_override
        elif count_include_pad:
            divisor = n_padded
        else:
            divisor = len(real)
        plan.append((o, real, divisor))
    return out_shape, plan


def _global_plan(spatial, keepdims):
    taps = list(itertools.product(*(range(L) for L in spatial)))
    if not taps:
        raise ValueError("empty spatial input")
    o = (0,) * len(spatial)
    out_shape = (1,) * len(spatial)
    return out_shape, [(o, taps, len(taps))]


def adaptive_bins(L, O):
    return [(math.floor(i * L / O), math.ceil((i + 1) * L / O)) for i in range(O)]


def _adaptive_plan(spatial, output_size):
    rank = len(spatial)
    out_shape = _per_axis(output_size, rank, "output_size")
    if min(out_shape) < 1:
        raise ValueError("output_size must be >= 1")
    bins = [adaptive_bins(L, O) for L, O in zip(spatial, out_shape)]
    plan = []
    for o in itertools.product(*(range(n) for n in out_shape)):
        ranges = [range(*bins[a][o[a]]) for a in range(rank)]
        taps = list(itertools.product(*ranges))
        if not taps:
            raise ValueError(f"adaptive bin {o} is empty")
        plan.append((o, taps, len(taps)))
    return out_shape, plan


def _plan(name, spatial, kernel_size, stride, padding, dilation, ceil_mode,
          count_include_pad, divisor_override, output_size, keepdims):
    if name in SLIDING:
        if kernel_size is None:
            raise ValueError(f"{name} needs kernel_size")
        return _sliding_plan(spatial, kernel_size, stride, padding, dilation,
                             ceil_mode, count_include_pad, divisor_override)
    if name in GLOBAL:
        return _global_plan(spatial, keepdims)
    if name in ADAPTIVE:
        if output_size is None:
            raise ValueError(f"{name} needs output_size")
        return _adaptive_plan(spatial, output_size)
    raise ValueError(f"unknown pooler {name!r}")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def to_channels_first(x, layout):
    x = np.asarray(x)
    if layout == "channels_first":
        return x
    if layout == "channels_last":
        return np.moveaxis(x, -1, 1)
    raise ValueError(f"unknown layout {layout!r}")


def from_channels_first(y, layout):
    if layout == "channels_first":
        return y
    return np.moveaxis(y, 1, -1)


def output_dtype(name, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return dtype
    if name in ("avg", "lp", "global_avg", "adaptive_avg"):
        return np.dtype(np.float64)
    return dtype


def _select(vals, name):
    """Index into vals of the selected element (max/min with NaN rule)."""
    better = operator.gt if name in _MAX_LIKE else operator.lt
    best = 0
    cur = vals[0]
    for i in range(1, len(vals)):
        v = vals[i]
        if better(v, cur) or (isinstance(v, float) and math.isnan(v)):
            best = i
            cur = v
    return best


def _work_array(x, name):
    """Channels-first working copy: exact int64 for integer max/min/sum,
    float64 otherwise."""
    if x.dtype.kind in "iu" and name not in ("avg", "lp", "global_avg",
                                             "adaptive_avg"):
        return x.astype(np.int64)
    return x.astype(np.float64)


def _fsum(vals):
    vals = [float(v) for v in vals]
    if all(math.isfinite(v) for v in vals):
        return math.fsum(vals)
    return float(np.sum(np.array(vals, dtype=np.float64)))  # inf/nan rules


def _lp_value(vals, p):
    """(sum x**p) ** (1/p) in float64; NumPy powers so that a negative base
    with a fractional exponent gives NaN (as in PyTorch), never a complex."""
    with np.errstate(invalid="ignore", divide="ignore"):
        s = _fsum(np.power(np.float64(v), p) for v in vals)
        return np.power(np.float64(s), 1.0 / p)


def _pyval(v):
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


# ---------------------------------------------------------------------------
# public reference functions
# ---------------------------------------------------------------------------


def ref_pool(name, x, kernel_size=None, stride=None, padding=0, dilation=1,
             ceil_mode=False, layout="channels_first", count_include_pad=None,
             divisor_override=None, return_indices=False, output_size=None,
             keepdims=False, p=None):
    x = np.asarray(x)
    xc = to_channels_first(x, layout)
    if xc.ndim not in (3, 4, 5):
        raise ValueError("x must have 1, 2 or 3 spatial axes")
    N, C = xc.shape[:2]
    spatial = tuple(xc.shape[2:])
    out_shape, plan = _plan(name, spatial, kernel_size, stride, padding,
                            dilation, ceil_mode, count_include_pad,
                            divisor_override, output_size, keepdims)
    if name == "lp" and p is None:
        raise ValueError("lp needs p")
    work = _work_array(xc, name)
    values = np.zeros((N, C) + out_shape, dtype=work.dtype)
    indices = np.zeros((N, C) + out_shape, dtype=np.int64)
    for n in range(N):
        for c in range(C):
            plane = work[n, c]
            for o, taps, divisor in plan:
                vals = [_pyval(plane[t]) for t in taps]
                if name in _MAX_LIKE or name in _MIN_LIKE:
                    best = _select(vals, name)
                    values[(n, c) + o] = vals[best]
                    indices[(n, c) + o] = np.ravel_multi_index(taps[best], spatial)
                elif name == "sum":
                    values[(n, c) + o] = sum(vals)
                elif name in _AVG_LIKE:
                    values[(n, c) + o] = _fsum(vals) / divisor
                elif name == "lp":
                    values[(n, c) + o] = _lp_value(vals, p)
                else:  # pragma: no cover
                    raise AssertionError(name)
    if name in GLOBAL and not keepdims:
        values = values.reshape(N, C)
        indices = indices.reshape(N, C)
        out = values.astype(output_dtype(name, x.dtype))
    else:
        out = from_channels_first(values.astype(output_dtype(name, x.dtype)),
                                  layout)
        indices = from_channels_first(indices, layout)
    if return_indices:
        if name not in _INDEXED:
            raise ValueError(f"{name} has no indices")
        return out, indices
    return out


def ref_pool_grad(name, x, grad_output, kernel_size=None, stride=None,
                  padding=0, dilation=1, ceil_mode=False,
                  layout="channels_first", count_include_pad=None,
                  divisor_override=None, output_size=None, keepdims=False,
                  p=None):
    """Gradient of sum(pool(x) * grad_output) wrt x (PyTorch semantics),
    returned in float64 with x's shape and layout."""
    x = np.asarray(x)
    xc = to_channels_first(x, layout).astype(np.float64)
    N, C = xc.shape[:2]
    spatial = tuple(xc.shape[2:])
    out_shape, plan = _plan(name, spatial, kernel_size, stride, padding,
                            dilation, ceil_mode, count_include_pad,
                            divisor_override, output_size, keepdims)
    g = np.asarray(grad_output, dtype=np.float64)
    if name in GLOBAL and not keepdims:
        g = g.reshape((N, C) + out_shape)
    else:
        g = to_channels_first(g, layout)
    if g.shape != (N, C) + out_shape:
        raise ValueError(f"grad_output shape {g.shape} != {(N, C) + out_shape}")
    gx = np.zeros_like(xc)
    for n in range(N):
        for c in range(C):
            plane = xc[n, c]
            for o, taps, divisor in plan:
                go = float(g[(n, c) + o])
                vals = [float(plane[t]) for t in taps]
                if name in _MAX_LIKE or name in _MIN_LIKE:
                    best = _select(vals, name)
                    gx[(n, c) + taps[best]] += go
                elif name == "sum":
                    for t in taps:
                        gx[(n, c) + t] += go
                elif name in _AVG_LIKE:
                    for t in taps:
                        gx[(n, c) + t] += go / divisor
                elif name == "lp":
                    y = _lp_value(vals, p)
                    for t, v in zip(taps, vals):
                        gx[(n, c) + t] += (go * np.power(np.float64(v), p - 1)
                                           * np.power(y, 1 - p))
                else:  # pragma: no cover
                    raise AssertionError(name)
    return from_channels_first(gx, layout)


def expected_output_shape(name, x_shape, kernel_size=None, stride=None,
                          padding=0, dilation=1, ceil_mode=False,
                          layout="channels_first", output_size=None,
                          keepdims=False):
    """Output shape straight from the formulas (no window enumeration)."""
    x_shape = tuple(x_shape)
    if layout == "channels_first":
        N, C, spatial = x_shape[0], x_shape[1], x_shape[2:]
    else:
        N, C, spatial = x_shape[0], x_shape[-1], x_shape[1:-1]
    rank = len(spatial)
    if name in SLIDING:
        out = sliding_geometry(spatial, kernel_size, stride, padding, dilation,
                               ceil_mode)[-1]
    elif name in ADAPTIVE:
        out = _per_axis(output_size, rank, "output_size")
    elif keepdims:
        out = (1,) * rank
    else:
        return (N, C)
    if layout == "channels_first":
        return (N, C) + tuple(out)
    return (N,) + tuple(out) + (C,)
