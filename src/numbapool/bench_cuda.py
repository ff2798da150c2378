"""``numbapool bench --target cuda``: numbapool's CUDA kernels against PyTorch CUDA (cuDNN)
and the device-memory roofline, in one run.

The roofline is the time to read the input and write the output once at the read+write
bandwidth of a device-to-device copy measured in the same run.  Times are wall-clock around
each call with the device synchronised, so launch overhead counts.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from .api import pool, pool_grad
from .bench import CASES, Case, _torch_forward, best_time, summarise

__all__ = ["run_cuda", "device_copy_bandwidth"]


def device_copy_bandwidth(nbytes: int = 1024 * 2**20) -> float:
    """Read+write bandwidth in bytes/s of a device-to-device copy."""
    from numba import cuda

    src = cuda.device_array(nbytes // 4, dtype=np.float32)
    dst = cuda.device_array_like(src)
    t = best_time(lambda: dst.copy_to_device(src), repeat=5, sync=cuda.synchronize)
    return 2 * nbytes / t


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def run_cuda(cases: list[Case] = CASES, layouts=("channels_first", "channels_last"),
             backward: bool = False, repeat: int = 7, out=print,
             bandwidth: float | None = None) -> list[dict]:
    """Time every case on the GPU; print a table through ``out``; return the rows."""
    from numba import cuda

    torch = _torch_cuda()
    bw = bandwidth if bandwidth is not None else device_copy_bandwidth()
    name = getattr(cuda.get_current_device(), "name", "CUDA simulator")
    name = name.decode() if isinstance(name, bytes) else name
    out(f"device: {name}; device-to-device copy read+write bandwidth {bw / 1e9:.0f} GB/s")
    head = (f"{'case':<13}{'pooler':<11}{'layout':<15}{'pass':<9}{'numbapool':>11}"
            f"{'torch':>11}{'speed-up':>10}{'roofline':>10}")
    out(head)
    out("-" * len(head))

    def sync():
        cuda.synchronize()
        if torch is not None:
            torch.cuda.synchronize()

    rows = []
    rng = np.random.default_rng(0)
    for case in cases:
        x_cf = rng.random(case.shape, dtype=np.float32)
        for layout in layouts:
            host = x_cf if layout == "channels_first" else np.ascontiguousarray(
                np.moveaxis(x_cf, 1, -1))
            x = cuda.to_device(host)
            opts = dict(case.options, layout=layout)
            y = pool(case.pooler, x, **opts)
            nx, ny = host.nbytes, math.prod(y.shape) * 4
            passes = [("forward", partial(pool, case.pooler, x, **opts), nx + ny)]
            if backward:
                gy = cuda.to_device(np.ones(y.shape, np.float32))
                passes.append(("backward", partial(pool_grad, case.pooler, x, gy, **opts),
                               2 * nx + ny))
            tx, tfn = (None, None) if torch is None else _torch_forward(torch, case, layout,
                                                                        "cuda")
            for label, fn, nbytes in passes:
                ours = best_time(fn, repeat, sync=sync)
                theirs = math.nan
                if tfn is not None:
                    if label == "forward":
                        theirs = best_time(partial(tfn, tx), repeat, sync=sync)
                    else:
                        tx.requires_grad_(True)
                        ty = tfn(tx)
                        tgy = torch.ones_like(ty)
                        theirs = best_time(partial(torch.autograd.grad, ty, tx, tgy,
                                                   retain_graph=True), repeat, sync=sync)
                        tx.requires_grad_(False)
                roof = nbytes / bw
                rows.append(dict(case=case.name, pooler=case.pooler, layout=layout,
                                 pass_=label, ours=ours, torch=theirs,
                                 speedup=theirs / ours, roofline=roof / ours))
                out(f"{case.name:<13}{case.pooler:<11}{layout:<15}{label:<9}"
                    f"{ours * 1e3:>9.3f}ms{theirs * 1e3:>9.3f}ms{theirs / ours:>9.2f}x"
                    f"{roof / ours:>9.0%}")
    summarise(rows, out, peer="torch CUDA")
    return rows
