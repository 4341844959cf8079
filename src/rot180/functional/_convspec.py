"""The convolution spec: a validated configuration, and the checks of inputs against it.

:func:`weight_spec` checks a kernel shape and every keyword once and resolves the padding to
``(low, high)`` pairs; :func:`input_shape_for`, :func:`resolve_input_shape` and :func:`dz_for`
check one call's arrays against the spec. A layer builds its spec at construction and runs only
the per-call checks; the public functions run all of them on every call (:func:`conv_args`,
:func:`grad_input_args`, :func:`grad_weight_args`). Imported through
:mod:`rot180.functional._validation`, whose scalar checks it uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import _validation as V  # the scalar checks (looked up at call time: V imports this)
from . import shapes
from ._array import float_array, same_dtype

__all__ = ["ConvSpec", "conv_args", "dz_for", "grad_input_args", "grad_weight_args",
           "input_shape_for", "resolve_input_shape", "weight_spec"]


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
    g = V.integer(groups, "groups")
    if w_shape[0] % g:
        raise ValueError(
            f"{op}: groups={g} must divide the output channels, got C_out={w_shape[0]} "
            f"(weight shape {w_shape}). Choose groups dividing both C_in and C_out."
        )
    st = V.positive_tuple(stride, nd, "stride")
    dil = V.positive_tuple(dilation, nd, "dilation")
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
    shp = V.int_tuple(input_shape, name, op)
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


def _same_dtype_pair(a: object, a_name: str, b: object, b_name: str
                     ) -> tuple[np.ndarray, np.ndarray]:
    a, b = float_array(a, a_name), float_array(b, b_name)
    same_dtype(**{a_name: a, b_name: b})
    return a, b


def grad_input_args(dz: object, w: object, input_shape: object, *, stride: object,
                    padding: object, dilation: object, groups: object, op: str
                    ) -> tuple[np.ndarray, np.ndarray, ConvSpec, tuple[int, ...]]:
    """Checks of ``conv_grad_input(dz, w, input_shape, ...)``; returns the full input shape."""
    dz, w = _same_dtype_pair(dz, "dz", w, "w")
    spec = weight_spec(w.shape, stride=stride, padding=padding, dilation=dilation,
                       groups=groups, op=op)
    dz_for(spec, dz, op)
    return dz, w, spec, resolve_input_shape(spec, input_shape, dz.shape, op, transposed=True)


def grad_weight_args(x: object, dz: object, weight_shape: object, *, stride: object,
                     padding: object, dilation: object, groups: object, op: str
                     ) -> tuple[np.ndarray, np.ndarray, ConvSpec, tuple[int, ...]]:
    """Checks of ``conv_grad_weight(x, dz, weight_shape, ...)``; returns the weight shape."""
    x, dz = _same_dtype_pair(x, "x", dz, "dz")
    wshape = V.int_tuple(weight_shape, "weight_shape", op, fix="Pass w.shape.")
    spec = weight_spec(wshape, stride=stride, padding=padding, dilation=dilation,
                       groups=groups, op=op)
    input_shape_for(spec, x.shape, "x", op)
    dz_for(spec, dz, op)
    resolve_input_shape(spec, x.shape, dz.shape, op, name="x.shape")
    return x, dz, spec, wshape
