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
