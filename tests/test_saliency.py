"""Saliency: ∂loss/∂input through a whole network equals the backward rules chained by hand
(conv_grad_input, the ReLU mask, max_pool_grad, W^T δ) and PyTorch autograd; the command draws
it for a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rot180.cli import main
from rot180.explain.saliency import saliency
from rot180.functional import conv, conv_grad_input
from rot180.functional.losses import softmax
from rot180.functional.pool import max_pool, max_pool_grad
from rot180.nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential


def _network(dtype=np.float64) -> Sequential:
    rng = np.random.default_rng(3)
    return Sequential(
        Conv2d(1, 3, 3, padding=1, rng=rng, dtype=dtype), ReLU(), MaxPool2d(2),
        Conv2d(3, 4, 3, stride=2, padding=1, rng=rng, dtype=dtype), ReLU(),
        Flatten(), Linear(4 * 2 * 2, 5, rng=rng, dtype=dtype),
    )


def _by_hand(model: Sequential, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The same gradient with every layer's backward written out with rot180.functional."""
    c1, _, _, c2, _, _, fc = model
    w1, b1, w2, b2 = c1.weight.data, c1.bias.data, c2.weight.data, c2.bias.data
    z1 = conv(x, w1, b1, padding=1)
    a1 = np.maximum(z1, 0)
    p1, idx = max_pool(a1, 2)
    z2 = conv(p1, w2, b2, stride=2, padding=1)
    a2 = np.maximum(z2, 0)
    logits = a2.reshape(len(x), -1) @ fc.weight.data.T + fc.bias.data
    d_logits = softmax(logits, axis=1)
    d_logits[np.arange(len(x)), target] -= 1                  # f(x) - e(y), summed loss
    d_a2 = (d_logits @ fc.weight.data).reshape(a2.shape)      # W^T δ
    d_z2 = d_a2 * (z2 > 0)
    d_p1 = conv_grad_input(d_z2, w2, p1.shape, stride=2, padding=1)   # the rot180 rule
    d_a1 = max_pool_grad(d_p1, idx, a1.shape)
    d_z1 = d_a1 * (z1 > 0)
    return conv_grad_input(d_z1, w1, x.shape, padding=1)


def _torch(model: Sequential, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    c1, _, _, c2, _, _, fc = model
    xt = torch.tensor(x, requires_grad=True)
    t = lambda a: torch.tensor(a)  # noqa: E731
    h = torch.nn.functional.conv2d(xt, t(c1.weight.data), t(c1.bias.data), padding=1)
    h = torch.nn.functional.max_pool2d(torch.relu(h), 2)
    h = torch.nn.functional.conv2d(h, t(c2.weight.data), t(c2.bias.data), stride=2, padding=1)
    h = torch.relu(h).flatten(1)
    logits = h @ t(fc.weight.data).T + t(fc.bias.data)
    torch.nn.functional.cross_entropy(logits, torch.tensor(target), reduction="sum").backward()
    return xt.grad.numpy()


@pytest.mark.parametrize("target", [None, 2, [4, 0, 1]])
def test_saliency_is_the_chained_rule(target):
    model = _network()
    x = np.random.default_rng(7).standard_normal((3, 1, 8, 8))
    dx, pred = saliency(model, x, target)
    logits = model.forward(x)
    np.testing.assert_array_equal(pred, logits.argmax(axis=1))
    y = pred if target is None else np.broadcast_to(np.asarray(target), (3,))
    assert dx.shape == x.shape and dx.dtype == x.dtype
    np.testing.assert_allclose(dx, _by_hand(model, x, y), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, _torch(model, x, y), rtol=1e-9, atol=1e-12)


def test_saliency_keeps_float32():
    model = _network(np.float32)
    x = np.random.default_rng(1).standard_normal((1, 1, 8, 8)).astype(np.float32)
    dx, _ = saliency(model, x)
    assert dx.dtype == np.float32


@pytest.mark.parametrize(("x", "target", "error", "match"), [
    (np.zeros((1, 1, 8, 8), np.int64), None, TypeError, "float32 or float64"),
    (np.zeros(8), None, ValueError, "batch axis"),
    (np.zeros((1, 1, 8, 8)), 5, ValueError, r"class index in 0\.\.4"),
    (np.zeros((1, 1, 8, 8)), -1, ValueError, "class index"),
])
def test_saliency_errors(x, target, error, match):
    with pytest.raises(error, match=match):
        saliency(_network(), x, target)


def test_saliency_command(tmp_path, capsys):
    """The command draws a checkpoint's saliency for one PNG and names the predicted class."""
    from rot180.models import build_model
    from rot180.train.card import ModelCard
    from rot180.train.checkpoint import save_checkpoint

    ckpt = tmp_path / "model.safetensors"
    card = ModelCard("lenet5", {}, (1, 28, 28), tuple(f"digit {i}" for i in range(10)),
                     "mnist5k", (0.1307,), (0.3081,), 255.0)
    save_checkpoint(ckpt, build_model("lenet5"), **card.to_meta())
    img = np.zeros((28, 28), np.uint8)
    img[5:23, 12:16] = 255
    Image.fromarray(img).save(tmp_path / "one.png")
    out = tmp_path / "sal" / "map.png"
    code = main(["saliency", str(ckpt), str(tmp_path / "one.png"), "--out", str(out),
                 "--target", "1"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "predicted digit " in printed and "for class digit 1" in printed
    with Image.open(out) as im:
        assert im.size == (1050, 410)
    assert main(["saliency", str(ckpt), str(tmp_path / "missing.png")]) == 2
    assert "no such image file" in capsys.readouterr().err
