"""Drawing helpers shared by the figures: palette, cell grids, mathtext labels, saving.

Figures are built on :class:`matplotlib.figure.Figure` directly, never through ``pyplot``, so
drawing changes no global backend or state and works headless (Agg). Every file is encoded in
memory and written atomically.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .._files import write_file

if TYPE_CHECKING:
    import sympy as sp

# Okabe-Ito based, colour-blind safe; one colour per kernel tap (w11 is always blue).
TAP_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#8C564B",
              "#7F7F7F", "#BCBD22", "#17BECF")
INK = "#222222"
GRID_EDGE = "#555555"
DELTA_FACE = "#FFF4D6"     # a delta cell
PAD_FACE = "#EDEDED"       # a padding zero
STRETCH_FACE = "#FFFFFF"   # a zero inserted by the stride (hatched)
REMAINDER_FACE = "#F6D5D5"  # the extra a cells of the stride remainder
DPI = 100


def tex(s: sp.Basic | str) -> str:
    """Mathtext for a symbol (``$\\delta_{11}$``), a number, or a string kept as it is."""
    import sympy as sp  # here, not at the top: saliency figures (rot180[run]) draw without it

    from .document import symbol_tex

    if isinstance(s, sp.Symbol):
        return f"${symbol_tex(s.name)}$"
    if isinstance(s, sp.Basic):
        return f"${sp.latex(s)}$"
    return str(s)


def tap_colors(w: np.ndarray) -> dict[sp.Symbol, str]:
    """Colour of every kernel symbol, by its position in ``w`` (C order)."""
    return {s: TAP_COLORS[n % len(TAP_COLORS)] for n, s in enumerate(np.asarray(w).ravel())}


def as2d(a: np.ndarray) -> np.ndarray:
    """A 1-D array as one row; 2-D unchanged."""
    return a.reshape(1, -1) if a.ndim == 1 else a


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, facecolor="white")
    return fig


def cell_axes(ax: Axes, rows: int, cols: int, margin: float = 0.08) -> None:
    """Square cells, row 0 at the top, no frame."""
    ax.set_xlim(-margin, cols + margin)
    ax.set_ylim(rows + margin, -margin)
    ax.set_aspect("equal")
    ax.axis("off")


def draw_cells(ax: Axes, labels: Sequence[Sequence[str]], *, faces: object = "white",
               x0: float = 0.0, y0: float = 0.0, fontsize: float = 11,
               colors: object = INK, hatches: object = None, edge: str = GRID_EDGE,
               lw: float = 0.8) -> None:
    """Draw a grid of labelled unit cells with its top-left corner at ``(x0, y0)``.

    ``faces``, ``colors`` and ``hatches`` are one value (a colour may be an RGB tuple) or a
    grid of values (a list of lists).
    """
    def at(v: object, r: int, c: int) -> object:
        return v[r][c] if isinstance(v, list | np.ndarray) else v

    for r, row in enumerate(labels):
        for c, text in enumerate(row):
            hatch = at(hatches, r, c) if hatches is not None else None
            ax.add_patch(Rectangle((x0 + c, y0 + r), 1, 1, facecolor=at(faces, r, c),
                                   edgecolor=edge, lw=lw, hatch=hatch))
            if text:
                ax.text(x0 + c + 0.5, y0 + r + 0.5, text, ha="center", va="center",
                        fontsize=fontsize, color=at(colors, r, c))


def outline(ax: Axes, r: float, c: float, h: float, w: float, color: str, lw: float = 2.5,
            **kw: object) -> None:
    ax.add_patch(Rectangle((c, r), w, h, fill=False, edgecolor=color, lw=lw, **kw))


def draw_terms(ax: Axes, x: float, y: float, terms: Sequence[Sequence[sp.Basic]],
               colors: dict, step: float, fontsize: float = 12) -> None:
    """Write a sum one product per line, centred on ``(x, y)``, each line in the colour of its
    kernel weight (``0`` for an empty sum)."""
    import sympy as sp

    lines = list(terms) or [(sp.Integer(0),)]
    top = y - step * (len(lines) - 1) / 2
    for n, term in enumerate(lines):
        weight = next((a for a in term if str(a).startswith("w")), None)
        ax.text(x, top + n * step, "$" + r"\,".join(tex(a).strip("$") for a in term) + "$",
                ha="center", va="center", fontsize=fontsize, color=colors.get(weight, INK))


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """The figure encoded as ``fmt`` (png, svg), in memory, at its own size (no tight crop, so
    a PNG is exactly ``figsize * dpi`` pixels); SVGs carry no date, so they are reproducible."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI, facecolor="white",
                metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()


def save(fig: Figure, out_dir: Path, stem: str, formats: Sequence[str] = ("png", "svg")
         ) -> list[Path]:
    """Save as ``stem.png`` and ``stem.svg``, each encoded in memory and written atomically
    (:func:`rot180._files.atomic_write_bytes`): a full disk leaves the previous file or none,
    never an empty or truncated one."""
    paths = []
    for fmt in formats:
        path = Path(out_dir) / f"{stem}.{fmt}"
        write_file(path, figure_bytes(fig, fmt), "figure")
        paths.append(path)
    return paths
