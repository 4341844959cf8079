"""rot180.optim's SGD, Adam and AdamW against torch.optim (foreach=False), step for step.

Both sides start from the same parameters and, at every step, receive the gradient of the same
noisy quadratic ``sum(c * (w - target)**2) / 2`` evaluated at their *own* current parameters, so
any difference in an update feeds back into later gradients. After 50 steps float64 parameters
must agree to 1e-12 relative to each parameter's largest magnitude; float32 stays float32 and
agrees with torch's float32 run to float32 precision. Further oracles: hand-computed first steps,
the finite-difference gradient of the documented L2 penalty ``(λ/2)·||w||²``, and a run
interrupted by a JSON + arrays checkpoint that must equal the uninterrupted one bit for bit.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from rot180.nn import Parameter, Sequential
from rot180.optim import SGD, Adam, AdamW

SHAPES = [(3, 4), (5,), (2, 3, 2)]
STEPS = 50
TOL64 = 1e-12
TOL32 = 1e-6
CLASSES = {"SGD": (SGD, torch.optim.SGD), "Adam": (Adam, torch.optim.Adam),
           "AdamW": (AdamW, torch.optim.AdamW)}

# (optimizer, hyperparameters, per-group overrides or None for a single group)
CONFIGS: list[tuple[str, dict[str, Any], list[dict[str, Any]] | None]] = [
    ("SGD", {"lr": 0.1}, None),
    ("SGD", {"lr": 0.05, "momentum": 0.9}, None),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}, None),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}, None),
    ("SGD", {"lr": 0.1, "weight_decay": 0.05}, None),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "dampening": 0.1, "weight_decay": 0.02}, None),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, None),
    ("SGD", {"lr": 0.05, "momentum": 0.9},
     [{}, {"lr": 0.01}, {"lr": 0.2, "momentum": 0.5, "weight_decay": 0.1}]),
    ("Adam", {}, None),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6}, None),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}, None),
    ("Adam", {"lr": 0.01, "amsgrad": True}, None),
    ("Adam", {"lr": 0.02, "amsgrad": True, "weight_decay": 0.05, "betas": (0.5, 0.9)}, None),
    ("Adam", {"lr": 0.01}, [{}, {"lr": 0.001, "amsgrad": True}, {"betas": (0.0, 0.5)}]),
    ("AdamW", {}, None),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}, None),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}, None),
    ("AdamW", {"lr": 0.01}, [{"weight_decay": 0.0}, {"lr": 0.05}, {"amsgrad": True}]),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(CONFIGS)]


class Problem:
    """A noisy quadratic: the gradient at ``w`` for step ``t`` is ``c*(w - target) + noise[t]``."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.init = [rng.standard_normal(s) for s in SHAPES]
        self.target = [rng.standard_normal(s) for s in SHAPES]
        self.curv = [rng.uniform(0.2, 2.0, s) for s in SHAPES]
        self.noise = [[0.3 * rng.standard_normal(s) for s in SHAPES] for _ in range(STEPS)]

    def grad(self, i: int, t: int, w: np.ndarray) -> np.ndarray:
        return (self.curv[i].astype(w.dtype) * (w - self.target[i].astype(w.dtype))
                + self.noise[t][i].astype(w.dtype))


def _groups(items: list, overrides: list[dict[str, Any]] | None) -> list:
    """One parameter per group when there are overrides (in SHAPES order), else a flat list."""
    if overrides is None:
        return list(items)
    return [{"params": [p], **o} for p, o in zip(items, overrides, strict=True)]


def run_ours(cls, hyper, overrides, problem, dtype, steps=STEPS, start=0, params=None, opt=None):
    params = params or [Parameter(w.astype(dtype)) for w in problem.init]
    opt = opt or cls(_groups(params, overrides), **hyper)
    for t in range(start, start + steps):
        opt.zero_grad()
        for i, p in enumerate(params):
            p.grad += problem.grad(i, t, p.data)
        opt.step()
    return params, opt


def run_torch(tcls, hyper, overrides, problem, dtype, steps=STEPS):
    tdtype = {np.float32: torch.float32, np.float64: torch.float64}[dtype]
    params = [torch.tensor(w, dtype=tdtype, requires_grad=True) for w in problem.init]
    opt = tcls(_groups(params, overrides), foreach=False, **hyper)
    for t in range(steps):
        with torch.no_grad():
            for i, p in enumerate(params):
                p.grad = torch.from_numpy(problem.grad(i, t, p.detach().numpy()))
        opt.step()
    return [p.detach().numpy() for p in params]


def rel_err(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.max(np.abs(ours.astype(np.float64) - theirs)) / np.max(np.abs(theirs)))


@pytest.mark.parametrize(("name", "hyper", "overrides"), CONFIGS, ids=IDS)
def test_matches_torch_float64(name, hyper, overrides):
    cls, tcls = CLASSES[name]
    problem = Problem(seed=1)
    ours, _ = run_ours(cls, hyper, overrides, problem, np.float64)
    theirs = run_torch(tcls, hyper, overrides, problem, np.float64)
    for p, w, w0 in zip(ours, theirs, problem.init, strict=True):
        assert p.data.dtype == np.float64
        assert not np.allclose(w, w0), "the run must move the parameters"
        assert rel_err(p.data, w) <= TOL64


@pytest.mark.parametrize(("name", "hyper", "overrides"), CONFIGS, ids=IDS)
def test_float32_stays_float32_and_matches_torch(name, hyper, overrides):
    cls, tcls = CLASSES[name]
    problem = Problem(seed=7)
    ours, opt = run_ours(cls, hyper, overrides, problem, np.float32)
    theirs = run_torch(tcls, hyper, overrides, problem, np.float32)
    for p, w in zip(ours, theirs, strict=True):
        assert p.data.dtype == np.float32 and p.grad.dtype == np.float32
        assert rel_err(p.data, w) <= TOL32
    for state in opt.state.values():
        for value in state.values():
            assert not isinstance(value, np.ndarray) or value.dtype == np.float32


def _to_checkpoint(sd: dict) -> tuple[str, dict[str, np.ndarray]]:
    """Split a state_dict as a checkpoint would: arrays apart, the rest through JSON."""
    arrays = {}
    meta = {"param_groups": sd["param_groups"], "state": {}}
    for idx, entry in sd["state"].items():
        meta["state"][idx] = {}
        for k, v in entry.items():
            if isinstance(v, np.ndarray):
                arrays[f"{idx}.{k}"] = v
                meta["state"][idx][k] = {"array": f"{idx}.{k}"}
            else:
                meta["state"][idx][k] = v
    return json.dumps(meta), arrays


def _from_checkpoint(text: str, arrays: dict[str, np.ndarray]) -> dict:
    meta = json.loads(text)
    for entry in meta["state"].values():
        for k, v in entry.items():
            if isinstance(v, dict):
                entry[k] = arrays[v["array"]]
    return meta


@pytest.mark.parametrize(("name", "hyper", "overrides"), CONFIGS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_state_dict_round_trip_continues_exactly(name, hyper, overrides, dtype):
    cls, _ = CLASSES[name]
    problem = Problem(seed=11)
    whole, _ = run_ours(cls, hyper, overrides, problem, dtype)

    first, opt = run_ours(cls, hyper, overrides, problem, dtype, steps=20)
    text, arrays = _to_checkpoint(opt.state_dict())
    weights = [p.data.copy() for p in first]
    for p in first:  # the saved copies must not alias the live state
        p.data += 1.0
    for state in opt.state.values():
        for v in state.values():
            if isinstance(v, np.ndarray):
                v += 1.0

    params = [Parameter(w) for w in weights]
    fresh = cls(_groups(params, overrides), lr=123.0)  # hyperparameters come from the checkpoint
    fresh.load_state_dict(_from_checkpoint(text, arrays))
    assert [g["lr"] for g in fresh.param_groups] == [g["lr"] for g in opt.param_groups]
    resumed, _ = run_ours(cls, hyper, overrides, problem, dtype, steps=STEPS - 20, start=20,
                          params=params, opt=fresh)
    for a, b in zip(whole, resumed, strict=True):
        np.testing.assert_array_equal(a.data, b.data)


def test_state_dict_layout_is_torchs():
    problem = Problem(seed=3)
    params, opt = run_ours(Adam, {"amsgrad": True}, [{}, {"lr": 0.1}, {}], problem,
                           np.float64, steps=3)
    sd = opt.state_dict()
    t_params = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    t_opt = torch.optim.Adam([{"params": [p]} for p in t_params[:1]]
                             + [{"params": [t_params[1]], "lr": 0.1}, {"params": [t_params[2]]}],
                             amsgrad=True, foreach=False)
    for p in t_params:
        p.grad = torch.ones_like(p)
    t_opt.step()
    t_sd = t_opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [g["params"] for g in t_sd["param_groups"]]
    assert sorted(sd["state"]) == sorted(t_sd["state"])
    for idx in sd["state"]:
        assert set(sd["state"][idx]) == set(t_sd["state"][idx])
        assert sd["state"][idx]["step"] == 3
        for k, v in sd["state"][idx].items():
            if k != "step":
                assert v.shape == tuple(t_sd["state"][idx][k].shape)
    for g, tg in zip(sd["param_groups"], t_sd["param_groups"], strict=True):
        for k in ("lr", "betas", "eps", "weight_decay", "amsgrad"):
            assert g[k] == tg[k]
    json.dumps({**sd, "state": {}})  # everything but the arrays is JSON


def test_sgd_without_momentum_keeps_no_state():
    p = Parameter(np.ones(3))
    opt = SGD([p], lr=0.1)
    p.grad[:] = 1.0
    opt.step()
    assert opt.state_dict()["state"] == {}
    np.testing.assert_array_equal(p.data, np.full(3, 0.9))


def test_first_steps_by_hand():
    # SGD momentum: the buffer starts as the first gradient, undampened.
    p = Parameter(np.array([1.0, 2.0]))
    opt = SGD([p], lr=0.5, momentum=0.9, dampening=0.5)
    p.grad[:] = [1.0, -2.0]
    opt.step()
    np.testing.assert_allclose(p.data, [0.5, 3.0], rtol=0, atol=1e-15)
    opt.step()  # buf = 0.9*g + 0.5*g = 1.4*g
    np.testing.assert_allclose(p.data, [0.5 - 0.7, 3.0 + 1.4], rtol=0, atol=1e-15)
    # Adam's bias-corrected first step moves each coordinate by lr*g/(|g| + eps).
    g = np.array([3.0, -0.25, 1e-3])
    p = Parameter(np.zeros(3))
    opt = Adam([p], lr=0.01, eps=1e-3)
    p.grad[:] = g
    opt.step()
    np.testing.assert_allclose(p.data, -0.01 * g / (np.abs(g) + 1e-3), rtol=1e-14)
    # AdamW first shrinks the weights by 1 - lr*wd, then takes Adam's step.
    p = Parameter(np.full(3, 2.0))
    opt = AdamW([p], lr=0.01, weight_decay=0.5, eps=0.0)
    p.grad[:] = g
    opt.step()
    np.testing.assert_allclose(p.data, 2.0 * (1 - 0.005) - 0.01 * np.sign(g), rtol=1e-14)


@pytest.mark.parametrize("cls", [SGD, Adam])
def test_weight_decay_is_the_gradient_of_half_lambda_norm_squared(cls):
    """weight_decay=λ with a zero data gradient == plain steps on (λ/2)·||w||², by finite
    differences."""
    lam, h = 0.3, 1e-6
    w0 = np.random.default_rng(5).standard_normal(6)
    penalty = lambda w: lam / 2 * np.sum(w * w)  # noqa: E731
    decayed, plain = Parameter(w0.copy()), Parameter(w0.copy())
    opt_decayed = cls([decayed], lr=0.1, weight_decay=lam)
    opt_plain = cls([plain], lr=0.1)
    for _ in range(5):
        decayed.zero_grad()
        opt_decayed.step()
        fd = np.array([(penalty(plain.data + h * e) - penalty(plain.data - h * e)) / (2 * h)
                       for e in np.eye(6)])
        plain.grad[:] = fd
        opt_plain.step()
    assert not np.allclose(decayed.data, w0)
    np.testing.assert_allclose(decayed.data, plain.data, rtol=1e-8)


def test_zero_grad_and_closure():
    p = Parameter(np.ones(2, dtype=np.float32))
    opt = SGD([p], lr=1.0)

    def closure() -> float:
        p.grad += 0.25
        return 7.0

    assert opt.step(closure) == 7.0
    np.testing.assert_array_equal(p.data, np.full(2, 0.75, dtype=np.float32))
    opt.zero_grad()
    np.testing.assert_array_equal(p.grad, 0)
    assert p.grad.dtype == np.float32


@pytest.mark.parametrize(("make", "exc", "match"), [
    (lambda p: SGD(p, lr=-1.0), ValueError, r"Invalid learning rate: -1\.0"),
    (lambda p: SGD(p, lr=0.1, momentum=-0.5), ValueError, r"Invalid momentum value: -0\.5"),
    (lambda p: SGD(p, lr=0.1, weight_decay=-1), ValueError, r"Invalid weight_decay value: -1"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), ValueError,
     "Nesterov momentum requires a momentum and zero dampening"),
    (lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError,
     "Nesterov momentum requires a momentum and zero dampening"),
    (lambda p: SGD(p, lr="0.1"), TypeError, "lr must be a real number, got str"),
    (lambda p: SGD(p, lr=float("nan")), ValueError, "lr must be finite"),
    (lambda p: SGD(p, lr=0.1, nesterov=1), TypeError, "nesterov must be True or False"),
    (lambda p: Adam(p, lr=-0.1), ValueError, r"Invalid learning rate: -0\.1"),
    (lambda p: Adam(p, eps=-1e-8), ValueError, "Invalid epsilon value"),
    (lambda p: Adam(p, betas=(1.0, 0.999)), ValueError, r"Invalid beta parameter at index 0: 1\.0"),
    (lambda p: Adam(p, betas=(0.9, -0.1)), ValueError, "Invalid beta parameter at index 1"),
    (lambda p: Adam(p, betas=0.9), TypeError, r"betas must be a pair \(beta1, beta2\)"),
    (lambda p: AdamW(p, weight_decay=-0.01), ValueError, "Invalid weight_decay value"),
    (lambda p: Adam(p, amsgrad=None), TypeError, "amsgrad must be True or False"),
    (lambda p: SGD([{"params": p, "lr": -2.0}], lr=0.1), ValueError,
     "Invalid learning rate: -2.0"),
    (lambda p: SGD([{"lr": 0.1}], lr=0.1), ValueError, "must have a 'params' entry"),
    (lambda p: SGD([np.zeros(3)], lr=0.1), TypeError,
     "optimizer can only optimize Parameters, but one of the params is ndarray"),
    (lambda p: SGD(p[0], lr=0.1), TypeError, "should be an iterable of Parameters or dicts"),
    (lambda p: SGD(Sequential(), lr=0.1), TypeError, r"got Sequential\. Pass model\.parameters"),
    (lambda p: SGD(set(p), lr=0.1), TypeError, "ordered collections"),
    (lambda p: SGD([], lr=0.1), ValueError, "optimizer got an empty parameter list"),
    (lambda p: SGD([p[0], p[0]], lr=0.1), ValueError, "more than once"),
    (lambda p: SGD([{"params": p}, {"params": p[:1]}], lr=0.1), ValueError,
     "some parameters appear in more than one parameter group"),
])
def test_argument_errors(make, exc, match):
    params = [Parameter(np.zeros(3)), Parameter(np.zeros(2))]
    with pytest.raises(exc, match=match):
        make(params)


def test_gradient_dtype_and_shape_errors():
    p = Parameter(np.zeros(3, dtype=np.float32))
    opt = SGD([p], lr=0.1)
    p.grad = np.zeros(3)
    with pytest.raises(TypeError, match="has dtype float64; expected float32"):
        opt.step()
    p.grad = np.zeros(4, dtype=np.float32)
    with pytest.raises(ValueError, match=r"must be an array of shape \(3,\), got \(4,\)"):
        opt.step()
    p.grad = None  # no gradient: skipped, as in PyTorch
    opt.step()
    np.testing.assert_array_equal(p.data, 0)


def _saved_adam():
    params = [Parameter(np.ones((2, 2))), Parameter(np.ones(3))]
    opt = Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.1}], amsgrad=True)
    for p in params:
        p.grad[...] = 1.0
    opt.step()
    return params, opt.state_dict()


@pytest.mark.parametrize(("edit", "match"), [
    (lambda sd: sd["param_groups"].pop(), "different number of parameter groups: expected 2"),
    (lambda sd: sd["param_groups"][1]["params"].append(2),
     "doesn't match the size of optimizer's group: group 1 has 1"),
    (lambda sd: sd["state"][1].update(exp_avg=np.zeros(4)),
     r"state 'exp_avg' of parameter 1: expected shape \(3,\), got \(4,\)"),
    (lambda sd: sd["state"][0].update(momentum_buffer=np.zeros((2, 2))), "unknown entries"),
    (lambda sd: sd["state"][0].pop("max_exp_avg_sq"), r"lacks entries \['max_exp_avg_sq'\]"),
    (lambda sd: sd["state"][0].update(step=1.5), "state 'step' of parameter 0 must be an int"),
    (lambda sd: sd["param_groups"][0].pop("eps"), r"lacks hyperparameters \['eps'\]"),
    (lambda sd: sd["param_groups"][0].update(lr=-1.0), "Invalid learning rate"),
    (lambda sd: sd["state"].update({5: {}}), "parameter index 5"),
    (lambda sd: sd.pop("state"), "keys 'state' and 'param_groups'"),
])
def test_load_state_dict_errors(edit, match):
    params, sd = _saved_adam()
    edit(sd)
    opt = Adam([{"params": params[:1]}, {"params": params[1:]}])
    before = opt.state_dict()
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(sd)
    assert opt.state_dict()["param_groups"] == before["param_groups"]  # nothing half-loaded


def test_load_casts_state_to_parameter_dtype():
    params, sd = _saved_adam()
    p32 = [Parameter(p.data.astype(np.float32)) for p in params]
    opt = Adam([{"params": p32[:1]}, {"params": p32[1:]}])
    opt.load_state_dict(sd)
    assert all(v.dtype == np.float32 for s in opt.state.values() for v in s.values()
               if isinstance(v, np.ndarray))
    assert opt.param_groups[1]["lr"] == 0.1 and opt.param_groups[0]["amsgrad"] is True
