r"""Weight initialisers: PyTorch's defaults for conv and linear layers, He and Glorot.

Every function fills an array (or a :class:`~rot180.nn.Parameter`'s ``data``) **in place** and
returns it, like ``torch.nn.init``. Every random draw comes from an explicit
:class:`numpy.random.Generator`: pass ``rng`` as a Generator or an int seed and the values are
reproduced bit for bit (draws are made directly in the array's dtype, so float32 and float64
weights from one seed differ, as they would in PyTorch). ``rng=None`` draws from a fresh
``np.random.default_rng()`` (OS entropy: not reproducible).

Fans follow ``torch.nn.init._calculate_fan_in_and_fan_out``: for a weight of shape
``(A, B, *k)``, ``fan_in = B * prod(k)`` and ``fan_out = A * prod(k)``. For ``Linear`` and
``Conv`` weights ``(out, in/groups, *k)`` that is the number of inputs feeding one output; for
``ConvTranspose`` weights ``(C_in, C_out/groups, *k)`` PyTorch applies the same formula, so the
"fan_in" is ``C_out/groups * prod(k)``. We follow it to get PyTorch's numbers.

PyTorch's default for conv and linear layers is ``kaiming_uniform_(w, a=sqrt(5))``, i.e.
``gain = sqrt(2 / (1 + 5)) = sqrt(1/3)`` and ``bound = gain * sqrt(3 / fan_in) = 1 /
sqrt(fan_in)``, with the bias uniform in ``(-1/sqrt(fan_in), 1/sqrt(fan_in))``: see
:func:`default_init_`.
"""

from __future__ import annotations

import math

import numpy as np

from ..functional import _validation as V
from ..functional._validation import generator as make_rng
from .module import Parameter

__all__ = [
    "make_rng",
    "calculate_gain",
    "calculate_fan_in_and_fan_out",
    "uniform_",
    "normal_",
    "constant_",
    "zeros_",
    "ones_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "xavier_uniform_",
    "xavier_normal_",
    "default_init_",
]

RNG = np.random.Generator | int | None
Target = np.ndarray | Parameter

_LINEAR_GAIN = ("linear", "identity", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                "conv_transpose2d", "conv_transpose3d", "sigmoid")


def _array(w: Target) -> np.ndarray:
    arr = w.data if isinstance(w, Parameter) else w
    return V.as_array(arr, "w", "init", dtypes=V.FLOAT_DTYPES,
                      convert="np.asarray(w, dtype=np.float32): init functions fill a numpy "
                      "array or a Parameter in place")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Recommended gain for a nonlinearity, as ``torch.nn.init.calculate_gain``.

    ``1`` for linear / conv / sigmoid, ``5/3`` for tanh, ``sqrt(2)`` for relu,
    ``sqrt(2 / (1 + a^2))`` for leaky_relu with negative slope ``a`` (default 0.01), ``3/4`` for
    selu.
    """
    if nonlinearity in _LINEAR_GAIN:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        else:
            slope = V.real(param, "negative_slope", "calculate_gain")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    known = (*_LINEAR_GAIN, "tanh", "relu", "leaky_relu", "selu")
    raise ValueError(f"Unsupported nonlinearity {nonlinearity!r}; use one of {known}.")


def calculate_fan_in_and_fan_out(w: Target | tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out) = (shape[1] * prod(shape[2:]), shape[0] * prod(shape[2:]))``.

    Shape:
        - w: an array, Parameter or shape with at least 2 axes
    """
    shape = tuple(w) if isinstance(w, tuple) else _array(w).shape
    if len(shape) < 2:
        raise ValueError(
            f"fan in and fan out need a weight with at least 2 dimensions, got shape {shape}."
        )
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fan(w: Target, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}.")
    fan_in, fan_out = calculate_fan_in_and_fan_out(w)
    fan = fan_in if mode == "fan_in" else fan_out
    if fan < 1:
        raise ValueError(f"cannot initialise a weight of shape {_array(w).shape}: its {mode} is 0.")
    return fan


def uniform_(w: Target, low: float = 0.0, high: float = 1.0, *, rng: RNG = None) -> np.ndarray:
    """Fill with draws from ``U(low, high)``."""
    arr = _array(w)
    if not high >= low:
        raise ValueError(f"uniform_ needs low <= high, got low={low}, high={high}.")
    u = make_rng(rng).random(arr.shape, dtype=arr.dtype)
    arr[...] = low + (high - low) * u
    return arr


def normal_(w: Target, mean: float = 0.0, std: float = 1.0, *, rng: RNG = None) -> np.ndarray:
    """Fill with draws from ``N(mean, std^2)``."""
    arr = _array(w)
    if not std >= 0:
        raise ValueError(f"normal_ needs std >= 0, got {std}.")
    arr[...] = mean + std * make_rng(rng).standard_normal(arr.shape, dtype=arr.dtype)
    return arr


def constant_(w: Target, value: float) -> np.ndarray:
    """Fill with ``value``."""
    arr = _array(w)
    arr[...] = V.real(value, "value", "constant_", finite=False)
    return arr


def zeros_(w: Target) -> np.ndarray:
    """Fill with zeros."""
    return constant_(w, 0.0)


def ones_(w: Target) -> np.ndarray:
    """Fill with ones."""
    return constant_(w, 1.0)


def kaiming_uniform_(w: Target, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", *, rng: RNG = None) -> np.ndarray:
    """He uniform: ``U(-bound, bound)``, ``bound = gain * sqrt(3 / fan)``.

    ``a`` is the negative slope of the leaky ReLU that follows (used in its gain); ``mode`` picks
    ``fan_in`` (keeps forward variance) or ``fan_out`` (keeps backward variance). He et al.,
    "Delving deep into rectifiers" (2015).
    """
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(w, mode))
    return uniform_(w, -bound, bound, rng=rng)


def kaiming_normal_(w: Target, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", *, rng: RNG = None) -> np.ndarray:
    """He normal: ``N(0, std^2)``, ``std = gain / sqrt(fan)``."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(w, mode))
    return normal_(w, 0.0, std, rng=rng)


def _glorot_std(w: Target, gain: float) -> float:
    fan_in, fan_out = calculate_fan_in_and_fan_out(w)
    if fan_in + fan_out < 1:
        raise ValueError(f"cannot initialise a weight of shape {_array(w).shape}: fans are 0.")
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def xavier_uniform_(w: Target, gain: float = 1.0, *, rng: RNG = None) -> np.ndarray:
    """Glorot uniform: ``U(-bound, bound)``, ``bound = gain * sqrt(6 / (fan_in + fan_out))``.

    Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
    networks" (2010).
    """
    bound = math.sqrt(3.0) * _glorot_std(w, gain)
    return uniform_(w, -bound, bound, rng=rng)


def xavier_normal_(w: Target, gain: float = 1.0, *, rng: RNG = None) -> np.ndarray:
    """Glorot normal: ``N(0, std^2)``, ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    return normal_(w, 0.0, _glorot_std(w, gain), rng=rng)


def default_init_(weight: Target, bias: Target | None = None, *, rng: RNG = None) -> None:
    """PyTorch's ``reset_parameters`` for ``Linear``, ``Conv*d`` and ``ConvTranspose*d``.

    ``weight ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (``kaiming_uniform_`` with ``a = sqrt(5)``)
    and then, drawn from the same generator, ``bias`` from the same interval.
    """
    gen = make_rng(rng)
    kaiming_uniform_(weight, math.sqrt(5), rng=gen)
    if bias is not None:
        fan_in, _ = calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, -bound, bound, rng=gen)
