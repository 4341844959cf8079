"""Depthwise (and few-channel grouped) correlations: one plane at a time, no expansion.

Under construction (issue 13): accepts nothing yet, so the engine never chooses it.
"""

from __future__ import annotations

from ._realisation import Problem, Realisation
from ._tuning import Tuning


def _accepts(p: Problem, t: Tuning) -> bool | str:
    return "not built yet"


def _prefer(p: Problem, t: Tuning) -> bool:
    return False


REALISATION = Realisation("depthwise", "depthwise (and few-channel grouped) correlations",
                          "nothing yet", _accepts,
                          prefer=_prefer)
