"""Layers with an explicit forward/backward pair; PyTorch's state_dict names and layouts."""

from .containers import Identity, Sequential
from .module import Module, Parameter, StateDictError

__all__ = ["Identity", "Module", "Parameter", "Sequential", "StateDictError"]
