"""NumPy's ``Generator.random`` on every thread: the doubles a ``PCG64`` generator would
give, drawn in compiled code, each thread its share of the stream.

A fractional pool of (64, 2048, 7, 7) draws 262,144 samples, one stream: 0.67 ms by
``rng.random`` on the calling thread (and its cast to float32), beside a kernel of 1.6 ms.
Here each part starts from the generator's state advanced past the parts before it (by
NumPy's ``PCG64.advance``, on the calling thread) and steps the generator in 128-bit
integers (LLVM's ``i128``), four streams together, writing sample ``(row, column)`` at
``out[column, row]`` in ``out``'s dtype (as ``astype`` rounds).  The generator is then
advanced past every sample, as ``rng.random`` would leave it.

The stream is NumPy's (``numpy/random/src/pcg64``): the state steps as ``state *
MULTIPLIER + increment`` modulo 2**128; a step gives the 64-bit value ``rotr(high ^ low,
state >> 122)`` (XSL-RR) and the double ``(value >> 11) * 2**-53``.
"""

from __future__ import annotations

import threading

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..randomness import COMPILED_DRAW_FROM
from .launch import _go, address, callback, contiguous

__all__ = ["draw_rows", "prepare", "uniform_part"]

MULTIPLIER = (2549297995355413924 << 64) + 4865540595714422341
"""PCG's default 128-bit multiplier (``PCG_DEFAULT_MULTIPLIER_128``)."""

_MASK = (1 << 64) - 1
LANES = 4
"""Streams a thread steps together (each a quarter of its rows)."""
_HEAD = 2
"""The first slots of :func:`_draw`: the columns (samples a row) and the rows; then the
increment's low and high words, the output's address, and the states of each part's lanes
(low and high words)."""


@intrinsic
def _step(typingctx, low, high, inc_low, inc_high):
    """One step of PCG64 from the state ``(low, high)`` with increment ``(inc_low,
    inc_high)``: ``(new low, new high, output)``, all uint64."""
    u64 = types.uint64
    sig = types.UniTuple(u64, 3)(u64, u64, u64, u64)

    def codegen(context, builder, signature, args):
        i64, i128 = ir.IntType(64), ir.IntType(128)

        def wide(lo, hi):
            return builder.or_(builder.zext(lo, i128),
                               builder.shl(builder.zext(hi, i128), ir.Constant(i128, 64)))

        state = builder.add(builder.mul(wide(args[0], args[1]), ir.Constant(i128, MULTIPLIER)),
                            wide(args[2], args[3]))
        lo = builder.trunc(state, i64)
        hi = builder.trunc(builder.lshr(state, ir.Constant(i128, 64)), i64)
        mixed = builder.xor(hi, lo)
        rotate = builder.module.declare_intrinsic("llvm.fshr", [i64],
                                                  ir.FunctionType(i64, [i64, i64, i64]))
        value = builder.call(rotate, [mixed, mixed, builder.lshr(hi, ir.Constant(i64, 58))])
        return context.make_tuple(builder, signature.return_type, [lo, hi, value])

    return sig, codegen


@numba.njit(inline="always")
def _sample(value):
    """The double of a step's output."""
    return (value >> numba.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(inline="always")
def _fill(out, rows, width, s, first, end, inc_low, inc_high):
    """Step the rows ``first`` to ``end - 1`` in :data:`LANES` streams, whose states are
    ``s[0:8]`` (low and high words; left as the lanes end), lane ``k`` the ``k``-th quarter
    of the rows; column ``c`` of row ``r`` into ``out[c * rows + r]``.  The lanes step
    together (a step's 128-bit multiply waits for the one before it in its lane)."""
    count = end - first
    at0 = first
    at1 = first + count * 1 // LANES  # (the loop below steps LANES = 4 lanes)
    at2 = first + count * 2 // LANES
    at3 = first + count * 3 // LANES
    l0, h0, l1, h1, l2, h2, l3, h3 = s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
    n = min(at1 - at0, at2 - at1, at3 - at2, end - at3)
    for r in range(n):
        for c in range(width):
            l0, h0, v0 = _step(l0, h0, inc_low, inc_high)
            l1, h1, v1 = _step(l1, h1, inc_low, inc_high)
            l2, h2, v2 = _step(l2, h2, inc_low, inc_high)
            l3, h3, v3 = _step(l3, h3, inc_low, inc_high)
            out[numba.uint64(c * rows + at0 + r)] = _sample(v0)
            out[numba.uint64(c * rows + at1 + r)] = _sample(v1)
            out[numba.uint64(c * rows + at2 + r)] = _sample(v2)
            out[numba.uint64(c * rows + at3 + r)] = _sample(v3)
    s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7] = l0, h0, l1, h1, l2, h2, l3, h3
    # (the lanes' last rows, where their shares differ by one: a lane at a time)
    for lane in range(LANES):
        low, high = s[2 * lane], s[2 * lane + 1]
        for r in range(first + count * lane // LANES + n,
                       first + count * (lane + 1) // LANES):
            for c in range(width):
                low, high, value = _step(low, high, inc_low, inc_high)
                out[numba.uint64(c * rows + r)] = _sample(value)


@numba.njit(inline="always")
def _draw(slots, part, parts, dtype):
    """Draw part ``part`` of ``parts`` of the rows (see :func:`draw_rows`) as ``dtype``."""
    s = contiguous(address(slots), (_HEAD + 3,), np.int64)
    width, rows, at = s[0], s[1], s[_HEAD + 2]
    s = contiguous(address(slots), (_HEAD + 3 + 2 * LANES * parts,), np.uint64)
    states = s[_HEAD + 3 + 2 * LANES * part:]
    _fill(contiguous(at, (width * rows,), dtype), rows, width, states,
          rows * part // parts, rows * (part + 1) // parts, s[_HEAD], s[_HEAD + 1])
    return 1


def _draw_float32(slots, part, parts):
    """:func:`_draw` into float32 samples (a C callback of its own: a call compiles one)."""
    return _draw(slots, part, parts, np.float32)


def _draw_float64(slots, part, parts):
    """:func:`_draw` into float64 samples."""
    return _draw(slots, part, parts, np.float64)


def uniform_part(dtype: np.dtype) -> int:
    """The address of the C callback (:data:`~numbapool.kernels.launch.SIGNATURE`) that
    draws part ``part`` of the rows of :func:`draw_rows`' slots into ``dtype`` (float32 or
    float64) samples; compiled, or loaded from Numba's cache, on first use (one dtype's
    callback compiled in about 0.7 s; :func:`~numbapool.kernels.launch.callback`)."""
    key = np.dtype(dtype).char
    if key not in "fd":
        raise ValueError(f"the compiled draw writes float32 or float64 samples, not "
                         f"{np.dtype(dtype)}")
    return callback(_draw_float32 if key == "f" else _draw_float64)


_walkers = threading.local()


def _fits(out: np.ndarray) -> bool:
    """Whether :func:`draw_rows` draws into ``out`` in compiled code (for a PCG64)."""
    return (out.ndim == 2 and out.size >= COMPILED_DRAW_FROM
            and out.dtype in (np.float32, np.float64) and out.flags.c_contiguous
            and out.flags.aligned and out.flags.writeable)


def prepare(out: np.ndarray) -> None:
    """Compile (or load) the callback that :func:`draw_rows` would run for ``out``, ahead of
    the draw."""
    if _fits(out):
        uniform_part(out.dtype)


def draw_rows(rng: np.random.Generator, out: np.ndarray, parts: int) -> bool:
    """Fill ``out[c, r]`` (``(width, rows)``, float32 or float64, C-contiguous) with
    ``rng.random((rows, width))[r, c]`` rounded to ``out``'s dtype, in ``parts`` parts, one a
    thread, and leave ``rng`` as that draw would.  False, and nothing drawn, where ``rng``'s
    bit generator is not NumPy's ``PCG64``, ``out`` is not so, or it holds fewer than
    :data:`~numbapool.randomness.COMPILED_DRAW_FROM` samples."""
    bits = rng.bit_generator
    if type(bits) is not np.random.PCG64 or not _fits(out):
        return False
    width, rows = out.shape
    parts = max(1, parts)
    with bits.lock:  # (as rng.random holds it while it draws)
        state = bits.state
        inc = state["state"]["inc"]
        walker = getattr(_walkers, "pcg64", None)
        if walker is None:
            walker = _walkers.pcg64 = np.random.PCG64(0)
        walker.state = state
        words = []
        done = 0
        for part in range(parts):
            first = rows * part // parts
            count = rows * (part + 1) // parts - first
            for lane in range(LANES):
                at = first + count * lane // LANES
                if at > done:
                    walker.advance((at - done) * width)
                    done = at
                word = walker.state["state"]["state"]
                words += [word & _MASK, word >> 64]
        slots = np.array([width, rows, inc & _MASK, inc >> 64, out.ctypes.data, *words],
                         dtype=np.uint64)
        if _go(uniform_part(out.dtype), slots.view(np.int64), parts, 0, 0):
            raise RuntimeError("the compiled draw of uniform samples failed")
        bits.advance(rows * width)
        # (advance clears the buffered 32-bit half and its flag; a draw of doubles keeps both)
        if state["has_uint32"] or state["uinteger"]:
            after = bits.state
            after["has_uint32"], after["uinteger"] = state["has_uint32"], state["uinteger"]
            bits.state = after
    return True
