"""The built-in poolers, registered through the same hook a third-party plugin implements."""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..pooler import Param, Pooler, all_equal, all_in
from ..windows import Adaptive, Global, Sliding
from .reductions import AVG, LP, LP_POW, LP_SQUARE, MAX, MIN, SUM


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be positive"


def _lp_reduction(params):
    """p = 2 (the default): squares and a square root instead of powers and a root; p of
    1 to 4: power's products; any other p: vpow, with no tests on p in the loops."""
    if all_equal(params["p"], 2.0):
        return LP_SQUARE
    return LP if all_in(params["p"], (1.0, 2.0, 3.0, 4.0)) else LP_POW


@hookimpl
def register_poolers(register):
    sliding, adaptive, glob = Sliding(), Adaptive(), Global()
    register(Pooler("max", sliding, MAX, "maximum over each window (NaN propagates)"))
    register(Pooler("min", sliding, MIN, "minimum over each window (NaN propagates)"))
    register(Pooler("sum", sliding, SUM, "sum over each window (padding adds zero)"))
    register(Pooler("avg", sliding, AVG, "mean over each window (count_include_pad, "
                                          "divisor_override as in PyTorch)"))
    register(Pooler("lp", sliding, LP, "power mean without the mean: (sum x**p)**(1/p), "
                                        "PyTorch's lp_pool",
                    parameters=(Param("p", 2.0, "the power", check=_positive),),
                    choose=_lp_reduction))
    register(Pooler("global_max", glob, MAX, "maximum over all spatial positions"))
    register(Pooler("global_min", glob, MIN, "minimum over all spatial positions"))
    register(Pooler("global_avg", glob, AVG, "mean over all spatial positions"))
    register(Pooler("adaptive_max", adaptive, MAX, "maximum over PyTorch's adaptive bins"))
    register(Pooler("adaptive_avg", adaptive, AVG, "mean over PyTorch's adaptive bins"))
