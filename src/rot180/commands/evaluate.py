"""``rot180 evaluate``: accuracy and confusion matrix of a checkpoint on held-out data."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..data import load_dataset
from ..nn import SoftmaxCrossEntropy
from ..train import metrics as M
from ..train.checkpoint import load_checkpoint
from ._options import figure_path

HELP = "accuracy and confusion matrix (text and PNG) of a checkpoint"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help=HELP, description=HELP + ".")
    p.add_argument("checkpoint", help="a .safetensors checkpoint written by rot180 train")
    p.add_argument("--data", default=None,
                   help="dataset name (default: the one the checkpoint was trained on)")
    p.add_argument("--data-root", default=None, help="directory holding the files of --data")
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="which part to score (default: test, the part no training run uses "
                        "to choose anything)")
    p.add_argument("--out", default=None,
                   help="PNG for the confusion matrix (default: confusion.png beside the "
                        "checkpoint)")
    return p


def run(args: argparse.Namespace) -> int:
    out = figure_path(args.out) if args.out else None
    ckpt = load_checkpoint(args.checkpoint)
    card = ckpt.card()
    model = ckpt.build_model().eval()
    name = args.data or card.data
    saved = ckpt.meta.get("config")
    root = args.data_root or (saved.get("data_root") if isinstance(saved, dict) else None)
    data = load_dataset(name, root=root if isinstance(root, str) else None, split=args.split)
    card.check_images(data.images.shape[1:], f"--data {name}")
    if len(data.classes) != card.num_classes:
        raise ValueError(f"this checkpoint has {card.num_classes} classes; --data {name} has "
                         f"{len(data.classes)}. Evaluate it on --data {card.data}.")
    dtype = next(iter(model.parameters())).dtype
    loss_fn, total, preds = SoftmaxCrossEntropy(), 0.0, []
    for start in range(0, len(data), 500):   # the card's input, as predict and saliency feed it
        x = card.model_input(data.images[start:start + 500], dtype, max_value=data.max_value)
        logits = model.forward(x)
        total += loss_fn.forward(logits, data.labels[start:start + 500]) * len(x)
        preds.append(np.argmax(logits, axis=1))
    pred = np.concatenate(preds)
    acc, loss = float(np.mean(pred == data.labels)), total / len(data)
    cm = M.confusion_matrix(pred, data.labels, len(data.classes))
    print(f"{args.checkpoint}: {data.name} {args.split} split, {len(data)} images")
    print(f"accuracy {acc:.2%} ({int((pred == data.labels).sum())}/{len(data)}), "
          f"mean loss {loss:.4f}")
    print(M.format_confusion(cm, data.classes))
    out = out or Path(args.checkpoint).with_name("confusion.png")
    M.plot_confusion(cm, out, title=f"{data.name} {args.split}: accuracy {acc:.2%}")
    print(f"confusion matrix picture: {out}")
    return 0
