"""The generators of poolers that draw: a seed gives default_rng's numbers, None fresh ones,
per thread and per process."""

import os
import sys
import threading

import numpy as np
import pytest

import numbapool
from numbapool.randomness import generator


@pytest.mark.parametrize("seed", [0, 7, 2**40, np.int64(3)])
def test_a_seed_gives_the_numbers_of_default_rng(seed):
    want = np.random.default_rng(int(seed)).random(6)
    for _ in range(2):  # (the kept state is not advanced by a draw)
        np.testing.assert_array_equal(generator(seed).random(6), want)


def test_unseeded_draws_are_fresh_and_not_disturbed_by_seeded_ones():
    a = generator(None).random(4)
    generator(5).random(4)
    b = generator(None).random(4)
    assert not np.array_equal(a, b)
    assert not np.array_equal(b, np.random.default_rng(5).random(4))


def test_each_thread_has_its_own_generators():
    seen = {}

    def draw(name):
        seen[name] = (generator(None), generator(1).random(3))

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen[0][0] is not seen[1][0] and seen[0][0] is not generator(None)
    np.testing.assert_array_equal(seen[0][1], np.random.default_rng(1).random(3))
    np.testing.assert_array_equal(seen[1][1], np.random.default_rng(1).random(3))


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin",
                    reason="needs fork")
def test_a_forked_child_does_not_repeat_its_parents_numbers():
    generator(None).random(2)  # (the parent's stream exists before the fork)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next numbers, to the parent
        try:
            os.write(write, generator(None).random(4).tobytes())
        finally:
            os._exit(0)
    os.close(write)
    child = np.frombuffer(os.read(read, 32), dtype=np.float64)
    os.close(read)
    os.waitpid(pid, 0)
    assert child.shape == (4,)
    assert not np.array_equal(child, generator(None).random(4))


def test_seeded_fractional_calls_repeat_and_unseeded_ones_differ():
    x = np.random.default_rng(0).random((2, 3, 12, 12)).astype(np.float32)
    a = numbapool.pool("fractional_max", x, output_size=(5, 5), seed=4)
    b = numbapool.pool("fractional_max", x, output_size=(5, 5), seed=4)
    np.testing.assert_array_equal(a, b)
    c, d = (numbapool.pool("fractional_max", x, output_size=(5, 5)) for _ in range(2))
    assert not np.array_equal(c, d)


# -- uniform_rows: NumPy's numbers, drawn on every thread ------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from numbapool.kernels import pcg64  # noqa: E402
from numbapool.randomness import COMPILED_DRAW_FROM, uniform_rows  # noqa: E402


def _check_draw(seed, before, buffered, rows, width, parts, wide):
    dtype = np.float64 if wide else np.float32
    mine, numpys = np.random.default_rng(seed), np.random.default_rng(seed)
    for g in (mine, numpys):
        g.random(before)
        for _ in range(buffered):  # (odd: half a 64-bit draw buffered; even: a stale half)
            g.integers(0, 2**16, dtype=np.uint32)
    out = np.full((width, rows), -1.0, dtype)
    drawn = pcg64.draw_rows(mine, out, parts)
    assert drawn == (rows * width >= COMPILED_DRAW_FROM and width <= pcg64.MAX_COLUMNS)
    if drawn:
        np.testing.assert_array_equal(out, numpys.random((rows, width)).astype(dtype).T)
    else:  # (nothing drawn, nothing written, the generator untouched)
        assert (out == -1).all()
    assert mine.bit_generator.state == numpys.bit_generator.state
    assert mine.integers(0, 2**16, dtype=np.uint32) == numpys.integers(0, 2**16,
                                                                         dtype=np.uint32)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**63), before=st.integers(0, 5), buffered=st.integers(0, 2),
       rows=st.integers(COMPILED_DRAW_FROM // 3, 3 * COMPILED_DRAW_FROM), width=st.integers(1, 3),
       parts=st.integers(1, 9), wide=st.booleans())
def test_the_compiled_draw_gives_numpys_numbers_and_leaves_the_generator_as_numpy(
        seed, before, buffered, rows, width, parts, wide):
    """Every part and lane starts where NumPy's stream is at its first row (a wrong jump
    between a lane's runs of rows, or a lane started a step off, changes samples); the
    generator ends as ``random`` leaves it, its buffered 32-bit half (and a stale one)
    included (``advance`` alone clears them)."""
    _check_draw(seed, before, buffered, rows, width, parts, wide)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**63), width=st.integers(pcg64.MAX_COLUMNS - 8, pcg64.MAX_COLUMNS + 8),
       rows=st.integers(COMPILED_DRAW_FROM // pcg64.MAX_COLUMNS, 300),
       parts=st.integers(1, 400), wide=st.booleans())
def test_the_compiled_draw_of_few_rows_a_part(seed, width, rows, parts, wide):
    """Parts of few rows, or of none, of up to :data:`pcg64.MAX_COLUMNS` columns (wider
    outputs are left to ``rng.random``): fewer rows than lanes, one run of lanes and no
    jump."""
    _check_draw(seed, 1, 0, rows, width, parts, wide)


@pytest.mark.parametrize("width, rows, parts", [
    (1, COMPILED_DRAW_FROM, 1),  # (one column, whole runs)
    (2, COMPILED_DRAW_FROM, COMPILED_DRAW_FROM // pcg64.LANES),  # (a run a part)
    (3, COMPILED_DRAW_FROM, COMPILED_DRAW_FROM // (pcg64.LANES + 17)),  # (a run and a tail)
    (2, COMPILED_DRAW_FROM + 5, 3 * COMPILED_DRAW_FROM // pcg64.LANES),  # (under a run)
    (3, 3 * pcg64.LANES * 100 + 1, 3)])  # (whole runs, then one row)
def test_the_compiled_draw_by_runs_of_lanes(width, rows, parts):
    """Parts of exactly a run of lanes, of a run and a tail, of fewer rows than lanes."""
    for wide in (False, True):
        _check_draw(7, 0, 0, rows, width, parts, wide)


def test_the_compiled_draw_holds_the_generators_lock():
    """As ``rng.random`` does: a thread drawing from the same generator waits."""
    rng = np.random.default_rng(2)
    out = np.empty((2, COMPILED_DRAW_FROM), np.float32)
    got = []
    with rng.bit_generator.lock:
        worker = threading.Thread(target=lambda: got.append(pcg64.draw_rows(rng, out, 2)))
        worker.start()
        worker.join(0.5)
        assert worker.is_alive() and not got
    worker.join()
    assert got == [True]
    np.testing.assert_array_equal(
        out, np.random.default_rng(2).random((COMPILED_DRAW_FROM, 2)).astype(np.float32).T)


@pytest.mark.parametrize("bits", [np.random.PCG64, np.random.Philox])
@pytest.mark.parametrize("shape", [(2, 10), (2, 2 * COMPILED_DRAW_FROM), (200, 100)])
def test_uniform_rows_falls_back_to_random_and_gives_the_same_numbers(bits, shape):
    """Other bit generators, small draws and wide ones take ``rng.random``: the same
    numbers."""
    mine, numpys = np.random.Generator(bits(11)), np.random.Generator(bits(11))
    out = np.empty(shape, np.float32)
    uniform_rows(mine, out)
    np.testing.assert_array_equal(out, numpys.random(shape[::-1]).astype(np.float32).T)
    assert mine.random() == numpys.random()


def test_uniform_rows_refuses_outputs_it_cannot_fill():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    for out in (np.empty(10, np.float32), np.empty((2, 3, 4)), np.empty((2, 10), np.int64)):
        with pytest.raises((TypeError, ValueError), match="out"):
            uniform_rows(rng, out)
    assert rng.bit_generator.state == state


def test_the_compiled_draw_refuses_what_it_cannot_fill():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    big = 2 * COMPILED_DRAW_FROM
    unaligned = np.empty(2 * big * 4 + 1, np.uint8)[1:].view(np.float32).reshape(2, big)
    assert not unaligned.flags.aligned
    wide = np.empty((pcg64.MAX_COLUMNS + 1, big), np.float32)  # (left to rng.random)
    for out in (np.empty((2, big), np.float16), np.empty((big, 2), np.float32).T,
                np.empty(big, np.float32), unaligned, wide):
        assert not pcg64.draw_rows(rng, out, 2)
    frozen = np.empty((2, big), np.float32)
    frozen.flags.writeable = False
    assert not pcg64.draw_rows(rng, frozen, 2)
    assert rng.bit_generator.state == state
    with pytest.raises(ValueError, match="float32 or float64"):
        pcg64.uniform_part(np.float16)


def test_prepare_uniform_rows_compiles_the_draw_for_its_dtype_ahead(monkeypatch):
    from numbapool.kernels import launch
    from numbapool.randomness import prepare_uniform_rows
    monkeypatch.setattr(launch, "_callbacks", {})  # (loaded again from Numba's cache)
    prepare_uniform_rows(np.empty((1, COMPILED_DRAW_FROM - 1)))  # (too small: left to random)
    assert launch._callbacks == {}
    for dtype, draw in ((np.float64, pcg64._draw_float64), (np.float32, pcg64._draw_float32)):
        prepare_uniform_rows(np.empty((1, COMPILED_DRAW_FROM), dtype))
        assert draw in launch._callbacks
