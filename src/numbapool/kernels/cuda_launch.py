"""Launch compiled CUDA kernels without Numba's per-call dispatch.

``kernel[grid, block](*args)`` types every argument, selects the overload, builds a launch
configuration and converts each argument in Python (an array becomes ``5 + 2 * ndim`` kernel
parameters) before ``cuda.core.launch``.  On an H200 host that took 38-44 us per launch,
against 7 us for ``cuda.core.launch`` with the same parameters packed (``tools/
cuda_overhead.py``).  Here the first launch of a kernel with given argument kinds goes through
Numba (which compiles it), and its compiled overload is kept; later launches with the same
kinds pack the parameters directly: arrays from their address, shape and strides, scalars as
Numba converts them.

Numba's array parameters are ``meminfo, parent, nitems, itemsize, data, *shape, *strides``
(byte strides), the layout of its array structure.  Should this module not find what it
needs in the installed numba-cuda (``overloads``, the code library's ``get_cufunc``,
``cuda.core.launch``), every launch goes through Numba as before; the simulator always does.
"""

from __future__ import annotations

import ctypes

import numpy as np

__all__ = ["launch", "bind", "Bound", "kind", "clear"]

# (kernel, argument kinds) -> (function, [converter per argument], stream), or None where
# the packed launch is not available for them.
_launchers: dict[tuple, tuple | None] = {}
_configs: dict[tuple[int, int], object] = {}
_ARRAY = None  # converter marker: pack as an array


def kind(arg: object) -> object:
    """What decides a kernel overload for ``arg``: an array's dtype, rank and layout as
    Numba types it (``C`` if C-contiguous, else ``F`` if Fortran-contiguous, else ``A``); a
    scalar's type."""
    if isinstance(arg, np.generic) or not hasattr(arg, "shape"):
        return type(arg)
    if isinstance(arg, np.ndarray):  # (host memory mapped for the device)
        c, f = arg.flags.c_contiguous, arg.flags.f_contiguous
    else:
        c, f = arg.is_c_contiguous(), arg.is_f_contiguous()
    return (arg.dtype.char, len(arg.shape), "C" if c else "F" if f else "A")


def clear() -> None:
    """Forget the kept overloads (tests)."""
    _launchers.clear()
    _configs.clear()


def _converters(types) -> list | None:
    """How each parameter of an overload with argument ``types`` is packed, or None when one
    is not a plain array, integer, float or boolean."""
    from numba.core import types as nt

    out: list = []
    for ty in types:
        if isinstance(ty, nt.Array):
            out.append(_ARRAY)
        elif isinstance(ty, nt.Boolean):
            out.append(bool)
        elif isinstance(ty, nt.Integer):
            out.append(getattr(ctypes, f"c_{ty}"))
        elif ty == nt.float64:
            out.append(ctypes.c_double)
        elif ty == nt.float32:
            out.append(ctypes.c_float)
        else:
            return None
    return out


def _keep(kernel, args: tuple, blocks: int, threads: int) -> tuple | None:
    """The compiled overload that the launch of ``kernel`` with ``args`` just ran, ready for
    packed launches (None if this numba-cuda lacks something needed)."""
    try:
        import cuda.core  # noqa: F401 - the packed launch needs it

        sig = tuple(kernel.typeof_pyval(a) for a in args)
        overload = kernel.overloads[sig]
        convert = _converters(overload.argument_types)
        if convert is None or getattr(overload, "debug", False):
            return None
        if any(cv is _ARRAY and not hasattr(a, "device_ctypes_pointer")
               for cv, a in zip(convert, args)):
            return None  # (a host array, which Numba copies to the device and back)
        function = overload._codelibrary.get_cufunc().kernel
        stream = kernel[blocks, threads].stream
    except (ImportError, AttributeError, KeyError, TypeError):
        return None
    return function, convert, stream


def _config(blocks: int, threads: int):
    cfg = _configs.get((blocks, threads))
    if cfg is None:
        from cuda.core import LaunchConfig

        cfg = _configs[blocks, threads] = LaunchConfig(grid=(blocks,), block=(threads,),
                                                       shmem_size=0)
    return cfg


_DATA = 4
"""Where an array's address is among its parameters (after meminfo, parent, nitems and
itemsize)."""


def pack(convert: list, args: tuple) -> list:
    """The kernel parameters of ``args`` (arrays: Numba device arrays)."""
    params: list = []
    for cv, a in zip(convert, args):
        if cv is _ARRAY:
            params += (0, 0, a.size, a.dtype.itemsize, address(a))
            params += a.shape
            params += a.strides
        else:
            params.append(cv(a))
    return params


def launch(kernel, blocks: int, threads: int, args: tuple, packed: bool = True) -> None:
    """Run ``kernel[blocks, threads](*args)``; packed after its first launch with these
    argument kinds (``packed`` False: always through Numba)."""
    key = (kernel, *map(kind, args)) if packed else None
    entry = _launchers.get(key) if packed else None
    if entry is None:
        kernel[blocks, threads](*args)
        if packed and key not in _launchers:
            _launchers[key] = _keep(kernel, args, blocks, threads)
        return
    from cuda.core import launch as core_launch

    function, convert, stream = entry
    core_launch(stream, _config(blocks, threads), function, *pack(convert, args))


class Bound:
    """A kernel launch whose parameters are packed once, except the addresses of some
    arrays, given to each call.  Keeps the other arrays alive (their addresses are packed)."""

    def __init__(self, function, config, stream, params: list, at: tuple[int, ...],
                 keep: list) -> None:
        self.function, self.config, self.stream = function, config, stream
        self.params, self.at, self.keep = params, at, keep

    def __call__(self, *addresses: int) -> None:
        from cuda.core import launch as core_launch

        params = self.params.copy()
        for i, address in zip(self.at, addresses):
            params[i] = address
        core_launch(self.stream, self.config, self.function, *params)


def bind(kernel, blocks: int, threads: int, args: tuple, vary: tuple[int, ...]
         ) -> Bound | None:
    """A :class:`Bound` launch of ``kernel`` with ``args``, whose arguments at positions
    ``vary`` (arrays of the same shape, strides and dtype) get new addresses at each call;
    None unless the kernel was launched with arguments of these kinds before and can be
    launched packed."""
    entry = _launchers.get((kernel, *map(kind, args)))
    if entry is None:
        return None
    function, convert, stream = entry
    params: list = []
    at = []
    for i, (cv, a) in enumerate(zip(convert, args)):
        if i in vary:
            if cv is not _ARRAY:
                raise ValueError(f"argument {i} is not an array")
            at.append(len(params) + _DATA)
        params += pack([cv], (a,))
    keep = [a for i, a in enumerate(args) if i not in vary]
    return Bound(function, _config(blocks, threads), stream, params, tuple(at), keep)


def address(a) -> int:
    """The device address of a Numba device array's first element."""
    return a.device_ctypes_pointer.value or 0
