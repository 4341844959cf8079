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
from dataclasses import dataclass
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

__all__ = [
    "FLOAT_DTYPES", "NAMESPACES", "ConvSpec", "all_finite", "array_namespace", "as_array",
    "axis_arg", "cached", "check_grad", "check_input", "conv_args", "dz_for", "flag",
    "float_array", "float_dtype", "grad_input_args", "grad_weight_args", "input_shape_for",
    "int_tuple", "integer", "option", "positive_tuple", "real", "resolve_input_shape",
    "same_dtype", "shape_arg", "type_name", "weight_spec",
]


def _at(where: str | None) -> str:
    return f"{where}: " if where else ""


def real(value: object, name: str, where: str | None = None, *, low: float | None = None,
         high: float | None = None, low_open: bool = False, high_open: bool = False,
         invalid: str | None = None) -> float:
    """A finite real number in ``[low, high]`` (``low_open``, ``high_open``: the bound itself
    excluded), as a Python float.

    Bools, strings and arrays are refused; NaN and infinities too (NaN passes every range test
    and spreads silently). ``invalid`` words a finite value out of range as PyTorch does,
    ``Invalid learning rate: -1.0 (expected lr >= 0)``.
    """
    at = _at(where)
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{at}{name} must be a real number, got {type_name(value)} {value!r}.")
    out = float(value)
    outside = ((low is not None and (out <= low if low_open else out < low))
               or (high is not None and (out >= high if high_open else out > high)))
    if not math.isfinite(out) or outside:
        bounds = [b for b in (None if low is None else f"{'>' if low_open else '>='} {low}",
                              None if high is None else f"{'<' if high_open else '<='} {high}")
                  if b]
        if invalid is not None and math.isfinite(out):
            raise ValueError(f"{at}Invalid {invalid}: {out} (expected {name} "
                             f"{' and '.join(bounds)}).")
        raise ValueError(f"{at}{name} must be finite{''.join(f' and {b}' for b in bounds)}, "
                         f"got {value!r}.")
    return out


def integer(value: object, name: str, where: str | None = None, *, low: int | None = 1,
            fix: str | None = None) -> int:
    """An int ``>= low`` (``low=None``: any); numpy integers are taken, bools refused."""
    at = _at(where)
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{at}{name} must be an int, got {type_name(value)} {value!r}.")
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


def option(value: object, options: Sequence[str], name: str, where: str | None = None) -> str:
    """One of the strings ``options``."""
    at = _at(where)
    if not isinstance(value, str):
        raise TypeError(f"{at}{name} must be a str, one of {tuple(options)}, got "
                        f"{type_name(value)} {value!r}.")
    if value not in options:
        raise ValueError(f"{at}{name} must be one of {tuple(options)}, got {value!r}.")
    return value


def float_dtype(dtype: object, where: str | None = None) -> np.dtype:
    """``dtype`` as ``np.dtype``: float32 or float64 only."""
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        dt = None
    if dt is None or dt not in FLOAT_DTYPES:  # (np.dtype == None compares as float64)
        raise TypeError(
            f"{_at(where)}dtype must be float32 or float64, got {dtype!r}. Pass "
            "dtype=np.float32 or np.float64."
        )
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


def positive_tuple(value: object, nd: int, name: str, where: str | None = None
                   ) -> tuple[int, ...]:
    """An int or ``nd`` ints (a one-entry tuple repeats, as PyTorch), each ``>= 1``."""
    out = shapes.as_tuple(value, nd, name)  # type: ignore[arg-type]
    if any(v < 1 for v in out):
        raise ValueError(
            f"{_at(where)}{name} must be >= 1 in every dimension, got {value!r}. Pass a "
            f"positive int or a tuple of {nd} positive ints."
        )
    return out


@dataclass(frozen=True)
class ConvSpec:
    """A validated convolution configuration (all tuples have one entry per spatial dim)."""

    nd: int
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    groups: int
    kernel: tuple[int, ...]
    in_channels: int
    out_channels: int

    @property
    def span(self) -> tuple[int, ...]:
        """Extent of the dilated kernel minus one, ``d(k-1)``, per dimension."""
        return tuple(d * (k - 1) for k, d in zip(self.kernel, self.dilation, strict=True))

    def output_spatial(self, spatial_in: Sequence[int]) -> tuple[int, ...]:
        return shapes.conv_output_shape(spatial_in, self.kernel, self.stride, self.padding,
                                        self.dilation)


def weight_spec(w_shape: tuple[int, ...], *, stride: object, padding: object, dilation: object,
                groups: object, op: str) -> ConvSpec:
    """Validate the kernel shape and every keyword; resolve padding to (low, high) pairs."""
    if len(w_shape) not in (3, 4, 5):
        raise ValueError(
            f"{op}: weight must be 3-D, 4-D or 5-D (C_out, C_in/groups, *kernel) for 1, 2 or 3 "
            f"spatial dimensions, got {len(w_shape)}-D shape {w_shape}."
        )
    nd = len(w_shape) - 2
    if any(k < 1 for k in w_shape[2:]) or w_shape[1] < 1 or w_shape[0] < 1:
        raise ValueError(f"{op}: weight shape must have no zero-size axis, got {w_shape}.")
    g = integer(groups, "groups")
    if w_shape[0] % g:
        raise ValueError(
            f"{op}: groups={g} must divide the output channels, got C_out={w_shape[0]} "
            f"(weight shape {w_shape}). Choose groups dividing both C_in and C_out."
        )
    st = positive_tuple(stride, nd, "stride")
    dil = positive_tuple(dilation, nd, "dilation")
    kernel = tuple(w_shape[2:])
    pad = shapes.resolve_padding(padding, kernel, dil, st)  # type: ignore[arg-type]
    return ConvSpec(nd, st, pad, dil, g, kernel, w_shape[1] * g, w_shape[0])


def input_shape_for(spec: ConvSpec, x_shape: tuple[int, ...], name: str, op: str
                    ) -> tuple[int, ...]:
    """Check an input shape (batched or not) against the spec; return its spatial sizes."""
    nd = spec.nd
    if len(x_shape) not in (nd + 1, nd + 2):
        raise ValueError(
            f"{op}: expected {name} of {nd + 2} dimensions (N, C_in, *spatial) or {nd + 1} "
            f"(C_in, *spatial) to match a {nd}-D kernel, got {len(x_shape)}-D shape {x_shape}."
        )
    c = x_shape[-nd - 1]
    if c % spec.groups:
        raise ValueError(
            f"{op}: channel mismatch: groups={spec.groups} must divide the input channels, got "
            f"C_in={c} ({name} shape {x_shape}). Choose groups dividing both C_in and C_out."
        )
    if c != spec.in_channels:
        raise ValueError(
            f"{op}: channel mismatch: {name} has C_in={c} channels (shape {x_shape}) but weight "
            f"expects C_in = weight.shape[1] * groups = {spec.in_channels // spec.groups} * "
            f"{spec.groups} = {spec.in_channels}. Check the channel axis (NCHW layout) or groups."
        )
    spatial = tuple(x_shape[-nd:])
    # A batch of zero samples is allowed (an empty result, as PyTorch); nothing else is empty.
    if any(n < 1 for n in x_shape[-nd - 1:]) or any(n < 0 for n in x_shape):
        raise ValueError(f"{op}: {name} must have no zero-size axis other than the batch, got "
                         f"shape {x_shape}.")
    for ax, (i, (lo, hi), t) in enumerate(zip(spatial, spec.padding, spec.span, strict=True)):
        if i + lo + hi < t + 1:
            raise ValueError(
                f"{op}: the dilated kernel is larger than the padded input along spatial axis "
                f"{ax}: kernel extent d(k-1)+1 = {t + 1} > input {i} + padding {lo}+{hi} = "
                f"{i + lo + hi}. Use a smaller kernel or dilation, or more padding."
            )
    return spatial


def resolve_input_shape(spec: ConvSpec, input_shape: object, dz_shape: tuple[int, ...],
                        op: str, name: str = "input_shape", transposed: bool = False
                        ) -> tuple[int, ...]:
    """Turn ``input_shape`` (full or spatial only) into a full shape matching ``dz``.

    ``name`` is how the shape is called in messages: ``"x.shape"`` where the caller passed
    ``x`` itself rather than a shape. ``transposed``: the shape is that of a transposed
    convolution's output, whose remainder ``a = i - ((o-1)s - p_lo - p_hi + d(k-1) + 1)`` may be
    anything PyTorch's ``output_padding`` may be, ``0 <= a < max(s, d)``; otherwise ``i`` must
    give exactly ``dz``'s size in a forward pass (``a < s``).
    """
    fix = ("Pass the forward input's shape, x.shape." if name == "input_shape" else
           f"{name} and dz must come from the same forward pass.")
    shp = int_tuple(input_shape, name, op)
    batch = dz_shape[:-spec.nd - 1]
    if len(shp) == spec.nd:
        shp = batch + (spec.in_channels,) + shp
    elif len(shp) != len(dz_shape):
        raise ValueError(
            f"{op}: {name} {shp} has {len(shp)} entries; expected {len(dz_shape)} (the "
            f"forward input's full shape) or {spec.nd} (its spatial sizes) for dz of shape "
            f"{dz_shape}. {fix}"
        )
    if shp[:-spec.nd - 1] != batch:
        raise ValueError(
            f"{op}: {name} batch {shp[:-spec.nd - 1]} does not match dz batch {batch}. {fix}"
        )
    spatial = input_shape_for(spec, shp, name, op)
    expect = spec.output_spatial(spatial)
    o_sp = tuple(dz_shape[-spec.nd:])
    if transposed and expect != o_sp:
        rem = [i - shapes.transposed_output_size(o, k, s, lo, hi, d)
               for i, o, k, s, (lo, hi), d in zip(spatial, o_sp, spec.kernel, spec.stride,
                                                  spec.padding, spec.dilation, strict=True)]
        if all(0 <= a < max(s, d) for a, s, d in zip(rem, spec.stride, spec.dilation,
                                                     strict=True)):
            return shp
        fix += (f" As a transposed convolution's output size the remainder (output_padding) "
                f"would be {tuple(rem)}; it must be >= 0 and smaller than the stride "
                f"{spec.stride} or the dilation {spec.dilation}, as in PyTorch.")
    if expect != o_sp:
        raise ValueError(
            f"{op}: {name} {shp} cannot have produced dz of shape {dz_shape}: with kernel "
            f"{spec.kernel}, stride {spec.stride}, padding {spec.padding} and dilation "
            f"{spec.dilation} it gives spatial output {expect}. {fix}"
        )
    return shp


def dz_for(spec: ConvSpec, dz: np.ndarray, op: str) -> None:
    """Check the output delta's channel count and rank against the spec."""
    if dz.ndim not in (spec.nd + 1, spec.nd + 2):
        raise ValueError(
            f"{op}: expected dz of {spec.nd + 2} dimensions (N, C_out, *spatial) or "
            f"{spec.nd + 1} (C_out, *spatial) to match a {spec.nd}-D kernel, got {dz.ndim}-D "
            f"shape {dz.shape}."
        )
    c = dz.shape[-spec.nd - 1]
    if c != spec.out_channels:
        # a rank-(nd+1) delta is read as unbatched: say so, it may be a batched one missing an axis
        layout = "(N, C_out, *spatial)" if dz.ndim == spec.nd + 2 else "unbatched (C_out, *spatial)"
        raise ValueError(
            f"{op}: channel mismatch: dz has {c} channels (shape {dz.shape}, read as {layout}) "
            f"but the weight has C_out={spec.out_channels}. dz must be the gradient of this "
            "layer's output."
        )


# -- the three public signatures, checked in one place for the fast path and the oracles ------

def conv_args(x: object, w: object, b: object, *, stride: object, padding: object,
              dilation: object, groups: object, op: str
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, ConvSpec]:
    """Checks of ``conv(x, w, b, ...)``; returns the arrays and the resolved spec."""
    x = float_array(x, "x")
    w = float_array(w, "w")
    b = None if b is None else float_array(b, "b")
    same_dtype(x=x, w=w, b=b)
    spec = weight_spec(w.shape, stride=stride, padding=padding, dilation=dilation,
                       groups=groups, op=op)
    input_shape_for(spec, x.shape, "x", op)
    if b is not None and b.shape != (spec.out_channels,):
        raise ValueError(
            f"{op}: bias must have shape (C_out,) = ({spec.out_channels},), got {b.shape}."
        )
    return x, w, b, spec


def grad_input_args(dz: object, w: object, input_shape: object, *, stride: object,
                    padding: object, dilation: object, groups: object, op: str
                    ) -> tuple[np.ndarray, np.ndarray, ConvSpec, tuple[int, ...]]:
    """Checks of ``conv_grad_input(dz, w, input_shape, ...)``; returns the full input shape."""
    dz = float_array(dz, "dz")
    w = float_array(w, "w")
    same_dtype(dz=dz, w=w)
    spec = weight_spec(w.shape, stride=stride, padding=padding, dilation=dilation,
                       groups=groups, op=op)
    dz_for(spec, dz, op)
    return dz, w, spec, resolve_input_shape(spec, input_shape, dz.shape, op, transposed=True)


def grad_weight_args(x: object, dz: object, weight_shape: object, *, stride: object,
                     padding: object, dilation: object, groups: object, op: str
                     ) -> tuple[np.ndarray, np.ndarray, ConvSpec, tuple[int, ...]]:
    """Checks of ``conv_grad_weight(x, dz, weight_shape, ...)``; returns the weight shape."""
    x = float_array(x, "x")
    dz = float_array(dz, "dz")
    same_dtype(x=x, dz=dz)
    wshape = int_tuple(weight_shape, "weight_shape", op, fix="Pass w.shape.")
    spec = weight_spec(wshape, stride=stride, padding=padding, dilation=dilation,
                       groups=groups, op=op)
    input_shape_for(spec, x.shape, "x", op)
    dz_for(spec, dz, op)
    resolve_input_shape(spec, x.shape, dz.shape, op, name="x.shape")
    return x, dz, spec, wshape
