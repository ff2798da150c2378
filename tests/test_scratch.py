"""Kernel scratch arrays are views that own nothing (no reference counting in the kernels'
loops), and the arrays that own them live until the kernel returns."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numba
import numpy as np

from numbapool.kernels.launch import held, unowned
from numbapool.kernels.templates import _unowned_scratch, hold_scratch


def test_scratch_lines_become_owners_and_views():
    src = _unowned_scratch("col = np.zeros(S2 + 8, dtype=sdt)\ndone = -1\n"
                           "st = np.empty(O2, dtype=np.int32)  # (narrow)\n")
    assert src.splitlines() == [
        "_own_col = np.zeros(S2 + 8, dtype=sdt)", "col = _unowned(_own_col)", "done = -1",
        "_own_st = np.empty(O2, dtype=np.int32)  # (narrow)", "st = _unowned(_own_st)"]


def test_returns_after_the_owners_keep_them():
    src = textwrap.dedent("""\
        def kernel(_slots, part, parts):
            if parts == 0:
                return 0
            _own_a = np.empty(4, dtype=np.float64)
            a = _unowned(_own_a)
            _own_b = np.zeros(4, dtype=np.int32)
            b = _unowned(_own_b)
            if part:
                return 2 if a[0] else 3
            return 1
        """)
    lines = hold_scratch(src).splitlines()
    assert lines[2] == "        return 0"  # (before any owner: as it was)
    assert lines[8] == "        return _held(2 if a[0] else 3, (_own_a, _own_b,))"
    assert lines[9] == "    return _held(1, (_own_a, _own_b,))"
    assert hold_scratch("def kernel():\n    return 1\n") == "def kernel():\n    return 1\n"


def test_a_view_reads_its_owner_until_the_return():
    """The owner, used only by ``held`` at the return, is not freed before: arrays allocated
    meanwhile do not take its memory (without ``held``, they did, and the sum changed)."""

    @numba.njit
    def scratch_sum(n):
        _own_a = np.zeros(n)
        a = unowned(_own_a)
        a[:] = 7.0
        s = 0.0
        for i in range(50):
            b = np.ones(n)  # (a freed owner's memory would come back here)
            s += b[i]
        return held(a.sum() + s - 50.0, (_own_a,))

    assert scratch_sum(1000) == 7000.0

    @numba.njit
    def view_of(a):
        return unowned(a)[1:].copy()

    np.testing.assert_array_equal(view_of(np.arange(5.0)), np.arange(1.0, 5.0))


def test_kernels_free_their_scratch():
    """In a process counting Numba's allocations: kernels with scratch rows (channels-first
    max and avg column kernels, fractional pooling's kernels that compute their starts in
    both layouts) allocate it and free all of it."""
    code = textwrap.dedent("""
        import numpy as np, numbapool
        from numba.core.runtime import rtsys
        x = np.random.default_rng(0).random((2, 16, 12, 12)).astype(np.float32)
        xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))

        def calls():
            numbapool.pool("max", x, 3, stride=2, padding=1)
            numbapool.pool("avg", x, 3, stride=2, padding=1)
            for layout, a in (("channels_first", x), ("channels_last", xl)):
                for seed in (1, 2, 3):
                    numbapool.pool("fractional_max", a, kernel_size=3, output_size=(5, 5),
                                   seed=seed, layout=layout)

        for _ in range(3):  # (compiled, caches filled, passes kept and bound)
            calls()
        before = rtsys.get_allocation_stats()
        calls()
        after = rtsys.get_allocation_stats()
        assert after.alloc > before.alloc, (before, after)
        assert after.alloc - before.alloc == after.free - before.free, (before, after)
        print("ok")
        """)
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
