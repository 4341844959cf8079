"""Property and fuzz tests of the layers (:mod:`rot180.nn`) on valid random configurations, and
the count of the whole layer fuzz suite. ``Conv{1,2,3}d`` must agree with the direct-loop
convolution reference, and every other layer with its PyTorch float64 twin built with the same
arguments and weights (output, input gradient, parameter gradients, running statistics).
Generated cases: the sum of the ``max_examples`` of ``test_fuzz_layers_oracles.py``,
``test_fuzz_layers_faults.py`` and ``test_fuzz_layers_optim.py`` is 5,000 (see ``BUDGET``; this
file imports the other two so that their budgets count even when it runs alone); with the 10,000
of ``test_fuzz_functional_*.py`` that makes 15,000. :func:`test_generated_case_count`, last in
the suite, checks that each test ran its budget and prints the total with ``pytest -rP``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import test_fuzz_layers_faults  # noqa: F401  (registers its tests' budgets)
import test_fuzz_layers_optim  # noqa: F401  (registers its tests' budgets)
from _fuzz_layers_common import BUDGET, CASES, CONV, CONVT, close, fuzz, seeds, t64
from conftest import ConvConfig, conv_configs
from rot180 import nn
from rot180.functional.reference import (
    conv_direct,
    conv_grad_input_direct,
    conv_grad_weight_direct,
)

# -- Conv{1,2,3}d against the direct-loop reference --------------------------------------------

@fuzz(600, cfg=conv_configs(max_out=3, max_channels=3, max_kernel=3,
                            forms=("int", "tuple", "pairs", "valid", "same")),
      bias=st.booleans(), seed=seeds)
def test_conv_layers_match_the_direct_reference(cfg: ConvConfig, bias: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    layer = CONV[cfg.nd - 1](cfg.c_in, cfg.c_out, cfg.kernel, **cfg.kwargs, bias=bias,
                             dtype=np.float64, rng=rng)
    x, _, _, dz = cfg.arrays(rng)
    w = layer.weight.data
    b = layer.bias.data if bias else None
    kw = cfg.kwargs
    close(layer.forward(x), conv_direct(x, w, b, **kw))
    close(layer.backward(dz), conv_grad_input_direct(dz, w, x.shape, **kw))
    close(layer.weight.grad, conv_grad_weight_direct(x, dz, w.shape, **kw))
    if bias:
        axes = tuple(i for i in range(dz.ndim) if i != dz.ndim - cfg.nd - 1)
        close(layer.bias.grad, dz.sum(axis=axes))


# -- every other layer against its PyTorch float64 twin ----------------------------------------

@st.composite
def twins(draw: Callable) -> tuple[Callable, Callable, tuple[int, ...]]:
    """``(make ours, make theirs, input shape)`` of one random layer configuration."""
    kind = draw(st.sampled_from(["convT", "linear", "max", "avg", "adaptive", "relu", "leaky",
                                 "sigmoid", "tanh", "flatten", "bn", "identity"]))
    nd = draw(st.integers(1, 3))
    n = draw(st.integers(1, 3))
    c = draw(st.integers(1, 3))
    small = 3 if nd < 3 else 2
    if kind == "convT":
        g = draw(st.integers(1, 2))
        cin, cout = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
        k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        s = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        d = tuple(draw(st.integers(1, 2)) for _ in range(nd))
        p = tuple(draw(st.integers(0, 2)) for _ in range(nd))
        op = tuple(draw(st.integers(0, max(sj, dj) - 1)) for sj, dj in zip(s, d, strict=True))
        # input size large enough that no padding crops the whole output
        i = tuple(draw(st.integers(1, small)) + 2 * pj for pj in p)
        args = (cin, cout, k)
        kw = {"stride": s, "padding": p, "output_padding": op, "groups": g, "dilation": d,
              "bias": draw(st.booleans())}
        return (lambda: CONVT[nd - 1](*args, **kw, dtype=np.float64),
                lambda: getattr(torch.nn, f"ConvTranspose{nd}d")(*args, **kw).double(),
                (n, cin, *i))
    if kind == "linear":
        fi, fo = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        lead = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 2))))
        b = draw(st.booleans())
        return (lambda: nn.Linear(fi, fo, b, dtype=np.float64),
                lambda: torch.nn.Linear(fi, fo, b).double(), (*lead, fi))
    if kind in ("max", "avg"):
        k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        s = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        p = tuple(draw(st.integers(0, kj // 2)) for kj in k)
        # torch's AvgPool3d also wants the unpadded input >= kernel (a torch restriction)
        low = (0 if kind == "avg" and nd == 3 else 2)
        i = tuple(draw(st.integers(max(1, kj - low * pj), kj - low * pj + small))
                  for kj, pj in zip(k, p, strict=True))
        kw = {"stride": s, "padding": p, "ceil_mode": draw(st.booleans())}
        if kind == "avg":
            kw["count_include_pad"] = draw(st.booleans())
        name = f"{'Max' if kind == 'max' else 'Avg'}Pool{nd}d"
        lead = (n, c) if draw(st.booleans()) else (c,)
        return (lambda: getattr(nn, name)(k, **kw), lambda: getattr(torch.nn, name)(k, **kw),
                (*lead, *i))
    if kind == "adaptive":
        i = tuple(draw(st.integers(1, 4)) for _ in range(nd))
        o: Any = tuple(draw(st.one_of(st.none(), st.integers(1, ij + 1))) for ij in i)
        if nd == 1:
            o = draw(st.integers(1, i[0] + 1))
        name = f"AdaptiveAvgPool{nd}d"
        return (lambda: getattr(nn, name)(o), lambda: getattr(torch.nn, name)(o), (n, c, *i))
    if kind == "bn":
        shape = (draw(st.integers(2, 3)), c) + tuple(draw(st.integers(1, 3)) for _ in range(nd))
        if nd == 1 and draw(st.booleans()):
            shape = shape[:2]   # BatchNorm1d takes (N, C) too
        kw = {"eps": draw(st.sampled_from([1e-5, 0.1])),
              "momentum": draw(st.sampled_from([0.1, 0.5, None])),
              "affine": draw(st.booleans()), "track_running_stats": draw(st.booleans())}
        train = draw(st.booleans())
        name = f"BatchNorm{nd}d"

        def ours() -> nn.Module:
            return getattr(nn, name)(c, **kw, dtype=np.float64).train(train)

        def theirs() -> torch.nn.Module:
            return getattr(torch.nn, name)(c, **kw).double().train(train)
        return ours, theirs, shape
    shape = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(1, 4))))
    if kind == "flatten":
        start = draw(st.integers(-len(shape), len(shape) - 1))
        end = draw(st.integers(start % len(shape), len(shape) - 1))
        end -= draw(st.sampled_from([0, len(shape)]))      # negative end counts from the end
        return (lambda: nn.Flatten(start, end), lambda: torch.nn.Flatten(start, end), shape)
    slope = draw(st.floats(-1, 1))
    ours_, theirs_ = {"relu": (nn.ReLU, torch.nn.ReLU), "sigmoid": (nn.Sigmoid, torch.nn.Sigmoid),
                      "tanh": (nn.Tanh, torch.nn.Tanh), "identity": (nn.Identity,
                                                                     torch.nn.Identity),
                      "leaky": (lambda: nn.LeakyReLU(slope),
                                lambda: torch.nn.LeakyReLU(slope))}[kind]
    return ours_, theirs_, shape


@fuzz(1400, twin=twins(), seed=seeds)
def test_layers_match_their_torch_twin(twin: tuple, seed: int) -> None:
    make_ours, make_theirs, shape = twin
    rng = np.random.default_rng(seed)
    theirs = make_theirs()
    ours = make_ours()
    with torch.no_grad():   # non-default affine parameters, so that they are tested
        for p in theirs.parameters():
            p.copy_(torch.tensor(rng.uniform(-1.5, 1.5, tuple(p.shape))))
    state = {k: v.detach().numpy().copy() for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state)
    x = rng.standard_normal(shape) * 2
    xt = t64(x, grad=True)
    yt = theirs(xt)
    y = ours.forward(x)
    close(y, yt)
    dy = rng.standard_normal(y.shape)
    yt.backward(t64(dy))
    close(ours.backward(dy), xt.grad)
    for name, p in theirs.named_parameters():
        close(dict(ours.named_parameters())[name].grad, p.grad)
    for name, buf in theirs.named_buffers():
        close(np.asarray(dict(ours.named_buffers())[name], np.float64), buf.double())


# -- the count --------------------------------------------------------------------------------

def test_generated_case_count() -> None:
    """Every fuzz test that ran in this session ran its whole budget; prints the total."""
    ran = {name: CASES[name] for name in BUDGET if CASES[name]}
    short = {name: (n, BUDGET[name]) for name, n in ran.items() if n < BUDGET[name]}
    assert not short, f"tests that ran fewer cases than their budget: {short}"
    assert sum(BUDGET.values()) >= 5_000
    print(f"test_fuzz_layers: {sum(ran.values())} generated cases run "
          f"(budget {sum(BUDGET.values())})")
