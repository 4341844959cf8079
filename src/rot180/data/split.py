"""A deterministic, stratified train / held-out split of a labelled data set."""

from __future__ import annotations

from numbers import Integral

import numpy as np

from ..functional import _validation as V

__all__ = ["split_indices"]


def split_indices(labels: np.ndarray, *, test_size: int | float, seed: int = 0,
                  stratify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into train and held-out indices, the same for a seed.

    With ``stratify=True`` every class keeps its share: class ``c`` with ``n_c`` of the ``N``
    samples gives ``floor(T n_c / N)`` samples to the held-out part, and the ``T - sum`` left
    over go to the classes with the largest remainders (lowest label first on ties). Within a
    class the held-out samples are drawn by ``np.random.default_rng(seed).permutation``, one
    class after the other in ascending label order, so the split depends only on the labels,
    ``test_size`` and ``seed``.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer class labels.
    test_size : int or float
        Held-out count ``T`` (int, ``1 <= T < N``) or fraction (float in ``(0, 1)``, rounded to
        the nearest count).
    seed : int
        Seed of the generator that picks the held-out samples.
    stratify : bool
        Keep class proportions (default); otherwise draw ``T`` samples uniformly.

    Returns
    -------
    train, test : numpy.ndarray
        Sorted int64 index arrays, disjoint, together ``0 .. N-1``.

    Shape
    -----
    labels ``(N,)``; train ``(N - T,)``; test ``(T,)``.

    Examples
    --------
    >>> train, test = split_indices(np.repeat(np.arange(10), 500), test_size=1000, seed=0)
    >>> len(train), len(test), np.bincount(np.repeat(np.arange(10), 500)[test]).tolist()[:3]
    (4000, 1000, [100, 100, 100])
    """
    labels = V.as_array(labels, "labels", sequences=True, convert="np.asarray(labels)")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be a 1-D integer array, got {labels.ndim}-D "
                        f"{labels.dtype}. Pass the (N,) label vector.")
    n = labels.shape[0]
    try:  # a count (a bool is refused), or a fraction: any finite real (np.float32 too)
        count = (V.integer(test_size, "test_size", low=None) if isinstance(test_size, Integral)
                 else int(round(V.real(test_size, "test_size") * n)))
    except TypeError:
        raise TypeError(f"test_size must be an int count or a float fraction, got "
                        f"{V.type_name(test_size)} {test_size!r}.") from None
    except ValueError as exc:
        raise ValueError(f"{exc} Pass a count or a fraction in (0, 1).") from None
    seed = V.integer(seed, "seed", low=0)
    if not 1 <= count < n:
        raise ValueError(f"test_size must leave at least one sample on each side: got "
                         f"{test_size!r} ({count} of {n} samples). Use 1 <= test_size < {n} "
                         "or a fraction in (0, 1).")
    rng = np.random.default_rng(seed)
    if not stratify:
        test = rng.permutation(n)[:count]
    else:
        classes, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
        quota = count * sizes / n
        take = np.floor(quota).astype(np.int64)
        # Largest remainder first; the stable sort keeps the lower label first on ties.
        order = np.argsort(-(quota - take), kind="stable")
        take[order[: count - int(take.sum())]] += 1
        parts = [rng.permutation(np.flatnonzero(inverse == c))[:k]
                 for c, k in zip(range(classes.size), take, strict=True)]
        test = np.concatenate(parts)
    mask = np.zeros(n, dtype=bool)
    mask[test] = True
    return np.flatnonzero(~mask).astype(np.int64), np.flatnonzero(mask).astype(np.int64)
