"""Property and fuzz tests of :mod:`rot180.functional`'s convolution: random valid and invalid
calls of ``conv``, ``conv_grad_input``, ``conv_grad_weight`` and ``conv_grad_bias``. Every valid
call returns what the direct-loop oracle :mod:`rot180.functional.reference` computes, with the
oracle's shape and dtype; every invalid call breaks one thing of a valid call (a fault) and
raises the exception class fixed for that fault in advance: ``ValueError`` for a bad value or
shape, ``TypeError`` for a bad type or dtype. Nothing else may escape: no ``IndexError`` or
``AxisError``, no numpy broadcasting or casting message, no floating-point warning (pytest turns
warnings into errors), and never a result of the wrong shape. Lists and scalars are accepted
where an array is expected (documented in :mod:`rot180.functional._validation`: converted with
``np.asarray``), so non-array faults use ``None``, strings, dicts and objects. The 3,000 cases
generated here count toward the suite's 10,000 (see ``test_fuzz_functional_pool.py``).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

import rot180.functional as F
from _fuzz_functional_common import BAD_DTYPES, NON_ARRAYS, close, fuzz, seeds
from _fuzzing import raises
from conftest import ConvConfig, conv_configs
from rot180.functional.reference import (
    conv_direct,
    conv_grad_input_direct,
    conv_grad_weight_direct,
)

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
