"""Repeated calls of a pooler whose window rule draws new windows on every call.

Fractional pooling draws every ``(n, c)`` plane's windows at random, so a repeated call (the
same arguments, new data) cannot keep its windows the way a sliding pooler keeps its whole
kernel plan.  Building them anew costs more than the kernel on small inputs: window objects
per axis, the kernel's choice of tables (per-channel layouts for the channels-last kernel),
and the packing of the kernel's arguments (measured about 0.16 ms a call for (8, 56, 56, 64)
to 28x28 windows of 3, where the kernel takes 0.25 ms).

A rule that can draw another call's window starts into arrays it is given returns, with its
plan, a ``redraw`` function (:attr:`numbapool.windows.WindowPlan.redraw`).
:class:`RedrawnForward` keeps a forward plan bound to private copies of the window tables
(:meth:`numbapool.geometry.AxisWindows.redrawable`); each call draws new starts, writes them
and the tables made from them in place, checking them, and runs the bound kernel.  Where the
kernel allows, its own threads write the tables, each those it reads, as the first step of
their share of the kernel (:mod:`numbapool.kernels.restart`); elsewhere the calling thread
does (:meth:`~numbapool.geometry.AxisWindows.restart`).  Where the rule computes one plane's
starts at a time (``plane_address``) and the kernel has a variant that takes them
(:func:`numbapool.kernels.cpu.with_plane_fill`), no table is written: each kernel thread
computes the starts of the plane it reads into its own scratch.  The masked channels-last
kernels do the same a batch at a time, where the rule computes several planes' starts by
position (``positions_address``; :func:`numbapool.kernels.cpu.with_positions_fill`).  The
masked kernels with indices (:mod:`numbapool.kernels.masked_indices`) have no such variant:
their threads write each batch's per-channel tables before reading them.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import replace
from typing import Any

import numba
import numpy as np

from . import randomness
from .geometry import SINGLETON, distinct
from .kernels import cpu, masked_tiles
from .kernels.batch_starts import FLAGS
from .kernels.launch import _call_part, _threads
from .kernels.restart import PlaneRestart
from .reduction import Sampling
from .windows import StartsInParts, WindowContext

__all__ = ["RedrawnForward"]


class RedrawnForward:
    """The forward pass of a repeated call whose windows are drawn anew (see the module)."""

    def __init__(self, call: Any, seed: int | None, with_indices: bool) -> None:
        plan, batch, channels = call.plan, call.work.shape[0], call.channels()
        self._rule = type(call.pooler.window).__name__
        self._pooler = call.pooler.name
        self._redraw = plan.redraw
        self._seed = seed
        self._batch, self._channels, self._dtype = batch, channels, call.x.dtype
        self.work_shape, self._work_dtype = call.work.shape, call.work.dtype
        # (per-plane windows are redrawn into private copies; shared ones stay, as long as
        # every plane's new windows are theirs)
        self._axes = tuple(a if a.planes == 1 else a.redrawable() for a in plan.axes)
        self.stale = False
        axes = (SINGLETON,) * (3 - len(self._axes)) + self._axes
        self.plan = cpu.plan_forward(call.reduction, call.kernel_layout, call.work, axes,
                                     call.prm, call.include_pad, call.override,
                                     with_indices=with_indices)
        # (only the tables the kernel reads are redrawn; a channels-first call may run the
        # channels-last kernel between transposes: with indices, or on small planes)
        kernel = self.plan.inner if isinstance(self.plan, cpu.ViaChannelsLast) else self.plan
        self._tables = tuple(a.tables_in(kernel.args) for a in self._axes)
        # (a rule that takes starts in either order draws those of an axis whose kernel
        # reads them by channel only into the transpose of an (out, planes) array: their
        # restart then reads channels in a row)
        by_position = bool(getattr(self._redraw, "any_layout", False))
        self._starts = tuple(
            np.empty((a.out, batch * channels), dtype=np.int64).T
            if by_position and a.planes > 1 and "table" not in t else
            np.empty((batch * channels, a.out), dtype=np.int64)
            for a, t in zip(self._axes, self._tables))
        self._per_plane = tuple(i for i, a in enumerate(self._axes) if a.planes > 1)
        # (the axes all planes share, with their new starts: checked after each draw)
        self._shared = tuple((a, s) for a, s in zip(self._axes, self._starts) if a.planes == 1)
        # (windows every plane shares on every axis, as a whole step gives: where the rule
        # draws in two steps, the threads compute and compare the planes' starts, each its
        # share, instead of the calling thread)
        self._all_shared = None
        if not self._per_plane and hasattr(self._redraw, "in_parts"):
            parts = self._redraw.in_parts(self._starts)
            if parts is not None:
                # (copies: a row of one window is a read-only view, which would type the
                # tuple apart from the others)
                self._all_shared = (parts, tuple(np.array(a.start[0], dtype=np.int64)
                                                 for a in self._axes))
        self._context: WindowContext | None = None  # (the last call's, kept for its rng)
        # (a channels-first call of small planes may run the masked channels-last kernel
        # between transposes: its tables are restarted as a channels-last call's)
        via = isinstance(self.plan, cpu.ViaChannelsLast)
        self._in_kernel, self._in_parts = self._restart_in_kernel(
            kernel, "channels_last" if via else call.layout, batch, channels)
        # (where the kernel has a variant that computes each plane's starts on its threads,
        # the redrawn calls run it: ``_planes`` is its pf argument; ``plan``, bound to the
        # tables, still runs the call that made this pass, whose windows are drawn)
        self._planes = self._planes_plan = self._positions = None
        plane_address = getattr(self._in_parts, "plane_address", None)
        positions_address = getattr(self._in_parts, "positions_address", None)
        filled = None
        if (self._in_kernel is not None and plane_address and call.layout == "channels_first"
                and not via):
            filled = cpu.with_plane_fill(self.plan, call.reduction, axes,
                                         (plane_address, self._in_parts.slots))
        elif (self._in_kernel is not None and positions_address
                and not kernel.with_indices):  # (the masked kernels without indices)
            self._positions = (kernel, call.reduction, axes,
                               (positions_address, self._in_parts.slots), channels, via)
            filled = self._positions_pass()
            if filled is None:
                self._positions = None
        if filled is not None:
            self._planes_plan, self._planes = filled
            self._in_kernel = None
        self.shape = call.result_shape()
        self._lock = threading.Lock()

    def _positions_pass(self) -> tuple[Any, np.ndarray] | None:
        """The masked kernel's pass that computes each batch's starts on its threads
        (:func:`numbapool.kernels.cpu.with_positions_fill`), with scratch for as many
        threads as Numba runs now, and its ``pf``; None where the kernel has none.  For
        channels-first input, on tiles of planes in cache
        (:func:`numbapool.kernels.masked_tiles.tiled_masked`) where a tile width divides the
        planes, else by chunks of batches (:func:`numbapool.kernels.cpu.via_channels_last`)."""
        kernel, reduction, axes, fill, channels, via = self._positions
        if via:
            tiled = masked_tiles.tiled_masked(kernel, reduction, axes, fill, self.work_shape,
                                              self._work_dtype)
            if tiled is not None:
                return tiled
        filled = cpu.with_positions_fill(kernel, reduction, axes, fill, channels)
        if filled is not None and via:
            filled = (cpu.via_channels_last(*filled, self.work_shape, self._work_dtype),
                      filled[1])
        return filled

    def _restart_in_kernel(self, plan: Any, layout: str, batch: int, channels: int
                           ) -> tuple[PlaneRestart | None, StartsInParts | None]:
        """Where the kernel allows, its own threads write the new windows into its tables,
        each the planes or batches it reads (:mod:`numbapool.kernels.restart`): channels-first
        kernels' plane-major tables, and the masked channels-last kernel's per-channel tables
        from starts laid out by position.  And, with every axis per-plane, the rule's
        ``in_parts`` computes the starts there too, if it can.  (``plan``: the kernel's,
        that of a channels-last pass run between transposes.)"""
        if not self._per_plane or not isinstance(plan, cpu.ForwardPlan):
            return None, None
        axes = [self._axes[i] for i in self._per_plane]
        starts = [self._starts[i] for i in self._per_plane]
        tables = [self._tables[i] for i in self._per_plane]
        if layout == "channels_first" and all(
                t == {"table"} and s.flags.c_contiguous for s, t in zip(starts, tables)):
            channels_last = None
        elif (layout == "channels_last" and plan.tasks is not None
                and all("table" not in t and s.flags.f_contiguous
                        for s, t in zip(starts, tables))):
            channels_last = (batch, channels, tables)
        else:
            return None, None
        parts = None
        if len(axes) == len(self._axes) and hasattr(self._redraw, "in_parts"):
            parts = self._redraw.in_parts(self._starts)
        fill = None if parts is None else (parts.address, parts.slots)
        return PlaneRestart(axes, starts, fill, channels_last), parts

    @classmethod
    def make(cls, call: Any, seed: int | None, with_indices: bool) -> RedrawnForward | None:
        """The kept forward pass of ``call`` (an ``api._Call`` on the CPU), or None where
        it has none: the rule gives no ``redraw``, a window is not whole, the kernel runs
        in the other layout, or the reduction samples."""
        plan = call.plan
        planes = call.work.shape[0] * call.channels()
        if (plan.redraw is None or call.target != "cpu" or planes < 2
                or call.kernel_layout != call.layout or isinstance(call.reduction, Sampling)
                or not all(a.planes in (1, planes) and a.full for a in plan.axes)
                or any(bool(np.any(distinct(a.padded_count) != a.extent)) for a in plan.axes)):
            return None
        return cls(call, seed, with_indices)

    def run(self, x: np.ndarray, data: dict[str, np.ndarray] | None = None
            ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """Pool ``x`` (C-contiguous, of the first call's shape and dtype) with new windows:
        ``(out, indices or None)`` in the caller's shape; None if another thread is running
        this pass, or (``stale`` then True) if the planes' new windows along an axis they
        shared differ (the caller then plans the call itself).  ``data``: the call's values
        of the rule's data options (``WindowContext.data``)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            rng = randomness.generator(self._seed)
            context = self._context
            if context is None or context.rng is not rng:  # (the calling thread's)
                context = self._context = WindowContext(self._batch, self._channels,
                                                        self._dtype, rng)
            if data:
                context = replace(context, data=data)
            if self._all_shared is not None:
                parts, rows = self._all_shared
                parts.draw(context)
                differ = _fill_and_compare(parts.address, parts.slots,
                                           self._batch * self._channels, _threads(),
                                           self._starts, rows)
                if differ < 0:
                    raise RuntimeError(f"window rule {self._rule} of pooler "
                                       f"{self._pooler!r} raised in compiled code while "
                                       "drawing its windows")
                if differ > 0:
                    self.stale = True
                    return None
            else:
                if self._in_parts is not None:
                    self._in_parts.draw(context)
                else:
                    self._redraw(context, self._starts)
                for axis, start in self._shared:
                    if not _every_row_is(start, axis.start[0]):
                        self.stale = True
                        return None
            if self._positions is not None and _threads() > cpu.positions_parts(self._planes):
                self._planes_plan, self._planes = self._positions_pass()  # (more threads now)
            if self._planes is not None:
                self._planes[FLAGS] = 0
                out, idx = self._planes_plan.run(x.reshape(self.work_shape))
                if np.count_nonzero(self._planes[FLAGS]):
                    self._refused_planes()
            elif self._in_kernel is not None:
                out, idx = self.plan.run(x.reshape(self.work_shape),
                                         before=self._in_kernel.before())
                outside = self._in_kernel.outside()
                if outside is not None:
                    if self._in_parts is not None:
                        self._in_parts.check()
                    self._outside(self._per_plane[outside])
            else:
                for i in self._per_plane:
                    if not self._axes[i].restart(self._starts[i], self._tables[i]):
                        self._outside(i)
                out, idx = self.plan.run(x.reshape(self.work_shape))
        finally:
            self._lock.release()
        return out.reshape(self.shape), (None if idx is None else idx.reshape(self.shape))

    def _refused_planes(self) -> None:
        """After a run in which the kernel found a plane's starts outside an axis: the
        rule's error (from every plane's starts, written now), or the library's."""
        fill = ctypes.CFUNCTYPE(ctypes.c_ssize_t, ctypes.c_void_p, ctypes.c_ssize_t,
                                ctypes.c_ssize_t)(self._in_parts.address)
        if fill(self._in_parts.slots, 0, self._batch * self._channels) != 1:
            raise RuntimeError(f"window rule {self._rule} of pooler {self._pooler!r} raised "
                               "in compiled code while drawing its windows")
        self._in_parts.check()
        axis = int(np.flatnonzero(self._planes[FLAGS])[0]) - (3 - len(self._axes))
        self._outside(axis)

    def _outside(self, i: int) -> None:
        raise ValueError(
            f"window rule {self._rule} of pooler {self._pooler!r} redrew windows outside "
            f"spatial axis {i} of length {self._axes[i].length}")


@numba.njit(parallel=True, cache=True, nogil=True)
def _fill_and_compare(fill, slots, planes, parts, starts, rows):
    """Each of ``parts`` threads writes the starts of its share of the planes (the rule's
    callback ``fill`` at its address, ``slots`` its argument) into ``starts`` (a tuple, an
    ``(planes, out)`` array an axis) and compares them with the axis's row of ``rows``
    (:func:`_every_row_is`): the number of shares and axes that differ, or -1 if the
    callback raised."""
    differ = 0
    failed = 0
    for part in numba.prange(parts):
        lo = planes * part // parts
        hi = planes * (part + 1) // parts
        if _call_part(fill, slots, lo, hi) != 1:
            failed += 1
        else:
            for a in range(len(starts)):
                differ += not _every_row_is(starts[a][lo:hi], rows[a])
    return -1 if failed else differ


@numba.njit(cache=True, nogil=True)
def _every_row_is(start, row):
    """Whether every row of ``start`` (planes, out) is ``row`` (out)."""
    for p in range(start.shape[0]):
        for o in range(start.shape[1]):
            if start[p, o] != row[o]:
                return False
    return True
