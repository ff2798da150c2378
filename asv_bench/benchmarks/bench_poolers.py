"""Forward and backward of every registered pooler (built-in and plugin), both layouts.

The list of poolers comes from the registry, so a newly installed plugin is benchmarked
without touching this file.
"""

import numpy as np

import numbapool

from .common import LAYOUTS, POOLER_SHAPE, data, pooler_options

POOLERS = numbapool.poolers()


class TimePoolerForward:
    params = (POOLERS, LAYOUTS)
    param_names = ["pooler", "layout"]
    timeout = 300

    def setup(self, pooler, layout):
        self.x = data(POOLER_SHAPE, layout)
        self.opts = dict(pooler_options(pooler), layout=layout)
        numbapool.pool(pooler, self.x, **self.opts)  # compile or load from the cache

    def time_forward(self, pooler, layout):
        numbapool.pool(pooler, self.x, **self.opts)


class TimePoolerBackward:
    """Backward without indices: selections recompute their forward pass."""

    params = (POOLERS, LAYOUTS)
    param_names = ["pooler", "layout"]
    timeout = 300

    def setup(self, pooler, layout):
        self.x = data(POOLER_SHAPE, layout)
        self.opts = dict(pooler_options(pooler), layout=layout)
        self.gy = np.ones_like(numbapool.pool(pooler, self.x, **self.opts))
        numbapool.pool_grad(pooler, self.x, self.gy, **self.opts)

    def time_backward(self, pooler, layout):
        numbapool.pool_grad(pooler, self.x, self.gy, **self.opts)


class TimePoolerForwardIndices:
    """The poolers with indices, forward with ``return_indices=True``: a training step's
    forward pass."""

    params = ([p for p in POOLERS if "indices" in numbapool.get(p).capabilities], LAYOUTS)
    param_names = ["pooler", "layout"]
    timeout = 300

    def setup(self, pooler, layout):
        self.x = data(POOLER_SHAPE, layout)
        self.opts = dict(pooler_options(pooler), layout=layout, return_indices=True)
        numbapool.pool(pooler, self.x, **self.opts)

    def time_forward_indices(self, pooler, layout):
        numbapool.pool(pooler, self.x, **self.opts)


class TimePoolerBackwardIndices:
    """The poolers with indices, backward given their forward's indices (no recomputed
    forward): what a training step does."""

    params = ([p for p in POOLERS if "indices" in numbapool.get(p).capabilities], LAYOUTS)
    param_names = ["pooler", "layout"]
    timeout = 300

    def setup(self, pooler, layout):
        self.x = data(POOLER_SHAPE, layout)
        self.opts = dict(pooler_options(pooler), layout=layout)
        y, self.idx = numbapool.pool(pooler, self.x, return_indices=True, **self.opts)
        self.gy = np.ones_like(y)
        numbapool.pool_grad(pooler, self.x, self.gy, indices=self.idx, **self.opts)

    def time_backward(self, pooler, layout):
        numbapool.pool_grad(pooler, self.x, self.gy, indices=self.idx, **self.opts)
