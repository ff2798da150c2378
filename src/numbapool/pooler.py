"""A pooler: a window rule times a reduction, with a name and declared parameters."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .reduction import Reduction, Selection, Streaming
from .windows import WindowRule

__all__ = ["Param", "Pooler", "REDUCTION_OPTIONS"]

# Options a reduction family reads, with their defaults (window options live on the rules).
REDUCTION_OPTIONS: dict[str, object] = {
    "count_include_pad": None,
    "divisor_override": None,
    "return_indices": False,
}


@dataclass(frozen=True)
class Param:
    """A numeric parameter of a pooler, passed by keyword (``p=3`` for ``lp``).

    Parameters
    ----------
    name : str
        Keyword name.
    default : float or None
        Value used when the caller omits it; None makes the parameter required.
    doc : str
        One line for ``numbapool info``.
    trainable : bool
        Whether a gradient with respect to it is meaningful.
    check : callable, optional
        ``check(value) -> str | None``: a reason the value is invalid, or None.
    """

    name: str
    default: float | None = None
    doc: str = ""
    trainable: bool = False
    check: Callable[[float], str | None] | None = None

    def validate(self, value: object, pooler: str) -> float:
        if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{pooler}: parameter {self.name} must be a real number, got "
                            f"{type(value).__name__}")
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"{pooler}: parameter {self.name} must be finite, got {v}")
        if self.check is not None:
            reason = self.check(v)
            if reason:
                raise ValueError(f"{pooler}: parameter {self.name} {reason}, got {v}")
        return v


@dataclass(frozen=True, eq=False)
class Pooler:
    """A registered pooling operator.

    Parameters
    ----------
    name : str
        The name users call it by.
    window : WindowRule
        Which input positions feed each output (sliding, adaptive, global, ...).
    reduction : Reduction
        What is computed over each window.
    summary : str
        One line describing it.
    parameters : tuple of Param
        Its numeric parameters, in the order kernels receive them (``prm[i]``).
    deterministic : bool
        False for poolers that draw random numbers (they then take a ``seed``).
    """

    name: str
    window: WindowRule
    reduction: Reduction
    summary: str = ""
    parameters: tuple[Param, ...] = ()
    deterministic: bool = True
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"pooler name must be an identifier-like string, got {self.name!r}")
        if not isinstance(self.window, WindowRule):
            raise TypeError(f"pooler {self.name!r}: window must be a WindowRule")
        if not isinstance(self.reduction, Reduction):
            raise TypeError(f"pooler {self.name!r}: reduction must be a Reduction")
        clash = {p.name for p in self.parameters} & set(self.options())
        if clash:
            raise ValueError(f"pooler {self.name!r}: parameters {sorted(clash)} shadow options")

    def options(self) -> dict[str, object]:
        """The options this pooler understands, with their defaults."""
        opts = dict(self.window.options)
        opts["layout"] = "channels_first"
        if isinstance(self.reduction, Selection):
            opts["return_indices"] = False
        if isinstance(self.reduction, Streaming) and self.reduction.uses_divisor:
            opts["count_include_pad"] = None
            opts["divisor_override"] = None
        return opts

    @property
    def capabilities(self) -> frozenset[str]:
        """Option names and features supported (``"indices"``, ``"grad"``, ...)."""
        caps = set(self.options())
        caps.add("grad")
        if isinstance(self.reduction, Selection):
            caps.add("indices")
        return frozenset(caps)

    def param_values(self, given: Mapping[str, object]) -> np.ndarray:
        """Validated parameter values as the float64 array kernels receive."""
        values = []
        for p in self.parameters:
            if p.name in given:
                values.append(p.validate(given[p.name], self.name))
            elif p.default is None:
                raise TypeError(f"{self.name}: missing required parameter {p.name!r}")
            else:
                values.append(float(p.default))
        return np.array(values, dtype=np.float64)

    def describe(self) -> str:
        """A few lines for ``numbapool info``."""
        lines = [f"{self.name}: {self.summary}",
                 f"  window: {self.window.name}, reduction: {self.reduction.name} "
                 f"({self.reduction.kind})",
                 f"  options: {', '.join(sorted(self.options()))}"]
        for p in self.parameters:
            tr = ", trainable" if p.trainable else ""
            lines.append(f"  param {p.name} (default {p.default}{tr}): {p.doc}")
        lines.append(f"  deterministic: {self.deterministic}; source: {self.source or '?'}")
        return "\n".join(lines)
