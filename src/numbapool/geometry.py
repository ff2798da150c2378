"""Per-axis window tables: which input positions feed each output position.

Every window rule (sliding, adaptive, global, and the ones plugins add) reduces to the same
description per spatial axis, an :class:`AxisWindows`.  Window ``o`` reads the *real* (in-input)
positions ``start[o] + j * step`` for ``j in range(count[o])``; padding never appears in a
kernel's loops, it only changes ``divisor[o]`` (the number of taps an average divides by).

These tables are computed once per call in plain NumPy; kernels only index into them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numba
import numpy as np

from . import buffers

__all__ = [
    "AxisWindows",
    "sliding_axis",
    "adaptive_axis",
    "global_axis",
    "explicit_axis",
    "sliding_output_length",
    "same_padding",
    "SINGLETON",
    "distinct",
]


@dataclass(frozen=True, eq=False)
class AxisWindows:
    """The windows along one spatial axis.

    Tables have a leading *plane* axis of size 1 (every ``(n, c)`` plane shares the windows) or
    ``N * C`` (one set of windows per plane, row-major over ``(n, c)``, as fractional pooling
    with per-plane random samples needs).

    Attributes
    ----------
    length : int
        Input length along the axis.
    start : ndarray of int64, shape (planes, out)
        First real input position of each window.
    count : ndarray of int64, shape (planes, out)
        Number of real input positions in each window (always >= 1).
    first_tap : ndarray of int64, shape (planes, out)
        Index within the kernel of the first real tap (taps hidden in the padding come first).
    step : int
        Distance between consecutive taps (the dilation).
    extent : int
        Number of taps of a full kernel along this axis; tap numbers run over
        ``range(extent)`` (reductions with per-tap weights use them).
    padded_count : ndarray of float64, shape (planes, out)
        Number of taps inside the padded input (real or padding); what an average divides by
        when padding is counted.  ``count``, ``first_tap`` and ``padded_count`` may be
        read-only broadcast views; :meth:`divisor` is always contiguous.
    inv_ptr : ndarray of int64, shape (planes, length + 1)
    inv_win : ndarray of int64
        The inverse map, CSR style: input position ``i`` of plane ``p`` is read by the windows
        ``inv_win[inv_ptr[p, i]:inv_ptr[p, i + 1]]``, in increasing order.  Backward kernels
        use it to gather gradients without write conflicts.  Built on first use (a forward
        pass does not need it; for per-plane windows it costs more than the pooling).
    table : ndarray of int64, shape (planes, out, 3)
        ``start``, ``count`` and ``first_tap`` side by side, as kernels receive them.
    """

    length: int
    start: np.ndarray
    count: np.ndarray
    first_tap: np.ndarray
    step: int
    extent: int
    padded_count: np.ndarray
    table: np.ndarray

    @property
    def out(self) -> int:
        return int(self.start.shape[1])

    @property
    def planes(self) -> int:
        return int(self.start.shape[0])

    @cached_property
    def interior(self) -> np.ndarray:
        """int64 ``[lo, hi, stride, pad]``: windows ``lo <= o < hi`` are full kernels starting
        at ``o * stride - pad`` (shared tables only; ``lo == hi`` when there are none).
        Kernels run these in plain loops over ``o``."""
        res = np.zeros(4, dtype=np.int64)
        if self.planes != 1:
            return res
        full = np.flatnonzero((self.first_tap[0] == 0) & (self.count[0] == self.extent))
        if full.size == 0:
            return res
        lo, hi = int(full[0]), int(full[-1]) + 1
        start = self.start[0, lo:hi]
        stride = int(start[1] - start[0]) if hi - lo > 1 else 1
        pad = lo * stride - int(start[0])
        o = np.arange(lo, hi)
        if hi - lo != full.size or stride < 1 or np.any(start != o * stride - pad):
            return res
        res[:] = (lo, hi, stride, pad)
        res.setflags(write=False)
        return res

    @cached_property
    def full(self) -> bool:
        """Whether every window (of every plane) is a whole kernel: ``extent`` real taps."""
        return bool(np.all(self.count == self.extent) and np.all(self.first_tap == 0))

    @cached_property
    def _inverse(self) -> tuple[np.ndarray, np.ndarray]:
        # List every (plane, window, tap), then group them by (plane, position).
        planes, out = self.start.shape
        flat_count = self.count.ravel()
        pairs = np.repeat(np.arange(planes * out, dtype=np.int64), flat_count)
        offsets = np.arange(pairs.shape[0], dtype=np.int64) - np.repeat(
            np.cumsum(flat_count) - flat_count, flat_count)
        positions = self.start.ravel()[pairs] + offsets * self.step
        key = (pairs // out) * self.length + positions
        order = np.argsort(key, kind="stable")  # stable: windows stay in increasing order
        inv_win = np.ascontiguousarray(pairs[order] % out)
        bounds = np.zeros(planes * self.length + 1, dtype=np.int64)
        np.cumsum(np.bincount(key, minlength=planes * self.length), out=bounds[1:])
        rows = np.arange(planes, dtype=np.int64)[:, None] * self.length
        inv_ptr = np.ascontiguousarray(bounds[rows + np.arange(self.length + 1,
                                                               dtype=np.int64)])
        _freeze(inv_ptr, inv_win)
        return inv_ptr, inv_win

    @property
    def inv_ptr(self) -> np.ndarray:
        return self._inverse[0]

    @property
    def inv_win(self) -> np.ndarray:
        return self._inverse[1]

    @cached_property
    def exact_cover(self) -> bool:
        """Whether every input position is read by exactly one window (in every plane)."""
        return bool(np.all(np.diff(self.inv_ptr, axis=1) == 1))

    def _channel_starts(self, batch: int, channels: int) -> dict:
        """The starts laid out by channel, made in one pass and kept for the last
        ``(batch, channels)``: ``table``, ``lo`` (the smallest start over the channels of
        each output position), ``spread``, and ``delta`` once asked for."""
        key = (batch, channels)
        kept = self.__dict__.get("_by_channel")
        if kept is not None and kept[0] == key:
            return kept[1]
        if self.planes == 1:
            table = np.empty((batch, self.out, channels), dtype=np.int64)
            table[...] = self.start[0][None, :, None]
            lo = np.ascontiguousarray(np.broadcast_to(self.start[0], (batch, self.out)))
            spread = 0
        else:
            table, lo, spread = _by_channel(self.start, batch, channels)
        _freeze(table, lo)
        parts = {"table": table, "lo": lo, "spread": spread}
        self.__dict__["_by_channel"] = (key, parts)
        return parts

    def starts_by_channel(self, batch: int, channels: int) -> tuple[np.ndarray, int]:
        """The window starts as a C-contiguous ``(batch, out, channels)`` int64 table (for
        channels-last kernels, whose inner loops run over channels), and the largest range
        of the starts over the channels of one output position (0 for shared windows).
        The last result is kept."""
        parts = self._channel_starts(batch, channels)
        return parts["table"], parts["spread"]

    def offsets_by_channel(self, batch: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """The starts of :meth:`starts_by_channel` split in two: the smallest start over the
        channels of each output position, ``(batch, out)`` int64, and each channel's start
        after it, ``(batch, out, channels)`` int32 (from 0 to the spread: a channels-last
        kernel picks among that few candidates with selects, lane by lane).  The last result
        is kept."""
        parts = self._channel_starts(batch, channels)
        if "delta" not in parts:
            parts["delta"] = _offsets(parts["table"], parts["lo"])
            _freeze(parts["delta"])
        return parts["lo"], parts["delta"]

    def redrawable(self) -> AxisWindows:
        """A private copy of these windows whose starts :meth:`restart` overwrites in place
        (:mod:`numbapool.redraw`: repeated calls of a rule that draws its windows).  Only
        per-plane whole windows (``full``) whose padded counts are their counts."""
        if self.planes == 1 or not self.full or bool(np.any(distinct(self.padded_count)
                                                             != self.extent)):
            raise ValueError("only per-plane whole windows without padding can be redrawn")
        # (into a cached buffer: the table of the call that keeps the pass is often free
        # by now, and a fresh array's page faults cost more than the copy)
        table = buffers.empty(self.table.shape, np.int64)
        np.copyto(table, self.table)
        copy = AxisWindows(self.length, table[..., 0], table[..., 1], table[..., 2],
                           self.step, self.extent, self.padded_count, table)
        copy.__dict__["full"] = True  # (as checked: not recomputed from a large table)
        return copy

    def restart(self, start: np.ndarray, tables: frozenset[str]) -> bool:
        """Move the windows of a copy made by :meth:`redrawable` to ``start`` (int64,
        ``(planes, out)``, C-contiguous or, for channels-last kernels, F-contiguous: the
        transpose of an ``(out, planes)`` array, whose channels are read in a row), in
        place: of the tables named in ``tables``, those made so far (``table``, and from
        :meth:`starts_by_channel` and :meth:`offsets_by_channel`: ``by_channel``, ``lo``,
        ``delta``).  Kernels bound to those arrays then read the new windows; the others
        are left stale (name only what nothing else reads) and the inverse map is
        forgotten.  Returns False, with the tables partly written, if a window would leave
        the axis."""
        self._forget_for(start, either_order=True)
        kept = self.__dict__.get("_by_channel")
        parts = kept[1] if kept is not None else {}
        arrays = self._writeable_tables(tables)
        channels = kept[0][1] if kept is not None else 1
        last = self._last_start()
        # (F-contiguous starts are laid out by output position: the channel pass reads
        # channels in a row)
        by_position = not start.flags.c_contiguous
        inside, spread = _restart(start.T if by_position else start, by_position, last,
                                  channels, *arrays)
        if arrays[1].size + arrays[2].size + arrays[3].size:  # (a channel pass ran)
            parts["spread"] = spread
        return bool(inside)

    def table_for_restart(self, start: np.ndarray) -> tuple[np.ndarray, int]:
        """For a caller that moves the windows of a copy made by :meth:`redrawable` to
        ``start`` (int64, C-contiguous ``(planes, out)``) itself: the plane-major table, whose
        ``[..., 0]`` it writes ``start`` into, and the largest start inside the axis, which
        it checks them against (:mod:`numbapool.kernels.restart` does both on a kernel's own
        threads).  What :meth:`restart` forgets is forgotten here; the per-channel tables
        are left stale."""
        self._forget_for(start, either_order=False)
        return self._writeable_tables(_PLANE_MAJOR)[0], self._last_start()

    def channel_tables_for_restart(self, start: np.ndarray, tables: frozenset[str]
                                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """:meth:`table_for_restart` for the per-channel tables named in ``tables`` (of
        ``by_channel``, ``lo``, ``delta``; see :meth:`restart`), ``start`` F-contiguous (the
        transpose of an ``(out, planes)`` array): those tables (empty stand-ins for those
        not named), which the caller fills from ``start.T`` by
        :func:`_channel_pass_by_position`, and the largest start.  Their ``spread`` is left
        as it was."""
        self._forget_for(start, either_order=True)
        if start.flags.c_contiguous and start.shape[1] > 1:
            raise ValueError("start must be F-contiguous")
        return (*self._writeable_tables(tables - _PLANE_MAJOR)[1:], self._last_start())

    def _writeable_tables(self, tables: frozenset[str]) -> tuple[np.ndarray, ...]:
        """``table``, ``by_channel``, ``lo`` and ``delta`` (see :meth:`restart`), writeable,
        or for those not named in ``tables`` or not made, empty stand-ins."""
        kept = self.__dict__.get("_by_channel")
        parts = kept[1] if kept is not None else {}
        arrays = (self.table if "table" in tables else _NO_TABLE,
                  parts.get("table", _NO_TABLE) if "by_channel" in tables else _NO_TABLE,
                  parts.get("lo", _NO_LO) if "lo" in tables else _NO_LO,
                  parts.get("delta", _NO_DELTA) if "delta" in tables else _NO_DELTA)
        for a in arrays:
            if not a.flags.writeable:
                a.setflags(write=True)
        return arrays

    def _last_start(self) -> int:
        """The largest start of a whole window inside the axis."""
        return self.length - 1 - (self.extent - 1) * self.step

    def _forget_for(self, start: np.ndarray, either_order: bool) -> None:
        """Check new starts' array and forget what the old windows made."""
        if start.shape != self.start.shape or start.dtype != np.int64 or not (
                start.flags.c_contiguous or (either_order and start.flags.f_contiguous)):
            order = "C- or F-contiguous" if either_order else "C-contiguous"
            raise ValueError(f"start must be a {order} int64 array of shape "
                             f"{self.start.shape}")
        for name in ("_inverse", "exact_cover"):
            self.__dict__.pop(name, None)

    def tables_in(self, args: tuple) -> frozenset[str]:
        """The names of :meth:`restart`'s tables of this axis that are among ``args`` (a
        kernel's arguments)."""
        kept = self.__dict__.get("_by_channel")
        parts = kept[1] if kept is not None else {}
        named = {"table": self.table, "by_channel": parts.get("table"), "lo": parts.get("lo"),
                 "delta": parts.get("delta")}
        return frozenset(k for k, v in named.items() if any(v is a for a in args))

    def divisor(self, count_include_pad: bool, dtype: type = np.float64) -> np.ndarray:
        """Per-window divisor along this axis, as a read-only C-contiguous array, shape
        (planes, out); float64, or float32 (exact below 2**24) for float32 reductions.
        Each kind is made once."""
        key = (bool(count_include_pad), np.dtype(dtype) == np.float32)
        kept = self.__dict__.setdefault("_divisors", {})
        out = kept.get(key)
        if out is None:
            # (padded_count may be a broadcast view of one value: explicit_axis with one
            # count; the float32 divisor is the float64 one rounded)
            out = np.ascontiguousarray(self.padded_count if key[0] else self.count,
                                       dtype=np.float64)
            if key[1]:
                out = out.astype(np.float32)
            out.setflags(write=False)
            kept[key] = out
        return out


# Per-plane tables are made on every call (fractional pooling): one compiled pass each
# instead of several NumPy passes (measured 0.13 -> 0.01 ms for (8 * 64, 39) starts).
@numba.njit(cache=True, nogil=True)
def _by_channel(start, batch, channels):  # (planes, out) -> (batch, out, channels), lo, spread
    table = np.empty((batch, start.shape[1], channels), dtype=np.int64)
    lo = np.zeros((batch, start.shape[1]), dtype=np.int64)
    spread = _channel_pass(start, channels, table, lo, np.empty((0, 0, 0), dtype=np.int32))[0]
    return table, lo, spread


@numba.njit(cache=True, nogil=True)
def _channel_pass(start, channels, table, lo, delta):
    """From per-plane starts ``(batch * channels, out)``, those of each ``(n, o)`` by
    channel into ``table`` ``(batch, out, channels)``, their smallest into ``lo`` ``(batch,
    out)`` and each minus the smallest into ``delta`` (int32, like ``table``); each output
    left out when empty.  Returns the largest range of starts over the channels, and the
    smallest and largest start (0 and -1 when there are none).  (Rows of ``start`` are read
    whole: reading down the channels was 1.5-2x slower.)"""
    spread = 0
    smallest, largest = 0, -1
    out = start.shape[1]
    if channels == 0 or start.size == 0:
        return spread, smallest, largest
    smallest, largest = start[0, 0], start[0, 0]
    mn = np.empty(out, dtype=np.int64)
    mx = np.empty(out, dtype=np.int64)
    for n in range(start.shape[0] // channels):
        base = n * channels
        mn[:] = start[base]
        mx[:] = start[base]
        for c in range(1, channels):
            row = start[base + c]
            for o in range(out):
                mn[o] = min(mn[o], row[o])
                mx[o] = max(mx[o], row[o])
        for o in range(out):
            spread = max(spread, mx[o] - mn[o])
            smallest = min(smallest, mn[o])
            largest = max(largest, mx[o])
        if lo.shape[0] > 0:
            lo[n] = mn
        if table.shape[0] > 0:
            for c in range(channels):
                row = start[base + c]
                for o in range(out):
                    table[n, o, c] = row[o]
        if delta.shape[0] > 0:
            for c in range(channels):
                row = start[base + c]
                for o in range(out):
                    delta[n, o, c] = row[o] - mn[o]
    return spread, smallest, largest


@numba.njit(cache=True, nogil=True)
def _offsets(table, lo):  # (batch, out, channels) starts minus lo (batch, out), as int32
    delta = np.empty(table.shape, dtype=np.int32)
    for n in range(table.shape[0]):
        for o in range(table.shape[1]):
            for c in range(table.shape[2]):
                delta[n, o, c] = table[n, o, c] - lo[n, o]
    return delta


@numba.njit(cache=True, nogil=True)
def _restart(start, by_position, last, channels, table, by, lo, delta):
    """See :meth:`AxisWindows.restart`; ``start`` C-contiguous: ``(planes, out)``, or
    ``(out, planes)`` if ``by_position``.  Returns whether every start is in ``[0, last]``,
    and the spread of the channel pass (0 when none ran)."""
    spread, smallest, largest = 0, 0, -1
    passed = by.shape[0] + lo.shape[0] + delta.shape[0] > 0  # (which finds the extremes too)
    if passed and by_position:
        spread, smallest, largest = _channel_pass_by_position(start, channels, by, lo, delta)
    elif passed:
        spread, smallest, largest = _channel_pass(start, channels, by, lo, delta)
    elif start.size > 0:
        smallest, largest = start[0, 0], start[0, 0]
    # (passes over the flat starts, unsigned indices: no wraparound of negative ones)
    flat = start.reshape(start.size)
    if table.shape[0] > 0 and by_position:  # (the plane-major table, transposing)
        out, planes = start.shape
        for o in range(out):
            for p in range(planes):
                v = start[o, p]
                table[p, o, 0] = v
                smallest = min(smallest, v)
                largest = max(largest, v)
    elif table.shape[0] > 0:
        mn, mx = copy_planes(flat, table.reshape(table.size), 0, start.shape[0], start.shape[1])
        if start.size > 0:
            smallest, largest = min(smallest, mn), max(largest, mx)
    elif not passed:
        for i in range(numba.uint64(start.size)):
            smallest = min(smallest, flat[i])
            largest = max(largest, flat[i])
    inside = start.size == 0 or (smallest >= 0 and largest <= last)
    return inside, spread


@numba.njit(cache=True, nogil=True)
def copy_planes(start, table, first, end, out):
    """``table[p, :, 0] = start[p]`` for planes ``first`` to ``end - 1`` of flat starts
    ``(planes, out)`` and a flat plane-major table ``(planes, out, 3)``: the smallest and
    largest start copied (0 and -1 for none).  (:func:`_restart`, and each kernel thread of
    :mod:`numbapool.kernels.restart` for its planes.)"""
    # (unsigned flat indices: no wraparound of negative ones)
    lo, hi = numba.uint64(first * out), numba.uint64(end * out)
    if lo == hi:
        return 0, -1
    smallest = start[lo]
    largest = smallest
    for i in range(lo, hi):
        v = start[i]
        table[numba.uint64(3) * i] = v
        smallest = min(smallest, v)
        largest = max(largest, v)
    return smallest, largest


@numba.njit(cache=True, nogil=True)
def _channel_pass_by_position(start_t, channels, table, lo, delta, first=0, end=-1):
    """:func:`_channel_pass` from the starts transposed, ``(out, batch * channels)``
    C-contiguous: each ``(n, o)``'s channels are a row's stretch, so every loop runs over
    channels in memory order (SIMD) instead of transposing; the same results.  Only batches
    ``first`` to ``end - 1`` (all if ``end`` < 0; :mod:`numbapool.kernels.restart` runs a
    range on each kernel thread)."""
    spread = 0
    smallest, largest = 0, -1
    out = start_t.shape[0]
    if end < 0:
        end = start_t.shape[1] // channels
    if channels == 0 or out == 0 or end <= first:
        return spread, smallest, largest
    smallest, largest = start_t[0, first * channels], start_t[0, first * channels]
    flat = start_t.reshape(start_t.size)
    lo_flat = lo.reshape(lo.size)
    table_flat = table.reshape(table.size)
    delta_flat = delta.reshape(delta.size)
    planes = numba.uint64(start_t.shape[1])
    width = numba.uint64(channels)
    for n in range(numba.uint64(first), numba.uint64(end)):
        for o in range(numba.uint64(out)):
            row = o * planes + n * width  # (unsigned: no wraparound of negative indices)
            mn = flat[row]
            mx = mn
            for c in range(numba.uint64(1), width):
                mn = min(mn, flat[row + c])
                mx = max(mx, flat[row + c])
            spread = max(spread, mx - mn)
            smallest = min(smallest, mn)
            largest = max(largest, mx)
            to = (n * numba.uint64(out) + o) * width
            if lo.shape[0] > 0:
                lo_flat[n * numba.uint64(out) + o] = mn
            if table.shape[0] > 0:
                for c in range(width):
                    table_flat[to + c] = flat[row + c]
            if delta.shape[0] > 0:
                for c in range(width):
                    delta_flat[to + c] = flat[row + c] - mn
    return spread, smallest, largest


@numba.njit(cache=True, nogil=True)
def _uniform_table(start, k, step, length, table):  # fills the (planes, out, 3) table;
    ok = k >= 1                                     # -> inside, one plane's
    same = True  # (every plane's starts are the first plane's)
    last = length - 1 - (k - 1) * step
    for p in range(start.shape[0]):
        for o in range(start.shape[1]):
            s = start[p, o]
            ok &= (s >= 0) & (s <= last)
            same &= s == start[0, o]
            table[p, o, 0] = s
            table[p, o, 1] = k
            table[p, o, 2] = 0
    return ok, same


_PLANE_MAJOR = frozenset({"table"})
_NO_TABLE = np.empty((0, 0, 0), dtype=np.int64)  # (restart's stand-ins for tables not made)
_NO_LO = np.empty((0, 0), dtype=np.int64)
_NO_DELTA = np.empty((0, 0, 0), dtype=np.int32)


def distinct(a: np.ndarray) -> np.ndarray:
    """``a`` without the repeats of a view that repeats its values (strides 0: a count
    given as one value), for checks of every value: those of an axis of stride 0 once."""
    return a[tuple(slice(None, 1 if stride == 0 else None) for stride in a.strides)]


def _ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    return -((-a) // b)


def _freeze(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.setflags(write=False)


def _build(length: int, start: np.ndarray, count: np.ndarray, step: int,
           padded_count: np.ndarray, first_tap: np.ndarray | None = None,
           extent: int | None = None) -> AxisWindows:
    start = np.atleast_2d(np.asarray(start, dtype=np.int64))
    count = np.atleast_2d(np.asarray(count, dtype=np.int64))
    # (count, first_tap and padded_count may be read-only broadcast views of one value: the
    # kernels read the table, and divisor() makes a contiguous copy when asked)
    padded_count = np.atleast_2d(np.asarray(padded_count, dtype=np.float64))
    if first_tap is None:
        first_tap = np.broadcast_to(np.int64(0), start.shape)
    first_tap = np.atleast_2d(np.asarray(first_tap, dtype=np.int64))
    if extent is None:
        extent = int(count.max(initial=1))
    table = np.empty(start.shape + (3,), dtype=np.int64)  # (faster than np.stack)
    table[..., 0] = start
    table[..., 1] = count
    table[..., 2] = first_tap
    # Read-only views of arrays made here: start, count and first_tap are copied into the
    # table, and callers pass padded_count as a copy or a view of their own (never frozen).
    padded_count = padded_count.view()
    _freeze(padded_count, table)
    return AxisWindows(length, table[..., 0], table[..., 1], table[..., 2], int(step),
                       int(extent), padded_count, table)


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
    return _build(length, start, count, dilation, padded, first_tap=j_lo, extent=kernel)


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


def explicit_axis(length: int, start: np.ndarray, count: np.ndarray | int, step: int = 1,
                  padded_count: np.ndarray | None = None, extent: int | None = None
                  ) -> AxisWindows:
    """Windows given directly, for window rules such as fractional pooling.

    Parameters
    ----------
    length : int
        Input length along the axis.
    start : array_like of int, shape (out,) or (planes, out)
        First input position of each window; a 2-D table gives every ``(n, c)`` plane its own
        windows (``planes == N * C``, row-major).
    count : int or array_like of int, shape of ``start``
        Number of elements of each window; one int when they all have as many (cheaper to
        check and to build, which matters for per-plane tables made on every call).
    step : int
        Distance between the elements of a window.
    padded_count : array_like, optional
        Divisor of an average over each window (default: ``count``): finite, at least 1.
    extent : int, optional
        Number of taps of a full window (default: the largest count).

    Returns
    -------
    AxisWindows
        Per-plane tables whose planes all hold the same windows (``start``, ``count`` and
        ``padded_count``) give shared windows (``planes == 1``), which run the kernels of
        sliding windows and need no per-channel tables.  (PyTorch's rule of fractional
        pooling gives every plane the same windows when ``(length - kernel) / (out - 1)``
        is a whole number, as for ``output_ratio=0.5`` with ``kernel_size=2``, unless
        rounding in the input's floating type moves a window in a plane whose sample lies
        very close to 1.)

    Raises
    ------
    ValueError
        If a window is empty or reads outside ``[0, length)``, or a ``padded_count`` is
        below 1 or not finite.
    """
    if padded_count is not None:  # (a copy: the caller may change its array later)
        padded_count = np.array(padded_count, dtype=np.float64)
        if not np.all(np.isfinite(padded_count) & (padded_count >= 1.0)):
            raise ValueError("padded_count must be finite and at least 1 (a divisor of each "
                             "window)")
    start = np.asarray(start, dtype=np.int64)
    if start.ndim == 1:
        start = start[None]
    if start.ndim != 2:
        raise ValueError("start must be an array of shape (out,) or (planes, out)")
    if np.ndim(count) == 0:
        return _uniform_axis(length, start, int(count), step, padded_count, extent)
    count = np.atleast_2d(np.asarray(count, dtype=np.int64))
    if start.shape != count.shape:
        raise ValueError("start and count must be arrays of the same shape, (out,) or "
                         "(planes, out)")
    if np.any(count < 1) or np.any(start < 0) or np.any(start + (count - 1) * step >= length):
        raise ValueError(f"windows must be non-empty and inside an axis of length {length}")
    if padded_count is None:
        padded_count = count.astype(np.float64)
    padded_count = np.broadcast_to(padded_count, start.shape)
    if _one_plane(start, (start, count, padded_count)):
        start, count, padded_count = start[:1], count[:1], padded_count[:1]  # (shared)
    return _build(length, start, count, step, padded_count, extent=extent)


def _one_plane(start: np.ndarray, tables: Sequence[np.ndarray]) -> bool:
    """Whether per-plane windows with these ``start`` and per-plane ``tables`` are the same
    in every plane (and there are several planes and some windows): then they are shared."""
    return (len(start) > 1 and start.shape[1] > 0
            and all(bool(np.all(t == t[:1])) for t in tables))


def _constant(value: float | int, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A read-only array of ``shape`` holding one value (strides 0: no memory, and cheaper
    to make than ``np.broadcast_to``, which matters for tables made on every call)."""
    out = np.ndarray(shape, dtype=dtype, buffer=np.array(value, dtype=dtype),
                     strides=(0,) * len(shape))
    out.setflags(write=False)
    return out


def _uniform_axis(length: int, start: np.ndarray, k: int, step: int,
                  padded_count: np.ndarray | None, extent: int | None) -> AxisWindows:
    """:func:`explicit_axis` with one count ``k`` for every window: one table checked and
    written in one compiled pass, its columns the ``start``, ``count`` and ``first_tap``
    views (fractional pooling builds these for every plane on every call)."""
    # (from the buffer cache: per-plane tables are large and made on every call, and a fresh
    # array's page faults cost more than writing it: 1-D fractional pooling of (32, 128,
    # 4096), a 282 MB table, 127 against 17 ms a call)
    table = buffers.empty(start.shape + (3,), np.int64)
    inside, same = _uniform_table(start, k, int(step), int(length), table)
    if not inside:
        raise ValueError(f"windows must be non-empty and inside an axis of length {length}")
    if padded_count is not None:  # (checked and copied by explicit_axis)
        padded_count = np.broadcast_to(padded_count, start.shape)
    # (the starts were compared in the compiled pass)
    if same and _one_plane(start, () if padded_count is None else (padded_count,)):
        # (a copy: a view would keep the whole buffer)
        table, start = table[:1].copy(), start[:1]
        padded_count = None if padded_count is None else padded_count[:1]
    table.setflags(write=False)
    if padded_count is None:
        padded_count = _constant(float(k), start.shape, np.float64)
    axis = AxisWindows(int(length), table[..., 0], table[..., 1], table[..., 2], int(step),
                       k if extent is None else int(extent), padded_count, table)
    axis.__dict__["full"] = k == axis.extent  # (one count: all windows are whole, or none)
    return axis


SINGLETON = global_axis(1)
"""The windows of a size-1 axis, used to lift 1-D and 2-D problems to the 3-D kernels."""
