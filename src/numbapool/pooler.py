"""A pooler: a window rule times a reduction, with a name and declared parameters."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .reduction import Reduction, Sampling, Selection
from .windows import WindowRule

__all__ = ["Param", "Pooler", "all_equal", "all_in", "at_least"]


@dataclass(frozen=True)
class Param:
    """A parameter of a pooler, passed by keyword (``p=3`` for ``lp``).

    Parameters
    ----------
    name : str
        Keyword name.
    default : object
        Value used when the caller omits it; None makes a float parameter required.
    doc : str
        One line for ``numbapool info``.
    kind : {"float", "int", "bool", "array", "any"}
        ``"float"`` parameters reach the kernels (``prm``, in declared order); the others are
        options for the window rule or :attr:`Pooler.choose` (e.g. ``training``, ``samples``).
    trainable : bool
        Whether ``pool_grad(..., return_param_grads=True)`` returns its gradient.
    size : int or "window"
        Number of values of a float parameter: 1, or one per kernel tap (``"window"``).
    per_channel : bool
        Whether a float parameter may also be given per channel (leading axis of length C).
    check : callable, optional
        ``check(value) -> str | None``: a reason a float value is invalid, or None.
    """

    name: str
    default: object = None
    doc: str = ""
    kind: str = "float"
    trainable: bool = False
    size: int | str = 1
    per_channel: bool = False
    check: Callable[[float], str | None] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("float", "int", "bool", "array", "any"):
            raise ValueError(f"Param {self.name!r}: unknown kind {self.kind!r}")
        if self.trainable and self.kind != "float":
            raise ValueError(f"Param {self.name!r}: only float parameters can be trainable")

    def validate_option(self, value: object, pooler: str) -> object:
        """Check a non-float parameter."""
        if self.kind == "bool" and not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{pooler}: parameter {self.name} must be True or False, got "
                            f"{type(value).__name__}")
        if self.kind == "int" and value is not None and (
                not isinstance(value, numbers.Integral) or isinstance(value, bool)):
            raise TypeError(f"{pooler}: parameter {self.name} must be an int, got "
                            f"{type(value).__name__}")
        return value

    def values(self, value: object, pooler: str, channels: int, taps: int) -> np.ndarray:
        """A float parameter as a float64 array ``(1 or channels, width)``."""
        width = taps if self.size == "window" else int(self.size)
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
            arr = np.full((1, width), float(value))
        else:
            try:  # (no conversion yet: a string such as "3" is not a number)
                raw = None if isinstance(value, (str, bytes)) else np.asarray(value)
            except (TypeError, ValueError):
                raw = None
            if raw is None or raw.dtype.kind not in "iuf":
                raise TypeError(f"{pooler}: parameter {self.name} must be a real number or "
                                f"an array of them, got {type(value).__name__}"
                                + (f" of {raw.dtype}" if raw is not None else ""))
            arr = raw.astype(np.float64)
            shared = (width,) if width > 1 else ()
            per_channel = (channels, width) if width > 1 else (channels,)
            if arr.shape == shared:
                arr = arr.reshape(1, width)
            elif self.per_channel and arr.shape == per_channel:
                arr = arr.reshape(channels, width)
            else:
                accepted = f"{shared}" + (f" or {per_channel}" if self.per_channel else "")
                raise ValueError(f"{pooler}: parameter {self.name} must have shape "
                                 f"{accepted}, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{pooler}: parameter {self.name} must be finite")
        if self.check is not None:
            for v in np.unique(arr):
                reason = self.check(float(v))
                if reason:
                    raise ValueError(f"{pooler}: parameter {self.name} {reason}, got {v}")
        return arr


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
    choose : callable, optional
        ``choose(params) -> Reduction``: picks the reduction from the call's parameters (e.g.
        sampling when ``training`` else the expectation; a faster reduction where a power
        takes one value everywhere, see :func:`all_equal`).  Default: always ``reduction``.
    """

    name: str
    window: WindowRule
    reduction: Reduction
    summary: str = ""
    parameters: tuple[Param, ...] = ()
    deterministic: bool = True
    choose: Callable[[Mapping[str, object]], Reduction] | None = None
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"pooler name must be an identifier-like string, got {self.name!r}")
        if not isinstance(self.window, WindowRule):
            raise TypeError(f"pooler {self.name!r}: window must be a WindowRule")
        if not isinstance(self.reduction, Reduction):
            raise TypeError(f"pooler {self.name!r}: reduction must be a Reduction")
        data = self.window.data_options
        if not isinstance(data, (set, frozenset)) or not set(data) <= set(self.window.options):
            raise TypeError(f"pooler {self.name!r}: the window rule's data_options must be a "
                            "set of its option names")
        clash = {p.name for p in self.parameters} & (set(self.options()) | {"target"})
        if clash:
            raise ValueError(f"pooler {self.name!r}: parameters {sorted(clash)} shadow options")

    def options(self) -> dict[str, object]:
        """The options this pooler understands, with their defaults."""
        opts = dict(self.window.options)
        opts["layout"] = "channels_first"
        if isinstance(self.reduction, (Selection, Sampling)):
            opts["return_indices"] = False
        if getattr(self.reduction, "uses_divisor", False):
            opts["count_include_pad"] = None
            opts["divisor_override"] = None
        if not self.deterministic:
            opts["seed"] = None
        return opts

    def resolve(self, params: Mapping[str, object]) -> Reduction:
        """The reduction used for a call with these parameters."""
        return self.reduction if self.choose is None else self.choose(params)

    @property
    def capabilities(self) -> frozenset[str]:
        """Option names and features supported (``"indices"``, ``"grad"``, ...)."""
        caps = set(self.options())
        caps.add("grad")
        if isinstance(self.reduction, (Selection, Sampling)):
            caps.add("indices")
        if any(p.trainable for p in self.parameters):
            caps.add("param_grads")
        if not self.deterministic:
            caps.add("seed")
        return frozenset(caps)

    def describe(self) -> str:
        """A few lines for ``numbapool info``."""
        lines = [f"{self.name}: {self.summary}",
                 f"  window: {self.window.name}, reduction: {self.reduction.name} "
                 f"({self.reduction.kind})",
                 f"  options: {', '.join(sorted(self.options()))}"]
        for p in self.parameters:
            tr = ", trainable" if p.trainable else ""
            pc = ", per channel" if p.per_channel else ""
            lines.append(f"  param {p.name} ({p.kind}, default {p.default}{tr}{pc}): {p.doc}")
        lines.append(f"  deterministic: {self.deterministic}; source: {self.source or '?'}")
        return "\n".join(lines)


def _numbers(value: object) -> np.ndarray | None:
    """A parameter's value as float64 numbers, or None if it is not numbers or is empty (what
    :func:`all_equal`, :func:`at_least` and :func:`all_in` answer False for)."""
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return v if v.size else None


def all_equal(value: object, target: float) -> bool:
    """Whether a parameter's ``value`` (a number or one per channel) is ``target``
    everywhere: for a :attr:`Pooler.choose` that picks a specialised reduction (gem's cube
    root for ``p`` 3, lp's square root for ``p`` 2).  ``choose`` runs before the parameters
    are checked, so anything that is not numbers, or is empty, gives False: the general
    reduction, whose checks then say what is wrong."""
    v = _numbers(value)
    return v is not None and bool(np.all(v == target))


def at_least(value: object, bound: float) -> bool:
    """Whether a parameter's ``value`` (a number or one per channel) is at least ``bound``
    everywhere: for a :attr:`Pooler.choose` whose faster reduction holds above a bound (gem's
    cube root for ``eps`` of 7.6e-7 or more).  Like :func:`all_equal`, anything that is not
    numbers, or is empty (or NaN), gives False."""
    v = _numbers(value)
    return v is not None and bool(np.all(v >= bound))


def all_in(value: object, targets: tuple[float, ...]) -> bool:
    """Whether every value of a parameter (a number or one per channel) is one of
    ``targets``: for a :attr:`Pooler.choose` that keeps :func:`numbapool.vmath.power`'s
    products for exponents 1 to 4 and takes ``vpow`` itself otherwise.  Like
    :func:`all_equal`, anything that is not numbers, or is empty, gives False."""
    v = _numbers(value)
    return v is not None and bool(np.all(np.isin(v, np.asarray(targets, dtype=np.float64))))
