"""Non-temporal ("streaming") stores, for kernels that write more than the caches hold.

A plain store to a line that is not in cache first reads the line from memory (a read for
ownership), then writes it back: an output written once costs twice its size in memory
traffic.  A non-temporal store writes whole lines around the caches, without that read.  On
a pooling kernel that writes much (a max pool with int64 indices writes three quarters as
many bytes as it reads), that read is a large share of the memory traffic: the VGG case with
indices, channels last, (32, 56, 56, 128) float32, 2x2, took 0.75-0.97 of the time of the
same kernel storing plainly, alternating in one process (AMD Zen 4, 2 threads; which
kernels stream: :data:`numbapool.kernels.templates.CL_INDICES_UNSTREAMED`).

So a kernel computes each run of its output into a scratch row (in the first-level cache),
then :func:`stream_row` copies it out: 64-byte vectors with non-temporal stores where the
destination is aligned to 64 bytes, plain stores for the few elements before and after.
(Marking the plain stores of a loop non-temporal instead would leave it to LLVM's loop
vectoriser to prove each vector aligned, which it cannot for these rows.)
:func:`numbapool.buffers.empty` aligns the large buffers it hands out to 64 bytes, so every
row of a multiple of 64 bytes streams whole.

Non-temporal stores bypass the caches: an output that fits in them, read soon after, is
better written plainly, so a kernel streams only when the call writes at least
:data:`STREAM_MIN_BYTES` (:func:`streams`).  They are also weakly ordered, so a kernel that
streams ends with :func:`store_fence` before its thread reports that it is done (its
template writes it; :mod:`numbapool.kernels.codegen` refuses a kernel that streams without
it).

The functions are Numba intrinsics and jitted helpers that the generated kernels inline
(:data:`IMPORTS`).
"""

from __future__ import annotations

import llvmlite.binding as llvm
import numba
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

__all__ = ["IMPORTS", "STREAM_MIN_BYTES", "USES", "VECTOR_BYTES", "store_fence", "stream_row",
           "streams"]

VECTOR_BYTES = 64
"""The bytes of one non-temporal store: a cache line (and an AVX-512 register)."""

STREAM_MIN_BYTES = 8 << 20
"""The fewest bytes a call writes for its kernel to stream them (:func:`streams`): a
quarter of the 32 MiB last-level cache of the AMD Zen 4 where it was measured.  Streamed
against plain stores, alternating in one process: (8, 56, 56, 64) 2x2 with indices, 4.8 MB
written, took 1.10-1.17 times as long; the volume_3d case, 19 MB, 0.90-1.01; the VGG case,
38.5 MB, 0.75-0.97.  No size between 4.8 and 19 MB was measured."""

_X86 = llvm.get_process_triple().split("-")[0] in ("x86_64", "i386", "i686")


def _convertible(dst: types.Type, src: types.Type) -> bool:
    """Whether :func:`_stream_vector` stores vectors of ``src`` into ``dst``: numbers of
    one type, or an integer to a wider integer (int32 positions stored as int64 indices),
    of a width that divides a vector."""
    if not (isinstance(dst, (types.Integer, types.Float))
            and isinstance(src, (types.Integer, types.Float))
            and VECTOR_BYTES % (dst.bitwidth // 8) == 0):
        return False
    if dst == src:
        return True
    return (isinstance(dst, types.Integer) and isinstance(src, types.Integer)
            and dst.bitwidth > src.bitwidth and src.signed)


@intrinsic
def _stream_vector(typingctx, dst, at, src, i):
    """``dst[at:at + L] = src[i:i + L]`` with one non-temporal store of ``L = 64 /
    dst.itemsize`` elements; ``dst[at]`` must be 64-byte aligned (unchecked)."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array)
            and dst.layout == "C" and src.layout == "C"
            and isinstance(at, types.Integer) and isinstance(i, types.Integer)
            and _convertible(dst.dtype, src.dtype)):
        return None

    def codegen(context, builder, signature, args):
        d_ty, at_ty, s_ty, i_ty = signature.args
        d = context.make_array(d_ty)(context, builder, args[0])
        s = context.make_array(s_ty)(context, builder, args[2])
        at_v = context.cast(builder, args[1], at_ty, types.intp)
        i_v = context.cast(builder, args[3], i_ty, types.intp)
        lanes = VECTOR_BYTES // (d_ty.dtype.bitwidth // 8)
        s_vec = ir.VectorType(context.get_data_type(s_ty.dtype), lanes)
        d_vec = ir.VectorType(context.get_data_type(d_ty.dtype), lanes)
        value = builder.load(builder.bitcast(builder.gep(s.data, [i_v]), s_vec.as_pointer()),
                             align=s_ty.dtype.bitwidth // 8)
        if s_ty.dtype != d_ty.dtype:
            value = builder.sext(value, d_vec)
        store = builder.store(value, builder.bitcast(builder.gep(d.data, [at_v]),
                                                     d_vec.as_pointer()), align=VECTOR_BYTES)
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.IntType(32)(1)]))
        return context.get_dummy_value()

    return types.none(dst, at, src, i), codegen


@intrinsic
def store_fence(typingctx):
    """Order the non-temporal stores before it before every store after it (``sfence`` on
    x86-64; a sequentially consistent fence elsewhere)."""

    def codegen(context, builder, signature, args):
        if _X86:
            fn = builder.module.declare_intrinsic("llvm.x86.sse.sfence", (),
                                                  ir.FunctionType(ir.VoidType(), []))
            builder.call(fn, [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.none(), codegen


@numba.njit(inline="always")
def stream_row(dst, at, src, n):
    """``dst[at:at + n] = src[:n]`` (``dst`` flat and C-contiguous, ``src`` a scratch row
    of the same type, or int32 for an int64 ``dst``): plain stores up to the first element
    of ``dst`` at a 64-byte boundary, non-temporal 64-byte vectors from there while whole
    vectors remain, plain stores for the rest."""
    size = dst.itemsize
    lanes = VECTOR_BYTES // size
    offset = (dst.ctypes.data + at * size) % VECTOR_BYTES
    head = n if offset % size else min(n, (VECTOR_BYTES - offset) % VECTOR_BYTES // size)
    for k in range(head):
        dst[at + k] = src[k]
    k = head
    while k + lanes <= n:
        _stream_vector(dst, at + k, src, k)
        k += lanes
    for j in range(k, n):
        dst[at + j] = src[j]


@numba.njit(inline="always")
def streams(nbytes):
    """Whether a kernel writing ``nbytes`` in all streams its output
    (:data:`STREAM_MIN_BYTES`)."""
    return nbytes >= STREAM_MIN_BYTES


def _imports() -> str:
    from hashlib import sha256
    from pathlib import Path

    digest = sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return ("from numbapool.kernels.streaming import stream_row as _stream_row, "
            "streams as _streams, store_fence as _store_fence"
            f"  # streaming.py {digest}\n")


IMPORTS = _imports()
"""The line that binds these functions in a generated kernel's module that streams (see
:mod:`numbapool.kernels.codegen`), with a hash of this file: the kernel's cache key covers
the code it inlines from here, and the kernels that do not stream keep theirs."""

USES = "_stream_row("
"""What a kernel's source calls if it streams (it then needs :data:`IMPORTS` and a
:func:`store_fence` at its end)."""
