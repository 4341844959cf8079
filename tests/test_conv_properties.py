"""Properties of conv and its gradients that need no second implementation of the layer.

Finite differences (central, float64) of a non-linear loss; the adjoint identities that define
the two gradients as transposes of the forward map; linearity; the duality between correlation
(``flip=False``) and true convolution (``flip=True``); rot180 itself; and the input gradient of
a strided layer as PyTorch's transposed convolution with ``output_padding`` = the remainder.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ConvConfig, conv_configs, random_configs
from rot180.functional import conv, conv_grad_bias, conv_grad_input, conv_grad_weight, rot180

FD_STEP = 1e-6
FD_POINTS = 16     # coordinates checked per array (all of them when the array is smaller)
SMALL = {"max_out": 2, "max_batch": 2, "max_kernel": 3, "max_channels": 2}


def _batched_dz(cfg: ConvConfig, dz: np.ndarray) -> np.ndarray:
    return dz if cfg.batch is not None else dz[None]


def _bound(cfg: ConvConfig, x: np.ndarray, w: np.ndarray, dz: np.ndarray, **kw) -> float:
    """``<conv(|x|, |w|), |dz|>``: bounds every partial sum, hence the rounding error, of both
    sides of an adjoint identity."""
    return float(np.sum(conv(np.abs(x), np.abs(w), **kw, **cfg.kwargs) * np.abs(dz)))


# --- finite differences ---------------------------------------------------------------------

def _loss(cfg, x, w, b, dz, flip):
    """A non-linear scalar loss, so that central differences are not exact by linearity."""
    return float(np.sum(np.tanh(conv(x, w, b, flip=flip, **cfg.kwargs)) * dz))


def _fd_check(f, arr: np.ndarray, grad: np.ndarray, rng: np.random.Generator, name: str):
    assert grad.shape == arr.shape, f"{name}: gradient shape {grad.shape} != {arr.shape}"
    flat = arr.reshape(-1)      # a view: perturbing it perturbs arr
    picks = rng.choice(flat.size, size=min(FD_POINTS, flat.size), replace=False)
    for j in picks:
        keep = flat[j]
        flat[j] = keep + FD_STEP
        up = f()
        flat[j] = keep - FD_STEP
        down = f()
        flat[j] = keep
        fd = (up - down) / (2 * FD_STEP)
        g = grad.reshape(-1)[j]
        assert abs(fd - g) <= 1e-7 + 1e-6 * abs(g), f"{name}[{j}]: analytic {g}, FD {fd}"
    # one random direction through every coordinate at once
    v = rng.standard_normal(arr.shape)
    keep = arr.copy()
    arr += FD_STEP * v
    up = f()
    arr[...] = keep - FD_STEP * v
    down = f()
    arr[...] = keep
    fd, g = (up - down) / (2 * FD_STEP), float(np.sum(grad * v))
    assert abs(fd - g) <= 1e-6 + 1e-6 * abs(g), f"{name} along a direction: {g} vs FD {fd}"


@pytest.mark.parametrize(("cfg", "flip"), [
    pytest.param(c, i % 3 == 0, id=f"{c}-flip{i % 3 == 0}")
    for i, c in enumerate(random_configs(36, seed=1, **SMALL))
])
def test_gradients_match_finite_differences(cfg, flip):
    rng = np.random.default_rng(5)
    x, w, b, dz = cfg.arrays(rng)
    z = conv(x, w, b, flip=flip, **cfg.kwargs)
    g = dz * (1 - np.tanh(z) ** 2)          # dL/dz of _loss
    grads = {
        "x": conv_grad_input(g, w, x.shape, flip=flip, **cfg.kwargs),
        "w": conv_grad_weight(x, g, w.shape, flip=flip, **cfg.kwargs),
        "b": conv_grad_bias(_batched_dz(cfg, g)),
    }
    arrays = {"x": x, "w": w, "b": b}
    for name, arr in arrays.items():
        _fd_check(lambda: _loss(cfg, x, w, b, dz, flip), arr, grads[name], rng, name)


# --- adjoint identities ---------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(cfg=conv_configs(), seed=st.integers(0, 2**32 - 1), flip=st.booleans())
def test_adjoint_identities(cfg, seed, flip):
    """<conv(x, w), dz> = <x, conv_grad_input(dz, w)> = <w, conv_grad_weight(x, dz)>."""
    x, w, _, dz = cfg.arrays(np.random.default_rng(seed))
    kw = {**cfg.kwargs, "flip": flip}
    lhs = float(np.sum(conv(x, w, **kw) * dz))
    via_input = float(np.sum(x * conv_grad_input(dz, w, x.shape, **kw)))
    via_weight = float(np.sum(w * conv_grad_weight(x, dz, w.shape, **kw)))
    tol = 1e-13 * _bound(cfg, x, w, dz, flip=flip) + 1e-300
    assert abs(lhs - via_input) <= tol, (lhs, via_input, str(cfg))
    assert abs(lhs - via_weight) <= tol, (lhs, via_weight, str(cfg))


@settings(max_examples=60, deadline=None)
@given(cfg=conv_configs(), seed=st.integers(0, 2**32 - 1))
def test_bias_adjoint(cfg, seed):
    """<conv(x, w, b) - conv(x, w), dz> = <b, conv_grad_bias(dz)>."""
    x, w, b, dz = cfg.arrays(np.random.default_rng(seed))
    shift = conv(x, w, b, **cfg.kwargs) - conv(x, w, **cfg.kwargs)
    bshape = (cfg.c_out,) + (1,) * cfg.nd
    np.testing.assert_allclose(shift, np.broadcast_to(b.reshape(bshape), shift.shape),
                               rtol=0, atol=1e-12 * (1 + np.max(np.abs(shift))))
    db = conv_grad_bias(_batched_dz(cfg, dz))
    # The sums cancel: bound the rounding by the sum of magnitudes, not by the result.
    np.testing.assert_allclose(np.sum(shift * dz), np.dot(b, db), rtol=0,
                               atol=1e-12 * (1 + np.sum(np.abs(shift * dz))))


# --- linearity ------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(cfg=conv_configs(), seed=st.integers(0, 2**32 - 1),
       alpha=st.floats(-3, 3), beta=st.floats(-3, 3))
def test_linearity(cfg, seed, alpha, beta):
    """conv is linear in x and in w; each gradient is linear in each of its arrays."""
    rng = np.random.default_rng(seed)
    x1, w1, _, d1 = cfg.arrays(rng)
    x2, w2, _, d2 = cfg.arrays(rng)
    kw = cfg.kwargs

    def close(a, b):
        scale = 1 + np.max(np.abs(b))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * scale)

    close(conv(alpha * x1 + beta * x2, w1, **kw), alpha * conv(x1, w1, **kw)
          + beta * conv(x2, w1, **kw))
    close(conv(x1, alpha * w1 + beta * w2, **kw), alpha * conv(x1, w1, **kw)
          + beta * conv(x1, w2, **kw))
    gi = lambda dz, w: conv_grad_input(dz, w, x1.shape, **kw)  # noqa: E731
    close(gi(alpha * d1 + beta * d2, w1), alpha * gi(d1, w1) + beta * gi(d2, w1))
    close(gi(d1, alpha * w1 + beta * w2), alpha * gi(d1, w1) + beta * gi(d1, w2))
    gw = lambda x, dz: conv_grad_weight(x, dz, w1.shape, **kw)  # noqa: E731
    close(gw(alpha * x1 + beta * x2, d1), alpha * gw(x1, d1) + beta * gw(x2, d1))
    close(gw(x1, alpha * d1 + beta * d2), alpha * gw(x1, d1) + beta * gw(x1, d2))


# --- correlation versus true convolution ----------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(cfg=conv_configs(), seed=st.integers(0, 2**32 - 1))
def test_flip_is_correlation_with_rotated_kernel(cfg, seed):
    """flip=True (true convolution) is the correlation with rot180(w), in all three functions."""
    x, w, _, dz = cfg.arrays(np.random.default_rng(seed))
    kw = cfg.kwargs
    wr = rot180(w)
    np.testing.assert_allclose(conv(x, w, flip=True, **kw), conv(x, wr, **kw),
                               rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(conv_grad_input(dz, w, x.shape, flip=True, **kw),
                               conv_grad_input(dz, wr, x.shape, **kw), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(conv_grad_weight(x, dz, w.shape, flip=True, **kw),
                               rot180(conv_grad_weight(x, dz, w.shape, **kw)),
                               rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(("n", "k"), [(7, 3), (6, 4), (5, 5), (4, 1), (9, 2)])
def test_numpy_convolve_and_correlate_agree_in_1d(rng, n, k):
    """np.convolve is the true convolution (flip=True), np.correlate the correlation."""
    x, w = rng.standard_normal(n), rng.standard_normal(k)
    x3, w3 = x[None, None], w[None, None]
    for mode in ("full", "valid"):
        np.testing.assert_allclose(conv(x3, w3, padding=mode, flip=True)[0, 0],
                                   np.convolve(x, w, mode), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(conv(x3, w3, padding=mode)[0, 0], np.correlate(x, w, mode),
                                   rtol=1e-13, atol=1e-13)


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=3, max_size=5),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_rot180_is_a_point_reflection_and_an_involution(shape, dtype):
    w = np.random.default_rng(len(shape)).standard_normal(shape).astype(dtype)
    before = w.copy()
    r = rot180(w)
    assert r.shape == w.shape and r.dtype == w.dtype
    np.testing.assert_array_equal(rot180(r), w)
    np.testing.assert_array_equal(w, before)        # the argument is left untouched
    for idx in np.ndindex(*w.shape):
        mirrored = idx[:2] + tuple(n - 1 - t for n, t in zip(w.shape[2:], idx[2:], strict=True))
        assert r[idx] == w[mirrored]
    if w.ndim == 4:     # in 2-D it is literally a rotation by 180 degrees
        np.testing.assert_array_equal(r, np.rot90(w, 2, axes=(2, 3)))


# --- the input gradient is the transposed convolution ---------------------------------------

@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@settings(max_examples=150, deadline=None)
@given(cfg=conv_configs(), seed=st.integers(0, 2**32 - 1))
def test_grad_input_is_transposed_convolution(cfg, seed):
    """conv_grad_input = F.conv_transpose{1,2,3}d(dz, w, s, p, output_padding=a, g, d).

    torch's transposed convolution takes one symmetric padding per axis; for (low, high)
    pairs it runs with padding 0 (the gradient w.r.t. the padded input) and the forward
    padding is cropped off afterwards.
    """
    x, w, _, dz = cfg.arrays(np.random.default_rng(seed))
    ours = conv_grad_input(dz, w, x.shape, **cfg.kwargs)
    fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[cfg.nd - 1]
    dzt = torch.from_numpy(_batched_dz(cfg, dz))
    common = {"output_padding": cfg.remainders, "groups": cfg.groups, "dilation": cfg.dilation,
              "stride": cfg.stride}
    if cfg.symmetric:
        want = fn(dzt, torch.from_numpy(w), padding=tuple(lo for lo, _ in cfg.pads), **common)
    else:
        full = fn(dzt, torch.from_numpy(w), padding=0, **common)
        crop = tuple(slice(lo, lo + i) for (lo, _), i in zip(cfg.pads, cfg.spatial, strict=True))
        want = full[(Ellipsis, *crop)]
    want = want.numpy() if cfg.batch is not None else want.numpy()[0]
    assert ours.shape == want.shape == x.shape
    np.testing.assert_allclose(ours, want, rtol=0, atol=1e-10)
