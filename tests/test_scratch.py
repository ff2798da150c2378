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


def _kernel_sources():
    """Every CPU kernel source the templates make for the registered reductions, ending as
    :func:`numbapool.kernels.launch.kernel_function` ends them, scratch rewritten."""
    import numbapool
    from numbapool.kernels import templates

    variants = {v for names in templates.VARIANTS.values() for v in names}
    variants |= set(templates.MASKED_VARIANTS) | set(templates.MASKED_PLANES_VARIANTS)
    variants |= set(templates._FOLD_VARIANTS)
    reductions = {id(p.reduction): p.reduction
                  for p in map(numbapool.get, numbapool.poolers())}.values()
    for red in reductions:
        for layout in ("channels_first", "channels_last"):
            for variant in sorted(variants):
                try:
                    src = templates.kernel_source(red, layout, variant)
                except ValueError:
                    continue
                yield (red.name, layout, variant), hold_scratch(
                    src.rstrip("\n") + "\n    return 1\n")


def test_every_kernel_returns_through_its_owners():
    """In every generated CPU kernel: the scratch owners are made at the kernel's first
    level before any return, each beside its view, and every return after them passes them
    all to ``_held`` (a return that did not would let an owner go while its view is
    read); the source parses."""
    import ast
    import re

    seen = with_scratch = 0
    for name, src in _kernel_sources():
        seen += 1
        ast.parse(src)
        lines = src.splitlines()
        owners = [(i, m[1]) for i, line in enumerate(lines)
                  if (m := re.match(r"^    (_own_\w+) = np\.(empty|zeros)\(", line))]
        made = re.findall(r"^\s*(_own_\w+) = ", src, re.M)
        assert made == [o for _, o in owners], name  # (none made at another level)
        if not owners:
            assert "_held" not in src and "_unowned" not in src, name
            continue
        with_scratch += 1
        first = owners[0][0]
        keep = "(" + ", ".join(o for _, o in owners) + ",)"
        for i, owner in owners:
            assert lines[i + 1] == f"    {owner[5:]} = _unowned({owner})", name
        for i, line in enumerate(lines):
            if re.search(r"\breturn\b", line):
                if i < first:
                    assert "_held" not in line, name
                else:
                    assert re.fullmatch(rf"\s*return _held\(.+, {re.escape(keep)}\)", line), \
                        (name, line)
    assert seen > 300 and with_scratch > 200, (seen, with_scratch)
