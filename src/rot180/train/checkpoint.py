"""Checkpoints: safetensors tensors plus JSON metadata, written atomically. No pickle.

File layout (one ``.safetensors`` file):

- the model's ``state_dict`` under its PyTorch names (``"0.weight"``, ...), so
  ``safetensors.torch.load_file(path)`` loads into the equivalent ``torch.nn.Module``
  (drop the ``optimizer.`` entries, or pass ``strict=False``);
- the optimizer's arrays under ``"optimizer.<param index>.<name>"``;
- the safetensors header metadata ``{"rot180": <JSON>}`` holding everything else: model name and
  config, the optimizer's scalar state and hyper-parameters, epoch, step, RNG state, and any
  user metadata.

Writing goes to a temporary file in the same directory, is flushed and fsync'ed, then renamed over
the target (``os.replace`` is atomic on POSIX), and the directory is fsync'ed: a crash at any
moment leaves either the old checkpoint or the new one, never a torn file. :func:`write_file`
does the same for every other file a run writes (metrics, figures), with the same message on a
failure.

Reading treats the file as hostile: regular files only, at most :data:`MAX_CHECKPOINT_BYTES`,
size checked before a byte is read (:func:`rot180._files.read_regular`); metadata nested too
deep, of the wrong types or disagreeing with the tensors is a :class:`CheckpointError` naming
the file, raised before any model is built (see :mod:`rot180.train.card`); weights of another
dtype than the model's are listed, never cast.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write_bytes, read_regular, write_file

__all__ = ["CheckpointError", "Checkpoint", "save_checkpoint", "load_checkpoint",
           "atomic_write_bytes", "write_file", "MAX_CHECKPOINT_BYTES"]

_OPT_PREFIX = "optimizer."
_FORMAT = "rot180-checkpoint-v1"
#: The largest checkpoint read (1 GiB; the zoo's models at their defaults take under 3 MB).
MAX_CHECKPOINT_BYTES = 1 << 30


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, truncated, of the wrong format or inconsistent."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns."""

    path: Path
    model_state: dict[str, np.ndarray]
    optimizer_state: dict[str, Any] | None
    meta: dict[str, Any] = field(default_factory=dict)

    def card(self) -> Any:
        """The validated :class:`~rot180.train.card.ModelCard` (model, image shape, classes,
        normalisation) that evaluate, predict and saliency read."""
        from .card import ModelCard

        return ModelCard.from_meta(self.meta, self.model_state, self.path)

    def build_model(self) -> Any:
        """Rebuild the model from ``meta["model"]`` and ``meta["model_config"]`` and load it.

        The configuration is checked against the tensors first (nothing is allocated for a
        forged ``width`` or ``num_classes``); weights whose dtype is not the model's (float16,
        integers where floats belong) are listed in a :class:`CheckpointError`, not cast.
        """
        from ..models import build_model
        from .card import check_model_spec

        if not self.meta.get("model"):
            raise CheckpointError(
                f"{self.path}: checkpoint records no model name, so the model cannot be rebuilt. "
                "Build the model yourself and call model.load_state_dict(ckpt.model_state)."
            )
        name, config = check_model_spec(self.meta, self.model_state, self.path)
        model = build_model(name, **config)
        # The first *floating* entry: safetensors returns tensors in no fixed order, and an
        # integer buffer (BatchNorm's num_batches_tracked) says nothing about the dtype.
        dtype = next((v.dtype for v in self.model_state.values()
                      if v.dtype in (np.float32, np.float64)), None)
        if dtype is not None:
            model.astype(dtype)
        own = model.state_dict()
        wrong = [f"{k} is {v.dtype} (expected {own[k].dtype})" for k, v in
                 self.model_state.items() if k in own and v.dtype != own[k].dtype]
        if wrong:
            raise CheckpointError(
                f"{self.path}: weights of the wrong dtype: {'; '.join(wrong)}. rot180 trains "
                "in float32 or float64, one dtype for the whole model; convert the file's "
                "tensors (all of them) to one of these before loading."
            )
        model.load_state_dict(self.model_state)
        return model


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict]:
    """Move every ndarray of an optimizer ``state_dict`` out into a flat tensor dict."""
    tensors: dict[str, np.ndarray] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state.get("state", {}).items():
        scalars[str(idx)] = {}
        for name, value in entry.items():
            if isinstance(value, np.ndarray):
                tensors[f"{_OPT_PREFIX}{idx}.{name}"] = value
            else:
                scalars[str(idx)][name] = value.item() if isinstance(value, np.generic) else value
    rest = {k: v for k, v in state.items() if k != "state"}
    return tensors, {"scalars": scalars, **rest}


def _join_optimizer_state(tensors: dict[str, np.ndarray], info: dict) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for idx, scalars in info.get("scalars", {}).items():
        state[int(idx)] = dict(scalars)
    for key, value in tensors.items():
        idx, name = key[len(_OPT_PREFIX):].split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, **{k: v for k, v in info.items() if k != "scalars"}}


def _contiguous(a: np.ndarray) -> np.ndarray:
    # Not np.ascontiguousarray: it turns 0-d arrays (BatchNorm's num_batches_tracked) into 1-d.
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def save_checkpoint(path: str | os.PathLike, model: Any, optimizer: Any = None, /,
                    **meta: Any) -> Path:
    """Save ``model`` (and ``optimizer``) to ``path`` as safetensors + JSON metadata, atomically.

    ``meta`` must be JSON-serialisable (e.g. ``epoch=3, step=1200, model="lenet5"``).
    """
    from safetensors.numpy import save as st_save

    tensors = {k: _contiguous(v) for k, v in model.state_dict().items()}
    header: dict[str, Any] = {"format": _FORMAT, **meta}
    if optimizer is not None:
        opt_tensors, opt_info = _split_optimizer_state(optimizer.state_dict())
        tensors.update({k: _contiguous(v) for k, v in opt_tensors.items()})
        header["optimizer"] = opt_info
        header["optimizer_class"] = type(optimizer).__name__
    try:
        text = json.dumps(header, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"save_checkpoint: metadata must be JSON-serialisable (ints, floats, strings, lists, "
            f"dicts): {exc}."
        ) from None
    write_file(path, st_save(tensors, metadata={"rot180": text}), "checkpoint")
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; never executes code from the file.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt or not a rot180 checkpoint.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"{path}: is a directory; pass the checkpoint file inside it "
            f"(e.g. {path}/last.safetensors)."
        )
    raw = read_regular(path, max_bytes=MAX_CHECKPOINT_BYTES, what="checkpoint file",
                       error=CheckpointError)
    try:
        tensors = st_load(raw)
        header = _read_metadata(raw)
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError,
            RecursionError) as exc:
        why = "metadata nested too deeply" if isinstance(exc, RecursionError) else exc
        raise CheckpointError(
            f"{path}: not a valid safetensors checkpoint (corrupt or truncated?): {why}"
        ) from None
    if header.get("format") != _FORMAT:
        raise CheckpointError(
            f"{path}: not a rot180 checkpoint (metadata format {header.get('format')!r:.80}, "
            f"expected {_FORMAT!r})."
        )
    model_state = {k: v for k, v in tensors.items() if not k.startswith(_OPT_PREFIX)}
    opt = None
    if "optimizer" in header:
        opt_tensors = {k: v for k, v in tensors.items() if k.startswith(_OPT_PREFIX)}
        try:
            opt = _join_optimizer_state(opt_tensors, header.pop("optimizer"))
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"{path}: the optimizer state is malformed ({type(exc).__name__}: {exc}). "
                "Resume from a last.safetensors written by rot180 train, or train afresh."
            ) from None
    return Checkpoint(path, model_state, opt, header)


def _read_metadata(raw: bytes) -> dict[str, Any]:
    """Parse the ``rot180`` JSON entry of a safetensors header (the 8-byte length + JSON)."""
    if len(raw) < 8:
        raise ValueError("file shorter than the 8-byte safetensors header length")
    n = int.from_bytes(raw[:8], "little")
    if n > len(raw) - 8:
        raise ValueError(f"header length {n} exceeds file size {len(raw)}")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.get("__metadata__") or {}
    if "rot180" not in meta:
        return {}
    value = json.loads(meta["rot180"])
    if not isinstance(value, dict):
        raise ValueError("rot180 metadata is not a JSON object")
    return value
