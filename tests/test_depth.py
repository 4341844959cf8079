"""The depth fold (``_depth``): a 3-D correlation as a 2-D one with the kernel's depth taps in
the channels, against the direct-loop oracles, and the plans that take it."""

from __future__ import annotations

import numpy as np
import pytest

from rot180.functional import _direct as D
from rot180.functional import conv, conv_grad_input, conv_grad_weight, get_tuning, plan, tuning
from rot180.functional.reference import (
    conv_direct,
    conv_grad_input_direct,
    conv_grad_weight_direct,
)

pytestmark = pytest.mark.skipif(
    D._directc is None or not get_tuning().helper,
    reason="the compiled helper is not built, or off (ROT180_PURE_NUMPY=1): the fold is not taken")


def _steps(p) -> list[str]:
    return [p.step] + [s for sub in p.inner for s in _steps(sub)]


def _cases(count: int, seed: int = 3):
    """Random 3-D layers: batch, groups, kernels 1-4 per axis, strides, dilations, pads (also
    asymmetric and larger than the kernel's reach, which crops)."""
    rng = np.random.default_rng(seed)
    while count:
        k = tuple(int(v) for v in rng.integers(1, 5, 3))
        s = tuple(int(v) for v in rng.integers(1, 4, 3))
        d = tuple(int(v) for v in rng.integers(1, 3, 3))
        size = tuple(int(v) for v in rng.integers(3, 10, 3))
        pads = [tuple(int(v) for v in rng.integers(0, kk + 1, 2)) for kk in k]
        g = int(rng.choice([1, 2]))
        if any(i + lo + hi < dd * (kk - 1) + 1
               for i, (lo, hi), kk, dd in zip(size, pads, k, d, strict=True)):
            continue
        count -= 1
        yield int(rng.integers(1, 24)), 2 * g, 3 * g, g, size, k, s, d, pads


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", list(_cases(12)))
def test_depth_fold_matches_the_oracles(case, dtype) -> None:
    n, c, m, g, size, k, s, d, pads = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, *size)).astype(dtype)
    w = rng.standard_normal((m, c // g, *k)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    kw = {"stride": s, "dilation": d, "padding": pads, "groups": g}
    z_ref = conv_direct(x, w, b, **kw)
    dz = rng.standard_normal(z_ref.shape).astype(dtype)
    tol = 1e-11 if dtype == np.float64 else 2e-5
    with tuning(direct_min_fill=0):                  # the helper takes every batch
        got = (conv(x, w, b, **kw), conv_grad_input(dz, w, x.shape, **kw),
               conv_grad_weight(x, dz, w.shape, **kw))
        lp = plan(x, w, **kw)
    want = (z_ref, conv_grad_input_direct(dz, w, x.shape, **kw),
            conv_grad_weight_direct(x, dz, w.shape, **kw))
    for a, r in zip(got, want, strict=True):
        np.testing.assert_allclose(a, r, rtol=0, atol=tol * max(1.0, np.abs(r).max()))
    if k != (1, 1, 1):
        assert "depth" in _steps(lp.forward) + _steps(lp.grad_weight), str(lp)


def test_the_fold_needs_a_realisation_that_expands_nothing() -> None:
    """Helper off (or im2col forced): the 3-D realisations take the call, no depth step."""
    x, w = (16, 4, 8, 8, 8), (6, 4, 3, 3, 3)
    assert "depth" in _steps(plan(x, w, padding=1).forward)
    for settings in ({"helper": False}, {"force": "im2col"}, {"force": "kn2row"}):
        with tuning(**settings):
            assert "depth" not in _steps(plan(x, w, padding=1).forward), settings
    with tuning(force="direct"):             # direct takes the folded 2-D problem
        assert _steps(plan(x, w, padding=1).forward)[:2] == ["depth", "run"]


def test_a_non_finite_weight_still_reroutes_the_folded_call() -> None:
    x = np.ones((16, 2, 5, 5, 5))
    w = np.ones((3, 2, 3, 3, 3))
    w[0, 0, 0, 0, 0] = np.inf
    z = conv(x, w, padding=1)
    np.testing.assert_array_equal(z, conv_direct(x, w, padding=1))
