"""Figures of a derivation: the layer as a network, the delta table, the unrolled matrix,
pooling; and :func:`write_figures`, which writes every figure of ``rot180 explain --out``.

Each ``*_figure`` function returns a :class:`matplotlib.figure.Figure` of a fixed size
(``figsize * 100`` pixels), drawn for a single-channel :class:`Derivation`. The sliding-window
pictures live in :mod:`rot180.explain.windows`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import sympy as sp
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from . import _draw as D
from .document import linear
from .pooling import PoolingExample, pooling_example
from .report import describe
from .symbolic import Derivation

__all__ = ["MAX_FIGURE_CELLS", "delta_table_figure", "network_figure", "pooling_figure",
           "unrolled_figure", "write_figures"]

MAX_FIGURE_CELLS = 49   # beyond 7x7 input cells the pictures stop being readable


def _single(d: Derivation, what: str) -> None:
    if d.channels is not None:
        raise ValueError(
            f"{what} draws one channel; got channels={d.channels}. Derive the single-channel "
            "layer (channels=None) for the figures."
        )


def _terms(expr: sp.Basic, rank: dict) -> list[tuple[sp.Symbol, ...]]:
    return linear(expr, "δw", rank).terms


def _rank(d: Derivation) -> dict:
    arr = d.arrays
    return {s: n for a in (arr["x"], arr["w"], arr["delta_out"]) for n, s in enumerate(a.ravel())}


# -- (a) fully connected -> cut connections -> shared weights -------------------------------
def network_figure(d: Derivation) -> Figure:
    """Three panels: the MLP fully connected, with the connections a convolution cuts, and with
    the surviving edges coloured by the (shared) kernel weight they carry."""
    _single(d, "network_figure")
    arr = d.arrays
    xs, zs = list(arr["x"].ravel()), list(arr["delta_out"].ravel())
    n_in, n_out = len(xs), len(zs)
    colors = D.tap_colors(arr["w"])
    rows = max(n_in, n_out)
    H = 1.35 + 0.4 * rows
    fig = D.new_figure(13.0, H)
    fig.suptitle("A convolutional layer is an MLP with cut connections and shared weights",
                 fontsize=14, y=1 - 0.1 / H, va="top")
    fig.text(0.5, 1 - 0.45 / H, describe(d) + f", {d.convention}", ha="center", va="top",
             fontsize=10, color="#555555")

    def ys(n: int) -> np.ndarray:
        return (rows - 1) / 2 + (np.arange(n) - (n - 1) / 2)

    y_in, y_out = ys(n_in), ys(n_out)
    kept = {(np.ravel_multi_index(e.inp, arr["x"].shape),
             np.ravel_multi_index(e.out, arr["delta_out"].shape)): e.weight for e in d.edges}
    n_weights = len(set(kept.values()))
    titles = (f"1. fully connected: {n_in * n_out} edges, {n_in * n_out} weights",
              f"2. cut connections: {len(kept)} edges left",
              f"3. shared weights: {n_weights} kernel weights")
    for p, title in enumerate(titles):
        ax = fig.add_axes((0.02 + p * 0.315, 0.15 / H, 0.27, (H - 1.3) / H))
        ax.set_xlim(-0.45, 1.45)
        ax.set_ylim(rows - 0.5, -0.5)
        ax.axis("off")
        ax.set_title(title, fontsize=11, pad=10)
        for i, yi in enumerate(y_in):
            for o, yo in enumerate(y_out):
                w = kept.get((i, o))
                if p == 0:
                    style = {"color": "#A0A0A0", "lw": 0.7}
                elif w is None:
                    style = {"color": "#E2E2E2", "lw": 0.6, "ls": (0, (2, 3))} if p == 1 else None
                else:
                    style = ({"color": "#555555", "lw": 1.3} if p == 1 else
                             {"color": colors[w], "lw": 2.4})
                if style is not None:
                    ax.add_line(Line2D([0, 1], [yi, yo], zorder=1, **style))
        for nodes, x, labels, side in ((y_in, 0.0, xs, -1), (y_out, 1.0, zs, 1)):
            ax.scatter(np.full(len(nodes), x), nodes, s=110, facecolor="white",
                       edgecolor=D.INK, linewidth=1.3, zorder=3)
            for y, s in zip(nodes, labels, strict=True):
                name = s if side < 0 else sp.Symbol("z" + s.name[1:])
                ax.text(x + side * 0.09, y, D.tex(name), ha="right" if side < 0 else "left",
                        va="center", fontsize=11, zorder=4)
    handles = [Patch(facecolor=colors[s], label=D.tex(s))
               for s in arr["w"].ravel() if s in set(kept.values())]
    fig.legend(handles=handles, loc="center right", fontsize=11, frameon=False,
               title="kernel weight", title_fontsize=10, bbox_to_anchor=(0.998, 0.5))
    return fig


# -- (b) the input-delta table ---------------------------------------------------------------
def delta_table_figure(d: Derivation) -> Figure:
    """The input deltas by the chain rule, laid out like the input; each term in the colour of
    its kernel weight."""
    _single(d, "delta_table_figure")
    arr, rank = d.arrays, _rank(d)
    grid = D.as2d(arr["delta_in"][0])
    colors = D.tap_colors(arr["w"])
    terms = [[_terms(v, rank) for v in row] for row in grid]
    most = max(1, max(len(t) for row in terms for t in row))
    rows, cols = grid.shape
    cw, ch = 1.75, 0.42 + 0.3 * most
    W, H = 0.5 + cols * cw, 1.25 + rows * ch
    fig = D.new_figure(max(W, 4.6), H)
    W = fig.get_figwidth()
    ax = fig.add_axes(((W - cols * cw) / 2 / W, 0.2 / H, cols * cw / W, rows * ch / H))
    ax.set_xlim(-0.01, cols + 0.01)
    ax.set_ylim(rows + 0.01, -0.01)
    ax.axis("off")
    fig.suptitle("∂C/∂x by the chain rule", fontsize=13, y=1 - 0.1 / H, va="top")
    fig.text(0.5, 1 - 0.48 / H, "each input collects δ · w from the outputs it feeds",
             ha="center", va="top", fontsize=10, color="#555555")
    xs = D.as2d(arr["x"][0])
    for r in range(rows):
        for c in range(cols):
            share = len(terms[r][c]) / most
            face = (1 - 0.16 * share, 1 - 0.09 * share, 1 - 0.02 * share)
            D.draw_cells(ax, [[""]], faces=face, x0=c, y0=r)
            ax.text(c + 0.04, r + 0.06, D.tex(xs[r, c]), ha="left", va="top", fontsize=9,
                    color="#666666")
            D.draw_terms(ax, c + 0.5, r + 0.54, terms[r][c], colors, 0.3 / ch)
    return fig


# -- (d) the unrolled matrix and its transpose -----------------------------------------------
def unrolled_figure(d: Derivation) -> Figure:
    """``W`` (z = W x) and ``Wᵀ`` (∂C/∂x = Wᵀ δ) as heat maps coloured by kernel weight."""
    _single(d, "unrolled_figure")
    arr = d.arrays
    W = d.unrolled
    colors = D.tap_colors(arr["w"])
    xs, ds = list(arr["x"].ravel()), list(arr["delta_out"].ravel())
    zs = [sp.Symbol("z" + s.name[1:]) for s in ds]
    n_out, n_in = W.shape
    cell = 0.5
    width = (n_in + n_out) * cell + 2.6
    height = max(n_out, n_in) * cell + 1.75
    fig = D.new_figure(width, height)
    fig.suptitle("The layer unrolled: z = W x, and back-propagation: ∂C/∂x = Wᵀ δ",
                 fontsize=13, y=1 - 0.1 / height, va="top")
    for p, (mat, rows, cols, title) in enumerate((
            (W, zs, xs, "W (rows: outputs, columns: inputs)"),
            (W.T, xs, ds, "Wᵀ (rows: inputs, columns: deltas)"))):
        nr, nc = len(rows), len(cols)
        left = (0.75 + (p * (n_in * cell + 1.2))) / width
        ax = fig.add_axes((left, (height - 1.25 - nr * cell) / height,
                           nc * cell / width, nr * cell / height))
        D.cell_axes(ax, nr, nc, margin=0.02)
        labels = [[D.tex(mat[r, c]) if mat[r, c] != 0 else "" for c in range(nc)]
                  for r in range(nr)]
        faces = [[colors.get(mat[r, c], "white") if mat[r, c] != 0 else "white"
                  for c in range(nc)] for r in range(nr)]
        D.draw_cells(ax, labels, faces=faces, colors="white", fontsize=10, edge="#BBBBBB")
        for r, s in enumerate(rows):
            ax.text(-0.15, r + 0.5, D.tex(s), ha="right", va="center", fontsize=10)
        for c, s in enumerate(cols):
            ax.text(c + 0.5, -0.15, D.tex(s), ha="center", va="bottom", fontsize=10,
                    rotation=90 if nc > 12 else 0)
        ax.text(nc / 2, -0.95, title, ha="center", va="bottom", fontsize=11)
        if p == 0 and n_in > n_out + 2:
            ax.text(0, nr + 0.8, "Each row of W is the forward kernel, shifted along the "
                    "input:\nthe zeros are cut connections, the repeated weights are shared.\n"
                    "Row x of Wᵀ lists the weights input x meets on its way out:\nits delta "
                    "is the sum of those weights, each times the delta of its column.",
                    ha="left", va="top", fontsize=10, color="#444444", linespacing=1.5)
    return fig


# -- (f) pooling upsample --------------------------------------------------------------------
_WINDOW_TINTS = ("#DCEAF7", "#FBE5C8", "#D5EFE4", "#F3DCEB", "#FAD9CC", "#E2F1FB")


def pooling_figure(examples: list[PoolingExample] | None = None) -> Figure:
    """One row per pooling mode: the input with its windows, the output, the delta, and the
    input gradient by the upsample rule (mean: δ/K over the window; max: δ to the argmax)."""
    if examples is None:
        examples = [pooling_example("max"), pooling_example("mean")]
    shape = D.as2d(examples[0].x).shape
    out_shape = D.as2d(examples[0].y).shape
    offsets = [0, shape[1] + 2, shape[1] + out_shape[1] + 3, shape[1] + 2 * out_shape[1] + 5]
    units_x, units_y = offsets[3] + shape[1] + 0.2, shape[0] + 2.2
    cell = 0.45
    W, H = units_x * cell + 0.4, 0.6 + len(examples) * units_y * cell
    fig = D.new_figure(W, H)
    fig.suptitle("Pooling backward: upsample the delta to the windows", fontsize=13,
                 y=1 - 0.1 / H, va="top")
    fmt = np.vectorize(lambda v: f"{v:.3g}")
    for row, ex in enumerate(examples):
        bottom = H - 0.6 - (row + 1) * units_y * cell
        ax = fig.add_axes((0.2 / W, bottom / H, units_x * cell / W, units_y * cell / H))
        ax.set_xlim(-0.1, units_x - 0.1)
        ax.set_ylim(shape[0] + 1.7, -0.5)
        ax.axis("off")
        x, y, delta, dx = (D.as2d(a) for a in (ex.x, ex.y, ex.delta, ex.rule))
        tint = np.full(x.shape, "white", dtype=object)
        out_tint = np.empty(y.shape, dtype=object)
        for n, q in enumerate(np.ndindex(*y.shape)):
            color = _WINDOW_TINTS[n % len(_WINDOW_TINTS)]
            out_tint[q] = color
            if ex.x.ndim == 2:
                (r0, c0), (kr, kc) = (q[0] * ex.stride[0] - ex.padding[0],
                                      q[1] * ex.stride[1] - ex.padding[1]), ex.kernel
            else:
                (r0, c0), (kr, kc) = (0, q[1] * ex.stride[0] - ex.padding[0]), (1, ex.kernel[0])
            tint[max(r0, 0):r0 + kr, max(c0, 0):c0 + kc] = color
        y_top = (shape[0] - out_shape[0]) / 2
        D.draw_cells(ax, fmt(x).tolist(), faces=tint.tolist(), x0=offsets[0], fontsize=10)
        D.draw_cells(ax, fmt(y).tolist(), faces=out_tint.tolist(), x0=offsets[1], y0=y_top,
                     fontsize=10)
        D.draw_cells(ax, fmt(delta).tolist(), faces=out_tint.tolist(), x0=offsets[2],
                     y0=y_top, fontsize=10)
        D.draw_cells(ax, [[f"{v:.3g}" if v else "0" for v in r] for r in dx],
                     faces=tint.tolist(), x0=offsets[3], fontsize=9.5,
                     colors=[[D.INK if v else "#AAAAAA" for v in r] for r in dx])
        if ex.mode == "max":
            for q in np.ndindex(*ex.y.shape):
                m = tuple(int(v) for v in ex.chosen[q])
                r, c = m if ex.x.ndim == 2 else (0, m[0])
                for off in (offsets[0], offsets[3]):
                    D.outline(ax, r + 0.04, off + c + 0.04, 0.92, 0.92, D.INK, lw=2.2)
        titles = (f"input x, {ex.mode} pooling", "output y", "δ = ∂C/∂y", "∂C/∂x")
        for off, top, text in zip(offsets, (0, y_top, y_top, 0), titles, strict=True):
            ax.text(off, top - 0.15, text, ha="left", va="bottom", fontsize=10.5)
        mid = shape[0] / 2
        for a, b, text in ((offsets[0] + shape[1], offsets[1], "pool"),
                           (offsets[2] + out_shape[1], offsets[3], "upsample")):
            ax.annotate("", xy=(b - 0.2, mid), xytext=(a + 0.2, mid),
                        arrowprops={"arrowstyle": "-|>", "color": "#666666", "lw": 1.5})
            ax.text((a + b) / 2, mid - 0.15, text, ha="center", va="bottom", fontsize=9,
                    color="#666666")
        caption = ("max: the forward pass remembers the chosen cell (outlined; the first "
                   "maximum on ties);\neach δ goes there, every other cell gets 0"
                   if ex.mode == "max" else
                   f"mean: each δ is spread evenly over its window, δ/K with K = "
                   f"{int(np.prod(ex.kernel))}")
        ax.text(0, shape[0] + 0.45, caption, ha="left", va="top", fontsize=10, color="#444444")
    return fig


# -- everything ------------------------------------------------------------------------------
def write_figures(d: Derivation, out_dir: str | Path, *, progress: bool = False) -> list[Path]:
    """Write every figure of ``rot180 explain`` into ``out_dir`` (PNG and SVG, plus a GIF).

    (a) ``network``, (b) ``delta_table``, (c) ``windows``, (d) ``unrolled``, (e) ``stretch``,
    (f) ``pooling``, (g) ``sweep.gif``. A multi-channel derivation is drawn for its
    single-channel twin (same sizes, ``channels=None``). Every file is written atomically.
    ``progress`` shows a tqdm bar on stderr, one step per figure and per frame of the GIF
    (drawing takes 5-30 s).
    """
    from .symbolic import derive_input_gradient
    from .windows import stretch_figure, sweep_animation, windows_figure

    if d.channels is not None:
        d = derive_input_gradient(d.input_shape, d.kernel_shape, stride=d.stride,
                                  padding=d.padding, dilation=d.dilation,
                                  convention=d.convention)
    if d.cells > MAX_FIGURE_CELLS:
        raise ValueError(
            f"figures are drawn for at most {MAX_FIGURE_CELLS} input cells (7x7), got "
            f"{d.cells} (input {d.input_shape}). Choose a smaller --input, or drop --out."
        )
    out = Path(out_dir)
    figures = (("network", network_figure), ("delta_table", delta_table_figure),
               ("windows", windows_figure), ("unrolled", unrolled_figure),
               ("stretch", stretch_figure), ("pooling", lambda _: pooling_figure()))
    bar = _bar(len(figures) + d.cells, progress)
    paths: list[Path] = []
    try:
        for stem, make in figures:
            bar.set_postfix_str(stem)
            paths += D.save(make(d), out, stem)
            bar.update()
        bar.set_postfix_str("sweep.gif")
        paths.append(sweep_animation(d, out / "sweep.gif", on_frame=bar.update))
    finally:
        bar.close()
    return paths


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix_str(self, s: str) -> None: ...
    def close(self) -> None: ...


def _bar(total: int, show: bool):
    if not show:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:   # tqdm is optional here: the figures are written without a bar
        return _NoBar()
    return tqdm(total=total, desc="rot180 explain: figures", unit="step", file=sys.stderr,
                leave=False)
