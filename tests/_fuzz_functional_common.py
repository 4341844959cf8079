"""Shared by the fuzz tests of :mod:`rot180.functional` (``test_fuzz_functional_conv.py``,
``_pool.py`` and ``_ops.py``): one derandomized, counted ``fuzz`` for the whole suite (its
``CASES`` and ``BUDGET``, checked by ``test_fuzz_functional_pool.test_generated_case_count``),
the oracle comparison ``close``, the bad dtypes and non-arrays the faults draw from, the seed
strategy and ``t64`` (a float64 tensor for the PyTorch oracles)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st

from _fuzzing import CaseCounter

_COUNTER = CaseCounter()
fuzz, CASES, BUDGET = _COUNTER.fuzz, _COUNTER.cases, _COUNTER.budget


def close(a: np.ndarray, b: np.ndarray | torch.Tensor, dtype: np.dtype | None = None,
          tol: float = 1e-10) -> None:
    """Same shape, (optionally) the given dtype, values within ``tol`` relative to the scale.

    A numpy scalar counts as a 0-d array: numpy's ufuncs return one for a 0-d input.
    """
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert isinstance(a, np.ndarray | np.generic) and a.shape == b.shape, (np.shape(a), b.shape)
    if dtype is not None:
        assert a.dtype == dtype, (a.dtype, dtype)
    scale = max(1.0, float(np.abs(b).max())) if b.size else 1.0
    assert np.allclose(a, b, rtol=0, atol=tol * scale, equal_nan=True), np.abs(a - b).max()


BAD_DTYPES = (np.int64, np.int8, np.uint8, np.float16, np.complex128, np.bool_, object)
NON_ARRAYS = (None, "x", {"a": 1}, object(), b"\x00")
seeds = st.integers(0, 2**32 - 1)


def t64(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(a, np.float64), requires_grad=grad)
