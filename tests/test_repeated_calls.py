"""Repeated calls reuse their checked plan, and only when every argument is the same."""

import numpy as np
import pytest

import numbapool
from reference import ref_pool


def test_repeated_call_new_data_same_arguments():
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.random((2, 3, 9, 8))
        np.testing.assert_allclose(numbapool.pool("avg", x, 3, stride=2, padding=1),
                                   ref_pool("avg", x, 3, stride=2, padding=1), rtol=1e-12)
        y, idx = numbapool.pool("max", x, 3, stride=2, return_indices=True)
        np.testing.assert_array_equal(y, ref_pool("max", x, 3, stride=2))
        assert idx.dtype == np.int64


def test_values_equal_to_valid_ones_are_still_checked():
    x = np.random.default_rng(1).random((1, 2, 6, 6))
    numbapool.pool("max", x, 2, ceil_mode=True)
    numbapool.pool("max", x, (2, 2))
    with pytest.raises(TypeError, match="ceil_mode"):
        numbapool.pool("max", x, 2, ceil_mode=1)  # 1 == True, but not a bool
    with pytest.raises(TypeError, match="kernel_size"):
        numbapool.pool("max", x, (2.0, 2.0))  # 2.0 == 2, but not an int
    with pytest.raises(TypeError, match="kernel_size"):
        numbapool.pool("max", x, 2.0)
    np.testing.assert_array_equal(numbapool.pool("max", x, [2, 2]), ref_pool("max", x, 2))
    np.testing.assert_array_equal(numbapool.pool("max", x, [2, 2]), ref_pool("max", x, 2))
    with pytest.raises(TypeError, match="kernel_size"):
        numbapool.pool("max", x, [2.0, 2])  # a list equal to a valid one, with a float


def test_reregistered_name_is_planned_again():
    x = np.random.default_rng(2).random((1, 1, 4, 4))
    first = numbapool.pool("max", x, 2)
    pooler = numbapool.unregister("max")
    try:
        numbapool.register(numbapool.Pooler("max", numbapool.Sliding(),
                                            numbapool.get("min").reduction, "min in disguise"))
        np.testing.assert_array_equal(numbapool.pool("max", x, 2),
                                      ref_pool("min", x, 2))
    finally:
        numbapool.unregister("max")
        from numbapool.registry import REGISTRY

        REGISTRY._poolers["max"] = pooler  # back as the built-in, with its source
    np.testing.assert_array_equal(numbapool.pool("max", x, 2), first)
