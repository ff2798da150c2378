"""Run generated CPU kernels on Numba's threads, without compiling a parallel loop per kernel.

A kernel compiled with ``parallel=True`` costs twice the time of the same code compiled
serially: Numba lowers the ``prange`` loop's body into a gufunc and optimises and generates
machine code for that body four times (its own library, two wrappers, the kernel; measured
for max ``forward_cols2``: 2.1-2.4 s against 0.9-1.1 s).  So the kernels here are serial C
callbacks (``numba.cfunc``) that run part ``part`` of ``parts`` of their tasks, and one small
parallel driver, compiled once for all of them and cached, calls a kernel's address once per
thread from a ``prange`` loop.

A C callback has a fixed signature, ``intp(voidptr slots, intp part, intp parts)``, so a
kernel's arguments travel in ``slots``, an int64 array: an array as its address and shape
(and strides, unless C-contiguous), a scalar as its value (a float as its bits).  The
kernel's prologue (:func:`prologue`) rebuilds them (arrays as views, :func:`contiguous`
and :func:`strided`), so a kernel source is generated for each
combination of argument kinds (:func:`kind`): dtype and rank of each array, type of each
scalar.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array
from numba.np.ufunc import parallel as _parallel

__all__ = ["Bound", "Launcher", "kind", "kernel_function", "prologue", "pack", "drive",
           "drive_after", "Before", "address", "strided", "contiguous", "callback",
           "SIGNATURE", "POSITIONS_SIGNATURE"]

SIGNATURE = "intp(voidptr, intp, intp)"
"""The C signature of every generated CPU kernel: its argument slots, part and parts; it
returns 1, or 0 if an exception was raised (see :func:`kernel_function`)."""


@intrinsic
def _call_part(typingctx, fn, slots, part, parts):
    """Call the C function at address ``fn`` with ``(slots, part, parts)``; its result."""
    sig = types.intp(types.intp, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        i8p = ir.IntType(8).as_pointer()
        intp = context.get_value_type(types.intp)
        fnty = ir.FunctionType(intp, [i8p, intp, intp])
        f = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(f, [builder.inttoptr(args[1], i8p), args[2], args[3]])

    return sig, codegen


_callbacks: dict = {}  # (kept for good: passes and scratch keep their addresses)
_callbacks_lock = threading.Lock()


def callback(fn: Callable) -> int:
    """The address of ``fn`` (a plain Python function) compiled as a C callback of
    :data:`SIGNATURE`, cached on disk: compiled, or loaded from Numba's cache, by its first
    caller (under a lock: two threads' first calls compile it once) and kept for good."""
    with _callbacks_lock:
        compiled = _callbacks.get(fn)
        if compiled is None:
            compiled = _callbacks[fn] = numba.cfunc(SIGNATURE, cache=True, nogil=True)(fn)
        return compiled.address


POSITIONS_SIGNATURE = "intp(voidptr, intp, intp, intp)"
"""The C signature of a window rule's callback that writes the starts of several planes into
memory it is given (``positions_address`` of :class:`numbapool.windows.StartsInParts`): its
slots, the first plane, the number of planes and the address to write at; it returns 1, or 0
if an exception was raised."""


@intrinsic
def _call_positions(typingctx, fn, slots, first, count, into):
    """Call the C function at address ``fn`` (of :data:`POSITIONS_SIGNATURE`) with ``(slots,
    first, count, into)``; its result."""
    sig = types.intp(types.intp, types.intp, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        i8p = ir.IntType(8).as_pointer()
        intp = context.get_value_type(types.intp)
        fnty = ir.FunctionType(intp, [i8p, intp, intp, intp])
        f = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(f, [builder.inttoptr(args[1], i8p), *args[2:]])

    return sig, codegen


@intrinsic
def address(typingctx, pointer):
    """The address a ``voidptr`` holds, as an integer."""
    sig = types.intp(types.voidptr)

    def codegen(context, builder, signature, args):
        return builder.ptrtoint(args[0], context.get_value_type(types.intp))

    return sig, codegen


def _view(context, builder, arrty, address, dims, strides):
    """An array of type ``arrty`` over ``address`` (an integer), owning nothing; ``strides``
    in bytes, or None for C order."""
    ary = make_array(arrty)(context, builder)
    data_t = context.get_data_type(arrty.dtype)
    itemsize = context.get_constant(types.intp, context.get_abi_sizeof(data_t))
    if strides is None:
        strides = [itemsize] * len(dims)
        for i in range(len(dims) - 2, -1, -1):
            strides[i] = builder.mul(strides[i + 1], dims[i + 1])
    populate_array(ary, data=builder.inttoptr(address, data_t.as_pointer()), shape=dims,
                   strides=strides, itemsize=itemsize, meminfo=None)
    return ary._getvalue()


@intrinsic
def strided(typingctx, address, shape, strides, dtype):
    """An array (layout ``A``) of ``dtype`` (a NumPy scalar type) over the memory at
    ``address``, with ``shape`` and ``strides`` (tuples of integers, strides in bytes): a
    view that owns nothing."""
    ndim = len(shape)
    arrty = types.Array(dtype.instance_type, ndim, "A")

    def codegen(context, builder, signature, args):
        return _view(context, builder, arrty, args[0],
                     cgutils.unpack_tuple(builder, args[1], ndim),
                     cgutils.unpack_tuple(builder, args[2], ndim))

    return arrty(address, shape, strides, dtype), codegen


@intrinsic
def contiguous(typingctx, address, shape, dtype):
    """A C-contiguous array of ``dtype`` (a NumPy scalar type) and ``shape`` (a tuple of
    integers) over the memory at ``address``: a view that owns nothing.  (``numba.carray``
    does the same, but compiles an implementation for each rank and dtype, 0.03-0.1 s
    each in a new process.)"""
    ndim = len(shape)
    arrty = types.Array(dtype.instance_type, ndim, "C")

    def codegen(context, builder, signature, args):
        return _view(context, builder, arrty, args[0],
                     cgutils.unpack_tuple(builder, args[1], ndim), None)

    return arrty(address, shape, dtype), codegen


@intrinsic
def unowned(typingctx, a):
    """A view of the array ``a`` that owns nothing (no meminfo): the same data, shape and
    strides, whose slices and copies count no references.  The caller keeps ``a`` alive
    while the view is in use (see :func:`held`).

    A kernel's scratch rows are its own thread's, but every slice of an array that owns its
    memory increments and decrements the owner's count with a locked instruction, which
    waits for the core's pending stores: in the channels-first gather kernel, run on
    (32, 128, 56, 56), the count's two functions took a quarter of the kernel's samples."""
    if not isinstance(a, types.Array):
        return None

    def codegen(context, builder, signature, args):
        src = make_array(a)(context, builder, args[0])
        view = make_array(a)(context, builder)
        populate_array(view, data=src.data, shape=cgutils.unpack_tuple(builder, src.shape),
                       strides=cgutils.unpack_tuple(builder, src.strides),
                       itemsize=src.itemsize, meminfo=None)
        return view._getvalue()

    return a(a), codegen


@numba.njit(nogil=True)
def held(value, owners):
    """``value``; a use of ``owners`` (a tuple of arrays), which keeps them alive until this
    point: a generated kernel returns through it the arrays its :func:`unowned` views
    read."""
    return value


@numba.njit(parallel=True, cache=True, nogil=True)
def drive(fn, slots, parts):
    """Run the kernel at address ``fn`` on its argument ``slots`` in ``parts`` parts, one
    per thread; the number of parts that failed (raised an exception)."""
    failed = 0
    for part in numba.prange(parts):
        failed += 1 - _call_part(fn, slots, part, parts)
    return failed


@numba.njit(parallel=True, cache=True, nogil=True)
def drive_after(before, before_slots, fn, slots, parts):
    """:func:`drive`, each part first running part ``part`` of the C callback at address
    ``before`` (of :data:`SIGNATURE`) on its ``before_slots``, on the same thread: the kernel's
    part runs if that returned 1, not if it returned 2 (it refused: the caller learns why
    from its slots), and the part failed if it returned 0 (it raised).  The number of parts
    that failed."""
    failed = 0
    for part in numba.prange(parts):
        ready = _call_part(before, before_slots, part, parts)
        if ready == 1:
            failed += 1 - _call_part(fn, slots, part, parts)
        else:
            failed += 1 if ready == 0 else 0
    return failed


# -- argument kinds --------------------------------------------------------------------------

def kind(value: object) -> tuple:
    """What the generated prologue must know about an argument: ``("C" or "A", dtype
    character, ndim)`` for an array (``C``: C-contiguous), ``("f", dtype character)`` for a
    float, ``("i", dtype character)`` for an integer, ``("b",)`` for a bool, ``("t",
    kinds)`` for a tuple.  (Characters, not names: ``dtype.name`` costs a microsecond.)"""
    if isinstance(value, np.ndarray):
        return ("C" if value.flags.c_contiguous else "A", value.dtype.char, value.ndim)
    if isinstance(value, (bool, np.bool_)):
        return ("b",)
    if isinstance(value, float):
        return ("f", "d")
    if isinstance(value, int):
        return ("i", "q")
    if isinstance(value, (np.floating, np.integer)):
        return ("f" if isinstance(value, np.floating) else "i", value.dtype.char)
    if isinstance(value, tuple):
        return ("t", tuple(kind(v) for v in value))
    raise TypeError(f"a CPU kernel cannot take an argument of type {type(value).__name__}")


def _name(char: str) -> str:
    return np.dtype(char).name


def _width(k: tuple) -> int:
    if k[0] == "C":
        return 1 + k[2]
    if k[0] == "A":
        return 1 + 2 * k[2]
    if k[0] == "t":
        return sum(_width(e) for e in k[1])
    return 1


def _has_float(k: tuple) -> bool:
    return k[0] == "f" or (k[0] == "t" and any(_has_float(e) for e in k[1]))


def _rebuild(k: tuple, at: int) -> tuple[str, int]:
    """The expression that rebuilds an argument of kind ``k`` from the slots at ``at``, and
    the next free slot."""
    if k[0] in "CA":
        n = k[2]
        shape = "".join(f"_s[{at + 1 + i}], " for i in range(n))
        if k[0] == "C":
            return f"_contiguous(_s[{at}], ({shape}), np.{_name(k[1])})", at + 1 + n
        strides = "".join(f"_s[{at + 1 + n + i}], " for i in range(n))
        return (f"_strided(_s[{at}], ({shape}), ({strides}), np.{_name(k[1])})",
                at + 1 + 2 * n)
    if k[0] == "f":
        value = f"_f[{at}]"
        return (value if _name(k[1]) == "float64" else f"np.{_name(k[1])}({value})"), at + 1
    if k[0] == "i":
        value = f"_s[{at}]"
        return (value if _name(k[1]) == "int64" else f"np.{_name(k[1])}({value})"), at + 1
    if k[0] == "b":
        return f"_s[{at}] != 0", at + 1
    parts = []
    for e in k[1]:
        expr, at = _rebuild(e, at)
        parts.append(expr)
    return "(" + "".join(p + ", " for p in parts) + ")", at


def prologue(names: Sequence[str], kinds: Sequence[tuple]) -> str:
    """The first lines of a kernel's body (level 1): its arguments ``names`` rebuilt from
    ``_slots``, for arguments of ``kinds``."""
    n = sum(_width(k) for k in kinds)
    lines = [f"_s = _contiguous(_address(_slots), ({n},), np.int64)"]
    if any(_has_float(k) for k in kinds):
        lines.append(f"_f = _contiguous(_address(_slots), ({n},), np.float64)")
    at = 0
    for name, k in zip(names, kinds):
        expr, at = _rebuild(k, at)
        lines.append(f"{name} = {expr}")
    return "".join(f"    {line}\n" for line in lines)


def kernel_function(names: Sequence[str], kinds: Sequence[tuple], body: str) -> str:
    """The C callback ``kernel(_slots, part, parts)`` (without its decorator): the
    :func:`prologue` (after a call of
    :func:`numbapool.kernels.vector_width.prefer_wide_vectors`, which the module running it
    must bind to ``_prefer_wide_vectors``), then ``body`` (level 1, the template's body,
    without ``return``), then ``return 1``.  A C callback cannot raise: Numba's wrapper
    prints the exception and returns 0 instead, so :func:`drive` counts the parts that did
    not return 1.  (A ``try``/``except`` around the body made the compile 8-20 times as
    long.)"""
    return ("def kernel(_slots, part, parts):\n    _prefer_wide_vectors()\n"
            + prologue(names, kinds)
            + body.rstrip("\n") + "\n    return 1\n")


def _fill(slots: np.ndarray, floats: np.ndarray, k: tuple, value, at: int) -> int:
    if k[0] in "CA":
        slots[at] = value.ctypes.data
        n = k[2]
        slots[at + 1:at + 1 + n] = value.shape
        if k[0] == "A":
            slots[at + 1 + n:at + 1 + 2 * n] = value.strides
            return at + 1 + 2 * n
        return at + 1 + n
    if k[0] == "f":
        floats[at] = value
    elif k[0] == "t":
        for e, v in zip(k[1], value):
            at = _fill(slots, floats, e, v, at)
        return at
    else:
        slots[at] = int(value)
    return at + 1


def pack(kinds: Sequence[tuple], values: Sequence[object]) -> np.ndarray:
    """The argument slots of ``values`` (of ``kinds``).  The arrays must stay alive while the
    kernel runs: the slots hold their addresses."""
    slots = np.empty(sum(_width(k) for k in kinds), dtype=np.int64)
    floats = slots.view(np.float64)
    at = 0
    for k, v in zip(kinds, values):
        at = _fill(slots, floats, k, v, at)
    return slots


def _threads() -> int:
    """Numba's thread count (``numba.set_num_threads`` sets it), read through the
    threading layer's own function once its threads are up: 0.1 against 0.7 us a call."""
    fast = getattr(_parallel, "_get_num_threads", None)
    if fast is not None and _parallel._is_initialized:
        n = fast()
        if n > 0:
            return n
    return numba.get_num_threads()


@numba.njit(inline="always")
def _place(slots, at, a):
    """Write C-contiguous ``a``'s address at ``slots[at]`` if its shape is the one in the
    slots after it; else False."""
    if not a.flags.c_contiguous:
        return False
    for i in range(a.ndim):
        if slots[at + 1 + i] != a.shape[i]:
            return False
    slots[at] = a.ctypes.data
    return True


@numba.njit(cache=True, nogil=True)
def _go(fn, slots, parts, before, before_slots):
    """Run the kernel at ``fn`` on ``slots`` (an array: alive, as an argument, until the run
    ends), after ``before`` if not 0."""
    if before == 0:
        return drive(fn, slots.ctypes.data, parts)
    return drive_after(before, before_slots, fn, slots.ctypes.data, parts)


@numba.njit(cache=True, nogil=True)
def _run2(fn, template, parts, before, before_slots, a, b):
    """Run a bound kernel on ``a`` and ``b``, after ``before`` (an address, or 0 for none:
    :func:`drive_after`): the parts that failed, or -1 (not run) for arrays that do not fit
    the template."""
    slots = template.copy()
    if not (_place(slots, 0, a) and _place(slots, 1 + a.ndim, b)):
        return -1
    return _go(fn, slots, parts, before, before_slots)


@numba.njit(cache=True, nogil=True)
def _run3(fn, template, parts, before, before_slots, a, b, c):
    """:func:`_run2` with a third array."""
    slots = template.copy()
    if not (_place(slots, 0, a) and _place(slots, 1 + a.ndim, b)
            and _place(slots, 2 + a.ndim + b.ndim, c)):
        return -1
    return _go(fn, slots, parts, before, before_slots)


@numba.njit(cache=True, nogil=True)
def _run4(fn, template, parts, before, before_slots, a, b, c, d):
    """:func:`_run2` with a third and a fourth array (a masked kernel with indices:
    ``x, out, idx, miss``)."""
    slots = template.copy()
    if not (_place(slots, 0, a) and _place(slots, 1 + a.ndim, b)
            and _place(slots, 2 + a.ndim + b.ndim, c)
            and _place(slots, 3 + a.ndim + b.ndim + c.ndim, d)):
        return -1
    return _go(fn, slots, parts, before, before_slots)


# -- launchers --------------------------------------------------------------------------------

class Before:
    """A step each thread runs before its part of a kernel (:func:`drive_after`): the C
    callback at ``address`` (of :data:`SIGNATURE`) on the int64 argument ``slots`` (kept
    alive here; what they point to must stay alive while it runs)."""

    __slots__ = ("address", "slots", "slots_address")

    def __init__(self, address: int, slots: np.ndarray) -> None:
        self.address = address
        self.slots = slots
        self.slots_address = slots.ctypes.data


def _before_args(before: Before | None) -> tuple[int, int]:
    """The ``before`` and ``before_slots`` arguments of :func:`_go` (0, 0: none)."""
    return (0, 0) if before is None else (before.address, before.slots_address)


@dataclass(frozen=True)
class _Compiled:
    address: int
    cfunc: object  # keeps the compiled code alive


class Launcher:
    """A generated CPU kernel: ``launcher(*args)`` packs the arguments, compiles (or loads
    from Numba's cache) the kernel for their kinds on first use, and runs it on every
    thread.  ``build(kinds)`` makes the C callback for ``kinds``."""

    def __init__(self, name: str, build: Callable[[tuple], object]) -> None:
        self.name = name
        self._build = build
        self._compiled: dict[tuple, _Compiled] = {}

    def __repr__(self) -> str:
        return f"<numbapool CPU kernel {self.name}>"

    def compiled(self, kinds: tuple) -> _Compiled:
        """The compiled kernel for arguments of ``kinds``."""
        entry = self._compiled.get(kinds)
        if entry is None:
            cfunc = self._build(kinds)
            entry = self._compiled.setdefault(kinds, _Compiled(cfunc.address, cfunc))
        return entry

    @property
    def cfuncs(self) -> list:
        """The C callbacks compiled or loaded so far (``cache_hits`` says which were
        loaded)."""
        return [c.cfunc for c in self._compiled.values()]

    def __call__(self, *args: object, before: Before | None = None) -> None:
        """Run the kernel on ``args``; ``before``: after that step, on each thread
        (:func:`drive_after`)."""
        kinds = tuple(kind(a) for a in args)
        slots = pack(kinds, args)
        if _go(self.compiled(kinds).address, slots, _threads(), *_before_args(before)):
            self.failed()

    def failed(self) -> None:
        """Raise the error of a run in which a part failed."""
        raise RuntimeError(
            f"the CPU kernel {self.name} raised an exception in compiled code (a reduction "
            f"function raised, or memory ran out; Numba printed it above as 'Exception "
            f"ignored'); its output is not valid")

    def bind(self, args: Sequence[object], free: int) -> Bound:
        """The kernel with ``args[free:]`` fixed: the first ``free`` (2 to 4) arguments,
        C-contiguous arrays, are passed to each call and must have the shape and dtype they
        have in ``args``."""
        kinds = tuple(kind(a) for a in args)
        if any(k[0] != "C" for k in kinds[:free]):
            raise ValueError("bound arguments must be C-contiguous arrays")
        dtypes = tuple(a.dtype for a in args[:free])  # type: ignore[attr-defined]
        return Bound(self, self.compiled(kinds).address, pack(kinds, args), dtypes,
                     tuple(args[free:]))


def _same_dtypes(arrays: tuple[np.ndarray, ...], dtypes: tuple[np.dtype, ...]) -> bool:
    """Whether ``arrays`` have ``dtypes``, one for one (by identity)."""
    if len(arrays) != len(dtypes):
        return False
    for a, d in zip(arrays, dtypes):
        if a.dtype is not d:
            return False
    return True


class Bound:
    """A :class:`Launcher` with all but its first two to four arguments fixed (see
    :meth:`Launcher.bind`): a call fills in the addresses of the new arrays, in compiled
    code.  An array of another shape or dtype, or not C-contiguous, takes the general
    path."""

    def __init__(self, launcher: Launcher, address: int, template: np.ndarray,
                 dtypes: tuple[np.dtype, ...], fixed: tuple) -> None:
        if len(dtypes) not in (2, 3, 4):
            raise ValueError("a bound kernel takes two to four arrays")
        self._launcher = launcher
        self._address = address
        self._template = template
        self._dtypes = dtypes
        self._run = (_run2, _run3, _run4)[len(dtypes) - 2]
        self._fixed = fixed  # (keeps the fixed arrays alive: the template holds addresses)

    def __call__(self, *arrays: np.ndarray, before: Before | None = None) -> None:
        # (dtypes by identity: NumPy's are shared instances; an equal one that is not
        # takes the general path)
        if not _same_dtypes(arrays, self._dtypes):
            self._launcher(*arrays, *self._fixed, before=before)
            return
        failed = self._run(self._address, self._template, _threads(), *_before_args(before),
                           *arrays)
        if failed < 0:
            self._launcher(*arrays, *self._fixed, before=before)
        elif failed:
            self._launcher.failed()
