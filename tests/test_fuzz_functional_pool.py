"""Property and fuzz tests of :mod:`rot180.functional`'s pooling (max, average, adaptive and
global), and the count of the whole functional fuzz suite. Random valid calls of ``max_pool``,
``avg_pool`` and their gradients must match direct loops written below (the first maximum in
row-major order wins a tie, its flat index is returned); invalid calls (one fault each) must
raise the documented exception, ``ValueError`` for a bad value or shape and ``TypeError`` for a
bad type or dtype, and nothing else (no ``IndexError``, no numpy or Python message, no warning).
Generated cases: the sum of the ``max_examples`` of ``test_fuzz_functional_conv.py``,
``test_fuzz_functional_pool.py`` and ``test_fuzz_functional_ops.py`` is 10,000 (see ``BUDGET``;
this file imports the other two so that their budgets count even when it runs alone);
:func:`test_generated_case_count`, last in the suite, checks that each test ran its budget, and
prints the total with ``pytest -rP``. Examples are derandomized, so every run tests the same
cases.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st

import rot180.functional as F
import test_fuzz_functional_conv  # noqa: F401  (registers its tests' budgets)
import test_fuzz_functional_ops  # noqa: F401  (registers its tests' budgets)
from _fuzz_functional_common import BAD_DTYPES, BUDGET, CASES, NON_ARRAYS, close, fuzz, seeds
from _fuzzing import raises

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


# -- the count --------------------------------------------------------------------------------

def test_generated_case_count() -> None:
    """Every fuzz test that ran in this session ran its whole budget; prints the total."""
    ran = {name: CASES[name] for name in BUDGET if CASES[name]}
    short = {name: (n, BUDGET[name]) for name, n in ran.items() if n < BUDGET[name]}
    assert not short, f"tests that ran fewer cases than their budget: {short}"
    assert sum(BUDGET.values()) >= 10_000
    print(f"test_fuzz_functional: {sum(ran.values())} generated cases run "
          f"(budget {sum(BUDGET.values())})")
