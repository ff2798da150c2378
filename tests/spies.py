"""Spies on the CPU planner, for tests that check which kernel a call runs."""

from __future__ import annotations

from collections.abc import Callable


def _record(monkeypatch, entry: Callable[[str, str], object]) -> list:
    """``entry(layout, variant)`` for each CPU kernel the calls ask for, recorded from now
    on; plans kept from earlier calls (``numbapool.api._KNOWN_CALLS``, ``_KNOWN_GRADS``) are
    forgotten first, so that every call plans again.  The planner counts 2 threads, as on the
    2-core test machines, wherever it runs (some routes depend on the thread count; results
    do not)."""
    from numbapool import api
    from numbapool.kernels import cpu

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    monkeypatch.setattr(api, "_KNOWN_GRADS", {})
    monkeypatch.setattr(cpu, "_threads", lambda: 2)
    asked: list = []
    real = cpu.get_kernel

    def spy(reduction, layout, variant):
        asked.append(entry(layout, variant))
        return real(reduction, layout, variant)

    monkeypatch.setattr(cpu, "get_kernel", spy)
    return asked


def kernels_asked(monkeypatch) -> list[str]:
    """The CPU kernel variants the calls ask for (see :func:`_record`)."""
    return _record(monkeypatch, lambda layout, variant: variant)


def kernel_layouts_asked(monkeypatch) -> list[tuple[str, str]]:
    """The ``(layout, variant)`` of each CPU kernel the calls ask for (see :func:`_record`)."""
    return _record(monkeypatch, lambda layout, variant: (layout, variant))


def plans_made(monkeypatch) -> list:
    """The plans ``cpu.plan_forward`` returns from now on (one it makes inside another
    before the outer one), with the plans kept from earlier calls forgotten first, so that
    every call plans again."""
    from numbapool import api
    from numbapool.kernels import cpu

    monkeypatch.setattr(api, "_KNOWN_CALLS", {})
    plans: list = []
    real = cpu.plan_forward

    def spy(*args, **kwargs):
        plans.append(real(*args, **kwargs))
        return plans[-1]

    monkeypatch.setattr(cpu, "plan_forward", spy)
    return plans
