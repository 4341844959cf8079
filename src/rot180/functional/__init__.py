"""Stateless math on numpy arrays: convolution and its rot180 backward, pooling, activations,
losses, shape arithmetic and reference oracles. Imports nothing else from rot180."""

from . import reference, shapes
from .conv import conv, conv_grad_bias, conv_grad_input, conv_grad_weight, rot180

__all__ = [
    "conv",
    "conv_grad_bias",
    "conv_grad_input",
    "conv_grad_weight",
    "reference",
    "rot180",
    "shapes",
]
