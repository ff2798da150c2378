"""numbapool-learned: learned and stochastic pooling, registered by name in numbapool."""

from __future__ import annotations

from numbapool import Param, Pooler, Sliding, hookimpl
from numbapool.pooler import all_equal, all_in, at_least

from .reductions import (
    GATED,
    GEM,
    GEM_CUBE,
    GEM_CUBE_MIN_EPS,
    GEM_CUBE_SMALL_EPS,
    GEM_POW,
    LSE,
    MIXED,
    SOFTPOOL,
    STOCHASTIC,
    STOCHASTIC_EXPECTATION,
)

__version__ = "0.1.0"


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be positive"


def _gem_reduction(params):
    """p = 3 everywhere (the default): cube and cube root instead of powers and a root; the
    faster cube root where eps is at least GEM_CUBE_MIN_EPS (as the default 1e-6 is).  p of
    1 to 4: power's products; any other p: vpow, with no tests on p in the loops."""
    if not all_equal(params["p"], 3.0):
        return GEM if all_in(params["p"], (1.0, 2.0, 3.0, 4.0)) else GEM_POW
    return GEM_CUBE if at_least(params["eps"], GEM_CUBE_MIN_EPS) else GEM_CUBE_SMALL_EPS


def _stochastic_reduction(params):
    return STOCHASTIC if params["training"] else STOCHASTIC_EXPECTATION


@hookimpl
def register_poolers(register):
    sliding = Sliding()
    register(Pooler(
        "gem", sliding, GEM, "generalised mean (mean clamp(x, eps)**p)**(1/p)",
        parameters=(Param("p", 3.0, "the power", trainable=True, per_channel=True,
                          check=_positive),
                    Param("eps", 1e-6, "inputs are clamped below at eps", check=_positive)),
        choose=_gem_reduction))
    register(Pooler(
        "mixed", sliding, MIXED, "alpha * max + (1 - alpha) * mean",
        parameters=(Param("alpha", 0.5, "share of the max", trainable=True,
                          per_channel=True),)))
    register(Pooler(
        "gated", sliding, GATED, "sigmoid(w . window) * max + (1 - sigmoid) * mean",
        parameters=(Param("w", 0.0, "gate weights, one per kernel tap", trainable=True,
                          size="window", per_channel=True),)))
    register(Pooler(
        "lse", sliding, LSE, "log-sum-exp pooling log(mean exp(r x)) / r",
        parameters=(Param("r", 1.0, "sharpness", trainable=True, per_channel=True,
                          check=_positive),)))
    register(Pooler("softpool", sliding, SOFTPOOL, "softmax-weighted sum of each window"))
    register(Pooler(
        "stochastic", sliding, STOCHASTIC,
        "Zeiler & Fergus: sample x_i with p_i = relu(x_i) / sum relu(x); expectation if "
        "training=False",
        parameters=(Param("training", True, "sample (True) or take the expectation",
                          kind="bool"),),
        deterministic=False, choose=_stochastic_reduction))
