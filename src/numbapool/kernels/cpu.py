"""Run the CPU kernels on normalised arrays.

Inputs here are already checked: 5-D (three spatial axes, 1-D/2-D problems lifted with size-1
axes), C-contiguous in their layout, of a dtype Numba supports; ``axes`` holds three
:class:`~numbapool.geometry.AxisWindows`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..geometry import AxisWindows
from ..reduction import Reduction, Selection
from .codegen import get_kernel

__all__ = ["forward", "backward", "out_shape"]


def out_shape(x: np.ndarray, axes: Sequence[AxisWindows], layout: str) -> tuple[int, ...]:
    spatial = tuple(a.out for a in axes)
    if layout == "channels_first":
        return (x.shape[0], x.shape[1], *spatial)
    return (x.shape[0], *spatial, x.shape[4])


def _geometry(axes: Sequence[AxisWindows]) -> list:
    args: list = []
    for a in axes:
        args += [a.start, a.count, a.step]
    return args


def _divisors(axes: Sequence[AxisWindows], include_pad: bool, override: float | None) -> list:
    return [a.divisor(include_pad) for a in axes] + [float(override or 0.0)]


def _inverse(axes: Sequence[AxisWindows]) -> list:
    args: list = []
    for a in axes:
        args += [a.inv_ptr, a.inv_win]
    return args


def forward(reduction: Reduction, layout: str, x: np.ndarray, axes: Sequence[AxisWindows],
            prm: np.ndarray, include_pad: bool = True, override: float | None = None,
            with_indices: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Pool ``x``; returns ``(out, indices or None)``."""
    shape = out_shape(x, axes, layout)
    geom = _geometry(axes)
    if isinstance(reduction, Selection):
        out = np.empty(shape, dtype=x.dtype)
        if with_indices:
            idx = np.empty(shape, dtype=np.int64)
            get_kernel(reduction, layout, "forward_indices")(x, out, idx, *geom)
            return out, idx
        get_kernel(reduction, layout, "forward")(x, out, *geom)
        return out, None
    if with_indices:
        raise ValueError(f"reduction {reduction.name!r} has no indices")
    out = np.empty(shape, dtype=reduction.out_dtype(x.dtype))
    zero = reduction.acc_dtype(x.dtype).type(0)
    get_kernel(reduction, layout, "forward")(
        x, out, *geom, *_divisors(axes, include_pad, override), zero, prm)
    return out, None


def backward(reduction: Reduction, layout: str, x: np.ndarray, grad_out: np.ndarray,
             axes: Sequence[AxisWindows], prm: np.ndarray, include_pad: bool = True,
             override: float | None = None) -> np.ndarray:
    """Gradient with respect to ``x`` (float ``x``), given the output gradient ``grad_out``
    (same shape as the forward result, in the accumulator dtype)."""
    acc = reduction.acc_dtype(x.dtype)
    zero = acc.type(0)
    gx = np.empty(x.shape, dtype=acc)
    inv = _inverse(axes)
    if isinstance(reduction, Selection):
        y, idx = forward(reduction, layout, x, axes, prm, with_indices=True)
        get_kernel(reduction, layout, "backward")(x, y, grad_out, gx, idx, *inv, zero)
    else:
        y, _ = forward(reduction, layout, x, axes, prm, include_pad, override)
        get_kernel(reduction, layout, "backward")(
            x, y, grad_out, gx, *inv, *_divisors(axes, include_pad, override), zero, prm)
    return gx
