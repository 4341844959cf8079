"""User images (PNG, JPEG, ...) made to look like the data a model was trained on.

``rot180 predict`` and ``rot180 saliency`` read photos, scans and drawings; a model only knows
its training set. :func:`load_images` reads each file exactly (alpha, 16-bit, palette) and then
does to it what was done to that training set (``docs/images.md`` shows the steps):

``"digit"`` (default for 1x28x28 models): MNIST's normalisation (LeCun et al.): light ink on
    black, cropped to the ink's bounding box, scaled to fit 20x20 keeping the aspect ratio
    (anti-aliased), pasted in 28x28 with its centre of mass at pixel (14, 14).
``"fill"`` (default for other grey shapes, e.g. the 8x8 digits): light ink on black, cropped
    to the ink, scaled to fit the whole box keeping the aspect ratio, centred. The box is drawn
    at 4x and averaged over 4x4 blocks, as the 8x8 digits were counted from 32x32 bitmaps.
``"photo"`` (default for RGB models, e.g. CIFAR-10): scaled keeping the aspect ratio until it
    covers the box, then the centre is cut out (a centre crop); colours are left as they are.

Reading: regular files only, at most :data:`MAX_IMAGE_BYTES` bytes and
:data:`MAX_IMAGE_PIXELS` pixels, checked from the header before anything is decoded. An image
that is blank or nearly uniform gives an :class:`~rot180.data.errors.ImageWarning`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import open_regular
from .errors import DataError, ImageWarning

__all__ = ["MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "STYLES", "load_images", "preprocess",
           "read_image"]

#: Largest image file read (bytes): a 40-megapixel PNG or JPEG is far smaller.
MAX_IMAGE_BYTES = 256 * 2**20
#: Largest image decoded (width x height), checked from the header before decoding: about
#: 7,300 x 5,500, more than any phone camera; 160 MB as float32 grey. Pillow's own limit
#: (89 megapixels, a warning; an error at twice that) never comes into play.
MAX_IMAGE_PIXELS = 40_000_000
#: The preprocessing styles; ``None`` picks one from the model's input shape.
STYLES = ("digit", "fill", "photo")

# Thresholds, in units of the image's own contrast (background 0, brightest ink 1).
_MIN_CONTRAST = 0.08   # below: blank or nearly uniform (about 20 of 255 grey levels)
_INK = 0.3             # a pixel is ink above this, if a neighbour is too (no lone specks)
_FLOOR = 0.1           # below this is background: JPEG ringing, sensor noise, paper grain
_MNIST_BOX, _MNIST_SIDE, _MNIST_CENTRE = 20, 28, 14.0
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as Pillow's convert("L")


def load_images(paths: Sequence[Path], shape: Sequence[int], *,
                style: str | None = None) -> np.ndarray:
    """Load images as uint8 ``(N, C, H, W)`` matching ``shape = (C, H, W)``.

    Parameters
    ----------
    paths : sequence of path
        Image files Pillow can read (PNG, JPEG, GIF, BMP, TIFF, WebP, ...).
    shape : (C, H, W)
        The model's input: ``C`` is 1 (grey) or 3 (RGB).
    style : {"digit", "fill", "photo"}, optional
        What is done to each image (module docstring). Default: ``"digit"`` for 1x28x28,
        ``"fill"`` for other grey shapes, ``"photo"`` for RGB.

    Shape
    -----
    ``(len(paths), C, H, W)``, uint8, 0-255 (light ink on black for grey models).

    Raises
    ------
    DataError
        A missing file, a FIFO or device, a file that is not an image, or one larger than
        :data:`MAX_IMAGE_BYTES` / :data:`MAX_IMAGE_PIXELS`; the message names the file.
    ValueError
        An unknown ``style`` or a shape that is not ``(1 or 3, H, W)``.

    Warns
    -----
    ImageWarning
        For each image that is blank or nearly uniform (its prediction means nothing).
    """
    c, h, w = _check_shape(shape)
    style = _pick_style(style, c, h, w)
    out = np.empty((len(paths), c, h, w), np.uint8)
    for n, path in enumerate(paths):
        out[n] = preprocess(read_image(path, grey=c == 1), (h, w), style=style, source=str(path))
    return out


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    dims = tuple(int(v) for v in shape)
    if len(dims) != 3 or dims[0] not in (1, 3) or min(dims) < 1:
        raise ValueError(f"shape must be (C, H, W) with C = 1 (grey) or 3 (RGB), got "
                         f"{tuple(shape)}. Pass the model's input shape, e.g. (1, 28, 28).")
    return dims  # type: ignore[return-value]


def _pick_style(style: str | None, c: int, h: int, w: int) -> str:
    if style is None:
        return "photo" if c == 3 else "digit" if (h, w) == (28, 28) else "fill"
    if style not in STYLES:
        raise ValueError(f"Invalid style {style!r}, should be one of {', '.join(STYLES)}.")
    if style != "photo" and c != 1:
        raise ValueError(f"style {style!r} is for grey (1-channel) models, the shape has {c} "
                         "channels. Use style='photo' for RGB models.")
    return style


# -- reading -------------------------------------------------------------------------------

def read_image(path: str | Path, *, grey: bool) -> np.ndarray:
    """One image file as float32 in [0, 1], alpha composited (see :func:`composite`).

    Palette, bilevel, 16-bit and CMYK images are converted exactly; EXIF orientation is
    applied. Shape ``(H, W)`` if ``grey`` (ITU-R 601 luma), else ``(H, W, 3)``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    with open_regular(path, max_bytes=MAX_IMAGE_BYTES, what="image file", error=DataError) \
            as (f, _), warnings.catch_warnings():
        # Pillow warns at 89 megapixels from the header; ours is lower and checked below.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(f) as im:   # reads the header only
                pixels = im.size[0] * im.size[1]
                if pixels > MAX_IMAGE_PIXELS:
                    raise DataError(f"{path}: {im.size[0]} x {im.size[1]} = {pixels:,} pixels, "
                                    f"more than the {MAX_IMAGE_PIXELS:,} read (a decompression "
                                    "bomb, or a photo far larger than needed). Shrink it "
                                    "first.")
                colour, alpha = _to_float(ImageOps.exif_transpose(im))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DataError(f"{path}: refused by Pillow as a decompression bomb ({exc}).") \
                from None
        except (UnidentifiedImageError, OSError, SyntaxError, EOFError, ValueError) as exc:
            # (Pillow's decoders raise ValueError too: "not enough image data" for a truncated
            # QOI, int() of a PPM's bad maxval.)
            raise DataError(f"{path}: not a readable image ({exc}). Pass a PNG or JPEG "
                            "file.") from None
    if grey and colour.ndim == 3:
        colour = colour @ _LUMA
    elif not grey and colour.ndim == 2:
        colour = np.repeat(colour[..., None], 3, axis=2)
    return colour if alpha is None else composite(colour, alpha)


def _to_float(im: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """``(colour, alpha)`` in [0, 1]: colour ``(H, W)`` or ``(H, W, 3)``; alpha or None."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":     # 16-bit grey (PNG, TIFF): all its bits
        return np.asarray(im, np.float32) / 65535.0, None
    if mode == "F":                                # float TIFF: 0-1, or 0-255 if larger
        a = np.nan_to_num(np.asarray(im, np.float32))
        return np.clip(a / (255.0 if a.max(initial=0) > 1 else 1.0), 0, 1), None
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:                                  # palette tRNS and colour keys included
        a = np.asarray(im.convert("RGBA"), np.float32) / 255.0
        return a[..., :3], a[..., 3]
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"), np.float32) / 255.0, None
    return np.asarray(im.convert("RGB"), np.float32) / 255.0, None


def composite(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``colour`` over the background its transparent pixels imply, per pixel ``alpha``.

    Transparent means background. If the opaque pixels are all one tone (ink drawn on a
    transparent sheet, its edges anti-aliased by alpha), the background is the opposite tone:
    white under dark ink, black under light ink. Otherwise the tone is that of the opaque
    pixels next to transparent ones (the median): the paper around a drawing, or the light
    anti-aliased edge of dark ink.
    """
    grey = colour @ _LUMA if colour.ndim == 3 else colour
    opaque = alpha > 0.5
    tones = grey[opaque]
    edge = opaque & _neighbours(~opaque, np.logical_or)
    if tones.size == 0:
        tone = 1.0
    elif np.percentile(tones, 95) - np.percentile(tones, 5) < 0.25:
        tone = 1.0 if float(np.median(tones)) < 0.5 else 0.0
    else:
        tone = float(np.median(grey[edge] if edge.any() else tones))
    a = alpha[..., None] if colour.ndim == 3 else alpha
    return (colour * a + tone * (1.0 - a)).astype(np.float32)


# -- preprocessing ---------------------------------------------------------------------------

def preprocess(image: np.ndarray, size: tuple[int, int], *, style: str,
               source: str = "<image>") -> np.ndarray:
    """Make one image from :func:`read_image` look like ``style``'s training set.

    Shape
    -----
    ``image`` ``(H0, W0)`` (grey) or ``(H0, W0, 3)``; returns uint8 ``(1 or 3, H, W)`` with
    ``(H, W) = size``.
    """
    if style == "photo":
        out = _cover_crop(image, size)
        if _spread(out) < _MIN_CONTRAST:
            _warn_blank(source, _spread(out))
        return _to_uint8(out if out.ndim == 3 else out[..., None]).transpose(2, 0, 1)
    oriented, ink, contrast = light_on_dark(image)
    if contrast < _MIN_CONTRAST:
        _warn_blank(source, contrast)
        return np.zeros((1, *size), np.uint8)
    box = ink_box(ink)
    if style == "digit":
        out = oriented if _is_mnist_form(oriented, box, size) else _mnist_digit(ink, box, size)
    else:
        out = _fill_box(ink, box, size)
    return _to_uint8(out)[None]


def light_on_dark(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(oriented, ink, contrast)``: ``grey`` as light ink on black, then levels stretched.

    The background is the median of the border pixels. The ink is on whichever side of it
    reaches further, measured on each pixel's agreement with its brightest (or darkest)
    neighbour so that one noisy pixel decides nothing. Dark ink is inverted. Then background
    maps to 0 and the ink's peak to 1, and values under 0.1 (JPEG ringing, noise) become 0.
    ``oriented`` is the image before that stretch. ``contrast`` is the peak minus the
    background, in units of full scale: under 0.08 the image is blank or nearly uniform and
    ``ink`` is ``oriented``.
    """
    grey = np.asarray(grey, np.float32)
    border = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
    background = float(np.median(border))
    light = float(np.minimum(grey, _neighbours(grey, np.maximum)).max()) - background
    dark = background - float(np.maximum(grey, _neighbours(grey, np.minimum)).min())
    if dark > light:
        grey, background, contrast = 1.0 - grey, 1.0 - background, dark
    else:
        contrast = light
    if contrast < _MIN_CONTRAST:
        return grey, grey, contrast
    ink = np.clip((grey - background) / contrast, 0.0, 1.0)
    ink[ink < _FLOOR] = 0.0
    return grey, ink, contrast


def ink_box(ink: np.ndarray) -> tuple[slice, slice]:
    """Bounding box of the ink: pixels over 0.3 that have a neighbour over 0.3 too."""
    strong = ink > _INK
    mask = strong & _neighbours(strong, np.logical_or)
    if not mask.any():        # only lone specks: keep them rather than nothing
        mask = strong
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _neighbours(a: np.ndarray, combine: Any) -> np.ndarray:
    """``combine`` (max, min, or) over each pixel's 8 neighbours; edges repeat the border."""
    p = np.pad(a, 1, mode="edge")
    h, w = a.shape
    out = None
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy == dx == 1:
                continue
            shifted = p[dy:dy + h, dx:dx + w]
            out = shifted.copy() if out is None else combine(out, shifted, out=out)
    return out


def _is_mnist_form(oriented: np.ndarray, box: tuple[slice, slice],
                   size: tuple[int, int]) -> bool:
    """Already normalised as MNIST's own digits are: 28x28, black background, the ink 19-20 px
    on its long side, its mass within 1 px of (14, 14). Such an image is kept as it is:
    resampling it again would only blur it."""
    if oriented.shape != size or size != (_MNIST_SIDE, _MNIST_SIDE):
        return False
    long_side = max(box[0].stop - box[0].start, box[1].stop - box[1].start)
    border = np.concatenate([oriented[0], oriented[-1], oriented[:, 0], oriented[:, -1]])
    return (19 <= long_side <= _MNIST_BOX and float(np.median(border)) <= 0.05
            and np.abs(np.subtract(_centre_of_mass(oriented), _MNIST_CENTRE)).max() <= 1.0)


def _mnist_digit(ink: np.ndarray, box: tuple[slice, slice], size: tuple[int, int]) -> np.ndarray:
    """LeCun's MNIST: fit the ink's box in 20x20 keeping aspect, centre of mass at (14, 14).

    For another ``size`` both scale by ``size / 28``. The centring shift is whole pixels, as
    MNIST's was, and is clamped so that no ink leaves the canvas.
    """
    crop = ink[box]
    fit = _MNIST_BOX * min(size) / _MNIST_SIDE
    scale = fit / max(crop.shape)
    small = _resize(crop, (max(1, round(crop.shape[0] * scale)),
                           max(1, round(crop.shape[1] * scale))))
    cy, cx = _centre_of_mass(small)
    out = np.zeros(size, np.float32)
    top = _clamp(round(_MNIST_CENTRE * size[0] / _MNIST_SIDE - cy), size[0] - small.shape[0])
    left = _clamp(round(_MNIST_CENTRE * size[1] / _MNIST_SIDE - cx), size[1] - small.shape[1])
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    return out


def _fill_box(ink: np.ndarray, box: tuple[slice, slice], size: tuple[int, int]) -> np.ndarray:
    """The ink's box scaled to fit the whole output keeping aspect, centred; drawn at 4x and
    averaged over 4x4 blocks (the 8x8 digits are 4x4 block counts of 32x32 bitmaps)."""
    crop = ink[box]
    big = (4 * size[0], 4 * size[1])
    scale = min(big[0] / crop.shape[0], big[1] / crop.shape[1])
    fitted = _resize(crop, (max(1, min(big[0], round(crop.shape[0] * scale))),
                            max(1, min(big[1], round(crop.shape[1] * scale)))))
    canvas = np.zeros(big, np.float32)
    top, left = (big[0] - fitted.shape[0]) // 2, (big[1] - fitted.shape[1]) // 2
    canvas[top:top + fitted.shape[0], left:left + fitted.shape[1]] = fitted
    return canvas.reshape(size[0], 4, size[1], 4).mean(axis=(1, 3))


def _cover_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale keeping aspect until ``size`` is covered, then cut out the centre."""
    h0, w0 = image.shape[:2]
    scale = max(size[0] / h0, size[1] / w0)
    hs, ws = max(size[0], round(h0 * scale)), max(size[1], round(w0 * scale))
    top, left = (hs - size[0]) // 2, (ws - size[1]) // 2
    planes = image[..., None] if image.ndim == 2 else image
    out = np.stack([_resize(planes[..., k], (hs, ws))[top:top + size[0], left:left + size[1]]
                    for k in range(planes.shape[2])], axis=-1)
    return out if image.ndim == 3 else out[..., 0]


def _resize(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Anti-aliased (Lanczos) resize of one float plane to ``size = (H, W)``, clipped to [0, 1]."""
    from PIL import Image

    if plane.shape == size:
        return plane.astype(np.float32)
    im = Image.fromarray(np.ascontiguousarray(plane, np.float32))
    small = im.resize((size[1], size[0]), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(small, np.float32), 0.0, 1.0)


def _centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    """``(row, column)`` of the intensity-weighted mean pixel index."""
    total = float(a.sum())
    if total <= 0:
        return (a.shape[0] - 1) / 2, (a.shape[1] - 1) / 2
    return (float(a.sum(axis=1) @ np.arange(a.shape[0])) / total,
            float(a.sum(axis=0) @ np.arange(a.shape[1])) / total)


def _clamp(offset: int, room: int) -> int:
    """An offset in ``[0, room]``: the patch stays inside the canvas."""
    return min(max(offset, 0), room)


def _spread(image: np.ndarray) -> float:
    return float(np.percentile(image, 99) - np.percentile(image, 1))


def _to_uint8(a: np.ndarray) -> np.ndarray:
    return np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


def _warn_blank(source: str, contrast: float) -> None:
    warnings.warn(f"{source}: the image is blank or nearly uniform (contrast {contrast:.1%} "
                  f"of full scale, under {_MIN_CONTRAST:.0%}); its prediction means nothing. "
                  "Check that this is the right file and that the digit is visible.",
                  ImageWarning, stacklevel=3)
