"""Per-thread scratch buffers for the engine's batch chunks (:func:`scratch`)."""

from __future__ import annotations

import math
import threading

import numpy as np

__all__ = ["scratch"]

# One reusable flat buffer per (tag, dtype) and thread, grown to the largest request. Fresh
# large allocations are served by mmap and page-fault on first touch on every call; reusing the
# same pages removes that cost. A tag is never handed out twice at once within a thread, and
# nothing escapes the engine: results are always fresh arrays.
_SCRATCH = threading.local()
_SCRATCH_KEEP_MAX = 64 * 2**20      # larger requests are not kept between calls


def scratch(shape: tuple[int, ...], dtype: np.dtype, tag: str) -> np.ndarray:
    """An uninitialised ``shape`` buffer backed by memory reused across calls (per thread)."""
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    if size * dtype.itemsize > _SCRATCH_KEEP_MAX:
        return np.empty(shape, dtype)
    pool = _SCRATCH.__dict__.setdefault("pool", {})
    buf = pool.get((tag, dtype.str))
    if buf is None or buf.size < size:
        buf = pool[(tag, dtype.str)] = np.empty(size, dtype)
    return buf[:size].reshape(shape)
