"""numbapool: fast pooling operators, called by name, built from a window rule and a reduction.

>>> import numpy as np, numbapool
>>> numbapool.pool("avg", np.ones((1, 1, 4, 4)), 2).shape
(1, 1, 2, 2)
"""

from __future__ import annotations

from .api import get, pool, pool_grad, poolers, register, unregister
from .geometry import AxisWindows, explicit_axis
from .hookspecs import hookimpl
from .pooler import Param, Pooler
from .reduction import MAX_DIVISOR, Reduction, Sampling, Selection, Streaming, Weighted
from .windows import Adaptive, Global, Sliding, WindowContext, WindowPlan, WindowRule

__version__ = "0.1.0"

__all__ = [
    "pool",
    "pool_grad",
    "poolers",
    "get",
    "register",
    "unregister",
    "hookimpl",
    "Pooler",
    "Param",
    "Reduction",
    "Selection",
    "Streaming",
    "Sampling",
    "Weighted",
    "MAX_DIVISOR",
    "WindowRule",
    "WindowPlan",
    "WindowContext",
    "AxisWindows",
    "explicit_axis",
    "Sliding",
    "Adaptive",
    "Global",
    "__version__",
]
