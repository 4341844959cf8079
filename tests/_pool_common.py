"""Shared by ``test_pool_functional.py`` and ``test_pool_layers.py``: random and special pooling
configurations (``PoolConfig``, ``CONFIGS``, ``SPECIAL``), PyTorch's float64 pooling functions
and a direct-loop reference of max and average pooling, PyTorch's semantics written out position
by position."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as TF

TOL = 1e-10
T_MAX = {1: TF.max_pool1d, 2: TF.max_pool2d, 3: TF.max_pool3d}
T_AVG = {1: TF.avg_pool1d, 2: TF.avg_pool2d, 3: TF.avg_pool3d}
T_ADAPTIVE = {1: TF.adaptive_avg_pool1d, 2: TF.adaptive_avg_pool2d, 3: TF.adaptive_avg_pool3d}


@dataclass(frozen=True)
class PoolConfig:
    nd: int
    lead: tuple[int, ...]          # (N, C) or (C,) for an unbatched input
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    ceil_mode: bool
    spatial: tuple[int, ...]
    ties: bool                     # integer-valued input: many tied maxima

    @property
    def shape(self) -> tuple[int, ...]:
        return self.lead + self.spatial

    def args(self) -> tuple:
        return self.kernel, self.stride, self.padding

    def input(self, rng: np.random.Generator, dtype: type = np.float64) -> np.ndarray:
        if self.ties:
            return rng.integers(-2, 3, self.shape).astype(dtype)
        return rng.standard_normal(self.shape).astype(dtype)

    def __str__(self) -> str:
        return (f"{self.nd}d-{self.lead}-i{self.spatial}-k{self.kernel}-s{self.stride}"
                f"-p{self.padding}{'-ceil' if self.ceil_mode else ''}"
                f"{'-ties' if self.ties else ''}").replace(" ", "")


def _draw(integer, nd: int | None = None) -> PoolConfig:
    """One valid configuration from ``integer(lo, hi)``; half have stride != kernel."""
    nd = nd or integer(1, 3)
    kernel = tuple(integer(1, 3) for _ in range(nd))
    stride = tuple(integer(1, 3) for _ in range(nd))
    padding = tuple(integer(0, k // 2) for k in kernel)
    # i >= k (PyTorch's 3-D average pooling insists on it even with padding).
    spatial = tuple(k + integer(0, 4) for k in kernel)
    lead = (integer(1, 2), integer(1, 3)) if integer(0, 4) else (integer(1, 3),)
    return PoolConfig(nd, lead, kernel, stride, padding, bool(integer(0, 1)), spatial,
                      bool(integer(0, 1)))


def _configs(n: int, seed: int) -> list[PoolConfig]:
    rng = np.random.default_rng(seed)
    return [_draw(lambda lo, hi: int(rng.integers(lo, hi + 1)), nd=1 + i % 3) for i in range(n)]


CONFIGS = _configs(36, seed=3)
SPECIAL = [  # overlapping windows, padding and ceil mode that the draw may miss
    PoolConfig(2, (2, 3), (3, 3), (2, 2), (1, 1), False, (7, 8), True),
    PoolConfig(2, (2, 3), (3, 3), (2, 2), (0, 0), True, (6, 9), False),
    PoolConfig(1, (1, 2), (3,), (1,), (1,), False, (6,), True),
    PoolConfig(3, (1, 2), (3, 2, 3), (2, 1, 1), (1, 1, 0), True, (5, 4, 3), True),
    PoolConfig(2, (64, 6), (2, 2), (2, 2), (0, 0), False, (28, 28), False),  # LeNet's first pool
]


def _torch(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, requires_grad=True)


def _max_torch(cfg: PoolConfig, x: np.ndarray, dy: np.ndarray):
    xt = _torch(x)
    y, idx = T_MAX[cfg.nd](xt, *cfg.args(), ceil_mode=cfg.ceil_mode, return_indices=True)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), idx.numpy(), xt.grad.numpy()


# -- a direct-loop reference, PyTorch's semantics written out position by position ------------

def _windows(cfg: PoolConfig):
    """Yield (output index, list of real input cells of its window in row-major order)."""
    out = tuple(_out_size(i, k, s, p, cfg.ceil_mode)
                for i, k, s, p in zip(cfg.spatial, cfg.kernel, cfg.stride, cfg.padding,
                                      strict=True))
    for q in itertools.product(*(range(o) for o in out)):
        ranges = [range(max(qj * s - p, 0), min(qj * s - p + k, i)) for qj, s, p, k, i in
                  zip(q, cfg.stride, cfg.padding, cfg.kernel, cfg.spatial, strict=True)]
        yield q, list(itertools.product(*ranges))


def _out_size(i: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """From PyTorch's documented formula (independent of rot180.functional.shapes)."""
    if not ceil_mode:
        return (i + 2 * p - k) // s + 1
    o = int(np.ceil((i + 2 * p - k) / s)) + 1
    return o - 1 if (o - 1) * s >= i + p else o


def _max_loop(cfg: PoolConfig, x: np.ndarray, dy: np.ndarray):
    lead = x.shape[:-cfg.nd]
    wins = list(_windows(cfg))
    out = tuple(max(q[j] for q, _ in wins) + 1 for j in range(cfg.nd))
    y = np.empty(lead + out)
    idx = np.empty(lead + out, np.int64)
    dx = np.zeros_like(x)
    for n in itertools.product(*(range(a) for a in lead)):
        for q, cells in wins:
            best = max(cells, key=lambda c: x[n + c])  # max() keeps the first of equal keys
            y[n + q] = x[n + best]
            idx[n + q] = np.ravel_multi_index(best, cfg.spatial)
            dx[n + best] += dy[n + q]
    return y, idx, dx


def _avg_loop(cfg: PoolConfig, x: np.ndarray, dy: np.ndarray, count_include_pad: bool):
    lead = x.shape[:-cfg.nd]
    wins = list(_windows(cfg))
    out = tuple(max(q[j] for q, _ in wins) + 1 for j in range(cfg.nd))
    y = np.empty(lead + out)
    dx = np.zeros_like(x)
    for q, cells in wins:
        if count_include_pad:   # the window clipped to the padded input
            c = np.prod([min(qj * s - p + k, i + p) - (qj * s - p) for qj, s, p, k, i in
                         zip(q, cfg.stride, cfg.padding, cfg.kernel, cfg.spatial, strict=True)])
        else:
            c = len(cells)
        for n in itertools.product(*(range(a) for a in lead)):
            y[n + q] = sum(x[n + cell] for cell in cells) / c
            for cell in cells:
                dx[n + cell] += dy[n + q] / c
    return y, dx
