r"""Reference oracles for :mod:`rot180.functional.conv`, written straight from the definitions.

These functions are deliberately slow and simple, and share no code with the fast path (they do
not import ``conv`` or ``_engine``; only the shape arithmetic and the input checks are common).
They exist to be compared against, by the tests and by ``rot180 check``.

Notation as in :mod:`rot180.functional.conv`: ``xp`` is the padded input, ``t`` a kernel tap
(a multi-index), ``q`` an output position, ``s, d`` stride and dilation, ``p_lo`` the low
padding. One tap of the forward cross-correlation connects::

    z[n, o, q]  <-  w[o, c, t] * xp[n, c, q*s + t*d]                                  (1)

* :func:`conv_direct` sums (1) over ``c`` and ``t`` tap by tap, over the outputs whose tap
  reads an input cell: a padding cell is a cut connection, never multiplied, so the oracles
  have the unrolled matrix's semantics for ``inf`` and NaN too (``conv.py``, "Non-finite
  values"), and no padded copy is made (huge padding costs nothing).
* :func:`conv_grad_input_direct` runs (1) backwards as an MLP would (eq. 2 of ``conv.py``):
  it **scatters** every output delta back through every tap,
  ``dx[n, c, q*s + t*d - p_lo] += dz[n, o, q] * w[o, c, t]``, dropping what lands in the
  padding. No kernel
  rotation appears anywhere: that the result equals the rot180 rule is what is being checked.
* :func:`conv_grad_weight_direct` sums ``dz[n, o, q] * xp[n, c, q*s + t*d]`` for each tap.
* :func:`conv_matrix` writes (1) out as a dense matrix for one sample: the convolution layer as
  an MLP with cut connections and shared weights.

Every padding form is resolved to ``(low, high)`` pairs by
:func:`rot180.functional.shapes.resolve_padding` (through ``_validation.weight_spec``), exactly
as for ``conv``. Groups: output channel ``o`` of group ``g`` sees only the input channels
``g*C_in/groups ... (g+1)*C_in/groups - 1``; its kernel's channel axis indexes that slice.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np

from . import _validation as V
from .shapes import tap_outputs

__all__ = ["conv_direct", "conv_grad_input_direct", "conv_grad_weight_direct", "conv_matrix"]

Padding = int | str | Sequence[int] | Sequence[tuple[int, int]]


def _flip_spatial(w: np.ndarray) -> np.ndarray:
    """Reverse every spatial axis (a local copy of rot180, kept independent of ``conv.py``)."""
    return w[(slice(None), slice(None)) + (slice(None, None, -1),) * (w.ndim - 2)]


def _taps(kernel: Sequence[int]) -> Iterator[tuple[int, ...]]:
    return itertools.product(*(range(k) for k in kernel))


def _tap_window(t: Sequence[int], out: Sequence[int], spec: V.ConvSpec,
                spatial: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """The connections of tap ``t``: ``(output slices, input slices)`` pairing each output
    ``q`` whose input ``m = q*s + t*d - p_lo`` lies inside the input with that ``m``; None if
    the tap reads only padding. Padding cells are cut connections: never read, never
    multiplied (so ``inf * padding`` is not NaN; see ``conv.py``, "Non-finite values")."""
    outs, ins = [], []
    for ti, o, s, d, (lo, _), n in zip(t, out, spec.stride, spec.dilation, spec.padding,
                                       spatial, strict=True):
        qa, qb = tap_outputs(n, o, ti, s, d, lo)
        if qa == qb:
            return None
        m0 = qa * s + ti * d - lo
        outs.append(slice(qa, qb))
        ins.append(slice(m0, m0 + (qb - qa - 1) * s + 1, s))
    return tuple(outs), tuple(ins)


def _channel_groups(spec: V.ConvSpec) -> Iterator[tuple[slice, slice]]:
    """``(output channels, input channels)`` of each group."""
    og, cg = spec.out_channels // spec.groups, spec.in_channels // spec.groups
    for g in range(spec.groups):
        yield slice(g * og, (g + 1) * og), slice(g * cg, (g + 1) * cg)


def conv_direct(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, *, stride: int = 1,
                padding: Padding = 0, dilation: int = 1, groups: int = 1, flip: bool = False
                ) -> np.ndarray:
    r"""Cross-correlation ``z = x \star w + b`` by a loop over kernel taps (oracle for ``conv``).

    ``z[n, o, q] = b[o] + sum_{c, t} w[o, c, t] * xp[n, c, q*s + t*d]`` with ``c`` running over
    the input channels of ``o``'s group. ``flip=True`` reverses the kernel first: a true
    convolution. Arguments and errors are those of :func:`rot180.functional.conv`.

    Shape:
        - x: ``(N, C_in, *i)`` or unbatched ``(C_in, *i)``, 1 to 3 spatial dims
        - w: ``(C_out, C_in / groups, *k)``
        - b: ``(C_out,)``
        - output: ``(N, C_out, *o)``, ``o = floor((i + p_lo + p_hi - d(k-1) - 1) / s) + 1``
    """
    x, w, b, spec = V.conv_args(x, w, b, stride=stride, padding=padding, dilation=dilation,
                                groups=groups, op="conv_direct")
    wk = _flip_spatial(w) if flip else w
    xb = x if x.ndim == spec.nd + 2 else x[None]
    out = spec.output_spatial(xb.shape[2:])
    z = np.zeros((xb.shape[0], spec.out_channels, *out), dtype=x.dtype)
    for outs, ins in _channel_groups(spec):
        for t in _taps(spec.kernel):
            if (conn := _tap_window(t, out, spec, xb.shape[2:])) is None:
                continue
            window = xb[(slice(None), ins, *conn[1])]
            z[(slice(None), outs, *conn[0])] += np.einsum("nc...,oc->no...", window,
                                                          wk[(outs, slice(None), *t)])
    if b is not None:
        z += b.reshape((-1,) + (1,) * spec.nd)
    return z if x.ndim == spec.nd + 2 else z[0]


def conv_grad_input_direct(dz: np.ndarray, w: np.ndarray, input_shape: Sequence[int], *,
                           stride: int = 1, padding: Padding = 0, dilation: int = 1,
                           groups: int = 1, flip: bool = False) -> np.ndarray:
    """Input gradient of :func:`conv_direct` by the chain rule, scattering each delta back.

    ``dx[n, c, q*s + t*d - p_lo] += dz[n, o, q] * w[o, c, t]`` for every output ``(o, q)`` and
    tap ``t`` whose target lies inside the input (what lands in the padding is cut off; input
    cells of the stride remainder receive nothing, so stay zero). This is back-propagation
    through the MLP view of the layer, independent of the rot180 rule it checks.

    Shape:
        - dz: ``(N, C_out, *o)`` (or unbatched)
        - w: ``(C_out, C_in / groups, *k)``
        - input_shape: the forward input's full shape ``(N, C_in, *i)``, or just ``i``
        - output: ``input_shape``
    """
    dz, w, spec, shp = V.grad_input_args(dz, w, input_shape, stride=stride, padding=padding,
                                         dilation=dilation, groups=groups,
                                         op="conv_grad_input_direct")
    wk = _flip_spatial(w) if flip else w
    dzb = dz if dz.ndim == spec.nd + 2 else dz[None]
    spatial = shp[-spec.nd:]
    dx = np.zeros((dzb.shape[0], spec.in_channels, *spatial), dtype=dz.dtype)
    out = dzb.shape[2:]
    for outs, ins in _channel_groups(spec):
        for t in _taps(spec.kernel):
            if (conn := _tap_window(t, out, spec, spatial)) is None:
                continue            # deltas sent into the padding are cut off
            # One tap links each (q, m) pair at most once, so += cannot collide.
            dx[(slice(None), ins, *conn[1])] += np.einsum(
                "no...,oc->nc...", dzb[(slice(None), outs, *conn[0])],
                wk[(outs, slice(None), *t)])
    return dx.reshape(shp)


def conv_grad_weight_direct(x: np.ndarray, dz: np.ndarray, weight_shape: Sequence[int], *,
                            stride: int = 1, padding: Padding = 0, dilation: int = 1,
                            groups: int = 1, flip: bool = False) -> np.ndarray:
    """Kernel gradient of :func:`conv_direct`, one tap at a time.

    ``dw[o, c, t] = sum_{n, q} dz[n, o, q] * xp[n, c, q*s + t*d]``: each tap's gradient is the
    sum of the deltas it fed, times the inputs it read. With ``flip=True`` the forward used the
    reversed kernel, so the result is reversed back.

    Shape:
        - x: ``(N, C_in, *i)`` (or unbatched)
        - dz: ``(N, C_out, *o)``, matching ``conv(x, w)``
        - weight_shape: ``(C_out, C_in / groups, *k)``
        - output: ``weight_shape``
    """
    x, dz, spec, wshape = V.grad_weight_args(x, dz, weight_shape, stride=stride,
                                             padding=padding, dilation=dilation, groups=groups,
                                             op="conv_grad_weight_direct")
    xb = x if x.ndim == spec.nd + 2 else x[None]
    dzb = dz if dz.ndim == spec.nd + 2 else dz[None]
    out = dzb.shape[2:]
    dw = np.zeros(wshape, dtype=x.dtype)
    summed = [0, *range(2, 2 + spec.nd)]                  # batch and output positions
    for outs, ins in _channel_groups(spec):
        for t in _taps(spec.kernel):
            if (conn := _tap_window(t, out, spec, xb.shape[2:])) is None:
                continue            # a tap that reads only padding has zero gradient
            window = xb[(slice(None), ins, *conn[1])]
            dw[(outs, slice(None), *t)] = np.tensordot(dzb[(slice(None), outs, *conn[0])],
                                                       window, (summed, summed))
    return _flip_spatial(dw) if flip else dw


def conv_matrix(w: np.ndarray, input_shape: Sequence[int], *, stride: int = 1,
                padding: Padding = 0, dilation: int = 1, groups: int = 1, flip: bool = False
                ) -> np.ndarray:
    r"""The unrolled matrix ``M`` of :func:`conv` (no bias) for one sample.

    The convolution layer is an MLP with cut connections and shared weights. Row ``(o, q)``
    (output channel, output position) and column ``(c, m)`` (input channel, input position)
    hold ``w[o, c', t]`` when ``m = q*s + t*d - p_lo`` lies inside the input and ``c`` is the
    ``c'``-th input channel of ``o``'s group; every other entry is a cut connection (zero).
    Rows and columns follow C order, so for ``x`` of shape ``input_shape``::

        conv(x, w).ravel() == M @ x.ravel()
        conv_grad_input(dz, w, x.shape).ravel() == M.T @ dz.ravel()

    Built from the index definition, not by pushing basis vectors through a convolution.
    ``flip=True`` gives the matrix of the true convolution. Meant for small sizes: the matrix
    is dense.

    Non-finite values: a dense product ``M @ x`` multiplies the zeros of the cut connections
    too (``0 * inf = NaN``); the layer, and :func:`conv`, sum over the connections only. That
    product is ``np.where(cut, 0, M * x.ravel()).sum(axis=1)`` with ``cut =
    conv_matrix(np.ones_like(w), ...) == 0`` (an all-ones kernel marks every connection with a
    1, since one tap links a pair at most once), and likewise ``(M * dz.ravel()[:, None])``
    summed over rows for the input gradient.

    Shape:
        - w: ``(C_out, C_in / groups, *k)``
        - input_shape: ``(C_in, *i)`` or ``(1, C_in, *i)``
        - output: ``(C_out * prod(o), C_in * prod(i))``, ``o`` as for :func:`conv`

    >>> import numpy as np
    >>> conv_matrix(np.array([[[1.0, 2.0]]]), (1, 3), padding=((0, 1),)).tolist()
    [[1.0, 2.0, 0.0], [0.0, 1.0, 2.0], [0.0, 0.0, 1.0]]
    """
    op = "conv_matrix"
    w = V.float_array(w, "w")
    spec = V.weight_spec(w.shape, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, op=op)
    shp = V.int_tuple(input_shape, "input_shape", op, fix="Pass x.shape of one sample.")
    if len(shp) == spec.nd + 2 and shp[0] != 1:
        raise ValueError(
            f"{op}: the matrix is for one sample, got input_shape {shp} with batch {shp[0]}. "
            f"Pass the shape of one sample, {shp[1:]}."
        )
    spatial = V.input_shape_for(spec, shp, "input_shape", op)
    out = spec.output_spatial(spatial)
    wk = _flip_spatial(w) if flip else w
    n_out, n_in = int(np.prod(out)), int(np.prod(spatial))
    m = np.zeros((spec.out_channels * n_out, spec.in_channels * n_in), dtype=w.dtype)
    q = np.indices(out).reshape(spec.nd, -1)                      # every output position
    s, d, i = (np.array(v)[:, None] for v in (spec.stride, spec.dilation, spatial))
    lo = np.array([p for p, _ in spec.padding])[:, None]
    for t in _taps(spec.kernel):
        pos = q * s + np.array(t)[:, None] * d - lo
        inside = np.all((pos >= 0) & (pos < i), axis=0)   # the rest land in the padding
        rows = np.flatnonzero(inside)
        cols = np.ravel_multi_index(tuple(pos[:, inside]), spatial)
        for outs, ins in _channel_groups(spec):
            for o in range(outs.start, outs.stop):
                for c in range(ins.start, ins.stop):
                    # One tap links each (q, m) pair at most once, so += cannot collide.
                    m[o * n_out + rows, c * n_in + cols] += wk[(o, c - ins.start, *t)]
    return m

