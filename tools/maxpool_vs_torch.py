"""ResNet-stem max pool (3x3, stride 2, pad 1) of a (32, 64, 112, 112) float32 array, both
layouts, numbapool against torch.nn.functional.max_pool2d, 2 threads each, one run.

    .venv/bin/python tools/maxpool_vs_torch.py
"""
import time

import numba
import numpy as np

numba.set_num_threads(2)
import torch

torch.set_num_threads(2)
import numbapool


def best(fn, r=7):
    ts = []
    for _ in range(r):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return min(ts), float(np.median(ts))

x = np.random.default_rng(0).standard_normal((32, 64, 112, 112), dtype=np.float32)
xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
tx = torch.from_numpy(x)
txl = tx.contiguous(memory_format=torch.channels_last)
f = lambda: numbapool.pool("max", x, 3, stride=2, padding=1)
fl = lambda: numbapool.pool("max", xl, 3, stride=2, padding=1, layout="channels_last")
g = lambda: torch.nn.functional.max_pool2d(tx, 3, 2, 1)
gl = lambda: torch.nn.functional.max_pool2d(txl, 3, 2, 1)
f(); fl(); g(); gl()
assert np.array_equal(f(), g().numpy())
assert np.array_equal(fl(), gl().permute(0, 2, 3, 1).numpy())
for name, a, b in (("channels_first", f, g), ("channels_last", fl, gl)):
    (na, ma), (nb, mb) = best(a), best(b)
    print(f"{name:15s} numbapool {na*1e3:7.1f} ms (median {ma*1e3:.1f})  torch {nb*1e3:7.1f} ms (median {mb*1e3:.1f})  speed-up {nb/na:.2f}x")
