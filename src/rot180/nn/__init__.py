"""Layers with an explicit forward/backward pair; PyTorch's state_dict names and layouts."""

from . import init
from .containers import Identity, Sequential
from .conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .linear import Linear
from .loss import Loss, MSELoss, SoftmaxCrossEntropy
from .module import Module, Parameter, StateDictError

__all__ = [
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "Linear",
    "Loss",
    "MSELoss",
    "SoftmaxCrossEntropy",
    "init",
    "Identity",
    "Module",
    "Parameter",
    "Sequential",
    "StateDictError",
]
