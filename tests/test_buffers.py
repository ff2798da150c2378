"""The output-buffer cache reuses memory only when no result or view of it is alive."""

import numpy as np
import pytest

import numbapool
from numbapool import buffers


@pytest.mark.skipif(not buffers._ENABLED, reason="NUMBAPOOL_BUFFER_CACHE=0")
def test_reuse_only_when_free():
    shape = (512, 1024)  # 2 MiB of float32: above MIN_BYTES
    buffers.clear()
    a = buffers.empty(shape, np.float32)
    a_addr = a.ctypes.data
    b = buffers.empty(shape, np.float32)
    assert b.ctypes.data != a_addr  # a is alive
    row = a[3]
    del a
    c = buffers.empty(shape, np.float32)
    assert c.ctypes.data not in (a_addr, b.ctypes.data)  # a view of a is alive
    del row, b, c
    d = buffers.empty(shape, np.float32)
    assert d.ctypes.data == a_addr  # the first free buffer of that size is reused
    small = buffers.empty((4, 4), np.float32)
    assert small.base is None  # small arrays are plain np.empty


def test_results_stay_correct_across_reuse():
    rng = np.random.default_rng(0)
    x1 = rng.random((4, 16, 64, 64), dtype=np.float32)
    x2 = rng.random((4, 16, 64, 64), dtype=np.float32)
    y1 = numbapool.pool("max", x1, 2)
    expected1 = x1.reshape(4, 16, 32, 2, 32, 2).max(axis=(3, 5))
    for _ in range(3):  # results that are dropped free their buffers for the next calls
        numbapool.pool("max", x2, 2)
    y2 = numbapool.pool("max", x2, 2)
    np.testing.assert_array_equal(y1, expected1)  # y1 was never overwritten
    np.testing.assert_array_equal(y2, x2.reshape(4, 16, 32, 2, 32, 2).max(axis=(3, 5)))
    assert y1.ctypes.data != y2.ctypes.data


@pytest.mark.skipif(not buffers._ENABLED, reason="NUMBAPOOL_BUFFER_CACHE=0")
def test_buffers_are_aligned_and_reused_only_when_free():
    # (aligned to a cache line for the kernels' non-temporal stores; an aligned view of a
    # view would name its owner, not the pooled view, as its base, and the pool would hand
    # out a buffer still in use)
    buffers.clear()
    shapes = [(512, 1024), (3, 349, 1001), (1 << 18,)]
    held = [buffers.empty(s, np.float32) for s in shapes]
    for a in held:
        assert a.ctypes.data % buffers.ALIGN == 0
        a[...] = 7
    again = [buffers.empty(s, np.float32) for s in shapes]
    for a, b in zip(held, again):
        assert b.ctypes.data % buffers.ALIGN == 0
        assert not np.shares_memory(a, b)
        b[...] = 1
        assert (a == 7).all()
    addresses = [a.ctypes.data for a in held]
    del held, a, b  # (the loops' names held the last ones)
    reused = [buffers.empty(s, np.float32) for s in shapes]
    assert [r.ctypes.data for r in reused] == addresses
