"""Run each ``numbapool bench`` case once on the GPU, numbapool then PyTorch, between
``cudaProfilerStart``/``Stop``: under Nsight Compute this gives each kernel's own time and DRAM
traffic, without launch overhead (``tools/gpu_check.sh`` runs it)::

    ncu --profile-from-start off --csv --metrics gpu__time_duration.sum,\
dram__bytes_read.sum,dram__bytes_write.sum python3 tools/cuda_kernels.py [--backward] [--case NAME]
"""

import sys
from functools import partial

import numpy as np
from numba import cuda

import numbapool
from numbapool.bench import CASES, _torch_forward, backward_call

try:
    import torch
except ImportError:  # pragma: no cover - depends on the installation
    torch = None


def main(argv: list[str]) -> None:
    backward = "--backward" in argv
    start = getattr(cuda, "profile_start", lambda: None)  # (the simulator has none)
    stop = getattr(cuda, "profile_stop", lambda: None)
    rng = np.random.default_rng(0)
    only = argv[argv.index("--case") + 1] if "--case" in argv else None
    for case in CASES:
        if only is not None and case.name != only:
            continue
        x_cf = rng.random(case.shape, dtype=np.float32)
        for layout in ("channels_first", "channels_last"):
            host = x_cf if layout == "channels_first" else np.ascontiguousarray(
                np.moveaxis(x_cf, 1, -1))
            x = cuda.to_device(host)
            opts = dict(case.options, layout=layout)
            y = numbapool.pool(case.pooler, x, **opts)
            calls = [partial(numbapool.pool, case.pooler, x, **opts)]
            if backward:
                gy = cuda.to_device(np.ones(y.shape, np.float32))
                calls.append(backward_call(case.pooler, x, gy, opts, False))
            if torch is not None and torch.cuda.is_available():
                tx, tfn = _torch_forward(torch, case, layout, "cuda")
                calls.append(partial(tfn, tx))
            for fn in calls:  # compile and warm up
                fn()
            cuda.synchronize()
            print(f"== {case.name} {layout}", flush=True)
            start()
            for fn in calls:
                fn()
            cuda.synchronize()
            stop()


if __name__ == "__main__":
    main(sys.argv[1:])
