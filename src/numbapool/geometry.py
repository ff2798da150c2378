"""Per-axis window tables: which input positions feed each output position.

Every window rule (sliding, adaptive, global, and the ones plugins add) reduces to the same
description per spatial axis, an :class:`AxisWindows`.  Window ``o`` reads the *real* (in-input)
positions ``start[o] + j * step`` for ``j in range(count[o])``; padding never appears in a
kernel's loops, it only changes ``divisor[o]`` (the number of taps an average divides by).

These tables are computed once per call in plain NumPy; kernels only index into them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "AxisWindows",
    "sliding_axis",
    "adaptive_axis",
    "global_axis",
    "explicit_axis",
    "sliding_output_length",
    "same_padding",
    "SINGLETON",
]


@dataclass(frozen=True, eq=False)
class AxisWindows:
    """The windows along one spatial axis.

    Attributes
    ----------
    length : int
        Input length along the axis.
    start : ndarray of int64, shape (out,)
        First real input position of each window.
    count : ndarray of int64, shape (out,)
        Number of real input positions in each window (always >= 1).
    step : int
        Distance between consecutive taps (the dilation).
    padded_count : ndarray of float64, shape (out,)
        Number of taps inside the padded input (real or padding); what an average divides by
        when padding is counted.
    inv_ptr, inv_win : ndarray of int64
        The inverse map, CSR style: input position ``i`` is read by the windows
        ``inv_win[inv_ptr[i]:inv_ptr[i + 1]]``, in increasing order.  Backward kernels use it
        to gather gradients without write conflicts.
    """

    length: int
    start: np.ndarray
    count: np.ndarray
    step: int
    padded_count: np.ndarray
    inv_ptr: np.ndarray
    inv_win: np.ndarray

    @property
    def out(self) -> int:
        return int(self.start.shape[0])

    def divisor(self, count_include_pad: bool) -> np.ndarray:
        """Per-window divisor along this axis, as float64."""
        if count_include_pad:
            return self.padded_count
        return self.count.astype(np.float64)


def _ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    return -((-a) // b)


def _freeze(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.setflags(write=False)


def _build(length: int, start: np.ndarray, count: np.ndarray, step: int,
           padded_count: np.ndarray) -> AxisWindows:
    start = np.ascontiguousarray(start, dtype=np.int64)
    count = np.ascontiguousarray(count, dtype=np.int64)
    padded_count = np.ascontiguousarray(padded_count, dtype=np.float64)
    # Inverse map: list every (window, tap) pair, then group the pairs by input position.
    windows = np.repeat(np.arange(start.shape[0], dtype=np.int64), count)
    first = np.repeat(start, count)
    offsets = np.arange(windows.shape[0], dtype=np.int64) - np.repeat(np.cumsum(count) - count,
                                                                       count)
    positions = first + offsets * step
    order = np.argsort(positions, kind="stable")  # stable: windows stay in increasing order
    inv_win = windows[order]
    inv_ptr = np.zeros(length + 1, dtype=np.int64)
    np.cumsum(np.bincount(positions, minlength=length), out=inv_ptr[1:])
    _freeze(start, count, padded_count, inv_win, inv_ptr)
    return AxisWindows(length, start, count, int(step), padded_count, inv_ptr, inv_win)


def sliding_output_length(length: int, kernel: int, stride: int, pad_before: int,
                          pad_after: int, dilation: int, ceil_mode: bool) -> int:
    """Output length of a sliding window (PyTorch's rule, including ``ceil_mode``).

    Returns a value < 1 when the (dilated) kernel does not fit the padded input.
    """
    span = (kernel - 1) * dilation + 1
    room = length + pad_before + pad_after - span
    if room < 0:
        return 0
    if ceil_mode:
        out = -(-room // stride) + 1
        # The last window must start inside the input or the left padding.
        if (out - 1) * stride >= length + pad_before:
            out -= 1
    else:
        out = room // stride + 1
    return int(out)


def same_padding(length: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's "same" padding: output ``ceil(length / stride)``, odd pad at the end."""
    out = -(-length // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - length, 0)
    return total // 2, total - total // 2


@lru_cache(maxsize=512)
def sliding_axis(length: int, kernel: int, stride: int, pad_before: int, pad_after: int,
                 dilation: int, ceil_mode: bool) -> AxisWindows:
    """Windows of a sliding pooler along one axis.

    Raises
    ------
    ValueError
        If the kernel does not fit the padded input, or a window holds no real input element.
    """
    out = sliding_output_length(length, kernel, stride, pad_before, pad_after, dilation,
                                ceil_mode)
    if out < 1:
        span = (kernel - 1) * dilation + 1
        raise ValueError(
            f"kernel_size {kernel} (dilated span {span}) is larger than the padded input "
            f"(length {length} + padding {pad_before}+{pad_after})"
        )
    origin = np.arange(out, dtype=np.int64) * stride - pad_before  # first tap, may be < 0
    # First tap j with origin + j*d >= 0, and one past the last tap with origin + j*d < length.
    j_lo = np.clip(_ceil_div(-origin, dilation), 0, kernel)
    j_hi = np.clip(_ceil_div(length - origin, dilation), 0, kernel)
    count = np.maximum(j_hi - j_lo, 0)
    if np.any(count == 0):
        o = int(np.flatnonzero(count == 0)[0])
        raise ValueError(
            f"padding ({pad_before}, {pad_after}) is too large for kernel_size {kernel} with "
            f"dilation {dilation}: output window {o} holds no input element"
        )
    start = origin + j_lo * dilation
    # Taps inside the padded input [-pad_before, length + pad_after).
    p_hi = np.clip(_ceil_div(length + pad_after - origin, dilation), 0, kernel)
    padded = p_hi.astype(np.float64)  # origin >= -pad_before always, so p_lo == 0
    return _build(length, start, count, dilation, padded)


@lru_cache(maxsize=512)
def adaptive_axis(length: int, out: int) -> AxisWindows:
    """PyTorch's adaptive bins: ``floor(o*L/O)`` to ``ceil((o+1)*L/O)``."""
    o = np.arange(out, dtype=np.int64)
    start = (o * length) // out
    end = -((-(o + 1) * length) // out)
    count = end - start
    return _build(length, start, count, 1, count.astype(np.float64))


@lru_cache(maxsize=512)
def global_axis(length: int) -> AxisWindows:
    """A single window covering the whole axis."""
    one = np.array([length], dtype=np.int64)
    return _build(length, np.zeros(1, np.int64), one, 1, one.astype(np.float64))


def explicit_axis(length: int, start: np.ndarray, count: np.ndarray, step: int = 1,
                  padded_count: np.ndarray | None = None) -> AxisWindows:
    """Windows given directly (for window rules such as fractional pooling).

    Raises
    ------
    ValueError
        If a window is empty or reads outside ``[0, length)``.
    """
    start = np.asarray(start, dtype=np.int64)
    count = np.asarray(count, dtype=np.int64)
    if start.shape != count.shape or start.ndim != 1:
        raise ValueError("start and count must be 1-D arrays of the same length")
    if np.any(count < 1) or np.any(start < 0) or np.any(start + (count - 1) * step >= length):
        raise ValueError(f"windows must be non-empty and inside an axis of length {length}")
    if padded_count is None:
        padded_count = count.astype(np.float64)
    return _build(length, start, count, step, padded_count)


SINGLETON = global_axis(1)
"""The windows of a size-1 axis, used to lift 1-D and 2-D problems to the 3-D kernels."""
