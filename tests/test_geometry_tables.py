"""Per-axis window tables against brute-force enumeration of the taps."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numbapool.geometry import (
    adaptive_axis,
    explicit_axis,
    same_padding,
    sliding_axis,
    sliding_output_length,
)

sliding_args = st.tuples(
    st.integers(1, 30),  # length
    st.integers(1, 6),  # kernel
    st.integers(1, 4),  # stride
    st.integers(0, 4),  # pad before
    st.integers(0, 4),  # pad after
    st.integers(1, 3),  # dilation
    st.booleans(),  # ceil_mode
)


def brute_windows(length, k, s, pb, pa, d, ceil_mode):
    """Windows by enumerating every tap of every output position."""
    span = (k - 1) * d + 1
    room = length + pb + pa - span
    if room < 0:
        return None
    out = (math.ceil(room / s) if ceil_mode else room // s) + 1
    if ceil_mode and (out - 1) * s >= length + pb:
        out -= 1
    windows = []
    for o in range(out):
        taps = [o * s - pb + j * d for j in range(k)]
        real = [t for t in taps if 0 <= t < length]
        padded = [t for t in taps if -pb <= t < length + pa]
        windows.append((real, len(padded)))
    return windows


@settings(max_examples=300, deadline=None)
@given(sliding_args)
def test_sliding_tables_match_enumeration(args):
    length, k, s, pb, pa, d, ceil_mode = args
    expected = brute_windows(*args)
    if expected is None or any(not real for real, _ in expected):
        with pytest.raises(ValueError, match="kernel_size|padding"):
            sliding_axis(*args)
        return
    w = sliding_axis(*args)
    assert w.out == len(expected) == sliding_output_length(*args)
    for o, (real, padded) in enumerate(expected):
        got = [int(w.start[0, o]) + j * w.step for j in range(int(w.count[0, o]))]
        assert got == real
        assert w.padded_count[0, o] == padded
        # Tap numbers: the first real tap's index within the kernel.
        assert w.first_tap[0, o] == next(j for j in range(k) if o * s - pb + j * d >= 0)
    # The inverse map lists, for every input position, exactly the windows that read it.
    for i in range(length):
        readers = [o for o, (real, _) in enumerate(expected) if i in real]
        assert w.inv_win[w.inv_ptr[0, i]:w.inv_ptr[0, i + 1]].tolist() == readers


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40))
def test_adaptive_bins(length, out):
    w = adaptive_axis(length, out)
    for o in range(out):
        lo = (o * length) // out
        hi = -(-((o + 1) * length) // out)
        assert (w.start[0, o], w.count[0, o]) == (lo, hi - lo)
    assert np.all(np.diff(w.inv_ptr[0]) >= 1)  # every input position is read


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 50), st.integers(1, 7), st.integers(1, 5), st.integers(1, 3))
def test_same_padding_tensorflow_rule(length, k, s, d):
    pb, pa = same_padding(length, k, s, d)
    assert pa - pb in (0, 1)  # the odd extra pad goes at the end
    out = sliding_output_length(length, k, s, pb, pa, d, False)
    assert out == math.ceil(length / s)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 12), st.integers(1, 4), st.integers(1, 3), st.data())
def test_explicit_per_plane_tables_and_inverse(length, planes, step, data):
    """Per-plane windows (as fractional pooling uses): the inverse map of every plane lists
    exactly the windows of that plane that read each position."""
    out = data.draw(st.integers(1, 5))
    starts, counts = [], []
    for _ in range(planes):
        row_s, row_c = [], []
        for _ in range(out):
            s0 = data.draw(st.integers(0, length - 1))
            c_max = (length - 1 - s0) // step + 1
            row_s.append(s0)
            row_c.append(data.draw(st.integers(1, c_max)))
        starts.append(row_s)
        counts.append(row_c)
    w = explicit_axis(length, starts, counts, step)
    # (planes that all hold the same windows are shared)
    shared = all(starts[p] == starts[0] and counts[p] == counts[0] for p in range(planes))
    assert w.planes == (1 if shared else planes) and w.out == out
    for p in range(planes):
        for i in range(length):
            readers = [o for o in range(out)
                       if i in range(starts[p][o], starts[p][o] + counts[p][o] * step, step)]
            q = 0 if shared else p
            got = w.inv_win[w.inv_ptr[q, i]:w.inv_ptr[q, i + 1]].tolist()
            assert got == readers
    with pytest.raises(ValueError, match="inside an axis"):
        explicit_axis(length, [length], [1])


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_explicit_axis_with_one_count_matches_the_table_form(data):
    """One count for every window (cheaper to check and build) gives the same windows as
    the full table, and the same errors."""
    length = data.draw(st.integers(1, 12))
    step = data.draw(st.integers(1, 3))
    k = data.draw(st.integers(1, length))
    last = length - 1 - (k - 1) * step  # the last start that fits
    planes = data.draw(st.integers(1, 3))
    out = data.draw(st.integers(1, 5))
    if last < 0:
        with pytest.raises(ValueError, match="inside an axis"):
            explicit_axis(length, np.zeros((planes, out), dtype=int), k, step)
        return
    starts = np.array(data.draw(st.lists(st.integers(0, last), min_size=planes * out,
                                         max_size=planes * out))).reshape(planes, out)
    one = explicit_axis(length, starts, k, step, extent=k)
    table = explicit_axis(length, starts, np.full_like(starts, k), step, extent=k)
    # planes that all hold the same windows are shared, in both forms
    shared = bool(np.all(starts == starts[0]))
    assert one.planes == table.planes == (1 if shared else planes)
    np.testing.assert_array_equal(one.table, table.table)
    np.testing.assert_array_equal(np.broadcast_to(one.start, starts.shape), starts)
    np.testing.assert_array_equal(one.divisor(True), table.divisor(True))
    assert one.divisor(True).flags.c_contiguous
    np.testing.assert_array_equal(one.inv_ptr, table.inv_ptr)
    np.testing.assert_array_equal(one.inv_win, table.inv_win)
    assert one.full and table.full
    for field in ("start", "count", "first_tap", "padded_count"):
        np.testing.assert_array_equal(getattr(one, field), getattr(table, field))
        assert not getattr(one, field).flags.writeable
    assert starts.flags.writeable  # the caller's array is neither kept nor frozen
    assert not np.shares_memory(one.start, starts)
    assert not explicit_axis(length, starts, k, step, extent=k + 1).full
    bad = starts.copy()
    bad[-1, -1] = last + 1
    with pytest.raises(ValueError, match="inside an axis"):
        explicit_axis(length, bad, k, step)
    with pytest.raises(ValueError, match="inside an axis"):
        explicit_axis(length, starts, 0, step)


def test_explicit_axis_with_one_count_and_no_windows():
    axis = explicit_axis(5, np.zeros((3, 0), dtype=int), 2, extent=2)
    assert axis.table.shape == (3, 0, 3) and axis.full
    assert axis.divisor(True).shape == (3, 0)


@pytest.mark.parametrize("one_count", [True, False])
def test_explicit_axis_keeps_no_caller_array(one_count):
    """Changing the arrays given to explicit_axis afterwards changes nothing (they are
    copied), and they stay writable."""
    start = np.array([[0, 2, 4], [1, 3, 4]])
    count = 2 if one_count else np.full((2, 3), 2)
    padded = np.full((2, 3), 3.0)
    axis = explicit_axis(6, start, count, padded_count=padded)
    before = (axis.table.copy(), axis.divisor(True).copy())
    start[:] = 0
    padded[:] = 7.0
    if not one_count:
        count[:] = 1
    np.testing.assert_array_equal(axis.table, before[0])
    np.testing.assert_array_equal(axis.divisor(True), before[1])
    assert start.flags.writeable and padded.flags.writeable


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_starts_by_channel_and_their_offsets(data):
    """Per-plane starts laid out (batch, out, channels) for channels-last kernels, their
    spread, and the same split into the first start over the channels and int32 offsets."""
    batch = data.draw(st.integers(0, 3))
    channels = data.draw(st.integers(0, 4))
    out = data.draw(st.integers(0, 5))
    length = 9
    starts = np.array(data.draw(st.lists(st.integers(0, length - 2), min_size=batch * channels
                                         * out, max_size=batch * channels * out)),
                      dtype=np.int64).reshape(batch * channels, out)
    if batch * channels == 0:
        starts = np.zeros((1, out), dtype=np.int64)  # (shared windows: one plane)
    axis = explicit_axis(length, starts, 2, extent=2)
    table, spread = axis.starts_by_channel(batch, channels)
    want = np.broadcast_to(starts, (batch * channels, out)) if axis.planes == 1 else starts
    want = want.reshape(batch, channels, out).transpose(0, 2, 1)
    np.testing.assert_array_equal(table, want)
    assert table.shape == (batch, out, channels) and table.dtype == np.int64
    assert spread == (int(np.ptp(want, axis=2).max()) if want.size else 0)
    lo, delta = axis.offsets_by_channel(batch, channels)
    assert lo.shape == (batch, out) and delta.shape == (batch, out, channels)
    assert delta.dtype == np.int32 and not lo.flags.writeable and not delta.flags.writeable
    if channels:
        np.testing.assert_array_equal(lo, want.min(axis=2))
        np.testing.assert_array_equal(lo[..., None] + delta, want)
        assert (delta.max(initial=0)) == spread


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_restart_in_either_memory_order(data):
    """A redrawable axis moved to new starts holds the tables of an axis made from them,
    whether the starts come C-contiguous or as the transpose of an (out, planes) array (as
    channels-last redraws give them), and says whether every window is inside the axis."""
    batch = data.draw(st.integers(1, 3))
    channels = data.draw(st.integers(2, 5))  # (two planes at least: per-plane windows)
    out = data.draw(st.integers(1, 5))
    length, k = 9, 2
    planes = batch * channels

    def draw_starts(high):
        return np.array(data.draw(st.lists(st.integers(0, high), min_size=planes * out,
                                           max_size=planes * out)),
                        dtype=np.int64).reshape(planes, out)

    first = draw_starts(length - k)
    if np.all(first == first[0]):
        first[1, 0] = (first[0, 0] + 1) % (length - k + 1)  # (per-plane windows)
    new = draw_starts(length - k + data.draw(st.sampled_from([0, 0, 0, 2])))
    want = explicit_axis(length, np.minimum(new, length - k), k, extent=k)
    inside = bool(new.max() <= length - k)
    for order, names in itertools.product(("C", "F"), (
            {"table"}, {"by_channel"}, {"lo", "delta"}, {"table", "by_channel", "lo", "delta"})):
        axis = explicit_axis(length, first, k, extent=k).redrawable()
        axis.starts_by_channel(batch, channels)
        axis.offsets_by_channel(batch, channels)
        start = new.copy() if order == "C" else np.ascontiguousarray(new.T).T
        assert start.flags.c_contiguous == (order == "C" or out == 1)
        assert axis.restart(start, frozenset(names)) is inside
        if not inside or len(names) < 4:
            continue
        np.testing.assert_array_equal(axis.table, np.broadcast_to(want.table, axis.table.shape))
        table, spread = axis.starts_by_channel(batch, channels)
        want_table, want_spread = want.starts_by_channel(batch, channels)
        np.testing.assert_array_equal(table, want_table)
        assert spread == want_spread
        for got, expected in zip(axis.offsets_by_channel(batch, channels),
                                 want.offsets_by_channel(batch, channels)):
            np.testing.assert_array_equal(got, expected)


def test_restart_rejects_starts_of_another_shape_or_order():
    axis = explicit_axis(9, np.array([[0, 3], [1, 4]]), 2, extent=2).redrawable()
    for bad in (np.zeros((2, 3), dtype=np.int64), np.zeros((2, 2), dtype=np.int32),
                np.zeros((2, 4), dtype=np.int64)[:, ::2]):
        with pytest.raises(ValueError, match="start must be"):
            axis.restart(bad, frozenset({"table"}))
