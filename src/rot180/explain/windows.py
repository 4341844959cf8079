"""Sliding-window pictures of the rule: the kernel over the stretched, padded delta.

(c) :func:`windows_figure`, one panel per input cell; (e) :func:`stretch_figure`, what the
stride and dilation do to the delta (inserted zeros, padding, the remainder cells); (g)
:func:`sweep_animation`, an animated GIF of the kernel sweeping the padded delta while the
input gradient fills in.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import sympy as sp
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from .._files import write_file
from . import _draw as D
from .document import linear
from .report import describe
from .symbolic import Derivation, derive_input_gradient

__all__ = ["cell_kinds", "stretch_figure", "sweep_animation", "windows_figure"]

_FACES = {"delta": D.DELTA_FACE, "stretch": D.STRETCH_FACE, "pad": D.PAD_FACE,
          "rem": D.REMAINDER_FACE}
_CELL = 0.52   # inches per grid cell


def _axis_kinds(n: int, low: int, high: int, o: int, s: int, a: int) -> list[str]:
    kinds = []
    for u in range(n):
        rel = u - low
        if 0 <= rel <= (o - 1) * s:
            kinds.append("delta" if rel % s == 0 else "stretch")
        elif a > 0 and high > 0 and u >= n - min(a, high):
            kinds.append("rem")
        else:
            kinds.append("pad")
    return kinds


def cell_kinds(d: Derivation) -> np.ndarray:
    """What every cell of the padded delta is (2-D, one row for 1-D): ``"delta"``, a zero
    inserted by the stride (``"stretch"``), a padding zero (``"pad"``), or one of the ``a``
    zeros appended for the stride remainder (``"rem"``)."""
    shape = d.arrays["padded_delta"].shape[1:]
    per_axis = [_axis_kinds(n, lo, hi, o, s, a) for n, (lo, hi), o, s, a in
                zip(shape, d.grad_padding, d.output_shape, d.stride, d.remainder, strict=True)]
    if d.nd == 1:
        return np.array([per_axis[0]], dtype=object)
    out = np.empty(shape, dtype=object)
    for r, kr in enumerate(per_axis[0]):
        for c, kc in enumerate(per_axis[1]):
            pair = {kr, kc}
            out[r, c] = ("rem" if "rem" in pair else "pad" if "pad" in pair else
                         "delta" if pair == {"delta"} else "stretch")
    return out


def _rank(d: Derivation) -> dict:
    arr = d.arrays
    return {s: n for a in (arr["x"], arr["w"], arr["delta_out"]) for n, s in enumerate(a.ravel())}


def _taps(d: Derivation, m: tuple[int, ...]) -> list[tuple[tuple[int, int], sp.Symbol]]:
    """Cells of the padded delta (2-D coordinates) under each tap for input cell ``m``."""
    kern = d.arrays["rule_kernel"][0, 0]
    out = []
    for t in np.ndindex(*d.kernel_shape):
        pos = tuple(mm + tt * dd for mm, tt, dd in zip(m, t, d.dilation, strict=True))
        out.append(((0, pos[0]) if d.nd == 1 else pos, kern[t]))
    return out


def _padded_delta(ax: Axes, d: Derivation, kinds: np.ndarray, fontsize: float = 10,
                  skip: tuple[tuple[int, ...], ...] = ()) -> None:
    """The padded delta's cells; those in ``skip`` are drawn without their label."""
    grid = D.as2d(d.arrays["padded_delta"][0])
    labels = [["" if (r, c) in skip else D.tex(v) if v != 0 else "0"
               for c, v in enumerate(row)] for r, row in enumerate(grid)]
    faces = [[_FACES[k] for k in row] for row in kinds]
    colors = [[D.INK if k == "delta" else "#9A9A9A" for k in row] for row in kinds]
    hatches = [["////" if k == "stretch" else None for k in row] for row in kinds]
    D.draw_cells(ax, labels, faces=faces, colors=colors, hatches=hatches, fontsize=fontsize,
                 edge="#AAAAAA")


def _window(ax: Axes, d: Derivation, m: tuple[int, ...], kinds: np.ndarray, colors: dict,
            fontsize: float = 9) -> None:
    """Draw the padded delta with the taps for input cell ``m``: each tap cell outlined in its
    weight's colour, the delta on top and the weight it meets below."""
    taps = _taps(d, m)
    _padded_delta(ax, d, kinds, fontsize, skip=tuple(pos for pos, _ in taps))
    grid = D.as2d(d.arrays["padded_delta"][0])
    for (r, c), w in taps:
        # Cover the hatching of an inserted zero so the two labels stay legible.
        ax.add_patch(Rectangle((c + 0.05, r + 0.05), 0.9, 0.9, facecolor=_FACES[kinds[r, c]],
                               edgecolor="none", alpha=0.92))
        D.outline(ax, r + 0.05, c + 0.05, 0.9, 0.9, colors[w], lw=2.6)
        v = grid[r, c]
        ax.text(c + 0.5, r + 0.36, D.tex(v) if v != 0 else "0", ha="center", va="center",
                fontsize=fontsize, color=D.INK if v != 0 else "#9A9A9A")
        ax.text(c + 0.5, r + 0.74, D.tex(w), ha="center", va="center", fontsize=fontsize - 1,
                color=colors[w])


def _value_tex(d: Derivation, m: tuple[int, ...], rank: dict) -> str:
    terms = linear(d.arrays["rule"][(0, *m)], "δw", rank).terms
    if not terms:
        return "0"
    return " + ".join(r"\,".join(D.tex(a).strip("$") for a in t) for t in terms)


def _name(d: Derivation, m: tuple[int, ...]) -> str:
    return D.tex(d.arrays["x"][(0, *m)])


def _partial(d: Derivation, m: tuple[int, ...]) -> str:
    """``∂C/∂x11`` in mathtext."""
    return r"$\partial C/\partial " + _name(d, m).strip("$") + "$"


def _kernel_phrase(d: Derivation) -> str:
    return "rot180(w)" if d.convention == "correlation" else "w"


def _kernel_pair(fig: Figure, d: Derivation, colors: dict, *, top: float, height: float
                 ) -> None:
    """``w`` and ``rot180(w)`` side by side, ``top`` inches below the figure's top; the kernel
    the rule slides (the one in the panels below) is outlined, and a line says which kernel the
    forward pass correlates with in this convention."""
    w = D.as2d(d.arrays["w"][0, 0])
    rot = w[::-1, ::-1]
    kr, kc = w.shape
    W, H = fig.get_figwidth(), fig.get_figheight()
    units = 2 * kc + 4.0
    ax = fig.add_axes(((W - units * _CELL) / 2 / W, (H - top - height + 0.45) / H,
                       units * _CELL / W, (kr + 0.6) * _CELL / H))
    ax.set_xlim(-0.1, units + 0.1)
    ax.set_ylim(kr + 0.1, -0.5)
    ax.set_aspect("equal")
    ax.axis("off")
    slides = "rot180(w)" if d.convention == "correlation" else "w"
    for x0, grid, name in ((0.0, w, "w"), (kc + 4.0, rot, "rot180(w)")):
        D.draw_cells(ax, [[D.tex(v) for v in row] for row in grid], x0=x0, fontsize=10,
                     colors=[[colors[v] for v in row] for row in grid])
        if name == slides:
            D.outline(ax, 0, x0, kr, kc, D.INK, lw=2.2)
        ax.text(x0 + kc / 2, -0.12, name + ("  (slides below)" if name == slides else ""),
                ha="center", va="bottom", fontsize=9.5)
    ax.annotate("", xy=(kc + 3.7, kr / 2), xytext=(kc + 0.3, kr / 2),
                arrowprops={"arrowstyle": "-|>", "color": "#666666", "lw": 1.3})
    ax.text(kc + 2.0, kr / 2 - 0.12, "rotate 180°", ha="center", va="bottom", fontsize=8.5,
            color="#666666")
    forward = ("forward: z = x ⋆ w, a correlation with w; the rule slides rot180(w)"
               if d.convention == "correlation" else
               "forward: z = x * w, a correlation with rot180(w); the rule slides "
               "rot180(rot180(w)) = w")
    fig.text(0.5, (H - top - height + 0.12) / H, forward, ha="center", va="bottom",
             fontsize=9, color="#444444")


# -- (c) one panel per input cell ------------------------------------------------------------
def windows_figure(d: Derivation) -> Figure:
    """For every input cell, the padded delta with the kernel taps that meet there outlined in
    their weight's colour; the panel title is the cell's gradient."""
    if d.channels is not None:
        raise ValueError("windows_figure draws one channel; derive with channels=None.")
    kinds = cell_kinds(d)
    colors = D.tap_colors(d.arrays["w"])
    rank = _rank(d)
    ur, uc = kinds.shape
    layout = (d.input_shape[0], 1) if d.nd == 1 else d.input_shape
    pw, ph = uc * _CELL + 0.7, ur * _CELL + 0.55
    band = D.as2d(d.arrays["w"][0, 0]).shape[0] * _CELL + 0.8   # the w | rot180(w) strip
    head = 1.0 + band
    fig = D.new_figure(max(layout[1] * pw + 0.3, 6.5), layout[0] * ph + head)
    W, H = fig.get_figwidth(), fig.get_figheight()
    fig.suptitle(f"The rule, cell by cell: {_kernel_phrase(d)} slides over the padded delta",
                 fontsize=13, y=1 - 0.1 / H, va="top")
    fig.text(0.5, 1 - 0.45 / H, describe(d) + f", {d.convention}", ha="center", va="top",
             fontsize=9.5, color="#555555")
    _kernel_pair(fig, d, colors, top=0.85, height=band)
    x_left = (W - layout[1] * pw) / 2
    for m in np.ndindex(*d.input_shape):
        r, c = (m[0], 0) if d.nd == 1 else m
        ax = fig.add_axes(((x_left + c * pw + 0.35) / W, (H - head - (r + 1) * ph + 0.1) / H,
                           (pw - 0.7) / W, (ph - 0.55) / H))
        D.cell_axes(ax, ur, uc)
        _window(ax, d, m, kinds, colors)
        ax.set_title(f"{_partial(d, m)} = ${_value_tex(d, m, rank)}$", fontsize=9.5, pad=4)
    return fig


# -- (e) the stretched, padded delta of a strided, dilated layer -----------------------------
def _demo(d: Derivation) -> Derivation:
    if any(s > 1 for s in d.stride) or any(v > 1 for v in d.dilation):
        return d
    if d.nd == 1:
        return derive_input_gradient(6, 2, stride=2, dilation=2, convention=d.convention)
    return derive_input_gradient((6, 6), (2, 2), stride=2, dilation=2, convention=d.convention)


def _per_axis(d: Derivation, values: list, sep: str = ", ") -> str:
    """One value when every axis has it (``"1"``, ``"every axis 1"`` in 2-D), else each axis
    named, rows first (``"rows 1, columns 0"``)."""
    if d.nd == 1:
        return str(values[0])
    if len(set(values)) == 1:
        return f"every axis {values[0]}"
    return sep.join(f"{axis} {v}" for axis, v in zip(("rows", "columns"), values, strict=True))


def stretch_figure(d: Derivation) -> Figure:
    """δ, stretched by the stride (zeros inserted, hatched), then padded by ``d(k-1) - p`` plus
    the stride remainder ``a``, with the dilated kernel at its first position.

    Drawn for ``d`` if it has a stride or dilation above 1, else for input 6x6, kernel 2x2,
    stride 2, dilation 2 (remainder 1).
    """
    d = _demo(d)
    if d.channels is not None:
        raise ValueError("stretch_figure draws one channel; derive with channels=None.")
    kinds = cell_kinds(d)
    colors = D.tap_colors(d.arrays["w"])
    delta = D.as2d(d.arrays["delta_out"][0])
    # The stretched block alone: (o-1)s + 1 cells per axis, starting at the low padding.
    size = [(o - 1) * s + 1 for o, s in zip(d.output_shape, d.stride, strict=True)]
    sr, sc = (1, size[0]) if d.nd == 1 else tuple(size)
    stretched = np.empty((sr, sc), dtype=object)
    for r in range(sr):
        for c in range(sc):
            rr, cc = (0, c) if d.nd == 1 else (r, c)
            on = (cc % d.stride[-1] == 0) and (d.nd == 1 or rr % d.stride[0] == 0)
            stretched[r, c] = delta[rr // (d.stride[0] if d.nd == 2 else 1),
                                    cc // d.stride[-1]] if on else sp.Integer(0)
    ur, uc = kinds.shape
    cols = delta.shape[1] + sc + uc + 4
    rows = max(ur, 1)
    ux, uy = cols + 0.2, rows + 1.1        # axes extent in cell units
    W, H = ux * _CELL + 3.3, max(uy * _CELL + 0.95, 2.6)
    fig = D.new_figure(W, H)
    fig.suptitle("Stride and dilation: stretch the delta, pad it, slide the dilated kernel",
                 fontsize=13, y=1 - 0.1 / H, va="top")
    fig.text(0.5, 1 - 0.45 / H, describe(d) + f", {d.convention}", ha="center", va="top",
             fontsize=9.5, color="#555555")
    bottom = (H - 0.8 - uy * _CELL) / 2
    ax = fig.add_axes((0.2 / W, bottom / H, ux * _CELL / W, uy * _CELL / H))
    ax.set_xlim(-0.2, cols)
    ax.set_ylim(rows + 0.1, -1.0)
    ax.set_aspect("equal")
    ax.axis("off")
    x0 = [0.0, delta.shape[1] + 2.0, delta.shape[1] + sc + 4.0]
    top = [(rows - delta.shape[0]) / 2, (rows - sr) / 2, 0.0]
    D.draw_cells(ax, [[D.tex(v) for v in row] for row in delta], faces=D.DELTA_FACE,
                 x0=x0[0], y0=top[0], fontsize=9)
    D.draw_cells(ax, [[D.tex(v) if v != 0 else "0" for v in row] for row in stretched],
                 faces=[[D.DELTA_FACE if v != 0 else D.STRETCH_FACE for v in row]
                        for row in stretched],
                 hatches=[[None if v != 0 else "////" for v in row] for row in stretched],
                 colors=[[D.INK if v != 0 else "#9A9A9A" for v in row] for row in stretched],
                 x0=x0[1], y0=top[1], fontsize=9, edge="#AAAAAA")
    sub = ax.inset_axes((x0[2], 0, uc, ur), transform=ax.transData)
    sub.set_xlim(0, uc)
    sub.set_ylim(ur, 0)
    sub.axis("off")
    _window(sub, d, (0,) * d.nd, kinds, colors)
    labels = ("δ", "stretch: s - 1 zeros between\ndeltas, " + _per_axis(
                  d, [str(s - 1) for s in d.stride], ", "),
              "pad: " + _per_axis(d, [f"low {lo}, high {hi} (includes a = {a})" for (lo, hi), a
                                      in zip(d.grad_padding, d.remainder, strict=True)], "\n"))
    for x, y, text in zip(x0, top, labels, strict=True):
        ax.text(x, y - 0.25, text, ha="left", va="bottom", fontsize=9.5)
    for a_, b in ((x0[0] + delta.shape[1], x0[1]), (x0[1] + sc, x0[2])):
        ax.annotate("", xy=(b - 0.3, rows / 2), xytext=(a_ + 0.3, rows / 2),
                    arrowprops={"arrowstyle": "-|>", "color": "#666666", "lw": 1.5})
    handles = [Patch(facecolor=D.DELTA_FACE, edgecolor="#AAAAAA", label="delta"),
               Patch(facecolor=D.STRETCH_FACE, edgecolor="#AAAAAA", hatch="////",
                     label="zero inserted by the stride"),
               Patch(facecolor=D.PAD_FACE, edgecolor="#AAAAAA", label="padding  d(k-1) - p"),
               Patch(facecolor=D.REMAINDER_FACE, edgecolor="#AAAAAA",
                     label="remainder a (never read forward)")]
    handles += [Patch(facecolor="white", edgecolor=colors[w], lw=2.2,
                      label=f"tap {D.tex(w)} (dilation {_per_axis(d, list(d.dilation))})")
                for w in d.arrays["rule_kernel"][0, 0].ravel()]
    fig.legend(handles=handles, loc="center left", fontsize=8.5, frameon=False,
               bbox_to_anchor=((ux * _CELL + 0.35) / W, 0.45))
    return fig


# -- (g) the sweep as an animated GIF --------------------------------------------------------
_SWEEP_CW = 1.7   # inches per cell of the gradient grid


def _sweep_layout(d: Derivation, kinds: np.ndarray, rank: dict) -> tuple[float, float, float]:
    """Figure width, height and gradient-cell height of the sweep animation (inches)."""
    most = max(1, max(len(linear(v, "δw", rank).terms) for v in d.arrays["rule"].ravel()))
    ch = 0.36 + 0.28 * most
    rows, cols = (1, d.input_shape[0]) if d.nd == 1 else d.input_shape
    ur, uc = kinds.shape
    width = max(1.1 + uc * _CELL + cols * _SWEEP_CW, 6.5)
    height = max(ur * _CELL, rows * ch) + 1.45
    return width, height, ch


def _sweep_frame(fig: Figure, d: Derivation, m: tuple[int, ...], kinds: np.ndarray,
                 colors: dict, rank: dict, ch: float) -> None:
    fig.clear()
    W, H = fig.get_figwidth(), fig.get_figheight()
    fig.suptitle(f"The rule: {_kernel_phrase(d)} sweeps the padded delta", fontsize=13,
                 y=1 - 0.08 / H, va="top")
    fig.text(0.5, 1 - 0.45 / H, f"{_partial(d, m)} = ${_value_tex(d, m, rank)}$",
             ha="center", va="top", fontsize=12)
    ur, uc = kinds.shape
    body = H - 1.2
    left = fig.add_axes((0.3 / W, (0.15 + (body - ur * _CELL) / 2) / H,
                         uc * _CELL / W, ur * _CELL / H))
    D.cell_axes(left, ur, uc)
    _window(left, d, m, kinds, colors)
    rows, cols = (1, d.input_shape[0]) if d.nd == 1 else d.input_shape
    right = fig.add_axes(((0.8 + uc * _CELL) / W, (0.15 + (body - rows * ch) / 2) / H,
                          cols * _SWEEP_CW / W, rows * ch / H))
    right.set_xlim(-0.01, cols + 0.01)
    right.set_ylim(rows + 0.01, -0.01)
    right.axis("off")
    order = list(np.ndindex(*d.input_shape))
    done = set(order[:order.index(m) + 1])
    for p in order:
        r, c = (0, p[0]) if d.nd == 1 else p
        face = "#FFF4D6" if p == m else ("#F4F8FC" if p in done else "white")
        D.draw_cells(right, [[""]], faces=face, x0=c, y0=r)
        right.text(c + 0.03, r + 0.05, _name(d, p), ha="left", va="top", fontsize=8,
                   color="#777777")
        if p in done:
            terms = linear(d.arrays["rule"][(0, *p)], "δw", rank).terms
            D.draw_terms(right, c + 0.5, r + 0.55, terms, colors, 0.28 / ch, fontsize=11)
    D.outline(right, (0 if d.nd == 1 else m[0]), m[-1], 1, 1, D.INK, lw=2.2)


def sweep_animation(d: Derivation, path: str | Path, *, fps: float = 1.25,
                    on_frame: Callable[[], None] | None = None) -> Path:
    """Write an animated GIF: one frame per input cell, the kernel's window moving over the
    padded delta while the input gradient fills in.

    The frames are drawn with Agg and encoded by Pillow in memory, then written atomically
    (:func:`rot180._files.atomic_write_bytes`), so a failed write never leaves a partial GIF.
    ``on_frame`` is called after each frame (a progress bar's ``update``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    if d.channels is not None:
        raise ValueError("sweep_animation draws one channel; derive with channels=None.")
    kinds = cell_kinds(d)
    colors = D.tap_colors(d.arrays["w"])
    rank = _rank(d)
    width, height, ch = _sweep_layout(d, kinds, rank)
    fig = Figure(figsize=(width, height), dpi=80, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    frames = []
    for m in np.ndindex(*d.input_shape):
        _sweep_frame(fig, d, m, kinds, colors, rank, ch)
        canvas.draw()
        frames.append(Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3]))
        if on_frame is not None:
            on_frame()
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:],
                   duration=int(1000 / fps), loop=0)
    path = Path(path)
    write_file(path, buf.getvalue(), "animation")
    return path
