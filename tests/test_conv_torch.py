"""rot180.functional.conv and its three gradients against PyTorch autograd.

The oracle is ``torch.nn.functional.conv{1,2,3}d`` differentiated by autograd, with padding
handed to torch in its own terms: ints and tuples as ``padding=``, ``"valid"``/``"same"`` as
torch's strings, ``"full"`` as the explicit ``d(k-1)``, and ``(low, high)`` pairs through
``F.pad`` followed by a convolution with padding 0. Float64 must agree to 1e-10 absolute,
float32 to 1e-4 relative to the largest magnitude of torch's result.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import PADDING_FORMS, ConvConfig, random_configs
from rot180.functional import conv, conv_grad_bias, conv_grad_input, conv_grad_weight, rot180

# 3-D configurations get at most two outputs per axis: same coverage, a third of the time.
CONFIGS = random_configs(1400, seed=2016, nds=(1, 2)) + random_configs(700, seed=3, nds=(3,),
                                                                      max_out=2)
N_CONFIGS = len(CONFIGS)
FLIP_CONFIGS = random_configs(150, seed=180)
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
TOL64 = 1e-10
TOL32 = 1e-4


@pytest.fixture(scope="module", autouse=True)
def _plain_torch():
    """One thread, and torch's native convolution instead of oneDNN.

    torch 2.13's oneDNN float32 path is not a trustworthy oracle for padding wider than the
    input: ``F.conv3d`` of ``(2, 3, 2, 1, 3)`` with a ``(2, 3, 5, 1, 1)`` kernel, stride
    ``(2, 2, 1)`` and padding ``(4, 0, 0)`` returns a weight gradient of order 1e21, or crashes
    the process, while torch float64 and torch without oneDNN agree with each other.
    """
    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = onednn
    torch.set_num_threads(threads)


def torch_conv(cfg: ConvConfig, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None
               ) -> torch.Tensor:
    fn = (F.conv1d, F.conv2d, F.conv3d)[cfg.nd - 1]
    common = {"stride": cfg.stride, "dilation": cfg.dilation, "groups": cfg.groups}
    if cfg.form in ("int", "tuple", "valid"):
        return fn(x, w, b, padding=cfg.padding, **common)
    if cfg.form == "same":
        with warnings.catch_warnings():
            # torch warns that an even dilated span needs a padded copy; that is expected.
            warnings.filterwarnings("ignore", message="Using padding='same'",
                                    category=UserWarning)
            return fn(x, w, b, padding="same", **common)
    if cfg.form == "full":
        return fn(x, w, b, padding=cfg.span, **common)
    # (low, high) pairs: F.pad lists the last axis first.
    flat = tuple(v for lo, hi in reversed(cfg.pads) for v in (lo, hi))
    return fn(F.pad(x, flat), w, b, padding=0, **common)


def torch_grads(cfg: ConvConfig, x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                dz: np.ndarray, *, flip: bool = False) -> dict[str, np.ndarray]:
    """Forward value and the gradients of ``<z, dz>`` w.r.t. x, w (and b) from autograd."""
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    kernel = torch.flip(wt, dims=tuple(range(2, wt.ndim))) if flip else wt
    z = torch_conv(cfg, xt, kernel, bt)
    inputs = (xt, wt) if bt is None else (xt, wt, bt)
    grads = torch.autograd.grad(z, inputs, torch.tensor(dz))
    out = {"z": z.detach().numpy(), "dx": grads[0].numpy(), "dw": grads[1].numpy()}
    if bt is not None:
        out["db"] = grads[2].numpy()
    return out


def ours(cfg: ConvConfig, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, dz: np.ndarray,
         *, flip: bool = False) -> dict[str, np.ndarray]:
    kw = cfg.kwargs
    out = {
        "z": conv(x, w, b, flip=flip, **kw),
        "dx": conv_grad_input(dz, w, x.shape, flip=flip, **kw),
        "dw": conv_grad_weight(x, dz, w.shape, flip=flip, **kw),
    }
    if b is not None:
        out["db"] = conv_grad_bias(dz if cfg.batch is not None else dz[None])
    return out


def assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray], dtype: type,
                 cfg: ConvConfig) -> None:
    assert got.keys() == want.keys()
    for key, ref in want.items():
        val = got[key]
        assert val.shape == ref.shape, f"{key}: shape {val.shape} != torch {ref.shape} ({cfg})"
        assert val.dtype == dtype, f"{key}: dtype {val.dtype}, expected {np.dtype(dtype)}"
        err = float(np.max(np.abs(val.astype(np.float64) - ref)))
        if dtype == np.float64:
            assert err <= TOL64, f"{key}: max abs error {err:.3g} > {TOL64} ({cfg})"
        else:
            scale = max(float(np.max(np.abs(ref))), float(np.finfo(np.float32).tiny))
            assert err / scale <= TOL32, f"{key}: relative error {err / scale:.3g} ({cfg})"


def check_against_torch(cfg: ConvConfig, seed: int, *, with_bias: bool, flip: bool = False):
    rng = np.random.default_rng(seed)
    for dtype in (np.float64, np.float32):
        x, w, b, dz = cfg.arrays(rng, dtype)
        bias = b if with_bias else None
        assert_close(ours(cfg, x, w, bias, dz, flip=flip),
                     torch_grads(cfg, x, w, bias, dz, flip=flip), dtype, cfg)


def test_config_generator_covers_the_space():
    """The random configurations are as many and as varied as the issue asks."""
    assert len(CONFIGS) >= 2000
    strided = [c for c in CONFIGS if any(s > 1 for s in c.strides)]
    ragged = [c for c in strided if any(c.remainders)]
    assert len(strided) >= 600
    assert len(ragged) >= 0.3 * len(strided)
    assert Counter(c.nd for c in CONFIGS).keys() == {1, 2, 3}
    assert Counter(c.form for c in CONFIGS).keys() == set(PADDING_FORMS)
    assert {c.batch for c in CONFIGS} == {None, 1, 2, 3}
    assert {k for c in CONFIGS for k in c.kernel} == {1, 2, 3, 4, 5}
    assert {s for c in CONFIGS for s in c.strides} == {1, 2, 3}
    assert {d for c in CONFIGS for d in c.dilations} == {1, 2, 3}
    assert any(len(set(c.kernel)) > 1 for c in CONFIGS)                 # non-square kernels
    assert any(c.groups == c.c_in > 1 and c.c_out == c.c_in for c in CONFIGS)   # depthwise
    assert any(c.groups == c.c_in > 1 and c.c_out > c.c_in for c in CONFIGS)    # multiplier
    assert any(1 < c.groups < c.c_in for c in CONFIGS)                  # grouped, not depthwise
    assert any(not c.symmetric for c in CONFIGS if c.form == "same")    # odd span: extra on high
    assert any(not c.symmetric for c in CONFIGS if c.form == "pairs")
    # padding larger than the dilated kernel: the input gradient's rule must crop
    assert any(lo > t for c in CONFIGS for (lo, _), t in zip(c.pads, c.span, strict=True))


@pytest.mark.parametrize("index", range(0, N_CONFIGS, 2))
def test_matches_torch_with_bias(index):
    check_against_torch(CONFIGS[index], index, with_bias=True)


@pytest.mark.parametrize("index", range(1, N_CONFIGS, 2))
def test_matches_torch_without_bias(index):
    check_against_torch(CONFIGS[index], index, with_bias=False)


@pytest.mark.parametrize("index", range(len(FLIP_CONFIGS)))
def test_flip_is_torch_conv_with_flipped_kernel(index):
    """flip=True: a true convolution, i.e. torch's correlation with torch.flip(w), and its grads."""
    check_against_torch(FLIP_CONFIGS[index], index, with_bias=index % 2 == 0, flip=True)


@pytest.mark.parametrize("cfg", random_configs(40, seed=7, unbatched=False), ids=str)
def test_unbatched_matches_torch_unbatched(cfg):
    """(C, *spatial) input gives torch's unbatched result, and equals the batch-of-one result."""
    ucfg = dataclasses.replace(cfg, batch=None)
    rng = np.random.default_rng(3)
    x, w, b, dz = ucfg.arrays(rng)
    want = torch_grads(ucfg, x, w, b, dz)
    got = ours(ucfg, x, w, b, dz)
    assert_close(got, want, np.float64, ucfg)
    assert np.array_equal(got["z"], conv(x[None], w, b, **ucfg.kwargs)[0])
    # input_shape may also be given as the spatial sizes alone
    dx = conv_grad_input(dz, w, ucfg.spatial, **ucfg.kwargs)
    assert np.array_equal(dx, got["dx"])


@pytest.mark.parametrize("cfg", random_configs(12, seed=11), ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(cfg, dtype):
    x, w, b, dz = cfg.arrays(np.random.default_rng(0), dtype)
    kw = cfg.kwargs
    dzb = dz if cfg.batch is not None else dz[None]
    results = {
        "conv": conv(x, w, b, **kw),
        "conv flip": conv(x, w, b, flip=True, **kw),
        "conv_grad_input": conv_grad_input(dz, w, x.shape, **kw),
        "conv_grad_weight": conv_grad_weight(x, dz, w.shape, **kw),
        "conv_grad_bias": conv_grad_bias(dzb),
        "rot180": rot180(w),
    }
    for name, value in results.items():
        assert isinstance(value, np.ndarray), name
        assert value.dtype == dtype, f"{name} returned {value.dtype} for {np.dtype(dtype)} inputs"


@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding"), [
    # padded [0 0 0 x], kernel 2, stride 3: one window, and the a = 2 cells it never reaches
    # are x and one padding zero
    ((1, 1, 1), (1, 1, 2), 3, ((3, 0),)),
    ((3, 2, 10, 1, 6), (4, 1, 3, 2, 1), 3, ((0, 1), (3, 0), (3, 0))),
    ((1, 2, 2, 3), (2, 2, 1, 2), (3, 2), ((4, 0), (0, 0))),
])
def test_remainder_wider_than_input_and_high_padding(x_shape, w_shape, stride, padding):
    """The unreached remainder cells reach back through the whole input into the low padding.

    The kernel gradient must then crop into the low padding too (all of x is unused).
    """
    nd = len(w_shape) - 2
    pads = tuple(p if isinstance(p, tuple) else (p, p) for p in padding)
    cfg = ConvConfig(nd, x_shape[0], x_shape[1], w_shape[0], x_shape[1] // w_shape[1],
                     w_shape[2:], stride, 1, padding, "pairs", pads, x_shape[2:])
    assert any(a - hi >= i for a, (_, hi), i in zip(cfg.remainders, pads, cfg.spatial,
                                                    strict=True))
    check_against_torch(cfg, 0, with_bias=True)
