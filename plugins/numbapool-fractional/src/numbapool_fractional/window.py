"""The fractional window rule: per-axis window tables from random pooling sequences."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from numbapool import AxisWindows, WindowContext, WindowPlan, WindowRule, explicit_axis
from numbapool.options import check_bool, per_axis_ints, typed_key
from numbapool.randomness import prepare_uniform_rows, uniform_rows

from .sequences import (
    _check_rounding,
    _compiled_constants,
    _compiled_starts,
    _dtype_name,
    _fill_parts,
    _fill_plane,
    _fill_positions,
    _torch_starts,
    graham_output_size,
    graham_sequence,
    graham_windows,
    torch_output_size,
    torch_sample_column,
)

__all__ = ["Fractional"]


def _per_axis(value: object, rank: int, name: str) -> tuple:
    if value is None or np.ndim(value) == 0:
        return (value,) * rank
    values = tuple(value)  # type: ignore[arg-type]
    if len(values) != rank:
        raise ValueError(f"{name} must be a single value or {rank} values (one per spatial "
                         f"axis), got {len(values)}")
    return values


def _torch_dtype(dtype: np.dtype) -> np.dtype:
    # PyTorch computes the sequences in the input's floating type; integers use float64.
    return np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype(np.float64)


class Fractional(WindowRule):
    """Fractional pooling windows.

    Two rules, chosen by ``pseudo_random``:

    ``pseudo_random=None`` (default): PyTorch's ``fractional_max_pool2d/3d``.  Every
    ``(n, c)`` plane gets its own windows of ``kernel_size`` (default 2) from one uniform
    sample per plane and axis: ``samples`` (an ``(N, C, rank)`` array with the meaning of
    PyTorch's ``_random_samples``), or drawn from ``seed``.

    ``pseudo_random=True`` / ``False``: Graham's (TensorFlow's) pseudo-random or random pooling
    sequences, shared by all planes; windows ``[a_i, a_{i+1})``, or ``[a_i, a_{i+1}]`` with
    ``overlapping=True``.

    The output size comes from ``output_size`` or ``output_ratio`` (``int(L * ratio)``).
    """

    name = "fractional"
    options = {"kernel_size": None, "output_size": None, "output_ratio": None,
               "samples": None, "pseudo_random": None, "overlapping": False}
    # (a call repeated with new samples redraws its windows from them, in the kernel's
    # threads, as a seeded one does from its generator)
    data_options = frozenset({"samples"})

    def examples(self, rank: int) -> list[dict]:
        """Options the conformance kit and the benchmarks exercise."""
        cases = [dict(output_ratio=0.7),
                 dict(output_ratio=0.7, pseudo_random=True, overlapping=True),
                 dict(output_ratio=0.6, pseudo_random=False)]
        if rank < 3:
            cases.append(dict(output_ratio=0.6, kernel_size=3))
        return cases

    def plan(self, spatial: Sequence[int], context: WindowContext, *, kernel_size=None,
             output_size=None, output_ratio=None, samples=None, pseudo_random=None,
             overlapping=False) -> WindowPlan:
        axes, _, redraw = self._draw(spatial, context, kernel_size, output_size,
                                     output_ratio, samples, pseudo_random, overlapping)
        return WindowPlan(axes, redraw=redraw)

    def axes(self, spatial, context, *, kernel_size=None, output_size=None,
             output_ratio=None, samples=None, pseudo_random=None, overlapping=False
             ) -> tuple[tuple[AxisWindows, ...], list[np.ndarray]]:
        """The windows and, per axis, the sequence that made them: window starts
        ``(N*C, out)`` for PyTorch's rule, the boundaries ``a_0..a_out`` for Graham's."""
        return self._draw(spatial, context, kernel_size, output_size, output_ratio, samples,
                          pseudo_random, overlapping)[:2]

    def _draw(self, spatial, context, kernel_size, output_size, output_ratio, samples,
              pseudo_random, overlapping):
        """:meth:`axes`, and the plan's ``redraw`` (PyTorch's rule with drawn samples) or
        None."""
        rank = len(spatial)
        if output_size is None and output_ratio is None:
            raise ValueError("fractional pooling needs output_size or output_ratio")
        if output_size is not None and output_ratio is not None:
            raise ValueError("give output_size or output_ratio, not both")
        sizes = _per_axis(output_size, rank, "output_size")
        ratios = _per_axis(output_ratio, rank, "output_ratio")
        overlapping = check_bool(overlapping, "overlapping")
        if pseudo_random is None:
            return self._torch(spatial, context, kernel_size, sizes, ratios, samples,
                               overlapping)
        pseudo_random = check_bool(pseudo_random, "pseudo_random")
        if kernel_size is not None:
            raise ValueError("kernel_size applies to PyTorch's rule (pseudo_random=None); "
                             "Graham's sequences set the window sizes")
        if samples is not None:
            raise ValueError("samples applies to PyTorch's rule (pseudo_random=None)")
        axes, seqs = [], []
        for length, size, ratio in zip(spatial, sizes, ratios):
            out = graham_output_size(length, size, ratio)
            seq = graham_sequence(length, out, context.rng, pseudo_random)
            start, count = graham_windows(seq, length, overlapping)
            axes.append(explicit_axis(length, start, count))
            seqs.append(seq)
        return tuple(axes), seqs, None

    def _torch(self, spatial, context, kernel_size, sizes, ratios, samples, overlapping):
        rank = len(spatial)
        if overlapping:
            raise ValueError("overlapping applies to Graham's sequences (pseudo_random=True "
                             "or False)")
        geometry, name = _torch_geometry(tuple(spatial), context.dtype, kernel_size, sizes,
                                         ratios)
        redraw = _TorchRedraw(geometry, name, rank, given=samples is not None)
        if samples is None:
            samples = redraw.samples(context)
        else:
            samples = _checked_samples(samples, context, rank)
        flat = samples.reshape(context.batch * context.channels, rank)
        axes, seqs = [], []
        for length, kk, out, col in geometry:
            # (the samples are finite: drawn in [0, 1) or checked to lie there; the sizes
            # passed torch_output_size's checks)
            starts = _torch_starts(flat[:, col], length, out, kk, name)
            axes.append(explicit_axis(length, starts, kk, extent=kk))
            seqs.append(starts.reshape(context.batch, context.channels, out))
        return tuple(axes), seqs, redraw


def _checked_samples(samples: object, context: WindowContext, rank: int) -> np.ndarray:
    """``samples`` given by the caller, as an array, once checked: floating point, of shape
    ``(N, C, rank)``, every value in ``[0, 1)``."""
    samples = np.asarray(samples)
    if samples.dtype.kind != "f":
        raise TypeError(f"samples must be floating point, got {samples.dtype}")
    want = (context.batch, context.channels, rank)
    if samples.shape != want:
        raise ValueError(f"samples must have shape {want} (N, C, spatial rank), got "
                         f"{samples.shape}")
    # (two reductions, no temporaries; a NaN fails the first compare)
    if samples.size and not (samples.min() >= 0 and samples.max() < 1):
        raise ValueError("samples must lie in [0, 1)")
    return samples


class _TorchRedraw:
    """The ``redraw`` of a plan of PyTorch's rule (:attr:`WindowPlan.redraw`): the same
    draw as :meth:`Fractional.plan`, the starts written into the library's arrays, for a
    geometry checked once.  ``given``: the plan's samples were the caller's, and a
    repeated call's are too (``context.data["samples"]``, checked as the plan checks
    them); else they are drawn from ``context.rng``."""

    any_layout = True  # (writes through the starts arrays, C- or F-contiguous)

    def __init__(self, geometry: tuple, name: str, rank: int, given: bool = False) -> None:
        self.geometry = geometry
        self.name = name
        self.rank = rank
        self.given = given
        # (float32 and float64 starts from their compiled pass, its constants made once)
        self.compiled = (name in ("float32", "float64")
                         and all(out > 1 for _, _, out, _ in geometry))
        if self.compiled:
            self.constants = [_compiled_constants(length, out, kk, name)
                              for length, kk, out, _ in geometry]

    def samples(self, context: WindowContext) -> np.ndarray:
        """The call's samples, ``(N, C, rank)``: the caller's, checked, or drawn."""
        if self.given:
            if "samples" not in context.data:
                raise ValueError("this plan's windows come from the caller's samples: a "
                                 "redraw needs the new ones in context.data['samples']")
            return _checked_samples(context.data["samples"], context, self.rank)
        return context.rng.random((context.batch, context.channels, self.rank))

    def columns_into(self, context: WindowContext, columns: np.ndarray) -> None:
        """The call's samples into ``columns`` (``(rank, N * C)``, the starts' floating
        type): the caller's, rounded as ``astype`` rounds, or drawn as :meth:`samples`
        draws them (:func:`uniform_rows`: the same numbers, on the kernel's threads)."""
        if self.given:
            planes = context.batch * context.channels
            columns[...] = self.samples(context).reshape(planes, self.rank).T
        else:
            uniform_rows(context.rng, columns)

    def in_parts(self, starts: tuple[np.ndarray, ...]) -> _TorchStartsInParts | None:
        """The draw in two steps (:class:`StartsInParts`) for compiled starts, into
        C-contiguous ``starts`` or F-contiguous ones (planes by position)."""
        if not self.compiled or not all(s.flags.c_contiguous or s.flags.f_contiguous
                                        for s in starts):
            return None
        return _TorchStartsInParts(self, starts)

    def __call__(self, context: WindowContext, starts: tuple[np.ndarray, ...]) -> None:
        planes = context.batch * context.channels
        if not self.compiled or planes == 0:
            flat = self.samples(context).reshape(planes, self.rank)
            for (length, kk, out, col), into in zip(self.geometry, starts):
                _torch_starts(flat[:, col], length, out, kk, self.name, into)
            return
        # (the numbers of samples(), in the starts' floating type, as astype rounds)
        columns = np.empty((self.rank, planes), dtype=self.constants[0][0])
        self.columns_into(context, columns)
        for (length, kk, out, col), (_, steps, alpha), into in zip(
                self.geometry, self.constants, starts):
            lo, hi = _compiled_starts(columns[col], steps, alpha, length - kk, into)
            _check_rounding(lo, hi, self.name, length, out, kk)  # (as _torch_starts)


class _TorchStartsInParts:
    """:class:`_TorchRedraw` in two steps (:class:`numbapool.windows.StartsInParts`): the
    samples drawn (or the caller's copied) on the calling thread, in the floating type of
    the starts, and each kernel thread computing its planes' starts from them
    (:func:`_starts_into`)."""

    def __init__(self, redraw: _TorchRedraw, starts: tuple[np.ndarray, ...]) -> None:
        planes = starts[0].shape[0]
        self._redraw = redraw
        self._starts = starts
        # (the samples' columns, as rows: the draw's transpose, each axis reading its row)
        self._columns = np.empty((redraw.rank, planes), dtype=redraw.constants[0][0])
        self._u = [self._columns[col] for _, _, _, col in redraw.geometry]
        # (the draw's compile in the call that keeps the pass, not the next one, whose
        # kernel compiles: third calls of 2048 channels 2.1 s against 1.5-1.7 s before)
        if not redraw.given:
            prepare_uniform_rows(self._columns)
        self._alpha = [np.array([alpha], dtype=ft) for ft, _, alpha in redraw.constants]
        slots = [len(redraw.geometry), np.dtype(redraw.name).itemsize]
        for (length, kk, _, _), (_, steps, _), u, alpha, into in zip(
                redraw.geometry, redraw.constants, self._u, self._alpha, starts):
            slots += [u.ctypes.data, planes, steps.ctypes.data, steps.size,
                      alpha.ctypes.data, length - kk, into.ctypes.data,
                      int(not into.flags.c_contiguous)]
        self._slots = np.array(slots, dtype=np.int64)
        self.slots = self._slots.ctypes.data
        self.address = _fill_parts.address
        self.plane_address = _fill_plane.address
        self.positions_address = _fill_positions.address

    def draw(self, context: WindowContext) -> None:
        self._redraw.columns_into(context, self._columns)

    def check(self) -> None:
        for (length, kk, out, _), into in zip(self._redraw.geometry, self._starts):
            _check_rounding(int(into.min()), int(into.max()), self._redraw.name, length,
                            out, kk)


def _torch_geometry(spatial: tuple[int, ...], dtype: np.dtype, kernel_size, sizes: tuple,
                    ratios: tuple) -> tuple[tuple[tuple[int, int, int, int], ...], str]:
    """PyTorch's rule's checked geometry: per axis ``(length, kernel size, output length,
    column of the samples)``, and the name of the dtype the starts are computed in.  It
    depends on the arguments only, and fractional pooling runs on every call, so the last
    ones are kept (by the arguments' values and types: ``True`` is not taken for 1)."""
    key = (spatial, np.dtype(dtype).str, typed_key(kernel_size), typed_key(sizes),
           typed_key(ratios))
    try:
        kept = _GEOMETRIES.get(key)
    except TypeError:  # (an unhashable argument: checked and computed anew)
        return _torch_geometry_of(spatial, dtype, kernel_size, sizes, ratios)
    if kept is None:
        kept = _torch_geometry_of(spatial, dtype, kernel_size, sizes, ratios)
        if len(_GEOMETRIES) >= 64:
            _GEOMETRIES.pop(next(iter(_GEOMETRIES)))
        _GEOMETRIES[key] = kept
    return kept


_GEOMETRIES: dict[tuple, tuple] = {}


def _torch_geometry_of(spatial, dtype, kernel_size, sizes, ratios):
    rank = len(spatial)
    k = per_axis_ints(2 if kernel_size is None else kernel_size, rank, "kernel_size")
    geometry = tuple(
        (length, kk, torch_output_size(length, kk, size, ratio, rank=max(rank, 2)),
         torch_sample_column(rank, a))
        for a, (length, kk, size, ratio) in enumerate(zip(spatial, k, sizes, ratios)))
    return geometry, _dtype_name(_torch_dtype(dtype))
