"""Metrics and their pictures: accuracy, confusion matrix, the metrics CSV and training curves.

Every file is written whole or not at all: figures are drawn into memory and, like the CSV,
written with :func:`~rot180._files.write_file` (temporary file, fsync, rename), so a
full disk leaves the previous file intact and raises the checkpoint's kind of message.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import write_file

__all__ = ["accuracy", "confusion_matrix", "format_confusion", "METRIC_COLUMNS",
           "write_metrics_csv", "read_metrics_csv", "plot_curves", "plot_confusion",
           "save_figure"]

METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")


def accuracy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Fraction of rows whose arg-max equals the target class."""
    return float(np.mean(np.argmax(logits, axis=1) == targets))


def confusion_matrix(pred: np.ndarray, targets: np.ndarray, num_classes: int) -> np.ndarray:
    """``cm[t, p]`` counts samples of true class ``t`` predicted as ``p`` (rows: truth)."""
    idx = targets.astype(np.int64) * num_classes + pred.astype(np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def format_confusion(cm: np.ndarray, labels: Sequence[str] | None = None) -> str:
    """A text table: rows are the true class, columns the prediction."""
    n = cm.shape[0]
    labels = [str(i) for i in range(n)] if labels is None else list(labels)
    width = max(4, len(str(int(cm.max()))) + 1, *(len(s) + 1 for s in labels))
    head = "true\\pred".ljust(10) + "".join(s.rjust(width) for s in labels) + "recall".rjust(8)
    lines = [head]
    for i in range(n):
        total = cm[i].sum()
        rec = f"{cm[i, i] / total:7.1%}" if total else "      -"
        lines.append(labels[i].ljust(10) + "".join(str(int(v)).rjust(width) for v in cm[i])
                     + " " + rec)
    return "\n".join(lines)


def write_metrics_csv(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """(Re)write ``metrics.csv`` with :data:`METRIC_COLUMNS`, one row per epoch."""
    lines = [",".join(METRIC_COLUMNS)]
    for r in rows:
        lines.append(",".join(
            str(int(r[c])) if c == "epoch" else f"{float(r[c]):.6g}" for c in METRIC_COLUMNS))
    write_file(path, ("\n".join(lines) + "\n").encode(), "metrics file")


def read_metrics_csv(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()}
                for row in csv.DictReader(f)]


def save_figure(fig: Any, path: str | os.PathLike, **savefig: Any) -> Path:
    """Draw ``fig`` into memory in the format of ``path``'s suffix (png, svg, pdf), then write
    it atomically; the figure is closed either way."""
    import io

    path = Path(path)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=path.suffix.lstrip(".").lower() or "png", **savefig)
    finally:
        _pyplot().close(fig)   # a no-op for a Figure that pyplot does not manage
    return write_file(path, buf.getvalue(), "figure")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Loss and accuracy per epoch, train and held-out, side by side."""
    plt = _pyplot()
    ep = [r["epoch"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    a1.plot(ep, [r["train_loss"] for r in rows], "o-", label="train")
    a1.plot(ep, [r["val_loss"] for r in rows], "s-", label="held-out")
    a1.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    a2.plot(ep, [100 * r["train_acc"] for r in rows], "o-", label="train")
    a2.plot(ep, [100 * r["val_acc"] for r in rows], "s-", label="held-out")
    a2.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion(cm: np.ndarray, path: str | os.PathLike, title: str = "Confusion matrix"
                   ) -> Path:
    plt = _pyplot()
    n = cm.shape[0]
    fig, ax = plt.subplots(figsize=(6, 5.4), dpi=100)
    im = ax.imshow(cm, cmap="Blues")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save_figure(fig, path)
