"""Pooling layers: ``MaxPool{1,2,3}d``, ``AvgPool{1,2,3}d``, ``AdaptiveAvgPool{1,2,3}d``.

No parameters. Max pooling remembers the argmax of every window in forward and routes each delta
there in backward (the first maximum on ties, as PyTorch); average pooling spreads each delta
evenly over its window. See :mod:`rot180.functional.pool` for the rules.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..functional import _fused
from ..functional import _validation as C
from ..functional import pool as P
from ..functional._poolspec import PoolSpec, check_divisor_override, divisor, pool_spec
from .module import Module

__all__ = [
    "MaxPool1d", "MaxPool2d", "MaxPool3d",
    "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "GlobalAvgPool2d",
]

IntOrTuple = int | Sequence[int]


def _check_input(x: object, name: str, nd: int) -> np.ndarray:
    return C.check_input(x, name, ndim=(nd + 1, nd + 2),
                         expected=f"input of shape (N, C, *{nd} spatial) or unbatched "
                                  f"(C, *{nd} spatial)")


def _cached(cache: tuple | None, dy: object, name: str) -> tuple:
    """The forward cache less its last entry, the output ``(shape, dtype)``, after checking
    ``dy`` against that output."""
    cache = C.cached(cache, name)  # type: ignore[assignment]
    C.check_grad(dy, name, *cache[-1])  # type: ignore[index]
    return cache[:-1]  # type: ignore[index]


class _Pool(Module):
    """Shared argument checks and input checks; ``_nd`` spatial dimensions."""

    _nd: int

    def __init__(self, kernel_size: IntOrTuple, stride: IntOrTuple | None, padding: IntOrTuple,
                 ceil_mode: bool, dilation: IntOrTuple = 1) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode
        self._cache: tuple | None = None
        self._spec_of: tuple | None = None  # (input shape and settings, PoolSpec, divisor)
        (self.kernel_size, self.stride, self.padding, self.dilation,
         self.ceil_mode) = self._checked()

    def _checked(self) -> tuple:
        """The pooling settings, checked (at construction, and again whenever one of them
        changed since the last input)."""
        nd, name = self._nd, type(self).__name__
        kernel = C.positive_tuple(self.kernel_size, nd, "kernel_size", name)
        stride = kernel if self.stride is None else C.positive_tuple(self.stride, nd, "stride",
                                                                      name)
        padding = C.nd_ints(self.padding, nd, "padding", name)
        dilation = C.positive_tuple(self.dilation, nd, "dilation", name)
        if any(p < 0 or p > k // 2 for p, k in zip(padding, kernel, strict=True)):
            raise ValueError(
                f"{name}: pad should be at most half of kernel size (and >= 0), got "
                f"padding={padding} for kernel_size={kernel}. Use padding <= "
                "kernel_size // 2 (the kernel size, not its dilated extent, as PyTorch)."
            )
        return kernel, stride, padding, dilation, C.flag(self.ceil_mode, "ceil_mode", name)

    def _settings(self) -> tuple:
        """The settings as they are now; each is stored back as the tuple it was checked as, so
        a list set later (even one changed in place) differs from the key."""
        return (self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    def _check_input(self, x: object) -> np.ndarray:
        return _check_input(x, type(self).__name__, self._nd)

    def _spec(self, shape: tuple[int, ...]) -> tuple[PoolSpec, np.ndarray | int | None]:
        """The pooling spec (and average pooling's window sizes) of an input shape: built for
        the first input of a shape and reused while the shape and every setting repeat (the
        cache is keyed on both, so a setting changed after a forward is re-checked and used)."""
        if self._spec_of is None or self._spec_of[0] != (shape, self._settings()):
            (self.kernel_size, self.stride, self.padding, self.dilation,
             self.ceil_mode) = kernel, stride, padding, dilation, ceil_mode = self._checked()
            sp = pool_spec(shape, kernel, stride, padding, ceil_mode, type(self).__name__,
                           dilation=dilation, nd=self._nd)
            self._spec_of = ((shape, self._settings()), sp, self._divisor(sp))
        return self._spec_of[1], self._spec_of[2]

    def _divisor(self, sp: PoolSpec) -> np.ndarray | int | None:
        return None

    def _cached(self, dy: object) -> tuple:
        return _cached(self._cache, dy, type(self).__name__)

    def extra_repr(self) -> str:
        s = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        return s + (", ceil_mode=True" if self.ceil_mode else "")


class _MaxPoolNd(_Pool):
    """Max pooling over ``_nd`` spatial axes; caches the argmax indices.

    Args:
        kernel_size: window size, an int or one int per spatial dimension.
        stride: default ``kernel_size``; smaller values give overlapping windows.
        padding: ``-inf`` cells on both sides, at most ``kernel_size // 2``.
        dilation: spacing of the window's taps (1 = adjacent cells), as PyTorch.
        return_indices: ``forward`` returns ``(output, argmax)``, the flat index of every
            window's maximum within its input plane, as PyTorch (``backward`` takes the
            output's gradient only).
        ceil_mode: round the output size up, as PyTorch.

    Shape:
        - input: ``(N, C, *i)`` or ``(C, *i)``; ``N`` may be 0
        - output: ``(N, C, *o)``, ``o = floor((i + 2p - d(k-1) - 1) / s) + 1``
    """

    def __init__(self, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,
                 padding: IntOrTuple = 0, dilation: IntOrTuple = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, dilation)
        self.return_indices = C.flag(return_indices, "return_indices", type(self).__name__)

    def forward(self, x: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        x = self._check_input(x)
        sp, _ = self._spec(x.shape)
        y, idx = P.max_pool_spec(x, sp)
        self._cache = (idx, x.shape, sp, (y.shape, y.dtype))
        return (y, idx.copy()) if self.return_indices else y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        idx, shape, sp = self._cached(dy)
        return P.max_pool_grad_spec(dy, idx, shape, sp, sp.nd)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", return_indices=True" if self.return_indices else "")


class _AvgPoolNd(_Pool):
    """Average pooling over ``_nd`` spatial axes.

    Args:
        kernel_size, stride, padding, ceil_mode: as max pooling (padding cells are zeros; no
            dilation, as PyTorch).
        count_include_pad: divide by the whole window (default, as PyTorch) or only by the
            real input cells in it.
        divisor_override: divide every window's sum by this non-zero int instead (PyTorch's
            ``AvgPool2d``/``3d`` argument; ``AvgPool1d`` takes it too here).

    Shape:
        - input: ``(N, C, *i)`` or ``(C, *i)``; ``N`` may be 0
        - output: ``(N, C, *o)``, ``o = floor((i + 2p - k) / s) + 1``
    """

    def __init__(self, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,
                 padding: IntOrTuple = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override
        self.count_include_pad, self.divisor_override = self._averaging()

    def _averaging(self) -> tuple[bool, int | None]:
        name = type(self).__name__
        d = self.divisor_override
        return (C.flag(self.count_include_pad, "count_include_pad", name),
                None if d is None else check_divisor_override(d, name))

    def _settings(self) -> tuple:
        return (*super()._settings(), self.count_include_pad, self.divisor_override)

    def _divisor(self, sp: PoolSpec) -> np.ndarray | int:
        self.count_include_pad, self.divisor_override = self._averaging()
        return divisor(sp, self.count_include_pad, self.divisor_override, type(self).__name__)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check_input(x)
        sp, div = self._spec(x.shape)
        y = P.avg_pool_spec(x, sp, div)  # type: ignore[arg-type]
        self._cache = (x.shape, sp, div, (y.shape, y.dtype))
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        shape, sp, div = self._cached(dy)
        return P.avg_pool_grad_spec(dy, shape, sp, div)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        s += "" if self.count_include_pad else ", count_include_pad=False"
        return s + ("" if self.divisor_override is None
                    else f", divisor_override={self.divisor_override}")


class MaxPool1d(_MaxPoolNd):
    __doc__ = _MaxPoolNd.__doc__
    _nd = 1


class MaxPool2d(_MaxPoolNd):
    __doc__ = _MaxPoolNd.__doc__
    _nd = 2


class MaxPool3d(_MaxPoolNd):
    __doc__ = _MaxPoolNd.__doc__
    _nd = 3


class AvgPool1d(_AvgPoolNd):
    __doc__ = _AvgPoolNd.__doc__
    _nd = 1


class AvgPool2d(_AvgPoolNd):
    __doc__ = _AvgPoolNd.__doc__
    _nd = 2


class AvgPool3d(_AvgPoolNd):
    __doc__ = _AvgPoolNd.__doc__
    _nd = 3


class _AdaptiveAvgPoolNd(Module):
    """Adaptive average pooling to ``output_size``, as ``torch.nn.AdaptiveAvgPool{nd}d``.

    Output cell ``q`` of an axis of ``i`` cells averages cells ``floor(q i / o)`` up to
    ``ceil((q+1) i / o) - 1``; ``output_size=1`` is global average pooling.

    Args:
        output_size: an int or one entry per spatial dimension; ``None`` keeps that axis.

    Shape:
        - input: ``(N, C, *i)`` or ``(C, *i)``; output: ``(N, C, *output_size)``
    """

    _nd: int

    def __init__(self, output_size: int | Sequence[int | None]) -> None:
        super().__init__()
        nd, name = self._nd, type(self).__name__
        sizes = (output_size,) * nd if not isinstance(output_size, Sequence) else output_size
        try:
            if len(sizes) != nd:
                raise ValueError
            self.output_size = tuple(None if o is None else C.integer(o, "output_size")
                                     for o in sizes)
        except (TypeError, ValueError):
            raise ValueError(
                f"{name}: output_size must be a positive int or {nd} entries each a positive "
                f"int or None, got {output_size!r}."
            ) from None
        self._cache: tuple | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _check_input(x, type(self).__name__, self._nd)
        if all(o == 1 for o in self.output_size) and x.size and _fused.helper_on():
            y = _fused.plane_mean(x, self._nd)      # global: the input is checked, ~15 us less
        else:
            y = P.adaptive_avg_pool(x, self.output_size)
        self._cache = (x.shape, (y.shape, y.dtype))
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        # The shape test matters here: adaptive_avg_pool_grad accepts any output size.
        (shape,) = _cached(self._cache, dy, type(self).__name__)
        return P.adaptive_avg_pool_grad(dy, shape)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    __doc__ = _AdaptiveAvgPoolNd.__doc__
    _nd = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    __doc__ = _AdaptiveAvgPoolNd.__doc__
    _nd = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    __doc__ = _AdaptiveAvgPoolNd.__doc__
    _nd = 3


class GlobalAvgPool2d(AdaptiveAvgPool2d):
    """``AdaptiveAvgPool2d(1)``: the mean of every channel plane, kept as ``(N, C, 1, 1)``."""

    def __init__(self) -> None:
        super().__init__(1)
