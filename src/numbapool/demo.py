"""``numbapool demo``: the seed tutorial's Keras examples, computed, plus a timing line."""

from __future__ import annotations

import time

import numpy as np

from .api import pool

# The tutorial's input, reshaped as Keras does: (batch, height, width, channels).
SEED_INPUT = np.array([[1, 3, 2, 4],
                       [5, 6, 7, 8],
                       [9, 10, 11, 12],
                       [13, 14, 15, 16]], dtype=float).reshape(1, 4, 4, 1)

# (title, Keras layer, numbapool call, what the tutorial printed for it)
EXAMPLES = [
    ("Max Pooling", "MaxPooling2D(pool_size=(2, 2))",
     lambda x: pool("max", x, 2, layout="channels_last")[0, :, :, 0],
     "[[ 6.  8.] [14. 16.]]"),
    ("Average Pooling", "AveragePooling2D(pool_size=(2, 2))",
     lambda x: pool("avg", x, 2, layout="channels_last")[0, :, :, 0],
     "[[ 3.5  5.5] [11.5 13.5]]"),
    ("Global Average Pooling", "GlobalAveragePooling2D()",
     lambda x: pool("global_avg", x, layout="channels_last")[0],
     "[ 7.5]"),
    ("Global Max Pooling", "GlobalMaxPooling2D()",
     lambda x: pool("global_max", x, layout="channels_last")[0],
     "[16.]"),
    ("Min Pooling", "tf.nn.pool(pooling_type='MIN', window_shape=(2, 2), padding='VALID')",
     lambda x: pool("min", x, 2, padding="valid", layout="channels_last")[0, :, :, 0],
     "[[1. 2.] [9. 10.]]"),
]


def _flat(text: str) -> str:
    return " ".join(text.split())


def _same_as_printed(value: np.ndarray, printed: str) -> bool:
    numbers = [float(t) for t in printed.replace("[", " ").replace("]", " ").split()]
    return value.size == len(numbers) and np.allclose(value.ravel(), numbers)


def seed_examples() -> list[tuple[str, np.ndarray, str, bool]]:
    """``(title, computed value, value the tutorial printed, whether they agree)``."""
    rows = []
    for title, _, fn, printed in EXAMPLES:
        value = np.asarray(fn(SEED_INPUT))
        rows.append((title, value, printed, _same_as_printed(value, printed)))
    return rows


def _best_time(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def timing_line(shape: tuple[int, ...] = (16, 64, 128, 128)) -> str:
    """2x2 max pooling of a float32 array: numbapool against a NumPy reshape-and-max."""
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    n, c, h, w = shape

    def numpy_max():
        return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))

    pool("max", x, 2)  # compile (or load from the cache) outside the timing
    ours = _best_time(lambda: pool("max", x, 2))
    theirs = _best_time(numpy_max)
    assert np.array_equal(pool("max", x, 2), numpy_max())
    return (f"2x2 max pool of a {shape} float32 array: numbapool {ours * 1e3:.2f} ms, "
            f"NumPy reshape+max {theirs * 1e3:.2f} ms ({theirs / ours:.1f}x)")


def main() -> int:
    x = SEED_INPUT[0, :, :, 0]
    print("Input (the tutorial's 4x4 matrix, as a (1, 4, 4, 1) channels-last batch):")
    print(x)
    print()
    for (title, layer, _, _), (_, value, printed, agree) in zip(EXAMPLES, seed_examples()):
        print(f"{title} Output   [Keras: {layer}]")
        print(value)
        if not agree:
            print(f"  (the tutorial printed {_flat(printed)}, which does not follow from its "
                  f"input)")
        print()
    print(timing_line())
    return 0
