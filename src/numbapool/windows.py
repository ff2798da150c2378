"""Window rules: from user options to per-axis window tables.

A window rule says which input positions feed each output position, independently per spatial
axis.  It turns the geometry options a user passed into one
:class:`~numbapool.geometry.AxisWindows` per spatial axis.  Rules are plain Python and run once
per call, never inside a kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .geometry import AxisWindows, adaptive_axis, global_axis, same_padding, sliding_axis
from .options import check_bool, check_output_size, per_axis_ints, per_axis_padding

__all__ = ["WindowContext", "WindowPlan", "WindowRule", "StartsInParts", "Sliding", "Adaptive",
           "Global"]


@dataclass(frozen=True)
class WindowContext:
    """What a window rule may need besides the spatial shape and its options.

    Attributes
    ----------
    batch, channels : int
        N and C; rules that give each ``(n, c)`` plane its own windows return tables with
        ``batch * channels`` planes (row-major over ``(n, c)``).
    dtype : numpy.dtype
        The input's dtype (some rules, like PyTorch's fractional pooling, compute in it).
    rng : numpy.random.Generator or None
        The call's random generator for non-deterministic poolers: the numbers of
        ``np.random.default_rng(seed)``, or fresh ones for ``seed=None``.  It is the
        calling thread's (:func:`numbapool.randomness.generator`): use it during the call,
        do not keep it.
    data : mapping of str to array
        For a plan's ``redraw`` on a repeated call: the call's values of the rule's
        :attr:`~WindowRule.data_options` that the caller gave, as given (the first call
        passes them to :meth:`WindowRule.plan` as options).  Not checked by the library:
        ``redraw`` checks them as ``plan`` does.  Empty otherwise.
    """

    batch: int
    channels: int
    dtype: np.dtype
    rng: np.random.Generator | None = None
    data: Mapping[str, np.ndarray] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class WindowPlan:
    """The windows of one call.

    Attributes
    ----------
    axes : tuple of AxisWindows
        One entry per spatial axis.
    count_include_pad : bool
        The default for ``count_include_pad`` implied by the padding (True for numeric padding,
        as in PyTorch; False for ``"same"``, as in TensorFlow/Keras).
    drop_spatial : bool
        Whether the spatial axes are removed from the result (global pooling without keepdims).
    redraw : callable or None
        For a rule that draws its windows at random on every call: ``redraw(context,
        starts)`` draws the windows of another call with the same arguments (a new
        ``context``, with its random generator), writing the window starts of spatial axis
        ``a`` into ``starts[a]``, a writable C-contiguous int64 array of shape
        ``(batch * channels, out)``, one row per ``(n, c)`` plane; if ``redraw.any_layout``
        is true, ``starts[a]`` may instead be F-contiguous (the transpose of an ``(out,
        batch * channels)`` array, which channels-last kernels lay out by channel faster),
        and ``redraw`` writes through the array it is given (``starts[a][...] = s``), never
        through a reshaped copy.  The windows must
        otherwise be this plan's: of as many outputs per axis, each a whole window of
        ``extent`` taps ``step`` apart.  It must draw exactly what :meth:`WindowRule.plan`
        would (a seeded call gives the same windows either way).  A repeated call runs it
        instead of ``plan`` when every axis holds whole windows, and skips building window
        objects and choosing and binding a kernel; the library checks that the starts lie
        inside the input.  An axis whose windows every plane shares in the plan stays as it
        is while each draw gives every plane those windows; a call whose draw does not is
        planned anew.  None (the default): ``plan`` runs on every call.  Where the rule
        has :attr:`~WindowRule.data_options`, a plan made from values the caller gave draws
        from those a repeated call gives instead (``context.data``).

        Optionally, ``redraw.in_parts(starts)`` (``starts`` as above, C- or F-contiguous,
        one an axis, every axis per-plane, or every axis shared by the planes in the plan),
        called once, returns a :class:`StartsInParts` that draws in two steps (or None): the
        kernel's threads then compute the starts of the planes they read, which is faster
        than reading starts another core wrote; where every axis is shared, the threads
        compute their share of the planes' starts and compare them with the plan's.
    """

    axes: tuple[AxisWindows, ...]
    count_include_pad: bool = True
    drop_spatial: bool = False
    redraw: Callable[[WindowContext, tuple[np.ndarray, ...]], None] | None = field(
        default=None, compare=False)

    @property
    def out_spatial(self) -> tuple[int, ...]:
        return tuple(a.out for a in self.axes)


class StartsInParts(Protocol):
    """The new windows of a repeated call computed on the kernel's threads (see
    :attr:`WindowPlan.redraw`), for the starts arrays ``in_parts`` was given.

    Attributes
    ----------
    address : int
        The address of a C callback ``intp(voidptr slots, intp first, intp end)`` (a
        ``numba.cfunc``; :func:`numbapool.kernels.launch.contiguous` and ``address`` turn
        ``slots`` into arrays) that writes the starts of planes ``first`` to ``end - 1`` of
        every axis and returns 1 (Numba's wrapper returns 0 if it raised).  Each kernel
        thread calls it for the planes it reads, just before reading them; two threads may
        write a plane they share, so it must write the same values.  The library then
        checks the starts (where the plan's windows are every plane's along every axis, it
        compares them with those: a call whose starts differ is planned anew).  (Where
        ``plane_address`` is taken instead, it runs only after a call that found starts
        outside, to write every plane's for :meth:`check`.)
    slots : int
        The address of the callback's ``slots``, the same on every call.
    plane_address : int, optional
        The address of a second C callback ``intp(voidptr slots, intp plane, intp into)``
        (the same ``slots``) that writes the starts of plane ``plane`` of every axis as
        int32, axis after axis (``out`` values each), into the memory at address ``into``,
        and returns 1 (0 if it raised).  Kernels that can take it (channels first, the
        gather kernel) call it for each plane they read, into their own scratch, so that
        the starts never leave the core's cache; the library then checks them.
    positions_address : int, optional
        The address of a third C callback ``intp(voidptr slots, intp first, intp count,
        intp into)`` (:data:`numbapool.kernels.launch.POSITIONS_SIGNATURE`, the same ``slots``)
        that writes the starts of planes ``first`` to ``first + count - 1`` of every axis as
        int32 by position, an ``(out, count)`` C-contiguous block an axis, axis after axis,
        into the memory at ``into``, and returns 1 (0 if it raised).  The channels-last
        masked kernels call it for the channels of each batch they read
        (:mod:`numbapool.kernels.batch_starts`); the library then checks the starts.
        Like the others, it runs on several kernel threads at once, two of which may
        write the same planes (each into its own memory): it must keep no state of its
        own and write the same values for a plane every time.
    """

    address: int
    slots: int

    def draw(self, context: WindowContext) -> None:
        """Draw what the next call's windows depend on (from ``context.rng``, in the same
        order as ``redraw`` would) into the memory ``slots`` points to."""

    def check(self) -> None:
        """After a call whose starts the library found outside an axis (every plane's starts
        written): raise the rule's own error, or return for the library's."""


class WindowRule:
    """Base class.  Subclasses set ``name`` and ``options`` (the option names they read, with
    their defaults) and implement :meth:`plan`."""

    name: str = ""
    options: Mapping[str, object] = {}
    data_options: frozenset[str] = frozenset()
    """Options (among :attr:`options`) whose values are data of the call, as ``x`` is, not
    its geometry: arrays that change from call to call, such as fractional pooling's
    ``samples``.  For a pooler that draws its windows (``deterministic=False``), a call
    repeated with NumPy arrays for them (of the same shapes and dtypes) and every other
    argument the same skips the argument checks like any repeated call: the plan's
    ``redraw`` (:attr:`WindowPlan.redraw`) gets the new arrays in ``context.data``, or,
    without a ``redraw``, :meth:`plan` runs with them.  Values of other types repeat a call
    when equal (a list) or the same object (a tensor, which may hold new values): they are
    passed the same way.  (A deterministic pooler's call with an array option is checked and
    planned anew every time.)"""

    def plan(self, spatial: tuple[int, ...], context: WindowContext,
             **options: object) -> WindowPlan:
        """Windows for an input with these spatial sizes.

        Parameters
        ----------
        spatial : tuple of int
            Input lengths of the spatial axes.
        context : WindowContext
            Batch and channel counts, dtype and random generator of the call.
        **options
            The rule's options (the keys of :attr:`options`), as the caller gave them.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Sliding(WindowRule):
    """A kernel sliding with a stride, with padding, dilation and ceil mode."""

    name = "sliding"
    options = {"kernel_size": None, "stride": None, "padding": 0, "dilation": 1,
               "ceil_mode": False}

    def plan(self, spatial, context=None, *, kernel_size=None, stride=None, padding=0,
             dilation=1, ceil_mode=False) -> WindowPlan:
        rank = len(spatial)
        if kernel_size is None:
            raise ValueError("kernel_size is required for sliding-window pooling")
        k = per_axis_ints(kernel_size, rank, "kernel_size")
        s = k if stride is None else per_axis_ints(stride, rank, "stride")
        d = per_axis_ints(dilation, rank, "dilation")
        ceil_mode = check_bool(ceil_mode, "ceil_mode")
        pads = per_axis_padding(padding, rank)
        same = pads == "same"
        if same:
            pads = tuple(same_padding(*args) for args in zip(spatial, k, s, d))
        axes = []
        for axis, (length, kk, ss, (pb, pa), dd) in enumerate(zip(spatial, k, s, pads, d)):
            try:
                axes.append(sliding_axis(length, kk, ss, pb, pa, dd, ceil_mode))
            except ValueError as exc:
                raise ValueError(f"spatial axis {axis}: {exc}") from None
        return WindowPlan(tuple(axes), count_include_pad=not same)


class Adaptive(WindowRule):
    """PyTorch's adaptive bins for a requested output size."""

    name = "adaptive"
    options = {"output_size": None}

    def plan(self, spatial, context=None, *, output_size=None) -> WindowPlan:
        sizes = check_output_size(output_size, spatial)
        return WindowPlan(tuple(adaptive_axis(L, o) for L, o in zip(spatial, sizes)))


class Global(WindowRule):
    """One window over all spatial positions."""

    name = "global"
    options = {"keepdims": False}

    def plan(self, spatial, context=None, *, keepdims=False) -> WindowPlan:
        keepdims = check_bool(keepdims, "keepdims")
        return WindowPlan(tuple(global_axis(L) for L in spatial), drop_spatial=not keepdims)
