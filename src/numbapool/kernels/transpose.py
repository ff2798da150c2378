"""Parallel, cache-blocked conversions between channels-first ``(N, C, P)`` and channels-last
``(N, P, C)`` (``P`` the flattened spatial positions).

NumPy's ``ascontiguousarray(moveaxis(...))`` runs on one thread and strides through memory
(measured 35 ms for a (32, 64, 112, 112) float32 array; these take a few ms): some
channels-first calls are faster as a channels-last kernel between two of these.  Each task
converts a tile of ``TILE`` positions for every channel of one sample, so both the rows it reads
and the block it writes stay in cache.

Arrays of 4- or 8-byte elements with at least a vector's worth of channels (16 or 8 with
AVX-512, half that with 256-bit vectors) move square blocks of a vector's width through
registers (:func:`_block`): a vector load per row, a network of shuffles, a vector store per
column.  Element by element, the strided side of the copy compiled to gathers or single
loads and ran at 6-21 GB/s (read plus written) where the blocks run at 24-35 GB/s on large
arrays; (4, 64, 50176) float32, where the channels' rows are 49 pages apart, went from 6 to
24 GB/s.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from .. import buffers

try:
    VECTOR_BYTES = 64 if llvm.get_host_cpu_features().get("avx512f", False) else 32
except RuntimeError:  # (not known on this platform)
    VECTOR_BYTES = 32
"""The width of the blocks' vectors: a block has as many rows as a vector has elements (a
512-bit block on a machine with 256-bit vectors would not fit its 16 registers)."""

__all__ = ["IMPORTS", "TILE", "TILE_TO_FIRST", "USES", "to_channels_last",
           "to_channels_first", "transpose_region"]

TILE = 256
TILE_TO_FIRST = 64
"""Positions per task: to channels-last, each task reads a tile of every channel's row and
writes it contiguously; to channels-first, it reads ``TILE_TO_FIRST`` positions' channels
contiguously and writes them to every channel's row (measured against the other loop order:
(8, 3136, 64) float32 1.07 -> 0.75 ms, (64, 49, 2048) 9.6 -> 6.4 ms, (32, 12544, 64) equal)."""


def _emit_block(builder: ir.IRBuilder, src, src_stride, dst, dst_stride, bits: int) -> None:
    """IR that copies a square block of ``lanes = 8 VECTOR_BYTES / bits`` rows of ``lanes``
    elements, rows ``src_stride`` elements apart, to ``dst`` transposed (its rows
    ``dst_stride`` apart).  The rows are loaded as vectors and transposed by exchanging the
    off-diagonal blocks of size ``s = 1, 2, 4, ...`` between rows ``i`` and ``i + s`` (two
    two-vector shuffles a pair), then stored as vectors."""
    lanes = 8 * VECTOR_BYTES // bits
    ity = ir.IntType(bits)
    vptr = ir.VectorType(ity, lanes).as_pointer()
    src = builder.bitcast(src, ity.as_pointer())
    dst = builder.bitcast(dst, ity.as_pointer())

    def row(base, stride, i):
        at = builder.gep(base, [builder.mul(ir.Constant(stride.type, i), stride)])
        return builder.bitcast(at, vptr)

    rows = [builder.load(row(src, src_stride, i), align=bits // 8) for i in range(lanes)]
    mask = ir.VectorType(ir.IntType(32), lanes)
    s = 1
    while s < lanes:
        # rows i (i & s == 0) and i + s: lo keeps a's even s-blocks and takes b's even
        # blocks into its odd ones; hi takes a's odd blocks and keeps b's odd ones
        lo = ir.Constant(mask, [j if not j & s else lanes + j - s for j in range(lanes)])
        hi = ir.Constant(mask, [j + s if not j & s else lanes + j for j in range(lanes)])
        for i in range(lanes):
            if not i & s:
                a, b = rows[i], rows[i + s]
                rows[i] = builder.shuffle_vector(a, b, lo)
                rows[i + s] = builder.shuffle_vector(a, b, hi)
        s *= 2
    for i in range(lanes):
        builder.store(rows[i], row(dst, dst_stride, i), align=bits // 8)


@intrinsic
def _block(typingctx, src, src_at, src_stride, dst, dst_at, dst_stride):
    """``dst[dst_at + j * dst_stride + i] = src[src_at + i * src_stride + j]`` for ``i, j``
    below ``VECTOR_BYTES // itemsize``: 1-D arrays of one 4- or 8-byte element type,
    unchecked."""
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array)
            and src.ndim == dst.ndim == 1):
        return None
    bits = src.dtype.bitwidth
    if dst.dtype.bitwidth != bits or bits not in (32, 64):
        return None
    i64 = types.int64

    def codegen(context, builder, signature, args):
        def at(k):
            data = context.make_array(signature.args[k])(context, builder, args[k]).data
            return builder.gep(data, [args[k + 1]])

        _emit_block(builder, at(0), args[2], at(3), args[5], bits)
        return context.get_dummy_value()

    return types.none(src, i64, i64, dst, i64, i64), codegen


@numba.njit(parallel=True, cache=True, nogil=True)
def _blocks(af, of, n_samples, channels, positions, tile, to_last):
    """``af`` (flat ``(N, C, P)`` if ``to_last``, else ``(N, P, C)``) into ``of`` (flat, the
    other layout), by register blocks; ``channels`` at least a vector's worth."""
    lanes = VECTOR_BYTES // af.itemsize
    tiles = (positions + tile - 1) // tile
    whole = channels - channels % lanes
    for t in numba.prange(n_samples * tiles):
        n = t // tiles
        p0 = (t % tiles) * tile
        p1 = min(p0 + tile, positions)
        blocks = p1 - (p1 - p0) % lanes
        base = n * channels * positions
        for p in range(p0, blocks, lanes):
            for c in range(0, whole, lanes):
                first = base + c * positions + p  # (the block's corner, channels first)
                last = base + p * channels + c
                if to_last:
                    _block(af, first, positions, of, last, channels)
                else:
                    _block(af, last, channels, of, first, positions)
        for p in range(p0, p1):  # what the blocks leave: channels >= whole, positions >= blocks
            for c in range(whole if p < blocks else 0, channels):
                first = numba.uint64(base + c * positions + p)
                last = numba.uint64(base + p * channels + c)
                if to_last:
                    of[last] = af[first]
                else:
                    of[first] = af[last]


def _by_blocks(a: np.ndarray, channels: int) -> bool:
    return a.dtype.itemsize in (4, 8) and channels >= VECTOR_BYTES // a.dtype.itemsize


@numba.njit(parallel=True, cache=True, nogil=True)
def _first_to_last(a, out, tile):  # a (N, C, P) -> out (N, P, C)
    n_samples, channels, positions = a.shape
    tiles = (positions + tile - 1) // tile
    af = a.reshape(-1)
    of = out.reshape(-1)
    for t in numba.prange(n_samples * tiles):
        n = t // tiles
        p0 = (t % tiles) * tile
        base = numba.uint64(n * channels * positions)
        for p in range(p0, min(p0 + tile, positions)):
            ob = base + numba.uint64(p * channels)
            for c in range(channels):  # contiguous writes, reads from the tile's rows
                of[ob + numba.uint64(c)] = af[base + numba.uint64(c * positions + p)]


@numba.njit(parallel=True, cache=True, nogil=True)
def _last_to_first(a, out, tile):  # a (N, P, C) -> out (N, C, P)
    n_samples, positions, channels = a.shape
    tiles = (positions + tile - 1) // tile
    af = a.reshape(-1)
    of = out.reshape(-1)
    for t in numba.prange(n_samples * tiles):
        n = t // tiles
        p0 = (t % tiles) * tile
        p1 = min(p0 + tile, positions)
        base = numba.uint64(n * channels * positions)
        for p in range(p0, p1):
            ib = base + numba.uint64(p * channels)
            for c in range(channels):  # contiguous reads; the tile's writes stay in cache
                of[base + numba.uint64(c * positions + p)] = af[ib + numba.uint64(c)]


def _into(out: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``out`` if given (checked: C-contiguous, of ``shape`` and ``dtype``), else a new
    array."""
    if out is None:
        return buffers.empty(shape, dtype)
    if (out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous
            or not out.flags.writeable):
        raise ValueError(f"out must be a writeable C-contiguous {np.dtype(dtype)} array of "
                         f"shape {shape}, got {out.dtype} {out.shape}")
    return out


def to_channels_last(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A C-contiguous 5-D channels-first array ``(N, C, S0, S1, S2)`` as a C-contiguous
    channels-last one ``(N, S0, S1, S2, C)``: ``out`` if given, else a new array."""
    n, c = a.shape[:2]
    out = _into(out, (n, *a.shape[2:], c), a.dtype)
    if out.size:
        if _by_blocks(a, c):
            _blocks(a.reshape(-1), out.reshape(-1), n, c, out.size // (n * c), TILE, True)
        else:
            _first_to_last(a.reshape(n, c, -1), out.reshape(n, -1, c), TILE)
    return out


def to_channels_first(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A C-contiguous 5-D channels-last array ``(N, S0, S1, S2, C)`` as a C-contiguous
    channels-first one ``(N, C, S0, S1, S2)``: ``out`` if given, else a new array."""
    n, c = a.shape[0], a.shape[-1]
    out = _into(out, (n, c, *a.shape[1:-1]), a.dtype)
    if out.size:
        if _by_blocks(a, c):
            _blocks(a.reshape(-1), out.reshape(-1), n, c, out.size // (n * c), TILE_TO_FIRST,
                    False)
        else:
            _last_to_first(a.reshape(n, -1, c), out.reshape(n, c, -1), TILE_TO_FIRST)
    return out



@numba.njit(inline="always")
def transpose_region(src, src_at, src_stride, dst, dst_at, dst_stride, rows, cols):
    """``dst[dst_at + j * dst_stride + i] = src[src_at + i * src_stride + j]`` for ``i``
    below ``rows`` and ``j`` below ``cols`` (1-D arrays of one 4- or 8-byte element type,
    unchecked), for generated kernels (:data:`IMPORTS`): the square blocks of a vector's
    width through registers (:func:`_block`), row blocks outer, then the edges the blocks
    leave element by element."""
    lanes = VECTOR_BYTES // src.itemsize
    whole_rows = rows - rows % lanes
    whole_cols = cols - cols % lanes
    for i in range(0, whole_rows, lanes):
        for j in range(0, whole_cols, lanes):
            _block(src, src_at + i * src_stride + j, src_stride,
                   dst, dst_at + j * dst_stride + i, dst_stride)
    for i in range(rows):
        for j in range(whole_cols if i < whole_rows else 0, cols):
            dst[numba.uint64(dst_at + j * dst_stride + i)] = src[
                numba.uint64(src_at + i * src_stride + j)]

def _imports() -> str:
    from hashlib import sha256
    from pathlib import Path

    digest = sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return ("from numbapool.kernels.transpose import transpose_region as _tregion"
            f"  # transpose.py {digest}\n")


IMPORTS = _imports()
"""The line that binds :func:`transpose_region` in a generated kernel's module that
transposes blocks (see :mod:`numbapool.kernels.codegen`), with a hash of this file: the
kernel's cache key covers the code it inlines from here."""

USES = "_tregion("
"""What a kernel's source calls if it transposes blocks (it then needs :data:`IMPORTS`)."""
