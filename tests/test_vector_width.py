"""Every CPU kernel asks LLVM for 512-bit vectors (numbapool.kernels.vector_width)."""

import llvmlite.binding as ll
import numba
import numpy as np
import pytest

import numbapool
from numbapool.kernels import codegen, launch
from numbapool.kernels.launch import kind
from numbapool.kernels.vector_width import ATTRIBUTE, prefer_wide_vectors


def _doubled(wide: bool):
    def double(a, out):
        if wide:
            prefer_wide_vectors()
        for i in range(a.size):
            out[i] = a[i] * np.float32(2.0)
    return numba.njit(error_model="numpy")(double)


def test_the_attribute_reaches_the_function():
    fn = _doubled(True)
    a = np.arange(100, dtype=np.float32)
    out = np.empty_like(a)
    fn(a, out)
    np.testing.assert_array_equal(out, 2 * a)
    assert ATTRIBUTE in fn.inspect_llvm(fn.signatures[0])
    plain = _doubled(False)
    plain(a, out)
    assert ATTRIBUTE not in plain.inspect_llvm(plain.signatures[0])


@pytest.mark.skipif(not ll.get_host_cpu_features().get("avx512f", False)
                    or numba.config.CPU_NAME is not None
                    or numba.config.CPU_FEATURES is not None,
                    reason="the machine has no AVX-512 (or Numba is told another target)")
def test_loops_use_512_bit_registers():
    fn = _doubled(True)
    a = np.arange(100, dtype=np.float32)
    fn(a, np.empty_like(a))
    assert "zmm" in fn.inspect_asm(fn.signatures[0])


def test_every_cpu_kernel_calls_it():
    """The generated C callbacks call it first (launch.kernel_function), and a callback
    built that way carries the attribute in its LLVM IR."""
    x = np.ones((1, 2, 6, 6), np.float32)
    for name, layout, variant in [("max", "channels_first", "forward_cols2"),
                                  ("avg", "channels_last", "forward"),
                                  ("max", "channels_first", "backward")]:
        red = numbapool.get(name).reduction
        head = codegen.kernel_source(red, layout, variant).partition("\n")[0]
        body = codegen._cpu_body(red, layout, variant, (kind(x),) * len(head.split(",")))
        assert body.splitlines()[1:3] == ["def kernel(_slots, part, parts):",
                                          "    _prefer_wide_vectors()"], body[:200]
    src = (codegen.HEADER.format(name="t", kind="t", layout="t", variant="t", key="t")
           + f"@numba.cfunc({launch.SIGNATURE!r}, error_model='numpy')\n"
           + launch.kernel_function(["a"], [kind(x)], "    a[0, 0, 0, 0] = 1.0\n"))
    scope: dict = {}
    exec(compile(src, "<test_vector_width>", "exec"), scope)  # noqa: S102
    assert ATTRIBUTE in scope["kernel"].inspect_llvm()
