"""The public functions: :func:`pool`, :func:`pool_grad`, :func:`poolers`, :func:`get`."""

from __future__ import annotations

import difflib
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from .geometry import SINGLETON, AxisWindows
from .kernels import cpu
from .options import check_array, check_bool, check_layout
from .pooler import Pooler
from .reduction import Selection
from .registry import REGISTRY
from .windows import WindowPlan

__all__ = ["pool", "pool_grad", "poolers", "get", "register", "unregister"]

# The options of pool(), with their defaults; pool_grad() takes the same but return_indices.
_OPTION_DEFAULTS: dict[str, object] = {
    "kernel_size": None,
    "stride": None,
    "padding": 0,
    "dilation": 1,
    "ceil_mode": False,
    "layout": "channels_first",
    "count_include_pad": None,
    "divisor_override": None,
    "return_indices": False,
    "output_size": None,
    "keepdims": False,
}


def poolers() -> list[str]:
    """Names of all registered poolers, sorted."""
    return REGISTRY.names()


def get(name: str) -> Pooler:
    """The registered :class:`Pooler` called ``name``.

    Raises
    ------
    LookupError
        If no pooler has that name (the message suggests close names).
    """
    return REGISTRY.get(name)


def register(pooler: Pooler) -> Pooler:
    """Register a pooler in this process (for notebooks and tests); returns it."""
    return REGISTRY.register(pooler)


def unregister(name: str) -> Pooler:
    """Remove a registered pooler; returns it."""
    return REGISTRY.unregister(name)


def _is_default(value: object, default: object) -> bool:
    if default is None:
        return value is None
    if isinstance(default, bool):
        return isinstance(value, (bool, np.bool_)) and bool(value) == default
    if isinstance(default, str):
        return isinstance(value, str) and value == default
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and \
        value == default


@dataclass
class _Call:
    """Everything a kernel call needs, checked and normalised."""

    pooler: Pooler
    x: np.ndarray  # original array
    work: np.ndarray  # 5-D, contiguous in its layout, kernel dtype
    layout: str
    plan: WindowPlan
    axes: tuple[AxisWindows, AxisWindows, AxisWindows]
    prm: np.ndarray
    include_pad: bool
    override: float | None

    def result_shape(self, out5_shape: tuple[int, ...]) -> tuple[int, ...]:
        n = self.x.shape[0]
        if self.layout == "channels_first":
            c = self.x.shape[1]
        else:
            c = self.x.shape[-1]
        if self.plan.drop_spatial:
            return (n, c)
        spatial = self.plan.out_spatial
        return (n, c, *spatial) if self.layout == "channels_first" else (n, *spatial, c)


def _prepare(name: str, x: object, options: dict[str, Any], params: dict[str, Any],
             func: str) -> _Call:
    pooler = REGISTRY.get(name)
    accepted = pooler.options()
    param_names = {p.name for p in pooler.parameters}
    for key in params:
        if key not in param_names:
            choices = list(_OPTION_DEFAULTS) + sorted(param_names)
            close = difflib.get_close_matches(key, choices, n=2, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise TypeError(f"{func}() got an unexpected keyword argument {key!r} for pooler "
                            f"{pooler.name!r}{hint}")
    for key, value in options.items():
        if key not in accepted and not _is_default(value, _OPTION_DEFAULTS[key]):
            raise TypeError(f"pooler {pooler.name!r} does not take {key!r} "
                            f"(it takes: {', '.join(sorted(accepted))})")
    prm = pooler.param_values(params)

    layout = check_layout(options["layout"])
    arr = check_array(x)
    rank = arr.ndim - 2
    spatial = arr.shape[2:] if layout == "channels_first" else arr.shape[1:-1]
    if min(spatial) < 1:
        raise ValueError(f"x has an empty spatial axis (shape {arr.shape}, layout {layout})")
    reduction = pooler.reduction
    if not reduction.accepts(arr.dtype):
        raise TypeError(f"pooler {pooler.name!r} does not accept x of dtype {arr.dtype}")

    window_opts = {k: options[k] for k in pooler.window.options}
    plan = pooler.window.plan(tuple(int(s) for s in spatial), **window_opts)

    include_pad = options["count_include_pad"]
    if include_pad is None:
        include_pad = plan.count_include_pad
    else:
        include_pad = check_bool(include_pad, "count_include_pad")
    override = options["divisor_override"]
    if override is not None:
        if not isinstance(override, numbers.Real) or isinstance(override, (bool, np.bool_)):
            raise TypeError(f"divisor_override must be a number, got {type(override).__name__}")
        if not override > 0 or not np.isfinite(override):
            raise ValueError(f"divisor_override must be positive, got {override}")
        override = float(override)

    # The kernels want native byte order, a dtype Numba handles, and contiguity in the layout.
    work = arr
    if not work.dtype.isnative:
        work = work.astype(work.dtype.newbyteorder("="))
    if work.dtype == np.float16:
        work = work.astype(np.float32)
    elif work.dtype == np.bool_:
        work = np.ascontiguousarray(work).view(np.uint8)
    work = np.ascontiguousarray(work)
    lift = (1,) * (3 - rank)
    if layout == "channels_first":
        work = work.reshape(work.shape[:2] + lift + work.shape[2:])
    else:
        work = work.reshape(work.shape[:1] + lift + work.shape[1:])
    axes = (SINGLETON,) * (3 - rank) + plan.axes
    return _Call(pooler, arr, work, layout, plan, axes, prm, include_pad, override)


def _restore_dtype(out: np.ndarray, call: _Call) -> np.ndarray:
    dtype = call.x.dtype
    if dtype == np.float16:
        return out.astype(np.float16)
    if dtype == np.bool_ and isinstance(call.pooler.reduction, Selection):
        return out.view(np.bool_)
    return out


def pool(name: str, x: Any, kernel_size: int | tuple[int, ...] | None = None, *,
         stride: int | tuple[int, ...] | None = None,
         padding: int | str | tuple = 0,
         dilation: int | tuple[int, ...] = 1,
         ceil_mode: bool = False,
         layout: str = "channels_first",
         count_include_pad: bool | None = None,
         divisor_override: float | None = None,
         return_indices: bool = False,
         output_size: int | tuple[int | None, ...] | None = None,
         keepdims: bool = False,
         **params: Any) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Pool ``x`` with the registered pooler ``name``.

    Parameters
    ----------
    name : str
        A registered pooler (see :func:`poolers`): ``"max"``, ``"avg"``, ``"min"``, ``"sum"``,
        ``"lp"``, ``"global_max"``, ``"global_avg"``, ``"global_min"``, ``"adaptive_max"``,
        ``"adaptive_avg"``, or one a plugin added.
    x : array_like
        ``(N, C, *spatial)`` for ``layout="channels_first"`` or ``(N, *spatial, C)`` for
        ``"channels_last"``, with 1 to 3 spatial axes.  Any strides; never modified.
    kernel_size : int or tuple of int
        Window size (sliding poolers).
    stride : int or tuple of int, optional
        Step between windows; defaults to ``kernel_size``.
    padding : int, tuple, "valid" or "same"
        An int, one int per axis, one ``(before, after)`` pair per axis, ``"valid"`` (none) or
        ``"same"`` (TensorFlow: output ``ceil(in / stride)``, odd extra pad at the end).
        Padding never enters a max or min.
    dilation : int or tuple of int
        Spacing between window taps.
    ceil_mode : bool
        PyTorch's rule: round the output length up, as long as the last window starts inside
        the input or the left padding.
    layout : {"channels_first", "channels_last"}
        Where the channel axis is; the result has the same layout.
    count_include_pad : bool, optional
        Whether padding counts in an average's divisor.  None: True for numeric padding
        (PyTorch), False for ``"same"`` (TensorFlow/Keras).
    divisor_override : float, optional
        Divide averages by this instead (PyTorch's ``divisor_override``).
    return_indices : bool
        Also return int64 flat indices of the selected elements into each ``(n, c)`` spatial
        plane (selection poolers: max, min, adaptive_max, ...).
    output_size : int or tuple of (int or None)
        Output size of adaptive poolers (None keeps that axis).
    keepdims : bool
        Global poolers: keep the spatial axes with size 1 instead of returning ``(N, C)``.
    **params
        The pooler's own parameters, e.g. ``p`` for ``"lp"``.

    Returns
    -------
    ndarray, or (ndarray, ndarray) with ``return_indices=True``

    Raises
    ------
    LookupError
        Unknown pooler name.
    TypeError
        Wrong type of an argument, unknown keyword, or an option the pooler does not take.
    ValueError
        Wrong value of an argument (see the message, which names it).

    Examples
    --------
    >>> import numpy as np, numbapool
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> numbapool.pool("max", x, 2)[0, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    options = dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                   ceil_mode=ceil_mode, layout=layout, count_include_pad=count_include_pad,
                   divisor_override=divisor_override, return_indices=return_indices,
                   output_size=output_size, keepdims=keepdims)
    call = _prepare(name, x, options, params, "pool")
    want_idx = check_bool(return_indices, "return_indices")
    out, idx = cpu.forward(call.pooler.reduction, call.layout, call.work, call.axes, call.prm,
                           call.include_pad, call.override, with_indices=want_idx)
    shape = call.result_shape(out.shape)
    out = _restore_dtype(out.reshape(shape), call)
    if want_idx:
        return out, idx.reshape(shape)
    return out


def pool_grad(name: str, x: Any, grad_output: Any,
              kernel_size: int | tuple[int, ...] | None = None, *,
              stride: int | tuple[int, ...] | None = None,
              padding: int | str | tuple = 0,
              dilation: int | tuple[int, ...] = 1,
              ceil_mode: bool = False,
              layout: str = "channels_first",
              count_include_pad: bool | None = None,
              divisor_override: float | None = None,
              output_size: int | tuple[int | None, ...] | None = None,
              keepdims: bool = False,
              **params: Any) -> np.ndarray:
    """Gradient of ``pool(name, x, ...)`` with respect to ``x``.

    Parameters
    ----------
    name, x, kernel_size, stride, padding, dilation, ceil_mode, layout, count_include_pad, \
divisor_override, output_size, keepdims, **params
        As for :func:`pool`.  ``x`` must have a floating-point dtype.
    grad_output : array_like
        Gradient of the loss with respect to the pooled result; the shape :func:`pool`
        returns.

    Returns
    -------
    ndarray
        Same shape, layout and dtype as ``x``.  Overlapping windows accumulate (PyTorch
        semantics); a max/min gradient goes to the selected element (the first on ties).
        Computed without atomics: results are deterministic.
    """
    options = dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                   ceil_mode=ceil_mode, layout=layout, count_include_pad=count_include_pad,
                   divisor_override=divisor_override, return_indices=False,
                   output_size=output_size, keepdims=keepdims)
    call = _prepare(name, x, options, params, "pool_grad")
    if call.x.dtype.kind != "f":
        raise TypeError(f"pool_grad needs x of a floating-point dtype, got {call.x.dtype}")
    gy = check_grad_output(grad_output, call)
    gx = cpu.backward(call.pooler.reduction, call.layout, call.work, gy, call.axes, call.prm,
                      call.include_pad, call.override)
    return gx.reshape(call.x.shape).astype(call.x.dtype, copy=False)


def check_grad_output(grad_output: object, call: _Call) -> np.ndarray:
    """``grad_output`` as a contiguous 5-D array in the accumulator dtype."""
    try:
        gy = np.asarray(grad_output)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"grad_output must be an array, got {type(grad_output).__name__}"
                        ) from exc
    if gy.dtype.kind not in "biuf":
        raise TypeError(f"grad_output must have a real numeric dtype, got {gy.dtype}")
    out5 = cpu.out_shape(call.work, call.axes, call.layout)
    expected = call.result_shape(out5)
    if gy.shape != expected:
        raise ValueError(f"grad_output must have shape {expected} (the shape pool() returns), "
                         f"got {gy.shape}")
    acc = call.pooler.reduction.acc_dtype(call.work.dtype)
    return np.ascontiguousarray(gy, dtype=acc).reshape(out5)
