"""Per-axis window tables against brute-force enumeration of the taps."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numbapool.geometry import (
    adaptive_axis,
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
        got = [int(w.start[o]) + j * w.step for j in range(int(w.count[o]))]
        assert got == real
        assert w.padded_count[o] == padded
    # The inverse map lists, for every input position, exactly the windows that read it.
    for i in range(length):
        readers = [o for o, (real, _) in enumerate(expected) if i in real]
        assert w.inv_win[w.inv_ptr[i]:w.inv_ptr[i + 1]].tolist() == readers


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40))
def test_adaptive_bins(length, out):
    w = adaptive_axis(length, out)
    for o in range(out):
        lo = (o * length) // out
        hi = -(-((o + 1) * length) // out)
        assert (w.start[o], w.count[o]) == (lo, hi - lo)
    assert np.all(np.diff(w.inv_ptr) >= 1)  # every input position is read


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 50), st.integers(1, 7), st.integers(1, 5), st.integers(1, 3))
def test_same_padding_tensorflow_rule(length, k, s, d):
    pb, pa = same_padding(length, k, s, d)
    assert pa - pb in (0, 1)  # the odd extra pad goes at the end
    out = sliding_output_length(length, k, s, pb, pa, d, False)
    assert out == math.ceil(length / s)
