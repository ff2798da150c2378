"""The representative cases of `numbapool bench`, with PyTorch CPU beside them as a peer."""

import numpy as np

import numbapool
from numbapool.bench import CASES, _torch_forward, backward_call

from .common import LAYOUTS, data

CASE_NAMES = [c.name for c in CASES]
_BY_NAME = {c.name: c for c in CASES}


class TimeCases:
    params = (CASE_NAMES, LAYOUTS)
    param_names = ["case", "layout"]
    timeout = 600

    # Hooks for other targets (bench_cuda.py): where the data lives, how to wait for it.
    def _target(self):
        import numba

        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))

    def _place(self, a):
        return a

    def _sync(self):
        pass

    def setup(self, case, layout):
        self._target()
        c = _BY_NAME[case]
        self.case = c
        self.x = self._place(data(c.shape, layout))
        self.opts = dict(c.options, layout=layout)
        y = numbapool.pool(c.pooler, self.x, **self.opts)
        self.gy = self._place(np.ones(y.shape, np.float32))
        # As a training step calls it: selections get the indices of their forward pass.
        self.backward = backward_call(c.pooler, self.x, self.gy, self.opts)
        self.backward()
        self._sync()

    def time_forward(self, case, layout):
        numbapool.pool(self.case.pooler, self.x, **self.opts)
        self._sync()

    def time_backward(self, case, layout):
        self.backward()
        self._sync()


class TimeTorchCases:
    """PyTorch CPU on the same cases (skipped when torch is not installed)."""

    params = (CASE_NAMES, LAYOUTS)
    param_names = ["case", "layout"]
    timeout = 600
    device = "cpu"

    def _target(self, torch):
        torch.set_num_threads(2)

    def _sync(self):
        pass

    def setup(self, case, layout):
        try:
            import torch
        except ImportError:
            raise NotImplementedError("torch is not installed") from None
        self._target(torch)
        self.x, self.fn = _torch_forward(torch, _BY_NAME[case], layout, self.device)
        if self.fn is None:
            raise NotImplementedError("no PyTorch peer")
        self.x.requires_grad_(True)
        self.y = self.fn(self.x)
        self.gy = torch.ones_like(self.y)
        self.torch = torch
        # A forward and a backward pass, as TimeCases.setup ends: asv re-runs setup before
        # every timed call, so both libraries' calls start from the caches these leave
        # (with the forward pass last here alone, PyTorch's global average pool found its
        # input in cache and numbapool's did not: 601 against 723 us).
        self.torch.autograd.grad(self.y, self.x, self.gy, retain_graph=True)
        self._sync()

    def time_forward(self, case, layout):
        with self.torch.no_grad():
            self.fn(self.x)
        self._sync()

    def time_backward(self, case, layout):
        self.torch.autograd.grad(self.y, self.x, self.gy, retain_graph=True)
        self._sync()
