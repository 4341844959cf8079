"""Module and Parameter: registration, traversal, state_dict round trips and their errors."""

from __future__ import annotations

import numpy as np
import pytest

import rot180
from rot180.nn import BatchNorm2d, Conv2d, Linear, Module, Parameter, Sequential, StateDictError


def net() -> Sequential:
    return Sequential(Conv2d(1, 2, 3, rng=0), BatchNorm2d(2), Linear(4, 3, rng=1))


def test_names_follow_pytorch_and_buffers_are_saved() -> None:
    assert list(net().state_dict()) == [
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
        "1.num_batches_tracked", "2.weight", "2.bias"]
    assert [n for n, _ in net().named_parameters()] == [
        "0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias"]


def test_state_dict_round_trip_copies() -> None:
    a, b = net(), net()
    for p in a.parameters():
        p.data += 1
    b.load_state_dict(a.state_dict())
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        np.testing.assert_array_equal(x, y, err_msg=k)
    sd = b.state_dict()
    sd["0.weight"][...] = 7   # a copy: the model is untouched
    assert not np.any(b[0].weight.data == 7)


def test_load_state_dict_lists_every_problem() -> None:
    sd = net().state_dict()
    del sd["0.bias"]
    sd["extra"] = np.zeros(1)
    sd["2.weight"] = np.zeros((5, 5), np.float32)
    sd["1.weight"] = np.ones(2, complex)
    with pytest.raises(StateDictError, match=r"missing keys: 0\.bias \| unexpected keys: extra \| "
                                             r"shape mismatches: 2\.weight: expected shape "
                                             r"\(3, 4\), got \(5, 5\) \| wrong dtypes: 1\.weight"):
        net().load_state_dict(sd)


@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda m: m.load_state_dict(None), TypeError, "expects a mapping of names to arrays"),
    (lambda m: m.load_state_dict({"0.weight": np.ones(1)}), StateDictError, "missing keys"),
    # values pass the array seam, as Optimizer.load_state_dict's: a list is not converted
    (lambda m: m.load_state_dict({"0.weight": [1]}), TypeError,
     r"Sequential\.load_state_dict: state\['0\.weight'\] must be a numpy array, got list"),
    (lambda m: m.astype("foo"), TypeError, r"astype: dtype must be float32 or float64, got 'foo'"),
    (lambda m: m.astype(np.int32), TypeError,
     r"astype: dtype must be float32 or float64, got int32\. Pass dtype=np\.float32"),
    (lambda m: m.train("no"), TypeError, r"train: mode must be True or False, got str 'no'"),
])
def test_bad_calls(call, exc, match) -> None:
    with pytest.raises(exc, match=match):
        call(net())


def test_astype_casts_parameters_and_float_buffers_only() -> None:
    m = net().astype(np.float64)
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in m.parameters())
    assert m[1].running_mean.dtype == np.float64
    assert m[1].num_batches_tracked.dtype == np.int64


def test_train_eval_reach_every_module() -> None:
    m = net().eval()
    assert not any(mod.training for _, mod in m.named_modules())
    m.train()
    assert all(mod.training for _, mod in m.named_modules())


def test_parameter_rejects_integers_and_zero_grad_keeps_the_array() -> None:
    with pytest.raises(TypeError,
                       match="Parameter: data must have dtype float32 or float64, got int64"):
        Parameter(np.arange(3))
    p = Parameter(np.ones(3))
    g = p.grad
    g += 2
    p.zero_grad()
    assert p.grad is g and not g.any()


def test_subclass_must_call_super_init() -> None:
    class Bad(Module):
        def __init__(self) -> None:
            self.w = Parameter(np.ones(2))

    with pytest.raises(AttributeError, match=r"must call super\(\).__init__\(\)"):
        Bad()


def test_top_level_names_load_lazily() -> None:
    assert rot180.nn.Conv2d is Conv2d
    assert callable(rot180.save_checkpoint)
