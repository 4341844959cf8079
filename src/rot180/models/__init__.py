"""Model builders: ``lenet5`` and small VGG / ResNet networks, plus a registry by name."""

from .registry import MODELS, build_model
from .zoo import lenet5, resnet_small, vgg_small

__all__ = ["MODELS", "build_model", "lenet5", "resnet_small", "vgg_small"]
