"""Where a small CUDA call's host time goes (``tools/gpu_check.sh`` runs it on a GPU).

Per call, pipelined (one synchronisation after N calls), for the bench's small case:
numbapool's whole forward and backward; the same kernel launched through Numba's dispatcher
(``kernel[grid, block](*args)``), through the compiled overload's ``launch`` (no dispatch),
and through ``cuda.core.launch`` with the arguments packed once; a device allocation.  Then
the top of a cProfile of the whole calls.
"""

import cProfile
import io
import pstats
import sys
import time

import numpy as np
from numba import cuda

import numbapool
from numbapool import api
from numbapool.kernels import cuda as kcuda


def per_call(fn, n: int = 2000) -> float:
    for _ in range(20):
        fn()
    cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


def captured(call):
    """The (kernel, total, args) of every launch ``call`` makes (planned anew: a remembered
    plan's bound launch does not go through ``_run``)."""
    seen = []
    real = kcuda._run
    api._KNOWN_CALLS.clear()

    def spy(kernel, total, *args):
        seen.append((kernel, total, args))
        real(kernel, total, *args)

    kcuda._run = spy
    try:
        call()
    finally:
        kcuda._run = real
    return seen


def profile(label: str, fn, n: int = 300) -> None:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        fn()
    cuda.synchronize()
    prof.disable()
    s = io.StringIO()
    stats = pstats.Stats(prof, stream=s)
    stats.sort_stats("tottime").print_stats(16)
    stats.sort_stats("cumulative").print_stats(30)
    print(f"--- cProfile {label}, {n} calls, by own time, then by cumulative time")
    print("\n".join(ln for ln in s.getvalue().splitlines()
                    if ln.strip() and not ln.lstrip().startswith(("Ordered", "List", "ncalls"))
                    and "function calls" not in ln))


def main() -> None:
    shape = (1, 64, 56, 56)
    opts = dict(kernel_size=3, stride=2, padding=1)
    x = cuda.to_device(np.random.default_rng(0).random(shape, dtype=np.float32))
    fwd = lambda: numbapool.pool("max", x, **opts)  # noqa: E731
    y, idx = numbapool.pool("max", x, return_indices=True, **opts)
    gy = cuda.to_device(np.ones(y.shape, np.float32))
    bwd = lambda: numbapool.pool_grad("max", x, gy, indices=idx, **opts)  # noqa: E731
    avg = lambda: numbapool.pool("avg", x, **opts)  # noqa: E731
    print(f"pool max forward        {per_call(fwd):8.1f} us")
    print(f"pool avg forward        {per_call(avg):8.1f} us")
    print(f"pool_grad max (indices) {per_call(bwd):8.1f} us")
    (kernel, total, args), = captured(fwd)
    blocks, threads = kcuda._launch(total)
    print(f"launches of the forward: 1; array arguments {sum(hasattr(a, 'shape') for a in args)}"
          f" of {len(args)}")
    t = per_call(lambda: kernel[blocks, threads](*args))
    print(f"dispatcher kernel[g, b](*args) {t:8.1f} us")
    k = next(iter(kernel.overloads.values()))
    stream = kernel[blocks, threads].stream
    try:
        t = per_call(lambda: k.launch(args, (blocks,), (threads,), stream, 0))
        print(f"overload.launch(args)          {t:8.1f} us")
    except Exception as exc:  # noqa: BLE001
        print("overload.launch failed:", repr(exc))
    try:
        from cuda.core import LaunchConfig, launch
        kargs: list = []
        for t, v in zip(k.argument_types, args):
            k._prepare_args(t, v, 0, [], kargs)
        cfg = LaunchConfig(grid=(blocks,), block=(threads,), shmem_size=0)
        kern = k._codelibrary.get_cufunc().kernel
        print(f"kernel parameters: {len(kargs)}")
        for label, s in (("config's", stream), ("default_stream", cuda.default_stream())):
            try:
                t = per_call(lambda s=s: launch(s, cfg, kern, *kargs))
                print(f"cuda.core.launch packed ({label}) {t:8.1f} us")
            except Exception as exc:  # noqa: BLE001
                print(f"cuda.core.launch packed ({label}) failed: {exc!r}")
    except Exception as exc:  # noqa: BLE001
        print("packed launch unavailable:", repr(exc))
    print(f"cuda.device_array(out)         "
          f"{per_call(lambda: cuda.device_array(y.shape, np.float32)):8.1f} us")
    print(f"cuda.to_device(1 int64)        "
          f"{per_call(lambda: cuda.to_device(np.zeros(1, np.int64)), 500):8.1f} us")
    profile("pool max forward", fwd)
    profile("pool_grad max (indices)", bwd)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
