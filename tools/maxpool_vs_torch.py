"""ResNet-stem max pool (3x3, stride 2, pad 1) of a (32, 64, 112, 112) float32 array, both
layouts, numbapool against torch.nn.functional.max_pool2d, 2 threads each, in one run.

    .venv/bin/python tools/maxpool_vs_torch.py
"""

import time

import numba
import numpy as np
import torch

import numbapool


def timings(fn, repeat=7):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts), float(np.median(ts))


def main():
    numba.set_num_threads(2)
    torch.set_num_threads(2)
    x = np.random.default_rng(0).standard_normal((32, 64, 112, 112), dtype=np.float32)
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    tx = torch.from_numpy(x)
    txl = tx.contiguous(memory_format=torch.channels_last)
    cases = {
        "channels_first": (lambda: numbapool.pool("max", x, 3, stride=2, padding=1),
                           lambda: torch.nn.functional.max_pool2d(tx, 3, 2, 1),
                           lambda y: y.numpy()),
        "channels_last": (lambda: numbapool.pool("max", xl, 3, stride=2, padding=1,
                                                 layout="channels_last"),
                          lambda: torch.nn.functional.max_pool2d(txl, 3, 2, 1),
                          lambda y: y.permute(0, 2, 3, 1).numpy()),
    }
    for layout, (ours, theirs, to_numpy) in cases.items():
        assert np.array_equal(ours(), to_numpy(theirs()))  # also warms up / compiles
        (a, am), (b, bm) = timings(ours), timings(theirs)
        print(f"{layout:15s} numbapool {a * 1e3:6.1f} ms (median {am * 1e3:.1f})  "
              f"torch {b * 1e3:6.1f} ms (median {bm * 1e3:.1f})  speed-up {b / a:.2f}x")


if __name__ == "__main__":
    main()
