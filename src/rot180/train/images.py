"""Reading user images (PNG/JPEG) into the model's input layout with Pillow."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["load_images"]


def load_images(paths: Sequence[Path], shape: Sequence[int]) -> np.ndarray:
    """Load images as uint8 ``(N, C, H, W)`` matching ``shape = (C, H, W)``.

    Grey models get a grey image; digits drawn dark on a light background (the usual photo or
    scan) are inverted to MNIST's light-on-dark convention, decided by the mean brightness of the
    border pixels.
    """
    from PIL import Image, UnidentifiedImageError

    c, h, w = (int(v) for v in shape)
    out = np.empty((len(paths), c, h, w), np.uint8)
    for n, path in enumerate(paths):
        try:
            with Image.open(path) as im:
                im = im.convert("L" if c == 1 else "RGB").resize((w, h), Image.Resampling.LANCZOS)
                a = np.asarray(im, dtype=np.uint8)
        except FileNotFoundError:
            raise ValueError(f"{path}: no such image file. Check the path.") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(
                f"{path}: not a readable image ({exc}). Pass a PNG or JPEG file."
            ) from None
        a = a[None] if c == 1 else a.transpose(2, 0, 1)
        border = np.concatenate([a[:, 0].ravel(), a[:, -1].ravel(), a[:, :, 0].ravel(),
                                 a[:, :, -1].ravel()])
        if c == 1 and border.mean() > 127:
            a = 255 - a
        out[n] = a
    return out
