"""rot180.data.images: user images made to look like the training set, and hostile image files.

Every picture is synthesised here with Pillow from a real MNIST digit of the embedded set
(or a real 8x8 digit), drawn the ways users draw them: small and off-centre on a large white
sheet, on a transparent background, as 16-bit or palette PNG, in a wide strip, as a noisy JPEG.
The oracle is the original digit: the preprocessed image must correlate with it (> 0.9) and
have its centre of mass within 1 px of MNIST's (14, 14).
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rot180.data import DataError, ImageWarning, load_dataset, load_images
from rot180.data.images import MAX_IMAGE_PIXELS, light_on_dark

DIGIT = load_dataset("mnist5k", split="test").images[5, 0]   # a 28x28 uint8 MNIST digit


def mass_centre(a: np.ndarray) -> np.ndarray:
    """(row, column) of the intensity-weighted mean index, written from the definition."""
    a = a.astype(np.float64)
    rows, cols = np.indices(a.shape)
    return np.array([(a * rows).sum(), (a * cols).sum()]) / a.sum()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


def big_ink(side: int = 84) -> np.ndarray:
    """The digit as light ink on black, enlarged (anti-aliased) to ``side`` px."""
    return np.asarray(Image.fromarray(DIGIT).resize((side, side), Image.Resampling.LANCZOS))


def assert_is_the_digit(path: Path) -> None:
    out = load_images([path], (1, 28, 28))
    assert out.shape == (1, 1, 28, 28) and out.dtype == np.uint8
    assert correlation(out[0, 0], DIGIT) > 0.9
    np.testing.assert_allclose(mass_centre(out[0, 0]), (14, 14), atol=1.0)


def _white_sheet(tmp_path: Path) -> Path:
    sheet = np.full((300, 400), 255, np.uint8)             # small, off-centre, dark on light
    sheet[200:284, 20:104] = 255 - big_ink()
    Image.fromarray(sheet).save(tmp_path / "sheet.png")
    return tmp_path / "sheet.png"


def _transparent(tmp_path: Path, ink_value: int) -> Path:
    rgba = np.zeros((200, 200, 4), np.uint8)               # ink colour everywhere, alpha = ink
    rgba[..., :3] = ink_value
    rgba[30:114, 90:174, 3] = big_ink()
    Image.fromarray(rgba, "RGBA").save(tmp_path / f"alpha_{ink_value}.png")
    return tmp_path / f"alpha_{ink_value}.png"


def _sixteen_bit(tmp_path: Path) -> Path:
    grey = np.full((120, 160), 65535, np.uint16)
    grey[10:94, 60:144] = 65535 - big_ink().astype(np.uint16) * 257
    Image.fromarray(grey).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode == "I;16"   # what Pillow opens: convert("L") would clip it to white
    return tmp_path / "g16.png"


def _palette(tmp_path: Path) -> Path:
    im = Image.fromarray(255 - np.pad(big_ink(), 40)).convert("RGB").quantize(16)
    im.save(tmp_path / "palette.png")
    return tmp_path / "palette.png"


def _palette_transparent(tmp_path: Path) -> Path:
    level = np.pad(big_ink(), 40) // 16              # 16 grey levels of dark ink, 0 transparent
    im = Image.fromarray(level.astype(np.uint8), "P")
    im.putpalette([c for i in range(16) for c in (255 - 17 * i,) * 3])
    im.save(tmp_path / "palette_trns.png", transparency=0)
    return tmp_path / "palette_trns.png"


def _wide(tmp_path: Path) -> Path:
    strip = np.full((90, 600), 255, np.uint8)
    strip[3:87, 400:484] = 255 - big_ink()
    Image.fromarray(strip).save(tmp_path / "wide.png")
    return tmp_path / "wide.png"


def _noisy_jpeg(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    faint = 255 - 0.7 * np.pad(big_ink(), (50, 80)).astype(np.float64)   # grey pencil
    noisy = np.clip(faint + rng.normal(0, 12, faint.shape), 0, 255).astype(np.uint8)
    noisy[5, 5] = noisy[200, 7] = 0                                       # two lone specks
    Image.fromarray(noisy).save(tmp_path / "noisy.jpg", quality=60)
    return tmp_path / "noisy.jpg"


@pytest.mark.parametrize("make", [_white_sheet, lambda p: _transparent(p, 0),
                                  lambda p: _transparent(p, 255), _sixteen_bit, _palette,
                                  _palette_transparent, _wide, _noisy_jpeg],
                         ids=["small-off-centre", "alpha-black-ink", "alpha-white-ink",
                              "16-bit", "palette", "palette-tRNS", "wide", "noisy-jpeg"])
def test_drawn_digit_becomes_the_mnist_digit(tmp_path, make):
    assert_is_the_digit(make(tmp_path))


def test_mnist_digits_pass_unchanged_in_either_polarity(tmp_path):
    """MNIST's own digits are already normalised: resampling would only blur them."""
    Image.fromarray(DIGIT).save(tmp_path / "wob.png")
    Image.fromarray(255 - DIGIT).save(tmp_path / "bow.png")
    out = load_images([tmp_path / "wob.png", tmp_path / "bow.png"], (1, 28, 28))
    np.testing.assert_array_equal(out[:, 0], [DIGIT, DIGIT])


@pytest.mark.parametrize("side", [16, 22])
def test_a_small_centred_digit_is_scaled_to_the_20px_box(tmp_path, side):
    """A centred 28x28 digit whose ink spans 11 or 16 px (MNIST's span 19-20) is enlarged."""
    small = np.asarray(Image.fromarray(DIGIT).resize((side, side), Image.Resampling.LANCZOS))
    Image.fromarray(np.pad(small, (28 - side) // 2)).save(tmp_path / "small.png")
    out = load_images([tmp_path / "small.png"], (1, 28, 28))[0, 0]
    rows, cols = np.flatnonzero((out > 76).any(1)), np.flatnonzero((out > 76).any(0))
    # enlarged 1.3-1.8x, its edges blur by a pixel either way (it stayed 11 or 16 px before)
    assert 19 <= max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 21
    assert correlation(out, DIGIT) > 0.8   # what a 16 px drawing keeps of the 28 px digit


def test_eight_by_eight_digits_fill_their_box(tmp_path):
    digits = load_dataset("digits8x8", split="test")
    original = digits.images[3, 0]                              # values 0-16, fills 8 rows
    drawn = np.kron(original.astype(np.float64) / 16, np.ones((10, 10)))
    sheet = np.full((150, 260), 255.0)
    sheet[60:140, 150:230] = 255 - 255 * drawn                   # dark on light, off-centre
    Image.fromarray(sheet.astype(np.uint8)).save(tmp_path / "eight.png")
    out = load_images([tmp_path / "eight.png"], (1, 8, 8))
    assert out.shape == (1, 1, 8, 8)
    assert correlation(out[0, 0], original) > 0.9
    assert (out[0, 0] > 64).any(axis=1).all()                   # ink on every row: fills it


def test_rgb_photo_is_resized_keeping_aspect_then_centre_cropped(tmp_path):
    photo = np.zeros((40, 80, 3), np.uint8)
    photo[:, :20] = (255, 0, 0)
    photo[:, 20:60] = (0, 200, 0)
    photo[:, 60:] = (0, 0, 255)
    Image.fromarray(photo).save(tmp_path / "wide.png")
    out = load_images([tmp_path / "wide.png"], (3, 32, 32))
    assert out.shape == (1, 3, 32, 32)
    # 40x80 -> 32x64 covers the box; the centre 32 columns are the green middle half.
    np.testing.assert_allclose(out[0, :, :, 2:-2].reshape(3, -1).mean(1), (0, 200, 0), atol=3)


@pytest.mark.parametrize("pixels", [np.full((50, 60), 128, np.uint8),
                                    np.random.default_rng(1).integers(120, 131, (50, 60))
                                    .astype(np.uint8)],
                         ids=["uniform", "faint-noise"])
def test_blank_or_nearly_uniform_image_warns_naming_the_file(tmp_path, pixels):
    Image.fromarray(pixels).save(tmp_path / "blank.png")
    with pytest.warns(ImageWarning, match=r"blank\.png: the image is blank or nearly uniform"):
        out = load_images([tmp_path / "blank.png"], (1, 28, 28))
    assert not out.any()
    with pytest.warns(ImageWarning, match="blank.png"):
        load_images([tmp_path / "blank.png"], (3, 32, 32))


def test_a_real_digit_does_not_warn(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_is_the_digit(_white_sheet(tmp_path))


def test_light_on_dark_ignores_one_bright_speck():
    sheet = np.ones((40, 40), np.float32)
    sheet[10:20, 10:20] = 0.0                  # dark ink
    sheet[30, 30] = sheet[2, 35] = 0.0         # lone specks do not decide anything either
    sheet[5, 5] = 1.0
    oriented, ink, contrast = light_on_dark(sheet)
    assert contrast == pytest.approx(1.0) and ink[15, 15] == 1.0 and ink[0, 0] == 0.0


@pytest.mark.parametrize(("shape", "style", "match"), [
    ((28, 28), None, r"shape must be \(C, H, W\)"),
    ((2, 28, 28), None, "C = 1 .grey. or 3"),
    ((1, 28, 28), "mnist", "Invalid style 'mnist', should be one of digit, fill, photo"),
    ((3, 32, 32), "digit", "for grey .1-channel. models"),
])
def test_bad_arguments(tmp_path, shape, style, match):
    Image.fromarray(DIGIT).save(tmp_path / "d.png")
    with pytest.raises(ValueError, match=match):
        load_images([tmp_path / "d.png"], shape, style=style)


# -- hostile image files ---------------------------------------------------------------------

def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` (1-bit grey) with a tiny IDAT: a decompression bomb
    as far as the header goes, built from the PNG specification."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


@pytest.mark.parametrize(("side", "match"), [
    (8000, r"8000 x 8000 = 64,000,000 pixels, more than the 40,000,000 read"),   # ours
    (20000, r"decompression bomb"),                        # Pillow refuses at its 2x limit
])
def test_decompression_bomb_is_refused_before_decoding(tmp_path, side, match):
    assert side * side > MAX_IMAGE_PIXELS
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(side, side))
    with pytest.raises(DataError, match=rf"bomb\.png: .*{match}"):
        load_images([bomb], (1, 28, 28))


def test_image_path_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "digit.png"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"digit\.png: is a FIFO \(named pipe\), not a regular"):
        load_images([fifo], (1, 28, 28))


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_image_path_that_is_a_device_is_refused(device):
    with pytest.raises(DataError, match=rf"{device}: is a character device"):
        load_images([Path(device)], (1, 28, 28))


def test_missing_and_unreadable_images(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DataError, match=r"notes\.png: not a readable image"):
        load_images([tmp_path / "notes.png"], (1, 28, 28))
    with pytest.raises(DataError, match=r"gone\.png: no such image file"):
        load_images([tmp_path / "gone.png"], (1, 28, 28))
    truncated = tmp_path / "cut.png"
    Image.fromarray(DIGIT).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(DataError, match=r"cut\.png: not a readable image"):
        load_images([truncated], (1, 28, 28))


def test_train_images_still_exports_load_images():
    from rot180.train.images import load_images as old

    assert old is load_images


def test_docs_images_examples_run():
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "images.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert blocks
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/images.md block {i}", "exec"), {})  # our own documentation
