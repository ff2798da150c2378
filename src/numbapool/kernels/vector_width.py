"""Ask LLVM for 512-bit vectors in the kernel being compiled.

LLVM's loop vectoriser makes its vectors as wide as the target prefers, and LLVM's tuning of
Intel's server cores with AVX-512 (Skylake-SP to Emerald Rapids) prefers 256 bits, against
the frequency drop of 512-bit code on the first of them; AMD's Zen 4, where these kernels
were first tuned, takes 512.  Numba has no per-function option for it (``NUMBA_CPU_FEATURES``
would change every function of the process), so every generated CPU kernel calls
:func:`prefer_wide_vectors` first (:func:`numbapool.kernels.launch.kernel_function`): an
intrinsic that sets the function attribute ``"prefer-vector-width"="512"`` on the function
being compiled.  (The library's few hand-written jitted helpers, such as the transposes,
keep the target's width.)  Measured on an Emerald Rapids (2 threads, each pooler against
itself with the attribute, alternating in one process; ``numbapool bench``'s cases and (8,
64, 56, 56) 3x3/s2): 0.75 of the time for gem channels last, 0.85-0.97 for most cases, none
slower beyond noise (vgg channels first 1.02).  Not measured on the older Xeons whose
frequency drops.  Where the machine has no AVX-512 the attribute changes nothing: LLVM keeps
vectors within the widest registers there are.

The attribute is written through the set that holds llvmlite's function attributes, which
accepts only a fixed list of names through its own ``add``; should a later llvmlite refuse
that too, the kernel compiles without it.
"""

from __future__ import annotations

from numba import types
from numba.extending import intrinsic

__all__ = ["ATTRIBUTE", "prefer_wide_vectors"]

ATTRIBUTE = '"prefer-vector-width"="512"'


@intrinsic
def prefer_wide_vectors(typingctx):
    """Let LLVM vectorise the calling function's loops with 512-bit vectors (see the
    module's docstring); call it once, anywhere in the function.  No code of its own."""

    def codegen(context, builder, signature, args):
        try:
            set.add(builder.function.attributes, ATTRIBUTE)
        except TypeError:  # (no longer a set: leave the target's preference)
            pass
        return context.get_dummy_value()

    return types.none(), codegen
