"""What a realisation is: the :class:`Problem` it is asked to solve (shapes only) and the
:class:`Realisation` record each entry of :data:`._registry.TABLE` is.

Kept apart from the table so that a realisation's own module (``_depthwise``, ``_winograd``)
can build its record without importing the table that lists it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ._layout import Pads, out_shape, stretched_size
from ._tuning import Tuning

__all__ = ["Problem", "Realisation"]


class Problem(NamedTuple):
    """One correlation, by shapes: the key of a plan.

    ``x``: the input ``(B, G, C, *S)`` (for ``"grad_input"`` the delta ``(B, G, C, *o)``);
    ``w``: the kernel ``(G, M, C, *k)`` (for ``"grad_weight"`` the delta ``(B, G, M, *o)``);
    ``pads``: ``(low, high)`` per axis or None (for ``"grad_input"`` the stretched delta's).
    ``top``: an entry point's own call (guards its output); ``stack``: an input gradient may
    stack its phases.
    """

    entry: str
    x: tuple[int, ...]
    w: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: Pads | None
    dtype: str
    top: bool = False
    stack: bool = True

    @property
    def nd(self) -> int:
        return len(self.kernel)

    @property
    def out_sp(self) -> tuple[int, ...]:
        """Spatial size of the result (the delta's for ``"grad_weight"``)."""
        if self.entry == "grad_weight":
            return self.w[3:]
        if self.entry == "grad_input":
            return stretched_size(self.x[3:], self.stride, self.pads, self.dilation,
                                  self.kernel)
        return out_shape(self.x[3:], self.kernel, self.stride, self.dilation, self.pads)

    @property
    def one_by_one(self) -> bool:
        return all(k == 1 for k in self.kernel)

    @property
    def unit_stride(self) -> bool:
        return all(s == 1 for s in self.stride)


@dataclass(frozen=True)
class Realisation:
    """One entry of :data:`TABLE`.

    ``accepts(problem, tuning)``: True, or a short reason why not. ``forward(plan, x, w, out,
    bias)`` fills ``out``; ``kernel(plan, x, dz)`` returns the kernel gradient. ``pads_itself``:
    it takes the unpadded input and the plan's pads (the others get a padded copy).
    ``prefer(problem, tuning)``: a specialised realisation says where it beats the generic
    rule (:func:`._registry.choose` asks it first, where it accepts the problem); it then gets
    one ``run`` leaf and plans its own chunks. ``cost``: the time of one of its multiply-adds
    in those of a large matrix product, for the threading threshold
    (``Tuning.parallel_min_macs`` counts the latter).
    """

    name: str
    summary: str
    takes: str
    accepts: Callable[[Problem, Tuning], bool | str]
    forward: Callable[..., None] | None = None
    kernel: Callable[..., np.ndarray] | None = None
    pads_itself: bool = False
    namespaces: tuple[str, ...] = ("numpy",)
    prefer: Callable[[Problem, Tuning], bool] | None = None
    cost: float = 1.0

    def __str__(self) -> str:
        return f"{self.name:<10} {self.summary}; takes {self.takes}"
