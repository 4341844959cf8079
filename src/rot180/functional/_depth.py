r"""A 3-D correlation as a 2-D one: the kernel's depth taps folded into the channels.

Derivation. With ``xp`` the input padded in depth, output depth ``o`` reads input depths
``o s_d + t d_d`` for the kernel's depth taps ``t < k_d``::

    z[b, g, m, o, q] = sum_{c, t} sum_{u} w[g, m, c, t, u] xp[b, g, c, o s_d + t d_d, q s + u d]
                     = sum_{c'} sum_{u} W[g, m, c', u] X[(b, o), g, c', q s + u d]

a 2-D correlation over ``(h, w)`` whose batch is ``(b, o)`` and whose channels are
``c' = (t, c)``, with ``X[(b, o), g, (t, c)] = xp[b, g, c, o s_d + t d_d]`` (a copy ``k_d``
times the input when ``s_d = 1``) and ``W[g, m, (t, c)] = w[g, m, c, t]``. The kernel gradient
is the same 2-D fact read for ``W``: ``dW = correlate_kernel(X, dZ)`` with
``dZ[(b, o), g, m] = dz[b, g, m, o]``, and ``dw[g, m, c, t] = dW[g, m, (t, c)]``.

The 2-D engine then realises it as it would any 2-D correlation (the compiled helper, which
expands nothing, fills its vector lanes with ``B * D_o`` samples), where the 3-D realisations
(``im2col``, ``kn2row``) expand the input ``k_d k_h k_w`` times. Height and width padding stay
with the 2-D problem; depth padding is applied while folding (the zero cells are written, not
multiplied: a non-finite operand reroutes the whole call to ``clipped`` as for any other plan).

Where the 2-D leaf is the helper on whole samples, the functions here are not called: the
helper packs its lanes straight from the 3-D input with the same indexing and unpacks straight
into the 3-D result (``_direct_fold.correlate_depth``, ``correlate_kernel_depth``), the same sums
without the folded copies.
"""

from __future__ import annotations

import numpy as np

from ._layout import Pads

__all__ = ["fold_input", "fold_kernel", "fold_delta", "unfold_output", "unfold_kernel"]


def _valid(o_count: int, start: int, step: int, size: int) -> tuple[int, int]:
    """The outputs ``o`` in ``[0, o_count)`` whose input ``start + o step`` lies in
    ``[0, size)``, as a range ``[lo, hi)``."""
    lo = -(start // step) if start < 0 else 0       # ceil(-start / step)
    hi = min(o_count, (size - 1 - start) // step + 1) if size - 1 >= start else 0
    return lo, max(lo, hi)


def fold_input(x: np.ndarray, kd: int, sd: int, dd: int, pad_lo: int, do: int) -> np.ndarray:
    """``X[(b, o), g, (t, c), h, w] = xp[b, g, c, o sd + t dd, h, w]``, ``xp`` padded low in
    depth by ``pad_lo`` (negative: cropped) and with zeros past the end.

    Shape:
        - x: ``(B, G, C, D, H, W)``; output: ``(B * do, G, kd * C, H, W)`` (contiguous)
    """
    B, G, C, D, H, W = x.shape
    out = np.empty((B, do, G, kd, C, H, W), x.dtype)
    for t in range(kd):
        start = t * dd - pad_lo                      # input depth of output 0 at tap t
        lo, hi = _valid(do, start, sd, D)
        if lo > 0:
            out[:, :lo, :, t] = 0
        if hi < do:
            out[:, hi:, :, t] = 0
        if lo < hi:
            first = start + lo * sd
            src = x[:, :, :, first:first + (hi - lo - 1) * sd + 1:sd]   # (B, G, C, n, H, W)
            out[:, lo:hi, :, t] = src.transpose(0, 3, 1, 2, 4, 5)
    return out.reshape(B * do, G, kd * C, H, W)


def fold_kernel(w: np.ndarray) -> np.ndarray:
    """``W[g, m, (t, c)] = w[g, m, c, t]``. Shape: ``(G, M, C, kd, kh, kw)`` ->
    ``(G, M, kd * C, kh, kw)``."""
    G, M, C, kd, kh, kw = w.shape
    return np.ascontiguousarray(w.transpose(0, 1, 3, 2, 4, 5)).reshape(G, M, kd * C, kh, kw)


def fold_delta(dz: np.ndarray) -> np.ndarray:
    """``dZ[(b, o), g, m] = dz[b, g, m, o]``. Shape: ``(B, G, M, do, ho, wo)`` ->
    ``(B * do, G, M, ho, wo)``."""
    B, G, M, do, ho, wo = dz.shape
    return np.ascontiguousarray(dz.transpose(0, 3, 1, 2, 4, 5)).reshape(B * do, G, M, ho, wo)


def unfold_output(z2: np.ndarray, batch: int, out: np.ndarray) -> np.ndarray:
    """``out[b, g, m, o] = Z[(b, o), g, m]``. Shape: ``(B * do, G, M, ho, wo)`` -> ``out``
    ``(B, G, M, do, ho, wo)``."""
    n, G, M, ho, wo = z2.shape
    out[...] = z2.reshape(batch, n // batch, G, M, ho, wo).transpose(0, 2, 3, 1, 4, 5)
    return out


def unfold_kernel(dw2: np.ndarray, kd: int) -> np.ndarray:
    """``dw[g, m, c, t] = dW[g, m, (t, c)]``. Shape: ``(G, M, kd * C, kh, kw)`` ->
    ``(G, M, C, kd, kh, kw)``."""
    G, M, KC, kh, kw = dw2.shape
    return np.ascontiguousarray(
        dw2.reshape(G, M, kd, KC // kd, kh, kw).transpose(0, 1, 3, 2, 4, 5))


def split_pads(pads: Pads | None) -> tuple[int, Pads | None]:
    """The depth axis's low pad, and the 2-D problem's pads (None where all zero)."""
    if pads is None:
        return 0, None
    hw = tuple(pads[1:])
    return pads[0][0], (None if all(lo == hi == 0 for lo, hi in hw) else hw)
