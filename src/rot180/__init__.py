"""rot180: CNNs whose every backward pass is an explicit, hand-derived rule, proven against
PyTorch.

The heart is :mod:`rot180.functional`: ``conv`` and its gradients, where the input gradient is the
full correlation of the output delta with the kernel rotated by 180 degrees. Around it:
:mod:`rot180.nn` (layers with forward/backward), :mod:`rot180.optim`, :mod:`rot180.data`,
:mod:`rot180.models`, :mod:`rot180.train` and :mod:`rot180.explain`.

Every name is loaded on first use, so that ``import rot180`` imports nothing (not even numpy):
the command line starts inside :func:`rot180.cli.main`, where a Ctrl-C is one line, not a
traceback.
"""

import sys
import types
from typing import Any

__version__ = "0.1.0"
__all__ = ["CheckpointError", "DataError", "functional", "gradcheck", "load_checkpoint",
           "save_checkpoint", "__version__"]

_LAZY = {
    "save_checkpoint": "rot180.train.checkpoint",
    "load_checkpoint": "rot180.train.checkpoint",
    "CheckpointError": "rot180.train.checkpoint",
    "DataError": "rot180.data.errors",
}


_SUBPACKAGES = ("functional", "nn", "optim", "data", "models", "train", "explain")


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"rot180.{name}")
    raise AttributeError(f"module 'rot180' has no attribute {name!r}")


class _Package(types.ModuleType):
    """``rot180.gradcheck`` is the function, also once its module ``rot180.gradcheck`` is
    imported: importing a submodule sets the package attribute of its name, and this property
    ignores that (the module stays in ``sys.modules``)."""

    @property
    def gradcheck(self) -> Any:
        from .gradcheck import gradcheck

        return gradcheck

    @gradcheck.setter
    def gradcheck(self, value: Any) -> None:
        pass


sys.modules[__name__].__class__ = _Package
