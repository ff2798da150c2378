"""Every registered pooler (built-ins and plugins, from the registry) on the CUDA target gives
the CPU's results: forward, indices, gradients and parameter gradients, both layouts, ranks
1-3, the geometry examples of each window rule (``numbapool.testing.check_cuda``).  The CPU
kernels are tested against NumPy and PyTorch in ``tests/``; here they are the reference."""

import subprocess
import sys

import numpy as np
import pytest

import numbapool
from numbapool import targets
from numbapool.testing import check_cuda


@pytest.mark.parametrize("name", numbapool.poolers())
def test_every_registered_pooler_matches_the_cpu(name):
    report = check_cuda(name)
    assert report.results, "nothing was checked"
    assert report.ok, "\n".join(f"{r.name}: {r.detail}" for r in report.failures())


def test_the_kit_catches_a_cuda_result_that_differs(monkeypatch):
    engine = targets.engine

    class Wrong:
        def __init__(self, real):
            self.real = real

        def __getattr__(self, attr):
            return getattr(self.real, attr)

        def forward(self, *args, **kwargs):
            out, idx = self.real.forward(*args, **kwargs)
            host = out.copy_to_host()
            host.flat[0] += 1.0
            out.copy_to_device(host)
            return out, idx

    monkeypatch.setattr(targets, "engine",
                        lambda t: Wrong(engine(t)) if t == "cuda" else engine(t))
    report = check_cuda("avg", ranks=(2,))
    failed = {r.name.split(": ")[-1] for r in report.failures()}
    assert "forward" in failed


def test_check_command_takes_the_cuda_target():
    res = subprocess.run([sys.executable, "-m", "numbapool", "check", "max", "--ranks", "1",
                          "--target", "cuda"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PASS  cuda rank 1 channels_last" in res.stdout
    assert np.char.count(res.stdout, "FAIL") == 0
