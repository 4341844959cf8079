"""A tiny document model (headings, paragraphs, equations, grids) rendered as text, Markdown
or LaTeX, so that one report reads the same in a terminal, on GitHub and in a paper.

Expressions are kept as ordered sums of products (:class:`Math`) instead of SymPy's canonical
order, so the output reads like the article: ``δ11·w22 + δ12·w21``, deltas first, in the order
of the cells.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import sympy as sp

from ..functional import _validation as V

__all__ = [
    "FORMATS", "Block", "Bullets", "Equations", "Grid", "Heading", "Inline", "Item", "Math", "Para",
    "Text", "linear", "render", "symbol_tex",
]

FORMATS = ("text", "markdown", "latex")

_WIDTH = 100
_NAME = re.compile(r"^(x|w|z|δ)(?:([\d,]+)_)?([\d,]+)$")
_TEX_BASE = {"x": "x", "w": "w", "z": "z", "δ": r"\delta"}


def symbol_tex(name: str) -> str:
    """LaTeX for a derivation symbol: ``δ2_11 -> \\delta^{(2)}_{11}``; other names verbatim."""
    m = _NAME.match(name)
    if m is None:
        return name
    base, ch, idx = m.groups()
    return _TEX_BASE[base] + (f"^{{({ch})}}" if ch else "") + f"_{{{idx}}}"


class Item:
    """Something that sits in a grid cell or on one side of an equation."""

    math = True

    def text(self) -> str:
        raise NotImplementedError

    def tex(self) -> str:
        raise NotImplementedError


class Math(Item):
    """A sum of products, each an ordered tuple of SymPy atoms (symbols or numbers)."""

    def __init__(self, terms: Sequence[Sequence[sp.Basic]]) -> None:
        self.terms = [tuple(t) for t in terms]

    @staticmethod
    def _atom_text(a: sp.Basic) -> str:
        return a.name if isinstance(a, sp.Symbol) else str(a)

    @staticmethod
    def _atom_tex(a: sp.Basic) -> str:
        return symbol_tex(a.name) if isinstance(a, sp.Symbol) else sp.latex(a)

    def text(self) -> str:
        if not self.terms:
            return "0"
        return " + ".join("·".join(self._atom_text(a) for a in t) for t in self.terms)

    def tex(self) -> str:
        if not self.terms:
            return "0"
        return " + ".join(" ".join(self._atom_tex(a) for a in t) for t in self.terms)


class Text(Item):
    """Plain text with an optional LaTeX (math mode) form; without one it is typeset as text."""

    def __init__(self, text: str, tex: str | None = None) -> None:
        self._text, self._tex = text, tex
        self.math = tex is not None

    def text(self) -> str:
        return self._text

    def tex(self) -> str:
        return self._tex if self._tex is not None else r"\text{" + _escape(self._text) + "}"


class Inline(Item):
    """A small matrix written inside a cell: ``[0 0; 0 δ11]``."""

    def __init__(self, rows: Sequence[Sequence[Item]]) -> None:
        self.rows = [list(r) for r in rows]

    def text(self) -> str:
        return "[" + "; ".join(" ".join(c.text() for c in r) for r in self.rows) + "]"

    def tex(self) -> str:
        body = r" \\ ".join(" & ".join(c.tex() for c in r) for r in self.rows)
        return r"\left[\begin{smallmatrix}" + body + r"\end{smallmatrix}\right]"


def linear(expr: sp.Basic, order: str, rank: dict[sp.Symbol, int], sort: str | None = None
           ) -> Math:
    """Split an expanded SymPy sum into ordered products.

    ``order`` names the symbol kinds by their first letter, e.g. ``"δw"``: in each product the
    deltas come first, then the weights. Terms are sorted by the rank of the kinds in ``sort``
    (default ``order``), e.g. ``order="wx", sort="x"`` writes ``w22·x11 + w21·x12``. ``rank``
    gives every symbol its position (cell order).
    """
    sort = order if sort is None else sort
    expr = sp.expand(expr)
    if expr == 0:
        return Math([])

    def kind(a: sp.Basic) -> int:
        if isinstance(a, sp.Symbol) and a.name[0] in order:
            return order.index(a.name[0])
        return -1 if a.is_number else len(order)

    terms = []
    for term in sp.Add.make_args(expr):
        coeff, factors = term.as_coeff_mul()
        atoms = sorted(factors, key=lambda a: (kind(a), rank.get(a, 0), str(a)))
        if coeff != 1:
            atoms.insert(0, coeff)
        terms.append(tuple(atoms))
    terms.sort(key=lambda t: sorted((sort.index(a.name[0]) if a.name[0] in sort else len(sort),
                                     rank.get(a, 0)) for a in t if isinstance(a, sp.Symbol)))
    return Math(terms)


@dataclass
class Heading:
    text: str


@dataclass
class Para:
    """A paragraph, written once in Unicode text; LaTeX escapes it."""

    text: str


@dataclass
class Bullets:
    """A list of short Unicode lines."""

    items: list[str]


@dataclass
class Equations:
    """Aligned lines ``lhs = rhs``."""

    rows: list[tuple[Item, Item]]


@dataclass
class Grid:
    """A matrix (no labels) or a table (column labels, optional row labels)."""

    cells: list[list[Item]]
    row_labels: list[Item] | None = None
    col_labels: list[Item] | None = None
    title: str | None = None


Block = Heading | Para | Bullets | Equations | Grid

# Unicode in running text -> LaTeX.
_TEX_CHARS = {
    "δ": r"$\delta$", "⋆": r"$\star$", "∂": r"$\partial$", "ᵀ": r"$^\top$", "·": r"$\cdot$",
    "Σ": r"$\Sigma$", "≠": r"$\neq$", "→": r"$\to$", "×": r"$\times$", "−": "-",
    "°": r"$^\circ$", "…": r"\dots{}", "⌊": r"$\lfloor$", "⌋": r"$\rfloor$",
    "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
}


def _escape(text: str) -> str:
    return "".join(_TEX_CHARS.get(ch, ch) for ch in text)


# -- text ------------------------------------------------------------------------------------
def _text_table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[c]) for r in rows if c < len(r)) for c in range(max(map(len, rows)))]
    return [(indent + "  ".join(cell.ljust(widths[c]) for c, cell in enumerate(r))).rstrip()
            for r in rows]


def _text(block: Block) -> list[str]:
    if isinstance(block, Heading):
        return [block.text, "-" * len(block.text)]
    if isinstance(block, Para):
        return textwrap.wrap(block.text, _WIDTH, break_long_words=False, break_on_hyphens=False)
    if isinstance(block, Bullets):
        return [line for item in block.items for line in textwrap.wrap(
            item, _WIDTH, initial_indent="  - ", subsequent_indent="    ",
            break_long_words=False, break_on_hyphens=False)]
    if isinstance(block, Equations):
        lhs = [a.text() for a, _ in block.rows]
        width = max(map(len, lhs))
        return [f"  {a.ljust(width)} = {b.text()}" for a, (_, b) in zip(lhs, block.rows,
                                                                       strict=True)]
    rows = [[c.text() for c in r] for r in block.cells]
    if block.col_labels is not None:
        rows.insert(0, [c.text() for c in block.col_labels])
    if block.row_labels is not None:
        labels = [c.text() for c in block.row_labels]
        rows = [([""] if block.col_labels is not None and i == 0 else
                 [labels[i - (block.col_labels is not None)]]) + r for i, r in enumerate(rows)]
    out = [block.title + ":"] if block.title else []
    return out + _text_table(rows, "    " if block.col_labels is None else "  ")


# -- markdown --------------------------------------------------------------------------------
def _md_cell(item: Item) -> str:
    return f"${item.tex()}$" if item.math else item.text()


def _markdown(block: Block) -> list[str]:
    if isinstance(block, Heading):
        return ["## " + block.text]
    if isinstance(block, Para):
        return [block.text]
    if isinstance(block, Bullets):
        return ["- " + item for item in block.items]
    if isinstance(block, Equations):
        body = " \\\\\n".join(f"{a.tex()} &= {b.tex()}" for a, b in block.rows)
        return ["$$", r"\begin{aligned}", body, r"\end{aligned}", "$$"]
    out = [f"*{block.title}:*", ""] if block.title else []
    if block.col_labels is None:
        body = " \\\\\n".join(" & ".join(c.tex() for c in r) for r in block.cells)
        return out + ["$$", r"\begin{pmatrix}", body, r"\end{pmatrix}", "$$"]
    head = [_md_cell(c) for c in block.col_labels]
    rows = [[_md_cell(c) for c in r] for r in block.cells]
    if block.row_labels is not None:
        head = [""] + head
        rows = [[_md_cell(lab)] + r for lab, r in zip(block.row_labels, rows, strict=True)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return out + lines + ["| " + " | ".join(r) + " |" for r in rows]


# -- LaTeX -----------------------------------------------------------------------------------
_PREAMBLE = [r"\documentclass{article}", r"\usepackage[utf8]{inputenc}",
             r"\usepackage{amsmath}", r"\usepackage[margin=2cm,landscape]{geometry}",
             r"\setcounter{MaxMatrixCols}{64}", r"\begin{document}"]


def _latex(block: Block) -> list[str]:
    if isinstance(block, Heading):
        return [r"\section*{" + _escape(block.text) + "}"]
    if isinstance(block, Para):
        return [_escape(block.text)]
    if isinstance(block, Bullets):
        return [r"\begin{itemize}", *(r"\item " + _escape(t) for t in block.items),
                r"\end{itemize}"]
    if isinstance(block, Equations):
        body = " \\\\\n".join(f"{a.tex()} &= {b.tex()}" for a, b in block.rows)
        return [r"\begin{align*}", body, r"\end{align*}"]
    out = [r"\paragraph{" + _escape(block.title) + "}"] if block.title else []
    if block.col_labels is None:
        body = " \\\\\n".join(" & ".join(c.tex() for c in r) for r in block.cells)
        return out + [r"\[", r"\begin{pmatrix}", body, r"\end{pmatrix}", r"\]"]
    lead = block.row_labels is not None
    ncol = len(block.col_labels)
    spec = ("c|" if lead else "") + "l" * ncol
    head = ([""] if lead else []) + [c.tex() for c in block.col_labels]
    rows = []
    for i, r in enumerate(block.cells):
        cells = ([block.row_labels[i].tex()] if lead else []) + [c.tex() for c in r]
        rows.append(" & ".join(cells))
    lines = [" & ".join(head) + r" \\ \hline"] + [r + r" \\" for r in rows[:-1]] + rows[-1:]
    return out + [r"\[", r"\begin{array}{" + spec + "}", *lines, r"\end{array}", r"\]"]


_RENDERERS: dict[str, Callable[[Block], list[str]]] = {
    "text": _text, "markdown": _markdown, "latex": _latex,
}


def render(blocks: Iterable[Block], fmt: str = "text") -> str:
    """Render blocks as ``"text"``, ``"markdown"`` or ``"latex"`` (a complete document)."""
    V.option(fmt, FORMATS, "format")
    chunks = ["\n".join(_RENDERERS[fmt](b)) for b in blocks]
    if fmt == "latex":
        return "\n".join(_PREAMBLE) + "\n" + "\n\n".join(chunks) + "\n\\end{document}\n"
    return "\n\n".join(chunks) + "\n"
