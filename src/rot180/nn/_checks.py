"""Input checks shared by every layer: one place, run first in ``__init__``, ``forward`` and
``backward``.

Messages say what was expected, what was received and how to fix it. ``TypeError`` is for a
wrong kind of thing (not an array, a wrong dtype), ``ValueError`` for a wrong value (shape,
range); calling ``backward`` before ``forward`` is a ``RuntimeError`` (a wrong order of calls).

Every check here is O(1): it reads shapes, dtypes and Python scalars, never the array's values.
Scanning activations for NaN (``np.isnan(x).any()``) would cost a full pass over every
activation of every layer on every step, and a NaN there is a symptom of training diverging,
which the trainer detects once, on the loss. Values are scanned only where a NaN is a user
error that nothing downstream would reveal: loss targets, hyperparameters, loaded state.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Real

import numpy as np

__all__ = ["check_input", "check_grad", "cached", "float_dtype", "positive_int", "real",
           "flag"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def check_input(x: object, layer: str, *, ndim: Collection[int] | None = None,
                expected: str = "a float32 or float64 array", channels: int | None = None,
                channel_axis: int = 1, dtype: np.dtype | None = None) -> np.ndarray:
    """Check a layer's forward input and return it unchanged.

    Args:
        x: the input.
        layer: the layer's name for messages, e.g. ``"Conv2d"``.
        ndim: accepted numbers of dimensions (``None``: any, at least 1 when ``channels``
            is given).
        expected: the accepted shapes in words, e.g. ``"input of shape (N, 3, H, W)"``.
        channels: the size ``x`` must have on ``channel_axis`` (``None``: not checked).
        channel_axis: where the channels are (negative counts from the end).
        dtype: the layer's parameter dtype ``x`` must match (``None``: float32 or float64).
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{layer}: expected a numpy array, got {type(x).__name__}. Convert it with "
            f"np.asarray(x, dtype=np.{dtype or 'float32'})."
        )
    if x.dtype not in _FLOATS:
        raise TypeError(
            f"{layer}: expected an input of dtype float32 or float64, got {x.dtype}. Cast it "
            f"with x.astype(np.{dtype or 'float32'})."
        )
    if ndim is not None and x.ndim not in ndim:
        raise ValueError(f"{layer}: expected {expected}, got {x.ndim}-D shape {x.shape}.")
    if channels is not None:
        if x.ndim < max(1, -channel_axis if channel_axis < 0 else channel_axis + 1):
            raise ValueError(f"{layer}: expected {expected}, got {x.ndim}-D shape {x.shape}.")
        got = x.shape[channel_axis]
        if got != channels:
            raise ValueError(
                f"{layer}: expected {expected}, got shape {x.shape}; the channel axis "
                f"({channel_axis}) holds {got}, expected {channels} channels. Check the layout "
                "(channels first, NCHW) or the layer's channel count."
            )
    if dtype is not None and x.dtype != dtype:
        raise TypeError(
            f"{layer}: input dtype {x.dtype} does not match the layer's {dtype}. Cast the input "
            f"with x.astype(np.{dtype}), or the model with model.astype(np.{x.dtype}); rot180 "
            "never casts silently."
        )
    return x


def check_grad(dy: object, layer: str, shape: tuple[int, ...] | None,
               dtype: np.dtype) -> np.ndarray:
    """Check ``dy`` against the last forward output's ``shape`` and ``dtype``; return it.

    ``shape=None`` skips the shape test, for layers whose functional backward already checks
    ``dy`` against the cached input completely (convolution, linear) with its own message.
    """
    if not isinstance(dy, np.ndarray):
        raise TypeError(
            f"{layer}.backward: dy must be a numpy array, got {type(dy).__name__}. Pass the "
            "gradient of this layer's forward output."
        )
    if dy.dtype != dtype:
        raise TypeError(
            f"{layer}.backward: dy has dtype {dy.dtype} but the forward output had {dtype}. "
            f"Cast it with dy.astype(np.{dtype}); rot180 never casts silently."
        )
    if shape is not None and dy.shape != shape:
        raise ValueError(
            f"{layer}.backward: dy has shape {dy.shape} but the forward output had shape "
            f"{shape}. dy must be the gradient of this layer's last forward output."
        )
    return dy


def cached(cache: object, layer: str) -> object:
    """``cache`` itself, or the error for ``backward`` called before ``forward``."""
    if cache is None:
        raise RuntimeError(f"{layer}.backward called before forward: run forward(x) first.")
    return cache


def float_dtype(dtype: object, layer: str) -> np.dtype:
    """``dtype`` as ``np.dtype``: float32 or float64 only."""
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        dt = None
    if dt is None or dt not in _FLOATS:  # (np.dtype == None compares as float64)
        raise TypeError(
            f"{layer}: dtype must be float32 or float64, got {dtype!r}. Pass dtype=np.float32 "
            "or np.float64."
        )
    return dt  # type: ignore[return-value]


def positive_int(value: object, name: str, layer: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{layer}: {name} must be an int, got {type(value).__name__} {value!r}.")
    if value < 1:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {value}.")
    return int(value)


def real(value: object, name: str, layer: str, *, low: float | None = None,
         high: float | None = None, low_open: bool = False) -> float:
    """A finite real hyperparameter in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"{layer}: {name} must be a real number, got {type(value).__name__} {value!r}."
        )
    out = float(value)
    below = low is not None and (out <= low if low_open else out < low)
    if not math.isfinite(out) or below or (high is not None and out > high):
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"<= {high}"
        want = "".join(f" and {s}" for s in (lo, hi) if s)
        raise ValueError(f"{layer}: {name} must be finite{want}, got {value!r}.")
    return out


def flag(value: object, name: str, layer: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(
            f"{layer}: {name} must be True or False, got {type(value).__name__} {value!r}."
        )
    return bool(value)
