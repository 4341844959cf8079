r"""Fast batch normalisation (+ ReLU), ReLU and pooling for the layers: one pass where possible.

The public rules (:mod:`rot180.functional.normalization`, :mod:`~rot180.functional.activations`,
:mod:`~rot180.functional.pool`) stay the readable NumPy reference; the layers call these twins,
which compute the same values with fewer passes over memory, through the optional compiled
helper ``_fusedc`` (``_fusedc.c``) where it is built and ``get_tuning().helper`` is on, else
with NumPy. Both paths are tested against each other and against PyTorch.

Batch normalisation, forward (per channel ``c``, ``M`` values; notation of
:mod:`rot180.functional.normalization`)::

    pass 1 (read x):         mean, var        (shifted sums in float64, see _fusedc.c)
    pass 2 (read x, write y): y = (x - mean) a + b,  a = g r, b = beta   [then max(y, 0)]

The layer caches ``x``, ``mean`` and ``r`` (not ``xh = (x - mean) r``: one write pass less).

Backward with the ReLU mask folded in. With a ReLU after the BatchNorm, ``z = max(y, 0)``, the
delta reaching the BatchNorm output is ``v = dz [z > 0]`` (``z > 0`` iff ``y > 0``, so the
cached output ``z`` gives the mask). The BatchNorm rule of the module docstring with ``dy = v``,
``xh = (x - mean) r``::

    dbias   = S1 = sum v                dweight = sum v xh = r S2,   S2 = sum v (x - mean)
    dx      = (g r / M) (M v - S1 - xh r S2)
            = (g r) v  +  (-g r^3 S2 / M) (x - mean)  +  (-g r S1 / M)
            =     A v  +               B (x - mean)  +  K

    pass 1 (read dz, z, x):        S1, S2          (float64)
    pass 2 (read dz, z, x, write dx): dx = A v + B (x - mean) + K

In evaluation (fixed statistics) ``B = K = 0``: ``dx = g r v``, one pass. Without the ReLU,
``v = dz`` and ``z`` is not read.

Threads: the kernels split over channels (BatchNorm), planes (pooling) or element ranges
(ReLU) on the engine's pool (:func:`rot180.functional._parallel.run_chunks`) when the array
holds at least :data:`PARALLEL_MIN_BYTES`; each chunk writes its own part (and every sum is
one channel's or plane's, in the same order), so results do not depend on the thread count.
Measured on the shared 2-core development machine (AMD EPYC, float32, other processes using
70-80 % of it; the layers' forward / backward in ms, lower quartile of 41 calls, on 1 thread
and on 2 with the threshold forced to 0; before the short-row and masked-sum kernels)::

                                               1 thread          2 threads
    ReLU            (64, 32, 8, 8)   512 KiB   0.018 / 0.028     0.075 / 0.088
    ReLU            (64, 32, 32, 32)   8 MiB   0.24  / 0.55      0.35  / 0.68
    BN + ReLU       (64, 32, 32, 32)   8 MiB   0.67  / 2.05      0.89  / 2.24
    BN + ReLU       (64, 128, 32, 32) 32 MiB   9.0   / 13.7      9.5   / 14.4

so on that machine two threads never paid (a pooled region costs ~60-150 us and the second
core was busy), and the threshold was 64 MiB. Re-measured on an idle 2-core Xeon (layer
forward + backward, interleaved in one process, medians of 21; torch's autograd for scale)::

                                    BatchNorm: 1 thread / 2      ReLU: 1 thread / 2
    (64, 64, 8, 8)       1 MiB      0.63 / 1.06                  0.20 / 0.54
    (64, 32, 16, 16)     2 MiB      0.80 / 1.30                  0.45 / 0.66
    (64, 16, 32, 32)     4 MiB      1.47 / 1.72                  0.89 / 0.93
    (64, 256, 8, 8)      4 MiB      1.56 / 1.71                  0.97 / 0.92
    (64, 32, 32, 32)     8 MiB      3.25 / 2.52                  1.77 / 1.54
    (64, 128, 16, 16)    8 MiB      2.74 / 2.48                  1.59 / 1.48

so two threads paid from 8 MiB (0.78-0.93), not at 4 (0.95-1.17), and the threshold was
8 MiB. The engine's thread team (:mod:`._team`: the caller runs a chunk, members spin between
jobs) halved a pooled run's cost (an empty one 65-75 -> 38 us back to back); re-measured with
it on the same Xeon, layer forward + backward, 2 threads / 1, interleaved, medians of 21::

                                    BatchNorm     ReLU
    (64, 64, 8, 8)       1 MiB      1.01          0.96
    (64, 32, 16, 16)     2 MiB      1.00          0.98
    (64, 16, 32, 32)     4 MiB      0.82          0.76
    (64, 256, 8, 8)      4 MiB      0.85          0.81
    (64, 32, 32, 32)     8 MiB      0.73          0.66

so two threads break even at 1-2 MiB and pay from 4: the threshold is 2 MiB. Training steps
(median of 20, 2 threads, two runs), 8 MiB -> 2 MiB: ``resnet_small(16)`` 62.3 / 61.1 ->
59.1 / 57.2 ms, ``vgg_small(32)`` 82.6 / 78.8 -> 75.9 / 75.8, ``resnet_small(32)`` 147 / 156
-> 141 / 156 (512 KiB: within 3 % of 2 MiB either way). Tests force each side by patching
``_fused.PARALLEL_MIN_BYTES``.
"""

from __future__ import annotations

import numpy as np

from ._parallel import run_chunks, workers
from ._tuning import get_tuning
from .activations import relu_grad_into

try:
    from . import _fusedc
except ImportError:         # no C compiler at install: NumPy everywhere
    _fusedc = None

__all__ = ["helper_on", "bn_forward", "bn_backward", "relu_forward", "relu_backward",
           "max_pool2d", "max_pool2d_grad", "plane_mean", "plane_fill", "finite_once"]

PARALLEL_MIN_BYTES = 2 * 2**20


def helper_on() -> bool:
    """Whether the compiled kernels run here: built, and ``get_tuning().helper``."""
    return _fusedc is not None and get_tuning().helper


def _run(fn, units: int, nbytes: int) -> None:
    """``fn(first, last)`` over ``[0, units)``: one call, or one chunk per thread."""
    n = min(workers(), units) if nbytes >= PARALLEL_MIN_BYTES else 1
    if n <= 1:
        fn(0, units)
        return
    bounds = [units * i // n for i in range(n + 1)]
    run_chunks(lambda r: fn(*r), list(zip(bounds[:-1], bounds[1:], strict=True)), n)


def _ncs(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], -1)


def _pc(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((-1,) + (1,) * (ndim - 2))


# --- batch normalisation ----------------------------------------------------------------------

def bn_forward(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float,
               *, mean: np.ndarray | None = None, var: np.ndarray | None = None,
               relu: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(y, mean, var, r)``: batch normalisation of ``x`` (then ReLU with ``relu``).

    Without ``mean`` / ``var`` the batch's statistics are computed (biased variance); with them
    (evaluation) they are used as given. ``mean`` is returned in ``x``'s dtype, ``var`` as
    computed (float64 from the helper), ``r = 1 / sqrt(var + eps)`` in ``x``'s dtype.

    Shape:
        - x: ``(N, C, *spatial)``; weight, bias, mean, var: ``(C,)``
        - y: like ``x``; mean, var, r: ``(C,)``
    """
    dt, C = x.dtype, x.shape[1]
    fast = helper_on()
    if mean is None:
        if fast:
            xs = _ncs(x)
            m64, v64 = np.empty(C), np.empty(C)
            _run(lambda a, b: _fusedc.bn_stats(xs, m64, v64, first=a, last=b), C, x.nbytes)
            mean, var = m64.astype(dt), v64
        else:
            ax = (0, *range(2, x.ndim))
            # float64 sums, shifted by the mean (as the helper: no cancellation, no overflow
            # of the squares in float32)
            m64 = x.mean(axis=ax, dtype=np.float64)
            var = np.square(x - _pc(m64, x.ndim)).mean(axis=ax)
            mean = m64.astype(dt)
    var_eps = np.asarray(var, dt) + dt.type(eps)
    if (var_eps <= 0).any():
        raise ValueError(f"batch_norm: var + eps must be positive, got min(var) = "
                         f"{float(np.min(var))} with eps={eps}. Pass a variance (>= 0).")
    r = 1 / np.sqrt(var_eps)
    scale = r if weight is None else r * weight
    shift = np.zeros(C, dt) if bias is None else bias
    mean = np.array(mean, dt)      # a copy: the running mean may change before backward
    if fast:
        xs = _ncs(x)
        y = np.empty(x.shape, dt)
        ys = y.reshape(xs.shape)
        _run(lambda a, b: _fusedc.bn_apply(xs, ys, mean, scale, shift, relu=relu, first=a,
                                           last=b), C, x.nbytes)
    else:
        y = x - _pc(mean, x.ndim)
        y *= _pc(scale, x.ndim)
        y += _pc(shift, x.ndim)
        if relu:
            np.maximum(y, dt.type(0), out=y)
    return y, mean, var, r


def bn_backward(dy: np.ndarray, x: np.ndarray, mean: np.ndarray, r: np.ndarray,
                weight: np.ndarray | None, *, batch_statistics: bool,
                out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dweight, dbias)`` of :func:`bn_forward`; ``out`` (the forward's ReLU output) folds
    the ReLU's mask ``[out > 0]`` into the rule (module docstring).

    Shape:
        - dy, x, out: ``(N, C, *spatial)``; mean, r, weight: ``(C,)``
        - dx: like ``dy``; dweight, dbias: ``(C,)``
    """
    dt, C = dy.dtype, dy.shape[1]
    m = dy.size // C
    g = np.ones(C, dt) if weight is None else weight
    fast = helper_on()
    if fast:
        ds, xs = _ncs(dy), _ncs(x)
        ys = None if out is None else _ncs(out)
        s1, s2 = np.empty(C), np.empty(C)
        _run(lambda a, b: _fusedc.bn_grad_sums(ds, xs, mean, s1, s2, y=ys, first=a, last=b),
             C, dy.nbytes)
    else:
        ax = (0, *range(2, dy.ndim))
        v = dy if out is None else relu_grad_into(dy, out, np.empty(dy.shape, dt))
        s1 = v.sum(axis=ax, dtype=np.float64)
        s2 = (v * (x - _pc(mean, x.ndim))).sum(axis=ax, dtype=np.float64)
    r64, g64 = r.astype(np.float64), g.astype(np.float64)
    dbias, dweight = s1.astype(dt), (r64 * s2).astype(dt)
    a = (g64 * r64).astype(dt)
    if batch_statistics:
        b = (-g64 * r64**3 * s2 / m).astype(dt)
        k = (-g64 * r64 * s1 / m).astype(dt)
    else:
        b = k = np.zeros(C, dt)
    if fast:
        dx = np.empty(dy.shape, dt)
        dxs = dx.reshape(ds.shape)
        _run(lambda lo, hi: _fusedc.bn_grad_apply(ds, xs, dxs, mean, a, b, k, y=ys, first=lo,
                                                  last=hi), C, dy.nbytes)
    else:
        dx = v * _pc(a, dy.ndim)
        if batch_statistics:
            dx += (x - _pc(mean, x.ndim)) * _pc(b, x.ndim)
            dx += _pc(k, x.ndim)
    return dx, dweight, dbias


# --- ReLU -------------------------------------------------------------------------------------

def relu_forward(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` (NaN kept), one pass; threaded for large arrays.

    Shape:
        - x: any; output: same
    """
    y = np.empty(x.shape, x.dtype)
    xf, yf = np.ascontiguousarray(x).reshape(-1), y.reshape(-1)
    if helper_on():
        _run(lambda a, b: _fusedc.relu(xf, yf, first=a, last=b), xf.size, x.nbytes)
    else:
        zero = x.dtype.type(0)
        _run(lambda a, b: np.maximum(xf[a:b], zero, out=yf[a:b]), xf.size, x.nbytes)
    return y


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``dy [x > 0]``, one pass; ``x`` the input or the output of the ReLU.

    Shape:
        - dy, x: same shape; output: same
    """
    dx = np.empty(dy.shape, dy.dtype)
    df, xf, of = (np.ascontiguousarray(dy).reshape(-1), np.ascontiguousarray(x).reshape(-1),
                  dx.reshape(-1))
    if helper_on():
        _run(lambda a, b: _fusedc.relu_grad(df, xf, of, first=a, last=b), df.size, dy.nbytes)
    else:
        _run(lambda a, b: relu_grad_into(df[a:b], xf[a:b], of[a:b]), df.size, dy.nbytes)
    return dx


# --- pooling (the helper only; callers fall back to the NumPy rules) ---------------------------

def max_pool2d(x: np.ndarray, out: tuple[int, int], kernel: tuple[int, int],
               stride: tuple[int, int], padding: tuple[int, int],
               dilation: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """2-D max pooling of ``(*lead, H, W)`` by the helper: ``(y, argmax)`` as
    :func:`rot180.functional.pool.max_pool` (the caller checked the settings and ``out``)."""
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    planes = int(np.prod(lead))
    xs = np.ascontiguousarray(x).reshape(planes, h, w)
    y = np.empty((planes, *out), x.dtype)
    idx = np.empty((planes, *out), np.int64)
    _run(lambda a, b: _fusedc.max_pool2d(xs, y, idx, kernel=kernel, stride=stride,
                                         padding=padding, dilation=dilation, first=a, last=b),
         planes, x.nbytes)
    return y.reshape(*lead, *out), idx.reshape(*lead, *out)


def max_pool2d_grad(dy: np.ndarray, argmax: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Input gradient of :func:`max_pool2d`: ``dx`` of ``shape`` with each delta added at its
    argmax (in output order, so overlapping windows add up)."""
    planes = int(np.prod(shape[:-2]))
    ds = np.ascontiguousarray(dy).reshape(planes, *dy.shape[-2:])
    ids = np.ascontiguousarray(argmax, np.int64).reshape(ds.shape)
    dx = np.empty((planes, *shape[-2:]), dy.dtype)
    _run(lambda a, b: _fusedc.max_pool2d_grad(ds, ids, dx, first=a, last=b), planes,
         dx.nbytes)
    return dx.reshape(shape)


def plane_mean(x: np.ndarray, nd: int) -> np.ndarray:
    """Mean over the last ``nd`` axes (kept as size 1), float64 sums, by the helper."""
    lead = x.shape[:-nd]
    planes = int(np.prod(lead))
    xs = np.ascontiguousarray(x).reshape(planes, -1)
    y = np.empty(planes, x.dtype)
    _run(lambda a, b: _fusedc.plane_mean(xs, y, first=a, last=b), planes, x.nbytes)
    return y.reshape(*lead, *(1,) * nd)


def plane_fill(dy: np.ndarray, shape: tuple[int, ...], nd: int) -> np.ndarray:
    """Gradient of :func:`plane_mean`: ``dy / count`` over each plane of ``shape``."""
    lead = shape[:-nd]
    planes = int(np.prod(lead))
    count = int(np.prod(shape[-nd:]))
    dx = np.empty((planes, count), dy.dtype)
    ds = np.ascontiguousarray(dy).reshape(planes)
    _run(lambda a, b: _fusedc.plane_fill(ds, dx, scale=1.0 / count, first=a, last=b), planes,
         dx.nbytes)
    return dx.reshape(shape)


def finite_once(a: np.ndarray) -> bool | None:
    """Whether every value of ``a`` is finite, in one read (``_fusedc.all_finite``: the
    exponent bits), where the kernels run and ``a`` is a C-contiguous float32/64 array; None
    otherwise (the caller checks in NumPy: ``_clipped.finite``)."""
    if not (helper_on() and a.flags.c_contiguous and a.dtype in (np.float32, np.float64)):
        return None
    return _fusedc.all_finite(a.reshape(-1))
