"""Argument checks for the whole library: one place, run first at every public entry point.

Every package (functional, nn, optim, data, train, explain, the CLI) checks its arguments with
these functions and nothing else; this module imports nothing of rot180 but ``functional``'s
own shape arithmetic, so everything may import it. Each check takes the caller's name for its
message, ``where`` (``"Conv2d"``, ``"SGD"``, ``"conv_grad_input"``; ``None`` for none), so that
a message says who refused what: what was expected, what was received, and how to fix it.
``TypeError`` is for a wrong kind of thing (dtype, Python type), ``ValueError`` for a wrong
value (shape, size, range).

Array arguments go through the array-namespace seam, :func:`rot180.functional._array.as_array`
(re-exported here with the array checks built on it). The functional API also takes (nested)
lists, tuples and Python scalars, converted with ``np.asarray``, so Python floats become float64
and ints are refused like int arrays. Every check is O(1) (shapes, dtypes, scalars) except
:func:`all_finite`, which scans values and is used only on small arrays where a NaN is a user
error (loss targets), never on activations.

A layer resolves its convolution settings once, at construction, into a :class:`ConvSpec`
(:func:`weight_spec`), and checks each input against it (:func:`input_shape_for`,
:func:`dz_for`); the public functions check everything on every call (:func:`conv_args`,
:func:`grad_input_args`, :func:`grad_weight_args`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np

from . import shapes
from ._array import (
    FLOAT_DTYPES,
    NAMESPACES,
    all_finite,
    array_namespace,
    as_array,
    cached,
    check_grad,
    check_input,
    float_array,
    same_dtype,
    type_name,
)
from ._convspec import (
    ConvSpec,
    conv_args,
    dz_for,
    grad_input_args,
    grad_weight_args,
    input_shape_for,
    resolve_input_shape,
    weight_spec,
)

__all__ = [
    "FLOAT_DTYPES", "NAMESPACES", "ConvSpec", "all_finite", "array_namespace", "as_array",
    "axis_arg", "cached", "check_grad", "check_input", "conv_args", "dz_for", "flag",
    "float_array", "float_dtype", "generator", "grad_input_args", "grad_weight_args",
    "input_shape_for", "int_tuple", "integer", "nd_ints", "option", "positive_tuple", "real",
    "resolve_input_shape", "same_dtype", "shape_arg", "type_name", "weight_spec",
]


def _at(where: str | None) -> str:
    return f"{where}: " if where else ""


def real(value: object, name: str, where: str | None = None, *, low: float | None = None,
         high: float | None = None, low_open: bool = False, high_open: bool = False,
         invalid: str | None = None, finite: bool = True, fix: str | None = None) -> float:
    """A finite real number in ``[low, high]`` (``low_open``, ``high_open``: the bound itself
    excluded), as a Python float.

    Bools, strings and arrays are refused; NaN and infinities too (NaN passes every range test
    and spreads silently) unless ``finite=False`` (a fill value, where ``inf`` is meant).
    ``invalid`` words a finite value out of range as PyTorch does, ``Invalid learning rate:
    -1.0 (expected lr >= 0)``; ``fix`` ends the message of a value refused (e.g. an example).
    """
    at = _at(where)
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{at}{name} must be a real number, got {type_name(value)} {value!r}.")
    shown = repr(value)
    try:
        out = float(value)
    except OverflowError:  # an int beyond float's range (10**400): an infinity, refused below
        out = math.inf if value > 0 else -math.inf  # type: ignore[operator]
        shown = f"an int beyond float's range (about 10**{len(str(abs(value))) - 1})"
    outside = ((low is not None and (out <= low if low_open else out < low))
               or (high is not None and (out >= high if high_open else out > high)))
    if not finite and (low, high) == (None, None):
        return out
    if not math.isfinite(out) or outside:
        bounds = [b for b in (None if low is None else f"{'>' if low_open else '>='} {low}",
                              None if high is None else f"{'<' if high_open else '<='} {high}")
                  if b]
        end = f" {fix}" if fix else ""
        if invalid is not None and math.isfinite(out):
            raise ValueError(f"{at}Invalid {invalid}: {out} (expected {name} "
                             f"{' and '.join(bounds)}).{end}")
        raise ValueError(f"{at}{name} must be finite{''.join(f' and {b}' for b in bounds)}, "
                         f"got {shown}.{end}")
    return out


def integer(value: object, name: str, where: str | None = None, *, low: int | None = 1,
            fix: str | None = None, means: str | None = None, expected: str = "an int") -> int:
    """An int ``>= low`` (``low=None``: any); numpy integers are taken, bools refused.

    ``fix`` ends the message of a value out of range, ``means`` that of a wrong type (what the
    int stands for); ``expected`` is what the wrong type's message asks for (``"an int or
    None"``, ``"an int, the number of spatial dimensions (1, 2 or 3)"``)."""
    at = _at(where)
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{at}{name} must be {expected}, got {type_name(value)} {value!r}."
                        + (f" {means}" if means else ""))
    if low is not None and value < low:
        fix = fix or {1: "Pass a positive int.", 0: "Pass a non-negative int."}.get(low, "")
        raise ValueError(f"{at}{name} must be >= {low}, got {value}. {fix}".rstrip())
    return int(value)


def flag(value: object, name: str, where: str | None = None) -> bool:
    """``True`` or ``False`` (a numpy bool too); ``0``, ``1``, ``"yes"`` and ``None`` refused."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{_at(where)}{name} must be True or False, got {type_name(value)} "
                        f"{value!r}.")
    return bool(value)


def option(value: object, options: Sequence[str], name: str, where: str | None = None, *,
           hint: str | None = None) -> str:
    """One of the strings ``options``; ``hint`` says what they mean, in the message."""
    at, means = _at(where), f" ({hint})" if hint else ""
    if not isinstance(value, str):
        raise TypeError(f"{at}{name} must be a str, one of {tuple(options)}{means}, got "
                        f"{type_name(value)} {value!r}.")
    if value not in options:
        raise ValueError(f"{at}{name} must be one of {tuple(options)}{means}, got {value!r}.")
    return value


def float_dtype(dtype: object, where: str | None = None) -> np.dtype:
    """``dtype`` as ``np.dtype``: float32 or float64 only (``None`` too is refused: NumPy
    would read it as float64, silently)."""
    if dtype is None:
        raise TypeError(f"{_at(where)}dtype must be float32 or float64, got None. Pass "
                        "dtype=np.float32 or np.float64.")
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        dt = None
    if dt is None or dt not in FLOAT_DTYPES:  # (np.dtype == None compares as float64)
        got = repr(dtype) if dt is None else dt
        raise TypeError(f"{_at(where)}dtype must be float32 or float64, got {got}. Pass "
                        "dtype=np.float32 or np.float64.")
    return dt  # type: ignore[return-value]


def axis_arg(axis: object, ndim: int, where: str | None = None) -> int:
    """An axis index valid for an array of ``ndim`` dimensions (negative counts from the end)."""
    at = _at(where)
    if isinstance(axis, bool) or not isinstance(axis, Integral):
        raise TypeError(f"{at}axis must be an int, got {type_name(axis)} {axis!r}.")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{at}axis {axis} is out of range for a {ndim}-D array; pass an "
                         f"axis in [{-ndim}, {ndim - 1}].")
    return int(axis)


def int_tuple(value: object, name: str, where: str | None = None, *,
              fix: str = "Pass x.shape of the forward input.") -> tuple[int, ...]:
    """A sequence of ints (a shape argument), as a tuple of Python ints; any values."""
    at = _at(where)
    if isinstance(value, np.ndarray | str | bytes) or not isinstance(value, Sequence):
        raise TypeError(f"{at}{name} must be a tuple of ints, got {type_name(value)}. {fix}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, Integral):
            raise TypeError(f"{at}{name} must be a tuple of ints, got {type_name(v)} {v!r} in "
                            f"{tuple(value)!r}. {fix}")
    return tuple(int(v) for v in value)


def shape_arg(value: object, name: str, where: str | None = None, *, empty_batch: bool = False
              ) -> tuple[int, ...]:
    """A shape argument (e.g. ``input_shape``): a tuple of positive ints; with
    ``empty_batch`` the first axis may also be 0 (a batch of no samples, as PyTorch)."""
    shape = int_tuple(value, name, where)
    rest = shape[1:] if empty_batch and len(shape) > 1 and shape[0] == 0 else shape
    if any(v < 1 for v in rest):
        raise ValueError(f"{_at(where)}{name} must have no zero-size or negative axis, got "
                         f"{shape}. Pass x.shape of the forward input.")
    return shape


def nd_ints(value: object, nd: int, name: str, where: str | None = None) -> tuple[int, ...]:
    """An int or ``nd`` ints (a one-entry tuple repeats, as PyTorch), any sign."""
    return shapes.as_tuple(value, nd, name, where)  # type: ignore[arg-type]


def positive_tuple(value: object, nd: int, name: str, where: str | None = None
                   ) -> tuple[int, ...]:
    """An int or ``nd`` ints (a one-entry tuple repeats, as PyTorch), each ``>= 1``."""
    out = nd_ints(value, nd, name, where)
    if any(v < 1 for v in out):
        raise ValueError(
            f"{_at(where)}{name} must be >= 1 in every dimension, got {value!r}. Pass a "
            f"positive int or a tuple of {nd} positive ints."
        )
    return out


def generator(rng: object, where: str | None = None, *, seeds: bool = True
              ) -> np.random.Generator:
    """``rng`` itself if it is a ``numpy.random.Generator``; with ``seeds`` also an int seed
    ``>= 0`` or ``None`` (fresh entropy), turned into ``np.random.default_rng(rng)``."""
    if isinstance(rng, np.random.Generator):
        return rng
    if seeds and (rng is None or (isinstance(rng, Integral) and not isinstance(rng, bool))):
        return np.random.default_rng(None if rng is None else integer(rng, "rng seed", where,
                                                                      low=0))
    accepted = ", an int seed or None" if seeds else ""
    raise TypeError(f"{_at(where)}rng must be a numpy.random.Generator{accepted}, got "
                    f"{type_name(rng)} {rng!r}. Create one with np.random.default_rng(seed).")
