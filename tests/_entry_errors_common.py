"""Shared by the bad-input tables ``test_entry_errors_functional.py``, ``_layers.py`` and
``_optim_data.py``: ``row`` (one table row: a call, the exception it must raise and a pattern
its message must match) and the inputs the rows share."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

NAN = math.nan
X = np.zeros((2, 3, 6, 6))
LOGITS = np.zeros((4, 3))
LABELS = np.array([0, 1, 2, 0])


def row(call: Callable[[], object], exc: type[Exception], match: str, id: str):
    return pytest.param(call, exc, match, id=id)
