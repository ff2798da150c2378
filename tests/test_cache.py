"""Kernels must be reloaded from Numba's on-disk cache in a new process, not recompiled."""

import json
import os
import subprocess
import sys

SCRIPT = r"""
import json, numpy as np, numbapool
from numbapool.kernels import codegen
x = np.arange(2 * 3 * 6 * 5, dtype=np.float32).reshape(2, 3, 6, 5)
numbapool.pool("max", x, 2)
numbapool.pool("avg", x, 3, stride=2, padding=1)
cfuncs = [c for _, kernel in codegen._kernels.values() for c in kernel.cfuncs]
assert len(cfuncs) == 2, cfuncs
print(json.dumps({"hits": sum(c.cache_hits for c in cfuncs),
                  "misses": sum(c.cache_hits == 0 for c in cfuncs)}))
"""


def _run(cache_dir):
    env = dict(os.environ, NUMBAPOOL_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_kernels_from_cache(tmp_path):
    first = _run(tmp_path)
    assert first == {"hits": 0, "misses": 2}
    second = _run(tmp_path)
    assert second == {"hits": 2, "misses": 0}
    generated = sorted(p.name for p in tmp_path.glob("np_*.py"))
    assert len(generated) == 2
    # A third process writes no new files: the generated sources are stable.
    _run(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("np_*.py")) == generated
