"""The array-namespace seam: every array argument of rot180 is checked here, and only here.

:func:`as_array` is the one door through which an array enters the library (the functional
entry points, a layer's input and ``dy``, ``Parameter``, an optimizer's gradients and loaded
state, the data loader's images and labels). :func:`array_namespace` answers which array
library computes with it, from one table, :data:`NAMESPACES`. Today that table holds NumPy
alone, so anything else (a CuPy or torch array, a memoryview, an object with ``__array__``) is
refused with a ``TypeError`` that says so and how to convert. A later backend (CuPy on a GPU)
adds its array type and module to the table here and a realisation to the engine's table;
no check elsewhere names ``np.ndarray``.

NumPy subclasses pass unchanged, as they always have (``np.matrix``, ``np.ma.MaskedArray``):
the seam checks the type, it converts nothing, and what a subclass means is the caller's
business (``Parameter`` stores ``np.asarray`` of it, a plain ndarray).
"""

from __future__ import annotations

from collections.abc import Collection
from types import ModuleType

import numpy as np

__all__ = ["FLOAT_DTYPES", "NAMESPACES", "all_finite", "array_namespace", "as_array", "cached",
           "check_grad", "check_input", "float_array", "same_dtype", "type_name"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: Accepted array types, each with the module that computes with it (checked in order). A
#: backend plugs in by adding its row, e.g. ``(cupy.ndarray, cupy)``.
NAMESPACES: list[tuple[type, ModuleType]] = [(np.ndarray, np)]

# Signs that an object is some other library's array (or a buffer) rather than a mistake.
_FOREIGN_HINTS = ("__array__", "__array_interface__", "__array_namespace__", "__dlpack__",
                  "__cuda_array_interface__")


def array_namespace(a: object) -> ModuleType | None:
    """The array module computing with ``a`` (``numpy`` today), or ``None`` if none does."""
    for kind, namespace in NAMESPACES:
        if isinstance(a, kind):
            return namespace
    return None


def type_name(a: object) -> str:
    """``list``, ``ndarray`` for Python's and NumPy's own types; ``torch.Tensor``,
    ``cupy.ndarray`` for another library's (so that a CuPy array is not read as NumPy's)."""
    t = type(a)
    module = t.__module__.split(".")[0]
    return t.__name__ if module in ("builtins", "numpy") else f"{module}.{t.__name__}"


def _foreign(a: object) -> bool:
    """Another library's array or a buffer (a NumPy scalar has ``__array__`` too, but is ours)."""
    if type(a).__module__.split(".")[0] == "numpy":
        return False
    return isinstance(a, memoryview | bytearray) or any(hasattr(a, h) for h in _FOREIGN_HINTS)


def _refuse(a: object, name: str, at: str, convert: str) -> TypeError:
    if _foreign(a):
        return TypeError(
            f"{at}{name} must be a numpy array, got {type_name(a)}: rot180 computes with NumPy "
            f"and other array libraries are not supported yet. Convert it with {convert} (from "
            "CuPy with .get(), from torch with .detach().cpu().numpy())."
        )
    got = (f"a numpy scalar (numpy.{type(a).__name__})" if isinstance(a, np.generic)
           else type_name(a))
    return TypeError(f"{at}{name} must be a numpy array, got {got}. "
                     f"Convert it with {convert}.")


def as_array(a: object, name: str, where: str | None = None, *,
             dtypes: Collection[np.dtype] | None = None, ndim: Collection[int] | None = None,
             sequences: bool = False, convert: str | None = None, cast: str | None = None
             ) -> np.ndarray:
    """Check that ``a`` is an array rot180 can compute with; return it (not converted).

    Args:
        a: the argument.
        name: its name in messages, e.g. ``"x"``.
        where: who refuses it, e.g. ``"Conv2d"`` (messages start ``"Conv2d: "``), or ``None``.
        dtypes: the accepted dtypes (``None``: any).
        ndim: the accepted numbers of dimensions (``None``: any).
        sequences: also take (nested) lists, tuples and Python or NumPy scalars, converted with
            ``np.asarray`` (the functional API's convenience; layers and optimizers refuse
            them, as a list there is a mistake).
        convert: how to convert a non-array, for the message (default
            ``np.asarray(name, dtype=np.float32)``).
        cast: how to fix a wrong dtype, for the message (default ``name.astype(np.float32)``).
    """
    at = f"{where}: " if where else ""
    if array_namespace(a) is None:
        # np.isscalar counts str, bytes and memoryview as scalars too: none is a number
        if sequences and (isinstance(a, list | tuple) or (
                np.isscalar(a) and not isinstance(a, str | bytes | memoryview))):
            try:
                a = np.asarray(a)
            except ValueError as exc:  # ragged nesting
                raise ValueError(
                    f"{at}{name} must be a rectangular array, got a ragged {type(a).__name__} "
                    f"({exc}). Pass a numpy array."
                ) from None
        else:
            raise _refuse(a, name, at, convert or f"np.asarray({name}, dtype=np.float32)")
    arr: np.ndarray = a  # type: ignore[assignment]
    if dtypes is not None and arr.dtype not in dtypes:
        want = " or ".join(str(d) for d in dtypes)
        raise TypeError(
            f"{at}{name} must have dtype {want}, got {arr.dtype}. Convert it with "
            f"{cast or f'{name}.astype(np.float32)'}" + (" (or np.float64)." if cast is None and
                                                         set(dtypes) == set(FLOAT_DTYPES)
                                                         else ".")
        )
    if ndim is not None and arr.ndim not in ndim:
        want = " or ".join(f"{n}-D" for n in sorted(ndim))
        raise ValueError(f"{at}{name} must be {want}, got {arr.ndim}-D shape {arr.shape}.")
    return arr


# -- the array checks built on the seam -------------------------------------------------------

def float_array(a: object, name: str) -> np.ndarray:
    """The functional API's array argument: float32 or float64, never converted between them
    (lists, tuples and scalars are taken through ``np.asarray``)."""
    return as_array(a, name, dtypes=FLOAT_DTYPES, sequences=True)


def same_dtype(**arrays: np.ndarray | None) -> np.dtype:
    """Check that all given arrays share one dtype (no silent float32 -> float64 upcast)."""
    present = {k: v for k, v in arrays.items() if v is not None}
    dtypes = {k: v.dtype for k, v in present.items()}
    if len(set(dtypes.values())) > 1:
        got = ", ".join(f"{k}: {v}" for k, v in dtypes.items())
        raise TypeError(
            f"All arrays must share one dtype, got {got}. Cast them to one dtype, e.g. "
            "w.astype(x.dtype); rot180 never upcasts silently."
        )
    return next(iter(dtypes.values()))


def all_finite(a: np.ndarray, name: str, op: str) -> None:
    """Refuse NaN or infinite values (a full scan: for small arrays such as loss targets)."""
    if not np.isfinite(a).all():
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"{op}: {name} must be finite, got {bad} NaN or infinite value(s) in "
                         f"shape {a.shape}. Check the data (e.g. with np.isfinite) before the "
                         "loss.")


def check_input(x: object, layer: str, *, ndim: Collection[int] | None = None,
                expected: str = "a float32 or float64 array", channels: int | None = None,
                channel_axis: int = 1, dtype: np.dtype | None = None) -> np.ndarray:
    """Check a layer's forward input and return it unchanged.

    Every check is O(1): it reads shapes and dtypes, never values (a NaN in an activation is a
    symptom of training diverging, which the trainer detects once, on the loss).

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
    want = f"np.{dtype or 'float32'}"
    x = as_array(x, "x", layer, convert=f"np.asarray(x, dtype={want})")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{layer}: expected an input of dtype float32 or float64, got "
                        f"{x.dtype}. Cast it with x.astype({want}).")
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
    """Check a layer's ``dy`` against the last forward output's ``shape`` and ``dtype``.

    ``shape=None`` skips the shape test, for layers whose functional backward already checks
    ``dy`` against the cached input completely (convolution, linear) with its own message.
    """
    where = f"{layer}.backward"
    dy = as_array(dy, "dy", where, convert=f"np.asarray(dy, dtype=np.{dtype}), the gradient "
                  "of this layer's forward output")
    if dy.dtype != dtype:
        raise TypeError(
            f"{where}: dy has dtype {dy.dtype} but the forward output had {dtype}. "
            f"Cast it with dy.astype(np.{dtype}); rot180 never casts silently."
        )
    if shape is not None and dy.shape != shape:
        raise ValueError(
            f"{where}: dy has shape {dy.shape} but the forward output had shape "
            f"{shape}. dy must be the gradient of this layer's last forward output."
        )
    return dy


def cached(cache: object, layer: str) -> object:
    """``cache`` itself, or the error for ``backward`` called before ``forward``
    (a ``RuntimeError``: a wrong order of calls)."""
    if cache is None:
        raise RuntimeError(f"{layer}.backward called before forward: run forward(x) first.")
    return cache
