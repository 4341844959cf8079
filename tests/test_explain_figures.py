"""The figures of ``rot180 explain --out``: all produced, non-empty, of the expected pixel size,
and drawn from the derivation (not from fixed pictures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rot180.explain.figures import (
    MAX_FIGURE_CELLS,
    delta_table_figure,
    network_figure,
    unrolled_figure,
    write_figures,
)
from rot180.explain.symbolic import derive_input_gradient
from rot180.explain.windows import cell_kinds, stretch_figure, windows_figure

# Pixel sizes of the article's example (3x3 input, 2x2 kernel): figsize x 100 dpi, never cropped.
DEFAULT_SIZES = {
    "network": (1300, 495), "delta_table": (575, 611), "windows": (864, 1073),
    "unrolled": (910, 625), "stretch": (1224, 568), "pooling": (814, 618),
}


@pytest.fixture(scope="module")
def default_figures(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("figures")
    der = derive_input_gradient((3, 3), (2, 2), convention="convolution")
    paths = write_figures(der, out)
    assert len(paths) == 13 and all(p.parent == out for p in paths)
    return out


@pytest.mark.parametrize("stem", sorted(DEFAULT_SIZES))
def test_default_png_and_svg(default_figures, stem):
    png, svg = default_figures / f"{stem}.png", default_figures / f"{stem}.svg"
    with Image.open(png) as im:
        assert im.format == "PNG"
        assert im.size == DEFAULT_SIZES[stem]
        pixels = np.asarray(im.convert("L"))
    assert (pixels < 128).mean() > 0.002          # something dark was drawn, not a blank page
    assert png.stat().st_size < 200_000
    text = svg.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "</svg>" in text


def test_default_gif(default_figures):
    """One frame per input cell, each the same size, differing from frame to frame."""
    with Image.open(default_figures / "sweep.gif") as im:
        assert im.format == "GIF" and im.n_frames == 9 and im.size == (662, 471)
        frames = []
        for n in range(im.n_frames):
            im.seek(n)
            frames.append(np.asarray(im.convert("L"), dtype=np.int16))
    assert all(np.abs(a - b).sum() > 0 for a, b in zip(frames, frames[1:], strict=False))


@pytest.mark.parametrize(("make", "args"), [
    (network_figure, ((5,), (2,), {"dilation": 2})),
    (delta_table_figure, ((4, 3), (2, 2), {"stride": 2, "padding": 1})),
    (unrolled_figure, ((4,), (3,), {"padding": "full"})),
    (windows_figure, ((5,), (3,), {"stride": 2, "convention": "correlation"})),
    (stretch_figure, ((5, 5), (3, 3), {"stride": 2, "padding": 1, "dilation": (1, 2)})),
])
def test_other_configurations(tmp_path, make, args):
    """Sizes follow the configuration; the saved PNG is exactly the figure's declared size."""
    i, k, kw = args
    fig = make(derive_input_gradient(i, k, **kw))
    w, h = (fig.get_size_inches() * fig.dpi).round().astype(int)
    path = tmp_path / "f.png"
    fig.savefig(path, dpi=fig.dpi)
    with Image.open(path) as im:
        assert im.size == (w, h)
    assert 300 < w < 3000 and 150 < h < 3000


def test_figures_follow_the_size():
    small = network_figure(derive_input_gradient((3, 3), (2, 2)))
    big = network_figure(derive_input_gradient((5, 5), (2, 2)))
    assert big.get_figheight() > small.get_figheight()


def test_cell_kinds_mark_inserted_zeros_padding_and_remainder():
    """Input 6, kernel 2, stride 2, dilation 2: o = 2, a = 1, pads (2, 3) around δ1 0 δ2."""
    der = derive_input_gradient(6, 2, stride=2, dilation=2)
    kinds = cell_kinds(der)[0].tolist()
    assert kinds == ["pad", "pad", "delta", "stretch", "delta", "pad", "pad", "rem"]
    values = [str(v) for v in der.arrays["padded_delta"][0]]
    assert [v for v, k in zip(values, kinds, strict=True) if k == "delta"] == ["δ1", "δ2"]


def test_channels_draw_the_single_channel_twin(tmp_path):
    der = derive_input_gradient((3, 3), (2, 2), channels=(2, 2))
    with pytest.raises(ValueError, match="draws one channel"):
        network_figure(der)
    paths = write_figures(der, tmp_path)
    with Image.open(tmp_path / "delta_table.png") as im:
        assert im.size == DEFAULT_SIZES["delta_table"]
    assert len(paths) == 13


def test_too_large_for_figures(tmp_path):
    der = derive_input_gradient((8, 8), (2, 2))
    assert der.cells > MAX_FIGURE_CELLS
    with pytest.raises(ValueError, match="at most 49 input cells"):
        write_figures(der, tmp_path)
    assert not any(tmp_path.iterdir())
