"""Channels-first selections with indices over windows of 2 or 3 taps at stride 2 along the
last axis run the row-by-row kernel (templates._cf_forward_indices_rows): values and indices
against the NumPy reference, the per-window kernel and PyTorch, with ties and NaNs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numbapool
from numbapool import api
from numbapool.geometry import sliding_axis
from numbapool.kernels import cpu
from reference import ref_pool

# kernel, stride, padding, dilation, ceil_mode; every one has 2 or 3 taps at stride 2 along
# the last axis, with borders cut by the padding or the end (ceil mode, odd lengths)
GEOMETRIES_2D = [
    (3, 2, 1, 1, False),  # the ResNet stem's
    (2, 2, 0, 1, False),  # VGG's
    (3, 2, 0, 1, True),
    ((2, 3), 2, (0, 1), 1, True),
    ((3, 2), (1, 2), (1, 1), (2, 1), False),  # rows dilated and at stride 1
    ((1, 3), 2, (0, 1), 1, False),
    ((4, 3), (3, 2), (2, 1), 1, True),
]


def _spy(monkeypatch):
    """The variants the planner chooses, recorded (no plans kept from earlier calls)."""
    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    chosen = []
    real = cpu._selection_indices_variant

    def spy(axes, plane):
        chosen.append(real(axes, plane))
        return chosen[-1]
    monkeypatch.setattr(cpu, "_selection_indices_variant", spy)
    return chosen


def _data(shape, dtype, rng):
    x = rng.integers(0, 3, shape).astype(dtype)  # many ties
    if np.dtype(dtype).kind == "f":
        flat = x.reshape(-1)
        flat[rng.choice(flat.size, max(1, flat.size // 40), replace=False)] = np.nan
        flat[:4] = np.nan  # (neighbours: NaNs in one window)
    return x


@pytest.mark.parametrize("geometry", GEOMETRIES_2D, ids=str)
@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("dtype,channels", [(np.float32, 3), (np.float64, 9),
                                            (np.int32, 2)])
def test_rows_kernel_matches_the_reference(geometry, name, dtype, channels, monkeypatch):
    kernel, stride, padding, dilation, ceil_mode = geometry
    rng = np.random.default_rng(channels)
    x = _data((2, channels, 9, 13), dtype, rng)
    before = x.copy()
    opts = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                ceil_mode=ceil_mode)
    chosen = _spy(monkeypatch)
    y, idx = numbapool.pool(name, x, return_indices=True, **opts)
    assert chosen and chosen[-1] is not None and chosen[-1].startswith("forward_indices_rows")
    want, want_idx = ref_pool(name, x, return_indices=True, **opts)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(idx, want_idx)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("geometry", [((2, 2, 2), 2, 0, 1, False),
                                      ((3, 3, 3), 2, 1, 1, True),
                                      ((2, 3, 2), (1, 2, 2), (1, 0, 1), (2, 1, 1), False)],
                         ids=str)
def test_rows_kernel_volumes_and_signals(geometry, monkeypatch):
    kernel, stride, padding, dilation, ceil_mode = geometry
    rng = np.random.default_rng(3)
    opts = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                ceil_mode=ceil_mode)
    chosen = _spy(monkeypatch)
    x = _data((2, 3, 5, 7, 11), np.float32, rng)
    y, idx = numbapool.pool("max", x, return_indices=True, **opts)
    want, want_idx = ref_pool("max", x, return_indices=True, **opts)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(idx, want_idx)
    one = {k: (v[2] if isinstance(v, tuple) else v) for k, v in opts.items()}
    s = _data((3, 2, 15), np.float64, rng)
    y, idx = numbapool.pool("max", s, return_indices=True, **one)
    want, want_idx = ref_pool("max", s, return_indices=True, **one)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(idx, want_idx)
    assert len(chosen) == 2 and all(c and c.startswith("forward_indices_rows") for c in chosen)


@pytest.mark.parametrize("geometry", GEOMETRIES_2D[:3], ids=str)
def test_rows_kernel_equals_the_other_kernels_and_torch(geometry, monkeypatch):
    """The same values and indices as the per-window kernel, the channels-last kernel
    between transposes, and PyTorch's max pool."""
    kernel, stride, padding, dilation, ceil_mode = geometry
    rng = np.random.default_rng(5)
    x = _data((2, 9, 12, 15), np.float32, rng)
    opts = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                ceil_mode=ceil_mode)
    chosen = _spy(monkeypatch)
    y, idx = numbapool.pool("max", x, return_indices=True, **opts)
    assert chosen[-1].startswith("forward_indices_rows")
    monkeypatch.setattr(cpu, "_selection_indices_variant", lambda axes, plane: None)
    calls = []
    to_last = cpu.transpose.to_channels_last
    monkeypatch.setattr(cpu.transpose, "to_channels_last",
                        lambda a: calls.append(a.shape) or to_last(a))
    monkeypatch.setattr(api, "_KNOWN_CALLS", {})  # (planned again, each time)
    y_cl, idx_cl = numbapool.pool("max", x, return_indices=True, **opts)  # (9 channels)
    assert len(calls) == 1
    monkeypatch.setattr(cpu, "VIA_CHANNELS_LAST_MIN_CHANNELS", 10**9)
    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    y_w, idx_w = numbapool.pool("max", x, return_indices=True, **opts)
    assert len(calls) == 1
    for other, other_idx in ((y_cl, idx_cl), (y_w, idx_w)):
        np.testing.assert_array_equal(y, other)
        np.testing.assert_array_equal(idx, other_idx)
    torch = pytest.importorskip("torch")
    ty, tidx = torch.nn.functional.max_pool2d(torch.from_numpy(x), kernel, stride, padding,
                                              dilation, ceil_mode, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())


def test_rows_kernel_is_not_chosen_outside_its_windows(monkeypatch):
    """Stride 1, 4 taps or dilation along the last axis: another kernel; and planes too
    large for int32 positions (a unit check of the chooser, on its window tables)."""
    chosen = _spy(monkeypatch)
    x = np.arange(2 * 3 * 8 * 9, dtype=np.float32).reshape(2, 3, 8, 9)
    for opts in (dict(kernel_size=3, stride=1), dict(kernel_size=4, stride=2),
                 dict(kernel_size=2, stride=2, dilation=2)):
        y, idx = numbapool.pool("max", x, return_indices=True, **opts)
        want, want_idx = ref_pool("max", x, return_indices=True, **opts)
        np.testing.assert_array_equal(y, want)
        np.testing.assert_array_equal(idx, want_idx)
    assert chosen == [None, None, None]
    axes = [sliding_axis(n, k, 2, p, p, 1, False) for n, k, p in ((1, 1, 0), (8, 3, 1), (9, 3, 1))]
    assert cpu._selection_indices_variant(axes, 2**31 - 1) == "forward_indices_rows3"
    assert cpu._selection_indices_variant(axes, 2**31) is None


@pytest.mark.parametrize("width,kernel,padding", [(121, 3, 1), (130, 2, 0), (140, 3, 0)])
def test_rows_kernel_long_rows(width, kernel, padding, monkeypatch):
    """Rows of 50 or more interior windows, which the row loops run to a multiple of 64
    (59 windows) or of 16 (65 and 69), past the row where the input goes on, to its end
    where it does not."""
    chosen = _spy(monkeypatch)
    rng = np.random.default_rng(width)
    x = _data((1, 2, 5, width), np.float32, rng)
    opts = dict(kernel_size=kernel, stride=2, padding=padding)
    y, idx = numbapool.pool("max", x, return_indices=True, **opts)
    want, want_idx = ref_pool("max", x, return_indices=True, **opts)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(idx, want_idx)
    assert chosen[-1].startswith("forward_indices_rows")


_AT_THE_END = """
import ctypes, mmap, sys
import numpy as np
import numbapool
page = mmap.PAGESIZE
buf = mmap.mmap(-1, 3 * page)
base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
assert ctypes.CDLL(None).mprotect(ctypes.c_void_p(base + 2 * page), page, 0) == 0
shape = (1, 2, 5, 121)
size = int(np.prod(shape)) * 4
x = np.frombuffer(buf, np.float32, int(np.prod(shape)), 2 * page - size).reshape(shape)
x[...] = np.arange(x.size, dtype=np.float32).reshape(shape) % 7  # (mmap memory: writable)
y, idx = numbapool.pool("max", x, kernel_size=3, stride=2, padding=1, return_indices=True)
print(int(idx[0, 1, -1, -1]))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs POSIX mprotect")
def test_rows_kernel_reads_nothing_past_the_input(tmp_path):
    """The rows' loops run past the interior only where the input goes on: with the input
    ending at an unreadable page, the pool runs (in a child process, which a read past the
    end would kill)."""
    import subprocess
    import sys

    script = tmp_path / "at_the_end.py"
    script.write_text(_AT_THE_END)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    want_idx = ref_pool("max", np.arange(1210, dtype=np.float32).reshape(1, 2, 5, 121) % 7,
                        kernel_size=3, stride=2, padding=1, return_indices=True)[1]
    assert int(run.stdout.split()[-1]) == int(want_idx[0, 1, -1, -1])


@settings(max_examples=40, deadline=None)
@given(k1=st.integers(1, 4), k2=st.integers(2, 3), s1=st.integers(1, 3), d1=st.integers(1, 2),
       ceil=st.booleans(), extra=st.tuples(st.integers(0, 6), st.integers(0, 14)),
       pads=st.tuples(st.integers(0, 2), st.integers(0, 1)), channels=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_rows_kernel_random_geometries(k1, k2, s1, d1, ceil, extra, pads, channels, seed):
    """Random windows of 2 or 3 taps at stride 2 along the last axis (any along the first),
    with ties and NaNs: the same values and indices as the reference."""
    p1, p2 = min(pads[0], k1 // 2), min(pads[1], k2 // 2)
    x = _data((1, channels, d1 * (k1 - 1) + 1 + extra[0], k2 + extra[1]), np.float32,
              np.random.default_rng(seed))
    opts = dict(kernel_size=(k1, k2), stride=(s1, 2), padding=(p1, p2), dilation=(d1, 1),
                ceil_mode=ceil)
    y, idx = numbapool.pool("max", x, return_indices=True, **opts)
    want, want_idx = ref_pool("max", x, return_indices=True, **opts)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(idx, want_idx)
