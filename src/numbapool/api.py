"""The public functions: :func:`pool`, :func:`pool_grad`, :func:`poolers`, :func:`get`."""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import buffers, randomness, targets
from .geometry import SINGLETON, AxisWindows, distinct
from .kernels import cpu, routing, transpose
from .kernels import cuda as cuda_kernels
from .options import (
    check_array,
    check_bool,
    check_indices,
    check_layout,
    indices_out_of_range,
    typed_key,
)
from .pooler import Param, Pooler
from .redraw import RedrawnForward
from .reduction import MAX_DIVISOR, Reduction, Sampling, Selection
from .registry import REGISTRY
from .windows import WindowContext, WindowPlan

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


@dataclass(frozen=True)
class _ParamSlot:
    """Where a float parameter sits in ``prm`` and the shape the caller gave it."""

    param: Param
    offset: int
    width: int
    per_channel: bool
    shape: tuple[int, ...]
    explicit: bool


@dataclass
class _Call:
    """Everything a kernel call needs, checked and normalised."""

    pooler: Pooler
    reduction: Reduction
    x: np.ndarray  # the caller's array
    work: np.ndarray  # 5-D, contiguous in kernel_layout, a dtype the kernels take
    layout: str  # the caller's layout
    kernel_layout: str
    plan: WindowPlan
    axes: tuple[AxisWindows, AxisWindows, AxisWindows]
    prm: np.ndarray
    slots: list[_ParamSlot]
    include_pad: bool
    override: float | None
    u: np.ndarray | None
    target: str = "cpu"

    def channels(self) -> int:
        return self.x.shape[1 if self.layout == "channels_first" else self.x.ndim - 1]

    def result_shape(self) -> tuple[int, ...]:
        n, c = self.x.shape[0], self.channels()
        if self.plan.drop_spatial:
            return (n, c)
        spatial = self.plan.out_spatial
        return (n, c, *spatial) if self.layout == "channels_first" else (n, *spatial, c)

    def out5_shape(self) -> tuple[int, ...]:
        return cpu.out_shape(self.work, self.axes, self.kernel_layout)

    def to_kernel_layout(self, a5: np.ndarray) -> np.ndarray:
        """A 5-D array in the caller's layout, contiguous in the kernel layout."""
        if self.target == "cuda":  # the CUDA kernels take both layouts and any strides
            return a5
        if self.layout != self.kernel_layout:
            if a5.flags.c_contiguous and a5.dtype.kind in "biuf":  # (parallel, blocked)
                return transpose.to_channels_first(a5)
            a5 = np.moveaxis(a5, -1, 1)
        return np.ascontiguousarray(a5)

    def to_caller(self, a5: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """A 5-D kernel result in the caller's layout and shape."""
        if self.target == "cuda":
            return a5.reshape(shape)
        if self.layout != self.kernel_layout:
            a5 = transpose.to_channels_last(np.ascontiguousarray(a5))
        return a5.reshape(shape)


def _unexpected(func: str, key: str, pooler: Pooler) -> TypeError:
    choices = list(_OPTION_DEFAULTS) + list(pooler.options()) + [p.name for p in
                                                                 pooler.parameters]
    close = difflib.get_close_matches(key, choices, n=2, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return TypeError(f"{func}() got an unexpected keyword argument {key!r} for pooler "
                     f"{pooler.name!r}{hint}")


def _float_params(pooler: Pooler, values: dict[str, Any], explicit: frozenset[str],
                  channels: int,
                  taps: int) -> tuple[np.ndarray, list[_ParamSlot]]:
    blocks, slots, offset = [], [], 0
    for p in pooler.parameters:
        if p.kind != "float":
            continue
        arr = p.values(values[p.name], pooler.name, channels, taps)
        given = np.shape(values[p.name])
        slots.append(_ParamSlot(p, offset, arr.shape[1], arr.shape[0] == channels and
                                len(given) > 0 and given[0] == channels and p.per_channel,
                                given, p.name in explicit))
        offset += arr.shape[1]
        blocks.append(arr)
    if not blocks:
        return np.zeros((1, 0), dtype=np.float64), slots
    rows = max(b.shape[0] for b in blocks)
    prm = np.concatenate([np.broadcast_to(b, (rows, b.shape[1])) for b in blocks], axis=1)
    return np.ascontiguousarray(prm), slots


@dataclass(frozen=True)
class _Args:
    """A call's checked arguments: all but the data and the windows, which a pooler that
    draws its windows at random (``deterministic=False``) plans anew on every call."""

    pooler: Pooler
    values: dict[str, Any]  # every parameter's value (a default where not given)
    explicit: frozenset[str]  # the parameters the caller gave
    reduction: Reduction
    layout: str
    spatial: tuple[int, ...]
    batch: int
    channels: int
    seed: int | None
    window_opts: dict[str, Any]
    include_pad: bool | None  # None: the window plan's rule
    override: float | None


def _prepare(name: str, x: object, options: dict[str, Any], params: dict[str, Any],
             func: str, variants: tuple[str, ...], target: str = "cpu") -> _Call:
    args, arr = _check_args(name, x, options, params, func, target)
    return _plan_call(args, arr, variants, target)


def _check_args(name: str, x: object, options: dict[str, Any], params: dict[str, Any],
                func: str, target: str = "cpu") -> tuple[_Args, Any]:
    """Check a call's arguments; returns them normalised, and ``x`` as an array."""
    pooler = REGISTRY.get(name)
    accepted = pooler.options()
    declared = {p.name: p for p in pooler.parameters}
    for key in params:
        if key not in declared and key not in accepted:
            raise _unexpected(func, key, pooler)
    for key, value in options.items():
        if key not in accepted and not _is_default(value, _OPTION_DEFAULTS[key]):
            raise TypeError(f"pooler {pooler.name!r} does not take {key!r} "
                            f"(it takes: {', '.join(sorted(accepted))})")
    given = {**options, **{k: v for k, v in params.items() if k not in declared}}
    values: dict[str, Any] = {}
    for p in pooler.parameters:
        if p.name in params:
            values[p.name] = targets.host_parameter(params[p.name], p.name, target)
            if p.kind != "float":
                p.validate_option(params[p.name], pooler.name)
        elif p.kind == "float" and p.default is None:
            raise TypeError(f"{func}() missing required parameter {p.name!r} of pooler "
                            f"{pooler.name!r}")
        else:
            values[p.name] = p.default

    layout = check_layout(options["layout"])
    arr = targets.check_device_array(x) if target == "cuda" else check_array(x)
    shape = tuple(arr.shape)  # (a device array's shape may not take negative indices)
    spatial = shape[2:] if layout == "channels_first" else shape[1:-1]
    if min(spatial) < 1:
        raise ValueError(f"x has an empty spatial axis (shape {arr.shape}, layout {layout})")
    batch = arr.shape[0]
    channels = shape[1] if layout == "channels_first" else shape[-1]
    reduction = pooler.resolve(values)
    if not reduction.accepts(arr.dtype):
        raise TypeError(f"pooler {pooler.name!r} does not accept x of dtype {arr.dtype}")

    seed = None
    if not pooler.deterministic:
        seed = given.get("seed")
        if seed is not None and (not isinstance(seed, numbers.Integral) or
                                 isinstance(seed, bool)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    window_opts = {k: given.get(k, default) for k, default in pooler.window.options.items()}

    include_pad = options["count_include_pad"]
    if include_pad is not None:
        include_pad = check_bool(include_pad, "count_include_pad")
    override = options["divisor_override"]
    if override is not None:
        if not isinstance(override, numbers.Real) or isinstance(override, (bool, np.bool_)):
            raise TypeError(f"divisor_override must be a number, got {type(override).__name__}")
        if not 1 / MAX_DIVISOR <= override <= MAX_DIVISOR:
            raise ValueError("divisor_override must be positive, between 2**-63 and 2**63 "
                             f"(PyTorch takes an int64), got {override}")
        override = float(override)
    return _Args(pooler, values, frozenset(params), reduction, layout,
                 tuple(int(s) for s in spatial), batch, channels, seed, window_opts,
                 include_pad, override), arr


def _plan_call(args: _Args, arr: Any, variants: tuple[str, ...], target: str = "cpu"
               ) -> _Call:
    """The windows of a call with checked arguments (drawn anew by a pooler that draws
    them at random), and everything its kernels need."""
    pooler, reduction, layout = args.pooler, args.reduction, args.layout
    batch, channels, spatial = args.batch, args.channels, args.spatial
    rng = None if pooler.deterministic else randomness.generator(args.seed)
    context = WindowContext(batch, channels, arr.dtype, rng)
    plan = pooler.window.plan(spatial, context, **args.window_opts)
    _check_plan(plan, spatial, batch * channels, pooler)
    axes = (SINGLETON,) * (3 - len(spatial)) + plan.axes
    taps = math.prod(a.extent for a in plan.axes)
    prm, slots = _float_params(pooler, args.values, args.explicit, channels, taps)
    include_pad = plan.count_include_pad if args.include_pad is None else args.include_pad
    if include_pad and args.override is None and getattr(reduction, "uses_divisor", False):
        _check_padded_divisor(plan, pooler)

    if target == "cuda":
        work = targets.lift_device(arr, layout)
        call = _Call(pooler, reduction, arr, work, layout, layout, plan, axes, prm, slots,
                     include_pad, args.override, None, target)
    else:
        call = _Call(pooler, reduction, arr, _lift_host(arr, layout), layout,
                     _kernel_layout(layout, reduction, prm, axes, variants, batch, channels),
                     plan, axes, prm,
                     slots, include_pad, args.override, None)
        call.work = call.to_kernel_layout(call.work)
    if isinstance(reduction, Sampling):
        # One uniform per output, in channels-first order whatever the layout and target, so
        # that a seed gives the same samples on the CPU and on the GPU: the numbers of
        # rng.random of that shape, drawn on the kernel threads (401,408 in 0.19 against
        # 0.89 ms).
        call.u = np.empty((batch, channels, *(a.out for a in axes)))
        randomness.uniform_rows(rng, call.u.reshape(1, -1))
    return call


def _check_padded_divisor(plan: WindowPlan, pooler: Pooler) -> None:
    """A window's divisor counting padding (the taps of the padded input it covers) must be
    at most :data:`MAX_DIVISOR`, as ``divisor_override`` must, so that reductions can rely
    on it (a kernel of 2e7 taps, padded by 1e7, on each of three axes of one element would
    give 8e21).  Without padding a divisor counts elements of one plane, fewer than that."""
    largest = 1.0
    for axis in plan.axes:
        count = distinct(axis.padded_count)  # (a count given as one value: once)
        if count.size and not count.min() >= 1.0:
            raise ValueError(f"window rule {type(pooler.window).__name__} of pooler "
                             f"{pooler.name!r} returned a padded count below 1 (or NaN)")
        largest *= float(count.max(initial=1.0))
    if largest > MAX_DIVISOR:
        raise ValueError(f"pooler {pooler.name!r}: the largest window counts {largest:.3g} "
                         "taps of the padded input, more than 2**63; average over the real "
                         "elements (count_include_pad=False) or give divisor_override")


def _check_plan(plan: WindowPlan, spatial: tuple[int, ...], planes: int,
                pooler: Pooler) -> None:
    """A window rule's plan must describe this input: one axis per spatial axis, of its
    length, with shared windows or one set per ``(n, c)`` plane (kernels index the tables
    by plane)."""
    rule = type(pooler.window).__name__
    if len(plan.axes) != len(spatial):
        raise ValueError(f"window rule {rule} of pooler {pooler.name!r} returned "
                         f"{len(plan.axes)} axes of windows for {len(spatial)} spatial axes")
    for i, (axis, length) in enumerate(zip(plan.axes, spatial)):
        if axis.length != length:
            raise ValueError(f"window rule {rule} of pooler {pooler.name!r} returned windows "
                             f"for length {axis.length} on spatial axis {i} of length {length}")
        if axis.planes not in (1, planes):
            raise ValueError(f"window rule {rule} of pooler {pooler.name!r} returned "
                             f"{axis.planes} planes of windows on spatial axis {i}; expected 1 "
                             f"(shared) or N * C = {planes}")


def _kernel_layout(layout: str, reduction: Reduction, prm: np.ndarray,
                   axes: tuple[AxisWindows, ...], variants: tuple[str, ...], batch: int,
                   channels: int) -> str:
    """The layout the CPU kernels run in: the caller's, or channels-first on a transposed
    copy where no channels-last kernel exists (for parameters that differ by channel, the
    gradients' kernels have twins that read each channel's: ``cpu.cl_params_variant``), or
    where the channels-last gradient would fold large windows again for every element
    (``cpu.refolds_too_much``), or where a sampling reduction's channels-last kernel would
    have fewer tasks than threads (``cpu.sampling_too_few_tasks``).  Channels-last calls over
    per-plane windows stay channels last where a kernel takes them in place: a forward of
    values or with indices of a selection, or its gradient (the masked kernels,
    ``cpu.masked_channels_last`` and ``cpu.masked_indices_channels_last``), and the gradient
    of a sum or a mean (``cpu.linear_planes_channels_last``)."""
    if layout == "channels_last" and (
            any(a.planes > 1 for a in axes)
            or not all(cpu.cl_params_variant(reduction, v, prm, channels) is not None
                       for v in variants)
            or ("backward" in variants
                and cpu.refolds_too_much(reduction, axes, batch, channels, prm))
            or cpu.sampling_too_few_tasks(reduction, batch, axes)):
        if variants == ("forward",) and cpu.masked_channels_last(reduction, axes, prm, batch,
                                                                  channels):
            return layout  # (per-plane windows, the masked kernel)
        if variants == ("backward",) and cpu.linear_planes_channels_last(
                reduction, axes, batch, channels):
            return layout  # (a linear gradient over per-plane windows, in place)
        if variants in (("forward_indices",), ("backward",)) and (
                cpu.masked_indices_channels_last(
                    reduction, axes, (batch, *(a.length for a in axes), channels))):
            # (per-plane windows, the masked kernel with indices; a selection's gradient
            # routed by them)
            return layout
        return "channels_first"
    return layout


def _lift_host(arr: np.ndarray, layout: str) -> np.ndarray:
    """``arr`` in native byte order, a dtype the kernels take, with three spatial axes."""
    work = arr
    if not work.dtype.isnative:
        work = work.astype(work.dtype.newbyteorder("="))
    if work.dtype == np.float16:
        work = work.astype(np.float32)
    elif work.dtype == np.bool_:
        work = work.view(np.uint8)
    lift = (1,) * (5 - arr.ndim)
    if layout == "channels_first":
        return work.reshape(work.shape[:2] + lift + work.shape[2:])
    return work.reshape(work.shape[:1] + lift + work.shape[1:])


def _restore_dtype(out: np.ndarray, call: _Call) -> np.ndarray:
    dtype = call.x.dtype
    if call.target == "cuda":
        return targets.restore_device_dtype(out, dtype, call.reduction)
    if dtype == np.float16:
        return out.astype(np.float16)
    if dtype == np.bool_ and isinstance(call.reduction, (Selection, Sampling)):
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
         target: str | None = None,
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
        Divide averages by this instead (PyTorch's ``divisor_override``); from ``2**-63`` to
        ``2**63``.
    return_indices : bool
        Also return int64 flat indices of the selected elements into each ``(n, c)`` spatial
        plane (selection poolers: max, min, adaptive_max, ...).
    output_size : int or tuple of (int or None)
        Output size of adaptive poolers (None keeps that axis).
    keepdims : bool
        Global poolers: keep the spatial axes with size 1 instead of returning ``(N, C)``.
    target : {"cpu", "cuda"}, optional
        Where to compute.  None (default): where ``x`` lives; a CUDA array (anything with
        ``__cuda_array_interface__``: Numba device arrays, CuPy arrays, PyTorch CUDA tensors)
        runs on the GPU.  Naming a target copies ``x`` there if it is elsewhere.
    **params
        The pooler's own parameters, e.g. ``p`` for ``"lp"``.

    Returns
    -------
    ndarray, or (ndarray, ndarray) with ``return_indices=True``
        On the CUDA target, Numba device arrays on the current device (``cupy.asarray`` and
        ``torch.as_tensor`` take them without a copy).

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
    data = _data_params(name, params)
    key = _call_key(name, x, options, params, data) if target is None else None
    known = _KNOWN_CALLS.get(key) if key is not None else None
    if known is not None and REGISTRY.get(name) is not known.pooler:
        known = None
    if known is not None and known.args is None:
        # The same arguments were checked and planned before: only the data is new.
        if isinstance(known.plan, cuda_kernels.ForwardPlan):  # (results in the caller's shape)
            out, idx = known.plan.run_as(x, known.shape)
            return (out, idx) if known.with_indices else out
        out, idx = known.plan.run(x.reshape(known.work_shape))
        if known.with_indices:
            return out.reshape(known.shape), idx.reshape(known.shape)
        return out.reshape(known.shape)
    args = redrawn = pending = None
    if known is not None:
        # Checked before, by a pooler that draws new windows on every call: only those
        # and the data are new.  Its rule may redraw them into the kept kernel's tables.
        want_idx, where = known.with_indices, "cpu"
        # (the values of the rule's data options: arrays keyed by shape and dtype, other
        # values by value or identity, read anew each call)
        given = {k: params[k] for k in known.pooler.window.data_options if k in params}
        if known.redrawn is not None:
            done = known.redrawn.run(x, given)
            if done is not None:
                return done if want_idx else done[0]
        checked = known.args
        if given:
            checked = replace(checked, window_opts={**checked.window_opts, **given})
        call = _plan_call(checked, x, (_forward_variant(want_idx),))
        if key is not None and (known.redrawn is None or known.redrawn.stale):
            redrawn = RedrawnForward.make(call, known.args.seed, want_idx)
            if redrawn is not None or known.redrawn is not None:
                # (kept once this call has run its plan: a concurrent call that took the
                # pass earlier would redraw the tables this call's windows are in)
                pending = replace(known, redrawn=redrawn)
    else:
        want_idx = check_bool(return_indices, "return_indices")
        where = targets.choose(target, x)
        args, arr = _check_args(name, targets.to_target(x, where, "x"), options, params,
                                "pool", where)
        call = _plan_call(args, arr, (_forward_variant(want_idx),), where)
    plan = None
    if where == "cpu":
        plan = redrawn.plan if redrawn is not None else cpu.plan_forward(
            call.reduction, call.kernel_layout, call.work, call.axes, call.prm,
            call.include_pad, call.override, with_indices=want_idx)
        out, idx = plan.run(call.work, call.u)
        if pending is not None:
            _remember(key, pending)
    else:
        out, idx = targets.engine(where).forward(
            call.reduction, call.kernel_layout, call.work, call.axes, call.prm,
            call.include_pad, call.override, with_indices=want_idx, u=call.u)
    shape = call.result_shape()
    out = _restore_dtype(call.to_caller(out, shape), call)
    if key is not None and where == "cuda" and args is not None:
        if call.pooler.deterministic and not isinstance(call.reduction, Sampling):
            _remember(key, _KnownCall(call.pooler, None, cuda_kernels.ForwardPlan(
                call.reduction, call.kernel_layout, call.work, call.axes, call.prm,
                call.include_pad, call.override, want_idx), shape, want_idx))
    elif key is not None and plan is not None and args is not None:
        if not call.pooler.deterministic:
            if data:  # (not kept: a repeated call gives its own, see _data_params)
                args = replace(args, window_opts={
                    k: None if k in data else v for k, v in args.window_opts.items()})
            _remember(key, _KnownCall(call.pooler, None, None, None, want_idx, args))
        elif call.kernel_layout == call.layout:
            _remember(key, _KnownCall(call.pooler, call.work.shape, plan, shape, want_idx))
    if want_idx:
        return out, call.to_caller(idx, shape)
    return out


def _forward_variant(with_indices: bool) -> str:
    return "forward_indices" if with_indices else "forward"


@dataclass(frozen=True)
class _KnownCall:
    """What a repeated call needs (no data): see :func:`_call_key`."""

    pooler: Pooler
    work_shape: tuple[int, ...] | None  # (None for a CUDA plan, which takes x as it is)
    plan: (cpu.ForwardPlan | cpu.ViaChannelsLast | cpu.TiledChannelsLast
           | cuda_kernels.ForwardPlan | None)
    shape: tuple[int, ...] | None
    with_indices: bool
    args: _Args | None = None  # (a pooler that draws its windows: they are planned anew)
    redrawn: RedrawnForward | None = None  # (or redrawn, from the second call on)


# Calls already checked and planned, by their arguments (not their data): a repeated call
# skips argument checking and geometry; for a pooler that draws its windows at random
# (fractional pooling), argument checking only: the windows are drawn and planned anew, or,
# where the rule can redraw them in place, drawn into the kept kernel's tables
# (numbapool.redraw).
# Only for plain contiguous float32/float64 arrays of native byte order and hashable
# arguments; the key records every argument's type, so that a value that merely compares
# equal (True and 1, 2.0 and 2) is checked again.
_KNOWN_CALLS: dict[tuple, _KnownCall] = {}
_KNOWN_MAX = 64


def _data_params(name: object, params: dict) -> tuple[str, ...]:
    """The parameters of a call of ``name`` that are NumPy arrays for its window rule's
    :attr:`~numbapool.windows.WindowRule.data_options`, where it draws its windows
    (``deterministic=False``): :func:`_call_key` keys them by shape and dtype, not by
    value, and a repeated call hands them to the kept plan."""
    if not params or not any(type(v) is np.ndarray for v in params.values()):
        return ()
    try:
        pooler = REGISTRY.get(name)  # type: ignore[arg-type]
    except (LookupError, TypeError):  # (reported by the checks)
        return ()
    rule = pooler.window
    if pooler.deterministic or not rule.data_options:
        return ()
    return tuple(sorted(k for k, v in params.items()
                        if type(v) is np.ndarray and k in rule.data_options))


def _call_key(name: object, x: object, options: dict, params: dict,
              data: tuple[str, ...] = ()) -> tuple | None:
    if type(x) is np.ndarray:
        if x.dtype.char not in "fd" or not x.dtype.isnative or not x.flags.c_contiguous:
            return None
        head = (name, x.shape, x.dtype.char, x.flags.writeable)
    elif cuda_kernels.is_numba_device_array(x):
        if x.dtype.char not in "fd" or not x.dtype.isnative or not x.is_c_contiguous():
            return None
        head = (name, "cuda", x.shape, x.dtype.char)
    else:
        return None
    # (every argument's type beside its value; a tuple or list of plain values as its type,
    # its elements and their types; anything else as typed_key gives it)
    values = tuple(options.values())
    types = tuple(map(type, values))
    if not _PLAIN.issuperset(types):
        values = list(values)
        for i, t in enumerate(types):
            if t not in _PLAIN:
                values[i] = _value_key(values[i])
        values = tuple(values)
    key = (*head, values, types)
    if params:
        for param in sorted(params):  # (each parameter as name, value, type)
            value = params[param]
            kind = type(value)
            if param in data:  # (an array of data: its shape and dtype)
                key += (param, (value.shape, value.dtype.str), kind)
            else:
                key += (param, value if kind in _PLAIN else _value_key(value), kind)
    try:
        hash(key)
    except TypeError:
        return None
    return key


_PLAIN = frozenset((int, float, bool, str, type(None)))
"""Types whose values :func:`_call_key` keeps as they are (beside their type)."""


def _value_key(value: object) -> object:
    """:func:`_call_key`'s key of an argument whose type is not in :data:`_PLAIN`."""
    kind = type(value)
    if kind is tuple or kind is list:
        types = tuple(map(type, value))
        if _PLAIN.issuperset(types):
            return kind, tuple(value), types
    return typed_key(value)


def _remember(key: tuple, known: Any, cache: dict | None = None) -> None:
    """Keep ``known`` under ``key`` in ``cache`` (:data:`_KNOWN_CALLS` unless given),
    forgetting the oldest entry when it holds :data:`_KNOWN_MAX`."""
    cache = _KNOWN_CALLS if cache is None else cache
    if len(cache) >= _KNOWN_MAX:
        cache.pop(next(iter(cache)), None)
    cache[key] = known


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
              return_param_grads: bool = False,
              indices: Any = None,
              target: str | None = None,
              **params: Any) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Gradient of ``pool(name, x, ...)`` with respect to ``x``.

    Parameters
    ----------
    name, x, kernel_size, stride, padding, dilation, ceil_mode, layout, count_include_pad, \
divisor_override, output_size, keepdims, **params
        As for :func:`pool`.  ``x`` must have a floating-point dtype.
    grad_output : array_like
        Gradient of the loss with respect to the pooled result; the shape :func:`pool`
        returns.
    return_param_grads : bool
        Also return the gradients with respect to the pooler's trainable parameters.
    indices : array_like of int, optional
        For poolers that select an element per window (those that take
        ``return_indices=True``): the indices ``pool(..., return_indices=True)`` returned for
        this ``x``.  The gradient is then routed to them, without recomputing the forward
        pass (what PyTorch's autograd does with the indices its forward saved); much faster.
        Must have the result's shape and lie in each plane (a ValueError otherwise); on the
        CUDA target, a device array.
    target : {"cpu", "cuda"}, optional
        As for :func:`pool`; ``x`` and ``grad_output`` must live in the same place (a
        TypeError otherwise), unless ``target`` is named, which copies both there.

    Returns
    -------
    ndarray, or (ndarray, dict) with ``return_param_grads=True``
        The gradient with respect to ``x``: same shape, layout and dtype as ``x``.
        Overlapping windows accumulate (PyTorch semantics); a max/min gradient goes to the
        selected element (the first on ties).  Computed without atomics: results are
        deterministic, on the GPU too.  The dict maps each trainable parameter's name to its
        gradient, with the shape the parameter was given (a float for a scalar), on the host.
    """
    options = dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                   ceil_mode=ceil_mode, layout=layout, count_include_pad=count_include_pad,
                   divisor_override=divisor_override, return_indices=False,
                   output_size=output_size, keepdims=keepdims)
    key = None
    if target is None and return_param_grads is False:
        key = _call_key(name, x, options, params)
        if key is not None and indices is not None:
            known = _KNOWN_ROUTES.get(key)
            if (known is not None and REGISTRY.get(name) is known.pooler
                    and known.takes(grad_output, indices)):
                return known.run(grad_output, indices)
        elif key is not None:
            linear = _KNOWN_GRADS.get(key)
            if (linear is not None and REGISTRY.get(name) is linear.pooler
                    and linear.takes(grad_output)):
                return linear.run(x, grad_output)
    want_pg = check_bool(return_param_grads, "return_param_grads")
    where = targets.choose(target, x, grad_output, has_grad=True)
    # (the layout is the backward kernel's: cpu.param_grad takes either)
    call = _prepare(name, targets.to_target(x, where, "x"), options, params, "pool_grad",
                    ("backward",), where)
    if np.dtype(call.x.dtype).kind != "f":
        raise TypeError(f"pool_grad needs x of a floating-point dtype, got {call.x.dtype}")
    grad_output = targets.to_target(grad_output, where, "grad_output")
    if indices is not None and not isinstance(call.reduction, (Selection, Sampling)):
        raise TypeError(f"indices: pooler {name!r} does not select elements, so its gradient "
                        "takes no indices (only poolers that take return_indices=True do)")
    kernels = targets.engine(where)
    if where == "cuda":
        gy = targets.check_device_grad(grad_output, call.result_shape(), call.layout,
                                       call.reduction.acc_dtype(call.work.dtype))
        idx = None
        if indices is not None:
            idx = targets.check_device_indices(targets.to_target(indices, where, "indices"),
                                               call.result_shape(), call.layout)
        gx = kernels.backward(call.reduction, call.kernel_layout, call.work, gy, call.axes,
                              call.prm, call.include_pad, call.override, u=call.u,
                              indices=idx)
        gx = call.to_caller(gx, call.x.shape)
    elif indices is not None:
        routed = _Routing.of(call)  # (no forward pass: the indices are flat plane positions)
        gx = routed.run(np.ascontiguousarray(_grad_array(grad_output, call)),
                        _index_array(indices, call))
        if key is not None and key not in _KNOWN_ROUTES:
            _remember(key, routed, _KNOWN_ROUTES)
        gy = check_grad_output(grad_output, call) if want_pg else None
    elif want_pg:  # (the CPU: both at once, which may share their transposed arrays)
        gy = check_grad_output(grad_output, call)
        gx, per_plane = cpu.backward_and_param_grad(
            call.reduction, call.kernel_layout, call.work, gy, call.axes, call.prm,
            call.include_pad, call.override, u=call.u)
        gx = call.to_caller(gx, call.x.shape)
    else:
        gy = check_grad_output(grad_output, call)
        run = None
        if (key is not None and key not in _KNOWN_GRADS and call.pooler.deterministic
                and call.layout == call.kernel_layout):
            # (a sum's or mean's row-by-row kernel, bound: kept for repeated calls)
            run = cpu.bound_linear_backward(call.reduction, call.kernel_layout, call.work, gy,
                                            call.axes, call.prm, call.include_pad,
                                            call.override)
        if run is not None:
            gx = run(call.work, gy)
            _remember(key, _KnownGrad(call.pooler, run, call.work.shape, gy.shape,
                                      call.result_shape(), gy.dtype), _KNOWN_GRADS)
        else:
            gx = kernels.backward(call.reduction, call.kernel_layout, call.work, gy, call.axes,
                                  call.prm, call.include_pad, call.override, u=call.u)
        gx = call.to_caller(gx, call.x.shape)
    if where == "cuda":
        gx = targets.astype_device(gx, call.x.dtype)
    else:
        gx = gx.astype(call.x.dtype, copy=False)
    if not want_pg:
        return gx
    if where == "cuda":
        per_plane = kernels.param_grad(call.reduction, call.layout, call.work, gy, call.axes,
                                       call.prm, call.include_pad, call.override)
    elif indices is not None:
        per_plane = cpu.param_grad(call.reduction, call.work, gy, call.axes, call.prm,
                                   call.include_pad, call.override, call.kernel_layout)
    grads: dict[str, Any] = {}
    for slot in call.slots:
        if not slot.param.trainable:
            continue
        block = per_plane[:, :, slot.offset:slot.offset + slot.width]
        if slot.per_channel:
            grads[slot.param.name] = block.sum(axis=0).reshape(slot.shape)
        elif slot.shape == () and (slot.width == 1 or slot.explicit):
            grads[slot.param.name] = float(block.sum())  # one value, shared by every tap
        else:  # per tap (a per-tap parameter left at its scalar default gets one per tap)
            grads[slot.param.name] = block.sum(axis=(0, 1)).reshape(slot.width)
    return gx, grads



def _grad_array(grad_output: object, call: _Call) -> np.ndarray:
    """``grad_output``, checked, in the accumulator dtype and the result's shape."""
    try:
        gy = np.asarray(grad_output)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"grad_output must be an array, got {type(grad_output).__name__}"
                        ) from exc
    if gy.dtype.kind not in "biuf":
        raise TypeError(f"grad_output must have a real numeric dtype, got {gy.dtype}")
    expected = call.result_shape()
    if gy.shape != expected:
        raise ValueError(f"grad_output must have shape {expected} (the shape pool() returns), "
                         f"got {gy.shape}")
    return gy.astype(call.reduction.acc_dtype(call.work.dtype), copy=False)


def check_grad_output(grad_output: object, call: _Call) -> np.ndarray:
    """``grad_output`` as a contiguous 5-D array in the accumulator dtype."""
    gy = _grad_array(grad_output, call)
    out5 = call.out5_shape()
    caller5 = out5 if call.layout == call.kernel_layout else (
        out5[:1] + out5[2:] + out5[1:2])
    return call.to_kernel_layout(gy.reshape(caller5))


def _index_array(indices: object, call: _Call) -> np.ndarray:
    """``indices`` for :func:`pool_grad`, checked: contiguous int64 of the result's shape."""
    try:
        idx = np.asarray(indices)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"indices must be an array, got {type(indices).__name__}") from exc
    check_indices(idx.dtype, idx.shape, call.result_shape())
    return np.ascontiguousarray(idx, dtype=np.int64)


@dataclass(frozen=True)
class _Routing:
    """How the gradient of a selection is routed by its indices on the CPU (no data): the
    plane-by-plane shapes :func:`numbapool.kernels.routing.route` takes."""

    pooler: Pooler
    layout: str
    result_shape: tuple[int, ...]  # (of grad_output and the indices)
    by_plane: tuple[int, ...]  # (N*C, O) channels first, (N, O, C) channels last
    gx_shape: tuple[int, ...]  # (N*C, S) or (N, S, C)
    x_shape: tuple[int, ...]
    x_dtype: np.dtype
    gy_dtype: np.dtype  # (the accumulator's)

    @classmethod
    def of(cls, call: _Call) -> _Routing:
        x = call.x
        n = x.shape[0]
        c = call.channels()
        plane = math.prod(x.shape[2:] if call.layout == "channels_first" else x.shape[1:-1])
        result = call.result_shape()
        outs = math.prod(result) // max(1, n * c)
        if call.layout == "channels_first":
            by_plane, gx_shape = (n * c, outs), (n * c, plane)
        else:
            by_plane, gx_shape = (n, outs, c), (n, plane, c)
        return cls(call.pooler, call.layout, result, by_plane, gx_shape, x.shape,
                   x.dtype, np.dtype(call.reduction.acc_dtype(call.work.dtype)))

    def run(self, gy: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """``gy`` (the accumulator dtype) routed by ``idx`` (int64), both contiguous, of the
        result's shape; the gradient in ``x``'s shape and dtype."""
        gx = buffers.empty(self.gx_shape, gy.dtype)
        bad = routing.route(gy.reshape(self.by_plane), idx.reshape(self.by_plane), gx,
                            self.layout)
        if bad:
            raise indices_out_of_range(bad, self.gx_shape[1])
        return gx.reshape(self.x_shape).astype(self.x_dtype, copy=False)

    def takes(self, gy: object, idx: object) -> bool:
        """Whether ``gy`` and ``idx`` can be routed as they are, unchecked: C-contiguous
        arrays of the result's shape, the accumulator dtype and int64."""
        return (type(gy) is np.ndarray and type(idx) is np.ndarray
                and gy.shape == self.result_shape and idx.shape == self.result_shape
                and gy.dtype == self.gy_dtype and idx.dtype == np.int64
                and gy.flags.c_contiguous and idx.flags.c_contiguous)


# Routed gradients already planned, by their call's arguments (see _call_key): a training
# loop's repeated pool_grad(..., indices=) skips argument checking and geometry.
_KNOWN_ROUTES: dict[tuple, _Routing] = {}


@dataclass(frozen=True)
class _KnownGrad:
    """A gradient of a sum or a mean over windows the planes share, planned and bound
    (``cpu.bound_linear_backward``): a repeated ``pool_grad`` of the same arguments skips
    argument checking, geometry and the packing of the kernel's arguments (an avg pool's
    gradient of (1, 2, 4, 4): 85 -> 13-15 us a call)."""

    pooler: Pooler
    run_bound: Callable[[np.ndarray, np.ndarray], np.ndarray]
    work_shape: tuple[int, ...]  # (x, 5-D)
    gy_work_shape: tuple[int, ...]  # (grad_output, 5-D)
    result_shape: tuple[int, ...]
    gy_dtype: np.dtype  # (the accumulator's)

    def takes(self, gy: object) -> bool:
        """Whether ``gy`` can be used as it is, unchecked: a C-contiguous array of the
        result's shape and the accumulator dtype.  (``x`` matched the key: a C-contiguous
        float array of the first call's shape and dtype.)"""
        return (type(gy) is np.ndarray and gy.shape == self.result_shape
                and gy.dtype == self.gy_dtype and gy.flags.c_contiguous)

    def run(self, x: np.ndarray, gy: np.ndarray) -> np.ndarray:
        gx = self.run_bound(x.reshape(self.work_shape), gy.reshape(self.gy_work_shape))
        return gx.reshape(x.shape).astype(x.dtype, copy=False)


# Gradients of sums and means already planned and bound, by their call's arguments.
_KNOWN_GRADS: dict[tuple, _KnownGrad] = {}

