"""The reference oracles of rot180.functional.reference against PyTorch and the fast path.

The oracles must themselves be right before anything is checked against them, so each is tested
against PyTorch autograd in float64 (padding handed to torch as explicit ``F.pad`` amounts
computed in conftest from the definitions) and against the fast path, over 1/2/3-D, groups
(depthwise included), dilation, stride remainders and every padding form. ``conv_matrix`` is
checked against the forward (``M @ x``) and the input gradient (``M.T @ dz``).
"""

from __future__ import annotations

import ast
import doctest
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PADDING_FORMS, ConvConfig, conv_configs, random_configs
from rot180.functional import conv, conv_grad_input, conv_grad_weight, reference, rot180
from rot180.functional.reference import (
    conv_direct,
    conv_grad_input_direct,
    conv_grad_weight_direct,
    conv_matrix,
)

TOL64 = 1e-10
CONFIGS = random_configs(80, seed=31)
MATRIX_CONFIGS = random_configs(60, seed=32, max_batch=1)


def _torch_autograd(cfg: ConvConfig, x: np.ndarray, w: np.ndarray, b: np.ndarray,
                    dz: np.ndarray, flip: bool = False) -> tuple[np.ndarray, ...]:
    """Forward and the gradients of ``<z, dz>`` from torch, padding applied by ``F.pad``."""
    xt = torch.tensor(x[None] if cfg.batch is None else x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    kernel = torch.flip(wt, dims=tuple(range(2, wt.ndim))) if flip else wt
    flat = tuple(v for lo, hi in reversed(cfg.pads) for v in (lo, hi))
    fn = (F.conv1d, F.conv2d, F.conv3d)[cfg.nd - 1]
    z = fn(F.pad(xt, flat), kernel, bt, stride=cfg.stride, dilation=cfg.dilation,
           groups=cfg.groups)
    dzt = torch.tensor(dz[None] if cfg.batch is None else dz)
    dx, dw, db = torch.autograd.grad(z, (xt, wt, bt), dzt)
    z, dx = z.detach().numpy(), dx.numpy()
    if cfg.batch is None:
        z, dx = z[0], dx[0]
    return z, dx, dw.numpy(), db.numpy()


def _reference(cfg: ConvConfig, x: np.ndarray, w: np.ndarray, b: np.ndarray, dz: np.ndarray,
               flip: bool = False) -> tuple[np.ndarray, ...]:
    kw = {**cfg.kwargs, "flip": flip}
    return (conv_direct(x, w, b, **kw), conv_grad_input_direct(dz, w, x.shape, **kw),
            conv_grad_weight_direct(x, dz, w.shape, **kw))


def _assert_close(got: np.ndarray, want: np.ndarray, tol: float = TOL64) -> None:
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_grid_covers_every_case():
    """Guard against a drawing routine that silently stops producing the hard cases."""
    assert {c.form for c in CONFIGS} == set(PADDING_FORMS)
    assert {c.nd for c in CONFIGS} == {1, 2, 3}
    assert any(c.groups > 1 and c.groups == c.c_in for c in CONFIGS)          # depthwise
    assert any(any(r != 0 for r in c.remainders) for c in CONFIGS)
    assert any(c.dilation != 1 for c in CONFIGS)
    assert any(not c.symmetric for c in MATRIX_CONFIGS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=conv_configs(), flip=st.booleans())
def test_reference_matches_torch_float64(cfg: ConvConfig, flip: bool):
    rng = np.random.default_rng(zlib.crc32(str(cfg).encode()))
    x, w, b, dz = cfg.arrays(rng)
    z_t, dx_t, dw_t, _ = _torch_autograd(cfg, x, w, b, dz, flip)
    z, dx, dw = _reference(cfg, x, w, b, dz, flip)
    _assert_close(z, z_t)
    _assert_close(dx, dx_t)
    _assert_close(dw, dw_t)


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_reference_matches_fast_path(cfg: ConvConfig, rng: np.random.Generator):
    x, w, b, dz = cfg.arrays(rng)
    for flip in (False, True):
        z, dx, dw = _reference(cfg, x, w, b, dz, flip)
        kw = {**cfg.kwargs, "flip": flip}
        _assert_close(z, conv(x, w, b, **kw))
        _assert_close(dx, conv_grad_input(dz, w, x.shape, **kw))
        _assert_close(dw, conv_grad_weight(x, dz, w.shape, **kw))


@pytest.mark.parametrize("cfg", MATRIX_CONFIGS, ids=str)
def test_conv_matrix_is_the_forward_and_its_transpose_the_input_gradient(
        cfg: ConvConfig, rng: np.random.Generator):
    x, w, _, dz = cfg.arrays(rng)
    sample = x.shape[-cfg.nd - 1:]
    m = conv_matrix(w, x.shape, **cfg.kwargs)      # (1, C, *i) and (C, *i) are both accepted
    np.testing.assert_array_equal(m, conv_matrix(w, sample, **cfg.kwargs))
    n_out = cfg.c_out * int(np.prod(cfg.out_spatial))
    assert m.shape == (n_out, cfg.c_in * int(np.prod(cfg.spatial)))
    _assert_close(m @ x.ravel(), conv(x, w, **cfg.kwargs).ravel())
    _assert_close(m.T @ dz.ravel(), conv_grad_input(dz, w, x.shape, **cfg.kwargs).ravel())
    # Independent of the fast path: the same identities through torch.
    z_t, dx_t, _, _ = _torch_autograd(cfg, x, w, np.zeros(cfg.c_out), dz)
    _assert_close(m @ x.ravel(), z_t.ravel())
    _assert_close(m.T @ dz.ravel(), dx_t.ravel())


def test_conv_matrix_has_cut_connections_and_shared_weights():
    """1-D, k=2, s=2, p=1 on 4 inputs: outputs read (pad, x0), (x1, x2), (x3, pad)."""
    w = np.array([[[10.0, 20.0]]])
    m = conv_matrix(w, (1, 4), stride=2, padding=1)
    want = [[20.0, 0.0, 0.0, 0.0],
            [0.0, 10.0, 20.0, 0.0],
            [0.0, 0.0, 0.0, 10.0]]
    np.testing.assert_array_equal(m, want)


def test_conv_matrix_flip_is_the_matrix_of_the_rotated_kernel(rng: np.random.Generator):
    w = rng.standard_normal((4, 1, 2, 3))
    kw = {"stride": (2, 1), "padding": ((1, 0), 2), "dilation": (1, 2), "groups": 2}
    np.testing.assert_array_equal(conv_matrix(w, (2, 5, 6), flip=True, **kw),
                                  conv_matrix(rot180(w), (2, 5, 6), **kw))


@pytest.mark.parametrize("padding", [1, (0, 2), ((2, 0), (1, 3)), "valid", "same", "full"])
def test_every_padding_form_2d_with_groups_and_dilation(padding, rng: np.random.Generator):
    x = rng.standard_normal((2, 4, 7, 8))
    w = rng.standard_normal((6, 2, 3, 2))
    dz_shape = conv(x, w, padding=padding, dilation=(2, 1), groups=2).shape
    dz = rng.standard_normal(dz_shape)
    kw = {"padding": padding, "dilation": (2, 1), "groups": 2}
    _assert_close(conv_direct(x, w, **kw), conv(x, w, **kw))
    _assert_close(conv_grad_input_direct(dz, w, x.shape, **kw),
                  conv_grad_input(dz, w, x.shape, **kw))
    _assert_close(conv_grad_weight_direct(x, dz, w.shape, **kw),
                  conv_grad_weight(x, dz, w.shape, **kw))


@pytest.mark.parametrize("i", [7, 8, 9])          # remainders 0, 1, 2 for k=3, s=3, p=1
def test_stride_remainder_cells_get_zero_gradient(i: int, rng: np.random.Generator):
    x = rng.standard_normal((1, 1, i))
    w = rng.standard_normal((1, 1, 3))
    dz = rng.standard_normal(conv(x, w, stride=3, padding=1).shape)
    dx = conv_grad_input_direct(dz, w, x.shape, stride=3, padding=1)
    a = (i + 2 - 3) % 3
    assert dx.shape == x.shape
    if a > 1:   # the last a - p_hi input cells are read by no window
        np.testing.assert_array_equal(dx[..., i - (a - 1):], 0.0)
    _assert_close(dx, conv_grad_input(dz, w, x.shape, stride=3, padding=1))


def test_spatial_only_input_shape_and_unbatched(rng: np.random.Generator):
    x = rng.standard_normal((3, 6, 5))
    w = rng.standard_normal((2, 3, 2, 2))
    dz = rng.standard_normal(conv(x, w, stride=2).shape)
    full = conv_grad_input_direct(dz, w, x.shape, stride=2)
    _assert_close(conv_grad_input_direct(dz, w, (6, 5), stride=2), full)
    _assert_close(full, conv_grad_input(dz, w, x.shape, stride=2))
    _assert_close(conv_grad_weight_direct(x, dz, w.shape, stride=2),
                  conv_grad_weight(x, dz, w.shape, stride=2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(dtype, rng: np.random.Generator):
    x = rng.standard_normal((1, 2, 5, 5)).astype(dtype)
    w = rng.standard_normal((3, 2, 3, 3)).astype(dtype)
    dz = conv_direct(x, w)
    assert dz.dtype == dtype
    assert conv_grad_input_direct(dz, w, x.shape).dtype == dtype
    assert conv_grad_weight_direct(x, dz, w.shape).dtype == dtype
    assert conv_matrix(w, x.shape).dtype == dtype


def test_reference_does_not_import_the_fast_path():
    with open(reference.__file__, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported |= {node.module or ""} | {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
    assert imported, "found no imports at all: the check itself is broken"
    assert not {name for name in imported if name.split(".")[-1] in ("conv", "_engine")}


def test_docstring_examples_run():
    assert doctest.testmod(reference).failed == 0


@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda: conv_direct(np.ones((1, 3, 5, 5)), np.ones((2, 2, 3, 3))), ValueError,
     r"conv_direct: channel mismatch: x has C_in=3"),
    (lambda: conv_direct(np.ones((1, 4, 5)), np.ones((3, 2, 3)), groups=2), ValueError,
     r"groups=2 must divide the output channels, got C_out=3"),
    (lambda: conv_direct(np.ones((1, 1, 5)), np.ones((1, 1, 3)), stride=0), ValueError,
     r"stride must be >= 1"),
    (lambda: conv_direct(np.ones((1, 1, 5)), np.ones((1, 1, 3)), padding=-1), ValueError,
     r"padding must be non-negative"),
    (lambda: conv_direct(np.ones((1, 1, 2)), np.ones((1, 1, 3))), ValueError,
     r"dilated kernel is larger than the padded input"),
    (lambda: conv_direct(np.ones((1, 1, 5), np.float32), np.ones((1, 1, 3))), TypeError,
     r"share one dtype"),
    (lambda: conv_direct(np.ones((1, 1, 5), int), np.ones((1, 1, 3), int)), TypeError,
     r"x must have dtype float32 or float64, got int64"),
    (lambda: conv_direct(np.ones((1, 1, 5)), np.ones((1, 1, 3)), padding="sam"), ValueError,
     r"Invalid padding string 'sam'"),
    (lambda: conv_grad_input_direct(np.ones((1, 1, 3)), np.ones((1, 1, 3)), (1, 1, 9)),
     ValueError, r"conv_grad_input_direct: input_shape \(1, 1, 9\) cannot have produced dz"),
    (lambda: conv_grad_input_direct(np.ones((1, 2, 3)), np.ones((1, 1, 3)), (1, 1, 5)),
     ValueError, r"conv_grad_input_direct: channel mismatch: dz has 2 channels"),
    (lambda: conv_grad_weight_direct(np.ones((1, 1, 5)), np.ones((1, 1, 3)), np.ones(3)),
     TypeError, r"weight_shape must be a tuple of ints"),
    (lambda: conv_matrix(np.ones((1, 1, 3)), (2, 1, 5)), ValueError,
     r"conv_matrix: the matrix is for one sample, got input_shape \(2, 1, 5\) with batch 2"),
    (lambda: conv_matrix(np.ones((1, 1, 3)), 5), TypeError,
     r"conv_matrix: input_shape must be a tuple of ints, got int"),
    (lambda: conv_matrix(np.ones((1, 1, 3)), (2, 5)), ValueError,
     r"conv_matrix: channel mismatch: input_shape has C_in=2"),
])
def test_bad_input_messages(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
