"""The registry: built-ins registered through the plugin hook, in-process registration."""

import numba
import numpy as np
import pytest

import numbapool
from numbapool.registry import Registry

BUILTINS = ["adaptive_avg", "adaptive_max", "avg", "global_avg", "global_max", "global_min",
            "lp", "max", "min", "sum"]


def test_builtins_are_registered_by_the_builtin_plugin():
    names = numbapool.poolers()
    assert names == sorted(names)
    assert set(BUILTINS) <= set(names)
    for name in BUILTINS:
        assert numbapool.get(name).source == "numbapool.builtin"


def test_unknown_name_suggests_close_ones():
    with pytest.raises(LookupError, match="did you mean 'max'"):
        numbapool.get("maxx")
    with pytest.raises(LookupError, match="global_avg"):
        numbapool.pool("global_mean", np.ones((1, 1, 4)))


@numba.njit
def _range_better(v, best):  # a selection that prefers larger |v|
    return abs(v) > abs(best)


def test_register_in_process_and_call_by_name():
    reduction = numbapool.Selection("absmax_test", better=_range_better)
    pooler = numbapool.Pooler("absmax_test", numbapool.Sliding(), reduction, "largest |x|")
    numbapool.register(pooler)
    try:
        x = np.array([[[1.0, -5.0, 2.0, 3.0]]])
        assert numbapool.pool("absmax_test", x, 2).tolist() == [[[-5.0, 3.0]]]
        with pytest.raises(ValueError, match="clashes with the one registered by"):
            numbapool.register(pooler)
    finally:
        numbapool.unregister("absmax_test")
    with pytest.raises(LookupError):
        numbapool.get("absmax_test")


def test_name_clash_with_builtin_names_both_sources():
    clash = numbapool.Pooler("max", numbapool.Global(), numbapool.get("max").reduction)
    with pytest.raises(ValueError, match=r"register\(\).*numbapool\.builtin"):
        numbapool.register(clash)


def test_reduction_functions_must_be_jitted():
    with pytest.raises(TypeError, match="better must be a numba.njit function"):
        numbapool.Selection("bad", better=lambda v, b: v > b)


def test_broken_entry_point_is_reported_not_fatal(monkeypatch):
    import importlib.metadata as md

    broken = md.EntryPoint(name="broken", value="numbapool_no_such_module", group="numbapool")
    monkeypatch.setattr(md, "entry_points", lambda group: [broken])
    reg = Registry()
    with pytest.warns(UserWarning, match="broken"):
        names = reg.names()
    assert "max" in names
    assert [f.plugin for f in reg.failures()] == ["broken (numbapool_no_such_module)"]
