"""The layers' fast paths (rot180.functional._fused, _fusedc.c): BatchNorm (+ ReLU fused in a
Sequential), ReLU, max / global average pooling. Each is checked with the compiled helper on and
off, threaded and not (the size threshold forced both ways), against the unfused layers, the
NumPy reference rules and PyTorch float64."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from rot180 import nn
from rot180.functional import _fused, batch_stats, tuning
from rot180.functional import pool as P
from rot180.functional._poolspec import pool_spec

HELPER = [pytest.param(False, id="numpy")] + (
    [pytest.param(True, id="helper")] if _fused._fusedc is not None else [])
needs_helper = pytest.mark.skipif(_fused._fusedc is None, reason="_fusedc not built")


@pytest.fixture(params=["serial", "threads"])
def split(request, monkeypatch):
    """Both sides of PARALLEL_MIN_BYTES: one call, or chunks on 2 threads (3 for odd splits)."""
    big = request.param == "serial"
    monkeypatch.setattr(_fused, "PARALLEL_MIN_BYTES", 1 << 62 if big else 0)
    with tuning(threads=1 if big else 3):
        yield request.param


# Rows (n, c) of S values: short ones (S < 64) are summed side by side in the helper, long ones
# row by row; both kinds here.
SHAPES = {"BatchNorm1d": [(6, 3), (4, 3, 5), (2, 3, 70)],
          "BatchNorm2d": [(3, 3, 4, 5), (2, 3, 9, 9)],
          "BatchNorm3d": [(2, 3, 3, 2, 4)]}
CASES = [(name, shape) for name, shapes in SHAPES.items() for shape in shapes]
OPTIONS = [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False}]


def _bn(name: str, options: dict, rng: np.random.Generator) -> nn.Module:
    bn = getattr(nn, name)(3, dtype=np.float64, **options)
    if bn.affine:
        bn.weight.data[...] = rng.uniform(0.5, 1.5, 3)
        bn.bias.data[...] = rng.uniform(-0.5, 0.5, 3)
    return bn


@pytest.mark.parametrize("helper", HELPER)
@pytest.mark.parametrize("options", OPTIONS, ids=str)
@pytest.mark.parametrize(("name", "shape"), CASES)
def test_fused_bn_relu_matches_unfused_and_torch(name, shape, options, helper, split) -> None:
    rng = np.random.default_rng(0)
    bn = _bn(name, options, rng)
    seq = nn.Sequential(bn, nn.ReLU())
    bn2, relu2 = copy.deepcopy(bn), nn.ReLU()
    theirs = torch.nn.Sequential(getattr(torch.nn, name)(3, dtype=torch.float64, **options),
                                 torch.nn.ReLU())
    theirs[0].load_state_dict({k: torch.tensor(v) for k, v in bn.state_dict().items()})
    with tuning(helper=helper):
        for mode in ("train", "train", "eval"):
            for m in (seq, bn2, theirs):
                getattr(m, mode)()
            x = 2 * rng.standard_normal(shape) + 1
            dy = rng.standard_normal(shape)
            seq.zero_grad()
            bn2.zero_grad()
            y = seq.forward(x)
            dx = seq.backward(dy)
            y2 = relu2.forward(bn2.forward(x))          # unfused: each layer on its own
            dx2 = bn2.backward(relu2.backward(dy))
            np.testing.assert_allclose(y, y2, rtol=1e-14, atol=1e-14)
            np.testing.assert_allclose(dx, dx2, rtol=1e-12, atol=1e-13)
            xt = torch.tensor(x, requires_grad=True)
            theirs.zero_grad()
            yt = theirs(xt)
            yt.backward(torch.tensor(dy))
            np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=1e-10)
            np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=1e-10)
            for (n, p), p2, t in zip(bn.named_parameters(), bn2.parameters(),
                                     theirs[0].parameters(), strict=True):
                np.testing.assert_allclose(p.grad, p2.grad, rtol=1e-12, atol=1e-13, err_msg=n)
                np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=0, atol=1e-10)
            ts = theirs[0].state_dict()
            for k, v in bn.state_dict().items():
                np.testing.assert_allclose(v, ts[k].numpy(), rtol=0, atol=1e-12, err_msg=k)
                np.testing.assert_array_equal(v, bn2.state_dict()[k])


@pytest.mark.parametrize("helper", HELPER)
def test_helper_and_numpy_paths_agree_float32(helper, split) -> None:
    """float32, a training step of Sequential(conv-shaped BN, ReLU) with both paths: equal to
    float32 rounding, and the threaded run bit for bit equal to the serial one."""
    rng = np.random.default_rng(1)
    x = (3 * rng.standard_normal((4, 8, 6, 5)) + 2).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    seqs = {}
    for h in (False, helper):
        seq = nn.Sequential(nn.BatchNorm2d(8), nn.ReLU())
        with tuning(helper=h):
            y = seq.forward(x)
            dx = seq.backward(dy)
        seqs[h] = (y, dx, seq[0].weight.grad.copy(), seq[0].running_var.copy())
    for a, b in zip(seqs[False], seqs[helper], strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


@needs_helper
def test_threaded_results_equal_serial_bits(monkeypatch) -> None:
    """Chunks split channels / planes / elements only, so 1, 2 or 3 threads give equal bits."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 7, 9, 4)).astype(np.float32)
    dy = rng.standard_normal((5, 7, 1, 1)).astype(np.float32)
    out = []
    for limit, threads in ((1 << 62, 1), (0, 2), (0, 3)):
        monkeypatch.setattr(_fused, "PARALLEL_MIN_BYTES", limit)
        seq = nn.Sequential(nn.BatchNorm2d(7), nn.ReLU(), nn.MaxPool2d(2), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1))
        with tuning(threads=threads, helper=True):
            y = seq.forward(x)
            dx = seq.backward(dy)
        out.append((y, dx, seq[0].weight.grad.copy(), seq[0].running_var.copy()))
    for other in out[1:]:
        for a, b in zip(out[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("helper", HELPER)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("s", [32, 160])
def test_statistics_without_cancellation(helper, dtype, s) -> None:
    """A channel with mean 1e4 and std 1e-2: var = E[x^2] - E[x]^2 in float32 (or float64 without
    a shift) loses every digit; the layer's statistics match float64 NumPy of the same values."""
    rng = np.random.default_rng(3)
    x = (1e4 + 1e-2 * rng.standard_normal((16, 2, s))).astype(dtype)
    x[:, 1] = 1e-2 * rng.standard_normal((16, s))            # and an ordinary channel
    xd = x.astype(np.float64)
    bn = nn.BatchNorm1d(2, momentum=1.0, dtype=dtype)
    with tuning(helper=helper):
        bn.forward(x)
    m = xd.size // 2
    np.testing.assert_allclose(bn.running_mean, xd.mean(axis=(0, 2)), rtol=1e-7, atol=1e-9)
    # The helper's shifted float64 sums: to the dtype's rounding; NumPy's two passes: close.
    np.testing.assert_allclose(bn.running_var, xd.var(axis=(0, 2)) * m / (m - 1),
                               rtol=1e-6 if helper else 1e-4)
    np.testing.assert_allclose(batch_stats(xd)[1], xd.var(axis=(0, 2)), rtol=1e-9)


@pytest.mark.parametrize("helper", HELPER)
def test_non_contiguous_inputs(helper, split) -> None:
    rng = np.random.default_rng(4)
    base = rng.standard_normal((4, 6, 5, 8))
    x = base.transpose(0, 1, 3, 2)[..., ::2, :]               # strided and transposed
    dy = rng.standard_normal(x.shape)
    for layer in (lambda: nn.Sequential(nn.BatchNorm2d(6, dtype=np.float64), nn.ReLU()),
                  nn.ReLU, lambda: nn.MaxPool2d(2), lambda: nn.AdaptiveAvgPool2d(1)):
        a, b = layer(), layer()
        with tuning(helper=helper):
            ya, yb = a.forward(x), b.forward(np.ascontiguousarray(x))
            # (NumPy's pairwise sums group a strided array's values differently)
            np.testing.assert_allclose(ya, yb, rtol=1e-13, atol=1e-15)
            d = dy[..., :ya.shape[-2], :ya.shape[-1]] if ya.shape != x.shape else dy
            np.testing.assert_allclose(a.backward(d), b.backward(np.ascontiguousarray(d)),
                                       rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("helper", HELPER)
def test_relu_backward_alone_after_fused_forward(helper) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 5, 5))
    seq = nn.Sequential(nn.BatchNorm2d(4, dtype=np.float64), nn.ReLU())
    with tuning(helper=helper):
        y = seq.forward(x)
        dy = rng.standard_normal(y.shape)
        np.testing.assert_array_equal(seq[1].backward(dy), dy * (y > 0))
        # The BatchNorm alone then gets the masked delta, as unfused.
        ref = copy.deepcopy(seq[0])
        np.testing.assert_allclose(seq[0].backward(dy * (y > 0)),
                                   ref.backward(dy * (y > 0)), rtol=0, atol=0)


def test_fused_pair_keeps_the_pass_checks() -> None:
    bn, relu = nn.BatchNorm2d(2, dtype=np.float64), nn.ReLU()
    x = np.random.default_rng(6).standard_normal((2, 2, 3, 3))
    with pytest.raises(ValueError, match="used twice in one forward pass"):
        nn.Sequential(bn, relu, bn, nn.ReLU()).forward(x)
    seq = nn.Sequential(bn, relu)
    seq.forward(x)
    bn.forward(x)                           # the BatchNorm ran again outside seq
    with pytest.raises(ValueError, match="ran forward again outside"):
        seq.backward(x)
    seq.forward(x)
    relu.forward(x)                         # now the ReLU
    with pytest.raises(ValueError, match="ran forward again outside"):
        seq.backward(x)


def test_fused_pair_output_is_read_only_and_its_gradients_those_of_the_unfused_pair() -> None:
    """The fused pair's output is the mask its backward folds in: an in-place change to it
    raises instead of silently changing the gradients; out-of-place use gives the unfused
    pair's gradients."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 3, 5, 5))
    dy = rng.standard_normal(x.shape)
    fused = nn.Sequential(nn.BatchNorm2d(3, dtype=np.float64), nn.ReLU())
    y = fused.forward(x)
    with pytest.raises(ValueError, match="read-only"):
        y += 1.0
    with pytest.raises(ValueError, match="read-only"):
        y[y > 0.5] = 0.0
    shifted = y - 0.25                          # out of place: as always
    assert shifted.flags.writeable
    bn, relu = nn.BatchNorm2d(3, dtype=np.float64), nn.ReLU()
    want = relu.forward(bn.forward(x))          # the pair called one by one: unfused
    assert want.flags.writeable
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fused.backward(dy), bn.backward(relu.backward(dy)), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(fused[0].weight.grad, bn.weight.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("helper", HELPER)
def test_backward_params_of_a_leading_fused_pair(helper) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 2, 4, 4))
    a = nn.Sequential(nn.BatchNorm2d(2, dtype=np.float64), nn.ReLU(), nn.MaxPool2d(2))
    b = copy.deepcopy(a)
    with tuning(helper=helper):
        dy = rng.standard_normal(a.forward(x).shape)
        b.forward(x)
        a.backward_params(dy)
        b.backward(dy)
    np.testing.assert_array_equal(a[0].weight.grad, b[0].weight.grad)
    np.testing.assert_array_equal(a[0].bias.grad, b[0].bias.grad)


def test_fused_bn_relu_gradient_by_finite_differences() -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 2, 3, 2))
    seq = nn.Sequential(nn.BatchNorm2d(2, dtype=np.float64), nn.ReLU())
    seq[0].weight.data[...] = [0.7, 1.3]
    dy = rng.standard_normal(x.shape)
    seq.forward(x)
    dx = seq.backward(dy)
    num = np.zeros_like(x)
    h = 1e-6
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        num[i] = ((seq.forward(xp) - seq.forward(xm)) * dy).sum() / (2 * h)
    np.testing.assert_allclose(dx, num, rtol=1e-5, atol=1e-7)


# --- pooling: helper against the NumPy tap views ----------------------------------------------

POOLS = [
    dict(kernel_size=2), dict(kernel_size=2, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1)),
    dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=2, stride=1),
    dict(kernel_size=3, padding=1, dilation=2),
]


@needs_helper
@pytest.mark.parametrize("kw", POOLS, ids=str)
@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 2, 8, 8), (3, 5, 6)])
def test_max_pool_helper_matches_numpy_views(shape, kw, split) -> None:
    rng = np.random.default_rng(9)
    x = rng.integers(-3, 3, shape).astype(np.float64)        # many ties
    x.flat[::11] = np.nan
    x.flat[5::13] = -np.inf
    res = {}
    for helper in (False, True):
        with tuning(helper=helper):
            y, idx = P.max_pool(x, **kw, nd=2)
            dy = np.arange(y.size, dtype=np.float64).reshape(y.shape)
            dx = P.max_pool_grad(dy, idx, x.shape, **kw, nd=2)
        res[helper] = (y, idx, dx)
    # The helper's general loop, called directly (the layers use it for 2x2/2 only, and for
    # the last column of a ceil_mode 2x2/2).
    sp = pool_spec(x.shape, kw["kernel_size"], kw.get("stride"), kw.get("padding", 0),
                   kw.get("ceil_mode", False), "test", dilation=kw.get("dilation", 1), nd=2)
    y, idx = _fused.max_pool2d(x, sp.out, sp.kernel, sp.stride, sp.padding, sp.dilation)
    res["direct"] = (y, idx, _fused.max_pool2d_grad(dy, idx, x.shape))
    for key in (True, "direct"):
        for a, b in zip(res[False], res[key], strict=True):
            np.testing.assert_array_equal(a, b)


@needs_helper
@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2)])
def test_max_pool1d_helper_matches_numpy_views(kw) -> None:
    x = np.random.default_rng(10).integers(-3, 3, (2, 3, 11)).astype(np.float32)
    res = {}
    for helper in (False, True):
        layer = nn.MaxPool1d(**kw)
        with tuning(helper=helper):
            y = layer.forward(x)
            res[helper] = (y, layer.backward(np.ones_like(y)))
    for a, b in zip(res[False], res[True], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("helper", HELPER)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_average_pool_matches_torch(helper, dtype, split) -> None:
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    dy = rng.standard_normal((3, 4, 1, 1)).astype(dtype)
    layer = nn.AdaptiveAvgPool2d(1)
    with tuning(helper=helper):
        y = layer.forward(x)
        dx = layer.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.adaptive_avg_pool2d(xt, 1)
    yt.backward(torch.tensor(dy))
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("helper", HELPER)
@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (2, 3, 9, 7), (2, 3, 6, 6, 4)])
def test_avg_pool_tiled_backward_matches_torch(helper, shape) -> None:
    rng = np.random.default_rng(12)
    x = rng.standard_normal(shape)
    layer = nn.AvgPool2d(2) if len(shape) == 4 else nn.AvgPool3d(2)
    f = torch.nn.functional.avg_pool2d if len(shape) == 4 else torch.nn.functional.avg_pool3d
    with tuning(helper=helper):
        y = layer.forward(x)
        dy = rng.standard_normal(y.shape)
        dx = layer.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    f(xt, 2).backward(torch.tensor(dy))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=1e-14)


# --- the C interface ----------------------------------------------------------------------------

@needs_helper
def test_helper_checks_its_arguments() -> None:
    c = _fused._fusedc
    x = np.ones((2, 3, 4), np.float32)
    m, v = np.zeros(3), np.zeros(3)
    c.bn_stats(x, m, v)
    with pytest.raises(TypeError, match="mean must be float64"):
        c.bn_stats(x, m.astype(np.float32), v)
    with pytest.raises(ValueError, match="var must have length 3"):
        c.bn_stats(x, m, np.zeros(4))
    with pytest.raises(ValueError, match="x must have 3 axes"):
        c.bn_stats(x[0], m, v)
    with pytest.raises(ValueError, match="C-contiguous"):
        c.bn_stats(x[:, :, ::2], m, v)
    with pytest.raises(ValueError, match="0 <= first <= last <= 3"):
        c.bn_stats(x, m, v, first=2, last=4)
    with pytest.raises(TypeError):
        c.bn_stats(x, m, v, 0, 3)                        # first / last are keyword-only
    with pytest.raises(TypeError, match=r"y must be float32 \(as x\)"):
        c.relu(x.ravel(), np.zeros(24))
    with pytest.raises(ValueError, match="writable"):
        y = np.zeros(24, np.float32)
        y.flags.writeable = False
        c.relu(x.ravel(), y)
    with pytest.raises(ValueError, match="y has size 5"):
        c.bn_apply(x, np.zeros((2, 3, 5), np.float32), *(np.zeros(3, np.float32),) * 3)
    dy = np.ones((1, 2, 2), np.float32)
    with pytest.raises(ValueError, match=r"idx entries must lie in \[0, 16\)"):
        c.max_pool2d_grad(dy, np.full((1, 2, 2), 16, np.int64), np.zeros((1, 4, 4), np.float32))
    with pytest.raises(TypeError, match="idx must be int64"):
        c.max_pool2d_grad(dy, np.zeros((1, 2, 2), np.int32), np.zeros((1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="holds no input cell"):
        c.max_pool2d(np.ones((1, 4, 4)), np.zeros((1, 3, 3)), np.zeros((1, 3, 3), np.int64),
                     kernel=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1))
    with pytest.raises(TypeError, match="kernel must be a tuple of 2 ints"):
        c.max_pool2d(np.ones((1, 4, 4)), np.zeros((1, 2, 2)), np.zeros((1, 2, 2), np.int64),
                     kernel=2, stride=(2, 2), padding=(0, 0), dilation=(1, 1))


# --- non-finite values and hostile sizes (found in review) ----------------------------------

@pytest.mark.parametrize("helper", HELPER)
def test_relu_backward_selects_as_pytorch(helper) -> None:
    """dy passes where x is not <= 0 (a NaN input passes it too, as threshold_backward); an
    inf or NaN dy where x <= 0 gives 0 (a selection, not 0 * inf), with the helper or not."""
    x = np.array([-1.0, 2.0, -3.0, np.nan, 0.0], np.float32)
    dy = np.array([np.inf, 1.0, np.nan, 5.0, -np.inf], np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    torch.relu(tx).backward(torch.from_numpy(dy))
    with tuning(helper=helper):
        layer = nn.ReLU()
        layer.forward(x)
        got = layer.backward(dy)
    np.testing.assert_array_equal(got, tx.grad.numpy())


@pytest.mark.parametrize("helper", HELPER)
def test_fused_bn_relu_backward_ignores_a_non_finite_delta_where_the_output_is_cut(helper):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 3, 5, 5))
    dy = rng.standard_normal(x.shape)
    with tuning(helper=helper):
        seq = nn.Sequential(nn.BatchNorm2d(3, dtype=np.float64), nn.ReLU())
        y = seq.forward(x)
        ref_dx = seq.backward(dy.copy())
        ref = (seq[0].weight.grad.copy(), seq[0].bias.grad.copy())
        seq.zero_grad()
        seq.forward(x)
        cut = np.flatnonzero(y <= 0)[:3]
        bad = dy.copy()
        bad.flat[cut] = [np.inf, -np.inf, np.nan]
        dx = seq.backward(bad)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(seq[0].weight.grad, ref[0], rtol=1e-12)
    np.testing.assert_allclose(seq[0].bias.grad, ref[1], rtol=1e-12)


def test_batch_norm_statistics_without_the_helper_are_float64_sums() -> None:
    """float32 data far from zero: the NumPy twin sums in float64 about the mean, as the helper."""
    rng = np.random.default_rng(5)
    x = (1e6 + rng.standard_normal((8, 2, 16, 16))).astype(np.float32)
    want = x.astype(np.float64).var(axis=(0, 2, 3))
    for helper in [h.values[0] for h in HELPER]:
        with tuning(helper=helper):
            layer = nn.BatchNorm2d(2)
            layer.forward(x)
        unbiased = (layer.running_var - 0.9) / 0.1 * (x.size // 2 - 1) / (x.size // 2)
        np.testing.assert_allclose(unbiased, want, rtol=1e-5)


@needs_helper
def test_max_pool_helper_refuses_a_huge_padding_at_once() -> None:
    """The first real cell of a window is found by arithmetic, not by stepping the padding."""
    f = np.float32
    with pytest.raises(ValueError, match="holds no input cell"):
        _fused._fusedc.max_pool2d(np.zeros((1, 4, 4), f), np.zeros((1, 1, 1), f),
                                  np.zeros((1, 1, 1), np.int64), kernel=(1, 1), stride=(1, 1),
                                  padding=(2**40, 0), dilation=(1, 1))


@needs_helper
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_finds_each_non_finite_value_in_one_read(dtype) -> None:
    """The engine's check of a kernel: every inf, -inf and NaN is found, at the first and last
    value and on each side of a block of 4096; the largest finite values, signed zeros and
    subnormals are finite; first:last reads only that range; the checks' answers with the
    kernels on and off agree."""
    from rot180.functional import _clipped
    kernel = _fused._fusedc.all_finite
    tiny = np.finfo(dtype).smallest_subnormal
    big = np.finfo(dtype).max
    x = np.random.default_rng(9).standard_normal(3 * 4096 + 5).astype(dtype)
    x[:5] = [big, -big, 0.0, -0.0, tiny]
    assert kernel(x) and kernel(x[:0])
    for value in (np.inf, -np.inf, np.nan):
        for i in (0, 4095, 4096, 4097, 8191, x.size - 1):
            bad = x.copy()
            bad[i] = value
            assert not kernel(bad), (value, i)
            assert kernel(bad, first=i + 1) and kernel(bad, last=i)
            assert not kernel(bad, first=i, last=i + 1)
            for helper in (True, False):
                with tuning(helper=helper):
                    assert not _clipped.finite(bad.reshape(-1, 1)[::-1].T)
    with pytest.raises(ValueError, match=r"all_finite: first = 3 and last = 2"):
        kernel(x, first=3, last=2)
    with pytest.raises(TypeError, match=r"all_finite: x must be"):
        kernel(np.arange(3, dtype=np.int32))
