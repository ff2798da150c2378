"""A small cache of large output buffers, so repeated calls write into warm memory.

A fresh large NumPy array is fresh memory from the operating system: the kernel that first
writes it page-faults on every page, which costs as much as the pooling itself (measured: a
51 MB int64 array takes 6 ms to allocate and fill, 1.5 ms to refill).  PyTorch hides this
with a caching allocator; this module is the same idea, kept safe for arrays handed to users:

- Every buffer of at least :data:`MIN_BYTES` comes from a pool of flat ``uint8`` base arrays;
  callers get a view of one.
- A base is reused only when nothing but the pool refers to it: no result, and no view of a
  result, is alive (NumPy views keep a reference to the base that owns the memory, and the
  reference count says so).
- The pool keeps at most :data:`MAX_BYTES` of buffers that are not in use.
- Buffers start at a multiple of :data:`ALIGN` bytes.

Set ``NUMBAPOOL_BUFFER_CACHE=0`` to allocate every array afresh.
"""

from __future__ import annotations

import math
import os
import sys
import threading

import numpy as np

__all__ = ["empty", "ALIGN", "MIN_BYTES", "MAX_BYTES", "clear"]

MIN_BYTES = 1 << 20
MAX_BYTES = 1 << 30
ALIGN = 64
"""The alignment of the buffers handed out, in bytes: a cache line, so that the kernels'
non-temporal stores (:mod:`numbapool.kernels.streaming`) write whole rows of whole lines.
Each base holds that many bytes more than its buffer."""
_ENABLED = os.environ.get("NUMBAPOOL_BUFFER_CACHE", "1") != "0"
_lock = threading.Lock()
_pool: list[np.ndarray] = []  # flat uint8 bases, most recently used last


def _refcounts(bases: list[np.ndarray]) -> list[int]:
    return [sys.getrefcount(b) for b in bases]


# The count of a base that only the pool's list refers to, measured the same way.
_ONLY_POOL = _refcounts([np.empty(1, dtype=np.uint8)])[0]


def empty(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """Like ``np.empty``, reusing a cached buffer for large arrays when one is free."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if not _ENABLED or nbytes < MIN_BYTES:
        return np.empty(shape, dtype=dtype)
    with _lock:
        counts = _refcounts(_pool)
        chosen = next((i for i, (b, n) in enumerate(zip(_pool, counts))
                       if b.nbytes == nbytes + ALIGN and n == _ONLY_POOL), None)
        base = (_pool.pop(chosen) if chosen is not None
                else np.empty(nbytes + ALIGN, dtype=np.uint8))
        _pool.append(base)
        at = -base.ctypes.data % ALIGN
        # (a view of the base itself, which owns the memory: views of views name the
        # owner as their base, and the owner's reference count is what says it is free)
        view = base[at:at + nbytes].view(dtype).reshape(shape)
        del base
        _trim()
        return view


def _trim() -> None:
    """Drop the least recently used free buffers beyond MAX_BYTES."""
    counts = _refcounts(_pool)
    free_bytes = 0
    for i in range(len(_pool) - 1, -1, -1):
        if counts[i] == _ONLY_POOL:
            free_bytes += _pool[i].nbytes
            if free_bytes > MAX_BYTES:
                del _pool[i]


def clear() -> None:
    """Forget every cached buffer (those in use stay valid: their users hold them)."""
    with _lock:
        _pool.clear()
