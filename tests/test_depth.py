"""The depth fold (``_depth``): a 3-D correlation as a 2-D one with the kernel's depth taps in
the channels, against the direct-loop oracles, and the plans that take it."""

from __future__ import annotations

import numpy as np
import pytest

from rot180.functional import _direct as D
from rot180.functional import _direct_fold as DF
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


def _layer(case, dtype, seed: int, min_batch: int = 1):
    """A case of :func:`_cases` as arrays: ``x, w, b, dz``, the keywords, and the oracles'
    forward pass and two gradients."""
    n, c, m, g, size, k, s, d, pads = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((max(n, min_batch), c, *size)).astype(dtype)
    w = rng.standard_normal((m, c // g, *k)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    kw = {"stride": s, "dilation": d, "padding": pads, "groups": g}
    z_ref = conv_direct(x, w, b, **kw)
    dz = rng.standard_normal(z_ref.shape).astype(dtype)
    want = (z_ref, conv_grad_input_direct(dz, w, x.shape, **kw),
            conv_grad_weight_direct(x, dz, w.shape, **kw))
    return x, w, b, dz, kw, want


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", list(_cases(12)))
def test_depth_fold_matches_the_oracles(case, dtype) -> None:
    k = case[5]
    x, w, b, dz, kw, want = _layer(case, dtype, seed=0)
    tol = 1e-11 if dtype == np.float64 else 2e-5
    with tuning(direct_min_fill=0):                  # the helper takes every batch
        got = (conv(x, w, b, **kw), conv_grad_input(dz, w, x.shape, **kw),
               conv_grad_weight(x, dz, w.shape, **kw))
        lp = plan(x, w, **kw)
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


def _whole_leaves(p) -> list[bool]:
    """For every depth step of ``p``: whether the helper packs and unpacks its fold itself."""
    out = [DF.whole(p)] if p.step == "depth" else []
    return out + [w for sub in p.inner for w in _whole_leaves(sub)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", list(_cases(12, seed=7)))
def test_the_helper_folds_whole_samples_itself_with_the_same_bits(case, dtype,
                                                                   monkeypatch) -> None:
    """Where the fold's 2-D leaf is the helper on whole samples, the lanes are packed straight
    from the 3-D input (and delta) and unpacked straight into the 3-D result: the oracles'
    sums, and the bits of folding, correlating and unfolding one after the other."""
    x, w, b, dz, kw, want = _layer(case, dtype, seed=1, min_batch=12)  # whole samples fill

    def passes():
        return (conv(x, w, b, **kw), conv_grad_input(dz, w, x.shape, **kw),
                conv_grad_weight(x, dz, w.shape, **kw))

    with tuning(force="direct", direct_bands=False):
        fused = passes()
        monkeypatch.setattr(DF, "whole", lambda plan: False)
        apart = passes()
    tol = 1e-11 if dtype == np.float64 else 2e-5
    for a, f, r in zip(apart, fused, want, strict=True):
        np.testing.assert_allclose(f, r, rtol=0, atol=tol * max(1.0, np.abs(r).max()))
        np.testing.assert_array_equal(f, a)


def test_the_fused_fold_is_taken_where_it_should_be() -> None:
    """The benchmark's video and medical layers, and a grouped, strided, dilated one."""
    for x, w, kw in (((4, 16, 8, 28, 28), (32, 16, 3, 3, 3), {"padding": 1}),
                     ((2, 32, 32, 32, 32), (32, 32, 3, 3, 3), {"padding": 1}),
                     ((16, 4, 9, 8, 7), (6, 2, 3, 2, 3), {"stride": (2, 1, 2), "groups": 2,
                                                         "dilation": (2, 1, 1),
                                                         "padding": (1, 0, 1)})):
        lp = plan(x, w, **kw)
        assert _whole_leaves(lp.forward) == [True], str(lp.forward)
        assert _whole_leaves(lp.grad_weight) == [True], str(lp.grad_weight)
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((16, 4, 9, 8, 7)), rng.standard_normal((6, 2, 3, 2, 3))
    kw = {"stride": (2, 1, 2), "groups": 2, "dilation": (2, 1, 1), "padding": (1, 0, 1)}
    dz = rng.standard_normal(conv_direct(x, w, **kw).shape)
    np.testing.assert_allclose(conv(x, w, **kw), conv_direct(x, w, **kw), rtol=0, atol=1e-11)
    np.testing.assert_allclose(conv_grad_weight(x, dz, w.shape, **kw),
                               conv_grad_weight_direct(x, dz, w.shape, **kw), rtol=0, atol=1e-10)


def test_the_depth_packing_checks_its_arguments() -> None:
    x = np.zeros((2, 3 * 4, 5, 5), np.float32)                # (B, G*C*D, H, W), D = 4
    dst = np.zeros((1, 9, 5, 5, D.LANES), np.float32)          # kd * C = 3 * 3 planes
    D._directc.pack_padded(x, dst, depth=(4, 3, 1, 1, 1, 4))   # 2 x 4 lanes
    with pytest.raises(ValueError, match=r"src has 12 planes \(axis 1\), not a multiple of "
                                         r"groups x D = 1 x 5"):
        D._directc.pack_padded(x, dst, depth=(5, 3, 1, 1, 1, 4))
    with pytest.raises(ValueError, match=r"must hold groups x kd x C = 6 planes"):
        D._directc.pack_padded(x, dst, depth=(4, 2, 1, 1, 1, 4))
    with pytest.raises(ValueError, match=r"needs bands=1"):
        D._directc.pack_padded(x, dst, bands=2, depth=(4, 3, 1, 1, 1, 4))
    with pytest.raises(ValueError, match=r"past the 1 blocks of 16"):
        D._directc.pack_padded(x, np.zeros((2, 9, 5, 5, D.LANES), np.float32),
                               depth=(4, 3, 1, 1, 1, 4))
    with pytest.raises(ValueError, match=r"depth= must be ints >= 0"):
        D._directc.pack_padded(x, dst, depth=(4, 3, 1, 1, -1, 4))
    with pytest.raises(ValueError, match=r"pack_padded: top must be >= 0, got -1"):
        D._directc.pack_padded(x, dst, top=-1, depth=(4, 3, 1, 1, 1, 4))
    with pytest.raises(ValueError, match=r"pack_padded: first_block must be >= 0, got -2"):
        D._directc.pack_padded(x, dst, first_block=-2, depth=(4, 3, 1, 1, 1, 4))
    with pytest.raises(ValueError, match=r"groups=2 is read only with depth="):
        D._directc.pack_padded(x, np.zeros((1, 12, 5, 5, D.LANES), np.float32), groups=2)
    res = np.zeros((1, 2, 6, D.LANES), np.float32)
    with pytest.raises(ValueError, match=r"dst has 2 planes \(axis 1\), expected CH x depth = "
                                         r"2 x 4 as in src"):
        D._directc.unpack_bands(res, np.zeros((2, 2, 6), np.float32), depth=4)
    with pytest.raises(ValueError, match=r"depth=4 unfolds whole samples only"):
        D._directc.unpack_bands(res, np.zeros((2, 8, 6), np.float32), depth=4, bands=2)


@pytest.mark.parametrize(("xs", "ws", "kw"), [
    ((2, 3, 8, 10, 9), (24, 3, 3, 3, 3), {"padding": 1}),              # 16 lanes: one block
    ((1, 4, 12, 7, 8), (32, 2, 3, 2, 3), {"padding": (1, 0, 1), "groups": 2}),
    ((2, 8, 8, 6, 6), (16, 2, 3, 3, 3), {"padding": 1, "groups": 4}),
])
def test_one_folded_block_is_shared_by_the_threads(xs, ws, kw) -> None:
    """A fold that fills one block of lanes (batch x output depth <= 16): the threads share
    its output channels or groups; the oracles' sums and the bits of one thread."""
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    dz = rng.standard_normal(conv_direct(x, w, b, **kw).shape)

    def passes():
        return (conv(x, w, b, **kw), conv_grad_input(dz, w, x.shape, **kw),
                conv_grad_weight(x, dz, w.shape, **kw))

    with tuning(threads=2, parallel_min_macs=0, direct_bands=False):
        assert _whole_leaves(plan(x, w, **kw).forward) == [True]
        two = passes()
    with tuning(threads=1, direct_bands=False):
        one = passes()
    want = (conv_direct(x, w, b, **kw), conv_grad_input_direct(dz, w, x.shape, **kw),
            conv_grad_weight_direct(x, dz, w.shape, **kw))
    for t, o, r in zip(two, one, want, strict=True):
        np.testing.assert_allclose(t, r, rtol=0, atol=1e-11 * max(1.0, np.abs(r).max()))
        np.testing.assert_array_equal(t, o)
