"""Shared by ``test_pool_torch_options.py`` and ``test_pool_torch_shapes.py``: PyTorch's and
rot180's dimension-named pooling functions side by side, and the sweep of 1-3-D cases
(``Case``, ``MAX_CASES`` with dilation, ``AVG_CASES`` without)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn.functional as TF

import rot180.functional as F

TOL = 1e-12
T_MAX = {1: TF.max_pool1d, 2: TF.max_pool2d, 3: TF.max_pool3d}
T_AVG = {1: TF.avg_pool1d, 2: TF.avg_pool2d, 3: TF.avg_pool3d}
T_ADAPTIVE = {1: TF.adaptive_avg_pool1d, 2: TF.adaptive_avg_pool2d, 3: TF.adaptive_avg_pool3d}
R_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
R_MAX_GRAD = {1: F.max_pool1d_grad, 2: F.max_pool2d_grad, 3: F.max_pool3d_grad}
R_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
R_AVG_GRAD = {1: F.avg_pool1d_grad, 2: F.avg_pool2d_grad, 3: F.avg_pool3d_grad}


@dataclass(frozen=True)
class Case:
    nd: int
    lead: tuple[int, ...]       # (N, C) batched, (C,) unbatched
    spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool
    ties: bool

    @property
    def shape(self) -> tuple[int, ...]:
        return self.lead + self.spatial

    def input(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        if self.ties:
            return rng.integers(-2, 3, self.shape).astype(np.float64)
        return rng.standard_normal(self.shape)

    def __str__(self) -> str:
        return (f"{self.nd}d-{self.lead}-i{self.spatial}-k{self.kernel}-s{self.stride}"
                f"-p{self.padding}-d{self.dilation}{'-ceil' if self.ceil_mode else ''}"
                f"{'-ties' if self.ties else ''}").replace(" ", "")


def _cases(n: int, seed: int, *, dilated: bool) -> list[Case]:
    """Half batched, half unbatched; spatial sizes around the window's extent so that stride
    remainders, ceil-mode windows past the input and (dilated) all-padding windows occur."""
    rng = np.random.default_rng(seed)
    out = []
    for j in range(n):
        nd = 1 + j % 3
        r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
        k = tuple(r(1, 3) for _ in range(nd))
        d = tuple(r(1, 3) if dilated else 1 for _ in range(nd))
        p = tuple(r(0, kj // 2) for kj in k)
        span = tuple(dj * (kj - 1) + 1 for kj, dj in zip(k, d, strict=True))
        lo = tuple(max(1, e - 2 * pj - 1) for e, pj in zip(span, p, strict=True))
        if not dilated and nd == 3:   # torch's avg_pool3d wants the unpadded input >= kernel
            lo = tuple(max(v, kj) for v, kj in zip(lo, k, strict=True))
        spatial = tuple(v + r(0, 3) for v in lo)
        lead = (r(1, 2), r(1, 3)) if j % 2 else (r(1, 3),)
        out.append(Case(nd, lead, spatial, k, tuple(r(1, 3) for _ in range(nd)), p, d,
                        bool(r(0, 1)), bool(r(0, 1))))
    return out


MAX_CASES = _cases(60, seed=11, dilated=True)
AVG_CASES = _cases(36, seed=12, dilated=False)
