"""The compiled helper (``rot180.functional._direct`` / ``_directc``): same sums, fixed order.

``test_engine.py`` runs random configurations through it against the direct-loop oracles; here:
the lane packing, the shapes it takes by default (LeNet's, batch 64), determinism with threads,
its argument checks, and that the pure-NumPy engine is still there when it is switched off.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import rot180.functional._direct as D
import rot180.functional._engine as E
from rot180.functional import conv, conv_grad_input, conv_grad_weight
from rot180.functional.reference import (
    conv_direct,
    conv_grad_input_direct,
    conv_grad_weight_direct,
)

pytestmark = pytest.mark.skipif(
    not D.ENABLED, reason="the compiled helper rot180.functional._directc is not built or off")

# (input shape, C_out, kernel, stride, padding, dilation, groups): LeNet's layers at batch 64 and
# odd batches, 1-D, strided, dilated and grouped ones.
CASES = [
    ((64, 1, 28, 28), 6, 5, 1, 2, 1, 1),
    ((64, 6, 14, 14), 16, 5, 1, 0, 1, 1),
    ((37, 4, 11, 9), 7, 3, 2, 1, 1, 1),
    ((20, 6, 13, 12), 6, (3, 2), (2, 3), (1, 0), (2, 1), 3),
    ((16, 3, 40), 5, 7, 3, 3, 2, 1),
    ((13, 2, 9, 9), 3, 4, 1, "same", 1, 1),
]


def _arrays(shape, c_out, k, stride, padding, dilation, groups, dtype, seed=0):
    rng = np.random.default_rng(seed)
    nd = len(shape) - 2
    k = (k,) * nd if isinstance(k, int) else k
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((c_out, shape[1] // groups, *k)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    kw = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    dz = rng.standard_normal(conv(x, w, b, **kw).shape).astype(dtype)
    return x, w, b, dz, kw


@pytest.fixture
def always_direct(monkeypatch):
    monkeypatch.setattr(D, "MIN_FILL", 0)
    monkeypatch.setattr(D, "KERNEL_MAX_WEIGHTS", 10**9)


@pytest.mark.parametrize("case", CASES, ids=[str(c[0]) for c in CASES])
def test_float64_equals_the_direct_loops(case, always_direct) -> None:
    x, w, b, dz, kw = _arrays(*case, np.float64)
    np.testing.assert_allclose(conv(x, w, b, **kw), conv_direct(x, w, b, **kw), rtol=0,
                               atol=1e-10)
    np.testing.assert_allclose(conv_grad_input(dz, w, x.shape, **kw),
                               conv_grad_input_direct(dz, w, x.shape, **kw), rtol=0, atol=1e-10)
    np.testing.assert_allclose(conv_grad_weight(x, dz, w.shape, **kw),
                               conv_grad_weight_direct(x, dz, w.shape, **kw), rtol=0, atol=1e-9)


@pytest.mark.parametrize("case", CASES, ids=[str(c[0]) for c in CASES])
def test_float32_agrees_with_the_numpy_engine(case, always_direct, monkeypatch) -> None:
    x, w, b, dz, kw = _arrays(*case, np.float32)
    ours = (conv(x, w, b, **kw), conv_grad_input(dz, w, x.shape, **kw),
            conv_grad_weight(x, dz, w.shape, **kw))
    monkeypatch.setattr(D, "ENABLED", False)
    numpy_ = (conv(x, w, b, **kw), conv_grad_input(dz, w, x.shape, **kw),
              conv_grad_weight(x, dz, w.shape, **kw))
    for a, r in zip(ours, numpy_, strict=True):
        assert a.dtype == np.float32 and a.shape == r.shape
        np.testing.assert_allclose(a, r, rtol=0, atol=2e-5 * max(1.0, np.abs(r).max()))


def test_lenet_layers_take_the_helper_by_default(monkeypatch) -> None:
    arrays = [_arrays(*case, np.float32) for case in CASES[:2]]
    calls = []
    real_c, real_k = D.correlate, D.correlate_kernel
    monkeypatch.setattr(D, "correlate", lambda *a, **k: calls.append("c") or real_c(*a, **k))
    monkeypatch.setattr(D, "correlate_kernel",
                        lambda *a, **k: calls.append("k") or real_k(*a, **k))
    for x, w, b, dz, kw in arrays:
        conv(x, w, b, **kw)
        conv_grad_input(dz, w, x.shape, **kw)
        conv_grad_weight(x, dz, w.shape, **kw)
    assert calls == ["c", "c", "k"] * 2
    calls.clear()
    x = np.ones((8, 3, 20, 20), np.float32)
    conv(x, np.ones((4, 3, 3, 3), np.float32))  # half a block of 16 lanes: the NumPy paths
    assert calls == []


@pytest.mark.parametrize("threads_min", [0, 10**18], ids=["pooled", "serial"])
def test_repeated_calls_give_the_same_bits(threads_min, monkeypatch) -> None:
    monkeypatch.setattr(E, "PARALLEL_MIN_MACS", threads_min)
    x, w, b, dz, kw = _arrays((64, 6, 14, 14), 16, 5, 1, 0, 1, 1, np.float32)
    first = (conv(x, w, b, **kw), conv_grad_input(dz, w, x.shape, **kw),
             conv_grad_weight(x, dz, w.shape, **kw))
    for _ in range(5):
        again = (conv(x, w, b, **kw), conv_grad_input(dz, w, x.shape, **kw),
                 conv_grad_weight(x, dz, w.shape, **kw))
        for a, r in zip(again, first, strict=True):
            np.testing.assert_array_equal(a, r)


def test_forward_bits_do_not_depend_on_the_thread_split(monkeypatch) -> None:
    """Each block of 16 samples is computed the same way whichever thread runs it."""
    x, w, b, _, kw = _arrays((64, 6, 14, 14), 16, 5, 1, 0, 1, 1, np.float32)
    monkeypatch.setattr(E, "PARALLEL_MIN_MACS", 10**18)
    serial = conv(x, w, b, **kw)
    monkeypatch.setattr(E, "PARALLEL_MIN_MACS", 0)
    np.testing.assert_array_equal(conv(x, w, b, **kw), serial)


@pytest.mark.parametrize("batch", [1, 15, 16, 17, 40])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pack_and_unpack_are_inverse(batch, dtype) -> None:
    a = np.random.default_rng(batch).standard_normal((batch, 3, 5)).astype(dtype)
    p = D._pack(a, "test")
    blocks = -(-batch // D.LANES)
    assert p.shape == (blocks, 3, 5, D.LANES)
    for b in range(blocks * D.LANES):
        expected = a[b] if b < batch else 0
        np.testing.assert_array_equal(p[b // D.LANES, ..., b % D.LANES], expected)
    back = np.empty_like(a)
    D._directc.unpack(p, back, batch, 15, 0, blocks)
    np.testing.assert_array_equal(back, a)


def test_the_extension_refuses_buffers_that_do_not_match() -> None:
    x = np.zeros((1, 1, 1, 5, 5, D.LANES), np.float32)
    w = np.zeros((1, 1, 1, 3, 3), np.float32)
    out = np.zeros((1, 1, 1, 3, 3, D.LANES), np.float32)
    dims = (1, 1, 5, 5, 1, 3, 3, 3, 3, 1, 1, 1, 1)
    D._directc.correlate(x, w, out, None, dims, 1, 0, 1)
    with pytest.raises(ValueError, match="w: expected 9 items"):
        D._directc.correlate(x, np.zeros((1, 1, 1, 5, 5), np.float32), out, None, dims, 1, 0, 1)
    with pytest.raises(ValueError, match="windows reach outside"):
        D._directc.correlate(x, w, out, None, (1, 1, 5, 5, 1, 3, 3, 3, 3, 2, 1, 1, 1), 1, 0, 1)
    with pytest.raises(ValueError, match="format 'f'"):
        D._directc.correlate(x, w.astype(np.float64), out, None, dims, 1, 0, 1)
    with pytest.raises(ValueError, match="bad block range"):
        D._directc.correlate(x, w, out, None, dims, 1, 0, 2)
    with pytest.raises((ValueError, TypeError, BufferError)):
        D._directc.correlate(x, w, out[..., ::2], None, dims, 1, 0, 1)   # not contiguous
    with pytest.raises((ValueError, TypeError, BufferError)):
        D._directc.correlate(x, w, out.copy().view(np.int32), None, dims, 1, 0, 1)


def test_pure_numpy_switch() -> None:
    code = ("import rot180.functional._direct as D, rot180.functional._engine as E; "
            "print(D.ENABLED, D.usable(64, 2, 'float32'))")
    env = {**os.environ, "ROT180_PURE_NUMPY": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]
