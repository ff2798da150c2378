"""Channels-first forward passes on small planes, as a channels-last kernel run on tiles of
planes transposed in cache (:class:`numbapool.kernels.cpu.TiledChannelsLast`).

Channels first, a plane of 7x7 holds too few elements for the loops of the channels-first
kernels to vectorise: their rows are 7 long, and the work of a task (a plane's output row)
is mostly its own set-up.  Channels last, the same windows run as loops over the channels.
:func:`run_tiles` takes ``TILE_PLANES`` consecutive planes of the channels-first input
(contiguous: the planes of every sample and channel follow each other), transposes them
into a small channels-last array whose "channels" are those planes, runs the channels-last
kernel on it (a call of its compiled C callback, one part of one), and transposes its
outputs back into their planes.  Both transposes stay in the core's cache: the input is
read once and the output written once, where a channels-last kernel between two
whole-array transposes (:mod:`numbapool.kernels.transpose`) moves the data through memory
three more times.  The channels-last kernel is the one a channels-last call compiles (and
caches), so the tiles add no compile of their own per reduction.

The tiles move by the register blocks of :func:`numbapool.kernels.transpose._block` where a
block fits, element by element elsewhere: arrays of 4- or 8-byte elements only (the blocks'
widths).
"""

from __future__ import annotations

import threading

import numba
import numpy as np

from .launch import SIGNATURE, _call_part, _place, _threads, address, contiguous, drive
from .transpose import VECTOR_BYTES, _block

__all__ = ["TILE_PLANES", "tile_in", "tile_out", "run_tiles"]

TILE_PLANES = 64
"""Planes a tile: the length of the channels-last loops that run on it (four 16-lane
float32 vectors)."""


@numba.njit(nogil=True, inline="always")
def tile_in(src, start, plane, planes, dst, width):
    """``dst[i * width + b] = src[start + b * plane + i]`` for the ``planes`` planes ``b``
    (below ``width``) of ``plane`` elements each, and for the other ``b`` below ``width`` a
    copy of plane 0 (values the kernel may read, whose results nobody keeps): ``src`` and
    ``dst`` flat, unchecked."""
    lanes = VECTOR_BYTES // src.itemsize
    whole_b = planes - planes % lanes
    whole_i = plane - plane % lanes
    for b in range(0, whole_b, lanes):
        for i in range(0, whole_i, lanes):
            _block(src, start + b * plane + i, plane, dst, i * width + b, width)
        for i in range(whole_i, plane):
            for j in range(lanes):
                dst[numba.uint64(i * width + b + j)] = src[numba.uint64(start + (b + j) * plane
                                                                        + i)]
    for b in range(whole_b, width):
        at = start + (b if b < planes else 0) * plane
        for i in range(plane):
            dst[numba.uint64(i * width + b)] = src[numba.uint64(at + i)]


@numba.njit(nogil=True, inline="always")
def tile_out(src, width, dst, start, plane, planes):
    """``dst[start + b * plane + o] = src[o * width + b]`` for the first ``planes`` planes
    ``b`` of a tile of ``width`` whose outputs, ``plane`` a plane, are ``src``: the inverse
    of :func:`tile_in` for the planes kept."""
    lanes = VECTOR_BYTES // src.itemsize
    whole_b = planes - planes % lanes
    whole_o = plane - plane % lanes
    for b in range(0, whole_b, lanes):
        for o in range(0, whole_o, lanes):
            _block(src, o * width + b, width, dst, start + b * plane + o, plane)
        for o in range(whole_o, plane):
            for j in range(lanes):
                dst[numba.uint64(start + (b + j) * plane + o)] = src[numba.uint64(o * width
                                                                                  + b + j)]
    for b in range(whole_b, planes):
        at = start + b * plane
        for o in range(plane):
            dst[numba.uint64(at + o)] = src[numba.uint64(o * width + b)]


@numba.njit(cache=True, nogil=True)
def _tiles_part(fn, template, x, out, x_tile, out_tile, part, parts):
    """Part ``part`` of ``parts`` of :func:`run_tiles` (arrays of raw 4- or 8-byte words:
    the tiles move bits): 1, or 0 if a tile's kernel run failed or the tiles do not fit
    the template."""
    planes, plane = x.shape
    oplane = out.shape[1]
    tiles = (planes + TILE_PLANES - 1) // TILE_PLANES
    xt = np.empty_like(x_tile)
    ot = np.empty_like(out_tile)
    slots = template.copy()
    if not (_place(slots, 0, xt) and _place(slots, 1 + xt.ndim, ot)):
        return 0
    xtf = xt.reshape(-1)
    otf = ot.reshape(-1)
    xf = x.reshape(-1)
    of = out.reshape(-1)
    for t in range(tiles * part // parts, tiles * (part + 1) // parts):
        p0 = t * TILE_PLANES
        n = min(TILE_PLANES, planes - p0)
        tile_in(xf, p0 * plane, plane, n, xtf, TILE_PLANES)
        if _call_part(fn, slots.ctypes.data, 0, 1) != 1:
            return 0
        tile_out(otf, TILE_PLANES, of, p0 * oplane, oplane, n)
    return 1


_HEAD = 14  # fn, template (address, length), x (address, planes, plane), out (address,
#             plane), the tiles' spatial shapes (3 + 3), and 0


@numba.njit(nogil=True, inline="always")
def _unpack(slots_address, part, parts, xword, oword):
    s = contiguous(slots_address, (_HEAD,), np.int64)
    template = contiguous(s[1], (s[2],), np.int64)
    x = contiguous(s[3], (s[4], s[5]), xword)
    out = contiguous(s[6], (s[4], s[7]), oword)
    x_tile = contiguous(s[3], (1, s[8], s[9], s[10], TILE_PLANES), xword)  # (shapes only)
    out_tile = contiguous(s[6], (1, s[11], s[12], s[13], TILE_PLANES), oword)
    return _tiles_part(s[0], template, x, out, x_tile, out_tile, part, parts)


# One C callback for each pair of word sizes (input, output), compiled on first use and
# cached: module-level functions, so that Numba's cache tells them apart.
def _tiles_4_4(slots, part, parts):
    return _unpack(address(slots), part, parts, np.uint32, np.uint32)


def _tiles_4_8(slots, part, parts):
    return _unpack(address(slots), part, parts, np.uint32, np.uint64)


def _tiles_8_4(slots, part, parts):
    return _unpack(address(slots), part, parts, np.uint64, np.uint32)


def _tiles_8_8(slots, part, parts):
    return _unpack(address(slots), part, parts, np.uint64, np.uint64)


_CALLBACKS = {(4, 4): _tiles_4_4, (4, 8): _tiles_4_8, (8, 4): _tiles_8_4, (8, 8): _tiles_8_8}
_compiled: dict[tuple[int, int], object] = {}
_lock = threading.Lock()


def _callback(x_size: int, out_size: int) -> int:
    """The address of the C callback for these word sizes (compiled or loaded once)."""
    key = (x_size, out_size)
    cfunc = _compiled.get(key)
    if cfunc is None:
        with _lock:
            cfunc = _compiled.get(key)
            if cfunc is None:
                cfunc = numba.cfunc(SIGNATURE, cache=True, nogil=True)(_CALLBACKS[key])
                _compiled[key] = cfunc
    return cfunc.address


def run_tiles(fn: int, template: np.ndarray, x: np.ndarray, out: np.ndarray,
              x_tile: tuple[int, ...], out_tile: tuple[int, ...]) -> int:
    """Run the channels-last kernel at ``fn`` (a C callback of
    :data:`numbapool.kernels.launch.SIGNATURE`) with the argument slots ``template`` on
    the planes of channels-first ``x`` (C-contiguous ``(P, S)``), ``TILE_PLANES`` at a
    time, writing ``out`` (``(P, O)``), on every thread.  The template was packed with
    tiles of spatial shapes ``x_tile`` and ``out_tile`` (3 each; ``TILE_PLANES``
    channels) as its first two arguments.  Elements of 4 or 8 bytes.  The number of parts
    that failed."""
    slots = np.array([fn, template.ctypes.data, template.size, x.ctypes.data, x.shape[0],
                      x.shape[1], out.ctypes.data, out.shape[1], *x_tile, *out_tile],
                     dtype=np.int64)
    callback = _callback(x.dtype.itemsize, out.dtype.itemsize)
    return int(drive(callback, slots.ctypes.data, _threads()))
