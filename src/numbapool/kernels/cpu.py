"""Run the CPU kernels on normalised arrays.

Inputs here are already checked: 5-D (three spatial axes, 1-D/2-D problems lifted with size-1
axes), C-contiguous in their layout, of a dtype Numba supports; ``axes`` holds three
:class:`~numbapool.geometry.AxisWindows`; ``prm`` is float64 ``(1 or C, n_params)``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numba
import numpy as np

from .. import buffers
from ..geometry import AxisWindows
from ..reduction import Reduction, Sampling, Selection, Streaming, Weighted
from . import batch_starts, mapped, routing, transpose
from .codegen import get_kernel
from .launch import Before, _threads
from .masked_indices import MASKED_INDICES, MASKED_INDICES_STREAM_MIN_BYTES, fold_name
from .params import for_kernel
from .templates import (
    BY2_BLOCK,
    BY2_MIN_OUT,
    COLS_VARIANTS,
    DIRECT_MIN_OUT,
    DIRECT_VARIANTS,
    INDICES_ROWS_VARIANTS,
    LINEAR_PLANES_BLOCK,
    MASKED_MAX_READS,
    MASKED_VARIANTS,
    PER_CHANNEL,
    SAMPLING_ROW_OUTPUTS,
    SCATTER_CHANNELS,
    _masked_name,
    cl_fold_variant,
    cols_fast_path,
    cols_variant,
    global_backward_path,
    global_fast_path,
    grad_reads_acc,
    holds_components,
    linear_backward_path,
    native_channels_last,
    row_fast_path,
)
from .tiles import IN, OUT, TILE_PLANES, UNUSED, TiledCall

__all__ = ["forward", "plan_forward", "ForwardPlan", "backward", "param_grad", "out_shape",
           "masked_channels_last", "masked_variant", "masked_indices_channels_last",
           "masked_indices_variant", "SCATTER_MIN_PLANES", "TiledChannelsLast",
           "TILES_MAX_ROW", "TILES_MAX_PLANE"]

SCATTER_MIN_PLANES = 8
"""Channels-first backward scatters per (n, c) plane when there are at least this many planes
(one thread owns a plane: no races, deterministic): a selection's gradient by its forward's
indices where a kernel other than the per-window one gives them (:func:`_indexed_forward`),
else by searching each window for its output; with fewer planes it gathers through the
inverse map, which parallelises over input rows."""


GATHER_ROW_PER_WINDOW = 32
"""The most input elements along the last axis per window for which a channels-first
selection with indices folds whole input rows (the gather kernel,
:func:`~numbapool.kernels.templates._cf_forward_indices_gather`): it folds every element
of a row, where the per-window kernel reads only the windows' taps (a branch a tap, about
ten times the time of a vectorised element), so sparse windows keep that kernel."""


def out_shape(x: np.ndarray, axes: Sequence[AxisWindows], layout: str) -> tuple[int, ...]:
    spatial = tuple(a.out for a in axes)
    if layout == "channels_first":
        return (x.shape[0], x.shape[1], *spatial)
    return (x.shape[0], *spatial, x.shape[4])


@lru_cache(maxsize=256)
def _dk(steps: tuple[int, ...], extents: tuple[int, ...]) -> np.ndarray:
    dk = np.array([steps, extents], dtype=np.int64)
    dk.setflags(write=False)
    return dk


def _tables(axes: tuple[AxisWindows, ...]) -> tuple:
    """The window tables and ``dk``.  (Cached by the axes' integers, not by the axes: rules
    such as fractional pooling make new, large per-plane tables on every call, which a cache
    of axes would keep alive.)"""
    return (*(a.table for a in axes), _dk(tuple(a.step for a in axes),
                                          tuple(a.extent for a in axes)))


def _divisors(axes: Sequence[AxisWindows], include_pad: bool, override: float | None,
              zero: np.generic | None = None) -> list:
    """The divisor arguments: float64, or float32 for a float32 accumulator ``zero`` (a
    float32 reduction then computes in float32; window counts below 2**24 are exact, and
    float32 division of a float32 sum rounds as float64 division then rounding would)."""
    if zero is not None and np.asarray(zero).dtype == np.float32:
        return [a.divisor(include_pad, np.float32) for a in axes] + [
            np.float32(override or 0.0)]
    return [a.divisor(include_pad) for a in axes] + [float(override or 0.0)]


def _row_divisors(axes: Sequence[AxisWindows], include_pad: bool, override: float | None,
                  zero: np.generic) -> list:
    """:func:`_divisors` for kernels that read each divisor table by its own number of
    rows (``backward_linear_planes``): a table whose planes all have one row of values
    (fractional pooling's padded count, one value given as a view of it) as that row, not
    written out for every plane (1-D pooling of (32, 128, 4096): a (4096, 2867) table in
    float64, then float32, 40 ms a call)."""
    f32 = np.asarray(zero).dtype == np.float32
    dtype = np.float32 if f32 else np.float64
    rows = []
    for a in axes:
        count = a.padded_count if include_pad else a.count
        if count.shape[0] > 1 and count.strides[0] == 0:
            rows.append(np.ascontiguousarray(count[:1], dtype=np.float64).astype(dtype))
        else:
            rows.append(a.divisor(include_pad, dtype))
    return rows + [dtype(override or 0.0)]


def _inverse(axes: Sequence[AxisWindows]) -> list:
    args: list = []
    for a in axes:
        args += [a.inv_ptr, a.inv_win]
    return args


def _zero(reduction: Reduction, dtype: np.dtype):
    if isinstance(reduction, Sampling):
        return np.float64(0.0)
    return reduction.acc_dtype(dtype).type(0)


@dataclass(frozen=True)
class ForwardPlan:
    """A forward kernel call with everything but the data decided: ``run(x)`` pools an array
    of the planned shape and dtype.  Repeated calls with the same arguments keep the plan and
    skip the dispatch logic; after the first, the kernel's fixed arguments are packed
    already (:meth:`numbapool.kernels.launch.Launcher.bind`)."""

    kernel: Callable
    shape: tuple[int, ...]
    dtype: np.dtype
    with_indices: bool  # the kernel writes indices (returned if ``return_indices``)
    return_indices: bool
    args: tuple  # after (x, out[, idx])
    sampling: bool  # ``u`` is the last argument, given to run()
    # A masked channels-last kernel (:data:`MASKED_VARIANTS`; with indices,
    # :mod:`numbapool.kernels.masked_indices`) takes ``miss`` after ``out`` (and ``idx``),
    # one flag per task: ``tasks`` of them; ``fallback``, if any, runs the tasks it leaves.
    tasks: int | None = None
    fallback: Callable | None = None
    # (a channels-last sampling kernel reads ``u``, drawn channels first, transposed)
    u_channels_last: bool = False
    _bound: dict = field(default_factory=dict, compare=False, repr=False)

    def _launch(self, *arrays: np.ndarray, before: Before | None) -> None:
        # The first run packs every argument; a plan run again (the same call repeated) packs
        # its fixed arguments once, for all later runs.  (Plans of random windows run once.)
        bound = self._bound.get("bound")
        if bound is not None:
            bound(*arrays, before=before)
            return
        self.kernel(*arrays, *self.args, before=before)
        if self._bound.get("ran") and all(a.flags.c_contiguous for a in arrays):
            self._bound["bound"] = self.kernel.bind((*arrays, *self.args), len(arrays))
        self._bound["ran"] = True

    def run(self, x: np.ndarray, u: np.ndarray | None = None, before: Before | None = None
            ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(out, indices or None)`` for ``x``; ``before``: a step each kernel thread runs
        first (:func:`numbapool.kernels.launch.drive_after`)."""
        out = buffers.empty(self.shape, self.dtype)
        if self.tasks is not None:  # (the masked kernels: the kernel flags, ``fallback`` runs)
            # (zeros: a part whose table restart refused runs neither kernel)
            miss = (np.ones if self.fallback is None else np.zeros)(self.tasks, np.uint8)
            idx = buffers.empty(self.shape, np.int64) if self.with_indices else None
            arrays = (x, out, miss) if idx is None else (x, out, idx, miss)
            self._launch(*arrays, before=before)
            if self.fallback is not None and np.count_nonzero(miss):
                self.fallback(*arrays, *self.args)
            return out, (idx if self.return_indices else None)
        if not self.with_indices:
            self._launch(x, out, before=before)
            return out, None
        idx = buffers.empty(self.shape, np.int64)
        if self.sampling:
            if self.u_channels_last:
                u = transpose.to_channels_last(u)
            self.kernel(x, out, idx, *self.args, u, before=before)
        else:
            self._launch(x, out, idx, before=before)
        return out, (idx if self.return_indices else None)


_GATHER_PLANES = {"forward_cols_gather": "forward_cols_gather_planes",
                  "forward_cols_gather_by2": "forward_cols_gather_planes_by2"}
"""The gather kernels, and the twin of each that computes each plane's starts
(:func:`with_plane_fill`)."""


def with_plane_fill(plan: ForwardPlan, reduction: Reduction,
                    axes: Sequence[AxisWindows], fill: tuple[int, int]
                    ) -> tuple[ForwardPlan, np.ndarray] | None:
    """``plan`` (a channels-first forward pass whose per-plane windows are all whole) with
    each plane's window starts computed by the kernel's threads into their own scratch,
    by the C callback ``fill`` (address and slots: ``plane_address`` and ``slots`` of a
    :class:`numbapool.windows.StartsInParts`), for the per-plane axes of ``axes`` (the
    kernel's three), or None where its kernel has no such variant
    (:data:`~numbapool.kernels.templates.PLANES_VARIANTS`, and the planes variant of
    :data:`~numbapool.kernels.templates.BY2_VARIANTS` for the stride-2 gather kernel).  Also
    the kernel's ``pf`` argument, whose last three values flag the axes whose starts a part
    found outside them (the output is then not valid); the caller clears them before a
    run."""
    planes = next((p for v, p in _GATHER_PLANES.items()
                   if plan.kernel is get_kernel(reduction, "channels_first", v)), None)
    if planes is None:
        return None
    pf = _fill_argument(fill, axes, 1)
    kernel = get_kernel(reduction, "channels_first", planes)
    return replace(plan, kernel=kernel, args=(*plan.args, pf), _bound={}), pf


def _fill_argument(fill: tuple[int, int], axes: Sequence[AxisWindows], planes: int
                   ) -> np.ndarray:
    """The ``pf`` argument of the kernels that compute their window starts: the callback's
    address and slots; per axis the offset of its starts in the callback's output (the
    per-plane axes' ``out * planes`` int32 values one after the other; -1 for an axis every
    plane shares), the last start inside it, and a flag, cleared."""
    offsets, at = [], 0
    for a in axes:
        offsets.append(-1 if a.planes == 1 else at)
        at += 0 if a.planes == 1 else a.out * planes
    return np.array([*fill, *offsets, *(a._last_start() for a in axes), 0, 0, 0],
                    dtype=np.int64)


def with_positions_fill(plan: ForwardPlan, reduction: Reduction,
                        axes: Sequence[AxisWindows], fill: tuple[int, int], channels: int,
                        parts: int | None = None) -> tuple[ForwardPlan, np.ndarray] | None:
    """``plan`` (a channels-last masked forward pass, :data:`MASKED_VARIANTS`) with each
    batch's window starts computed by the kernel's threads, each into its own rows of a
    scratch, by the C callback ``fill`` (address and slots: ``positions_address`` and
    ``slots`` of a :class:`numbapool.windows.StartsInParts`) for the per-plane axes of
    ``axes`` (the kernel's three; the last must be one), or None where it is not such a
    pass.  Also the kernel's ``pf`` argument (see :mod:`numbapool.kernels.batch_starts`),
    whose flags (:data:`~numbapool.kernels.batch_starts.FLAGS`) mark the axes whose starts
    a part found outside them (the output is then not valid); the caller clears them before
    a run.  The scratch has rows for ``parts`` parts, by default the threads Numba runs now:
    the plan is not valid for a run on more (:func:`positions_parts`).
    (:func:`with_plane_fill` for the masked kernels.)"""
    def variant(kernel: Callable | None) -> str | None:
        return next((v for v in MASKED_VARIANTS
                     if kernel is get_kernel(reduction, "channels_last", v)), None)

    def planes(kernel: Callable | None) -> Callable | None:
        v = variant(kernel)
        return None if v is None else get_kernel(reduction, "channels_last", v + "_planes")

    masked = None if plan.tasks is None or axes[2].planes == 1 else variant(plan.kernel)
    if masked is None:
        return None
    kernel = get_kernel(reduction, "channels_last", masked + "_planes")
    # (the kernels for one row of windows make the last axis's extremes themselves on
    # batches of one output row: see templates._position_offsets)
    rows, _, deep = MASKED_VARIANTS[masked]
    extremes = rows == 1 and deep == 0 and axes[0].out * axes[1].out == 1
    # (the kernel reads its tables, ``(parts, ...)``, where the plan's read a batch's rows)
    pf, tables = batch_starts.scratch(
        _fill_argument(fill, axes, channels), [a.out for a in axes], channels,
        _threads() if parts is None else parts,
        plan.args[:2], extremes)
    return replace(plan, kernel=kernel, fallback=planes(plan.fallback),
                   args=(*tables, *plan.args[4:], pf), _bound={}), pf


def positions_parts(pf: np.ndarray) -> int:
    """The threads the scratch of a pass of :func:`with_positions_fill` (``pf``, its
    argument) has rows for."""
    return int(pf[batch_starts.PARTS])


VIA_CHANNELS_LAST_MIN_CHANNELS = 8
"""Channels-first selections with indices, where the row kernel with indices
(:func:`_selection_indices_variant`) does not apply, run as channels-last kernels between
two parallel transposes when there are at least this many channels (the per-window kernel
with index tracking does not vectorise: measured 72 ms against 31 ms for the (32, 64, 112, 112)
3x3/s2 max pool); with fewer, the channels-last inner loops are too short to pay.  The
gradients of smooth non-linear reductions take the same threshold
(:func:`_grad_runs_channels_last`), and channels-first passes with per-plane windows on small
planes (:func:`_small_planes_via_last`)."""


def _small_planes_via_last(reduction: Reduction, x: np.ndarray, axes: Sequence[AxisWindows],
                           prm: np.ndarray) -> bool:
    """Whether a channels-first forward pass (values only) of ``x`` (5-D) with per-plane
    windows runs as the masked channels-last kernel between two transposes: planes of at
    most :data:`VIA_MAX_PLANE` elements and at least ``VIA_CHANNELS_LAST_MIN_CHANNELS``
    channels, where the per-plane loops of the column-first kernel are mostly set-up."""
    return (math.prod(x.shape[2:]) <= VIA_MAX_PLANE
            and x.shape[1] >= VIA_CHANNELS_LAST_MIN_CHANNELS
            and masked_channels_last(reduction, axes, prm, x.shape[0], x.shape[1]))


VIA_INDICES_MAX_PLANE = 1296
"""The largest planes (elements) of channels-first selections with indices over per-plane
windows that run as the masked channels-last kernel with indices between transposes
(:func:`_small_planes_indices_via_last`), where the channels-first gather kernel's rows are
short.  Fractional max pool at ``output_ratio=0.7`` with indices, one process, 2 threads,
channels-first gather against via channels last (``/tmp/s31/viacl.py``): (8, 64, 14, 14)
0.198 -> 0.089 ms, (8, 64, 28, 28) 0.62 -> 0.27, (4, 512, 7, 7) 0.42 -> 0.19, (8, 256, 14,
14) 1.07 -> 0.38, (8, 64, 36, 36) 0.87 -> 0.65; but (8, 64, 42, 42) 1.05 -> 1.03, (8, 64,
56, 56) 2.4 -> 2.3 and (4, 64, 112, 112) 2.8 -> 4.3."""


def _small_planes_indices_via_last(reduction: Reduction, x: np.ndarray,
                                   axes: Sequence[AxisWindows]) -> bool:
    """Whether a channels-first selection with indices over per-plane windows of ``x``
    (5-D) runs as the masked channels-last kernel with indices between two transposes:
    planes of at most :data:`VIA_INDICES_MAX_PLANE` elements, where that kernel takes the
    windows (:func:`masked_indices_channels_last`: with at least
    ``VIA_CHANNELS_LAST_MIN_CHANNELS`` channels among its terms)."""
    return (math.prod(x.shape[2:]) <= VIA_INDICES_MAX_PLANE
            and masked_indices_channels_last(
                reduction, axes, (x.shape[0], *x.shape[2:], x.shape[1])))


def _tuple_via_last(reduction: Reduction, x: np.ndarray, prm: np.ndarray) -> bool:
    """Whether a channels-first forward pass of a reduction whose channels-last kernels
    hold its accumulator as components (:func:`holds_components`: a tuple accumulator, a
    weighted reduction) runs as that kernel between two transposes: at least
    ``VIA_CHANNELS_LAST_MIN_CHANNELS`` channels.  Channels first, such a reduction has only
    the kernel a window at a time, one element at a time; channels last it folds a
    component an array, over the channels, which vectorises."""
    return (holds_components(reduction)
            and x.shape[1] >= VIA_CHANNELS_LAST_MIN_CHANNELS
            and cl_params_variant(reduction, "forward", prm, x.shape[1]) is not None)


REFOLD_MAX_TAPS = 16
"""The largest windows (taps) whose channels-last gradient folds each window again for
every element it reads, for a reduction whose ``grad`` reads the accumulator (a weighted
one; a tuple accumulator's: :func:`numbapool.kernels.templates._cl_backward`): an element
then costs about ``taps ** 2 / strides`` takes, where the channels-first scatter folds each
window once (``taps / strides`` an element), one element at a time against 8 or 16 in a
vector.  Larger windows (whole planes, large stride-1 kernels) run channels first, unless
the channels-last scatter runs (:func:`cl_scatter_runs`), which folds each window once."""


def refolds_too_much(reduction: Reduction, axes: Sequence[AxisWindows], batch: int,
                     channels: int, prm: np.ndarray) -> bool:
    """Whether the channels-last gradient of ``reduction`` would fold windows of more than
    :data:`REFOLD_MAX_TAPS` taps again for every element (see there): it gathers
    (:func:`cl_scatter_runs` is false) and the windows are that large."""
    return (grad_reads_acc(reduction) and math.prod(a.extent for a in axes) > REFOLD_MAX_TAPS
            and not cl_scatter_runs(reduction, batch, channels, axes, prm))


VIA_MAX_PLANE = 144
"""The largest planes (elements) of :func:`_small_planes_via_last`.  Measured on PyTorch's
fractional max pool to the output of a 3x3/s2/p1 pool, windows of 3, repeated calls, against
the column-first kernel: (64, 2048, 7, 7) 9.5-13.8 -> 5.8-6.0 ms (the 3x3/s2 max pool of the
input 2.3-3.6 ms); (256, 256, 8, 8) 4.7-4.9 -> 3.5; (128, 256, 10, 10) 3.0-3.1 -> 2.2-3.7;
(64, 512, 12, 12) 4.0-4.3 -> 3.0-3.2; but (64, 512, 14, 14) 4.2-4.3 -> 4.4-5.1 and (32, 256,
28, 28) 2.2-2.6 -> 3.8-4.6."""


@dataclass(frozen=True)
class ViaChannelsLast:
    """A channels-first forward run as the channels-last ``inner`` plan on a transposed copy,
    its results transposed back."""

    inner: ForwardPlan

    def run(self, x: np.ndarray, u: np.ndarray | None = None, before: Before | None = None
            ) -> tuple[np.ndarray, np.ndarray | None]:
        out, idx = self.inner.run(transpose.to_channels_last(x), u, before=before)
        return (transpose.to_channels_first(out),
                None if idx is None else transpose.to_channels_first(idx))


VIA_CHUNK_BYTES = 4 << 20
"""The input (bytes, at least one batch) of a chunk of :class:`ChunkedViaChannelsLast`: its
transposed copy and results stay in the processor's last-level cache between the steps."""


@dataclass(frozen=True)
class ChunkedViaChannelsLast:
    """A channels-first forward pass run as the channels-last masked pass ``inner`` (each
    batch's window starts computed by its threads, ``pf`` its argument: see
    :func:`with_positions_fill`), a chunk of ``inner.shape[0]`` batches at a time: the chunk
    transposed into a buffer that stays in cache, the kernel run on it, its result
    transposed back into those batches of the output.  ``pf[FIRST_BATCH]`` tells the kernel
    which batches a chunk holds.  Between whole-array transposes (:class:`ViaChannelsLast`)
    every step went through memory: fractional max pool of (64, 2048, 7, 7) to 4x4, the
    kept pass alone, 4.6-5.1 ms; by chunks of 1 to 8 MiB 3.7-4.4 ms, of 16 MiB 4.7-5.2 (an
    AMD Zen 4, one process; the channels-last kernel alone takes 1.8 ms).  Most of what is
    left is the first transpose, reading the input from memory.  (A pass holds ``pf``: one
    run at a time.)  Kept passes run on tiles of planes in the cores' caches instead
    (:mod:`numbapool.kernels.masked_tiles`) where a tile width divides the planes."""

    inner: ForwardPlan
    pf: np.ndarray
    _rest: dict = field(default_factory=dict, compare=False, repr=False)

    def _for(self, batches: int) -> ForwardPlan:
        """``inner`` for a chunk of ``batches`` batches."""
        if batches == self.inner.shape[0]:
            return self.inner
        plan = self._rest.get(batches)
        if plan is None:
            plan = self._rest[batches] = _with_batches(self.inner, batches)
        return plan

    def run(self, x: np.ndarray, u: np.ndarray | None = None, before: Before | None = None
            ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(out, None)`` for ``x``, C-contiguous ``(N, C, S0, S1, S2)``.  (No ``u`` or
        ``before``: the masked kernels sample nothing, and a step before each chunk would
        see the chunk's batches numbered from 0.)"""
        if u is not None or before is not None:
            raise ValueError("a chunked channels-first pass takes neither u nor before")
        n, chunk, shape = x.shape[0], self.inner.shape[0], self.inner.shape
        out = buffers.empty((n, shape[4], *shape[1:4]), self.inner.dtype)
        moved = buffers.empty((min(n, chunk), *x.shape[2:], x.shape[1]), x.dtype)
        try:
            for b0 in range(0, n, chunk):
                b1 = min(n, b0 + chunk)
                part = transpose.to_channels_last(x[b0:b1], out=moved[:b1 - b0])
                self.pf[batch_starts.FIRST_BATCH] = b0
                done, _ = self._for(b1 - b0).run(part)
                transpose.to_channels_first(done, out=out[b0:b1])
                del done  # (free for the next chunk's output: one buffer for all)
        finally:
            self.pf[batch_starts.FIRST_BATCH] = 0
        return out, None


def _with_batches(plan: ForwardPlan, batches: int) -> ForwardPlan:
    """A masked channels-last pass of :func:`with_positions_fill` for ``batches`` batches
    (its arguments do not depend on them)."""
    shape = (batches, *plan.shape[1:])
    return replace(plan, shape=shape, tasks=masked_tasks(shape), _bound={})


def masked_tasks(shape: tuple[int, ...]) -> int:
    """The tasks of a masked channels-last kernel whose output has ``shape`` (5-D): a
    batch's output planes along the first axis, by pairs of rows along the second."""
    return shape[0] * shape[1] * ((shape[2] + 1) // 2)


def via_channels_last(plan: ForwardPlan, pf: np.ndarray, shape: tuple[int, ...],
                      dtype: np.dtype) -> ChunkedViaChannelsLast | ViaChannelsLast:
    """``plan`` (a masked channels-last pass of :func:`with_positions_fill`, ``pf`` its
    argument) for channels-first arrays of ``shape`` (5-D) and ``dtype``: by
    chunks of batches (:class:`ChunkedViaChannelsLast`) where its arguments do not depend
    on the batches (tables of one row: PyTorch's fractional windows all hold k taps), else
    between whole-array transposes."""
    # (the arguments after the scratch tables and dk, but pf)
    if read_by_plane(plan.args[5:-1]):
        return ViaChannelsLast(plan)
    per_batch = max(1, math.prod(shape[1:]) * np.dtype(dtype).itemsize)
    chunk = max(1, min(shape[0], VIA_CHUNK_BYTES // per_batch))
    return ChunkedViaChannelsLast(_with_batches(plan, chunk), pf)


def read_by_plane(args: Sequence[object]) -> bool:
    """Whether any of a masked pass's arguments after its tables is a table of a row per
    plane, such as per-plane divisors: read by the kernel's plane, which a chunk of batches
    or a tile of planes numbers from 0."""
    return any(isinstance(a, np.ndarray) and a.ndim >= 1 and a.shape[0] > 1 for a in args)


LINEAR_PLANES_MAX_PLANE = 1 << 16
"""The largest plane (elements) whose channels-last linear gradient over per-plane windows
runs in place (:func:`linear_planes_channels_last`): its tasks hold a scratch block of
``LINEAR_PLANES_BLOCK`` such planes (4 MiB of float32 at this size).  Fractional average
pooling's gradient of (4, 16, 56, 56, 64) float32 (planes of 50,176) took 12.7 ms in
place against 18.7 ms between transposes (channels first: 5.9 ms)."""


def linear_planes_channels_last(reduction: Reduction, axes: Sequence[AxisWindows],
                                batch: int, channels: int) -> bool:
    """Whether a channels-last gradient of a linear reduction over windows of each plane's
    own (fractional average pooling) runs the channels-last ``backward_linear_planes``
    (a task per sample and block of ``LINEAR_PLANES_BLOCK`` channels, no transposes): with
    at least :data:`SCATTER_MIN_PLANES` such tasks and planes of at most
    :data:`LINEAR_PLANES_MAX_PLANE` elements.  Otherwise it runs the channels-first kernel
    between transposes."""
    tasks = batch * -(-channels // LINEAR_PLANES_BLOCK)
    return (linear_backward_path(reduction) and any(a.planes > 1 for a in axes)
            and tasks >= SCATTER_MIN_PLANES
            and math.prod(a.length for a in axes) <= LINEAR_PLANES_MAX_PLANE)


def masked_channels_last(reduction: Reduction, axes: Sequence[AxisWindows], prm: np.ndarray,
                         batch: int, channels: int) -> bool:
    """Whether a channels-last forward pass (values only) with per-plane windows runs the
    masked kernel in place, rather than transposing around the channels-first one: a
    selection or a streaming reduction with ``merge``, parameters shared by the channels,
    non-empty batch and channel axes, whole windows of consecutive taps, and starts close
    enough together across the channels (at most ``MASKED_MAX_READS`` times the window
    reads)."""
    if (not cols_fast_path(reduction) or all(a.planes == 1 for a in axes)
            or prm.shape[0] > 1 or batch * channels == 0):
        return False
    return _close_by_channel(axes, batch, channels)


def _close_by_channel(axes: Sequence[AxisWindows], batch: int, channels: int) -> bool:
    """Whether a masked channels-last kernel (with indices or not) takes these windows:
    whole windows of consecutive taps, whose starts lie close enough together across the
    channels that the box covering them reads at most ``MASKED_MAX_READS`` times the
    window."""
    if not all(a.step == 1 and a.full for a in axes):
        return False
    reads = 1.0
    for a in axes:
        reads *= (a.extent + a.starts_by_channel(batch, channels)[1]) / a.extent
    return reads <= MASKED_MAX_READS


def masked_indices_channels_last(reduction: Reduction, axes: Sequence[AxisWindows],
                                 shape: tuple[int, ...]) -> bool:
    """Whether a channels-last selection with indices over per-plane windows runs a masked
    kernel with indices (:mod:`numbapool.kernels.masked_indices`) in place of the
    channels-first kernel between transposes, for input of ``shape`` (5-D, channels last):
    whole windows of consecutive taps, a non-empty batch axis, at least
    ``VIA_CHANNELS_LAST_MIN_CHANNELS`` channels, planes of fewer than 2**31 elements (int32
    positions), and starts close enough together across the channels (at most
    ``MASKED_MAX_READS`` times the window reads).  (With fewer channels the kernel's work
    per output position is mostly its scalar set-up: fractional max pool of (8, 112, 112, C)
    with indices, 2 threads, between transposes against this kernel, ``/tmp/s31/fewch.py``:
    C = 1, 2, 3, 6: 0.51, 0.73, 1.00, 1.57 ms against 0.86, 1.28, 1.61, 1.88; C = 8: 1.40
    against 0.77.)"""
    batch, channels = shape[0], shape[4]
    if (not isinstance(reduction, Selection) or all(a.planes == 1 for a in axes)
            or batch == 0 or channels < VIA_CHANNELS_LAST_MIN_CHANNELS
            or math.prod(shape[1:4]) >= 2**31):
        return False
    return _close_by_channel(axes, batch, channels)


def masked_indices_variant(axes: Sequence[AxisWindows], batch: int, channels: int,
                           nbytes: int = 0) -> str:
    """The masked kernel with indices for these per-plane windows: the one folded for their
    extents, with a spread of 1 along each per-plane axis and 0 along the others, where the
    starts spread no wider and there is one (:func:`numbapool.kernels.masked_indices.
    fold_name`; its twin with non-temporal stores where the call writes ``nbytes``, at
    least ``MASKED_INDICES_STREAM_MIN_BYTES``), else the box loop
    (``forward_masked_indices``).  (A redrawn call's
    windows may spread wider: the folded kernel flags the output rows holding them, and
    the box loop, the plan's ``fallback``, computes those rows.)"""
    spreads = tuple(int(a.planes > 1) for a in axes)
    if any(a.starts_by_channel(batch, channels)[1] > s for a, s in zip(axes, spreads)):
        return MASKED_INDICES
    return fold_name(tuple(a.extent for a in axes), spreads,
                     nbytes >= MASKED_INDICES_STREAM_MIN_BYTES) or MASKED_INDICES


def _masked_indices_tables(axes: Sequence[AxisWindows], batch: int, channels: int) -> list:
    """The masked kernels' with indices tables: per axis, the smallest start of each output
    position over the channels and each channel's start after it
    (:meth:`AxisWindows.offsets_by_channel`), and ``dk``."""
    tables: list = []
    for a in axes:
        tables += a.offsets_by_channel(batch, channels)
    return [*tables, _dk(tuple(a.step for a in axes), tuple(a.extent for a in axes))]


def masked_variant(axes: Sequence[AxisWindows], batch: int, channels: int) -> str:
    """The masked channels-last kernel for these per-plane windows (:data:`MASKED_VARIANTS`):
    one for 2-D windows of 2, 3 or more rows (and 2, 3 or other numbers of columns) where
    the window starts over the channels are at most a row and a column apart; of one row
    (every channel's the same) and 2 or 3 columns at most a column apart; or 3-D windows of
    2 or 3 planes and 2 or 3 rows at most a plane, a row and a column apart; else
    ``forward_masked``.  (Windows drawn again for a kept plan may not be so: that kernel
    then runs the tasks the other leaves.)"""
    k0, k1, k2 = (a.extent for a in axes)
    spread = [a.starts_by_channel(batch, channels)[1] for a in axes]
    cols = k2 if k2 in (2, 3) else 0
    if spread[1] > 1 or spread[2] > 1:
        return "forward_masked"
    if k0 == 1 and spread[0] == 0:
        if k1 == 1:
            return (_masked_name(1, cols) if cols and spread[1] == 0 else "forward_masked")
        return _masked_name(min(k1, 4), cols)
    if k0 in (2, 3) and spread[0] <= 1 and k1 in (2, 3):
        return _masked_name(k1, cols, k0)
    return "forward_masked"


BY2_SAMPLED_PLANES = 8
"""The planes whose windows :func:`by2_axis` looks at."""


def by2_axis(axis: AxisWindows) -> bool:
    """Whether windows like ``axis`` (the last spatial axis, all whole: a gather kernel's)
    take a selection's stride-2 gather kernel
    (:data:`~numbapool.kernels.templates.BY2_VARIANTS`): rows of at least
    :data:`~numbapool.kernels.templates.BY2_MIN_OUT` windows of 2 or 3 taps 1 apart, and,
    in at least half of the first :data:`BY2_SAMPLED_PLANES` planes, starts that the kernel
    reads by stretches at stride 2 (the kernel decides each row again: see
    :data:`~numbapool.kernels.templates._BY2_PLANE`)."""
    if axis.out < BY2_MIN_OUT or axis.step != 1 or axis.extent not in (2, 3):
        return False
    starts = np.asarray(axis.start[:BY2_SAMPLED_PLANES], dtype=np.int64)
    steps = np.diff(starts, axis=-1)
    extra = np.abs(starts[:, -1] - starts[:, 0] - 2 * (axis.out - 1))
    rows = (((steps.min(axis=-1) >= 2) | (steps.max(axis=-1) <= 2))
            & (extra * BY2_BLOCK <= axis.out))
    return 2 * int(np.count_nonzero(rows)) >= rows.size


def _selection_cols_variant(axes: Sequence[AxisWindows]) -> str:
    """The column-first kernel of a selection: one of :data:`DIRECT_VARIANTS` when every
    window has one tap along the first two axes (1-D pooling, or a 2-D kernel of height 1),
    which reads each input row in place instead of copying it into the folded row first.
    (Those kernels have no folded row: they must not be given windows of several rows.)
    Windows gathered whose starts are mostly 2 apart take the stride-2 gather kernel
    (:data:`~numbapool.kernels.templates.BY2_VARIANTS`)."""
    variant = cols_variant(axes[2])
    direct = variant + "_direct"
    if direct in DIRECT_VARIANTS and axes[0].extent == 1 and axes[1].extent == 1:
        return direct
    if variant == "forward_cols_gather" and by2_axis(axes[2]):
        return "forward_cols_gather_by2"
    return variant


def _selection_indices_variant(axes: Sequence[AxisWindows], plane: int) -> str | None:
    """The row-by-row channels-first kernel with indices (:data:`INDICES_ROWS_VARIANTS`)
    for windows like ``axes`` on planes of ``plane`` elements, or None: interior windows of
    2 or 3 taps at stride 2 along the last axis, without gaps (dilation 1), and planes whose
    positions fit in int32."""
    if plane >= 2**31:
        return None
    taps = COLS_VARIANTS.get(cols_variant(axes[2]))
    return next((v for v, n in INDICES_ROWS_VARIANTS.items() if n == taps), None)


def _smooth_cols_variant(axis: AxisWindows, dv: np.ndarray, override: float | None) -> str:
    """The column-first kernel of a smooth reduction for windows like ``axis`` (the last
    spatial axis) with divisors ``dv`` along it: one of :data:`DIRECT_VARIANTS` for rows of
    2- or 3-tap windows at least :data:`DIRECT_MIN_OUT` long whose interior windows all have
    one divisor (a window rule may give windows of one size different divisors)."""
    variant = cols_variant(axis)
    direct = variant + "_direct"
    if direct not in DIRECT_VARIANTS or axis.out < DIRECT_MIN_OUT:
        return variant
    lo, hi = int(axis.interior[0]), int(axis.interior[1])
    if override or bool((dv[:, lo:hi] == dv[:, lo:lo + 1]).all()):
        return direct
    return variant


def _one_row_if_shared(divisors: list) -> list:
    """Per-plane divisor tables ``(planes, out)`` whose rows are all equal (fractional
    pooling's windows all hold k taps), as their first row.  For the masked kernel, which
    indexes each table by its own number of rows: one divisor per output position for all
    channels, loaded as a vector, instead of one per channel (fractional avg pool of
    (8, 56, 56, 64): 1.49 -> 1.10 ms a call)."""
    return [d[:1] if d.shape[0] > 1 and bool((d == d[:1]).all()) else d for d in divisors]


def _masked_tables(axes: Sequence[AxisWindows], batch: int, channels: int) -> list:
    """The masked kernel's tables: the starts along the first two axes by channel, the last
    axis's as smallest start and offsets (:meth:`AxisWindows.offsets_by_channel`), and ``dk``."""
    return [axes[0].starts_by_channel(batch, channels)[0],
            axes[1].starts_by_channel(batch, channels)[0],
            *axes[2].offsets_by_channel(batch, channels),
            _dk(tuple(a.step for a in axes), tuple(a.extent for a in axes))]


def plan_forward(reduction: Reduction, layout: str, x: np.ndarray,
                 axes: Sequence[AxisWindows], prm: np.ndarray, include_pad: bool = True,
                 override: float | None = None, with_indices: bool = False
                 ) -> ForwardPlan | ViaChannelsLast | TiledChannelsLast:
    """Choose the forward kernel for arrays like ``x`` (its shape and dtype) and bind its
    arguments."""
    shape = out_shape(x, axes, layout)
    tables = _tables(tuple(axes))
    shared = all(a.planes == 1 for a in axes)
    sel = isinstance(reduction, Selection)

    def plan(variant, args, dtype=x.dtype, indices=False, sampling=False, **masked):
        return ForwardPlan(get_kernel(reduction, layout, variant), shape, np.dtype(dtype),
                           indices, with_indices, tuple(args), sampling, **masked,
                           u_channels_last=sampling and layout == "channels_last")

    def via_last() -> ViaChannelsLast:  # (a channels-first pass between transposes)
        like = np.broadcast_to(np.zeros((), x.dtype), (x.shape[0], *x.shape[2:], x.shape[1]))
        return ViaChannelsLast(plan_forward(reduction, "channels_last", like, axes, prm,
                                            include_pad, override, with_indices))

    def smooth() -> list:
        zero = _zero(reduction, x.dtype)
        return [*_divisors(axes, include_pad, override, zero), zero, for_kernel(prm, zero)]

    if mapped.pays(reduction, x, axes, with_indices):  # (premap once an element, then sums)
        like = np.broadcast_to(np.zeros((), x.dtype), x.shape)
        zero = _zero(reduction, x.dtype)
        # (channels last the map kernel reads a row a channel)
        rows = prm if layout == "channels_first" else np.broadcast_to(prm, (x.shape[4],
                                                                             prm.shape[1]))
        return mapped.MappedPlan(get_kernel(reduction, layout, "map"),
                                 plan_forward(mapped.summed(reduction), layout, like, axes,
                                              prm, include_pad, override),
                                 zero, for_kernel(np.ascontiguousarray(rows), zero))

    if layout == "channels_last" and isinstance(reduction, Sampling) and (
            prm.shape[0] > 1 or not shared):
        raise ValueError(f"the channels-last kernel of {reduction.name!r} takes one row of "
                         "parameters and windows shared by the planes")
    if (layout == "channels_last" and prm.shape[0] > 1
            and isinstance(reduction, (Streaming, Weighted))):
        # (the other channels-last kernels read one row of parameters for every channel)
        twin = cl_params_variant(reduction, "forward", prm, x.shape[4])
        if twin is None or with_indices or not shared:
            raise ValueError(f"the channels-last forward kernels of {reduction.name!r} take "
                             "one row of parameters; channels-first ones read each plane's")
        return plan(twin, [*tables, *smooth()], reduction.out_dtype(x.dtype))

    if layout == "channels_first" and _tiles_pay(reduction, x, axes, prm) and (
            sel or not with_indices):
        extents = tuple(a.extent for a in axes)
        if with_indices:  # (positions within a plane: the same channels first and last)
            inner = cl_fold_variant(reduction, "forward_indices32", extents)
            return TiledChannelsLast(
                TiledCall(get_kernel(reduction, "channels_last", inner), (IN, OUT, OUT),
                          tuple(tables)), shape, x.dtype, True)
        inner = cl_fold_variant(reduction, "forward", extents)
        fixed = tables if sel else [*tables, *smooth()]
        return TiledChannelsLast(TiledCall(get_kernel(reduction, "channels_last", inner),
                                           (IN, OUT), tuple(fixed)),
                                 shape, np.dtype(reduction.out_dtype(x.dtype)))
    if (sel and with_indices and layout == "channels_first" and not shared
            and _small_planes_indices_via_last(reduction, x, axes)):
        return via_last()
    if sel and with_indices and layout == "channels_first" and shared:
        rows = _selection_indices_variant(axes, math.prod(x.shape[2:]))
        if rows is not None:
            return plan(rows, [*tables, axes[2].interior], indices=True)
        if x.shape[1] >= VIA_CHANNELS_LAST_MIN_CHANNELS:
            return via_last()

    if layout == "channels_first" and not with_indices and (
            _tuple_via_last(reduction, x, prm) if shared
            else _small_planes_via_last(reduction, x, axes, prm)):
        return via_last()
    if layout == "channels_first" and not with_indices:
        if shared and _whole_plane(axes) and global_fast_path(reduction):
            if sel:
                return plan("forward_global", [])
            return plan("forward_global", smooth(), reduction.out_dtype(x.dtype))
        # (Indices: the row kernel with indices for 2 or 3 taps at stride 2, else the
        # channels-last kernels between transposes, else the gather kernel for whole windows
        # or the per-window kernel, above and below; the column-first kernels fold columns
        # first, out of a window's order.)
        if sel:
            return plan(_selection_cols_variant(axes), [*tables, axes[2].interior])
        if cols_fast_path(reduction):
            rest = smooth()  # (dv0, dv1, dv2, override, zero, prm)
            return plan(_smooth_cols_variant(axes[2], rest[2], override),
                        [*tables, axes[2].interior, *rest], reduction.out_dtype(x.dtype))
        if shared and row_fast_path(reduction):
            return plan("forward_rows", [*tables, axes[2].interior, *smooth()],
                        reduction.out_dtype(x.dtype))
    if (layout == "channels_last" and not with_indices
            and masked_channels_last(reduction, axes, prm, x.shape[0], x.shape[4])):
        tables = _masked_tables(axes, x.shape[0], x.shape[4])
        if not sel:
            rest = smooth()  # (dv0, dv1, dv2, override, zero, prm)
            tables += [*_one_row_if_shared(rest[:3]), *rest[3:]]
        variant = masked_variant(axes, x.shape[0], x.shape[4])
        fallback = (None if variant == "forward_masked"
                    else get_kernel(reduction, layout, "forward_masked"))
        return plan(variant, tables, reduction.out_dtype(x.dtype),
                    tasks=masked_tasks(shape), fallback=fallback)
    extents = tuple(a.extent for a in axes)

    def fold(variant: str) -> str:  # (a channels-last kernel with windows of one shape folded)
        if layout != "channels_last":
            return variant
        return cl_fold_variant(reduction, variant, extents)

    if (layout == "channels_last" and with_indices and not shared
            and masked_indices_channels_last(reduction, axes, x.shape)):
        variant = masked_indices_variant(axes, x.shape[0], x.shape[4], math.prod(shape)
                                         * (np.dtype(x.dtype).itemsize + 8))
        fallback = (None if variant == MASKED_INDICES
                    else get_kernel(reduction, layout, MASKED_INDICES))
        return plan(variant, _masked_indices_tables(axes, x.shape[0], x.shape[4]),
                    indices=True, tasks=math.prod(shape[:3]), fallback=fallback)
    if sel:
        if with_indices:
            if (layout == "channels_first" and all(a.full for a in axes)
                    and math.prod(x.shape[2:]) < 2**31
                    and GATHER_ROW_PER_WINDOW * axes[2].out >= x.shape[-1]):
                return plan("forward_indices_gather", tables, indices=True)
            narrow = layout == "channels_last" and math.prod(x.shape[1:4]) < 2**31
            return plan(fold("forward_indices32") if narrow else "forward_indices", tables,
                        indices=True)
        return plan(fold("forward"), tables)
    if isinstance(reduction, Sampling):
        if (layout == "channels_first" and shared
                and x.shape[1] >= VIA_CHANNELS_LAST_MIN_CHANNELS
                and sampling_tasks(x.shape[0], axes) >= SAMPLING_MIN_TASKS_PER_THREAD * _threads()
                and cl_params_variant(reduction, "forward", prm, x.shape[1]) is not None):
            # (the channels-last kernel selects over the channels with selects, where this
            # one branches an element at a time: 3x3/s2/p1 of (8, 64, 56, 56) float32, 7.7-8.3
            # ms through this one, 2.4-2.5 ms with the transposes)
            return via_last()
        zero = np.float64(0.0)
        return plan("forward_indices", [*tables, zero, for_kernel(prm, zero)], indices=True,
                    sampling=True)
    if with_indices:
        raise ValueError(f"reduction {reduction.name!r} has no indices")
    return plan(fold("forward"), [*tables, *smooth()], reduction.out_dtype(x.dtype))


def forward(reduction: Reduction, layout: str, x: np.ndarray, axes: Sequence[AxisWindows],
            prm: np.ndarray, include_pad: bool = True, override: float | None = None,
            with_indices: bool = False, u: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """Pool ``x``; returns ``(out, indices or None)``."""
    return plan_forward(reduction, layout, x, axes, prm, include_pad, override,
                        with_indices).run(x, u)


TILES_MAX_ROW = 15
"""Channels-first forward passes whose input rows (the last spatial axis) are at most this
long run as channels-last kernels on tiles of planes (:class:`TiledChannelsLast`), where
the channels-first kernels' rows are too short to vectorise.  Measured on an AMD Zen 4 (2
threads, float32, one process, each against the column-first kernel, several runs on a
noisy machine): 7x7 planes 0.22-0.53 of the time, 8x8 to 12x12 0.34-0.94, 14x14 0.59-1.40
(2x2 max windows gain least); 16x16 0.68-0.89 with 3x3/s2 windows but 1.09-2.0 with 2x2
ones, 28x28 1.0-1.7."""

TILES_MAX_PLANE = 1024
"""... and whose planes hold at most this many elements: a tile (``TILE_PLANES`` planes)
then stays in the core's cache (256 KiB of float32, 512 KiB of float64, and the output's
tile beside it)."""


def _tiles_pay(reduction: Reduction, x: np.ndarray, axes: Sequence[AxisWindows],
               prm: np.ndarray) -> bool:
    """Whether a channels-first forward pass (values only) of ``x`` (5-D) runs as the
    channels-last kernel on tiles of planes: windows shared by the planes, parameters by
    the channels, a channels-last kernel, elements of 4 or 8 bytes in and out (the tiles'
    transposes), short rows and small planes, and at least a tile of planes."""
    if not (native_channels_last(reduction, "forward") and not isinstance(reduction, Sampling)
            and np.dtype(reduction.out_dtype(x.dtype)).itemsize in (4, 8)):
        return False
    return _small_planes(reduction, x, axes, prm)


def _small_planes(reduction: Reduction, x: np.ndarray, axes: Sequence[AxisWindows],
                  prm: np.ndarray) -> bool:
    """The conditions on the input of :func:`_tiles_pay` and :func:`_tiles_pay_grad`:
    windows shared by the planes and not whole planes, one parameter row, 4- or 8-byte
    elements, short rows, small planes, and at least a tile of planes."""
    return (all(a.planes == 1 for a in axes) and not _whole_plane(axes)
            and prm.shape[0] == 1 and x.dtype.itemsize in (4, 8)
            and x.shape[4] <= TILES_MAX_ROW and math.prod(x.shape[2:]) <= TILES_MAX_PLANE
            and x.shape[0] * x.shape[1] >= TILE_PLANES)


def _tiles_pay_grad(reduction: Reduction, x: np.ndarray, axes: Sequence[AxisWindows],
                    prm: np.ndarray) -> bool:
    """Whether a channels-first gradient runs as the channels-last one on tiles of planes
    (:func:`_tiled_backward`): a streaming reduction with a scalar accumulator and a
    channels-last gradient kernel (row by row for a linear one), on inputs
    :func:`_small_planes` takes."""
    if not (isinstance(reduction, Streaming) and reduction.accumulator == "scalar"
            and reduction.acc_dtype(x.dtype).itemsize in (4, 8)
            and (linear_backward_path(reduction)
                 or native_channels_last(reduction, "backward"))):
        return False
    return _small_planes(reduction, x, axes, prm)


def _tiled_backward(reduction: Reduction, x: np.ndarray, grad_out: np.ndarray,
                    axes: Sequence[AxisWindows], prm: np.ndarray, include_pad: bool,
                    override: float | None, y: np.ndarray | None) -> np.ndarray:
    """The channels-first gradient of :func:`backward` as the channels-last kernel on tiles
    of planes (:class:`TiledCall`): a linear reduction's row-by-row kernel (``x`` unread),
    or the gather, which reads ``x`` and, if its ``grad`` does, the forward result."""
    acc = reduction.acc_dtype(x.dtype)
    zero = acc.type(0)
    gx = buffers.empty(x.shape, acc)
    grad_out = np.ascontiguousarray(grad_out)
    tail = (*_divisors(axes, include_pad, override, zero), zero, for_kernel(prm, zero))
    if linear_backward_path(reduction):
        TiledCall(get_kernel(reduction, "channels_last", "backward_linear"), (UNUSED, IN, OUT),
                  (*_inverse(axes), _tables(tuple(axes))[3], *tail))(x, grad_out, gx)
        return gx
    reads_y = reduction.grad_uses_output
    if y is None:
        y = _output_for_grad(reduction, "channels_first", x, grad_out, axes, prm, include_pad,
                             override)
    TiledCall(get_kernel(reduction, "channels_last", "backward"),
              (IN, IN if reads_y else UNUSED, IN, OUT),
              (*_inverse(axes), *_tables(tuple(axes)), *tail))(
        x, np.ascontiguousarray(y), grad_out, gx)
    return gx


@dataclass
class TiledChannelsLast:
    """A channels-first forward pass run as a channels-last kernel on tiles of
    ``TILE_PLANES`` planes transposed in cache (:class:`numbapool.kernels.tiles.TiledCall`:
    ``x`` in; the result, and the indices if ``with_indices``, out); ``shape`` and
    ``dtype``: the channels-first result's."""

    call: TiledCall
    shape: tuple[int, ...]
    dtype: np.dtype
    with_indices: bool = False  # (returned: tiled kernels write indices only when asked)

    @property
    def args(self) -> tuple:
        """The kernel's arguments after the tiled arrays (the window tables among them), as
        :attr:`ForwardPlan.args` (:class:`numbapool.redraw.RedrawnForward` finds the tables
        a kept plan reads there)."""
        return self.call.fixed

    def run(self, x: np.ndarray, u: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(out, indices or None)`` for ``x``, C-contiguous ``(N, C, S0, S1, S2)``."""
        out = buffers.empty(self.shape, self.dtype)
        if not self.with_indices:
            self.call(x, out)
            return out, None
        idx = buffers.empty(self.shape, np.int64)
        self.call(x, out, idx)
        return out, idx


def _whole_plane(axes: Sequence[AxisWindows]) -> bool:
    """One window per plane, reading every element: global pooling."""
    return all(a.planes == 1 and a.out == 1 and a.count[0, 0] == a.length and a.step == 1
               for a in axes)


def _channels_last_copies(reduction: Reduction, x: np.ndarray, grad_out: np.ndarray,
                          axes: Sequence[AxisWindows], prm: np.ndarray, include_pad: bool,
                          override: float | None, with_y: bool = True) -> tuple:
    """Channels-first ``x`` and ``grad_out`` transposed to channels last, for gradients that
    run in the channels-last kernels, and (``with_y``) the forward result of the
    channels-first kernels ``pool()`` ran, transposed too (the same values, and no
    channels-last forward kernel to compile), else None."""
    y = None
    if with_y:
        y = transpose.to_channels_last(forward(reduction, "channels_first", x, axes, prm,
                                               include_pad, override)[0])
    return transpose.to_channels_last(x), transpose.to_channels_last(grad_out), y


def cl_params_variant(reduction: Reduction, variant: str, prm: np.ndarray,
                      channels: int) -> str | None:
    """The channels-last kernel that runs ``variant`` with the parameters ``prm``: the kernel
    itself for one row of parameters, its twin that reads each channel's own
    (:data:`~numbapool.kernels.templates.PER_CHANNEL`) for a row a channel, or None where
    there is no such kernel.  (The channels-last forward kernels take one row.)"""
    if prm.shape[0] == 1:
        return variant if native_channels_last(reduction, variant) else None
    twin = PER_CHANNEL.get(variant)
    if (twin is None or not isinstance(reduction, (Streaming, Weighted))
            or prm.shape[0] != channels
            or not native_channels_last(reduction, twin)):
        return None
    return twin


def _params_kernel(reduction: Reduction, layout: str, variant: str, prm: np.ndarray,
                   channels: int) -> str:
    """The kernel that runs ``variant`` in ``layout`` with the parameters ``prm``:
    ``variant`` itself but channels last with a row a channel, where it is
    :func:`cl_params_variant`'s twin, which must exist."""
    if layout != "channels_last" or prm.shape[0] == 1:
        return variant
    twin = cl_params_variant(reduction, variant, prm, channels)
    if twin is None:
        raise ValueError(f"no channels-last {variant!r} kernel of {reduction.name!r} for "
                         "parameters that differ by channel")
    return twin


def _output_for_grad(reduction: Reduction, layout: str, x: np.ndarray, grad_out: np.ndarray,
                     axes: Sequence[AxisWindows], prm: np.ndarray, include_pad: bool,
                     override: float | None) -> np.ndarray:
    """The forward result a smooth reduction's gradient reads; or, when its ``grad`` does not
    read ``y`` (sum, avg), ``grad_out`` in its place (the same shape, never read): no forward
    pass."""
    if not reduction.grad_uses_output:
        return grad_out
    return _forward_values(reduction, layout, x, axes, prm, include_pad, override)


def _forward_values(reduction: Reduction, layout: str, x: np.ndarray,
                    axes: Sequence[AxisWindows], prm: np.ndarray, include_pad: bool,
                    override: float | None) -> np.ndarray:
    """The forward result of a smooth reduction in ``layout``: channels last with a row of
    parameters a channel, from the channels-first kernels (which read each plane's row)
    where the reduction has no channels-last kernel for such parameters."""
    if (layout == "channels_last" and prm.shape[0] > 1
            and cl_params_variant(reduction, "forward", prm, x.shape[-1]) is None):
        return transpose.to_channels_last(forward(
            reduction, "channels_first", transpose.to_channels_first(x), axes, prm,
            include_pad, override)[0])
    return forward(reduction, layout, x, axes, prm, include_pad, override)[0]


GRAD_CHANNELS_LAST_MIN_ROWS_PER_THREAD = 4
"""A channels-first gradient runs channels-last (:func:`_grad_runs_channels_last`) only with
at least this many input rows (``N * S0 * S1``, the channels-last kernels' tasks) a thread:
1-D pooling of one sample would otherwise run on one thread."""


def _grad_runs_channels_last(reduction: Reduction, layout: str, x: np.ndarray,
                             axes: Sequence[AxisWindows], prm: np.ndarray) -> bool:
    """Whether a channels-first gradient runs as the channels-last kernels between parallel
    transposes: a smooth, non-linear reduction (gem, lp) that has channels-last kernels, one
    parameter row and windows shared by all planes, with at least
    :data:`VIA_CHANNELS_LAST_MIN_CHANNELS` channels and
    :data:`GRAD_CHANNELS_LAST_MIN_ROWS_PER_THREAD` rows a thread.  The channels-first scatter
    walks each window's taps one element at a time (a division per element for gem); the
    channels-last gather vectorises over the channels.  The forward result the gradient reads
    comes from the channels-first kernels (those ``pool()`` runs: the same values, and no
    channels-last forward to compile), transposed.  Measured on a Zen 4, 2 threads, (8, 64,
    56, 56) float32, ``pool_grad`` with its forward pass, in one process on a noisy stretch:
    gem 3x3/s2/p1 5.2 against 9.6 ms, lp (p = 2) 4.3 against 7.5 ms, 2x2 windows: gem 4.3
    against 5.5 ms, lp 4.1 against 4.6 ms (64 channels only; the threshold of 8 is the
    forward's).  A first ``pool_grad`` after ``pool()`` compiles the channels-last backward
    kernel: 1.1-1.4 s against 0.8-1.0 s for the scatter (with a channels-last forward as
    well it took 2.3 s).  (Linear reductions and whole planes keep their own channels-first
    kernels.)  It holds three more arrays the size of ``x`` for the time of the call."""
    return (layout == "channels_first" and isinstance(reduction, (Streaming, Weighted))
            and x.shape[1] >= VIA_CHANNELS_LAST_MIN_CHANNELS
            and (x.shape[0] * x.shape[2] * x.shape[3]
                 >= GRAD_CHANNELS_LAST_MIN_ROWS_PER_THREAD * _threads())
            and cl_params_variant(reduction, "backward", prm, x.shape[1]) is not None
            and not linear_backward_path(reduction)
            and all(a.planes == 1 for a in axes)
            and not (_whole_plane(axes) and global_backward_path(reduction))
            and not refolds_too_much(reduction, axes, x.shape[0], x.shape[1], prm))


def _indexed_forward(reduction: Selection, x: np.ndarray, axes: Sequence[AxisWindows],
                     prm: np.ndarray) -> ForwardPlan | ViaChannelsLast | TiledChannelsLast | None:
    """The channels-first forward with indices of a selection, if it runs one of the kernels
    that do not walk each window (the row kernels, the gather kernel, the channels-last
    kernels, tiled or between transposes), else None.  A gradient without indices is then
    routed by them: the output's gradient goes to the element its index names, the first
    of its window equal to it (or the last NaN), as the search by value finds it.
    ``pool_grad`` without indices, float32, alternating processes: max 3x3/s2/p1 of (8, 64,
    56, 56) 3.9-4.3 ms through the search (``backward_scatter``), 1.7-2.0 ms through the
    indices; VGG's (32, 128, 56, 56) 2x2 21.7-31.9 against 5.5-7.4 ms; fractional max of
    (8, 64, 56, 56), output ratio 0.7, 6.7-6.9 against 3.3-3.5 ms.  (A scatter a plane:
    for at least :data:`SCATTER_MIN_PLANES` planes, as the search.)"""
    plan = plan_forward(reduction, "channels_first", x, axes, prm, with_indices=True)
    if isinstance(plan, ForwardPlan) and plan.kernel.name.endswith("/forward_indices"):
        return None
    return plan


def backward(reduction: Reduction, layout: str, x: np.ndarray, grad_out: np.ndarray,
             axes: Sequence[AxisWindows], prm: np.ndarray, include_pad: bool = True,
             override: float | None = None, u: np.ndarray | None = None,
             y: np.ndarray | None = None) -> np.ndarray:
    """Gradient with respect to ``x`` (float ``x``), given the output gradient ``grad_out``
    (same shape as the forward result, in the accumulator dtype); ``y``: a smooth
    reduction's forward result, if already known (else computed here when ``grad`` reads
    it)."""
    if layout == "channels_first" and _tiles_pay_grad(reduction, x, axes, prm):
        return _tiled_backward(reduction, x, grad_out, axes, prm, include_pad, override, y)
    if _grad_runs_channels_last(reduction, layout, x, axes, prm):
        xl, gl, yl = _channels_last_copies(reduction, x, grad_out, axes, prm, include_pad,
                                           override, reduction.grad_uses_output)
        gx = backward(reduction, "channels_last", xl, gl, axes, prm, include_pad, override,
                      y=yl)
        return transpose.to_channels_first(gx)
    acc = reduction.acc_dtype(x.dtype)
    zero = acc.type(0)
    gx = buffers.empty(x.shape, acc)
    smooth = isinstance(reduction, (Streaming, Weighted))
    if smooth and y is None:
        y = _output_for_grad(reduction, layout, x, grad_out, axes, prm, include_pad, override)
    if _whole_plane(axes) and global_backward_path(reduction) and (
            layout == "channels_first" or smooth):
        if not smooth:
            y, _ = forward(reduction, layout, x, axes, prm, include_pad, override)
        kernel = get_kernel(reduction, layout, _params_kernel(
            reduction, layout, "backward_global", prm, x.shape[-1]))
        if isinstance(reduction, Selection):
            kernel(x, y, grad_out, gx, zero)
        else:
            kernel(x, y, grad_out, gx, *_divisors(axes, include_pad, override, zero), zero,
                   for_kernel(prm, zero))
        return gx
    linear = _linear_call(reduction, layout, axes, prm, include_pad, override, zero)
    if linear is not None:
        kernel, fixed = linear
        kernel(x, grad_out, gx, *fixed)
        return gx
    planes = x.shape[0] * x.shape[1]
    if (layout == "channels_first" and linear_backward_path(reduction)
            and planes >= SCATTER_MIN_PLANES):  # (per-plane windows: fractional avg)
        get_kernel(reduction, layout, "backward_linear_planes")(
            x, grad_out, gx, *_tables(tuple(axes)),
            *_row_divisors(axes, include_pad, override, zero), zero, for_kernel(prm, zero))
        return gx
    if (layout == "channels_first" and isinstance(reduction, Selection)
            and planes >= SCATTER_MIN_PLANES):
        indexed = _indexed_forward(reduction, x, axes, prm)
        if indexed is not None:  # (routed by the forward's indices: no window searched)
            _, idx = indexed.run(x)
            outs = math.prod(grad_out.shape[2:])
            lost = routing.route(grad_out.reshape(planes, outs), idx.reshape(planes, outs),
                                 gx.reshape(planes, math.prod(x.shape[2:])), layout)
            if lost:
                raise RuntimeError(f"the forward of {reduction.name!r} with indices gave "
                                   f"{lost} indices outside their planes")
            return gx
    if layout == "channels_first" and planes >= SCATTER_MIN_PLANES:
        cover = not isinstance(reduction, Sampling) and all(a.exact_cover for a in axes)
        kernel = get_kernel(reduction, layout,
                            "backward_scatter_cover" if cover else "backward_scatter")
        if isinstance(reduction, Selection):  # routed by value: no indices needed
            y, _ = forward(reduction, layout, x, axes, prm)
            kernel(x, y, grad_out, gx, *_tables(tuple(axes)), zero)
        elif isinstance(reduction, Sampling):
            y, idx = forward(reduction, layout, x, axes, prm, with_indices=True, u=u)
            kernel(x, y, grad_out, gx, idx, *_tables(tuple(axes)), zero)
        else:
            kernel(x, y, grad_out, gx, *_tables(tuple(axes)),
                   *_divisors(axes, include_pad, override, zero), zero, for_kernel(prm, zero))
        return gx
    if layout == "channels_last" and linear_planes_channels_last(reduction, axes, x.shape[0],
                                                                 x.shape[-1]):
        blocks = buffers.empty((_threads(), LINEAR_PLANES_BLOCK * (
            math.prod(x.shape[1:4]) + math.prod(grad_out.shape[1:4]))), acc)
        get_kernel(reduction, layout, "backward_linear_planes")(
            x, grad_out, gx, blocks, *_tables(tuple(axes)),
            *_row_divisors(axes, include_pad, override, zero), zero, for_kernel(prm, zero))
        return gx
    if layout == "channels_last" and cl_scatter_runs(reduction, x.shape[0], x.shape[-1], axes,
                                                     prm):
        get_kernel(reduction, layout, "backward_scatter")(
            x, y, grad_out, gx, *_tables(tuple(axes)),
            *_divisors(axes, include_pad, override, zero), zero, for_kernel(prm, zero))
        return gx
    kernel = get_kernel(reduction, layout,
                        _params_kernel(reduction, layout, "backward", prm, x.shape[-1]))
    if isinstance(reduction, (Selection, Sampling)):
        y, idx = forward(reduction, layout, x, axes, prm, with_indices=True, u=u)
        # (per-plane windows, channels last: the masked kernel with indices, then the route;
        # the gather kernel reads shared windows' inverse maps)
        if layout == "channels_last" and not all(a.planes == 1 and a.exact_cover
                                                 for a in axes):
            # where windows overlap, scattering by the indices was faster than gathering
            # (/tmp/exp4/noidx2.py, pool_grad): (1, 56, 56, 64) 3x3/s2/p1 max 165-179 against
            # 205-209 us, ResNet's stem (32, 112, 112, 64) 13.4-13.5 against 16.0-16.1 ms;
            # where they cover the input it was mixed: VGG's (32, 56, 56, 128) 2x2 even,
            # (4, 16, 56, 56, 64) 2x2x2 4.3-4.5 against 4.9-5.6 ms, (1, 56, 56, 64) 2x2 159 or
            # 305-361 against 159-169 us
            n, c = x.shape[0], x.shape[-1]
            outs, plane = math.prod(grad_out.shape[1:4]), math.prod(x.shape[1:4])
            lost = routing.route(grad_out.reshape(n, outs, c), idx.reshape(n, outs, c),
                                 gx.reshape(n, plane, c), layout)
            if lost:
                raise RuntimeError(f"the forward of {reduction.name!r} with indices gave "
                                   f"{lost} indices outside their planes")
        else:
            kernel(x, y, grad_out, gx, idx, *_inverse(axes), zero)
    else:
        kernel(x, y, grad_out, gx, *_inverse(axes), *_tables(tuple(axes)),
               *_divisors(axes, include_pad, override, zero), zero, for_kernel(prm, zero))
    return gx


def _shared_linear(reduction: Reduction, axes: Sequence[AxisWindows]) -> bool:
    """A linear reduction (a sum, a mean) over windows every plane shares."""
    return linear_backward_path(reduction) and all(a.planes == 1 for a in axes)


def _linear_call(reduction: Reduction, layout: str, axes: Sequence[AxisWindows],
                 prm: np.ndarray, include_pad: bool, override: float | None,
                 zero: np.generic) -> tuple[Any, tuple] | None:
    """The row-by-row gradient of a linear reduction over windows the planes share, as
    :func:`backward` runs it after its earlier paths: ``(kernel, fixed)``, called as
    ``kernel(x, grad_out, gx, *fixed)``; None where another path applies."""
    if not _shared_linear(reduction, axes):
        return None
    if layout == "channels_first":
        cover = axes[2].exact_cover
        return (get_kernel(reduction, layout,
                           "backward_linear_cover" if cover else "backward_linear"),
                (*_inverse(axes[:2]), *_tables(tuple(axes))[2:], axes[2].interior,
                 *_divisors(axes, include_pad, override, zero), zero, for_kernel(prm, zero)))
    if prm.shape[0] == 1:
        return (get_kernel(reduction, layout, "backward_linear"),
                (*_inverse(axes), _tables(tuple(axes))[3],
                 *_divisors(axes, include_pad, override, zero), zero, for_kernel(prm, zero)))
    return None


def bound_linear_backward(reduction: Reduction, layout: str, x: np.ndarray,
                          grad_out: np.ndarray, axes: Sequence[AxisWindows], prm: np.ndarray,
                          include_pad: bool = True, override: float | None = None
                          ) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """Where :func:`backward` of these arguments runs the row-by-row kernel of a linear
    reduction (a sum, a mean, over windows the planes share): that kernel bound to all but
    ``x``, ``grad_out`` and the gradient, as a function of ``(x, grad_out)`` (C-contiguous,
    of these shapes and dtypes) that returns the gradient (``api.pool_grad`` keeps it for
    repeated calls: packing the kernel's other 13 arguments cost 26 us a call); else None."""
    if not _shared_linear(reduction, axes) or (  # (the cheap test first: most calls end)
            layout == "channels_first" and _tiles_pay_grad(reduction, x, axes, prm)) or (
            _whole_plane(axes) and global_backward_path(reduction)):
        return None
    acc = reduction.acc_dtype(x.dtype)
    zero = acc.type(0)
    linear = _linear_call(reduction, layout, axes, prm, include_pad, override, zero)
    if linear is None or grad_out.dtype != acc:
        return None
    kernel, fixed = linear
    shape = x.shape  # (not x: the kept function must not keep the caller's array alive)
    bound = kernel.bind((x, grad_out, np.empty(shape, acc), *fixed), 3)

    def run(xw: np.ndarray, gy: np.ndarray) -> np.ndarray:
        out = buffers.empty(shape, acc)
        bound(xw, gy, out)
        return out

    return run


SAMPLING_MIN_TASKS_PER_THREAD = 4
"""A channels-first sampling forward runs the channels-last kernel between transposes only
with at least this many of its tasks (:func:`sampling_tasks`) a thread; a channels-last one
runs it with fewer (its calls run channels first on a transposed copy:
``api._kernel_layout``)."""


def sampling_tasks(batch: int, axes: Sequence[AxisWindows]) -> int:
    """The tasks of the channels-last sampling kernel for ``batch`` samples and ``axes``
    (three): a run of at most ``SAMPLING_ROW_OUTPUTS`` outputs of an output row."""
    return batch * axes[0].out * axes[1].out * -(-axes[2].out // SAMPLING_ROW_OUTPUTS)


def sampling_too_few_tasks(reduction: Reduction, batch: int,
                           axes: Sequence[AxisWindows]) -> bool:
    """Whether a channels-last call of a sampling reduction runs channels first on a
    transposed copy: fewer tasks of the channels-last kernel than threads (windows of whole
    planes of few samples), where the channels-first kernel has a task a plane's row."""
    return isinstance(reduction, Sampling) and sampling_tasks(batch, axes) < _threads()


CL_SCATTER_MIN_TASKS_PER_THREAD = 2
"""The channels-last scatter (:func:`cl_scatter_runs`) runs with at least this many tasks
(samples times blocks of ``SCATTER_CHANNELS`` channels) a thread."""


def cl_scatter_runs(reduction: Reduction, batch: int, channels: int,
                    axes: Sequence[AxisWindows], prm: np.ndarray) -> bool:
    """Whether a channels-last gradient runs the scatter that folds each window once
    (:func:`numbapool.kernels.templates._cl_backward_scatter`: a reduction whose gradient
    reads the accumulator, one parameter row, windows shared by the planes), rather than
    the gather that folds each window again for every element it reads: with enough tasks
    (:data:`CL_SCATTER_MIN_TASKS_PER_THREAD`) for the threads, a task a sample and block of
    channels.  (3x3/s2/p1 of (8, 56, 56, 64) float32, ``pool_grad``, one process,
    alternating: softpool 14.2-14.5 -> 6.1-6.3 ms, gated 13.7-14.4 -> 7.3-7.7, mixed
    6.5-6.6 -> 2.3.)"""
    if (not grad_reads_acc(reduction) or prm.shape[0] != 1
            or not all(a.planes == 1 for a in axes)):
        return False
    tasks = batch * -(-channels // SCATTER_CHANNELS)
    return (tasks >= CL_SCATTER_MIN_TASKS_PER_THREAD * _threads()
            and native_channels_last(reduction, "backward_scatter"))


def param_grad_runs_channels_last(reduction: Reduction, layout: str, x: np.ndarray,
                                  axes: Sequence[AxisWindows], prm: np.ndarray) -> bool:
    """Whether parameter gradients run in the channels-last kernel
    (:func:`numbapool.kernels.templates.native_channels_last`: a streaming reduction, scalar
    or tuple accumulator), which vectorises over the channels: for channels-last ``x``, or
    channels-first ``x`` with at least :data:`VIA_CHANNELS_LAST_MIN_CHANNELS` channels
    (transposed, with ``grad_out``), one parameter row and windows shared by the planes. The
    channels-first kernel takes one element at a time: gem's ``dL/dp``, (8, 64, 56, 56)
    float32 3x3/s2/p1, took 17 ms of a 20.6 ms ``pool_grad`` (PyTorch's autograd of the
    whole: 17.7 ms)."""
    channels = x.shape[1] if layout == "channels_first" else x.shape[-1]
    return (cl_params_variant(reduction, "param_grad", prm, channels) is not None
            and reduction not in _ROWS_OF_ARRAYS
            and all(a.planes == 1 for a in axes)
            and (layout == "channels_last" or x.shape[1] >= VIA_CHANNELS_LAST_MIN_CHANNELS))


_ROWS_OF_ARRAYS: weakref.WeakSet = weakref.WeakSet()
"""Reductions whose ``param_grad`` or ``param_grad_window`` use ``out`` as only an array
allows (a slice), so that the channels-last kernel, which hands them a
:func:`numbapool.kernels.slots.slot_row`, did not compile: the channels-first kernel serves
them."""


def backward_and_param_grad(reduction: Reduction, layout: str, x: np.ndarray,
                            grad_out: np.ndarray, axes: Sequence[AxisWindows],
                            prm: np.ndarray, include_pad: bool = True,
                            override: float | None = None, u: np.ndarray | None = None
                            ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`backward` and :func:`param_grad` of one call.  Where both run channels-first
    input in the channels-last kernels, they share the transposed ``x``, ``grad_out`` and
    forward result (each would transpose them, and compute the forward, for itself: gem's
    ``pool_grad`` with ``dL/dp``, (8, 64, 56, 56) float32 3x3/s2/p1: 4.43 against 5.42 ms,
    Zen 4, 2 threads, in one process)."""
    if (layout == "channels_first" and _grad_runs_channels_last(reduction, layout, x, axes, prm)
            and param_grad_runs_channels_last(reduction, layout, x, axes, prm)):
        xl, gl, yl = _channels_last_copies(reduction, x, grad_out, axes, prm, include_pad,
                                           override)
        gx = backward(reduction, "channels_last", xl, gl, axes, prm, include_pad, override,
                      y=yl)
        return (transpose.to_channels_first(gx),
                param_grad(reduction, xl, gl, axes, prm, include_pad, override,
                           "channels_last", y=yl))
    y = None
    if (layout == "channels_last" and isinstance(reduction, (Streaming, Weighted))
            and param_grad_runs_channels_last(reduction, layout, x, axes, prm)):
        # (one forward pass for both: with parameters by channel it runs channels first,
        # between transposes)
        y = _forward_values(reduction, layout, x, axes, prm, include_pad, override)
    return (backward(reduction, layout, x, grad_out, axes, prm, include_pad, override, u=u,
                     y=y),
            param_grad(reduction, x, grad_out, axes, prm, include_pad, override, layout, y=y))


def param_grad(reduction: Reduction, x: np.ndarray, grad_out: np.ndarray,
               axes: Sequence[AxisWindows], prm: np.ndarray, include_pad: bool = True,
               override: float | None = None, layout: str = "channels_first",
               y: np.ndarray | None = None) -> np.ndarray:
    """Gradient with respect to the parameters, per (n, c) plane: float64
    ``(N, C, n_params)``, in the channels-last kernel where
    :func:`param_grad_runs_channels_last`, else in the channels-first one (``x`` and
    ``grad_out`` transposed there if channels last).  ``y``: the forward result of
    channels-last ``x``, if already known."""
    if isinstance(reduction, (Selection, Sampling)):
        # (a selection's choice reads no parameter; a sample is an element of its window,
        # whatever the parameters that weighed the draw: locally constant in them, zeros)
        channels = x.shape[1] if layout == "channels_first" else x.shape[-1]
        return np.zeros((x.shape[0], channels, prm.shape[-1]))
    zero = _zero(reduction, x.dtype)
    args = (*_tables(tuple(axes)), *_divisors(axes, include_pad, override, zero), zero,
            for_kernel(prm, zero))
    if param_grad_runs_channels_last(reduction, layout, x, axes, prm):
        if layout == "channels_first":
            xl, gl, yl = _channels_last_copies(reduction, x, grad_out, axes, prm, include_pad,
                                               override)
        else:
            xl, gl = x, grad_out
            yl = y if y is not None else _forward_values(reduction, layout, x, axes, prm,
                                                         include_pad, override)
        n, o0, o1, c = yl.shape[0], yl.shape[1], yl.shape[2], yl.shape[4]
        gp = np.zeros((prm.shape[1], n * o0 * o1, c), dtype=np.float64)
        variant = _params_kernel(reduction, "channels_last", "param_grad", prm, c)
        try:
            get_kernel(reduction, "channels_last", variant)(xl, yl, gl, gp, *args)
        except numba.core.errors.TypingError:
            _ROWS_OF_ARRAYS.add(reduction)  # (see there; the error repeats on every call)
        else:
            return np.moveaxis(gp.reshape(prm.shape[1], n, o0 * o1, c).sum(axis=2), 0, -1)
    if layout != "channels_first":
        x, grad_out = transpose.to_channels_first(x), transpose.to_channels_first(grad_out)
    y, _ = forward(reduction, "channels_first", x, axes, prm, include_pad, override)
    n, c, o0, o1 = y.shape[:4]
    gp = np.zeros((n * c * o0 * o1, prm.shape[1]), dtype=np.float64)
    get_kernel(reduction, "channels_first", "param_grad")(x, y, grad_out, gp, *args)
    return gp.reshape(n, c, o0 * o1, prm.shape[1]).sum(axis=2)
