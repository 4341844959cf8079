"""rot180: CNNs whose every backward pass is an explicit, hand-derived rule, proven against
PyTorch.

The heart is :mod:`rot180.functional`: ``conv`` and its gradients, where the input gradient is the
full correlation of the output delta with the kernel rotated by 180 degrees.
"""

from . import functional
from .gradcheck import gradcheck

__version__ = "0.1.0"
__all__ = ["functional", "gradcheck", "__version__"]
