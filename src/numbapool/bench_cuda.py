"""``numbapool bench --target cuda``: numbapool's CUDA kernels against PyTorch CUDA (cuDNN)
and the device-memory roofline, in one run.

The roofline is the time to read the input and write the output once at the read+write
bandwidth of a device-to-device copy measured in the same run.  Times are wall-clock around
each call with the device synchronised, so launch overhead counts.
"""

from __future__ import annotations

import numpy as np

from .bench import CASES, Case, Target, best_time, summarise, time_cases

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
             bandwidth: float | None = None, recompute: bool = False) -> list[dict]:
    """Time every case on the GPU; print a table through ``out``; return the rows."""
    from numba import cuda

    torch = _torch_cuda()
    bw = bandwidth if bandwidth is not None else device_copy_bandwidth()
    name = getattr(cuda.get_current_device(), "name", "CUDA simulator")
    name = name.decode() if isinstance(name, bytes) else name
    out(f"device: {name}; device-to-device copy read+write bandwidth {bw / 1e9:.0f} GB/s")

    def sync():
        cuda.synchronize()
        if torch is not None:
            torch.cuda.synchronize()

    rows = time_cases(cases, layouts, backward, repeat, out, bw, torch,
                      Target(cuda.to_device, sync, "cuda"), digits=3, recompute=recompute)
    summarise(rows, out, peer="torch CUDA")
    return rows
