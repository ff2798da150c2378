"""NumPy's ``Generator.random`` on every thread: the doubles a ``PCG64`` generator would
give, drawn in compiled code, each thread its share of the stream.

A fractional pool of (64, 2048, 7, 7) draws 262,144 samples, one stream: 0.6-0.67 ms by
``rng.random`` on the calling thread (and its cast to float32), beside a kernel of 1.6 ms.
Here each part of the rows starts from the generator's state advanced past the parts before
it (by NumPy's ``PCG64.advance``, on the calling thread) and draws its samples in
:data:`LANES` lanes per column, in vectorised loops: the generator is a linear congruential
one, so ``LANES * width`` steps at a time are one step of another (its multiplier and
increment: :func:`_jump`), and lane ``k`` of column ``c`` steps from the sample of row
``k`` to that of row ``k + LANES``, ..., writing ``out[c, r]`` in ``out``'s dtype (as
``astype`` rounds) in runs of :data:`LANES` along the row.  The generator is then advanced
past every sample, as ``rng.random`` would leave it.

The stream is NumPy's (``numpy/random/src/pcg64``): the state steps as ``state *
MULTIPLIER + increment`` modulo 2**128; a step gives the 64-bit value ``rotr(high ^ low,
state >> 122)`` (XSL-RR) and the double ``(value >> 11) * 2**-53``.
"""

from __future__ import annotations

import functools
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
_WORD = (1 << 128) - 1
LANES = 32
"""Lanes a column of a part draws together (each every ``LANES``-th row): the vectorised
loop's length.  Measured on an AMD Zen 4, one thread, 131,072 rows of 2 columns: 0.63-0.64
ns a sample with 32, 64 or 128 lanes, against 1.58 ns for the draw before (four streams of
128-bit integers stepped together, a sample at a time)."""
MAX_COLUMNS = 64
"""The widest ``out`` (columns, samples a row) drawn in compiled code: a part keeps 16 bytes
of state for each lane of each column (wider draws are left to ``rng.random``; a window
rule's have a column per spatial axis)."""
_JUMP = 5
"""The first slots of :func:`_draw`: the columns (samples a row), the rows, the output's
address, the increment's low and high words; then the jump's words (:func:`_jump`:
multiplier low and high, increment low and high), and each part's first state (low and
high words)."""


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
def _high_product(a, b_low, b_high):
    """The high word of ``a * b`` (uint64), ``b`` given as its 32-bit halves, from four
    products of 32-bit halves: vectorised as such.  (Given ``b`` and splitting it here, LLVM
    recognises the idiom and makes it a scalar 128-bit multiply.)"""
    half = numba.uint64(0xFFFFFFFF)
    a0, a1 = a & half, a >> numba.uint64(32)
    b0, b1 = b_low & half, b_high & half  # (masked again: so LLVM knows them 32-bit)
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> numba.uint64(32)) + (p01 & half) + (p10 & half)
    return p11 + (p01 >> numba.uint64(32)) + (p10 >> numba.uint64(32)) + (mid >> numba.uint64(32))


@numba.njit(inline="always")
def _fill(out, rows, width, first, end, low, high, inc_low, inc_high, jump):
    """Draw rows ``first`` to ``end - 1`` into ``out`` (flat ``(width, rows)``: column ``c``
    of row ``r`` at ``out[c * rows + r]``) from the state ``(low, high)`` before row
    ``first``'s first sample.  Lane ``k`` of column ``c`` holds the state whose output is
    sample ``(r0 + k, c)`` for the run of rows from ``r0``; ``jump`` (multiplier and
    increment of ``LANES * width`` steps, low and high words) takes it to ``r0 + LANES``."""
    lanes = min(LANES, end - first)
    if lanes <= 0:
        return
    states = np.empty((2, width * lanes), dtype=np.uint64)
    for k in range(lanes):  # (the part's first rows, a step at a time)
        for c in range(width):
            low, high, _ = _step(low, high, inc_low, inc_high)
            states[0, c * lanes + k] = low
            states[1, c * lanes + k] = high
    los, his = states[0], states[1]
    m_low, m_high, i_low, i_high = jump[0], jump[1], jump[2], jump[3]
    half = numba.uint64(0xFFFFFFFF)
    m0, m1 = m_low & half, m_low >> numba.uint64(32)
    for r0 in range(first, end, lanes):
        n = min(lanes, end - r0)
        for c in range(width):
            at = c * rows + r0
            for k in range(n):
                i = numba.uint64(c * lanes + k)
                lo, hi = los[i], his[i]
                mixed = hi ^ lo
                turn = hi >> numba.uint64(58)
                value = (mixed >> turn) | (mixed << ((numba.uint64(64) - turn)
                                                     & numba.uint64(63)))
                out[numba.uint64(at + k)] = _sample(value)
                product = lo * m_low
                later = product + i_low
                los[i] = later
                his[i] = (_high_product(lo, m0, m1) + lo * m_high + hi * m_low + i_high
                          + numba.uint64(later < product))


@numba.njit(inline="always")
def _draw(slots, part, parts, dtype):
    """Draw part ``part`` of ``parts`` of the rows (see :func:`draw_rows`) as ``dtype``."""
    s = contiguous(address(slots), (3,), np.int64)
    width, rows, at = s[0], s[1], s[2]
    s = contiguous(address(slots), (_JUMP + 4 + 2 * parts,), np.uint64)
    _fill(contiguous(at, (width * rows,), dtype), rows, width,
          rows * part // parts, rows * (part + 1) // parts,
          s[_JUMP + 4 + 2 * part], s[_JUMP + 5 + 2 * part], s[3], s[4], s[_JUMP:])
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
    return (out.ndim == 2 and out.size >= COMPILED_DRAW_FROM and out.shape[0] <= MAX_COLUMNS
            and out.dtype in (np.float32, np.float64) and out.flags.c_contiguous
            and out.flags.aligned and out.flags.writeable)


def prepare(out: np.ndarray) -> None:
    """Compile (or load) the callback that :func:`draw_rows` would run for ``out``, ahead of
    the draw."""
    if _fits(out):
        uniform_part(out.dtype)


@functools.lru_cache(maxsize=16)
def _powers(steps: int) -> tuple[int, int]:
    """``MULTIPLIER ** steps`` and ``1 + MULTIPLIER + ... + MULTIPLIER ** (steps - 1)``,
    modulo 2**128: ``steps`` steps with increment 1 take a state ``s`` to ``power * s +
    total``.  By squaring (as ``advance`` does): steps ``a`` then ``b`` are ``(power_a *
    power_b, power_b * total_a + total_b)``."""
    power, total = 1, 0  # (no step)
    square, square_total = MULTIPLIER, 1  # (one step, then 2, 4, ...)
    while steps:
        if steps & 1:
            power, total = ((power * square) & _WORD,
                            (square * total + square_total) & _WORD)
        square_total = (square * square_total + square_total) & _WORD
        square = (square * square) & _WORD
        steps >>= 1
    return power, total


def _jump(inc: int, steps: int) -> list[int]:
    """The multiplier and increment (low and high words) of ``steps`` steps of PCG64 with
    increment ``inc``: ``state * m + i`` is the state ``steps`` steps on."""
    power, total = _powers(steps)
    i = (inc * total) & _WORD
    return [power & _MASK, power >> 64, i & _MASK, i >> 64]


def draw_rows(rng: np.random.Generator, out: np.ndarray, parts: int) -> bool:
    """Fill ``out[c, r]`` (``(width, rows)``, float32 or float64, C-contiguous) with
    ``rng.random((rows, width))[r, c]`` rounded to ``out``'s dtype, in ``parts`` parts, one a
    thread, and leave ``rng`` as that draw would.  False, and nothing drawn, where ``rng``'s
    bit generator is not NumPy's ``PCG64``, ``out`` is not so, or it holds fewer than
    :data:`~numbapool.randomness.COMPILED_DRAW_FROM` samples or more than
    :data:`MAX_COLUMNS` columns."""
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
            if first > done:
                walker.advance((first - done) * width)
                done = first
            word = walker.state["state"]["state"]
            words += [word & _MASK, word >> 64]
        slots = np.array([width, rows, out.ctypes.data, inc & _MASK, inc >> 64,
                          *_jump(inc, LANES * width), *words], dtype=np.uint64)
        if _go(uniform_part(out.dtype), slots.view(np.int64), parts, 0, 0):
            raise RuntimeError("the compiled draw of uniform samples failed")
        bits.advance(rows * width)
        # (advance clears the buffered 32-bit half and its flag; a draw of doubles keeps both)
        if state["has_uint32"] or state["uinteger"]:
            after = bits.state
            after["has_uint32"], after["uinteger"] = state["has_uint32"], state["uinteger"]
            bits.state = after
    return True
