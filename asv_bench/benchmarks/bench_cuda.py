"""The benchmark cases on a CUDA GPU, numbapool beside PyTorch CUDA (cuDNN).

Skipped (NotImplementedError in setup) where numba-cuda or a GPU is missing, or under the
CUDA simulator.  Each timing synchronises the device, so it covers the kernels' run time and
launch overhead.
"""

import os

import numpy as np

import numbapool
from numbapool.bench import CASES, _torch_forward

from .common import LAYOUTS

CASE_NAMES = [c.name for c in CASES]
_BY_NAME = {c.name: c for c in CASES}


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


class TimeCudaCases:
    params = (CASE_NAMES, LAYOUTS)
    param_names = ["case", "layout"]
    timeout = 600

    def setup(self, case, layout):
        self.cuda = _cuda()
        c = _BY_NAME[case]
        x = np.random.default_rng(0).random(c.shape, dtype=np.float32)
        if layout == "channels_last":
            x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        self.case = c
        self.x = self.cuda.to_device(x)
        self.opts = dict(c.options, layout=layout)
        y = numbapool.pool(c.pooler, self.x, **self.opts)
        self.gy = self.cuda.to_device(np.ones(y.shape, np.float32))
        numbapool.pool_grad(c.pooler, self.x, self.gy, **self.opts)
        self.cuda.synchronize()

    def time_forward(self, case, layout):
        numbapool.pool(self.case.pooler, self.x, **self.opts)
        self.cuda.synchronize()

    def time_backward(self, case, layout):
        numbapool.pool_grad(self.case.pooler, self.x, self.gy, **self.opts)
        self.cuda.synchronize()


class TimeTorchCudaCases:
    params = (CASE_NAMES, LAYOUTS)
    param_names = ["case", "layout"]
    timeout = 600

    def setup(self, case, layout):
        try:
            import torch
        except ImportError:
            raise NotImplementedError("torch is not installed") from None
        if not torch.cuda.is_available():
            raise NotImplementedError("no CUDA build of torch or no GPU")
        self.x, self.fn = _torch_forward(torch, _BY_NAME[case], layout, "cuda")
        if self.fn is None:
            raise NotImplementedError("no PyTorch peer")
        self.x.requires_grad_(True)
        self.y = self.fn(self.x)
        self.gy = torch.ones_like(self.y)
        self.torch = torch
        torch.cuda.synchronize()

    def time_forward(self, case, layout):
        with self.torch.no_grad():
            self.fn(self.x)
        self.torch.cuda.synchronize()

    def time_backward(self, case, layout):
        self.torch.autograd.grad(self.y, self.x, self.gy, retain_graph=True)
        self.torch.cuda.synchronize()
