"""``rot180.functional.plan``: which realisation the engine picks for a layer call, that
forcing one changes the plan but not the sums, that plans are cached, printed and shown by
``rot180 bench --explain-plan``."""

from __future__ import annotations

import numpy as np
import pytest

import rot180.functional._depthwise as DW
import rot180.functional._direct as D
from rot180 import cli
from rot180.functional import (
    conv,
    conv_grad_input,
    conv_grad_weight,
    get_tuning,
    plan,
    realisations,
    tuning,
)
from rot180.functional._plan import _make, lookup
from rot180.functional.reference import (
    conv_direct,
    conv_grad_input_direct,
    conv_grad_weight_direct,
)

LENET = [((64, 1, 28, 28), (6, 1, 5, 5), 2), ((64, 6, 14, 14), (16, 6, 5, 5), 0)]
needs_helper = pytest.mark.skipif(D._directc is None, reason="the compiled helper is not built")


@pytest.fixture(autouse=True)
def _the_rule():
    """These tests read what the rule chooses: no --rot180-force around them."""
    with tuning(force=None):
        yield


def _names(p) -> set[str]:
    return {leaf.realisation for leaf in p.leaves()}


@needs_helper
@pytest.mark.parametrize(("x", "w", "pad"), LENET)
def test_lenet_layers_pick_the_helper_when_it_is_on(x, w, pad) -> None:
    with tuning(helper=True):
        lp = plan(x, w, padding=pad)
    for p in (lp.forward, lp.grad_input, lp.grad_weight):
        assert _names(p) == {"direct"}, str(p)
        assert not any(leaf.forced for leaf in p.leaves())
    assert lp.forward.step == "run" and lp.forward.bands >= 1


@pytest.mark.parametrize(("x", "w", "pad"), LENET)
def test_lenet_layers_never_pick_the_helper_when_it_is_off(x, w, pad) -> None:
    with tuning(helper=False):
        lp = plan(x, w, padding=pad)
    for p in (lp.forward, lp.grad_input, lp.grad_weight):
        assert "direct" not in _names(p), str(p)


def test_a_1x1_kernel_picks_pointwise() -> None:
    p = plan((4, 8, 9, 9), (4, 8, 1, 1), stride=2, which="forward")
    assert p.step == "run" and p.realisation == "pointwise" and not p.forced


def test_fewer_output_than_input_channels_at_stride_1_picks_kn2row() -> None:
    with tuning(helper=False):
        p = plan((2, 16, 40, 40), (4, 16, 3, 3), padding=1, which="forward")
        gi = plan((2, 4, 40, 40), (16, 4, 3, 3), stride=2, padding=1, which="grad_input")
    assert (p.step, p.realisation) == ("run", "kn2row"), str(p)
    assert (gi.step, gi.realisation) == ("run", "kn2row"), str(gi)    # C_out < C_in there
    assert gi.phases == (4, 4)
    with tuning(helper=False, kn2row_ratio=10**9):
        assert "kn2row" not in _names(plan((2, 16, 40, 40), (4, 16, 3, 3), padding=1,
                                           which="forward"))


def test_short_rows_fold_the_batch_and_large_calls_use_threads() -> None:
    with tuning(helper=False, threads=1):
        p = plan((32, 4, 6, 6), (8, 4, 3, 3), which="forward")
    assert p.step == "fold" and p.inner[0].problem.x[0] == 1, str(p)
    with tuning(helper=False, parallel_min_macs=0, fold_max_row=0):
        p = plan((8, 4, 16, 16), (8, 4, 3, 3), which="grad_weight")
    assert p.step == "run" and p.threads == p.workers >= 1


CASES = [  # x, w, kwargs: strided, padded, dilated, grouped, 1-D / 2-D / 3-D, 1x1
    ((3, 4, 11, 10), (6, 4, 3, 3), {"stride": 2, "padding": 1}),
    ((2, 6, 9, 9), (4, 3, 2, 3), {"stride": (2, 1), "padding": 2, "dilation": 2, "groups": 2}),
    ((5, 3, 17), (2, 3, 4), {"stride": 3, "padding": [(1, 2)]}),
    ((2, 2, 5, 6, 4), (3, 2, 2, 3, 2), {"padding": 1}),
    ((4, 5, 7, 7), (3, 5, 1, 1), {"stride": 2}),
    ((16, 3, 12, 12), (8, 3, 5, 5), {"padding": 2}),
]


@pytest.mark.parametrize("force", [r.name for r in realisations()])
@pytest.mark.parametrize(("xs", "ws", "kw"), CASES)
def test_forcing_changes_the_plan_not_the_sums(force, xs, ws, kw) -> None:
    if (force == "direct" and D._directc is None) or (force == "depthwise"
                                                      and not DW.built()):
        pytest.skip("the compiled helper is not built")
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    dz = rng.standard_normal(conv_direct(x, w, **kw).shape)
    settings = {"force": force}
    if force in ("direct", "depthwise"):        # on, whatever ROT180_PURE_NUMPY says
        settings["helper"] = True
    if force == "direct":
        settings["direct_min_fill"] = 0
    with tuning(**settings):
        lp = plan(x, w, **kw)
        got = (conv(x, w, **kw), conv_grad_input(dz, w, x.shape, **kw),
               conv_grad_weight(x, dz, w.shape, **kw))
    want = (conv_direct(x, w, **kw), conv_grad_input_direct(dz, w, x.shape, **kw),
            conv_grad_weight_direct(x, dz, w.shape, **kw))
    for g, ref in zip(got, want, strict=True):
        np.testing.assert_allclose(g, ref, rtol=0, atol=1e-10)
    nd = len(xs) - 2
    for p in (lp.forward, lp.grad_input, lp.grad_weight):
        forced = [leaf for leaf in p.leaves() if leaf.forced]
        assert all(leaf.realisation == force for leaf in forced), str(p)
        assert all(leaf.realisation != force for leaf in p.leaves() if not leaf.forced)
    takes = {  # where each realisation must have been used
        "clipped": True, "im2col": True, "kn2row": True,
        "pointwise": lp.forward.problem.one_by_one,
        "direct": nd <= 2 and not lp.forward.problem.one_by_one,
        # 3x3 stride-1 forward passes, and input gradients that are not folded first
        "winograd": (lp.forward.problem.kernel == (3, 3) and lp.forward.problem.unit_stride
                     and lp.forward.problem.dilation == (1, 1)
                     and lp.grad_input.step == "padded"),
        # its input gradients too, unless kn2row's rule takes them (fewer outputs than inputs)
        "depthwise": nd <= 2 and lp.forward.problem.w[1] <= lp.forward.problem.w[2],
    }[force]
    if takes:
        entries = (lp.forward, lp.grad_weight) if force in ("im2col", "direct") else (
            (lp.forward,) if force == "pointwise" else (lp.forward, lp.grad_input))
        for p in entries:
            if force == "kn2row" and p is lp.forward and kw.get("stride", 1) != 1:
                continue                        # kn2row takes stride-1 forward passes only
            assert force in _names(p), str(p)


def test_plans_are_cached_per_shape_and_settings() -> None:
    a = plan((8, 3, 20, 20), (4, 3, 3, 3), padding=1, which="grad_input")
    assert plan((8, 3, 20, 20), (4, 3, 3, 3), padding=1, which="grad_input") is a
    with tuning(chunk_bytes=12345):
        b = plan((8, 3, 20, 20), (4, 3, 3, 3), padding=1, which="grad_input")
    assert b is not a
    # A second call of an entry point only looks its plan up.
    x = np.ones((8, 3, 20, 20), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    conv(x, w, padding=1)
    before = _make.cache_info()
    conv(x, w, padding=1)
    assert _make.cache_info().misses == before.misses
    p = plan(x, w, padding=1, which="forward")
    assert lookup("forward", (8, 1, 3, 20, 20), (1, 4, 3, 3, 3), (3, 3), (1, 1), (1, 1),
                  ((1, 1), (1, 1)), np.dtype(np.float32), True) is p


def test_plans_print_and_the_table_lists_every_realisation() -> None:
    lp = plan((2, 3, 8, 8), (4, 3, 3, 3), padding=1, stride=2, dtype=np.float64)
    text = str(lp)
    for entry in ("forward: x (2, 1, 3, 8, 8)", "grad_input: dz (2, 1, 4, 4, 4)",
                  "grad_weight: x (2, 1, 3, 8, 8)", "float64", "(chosen)",
                  "non-finite weight reroutes to clipped"):
        assert entry in text, text
    table = str(realisations()).splitlines()
    assert [line.split()[0] for line in table] == [r.name for r in realisations()]
    assert all(" takes " in line for line in table)
    assert all(r.namespaces == ("numpy",) for r in realisations())


def test_plan_takes_arrays_or_shapes_and_checks_them_like_conv() -> None:
    x = np.zeros((2, 3, 8, 8), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    assert plan(x, w, which="forward") is plan((2, 3, 8, 8), w.shape, which="forward")
    assert plan(None, w, input_shape=(2, 3, 8, 8), which="forward").problem.x == (2, 1, 3, 8, 8)
    assert plan((3, 8, 8), w.shape, which="forward").problem.x[0] == 1      # unbatched
    assert str(plan((0, 3, 8, 8), w.shape)) == "empty batch: no correlation runs"
    for bad in ({"padding": "middle"}, {"groups": 2}, {"stride": 0}):
        with pytest.raises(ValueError) as conv_error:
            conv(x, w, **bad)
        with pytest.raises(ValueError) as plan_error:
            plan(x, w, **bad)
        assert str(plan_error.value).replace("plan", "conv") == str(conv_error.value)
    with pytest.raises(ValueError, match="which must be one of"):
        plan(x, w, which="backward")
    with pytest.raises(TypeError, match="same dtype"):
        plan(x, w.astype(np.float64))
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        plan((2, 3, 8, 8), (4, 3, 3, 3), dtype=np.int32)


def test_bench_explain_plan_runs(capsys) -> None:
    assert cli.main(["bench", "--explain-plan", "--layer", "4,6,12,12:8,3,2,1"]) == 0
    out = capsys.readouterr().out
    assert "(4,6,12,12)->8,3,2,1:" in out and "grad_weight: x (4, 1, 6, 12, 12)" in out
    assert get_tuning().force is None


@pytest.mark.skipif(not D.available(), reason="the compiled helper is not built or off")
def test_forcing_the_helper_takes_batches_the_rule_leaves_to_numpy() -> None:
    """force="direct" uses the helper wherever it can run, not only where its lane-fill
    threshold would pick it (a review found it only ever agreed with the rule)."""
    shapes = ((20, 8, 40), (4, 8, 3))
    assert plan(*shapes, dtype=np.float64, which="forward").leaves()[0].realisation != "direct"
    with tuning(force="direct"):
        leaf = plan(*shapes, dtype=np.float64, which="forward").leaves()[0]
        assert (leaf.realisation, leaf.forced) == ("direct", True)
        rng = np.random.default_rng(0)
        x, w = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
        np.testing.assert_allclose(conv(x, w), conv_direct(x, w), rtol=0, atol=1e-12)


# The helper's kernel gradient in short bands of large channel counts goes to im2col
# (Tuning.im2col_kernel_max_positions = 8 positions a band, im2col_kernel_min_channels = 96).
@needs_helper
@pytest.mark.parametrize(("x", "w", "changes", "chosen"), [
    ((4, 192, 8, 8), (192, 192, 3, 3), {}, "im2col"),            # 8 bands of 1 x 8 positions
    ((4, 192, 8, 8), (192, 192, 3, 3), {"im2col_kernel_max_positions": 7}, "direct"),
    ((4, 192, 8, 8), (192, 192, 3, 3), {"im2col_kernel_min_channels": 193}, "direct"),
    ((8, 512, 7, 7), (512, 512, 3, 3), {}, "direct"),            # 4 bands of 2 x 7 positions
    ((8, 512, 7, 7), (512, 512, 3, 3), {"im2col_kernel_max_positions": 14}, "im2col"),
    ((4, 96, 8, 8), (96, 96, 3, 3), {}, "im2col"),               # at the channel threshold
    ((4, 95, 8, 8), (96, 95, 3, 3), {}, "direct"),               # one channel below it
    ((4, 96, 8, 8), (96, 96, 3, 3), {"force": "direct"}, "direct"),   # forced: the helper
])
def test_short_bands_of_many_channels_leave_the_kernel_gradient_to_im2col(x, w, changes,
                                                                          chosen) -> None:
    with tuning(helper=True, threads=2, parallel_min_macs=0, **changes):
        p = plan(x, w, padding=1, which="grad_weight")
    assert _names(p) == {chosen}, str(p)


def test_the_kernel_gradient_rule_does_not_change_the_sums() -> None:
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((3, 96, 5, 6)), rng.standard_normal((96, 96, 3, 3))
    dz = rng.standard_normal(conv_direct(x, w, padding=1).shape)
    want = conv_grad_weight_direct(x, dz, w.shape, padding=1)
    for changes, chosen in (({}, "im2col"), ({"im2col_kernel_min_channels": 97}, "direct")):
        with tuning(helper=True, threads=2, parallel_min_macs=0, direct_min_fill=0,
                    fold_max_row=0, **changes):
            assert _names(plan(x, w, padding=1, which="grad_weight")) == {chosen}
            got = conv_grad_weight(x, dz, w.shape, padding=1)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
