"""Options PyTorch accepts and rot180 used to refuse (issue 11, items 11 and 12, conv part).

* Zero-size batches: ``N = 0`` gives an empty output of the right shape, an empty input gradient
  and zero kernel and bias gradients, functional and layers, against PyTorch autograd.
* ``output_padding`` up to ``max(s, d) - 1`` (PyTorch's rule: smaller than the stride *or* the
  dilation) as the remainder carried by ``conv_grad_input``'s ``input_shape``, against
  ``torch.nn.functional.conv_transpose{1,2,3}d``; one more is refused.
* One-entry tuples (``padding=(1,)``, ``stride=(2,)``, ``dilation=(2,)``) broadcast to every
  spatial dimension, for conv, its gradients and the layers, against PyTorch.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rot180.functional import conv, conv_grad_bias, conv_grad_input, conv_grad_weight
from rot180.nn.conv import (
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
)

TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TORCH_CONVT = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
LAYERS = {1: (Conv1d, torch.nn.Conv1d, ConvTranspose1d, torch.nn.ConvTranspose1d),
          2: (Conv2d, torch.nn.Conv2d, ConvTranspose2d, torch.nn.ConvTranspose2d),
          3: (Conv3d, torch.nn.Conv3d, ConvTranspose3d, torch.nn.ConvTranspose3d)}


def _autograd(nd, x, w, b, **kw):
    """PyTorch's output and the three gradients for an all-ones upstream gradient."""
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    z = TORCH_CONV[nd](xt, wt, bt, **kw)
    z.backward(torch.ones_like(z))
    return z.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


# --- zero-size batches ------------------------------------------------------------------------

EMPTY = [(nd, s, g) for nd in (1, 2, 3) for s in (1, 2) for g in (1, 2)]


@pytest.mark.parametrize(("nd", "stride", "groups"), EMPTY,
                         ids=[f"{nd}d-s{s}-g{g}" for nd, s, g in EMPTY])
def test_an_empty_batch_matches_torch_autograd(nd, stride, groups) -> None:
    rng = np.random.default_rng(nd)
    x = np.zeros((0, 4, *(7,) * nd))
    w = rng.standard_normal((6, 4 // groups, *(3,) * nd))
    b = rng.standard_normal(6)
    kw = {"stride": stride, "padding": 1, "groups": groups}
    z, gx, gw, gb = _autograd(nd, x, w, b, **kw)
    ours = conv(x, w, b, **kw)
    assert ours.shape == z.shape and ours.shape[0] == 0
    dz = np.ones(z.shape)
    assert conv_grad_input(dz, w, x.shape, **kw).shape == gx.shape
    assert conv_grad_input(dz, w, x.shape[2:], **kw).shape == gx.shape
    np.testing.assert_array_equal(conv_grad_weight(x, dz, w.shape, **kw), gw)
    np.testing.assert_array_equal(conv_grad_bias(dz), gb)
    assert conv_grad_weight(x, dz, w.shape, **kw).shape == w.shape


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "transposed"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_layers_run_an_empty_batch_as_torch(nd, transposed) -> None:
    ours_cls, theirs_cls = LAYERS[nd][2 * transposed:2 * transposed + 2]
    kw = {"stride": 2, "padding": 1, "groups": 2}
    ours = ours_cls(4, 6, 3, **kw, dtype=np.float64, rng=0)
    theirs = theirs_cls(4, 6, 3, **kw).double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = np.zeros((0, 4, *(5,) * nd))
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.ones_like(yt))
    y = ours.forward(x)
    assert y.shape == tuple(yt.shape)
    dx = ours.backward(np.ones(y.shape))
    assert dx.shape == x.shape
    for name, p in theirs.named_parameters():
        np.testing.assert_array_equal(getattr(ours, name).grad, p.grad.numpy())


# --- output_padding ---------------------------------------------------------------------------

OUTPUT_PADDING = [(nd, s, d, p, a) for nd in (1, 2)
                  for s, d in ((1, 1), (2, 1), (1, 3), (2, 3), (3, 2)) for p in (0, 1)
                  for a in range(max(s, d))] + [(3, 1, 2, 1, 1), (3, 2, 3, 0, 2)]


@pytest.mark.parametrize(("nd", "s", "d", "p", "a"), OUTPUT_PADDING,
                         ids=[f"{nd}d-s{s}-d{d}-p{p}-a{a}" for nd, s, d, p, a in OUTPUT_PADDING])
def test_conv_grad_input_takes_every_output_padding_torch_takes(nd, s, d, p, a) -> None:
    rng = np.random.default_rng(s * 10 + d)
    dz = rng.standard_normal((2, 4, *(3,) * nd))
    w = rng.standard_normal((4, 3, *(2,) * nd))
    kw = {"stride": s, "padding": p, "dilation": d, "groups": 1}
    want = TORCH_CONVT[nd](torch.tensor(dz), torch.tensor(w), output_padding=a, **kw).numpy()
    got = conv_grad_input(dz, w, want.shape, **kw)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # the same through the spatial sizes only, and from the layer
    np.testing.assert_allclose(conv_grad_input(dz, w, want.shape[2:], **kw), want, rtol=0,
                               atol=1e-12)
    layer = LAYERS[nd][2](4, 3, 2, stride=s, padding=p, dilation=d, output_padding=a,
                          bias=False, dtype=np.float64)
    layer.weight.data[...] = w
    np.testing.assert_allclose(layer.forward(dz), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("s", "d"), [(1, 1), (2, 1), (1, 3), (3, 2)])
def test_one_more_than_torch_takes_is_refused(s, d) -> None:
    dz = np.ones((1, 1, 3))
    w = np.ones((1, 1, 2))
    base = (3 - 1) * s + d * (2 - 1) + 1
    conv_grad_input(dz, w, (1, 1, base + max(s, d) - 1), stride=s, dilation=d)
    with pytest.raises(ValueError, match=r"cannot have produced dz .* the remainder "
                                         r"\(output_padding\) would be \(\d+,\); it must be >= 0 "
                                         r"and smaller than the stride"):
        conv_grad_input(dz, w, (1, 1, base + max(s, d)), stride=s, dilation=d)


def test_conv_grad_weight_still_needs_a_true_forward_pair() -> None:
    """Only a transposed convolution's output size may exceed the forward rule: x and dz of
    ``conv_grad_weight`` come from one forward pass."""
    with pytest.raises(ValueError, match="cannot have produced dz"):
        conv_grad_weight(np.ones((1, 1, 10)), np.ones((1, 1, 3)), (1, 1, 2), dilation=3)


# --- one-entry tuples -------------------------------------------------------------------------

ONE_ENTRY = list(itertools.product((2, 3), ({"padding": (1,)}, {"stride": (2,)},
                                            {"dilation": (2,)},
                                            {"padding": (2,), "stride": (3,), "dilation": (2,)})))


@pytest.mark.parametrize(("nd", "kw"), ONE_ENTRY, ids=[f"{nd}d-{kw}" for nd, kw in ONE_ENTRY])
def test_one_entry_tuples_broadcast_as_in_torch(nd, kw) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 2, *(7,) * nd))
    w = rng.standard_normal((3, 2, *(2,) * nd))
    b = rng.standard_normal(3)
    z, gx, gw, gb = _autograd(nd, x, w, b, **kw)
    np.testing.assert_allclose(conv(x, w, b, **kw), z, rtol=0, atol=1e-12)
    dz = np.ones(z.shape)
    np.testing.assert_allclose(conv_grad_input(dz, w, x.shape, **kw), gx, rtol=0, atol=1e-12)
    np.testing.assert_allclose(conv_grad_weight(x, dz, w.shape, **kw), gw, rtol=0, atol=1e-12)
    ours, theirs = LAYERS[nd][0](2, 3, 2, **kw, dtype=np.float64), LAYERS[nd][1](2, 3, 2, **kw)
    theirs = theirs.double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    np.testing.assert_allclose(ours.forward(x), theirs(torch.tensor(x)).detach().numpy(),
                               rtol=0, atol=1e-12)
    assert ours.backward(dz).shape == x.shape


@pytest.mark.parametrize("nd", [2, 3])
def test_transposed_layers_broadcast_one_entry_tuples(nd) -> None:
    kw = {"stride": (2,), "padding": (1,), "dilation": (3,), "output_padding": (2,)}
    ours = LAYERS[nd][2](2, 3, 2, **kw, dtype=np.float64, rng=0)
    full = {k: v * nd for k, v in kw.items()}
    theirs = LAYERS[nd][3](2, 3, 2, **full).double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((1, 2, *(4,) * nd))
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    dy = np.random.default_rng(1).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(ours.forward(x), yt.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=0, atol=1e-12)
