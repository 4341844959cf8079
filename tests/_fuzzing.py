"""Shared by the fuzz tests: a counted, derandomized ``given`` and the leaked-message check."""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings


class CaseCounter:
    """``fuzz(n, **strategies)`` runs a test on ``n`` derandomized examples and counts each run
    in ``cases`` (by test name); ``budget`` holds the ``n`` of every test."""

    def __init__(self) -> None:
        self.cases: Counter[str] = Counter()
        self.budget: dict[str, int] = {}

    def fuzz(self, max_examples: int, /, **strategies: Any) -> Callable:
        def deco(test: Callable) -> Callable:
            self.budget[test.__name__] = max_examples

            @functools.wraps(test)
            def counted(*args: Any, **kwargs: Any) -> None:
                self.cases[test.__name__] += 1
                test(*args, **kwargs)

            return settings(max_examples=max_examples, deadline=None, derandomize=True,
                            database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])(
                given(**strategies)(counted))
        return deco


# Messages that only numpy or Python itself would write: a check was missed.
LEAKED = re.compile(
    r"could not broadcast|operands could not|truth value of an array|invalid literal|not "
    r"supported between|object is not|cannot reshape|setting an array element|zero-size array|"
    r"out of bounds|could not convert|unpack|has no attribute|unhashable|cannot be interpreted")


def raises(exc: type[Exception], call: Callable[[], object], match: str = "") -> None:
    """``call()`` raises ``exc`` (that class or a subclass) with a message of ours containing
    ``match``; never an IndexError, never a numpy or Python message."""
    with pytest.raises(Exception) as info:
        call()
    err = info.value
    assert isinstance(err, exc) and not isinstance(err, IndexError), (
        f"expected {exc.__name__}, got {type(err).__name__}: {err}")
    assert str(err) and not LEAKED.search(str(err)), f"numpy/Python message leaked: {err}"
    assert match in str(err), f"{match!r} not in {err}"
