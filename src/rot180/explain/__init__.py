"""Derive, prove and draw why the backward pass rotates the kernel by 180 degrees.

Built on :mod:`rot180.functional` (and SymPy and matplotlib, used only here):

- :func:`derive_input_gradient`, :func:`derive_weight_gradient`: the gradients of a 1-D or 2-D
  layer you choose, derived symbolically by the chain rule through the unrolled network and by
  the rot180 rule, compared cell by cell (:mod:`rot180.explain.symbolic`);
- :func:`conv_report` and :func:`render`: the ``rot180 explain`` text, Markdown or LaTeX;
- :func:`write_figures`: the pictures (:mod:`rot180.explain.figures`,
  :mod:`rot180.explain.windows`);
- :func:`write_page`, :func:`page`: the interactive page (``rot180 explain --html``), one
  self-contained HTML file, or inline in Jupyter (:mod:`rot180.explain.webpage`);
- :func:`pooling_example`: the pooling upsample rule on numbers;
- :func:`rot180.explain.saliency.saliency`: ``∂loss/∂input`` of a trained network, the rule
  through every layer.

Names are imported on first use, so ``from rot180.explain.saliency import saliency`` needs
neither SymPy nor matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Derivation",
    "WeightDerivation",
    "conv_report",
    "derive_input_gradient",
    "derive_weight_gradient",
    "page",
    "pooling_example",
    "pooling_report",
    "render",
    "write_figures",
    "write_page",
]

_WHERE = {
    "Derivation": "symbolic",
    "WeightDerivation": "symbolic",
    "derive_input_gradient": "symbolic",
    "derive_weight_gradient": "symbolic",
    "conv_report": "report",
    "render": "document",
    "pooling_example": "pooling",
    "pooling_report": "pooling",
    "write_figures": "figures",
    "page": "webpage",
    "write_page": "webpage",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
