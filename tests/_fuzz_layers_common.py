"""Shared by the fuzz tests of the layers, loss modules and optimizers
(``test_fuzz_layers_faults.py``, ``_optim.py`` and ``_oracles.py``): one derandomized, counted
``fuzz`` for the whole suite (its ``CASES`` and ``BUDGET``, checked by
``test_fuzz_layers_oracles.test_generated_case_count``), the oracle comparison ``close``, the
bad dtypes and non-arrays the faults draw from, the seed strategy, the convolution layer classes,
``t64`` (a float64 tensor) and ``grads`` (a copy of a module's accumulated gradients)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st

from _fuzzing import CaseCounter
from rot180 import nn

_COUNTER = CaseCounter()
fuzz, CASES, BUDGET = _COUNTER.fuzz, _COUNTER.cases, _COUNTER.budget


def close(a: np.ndarray, b: np.ndarray | torch.Tensor, tol: float = 1e-10) -> None:
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert isinstance(a, np.ndarray | np.generic) and a.shape == b.shape, (np.shape(a), b.shape)
    scale = max(1.0, float(np.abs(b).max())) if b.size else 1.0
    assert np.allclose(a, b, rtol=0, atol=tol * scale), np.abs(a - b).max()


BAD_DTYPES = (np.int64, np.uint8, np.float16, np.complex128, np.bool_, object)
NON_ARRAYS = (None, "x", [[1.0, 2.0]], 3.0, {"x": 1})
seeds = st.integers(0, 2**32 - 1)
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONVT = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def t64(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(a, np.float64), requires_grad=grad)


def grads(module: nn.Module) -> dict[str, np.ndarray]:
    return {k: p.grad.copy() for k, p in module.named_parameters()}
