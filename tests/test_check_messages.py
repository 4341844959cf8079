"""Messages that say who refused what, and the hint that fixes it (issue 12's review: each of
these had lost its caller or its hint when its check moved into functional._validation)."""

from __future__ import annotations

import numpy as np
import pytest

import rot180.functional as F
from rot180 import nn, optim
from rot180.functional import pool as P
from rot180.optim import lr_scheduler


def _params() -> list[nn.Parameter]:
    return [nn.Parameter(np.zeros(2))]


def _load_last_epoch(value: object) -> None:
    sched = lr_scheduler.StepLR(optim.SGD(_params(), lr=0.1), 2)
    state = sched.state_dict()
    state["last_epoch"] = value
    sched.load_state_dict(state)


X = np.zeros((1, 1, 4, 4))


@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda: P.max_pool(X, 2, nd=2.0), TypeError,
     r"^max_pool: nd must be an int, the number of spatial dimensions \(1, 2 or 3\), got float"),
    (lambda: F.global_avg_pool(X, nd=2.0), TypeError,
     r"^global_avg_pool: nd must be an int, the number of spatial dimensions \(1, 2 or 3\)"),
    (lambda: optim.Adam(_params(), betas=0.9), TypeError,
     r"^Adam: betas must be a pair \(beta1, beta2\), got 0\.9\. .*e\.g\. betas=\(0\.9, 0\.999\)"),
    (lambda: optim.Adam(_params(), betas=(0.9, 1.0)), ValueError,
     r"^Adam: Invalid beta parameter at index 1: 1\.0 .*e\.g\. betas=\(0\.9, 0\.999\)\.$"),
    (lambda: _load_last_epoch("3"), TypeError,
     r"^StepLR: last_epoch must be an int, got str '3'\. Pass what state_dict\(\) returned\.$"),
    (lambda: _load_last_epoch(-5), ValueError,
     r"^StepLR: last_epoch must be >= -1, got -5\. Pass what state_dict\(\) returned\.$"),
    (lambda: nn.AvgPool2d(2, divisor_override=2.0), TypeError,
     r"^AvgPool2d: divisor_override must be an int or None, got float 2\.0"),
    (lambda: P.max_pool_grad(np.zeros((1, 1, 2, 2)), [[0]], X.shape, 2), TypeError,
     r"^max_pool_grad: argmax must be a numpy array, got list\. Convert it with "
     r"np\.asarray\(argmax, dtype=np\.int64\), or pass the indices max_pool returned\.$"),
    (lambda: P.max_pool_grad(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)), X.shape, 2),
     TypeError, r"^max_pool_grad: argmax must be an integer numpy array"),
    (lambda: nn.MaxPool2d(2.0), TypeError, r"^MaxPool2d: kernel_size must be an int or a tuple"),
    (lambda: nn.MaxPool2d((2, 2, 2)), ValueError,
     r"^MaxPool2d: kernel_size must have one entry per spatial dimension"),
    (lambda: nn.Conv2d(2, 3, 2.0), TypeError, r"^Conv2d: kernel_size must be an int or a tuple"),
    (lambda: nn.Conv2d(2, 3, 3, stride=(1, 2, 3)), ValueError,
     r"^Conv2d: stride must have one entry per spatial dimension"),
    (lambda: nn.Conv2d(3, 3, 1, groups=2), ValueError,
     r"^Conv2d: in_channels must be divisible by groups, got in_channels=3, groups=2\.$"),
    (lambda: nn.Conv2d(2, 3, 1, groups=2), ValueError,
     r"^Conv2d: out_channels must be divisible by groups"),
    (lambda: nn.ConvTranspose2d(2, 3, 3, output_padding=3), ValueError,
     r"^ConvTranspose2d: output padding must be smaller than either stride or dilation"),
    (lambda: nn.ConvTranspose2d(2, 3, 3, output_padding=1.5), TypeError,
     r"^ConvTranspose2d: output_padding must be an int or a tuple"),
])
def test_message_names_the_caller_and_the_fix(call, exc, match) -> None:
    with pytest.raises(exc, match=match):
        call()
