"""Property and fuzz tests of :mod:`rot180.functional`: random valid and invalid calls.

Every generated call either returns what an independent oracle computes, with the oracle's shape
and dtype, or raises the documented exception: ``ValueError`` for a bad value or shape,
``TypeError`` for a bad type or dtype. Nothing else may escape: no ``IndexError`` or
``AxisError``, no numpy broadcasting or casting message, no floating-point warning (pytest turns
warnings into errors), and never a result of the wrong shape.

Oracles: :mod:`rot180.functional.reference` (direct loops) for convolution; direct loops written
below for pooling; PyTorch float64 for activations, losses and batch normalisation; ``einsum``
for the linear layer. Invalid calls break one thing of a valid call (a fault); the exception
class each fault must raise is fixed in advance.

Lists and scalars are accepted where an array is expected (documented in
:mod:`rot180.functional._validation`: converted with ``np.asarray``), so non-array faults use
``None``, strings, dicts and objects.

Generated cases: the sum of the ``max_examples`` below is 10,000 (see ``BUDGET``);
:func:`test_generated_case_count` checks that each test ran its budget, and prints the total
with ``pytest -rP``. Examples are derandomized, so every run tests the same cases.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import rot180.functional as F
from _fuzzing import CaseCounter, raises
from conftest import ConvConfig, conv_configs
from rot180.functional.reference import (
    conv_direct,
    conv_grad_input_direct,
    conv_grad_weight_direct,
)

_COUNTER = CaseCounter()
fuzz, CASES, BUDGET = _COUNTER.fuzz, _COUNTER.cases, _COUNTER.budget


def close(a: np.ndarray, b: np.ndarray | torch.Tensor, dtype: np.dtype | None = None,
          tol: float = 1e-10) -> None:
    """Same shape, (optionally) the given dtype, values within ``tol`` relative to the scale.

    A numpy scalar counts as a 0-d array: numpy's ufuncs return one for a 0-d input.
    """
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert isinstance(a, np.ndarray | np.generic) and a.shape == b.shape, (np.shape(a), b.shape)
    if dtype is not None:
        assert a.dtype == dtype, (a.dtype, dtype)
    scale = max(1.0, float(np.abs(b).max())) if b.size else 1.0
    assert np.allclose(a, b, rtol=0, atol=tol * scale, equal_nan=True), np.abs(a - b).max()


BAD_DTYPES = (np.int64, np.int8, np.uint8, np.float16, np.complex128, np.bool_, object)
NON_ARRAYS = (None, "x", {"a": 1}, object(), b"\x00")
seeds = st.integers(0, 2**32 - 1)


def t64(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(a, np.float64), requires_grad=grad)


# -- convolution: valid configurations against the direct-loop reference ---------------------

@fuzz(1200, cfg=conv_configs(max_out=3, max_channels=3, max_kernel=3), seed=seeds)
def test_conv_matches_direct_reference(cfg: ConvConfig, seed: int) -> None:
    x, w, b, dz = cfg.arrays(np.random.default_rng(seed))
    kw = cfg.kwargs
    close(F.conv(x, w, b, **kw), conv_direct(x, w, b, **kw), np.float64)
    close(F.conv_grad_input(dz, w, x.shape, **kw),
          conv_grad_input_direct(dz, w, x.shape, **kw), np.float64)
    close(F.conv_grad_weight(x, dz, w.shape, **kw),
          conv_grad_weight_direct(x, dz, w.shape, **kw), np.float64)
    lead = tuple(range(dz.ndim - cfg.nd - 1)) + tuple(range(dz.ndim - cfg.nd, dz.ndim))
    close(F.conv_grad_bias(dz if dz.ndim == cfg.nd + 2 else dz[None]), dz.sum(axis=lead))


# -- convolution: one fault at a time -------------------------------------------------------

CONV_FAULTS = {
    # fault: (exception, ops it applies to)
    "x dtype": (TypeError, "fw"),
    "dz dtype": (TypeError, "iw"),
    "w dtype": (TypeError, "fi"),
    "mixed float32/float64": (TypeError, "fiw"),
    "x not an array": (TypeError, "fw"),
    "w not an array": (TypeError, "fi"),
    "x ndim": (ValueError, "fw"),
    "w ndim": (ValueError, "fi"),
    "x channels": (ValueError, "fw"),
    "dz channels": (ValueError, "iw"),
    "groups not dividing": (ValueError, "fiw"),
    "groups zero or negative": (ValueError, "fiw"),
    "groups not an int": (TypeError, "fiw"),
    "stride zero or negative": (ValueError, "fiw"),
    "stride not an int": (TypeError, "fiw"),
    "stride wrong length": (ValueError, "fiw"),
    "dilation zero or negative": (ValueError, "fiw"),
    "dilation not an int": (TypeError, "fiw"),
    "padding negative": (ValueError, "fiw"),
    "padding bad string": (ValueError, "fiw"),
    "padding not an int": (TypeError, "fiw"),
    "padding wrong length": (ValueError, "fiw"),
    "kernel larger than input": (ValueError, "f"),
    "zero-size input": (ValueError, "fw"),
    "zero-size weight": (ValueError, "f"),
    "bias shape": (ValueError, "f"),
    "bias dtype": (TypeError, "f"),
    "input_shape inconsistent with dz": (ValueError, "i"),
    "input_shape not ints": (TypeError, "i"),
    "input_shape an array": (TypeError, "i"),
    "dz spatial size": (ValueError, "iw"),
    "weight_shape channels": (ValueError, "w"),
}


@fuzz(1800, cfg=conv_configs(max_out=2, max_channels=3, max_kernel=3), seed=seeds,
      fault=st.sampled_from(sorted(CONV_FAULTS)), data=st.data())
def test_conv_faults_raise_the_documented_error(cfg: ConvConfig, seed: int, fault: str,
                                                data: st.DataObject) -> None:
    exc, ops = CONV_FAULTS[fault]
    op = data.draw(st.sampled_from(ops))
    rng = np.random.default_rng(seed)
    x, w, b, dz = cfg.arrays(rng)
    kw = dict(cfg.kwargs)
    input_shape, weight_shape = x.shape, w.shape
    pick = data.draw
    nd = cfg.nd
    if fault == "x dtype":
        x = x.astype(pick(st.sampled_from(BAD_DTYPES)))
    elif fault == "dz dtype":
        dz = dz.astype(pick(st.sampled_from(BAD_DTYPES)))
    elif fault == "w dtype":
        w = w.astype(pick(st.sampled_from(BAD_DTYPES)))
    elif fault == "mixed float32/float64":
        if op == "i":
            dz = dz.astype(np.float32)
        else:
            w = w.astype(np.float32)
            if op == "w":
                x = x.astype(np.float32)
                dz = dz.astype(np.float64)
    elif fault == "x not an array":
        x = pick(st.sampled_from(NON_ARRAYS))
    elif fault == "w not an array":
        w = pick(st.sampled_from(NON_ARRAYS))
    elif fault == "x ndim":
        x = pick(st.sampled_from([x.reshape(-1), x[None, None]]))
        input_shape = x.shape
    elif fault == "w ndim":
        w = pick(st.sampled_from([w.reshape(w.shape[0], -1), w[None, None, None]]))
    elif fault == "x channels":
        x = np.concatenate([x, x[..., :1, *(slice(None),) * nd]], axis=-nd - 1)
    elif fault == "dz channels":
        dz = np.concatenate([dz, dz[..., :1, *(slice(None),) * nd]], axis=-nd - 1)
    elif fault == "groups not dividing":
        kw["groups"] = cfg.c_out + 1
    elif fault == "groups zero or negative":
        kw["groups"] = pick(st.integers(-3, 0))
    elif fault == "groups not an int":
        kw["groups"] = pick(st.sampled_from([1.0, 2.5, "2", None, True, math.nan]))
    elif fault in ("stride zero or negative", "dilation zero or negative"):
        key = fault.split()[0]
        bad = pick(st.integers(-3, 0))
        kw[key] = bad if pick(st.booleans()) else (1,) * (nd - 1) + (bad,)
    elif fault in ("stride not an int", "dilation not an int"):
        kw[fault.split()[0]] = pick(st.sampled_from([1.5, "1", None, math.nan, [1.0] * nd,
                                                     True]))
    elif fault == "stride wrong length":
        kw["stride"] = (1,) * pick(st.sampled_from([n for n in range(5) if n != nd]))
    elif fault == "padding negative":
        kw["padding"] = pick(st.sampled_from([-1, (0,) * (nd - 1) + (-2,),
                                              ((0, 0),) * (nd - 1) + ((0, -1),)]))
    elif fault == "padding bad string":
        kw["padding"] = pick(st.sampled_from(["SAME", "half", "", "zeros", "circular"]))
    elif fault == "padding not an int":
        kw["padding"] = pick(st.sampled_from([1.5, None, math.nan, (1.0,) * nd, True]))
    elif fault == "padding wrong length":
        # (one entry is broadcast to every dimension, as PyTorch)
        kw["padding"] = (0,) * pick(st.sampled_from([n for n in range(2, 5) if n != nd]))
    elif fault == "kernel larger than input":
        kw.update(padding=0, dilation=1)
        w = rng.standard_normal(w.shape[:2] + tuple(i + 1 for i in cfg.spatial))
    elif fault == "zero-size input":
        # (a batch of zero samples is valid: an empty result, as PyTorch)
        x = x[..., :0, *(slice(None),) * (nd - 1)] if pick(st.booleans()) else x[..., :0]
    elif fault == "zero-size weight":
        w = w[:, :, :0]
    elif fault == "bias shape":
        b = pick(st.sampled_from([b[:-1], np.append(b, 0.0), b[None]]))
    elif fault == "bias dtype":
        b = b.astype(pick(st.sampled_from(BAD_DTYPES)))
    elif fault == "input_shape inconsistent with dz":
        grown = list(input_shape)
        # PyTorch's output_padding may reach max(s, d) - 1: one more is too many
        grown[-nd] += max(cfg.strides[0], cfg.dilations[0])
        input_shape = tuple(grown)
    elif fault == "input_shape not ints":
        input_shape = pick(st.sampled_from([tuple(float(v) for v in input_shape),
                                            (*input_shape[:-1], "3"), (None,) * nd]))
    elif fault == "input_shape an array":
        input_shape = np.array(input_shape)
    elif fault == "dz spatial size":
        dz = np.concatenate([dz, dz[..., :1]], axis=-1)
    elif fault == "weight_shape channels":
        weight_shape = (weight_shape[0] + cfg.groups, *weight_shape[1:])
    call = {"f": lambda: F.conv(x, w, b, **kw),
            "i": lambda: F.conv_grad_input(dz, w, input_shape, **kw),
            "w": lambda: F.conv_grad_weight(x, dz, weight_shape, **kw)}[op]
    raises(exc, call)


# -- pooling: a direct-loop oracle ------------------------------------------------------------

def pool_out(i: int, k: int, s: int, p: int, ceil: bool) -> int:
    """PyTorch's documented output size."""
    if not ceil:
        return (i + 2 * p - k) // s + 1
    o = -(-(i + 2 * p - k) // s) + 1
    return o - 1 if (o - 1) * s >= i + p else o


def pool_oracle(x: np.ndarray, k: tuple, s: tuple, p: tuple, ceil: bool, cip: bool
                ) -> tuple[np.ndarray, ...]:
    """Max (first maximum, row-major), its flat index, and the average of every window."""
    nd = len(k)
    lead, sp = x.shape[:-nd], x.shape[-nd:]
    out = tuple(pool_out(*a, ceil) for a in zip(sp, k, s, p, strict=True))
    mx, idx, avg = np.empty(lead + out), np.empty(lead + out, np.int64), np.empty(lead + out)
    windows = {}
    for q in np.ndindex(*out):
        start = [qj * sj - pj for qj, sj, pj in zip(q, s, p, strict=True)]
        end = [min(a + kj, ij + pj) for a, kj, ij, pj in zip(start, k, sp, p, strict=True)]
        cells = list(itertools.product(*(range(max(a, 0), min(e, i))
                                         for a, e, i in zip(start, end, sp, strict=True))))
        vals = np.stack([x[(Ellipsis, *c)] for c in cells], axis=-1)
        first = np.argmax(vals, axis=-1)
        mx[(Ellipsis, *q)] = vals.max(axis=-1)
        idx[(Ellipsis, *q)] = np.array([np.ravel_multi_index(c, sp) for c in cells])[first]
        div = math.prod(e - a for a, e in zip(start, end, strict=True)) if cip else len(cells)
        avg[(Ellipsis, *q)] = vals.sum(axis=-1) / div
        windows[q] = (cells, div)
    return mx, idx, avg, windows


@st.composite
def pool_cases(draw: Callable) -> dict:
    nd = draw(st.integers(1, 3))
    kmax, extra = (4, 4) if nd == 1 else (3, 3) if nd == 2 else (2, 2)
    k = tuple(draw(st.integers(1, kmax)) for _ in range(nd))
    s = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    p = tuple(draw(st.integers(0, kj // 2)) for kj in k)
    sp = tuple(draw(st.integers(max(1, kj - 2 * pj), kj - 2 * pj + extra))
               for kj, pj in zip(k, p, strict=True))
    lead = tuple(draw(st.integers(1, 2)) for _ in range(draw(st.integers(1, 2))))
    as_int = draw(st.booleans())   # an int kernel_size pools every axis after (N, C)
    if len(lead) != 2 or len(set(k)) > 1 or len(set(s)) > 1 or len(set(p)) > 1:
        as_int = False
    return {"shape": lead + sp, "k": k, "s": s, "p": p, "ceil": draw(st.booleans()),
            "cip": draw(st.booleans()), "as_int": as_int, "ties": draw(st.booleans()),
            "f32": draw(st.booleans()), "stride_none": draw(st.booleans()) and s == k}


@fuzz(1300, case=pool_cases(), seed=seeds)
def test_pooling_matches_direct_loops(case: dict, seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape, k, s, p = case["shape"], case["k"], case["s"], case["p"]
    # small integers make ties, where the first maximum (row-major) must win
    x = (rng.integers(-2, 3, shape) if case["ties"] else rng.standard_normal(shape)).astype(
        np.float64)
    mx, idx, avg, windows = pool_oracle(x, k, s, p, case["ceil"], case["cip"])
    dtype = np.float32 if case["f32"] else np.float64
    tol = 1e-5 if case["f32"] else 1e-12
    xs = x.astype(dtype)
    ks = k[0] if case["as_int"] else k
    args = (ks, None if case["stride_none"] else (s[0] if case["as_int"] else s),
            p[0] if case["as_int"] else p)
    y, got_idx = F.max_pool(xs, *args, ceil_mode=case["ceil"])
    close(y, mx, dtype, tol)
    assert got_idx.dtype == np.int64 and np.array_equal(got_idx, idx)
    a = F.avg_pool(xs, *args, ceil_mode=case["ceil"], count_include_pad=case["cip"])
    close(a, avg, dtype, tol)

    dy = rng.standard_normal(mx.shape)
    dmax, davg = np.zeros(x.shape), np.zeros(x.shape)
    nd, lead = len(k), x.shape[:-len(k)]
    for q, (cells, div) in windows.items():
        for m in np.ndindex(*lead):
            dmax[(*m, *np.unravel_index(idx[(*m, *q)], x.shape[-nd:]))] += dy[(*m, *q)]
            for c in cells:
                davg[(*m, *c)] += dy[(*m, *q)] / div
    dys = dy.astype(dtype)
    close(F.max_pool_grad(dys, got_idx, x.shape, *args, ceil_mode=case["ceil"]), dmax, dtype,
          tol)
    if len(lead) == 2:   # without the pooling arguments every axis after (N, C) is spatial
        close(F.max_pool_grad(dys, got_idx, x.shape), dmax, dtype, tol)
    close(F.avg_pool_grad(dys, x.shape, *args, ceil_mode=case["ceil"],
                          count_include_pad=case["cip"]), davg, dtype, tol)


POOL_FAULTS = {
    "kernel zero or negative": ValueError,
    "kernel not an int": TypeError,
    "stride zero or negative": ValueError,
    "stride not an int": TypeError,
    "padding negative": ValueError,
    "padding over half the kernel": ValueError,
    "padding a string": TypeError,
    "kernel larger than padded input": ValueError,
    "x dtype": TypeError,
    "x not an array": TypeError,
    "too few dimensions": ValueError,
    "zero-size input": ValueError,
    "ceil_mode not a bool": TypeError,
    "dy shape": ValueError,
    "dy dtype": TypeError,
    "input_shape not ints": TypeError,
    "input_shape negative": ValueError,
    "argmax float": TypeError,
    "argmax out of range": ValueError,
    "adaptive output_size zero": ValueError,
    "adaptive output_size not an int": TypeError,
    "adaptive dy zero-size": ValueError,
    "global nd not an int": TypeError,
    "global nd out of range": ValueError,
}


@fuzz(1300, case=pool_cases(), seed=seeds, fault=st.sampled_from(sorted(POOL_FAULTS)),
      data=st.data())
def test_pooling_faults_raise_the_documented_error(case: dict, seed: int, fault: str,
                                                   data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    shape, k, s, p = case["shape"], case["k"], case["s"], case["p"]
    nd = len(k)
    x = rng.standard_normal(shape)
    kind = data.draw(st.sampled_from(["max", "avg"]))
    kw: dict[str, Any] = {"kernel_size": k, "stride": s, "padding": p,
                          "ceil_mode": case["ceil"]}
    grad = False
    y, idx = F.max_pool(x, k, s, p, ceil_mode=case["ceil"])
    dy, input_shape = np.ones_like(y), shape
    pick = data.draw
    if fault == "kernel zero or negative":
        kw["kernel_size"] = (*k[:-1], pick(st.integers(-2, 0)))
    elif fault == "kernel not an int":
        kw["kernel_size"] = (*k[:-1], pick(st.sampled_from([1.5, "2", None, math.nan])))
    elif fault == "stride zero or negative":
        kw["stride"] = (*s[:-1], pick(st.integers(-2, 0)))
    elif fault == "stride not an int":
        kw["stride"] = (*s[:-1], pick(st.sampled_from([1.5, "2", math.nan, True])))
    elif fault == "padding negative":
        kw["padding"] = (*p[:-1], -1)
    elif fault == "padding over half the kernel":
        kw["padding"] = (*p[:-1], k[-1] // 2 + pick(st.integers(1, 2)))
    elif fault == "padding a string":
        kw["padding"] = pick(st.sampled_from(["same", "valid", "1"]))
    elif fault == "kernel larger than padded input":
        # (ceil mode keeps a window that starts inside the padded input, as PyTorch: the
        # kernel must exceed it by a whole stride for no window to fit)
        kw.update(kernel_size=(*k[:-1], shape[-1] + 2 * p[-1] + s[-1]))
    elif fault == "x dtype":
        x = x.astype(pick(st.sampled_from(BAD_DTYPES)))
    elif fault == "x not an array":
        x = pick(st.sampled_from(NON_ARRAYS))
    elif fault == "too few dimensions":
        x = x[(0,) * (x.ndim - nd)]   # spatial axes only: no channel axis left
    elif fault == "zero-size input":
        x = x[..., :0]
    elif fault == "ceil_mode not a bool":
        kw["ceil_mode"] = pick(st.sampled_from([1, 0, "yes", None]))
    elif fault == "dy shape":
        grad = True
        dy = pick(st.sampled_from([dy[..., :-1] if dy.shape[-1] > 1 else dy[None],
                                   np.concatenate([dy, dy], -1), dy[None]]))
    elif fault == "dy dtype":
        grad = True
        dy = dy.astype(pick(st.sampled_from(BAD_DTYPES)))
    elif fault == "input_shape not ints":
        grad = True
        input_shape = pick(st.sampled_from([tuple(float(v) for v in shape), np.array(shape),
                                            (*shape[:-1], "4"), 7]))
    elif fault == "input_shape negative":
        grad = True
        input_shape = (*shape[:-1], -shape[-1])
    elif fault == "argmax float":
        grad, kind = True, "max"
        idx = idx.astype(np.float64)
    elif fault == "argmax out of range":
        grad, kind = True, "max"
        idx = idx + pick(st.sampled_from([math.prod(shape[-nd:]), -math.prod(shape) - 1]))
    if fault.startswith("adaptive"):
        size: Any = (pick(st.integers(-1, 0)) if "zero" in fault
                     else pick(st.sampled_from([1.5, "2", math.nan, True])))
        if fault == "adaptive dy zero-size":
            raises(ValueError, lambda: F.adaptive_avg_pool_grad(y[..., :0], shape))
        else:
            raises(POOL_FAULTS[fault], lambda: F.adaptive_avg_pool(x, (*k[:-1], size)))
        return
    if fault.startswith("global"):
        bad_nd: Any = (pick(st.sampled_from([1.5, "1", True]))
                       if "int" in fault else pick(st.sampled_from([0, -1, len(shape)])))
        raises(POOL_FAULTS[fault], lambda: F.global_avg_pool(x, nd=bad_nd))
        return
    if not grad:
        call = ((lambda: F.max_pool(x, **kw)) if kind == "max"
                else (lambda: F.avg_pool(x, **kw)))
    elif kind == "max":
        call = lambda: F.max_pool_grad(dy, idx, input_shape, **kw)  # noqa: E731
    else:
        call = lambda: F.avg_pool_grad(dy, input_shape, **kw)  # noqa: E731
    raises(POOL_FAULTS[fault], call)


# -- activations ------------------------------------------------------------------------------

ACTIVATIONS = {
    "relu": (F.relu, F.relu_grad, torch.relu, False),
    "leaky_relu": (F.leaky_relu, F.leaky_relu_grad, torch.nn.functional.leaky_relu, False),
    "sigmoid": (F.sigmoid, F.sigmoid_grad, torch.sigmoid, True),
    "tanh": (F.tanh, F.tanh_grad, torch.tanh, True),
}
ACTIVATION_FAULTS = {"none": None, "x dtype": TypeError, "x not an array": TypeError,
                     "dy shape": ValueError, "dy dtype mixed": TypeError,
                     "slope nan or inf": ValueError, "slope not a number": TypeError}


@fuzz(900, name=st.sampled_from(sorted(ACTIVATIONS)),
      shape=st.lists(st.integers(1, 4), min_size=0, max_size=4).map(tuple), seed=seeds,
      scale=st.sampled_from([1.0, 30.0, 800.0]), f32=st.booleans(),
      slope=st.floats(-2, 2), fault=st.sampled_from(sorted(ACTIVATION_FAULTS)),
      data=st.data())
def test_activations_match_torch_or_raise(name: str, shape: tuple, seed: int, scale: float,
                                          f32: bool, slope: float, fault: str,
                                          data: st.DataObject) -> None:
    f, f_grad, oracle, from_output = ACTIVATIONS[name]
    rng = np.random.default_rng(seed)
    dtype = np.dtype(np.float32 if f32 else np.float64)
    x = np.asarray(rng.standard_normal(shape) * scale, dtype)   # an array even for shape ()
    dy = np.asarray(rng.standard_normal(shape), dtype)
    extra = (slope,) if name == "leaky_relu" else ()
    if fault == "none":
        y = f(x, *extra)
        xt = t64(x, grad=True)
        yt = oracle(xt, *extra)
        yt.backward(t64(dy))
        tol = 1e-6 if f32 else 1e-12
        close(y, yt, dtype, tol)
        close(f_grad(dy, y if from_output else x, *extra), xt.grad, dtype, tol)
        return
    pick = data.draw
    if fault == "x dtype":
        raises(TypeError, lambda: f(x.astype(pick(st.sampled_from(BAD_DTYPES))), *extra))
    elif fault == "x not an array":
        raises(TypeError, lambda: f(pick(st.sampled_from(NON_ARRAYS)), *extra))
    elif fault == "dy shape":
        raises(ValueError, lambda: f_grad(np.append(dy, dy.dtype.type(0)), x, *extra))
    elif fault == "dy dtype mixed":
        raises(TypeError, lambda: f_grad(dy.astype(np.float64 if f32 else np.float32), x,
                                         *extra))
    elif fault == "slope nan or inf":
        bad = pick(st.sampled_from([math.nan, math.inf, -math.inf]))
        raises(ValueError, lambda: pick(st.sampled_from(
            [lambda: F.leaky_relu(x, bad), lambda: F.leaky_relu_grad(dy, x, bad)]))())
    else:
        bad = pick(st.sampled_from(["0.1", None, [0.1], np.ones(2), True]))
        raises(TypeError, lambda: F.leaky_relu(x, bad))


# -- linear -----------------------------------------------------------------------------------

LINEAR_FAULTS = {"none": None, "in_features": ValueError, "w ndim": ValueError,
                 "w zero-size": ValueError, "bias shape": ValueError, "mixed dtype": TypeError,
                 "int input": TypeError, "x not an array": TypeError,
                 "dy out_features": ValueError, "dy leading axes": ValueError}


@fuzz(800, lead=st.lists(st.integers(0, 3), max_size=3).map(tuple), n_in=st.integers(1, 5),
      n_out=st.integers(1, 5), bias=st.booleans(), seed=seeds,
      fault=st.sampled_from(sorted(LINEAR_FAULTS)), data=st.data())
def test_linear_matches_einsum_or_raises(lead: tuple, n_in: int, n_out: int, bias: bool,
                                         seed: int, fault: str, data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(lead + (n_in,))
    w = rng.standard_normal((n_out, n_in))
    b = rng.standard_normal(n_out) if bias else None
    dy = rng.standard_normal(lead + (n_out,))
    if fault == "none":
        close(F.linear(x, w, b), np.einsum("...i,oi->...o", x, w) + (0 if b is None else b))
        close(F.linear_grad_input(dy, w), np.einsum("...o,oi->...i", dy, w))
        close(F.linear_grad_weight(x, dy),
              np.einsum("no,ni->oi", dy.reshape(-1, n_out), x.reshape(-1, n_in)))
        close(F.linear_grad_bias(dy), dy.reshape(-1, n_out).sum(axis=0))
        return
    pick = data.draw
    exc = LINEAR_FAULTS[fault]
    if fault == "in_features":
        call = lambda: F.linear(np.concatenate([x, x[..., :1]], -1), w, b)  # noqa: E731
    elif fault == "w ndim":
        call = lambda: F.linear(x, pick(st.sampled_from([w[0], w[None]])), b)  # noqa: E731
    elif fault == "w zero-size":
        call = lambda: F.linear(x[..., :0], w[:, :0])  # noqa: E731
    elif fault == "bias shape":
        call = lambda: F.linear(x, w, pick(st.sampled_from(  # noqa: E731
            [np.zeros(n_out + 1), np.zeros((1, n_out)), np.zeros(())])))
    elif fault == "mixed dtype":
        call = lambda: F.linear(x.astype(np.float32), w, b)  # noqa: E731
    elif fault == "int input":
        call = lambda: F.linear(x.astype(pick(st.sampled_from(BAD_DTYPES))), w)  # noqa: E731
    elif fault == "x not an array":
        call = lambda: F.linear(pick(st.sampled_from(NON_ARRAYS)), w)  # noqa: E731
    elif fault == "dy out_features":
        call = lambda: F.linear_grad_input(np.concatenate([dy, dy[..., :1]], -1), w)  # noqa
    else:
        call = lambda: F.linear_grad_weight(x, dy[None])  # noqa: E731
    raises(exc, call)


# -- losses -----------------------------------------------------------------------------------

LOSS_FAULTS = {"none": None, "label out of range": ValueError, "labels shape": ValueError,
               "labels bool or object": TypeError, "soft targets NaN": ValueError,
               "soft targets shape": ValueError, "soft targets mixed dtype": TypeError,
               "smoothing out of range or NaN": ValueError, "smoothing not a number": TypeError,
               "reduction unknown": ValueError, "reduction not a str": TypeError,
               "logits ndim": ValueError, "empty batch mean": ValueError,
               "mse targets NaN": ValueError, "mse shape": ValueError}


@fuzz(1200, n=st.integers(1, 5), c=st.integers(1, 5), soft=st.booleans(),
      smoothing=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
      reduction=st.sampled_from(["mean", "sum", "none"]), seed=seeds,
      scale=st.sampled_from([1.0, 50.0]), fault=st.sampled_from(sorted(LOSS_FAULTS)),
      data=st.data())
def test_losses_match_torch_or_raise(n: int, c: int, soft: bool, smoothing: float,
                                     reduction: str, seed: int, scale: float, fault: str,
                                     data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c)) * scale
    labels = rng.integers(0, c, n)
    probs = rng.dirichlet(np.ones(c), n)
    t = probs if soft else labels
    kw = {"label_smoothing": smoothing, "reduction": reduction}
    out, tgt = rng.standard_normal((n, c)), rng.standard_normal((n, c))
    if fault == "none":
        xt = t64(x, grad=True)
        tt = t64(probs) if soft else torch.tensor(labels)
        lt = torch.nn.functional.cross_entropy(xt, tt, **kw)
        lt.backward(torch.ones_like(lt))
        close(F.softmax_cross_entropy(x, t, **kw), lt, np.float64)
        close(F.softmax_cross_entropy_grad(x, t, **kw), xt.grad, np.float64)
        ot = t64(out, grad=True)
        mt = torch.nn.functional.mse_loss(ot, t64(tgt), reduction=reduction)
        mt.backward(torch.ones_like(mt))
        close(F.mse(out, tgt, reduction=reduction), mt, np.float64)
        close(F.mse_grad(out, tgt, reduction=reduction), ot.grad, np.float64)
        return
    pick = data.draw
    fn = pick(st.sampled_from([F.softmax_cross_entropy, F.softmax_cross_entropy_grad]))
    ce = functools.partial(fn, x, **kw)
    exc = LOSS_FAULTS[fault]
    if fault == "label out of range":
        bad = labels.copy()
        bad[pick(st.integers(0, n - 1))] = pick(st.sampled_from([-1, c, c + 7]))
        raises(exc, lambda: ce(bad))
    elif fault == "labels shape":
        raises(exc, lambda: ce(pick(st.sampled_from([labels[:-1], labels[:, None],
                                                      np.append(labels, 0)]))))
    elif fault == "labels bool or object":
        raises(exc, lambda: ce(labels.astype(pick(st.sampled_from([bool, object, str])))))
    elif fault == "soft targets NaN":
        bad = probs.copy()
        bad.flat[pick(st.integers(0, bad.size - 1))] = pick(st.sampled_from(
            [math.nan, math.inf, -math.inf]))
        raises(exc, lambda: ce(bad))
    elif fault == "soft targets shape":
        raises(exc, lambda: ce(np.concatenate([probs, probs[:, :1]], 1)))
    elif fault == "soft targets mixed dtype":
        raises(exc, lambda: ce(probs.astype(np.float32)))
    elif fault in ("smoothing out of range or NaN", "smoothing not a number"):
        bad = pick(st.sampled_from([-0.1, 1.5, math.nan, math.inf] if exc is ValueError
                                   else ["0.1", None, [0.1]]))
        raises(exc, lambda: fn(x, t, label_smoothing=bad))
    elif fault in ("reduction unknown", "reduction not a str"):
        bad = pick(st.sampled_from(["avg", "MEAN", "", "batchmean"] if exc is ValueError
                                   else [None, 0, ["mean"], np.array(["mean", "sum"])]))
        raises(exc, lambda: pick(st.sampled_from([
            lambda: fn(x, t, reduction=bad), lambda: F.mse(out, tgt, reduction=bad)]))())
    elif fault == "logits ndim":
        raises(exc, lambda: fn(pick(st.sampled_from([x[0], x[None], x.reshape(-1)])), t))
    elif fault == "empty batch mean":
        raises(exc, lambda: pick(st.sampled_from([
            lambda: fn(x[:0], labels[:0]), lambda: F.mse(out[:0], tgt[:0]),
            lambda: F.mse_grad(out[:, :0], tgt[:, :0])]))())
    elif fault == "mse targets NaN":
        bad = tgt.copy()
        bad.flat[pick(st.integers(0, bad.size - 1))] = math.nan
        raises(exc, lambda: pick(st.sampled_from([F.mse, F.mse_grad]))(out, bad))
    else:
        bad = pick(st.sampled_from([tgt[None], np.concatenate([tgt, tgt], 1), tgt.reshape(-1)
                                    if tgt.size > 1 else tgt[0]]))
        raises(exc, lambda: pick(st.sampled_from([F.mse, F.mse_grad]))(out, bad))


# -- batch normalisation ----------------------------------------------------------------------

BN_FAULTS = {"none": None, "eps not positive or NaN": ValueError, "eps not a number": TypeError,
             "negative var": ValueError, "stats shape": ValueError, "mixed dtype": TypeError,
             "x ndim": ValueError, "zero-size x": ValueError, "xh shape": ValueError,
             "batch_statistics not a bool": TypeError}


@fuzz(700, shape=st.tuples(st.integers(2, 3), st.integers(1, 3)).flatmap(
          lambda nc: st.lists(st.integers(1, 3), max_size=2).map(lambda sp: nc + tuple(sp))),
      affine=st.booleans(), train=st.booleans(), eps=st.sampled_from([1e-5, 1e-3, 0.5]),
      seed=seeds, fault=st.sampled_from(sorted(BN_FAULTS)), data=st.data())
def test_batch_norm_matches_torch_or_raises(shape: tuple, affine: bool, train: bool, eps: float,
                                            seed: int, fault: str, data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.standard_normal(shape) * 3 + 1
    g, b = (rng.standard_normal(c), rng.standard_normal(c)) if affine else (None, None)
    run_mean, run_var = rng.standard_normal(c), rng.uniform(0.1, 2.0, c)
    mean, var = F.batch_stats(x) if train else (run_mean, run_var)
    dy = rng.standard_normal(shape)
    if fault == "none":
        xt = t64(x, grad=True)
        gt = t64(g, grad=True) if affine else None
        bt = t64(b, grad=True) if affine else None
        yt = torch.nn.functional.batch_norm(xt, t64(run_mean), t64(run_var), gt, bt,
                                            training=train, momentum=0.0, eps=eps)
        yt.backward(t64(dy))
        y, xh, r = F.batch_norm(x, mean, var, g, b, eps=eps)
        close(y, yt, np.float64, 1e-9)
        dx, dg, db = F.batch_norm_grad(dy, xh, r, g, batch_statistics=train)
        close(dx, xt.grad, np.float64, 1e-9)
        if affine:
            close(dg, gt.grad, np.float64, 1e-9)
            close(db, bt.grad, np.float64, 1e-9)
        return
    pick = data.draw
    exc = BN_FAULTS[fault]
    if fault in ("eps not positive or NaN", "eps not a number"):
        bad = pick(st.sampled_from([0.0, -1e-5, math.nan, math.inf] if exc is ValueError
                                   else ["1e-5", None, [1e-5]]))
        raises(exc, lambda: F.batch_norm(x, mean, var, g, b, eps=bad))
    elif fault == "negative var":
        bad = var.copy()
        bad[pick(st.integers(0, c - 1))] = -1.0
        raises(exc, lambda: F.batch_norm(x, mean, bad, g, b))
    elif fault == "stats shape":
        raises(exc, lambda: F.batch_norm(x, np.append(mean, 0.0), var, g, b))
    elif fault == "mixed dtype":
        raises(exc, lambda: F.batch_norm(x.astype(np.float32), mean, var, g, b))
    elif fault == "x ndim":
        raises(exc, lambda: F.batch_stats(x.reshape(-1)))
    elif fault == "zero-size x":
        raises(exc, lambda: F.batch_stats(x[:0]))
    elif fault == "xh shape":
        raises(exc, lambda: F.batch_norm_grad(dy, x[:1], np.ones(c), g))
    else:
        raises(exc, lambda: F.batch_norm_grad(dy, x, np.ones(c), g, batch_statistics=1))


# -- softmax and log-softmax ------------------------------------------------------------------

@fuzz(800, shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
      axis=st.integers(-4, 3), seed=seeds, scale=st.sampled_from([1.0, 100.0, 1e4]),
      f32=st.booleans())
def test_softmax_matches_torch_or_raises(shape: tuple, axis: int, seed: int, scale: float,
                                         f32: bool) -> None:
    dtype = np.dtype(np.float32 if f32 else np.float64)
    x = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)
    if not -len(shape) <= axis < len(shape):
        raises(ValueError, lambda: F.softmax(x, axis))
        raises(ValueError, lambda: F.log_softmax(x, axis))
        return
    tol = 1e-5 if f32 else 1e-12
    close(F.softmax(x, axis), torch.softmax(t64(x), axis), dtype, tol)
    close(F.log_softmax(x, axis), torch.log_softmax(t64(x), axis), dtype, tol)


# -- the count --------------------------------------------------------------------------------

def test_generated_case_count() -> None:
    """Every fuzz test that ran in this session ran its whole budget; prints the total."""
    ran = {name: CASES[name] for name in BUDGET if CASES[name]}
    short = {name: (n, BUDGET[name]) for name, n in ran.items() if n < BUDGET[name]}
    assert not short, f"tests that ran fewer cases than their budget: {short}"
    assert sum(BUDGET.values()) >= 10_000
    print(f"test_fuzz_functional: {sum(ran.values())} generated cases run "
          f"(budget {sum(BUDGET.values())})")
