"""The acceptance test of the whole backward pass: LeNet-5 trained step for step beside PyTorch.

Same initial weights, same batches of real handwritten digits (the embedded ``mnist5k``,
normalised, float64): 100 steps of SGD with momentum and weight decay, our
``SoftmaxCrossEntropy`` + hand-derived backward + ``rot180.optim.SGD`` against
``torch.nn.CrossEntropyLoss`` + autograd + ``torch.optim.SGD(foreach=False)``. The loss sequences
and the final weights must agree to a relative error of 1e-8. Any wrong delta anywhere (a kernel
not rotated, a pooling delta sent to the wrong cell, a missing bias sum) drifts the runs apart
within a few steps; the Adam variant checks the same with a different optimizer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn as tnn

from rot180 import optim
from rot180.data import load_dataset
from rot180.models import lenet5
from rot180.nn import SoftmaxCrossEntropy

REL = 1e-8
BATCH = 32


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def torch_lenet5() -> tnn.Sequential:
    return tnn.Sequential(
        tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Flatten(),
        tnn.Linear(400, 120), tnn.ReLU(),
        tnn.Linear(120, 84), tnn.ReLU(),
        tnn.Linear(84, 10),
    )


@pytest.fixture(scope="module")
def digit_batches() -> list[tuple[np.ndarray, np.ndarray]]:
    """100 shuffled, normalised float64 batches of 32 real digits (with a second pass over the
    first ones if needed, as a training run would)."""
    train = load_dataset("mnist5k", split="train")
    loader = train.loader(batch_size=BATCH, shuffle=True, rng=2024, drop_last=True,
                          dtype=np.float64)
    out = []
    while len(out) < 100:
        out.extend(loader)
    out = out[:100]
    x0, y0 = out[0]
    assert x0.shape == (BATCH, 1, 28, 28) and x0.dtype == np.float64
    assert len(np.unique(np.concatenate([y for _, y in out]))) == 10
    return out


def _twins(seed: int) -> tuple:
    ours = lenet5(seed=seed, dtype=np.float64)
    theirs = torch_lenet5().double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return ours, theirs


def _run(ours, theirs, make_opts, batches) -> tuple[np.ndarray, np.ndarray]:
    opt, t_opt = make_opts(ours, theirs)
    loss_fn, t_loss_fn = SoftmaxCrossEntropy(), tnn.CrossEntropyLoss()
    ours.train()
    theirs.train()
    losses, t_losses = [], []
    for x, y in batches:
        loss = loss_fn.forward(ours.forward(x), y)
        opt.zero_grad()
        ours.backward(loss_fn.backward())
        opt.step()
        losses.append(loss)

        t_opt.zero_grad()
        t_loss = t_loss_fn(theirs(torch.from_numpy(x)), torch.from_numpy(y))
        t_loss.backward()
        t_opt.step()
        t_losses.append(t_loss.item())
    return np.array(losses), np.array(t_losses)


def _assert_same_run(ours, theirs, losses: np.ndarray, t_losses: np.ndarray) -> None:
    assert np.all(np.isfinite(losses))
    rel = np.abs(losses - t_losses) / np.abs(t_losses)
    assert rel.max() <= REL, f"loss sequences part at step {int(np.argmax(rel > REL))}"
    t_state = theirs.state_dict()
    for k, v in ours.state_dict().items():
        ref = t_state[k].numpy()
        err = np.max(np.abs(v - ref)) / np.max(np.abs(ref))
        assert err <= REL, f"{k}: relative error {err:.3g}"
    # the runs really trained (a test that cannot fail would pass with lr=0 too)
    assert losses[-10:].mean() < 0.7 * losses[:3].mean()


def test_100_sgd_momentum_steps_equal_pytorch(digit_batches) -> None:
    ours, theirs = _twins(seed=0)

    def opts(m, t):
        hp = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}
        return (optim.SGD(m.parameters(), **hp),
                torch.optim.SGD(t.parameters(), foreach=False, **hp))

    losses, t_losses = _run(ours, theirs, opts, digit_batches)
    assert len(losses) == 100
    _assert_same_run(ours, theirs, losses, t_losses)


def test_30_adam_steps_equal_pytorch(digit_batches) -> None:
    ours, theirs = _twins(seed=1)

    def opts(m, t):
        hp = {"lr": 2e-3, "betas": (0.9, 0.99), "weight_decay": 1e-4}
        return (optim.Adam(m.parameters(), **hp),
                torch.optim.Adam(t.parameters(), foreach=False, **hp))

    losses, t_losses = _run(ours, theirs, opts, digit_batches[:30])
    _assert_same_run(ours, theirs, losses, t_losses)


def test_the_twin_check_detects_a_wrong_backward(digit_batches, monkeypatch) -> None:
    """Control: with the conv layers' input delta computed with the kernel *not* rotated by 180
    degrees (the second conv's is the one that reaches parameters), the comparison fails."""
    from rot180.nn import conv as conv_mod

    real = conv_mod.conv_grad_input_spec

    def unrotated(dz, w, *args, **kwargs):
        return real(dz, w[..., ::-1, ::-1], *args, **kwargs)

    monkeypatch.setattr(conv_mod, "conv_grad_input_spec", unrotated)
    ours, theirs = _twins(seed=0)

    def opts(m, t):
        return (optim.SGD(m.parameters(), lr=0.05, momentum=0.9),
                torch.optim.SGD(t.parameters(), lr=0.05, momentum=0.9, foreach=False))

    losses, t_losses = _run(ours, theirs, opts, digit_batches[:10])
    assert np.max(np.abs(losses - t_losses) / t_losses) > 1e-4
