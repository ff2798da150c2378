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


def _helper_source(body: str) -> str:
    return f"""
import numba

@numba.njit
def helper(v):
    return {body}

def outer():
    h = helper
    @numba.njit
    def inner(v):
        return h(v) + 1.0
    return inner

@numba.njit
def take(acc, v, tap, prm):
    return acc + helper(v)
"""


def _load_helper_module(path, body):
    import importlib.util

    path.write_text(_helper_source(body))
    spec = importlib.util.spec_from_file_location("helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_changed_helper_changes_the_kernel_key(tmp_path):
    """A kernel inlines the jitted helpers its reduction's functions call (through globals
    or a closure): changing one must give the kernel a new key, or a stale kernel would be
    reloaded from the disk cache."""
    from numbapool.reduction import function_fingerprint

    a = _load_helper_module(tmp_path / "a.py", "v * v")
    b = _load_helper_module(tmp_path / "b.py", "v * v * v")
    assert function_fingerprint(a.take) != function_fingerprint(b.take)  # through a global
    assert function_fingerprint(a.outer()) != function_fingerprint(b.outer())  # a closure
    assert a.outer()(3.0) == 10.0 and b.outer()(3.0) == 28.0
    # the same code in the same place gives the same hash
    a_again = _load_helper_module(tmp_path / "a.py", "v * v")
    assert function_fingerprint(a.take) == function_fingerprint(a_again.take)


def test_the_module_head_is_part_of_every_kernel_key(monkeypatch):
    """The head a generated module is written under (imports; on CUDA the _widen device
    function) is not part of the template: the key takes it in too."""
    import numpy as np

    from numbapool import get, pool
    from numbapool.kernels import codegen, cuda_templates

    red = get("avg").reduction
    pool("avg", np.ones((1, 2, 4, 4), np.float32), 2)
    (layout, variant, kinds), *_ = [
        (key[1], key[2], kinds) for key, (r, launcher) in codegen._kernels.items()
        if r is red and key[3] == "cpu" for kinds in launcher._compiled]
    cpu = codegen.kernel_path(red, layout, variant, "cpu", kinds)
    cuda = codegen.kernel_path(red, "channels_first", "forward", "cuda")
    monkeypatch.setattr(codegen, "HEADER", codegen.HEADER + "# changed\n")
    monkeypatch.setattr(cuda_templates, "CUDA_HEADER", cuda_templates.CUDA_HEADER + "# x\n")
    assert codegen.kernel_path(red, layout, variant, "cpu", kinds) != cpu
    assert codegen.kernel_path(red, "channels_first", "forward", "cuda") != cuda


def test_the_elementary_functions_are_part_of_every_kernel_key(monkeypatch):
    """The vectorising functions of numbapool.vmath (and the other modules of inlined
    intrinsics) are LLVM IR written in Python, which no jitted function's hash sees: the
    kernel key takes in their source."""
    from numbapool import get
    from numbapool.kernels import codegen

    red = get("avg").reduction
    before = codegen.kernel_path(red, "channels_first", "forward", "cuda")
    monkeypatch.setattr(codegen, "_IR_SOURCES", codegen._IR_SOURCES + "changed")
    assert codegen.kernel_path(red, "channels_first", "forward", "cuda") != before
