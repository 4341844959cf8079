"""rot180.optim's learning-rate schedulers against torch.optim.lr_scheduler and closed forms.

Each schedule runs 50 steps on an optimizer with two param groups (different base rates) beside
the same PyTorch scheduler; every learning rate must agree to 1e-12 relative. The recursive
sequences are also checked against their closed forms (an oracle independent of PyTorch), a
JSON round trip of the state must continue the sequence exactly, and an SGD run driven by
warm-up + cosine must end at PyTorch's parameters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as tls

from rot180.nn import Parameter
from rot180.optim import (
    SGD,
    CosineAnnealingLR,
    LinearWarmup,
    SequentialLR,
    StepLR,
    warmup_cosine,
)

STEPS = 50
BASE_LRS = (0.1, 0.03)

Pair = tuple[Callable[[Any], Any], Callable[[Any], Any]]


def _torch_seq(first: Callable, second: Callable, milestone: int) -> Callable:
    return lambda o: tls.SequentialLR(o, [first(o), second(o)], milestones=[milestone])


# name -> (build ours on an optimizer, build torch's on a torch optimizer)
SCHEDULES: dict[str, Pair] = {
    "step": (lambda o: StepLR(o, 7, gamma=0.5), lambda o: tls.StepLR(o, 7, gamma=0.5)),
    "step-gamma0.9": (lambda o: StepLR(o, 1, gamma=0.9), lambda o: tls.StepLR(o, 1, gamma=0.9)),
    "cosine-past-T_max": (lambda o: CosineAnnealingLR(o, 20, eta_min=1e-3),
                          lambda o: tls.CosineAnnealingLR(o, 20, eta_min=1e-3)),
    "cosine": (lambda o: CosineAnnealingLR(o, STEPS), lambda o: tls.CosineAnnealingLR(o, STEPS)),
    "warmup": (lambda o: LinearWarmup(o, start_factor=0.1, total_iters=10),
               lambda o: tls.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=10)),
    "linear-decay": (lambda o: LinearWarmup(o, start_factor=1.0, end_factor=0.2, total_iters=30),
                     lambda o: tls.LinearLR(o, start_factor=1.0, end_factor=0.2,
                                            total_iters=30)),
    "warmup-cosine": (lambda o: warmup_cosine(o, warmup_steps=5, total_steps=STEPS,
                                              start_factor=0.01, eta_min=1e-4),
                      _torch_seq(lambda o: tls.LinearLR(o, 0.01, 1.0, 5),
                                 lambda o: tls.CosineAnnealingLR(o, STEPS - 5, 1e-4), 5)),
    "warmup-step": (lambda o: SequentialLR(o, [LinearWarmup(o, total_iters=4),
                                               StepLR(o, 10, gamma=0.3)], milestones=[8]),
                    _torch_seq(lambda o: tls.LinearLR(o, total_iters=4),
                               lambda o: tls.StepLR(o, 10, gamma=0.3), 8)),
    "cosine-alone-via-helper": (lambda o: warmup_cosine(o, warmup_steps=0, total_steps=30),
                                lambda o: tls.CosineAnnealingLR(o, 30)),
}


def _ours_opt() -> SGD:
    return SGD([{"params": [Parameter(np.zeros(2))], "lr": lr} for lr in BASE_LRS], lr=0.5,
               momentum=0.9)


def _torch_opt() -> torch.optim.SGD:
    return torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)], "lr": lr}
                            for lr in BASE_LRS], lr=0.5, momentum=0.9, foreach=False)


def ours_lrs(build: Callable, steps: int = STEPS) -> list[list[float]]:
    opt = _ours_opt()
    sched = build(opt)
    out = [sched.get_last_lr()]
    for _ in range(steps):
        opt.step()
        sched.step()
        out.append(sched.get_last_lr())
        assert out[-1] == [g["lr"] for g in opt.param_groups]
    return out


def torch_lrs(build: Callable, steps: int = STEPS) -> list[list[float]]:
    opt = _torch_opt()
    sched = build(opt)
    out = [sched.get_last_lr()]
    for _ in range(steps):
        opt.step()  # before the scheduler, or torch warns (and warnings are errors here)
        sched.step()
        out.append(sched.get_last_lr())
    return out


@pytest.mark.parametrize("name", SCHEDULES)
def test_matches_torch(name):
    ours, theirs = (np.array(f(SCHEDULES[name][i])) for i, f in enumerate((ours_lrs, torch_lrs)))
    assert ours.shape == theirs.shape == (STEPS + 1, len(BASE_LRS))
    assert len(np.unique(ours[:, 0])) > 2, "the schedule must change the rate"
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12 * max(BASE_LRS))


def _closed(name: str, t: int, base: float) -> float:
    """Closed forms of the schedules, written from their definitions."""
    def cosine(t, big_t, low, base):
        return low + (base - low) * (1 + math.cos(math.pi * t / big_t)) / 2

    def linear(t, start, end, total, base):
        return base * (start + (end - start) * min(t, total) / total)

    if name == "step":
        return base * 0.5 ** (t // 7)
    if name == "step-gamma0.9":
        return base * 0.9**t
    if name == "cosine-past-T_max":
        return cosine(t, 20, 1e-3, base)
    if name == "cosine":
        return cosine(t, STEPS, 0.0, base)
    if name == "warmup":
        return linear(t, 0.1, 1.0, 10, base)
    if name == "linear-decay":
        return linear(t, 1.0, 0.2, 30, base)
    if name == "warmup-cosine":
        return linear(t, 0.01, 1.0, 5, base) if t < 5 else cosine(t - 5, STEPS - 5, 1e-4, base)
    if name == "warmup-step":
        return linear(t, 1 / 3, 1.0, 4, base) if t < 8 else base * 0.3 ** ((t - 8) // 10)
    if name == "cosine-alone-via-helper":
        return cosine(t, 30, 0.0, base)
    raise KeyError(name)


@pytest.mark.parametrize("name", SCHEDULES)
def test_matches_closed_form(name):
    ours = ours_lrs(SCHEDULES[name][0])
    for t, lrs in enumerate(ours):
        for lr, base in zip(lrs, BASE_LRS, strict=True):
            assert lr == pytest.approx(_closed(name, t, base), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("k", [0, 3, 5, 17])
def test_state_dict_json_round_trip_continues_exactly(name, k):
    build = SCHEDULES[name][0]
    whole = ours_lrs(build)
    opt = _ours_opt()
    sched = build(opt)
    for _ in range(k):
        opt.step()
        sched.step()
    saved_sched = json.dumps(sched.state_dict())
    saved_groups = json.dumps(opt.state_dict()["param_groups"])

    fresh_opt = _ours_opt()
    fresh = build(fresh_opt)  # created first: creating a scheduler rewrites group["lr"]
    fresh_opt.load_state_dict({"state": {}, "param_groups": json.loads(saved_groups)})
    fresh.load_state_dict(json.loads(saved_sched))
    resumed = [fresh.get_last_lr()]
    for _ in range(STEPS - k):
        fresh_opt.step()
        fresh.step()
        resumed.append(fresh.get_last_lr())
    assert resumed == whole[k:]


def test_sgd_with_warmup_cosine_matches_torch():
    rng = np.random.default_rng(0)
    w0 = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    grads = [[rng.standard_normal(w.shape) for w in w0] for _ in range(30)]
    ours = [Parameter(w.copy()) for w in w0]
    opt = SGD([{"params": [ours[0]]}, {"params": [ours[1]], "lr": 0.02}], lr=0.1, momentum=0.9,
              nesterov=True, weight_decay=1e-3)
    sched = warmup_cosine(opt, warmup_steps=6, total_steps=30, start_factor=0.1)
    theirs = [torch.tensor(w, requires_grad=True) for w in w0]
    t_opt = torch.optim.SGD([{"params": [theirs[0]]}, {"params": [theirs[1]], "lr": 0.02}],
                            lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3,
                            foreach=False)
    t_sched = tls.SequentialLR(t_opt, [tls.LinearLR(t_opt, 0.1, 1.0, 6),
                                       tls.CosineAnnealingLR(t_opt, 24)], milestones=[6])
    for g in grads:
        for p, tp, gi in zip(ours, theirs, g, strict=True):
            p.grad[...] = gi
            tp.grad = torch.from_numpy(gi.copy())
        opt.step()
        sched.step()
        t_opt.step()
        t_sched.step()
    for p, tp in zip(ours, theirs, strict=True):
        w = tp.detach().numpy()
        assert np.max(np.abs(p.data - w)) <= 1e-12 * np.max(np.abs(w))


@pytest.mark.parametrize(("make", "exc", "match"), [
    (lambda o: StepLR(o, 0), ValueError, "step_size must be >= 1, got 0"),
    (lambda o: StepLR(o, 2.5), TypeError, "step_size must be an int, got float"),
    (lambda o: StepLR(o, 2, gamma=-0.1), ValueError, r"Invalid gamma value: -0\.1"),
    (lambda o: StepLR(object(), 2), TypeError, "object is not an Optimizer"),
    (lambda o: CosineAnnealingLR(o, 0), ValueError, "T_max must be >= 1"),
    (lambda o: CosineAnnealingLR(o, 10, eta_min=-1.0), ValueError, "Invalid eta_min value"),
    (lambda o: LinearWarmup(o, start_factor=0.0), ValueError,
     "Starting multiplicative factor expected to be greater than 0"),
    (lambda o: LinearWarmup(o, end_factor=1.5), ValueError,
     "Ending multiplicative factor expected to be between 0 and 1"),
    (lambda o: LinearWarmup(o, total_iters=0), ValueError, "total_iters must be >= 1"),
    (lambda o: SequentialLR(o, [StepLR(o, 2), StepLR(o, 3)], milestones=[]), ValueError,
     "one more scheduler than milestones, got 2 schedulers and 0 milestones"),
    (lambda o: SequentialLR(o, [StepLR(o, 2)] * 3, milestones=[5, 5]), ValueError,
     "milestones must be strictly increasing"),
    (lambda o: SequentialLR(o, [], milestones=[]), ValueError, "at least one scheduler"),
    (lambda o: SequentialLR(o, [StepLR(_ours_opt(), 2)], milestones=[]), ValueError,
     "belong to the same optimizer"),
    (lambda o: warmup_cosine(o, warmup_steps=10, total_steps=10), ValueError,
     "total_steps must exceed warmup_steps"),
])
def test_argument_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make(_ours_opt())


def test_load_state_dict_errors():
    sched = StepLR(_ours_opt(), 3)
    saved = sched.state_dict()
    with pytest.raises(ValueError, match=r"StepLR state_dict lacks \['gamma'\]"):
        sched.load_state_dict({k: v for k, v in saved.items() if k != "gamma"})
    with pytest.raises(ValueError, match="has 1 base_lrs, the optimizer 2 param groups"):
        sched.load_state_dict({**saved, "base_lrs": [0.1]})
    seq = warmup_cosine(_ours_opt(), warmup_steps=2, total_steps=9)
    with pytest.raises(ValueError, match="state has 1 schedulers, this one 2"):
        seq.load_state_dict({**seq.state_dict(), "_schedulers": [saved]})


def test_initial_lr_recorded_and_step_zero_set():
    opt = _ours_opt()
    sched = LinearWarmup(opt, start_factor=0.5, total_iters=4)
    assert [g["initial_lr"] for g in opt.param_groups] == list(BASE_LRS)
    assert sched.get_last_lr() == [lr * 0.5 for lr in BASE_LRS]
    assert "LinearWarmup(start_factor=0.5" in repr(sched)
