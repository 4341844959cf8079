"""The ``depthwise`` realisation (``rot180.functional._depthwise`` / ``_depthwisec``): plane-wise
loops for few channels per group, forced against the direct-loop oracles over a randomised
family of shapes; where the rule prefers it (both sides of each threshold, each a Tuning field
moved to flip the choice; the result the same either way); the input
gradient's stretched leaf; fixed bits whatever the split; the compiled functions' checks."""

from __future__ import annotations

import numpy as np
import pytest

import rot180.functional._depthwise as DW
from rot180.functional import (
    Tuning,
    conv,
    conv_grad_input,
    conv_grad_weight,
    get_tuning,
    plan,
    realisations,
    tuning,
)
from rot180.functional._padding import stretch_pad
from rot180.functional._plan import Plan
from rot180.functional._registry import TABLE, Problem
from rot180.functional._stretched import run as run_stretched
from rot180.functional.reference import (
    conv_direct,
    conv_grad_input_direct,
    conv_grad_weight_direct,
)

pytestmark = pytest.mark.skipif(
    not (DW.built() and get_tuning().helper),
    reason="rot180.functional._depthwisec not built, or the helpers off (ROT180_PURE_NUMPY=1)")


def _names(p) -> set[str]:
    return {leaf.realisation for leaf in p.leaves()}


def _draw(seed: int):
    """One random depthwise-like call: groups, 1-4 channels and 1-4 outputs per group, odd
    sizes, padding as an int or (low, high) pairs, strides, dilations, a dtype, a bias, and an
    input that is a strided view."""
    rng = np.random.default_rng(seed)
    nd = int(rng.choice([1, 2, 2]))
    B, G = int(rng.integers(1, 21)), int(rng.integers(1, 6))
    C, M = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    k = tuple(int(rng.choice([1, 2, 3, 3, 5])) for _ in range(nd))
    s = tuple(int(rng.choice([1, 1, 2, 3])) for _ in range(nd))
    d = tuple(int(rng.choice([1, 1, 2])) for _ in range(nd))
    pads = [(int(rng.integers(0, kk * dd)), int(rng.integers(0, kk * dd)))
            for kk, dd in zip(k, d, strict=True)]
    size = tuple(int(rng.integers(dd * (kk - 1) + 1, 40)) for kk, dd in zip(k, d, strict=True))
    dtype = [np.float32, np.float64][seed % 2]
    big = rng.standard_normal((B, G * C, *(n + 3 for n in size))).astype(dtype)
    x = big[(Ellipsis, *(slice(1, 1 + n) for n in size))]       # not contiguous
    w = rng.standard_normal((G * M, C, *k)).astype(dtype)
    b = rng.standard_normal(G * M).astype(dtype)
    kw = {"stride": s, "dilation": d, "groups": G,
          "padding": pads if rng.random() < 0.5 else max(p for pair in pads for p in pair)}
    return x, w, b, kw, dtype


@pytest.mark.parametrize("seed", range(24))
def test_forced_equals_the_direct_loops(seed) -> None:
    x, w, b, kw, dtype = _draw(seed)
    ref = conv_direct(x.astype(float), w.astype(float), b.astype(float), **kw)
    dz = np.random.default_rng(seed + 100).standard_normal(ref.shape).astype(dtype)
    with tuning(force="depthwise"):
        got = (conv(x, w, b, **kw), conv_grad_input(dz, w, x.shape, **kw),
               conv_grad_weight(x, dz, w.shape, **kw))
        lp = plan(x, w, **kw)
    want = (ref, conv_grad_input_direct(dz.astype(float), w.astype(float), x.shape, **kw),
            conv_grad_weight_direct(x.astype(float), dz.astype(float), w.shape, **kw))
    tol = 1e-9 if dtype == np.float64 else 2e-4
    for g, r in zip(got, want, strict=True):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, r, rtol=tol, atol=tol * (1 + np.abs(r).max()))
    assert "depthwise" in _names(lp.forward) | _names(lp.grad_weight), str(lp)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("xs", "ws", "stride", "pairs", "dil"), [
    ((16, 4, 1, 9, 11), (4, 1, 1, 3, 3), (2, 2), ((1, 2), (1, 2)), (1, 1)),
    ((3, 2, 3, 7, 8), (2, 2, 3, 5, 5), (3, 2), ((4, 2), (2, 5)), (1, 2)),
    ((2, 3, 1, 6, 13), (3, 4, 1, 2, 3), (1, 3), ((-1, 1), (2, -2)), (2, 1)),
    ((5, 2, 1, 1, 17), (2, 1, 1, 1, 4), (1, 2), ((0, 0), (3, 4)), (1, 1)),
])
def test_the_input_gradient_leaf_is_the_stretched_correlation(xs, ws, stride, pairs, dil,
                                                              dtype) -> None:
    """A ``grad_input`` leaf (the one-pass input gradient: the delta stretched by the stride,
    rows of zeros skipped) against the definition ``correlate(stretch_pad(dz), w, 1, d)``."""
    rng = np.random.default_rng(1)
    dz, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    p = Problem("grad_input", xs, ws, ws[3:], stride, dil, pairs, np.dtype(dtype).char, True)
    assert TABLE["depthwise"].accepts(p, get_tuning()) is True
    got = run_stretched(Plan(p, "run", "depthwise", True, threads=2, out=p.out_sp), dz, w)
    sp = stretch_pad(dz.astype(float), stride, pairs)
    B, G, C = xs[:3]
    M = ws[1]
    ref = conv_direct(sp.reshape(B, G * C, *sp.shape[3:]), w.astype(float).reshape(
        G * M, C, *ws[3:]), dilation=dil, groups=G).reshape(B, G, M, *p.out_sp)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * 10)


def test_the_rule_prefers_it_up_to_its_thresholds() -> None:
    """Both sides of ``depthwise_max_cm`` (channel pairs per group), ``depthwise_min_row`` (row
    length) and ``depthwise_min_groups`` at their defaults, and only where the helper is on."""
    t = get_tuning()
    n = t.depthwise_max_cm
    with tuning(force=None, helper=True):
        assert _names(plan((8, 32, 40, 40), (32 * n, 1, 3, 3), padding=1, groups=32,
                           which="forward")) == {"depthwise"}
        assert "depthwise" not in _names(plan((8, 32, 40, 40), (32 * (n + 1), 1, 3, 3),
                                              padding=1, groups=32, which="forward"))
        row = t.depthwise_min_row
        assert _names(plan((8, 16, row, row), (16, 1, 3, 3), padding=1, groups=16,
                           which="grad_weight")) == {"depthwise"}
        assert "depthwise" not in _names(plan((8, 16, row - 1, row - 1), (16, 1, 3, 3),
                                              padding=1, groups=16, which="grad_weight"))
        assert _names(plan((8, 16, 2 * row - 2, 2 * row - 2), (16, 1, 3, 3), padding=1,
                           stride=2, groups=16, which="forward")) == {"depthwise"}
        g = t.depthwise_min_groups
        assert _names(plan((8, g, 40, 40), (2 * g, 1, 3, 3), padding=1, groups=g,
                           which="forward")) == {"depthwise"}
        assert "depthwise" not in _names(plan((8, g - 1, 40, 40), (2 * (g - 1), 1, 3, 3),
                                              padding=1, groups=g - 1, which="forward"))
        assert _names(plan((8, 1, 40, 40), (1, 1, 3, 3), padding=1, which="forward")) == {
            "depthwise"}                                # one channel pair: any group count
        gi = plan((16, 32, 112, 112), (32, 1, 3, 3), stride=2, padding=1, groups=32,
                  which="grad_input")
        assert _names(gi) == {"depthwise"}, str(gi)      # its phases' correlations
    with tuning(force=None, helper=False):
        p = plan((8, 32, 40, 40), (32, 1, 3, 3), padding=1, groups=32)
        for entry in (p.forward, p.grad_input, p.grad_weight):
            assert "depthwise" not in _names(entry)
    with tuning(helper=False):
        assert "helper" in TABLE["depthwise"].accepts(p.forward.problem, get_tuning())


def _prefers(x, w, which, **kw):
    """Whether the rule (helper on) takes depthwise for ``which`` of the 3x3 padding-1 call;
    ``kw``: the call's stride and groups and the Tuning fields to change."""
    call = {k: kw.pop(k) for k in ("stride", "groups") if k in kw}
    with tuning(force=None, helper=True, **kw):
        return _names(plan(x, w, padding=1, which=which, **call)) == {"depthwise"}


@pytest.mark.parametrize(("x", "w", "which", "kw", "chosen"), [
    # C * M per group <= depthwise_max_cm (8)
    ((8, 32, 40, 40), (256, 1, 3, 3), "forward", {"groups": 32}, True),
    ((8, 32, 40, 40), (256, 1, 3, 3), "forward", {"groups": 32, "depthwise_max_cm": 7}, False),
    ((8, 32, 40, 40), (288, 1, 3, 3), "forward", {"groups": 32}, False),
    ((8, 32, 40, 40), (288, 1, 3, 3), "forward", {"groups": 32, "depthwise_max_cm": 9}, True),
    ((8, 1, 40, 40), (1, 1, 3, 3), "forward", {"depthwise_max_cm": 0}, False),
    # ... never past what it accepts (C * M <= ACCEPT_MAX_CM = 64), whatever the field says
    ((8, 80, 20, 20), (208, 5, 3, 3), "forward", {"groups": 16, "depthwise_max_cm": 10**6},
     False),
    # output rows >= depthwise_min_row (16), or strided
    ((8, 16, 16, 16), (16, 1, 3, 3), "grad_weight", {"groups": 16}, True),
    ((8, 16, 16, 16), (16, 1, 3, 3), "grad_weight", {"groups": 16, "depthwise_min_row": 17},
     False),
    ((8, 16, 15, 15), (16, 1, 3, 3), "grad_weight", {"groups": 16}, False),
    ((8, 16, 15, 15), (16, 1, 3, 3), "grad_weight", {"groups": 16, "depthwise_min_row": 15},
     True),
    ((8, 16, 15, 15), (16, 1, 3, 3), "forward",       # 8 columns at stride 2: any row length
     {"groups": 16, "stride": 2, "depthwise_min_row": 10**6}, True),
    # with C * M > 1, at least depthwise_min_groups (16) groups
    ((8, 16, 40, 40), (32, 1, 3, 3), "forward", {"groups": 16}, True),
    ((8, 16, 40, 40), (32, 1, 3, 3), "forward", {"groups": 16, "depthwise_min_groups": 17},
     False),
    ((8, 15, 40, 40), (30, 1, 3, 3), "forward", {"groups": 15}, False),
    ((8, 15, 40, 40), (30, 1, 3, 3), "forward", {"groups": 15, "depthwise_min_groups": 15},
     True),
    ((8, 4, 40, 40), (4, 1, 3, 3), "forward",          # one pair: the group count is not read
     {"groups": 4, "depthwise_min_groups": 10**6}, True),
])
def test_each_threshold_is_a_tuning_field_and_each_side_is_taken(x, w, which, kw,
                                                                   chosen) -> None:
    """A shape at each threshold, one just past it, and the same shapes with the field moved
    so that the choice flips (a changed field is a new plan: the cache keys on the Tuning)."""
    assert _prefers(x, w, which, **kw) is chosen


def test_the_thresholds_do_not_change_the_result() -> None:
    """Fields moved so that the rule takes depthwise on 3 x 3 channel pairs in 4 groups, and
    leaves it on a depthwise layer: forward and both gradients as the direct loops give."""
    rng = np.random.default_rng(12)
    cases = [((2, 12, 17, 19), (12, 3, 3, 3), {"groups": 4, "stride": 2},
              {"depthwise_max_cm": 9, "depthwise_min_groups": 4}, True),
             ((2, 12, 17, 19), (12, 1, 3, 3), {"groups": 12}, {}, True),
             ((2, 12, 17, 19), (12, 1, 3, 3), {"groups": 12}, {"depthwise_max_cm": 0}, False)]
    for xs, ws, kw, changes, chosen in cases:
        x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
        ref = conv_direct(x, w, b, padding=1, **kw)
        dz = rng.standard_normal(ref.shape)
        with tuning(force=None, helper=True, **changes):
            lp = plan(x, w, padding=1, **kw)
            got = (conv(x, w, b, padding=1, **kw), conv_grad_input(dz, w, x.shape, padding=1,
                                                                   **kw),
                   conv_grad_weight(x, dz, w.shape, padding=1, **kw))
        assert ("depthwise" in _names(lp.forward)) is chosen, str(lp)
        want = (ref, conv_grad_input_direct(dz, w, x.shape, padding=1, **kw),
                conv_grad_weight_direct(x, dz, w.shape, padding=1, **kw))
        for g, r in zip(got, want, strict=True):
            np.testing.assert_allclose(g, r, rtol=0, atol=1e-12 * np.abs(r).max())


def test_the_description_gives_the_default_thresholds() -> None:
    """``realisations()`` prints the record's ``takes``: the defaults of the Tuning fields."""
    t = Tuning()
    text = str(TABLE["depthwise"])
    assert (f"preferred by default to {t.depthwise_max_cm} in {t.depthwise_min_groups}+ groups, "
            f"rows >= {t.depthwise_min_row} or strided") in text, text
    assert str(TABLE["depthwise"]) in "\n".join(map(str, realisations()))


def test_helper_off_still_computes_the_same() -> None:
    x, w, b, kw, _ = _draw(3)
    with tuning(helper=False, force="depthwise"):
        off = conv(x, w, b, **kw)
    np.testing.assert_allclose(off, conv_direct(x, w, b, **kw), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(6, 5, 20, 21), (3, 1, 16, 30)])
def test_bits_do_not_depend_on_the_split(shape) -> None:
    """The forward pass splits planes, the kernel gradient whole groups (or, with fewer groups
    than threads, samples): the same bits at 1, 2 and 3 threads where groups are split."""
    rng = np.random.default_rng(4)
    B, Cin = shape[:2]
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((Cin * 2, 1, 3, 3)).astype(np.float32)
    kw = {"padding": 1, "groups": Cin, "stride": 2}
    dz = rng.standard_normal(conv(x, w, **kw).shape).astype(np.float32)
    outs = []
    for n in (1, 2, 3):
        with tuning(force="depthwise", threads=n, parallel_min_macs=0):
            outs.append((conv(x, w, **kw), conv_grad_weight(x, dz, w.shape, **kw)))
    for y, dw in outs[1:]:
        np.testing.assert_array_equal(y, outs[0][0])
        if Cin >= 3:                            # whole groups per thread at every count
            np.testing.assert_array_equal(dw, outs[0][1])
        else:
            np.testing.assert_allclose(dw, outs[0][1], rtol=1e-5)
    with tuning(force="depthwise", threads=2, parallel_min_macs=0):
        again = conv_grad_weight(x, dz, w.shape, **kw)
    np.testing.assert_array_equal(again, outs[1][1])


def test_a_strided_output_is_written_in_place_and_nothing_else() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 1, 9, 10))
    w = rng.standard_normal((3, 1, 1, 2, 3))
    big = np.full((2, 3, 1, 16, 16), 7.0)
    view = big[..., ::2, 1::2]
    DW.correlate(x, w, (1, 1), (1, 1), view, None, 1, ((0, 0), (0, 0)))
    ref = conv_direct(x.reshape(2, 3, 9, 10), w.reshape(3, 1, 2, 3), groups=3)
    np.testing.assert_allclose(view, ref.reshape(view.shape), atol=1e-12)
    rest = np.ones(big.shape, bool)
    rest[..., ::2, 1::2] = False
    assert (big[rest] == 7.0).all()


def test_the_compiled_functions_check_their_arguments() -> None:
    C = DW._depthwisec
    x = np.zeros((2, 3, 1, 8, 8), np.float32)
    w = np.zeros((3, 1, 1, 3, 3), np.float32)
    out = np.zeros((2, 3, 1, 6, 6), np.float32)
    geo = {"stride": (1, 1), "dilation": (1, 1), "pads": (0, 0, 0, 0)}
    C.correlate(x, w, out, None, **geo)
    with pytest.raises(TypeError, match="w must be float32"):
        C.correlate(x, w.astype(np.float64), out, None, **geo)
    with pytest.raises(ValueError, match="out has M = 2"):
        C.correlate(x, w, np.zeros((2, 3, 2, 6, 6), np.float32), None, **geo)
    with pytest.raises(ValueError, match="the windows reach"):
        C.correlate(x, w, np.zeros((2, 3, 1, 7, 6), np.float32), None, **geo)
    with pytest.raises(ValueError, match="planes=.* must be a range"):
        C.correlate(x, w, out, None, planes=(0, 7), **geo)
    with pytest.raises(ValueError, match="stride= must be ints >= 1"):
        C.correlate(x, w, out, None, **{**geo, "stride": (0, 1)})
    with pytest.raises(TypeError, match="pads= must be a sequence of 4 ints"):
        C.correlate(x, w, out, None, **{**geo, "pads": (0, 0)})
    with pytest.raises(ValueError, match="must be writable"):
        ro = out.copy()
        ro.flags.writeable = False
        C.correlate(x, w, ro, None, **geo)
    with pytest.raises(ValueError, match="must be C-contiguous"):
        C.correlate(x, np.zeros((3, 1, 1, 3, 6), np.float32)[..., ::2], out, None, **geo)
    with pytest.raises(OverflowError):
        C.correlate(x, w, out, None, **{**geo, "stride": (2**62, 1)})
    dw = np.zeros((3, 1, 1, 3, 3), np.float32)
    C.correlate_kernel(x, out, dw, **geo)
    with pytest.raises(ValueError, match="groups=.* must be a range"):
        C.correlate_kernel(x, out, dw, groups=(2, 1), **geo)


# Strided input gradients of grouped layers: depthwise wherever it accepts (C * M <= 64 per
# group) and the phases are not stacked; `depthwise_strided_min_groups` (2) groups or more.
@pytest.mark.parametrize(("x", "w", "kw", "chosen"), [
    ((32, 256, 28, 28), (256, 8, 3, 3), {"groups": 32}, True),          # ResNeXt's 8 x 8
    ((32, 256, 28, 28), (256, 8, 3, 3), {"groups": 32, "depthwise_strided_min_groups": 33},
     False),
    ((8, 16, 20, 20), (16, 8, 3, 3), {"groups": 2}, True),               # at the field
    ((8, 8, 20, 20), (8, 8, 3, 3), {}, False),                           # one group ...
    ((8, 8, 20, 20), (8, 8, 3, 3), {"depthwise_strided_min_groups": 1}, True),   # ... moved
    ((8, 36, 20, 20), (36, 9, 3, 3), {"groups": 4}, False),              # 9 x 9: not accepted
    ((8, 32, 40, 40), (32, 4, 5, 5), {"groups": 8, "padding": 2}, False),  # stacked phases
    ((8, 64, 400), (64, 8, 3), {"groups": 8}, True),                     # 1-D
])
def test_strided_grouped_input_gradients_take_it(x, w, kw, chosen) -> None:
    call = {"stride": 2, "padding": 1}
    call.update({k: kw.pop(k) for k in ("groups", "padding") if k in kw})
    with tuning(force=None, helper=True, **kw):
        gi = plan(x, w, which="grad_input", **call)
    assert (_names(gi) == {"depthwise"}) is chosen, str(gi)


def test_strided_grouped_input_gradients_equal_the_direct_loops() -> None:
    rng = np.random.default_rng(4)
    for xs, ws, kw in [((3, 12, 11, 10), (12, 4, 3, 3), {"groups": 3, "stride": 2}),
                       ((2, 8, 13), (16, 2, 3), {"groups": 4, "stride": 3}),
                       ((2, 16, 9, 9), (8, 4, 2, 2), {"groups": 4, "stride": 2})]:
        x, w = rng.standard_normal(xs), rng.standard_normal(ws)
        dz = rng.standard_normal(conv_direct(x, w, padding=1, **kw).shape)
        with tuning(force=None, helper=True):
            gi = plan(x, w, padding=1, **kw).grad_input
            got = conv_grad_input(dz, w, x.shape, padding=1, **kw)
        assert _names(gi) == {"depthwise"}, str(gi)
        np.testing.assert_allclose(got, conv_grad_input_direct(dz, w, x.shape, padding=1, **kw),
                                   rtol=0, atol=1e-12)
