"""The benchmark cases on a CUDA GPU, numbapool beside PyTorch CUDA (cuDNN).

Skipped (NotImplementedError in setup) where numba-cuda or a GPU is missing, or under the
CUDA simulator.  Each timing synchronises the device, so it covers the kernels' run time and
launch overhead.
"""

import os

from . import bench_cases


def _cuda():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        raise NotImplementedError("CUDA simulator: not timed")
    try:
        from numba import cuda
    except ImportError:
        raise NotImplementedError("numba-cuda is not installed") from None
    if not cuda.is_available():
        raise NotImplementedError("no CUDA GPU")
    return cuda


class TimeCudaCases(bench_cases.TimeCases):
    def _target(self):
        self.cuda = _cuda()

    def _place(self, a):
        return self.cuda.to_device(a)

    def _sync(self):
        self.cuda.synchronize()


class TimeTorchCudaCases(bench_cases.TimeTorchCases):
    device = "cuda"

    def _target(self, torch):
        if not torch.cuda.is_available():
            raise NotImplementedError("no CUDA build of torch or no GPU")

    def _sync(self):
        self.torch.cuda.synchronize()
