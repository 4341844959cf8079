"""Fuzz tests of the optimizers and the loss modules. Valid random ``SGD``, ``Adam`` and
``AdamW`` hyperparameters must give the updates of the PyTorch float64 twin, and invalid ones
(one fault each) the documented exception; a corrupted optimizer ``state_dict`` must make
``load_state_dict`` raise ``ValueError`` for values and shapes or ``TypeError`` for types and
dtypes, and leave the optimizer unchanged; ``SoftmaxCrossEntropy`` and ``MSELoss`` must match
PyTorch float64 or raise the documented exception. The 1,200 cases generated here count toward
the suite's 5,000 (see ``test_fuzz_layers_oracles.py``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

from _fuzz_layers_common import close, fuzz, seeds, t64
from _fuzzing import raises
from rot180 import nn
from rot180.optim import SGD, Adam, AdamW

# -- optimizers -------------------------------------------------------------------------------

def _hyper(draw: Callable, valid: st.SearchStrategy, kind: str) -> tuple[Any, type | None]:
    """A valid value, or (with one fault) a value of a bad type or value, and its exception."""
    if kind == "type":
        return draw(st.sampled_from(["0.1", None, [0.1], True, np.ones(2)])), TypeError
    if kind == "value":
        return draw(st.sampled_from([math.nan, math.inf, -math.inf, -0.5])), ValueError
    return draw(valid), None


@st.composite
def optimizer_cases(draw: Callable) -> tuple[str, dict, type | None]:
    name = draw(st.sampled_from(["SGD", "Adam", "AdamW"]))
    if name == "SGD":
        momentum = draw(st.sampled_from([0.0, 0.5, 0.9]))
        nesterov = momentum > 0 and draw(st.booleans())
        kw: dict[str, Any] = {"lr": draw(st.floats(0, 1)), "momentum": momentum,
                              "dampening": 0.0 if nesterov else draw(st.floats(0, 1)),
                              "weight_decay": draw(st.sampled_from([0.0, 0.01, 0.3])),
                              "nesterov": nesterov}
    else:
        kw = {"lr": draw(st.floats(0, 0.5)),
              "betas": (draw(st.floats(0, 0.99)), draw(st.floats(0, 0.999))),
              "eps": draw(st.sampled_from([1e-8, 1e-3])),
              "weight_decay": draw(st.sampled_from([0.0, 0.01, 0.3])),
              "amsgrad": draw(st.booleans())}
    fault = draw(st.sampled_from(["none", "none", "type", "value", "flag", "betas"]))
    exc: type | None = None
    if fault in ("type", "value"):
        key = draw(st.sampled_from(sorted(k for k, v in kw.items() if isinstance(v, float)
                                          and k != "dampening")))
        kw[key], exc = _hyper(draw, st.nothing(), fault)
    elif fault == "flag":
        kw["nesterov" if name == "SGD" else "amsgrad"] = draw(st.sampled_from([1, "yes", None]))
        exc = TypeError
    elif fault == "betas" and name != "SGD":
        kw["betas"], exc = draw(st.sampled_from([
            ((0.9,), TypeError), ((0.9, 0.99, 0.9), TypeError), (0.9, TypeError),
            ((1.0, 0.9), ValueError), ((0.9, -0.1), ValueError), ((math.nan, 0.9), ValueError),
            (("0.9", 0.9), TypeError)]))
    return name, kw, exc


@fuzz(500, case=optimizer_cases(), seed=seeds)
def test_optimizers_match_torch_or_raise(case: tuple, seed: int) -> None:
    name, kw, exc = case
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s) for s in [(3, 2), (4,)]]
    ours = [nn.Parameter(v.copy()) for v in values]
    make = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[name]
    if exc is not None:
        raises(exc, lambda: make(ours, **kw))
        return
    opt = make(ours, **kw)
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    topt = getattr(torch.optim, name)(theirs, **kw, foreach=False)
    for _ in range(3):
        for p, t in zip(ours, theirs, strict=True):
            g = rng.standard_normal(p.shape)
            p.grad[...] = g
            t.grad = torch.tensor(g)
        opt.step()
        topt.step()
    for p, t in zip(ours, theirs, strict=True):
        close(p.data, t, 1e-9)


def _corruptions(name: str) -> list[str]:
    base = ["drop state", "drop param_groups", "not a dict", "param_groups not a list",
            "group not a dict", "group lacks params", "params not a list", "group lacks lr",
            "lr NaN", "lr a string", "extra group", "params count", "state not a dict",
            "state entry not a dict", "state index out of range", "state index negative",
            "state index a word", "unknown state entry", "state array shape",
            "state array strings", "state array NaN"]
    return base + (["step negative", "step fractional", "step missing"]
                   if name != "SGD" else [])


@fuzz(500, name=st.sampled_from(["SGD", "Adam"]), json=st.booleans(), seed=seeds, data=st.data())
def test_optimizer_load_state_dict_rejects_corruption_atomically(name: str, json: bool,
                                                                 seed: int,
                                                                 data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    params = [nn.Parameter(rng.standard_normal((2, 3))), nn.Parameter(rng.standard_normal(3))]
    opt = SGD(params, lr=0.1, momentum=0.9) if name == "SGD" else Adam(params, lr=0.01)
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape)
    opt.step()
    saved = opt.state_dict()
    if json:   # what a JSON round trip gives: str keys, lists for tuples
        saved["state"] = {str(k): v for k, v in saved["state"].items()}
        for g in saved["param_groups"]:
            g.update({k: list(v) for k, v in g.items() if isinstance(v, tuple)})
    fault = data.draw(st.sampled_from(["none", *_corruptions(name)]))
    sd: Any = copy.deepcopy(saved)
    key0 = next(iter(sd["state"]))
    entry = sd["state"][key0]
    array_key = "momentum_buffer" if name == "SGD" else "exp_avg"
    exc: type[Exception] = ValueError
    if fault == "drop state":
        del sd["state"]
    elif fault == "drop param_groups":
        del sd["param_groups"]
    elif fault == "not a dict":
        sd = data.draw(st.sampled_from([None, [], "state", 3]))
    elif fault == "param_groups not a list":
        sd["param_groups"] = data.draw(st.sampled_from([3, "groups", None, {"params": [0]}]))
    elif fault == "group not a dict":
        sd["param_groups"] = [5]
    elif fault == "group lacks params":
        del sd["param_groups"][0]["params"]
    elif fault == "params not a list":
        sd["param_groups"][0]["params"] = data.draw(st.sampled_from([0, "01", None]))
    elif fault == "group lacks lr":
        del sd["param_groups"][0]["lr"]
    elif fault == "lr NaN":
        sd["param_groups"][0]["lr"] = data.draw(st.sampled_from([math.nan, -1.0, math.inf]))
    elif fault == "lr a string":
        sd["param_groups"][0]["lr"], exc = "0.1", TypeError
    elif fault == "extra group":
        sd["param_groups"].append(copy.deepcopy(sd["param_groups"][0]))
    elif fault == "params count":
        sd["param_groups"][0]["params"] = sd["param_groups"][0]["params"][:1]
    elif fault == "state not a dict":
        sd["state"] = data.draw(st.sampled_from([[1], "state", 3]))
    elif fault == "state entry not a dict":
        sd["state"][key0] = data.draw(st.sampled_from([5, None, [1.0]]))
    elif fault == "state index out of range":
        sd["state"][data.draw(st.sampled_from([2, 7, "9"]))] = entry
    elif fault == "state index negative":
        sd["state"][-1] = entry
    elif fault == "state index a word":
        sd["state"][data.draw(st.sampled_from(["a", "", "1.5", None]))] = entry
    elif fault == "unknown state entry":
        entry["velocity"] = entry[array_key]
    elif fault == "state array shape":
        entry[array_key] = data.draw(st.sampled_from([entry[array_key][:1], np.zeros(7),
                                                      np.float64(1.0)]))
    elif fault == "state array strings":
        entry[array_key], exc = np.full(np.shape(entry[array_key]), "a"), TypeError
    elif fault == "state array NaN":
        arr = np.array(entry[array_key], dtype=np.float64)
        arr.flat[0] = data.draw(st.sampled_from([math.nan, math.inf]))
        entry[array_key] = arr
    elif fault == "step negative":
        entry["step"] = -1
    elif fault == "step fractional":
        entry["step"] = data.draw(st.sampled_from([1.5, "1", None]))
    elif fault == "step missing":
        del entry["step"]
    before = opt.state_dict()
    if fault == "none":
        opt.load_state_dict(sd)
    else:
        raises(exc, lambda: opt.load_state_dict(sd))
    after = opt.state_dict()   # unchanged, or what was saved: the same either way
    assert before["param_groups"] == after["param_groups"]
    for k, v in before["state"].items():
        for name_, arr in v.items():
            assert np.array_equal(arr, after["state"][k][name_])


# -- loss modules ------------------------------------------------------------------------------

@fuzz(200, n=st.integers(1, 4), c=st.integers(1, 4), smoothing=st.sampled_from([0.0, 0.2]),
      reduction=st.sampled_from(["mean", "sum"]), soft=st.booleans(), seed=seeds,
      fault=st.sampled_from(["none", "none", "labels", "nan targets", "mixed dtype",
                             "outputs not an array"]))
def test_loss_modules_match_torch_or_raise(n: int, c: int, smoothing: float, reduction: str,
                                           soft: bool, seed: int, fault: str) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c)).astype(np.float32)
    labels = rng.integers(0, c, n)
    t = rng.dirichlet(np.ones(c), n).astype(np.float32) if soft else labels
    ce = nn.SoftmaxCrossEntropy(smoothing, reduction=reduction)
    mse = nn.MSELoss(reduction=reduction)
    target = rng.standard_normal((n, c)).astype(np.float32)
    if fault == "none":
        xt = t64(x, grad=True)
        lt = torch.nn.functional.cross_entropy(
            xt, t64(t) if soft else torch.tensor(labels), label_smoothing=smoothing,
            reduction=reduction)
        lt.backward()
        assert isinstance(ce(x, t), float) and math.isclose(ce(x, t), lt.item(), rel_tol=1e-5,
                                                            abs_tol=1e-5)
        g = ce.backward()
        assert g.dtype == np.float32
        close(g, xt.grad, 1e-5)
        mt = torch.nn.functional.mse_loss(t64(x), t64(target), reduction=reduction)
        assert math.isclose(mse(x, target), mt.item(), rel_tol=1e-5, abs_tol=1e-5)
        assert mse.backward().shape == x.shape
        return
    if fault == "labels":
        raises(ValueError, lambda: ce(x, np.append(labels, c)[1:] if n else labels))
    elif fault == "nan targets":
        bad = target.copy()
        bad[0, 0] = np.nan
        raises(ValueError, lambda: mse(x, bad))
    elif fault == "mixed dtype":
        raises(TypeError, lambda: mse(x, target.astype(np.float64)))
    else:
        raises(TypeError, lambda: ce("logits", labels))
