"""The ``rot180 explain`` report of a :class:`~rot180.explain.symbolic.Derivation`, as blocks.

Sections, in order: the forward sums; the unrolled matrix ``W`` (the layer as an MLP with shared
weights) and its transpose; the input deltas by the chain rule; the stretched, padded delta and
the rotated kernel that slides over it, cell by cell; and the verdict.
"""

from __future__ import annotations

import itertools

import numpy as np
import sympy as sp

from .document import (
    Block,
    Bullets,
    Equations,
    Grid,
    Heading,
    Inline,
    Item,
    Math,
    Para,
    Text,
    linear,
    symbol_tex,
)
from .symbolic import Derivation

__all__ = ["conv_report", "describe"]


def _sizes(t: tuple[int, ...]) -> str:
    return "x".join(map(str, t))


def _per_axis(t: tuple[int, ...]) -> str:
    return str(t[0]) if len(set(t)) == 1 else ",".join(map(str, t))


def _padding(pairs: tuple[tuple[int, int], ...]) -> str:
    if all(lo == hi for lo, hi in pairs):
        return _per_axis(tuple(lo for lo, _ in pairs))
    return ",".join(f"({lo},{hi})" for lo, hi in pairs)


def describe(d: Derivation) -> str:
    """One line naming the configuration: ``input 3x3, kernel 2x2, stride 1, ...``."""
    line = (f"input {_sizes(d.input_shape)}, kernel {_sizes(d.kernel_shape)}, stride "
            f"{_per_axis(d.stride)}, padding {_padding(d.padding)}, dilation "
            f"{_per_axis(d.dilation)} → output {_sizes(d.output_shape)}")
    if d.channels is not None:
        line += f", channels {d.channels[0]}→{d.channels[1]}"
    return line


def _convention(d: Derivation) -> list[str]:
    if d.convention == "convolution":
        return ["convention: convolution, as in the article: z = x * w, a correlation with "
                "rot180(w)",
                "CNN libraries compute the cross-correlation z = x ⋆ w instead: --convention "
                "correlation"]
    return ["convention: correlation, as CNN libraries (torch.nn.Conv2d) compute: z = x ⋆ w",
            "the article writes the true convolution z = x * w: --convention convolution"]


def _sym(s: sp.Symbol) -> Math:
    return Math([(s,)])


def _z_label(delta: sp.Symbol) -> Math:
    return _sym(sp.Symbol("z" + delta.name[1:]))


def _partial(x: sp.Symbol) -> Text:
    return Text(f"∂C/∂{x.name}", rf"\partial C/\partial {symbol_tex(x.name)}")


def _grid(a: np.ndarray, rank: dict, order: str = "δw") -> list[list[Item]]:
    a2 = a.reshape(1, -1) if a.ndim == 1 else a
    return [[linear(v, order, rank) for v in row] for row in a2]


def _axis_line(d: Derivation, ax: int) -> str:
    k, s, dd = d.kernel_shape[ax], d.stride[ax], d.dilation[ax]
    (p_lo, p_hi), a = d.padding[ax], d.remainder[ax]
    low, high = d.grad_padding[ax]
    span = dd * (k - 1)
    return (f"stretch by s = {s} (insert s-1 = {s - 1} zero{'' if s == 2 else 's'} between "
            f"neighbouring deltas), then pad low d(k-1)-p_lo = {span}-{p_lo} = {low} and high "
            f"d(k-1)-p_hi+a = {span}-{p_hi}+{a} = {high}")


def _windows(d: Derivation, rank: dict) -> Grid:
    arr = d.arrays
    padded, x, rule = arr["padded_delta"], arr["x"], arr["rule"]
    k, dil = d.kernel_shape, d.dilation
    rows, labels = [], []
    single = d.channels is None
    for pos in np.ndindex(*x.shape):
        m = pos[1:]
        labels.append(_sym(x[pos]))
        if rule.shape != x.shape:   # a broken rule: report it, cell by cell, rather than crash
            rows.append([Text("-")] * (1 + single))
            continue
        value = linear(rule[pos], "δw", rank)
        if not single:
            rows.append([value])
            continue
        taps = np.empty(k, dtype=object)
        for t in np.ndindex(*k):
            taps[t] = linear(padded[(0, *(mm + tt * dd for mm, tt, dd in
                                          zip(m, t, dil, strict=True)))], "δw", rank)
        grid = taps.reshape(1, -1) if d.nd == 1 else taps
        rows.append([Inline(grid.tolist()), value])
    kernel = "rot180(w)" if d.convention == "correlation" else "w"
    if single:
        cols: list[Item] = [Text("window of the padded delta"), Text(f"⋆ {kernel} = ∂C/∂x")]
    else:
        cols = [Text(f"Σ over output channels j of window_j ⋆ {kernel}[j, i] = ∂C/∂x")]
    return Grid(rows, labels, cols)


def conv_report(d: Derivation) -> list[Block]:
    """The blocks of the ``rot180 explain`` report for one derivation."""
    arr = d.arrays
    x, delta, z = arr["x"], arr["delta_out"], arr["z"]
    rank = {s: n for a in (x, arr["w"], delta) for n, s in enumerate(a.ravel())}
    out: list[Block] = [Para("rot180 explain: " + describe(d)),
                        Bullets(_convention(d))]

    out.append(Heading("1. Forward pass: each output is a weighted sum of its receptive field"))
    out.append(Equations([(_z_label(delta[pos]), linear(z[pos], "wx", rank, "x"))
                          for pos in np.ndindex(*z.shape)]))
    out.append(Para("The bias is left out: it shifts every z and does not reach ∂C/∂x."))

    out.append(Heading("2. The layer as an MLP with cut connections and shared weights: z = W x"))
    out.append(Para("Rows are outputs, columns inputs. A 0 is a cut connection; a symbol that "
                    "repeats is a shared weight."))
    unrolled = d.unrolled
    xs, ds = list(x.ravel()), list(delta.ravel())
    cells = [[linear(unrolled[r, c], "w", rank) for c in range(unrolled.cols)]
             for r in range(unrolled.rows)]
    out.append(Grid(cells, [_z_label(s) for s in ds], [_sym(s) for s in xs], "W"))
    out.append(Para("Back-propagation through an MLP multiplies the delta by the transpose, "
                    "∂C/∂x = Wᵀ δ:"))
    out.append(Grid([list(r) for r in zip(*cells, strict=True)], [_sym(s) for s in xs],
                    [_sym(s) for s in ds], "Wᵀ"))

    out.append(Heading("3. Input deltas by the chain rule"))
    out.append(Para("Each input cell collects δ · weight from every output it feeds (the MLP "
                    "delta rule: the rows of Wᵀ):"))
    out.append(Equations([(_partial(x[pos]), linear(arr["delta_in"][pos], "δw", rank))
                          for pos in np.ndindex(*x.shape)]))

    out.append(Heading("4. The rule: slide the kernel over the stretched, padded delta"))
    lines = [_axis_line(d, ax) for ax in range(d.nd)]
    if d.nd == 1:
        items = [lines[0]]
    elif lines[0] == lines[1]:
        items = ["rows and columns: " + lines[0]]
    else:
        items = ["rows: " + lines[0], "columns: " + lines[1]]
    items.append("a = (i + p_lo + p_hi - d(k-1) - 1) mod s is the stride remainder: the input "
                 "cells no window reached, whose gradient is 0. A negative pad crops.")
    out.append(Bullets(items))
    padded = arr["padded_delta"]
    for j in range(padded.shape[0]):
        which = "" if d.channels is None else f" of output channel {j + 1}"
        out.append(Grid(_grid(padded[j], rank), title=f"stretched, padded delta{which} "
                        f"({_sizes(padded.shape[1:])})"))
    forward = d.convention == "convolution"
    # rot180(w) is the forward kernel of a true convolution, and the rule's kernel otherwise.
    rotated = arr["forward_kernel"] if forward else arr["rule_kernel"]
    c_out, c_in = rotated.shape[:2]
    for j, i in itertools.product(range(c_out), range(c_in)):
        name = "w" if d.channels is None else f"w[{j + 1},{i + 1}]"
        role = ("the forward pass correlates with it" if forward else
                "the rotated kernel that slides over the padded delta")
        out.append(Grid(_grid(rotated[j, i], rank, "w"), title=f"rot180({name}), {role}"))
    if d.convention == "correlation":
        out.append(Para("The rule correlates the padded delta with rot180(w) (stride 1, "
                        f"dilation {_per_axis(d.dilation)}): each input cell is the window of the "
                        "padded delta under the kernel taps, tap by tap. A correlation with "
                        "rot180(w) is a true convolution with w."))
    else:
        out.append(Para("The forward kernel is already rot180(w), so the rule correlates the "
                        "padded delta with rot180(rot180(w)) = w itself (stride 1, dilation "
                        f"{_per_axis(d.dilation)}), which is a true convolution with rot180(w):"))
        for j, i in itertools.product(range(c_out), range(c_in)):
            name = "w" if d.channels is None else f"w[{j + 1},{i + 1}]"
            out.append(Grid(_grid(arr["rule_kernel"][j, i], rank, "w"),
                            title=f"{name}, the kernel that slides over the padded delta"))
    out.append(_windows(d, rank))
    out.append(Para(verdict(d)))
    return out


def verdict(d: Derivation) -> str:
    """``verified: equal in all N cells`` or the cells that differ."""
    if d.verified:
        return (f"verified: equal in all {d.cells} cells (section 3 = section 4, every cell "
                "expanded by SymPy)")
    return (f"NOT verified: the rule differs from the chain rule in {len(d.mismatches)} of "
            f"{d.cells} cells: {', '.join(d.mismatches)}")
