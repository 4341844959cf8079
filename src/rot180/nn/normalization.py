"""Batch normalisation layers ``BatchNorm1d``, ``BatchNorm2d``, ``BatchNorm3d``.

Training normalises with the batch's own statistics and updates the running ones; evaluation
normalises with the running statistics. The backward rule is derived in
:mod:`rot180.functional.normalization`. Names match ``torch.nn.BatchNorm*d``'s ``state_dict``:
parameters ``weight``, ``bias``; buffers ``running_mean``, ``running_var`` and
``num_batches_tracked`` (an int64 0-d array).
"""

from __future__ import annotations

import numpy as np

from ..functional import _fused
from ..functional import _validation as C
from .module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d"]


class _BatchNorm(Module):
    """Batch normalisation over channel axis 1, as ``torch.nn.BatchNorm{1,2,3}d``.

    ``y = weight * (x - mean) / sqrt(var + eps) + bias`` per channel. In training (or always,
    when ``track_running_stats=False``) ``mean`` and the biased ``var`` are the batch's, over
    every axis but 1, and the running statistics move towards them::

        running_mean = (1 - momentum) running_mean + momentum mean
        running_var  = (1 - momentum) running_var  + momentum var * M / (M - 1)

    with the **unbiased** variance (``M`` values per channel), as PyTorch; ``momentum=None``
    uses the cumulative average (factor ``1 / num_batches_tracked``). In eval mode the running
    statistics are constants, so the backward rule is ``dx = dy * weight / sqrt(var + eps)``.

    Args:
        num_features: ``C``, the number of channels.
        eps: added to the variance for stability.
        momentum: weight of the new batch in the running statistics, or ``None``.
        affine: learn ``weight`` (init 1) and ``bias`` (init 0).
        track_running_stats: keep running statistics (buffers) for eval mode.
        dtype: float32 (default) or float64.

    Shape:
        - input: see the subclass; output: same
    """

    _ndims: tuple[int, ...]
    _layout: str

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *,
                 dtype: type | np.dtype = np.float32) -> None:
        super().__init__()
        name = type(self).__name__
        self.num_features = C.integer(num_features, "num_features", name)
        self.eps = C.real(eps, "eps", name, low=0.0, low_open=True)
        self.momentum = (None if momentum is None
                         else C.real(momentum, "momentum", name, low=0.0, high=1.0))
        dt = C.float_dtype(dtype, name)
        self.affine = C.flag(affine, "affine", name)
        self.track_running_stats = C.flag(track_running_stats, "track_running_stats", name)
        c = self.num_features
        if self.affine:
            self.weight = Parameter(np.ones(c, dt))
            self.bias = Parameter(np.zeros(c, dt))
        else:
            self.weight = self.bias = None
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, dt))
            self.register_buffer("running_var", np.ones(c, dt))
            self.register_buffer("num_batches_tracked", np.array(0, np.int64))
        self._cache: tuple | None = None
        self.sum_over_ranks = None   # set by the trainer for --sync-bn (see the class docstring)
        self._global_count: int | None = None

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def _check_input(self, x: object) -> np.ndarray:
        ref = self.weight.data if self.affine else (
            self.running_mean if self.track_running_stats else None)
        return C.check_input(
            x, type(self).__name__, ndim=self._ndims, channels=self.num_features,
            dtype=None if ref is None else ref.dtype,
            expected=f"{' or '.join(f'{d}D' for d in self._ndims)} input {self._layout}")

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check_input(x)
        # Set by Sequential around this call when a ReLU follows (see rot180.nn.containers):
        # the output is then max(y, 0), computed in the same pass, and cached for backward.
        relu = self.__dict__.get("_fuse_relu", False)
        w = self.weight.data if self.affine else None
        b = self.bias.data if self.affine else None
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            m = x.size // x.shape[1]
            if self.training and m <= 1:
                raise ValueError(
                    f"{type(self).__name__}: expected more than 1 value per channel when "
                    f"training, got input of shape {x.shape}. Use a batch of at least 2 or "
                    "eval mode."
                )
            sync = self.sum_over_ranks if self.training else None
            self._global_count = None
            if sync is None:
                y, mean, var, r = _fused.bn_forward(x, w, b, self.eps, relu=relu)
            else:
                mean, var, m = self._synced_stats(x, sync)
                self._global_count = m
                y, mean, var, r = _fused.bn_forward(x, w, b, self.eps, mean=mean, var=var,
                                                    relu=relu)
            if self.training and self.track_running_stats:
                self._update_running(mean, var, m)
        else:
            y, mean, _, r = _fused.bn_forward(x, w, b, self.eps, mean=self.running_mean,
                                              var=self.running_var, relu=relu)
        # x, not xh = (x - mean) r: one write pass less; the output only where a ReLU follows.
        self._cache = (x, mean, r, use_batch, y if relu else None)
        return y

    @staticmethod
    def _synced_stats(x: np.ndarray, sync) -> tuple[np.ndarray, np.ndarray, int]:
        """Mean and biased variance (float64) over every rank's batch, and the global count."""
        ax, c = (0, *range(2, x.ndim)), x.shape[1]
        sums = sync(np.append(x.sum(axis=ax, dtype=np.float64), x.size // c))
        m = int(sums[-1])
        mean = sums[:-1] / m
        dev = x - mean.reshape((-1,) + (1,) * (x.ndim - 2))
        return mean, sync(np.square(dev).sum(axis=ax)) / m, m
    def _update_running(self, mean: np.ndarray, var: np.ndarray, m: int) -> None:
        self.num_batches_tracked += 1
        f = (1 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
        dt = self.running_mean.dtype
        unbiased = (var * (m / (m - 1))).astype(dt)
        # In place, so references to the buffers (and the state_dict order) stay valid.
        self.running_mean *= 1 - f
        self.running_mean += f * np.asarray(mean, dt)
        self.running_var *= 1 - f
        self.running_var += f * unbiased

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x, mean, r, use_batch, out = C.cached(self._cache, type(self).__name__)  # type: ignore[misc]
        C.check_grad(dy, type(self).__name__, x.shape, x.dtype)
        # Set by Sequential when the ReLU after this layer left its mask to this backward: dy is
        # then the ReLU output's delta and the mask [out > 0] is folded into the rule.
        fold = self.__dict__.get("_fold_relu", False) and out is not None
        w = self.weight.data if self.affine else None
        m = self._global_count if use_batch else None
        dx, dw, db = _fused.bn_backward(dy, x, mean, r, w, batch_statistics=use_batch and not m,
                                        out=out if fold else None)
        if m:   # synchronised statistics: dx = A v + B (x - mean) + K with the global sums
            dx += self._synced_terms(dy, x, mean, r, w, out if fold else None, m)
        if self.affine:
            self.weight.grad += dw
            self.bias.grad += db
        return dx

    def _synced_terms(self, dy: np.ndarray, x: np.ndarray, mean: np.ndarray, r: np.ndarray,
                      w: np.ndarray | None, out: np.ndarray | None, m: int) -> np.ndarray:
        """``B (x - mean) + K`` of :mod:`rot180.functional._fused`'s rule, its sums
        ``S1 = sum v``, ``S2 = sum v (x - mean)`` and count ``M`` over every rank."""
        ax, dt, shape = (0, *range(2, x.ndim)), x.dtype, (-1,) + (1,) * (x.ndim - 2)
        v = dy if out is None else np.where(out > 0, dy, dt.type(0))
        centred = x - mean.reshape(shape)
        sums = self.sum_over_ranks(np.concatenate([v.sum(axis=ax, dtype=np.float64),
                                                   (v * centred).sum(axis=ax, dtype=np.float64)]))
        s1, s2 = np.split(sums, 2)
        r64 = r.astype(np.float64)
        g64 = np.ones_like(r64) if w is None else w.astype(np.float64)
        b = (-g64 * r64**3 * s2 / m).astype(dt)
        k = (-g64 * r64 * s1 / m).astype(dt)
        return centred * b.reshape(shape) + k.reshape(shape)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    __doc__ = (_BatchNorm.__doc__ or "").replace(
        "see the subclass", "``(N, C)`` or ``(N, C, L)``")
    _ndims = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    __doc__ = (_BatchNorm.__doc__ or "").replace("see the subclass", "``(N, C, H, W)``")
    _ndims = (4,)
    _layout = "(N, C, H, W)"


class BatchNorm3d(_BatchNorm):
    __doc__ = (_BatchNorm.__doc__ or "").replace("see the subclass", "``(N, C, D, H, W)``")
    _ndims = (5,)
    _layout = "(N, C, D, H, W)"
