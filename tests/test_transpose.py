"""The parallel channels-first <-> channels-last conversions against NumPy."""

import numpy as np
import pytest

from numbapool.kernels import transpose


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_])
@pytest.mark.parametrize("shape", [(2, 3, 1, 5, 7), (1, 9, 2, 3, transpose.TILE + 5),
                                   (3, 1, 1, 1, 1), (0, 4, 1, 2, 2), (2, 5, 1, 1, 0)])
def test_round_trip(shape, dtype):
    a = (np.arange(int(np.prod(shape))) % 7).astype(dtype).reshape(shape)
    last = transpose.to_channels_last(a)
    np.testing.assert_array_equal(last, np.moveaxis(a, 1, -1))
    assert last.flags.c_contiguous
    first = transpose.to_channels_first(last)
    np.testing.assert_array_equal(first, a)
    assert first.flags.c_contiguous and first.dtype == a.dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.uint8])
@pytest.mark.parametrize("shape", [(1, 16, 1, 1, 16), (2, 37, 1, 3, 335),
                                   (1, 64, 1, 2, 2 * transpose.TILE), (3, 8, 1, 1, 9)])
def test_blocks_through_registers(shape, dtype):
    """Channels enough for whole vector blocks (16 4-byte or 8 8-byte elements), with
    channels and positions left over at the edges; every element distinct, so that any
    exchanged pair shows."""
    a = np.arange(int(np.prod(shape))).astype(dtype).reshape(shape)  # (uint8: element-wise)
    last = transpose.to_channels_last(a)
    np.testing.assert_array_equal(last, np.moveaxis(a, 1, -1))
    np.testing.assert_array_equal(transpose.to_channels_first(last), a)
    np.testing.assert_array_equal(transpose.to_channels_first(np.moveaxis(a, 1, -1).copy()), a)


@pytest.mark.parametrize("vector_bytes", [32, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_block_for_either_vector_width(monkeypatch, vector_bytes, dtype):
    """The register block itself, compiled afresh for 256- and 512-bit vectors (the kernels
    use the host's): a block of a strided source lands transposed in a strided
    destination, and nothing around it is written."""
    import numba

    monkeypatch.setattr(transpose, "VECTOR_BYTES", vector_bytes)
    lanes = vector_bytes // np.dtype(dtype).itemsize

    @numba.njit(cache=False)
    def block(src, src_at, src_stride, dst, dst_at, dst_stride):
        transpose._block(src, src_at, src_stride, dst, dst_at, dst_stride)

    src = np.arange(3 * lanes * (lanes + 5)).astype(dtype)
    dst = np.full(3 * lanes * (lanes + 7), -1).astype(dtype)
    block(src, 2, lanes + 5, dst, 3, lanes + 7)
    want = np.full_like(dst, -1)
    rows = src[2:2 + lanes * (lanes + 5)].reshape(lanes, lanes + 5)[:, :lanes]
    want[3:3 + lanes * (lanes + 7)].reshape(lanes, lanes + 7)[:, :lanes] = rows.T
    np.testing.assert_array_equal(dst, want)


def test_into_given_arrays():
    """``out``: the conversions write into a given C-contiguous array (a slice of batches of
    a larger one, as the chunked passes do) and leave the rest of it alone; one of another
    shape, dtype or layout is refused, naming ``out``."""
    a = np.arange(3 * 20 * 1 * 2 * 3, dtype=np.float32).reshape(3, 20, 1, 2, 3)
    big = np.full((5, 1, 2, 3, 20), -1, np.float32)
    assert transpose.to_channels_last(a, out=big[1:4]) is not None
    np.testing.assert_array_equal(big[1:4], np.moveaxis(a, 1, -1))
    assert (big[0] == -1).all() and (big[4] == -1).all()
    back = np.full((4, 20, 1, 2, 3), -1, np.float32)
    transpose.to_channels_first(big[1:4], out=back[:3])
    np.testing.assert_array_equal(back[:3], a)
    assert (back[3] == -1).all()
    few = np.arange(2 * 3 * 1 * 1 * 5, dtype=np.float64).reshape(2, 3, 1, 1, 5)  # (by element)
    into = np.full((3, 1, 1, 5, 3), -1.0)
    transpose.to_channels_last(few, out=into[1:])
    np.testing.assert_array_equal(into[1:], np.moveaxis(few, 1, -1))
    assert (into[0] == -1).all()
    again = np.full((2, 3, 1, 1, 5), -1.0)
    transpose.to_channels_first(into[1:], out=again)
    np.testing.assert_array_equal(again, few)
    for bad in (np.empty((3, 1, 2, 3, 19), np.float32), np.empty((3, 1, 2, 3, 20)),
                np.empty((3, 1, 2, 3, 40), np.float32)[..., ::2]):
        with pytest.raises(ValueError, match="out must be"):
            transpose.to_channels_last(a, out=bad)
