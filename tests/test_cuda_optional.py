"""The CUDA target is optional: the CPU path never imports numba.cuda, and without it a CUDA
call says what to install."""

import subprocess
import sys
import textwrap


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)


def test_cpu_calls_do_not_import_numba_cuda():
    res = _run("""
        import sys
        import numpy as np
        import numbapool
        x = np.random.rand(2, 3, 6, 6)
        numbapool.pool("max", x, 2)
        numbapool.pool_grad("avg", x, np.ones((2, 3, 3, 3)), 2)
        loaded = sorted(m for m in sys.modules if m.startswith(("numba.cuda", "numba_cuda")))
        print("LOADED", loaded)
    """)
    assert res.returncode == 0, res.stderr
    assert "LOADED []" in res.stdout


def test_without_numba_cuda_cpu_works_and_cuda_says_what_to_install():
    res = _run("""
        import sys
        sys.modules["numba.cuda"] = None  # as if numba-cuda were not installed
        import numpy as np
        import numbapool
        x = np.random.rand(1, 1, 4, 4)
        assert numbapool.pool("max", x, 2).shape == (1, 1, 2, 2)
        try:
            numbapool.pool("max", x, 2, target="cuda")
        except ImportError as exc:
            print("ERROR", exc)
    """)
    assert res.returncode == 0, res.stderr
    assert "ERROR the CUDA target needs numba-cuda: pip install 'numbapool[cuda]'" in res.stdout
