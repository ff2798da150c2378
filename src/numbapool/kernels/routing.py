"""Route output gradients to the input elements that indices name (CPU).

The backward pass of every pooler that selects one element per window (max, min, adaptive and
global max/min, stochastic pooling, plugins' selections) given the indices its forward pass
returned: ``gx[n, c, idx[n, c, o]] += gy[n, c, o]``.  It needs no window geometry and no
reduction, so one kernel per layout serves them all.

Each task owns a whole part of ``gx`` (a channels-first plane; a channels-last sample, whose
rows of channels are contiguous), zeroes it and adds into it in output order: no races, no
atomics, deterministic sums where windows overlap.  (Splitting a channels-last sample's
channels between threads was measured 2-4x slower: each thread then streams through every
cache line pair of the sample.)  An index outside the plane is counted, not written,
and the count is returned so that the caller can raise.
"""

from __future__ import annotations

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


@numba.njit(parallel=True, cache=True, nogil=True)
def _route_cl(gy, idx, gx, zero):  # gy, idx: (N, O, C); gx: (N, S, C)
    n_samples, plane, channels = gx.shape
    oplane = gy.shape[1]
    gxf = gx.reshape(-1)
    gyf = gy.reshape(-1)
    idf = idx.reshape(-1)
    uplane = numba.uint64(plane)
    uchannels = numba.uint64(channels)
    bad = 0
    for n in numba.prange(n_samples):
        xb = numba.uint64(n * plane * channels)
        ob = n * oplane * channels
        for i in range(plane * channels):
            gxf[xb + numba.uint64(i)] = zero
        for o in range(oplane):
            k = numba.uint64(ob + o * channels)
            out = 0  # check the row's indices first (vectorised), then scatter unchecked
            for c in range(channels):
                out += numba.uint64(idf[k + c]) >= uplane
            if out:
                bad += out
                continue
            for c in range(channels):
                gxf[xb + numba.uint64(c) + numba.uint64(idf[k + c]) * uchannels] += gyf[k + c]
    return bad


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
    return int(_route_cl(gy, idx, gx, gx.dtype.type(0)))
