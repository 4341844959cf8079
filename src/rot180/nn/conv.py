r"""Convolution layers ``Conv{1,2,3}d`` and ``ConvTranspose{1,2,3}d`` with explicit backward.

``Conv`` computes the cross-correlation ``z = x \star w + b`` (:func:`rot180.functional.conv`)
and its backward is the rot180 rule: ``dx = conv_grad_input`` (full correlation of the stretched
delta with ``rot180(w)``), ``dw += conv_grad_weight`` (valid correlation of the input with the
delta), ``db += sum dz``.

``ConvTranspose`` is the same rule seen from the other side. Let ``A_w`` be the linear map
``u -> conv(u, w)`` from the transposed layer's *output* space (``C_out`` channels, size ``o``)
to its *input* space (``C_in`` channels, size ``i``); its weight ``(C_in, C_out/groups, *k)`` is
exactly a conv weight for ``A_w``. The transposed layer is the adjoint::

    y = A_w^T x + b            = conv_grad_input(x, w, o)  + b      (forward)

and, as the adjoint of a linear map is applied by the map itself, with ``<y, dy> = <x, A_w dy>``
(plus the bias term)::

    dx = A_w dy                = conv(dy, w)                        (backward, input)
    dw = d<x, conv(dy, w)>/dw  = conv_grad_weight(dy, x, w.shape)   (backward, kernel)
    db = sum dy

so the forward conv's input gradient is this layer's forward, and the forward conv and its
kernel gradient (with ``dy`` as the input and ``x`` as the delta) are this layer's backward.
The output size is ``o = (i - 1)s - p_lo - p_hi + d(k-1) + output_padding + 1``
(:func:`rot180.functional.shapes.transposed_output_size`): ``output_padding`` chooses which of
the sizes that ``A_w`` maps to ``i`` is meant (the stride remainder). PyTorch also allows
``stride <= output_padding < dilation``; then ``A_w`` applied to size ``o`` gives more than ``i``
cells, and ``x`` is extended with zero cells (which feed nothing) to match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral

import numpy as np

from ..functional import _validation as C
from ..functional._engine import _guard as guard_sample
from ..functional.conv import (
    conv_grad_bias,
    conv_grad_input_spec,
    conv_grad_weight_spec,
    conv_spec,
)
from ..functional.shapes import transposed_output_size
from . import init
from .module import Module, Parameter

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]

IntOrTuple = int | Sequence[int]
RNG = np.random.Generator | int | None
_PADDING_STRINGS = ("valid", "same")


class _ConvBase(Module):
    """Argument checks, parameters and input checks shared by every conv layer.

    The settings are checked and resolved once, here, into a
    :class:`~rot180.functional._validation.ConvSpec` (padding as ``(low, high)`` pairs); each
    call checks only its input against the spec and runs the spec-taking internals of
    :mod:`rot180.functional.conv`, so no stride or padding is re-validated per call.
    """

    _nd: int
    _transposed = False

    def _setup(self, in_channels: int, out_channels: int, kernel_size: IntOrTuple,
               stride: IntOrTuple, padding: str | IntOrTuple, dilation: IntOrTuple,
               groups: int, bias: bool, padding_mode: str, dtype: type | np.dtype,
               rng: RNG, output_padding: IntOrTuple = 0) -> None:
        nd, name = self._nd, type(self).__name__
        groups = C.integer(groups, "groups", name)
        self.in_channels = C.integer(in_channels, "in_channels", name)
        self.out_channels = C.integer(out_channels, "out_channels", name)
        for what, c in (("in_channels", in_channels), ("out_channels", out_channels)):
            if c % groups:
                raise ValueError(f"{name}: {what} must be divisible by groups, got {what}={c}, "
                                 f"groups={groups}.")
        self.groups = int(groups)
        self.kernel_size = C.positive_tuple(kernel_size, nd, "kernel_size", name)
        self.stride = C.positive_tuple(stride, nd, "stride", name)
        self.dilation = C.positive_tuple(dilation, nd, "dilation", name)
        if not isinstance(padding_mode, str) or padding_mode != "zeros":
            raise ValueError(
                f"{name}: padding_mode={padding_mode!r} is not supported; only 'zeros' is "
                "supported. For reflect/replicate/circular padding, np.pad the input first."
            )
        self.padding_mode = padding_mode
        self.padding: str | tuple = self._padding_arg(padding)
        if self._transposed:
            self.output_padding = C.nd_ints(output_padding, nd, "output_padding", name)
        dt = C.float_dtype(dtype, name)
        a, b = ((in_channels, out_channels) if self._transposed
                else (out_channels, in_channels))
        self.weight = Parameter(np.empty((a, b // groups, *self.kernel_size), dt))
        self.bias = Parameter(np.empty(out_channels, dt)) if C.flag(bias, "bias", name) else None
        init.default_init_(self.weight, self.bias, rng=rng)
        self._cache: tuple | None = None
        # Every setting resolved once into a spec (this also validates them all).
        self._spec_of: tuple[tuple, C.ConvSpec] | None = None
        self._spec()

    def _padding_arg(self, padding: object) -> str | tuple:
        nd, name = self._nd, type(self).__name__
        if isinstance(padding, str):
            if self._transposed:
                raise ValueError(
                    f"{name} does not accept a padding string ({padding!r}): its padding is "
                    "cropped from the output; pass an int or a tuple of ints."
                )
            if padding not in _PADDING_STRINGS:
                raise ValueError(f"{name}: Invalid padding string {padding!r}, should be one "
                                 f"of {_PADDING_STRINGS}.")
            return padding
        if isinstance(padding, Integral):  # a bool is refused by C.integer
            return (C.integer(padding, "padding", name, low=None),) * nd
        if isinstance(padding, Sequence):  # ints or (low, high) pairs, kept as tuples
            return tuple(tuple(p) if isinstance(p, Sequence) else p for p in padding)
        raise TypeError(
            f"{name}: padding must be an int, a tuple of {nd} ints or one of "
            f"{_PADDING_STRINGS}, got {type(padding).__name__} {padding!r}."
        )

    def _settings(self) -> tuple:
        """Everything the spec depends on, as it is now. :meth:`_resolve` stores each setting
        back as the tuple it checked, so a list set later (even one then changed in place)
        differs from the key and is resolved afresh."""
        b = self.bias
        return (self.weight.data.shape, self.stride, self.padding, self.dilation, self.groups,
                getattr(self, "output_padding", None), None if b is None else b.data.shape)

    def _spec(self) -> C.ConvSpec:
        """The spec of the current weight and settings: built at construction, and again
        (re-validated, with the construction's messages) whenever the weight's shape or any
        setting (``stride``, ``padding``, ``dilation``, ``groups``, ``output_padding``, the
        bias) changed since; the cache is keyed on all of them, so none is read stale."""
        key = self._settings()
        if self._spec_of is None or self._spec_of[0] != key:
            spec = self._resolve()
            self._spec_of = (self._settings(), spec)
        return self._spec_of[1]

    def _resolve(self) -> C.ConvSpec:
        nd, name = self._nd, type(self).__name__
        w_shape = self.weight.data.shape
        if len(w_shape) != nd + 2:
            raise ValueError(f"{name}: weight must be {nd + 2}-D (a {nd}-D kernel), got "
                             f"{len(w_shape)}-D shape {w_shape}.")
        groups = C.integer(self.groups, "groups", name)
        stride = C.positive_tuple(self.stride, nd, "stride", name)
        dilation = C.positive_tuple(self.dilation, nd, "dilation", name)
        padding = self._padding_arg(self.padding)
        self.stride, self.dilation, self.padding, self.groups = stride, dilation, padding, groups
        if padding == "same" and any(s != 1 for s in stride):
            raise ValueError(f"{name}: padding='same' is not supported for strided "
                             f"convolutions, got stride={stride}. Pass explicit padding, or "
                             "use stride=1.")
        spec = C.weight_spec(w_shape, stride=stride, padding=padding, dilation=dilation,
                             groups=groups, op=name)
        c_out = spec.in_channels if self._transposed else spec.out_channels
        if self.bias is not None and np.shape(self.bias.data) != (c_out,):
            raise ValueError(f"{name}: bias must have shape (C_out,) = ({c_out},) for weight "
                             f"shape {w_shape}, got {np.shape(self.bias.data)}. Replace the "
                             "weight and the bias together.")
        if self._transposed:
            op = C.nd_ints(self.output_padding, nd, "output_padding", name)
            for a, s, d in zip(op, stride, dilation, strict=True):
                if a < 0 or not (a < s or a < d):
                    raise ValueError(
                        f"{name}: output padding must be smaller than either stride or "
                        f"dilation (and >= 0), but got output_padding={op}, stride={stride}, "
                        f"dilation={dilation}."
                    )
            self.output_padding = self._output_padding = op
        return spec

    def _check_input(self, x: object, spec: C.ConvSpec) -> np.ndarray:
        nd = self._nd
        c = spec.out_channels if self._transposed else spec.in_channels
        return C.check_input(
            x, type(self).__name__, ndim=(nd + 1, nd + 2), channels=c, channel_axis=-nd - 1,
            dtype=self.weight.data.dtype,
            expected=f"input of shape (N, {c}, *{nd} spatial) or unbatched ({c}, *{nd} spatial)")

    def _backward_cache(self, dy: object) -> tuple:
        """The forward cache (whose last entry is the output shape), after checking ``dy``
        against that output completely (so it fits the spec)."""
        cache: tuple = C.cached(self._cache, type(self).__name__)  # type: ignore[assignment]
        C.check_grad(dy, type(self).__name__, cache[-1], self.weight.data.dtype)
        return cache[:-1]

    def _accumulate_bias(self, dy: np.ndarray) -> None:
        if self.bias is not None:
            dy = np.asarray(dy)
            self.bias.grad += conv_grad_bias(dy if dy.ndim == self._nd + 2 else dy[None])

    def extra_repr(self) -> str:
        nd = self._nd
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * nd:
            s += f", padding={self.padding!r}"
        if self.dilation != (1,) * nd:
            s += f", dilation={self.dilation}"
        if getattr(self, "output_padding", (0,) * nd) != (0,) * nd:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class _ConvNd(_ConvBase):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrTuple,
                 stride: IntOrTuple = 1, padding: str | IntOrTuple = 0,
                 dilation: IntOrTuple = 1, groups: int = 1, bias: bool = True, *,
                 padding_mode: str = "zeros", dtype: type | np.dtype = np.float32,
                 rng: RNG = None) -> None:
        super().__init__()
        self._setup(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                    bias, padding_mode, dtype, rng)

    def forward(self, x: np.ndarray) -> np.ndarray:
        spec = self._spec()
        x = self._check_input(x, spec)
        C.input_shape_for(spec, x.shape, "x", type(self).__name__)
        b = None if self.bias is None else self.bias.data
        y = conv_spec(x, self.weight.data, b, spec)
        self._cache = (x, spec, y.shape)  # the spec of this forward, for its backward
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x, spec = self._backward_cache(dy)
        dx = conv_grad_input_spec(dy, self.weight.data, x.shape, spec)
        self._accumulate_params(x, dy, spec)
        return dx

    def backward_params(self, dy: np.ndarray) -> None:
        """The kernel and bias gradients of :meth:`backward`, without ``conv_grad_input``."""
        x, spec = self._backward_cache(dy)
        self._accumulate_params(x, dy, spec)

    def _accumulate_params(self, x: np.ndarray, dy: np.ndarray, spec: C.ConvSpec) -> None:
        w = self.weight.data
        self.weight.grad += conv_grad_weight_spec(x, dy, w.shape, spec)
        self._accumulate_bias(dy)


class _ConvTransposeNd(_ConvBase):
    _transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrTuple,
                 stride: IntOrTuple = 1, padding: IntOrTuple = 0,
                 output_padding: IntOrTuple = 0, groups: int = 1, bias: bool = True,
                 dilation: IntOrTuple = 1, *, padding_mode: str = "zeros",
                 dtype: type | np.dtype = np.float32, rng: RNG = None) -> None:
        super().__init__()
        self._setup(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                    bias, padding_mode, dtype, rng, output_padding)

    def output_shape(self, spatial_in: Sequence[int]) -> tuple[int, ...]:
        """Spatial output size ``(i-1)s - p_lo - p_hi + d(k-1) + output_padding + 1``."""
        return self._output_spatial(self._spec(), spatial_in)

    def _output_spatial(self, sp: C.ConvSpec, spatial_in: Sequence[int]) -> tuple[int, ...]:
        # kernel from the weight, every setting as the spec resolved it
        return tuple(
            transposed_output_size(i, k, s, lo, hi, d, a)
            for i, k, s, (lo, hi), d, a in zip(spatial_in, sp.kernel, sp.stride, sp.padding,
                                               sp.dilation, self._output_padding, strict=True)
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        nd, spec = self._nd, self._spec()
        x = self._check_input(x, spec)
        c_out = spec.in_channels  # the adjoint conv's input channels
        spatial_in = x.shape[-nd:]
        out = self._output_spatial(spec, spatial_in)
        if any(o < 1 for o in out):
            raise ValueError(
                f"{type(self).__name__}: input spatial size {spatial_in} gives output size "
                f"{out}; padding {spec.padding} crops more than the transposed convolution "
                "produces. Use less padding or a larger input."
            )
        reach = spec.output_spatial(out)
        extra = [r - i for r, i in zip(reach, spatial_in, strict=True)]
        # The output and the padded input are sized before either is made (the engine's guard:
        # 931 GiB here was numpy's MemoryError from np.pad, 6 GiB cost 1.6 GB first).
        item = x.dtype.itemsize
        guard_sample(c_out * math.prod(out) * item, "the output",
                     (spec.groups, c_out // spec.groups, *out))
        xe = x
        if any(extra):  # only when stride <= output_padding < dilation: see the module doc
            guard_sample(spec.out_channels * math.prod(reach) * item, "the padded input",
                         (spec.out_channels, *reach))
            xe = np.pad(x, [(0, 0)] * (x.ndim - nd) + [(0, e) for e in extra])
        # the full output shape, as conv_grad_input resolves it from the spatial sizes ``out``
        y = conv_grad_input_spec(xe, self.weight.data, (*x.shape[:-nd - 1], c_out, *out), spec)
        if self.bias is not None:
            y += self.bias.data.reshape((-1,) + (1,) * nd)
        self._cache = (xe, spatial_in, spec, y.shape)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        # The shape is checked here: conv(dy, w) would accept a dy of another size and the crop
        # below would hide it.
        xe, spatial_in, spec = self._backward_cache(dy)
        w = self.weight.data
        dx = conv_spec(dy, w, None, spec)
        dx = dx[(Ellipsis, *(slice(0, i) for i in spatial_in))]
        self.weight.grad += conv_grad_weight_spec(dy, xe, w.shape, spec)
        self._accumulate_bias(dy)
        return dx


_CONV_DOC = """{nd}-D cross-correlation layer, as ``torch.nn.Conv{nd}d``.

    Forward ``z = x \\star w + b``; backward by the rot180 rule (see :mod:`rot180.nn.conv`).

    Args:
        in_channels, out_channels: channel counts, both divisible by ``groups``.
        kernel_size, stride, dilation: int or tuple of {nd} ints, >= 1.
        padding: int, tuple of {nd} ints, or ``"valid"`` / ``"same"`` (stride 1 only; the odd
            cell goes on the high side, as PyTorch).
        groups: independent channel groups.
        bias: learn an additive bias (``bias=False``: no ``bias`` entry in ``state_dict``).
        padding_mode: only ``"zeros"``.
        dtype: float32 (default) or float64.
        rng: Generator or int seed for PyTorch's default initialisation (a seed reproduces
            the weights bit for bit); ``None`` draws fresh entropy.

    Parameters:
        weight: ``(out_channels, in_channels / groups, *kernel_size)``; bias: ``(out_channels,)``

    Shape:
        - input: ``(N, C_in, *i)`` or unbatched ``(C_in, *i)``, {nd} spatial dims
        - output: ``(N, C_out, *o)``, ``o = floor((i + p_lo + p_hi - d(k-1) - 1) / s) + 1``
    """

_CONVT_DOC = """{nd}-D transposed convolution, as ``torch.nn.ConvTranspose{nd}d``.

    Forward is :func:`~rot180.functional.conv_grad_input` (the input gradient of the conv with
    this weight), backward is :func:`~rot180.functional.conv` and
    :func:`~rot180.functional.conv_grad_weight`: see :mod:`rot180.nn.conv`.

    Args:
        in_channels, out_channels: channel counts, both divisible by ``groups``.
        kernel_size, stride, dilation: int or tuple of {nd} ints, >= 1.
        padding: int or tuple of {nd} ints: cells cropped from each side of the output.
        output_padding: extra cells on the high side of the output (the stride remainder);
            each must be smaller than its stride or its dilation.
        groups, bias, padding_mode (only ``"zeros"``), dtype, rng: as for ``Conv{nd}d``.

    Parameters:
        weight: ``(in_channels, out_channels / groups, *kernel_size)`` (PyTorch's layout);
        bias: ``(out_channels,)``

    Shape:
        - input: ``(N, C_in, *i)`` or unbatched ``(C_in, *i)``, {nd} spatial dims
        - output: ``(N, C_out, *o)``,
          ``o = (i - 1)s - p_lo - p_hi + d(k-1) + output_padding + 1``
    """


class Conv1d(_ConvNd):
    __doc__ = _CONV_DOC.format(nd=1)
    _nd = 1


class Conv2d(_ConvNd):
    __doc__ = _CONV_DOC.format(nd=2)
    _nd = 2


class Conv3d(_ConvNd):
    __doc__ = _CONV_DOC.format(nd=3)
    _nd = 3


class ConvTranspose1d(_ConvTransposeNd):
    __doc__ = _CONVT_DOC.format(nd=1)
    _nd = 1


class ConvTranspose2d(_ConvTransposeNd):
    __doc__ = _CONVT_DOC.format(nd=2)
    _nd = 2


class ConvTranspose3d(_ConvTransposeNd):
    __doc__ = _CONVT_DOC.format(nd=3)
    _nd = 3
