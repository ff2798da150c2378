"""The conformance kit on every registered pooler (built-ins and installed plugins), and on
deliberately broken poolers, which it must reject."""

import numba
import pytest

import numbapool
from numbapool.testing import assert_conforms, check


@pytest.mark.parametrize("name", numbapool.poolers())
def test_every_registered_pooler_conforms(name):
    assert_conforms(name, ranks=(1, 2, 3))


@numba.njit
def _wrong_grad(v, tap, y, acc, div, prm):  # avg's gradient forgets to divide
    return 1.0


@numba.njit
def _sum_init(v, tap, prm):
    return v


@numba.njit
def _sum_take(acc, v, tap, prm):
    return acc + v


@numba.njit
def _mean_finish(acc, div, prm):
    return acc / div


def _register(name, reduction):
    numbapool.register(numbapool.Pooler(name, numbapool.Sliding(), reduction, "test only"))


def test_kit_catches_a_wrong_gradient():
    red = numbapool.Streaming("bad_grad_test", init=_sum_init, take=_sum_take,
                              finish=_mean_finish, grad=_wrong_grad, uses_divisor=True,
                              grad_uses_acc=False)
    _register("bad_grad_test", red)
    try:
        report = check("bad_grad_test", ranks=(1,))
    finally:
        numbapool.unregister("bad_grad_test")
    failed = {r.name.split(": ")[-1] for r in report.failures()}
    assert failed == {"grad vs finite differences"}
    with pytest.raises(AssertionError, match="grad vs finite differences"):
        _register("bad_grad_test", red)
        try:
            assert_conforms("bad_grad_test", ranks=(1,))
        finally:
            numbapool.unregister("bad_grad_test")


def test_kit_compares_with_the_author_reference():
    def reference_that_disagrees(x, **kw):  # the author's reference of a *sum*, not a mean
        return numbapool.pool("sum", x, **{k: v for k, v in kw.items()})

    report = check("avg", reference_that_disagrees, ranks=(1,))
    failed = {r.name.split(": ")[-1] for r in report.failures()}
    assert failed == {"author reference"}

    def right_reference(x, **kw):
        from reference import ref_pool

        return ref_pool("avg", x, **kw)

    assert check("avg", right_reference, ranks=(1, 2)).ok


def test_cli_check_and_plugins(capsys):
    from numbapool.cli import main

    assert main(["check", "max", "--ranks", "1"]) == 0
    out = capsys.readouterr().out
    assert "max:" in out and "0 failed" in out
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("numbapool.builtin: adaptive_avg, adaptive_max, avg")
    assert main(["check", "mxa"]) == 2


@pytest.mark.parametrize("name", numbapool.poolers())
def test_every_pooler_gradient_with_many_planes(name):
    """With >= SCATTER_MIN_PLANES planes channels-first backward scatters per plane: check it
    against finite differences for every pooler, on each of its 2-D geometry examples."""
    import numpy as np

    from numbapool.testing import _check_grad, _data, examples

    rng = np.random.default_rng(3)
    seeded = {} if numbapool.get(name).deterministic else {"seed": 0}
    for opts in examples(name, 2):
        kw = {**opts, **seeded}
        x = _data((2, 5, 9, 8), rng)
        y = numbapool.pool(name, x, **kw)
        ok, detail = _check_grad(name, x, y, kw, rng)
        assert ok, f"{opts}: {detail}"
