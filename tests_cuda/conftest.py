"""CUDA tests: run under Numba's CUDA simulator in CI (``NUMBA_ENABLE_CUDASIM=1``, set by
``make test``), or on a real GPU when one is present.  Skipped when numba-cuda is missing or,
without the simulator, when no GPU is visible."""

import os

import pytest

try:
    from numba import cuda
except ImportError:  # pragma: no cover - depends on the installation
    cuda = None


def pytest_collection_modifyitems(config, items):
    reason = None
    if cuda is None:
        reason = "numba-cuda is not installed (pip install 'numbapool[cuda]')"
    elif os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" and not cuda.is_available():
        reason = "no CUDA GPU (set NUMBA_ENABLE_CUDASIM=1 to use the simulator)"
    if reason:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))
