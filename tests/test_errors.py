"""Bad-input catalogue for numbapool.pool / numbapool.pool_grad / the registry.

Each case asserts the exception type, that the message names the offending
argument, and that neither x nor grad_output was modified.
"""

import re

import numpy as np
import pytest

import numbapool

BUILTIN = [
    "max",
    "min",
    "sum",
    "avg",
    "lp",
    "global_max",
    "global_avg",
    "global_min",
    "adaptive_max",
    "adaptive_avg",
]


def x2d(dtype=np.float64):
    rng = np.random.default_rng(0)
    return rng.standard_normal((2, 3, 6, 6)).astype(dtype)


def f64(shape):
    return np.random.default_rng(1).standard_normal(shape)


def complex_x():
    return (x2d() + 1j * x2d()).astype(np.complex128)


def object_x():
    return x2d().astype(object)


def str_x():
    return np.full((2, 3, 6, 6), "a", dtype="<U1")


# (id, function, x factory, extra positional args, kwargs, exception, regex)
POOL_CASES = [
    # --- unknown pooler name
    ("name-maxx", "maxx", x2d, (2,), {}, LookupError, r"maxx"),
    # --- wrong types of x
    ("x-complex", "max", complex_x, (2,), {}, TypeError, r"\bx\b"),
    ("x-object", "max", object_x, (2,), {}, TypeError, r"\bx\b"),
    ("x-str", "max", str_x, (2,), {}, TypeError, r"\bx\b"),
    ("x-complex-avg", "avg", complex_x, (2,), {}, TypeError, r"\bx\b"),
    ("x-object-global", "global_max", object_x, (), {}, TypeError, r"\bx\b"),
    # --- wrong types of options
    ("kernel_size-float", "max", x2d, (2.0,), {}, TypeError, r"kernel_size"),
    ("kernel_size-float-in-tuple", "max", x2d, ((2, 2.0),), {}, TypeError, r"kernel_size"),
    ("kernel_size-str", "max", x2d, ("2",), {}, TypeError, r"kernel_size"),
    ("kernel_size-float-kw", "avg", x2d, (), {"kernel_size": 3.0}, TypeError, r"kernel_size"),
    ("stride-float", "max", x2d, (2,), {"stride": 1.5}, TypeError, r"stride"),
    ("stride-str", "avg", x2d, (2,), {"stride": "1"}, TypeError, r"stride"),
    ("dilation-float", "max", x2d, (2,), {"dilation": 1.0}, TypeError, r"dilation"),
    ("dilation-str", "max", x2d, (2,), {"dilation": "2"}, TypeError, r"dilation"),
    ("padding-float", "max", x2d, (2,), {"padding": 1.0}, TypeError, r"padding"),
    ("output_size-float", "adaptive_avg", x2d, (), {"output_size": 2.0}, TypeError,
     r"output_size"),
    ("output_size-str", "adaptive_max", x2d, (), {"output_size": "3"}, TypeError,
     r"output_size"),
    ("unknown-kwarg", "max", x2d, (2,), {"bogus_option": 1}, TypeError, r"bogus_option"),
    ("misspelled-kwarg", "avg", x2d, (2,), {"strid": 1}, TypeError, r"strid"),
    ("param-of-other-pooler", "max", x2d, (2,), {"p": 2}, TypeError, r"\bp\b"),
    # --- wrong values: kernel_size / stride / dilation / padding
    ("kernel_size-0", "max", x2d, (0,), {}, ValueError, r"kernel_size"),
    ("kernel_size-neg", "avg", x2d, (-2,), {}, ValueError, r"kernel_size"),
    ("kernel_size-0-in-tuple", "max", x2d, ((2, 0),), {}, ValueError, r"kernel_size"),
    ("kernel_size-too-large", "max", x2d, (7,), {}, ValueError, r"kernel_size"),
    ("kernel_size-too-large-avg", "avg", x2d, ((2, 7),), {}, ValueError, r"kernel_size"),
    ("kernel_size-too-large-sum", "sum", x2d, (8,), {"padding": 0}, ValueError,
     r"kernel_size"),
    ("kernel_size-too-large-lp", "lp", x2d, (7,), {"p": 2}, ValueError, r"kernel_size"),
    ("kernel_size-dilated-too-large", "max", x2d, (3,), {"dilation": 3}, ValueError,
     r"kernel_size|dilation"),
    ("kernel_size-wrong-len-3", "max", x2d, ((2, 2, 2),), {}, ValueError, r"kernel_size"),
    ("kernel_size-wrong-len-avg", "avg", x2d, ((2, 2, 2),), {}, ValueError, r"kernel_size"),
    ("stride-0", "max", x2d, (2,), {"stride": 0}, ValueError, r"stride"),
    ("stride-neg", "avg", x2d, (2,), {"stride": -1}, ValueError, r"stride"),
    ("stride-0-in-tuple", "max", x2d, (2,), {"stride": (1, 0)}, ValueError, r"stride"),
    ("stride-wrong-len", "max", x2d, (2,), {"stride": (1, 1, 1)}, ValueError, r"stride"),
    ("dilation-0", "max", x2d, (2,), {"dilation": 0}, ValueError, r"dilation"),
    ("dilation-neg-in-tuple", "max", x2d, (2,), {"dilation": (1, -1)}, ValueError,
     r"dilation"),
    ("dilation-wrong-len", "max", x2d, (2,), {"dilation": (1, 1, 1)}, ValueError,
     r"dilation"),
    ("padding-neg", "max", x2d, (2,), {"padding": -1}, ValueError, r"padding"),
    ("padding-neg-in-tuple", "avg", x2d, (3,), {"padding": (1, -1)}, ValueError, r"padding"),
    ("padding-neg-in-pair", "avg", x2d, (3,), {"padding": ((0, -1), (0, 0))}, ValueError,
     r"padding"),
    ("padding-wrong-len", "max", x2d, (2,), {"padding": (1, 1, 1)}, ValueError, r"padding"),
    ("padding-pairs-wrong-len", "max", x2d, (2,), {"padding": ((1, 1), (1, 1), (1, 1))},
     ValueError, r"padding"),
    ("padding-unknown-string", "max", x2d, (2,), {"padding": "full"}, ValueError, r"padding"),
    ("padding-unknown-string-avg", "avg", x2d, (2,), {"padding": "SAME!"}, ValueError,
     r"padding"),
    # --- wrong values: x shape
    ("x-ndim-2", "max", lambda: f64((3, 6)), (2,), {}, ValueError, r"\bx\b"),
    ("x-ndim-1", "avg", lambda: f64((6,)), (2,), {}, ValueError, r"\bx\b"),
    ("x-ndim-6", "max", lambda: f64((1, 1, 2, 2, 2, 2)), (2,), {}, ValueError, r"\bx\b"),
    ("x-ndim-2-global", "global_avg", lambda: f64((3, 6)), (), {}, ValueError, r"\bx\b"),
    ("x-empty-spatial", "max", lambda: f64((2, 3, 0, 6)), (2,), {}, ValueError, r"\bx\b"),
    ("x-empty-spatial-avg", "avg", lambda: f64((2, 3, 6, 0)), (2,), {}, ValueError, r"\bx\b"),
    ("x-empty-spatial-global", "global_max", lambda: f64((2, 3, 0, 4)), (), {}, ValueError,
     r"\bx\b"),
    ("x-empty-spatial-adaptive", "adaptive_avg", lambda: f64((2, 3, 0, 4)), (),
     {"output_size": 2}, ValueError, r"\bx\b"),
    ("x-empty-spatial-cl", "max", lambda: f64((2, 0, 6, 3)), (2,),
     {"layout": "channels_last"}, ValueError, r"\bx\b"),
    # --- adaptive
    ("adaptive_max-no-output_size", "adaptive_max", x2d, (), {}, ValueError, r"output_size"),
    ("adaptive_avg-no-output_size", "adaptive_avg", x2d, (), {}, ValueError, r"output_size"),
    ("output_size-0", "adaptive_avg", x2d, (), {"output_size": 0}, ValueError, r"output_size"),
    ("output_size-wrong-len", "adaptive_max", x2d, (), {"output_size": (2, 2, 2)}, ValueError,
     r"output_size"),
    # --- float parameters (lp's p): numbers or arrays of them, not strings, bools or None
    ("lp-p-string", "lp", x2d, (2,), {"p": "3"}, TypeError, r"parameter p must be a real"),
    ("lp-p-bytes", "lp", x2d, (2,), {"p": b"3"}, TypeError, r"parameter p must be a real"),
    ("lp-p-none", "lp", x2d, (2,), {"p": None}, TypeError, r"parameter p must be a real"),
    ("lp-p-bool-array", "lp", x2d, (2,), {"p": np.array([True] * 3)}, TypeError,
     r"parameter p .* of bool"),
    ("lp-p-mixed-list", "lp", x2d, (2,), {"p": [2.0, "a", 1.0]}, TypeError,
     r"parameter p must be a real"),
    ("lp-p-ragged", "lp", x2d, (2,), {"p": [[2.0], [2.0, 2.0]]}, TypeError,
     r"parameter p must be a real"),
    ("lp-p-inf", "lp", x2d, (2,), {"p": np.inf}, ValueError, r"parameter p must be finite"),
    # --- divisor_override: a positive number up to 2**63 (PyTorch's int64)
    ("divisor_override-0", "avg", x2d, (2,), {"divisor_override": 0}, ValueError,
     r"divisor_override must be positive"),
    ("divisor_override-neg", "avg", x2d, (2,), {"divisor_override": -4}, ValueError,
     r"divisor_override must be positive"),
    ("divisor_override-nan", "avg", x2d, (2,), {"divisor_override": np.nan}, ValueError,
     r"divisor_override must be positive"),
    ("divisor_override-2**63+1", "avg", x2d, (2,), {"divisor_override": 2 ** 63 + 1},
     ValueError, r"divisor_override .* 2\*\*63"),
    ("divisor_override-2**-64", "avg", x2d, (2,), {"divisor_override": 2.0 ** -64},
     ValueError, r"divisor_override .* 2\*\*-63"),
    ("divisor_override-inf", "avg", x2d, (2,), {"divisor_override": np.inf}, ValueError,
     r"divisor_override .* and 2\*\*63"),
    ("divisor_override-2**64", "avg", x2d, (2,), {"divisor_override": 2 ** 64}, ValueError,
     r"divisor_override .* and 2\*\*63"),
    ("divisor_override-str", "avg", x2d, (2,), {"divisor_override": "4"}, TypeError,
     r"divisor_override must be a number"),
    # --- layout
    ("layout-unknown", "max", x2d, (2,), {"layout": "NCHW"}, ValueError, r"layout"),
    ("layout-unknown-avg", "avg", x2d, (2,), {"layout": "channels_middle"}, ValueError,
     r"layout"),
]


def _assert_same(a, b):
    assert a.dtype == b.dtype
    assert a.shape == b.shape
    if a.dtype == object or a.dtype.kind in "US":
        assert np.array_equal(a, b)
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "name,make_x,args,kwargs,exc,match",
    [c[1:] for c in POOL_CASES],
    ids=[c[0] for c in POOL_CASES],
)
def test_pool_bad_input(name, make_x, args, kwargs, exc, match):
    x = make_x()
    x_copy = x.copy()
    with pytest.raises(exc, match=match):
        numbapool.pool(name, x, *args, **kwargs)
    _assert_same(x, x_copy)


# For pool_grad, skip the cases where the shape of x itself is bad (then no
# grad_output can be consistent with x and which complaint wins is a matter of taste).
GRAD_REUSE = [c for c in POOL_CASES if not c[0].startswith(("x-ndim", "x-empty"))]


def _good_grad_output(name, kwargs):
    """grad_output that would be right for x2d() if the bad argument were fixed."""
    if name.startswith("global"):
        return np.ones((2, 3))
    if name.startswith("adaptive"):
        return np.ones((2, 3, 2, 2))
    return np.ones((2, 3, 3, 3))


@pytest.mark.parametrize(
    "name,make_x,args,kwargs,exc,match",
    [c[1:] for c in GRAD_REUSE],
    ids=[c[0] for c in GRAD_REUSE],
)
def test_pool_grad_bad_input(name, make_x, args, kwargs, exc, match):
    """pool_grad validates the same arguments the same way."""
    x = make_x()
    x_copy = x.copy()
    g = _good_grad_output(name, kwargs)
    g_copy = g.copy()
    with pytest.raises(exc, match=match):
        numbapool.pool_grad(name, x, g, *args, **kwargs)
    _assert_same(x, x_copy)
    _assert_same(g, g_copy)


# grad_output specific cases: (id, name, args, kwargs, grad_output factory, exc, regex)
GRAD_CASES = [
    ("grad_output-wrong-shape", "max", (2,), {}, lambda: np.ones((2, 3, 2, 2)), ValueError,
     r"grad_output"),
    ("grad_output-wrong-ndim", "avg", (2,), {}, lambda: np.ones((2, 3, 3)), ValueError,
     r"grad_output"),
    ("grad_output-wrong-channels", "max", (3,), {"stride": 3}, lambda: np.ones((2, 4, 2, 2)),
     ValueError, r"grad_output"),
    ("grad_output-wrong-shape-global", "global_avg", (), {}, lambda: np.ones((2, 3, 1, 1)),
     ValueError, r"grad_output"),
    ("grad_output-wrong-shape-adaptive", "adaptive_max", (), {"output_size": (2, 3)},
     lambda: np.ones((2, 3, 3, 2)), ValueError, r"grad_output"),
    ("grad_output-layout-mismatch", "max", (2,), {"layout": "channels_last"},
     lambda: np.ones((2, 3, 3, 3)), ValueError, r"grad_output"),
    ("grad_output-object", "max", (2,), {}, lambda: np.ones((2, 3, 3, 3), dtype=object),
     TypeError, r"grad_output"),
    ("grad_output-complex", "avg", (2,), {}, lambda: np.ones((2, 3, 3, 3), dtype=complex),
     TypeError, r"grad_output"),
]


@pytest.mark.parametrize(
    "name,args,kwargs,make_g,exc,match",
    [c[1:] for c in GRAD_CASES],
    ids=[c[0] for c in GRAD_CASES],
)
def test_pool_grad_bad_grad_output(name, args, kwargs, make_g, exc, match):
    x = x2d()
    if kwargs.get("layout") == "channels_last":
        # x is (N, H, W, C) = (2, 6, 4, 3): the right grad_output is (2, 3, 2, 3);
        # (2, 3, 3, 3) -- right for channels_first -- is wrong here.
        x = np.ascontiguousarray(np.moveaxis(x2d()[:, :, :, :4], 1, -1))
    x_copy = x.copy()
    g = make_g()
    g_copy = g.copy()
    with pytest.raises(exc, match=match):
        numbapool.pool_grad(name, x, g, *args, **kwargs)
    _assert_same(x, x_copy)
    _assert_same(g, g_copy)


def test_grad_output_correct_shape_is_accepted():
    """Sanity check that the grad_output cases above fail for the shape, not in general."""
    x = x2d()
    gx = numbapool.pool_grad("max", x, np.ones((2, 3, 3, 3)), 2)
    assert np.asarray(gx).shape == x.shape


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("bad,suggest", [("maxx", "max"), ("avgg", "avg"),
                                          ("global_mx", "global_max"),
                                          ("adaptive_avrg", "adaptive_avg")])
def test_unknown_name_suggests_close_names(bad, suggest):
    x = x2d()
    x_copy = x.copy()
    with pytest.raises(LookupError) as info:
        numbapool.pool(bad, x, 2)
    msg = str(info.value)
    assert bad in msg
    assert re.search(r"(?<![A-Za-z0-9_])" + re.escape(suggest) + r"(?![A-Za-z0-9_])", msg), msg
    _assert_same(x, x_copy)

    with pytest.raises(LookupError) as info:
        numbapool.get(bad)
    msg = str(info.value)
    assert re.search(r"(?<![A-Za-z0-9_])" + re.escape(suggest) + r"(?![A-Za-z0-9_])", msg), msg


def test_unknown_name_in_pool_grad():
    x = x2d()
    with pytest.raises(LookupError, match=r"maxx"):
        numbapool.pool_grad("maxx", x, np.ones((2, 3, 3, 3)), 2)


def test_get_unknown_raises_lookup_error():
    with pytest.raises(LookupError, match="nope"):
        numbapool.get("nope")


def test_poolers_contains_builtins_and_is_sorted():
    names = list(numbapool.poolers())
    assert names == sorted(names)
    for n in BUILTIN:
        assert n in names, n
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", BUILTIN)
def test_get_builtin(name):
    p = numbapool.get(name)
    assert p.name == name
    assert isinstance(p.summary, str) and p.summary
    assert hasattr(p, "parameters")
    assert hasattr(p, "capabilities")


def test_get_max_name():
    assert numbapool.get("max").name == "max"


class _BadRule(numbapool.WindowRule):
    """Windows that do not describe the input: ``how`` picks the mistake."""

    name = "bad_rule"
    options = {"how": "planes"}

    def plan(self, spatial, context, *, how="planes"):
        planes = context.batch * context.channels
        axes = []
        for length in spatial:
            if how == "planes":
                starts = np.zeros((planes + 1, 2), dtype=np.int64)
                starts[1:, 1] = 1  # (not all the same: those would be shared windows)
            else:
                starts = np.zeros((1, 2), dtype=np.int64)
            axes.append(numbapool.explicit_axis(length + (how == "length"), starts, 1))
        if how == "rank":
            axes = axes[:1]
        return numbapool.WindowPlan(tuple(axes))


@pytest.mark.parametrize("how, match", [("planes", r"3 planes of windows.*N \* C = 2"),
                                        ("length", "windows for length 7 on spatial axis 0"),
                                        ("rank", "returned 1 axes of windows for 2 spatial")])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_window_rule_must_describe_the_input(how, match, layout):
    """A plugin's window rule that returns tables for another input is refused with the
    rule named, before any kernel indexes them."""
    pooler = numbapool.register(numbapool.Pooler("test_bad_rule", _BadRule(),
                                                 numbapool.get("max").reduction, "test"))
    try:
        x = np.ones((1, 2, 6, 5) if layout == "channels_first" else (1, 6, 5, 2))
        with pytest.raises(ValueError, match=match):
            numbapool.pool(pooler.name, x, how=how, layout=layout)
    finally:
        numbapool.unregister(pooler.name)


def test_divisors_up_to_2_to_the_63():
    """Divisors are at most numbapool.MAX_DIVISOR (2**63), which reductions may rely on
    (gem's cube root does): divisor_override from 2**-63 to 2**63, and a window counting
    padding (count_include_pad) may cover at most 2**63 taps of the padded input; averages
    over real elements, and poolers that divide by nothing, are not limited."""
    from numbapool import MAX_DIVISOR, explicit_axis

    assert MAX_DIVISOR == 2.0 ** 63
    x = np.ones((1, 1, 4), np.float32)
    for d in (2 ** 63, 2.0 ** -63, 3):
        np.testing.assert_array_equal(numbapool.pool("avg", x, 2, divisor_override=d),
                                      np.full((1, 1, 2), np.float32(2 / d)))
    one = np.ones((1, 1, 1, 1, 1), np.float32)
    k, p = 2 * 10 ** 7 + 1, 10 ** 7  # (8e21 padded taps)
    with pytest.raises(ValueError, match=r"pooler 'avg': the largest window counts 8e\+21"):
        numbapool.pool("avg", one, k, padding=p)
    assert numbapool.pool("avg", one, k, padding=p, count_include_pad=False).item() == 1.0
    assert numbapool.pool("avg", one, k, padding=p, divisor_override=4).item() == 0.25
    assert numbapool.pool("max", one, k, padding=p).item() == 1.0
    k, p = 2 ** 21 - 1, 2 ** 20 - 1  # (just below 2**63 taps)
    assert numbapool.pool("avg", one, k, padding=p).item() == pytest.approx(k ** -3, rel=1e-6)
    for bad in (0.5, np.nan, np.inf, -1.0, [1.0, 0.0]):
        with pytest.raises(ValueError, match="padded_count must be finite and at least 1"):
            explicit_axis(6, [0, 2], 2, padded_count=bad)
        with pytest.raises(ValueError, match="padded_count must be finite and at least 1"):
            explicit_axis(6, [0, 2], [2, 2], padded_count=bad)
