"""Argument checks shared by the optimizers and the learning-rate schedulers: one place.

Messages start with PyTorch's own wording where PyTorch has one (``Invalid learning rate: -1.0``)
and go on with what was expected and how to fix it. ``TypeError`` is for a wrong kind of thing,
``ValueError`` for a wrong value.
"""

from __future__ import annotations

import math
from numbers import Integral, Real


def real(value: object, name: str) -> float:
    """``value`` as a finite Python float; bools, strings and arrays are refused."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}.")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}.")
    return out


def non_negative(value: object, name: str, label: str) -> float:
    """A finite float ``>= 0``; ``label`` is PyTorch's wording, e.g. ``learning rate``."""
    out = real(value, name)
    if out < 0.0:
        raise ValueError(f"Invalid {label}: {out} (expected {name} >= 0).")
    return out


def flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}.")
    return value


def betas(value: object) -> tuple[float, float]:
    """Adam's ``(beta1, beta2)``, each in ``[0, 1)``."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {value!r}.")
    out = (real(value[0], "betas[0]"), real(value[1], "betas[1]"))
    for i, b in enumerate(out):
        if not 0.0 <= b < 1.0:
            raise ValueError(
                f"Invalid beta parameter at index {i}: {b} (expected 0 <= beta < 1, "
                "e.g. betas=(0.9, 0.999))."
            )
    return out


def positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}.")
    return int(value)


def non_negative_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}.")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}.")
    return int(value)
