"""Softmax cross-entropy and MSE (functions and modules) against torch and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rot180.functional.losses import (
    log_softmax,
    mse,
    mse_grad,
    softmax,
    softmax_cross_entropy,
    softmax_cross_entropy_grad,
)
from rot180.gradcheck import gradcheck
from rot180.nn.loss import MSELoss, SoftmaxCrossEntropy

TOL = 1e-10


def problem(n: int = 6, c: int = 5, seed: int = 0, scale: float = 3.0):
    rng = np.random.default_rng(seed)
    logits = scale * rng.standard_normal((n, c))
    labels = rng.integers(0, c, n)
    probs = rng.random((n, c))
    probs /= probs.sum(axis=1, keepdims=True)
    return logits, labels, probs


def torch_ce(logits, targets, eps, reduction):
    lt = torch.from_numpy(logits).requires_grad_()
    loss = F.cross_entropy(lt, torch.from_numpy(targets), label_smoothing=eps,
                           reduction=reduction)
    seed = torch.from_numpy(np.random.default_rng(9).standard_normal(loss.shape))
    loss.backward(seed if reduction == "none" else None)
    return loss.detach().numpy(), lt.grad.numpy(), seed.numpy()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.35, 1.0])
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_cross_entropy_matches_torch(kind, eps, reduction):
    logits, labels, probs = problem()
    targets = labels if kind == "index" else probs
    t_loss, t_grad, seed = torch_ce(logits, targets, eps, reduction)
    loss = softmax_cross_entropy(logits, targets, label_smoothing=eps, reduction=reduction)
    grad = softmax_cross_entropy_grad(logits, targets, label_smoothing=eps, reduction=reduction)
    assert loss.shape == t_loss.shape
    assert np.abs(loss - t_loss).max() <= TOL
    if reduction == "none":
        grad = grad * seed[:, None]   # row n is dL_n/dlogits_n; torch applied the seed
    assert np.abs(grad - t_grad).max() <= TOL


def test_gradient_is_softmax_minus_onehot_over_n():
    logits, labels, _ = problem(n=4, c=3)
    onehot = np.eye(3)[labels]
    expect = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True) - onehot) / 4
    assert np.abs(softmax_cross_entropy_grad(logits, labels) - expect).max() <= 1e-15


@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_cross_entropy_gradcheck(kind, eps):
    logits, labels, probs = problem(n=3, c=4, seed=2)
    targets = labels if kind == "index" else probs
    res = gradcheck(
        lambda z: softmax_cross_entropy(z, targets, label_smoothing=eps),
        (logits,), grad_fn=lambda dz, z: (dz * softmax_cross_entropy_grad(
            z, targets, label_smoothing=eps),))
    assert res.ok, str(res)


def test_softmax_and_log_softmax_match_torch_and_are_stable():
    logits, _, _ = problem(scale=10.0)
    assert np.abs(log_softmax(logits) - F.log_softmax(torch.from_numpy(logits), -1).numpy()
                  ).max() <= TOL
    assert np.abs(softmax(logits, axis=0) - F.softmax(torch.from_numpy(logits), 0).numpy()
                  ).max() <= TOL
    huge = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]])
    loss = softmax_cross_entropy(huge, np.array([1, 2]), reduction="none")
    assert np.isfinite(loss).all()
    assert loss == pytest.approx([1e4, np.log(3)], rel=1e-12)
    assert np.isfinite(softmax_cross_entropy_grad(huge, np.array([1, 2]))).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype):
    logits, labels, probs = problem()
    x = logits.astype(dtype)
    assert softmax_cross_entropy(x, labels).dtype == dtype
    assert softmax_cross_entropy_grad(x, labels, label_smoothing=0.1).dtype == dtype
    assert softmax_cross_entropy_grad(x, probs.astype(dtype)).dtype == dtype
    assert log_softmax(x).dtype == softmax(x).dtype == dtype
    assert mse(x, x * 2).dtype == mse_grad(x, x * 2).dtype == dtype
    for ll in (SoftmaxCrossEntropy(), MSELoss()):
        target = labels if isinstance(ll, SoftmaxCrossEntropy) else np.zeros_like(x)
        assert isinstance(ll(x, target), float)
        assert ll.backward().dtype == dtype


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(7,), (4, 3), (2, 3, 2, 2)])
def test_mse_matches_torch(shape, reduction):
    rng = np.random.default_rng(1)
    o, t = rng.standard_normal(shape), rng.standard_normal(shape)
    ot = torch.from_numpy(o).requires_grad_()
    tl = F.mse_loss(ot, torch.from_numpy(t), reduction=reduction)
    seed = rng.standard_normal(tl.shape)
    tl.backward(torch.from_numpy(seed))
    assert np.abs(mse(o, t, reduction=reduction) - tl.detach().numpy()).max() <= TOL
    assert np.abs(mse_grad(o, t, reduction=reduction) * seed - ot.grad.numpy()).max() <= TOL


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_modules_match_torch(eps, reduction):
    logits, labels, _ = problem(n=8, c=10, seed=4)
    ce = SoftmaxCrossEntropy(eps, reduction=reduction)
    t_loss, t_grad, _ = torch_ce(logits, labels, eps, reduction)
    assert abs(ce.forward(logits, labels) - float(t_loss)) <= TOL
    assert np.abs(ce.backward() - t_grad).max() <= TOL
    tm = torch.nn.CrossEntropyLoss(label_smoothing=eps, reduction=reduction)
    assert abs(ce(logits, labels) - tm(torch.from_numpy(logits),
                                       torch.from_numpy(labels)).item()) <= TOL
    m = MSELoss(reduction=reduction)
    o, t = logits, np.random.default_rng(0).standard_normal(logits.shape)
    ot = torch.from_numpy(o).requires_grad_()
    tl = torch.nn.MSELoss(reduction=reduction)(ot, torch.from_numpy(t))
    tl.backward()
    assert abs(m(o, t) - tl.item()) <= TOL
    assert np.abs(m.backward() - ot.grad.numpy()).max() <= TOL


def test_module_backward_uses_the_last_forward():
    ce = SoftmaxCrossEntropy()
    a, la, _ = problem(seed=1)
    b, lb, _ = problem(seed=2)
    ce(a, la)
    ce(b, lb)
    assert np.array_equal(ce.backward(), softmax_cross_entropy_grad(b, lb))
    assert repr(ce) == "SoftmaxCrossEntropy(label_smoothing=0.0, reduction='mean')"


@pytest.mark.parametrize("call, exc, match", [
    (lambda x, y: softmax_cross_entropy(x, np.array([0, 1, 5, 2, 0, 1])), ValueError,
     r"must lie in 0\.\.4 .*got \[5\]"),
    (lambda x, y: softmax_cross_entropy(x, -y - 1), ValueError, "must lie in 0..4"),
    (lambda x, y: softmax_cross_entropy(x, y[:4]), ValueError, r"shape \(N,\) = \(6,\)"),
    (lambda x, y: softmax_cross_entropy(x, y.astype(bool)), TypeError,
     "integer class indices"),
    (lambda x, y: softmax_cross_entropy(x, np.ones((6, 4))), ValueError,
     "probability targets must have the logits' shape"),
    (lambda x, y: softmax_cross_entropy(x, np.full((6, 5), 0.2, np.float32)), TypeError,
     "share one dtype"),
    (lambda x, y: softmax_cross_entropy(x[0], y[:1]), ValueError,
     r"expected logits of shape \(N, C\)"),
    (lambda x, y: softmax_cross_entropy(x.astype(np.int64), y), TypeError,
     "logits must have dtype float32 or float64"),
    (lambda x, y: softmax_cross_entropy(x, y, label_smoothing=1.5), ValueError,
     r"label_smoothing must be finite and >= 0 and <= 1"),
    (lambda x, y: softmax_cross_entropy(x, y, reduction="avg"), ValueError,
     "reduction must be one of"),
    (lambda x, y: SoftmaxCrossEntropy(-0.1), ValueError,
     "label_smoothing must be finite and >= 0 and <= 1"),
    (lambda x, y: SoftmaxCrossEntropy(reduction="none"), ValueError,
     "reduction must be 'mean' or 'sum'"),
    (lambda x, y: SoftmaxCrossEntropy().backward(), RuntimeError,
     "backward called before forward"),
    (lambda x, y: MSELoss().backward(), RuntimeError, "backward called before forward"),
    (lambda x, y: mse(x, x[:, :1]), ValueError, "must have the same shape"),
    (lambda x, y: mse(x, x.astype(np.float32)), TypeError, "share one dtype"),
])
def test_errors(call, exc, match):
    x, y, _ = problem()
    with pytest.raises(exc, match=match):
        call(x, y)
