"""Conformance kit: check that a registered pooler behaves, in one call.

>>> from numbapool.testing import assert_conforms
>>> assert_conforms("max")  # doctest: +SKIP

:func:`check` runs, for every geometry example of the pooler's window rule, every spatial rank
(1, 2, 3) and both layouts:

- the forward result against a slow reference (one the author supplies, and one the library
  derives from the window tables and the reduction's pure-Python functions);
- channels-last against channels-first, float32 against float64, the input never modified,
  indices pointing at the selected values;
- ``pool_grad`` against central finite differences, and the gradients of trainable parameters
  (``return_param_grads=True``) too;
- for non-deterministic poolers, that a seed makes calls reproducible.

:func:`check_cuda` runs the pooler on the CUDA target (a GPU, or Numba's simulator with
``NUMBA_ENABLE_CUDASIM=1``) and compares everything with the CPU: values, indices, gradients
and parameter gradients, both layouts.

``numbapool check NAME [--target cuda]`` runs them from the command line.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import api
from .reduction import Sampling, Selection, Streaming
from .registry import REGISTRY
from .windows import Adaptive, Global, Sliding

__all__ = ["check", "check_cuda", "assert_conforms", "derived_reference", "examples",
           "CheckResult", "ConformanceReport"]

_SHAPES = {1: (2, 3, 11), 2: (2, 3, 9, 8), 3: (1, 2, 6, 5, 7)}


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class ConformanceReport:
    pooler: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok]

    def __str__(self) -> str:
        lines = [f"{'PASS' if r.ok else 'FAIL'}  {r.name}" + (f": {r.detail}" if r.detail else "")
                 for r in self.results]
        passed = sum(r.ok for r in self.results)
        lines.append(f"{self.pooler}: {passed} passed, {len(self.results) - passed} failed")
        return "\n".join(lines)


def examples(name: str, rank: int) -> list[dict[str, Any]]:
    """Geometry options exercised for a pooler at a spatial rank.

    Built-in window rules have their own examples; other rules provide an ``examples(rank)``
    method returning a list of option dicts.
    """
    pooler = REGISTRY.get(name)
    rule = pooler.window
    if hasattr(rule, "examples"):
        return list(rule.examples(rank))
    if isinstance(rule, Sliding):
        cases = [dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2),
                 dict(kernel_size=2, stride=1, dilation=2, ceil_mode=True),
                 dict(kernel_size=3, stride=2, padding="same")]
        if rank == 3:
            cases = cases[:2]
        return cases
    if isinstance(rule, Adaptive):
        return [dict(output_size=3)]
    if isinstance(rule, Global):
        return [dict(), dict(keepdims=True)]
    raise TypeError(f"window rule {rule!r} of {name!r} has no examples(rank) method")


def _param_examples(name: str, channels: int, rng: np.random.Generator) -> list[dict]:
    """Parameter sets: the defaults, and per-channel values where allowed."""
    pooler = REGISTRY.get(name)
    sets: list[dict] = [{}]
    per_channel = {}
    for p in pooler.parameters:
        if p.kind == "float" and p.per_channel and p.size == 1 and p.default is not None:
            per_channel[p.name] = float(p.default) * rng.uniform(0.7, 1.3, channels)
    if per_channel:
        sets.append(per_channel)
    return sets


def _data(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    # Positive, distinct values: valid for power means and stochastic pooling, no ties.
    return rng.uniform(0.5, 1.5, shape)


def derived_reference(name: str, x: np.ndarray, **kwargs: Any) -> np.ndarray:
    """A slow reference the library derives: plain Python loops over the window tables, with
    the reduction's pure-Python functions (``fn.py_func``), in float64."""
    call = api._prepare(name, x, _options(kwargs), _params(kwargs), "derived_reference",
                        ("forward",))
    red = call.reduction
    fns = {k: getattr(f, "py_func", f) for k, f in red.functions().items()}
    work = call.work.astype(np.float64)
    if call.kernel_layout == "channels_last":
        work = np.moveaxis(work, -1, 1)
    n_, c_ = work.shape[:2]
    axes = call.axes
    outs = [a.out for a in axes]
    y = np.empty((n_, c_, *outs))
    u = call.u  # (a sampling reduction's uniforms: channels first whatever the layout)
    for n, c in itertools.product(range(n_), range(c_)):
        plane = n * c_ + c
        pr = call.prm[c % call.prm.shape[0]]
        for o in itertools.product(*(range(k) for k in outs)):
            per_axis = []
            for a, ax in enumerate(axes):
                q = plane % ax.planes
                start, count, t0 = (int(ax.table[q, o[a], i]) for i in range(3))
                per_axis.append([(start + j * ax.step, t0 + j) for j in range(count)])
            taps = []
            for combo in itertools.product(*per_axis):
                pos = tuple(p for p, _ in combo)
                t = 0
                for a, (_, ti) in enumerate(combo):
                    t = t * axes[a].extent + ti
                taps.append((work[(n, c, *pos)], t))
            div = call.override or float(np.prod(
                [ax.divisor(call.include_pad)[plane % ax.planes, o[a]]
                 for a, ax in enumerate(axes)]))
            y[(n, c, *o)] = _reduce(red, fns, taps, pr, div,
                                    None if u is None else u[(n, c, *o)])
    # Back to the caller's layout and shape.
    if call.layout == "channels_last":
        y = np.moveaxis(y, 1, -1)
    return y.reshape(call.result_shape())


def _reduce(red, fns, taps, pr, div, u):
    values = [v for v, _ in taps]
    if isinstance(red, Selection):
        best = values[0]
        for v in values[1:]:
            if fns["better"](v, best):
                best = v
        return best
    if isinstance(red, Sampling):
        masses = [fns["mass"](v, pr) for v in values]
        target, cum = u * sum(masses), 0.0
        for v, m in zip(values, masses):
            cum += m
            if cum > target:
                return v
        return values[0]
    acc = fns["init"](taps[0][0], taps[0][1], pr)
    for v, t in taps[1:]:
        acc = fns["take"](acc, v, t, pr)
    if isinstance(red, Streaming):
        return fns["finish"](acc, div, pr)
    # Weighted: a second pass over the window.
    return sum(fns["weight"](v, t, acc, div, pr) * v for v, t in taps)


_OPTION_NAMES = set(api._OPTION_DEFAULTS)


def _options(kwargs: dict) -> dict:
    opts = dict(api._OPTION_DEFAULTS)
    opts.update({k: v for k, v in kwargs.items() if k in _OPTION_NAMES})
    return opts


def _params(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k not in _OPTION_NAMES}


def _close(a, b, rtol, atol=1e-12) -> tuple[bool, str]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False, f"shape {a.shape} != {b.shape}"
    if np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True):
        return True, ""
    err = np.max(np.abs(a - b) / (atol + rtol * np.abs(b)))
    return False, f"max error {err:.3g} x tolerance"


def _fd_positions(shape, rng, k=4):
    flat = rng.choice(int(np.prod(shape)), size=min(k, int(np.prod(shape))), replace=False)
    return [np.unravel_index(i, shape) for i in flat]


def check(name: str, reference: Callable[..., np.ndarray] | None = None, *,
          ranks: Iterable[int] = (1, 2, 3), seed: int = 0) -> ConformanceReport:
    """Run the conformance checks on a registered pooler.

    Parameters
    ----------
    name : str
        The pooler.
    reference : callable, optional
        ``reference(x, **options_and_params) -> ndarray``: a slow reference the author trusts,
        called with channels-first float64 ``x``.
    ranks : iterable of int
        Spatial ranks to exercise.
    seed : int
        Seed of the test data (and of the pooler's ``seed`` for non-deterministic poolers).

    Returns
    -------
    ConformanceReport
        ``report.ok``, ``report.failures()``, and ``str(report)`` for a listing.
    """
    pooler = REGISTRY.get(name)
    report = ConformanceReport(name)
    rng = np.random.default_rng(seed)
    seeded = {} if pooler.deterministic else {"seed": seed}
    trainable = [p.name for p in pooler.parameters if p.trainable]

    def record(label: str, fn: Callable[..., tuple[bool, str] | None], *args: Any) -> None:
        try:
            res = fn(*args)
            ok, detail = (True, "") if res is None else res
        except Exception as exc:  # noqa: BLE001 - a check that raises has failed
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        report.results.append(CheckResult(label, ok, detail))

    for rank in ranks:
        shape = _SHAPES[rank]
        for opts in examples(name, rank):
            for params in _param_examples(name, shape[1], rng):
                kw = {**opts, **params, **seeded}
                label = f"rank {rank} {_fmt(opts)}{' ' + _fmt(params) if params else ''}"
                x = _data(shape, rng)
                x_copy = x.copy()
                y = api.pool(name, x, **kw)
                record(f"{label}: derived reference", _check_reference, y,
                       derived_reference, name, x, kw)
                if reference is not None:
                    record(f"{label}: author reference", _check_reference, y,
                           lambda _n, x_, **kw_: reference(x_, **kw_), name, x, kw)
                record(f"{label}: input unchanged", _check_unchanged, x, x_copy)
                record(f"{label}: channels_last", _check_channels_last, name, x, y, kw)
                record(f"{label}: float32", _check_float32, name, x, kw)
                if "indices" in pooler.capabilities:
                    record(f"{label}: indices", _check_indices, name, x, kw)
                record(f"{label}: grad vs finite differences", _check_grad, name, x, y, kw, rng)
                if trainable:
                    record(f"{label}: parameter grads vs finite differences",
                           _check_param_grads, name, x, y, kw, trainable, rng)
                if not pooler.deterministic:
                    record(f"{label}: seed reproducible", _check_seed, name, x, y, kw)
    return report


def _fmt(d: dict) -> str:
    return ", ".join(f"{k}={np.round(v, 3).tolist() if isinstance(v, np.ndarray) else v!r}"
                     for k, v in d.items()) or "defaults"


def _check_reference(y, reference, name, x, kw):
    return _close(y, reference(name, x, **kw), 1e-9)


def _check_unchanged(x, x_copy):
    return bool(np.array_equal(x, x_copy)), "x was modified"


def _check_float32(name, x, kw):
    x32 = x.astype(np.float32)
    return _close(api.pool(name, x32, **kw), derived_reference(name, x32, **kw), 2e-5, 1e-6)


def _check_seed(name, x, y, kw):
    return bool(np.array_equal(api.pool(name, x, **kw), y)), "same seed, different result"


def _check_channels_last(name, x, y, kw):
    out = api.pool(name, np.moveaxis(x, 1, -1), layout="channels_last", **kw)
    return _close(np.moveaxis(out, -1, 1) if out.ndim > 2 else out, y, 1e-12)


def _check_indices(name, x, kw):
    y, idx = api.pool(name, x, return_indices=True, **kw)
    n, c = x.shape[:2]
    planes = x.reshape(n, c, -1)
    got = np.take_along_axis(planes, idx.reshape(n, c, -1), axis=2).reshape(y.shape)
    return _close(got, y, 0.0, 0.0)


def _loss(name, x, gy, kw):
    return float(np.sum(api.pool(name, x, **kw) * gy))


def _check_grad(name, x, y, kw, rng, h=1e-6):
    gy = rng.standard_normal(y.shape)
    gx = api.pool_grad(name, x, gy, **kw)
    if gx.shape != x.shape:
        return False, f"gradient shape {gx.shape} != {x.shape}"
    for pos in _fd_positions(x.shape, rng):
        e = np.zeros_like(x)
        e[pos] = h
        fd = (_loss(name, x + e, gy, kw) - _loss(name, x - e, gy, kw)) / (2 * h)
        ok, detail = _close(gx[pos], fd, 1e-5, 1e-7)
        if not ok:
            return False, f"at {pos}: analytic {gx[pos]:.8g}, numeric {fd:.8g}"
    return True, ""


def _check_param_grads(name, x, y, kw, trainable, rng, h=1e-6):
    pooler = REGISTRY.get(name)
    gy = rng.standard_normal(y.shape)
    _, grads = api.pool_grad(name, x, gy, return_param_grads=True, **kw)
    for pname in trainable:
        p = next(q for q in pooler.parameters if q.name == pname)
        base = kw.get(pname, p.default)
        if pname not in grads:
            return False, f"no gradient for {pname}"
        value = np.array(base, dtype=np.float64)
        if p.size == "window" and value.ndim == 0:
            taps = int(np.size(grads[pname]))
            value = np.full(taps, float(value)) + rng.uniform(-0.5, 0.5, taps)
            _, grads = api.pool_grad(name, x, gy, return_param_grads=True,
                                     **{**kw, pname: value})
        analytic = np.asarray(grads[pname], dtype=np.float64)
        for i in range(min(value.size, 4)):
            e = np.zeros(value.size)
            e[i] = h
            up = value + e.reshape(value.shape)
            down = value - e.reshape(value.shape)
            up = float(up) if up.ndim == 0 else up
            down = float(down) if down.ndim == 0 else down
            fd = (_loss(name, x, gy, {**kw, pname: up}) -
                  _loss(name, x, gy, {**kw, pname: down})) / (2 * h)
            ok, _ = _close(analytic.ravel()[i], fd, 1e-5, 1e-7)
            if not ok:
                return False, (f"{pname}[{i}]: analytic {analytic.ravel()[i]:.8g}, "
                               f"numeric {fd:.8g}")
    return True, ""


_CUDA_SHAPES = {1: (2, 3, 9), 2: (2, 3, 6, 7), 3: (1, 2, 4, 5, 6)}


def check_cuda(name: str, *, ranks: Iterable[int] = (1, 2, 3), seed: int = 0,
               all_examples_at: Iterable[int] = (2,)) -> ConformanceReport:
    """Run a registered pooler on the CUDA target and compare with the CPU target.

    For each geometry example (all of them at the ranks in ``all_examples_at``, the first
    at the others: small arrays, as the simulator is slow), both layouts, default and
    per-channel parameters: forward values, indices, ``pool_grad`` and parameter gradients
    must equal the CPU's to rounding (the same float64 operations in the same order).

    Needs numba-cuda, and a GPU or ``NUMBA_ENABLE_CUDASIM=1``.
    """
    from numba import cuda

    pooler = REGISTRY.get(name)
    report = ConformanceReport(name)
    rng = np.random.default_rng(seed)
    seeded = {} if pooler.deterministic else {"seed": seed}
    trainable = any(p.trainable for p in pooler.parameters)
    full = set(all_examples_at)

    def record(label: str, fn: Callable[[], tuple[bool, str]]) -> None:
        try:
            ok, detail = fn()
        except Exception as exc:  # noqa: BLE001 - a check that raises has failed
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        report.results.append(CheckResult(label, ok, detail))

    for rank in ranks:
        cases = examples(name, rank)
        for opts in cases if rank in full else cases[:1]:
            for layout in ("channels_first", "channels_last"):
                x = _data(_CUDA_SHAPES[rank], rng)
                if layout == "channels_last":
                    x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
                channels = x.shape[1] if layout == "channels_first" else x.shape[-1]
                for params in _param_examples(name, channels, rng):
                    kw = {**opts, **params, **seeded, "layout": layout}
                    label = (f"cuda rank {rank} {layout} {_fmt(opts)}"
                             f"{' ' + _fmt(params) if params else ''}")
                    dx = cuda.to_device(x)
                    y = api.pool(name, x, **kw)
                    def forward(dx=dx, kw=kw, y=y):
                        return _close(api.pool(name, dx, **kw).copy_to_host(), y, 1e-12)
                    record(f"{label}: forward", forward)
                    if "indices" in pooler.capabilities:
                        def indices(dx=dx, x=x, kw=kw):
                            _, want = api.pool(name, x, return_indices=True, **kw)
                            _, got = api.pool(name, dx, return_indices=True, **kw)
                            return _close(got.copy_to_host(), want, 0.0, 0.0)
                        record(f"{label}: indices", indices)
                    gy = rng.standard_normal(y.shape)

                    def grads(dx=dx, x=x, kw=kw, gy=gy):
                        want = api.pool_grad(name, x, gy, return_param_grads=trainable, **kw)
                        got = api.pool_grad(name, dx, cuda.to_device(gy),
                                            return_param_grads=trainable, **kw)
                        if trainable:
                            (want, wp), (got, gp) = want, got
                            if wp.keys() != gp.keys():
                                return False, f"parameter grads {sorted(gp)} != {sorted(wp)}"
                            for k in wp:
                                ok, detail = _close(np.asarray(gp[k]), np.asarray(wp[k]), 1e-9)
                                if not ok:
                                    return False, f"{k}: {detail}"
                        return _close(got.copy_to_host(), want, 1e-9)
                    record(f"{label}: gradients", grads)
    return report


def assert_conforms(name: str, reference: Callable[..., np.ndarray] | None = None,
                    **kwargs: Any) -> None:
    """Run :func:`check` and raise ``AssertionError`` listing every failed check."""
    report = check(name, reference, **kwargs)
    if not report.ok:
        raise AssertionError(f"pooler {name!r} fails conformance:\n" + "\n".join(
            f"  {r.name}: {r.detail}" for r in report.failures()))

