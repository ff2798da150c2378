"""Route output gradients to the input elements that indices name (CPU).

The backward pass of every pooler that selects one element per window (max, min, adaptive and
global max/min, stochastic pooling, plugins' selections) given the indices its forward pass
returned: ``gx[n, c, idx[n, c, o]] += gy[n, c, o]``.  It needs no window geometry and no
reduction, so one kernel per layout serves them all.

Each task owns a part of ``gx``, zeroes it and adds into it in output order: no races, no
atomics, and sums where windows overlap that do not depend on the number of threads.
Channels first a task is a plane.  Channels last a task is a sample, whose rows of channels
are contiguous, or, with too few samples to share the threads (:func:`_parts`), a range of
a sample's positions: each such task reads all of the sample's indices and adds those that
name its positions.  (Splitting a channels-last sample's channels between threads was
measured 2-4x slower: each thread then streams through every cache line pair of the
sample.)  An index outside the plane is counted, not written, and the count is returned so
that the caller can raise.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["route"]


@numba.njit(parallel=True, cache=True, nogil=True)
def _route_cf(gy, idx, gx, zero):  # gy, idx: (N*C, O); gx: (N*C, S)
    planes, plane = gx.shape
    oplane = gy.shape[1]
    bad = 0
    for pl in numba.prange(planes):
        row = gx[pl]
        for i in range(plane):
            row[i] = zero
        g = gy[pl]
        ix = idx[pl]
        for o in range(oplane):
            j = numba.uint64(ix[o])
            if j < plane:
                row[j] += g[o]
            else:
                bad += 1
    return bad


@numba.njit(cache=True, nogil=True)
def _route_sample_part(gy, idx, g, zero, lo, hi, count):  # gy, idx: (O, C); g: (S, C)
    """Zero positions ``lo:hi`` of one sample's ``g`` and add the gradients whose indices
    name them; returns the number of indices out of range if ``count``, else 0."""
    plane, channels = g.shape
    for i in range(lo, hi):
        for c in range(channels):
            g[i, c] = zero
    ulo = numba.uint64(lo)
    uhi = numba.uint64(hi)
    uplane = numba.uint64(plane)
    outside = 0
    for o in range(gy.shape[0]):
        # rows as slices and the element as g[j, c]: so written, LLVM leaves the scatter
        # scalar; the flat form became AVX-512 scatters, 3.2-3.5 times slower on Zen 4
        ir = idx[o]
        gr = gy[o]
        lowest = numba.uint64(-1)  # (as unsigned, a negative index is out of range too)
        highest = numba.uint64(0)
        for c in range(channels):
            j = numba.uint64(ir[c])
            lowest = min(lowest, j)
            highest = max(highest, j)
        if lowest >= ulo and highest < uhi:  # the row routes into this part only
            for c in range(channels):
                g[numba.uint64(ir[c]), c] += gr[c]
        elif highest >= ulo and (lowest < uhi or highest >= uplane):
            for c in range(channels):
                j = numba.uint64(ir[c])
                if j >= uplane:
                    outside += 1
                elif j >= ulo and j < uhi:
                    g[j, c] += gr[c]
    return outside if count else 0


@numba.njit(parallel=True, cache=True, nogil=True)
def _route_cl(gy, idx, gx, zero, parts):  # gy, idx: (N, O, C); gx: (N, S, C)
    n_samples, plane = gx.shape[:2]
    bad = 0
    for task in numba.prange(n_samples * parts):
        n = task // parts
        part = task - n * parts
        bad += _route_sample_part(gy[n], idx[n], gx[n], zero, (plane * part) // parts,
                                  (plane * (part + 1)) // parts, part == 0)
    return bad


def _parts(samples: int) -> int:
    """Tasks per channels-last sample: one where the samples keep every thread busy (at
    least twice as many); otherwise enough that the tasks share evenly between the threads,
    but at most ``ceil(2 threads / samples)``, since every part reads all of its sample's
    indices."""
    threads = numba.get_num_threads()
    return max(1, min(threads // math.gcd(samples, threads), -(-2 * threads // samples)))


def route(gy: np.ndarray, idx: np.ndarray, gx: np.ndarray, layout: str) -> int:
    """Fill ``gx`` with ``gy`` routed by ``idx``; return how many indices were out of range.

    Parameters
    ----------
    gy, idx : ndarray
        Output gradients and int64 indices, C-contiguous ``(N*C, O)`` for channels-first or
        ``(N, O, C)`` for channels-last (``O`` outputs per plane).
    gx : ndarray
        C-contiguous ``(N*C, S)`` or ``(N, S, C)`` (``S`` elements per plane), the dtype of
        ``gy``; overwritten.
    layout : {"channels_first", "channels_last"}
    """
    if gy.size == 0 or gx.size == 0:
        gx[...] = 0
        return int(idx.size) if gx.size == 0 else 0
    if layout == "channels_first":
        return int(_route_cf(gy, idx, gx, gx.dtype.type(0)))
    return int(_route_cl(gy, idx, gx, gx.dtype.type(0), min(_parts(gy.shape[0]), gx.shape[1])))
