"""numbapool-fractional: fractional max and average pooling, registered by name.

``numbapool.pool("fractional_max", x, output_size=..., seed=...)`` follows PyTorch's
``fractional_max_pool2d/3d`` (1-D too), reproducing it exactly given ``samples`` (PyTorch's
``_random_samples``); ``pseudo_random=True/False`` switches to Graham's (TensorFlow's)
pooling sequences, optionally ``overlapping``.  :func:`pooling_sequences` returns the
sequences a call with the same arguments uses.
"""

from __future__ import annotations

import numpy as np

from numbapool import Pooler, WindowContext, hookimpl
from numbapool.builtin.reductions import AVG, MAX
from numbapool.options import check_array, check_layout

from .window import Fractional

__version__ = "0.1.0"
__all__ = ["Fractional", "pooling_sequences"]


def pooling_sequences(x, *, seed=None, layout="channels_first", **options):
    """The pooling sequences ``pool("fractional_max", x, seed=seed, **options)`` uses.

    Parameters
    ----------
    x : array_like
        The input (only its shape and dtype are used).
    seed : int, optional
        The same seed as the pooling call.
    layout : {"channels_first", "channels_last"}
    **options
        ``kernel_size``, ``output_size``, ``output_ratio``, ``samples``, ``pseudo_random``,
        ``overlapping``, as for the pooling call.

    Returns
    -------
    list of ndarray
        Per spatial axis: for PyTorch's rule the window starts, ``(N, C, out)`` (each window
        has ``kernel_size`` elements); for Graham's, the boundaries ``a_0 = 0 < ... <
        a_out = L``.
    """
    layout = check_layout(layout)
    arr = check_array(np.asarray(x))
    spatial = arr.shape[2:] if layout == "channels_first" else arr.shape[1:-1]
    channels = arr.shape[1] if layout == "channels_first" else arr.shape[-1]
    context = WindowContext(arr.shape[0], channels, arr.dtype, np.random.default_rng(seed))
    return Fractional().axes(tuple(spatial), context, **options)[1]


@hookimpl
def register_poolers(register):
    rule = Fractional()
    register(Pooler("fractional_max", rule, MAX,
                    "fractional max pooling (PyTorch's rule, or Graham's sequences)",
                    deterministic=False))
    register(Pooler("fractional_avg", rule, AVG,
                    "fractional average pooling (PyTorch's rule, or Graham's sequences)",
                    deterministic=False))
