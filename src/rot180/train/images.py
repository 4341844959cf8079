"""Reading user images into the model's input layout: see :mod:`rot180.data.images`.

Kept so that ``from rot180.train.images import load_images`` (the commands) goes on working.
"""

from __future__ import annotations

from ..data.images import load_images

__all__ = ["load_images"]
