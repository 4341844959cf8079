"""Dropout, Flatten and Residual: PyTorch float64 twins, gradcheck and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rot180 import nn
from rot180.gradcheck import gradcheck

TOL = 1e-10


# -- Dropout -----------------------------------------------------------------------------------

def test_dropout_mask_reproducible_from_seed_and_generator() -> None:
    x = np.ones((8, 50))
    a = nn.Dropout(0.3, rng=7).forward(x)
    b = nn.Dropout(0.3, rng=np.random.default_rng(7)).forward(x)
    c = nn.Dropout(0.3, rng=8).forward(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    layer = nn.Dropout(0.3, rng=7)
    first, second = layer.forward(x), layer.forward(x)
    assert not np.array_equal(first, second)   # the generator advances between batches


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_scales_survivors_and_backward_uses_the_same_mask(p: float, dtype) -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((200, 500)) + 3).astype(dtype)   # no exact zeros
    layer = nn.Dropout(p, rng=1)
    y = layer.forward(x)
    assert y.dtype == dtype
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / dtype(1 - p), rtol=1e-6)
    # 100,000 Bernoulli draws: the kept fraction is 1 - p within 6 standard deviations.
    assert abs(kept.mean() - (1 - p)) < 6 * np.sqrt(p * (1 - p) / x.size)
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx = layer.backward(dy)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx != 0, kept)
    np.testing.assert_allclose(dx[kept], dy[kept] / dtype(1 - p), rtol=1e-6)


def test_dropout_identity_in_eval_and_edge_probabilities() -> None:
    x = np.random.default_rng(1).standard_normal((4, 5))
    layer = nn.Dropout(0.5, rng=0).eval()
    np.testing.assert_array_equal(layer.forward(x), x)
    dy = np.ones_like(x)
    np.testing.assert_array_equal(layer.backward(dy), dy)
    np.testing.assert_array_equal(nn.Dropout(0.0, rng=0).forward(x), x)
    one = nn.Dropout(1.0, rng=0)
    np.testing.assert_array_equal(one.forward(x), np.zeros_like(x))
    np.testing.assert_array_equal(one.backward(dy), np.zeros_like(x))
    # PyTorch agrees on the edge cases.
    np.testing.assert_array_equal(torch.nn.functional.dropout(torch.tensor(x), 1.0).numpy(),
                                  np.zeros_like(x))


@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda: nn.Dropout(1.5), ValueError,
     r"Dropout: Invalid dropout probability: 1\.5 \(expected p >= 0 and <= 1\)"),
    (lambda: nn.Dropout("0.5"), TypeError, "Dropout: p must be a real number"),
    (lambda: nn.Dropout(0.5, rng="seed"), TypeError, "rng must be"),
    (lambda: nn.Dropout(0.5, rng=0).forward(np.ones(3, np.int64)), TypeError, "float32"),
    (lambda: nn.Dropout(0.5, rng=0).backward(np.ones(3)), RuntimeError, "before forward"),
])
def test_dropout_bad_arguments(call, exc, match) -> None:
    with pytest.raises(exc, match=match):
        call()


# -- Flatten -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("start", "end"), [(1, -1), (0, -1), (1, 2), (2, 3), (-2, -1), (3, 3)])
def test_flatten_matches_torch(start: int, end: int) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 4, 5))
    layer = nn.Flatten(start, end)
    y = layer.forward(x)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.Flatten(start, end)(xt)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    assert y.shape == tuple(yt.shape)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(layer.backward(dy), xt.grad.numpy())


def test_flatten_errors() -> None:
    with pytest.raises(ValueError, match="must be valid axes"):
        nn.Flatten(2, 1).forward(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="must be valid axes"):
        nn.Flatten(1, 5).forward(np.ones((2, 3, 4)))
    with pytest.raises(TypeError, match="start_dim must be an int"):
        nn.Flatten(1.0)


# -- Residual ----------------------------------------------------------------------------------

class TorchResidual(torch.nn.Module):
    def __init__(self, block: torch.nn.Module, shortcut: torch.nn.Module | None) -> None:
        super().__init__()
        self.block = block
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) + (x if self.shortcut is None else self.shortcut(x))


def _resnet_block(projection: bool):
    """A ResNet basic block (conv-BN-ReLU-conv-BN) with its PyTorch twin."""
    c_in, c_out, stride = (3, 4, 2) if projection else (4, 4, 1)
    ours = nn.Residual(
        nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False, dtype=np.float64, rng=0),
                      nn.BatchNorm2d(c_out, dtype=np.float64), nn.ReLU(),
                      nn.Conv2d(c_out, c_out, 3, 1, 1, dtype=np.float64, rng=1),
                      nn.BatchNorm2d(c_out, dtype=np.float64)),
        nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False, dtype=np.float64, rng=2),
                      nn.BatchNorm2d(c_out, dtype=np.float64)) if projection else None)
    t = torch.nn
    theirs = TorchResidual(
        t.Sequential(t.Conv2d(c_in, c_out, 3, stride, 1, bias=False), t.BatchNorm2d(c_out),
                     t.ReLU(), t.Conv2d(c_out, c_out, 3, 1, 1), t.BatchNorm2d(c_out)),
        t.Sequential(t.Conv2d(c_in, c_out, 1, stride, bias=False), t.BatchNorm2d(c_out))
        if projection else None).double()
    rng = np.random.default_rng(3)
    state = {k: (rng.uniform(0.5, 1.5, v.shape) if k.endswith("running_var") else
                 v.numpy().copy() if k.endswith("num_batches_tracked") else
                 rng.standard_normal(tuple(v.shape)))
             for k, v in theirs.state_dict().items()}
    theirs.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    ours.load_state_dict(state)
    return ours, theirs, c_in


@pytest.mark.parametrize("projection", [False, True])
def test_residual_block_matches_torch_in_train_and_eval(projection: bool) -> None:
    ours, theirs, c_in = _resnet_block(projection)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert all(k.startswith(("block.", "shortcut.")) for k in ours.state_dict())
    rng = np.random.default_rng(4)
    for mode in ("train", "eval"):
        getattr(ours, mode)()
        getattr(theirs, mode)()
        x = rng.standard_normal((2, c_in, 6, 5))
        y = ours.forward(x)
        dy = rng.standard_normal(y.shape)
        ours.zero_grad()
        dx = ours.backward(dy)
        xt = torch.tensor(x, requires_grad=True)
        theirs.zero_grad()
        yt = theirs(xt)
        yt.backward(torch.tensor(dy))
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=TOL)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=TOL)
        tgrads = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            np.testing.assert_allclose(p.grad, tgrads[name].grad.numpy(), rtol=0, atol=TOL,
                                       err_msg=name)
        for k, v in theirs.state_dict().items():
            np.testing.assert_allclose(ours.state_dict()[k], v.numpy(), rtol=0, atol=TOL,
                                       err_msg=k)


def test_residual_identity_shortcut_sums_both_paths_and_gradchecks() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4))
    res = nn.Residual(nn.Sequential(nn.BatchNorm1d(4, dtype=np.float64), nn.Tanh()))
    y = res.forward(x)
    dy = rng.standard_normal(y.shape)
    block_dx = res.block.backward(dy)           # after res.forward: the block's cache is set
    np.testing.assert_allclose(res.backward(dy), block_dx + dy, rtol=0, atol=TOL)
    assert "shortcut" not in dict(res.named_modules())
    check = gradcheck(res, x)
    assert check.ok, str(check)


def test_residual_errors() -> None:
    relu = nn.ReLU()
    with pytest.raises(ValueError, match="different module instances"):
        nn.Residual(relu, relu)
    with pytest.raises(TypeError, match="block must be a Module"):
        nn.Residual(lambda x: x)
    bad = nn.Residual(nn.Flatten())
    with pytest.raises(ValueError, match="differs from shortcut output shape"):
        bad.forward(np.ones((2, 3, 4)))
