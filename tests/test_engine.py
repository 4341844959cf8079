"""Every realisation of the correlation engine gives the same sums.

The engine picks a path from the shapes (im2col in batch chunks, kn2row, 1x1, batch folding,
the sub-pixel phases of the input gradient, parallel chunks). Small test shapes would only ever
take the default choices, so here the engine's thresholds are forced to each extreme in turn and
random configurations are compared with the direct-loop reference, and the sub-pixel input
gradient with its definition: a correlation of the stretched, padded delta.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

import rot180.functional._direct as D
import rot180.functional._engine as E
from conftest import random_configs
from rot180.functional import conv, conv_grad_bias, conv_grad_input, conv_grad_weight
from rot180.functional._tuning import get_tuning, tuning
from rot180.functional.reference import (
    conv_direct,
    conv_grad_input_direct,
    conv_grad_weight_direct,
)

# Each setting pushes every threshold one way, through ``tuning(...)`` (an unknown name fails:
# a renamed knob must not silently stop being tested). The NumPy settings turn the compiled
# helper off so that their paths keep being tested, the "direct" ones put it onto every call
# it can take; the "force-" ones name a realisation of the table for every call it accepts.
_NUMPY = {"helper": False}
_DIRECT = {"direct_min_fill": 0}
KNOBS = {
    "default": {},
    "numpy-default": {**_NUMPY},
    "direct": {**_DIRECT, "stack_min_fill": 0, "stack_min_taps": 0,
               "parallel_min_macs": 10**18},
    "direct-threads": {**_DIRECT, "stack_min_fill": 0, "stack_min_taps": 0,
                       "parallel_min_macs": 0, "threads": 2},
    "direct-whole-samples": {**_DIRECT, "direct_bands": False, "stack_min_fill": 2,
                             "parallel_min_macs": 0},
    "tiny-chunks-im2col": {**_NUMPY, "chunk_bytes": 1, "kn2row_ratio": 10**9,
                           "fold_max_row": 0, "parallel_min_macs": 0},
    "tiny-chunks-kn2row": {**_NUMPY, "chunk_bytes": 1, "kn2row_ratio": 0, "fold_max_row": 0,
                           "parallel_min_macs": 0},
    "kn2row-per-sample": {**_NUMPY, "kn2row_ratio": 0, "fold_max_row": 0,
                          "kn2row_wide_max_positions": 0},
    "one-chunk-fold-kn2row": {**_NUMPY, "chunk_bytes": 2**40, "kn2row_ratio": 0,
                              "fold_max_row": 10**9, "parallel_min_macs": 10**18},
    "one-chunk-fold-im2col": {**_NUMPY, "chunk_bytes": 2**40, "kn2row_ratio": 10**9,
                              "fold_max_row": 10**9, "parallel_min_macs": 10**18},
    "serial": {**_NUMPY, "parallel_min_macs": 10**18},
    "force-direct": {**_DIRECT, "force": "direct"},
    "force-im2col": {"force": "im2col", "parallel_min_macs": 0},
    "force-kn2row": {"force": "kn2row"},
    "force-clipped": {"force": "clipped"},
}


@pytest.fixture(params=list(KNOBS))
def knobs(request):
    settings = KNOBS[request.param]
    if (settings.get("force") == "direct" or "direct_min_fill" in settings) and \
            (D._directc is None or not get_tuning().helper):
        pytest.skip("the compiled helper rot180.functional._directc is not built or disabled")
    with tuning(**settings):
        yield request.param


@pytest.mark.skipif(os.environ.get("ROT180_REQUIRE_HELPER") != "1",
                    reason="set by `make test` where a C compiler and Python's headers are found")
@pytest.mark.parametrize("name", ["_directc", "_fusedc", "_depthwisec", "_winogradc", "_teamc"])
def test_the_compiled_helpers_were_built(name) -> None:
    """Their builds are optional (no compiler: NumPy only), so a C error would otherwise pass
    silently with the helpers' tests skipped."""
    try:
        importlib.import_module(f"rot180.functional.{name}")
    except ImportError as exc:
        raise AssertionError(
            f"rot180.functional.{name} did not build although a C compiler is present; "
            "`python setup.py build_ext --inplace` shows the compiler's errors") from exc


CONFIGS = random_configs(60, seed=2024)


@pytest.mark.parametrize("flip", [False, True])
def test_every_path_equals_the_direct_loops(knobs, flip) -> None:
    rng = np.random.default_rng(7)
    for cfg in CONFIGS:
        x, w, b, dz = cfg.arrays(rng)
        kw = {**cfg.kwargs, "flip": flip}
        np.testing.assert_allclose(conv(x, w, b, **kw), conv_direct(x, w, b, **kw),
                                   rtol=0, atol=1e-10, err_msg=str(cfg))
        np.testing.assert_allclose(conv_grad_input(dz, w, x.shape, **kw),
                                   conv_grad_input_direct(dz, w, x.shape, **kw),
                                   rtol=0, atol=1e-10, err_msg=str(cfg))
        np.testing.assert_allclose(conv_grad_weight(x, dz, w.shape, **kw),
                                   conv_grad_weight_direct(x, dz, w.shape, **kw),
                                   rtol=0, atol=1e-10, err_msg=str(cfg))
        if dz.ndim == cfg.nd + 2:
            np.testing.assert_allclose(conv_grad_bias(dz), dz.sum(axis=(0, *range(2, dz.ndim))),
                                       rtol=0, atol=1e-12)


def test_subpixel_input_gradient_is_the_stretched_correlation(knobs) -> None:
    """``correlate_stretched`` skips the inserted zeros; its definition materialises them. Pads
    may be negative (crop)."""
    rng = np.random.default_rng(11)
    for _ in range(40):
        nd = int(rng.integers(1, 4))
        g, b = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        c, m = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        k = tuple(int(rng.integers(1, 5)) for _ in range(nd))
        s = tuple(int(rng.integers(1, 4)) for _ in range(nd))
        d = tuple(int(rng.integers(1, 3)) for _ in range(nd))
        o = tuple(int(rng.integers(1, 5)) for _ in range(nd))
        pairs = []
        for kk, dd, oo, ss in zip(k, d, o, s, strict=True):
            lo = int(rng.integers(-2, dd * (kk - 1) + 2))
            hi_min = dd * (kk - 1) + 1 - ((oo - 1) * ss + 1) - lo   # output size >= 1
            pairs.append((lo, int(rng.integers(max(-2, hi_min), max(-2, hi_min) + 4))))
        dz = rng.standard_normal((b, g, c, *o))
        w = rng.standard_normal((g, m, c, *k))
        want = E.correlate(E.stretch_pad(dz, s, pairs), w, (1,) * nd, d)
        got = E.correlate_stretched(dz, w, s, pairs, d)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize(("shape", "k_out", "k", "s", "p"), [
    ((2, 1, 28, 28), 6, 5, 1, 2), ((2, 6, 14, 14), 16, 5, 1, 0), ((2, 32, 32, 32), 64, 3, 1, 1),
    ((2, 64, 16, 16), 128, 3, 2, 1), ((1, 3, 64, 64), 16, 7, 2, 3), ((3, 8, 9, 11), 4, 1, 2, 0),
])
def test_benchmark_shapes_in_float32(shape, k_out, k, s, p) -> None:
    """The paths the benchmark layers take (at a small batch), float32 against float64 loops."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape, dtype=np.float32)
    w = rng.standard_normal((k_out, shape[1], k, k), dtype=np.float32)
    z = conv(x, w, stride=s, padding=p)
    dz = rng.standard_normal(z.shape, dtype=np.float32)
    kw = {"stride": s, "padding": p}
    pairs = [(z, conv_direct(x.astype(float), w.astype(float), **kw)),
             (conv_grad_input(dz, w, x.shape, **kw),
              conv_grad_input_direct(dz.astype(float), w.astype(float), x.shape, **kw)),
             (conv_grad_weight(x, dz, w.shape, **kw),
              conv_grad_weight_direct(x.astype(float), dz.astype(float), w.shape, **kw))]
    for got, want in pairs:
        assert got.dtype == np.float32
        scale = max(1.0, float(np.abs(want).max()))
        assert float(np.abs(got - want).max()) / scale <= 1e-4


def test_results_are_fresh_arrays_not_scratch() -> None:
    """Scratch buffers are reused between calls; what the engine returns never is."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 12, 12))
    w = rng.standard_normal((5, 3, 3, 3))
    a = conv(x, w)
    keep = a.copy()
    conv(x * 2, w)
    np.testing.assert_array_equal(a, keep)
