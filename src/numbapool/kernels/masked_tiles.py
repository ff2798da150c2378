"""Channels-first passes of per-plane windows on small planes, as the masked channels-last
kernel run on tiles of planes transposed in cache (:class:`TiledMaskedPass`).

Fractional pooling of small planes, channels first, runs the masked channels-last kernel
(:mod:`numbapool.kernels.batch_starts`): along the planes' rows of 7 the channels-first
kernels' loops hardly vectorise.  The pass here gives that kernel tiles of ``width``
consecutive planes as a batch of one sample of ``width`` channels, as
:class:`numbapool.kernels.tiles.TiledCall` does for windows every plane shares: the planes
of every sample and channel follow each other, and the window rule computes the starts of
any consecutive planes (its ``positions_address``), so tile ``t``'s are those of its batch
``t`` of ``width`` "channels" (``FIRST_BATCH``).  Each part (one a thread) has its own
tiles, scratch tables, task flags and ``pf``, and runs the kernel as part 0 of 1 on a tile
at a time (every task flagged where the kernel is the one for any windows, which runs the
flagged tasks; else its fallback runs the tasks it leaves): the tile's input, its starts and
its output stay in the core's cache, where the pass by chunks of batches between transposes
(:class:`numbapool.kernels.cpu.ChunkedViaChannelsLast`) moved each chunk through the
last-level cache three times and launched the threads three times a chunk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .. import buffers
from ..geometry import AxisWindows
from ..reduction import Reduction
from . import batch_starts, cpu
from .launch import _call_part, _threads, address, callback, contiguous, drive, kind, pack
from .tiles import words
from .transpose import VECTOR_BYTES

__all__ = ["TILE_BYTES", "TILE_WIDTHS", "TiledMaskedPass", "tile_width", "tiled_masked"]

TILE_BYTES = 64 << 10
"""The most bytes of input a tile holds (it stays in the core's second-level cache with its
output and the kernel's rows)."""

TILE_WIDTHS = (256, 128, 64, 32, 16)
"""The planes a tile may hold, widest first: a width that divides the planes (the rule
computes the starts of whole tiles only), of at least a vector's worth of elements, that
keeps the tile within :data:`TILE_BYTES` (:func:`tile_width`).  (And :func:`tiled_masked`
takes elements of 4 or 8 bytes and no argument read by plane.)"""

_HEAD = 10  # kernel, fallback, planes, width, x, out, elements a plane in and out, sizes
_PART = 6  # a part's template, pf, task flags, their number, input tile, output tile


def tile_width(planes: int, plane_bytes: int, itemsize: int, parts: int = 1) -> int | None:
    """The planes of a tile (:data:`TILE_WIDTHS`) for ``planes`` planes of ``plane_bytes``
    bytes, elements of ``itemsize`` bytes (at least a vector's worth of planes: the
    transposes move blocks of a vector's width): the widest that divides the planes and
    fits :data:`TILE_BYTES`, but the widest to give each of ``parts`` parts a tile where one
    does, else the narrowest (the most tiles); None if none fits."""
    lanes = VECTOR_BYTES // itemsize
    fits = [w for w in TILE_WIDTHS
            if w >= lanes and planes % w == 0 and w * plane_bytes <= TILE_BYTES]
    return next((w for w in fits if planes // w >= parts), fits[-1] if fits else None)


def _tiles(slots, part, parts):
    """The C callback of :class:`TiledMaskedPass`, part ``part`` of ``parts``: 1 (also when
    a tile's starts left an axis: its ``pf`` flags it, and the part stops), or 0 if a kernel
    run failed."""
    at = address(slots)
    h = contiguous(at, (_HEAD + _PART * parts,), np.int64)
    kernel, fallback, planes, width = h[0], h[1], h[2], h[3]
    p = _HEAD + _PART * part
    template, pf = h[p], contiguous(h[p + 1], (batch_starts.PF_SIZE,), np.int64)
    miss = contiguous(h[p + 2], (h[p + 3],), np.uint8)
    tiles = planes // width
    for t in range(tiles * part // parts, tiles * (part + 1) // parts):
        p0 = t * width
        words(h[4], h[8], planes * h[6], p0, h[6], width, h[p + 4], width, True)
        pf[batch_starts.FIRST_BATCH] = t
        # (the kernel for any windows, when it is the kernel, runs the tasks flagged: all)
        miss[:] = 0 if fallback != 0 else 1
        if _call_part(kernel, template, 0, 1) != 1:
            return 0
        for f in range(3):
            if pf[batch_starts.FLAGS.start + f] != 0:
                return 1
        if fallback != 0:
            missed = False
            for r in range(miss.shape[0]):
                missed |= miss[r] != 0
            if missed and _call_part(fallback, template, 0, 1) != 1:
                return 0
        words(h[5], h[9], planes * h[7], p0, h[7], width, h[p + 5], width, False)
    return 1


class TiledMaskedPass:
    """A channels-first forward pass of per-plane windows run as the masked channels-last
    kernel on tiles of ``width`` planes (see the module): ``run(x)`` for C-contiguous ``x``
    of ``shape`` (5-D, channels first) and ``in_dtype``.  ``plans``: the kernel's pass for
    a tile (a batch of one sample of ``width`` channels) of :func:`cpu.with_positions_fill`,
    with scratch for one part, for each thread.  ``pf``: an argument like the kernel's whose
    flags (:data:`~numbapool.kernels.batch_starts.FLAGS`) a run sets where a part's did,
    and whose parts (:data:`~numbapool.kernels.batch_starts.PARTS`) are the threads it has
    scratch for.  One run at a time (the parts' ``pf`` and tiles are its own)."""

    def __init__(self, plans: Sequence[cpu.ForwardPlan], shape: tuple[int, ...],
                 in_dtype: np.dtype, width: int) -> None:
        n, c, o = shape[0], shape[1], plans[0].shape
        self.out_shape = (n, c, *o[1:4])
        self.dtype, self.width = plans[0].dtype, width
        self._kernel = plans[0].kernel
        self._keep: list = [plans]  # (the arrays whose addresses the slots hold)
        self._pfs = [plan.args[-1] for plan in plans]
        head = [0, 0, n * c, width, 0, 0, math.prod(shape[2:]), math.prod(o[1:4]),
                np.dtype(in_dtype).itemsize, self.dtype.itemsize]
        for plan in plans:
            x_tile = _aligned((1, *shape[2:], width), in_dtype)
            out_tile = _aligned((1, *o[1:4], width), self.dtype)
            miss = np.zeros(plan.tasks, np.uint8)
            values = (x_tile, out_tile, miss, *plan.args)
            kinds = tuple(kind(v) for v in values)
            head[0] = plan.kernel.compiled(kinds).address
            head[1] = 0 if plan.fallback is None else plan.fallback.compiled(kinds).address
            template = pack(kinds, values)
            self._keep += [x_tile, out_tile, miss, template]
            head += [template.ctypes.data, plan.args[-1].ctypes.data, miss.ctypes.data,
                     miss.size, x_tile.ctypes.data, out_tile.ctypes.data]
        self._slots = np.array(head, dtype=np.int64)
        self.pf = np.zeros(batch_starts.PF_SIZE, np.int64)
        self.pf[batch_starts.PARTS] = len(plans)

    def run(self, x: np.ndarray, u: np.ndarray | None = None, before: object = None
            ) -> tuple[np.ndarray, None]:
        """``(out, None)`` for ``x`` (no ``u`` or ``before``: the masked kernels sample
        nothing, and compute their starts themselves)."""
        if u is not None or before is not None:
            raise ValueError("a tiled masked pass takes neither u nor before")
        out = buffers.empty(self.out_shape, self.dtype)
        for pf in self._pfs:
            pf[batch_starts.FLAGS] = 0
        self._slots[4], self._slots[5] = x.ctypes.data, out.ctypes.data
        parts = len(self._pfs)
        failed = drive(callback(_tiles), self._slots.ctypes.data, parts)
        self._slots[4] = self._slots[5] = 0
        if failed:
            self._kernel.failed()
        for pf in self._pfs:
            self.pf[batch_starts.FLAGS] |= pf[batch_starts.FLAGS]
        return out, None


def _aligned(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An empty C-contiguous array that starts on a cache line (the tiles' rows are whole
    vectors: unaligned, every store of the transposes would write two lines)."""
    dtype = np.dtype(dtype)
    store = np.empty(math.prod(shape) * dtype.itemsize + 64, np.uint8)
    skip = -store.ctypes.data % 64
    return store[skip:skip + math.prod(shape) * dtype.itemsize].view(dtype).reshape(shape)


def tiled_masked(plan: cpu.ForwardPlan, reduction: Reduction, axes: Sequence[AxisWindows],
                 fill: tuple[int, int], shape: tuple[int, ...], in_dtype: np.dtype
                 ) -> tuple[TiledMaskedPass, np.ndarray] | None:
    """``plan`` (a masked channels-last pass for the channels-last twin of ``shape``, 5-D
    channels first, whose starts ``fill`` computes: :func:`cpu.with_positions_fill`) as a
    :class:`TiledMaskedPass` for channels-first arrays of ``shape`` and ``in_dtype``, and its
    ``pf``; None where its arguments are read by plane (per-plane divisors), its elements
    are not of 4 or 8 bytes, or no tile width fits (:func:`tile_width`)."""
    in_dtype, out_dtype = np.dtype(in_dtype), np.dtype(plan.dtype)
    if (in_dtype.itemsize not in (4, 8) or out_dtype.itemsize not in (4, 8)
            or cpu.read_by_plane(plan.args[5:])):
        return None
    width = tile_width(shape[0] * shape[1], math.prod(shape[2:]) * in_dtype.itemsize,
                       min(in_dtype.itemsize, out_dtype.itemsize), _threads())
    if width is None:
        return None
    tile_shape = (1, *plan.shape[1:4], width)
    # (the tables of the axes every plane shares: one channel's starts, which the scratch
    # of each part takes for all of a tile's)
    tile = replace(plan, shape=tile_shape, tasks=cpu.masked_tasks(tile_shape), _bound={},
                   args=(*(t[:1, :, :1] for t in plan.args[:2]), *plan.args[2:]))
    plans = []
    for _ in range(_threads()):
        filled = cpu.with_positions_fill(tile, reduction, axes, fill, width, parts=1)
        if filled is None:
            return None
        plans.append(filled[0])
    tiled = TiledMaskedPass(plans, shape, in_dtype, width)
    return tiled, tiled.pf
