"""Input checks for every public function of :mod:`rot180.functional`: one place, run first.

Messages follow one pattern: what was expected, what was received, and how to fix it.
``TypeError`` is for a wrong kind of thing (dtype, Python type), ``ValueError`` for a wrong value
(shape, size, range).

Array arguments may also be (nested) lists, tuples or Python scalars: they are converted with
``np.asarray``, so Python floats become float64 and ints are refused like int arrays. Every check
is O(1) (shapes, dtypes, scalars) except :func:`all_finite`, which scans values and is used only
on small arrays where a NaN is a user error (loss targets), never on activations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np

from . import shapes

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_array(a: object, name: str) -> np.ndarray:
    """Return ``a`` as an ndarray of float32 or float64, never converting between them."""
    if not isinstance(a, np.ndarray):
        # a str is a numpy "scalar" too; it must not reach the dtype message below
        if isinstance(a, list | tuple) or (np.isscalar(a) and not isinstance(a, str | bytes)):
            try:
                a = np.asarray(a)
            except ValueError as exc:  # ragged nesting
                raise ValueError(
                    f"{name} must be a rectangular array, got a ragged {type(a).__name__} "
                    f"({exc}). Pass a numpy array."
                ) from None
        else:
            raise TypeError(
                f"{name} must be a numpy array, got {type(a).__name__}. "
                "Convert it with np.asarray(..., dtype=np.float32)."
            )
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must have dtype float32 or float64, got {a.dtype}. "
            f"Convert it with {name}.astype(np.float32) (or np.float64)."
        )
    return a


def real_scalar(value: object, name: str, op: str, *, low: float | None = None,
                high: float | None = None, low_open: bool = False) -> float:
    """A finite real hyperparameter in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{op}: {name} must be a real number, got {type(value).__name__} "
                        f"{value!r}.")
    out = float(value)
    below = low is not None and (out <= low if low_open else out < low)
    if not math.isfinite(out) or below or (high is not None and out > high):
        bounds = "".join(f" and {b}" for b in (
            None if low is None else f"{'>' if low_open else '>='} {low}",
            None if high is None else f"<= {high}") if b)
        raise ValueError(f"{op}: {name} must be finite{bounds}, got {value!r}.")
    return out


def option(value: object, options: Sequence[str], name: str, op: str) -> str:
    """One of the strings ``options``."""
    if not isinstance(value, str):
        raise TypeError(f"{op}: {name} must be a str, one of {tuple(options)}, got "
                        f"{type(value).__name__} {value!r}.")
    if value not in options:
        raise ValueError(f"{op}: {name} must be one of {tuple(options)}, got {value!r}.")
    return value


def axis_arg(axis: object, ndim: int, op: str) -> int:
    """An axis index valid for an array of ``ndim`` dimensions (negative counts from the end)."""
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
        raise TypeError(f"{op}: axis must be an int, got {type(axis).__name__} {axis!r}.")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for a {ndim}-D array; pass an "
                         f"axis in [{-ndim}, {ndim - 1}].")
    return int(axis)


def shape_arg(value: object, name: str, op: str, *, empty_batch: bool = False
              ) -> tuple[int, ...]:
    """A shape argument (e.g. ``input_shape``): a tuple of positive ints; with
    ``empty_batch`` the first axis may also be 0 (a batch of no samples, as PyTorch)."""
    if isinstance(value, np.ndarray | str | bytes) or not isinstance(value, Sequence):
        raise TypeError(f"{op}: {name} must be a tuple of ints, got {type(value).__name__}. "
                        "Pass x.shape of the forward input.")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise TypeError(f"{op}: {name} must be a tuple of ints, got {type(v).__name__} "
                            f"{v!r} in {tuple(value)!r}. Pass x.shape of the forward input.")
    shape = tuple(int(v) for v in value)
    rest = shape[1:] if empty_batch and len(shape) > 1 and shape[0] == 0 else shape
    if any(v < 1 for v in rest):
        raise ValueError(f"{op}: {name} must have no zero-size or negative axis, got {shape}. "
                         "Pass x.shape of the forward input.")
    return shape


def all_finite(a: np.ndarray, name: str, op: str) -> None:
    """Refuse NaN or infinite values (a full scan: for small arrays such as loss targets)."""
    if not np.isfinite(a).all():
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"{op}: {name} must be finite, got {bad} NaN or infinite value(s) in "
                         f"shape {a.shape}. Check the data (e.g. with np.isfinite) before the "
                         "loss.")


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


def positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}. Pass a positive int.")
    return int(value)


def positive_tuple(value: object, nd: int, name: str) -> tuple[int, ...]:
    out = shapes.as_tuple(value, nd, name)  # type: ignore[arg-type]
    if any(v < 1 for v in out):
        raise ValueError(
            f"{name} must be >= 1 in every dimension, got {value!r}. Pass a positive int or "
            f"a tuple of {nd} positive ints."
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
    g = positive_int(groups, "groups")
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
    if isinstance(input_shape, np.ndarray) or not isinstance(input_shape, Sequence):
        raise TypeError(
            f"{op}: {name} must be a tuple of ints, got {type(input_shape).__name__}. "
            "Pass x.shape of the forward input."
        )
    for v in input_shape:
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise TypeError(
                f"{op}: {name} must be a tuple of ints, got {type(v).__name__} {v!r} in "
                f"{tuple(input_shape)!r}. Pass x.shape of the forward input."
            )
    fix = ("Pass the forward input's shape, x.shape." if name == "input_shape" else
           f"{name} and dz must come from the same forward pass.")
    shp = tuple(int(v) for v in input_shape)
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


def weight_shape_arg(weight_shape: object, op: str) -> tuple[int, ...]:
    if isinstance(weight_shape, np.ndarray) or not isinstance(weight_shape, Sequence):
        raise TypeError(
            f"{op}: weight_shape must be a tuple of ints, got {type(weight_shape).__name__}. "
            "Pass w.shape."
        )
    for v in weight_shape:
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise TypeError(
                f"{op}: weight_shape must be a tuple of ints, got {type(v).__name__} {v!r} in "
                f"{tuple(weight_shape)!r}. Pass w.shape."
            )
    return tuple(int(v) for v in weight_shape)


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
    wshape = weight_shape_arg(weight_shape, op)
    spec = weight_spec(wshape, stride=stride, padding=padding, dilation=dilation,
                       groups=groups, op=op)
    input_shape_for(spec, x.shape, "x", op)
    dz_for(spec, dz, op)
    resolve_input_shape(spec, x.shape, dz.shape, op, name="x.shape")
    return x, dz, spec, wshape
