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
