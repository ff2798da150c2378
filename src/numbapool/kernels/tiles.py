"""Channels-first passes on small planes, as channels-last kernels run on tiles of planes
transposed in cache (:class:`TiledCall`; :class:`numbapool.kernels.cpu.TiledChannelsLast`
and ``cpu._tiled_backward`` use it).

Channels first, a plane of 7x7 holds too few elements for the loops of the channels-first
kernels to vectorise: their rows are 7 long, and the work of a task (a plane's output row)
is mostly its own set-up.  Channels last, the same windows run as loops over the channels.
A :class:`TiledCall` takes ``TILE_PLANES`` consecutive planes of each channels-first array
(contiguous: the planes of every sample and channel follow each other), transposes them
into a small channels-last array whose "channels" are those planes, runs the channels-last
kernel on the tiles (a call of its compiled C callback, one part of one), and transposes
the tiles it wrote back into their planes.  Both transposes stay in the core's cache: each
array is read or written once, where a channels-last kernel between whole-array transposes
(:mod:`numbapool.kernels.transpose`) moves the data through memory several more times.
The channels-last kernel is the one a channels-last call compiles (and caches), so the
tiles add no compile of their own per reduction.

The tiles move by the register blocks of :func:`numbapool.kernels.transpose._block` where a
block fits, element by element elsewhere: arrays of 4- or 8-byte elements only (the blocks'
widths).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .launch import (
    Launcher,
    _call_part,
    _place,
    _threads,
    address,
    callback,
    contiguous,
    drive,
    kind,
    pack,
)
from .transpose import VECTOR_BYTES, _block

__all__ = ["TILE_PLANES", "IN", "OUT", "UNUSED", "TiledCall", "tile_in", "tile_out", "words"]

TILE_PLANES = 64
"""Planes a tile: the length of the channels-last loops that run on it (four 16-lane
float32 vectors)."""


@numba.njit(nogil=True, inline="always")
def _move(flat, start, plane, planes, tile, width, inward):
    """Between the ``planes`` planes of ``plane`` elements at ``flat[start:]`` and a tile
    of ``width`` planes, ``tile[i * width + b]`` holding element ``i`` of plane ``b``: into
    the tile if ``inward`` (and for the other ``b`` below ``width`` a copy of plane 0:
    values the kernel may read, whose results nobody keeps), else out of it (the first
    ``planes`` planes).  Flat arrays, unchecked.  By register blocks of 16 planes' 16
    elements (float32 and AVX-512), and the rest element by element, one loop for both
    directions as :func:`numbapool.kernels.transpose._blocks`.  (Overlapping the last
    block along an axis with the one before, instead, moved 256 elements for 16 new ones
    on 7x7 planes: 5-20% slower on (64, 1024, 7, 7).)"""
    lanes = VECTOR_BYTES // flat.itemsize
    whole_b = planes - planes % lanes
    whole_i = plane - plane % lanes
    for b in range(0, whole_b, lanes):
        for i in range(0, whole_i, lanes):
            if inward:
                _block(flat, start + b * plane + i, plane, tile, i * width + b, width)
            else:
                _block(tile, i * width + b, width, flat, start + b * plane + i, plane)
        for i in range(whole_i, plane):
            for j in range(lanes):
                f = numba.uint64(start + (b + j) * plane + i)
                t = numba.uint64(i * width + b + j)
                if inward:
                    tile[t] = flat[f]
                else:
                    flat[f] = tile[t]
    for b in range(whole_b, width if inward else planes):
        at = start + (b if b < planes else 0) * plane
        for i in range(plane):
            f = numba.uint64(at + i)
            t = numba.uint64(i * width + b)
            if inward:
                tile[t] = flat[f]
            else:
                flat[f] = tile[t]


@numba.njit(nogil=True, inline="always")
def tile_in(src, start, plane, planes, dst, width):
    """``dst[i * width + b] = src[start + b * plane + i]`` for the ``planes`` planes ``b``
    (below ``width``) of ``plane`` elements each, and for the other ``b`` below ``width`` a
    copy of plane 0 (:func:`_move` into the tile)."""
    _move(src, start, plane, planes, dst, width, True)


@numba.njit(nogil=True, inline="always")
def tile_out(src, width, dst, start, plane, planes):
    """``dst[start + b * plane + o] = src[o * width + b]`` for the first ``planes`` planes
    ``b`` of a tile of ``width`` whose outputs, ``plane`` a plane, are ``src``: the inverse
    of :func:`tile_in` for the planes kept (:func:`_move` out of the tile)."""
    _move(dst, start, plane, planes, src, width, False)


IN, OUT, UNUSED = 0, 1, 2
"""What a tiled call does with each of its leading arrays: transposes a tile of it in before
the kernel runs, transposes the tile out after, or neither (an argument the kernel does not
read, such as ``x`` of a mean's gradient; its tile holds whatever was there)."""

_HEAD = 5  # the kernel's address, the template's address and length, arrays, planes
_ARRAY = 7  # an array's address, role, element size, elements a plane, its tile's 3 sizes


@numba.njit(cache=True, nogil=True)
def words(address, size, total, p0, plane, n, tile, width, inward):
    """Planes ``p0`` to ``p0 + n`` of the flat array of ``total`` elements of ``size``
    bytes at ``address``, into the tile of ``width`` planes at address ``tile`` if
    ``inward``, else out of it (:func:`_move`), as words: the transposes move bits."""
    if size == 4:
        _move(contiguous(address, (total,), np.uint32), p0 * plane, plane, n,
              contiguous(tile, (plane * width,), np.uint32), width, inward)
    else:
        _move(contiguous(address, (total,), np.uint64), p0 * plane, plane, n,
              contiguous(tile, (plane * width,), np.uint64), width, inward)


def _tiles(slots, part, parts):
    """The C callback of :class:`TiledCall`, part ``part`` of ``parts`` (one per thread):
    1, or 0 if a tile's kernel run failed or a tile does not fit the template."""
    at = address(slots)
    head = contiguous(at, (_HEAD,), np.int64)
    arrays, planes = head[3], head[4]
    s = contiguous(at, (_HEAD + _ARRAY * arrays,), np.int64)
    # a tile of each array, each of its own size (in the core's first-level cache where
    # they fit: all of them as wide as the widest, in 8-byte words, ran 20-40% slower on
    # 7x7 planes), each starting on a cache line
    offsets = np.empty(arrays + 1, np.int64)
    offsets[0] = 0
    for j in range(arrays):
        a = _HEAD + _ARRAY * j
        offsets[j + 1] = offsets[j] + (s[a + 3] * TILE_PLANES * s[a + 2] + 63) // 64 * 64
    store = np.empty(offsets[arrays] + 64, np.uint8)
    base = (store.ctypes.data + 63) // 64 * 64
    args = contiguous(s[1], (s[2],), np.int64).copy()
    for j in range(arrays):
        a = _HEAD + _ARRAY * j
        tile = contiguous(base + offsets[j], (1, s[a + 4], s[a + 5], s[a + 6], TILE_PLANES),
                          np.uint8)
        if not _place(args, 6 * j, tile):  # (5-D arrays: an address and 5 sizes each)
            return 0
    tiles = (planes + TILE_PLANES - 1) // TILE_PLANES
    for t in range(tiles * part // parts, tiles * (part + 1) // parts):
        p0 = t * TILE_PLANES
        n = min(TILE_PLANES, planes - p0)
        for j in range(arrays):
            a = _HEAD + _ARRAY * j
            if s[a + 1] == IN:
                words(s[a], s[a + 2], planes * s[a + 3], p0, s[a + 3], n,
                      base + offsets[j], TILE_PLANES, True)
        if _call_part(s[0], args.ctypes.data, 0, 1) != 1:
            return 0
        for j in range(arrays):
            a = _HEAD + _ARRAY * j
            if s[a + 1] == OUT:
                words(s[a], s[a + 2], planes * s[a + 3], p0, s[a + 3], n,
                      base + offsets[j], TILE_PLANES, False)
    # (``store`` is used here so that it lives until now: Numba frees an array after its
    # last use, and the tiles are only addresses into it)
    return 1 if store.size > 0 else 0


class TiledCall:
    """The channels-last kernel ``kernel`` (a :class:`numbapool.kernels.launch.Launcher`)
    with its arguments after the leading arrays fixed (``fixed``), run on tiles of
    ``TILE_PLANES`` planes of channels-first arrays: each leading array's tile is moved
    as ``roles`` says (:data:`IN`, :data:`OUT`, :data:`UNUSED`).  Called with the leading
    arrays, channels first, 5-D, C-contiguous, with the same batch and channels and 4- or
    8-byte elements; the kernel sees tiles of them channels last, with ``TILE_PLANES``
    channels."""

    def __init__(self, kernel: Launcher, roles: tuple[int, ...], fixed: tuple) -> None:
        self.kernel = kernel
        self.roles = roles
        self.fixed = fixed
        self._packed: dict = {}

    def __call__(self, *arrays: np.ndarray) -> None:
        if len(arrays) != len(self.roles) or not all(
                a.ndim == 5 and a.flags.c_contiguous and a.dtype.itemsize in (4, 8)
                and a.shape[:2] == arrays[0].shape[:2] for a in arrays):
            raise ValueError("a tiled call takes its leading arrays 5-D, C-contiguous, with "
                             "4- or 8-byte elements and the same batch and channels")
        planes = arrays[0].shape[0] * arrays[0].shape[1]
        if planes == 0:
            return
        key = tuple((a.shape[2:], a.dtype) for a in arrays)
        packed = self._packed.get(key)
        if packed is None:
            tiles = [np.empty((1, *a.shape[2:], TILE_PLANES), a.dtype) for a in arrays]
            values = (*tiles, *self.fixed)
            kinds = tuple(kind(v) for v in values)
            packed = (self.kernel.compiled(kinds).address, pack(kinds, values))
            self._packed[key] = packed  # (the template holds the fixed arrays' addresses)
        fn, template = packed
        slots = [fn, template.ctypes.data, template.size, len(arrays), planes]
        for a, role in zip(arrays, self.roles):
            slots += [a.ctypes.data, role, a.dtype.itemsize, math.prod(a.shape[2:]),
                      *a.shape[2:]]
        slots = np.array(slots, dtype=np.int64)
        if drive(callback(_tiles), slots.ctypes.data, _threads()):
            self.kernel.failed()
