"""Hostile convolution inputs: non-finite values, arguments far larger than the data.

* Non-finite values (issue 11, item 4). The semantics is the unrolled matrix's: a padding cell
  or a zero the stride inserts is a cut connection, not a multiplied zero (``conv.py``,
  "Non-finite values"). Every path the engine can take (forced with the knobs of
  ``test_engine.py``: the helper, im2col, kn2row, 1x1, batch folding, stacked and NumPy
  sub-pixel phases) must give the same NaN / +inf / -inf positions as the sum over the
  connections of ``reference.conv_matrix``, for inf and NaN in ``w``, ``x`` and ``dz``.
* Work scales with the data (item 7): a huge stride, dilation or padding on a tiny input
  returns the right result within a few MB of memory (tracemalloc), and a sample whose expanded
  buffer would need many GB raises ValueError before allocating it.
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from rot180.functional import conv, conv_grad_input, conv_grad_weight, plan, tuning
from rot180.functional._layout import phases
from rot180.functional.reference import (
    conv_direct,
    conv_grad_input_direct,
    conv_grad_weight_direct,
    conv_matrix,
)
from rot180.nn import ConvTranspose2d
from test_engine import knobs  # noqa: F401  (the fixture forcing each path of the engine)

# (x shape, w shape, stride, padding, dilation): 1-D and 2-D, padded, strided, dilated, 1x1.
CASES = [
    ((2, 2, 7), (3, 2, 3), 1, 1, 1),
    ((2, 2, 8), (3, 2, 3), 2, 2, 1),
    ((2, 2, 9), (2, 2, 2), 3, 1, 2),
    ((2, 2, 6, 5), (3, 2, 3, 2), 1, (1, 2), 1),
    ((2, 3, 7, 6), (2, 3, 3, 3), 2, 1, (1, 2)),
    ((2, 2, 5, 5), (4, 2, 1, 1), 2, 1, 1),
    # more output than input channels: the stacked input gradient checks its (smaller) result
    # instead of the delta, and recomputes by the phases where the result is not finite
    ((2, 1, 8, 8), (9, 1, 3, 3), 2, 1, 1),
]
WHERE = ["w", "x", "dz"]


def _arrays(xs, ws, kw, where, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    w.reshape(-1)[2] = 0.0                  # a real connection of weight 0: 0 * inf = NaN there
    dz = rng.standard_normal(conv_direct(x, w, **kw).shape)
    a = {"w": w, "x": x, "dz": dz}[where]
    flat = a.reshape(-1)
    flat[1], flat[-2], flat[flat.size // 2] = np.inf, -np.inf, np.nan
    if where != "w":
        flat[3] = 0.0 * flat[3] + np.inf
    return x, w, dz


def _connected(w_shape, x_shape, kw):
    """The real connections of one sample: conv_matrix of an all-ones kernel."""
    return conv_matrix(np.ones(w_shape), x_shape[1:], **kw) != 0


def _over_connections(m, cut, v):
    """``M @ v`` summed over the connections only (the cut ones are not multiplied)."""
    return np.where(cut, 0.0, m * v[None, :]).sum(axis=1)


def _expected(x, w, dz, kw):
    """Forward, input and kernel gradient as sums over the connections of conv_matrix."""
    cut = ~_connected(w.shape, x.shape, kw)
    with np.errstate(invalid="ignore"):
        m = conv_matrix(w, x.shape[1:], **kw)
        z = np.stack([_over_connections(m, cut, xn.ravel()) for xn in x]).reshape(dz.shape)
        gi = np.stack([_over_connections(m.T, cut.T, d.ravel()) for d in dz]).reshape(x.shape)
        gw = np.zeros(w.shape)
        for idx in np.ndindex(*w.shape):        # one weight's connections at a time
            one = np.zeros(w.shape)
            one[idx] = 1.0
            link = conv_matrix(one, x.shape[1:], **kw) != 0
            gw[idx] = sum(np.where(link, dn.ravel()[:, None] * xn.ravel()[None, :], 0.0).sum()
                          for xn, dn in zip(x, dz, strict=True))
    return z, gi, gw


def _assert_same_non_finite(got, want, what):
    for test in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(test(got), test(want), err_msg=f"{what}: {test.__name__}")
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-10, atol=1e-10, err_msg=what)


def _same_pattern(case, where, fns) -> None:
    """``fns`` (forward, input gradient, kernel gradient) against the matrix's sums."""
    xs, ws, s, p, d = case
    kw = {"stride": s, "padding": p, "dilation": d}
    x, w, dz = _arrays(xs, ws, kw, where)
    want = _expected(x, w, dz, kw)
    if where == "w":                            # every tap is used: never a trivial case
        assert not np.isfinite(want[0]).all()
    got = (fns[0](x, w, **kw), fns[1](dz, w, x.shape, **kw), fns[2](x, dz, w.shape, **kw))
    for g, wanted, fn in zip(got, want, fns, strict=True):
        _assert_same_non_finite(g, wanted, fn.__name__)


CASE_IDS = [f"{c[0]}-s{c[2]}-p{c[3]}-d{c[4]}" for c in CASES]


@pytest.mark.usefixtures("knobs")
@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_path_gives_the_matrix_non_finite_pattern(case, where) -> None:
    # (no errstate: the engine raises no RuntimeWarning, which pytest would turn into errors)
    _same_pattern(case, where, (conv, conv_grad_input, conv_grad_weight))


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_the_reference_loops_have_the_same_semantics(case, where) -> None:
    with np.errstate(invalid="ignore"):
        _same_pattern(case, where, (conv_direct, conv_grad_input_direct,
                                    conv_grad_weight_direct))


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_the_finite_check_reads_every_value_of_a_view(value) -> None:
    """The engine's check of the kernel (and results) reads a view in its memory's order: a
    non-finite value anywhere in a large rot180, channel-swapped kernel (the input gradient's),
    a stepped slice, a broadcast or a reversed 1-D view is found, and none where there is
    none."""
    from rot180.functional import _clipped
    rng = np.random.default_rng(7)
    base = rng.standard_normal((64, 96, 3, 3)).astype(np.float32)       # > the small-size cut
    views = (lambda a: a[:, :, ::-1, ::-1].swapaxes(0, 1), lambda a: a[::2, 1:, :, ::-2],
             lambda a: np.broadcast_to(a[:1], (24, *a.shape[1:])), lambda a: a.reshape(-1)[::-1])
    for view in views:
        assert view(base).size > _clipped._SMALL
        assert _clipped.finite(view(base))
        seen = view(np.arange(base.size, dtype=np.float64).reshape(base.shape))
        for flat in rng.choice(np.unique(seen), 5, replace=False):
            bad = base.copy()
            bad.reshape(-1)[int(flat)] = value
            assert not _clipped.finite(view(bad)), (view, flat)


def test_an_inf_weight_on_padding_is_a_cut_connection() -> None:
    """The documented example: the 3x3 kernel's corner tap is inf; outputs whose corner reads
    padding stay finite (PyTorch's forward, which multiplies the padding, gives NaN there)."""
    x = np.ones((1, 1, 4, 4))
    w = np.ones((1, 1, 3, 3))
    w[0, 0, 0, 0] = np.inf
    z = conv(x, w, padding=1)[0, 0]
    assert np.isposinf(z[1:, 1:]).all()
    np.testing.assert_array_equal(z[0], [4, 6, 6, 4])
    np.testing.assert_array_equal(z[1:, 0], [6, 6, 4])


# --- work scales with the data ---------------------------------------------------------------

def _peak_bytes(fn):
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


HUGE = [
    ("stride", (2, 3, 4), (4, 3, 3), {"stride": 10**6}),
    ("stride-2d", (2, 3, 4, 5), (4, 3, 3, 2), {"stride": (10**6, 3)}),
    ("stride-padding", (2, 3, 4, 5), (4, 3, 3, 3), {"stride": 10**6, "padding": 10**6}),
    ("dilation-padding", (2, 3, 5, 4), (4, 3, 3, 3), {"dilation": 10**6, "padding": 10**6}),
    ("dilation-stride-padding", (2, 3, 5, 6), (4, 3, 3, 2),
     {"dilation": (10**5, 3), "stride": (2, 10**5), "padding": (10**5, 10**5)}),
    ("padding-1d", (2, 3, 5), (4, 3, 3), {"padding": 10**5, "stride": 10**5}),
]


@pytest.mark.parametrize(("x_shape", "w_shape", "kw"), [h[1:] for h in HUGE],
                         ids=[h[0] for h in HUGE])
@pytest.mark.usefixtures("knobs")
def test_huge_arguments_on_a_tiny_input_cost_what_the_data_costs(x_shape, w_shape, kw) -> None:
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    z, peak = _peak_bytes(lambda: conv(x, w, **kw))
    assert peak < 2**22, f"forward peak {peak} bytes"
    np.testing.assert_allclose(z, conv_direct(x, w, **kw), rtol=0, atol=1e-12)
    dz = rng.standard_normal(z.shape)
    gi, peak = _peak_bytes(lambda: conv_grad_input(dz, w, x.shape, **kw))
    assert peak < 2**22, f"input-gradient peak {peak} bytes"
    np.testing.assert_allclose(gi, conv_grad_input_direct(dz, w, x.shape, **kw), rtol=0,
                               atol=1e-12)
    gw, peak = _peak_bytes(lambda: conv_grad_weight(x, dz, w.shape, **kw))
    assert peak < 2**22, f"kernel-gradient peak {peak} bytes"
    np.testing.assert_allclose(gw, conv_grad_weight_direct(x, dz, w.shape, **kw), rtol=0,
                               atol=1e-12)


def test_only_the_phases_that_reach_the_input_are_built() -> None:
    ph = phases(4, 10**6, 2, 1, 3)
    assert [p.r for p in ph] == [0, 1, 2, 3]
    assert all(p.m == 1 for p in ph)


@pytest.mark.usefixtures("knobs")
def test_a_stride_beyond_the_kernel_computes_only_the_phases_a_tap_reaches() -> None:
    """Stride 1000 on 600x600 cells, 3x3 kernel: 360,000 phases, 9 of which any tap reaches.
    The plan builds correlations (stacked or per phase) for those 9 only; the rest is zeros."""
    rng = np.random.default_rng(2)
    x_shape, w = (2, 2, 600, 600), rng.standard_normal((3, 2, 3, 3))
    dz = rng.standard_normal((2, 3, 1, 1))
    p = plan(x_shape, w.shape, stride=1000, which="grad_input", dtype=np.float64)
    assert p.phases == (9, 360_000), str(p)
    leaves = p.leaves()
    assert len(leaves) <= 9 and all(math.prod(lf.problem.w[:2]) <= 9 * 2 for lf in leaves), p
    got = conv_grad_input(dz, w, x_shape, stride=1000)
    np.testing.assert_allclose(got, conv_grad_input_direct(dz, w, x_shape, stride=1000),
                               rtol=0, atol=1e-12)


def test_an_output_of_many_gigabytes_is_refused_before_it_is_made() -> None:
    """Padding 10**6 on 4x4 cells asks for 2,000,002**2 outputs (29 TiB): not a MemoryError."""
    def refused():
        with pytest.raises(ValueError, match=r"the output of one sample would need "
                                             r"29802\.4 GiB \(shape \(1, 1, 2000002, 2000002\)\)"):
            conv(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), padding=10**6)

    _, peak = _peak_bytes(refused)
    assert peak < 2**20


def test_a_transposed_output_of_many_gigabytes_is_refused_before_it_is_made() -> None:
    """ConvTranspose2d with stride 10**6 on 4x4 cells: 3,000,003**2 outputs per channel."""
    layer = ConvTranspose2d(1, 1, 3, stride=10**6, dtype=np.float64, rng=0)

    def refused():
        with pytest.raises(ValueError, match=r"the output of one sample would need .* GiB "
                                             r"\(shape \(1, 1, 3000003, 3000003\)\)"):
            layer.forward(np.ones((1, 1, 4, 4)))

    _, peak = _peak_bytes(refused)
    assert peak < 2**20


@pytest.mark.parametrize("op", ["conv", "grad_input", "grad_weight"])
def test_an_expansion_of_many_gigabytes_is_refused_before_it_is_made(op) -> None:
    """3-D, helper off (with it, the depth-folded 2-D correlation expands ~70 MiB and computes):
    im2col's columns of one sample would need 8*729*72**3*8 bytes, 16 GiB."""
    x = np.ones((1, 8, 40, 40, 40))
    w = np.ones((8, 8, 9, 9, 9))
    kw = {"padding": 20}
    dz = np.ones((1, 8, 72, 72, 72))
    call = {"conv": lambda: conv(x, w, **kw),
            "grad_input": lambda: conv_grad_input(dz, w, x.shape, **kw),
            "grad_weight": lambda: conv_grad_weight(x, dz, w.shape, **kw)}[op]

    def refused():                          # the rule's choice (clipped, forced, expands nothing)
        with tuning(force=None, helper=False), pytest.raises(
                ValueError, match=r"of one sample would need \d+\.\d GiB \(shape .*\), more "
                                  r"than the 2 GiB allowed\. Use a smaller input, padding or "
                                  r"dilation"):
            call()

    _, peak = _peak_bytes(refused)
    assert peak < 2**27


# The helper's own size checks (sizes whose products wrap around): tests/test_directc_args.py.


@pytest.mark.parametrize("kw", [{"stride": 2**63}, {"stride": 10**30}, {"dilation": 2**62},
                                {"padding": 2**41}, {"stride": (1, 2**63)}])
def test_arguments_beyond_any_array_are_a_value_error_not_an_overflow(kw):
    """A stride of 2**63 overflowed numpy's strided views (OverflowError: Python int too large
    to convert to C long); 2**40 is the documented bound, and it still computes."""
    nd = len(kw["stride"]) if isinstance(kw.get("stride"), tuple) else 1
    x, w = np.ones((1, 1) + (6,) * nd), np.ones((1, 1) + (3,) * nd)
    for call in (lambda: conv(x, w, **kw), lambda: conv_grad_weight(x, x[..., :1], w.shape, **kw),
                 lambda: conv_grad_input(x[..., :1], w, x.shape, **kw)):
        with pytest.raises(ValueError, match=r"must be at most 2\*\*40"):
            call()
    assert conv(x, w, stride=2**40).shape == (1, 1) + (1,) * nd


@pytest.mark.parametrize(("kw", "x_shape"), [
    ({"stride": 2, "dilation": 10**12, "output_padding": 10**6}, (1, 1, 1, 6)),
    ({"stride": 1, "dilation": 20001, "output_padding": 20000}, (1, 1, 1, 1)),
])
def test_conv_transpose_sizes_its_output_before_padding_its_input(kw, x_shape):
    """The layer padded x for stride <= output_padding < dilation before any guard ran: a
    MemoryError (931 GiB), or 1.6 GB spent before the ValueError. Traced memory stays small."""
    layer = ConvTranspose2d(1, 1, 2, **kw)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"the output of one sample would need"):
            layer.forward(np.ones(x_shape, np.float32))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
