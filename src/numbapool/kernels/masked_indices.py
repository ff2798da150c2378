"""Channels-last selections with indices over per-plane windows (fractional max pooling with
``return_indices``), in place, without transposing the array.

Every channel has its own windows (each ``(n, c)`` plane draws its own), so at one output
position the channels' windows start at different input positions, but close together: the
channels' starts along an axis lie in ``[lo, lo + spread]``, ``spread`` 0 or 1 for PyTorch's
rule (:meth:`numbapool.geometry.AxisWindows.offsets_by_channel` gives ``lo`` per output and
each channel's start after it, ``delta``).  The kernels read the *box* of taps that covers
every channel's window, ``K + spread`` taps along each axis, in loops over the channels.

``forward_masked_indices`` takes any such windows: it scans its box in row-major order, and
each channel takes the taps inside its own window (a mask from its deltas) as the kernel a
window at a time scans them.  Its loop keeps each channel's choice in a scratch row, so every
tap waits on the previous tap's select and store.

``forward_masked_indices_k<K0><K1><K2>_s<s0><s1><s2>`` (:func:`fold_name`) is compiled for
windows of ``K`` taps and a spread of at most ``s`` (0 or 1) along each axis, which covers
PyTorch's rule: each channel's window is folded axis by axis, last axis first, from loads
of its box held in registers.  Along an axis of spread 1 the box has ``K + 1`` taps; the
fold of its ``K - 1`` middle taps is shared by the two windows a channel may have there (its
first ``K`` taps or its last ``K``), each finished by a fold with the tap at its end, and the
channel's delta picks one (a select).  The choices are the same as a window's row-major
scan: a fold over a row, then over the rows in order, keeps the first of equal values and
the last NaN, as :func:`numbapool.kernels.templates._cf_forward_indices_gather` argues.
An output row holding an output whose channels spread wider than the kernel was compiled
for (a redrawn call may draw such windows) is flagged in ``miss``, and the box loop above,
launched after it, computes that whole row.  Fractional max pool of (8, 56, 56, 64) to 39x39
with indices, the kernels alone (``/tmp/s31/proto3.py``, one process, 2 threads): the box
loop 0.86 ms, the folds 0.39 ms; PyTorch 8.2 ms; the library before these kernels, through
the channels-first kernel between transposes, 3.2 ms.

Positions are tracked in int32 (planes of fewer than 2**31 elements), the width of a
float32 lane, and stored as int64 from scratch rows: by a loop of plain stores, or, in a
folded kernel's ``_nt`` twin (:func:`fold_name` with ``nontemporal``, for calls that write at
least :data:`MASKED_INDICES_STREAM_MIN_BYTES`), with non-temporal stores
(:func:`numbapool.kernels.streaming.stream_row`).
"""

from __future__ import annotations

import math
import re

from ..reduction import Reduction, Selection

__all__ = ["MASKED_INDICES", "MASKED_INDICES_MAX_BOX", "MASKED_INDICES_MAX_EXTENT",
           "MASKED_INDICES_STREAM_MIN_BYTES", "fold_name", "parse_fold",
           "masked_indices_source"]

MASKED_INDICES = "forward_masked_indices"
"""The kernel for any per-plane windows (the box loop)."""

MASKED_INDICES_MAX_EXTENT = 4
"""The longest windows (along an axis) the folded kernels are compiled for."""

MASKED_INDICES_MAX_BOX = 32
"""The most taps in a folded kernel's box (the product of ``K + s`` over the axes): each is a
load and a fold in the kernel's loop, which compiles for longer as it grows (3-D windows of
2x2x2 taps: a box of 27)."""

MASKED_INDICES_STREAM_MIN_BYTES = 16 << 20
"""The fewest bytes (values and indices) a call writes for a folded kernel's twin with
non-temporal stores to run it.  Fractional max pool with indices, output ratio 0.7, the
folded kernel streaming against storing from its loop, alternating in one process
(``/tmp/s31/ab_stream.py``): (8, 56, 56, 64), 9.3 MB written, 0.51 against 0.45 ms; (4, 112,
112, 64), 18.7 MB, 1.02 against 1.09 ms; (32, 56, 56, 128), 75 MB, 4.57 against 5.31 ms.
Streaming adds 0.5 s to the kernel's compile (the inlined copy loops), so it is a kernel of
its own, compiled only for such calls."""

_FOLD = re.compile(rf"^{MASKED_INDICES}_k(\d)(\d)(\d)_s([01])([01])([01])(_nt)?$")


def fold_name(extents: tuple[int, int, int], spreads: tuple[int, int, int],
              nontemporal: bool = False) -> str | None:
    """The folded kernel for windows of ``extents`` taps whose starts over the channels
    spread by at most ``spreads`` (0 or 1 each), storing non-temporally if ``nontemporal``,
    or None where there is none (longer windows, or a larger box:
    :data:`MASKED_INDICES_MAX_EXTENT`, :data:`MASKED_INDICES_MAX_BOX`)."""
    if (any(not 1 <= k <= MASKED_INDICES_MAX_EXTENT for k in extents)
            or any(s not in (0, 1) for s in spreads)
            or math.prod(k + s for k, s in zip(extents, spreads)) > MASKED_INDICES_MAX_BOX):
        return None
    return (f"{MASKED_INDICES}_k{''.join(map(str, extents))}"
            f"_s{''.join(map(str, spreads))}{'_nt' if nontemporal else ''}")


def parse_fold(variant: str
               ) -> tuple[tuple[int, int, int], tuple[int, int, int], bool] | None:
    """``(extents, spreads, nontemporal)`` of a folded kernel's name (:func:`fold_name`),
    else None."""
    m = _FOLD.match(variant)
    if m is None:
        return None
    extents = tuple(int(v) for v in m.groups()[:3])
    spreads = tuple(int(v) for v in m.groups()[3:6])
    nontemporal = m.group(7) is not None
    if fold_name(extents, spreads, nontemporal) != variant:  # type: ignore[arg-type]
        return None
    return extents, spreads, nontemporal  # type: ignore[return-value]


def _box_loop() -> str:
    """The lines (level 0) choosing output ``ob``'s windows by scanning their box in
    row-major order into ``best`` and ``bi``: each channel takes the taps inside its own
    window (``inside``), the first of them whatever it holds."""
    return """
for ch in range(C):
    bi[ch] = -1
    best[ch] = xf[numba.uint64((xb + base) * C + ch)]
for i0 in range(K0 + sp0):
    for i1 in range(K1 + sp1):
        for i2 in range(K2 + sp2):
            w = base + (i0 * S1 + i1) * S2 + i2
            u = (xb + w) * C
            f = numba.int32(w)
            j0 = numba.int32(i0)
            j1 = numba.int32(i1)
            j2 = numba.int32(i2)
            for ch in range(C):
                v = xf[numba.uint64(u + ch)]
                # (in 32-bit lanes: a tap before the window wraps round to a large number)
                inside = ((numba.uint32(j0 - e0f[numba.uint64(r0 + ch)]) < k0)
                          & (numba.uint32(j1 - e1f[numba.uint64(r1 + ch)]) < k1)
                          & (numba.uint32(j2 - e2f[numba.uint64(r2 + ch)]) < k2))
                take = inside & ((bi[ch] < 0) | _better(v, best[ch]))
                best[ch] = v if take else best[ch]
                bi[ch] = f if take else bi[ch]
"""


class _Folds:
    """The lines of a folded kernel's loop over the channels, written one at a time."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._made = 0

    def fold(self, a: tuple[str, str], b: tuple[str, str]) -> tuple[str, str]:
        """The fold of ``a`` then ``b`` (value and position names): ``b`` where it is
        better (``_better``: larger, or a NaN), else ``a``."""
        self._made += 1
        t = f"f{self._made}"
        self.lines += [f"{t}b = _better({b[0]}, {a[0]})",
                       f"{t}v = {b[0]} if {t}b else {a[0]}",
                       f"{t}p = {b[1]} if {t}b else {a[1]}"]
        return f"{t}v", f"{t}p"

    def axis(self, taps: list[tuple[str, str]], k: int, spread: int, later: str
             ) -> tuple[str, str]:
        """The fold of each channel's window along an axis, from its box's ``taps`` (``k +
        spread`` of them, in order): all ``k`` where ``spread`` is 0; else the first ``k``
        or the last ``k`` (where ``later``, the channel's start one tap on), picked after
        folding both."""
        if spread == 0:
            acc = taps[0]
            for t in taps[1:]:
                acc = self.fold(acc, t)
            return acc
        middle = taps[1] if k > 1 else None
        for t in taps[2:k]:
            middle = self.fold(middle, t)
        first = self.fold(taps[0], middle) if middle else taps[0]
        last = self.fold(middle, taps[k]) if middle else taps[k]
        self._made += 1
        t = f"f{self._made}"
        self.lines += [f"{t}v = {last[0]} if {later} else {first[0]}",
                       f"{t}p = {last[1]} if {later} else {first[1]}"]
        return f"{t}v", f"{t}p"


def _folded(extents: tuple[int, int, int], spreads: tuple[int, int, int]) -> tuple[str, str]:
    """The lines (level 0) of a folded kernel's output: the scalar offsets and positions of
    its box's taps, and the loop over the channels that folds them into ``best`` and ``bi``
    (stored by a loop of their own, whose int64 stores leave the fold's loop 16 lanes wide:
    storing from the fold's loop took 0.62 against 0.51 ms for (8, 56, 56, 64), 0.31
    against 0.24 for (4, 56, 56, 64), ``/tmp/s31/ab_mi.py``)."""
    boxes = [k + s for k, s in zip(extents, spreads)]
    head = []
    # Each axis's coordinates in the box; the last tap of an axis of spread 1 is read inside
    # the axis (where the box would end past it, no channel's window starts one tap on, so
    # that tap is never taken)
    for a, (k, s) in enumerate(zip(extents, spreads)):
        for i in range(boxes[a]):
            at = f"a{a} + {i}" if i else f"a{a}"
            head.append(f"c{a}_{i} = min({at}, S{a} - 1)" if s and i == k else f"c{a}_{i} = {at}")
    folds = _Folds()
    for a, s in enumerate(spreads):
        if s:
            folds.lines.append(f"e{a} = e{a}f[numba.uint64(r{a} + ch)] != 0")
    planes = []
    for i0 in range(boxes[0]):
        rows = []
        for i1 in range(boxes[1]):
            taps = []
            for i2 in range(boxes[2]):
                t = f"{i0}{i1}{i2}"
                head += [f"w{t} = (c0_{i0} * S1 + c1_{i1}) * S2 + c2_{i2}",
                         f"u{t} = (xb + w{t}) * C",
                         f"p{t} = numba.int32(w{t})"]
                folds.lines.append(f"x{t} = xf[numba.uint64(u{t} + ch)]")
                taps.append((f"x{t}", f"p{t}"))
            rows.append(folds.axis(taps, extents[2], spreads[2], "e2"))
        planes.append(folds.axis(rows, extents[1], spreads[1], "e1"))
    v, p = folds.axis(planes, extents[0], spreads[0], "e0")
    folds.lines += [f"best[ch] = {v}", f"bi[ch] = {p}"]
    loop = "for ch in range(C):\n" + "".join(f"    {line}\n" for line in folds.lines)
    return "\n".join(head) + "\n", loop


def masked_indices_source(red: Reduction, variant: str) -> str:
    """Source of a channels-last selection kernel with indices for per-plane windows:
    :data:`MASKED_INDICES` or a folded kernel (:func:`fold_name`).  Arguments: ``x``,
    ``out``, ``idx``, ``miss`` (a uint8 flag a task: the folded kernel writes 1 for the
    tasks it leaves to the box loop, 0 for the others; the box loop runs the flagged ones),
    per axis the smallest start of each output position over the channels and each
    channel's start after it (``lo{a}``, ``(N, out)``, and ``dt{a}``, ``(N, out, C)``
    int32), and ``dk``.  One task per output row ``(n, o0, o1)``, numbered batch by batch
    (:mod:`numbapool.kernels.restart` relies on it)."""
    from .templates import _block, _chunks, _cl_shapes, _cl_store_indices

    if not isinstance(red, Selection):
        raise ValueError(f"no {variant!r} kernel for {red.kind!r} reductions")
    fold = None if variant == MASKED_INDICES else parse_fold(variant)
    if fold is None and variant != MASKED_INDICES:
        raise ValueError(f"no {variant!r} kernel: not a masked kernel with indices")
    nontemporal = fold is not None and fold[2]
    src = "def kernel(x, out, idx, miss, lo0, dt0, lo1, dt1, lo2, dt2, dk):\n"
    src += _block(_cl_shapes(), 1) + _block("""
        idf = idx.reshape(-1)
        e0f = dt0.reshape(-1)
        e1f = dt1.reshape(-1)
        e2f = dt2.reshape(-1)
        K0 = dk[1, 0]
        K1 = dk[1, 1]
        K2 = dk[1, 2]
    """, 1)
    if fold is None:
        src += _block("""
            k0 = numba.uint32(K0)
            k1 = numba.uint32(K1)
            k2 = numba.uint32(K2)
        """, 1)
    scratch = """
        best = np.empty(C, dtype=sdt)
        bi = np.empty(C, dtype=np.int32)
    """
    src += _chunks("x.shape[0] * O0 * O1", True, scratch, "r")
    if fold is None:  # (the tasks a folded kernel left, or all)
        src += _block("""
            if miss[r] == 0:
                continue
        """, 2)
    src += _block("""
        o1 = r % O1
        t = r // O1
        o0 = t % O0
        n = t // O0
        xb = n * S0 * S1 * S2
        a0 = lo0[n, o0]
        a1 = lo1[n, o1]
        r0 = (n * O0 + o0) * C
        r1 = (n * O1 + o1) * C
        sp0 = 0
        sp1 = 0
        for ch in range(C):
            sp0 = max(sp0, e0f[numba.uint64(r0 + ch)])
            sp1 = max(sp1, e1f[numba.uint64(r1 + ch)])
    """, 2)
    if fold is not None:
        spreads = fold[1]
        src += _block(f"""
            miss[r] = 0
            if sp0 > {spreads[0]} or sp1 > {spreads[1]}:
                miss[r] = 1
                continue
        """, 2)
    src += _block("""
        for o2 in range(O2):
            a2 = lo2[n, o2]
            r2 = (n * O2 + o2) * C
            sp2 = 0
            for ch in range(C):
                sp2 = max(sp2, e2f[numba.uint64(r2 + ch)])
    """, 2)
    src += _block("ob = (((n * O0 + o0) * O1 + o1) * O2 + o2) * C", 3)
    if fold is None:
        src += _block("base = (a0 * S1 + a1) * S2 + a2", 3) + _block(_box_loop(), 3)
        return src + _block(_cl_store_indices(False), 3)
    head, loop = _folded(*fold[:2])
    src += _block(f"""
        if sp2 > {fold[1][2]}:
            miss[r] = 1
            break
    """, 3) + _block(head, 3) + _block(loop, 3)
    if not nontemporal:
        return src + _block(_cl_store_indices(False), 3)
    src += _block("""
        _stream_row(of, ob, best, C)
        _stream_row(idf, ob, bi, C)
    """, 3)
    return src + _block("_store_fence()", 1)
