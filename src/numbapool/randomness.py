"""The random number generators of poolers that draw (fractional windows, stochastic
samples): one for every call, so made cheaply.

``np.random.default_rng(seed)`` costs 10-12 us (a ``SeedSequence`` hashes the seed, then
``PCG64`` is built from it), a tenth of the host time of a fractional max pool of
(8, 64, 56, 56).  Here a seeded call gets a per-thread generator set to the state
``default_rng(seed)`` starts from (kept for the last seeds: 1.4 us), and an unseeded call
the next numbers of a per-thread generator seeded once from the operating system's entropy.
"""

from __future__ import annotations

import functools
import os
import threading

import numpy as np

__all__ = ["generator", "prepare_uniform_rows", "uniform_rows"]

_local = threading.local()


@functools.lru_cache(maxsize=64)
def _seed_state(seed: int) -> dict:
    """The state ``default_rng(seed)`` starts from (never changed: the generators copy it)."""
    return np.random.PCG64(seed).state


def generator(seed: int | None) -> np.random.Generator:
    """A generator for one call: the numbers of ``np.random.default_rng(seed)`` for an int
    ``seed``; fresh numbers for None.

    The generator belongs to the calling thread and is valid until its next call here: use
    it for the call, do not keep it.  (Unseeded draws continue one stream per thread, seeded
    from the operating system's entropy, and anew in a forked child process, which would
    otherwise repeat its parent's numbers.)
    """
    local = _local
    pid = os.getpid()
    if getattr(local, "pid", None) != pid:
        local.pid = pid
        local.fresh = np.random.default_rng()
        local.seeded = np.random.Generator(np.random.PCG64(0))
    if seed is None:
        return local.fresh
    rng = local.seeded
    rng.bit_generator.state = _seed_state(int(seed))
    return rng


COMPILED_DRAW_FROM = 8192
"""The fewest samples :func:`uniform_rows` draws in compiled code (its set-up on the calling
thread costs tens of microseconds: 8192 samples in 36-52 us against 26-28 us by
``rng.random``)."""


def uniform_rows(rng: np.random.Generator, out: np.ndarray) -> None:
    """Fill ``out`` (``(width, rows)``, float32 or float64) with the transpose of
    ``rng.random((rows, width))``, rounded to ``out``'s dtype, leaving ``rng`` as that call
    would: sample ``(r, c)`` into ``out[c, r]``.

    For a generator on NumPy's ``PCG64`` (:func:`generator`'s) and a C-contiguous float32 or
    float64 ``out`` of at least :data:`COMPILED_DRAW_FROM` samples and at most 64 columns
    (:data:`numbapool.kernels.pcg64.MAX_COLUMNS`), the samples are drawn in
    compiled code on every thread (:mod:`numbapool.kernels.pcg64`, the same numbers):
    262,144 samples into float32 on 2 threads in 0.11 ms (0.26-0.32 ms stepping 128-bit
    integers, before the vectorised lanes) against 0.6 ms for ``rng.random`` alone.
    """
    if not isinstance(out, np.ndarray) or out.ndim != 2:
        raise ValueError(f"out must be a 2-D array (width, rows), not "
                         f"{getattr(out, 'shape', type(out).__name__)}")
    if out.dtype.kind != "f":
        raise TypeError(f"out must hold floating-point samples, not {out.dtype}")
    if out.size >= COMPILED_DRAW_FROM:  # (small draws skip the compiled draw's checks)
        from .kernels import launch, pcg64
        if pcg64.draw_rows(rng, out, launch._threads()):
            return
    out[...] = rng.random((out.shape[1], out.shape[0])).T


def prepare_uniform_rows(out: np.ndarray) -> None:
    """Compile, or load from Numba's cache, what :func:`uniform_rows` runs on ``out`` (about
    0.7 s compiled; once a machine): call it ahead, where a delay is expected, to keep it
    off the first draw."""
    from .kernels import pcg64
    pcg64.prepare(out)
