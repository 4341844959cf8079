"""``rot180 evaluate``: accuracy and confusion matrix of a checkpoint on held-out data."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import load_dataset
from ..train import metrics as M
from ..train.checkpoint import load_checkpoint
from ..train.trainer import evaluate_model

HELP = "accuracy and confusion matrix (text and PNG) of a checkpoint"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help=HELP, description=HELP + ".")
    p.add_argument("checkpoint", help="a .safetensors checkpoint written by rot180 train")
    p.add_argument("--data", default=None,
                   help="dataset name (default: the one the checkpoint was trained on)")
    p.add_argument("--data-root", default=None, help="directory holding the files of --data")
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="which part to score (default: test, the held-out part)")
    p.add_argument("--out", default=None,
                   help="PNG for the confusion matrix (default: confusion.png beside the "
                        "checkpoint)")
    return p


def run(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.checkpoint)
    model = ckpt.build_model()
    cfg = ckpt.meta.get("config", {})
    name = args.data or cfg.get("data", "mnist5k")
    data = load_dataset(name, root=args.data_root or cfg.get("data_root"), split=args.split)
    dtype = next(iter(model.parameters())).dtype
    loss, acc, pred = evaluate_model(model, data, dtype=dtype)
    cm = M.confusion_matrix(pred, data.labels, len(data.classes))
    print(f"{args.checkpoint}: {data.name} {args.split} split, {len(data)} images")
    print(f"accuracy {acc:.2%} ({int((pred == data.labels).sum())}/{len(data)}), "
          f"mean loss {loss:.4f}")
    print(M.format_confusion(cm, data.classes))
    out = Path(args.out) if args.out else Path(args.checkpoint).with_name("confusion.png")
    M.plot_confusion(cm, out, title=f"{data.name} {args.split}: accuracy {acc:.2%}")
    print(f"confusion matrix picture: {out}")
    return 0
