"""The CPU kernel launcher: argument kinds, slots and prologues, parts and bound calls."""

import numba
import numpy as np
import pytest

from numbapool.kernels import launch
from numbapool.kernels.launch import Launcher, kernel_function, kind, pack

HEADER = ("import numba\nimport numpy as np\n"
          "from numbapool.kernels.launch import address as _address, contiguous as _contiguous\n"
          "from numbapool.kernels.launch import strided as _strided\n"
          "from numbapool.kernels.vector_width import prefer_wide_vectors as "
          "_prefer_wide_vectors\n")


def _cfunc(names, kinds, body):
    """A C callback of the launcher's signature: ``prologue`` then ``body`` (level 1)."""
    src = (HEADER + f"@numba.cfunc({launch.SIGNATURE!r}, error_model='numpy')\n"
           + kernel_function(names, kinds, body))
    scope: dict = {}
    exec(compile(src, "<test_launch>", "exec"), scope)  # noqa: S102
    return scope["kernel"]


def test_kinds():
    a = np.zeros((2, 3), np.float32)
    assert kind(a) == ("C", "f", 2)
    assert kind(a.T) == ("A", "f", 2)
    assert kind(np.broadcast_to(np.float64(1), (4, 5))) == ("A", "d", 2)
    assert kind(1.5) == ("f", "d")
    assert kind(np.float32(0)) == ("f", "f")
    assert kind(3) == ("i", "q")
    assert kind(np.int32(3)) == ("i", "i")
    assert kind(True) == ("b",)
    assert kind((a, np.float32(1))) == ("t", (("C", "f", 2), ("f", "f")))
    with pytest.raises(TypeError, match="cannot take an argument of type str"):
        kind("x")


def test_arguments_survive_the_slots():
    """Every kind of argument reaches the kernel with its values, shapes and strides: the
    kernel writes back what it rebuilt."""
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    args = (
        np.zeros(8, np.float64),                     # out
        base[:, ::2].T,                              # strided (3, 4) view, layout A
        np.broadcast_to(np.float32(2.5), (3, 4)),    # strides 0
        np.arange(5, dtype=np.int32),                # C
        np.float32(0.25), 7, np.int32(-3), True,
        (np.array([10.0, 20.0]), np.array([1.0])),   # a tuple of arrays
    )
    names = ["out", "view", "const", "ints", "f32", "i64", "i32", "flag", "prm"]
    kinds = tuple(kind(a) for a in args)
    body = """
    if part == 0:
        out[0] = view.sum()
        out[1] = view[2, 1]
        out[2] = const.sum()
        out[3] = ints.sum() + ints.shape[0]
        out[4] = f32 * 2
        out[5] = i64 + i32
        out[6] = 1.0 if flag else 0.0
        out[7] = prm[0][1] + prm[1][0] + parts
"""
    fn = _cfunc(names, kinds, body)
    slots = pack(kinds, args)
    launch.drive(fn.address, slots.ctypes.data, 2)
    view = base[:, ::2].T
    assert args[0].tolist() == [view.sum(), view[2, 1], 2.5 * 12, 10 + 5, 0.5, 4, 1, 23]


def test_every_part_runs_once():
    fn = _cfunc(["out"], (("C", "int64", 1),), """
    for i in range(out.shape[0] * part // parts, out.shape[0] * (part + 1) // parts):
        out[i] += part + 1
""")
    out = np.zeros(10, np.int64)
    slots = pack((kind(out),), (out,))
    launch.drive(fn.address, slots.ctypes.data, 3)
    assert out.tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 3]


def _adder() -> Launcher:
    """out = x + c (2-D) over the parts, compiled for whatever kinds it is called with."""
    def build(kinds):
        return _cfunc(["x", "out", "c"], kinds, """
    for i in range(x.shape[0] * part // parts, x.shape[0] * (part + 1) // parts):
        for j in range(x.shape[1]):
            out[i, j] = x[i, j] + c
""")
    return Launcher("adder", build)


def test_launcher_compiles_per_kinds():
    add = _adder()
    x = np.arange(6.0).reshape(2, 3)
    out = np.empty_like(x)
    add(x, out, 1.0)
    assert np.array_equal(out, x + 1)
    x32 = x.astype(np.float32)
    out32 = np.empty_like(x32)
    add(x32, out32, np.float32(2))
    assert np.array_equal(out32, x32 + 2)
    assert len(add.cfuncs) == 2
    add(x, out, 3.0)  # (kinds seen before: no new kernel)
    assert np.array_equal(out, x + 3) and len(add.cfuncs) == 2


def test_bound_calls_check_what_they_are_given():
    add = _adder()
    x = np.arange(6.0).reshape(2, 3)
    bound = add.bind((x, np.empty_like(x), 5.0), 2)
    for shape in [(2, 3), (3, 4), (2, 3)]:  # another shape takes the general path
        xs = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
        out = np.empty_like(xs)
        bound(xs, out)
        assert np.array_equal(out, xs + 5)
    out = np.zeros((3, 2))
    bound(x.T, out)  # not C-contiguous: the general path reads its strides
    assert np.array_equal(out, x.T + 5)
    with pytest.raises(ValueError, match="C-contiguous"):
        add.bind((x.T, out, 5.0), 2)


@pytest.mark.parametrize("free", [3, 4])
def test_bound_calls_of_three_and_four_arrays(free):
    """A kernel bound with three or four arrays (a masked kernel's ``miss``, after ``idx``
    with indices) writes into the arrays of each call: each one's place in the slots."""
    def build(kinds):
        return _cfunc(["x", "out", "idx", "miss", "c"], kinds, """
    for i in range(x.shape[0] * part // parts, x.shape[0] * (part + 1) // parts):
        out[i] = x[i] + c
        idx[i] = 2 * i
        miss[i] = miss[i] + 1
""")
    launcher = Launcher("four", build)
    x = np.arange(5.0)
    args = (x, np.empty(5), np.empty(5, np.int64), np.zeros(5, np.uint8), 1.5)
    bound = launcher.bind(args, free)

    def general(*args, **kwargs):  # (a bound call that declined would take it)
        raise AssertionError("the bound call took the general path")

    bound._launcher = general
    for shift in (10.0, 20.0):
        y, out, idx, miss = x + shift, np.empty(5), np.empty(5, np.int64), np.zeros(5, np.uint8)
        if free == 3:
            idx = args[2]
            bound(y, out, idx)
            assert args[3].tolist() == [int(shift // 10)] * 5  # (the bound miss)
        else:
            bound(y, out, idx, miss)
            assert miss.tolist() == [1] * 5
        assert out.tolist() == (y + 1.5).tolist() and idx.tolist() == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError, match="two to four arrays"):
        launcher.bind(args, 1)


def test_threads_follow_numba():
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert launch._threads() == 1
    finally:
        numba.set_num_threads(before)


# (Numba's C callback wrapper reports the exception as unraisable, then returns 0)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_exception_in_a_kernel_is_raised_not_lost():
    """A C callback cannot raise: Numba's wrapper prints the exception and returns 0 instead
    of the kernel's 1, and the launcher raises; both the general and the bound path."""
    def build(kinds):
        return _cfunc(["x", "out"], kinds, """
    for i in range(x.shape[0] * part // parts, x.shape[0] * (part + 1) // parts):
        out[i] = np.empty(int(x[i])).shape[0]
""")
    launcher = Launcher("raiser", build)
    x = np.array([1.0, 2.0, 3.0, 4.0])
    out = np.zeros(4)
    launcher(x, out)
    assert out.tolist() == [1, 2, 3, 4]
    bad = np.array([1.0, -2.0, 3.0, 4.0])  # np.empty(-2) raises in compiled code
    with pytest.raises(RuntimeError, match="raiser raised an exception in compiled code"):
        launcher(bad, out)
    bound = launcher.bind((x, out), 2)
    bound(x, out)
    with pytest.raises(RuntimeError, match="raiser raised"):
        bound(bad, out)
