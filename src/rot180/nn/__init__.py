"""Layers with an explicit forward/backward pair; PyTorch's state_dict names and layouts."""

from . import init
from .activation import LeakyReLU, ReLU, Sigmoid, Tanh
from .containers import Identity, Sequential
from .conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .dropout import Dropout
from .flatten import Flatten
from .linear import Linear
from .loss import Loss, MSELoss, SoftmaxCrossEntropy
from .module import Module, Parameter, StateDictError
from .normalization import BatchNorm1d, BatchNorm2d, BatchNorm3d
from .pool import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveAvgPool3d,
    AvgPool1d,
    AvgPool2d,
    AvgPool3d,
    GlobalAvgPool2d,
    MaxPool1d,
    MaxPool2d,
    MaxPool3d,
)
from .residual import Residual

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
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2d",
    "LeakyReLU",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "ReLU",
    "Residual",
    "Sigmoid",
    "Tanh",
]
