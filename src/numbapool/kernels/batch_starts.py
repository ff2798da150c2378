"""One batch's window tables for a channels-last masked kernel whose per-plane window starts
its own threads compute (:func:`numbapool.kernels.cpu.with_positions_fill`).

The masked kernels (:func:`numbapool.kernels.templates._cl_forward_masked`) read the window
starts of a batch's channels by output position: along the first two spatial axes as
``(out, channels)`` tables, along the last as each position's smallest start and the
channels' offsets from it.  A redrawn call used to write those tables for every batch before
the kernel read them back (for fractional max pooling of (32, 4096, 128) to 2048 outputs,
100 MB of starts, offsets and smallest starts, against a 67 MB input).  Here a kernel thread
asks the window rule for one batch's starts at a time, by position (the rule's
``positions_address``), and makes that batch's tables of the first two axes in its own rows
of the scratch (:func:`scratch`), in cache; along the last axis it reads the rule's starts
as they are, with each position's smallest and largest start over the channels: made by the
fill when the batch has several output rows, which all read them, else by the kernel as it
reads the position (:func:`numbapool.kernels.templates._position_offsets`).

The kernel calls :func:`fill_batch` through its address, a C callback compiled once for
every kernel: linked into each kernel, the fill's code was optimised again with it, which
cost a kernel's first call 0.4 s of LLVM's time (LLVM passes and machine code 0.76 -> 1.17
s for the 3-D kernel ``forward_masked_deep3_rows3_cols3_planes``).

The kernel's ``pf`` argument (int64; :data:`PF_SIZE` values): the rule's callback address
and slots; per kernel axis the offset of its starts in the callback's output (int32, axis
after axis, ``(out, channels)`` each), or -1 for an axis whose windows every plane shares
(its rows of the scratch hold its starts already); per axis the last start inside it; per
axis a flag (:data:`FLAGS`) set when a batch's starts leave it (the kernel then stops: its
output is not valid); then :func:`fill_batch`'s address, the channels, the three output
lengths, the callback's starts per batch, the scratch's rows (parts) and the addresses of
the scratch: the callback's output, the tables of the first two axes and the last axis's
smallest and largest starts; the rule's batch that is the kernel's first
(:data:`FIRST_BATCH`); and whether the kernel makes those extremes itself
(:data:`KERNEL_EXTREMES`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from .launch import _call_positions, address, callback, contiguous

__all__ = ["FILL", "FIRST_BATCH", "FLAGS", "KERNEL_EXTREMES", "LAST_STARTS", "PARTS",
           "PF_SIZE", "fill_batch", "scratch"]

LAST_STARTS = slice(5, 8)
"""The last start inside each kernel axis, in ``pf`` (see the module)."""
FLAGS = slice(8, 11)
"""The flags of ``pf`` (see the module), one per kernel axis."""
FILL = 11
"""Where ``pf`` holds :func:`fill_batch`'s address."""
_SIZES = 12  # channels, three output lengths, starts per batch, parts
PARTS = _SIZES + 5
"""Where ``pf`` holds the scratch's rows (parts)."""
_ADDRESSES = 18  # the callback's output (dt2), st0, st1, lo2
FIRST_BATCH = 22
"""Where ``pf`` holds the rule's batch that is the kernel's batch 0 (0 but for a kernel run
on a chunk of the batches, :class:`numbapool.kernels.cpu.ChunkedViaChannelsLast`, which sets
it back after a run, or on a tile of planes, :mod:`numbapool.kernels.masked_tiles`: a part's
own ``pf``, the tile's number, whose ``width`` planes are the batch's "channels")."""
KERNEL_EXTREMES = 23
"""Where ``pf`` holds 1 if the kernel makes each position's smallest and largest start
along the last axis itself, as it reads the position (the kernels for one row of windows,
and the kernel for any windows, their fallback, on batches of one output row: 1-D pooling),
else 0: the fill makes them (see :func:`scratch`)."""
PF_SIZE = 24


@numba.njit(cache=True, nogil=True)
def _starts_by_channel(starts, last, into):
    """``into`` (int64) from ``starts`` (int32, the same length); whether they are all in
    ``[0, last]``."""
    smallest, largest = 0, last
    for i in range(starts.shape[0]):
        v = starts[i]
        into[i] = v
        smallest = min(smallest, v)
        largest = max(largest, v)
    return smallest >= 0 and largest <= last


@numba.njit(cache=True, nogil=True)
def _smallest_largest(starts, last, into):
    """Along the last axis, from ``starts`` (``(out, channels)`` int32): each position's
    smallest and largest start over the channels into ``into`` (``(2, out)`` int32).
    Whether the starts are all in ``[0, last]``."""
    inside = True  # (the loops vectorise)
    for o in range(starts.shape[0]):
        mn = starts[o, 0]
        mx = mn
        for c in range(starts.shape[1]):  # (from 0 again: whole vectors, no remainder)
            mn = min(mn, starts[o, c])
            mx = max(mx, starts[o, c])
        inside &= (mn >= 0) & (mx <= last)
        into[0, o] = mn
        into[1, o] = mx
    return inside


def _fill_batch(slots, n, part):
    """See :func:`fill_batch`."""
    pf = contiguous(address(slots), (PF_SIZE,), np.int64)
    channels, o0, o1, o2, per_batch = (pf[_SIZES], pf[_SIZES + 1], pf[_SIZES + 2],
                                       pf[_SIZES + 3], pf[_SIZES + 4])
    at = pf[_ADDRESSES] + 4 * part * per_batch
    if _call_positions(pf[0], pf[1], (pf[FIRST_BATCH] + n) * channels, channels, at) != 1:
        return 0
    fs = contiguous(at, (per_batch,), np.int32)
    for axis in range(2):
        out = o0 if axis == 0 else o1
        first = pf[2 + axis]
        if first >= 0:
            into = contiguous(pf[_ADDRESSES + 1 + axis] + 8 * part * out * channels,
                              (out * channels,), np.int64)
            if not _starts_by_channel(fs[first:first + out * channels], pf[5 + axis], into):
                pf[8 + axis] = 1
                return 2
    if pf[KERNEL_EXTREMES] == 0:  # (each position read for every output row: made once)
        into = contiguous(pf[_ADDRESSES + 3] + 8 * part * o2, (2, o2), np.int32)
        if not _smallest_largest(contiguous(at + 4 * pf[4], (o2, channels), np.int32),
                                 pf[7], into):
            pf[10] = 1
            return 2
    return 1


def fill_batch() -> int:
    """The address of the C callback (:data:`~numbapool.kernels.launch.SIGNATURE`) that
    writes batch ``n``'s window tables (see the module) in row ``part`` of the scratch, its
    ``slots`` the kernel's ``pf``: the rule's starts (int32), along the first two axes the
    starts by channel (int64), and, unless the kernel makes them (:data:`KERNEL_EXTREMES`),
    along the last each position's smallest and largest start over the channels (int32),
    checked.  It returns 1;
    0 if the rule's callback raised; 2 with the axis's flag set if a start left an axis.
    (Compiled, or loaded from Numba's cache, on first use: :func:`callback`.)"""
    return callback(_fill_batch)


def scratch(head: np.ndarray, outs: Sequence[int], channels: int, parts: int,
            shared: Sequence[np.ndarray], kernel_extremes: bool = False
            ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The kernel's ``pf`` (``head``, its first 11 values, then the rest: see the module)
    and the tables it reads, with rows for ``parts`` parts: ``st0``, ``st1`` (``(parts,
    out, channels)`` int64), ``lo2`` (``(parts, 2, out)`` int32: along the last axis each
    position's smallest and largest start) and the callback's output (``(parts, starts per
    batch / channels, channels)`` int32; the kernel reads the last axis's from row
    ``head[4] / channels``).
    The rows of an axis whose windows every plane shares (offset -1 in ``head``) hold its
    starts, from its table of ``shared`` (``(batch, out, channels)``, the first two
    axes').  ``kernel_extremes``: the kernel makes the last axis's extremes itself
    (:data:`KERNEL_EXTREMES`)."""
    o0, o1, o2 = outs
    per_batch = max((int(head[2 + a]) + outs[a] * channels for a in range(3)
                     if head[2 + a] >= 0), default=0)
    tables = (np.empty((parts, o0, channels), dtype=np.int64),
              np.empty((parts, o1, channels), dtype=np.int64),
              np.empty((parts, 2, o2), dtype=np.int32),
              np.empty((parts, per_batch // channels, channels), dtype=np.int32))
    for a in range(2):
        if head[2 + a] < 0:
            tables[a][:] = shared[a][0]
    pf = np.array([*head, fill_batch(), channels, *outs, per_batch, parts,
                   tables[3].ctypes.data, *(t.ctypes.data for t in tables[:3]), 0,
                   int(kernel_extremes)], dtype=np.int64)
    return pf, tables
