"""Shared helpers: shapes, data and the options each window rule is benchmarked with."""

import numpy as np

import numbapool
from numbapool.testing import examples

LAYOUTS = ["channels_first", "channels_last"]

# One moderate 2-D shape for the per-pooler benchmarks (every registered pooler).
POOLER_SHAPE = (8, 64, 56, 56)


def data(shape, layout, dtype=np.float32):
    x = np.random.default_rng(0).uniform(0.5, 1.5, shape).astype(dtype)
    if layout == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    return x


def pooler_options(name):
    """The first geometry example of the pooler's window rule (2-D), plus a seed if needed."""
    opts = dict(examples(name, 2)[0])
    if not numbapool.get(name).deterministic:
        opts["seed"] = 0
    return opts
