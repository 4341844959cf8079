"""rot180.models: the exact LeNet-5 of the issue, and every model against its PyTorch twin.

Each twin is written here from the architecture in :mod:`rot180.models.zoo` (not generated from
it), loaded with our ``state_dict`` and run in float64; logits, the input gradient and every
parameter gradient must agree to 1e-10, in train and eval mode for the BatchNorm nets.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn as tnn

from rot180 import nn
from rot180.models import MODELS, build_model, lenet5, resnet_small, vgg_small

TOL = 1e-10


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


# -- PyTorch twins ----------------------------------------------------------------------------
def torch_lenet5(num_classes: int = 10, in_channels: int = 1) -> tnn.Sequential:
    return tnn.Sequential(
        tnn.Conv2d(in_channels, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Flatten(),
        tnn.Linear(400, 120), tnn.ReLU(),
        tnn.Linear(120, 84), tnn.ReLU(),
        tnn.Linear(84, num_classes),
    )


def _t_conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[tnn.Module]:
    return [tnn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            tnn.BatchNorm2d(cout), tnn.ReLU()]


def torch_vgg_small(num_classes: int = 10, in_channels: int = 3, width: int = 32
                    ) -> tnn.Sequential:
    w = width
    return tnn.Sequential(
        *_t_conv_bn_relu(in_channels, w), *_t_conv_bn_relu(w, w), tnn.MaxPool2d(2),
        *_t_conv_bn_relu(w, 2 * w), *_t_conv_bn_relu(2 * w, 2 * w), tnn.MaxPool2d(2),
        *_t_conv_bn_relu(2 * w, 4 * w), tnn.MaxPool2d(2),
        tnn.Flatten(), tnn.Linear(4 * w * 4 * 4, num_classes),
    )


class TorchResidual(tnn.Module):
    def __init__(self, block: tnn.Module, shortcut: tnn.Module | None) -> None:
        super().__init__()
        self.block = block
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) + (x if self.shortcut is None else self.shortcut(x))


def _t_basic_block(cin: int, cout: int, stride: int) -> TorchResidual:
    block = tnn.Sequential(*_t_conv_bn_relu(cin, cout, stride),
                           tnn.Conv2d(cout, cout, 3, padding=1, bias=False), tnn.BatchNorm2d(cout))
    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                  tnn.BatchNorm2d(cout))
    return TorchResidual(block, shortcut)


def torch_resnet_small(num_classes: int = 10, in_channels: int = 3, width: int = 16
                       ) -> tnn.Sequential:
    w = width
    return tnn.Sequential(
        *_t_conv_bn_relu(in_channels, w),
        _t_basic_block(w, w, 1), tnn.ReLU(),
        _t_basic_block(w, 2 * w, 2), tnn.ReLU(),
        _t_basic_block(2 * w, 4 * w, 2), tnn.ReLU(),
        tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(4 * w, num_classes),
    )


TWINS = {"lenet5": torch_lenet5, "vgg_small": torch_vgg_small,
         "resnet_small": torch_resnet_small}
INPUT = {"lenet5": (1, 28, 28), "vgg_small": (3, 32, 32), "resnet_small": (3, 32, 32)}


def to_torch(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.array(v)) for k, v in state.items()}


def scrambled_state(model: nn.Module, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The model's state with BatchNorm's affine parameters and running statistics moved away
    from their defaults (1, 0, 0, 1), so eval mode and the affine grads are really exercised."""
    state = model.state_dict()
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.BatchNorm2d):
            continue
        c = mod.num_features
        state[f"{name}.weight"] = rng.uniform(0.5, 1.5, c)
        state[f"{name}.bias"] = rng.normal(0.0, 0.2, c)
        state[f"{name}.running_mean"] = rng.normal(0.0, 0.3, c)
        state[f"{name}.running_var"] = rng.uniform(0.5, 2.0, c)
    return state


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


# -- LeNet-5 is exactly the Sequential of the issue -------------------------------------------
LENET_LAYERS = [
    (nn.Conv2d, {"in_channels": 1, "out_channels": 6, "kernel_size": (5, 5), "stride": (1, 1),
                 "padding": (2, 2), "dilation": (1, 1), "groups": 1}),
    (nn.ReLU, {}),
    (nn.MaxPool2d, {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0)}),
    (nn.Conv2d, {"in_channels": 6, "out_channels": 16, "kernel_size": (5, 5), "stride": (1, 1),
                 "padding": (0, 0), "dilation": (1, 1), "groups": 1}),
    (nn.ReLU, {}),
    (nn.MaxPool2d, {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0)}),
    (nn.Flatten, {"start_dim": 1, "end_dim": -1}),
    (nn.Linear, {"in_features": 400, "out_features": 120}),
    (nn.ReLU, {}),
    (nn.Linear, {"in_features": 120, "out_features": 84}),
    (nn.ReLU, {}),
    (nn.Linear, {"in_features": 84, "out_features": 10}),
]


def test_lenet5_is_exactly_the_sequential_of_the_issue() -> None:
    model = lenet5()
    assert isinstance(model, nn.Sequential)
    assert len(model) == 12
    for i, (cls, attrs) in enumerate(LENET_LAYERS):
        layer = model[i]
        assert type(layer) is cls, f"index {i}: {type(layer).__name__} is not {cls.__name__}"
        for name, value in attrs.items():
            assert getattr(layer, name) == value, f"index {i}.{name}"
    for i in (0, 3, 7, 9, 11):
        assert model[i].bias is not None


def test_lenet5_state_dict_matches_torch_names_and_shapes() -> None:
    ours = {k: v.shape for k, v in lenet5().state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in torch_lenet5().state_dict().items()}
    assert list(ours) == list(theirs)
    assert ours == theirs


@pytest.mark.parametrize("name", sorted(MODELS))
def test_state_dict_keys_and_shapes_equal_the_torch_twin(name: str) -> None:
    ours = build_model(name).state_dict()
    theirs = TWINS[name]().state_dict()
    assert list(ours) == list(theirs)
    for k in ours:
        assert ours[k].shape == tuple(theirs[k].shape), k
    # and it loads strictly, both ways
    twin = TWINS[name]()
    twin.load_state_dict(to_torch(ours), strict=True)
    again = build_model(name, seed=123)
    again.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    for k, v in again.state_dict().items():
        np.testing.assert_array_equal(v, ours[k])


@pytest.mark.parametrize(("name", "mode"), [("lenet5", "train"), ("vgg_small", "train"),
                                            ("vgg_small", "eval"), ("resnet_small", "train"),
                                            ("resnet_small", "eval")])
def test_forward_backward_equal_the_torch_twin(name: str, mode: str) -> None:
    rng = np.random.default_rng(7)
    ours = build_model(name, seed=3).astype(np.float64)
    state = scrambled_state(ours, rng)
    ours.load_state_dict(state)
    twin = TWINS[name]().double()
    twin.load_state_dict(to_torch(state))
    ours.train(mode == "train")
    twin.train(mode == "train")

    x = rng.standard_normal((4, *INPUT[name]))
    y = ours.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = ours.backward(dy)

    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = twin(xt)
    yt.backward(torch.from_numpy(dy))

    assert y.dtype == np.float64 and dx.dtype == np.float64
    assert rel_err(y, yt.detach().numpy()) <= TOL
    assert rel_err(dx, xt.grad.numpy()) <= TOL
    theirs = dict(twin.named_parameters())
    names = [k for k, _ in ours.named_parameters()]
    assert names == list(theirs)
    for k, p in ours.named_parameters():
        assert rel_err(p.grad, theirs[k].grad.numpy()) <= TOL, k
    # running statistics updated alike in train mode, untouched in eval mode
    t_state = twin.state_dict()
    for k, v in ours.state_dict().items():
        if "running" in k or "num_batches" in k:
            assert rel_err(v, t_state[k].numpy()) <= TOL, k
            if mode == "eval":
                np.testing.assert_array_equal(v, state[k])


def test_eval_mode_is_deterministic_and_batch_independent() -> None:
    rng = np.random.default_rng(1)
    model = resnet_small(seed=0).astype(np.float64)
    model.load_state_dict(scrambled_state(model, rng))
    model.eval()
    x = rng.standard_normal((3, 3, 32, 32))
    full = model.forward(x)
    one = model.forward(x[1:2])
    assert rel_err(one, full[1:2]) <= TOL


@pytest.mark.parametrize("name", sorted(MODELS))
def test_dtype_is_kept_and_seed_reproduces_weights(name: str) -> None:
    a, b, c = build_model(name, seed=5), build_model(name, seed=5), build_model(name, seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])
    assert any(not np.array_equal(sa[k], sc[k]) for k in sa if k.endswith("weight"))
    assert all(p.dtype == np.float32 for p in a.parameters())
    x = np.random.default_rng(0).standard_normal((2, *INPUT[name])).astype(np.float32)
    a.eval()
    assert a.forward(x).dtype == np.float32
    assert a.forward(x).shape == (2, 10)


def test_default_init_is_pytorch_uniform_bound() -> None:
    """PyTorch's default: weights and biases uniform in +-1/sqrt(fan_in)."""
    model = lenet5(seed=0)
    for i in (0, 3, 7, 9, 11):
        w, b = model[i].weight.data, model[i].bias.data
        bound = 1 / math.sqrt(int(np.prod(w.shape[1:])))
        assert np.all(np.abs(w) <= bound) and np.all(np.abs(b) <= bound)
        assert np.max(np.abs(w)) > 0.9 * bound   # spread over the whole interval
        assert abs(float(np.mean(w))) < 0.1 * bound


@pytest.mark.parametrize(("kwargs", "n_out"), [({"num_classes": 3}, 3),
                                               ({"num_classes": 7, "in_channels": 3}, 7)])
def test_lenet5_options(kwargs: dict, n_out: int) -> None:
    model = build_model("lenet5", **kwargs, dtype=np.float64)
    x = np.zeros((2, kwargs.get("in_channels", 1), 28, 28))
    assert model.forward(x).shape == (2, n_out)
    assert model[0].in_channels == kwargs.get("in_channels", 1)


def test_registry_lists_the_three_models() -> None:
    assert MODELS == {"lenet5": lenet5, "vgg_small": vgg_small, "resnet_small": resnet_small}


def test_build_model_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"Unknown model 'lenet6'; valid names are \['lenet5', "
                                         r"'resnet_small', 'vgg_small'\]"):
        build_model("lenet6")


def test_build_model_bad_config_is_a_type_error_naming_the_model() -> None:
    with pytest.raises(TypeError, match=r"Invalid configuration for model 'vgg_small'.*depth"):
        build_model("vgg_small", depth=3)
