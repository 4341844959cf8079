"""Winograd F(2x2, 3x3) for 3x3 stride-1 correlations: 2.25x fewer multiplications.

Under construction (issue 13): accepts nothing yet, so the engine never chooses it.
"""

from __future__ import annotations

from ._realisation import Problem, Realisation
from ._tuning import Tuning


def _accepts(p: Problem, t: Tuning) -> bool | str:
    return "not built yet"


def _prefer(p: Problem, t: Tuning) -> bool:
    return False


REALISATION = Realisation("winograd", "winograd f(2x2, 3x3) for 3x3 stride-1 correlations",
                          "nothing yet", _accepts,
                          prefer=_prefer)
