"""Model builders: ``lenet5`` and small VGG / ResNet networks, plus a registry by name."""

from .registry import IMAGE_SIZES, MODELS, build_model, image_size_error
from .zoo import lenet5, resnet_small, vgg_small

__all__ = ["IMAGE_SIZES", "MODELS", "build_model", "image_size_error", "lenet5", "resnet_small",
           "vgg_small"]
