"""Property and fuzz tests of :mod:`rot180.functional` outside convolution and pooling:
activations, the linear layer, the losses, batch normalisation, softmax and log-softmax. Every
random valid call returns what an independent oracle computes (PyTorch float64 for activations,
losses, batch normalisation and softmax; ``einsum`` for the linear layer), with the oracle's
shape and dtype; every invalid call breaks one thing of a valid call (a fault) and raises the
exception class fixed for that fault in advance: ``ValueError`` for a bad value or shape,
``TypeError`` for a bad type or dtype, nothing else (no ``IndexError``, no numpy or Python
message, no floating-point warning). The 4,400 cases generated here count toward the suite's
10,000 (see ``test_fuzz_functional_pool.py``).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from hypothesis import strategies as st

import rot180.functional as F
from _fuzz_functional_common import BAD_DTYPES, NON_ARRAYS, close, fuzz, seeds, t64
from _fuzzing import raises

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
