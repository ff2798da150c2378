"""Checking and normalising user arguments (plain Python, before any kernel runs).

Every function names the argument it checks in its error messages: ``TypeError`` for a value of
the wrong type, ``ValueError`` for a value of the right type that is out of range.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

__all__ = [
    "LAYOUTS",
    "check_layout",
    "check_array",
    "per_axis_ints",
    "per_axis_padding",
    "check_bool",
    "check_output_size",
    "check_indices",
    "indices_out_of_range",
    "typed_key",
]

LAYOUTS = ("channels_first", "channels_last")


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def check_layout(layout: object) -> str:
    if not isinstance(layout, str):
        raise TypeError(f"layout must be a string, got {type(layout).__name__}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'channels_first' or 'channels_last', got {layout!r}")
    return layout


def check_array(x: object, name: str = "x") -> np.ndarray:
    """``x`` as a NumPy array of a numeric dtype with 1 to 3 spatial axes (not copied)."""
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # noqa: BLE001 - report any conversion failure as a type error
            raise TypeError(f"{name} must be an array, got {type(x).__name__}") from exc
    if arr.dtype.kind not in "biuf":
        kind = "complex" if arr.dtype.kind == "c" else "non-numeric"
        raise TypeError(f"{name} must have a real numeric dtype, got {kind} dtype {arr.dtype}")
    if arr.ndim not in (3, 4, 5):
        raise ValueError(
            f"{name} must have 3, 4 or 5 dimensions (batch, channels and 1 to 3 spatial axes), "
            f"got {arr.ndim} (shape {arr.shape})"
        )
    return arr


def per_axis_ints(value: object, rank: int, name: str, minimum: int = 1) -> tuple[int, ...]:
    """An int or one int per spatial axis, each >= ``minimum``."""
    if _is_int(value):
        values: tuple = (value,) * rank
    elif isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str):
        values = tuple(value)
        if len(values) != rank:
            raise ValueError(
                f"{name} must be an int or a sequence of {rank} ints (one per spatial axis), "
                f"got {len(values)} values"
            )
        for v in values:
            if not _is_int(v):
                raise TypeError(f"{name} must contain ints, got {type(v).__name__} {v!r}")
    else:
        raise TypeError(f"{name} must be an int or a sequence of ints, got {type(value).__name__}"
                        f" {value!r}")
    out = tuple(int(v) for v in values)
    for v in out:
        if v < minimum:
            bound = "positive" if minimum == 1 else f">= {minimum}"
            raise ValueError(f"{name} must be {bound}, got {v}")
    return out


def per_axis_padding(value: object, rank: int) -> tuple[tuple[int, int], ...] | str:
    """Padding as one (before, after) pair per axis, or the string ``"same"``."""
    if isinstance(value, str):
        mode = value.lower()
        if mode == "valid":
            return ((0, 0),) * rank
        if mode == "same":
            return "same"
        raise ValueError(f"padding must be an int, a sequence, 'valid' or 'same', got {value!r}")
    if _is_int(value):
        p = int(value)
        if p < 0:
            raise ValueError(f"padding must be non-negative, got {p}")
        return ((p, p),) * rank
    if not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"padding must be an int, a sequence or a string, got "
                        f"{type(value).__name__}")
    items = tuple(value)
    if len(items) != rank:
        raise ValueError(f"padding must have {rank} entries (one per spatial axis), "
                         f"got {len(items)}")
    pairs = []
    for item in items:
        if _is_int(item):
            pair = (int(item), int(item))
        elif isinstance(item, (Sequence, np.ndarray)) and not isinstance(item, str):
            pair = tuple(item)
            if len(pair) != 2 or not all(_is_int(v) for v in pair):
                raise ValueError(f"padding entries must be ints or (before, after) pairs of "
                                 f"ints, got {item!r}")
            pair = (int(pair[0]), int(pair[1]))
        else:
            raise TypeError(f"padding entries must be ints or (before, after) pairs, got "
                            f"{type(item).__name__}")
        if min(pair) < 0:
            raise ValueError(f"padding must be non-negative, got {item!r}")
        pairs.append(pair)
    return tuple(pairs)


def check_bool(value: object, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_output_size(value: object, spatial: Sequence[int], name: str = "output_size"
                      ) -> tuple[int, ...]:
    """An int or one int (or None: keep the input size) per spatial axis."""
    rank = len(spatial)
    if value is None:
        raise ValueError(f"{name} is required for adaptive pooling")
    if _is_int(value):
        values: tuple = (value,) * rank
    elif isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str):
        values = tuple(value)
        if len(values) != rank:
            raise ValueError(f"{name} must be an int or a sequence of {rank} values, got "
                             f"{len(values)}")
    else:
        raise TypeError(f"{name} must be an int or a sequence of ints, got "
                        f"{type(value).__name__}")
    out = []
    for v, length in zip(values, spatial):
        if v is None:
            out.append(int(length))
        elif not _is_int(v):
            raise TypeError(f"{name} must contain ints or None, got {type(v).__name__} {v!r}")
        elif v < 1:
            raise ValueError(f"{name} must be positive, got {v}")
        else:
            out.append(int(v))
    return tuple(out)


def check_indices(dtype: np.dtype, shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    """Check the dtype and shape of the ``indices`` given to ``pool_grad`` (host or device)."""
    if np.dtype(dtype).kind not in "iu":
        raise TypeError("indices must be an integer array (what pool(..., "
                        f"return_indices=True) returns), got dtype {np.dtype(dtype)}")
    if tuple(shape) != tuple(expected):
        raise ValueError(f"indices must have shape {tuple(expected)} (the shape pool() "
                         f"returns), got {tuple(shape)}")


def indices_out_of_range(bad: int, plane: int) -> ValueError:
    """The error for ``bad`` indices outside ``[0, plane)``."""
    return ValueError(f"indices must be flat positions in each (n, c) plane of x, in "
                      f"[0, {plane}); {bad} of them are not")


def typed_key(value: object) -> object:
    """A key of an argument's value that records the type of every element beside it, for
    keeping results checked once by their arguments: ``True`` is not taken for ``1``, nor
    ``2.0`` for ``2`` (equal, with equal hashes), which the checks might treat otherwise.
    Lists become tuples; the key is unhashable where the value is."""
    if isinstance(value, (tuple, list)):
        return (type(value), tuple(typed_key(v) for v in value))
    return (type(value), value)
