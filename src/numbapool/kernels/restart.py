"""New window starts written into a kernel's tables by the kernel's own threads, each
thread the planes its part of the kernel reads, just before it reads them.

A redrawn call (:mod:`numbapool.redraw`) moves the windows of a kept kernel plan on every
call.  Written by the calling thread alone (:meth:`numbapool.geometry.AxisWindows.restart`),
the window tables' cache lines are then modified in that core's cache, and the other core's
part of the kernel must fetch each line it reads from there.  On this project's 2-core
virtual machines that cost from almost nothing to 0.15 ms a call, depending on where the
host placed the two cores (fractional max pool of (8, 64, 56, 56) to 28x28 with 3x3
windows: 0.29 ms for the kernel alone, 0.46 ms after a serial restart).  A separate
parallel copy before the kernel cost another parallel region's start, 0.026 ms.

So :class:`PlaneRestart` is run by :func:`numbapool.kernels.launch.drive_after` on each
thread, before that thread's part of the kernel: part ``p`` of ``parts`` copies the starts
of planes ``floor(P p / parts)`` to ``ceil(P (p + 1) / parts)`` (of ``P``) into ``table[...,
0]`` and checks them, and its part of the kernel runs only if they are all inside the axis.

That range holds every plane the kernel's part reads, whatever its tasks: every
channels-first forward kernel numbers its ``NT = P * U`` tasks plane by plane (``U`` tasks a
plane: output rows, or output slices of a volume) and gives part ``p`` tasks ``NT p //
parts`` to ``NT (p + 1) // parts``, whose planes lie in that range (see
:data:`numbapool.kernels.templates._TASKS`).  Two parts may both write a plane their tasks
share, with the same values.  A start outside the axis is seen by every part that reads it,
which then runs none of its tasks.

The channels-last masked kernel numbers its tasks batch by batch, so there the units are
batches: part ``p`` writes the per-channel tables of batches ``floor(N p / parts)`` to
``ceil(N (p + 1) / parts)``, from starts laid out by position.  A rule's fill
(:class:`numbapool.windows.StartsInParts`) may compute those starts on the same thread
first: the planes of its units.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from ..geometry import AxisWindows, _channel_pass_by_position, copy_planes
from .launch import SIGNATURE, Before, _call_part, address, contiguous

__all__ = ["PlaneRestart"]

_HEAD = 6  # units, axes, address of ``refused``, the fill's address (or 0) and its slots,
#           channels (0: channels-first)
_AXIS = 6  # per axis: address of the starts, out, largest start, and the addresses of the
#           plane-major table, or (channels last) of ``by_channel``, ``lo`` and ``delta`` (0
#           for those not written)


@numba.cfunc(SIGNATURE, cache=True, nogil=True)
def _restart_part(slots, part, parts):
    """Part ``part`` of ``parts`` (see the module), after the fill, if any, has written
    its units' starts: returns 1, 2 with ``refused[a]`` set to 1 for the first axis ``a``
    whose starts in its units leave the axis, or 0 if the fill failed."""
    head = contiguous(address(slots), (_HEAD,), np.int64)
    units, axes, channels = head[0], head[1], head[5]
    s = contiguous(address(slots), (_HEAD + _AXIS * axes,), np.int64)
    refused = contiguous(s[2], (axes,), np.int64)
    first = units * part // parts
    end = (units * (part + 1) + parts - 1) // parts
    per = max(channels, 1)  # (planes a unit)
    if s[3] != 0 and _call_part(s[3], s[4], first * per, end * per) != 1:
        return 0
    for a in range(axes):
        at = _HEAD + _AXIS * a
        out, last = s[at + 1], s[at + 2]
        if channels == 0:
            smallest, largest = copy_planes(
                contiguous(s[at], (units * out,), np.int64),
                contiguous(s[at + 3], (3 * units * out,), np.int64), first, end, out)
        else:
            n = (units if s[at + 3] else 0, units if s[at + 4] else 0,
                 units if s[at + 5] else 0)
            _, smallest, largest = _channel_pass_by_position(
                contiguous(s[at], (out, units * channels), np.int64), channels,
                contiguous(s[at + 3], (n[0], out, channels), np.int64),
                contiguous(s[at + 4], (n[1], out), np.int64),
                contiguous(s[at + 5], (n[2], out, channels), np.int32), first, end)
        if smallest < 0 or largest > last:
            refused[a] = 1
            return 2
    return 1


class PlaneRestart:
    """The windows of ``axes`` (copies made by :meth:`AxisWindows.redrawable`, each with
    ``planes`` planes) moved to ``starts`` (int64 ``(planes, out)`` arrays, one an axis,
    which the caller refills before each run) on the kernel's threads (see the module):
    :meth:`before` gives the step to run the kernel with, :meth:`outside` says after the
    run which axis, if any, had starts outside it (the kernel's output is then not valid).

    Channels first, ``starts`` are C-contiguous and the plane-major tables are written,
    each thread its kernel part's planes.  Channels last (``channels_last=(batch, channels,
    tables)``: ``tables`` per axis, names as in :meth:`AxisWindows.restart`), ``starts``
    are F-contiguous and the per-channel tables of the masked kernel are written, each
    thread its part's batches (that kernel numbers its tasks batch by batch).

    ``fill``: the starts are not refilled by the caller but on the kernel's threads too, by
    the C callback at ``fill[0]`` (of :data:`~numbapool.kernels.launch.SIGNATURE`), called
    as ``(fill[1], first, end)`` to write planes ``first`` to ``end - 1`` of every axis's
    ``starts`` (:class:`numbapool.windows.StartsInParts`; channels last, the planes of the
    part's batches); it returns 1, or 0 if it raised.  Then nothing the calling thread
    wrote for the new windows crosses to another core but what the fill reads (a window
    rule's random samples, say)."""

    def __init__(self, axes: Sequence[AxisWindows], starts: Sequence[np.ndarray],
                 fill: tuple[int, int] | None = None,
                 channels_last: tuple[int, int, Sequence[frozenset[str]]] | None = None
                 ) -> None:
        if len(axes) != len(starts) or not axes:
            raise ValueError("PlaneRestart takes one array of starts for each of its axes")
        planes = axes[0].planes
        self._axes = tuple(axes)
        self._starts = tuple(starts)
        self._tables = None if channels_last is None else tuple(channels_last[2])
        self._refused = np.zeros(len(axes), dtype=np.int64)  # (set by the parts that refuse)
        units, channels = (planes, 0) if channels_last is None else channels_last[:2]
        if units * max(channels, 1) != planes:
            raise ValueError(f"{units} batches of {channels} channels are not {planes} planes")
        slots = [units, len(axes), self._refused.ctypes.data, *(fill or (0, 0)), channels]
        self._kept = []  # (the tables the slots point to)
        for a, (axis, start) in enumerate(zip(axes, starts)):
            if axis.planes != planes:
                raise ValueError("the axes of a PlaneRestart must have the same planes")
            *tables, last = self._prepare(a)
            self._kept += tables
            slots += [start.ctypes.data, axis.out, last,
                      *(t.ctypes.data if t.size else 0 for t in tables),
                      *(0,) * (3 - len(tables))]
        self._before = Before(_restart_part.address, np.array(slots, dtype=np.int64))

    def _prepare(self, a: int) -> tuple:
        axis, start = self._axes[a], self._starts[a]
        if self._tables is None:
            return axis.table_for_restart(start)
        return axis.channel_tables_for_restart(start, self._tables[a])

    def before(self) -> Before:
        """The step to run the kernel with (clears the last run's refusals; the axes forget
        what their old windows made)."""
        self._refused[:] = 0
        for a in range(len(self._axes)):
            self._prepare(a)
        return self._before

    def outside(self) -> int | None:
        """After a run: the first axis (its number among the axes given) at which a part
        found new starts outside it and stopped, or None if every part ran."""
        for a in range(self._refused.size):
            if self._refused[a]:
                return a
        return None
