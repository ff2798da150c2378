"""Window geometry for fractional max/avg pooling, as per-axis ``(start, count)`` tables.

NumPy, and one compiled loop for the per-plane starts. Two families of rules are provided:

**PyTorch** (``torch.nn.functional.fractional_max_pool2d`` / ``fractional_max_pool3d`` with
``_random_samples``; ``aten/src/ATen/native/FractionalMaxPool{2,3}d.cpp``).  For each
(batch, channel) plane and each spatial axis a uniform sample ``u`` gives the window starts::

    alpha  = (input_size - pool_size) / (output_size - 1)        # only when output_size > 1
    seq[i] = int((i + u) * alpha) - int(u * alpha)                # i < output_size - 1
    seq[output_size - 1] = input_size - pool_size

Every window has exactly ``pool_size`` elements.  All the arithmetic happens in the *input's*
scalar type (``scalar_t``): float32 inputs round ``alpha``, ``i + u`` and the products to
float32, float16/bfloat16 inputs to 16 bits.  ``int`` truncates toward zero.  Which column of
``_random_samples`` drives which axis is not the obvious one for 2-D (see
:func:`torch_sample_column`).

**Graham / TensorFlow** (Ben Graham 2014, "Fractional Max-Pooling", arXiv:1412.6071;
``tf.nn.fractional_max_pool`` / ``fractional_avg_pool``;
``tensorflow/core/kernels/fractional_pool_common.cc``).  A pooling sequence
``0 = a_0 < a_1 < ... < a_O = L`` whose increments are ``k = L // O`` or ``k + 1``, and windows
``[a_i, a_{i+1})`` or, when overlapping, ``[a_i, a_{i+1}]`` clipped to ``L - 1``.
"""

from __future__ import annotations

import math
import numbers
import operator

import numba
import numpy as np

from numbapool.kernels.launch import POSITIONS_SIGNATURE, SIGNATURE, address, contiguous

__all__ = [
    "torch_axis_starts",
    "torch_sample_column",
    "torch_output_size",
    "graham_sequence",
    "graham_windows",
    "graham_output_size",
]

_TORCH_DTYPES = ("float16", "bfloat16", "float32", "float64")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _as_int(name: str, value, minimum: int | None = None) -> int:
    """Return ``value`` as a Python int (bool rejected), checking ``value >= minimum``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        result = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and result < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {result}")
    return result


def _as_ratio(name: str, value) -> float:
    """Return ``value`` as a finite Python float (bool rejected)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return result


def _dtype_name(dtype) -> str:
    """Normalise ``dtype`` (NumPy type/dtype/string, ``torch.dtype``, ``"bfloat16"``) to a name."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype).removeprefix("torch.")
    if name not in _TORCH_DTYPES:
        raise ValueError(
            f"dtype must be one of {', '.join(_TORCH_DTYPES)} (the input's floating type), "
            f"got {dtype!r}"
        )
    return name


def _round_bfloat16(x) -> np.ndarray:
    """Round float32 values to the nearest bfloat16 (ties to even), returned as float32.

    Same rounding as ``c10::BFloat16`` (``round_to_nearest_even``); inputs must not be NaN.
    """
    bits = np.asarray(x, dtype=np.float32).view(np.uint32)
    lsb = (bits >> np.uint32(16)) & np.uint32(1)
    bits = (bits + np.uint32(0x7FFF) + lsb) & np.uint32(0xFFFF0000)
    return bits.view(np.float32)


# ----------------------------------------------------------------------------------------------
# PyTorch
# ----------------------------------------------------------------------------------------------


def torch_axis_starts(
    samples: np.ndarray, input_size: int, output_size: int, pool_size: int, dtype
) -> np.ndarray:
    """Window starts of PyTorch's fractional max pooling along one spatial axis.

    Reproduces ``generate_intervals`` of ``aten/src/ATen/native/FractionalMaxPool{2,3}d.cpp``
    bit for bit, including the rounding of the input's scalar type.  Window ``i`` of plane ``p``
    covers ``start[p, i], ..., start[p, i] + pool_size - 1`` (its count is always
    ``pool_size``).

    Parameters
    ----------
    samples : numpy.ndarray
        1-D array ``(P,)`` of this axis's samples, one per (batch, channel) plane in row-major
        order over ``(N, C)``: ``_random_samples[..., torch_sample_column(rank, axis)]``
        flattened.  Normally uniforms in ``[0, 1)``; any finite value is accepted, as torch
        does.  They are first converted to ``dtype`` (torch requires ``_random_samples`` to have
        the input's dtype).
    input_size : int
        Input length along the axis.
    output_size : int
        Output length along the axis, ``>= 1``.
    pool_size : int
        Kernel size along the axis, ``>= 1``; ``output_size + pool_size - 1 <= input_size``.
    dtype : numpy dtype-like, str or torch.dtype
        The input's floating type, in which torch does the arithmetic: ``np.float32``,
        ``np.float64``, ``np.float16`` or ``"bfloat16"`` (also ``torch.float32`` etc.).

    Returns
    -------
    numpy.ndarray
        int64 array ``(P, output_size)`` of window starts.

    Raises
    ------
    ValueError
        On invalid sizes, non-finite samples, an unsupported ``dtype``, or when the rounding of
        a 16-bit ``dtype`` pushes a window past the input end (torch then fails with an internal
        assertion ``w2 >= 0 && w2 < inputW``).

    Examples
    --------
    >>> torch_axis_starts(np.array([0.25, 0.75]), 10, 4, 2, np.float64)
    array([[0, 3, 6, 8],
           [0, 2, 5, 8]])
    """
    input_size = _as_int("input_size", input_size, 1)
    output_size = _as_int("output_size", output_size, 1)
    pool_size = _as_int("pool_size", pool_size, 1)
    if output_size + pool_size - 1 > input_size:
        raise ValueError(
            f"output_size ({output_size}) + pool_size ({pool_size}) - 1 must be <= input_size "
            f"({input_size})"
        )
    name = _dtype_name(dtype)
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"samples must be a 1-D array (one per plane), got shape {samples.shape}")
    if samples.dtype.kind not in "fiu":
        raise TypeError(f"samples must be a real numeric array, got dtype {samples.dtype}")
    if not np.all(np.isfinite(samples)):
        raise ValueError("samples must be finite")
    return _torch_starts(samples, input_size, output_size, pool_size, name)


def _torch_starts(samples: np.ndarray, input_size: int, output_size: int, pool_size: int,
                  name: str, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`torch_axis_starts` after its checks: ``samples`` a 1-D array of finite reals,
    the sizes valid ints, ``name`` a dtype name of ``_TORCH_DTYPES``.  Fractional pooling
    calls it on every call, for every axis, with arguments it has checked once (the checks
    cost 7% of a PyTorch-rule fractional max pool of (8, 64, 56, 56)).  The starts are
    written into ``out`` (a C- or F-contiguous int64 array of shape ``(planes,
    output_size)``) if given."""
    n_planes = samples.shape[0]
    last = input_size - pool_size
    starts = np.empty((n_planes, output_size), dtype=np.int64) if out is None else out
    if output_size == 1 or n_planes == 0:
        starts[...] = last
        return starts

    if name in ("float32", "float64"):
        # The same arithmetic, compiled: one pass instead of a dozen over (P, out) arrays
        # (this runs on every call, for every plane).
        ft, steps, alpha = _compiled_constants(input_size, output_size, pool_size, name)
        lo, hi = _compiled_starts(samples.astype(ft), steps, alpha, last, starts)
    else:
        i = np.arange(output_size - 1)
        if name == "bfloat16":
            # c10::BFloat16 arithmetic: every operation in float32, rounded back to
            # bfloat16; int + BFloat16 converts the int to BFloat16 first.
            r = _round_bfloat16
            u = r(samples.astype(np.float32))
            alpha = r(r(np.float32(last)) / r(np.float32(output_size - 1)))
            shifted = r(r(i.astype(np.float32))[None, :] + u[:, None])
            pos = r(shifted * alpha)
            offset = r(u * alpha)
        else:
            # NumPy float16 arithmetic computes in float32 and rounds, exactly like c10::Half.
            ft = np.dtype(name).type
            u = samples.astype(ft)
            alpha = ft(last) / ft(output_size - 1)
            pos = (i.astype(ft)[None, :] + u[:, None]) * alpha
            offset = u * alpha
        # static_cast<int>: truncation toward zero, as astype does.
        starts[:, :-1] = pos.astype(np.int64) - offset.astype(np.int64)[:, None]
        starts[:, -1] = last
        lo, hi = starts.min(), starts.max()

    _check_rounding(lo, hi, name, input_size, output_size, pool_size)
    return starts


def _compiled_constants(input_size: int, output_size: int, pool_size: int,
                        name: str) -> tuple[type, np.ndarray, np.floating]:
    """For :func:`_starts_into` in ``name`` (float32 or float64), ``output_size > 1``: the
    floating type, the steps ``0 .. output_size - 2`` in it, and ``alpha``."""
    ft = np.dtype(name).type
    return (ft, np.arange(output_size - 1).astype(ft),
            ft(input_size - pool_size) / ft(output_size - 1))


def _check_rounding(lo: int, hi: int, name: str, input_size: int, output_size: int,
                    pool_size: int) -> None:
    """The error for starts from ``lo`` to ``hi`` outside the input (rounding in a narrow
    floating type)."""
    last = input_size - pool_size
    if lo < 0 or hi > last:
        raise ValueError(
            f"{name} rounding puts a window outside the input (start range "
            f"[{lo}, {hi}], allowed [0, {last}]) for input_size="
            f"{input_size}, output_size={output_size}, pool_size={pool_size}; torch fails with "
            f"an internal assertion here"
        )


def _compiled_starts(u: np.ndarray, steps: np.ndarray, alpha: np.floating, last: int,
                     starts: np.ndarray) -> tuple[int, int]:
    """:func:`_starts_into` ``starts`` (C-contiguous), or, F-contiguous (the transpose of an
    ``(output_size, planes)`` array), :func:`_starts_into_by_position` its transpose."""
    if starts.flags.c_contiguous:
        return _starts_into(u, steps, alpha, last, starts)
    return _starts_into_by_position(u, steps, alpha, last, starts.T)


@numba.njit(inline="always")
def _start(step, u, alpha, offset, ity):
    """PyTorch's rule: ``int((step + u) * alpha) - offset``, ``offset`` being
    :func:`_offset`, in the type of ``u`` (float32 operations round to float32, as
    ``scalar_t`` arithmetic does), truncated toward zero (as ``static_cast<int>``) to the
    integer type ``ity`` (int32 conversions take twice the lanes of int64 ones; the values
    are the same for starts inside an axis of an array)."""
    return ity((step + u) * alpha) - offset


@numba.njit(inline="always")
def _offset(u, alpha, ity):
    """``int(u * alpha)``, of :func:`_start`."""
    return ity(u * alpha)


@numba.njit(cache=True, nogil=True)
def _starts_into(u, steps, alpha, last, starts):
    """``starts[p, i]``, the start of window ``i`` of plane ``p`` by :func:`_start`, for the
    first ``len(steps)`` columns, and ``last`` in the final column.  Returns the smallest
    and largest start."""
    lo = last
    hi = last
    for p in range(u.shape[0]):
        offset = _offset(u[p], alpha, np.int64)
        for i in range(steps.shape[0]):
            s = _start(steps[i], u[p], alpha, offset, np.int64)
            starts[p, i] = s
            lo = min(lo, s)
            hi = max(hi, s)
        starts[p, steps.shape[0]] = last
    return lo, hi


@numba.njit(cache=True, nogil=True)
def _starts_into_by_position(u, steps, alpha, last, starts_t):
    """:func:`_starts_into` into the transpose, ``starts_t[i, p]`` (``(output_size,
    planes)``, C-contiguous): the same arithmetic, each step's planes in one loop (SIMD)."""
    lo = last
    hi = last
    offset = np.empty(u.shape[0], dtype=np.int64)
    for p in range(u.shape[0]):
        offset[p] = _offset(u[p], alpha, np.int64)
    for i in range(steps.shape[0]):
        for p in range(u.shape[0]):
            s = _start(steps[i], u[p], alpha, offset[p], np.int64)
            starts_t[i, p] = s
            lo = min(lo, s)
            hi = max(hi, s)
    starts_t[steps.shape[0], :] = last
    return lo, hi


@numba.njit(cache=True, nogil=True)
def _int32_starts(u, steps, alpha, last, starts_t):
    """:func:`_starts_into_by_position` as int32 (for the kernels' callbacks, whose starts
    the library checks), without the smallest and largest start: 2048 starts of 128 planes
    in 17 us, against 51 us (the extremes' reductions cost most)."""
    offset = np.empty(u.shape[0], dtype=np.int32)
    for p in range(u.shape[0]):
        offset[p] = _offset(u[p], alpha, np.int32)
    for i in range(steps.shape[0]):
        for p in range(u.shape[0]):
            starts_t[i, p] = _start(steps[i], u[p], alpha, offset[p], np.int32)
    starts_t[steps.shape[0], :] = last


@numba.njit(cache=True, nogil=True)
def _int32_plane(u, steps, alpha, last, starts, ft):
    """:func:`_int32_starts` of one plane (``u`` a scalar of floating type ``ft``, ``starts``
    of ``len(steps) + 1``), each step converted from its index (``steps`` holds the same
    values; reading them cost more in the kernels' planes: a load stream of its own)."""
    offset = _offset(u, alpha, np.int32)
    for i in range(steps.shape[0]):
        starts[i] = _start(ft(np.int32(i)), u, alpha, offset, np.int32)
    starts[steps.shape[0]] = last


_PART_HEAD = 2
"""The first slots of :func:`_fill_parts`: the number of axes, and the itemsize of the
floating type (4: float32, 8: float64)."""
_PART_AXIS = 8
"""The slots of an axis in :func:`_fill_parts`: the addresses and sizes of the samples
(planes) and the steps, the address of ``alpha`` (an array of one), ``last``, the address
of the starts, and their layout: 0 for C-contiguous ``(planes, steps + 1)``, 1 for its
F-contiguous transpose (planes by position)."""


@numba.njit(cache=True, nogil=True)
def _fill_rows(s, first, end, ft):
    """:func:`_starts_into` (or :func:`_starts_into_by_position`) for planes ``first`` to
    ``end - 1`` of every axis in slots ``s`` (see :data:`_PART_AXIS`), in floating type
    ``ft``."""
    for a in range(s[0]):
        at = _PART_HEAD + _PART_AXIS * a
        planes, n = s[at + 1], s[at + 3]
        u = contiguous(s[at], (planes,), ft)
        steps = contiguous(s[at + 2], (n,), ft)
        alpha = contiguous(s[at + 4], (1,), ft)[0]
        if s[at + 7]:
            starts_t = contiguous(s[at + 6], (n + 1, planes), np.int64)
            _starts_into_by_position(u[first:end], steps, alpha, s[at + 5],
                                     starts_t[:, first:end])
        else:
            starts = contiguous(s[at + 6], (planes, n + 1), np.int64)
            _starts_into(u[first:end], steps, alpha, s[at + 5], starts[first:end])


@numba.njit(cache=True, nogil=True)
def _slots(slots):
    """The itemsize of the floating type and the slots (see :data:`_PART_HEAD`) at
    ``slots``."""
    head = contiguous(address(slots), (_PART_HEAD,), np.int64)
    return head[1], contiguous(address(slots), (_PART_HEAD + _PART_AXIS * head[0],), np.int64)


@numba.cfunc(SIGNATURE, cache=True, nogil=True)
def _fill_parts(slots, first, end):
    """The C callback of :class:`numbapool.windows.StartsInParts`: float32 or float64 starts
    (see :data:`_PART_HEAD`)."""
    itemsize, s = _slots(slots)
    if itemsize == 4:
        _fill_rows(s, first, end, np.float32)
    else:
        _fill_rows(s, first, end, np.float64)
    return 1


@numba.njit(cache=True, nogil=True)
def _int32_rows(s, first, count, into, ft):
    """The starts of planes ``first`` to ``first + count - 1`` of every axis in slots ``s``
    (see :data:`_PART_AXIS`), as int32 ``(out, count)`` blocks into the memory at ``into``,
    axis after axis: one plane by :func:`_int32_plane` (SIMD over its windows), several by
    :func:`_int32_starts` (SIMD over the planes)."""
    at_out = 0
    for a in range(s[0]):
        at = _PART_HEAD + _PART_AXIS * a
        n = s[at + 3]
        u = contiguous(s[at], (s[at + 1],), ft)
        steps = contiguous(s[at + 2], (n,), ft)
        alpha = contiguous(s[at + 4], (1,), ft)[0]
        if count == 1:
            starts = contiguous(into + 4 * at_out, (n + 1,), np.int32)
            _int32_plane(u[first], steps, alpha, s[at + 5], starts, ft)
        else:
            starts_t = contiguous(into + 4 * at_out, (n + 1, count), np.int32)
            _int32_starts(u[first:first + count], steps, alpha, s[at + 5], starts_t)
        at_out += (n + 1) * count


@numba.njit(cache=True, nogil=True)
def _fill_int32(slots, first, count, into):
    """:func:`_int32_rows` in the floating type of the slots of :func:`_fill_parts`."""
    itemsize, s = _slots(slots)
    if itemsize == 4:
        _int32_rows(s, first, count, into, np.float32)
    else:
        _int32_rows(s, first, count, into, np.float64)
    return 1


@numba.cfunc(SIGNATURE, cache=True, nogil=True)
def _fill_plane(slots, plane, into):
    """The plane callback of :class:`numbapool.windows.StartsInParts` (``plane_address``):
    the slots of :func:`_fill_parts`."""
    return _fill_int32(slots, plane, 1, into)


@numba.cfunc(POSITIONS_SIGNATURE, cache=True, nogil=True)
def _fill_positions(slots, first, count, into):
    """The by-position callback of :class:`numbapool.windows.StartsInParts`
    (``positions_address``): the slots of :func:`_fill_parts`."""
    return _fill_int32(slots, first, count, into)


def torch_sample_column(rank: int, axis: int) -> int:
    """Column of ``_random_samples`` that drives spatial axis ``axis`` in PyTorch.

    PyTorch's 2-D kernel reads the samples of a plane as ``(W, H)`` -- column 0 drives the
    width (last axis), column 1 the height -- while the 3-D kernel reads them as ``(T, H, W)``
    in axis order.  Rank 1 (no torch function) uses column 0, which is also what a 1-D pool
    emulated by ``fractional_max_pool2d`` on ``(N, C, 1, L)`` uses for ``L``.

    Parameters
    ----------
    rank : int
        Number of spatial axes: 1, 2 or 3.
    axis : int
        Spatial axis, ``0 <= axis < rank`` (0 = first spatial axis); negative values count from
        the end.

    Returns
    -------
    int
        Column index into ``_random_samples[..., :]`` (shape ``(N, C, rank)``).

    Examples
    --------
    >>> [torch_sample_column(2, a) for a in range(2)]
    [1, 0]
    >>> [torch_sample_column(3, a) for a in range(3)]
    [0, 1, 2]
    """
    rank = _as_int("rank", rank)
    if rank not in (1, 2, 3):
        raise ValueError(f"rank must be 1, 2 or 3, got {rank}")
    axis = _as_int("axis", axis)
    if not -rank <= axis < rank:
        raise ValueError(f"axis must be in [{-rank}, {rank}) for rank {rank}, got {axis}")
    axis %= rank
    if rank == 2:
        return 1 - axis
    return axis


def torch_output_size(
    input_size: int,
    kernel_size: int,
    output_size: int | None = None,
    output_ratio: float | None = None,
    *,
    rank: int = 2,
) -> int:
    """Output length along one axis for PyTorch's fractional max pooling, with its checks.

    ``output_ratio`` gives ``int(input_size * output_ratio)`` (Python float arithmetic, as in
    ``torch.nn.functional``).  Exactly one of ``output_size`` and ``output_ratio`` must be
    given and the ratio must lie in ``(0, 1)``, as ``torch.nn.FractionalMaxPool2d/3d`` demand.
    The result must satisfy torch's size check: ``output + kernel_size - 1 <= input_size`` for
    ranks 1 and 2, and the stricter ``output + kernel_size - 1 < input_size`` of
    ``fractional_max_pool3d`` for rank 3.

    Parameters
    ----------
    input_size : int
        Input length along the axis, ``>= 1``.
    kernel_size : int
        Kernel length along the axis, ``>= 1``.
    output_size : int, optional
        Requested output length, ``>= 1``.
    output_ratio : float, optional
        Output length as a fraction of ``input_size``, in ``(0, 1)``.
    rank : int, default 2
        Number of spatial axes (1, 2 or 3); selects the size check.

    Returns
    -------
    int
        The output length.

    Raises
    ------
    ValueError
        Naming the offending argument.

    Examples
    --------
    >>> torch_output_size(50, 3, output_ratio=0.5)
    25
    >>> torch_output_size(8, 3, 6)
    6
    """
    input_size = _as_int("input_size", input_size, 1)
    kernel_size = _as_int("kernel_size", kernel_size, 1)
    rank = _as_int("rank", rank)
    if rank not in (1, 2, 3):
        raise ValueError(f"rank must be 1, 2 or 3, got {rank}")
    if (output_size is None) == (output_ratio is None):
        raise ValueError("exactly one of output_size and output_ratio must be given")
    if output_ratio is not None:
        ratio = _as_ratio("output_ratio", output_ratio)
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"output_ratio must be in (0, 1), got {output_ratio!r}")
        out = int(input_size * ratio)
        if out < 1:
            raise ValueError(
                f"output_ratio {output_ratio!r} gives an empty output for input_size {input_size}"
            )
        what = f"output_ratio {output_ratio!r} (output {out})"
    else:
        out = _as_int("output_size", output_size, 1)
        what = f"output_size {out}"
    if rank == 3 and out + kernel_size - 1 >= input_size:
        raise ValueError(
            f"kernel_size {kernel_size} too large for input_size {input_size} with {what}: "
            f"fractional_max_pool3d needs output + kernel_size - 1 < input_size"
        )
    if out + kernel_size - 1 > input_size:
        raise ValueError(
            f"kernel_size {kernel_size} too large for input_size {input_size} with {what}: "
            f"output + kernel_size - 1 must be <= input_size"
        )
    return out


# ----------------------------------------------------------------------------------------------
# Graham / TensorFlow
# ----------------------------------------------------------------------------------------------


def _pseudo_random_u_max(input_size: int, output_size: int) -> float:
    """Upper bound ``max_u`` of TensorFlow's pseudo-random offset ``u`` (double arithmetic)."""
    alpha = input_size / output_size
    k = input_size // output_size
    u_max1 = (k + 2) / alpha - 1
    u_max2 = (input_size + 1 - k) / alpha - (output_size - 1)
    return min(u_max1, u_max2)


def _pseudo_random_sequence(input_size: int, output_size: int, u: float) -> np.ndarray:
    """TensorFlow's pseudo-random cumulative sequence for a given offset ``u`` (0-based).

    ``a_0 = 0``, ``a_O = L`` and ``a_i = ceil(alpha * (i + u)) - 1`` for ``0 < i < O``, in
    double precision (TensorFlow's 1-based ``cum_seq`` minus one).
    """
    alpha = input_size / output_size
    seq = np.empty(output_size + 1, dtype=np.int64)
    seq[0] = 0
    seq[output_size] = input_size
    i = np.arange(1, output_size, dtype=np.float64)
    seq[1:output_size] = np.ceil(alpha * (i + u)).astype(np.int64) - 1
    return seq


def _checked_pseudo_random_sequence(input_size: int, output_size: int, u: float) -> np.ndarray:
    """:func:`_pseudo_random_sequence`, falling back to ``u = 0`` if rounding breaks the steps.

    ``max_u`` and ``alpha * (i + u)`` are rounded, so for ``u`` within a few ulps of ``max_u``
    the first or last step can leave ``{k, k + 1}`` (``k - 1``, possibly an empty window for
    ``k = 1``); TensorFlow only ``DCHECK``s this.  Such a ``u`` (drawn with probability about
    ``1e-16``) is replaced by ``u = 0``, whose steps are always valid for non-integer
    ``alpha``.
    """
    seq = _pseudo_random_sequence(input_size, output_size, u)
    k = input_size // output_size
    steps = np.diff(seq)
    if np.all((steps == k) | (steps == k + 1)):
        return seq
    return _pseudo_random_sequence(input_size, output_size, 0.0)


def graham_sequence(
    input_size: int, output_size: int, rng: np.random.Generator, pseudo_random: bool
) -> np.ndarray:
    """Pooling sequence of Graham's fractional pooling, as TensorFlow generates it.

    Follows ``GeneratePoolingSequence`` (``tensorflow/core/kernels/fractional_pool_common.cc``)
    with ``L = input_size``, ``O = output_size``, ``alpha = L / O`` and ``k = L // O``:

    * ``L % O == 0``: every increment is ``k`` (regular pooling; no random number is drawn).
    * ``pseudo_random=True``: ``u = rng.random() * max_u`` with
      ``max_u = min((k + 2) / alpha - 1, (L + 1 - k) / alpha - (O - 1))``, which keeps the first
      and the last increments in ``{k, k + 1}``; then ``a_0 = 0``, ``a_O = L`` and
      ``a_i = ceil(alpha * (i + u)) - 1`` for ``0 < i < O`` (double precision).  (If
      rounding at ``u`` within a few ulps of ``max_u`` breaks the step bounds below, ``u = 0``
      is used instead; TensorFlow would return the broken sequence.)
    * ``pseudo_random=False``: ``L % O`` increments of ``k + 1`` and ``O - L % O`` of ``k``,
      in an order drawn uniformly at random (``rng.permutation``).

    In every case the increments are ``k`` or ``k + 1`` (TensorFlow's ``DCHECK``), so for
    ``1 < alpha < 2`` they are 1 or 2.  The random numbers come from ``rng`` rather than
    TensorFlow's Philox generator, so sequences match TensorFlow's in law, not bit for bit.

    Parameters
    ----------
    input_size : int
        Input length ``L``, ``>= 1``.
    output_size : int
        Output length ``O``, ``1 <= O <= L``.
    rng : numpy.random.Generator
        Source of randomness; the same seed gives the same sequence.
    pseudo_random : bool
        Pseudo-random (``True``) or random (``False``) sequence.

    Returns
    -------
    numpy.ndarray
        int64 array ``(O + 1,)``: ``0 = a_0 < a_1 < ... < a_O = L``.

    Examples
    --------
    >>> graham_sequence(10, 5, np.random.default_rng(0), pseudo_random=True)
    array([ 0,  2,  4,  6,  8, 10])
    >>> seq = graham_sequence(10, 7, np.random.default_rng(0), pseudo_random=False)
    >>> sorted(np.diff(seq).tolist())
    [1, 1, 1, 1, 2, 2, 2]
    """
    input_size = _as_int("input_size", input_size, 1)
    output_size = _as_int("output_size", output_size, 1)
    if output_size > input_size:
        raise ValueError(f"output_size ({output_size}) must be <= input_size ({input_size})")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    k, n_long = divmod(input_size, output_size)
    if n_long == 0:
        return np.arange(output_size + 1, dtype=np.int64) * k
    if pseudo_random:
        u = rng.random() * _pseudo_random_u_max(input_size, output_size)
        return _checked_pseudo_random_sequence(input_size, output_size, u)
    diff = np.full(output_size, k, dtype=np.int64)
    diff[:n_long] += 1
    seq = np.zeros(output_size + 1, dtype=np.int64)
    np.cumsum(rng.permutation(diff), out=seq[1:])
    return seq


def graham_windows(
    sequence: np.ndarray, input_size: int, overlapping: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-output windows ``(start, count)`` of a Graham/TensorFlow pooling sequence.

    Window ``i`` starts at ``a_i`` and ends (inclusive) at ``a_{i+1} - 1``, or at ``a_{i+1}``
    when ``overlapping`` (the boundary element is shared with the next window), the end being
    clipped to ``input_size - 1`` -- as in TensorFlow's ``FractionalMaxPoolOp`` /
    ``FractionalAvgPoolOp``.

    Parameters
    ----------
    sequence : numpy.ndarray
        1-D integer pooling sequence ``(O + 1,)`` with ``O >= 1``, ``a_0 = 0``,
        ``a_O = input_size``, strictly increasing (as from :func:`graham_sequence`).
    input_size : int
        Input length ``L``.
    overlapping : bool
        Whether neighbouring windows share their boundary element.

    Returns
    -------
    start, count : numpy.ndarray
        int64 arrays ``(O,)``; window ``i`` is ``start[i], ..., start[i] + count[i] - 1``.

    Examples
    --------
    >>> seq = np.array([0, 2, 3, 5])
    >>> graham_windows(seq, 5, overlapping=False)
    (array([0, 2, 3]), array([2, 1, 2]))
    >>> graham_windows(seq, 5, overlapping=True)
    (array([0, 2, 3]), array([3, 2, 2]))
    """
    input_size = _as_int("input_size", input_size, 1)
    seq = np.asarray(sequence)
    if seq.ndim != 1 or seq.shape[0] < 2:
        raise ValueError(f"sequence must be 1-D with at least 2 entries, got shape {seq.shape}")
    if seq.dtype.kind not in "iu":
        raise TypeError(f"sequence must have an integer dtype, got {seq.dtype}")
    seq = seq.astype(np.int64)
    if seq[0] != 0 or seq[-1] != input_size:
        raise ValueError(
            f"sequence must start at 0 and end at input_size ({input_size}), "
            f"got {seq[0]} ... {seq[-1]}"
        )
    if np.any(np.diff(seq) <= 0):
        raise ValueError("sequence must be strictly increasing")
    start = seq[:-1].copy()
    end = seq[1:] if overlapping else seq[1:] - 1
    end = np.minimum(end, input_size - 1)
    return start, end - start + 1


def graham_output_size(
    input_size: int, output_size: int | None = None, output_ratio: float | None = None
) -> int:
    """Output length for Graham/TensorFlow fractional pooling along one axis.

    For consistency with the PyTorch rule, the ratio is an *output* ratio:
    ``output = int(input_size * output_ratio)`` with ``output_ratio`` in ``(0, 1]``.
    TensorFlow's ``pooling_ratio`` ``p >= 1`` corresponds to ``output_ratio = 1 / p``; to
    reproduce TensorFlow's exact rounding, ``floor(float32(L) / float32(p))``, compute the size
    and pass it as ``output_size``.  Exactly one of ``output_size`` and ``output_ratio`` must be
    given, and the output must satisfy ``1 <= output <= input_size``.

    Parameters
    ----------
    input_size : int
        Input length, ``>= 1``.
    output_size : int, optional
        Requested output length, ``1 <= output_size <= input_size``.
    output_ratio : float, optional
        Output length as a fraction of ``input_size``, in ``(0, 1]``.

    Returns
    -------
    int
        The output length.

    Raises
    ------
    ValueError
        Naming the offending argument.

    Examples
    --------
    >>> graham_output_size(25, output_ratio=1 / 1.44)
    17
    >>> graham_output_size(25, 17)
    17
    """
    input_size = _as_int("input_size", input_size, 1)
    if (output_size is None) == (output_ratio is None):
        raise ValueError("exactly one of output_size and output_ratio must be given")
    if output_ratio is not None:
        ratio = _as_ratio("output_ratio", output_ratio)
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"output_ratio must be in (0, 1], got {output_ratio!r}")
        out = int(input_size * ratio)
        if out < 1:
            raise ValueError(
                f"output_ratio {output_ratio!r} gives an empty output for input_size {input_size}"
            )
        return out
    out = _as_int("output_size", output_size, 1)
    if out > input_size:
        raise ValueError(f"output_size ({out}) must be <= input_size ({input_size})")
    return out
