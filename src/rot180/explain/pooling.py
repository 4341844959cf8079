"""``rot180 explain pooling``: the pooling upsample rule on a small numeric example.

A pooling layer has no weights, but it is still an MLP with cut connections: output ``q`` is
wired to the cells of its window, and the local derivative ``dy[q]/dx[m]`` is ``1/K`` for every
cell of the window (mean, ``K`` cells) or ``1`` for the chosen cell and ``0`` elsewhere (max; the
first maximum on ties, as PyTorch). The chain rule (computed here window by window) is checked
against the rule of :mod:`rot180.functional.pool`: upsample the delta to the windows, divided by
``K`` (``avg_pool_grad``) or routed to the argmax (``max_pool_grad``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..functional import _validation as V
from ..functional import shapes
from ..functional.pool import avg_pool, avg_pool_grad, max_pool, max_pool_grad
from .document import Block, Equations, Grid, Heading, Item, Para, Text

__all__ = ["MODES", "PoolingExample", "pooling_example", "pooling_report"]

MODES = ("max", "mean")

# The default example: one tie (the 6s in the last window) shows the first maximum winning.
_DEFAULT_X = np.array([[1, 3, 2, 1], [4, 2, 0, 1], [1, 1, 5, 6], [0, 2, 6, 3]], np.float64)


@dataclass(frozen=True)
class PoolingExample:
    """A pooling layer's forward pass and input gradient, by the chain rule and by the rule.

    Shape:
        - x, chain, rule: the input's spatial shape ``i``
        - y, delta: the output's ``o = floor((i + 2p - k) / s) + 1``
        - chosen: ``o + (nd,)`` index of the cell each max window picks (mean: ``None``)
    """

    mode: str
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    x: np.ndarray
    y: np.ndarray
    delta: np.ndarray
    chosen: np.ndarray | None
    chain: np.ndarray
    rule: np.ndarray
    local: dict[tuple[int, ...], list[tuple[tuple[int, ...], Fraction]]]

    @property
    def verified(self) -> bool:
        return not self.mismatches

    @property
    def mismatches(self) -> tuple[tuple[int, ...], ...]:
        """Input cells where the two differ (beyond float64 round-off of the sums)."""
        far = ~np.isclose(self.chain, self.rule, rtol=1e-12, atol=1e-12)
        return tuple(tuple(int(v) for v in m) for m in np.argwhere(far))


def _windows(out: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...], p: tuple[int, ...],
             spatial: tuple[int, ...]):
    """``(q, cells)``: every window and the input cells (inside the input) it covers."""
    for q in np.ndindex(*out):
        cells = [tuple(qq * ss - pp + tt for qq, ss, pp, tt in zip(q, s, p, t, strict=True))
                 for t in np.ndindex(*k)]
        yield q, [m for m in cells if all(0 <= v < n for v, n in zip(m, spatial, strict=True))]


def pooling_example(mode: str = "max", input_shape: Sequence[int] = (4, 4),
                    kernel: int | Sequence[int] = 2, stride: int | Sequence[int] | None = None,
                    padding: int | Sequence[int] = 0) -> PoolingExample:
    """Build the numeric example: the forward pass, the chain rule and the upsample rule.

    The default 4x4 input has a tie in one window; other sizes get integers 0..9 drawn from a
    fixed seed. The delta is ``1, 2, 3, ...`` over the output cells. Mean pooling counts padding
    cells in ``K`` (PyTorch's ``count_include_pad=True``).
    """
    V.option(mode, MODES, "pooling mode")
    spatial = tuple(int(v) for v in input_shape)
    nd = len(spatial)
    if nd not in (1, 2) or any(v < 1 for v in spatial):
        raise ValueError(
            f"pooling example: input_shape must be 1 or 2 positive sizes, got {input_shape!r}."
        )
    k = shapes.as_tuple(kernel, nd, "kernel")
    s = k if stride is None else shapes.as_tuple(stride, nd, "stride")
    p = shapes.as_tuple(padding, nd, "padding")
    if spatial == (4, 4):
        x = _DEFAULT_X.copy()
    else:
        x = np.random.default_rng(0).integers(0, 10, spatial).astype(np.float64)
    batch = x[None, None]
    if mode == "max":
        y, idx = max_pool(batch, k, s, p)
    else:
        y, idx = avg_pool(batch, k, s, p), None
    y = y[0, 0]
    out = y.shape
    delta = np.arange(1, y.size + 1, dtype=np.float64).reshape(out)

    # Chain rule, window by window: dC/dx[m] = sum over windows q containing m of
    # delta[q] * dy[q]/dx[m].
    local: dict[tuple[int, ...], list[tuple[tuple[int, ...], Fraction]]] = {
        m: [] for m in np.ndindex(*spatial)}
    chosen = np.zeros(out + (nd,), np.int64) if mode == "max" else None
    count = int(np.prod(k))
    for q, cells in _windows(out, k, s, p, spatial):
        if mode == "max":
            best = max(cells, key=lambda m: (x[m], -cells.index(m)))   # first maximum on ties
            chosen[q] = best
            local[best].append((q, Fraction(1)))
        else:
            for m in cells:
                local[m].append((q, Fraction(1, count)))
    chain = np.zeros(spatial, np.float64)
    for m, terms in local.items():
        chain[m] = sum(float(delta[q] * frac) for q, frac in terms)

    if mode == "max":
        rule = max_pool_grad(delta[None, None], idx, (1, 1, *spatial))
    else:
        rule = avg_pool_grad(delta[None, None], (1, 1, *spatial), k, stride=s, padding=p)
    return PoolingExample(mode, k, s, p, x, y, delta, chosen, chain, rule[0, 0], local)


def _num(v: float) -> Text:
    text = f"{v:.4g}"
    return Text(text, text)


def _index(idx: Sequence[int], sizes: Sequence[int]) -> str:
    sep = "," if max(sizes) >= 10 else ""
    return sep.join(str(v + 1) for v in idx)


def _grid(a: np.ndarray, mark: set | None = None) -> list[list[Item]]:
    a2 = a.reshape(1, -1) if a.ndim == 1 else a
    rows = []
    for r, row in enumerate(a2):
        cells: list[Item] = []
        for c, v in enumerate(row):
            pos = (c,) if a.ndim == 1 else (r, c)
            text = f"{v:.4g}"
            if mark is not None and pos in mark:
                cells.append(Text(f"[{text}]", rf"\boxed{{{text}}}"))
            else:
                cells.append(Text(text, text))
        rows.append(cells)
    return rows


def _frac_text(f: Fraction) -> tuple[str, str]:
    if f == 1:
        return "", ""
    return f"/{f.denominator}", rf"/{f.denominator}"


def pooling_report(ex: PoolingExample) -> list[Block]:
    """The blocks of the ``rot180 explain pooling`` report."""
    spatial, out = ex.x.shape, ex.y.shape
    sizes = "x".join(map(str, spatial))
    per = ",".join(map(str, ex.kernel)) if len(set(ex.kernel)) > 1 else str(ex.kernel[0])
    stride = ",".join(map(str, ex.stride)) if len(set(ex.stride)) > 1 else str(ex.stride[0])
    pad = ",".join(map(str, ex.padding)) if len(set(ex.padding)) > 1 else str(ex.padding[0])
    count = int(np.prod(ex.kernel))
    blocks: list[Block] = [Para(
        f"rot180 explain pooling: {ex.mode} pooling, input {sizes}, window {per}, stride "
        f"{stride}, padding {pad} → output {'x'.join(map(str, out))}")]

    blocks.append(Heading("1. Forward pass: each output summarises its window"))
    if ex.mode == "max":
        marked = {tuple(int(v) for v in ex.chosen[q]) for q in np.ndindex(*out)}
        blocks.append(Para("Each output is the largest cell of its window; [brackets] mark the "
                           "cell chosen (the first maximum in row-major order on ties, as "
                           "PyTorch)."))
        blocks.append(Grid(_grid(ex.x, marked), title="input x"))
    else:
        blocks.append(Para(f"Each output is the mean of the K = {count} cells of its window "
                           "(padding cells count, as PyTorch's count_include_pad=True)."))
        blocks.append(Grid(_grid(ex.x), title="input x"))
    blocks.append(Grid(_grid(ex.y), title=f"output y = {ex.mode} pool(x)"))

    blocks.append(Heading("2. Input deltas by the chain rule"))
    local = ("1 for the chosen cell and 0 for the others" if ex.mode == "max"
             else f"1/K = 1/{count} for every cell")
    blocks.append(Para(f"Pooling is an MLP without weights: output q is wired to its window, "
                       f"with local derivative ∂y_q/∂x_m = {local}. Each input cell collects "
                       f"δ_q · ∂y_q/∂x_m from every window containing it. With δ numbered "
                       f"1, 2, 3, … over the outputs:"))
    blocks.append(Grid(_grid(ex.delta), title="δ = ∂C/∂y"))
    rows = []
    for m in np.ndindex(*spatial):
        terms = [(q, f) for q, f in ex.local[m] if f != 0]
        name = _index(m, spatial)
        lhs = Text(f"∂C/∂x{name}", rf"\partial C/\partial x_{{{name}}}")
        if not terms:
            rows.append((lhs, Text("0", "0")))
            continue
        text = " + ".join(f"δ{_index(q, out)}{_frac_text(f)[0]}" for q, f in terms)
        tex = " + ".join(rf"\delta_{{{_index(q, out)}}}{_frac_text(f)[1]}" for q, f in terms)
        value = f"{ex.chain[m]:.4g}"
        rows.append((lhs, Text(f"{text} = {value}", f"{tex} = {value}")))
    blocks.append(Equations(rows))

    blocks.append(Heading("3. The rule: upsample the delta to the windows"))
    if ex.mode == "max":
        blocks.append(Para("Route each δ to the cell its window chose (the argmax remembered by "
                           "the forward pass); every other cell gets 0 "
                           "(rot180.functional.max_pool_grad):"))
    else:
        blocks.append(Para(f"Spread each δ evenly over its window, δ/K with K = {count}; "
                           "overlapping windows add up (rot180.functional.avg_pool_grad):"))
    blocks.append(Grid(_grid(ex.rule), title="∂C/∂x by the rule"))
    n = int(np.prod(spatial))
    if ex.verified:
        blocks.append(Para(f"verified: equal in all {n} cells (the chain rule of section 2 and "
                           "the rule of section 3)"))
    else:
        cells = ", ".join("x" + _index(m, spatial) for m in ex.mismatches)
        blocks.append(Para(f"NOT verified: the rule differs from the chain rule in "
                           f"{len(ex.mismatches)} of {n} cells: {cells}"))
    return blocks
