"""Non-temporal stores (numbapool.kernels.streaming): the row copy at every offset in a line
and many lengths, the kernels that stream (large channels-last max pools with indices) against
PyTorch, and the generated source of a kernel that streams (its imports and its fence)."""

import numba
import numpy as np
import pytest

import numbapool
from numbapool.kernels import streaming
from numbapool.kernels.launch import kind
from numbapool.kernels.streaming import STREAM_MIN_BYTES, stream_row
from numbapool.kernels.templates import kernel_source


@numba.njit  # (not cached: Numba's cache would not see a change to stream_row)
def _copy(dst, at, src, n):
    stream_row(dst, at, src, n)
    streaming.store_fence()


@pytest.mark.parametrize("dst_type,src_type", [(np.float32, np.float32),
                                               (np.float64, np.float64),
                                               (np.int64, np.int32), (np.int64, np.int64),
                                               (np.int8, np.int8), (np.int16, np.int16)])
def test_a_row_is_copied_at_every_offset_in_a_line_and_many_lengths(dst_type, src_type):
    rng = np.random.default_rng(0)
    base = np.full(400, -1, dtype=dst_type)
    info = np.iinfo(src_type) if np.dtype(src_type).kind == "i" else np.iinfo(np.int32)
    for start in range(0, 70):  # (every element offset within a 64-byte line, and beyond)
        dst = base[start:]  # (flat, C-contiguous, misaligned by the offset)
        for at in (0, 1, 5, 16):
            for n in (0, 1, 3, 7, 15, 16, 17, 31, 32, 33, 64, 70, 130):
                src = rng.integers(info.min, info.max, n + 3).astype(src_type)
                base[:] = -1
                _copy(dst, at, src, n)
                want = np.full(400, -1, dtype=dst_type)
                want[start + at:start + at + n] = src[:n]
                np.testing.assert_array_equal(base, want)


@pytest.mark.skipif(not streaming._X86, reason="x86-64 instructions")
def test_the_copy_stores_whole_lines_non_temporally_and_fences():
    dst, src = np.zeros(40, dtype=np.float32), np.ones(40, dtype=np.float32)
    _copy(dst, 0, src, 40)  # (compiled here: the test may run alone)
    asm = "\n".join(_copy.inspect_asm().values())
    assert "movnt" in asm and "sfence" in asm


def test_a_kernel_streams_from_the_threshold_on():
    assert streaming.streams(STREAM_MIN_BYTES)
    assert not streaming.streams(STREAM_MIN_BYTES - 1)


def test_an_int32_row_is_widened_with_its_sign():
    dst = np.zeros(64, dtype=np.int64)
    src = np.array([-(2**31), -1, 0, 1, 2**31 - 1] * 13, dtype=np.int32)
    _copy(dst, 0, src, 64)
    np.testing.assert_array_equal(dst, src[:64].astype(np.int64))


def _torch_max(x_cl, kernel, stride, padding):
    torch = pytest.importorskip("torch")
    rank = x_cl.ndim - 2
    pool = torch.nn.functional.max_pool2d if rank == 2 else torch.nn.functional.max_pool3d
    y, i = pool(torch.from_numpy(np.moveaxis(x_cl, -1, 1)), kernel, stride, padding,
                return_indices=True)
    return np.moveaxis(y.numpy(), 1, -1), np.moveaxis(i.numpy(), 1, -1)


# shape (channels last), kernel, stride, padding: 2-D windows run the kernel a tap at a
# time, 2x2x2 the kernel of such windows (3x3 windows store plainly: see
# templates.CL_INDICES_UNSTREAMED); 70 channels make rows that are not whole lines
@pytest.mark.parametrize("shape,kernel,stride,padding,dtype", [
    ((2, 130, 130, 70), 2, 1, 0, np.float32),
    ((2, 130, 130, 64), 2, 2, 0, np.float64),
    ((3, 149, 151, 70), (3, 2), 2, (1, 0), np.float32),
    ((1, 9, 40, 40, 70), 2, 1, 0, np.float32),
], ids=str)
def test_large_channels_last_max_with_indices_streams_torchs_results(shape, kernel, stride,
                                                                      padding, dtype):
    pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    x[0, 3, 4:9, 5] = np.nan  # (NaNs choose as a tap at a time does)
    x[-1, 7, 9:20, :3] = 1.5  # (ties: the first)
    x_before = x.copy()
    y, idx = numbapool.pool("max", x, kernel, stride=stride, padding=padding,
                            layout="channels_last", return_indices=True)
    assert y.nbytes + idx.nbytes >= STREAM_MIN_BYTES  # (the kernel streams: see below)
    want_y, want_idx = _torch_max(x, kernel, stride, padding)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(x, x_before)


def test_the_compiled_kernel_stores_non_temporally(monkeypatch, tmp_path):
    from numbapool import api
    from numbapool.builtin.reductions import MAX
    from numbapool.kernels import codegen
    from numbapool.kernels.codegen import get_kernel

    # (compiled afresh: a kernel loaded from Numba's cache has no LLVM IR to show)
    monkeypatch.setenv("NUMBAPOOL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(codegen, "_kernels", {})
    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    x = np.random.default_rng(2).standard_normal((1, 9, 9, 16)).astype(np.float32)
    numbapool.pool("max", x, 2, layout="channels_last", return_indices=True)
    cfuncs = get_kernel(MAX, "channels_last", "forward_indices32").cfuncs
    assert cfuncs and not any(c.cache_hits for c in cfuncs)
    assert "!nontemporal" in "\n".join(c.inspect_llvm() for c in cfuncs)


def test_a_kernel_that_streams_imports_the_functions_and_ends_with_a_fence():
    from numbapool.builtin.reductions import MAX
    from numbapool.kernels import codegen

    x, out, idx = np.zeros((1, 4, 4, 4)), np.zeros((1, 2, 2, 4)), np.zeros((1, 2, 2, 4),
                                                                              np.int64)
    tables = [np.zeros((1, 2, 3), np.int64)] * 3 + [np.zeros((2, 3), np.int64)]
    kinds = [kind(a) for a in (x, out, idx, *tables)]
    body = codegen._cpu_body(MAX, "channels_last", "forward_indices32", tuple(kinds))
    assert body.startswith(streaming.IMPORTS)
    assert body.endswith("    _store_fence()\n    return _held(1, (_own_best, _own_bi,))\n")
    values = codegen._cpu_body(MAX, "channels_last", "forward",
                               tuple(kind(a) for a in (x, out, *tables)))
    assert "streaming" not in values and "_store_fence" not in values
    for variant, streams in (("forward_indices32_fold222", True),
                             ("forward_indices32_fold133", False)):
        assert (streaming.USES in kernel_source(MAX, "channels_last", variant)) == streams
