"""Checkpoints as plain data: atomic save, `weights_only=True` load, our format, weight transfer by name + shape.

A checkpoint of this project is a dict of tensors, strings, numbers, lists and dicts (no pickled classes):

    epoch          int    0-based index of the last completed epoch (resume starts at epoch + 1)
    best_fitness   float  best 0.1·mAP50 + 0.9·mAP50-95 so far (None before the first validation)
    model          dict   state_dict of the de-paralleled training model (float32)
    model_yaml     dict   the model's yaml dict (rebuilds the architecture without any code in the file)
    ema            dict   state_dict of the EMA model (None when there is none)
    updates        int    EMA update count
    optimizer      dict   optimizer state_dict (None once training finished)
    train_args     dict   the run's config as plain values
    train_metrics  dict   metrics of the epoch (results.csv keys) and fitness
    names          dict   {class id: name}
    stride         list   strides of the detection head
    finished       bool   True once the run completed (resume then refuses)
    date, version  str    ISO time of writing and the package version
    format         str    FORMAT below, to tell our files from published ones
"""

from __future__ import annotations

import os
import pickle
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ultralytics.utils import LOGGER

FORMAT = "ultralytics-biformer-ckpt-v1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or is not of this project's format."""


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save `obj` to a temp file in the same folder, then os.replace it onto `path`.

    A failure (full disk, kill, unpicklable object) never leaves a partial file at `path`; the temp file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint as this project's format: ours with `torch.load(weights_only=True)`, a published one
    through the allowlisted reader of `utils.published` (no code runs either way); clear errors otherwise."""
    from ultralytics.utils.published import is_published_checkpoint, read_published_checkpoint

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' not found")
    if is_published_checkpoint(path):
        return read_published_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint '{path}' cannot be read safely (torch.load with weights_only=True refused it: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). It is neither a checkpoint of this "
            "project nor a published YOLOv8 one; only load checkpoints you trust"
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or not isinstance(ckpt["model"], dict):
        raise CheckpointError(f"checkpoint '{path}' is not a model checkpoint of this project (no 'model' state_dict)")
    return ckpt


def plain(obj: Any) -> Any:
    """A copy of `obj` reduced to plain values (Path → str, tuples → lists, numpy scalars → Python)."""
    if isinstance(obj, dict):
        return {(k if isinstance(k, (int, str)) else str(k)): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return str(obj)


def state_dict_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A plain dict copy of the model's state_dict (tensors detached, on the CPU)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def make_checkpoint(model: nn.Module, ema: nn.Module | None = None, *, epoch: int = -1,
                    best_fitness: float | None = None, updates: int = 0, optimizer: dict | None = None,
                    train_args: dict | None = None, train_metrics: dict | None = None,
                    finished: bool = False) -> dict:
    """Assemble a checkpoint dict of this project's format from a model and the training state."""
    from ultralytics import __version__

    return {
        "epoch": int(epoch),
        "best_fitness": None if best_fitness is None else float(best_fitness),
        "model": state_dict_of(model),
        "model_yaml": plain(getattr(model, "yaml", None)),
        "ema": state_dict_of(ema) if ema is not None else None,
        "updates": int(updates),
        "optimizer": optimizer,
        "train_args": plain(train_args or {}),
        "train_metrics": plain(train_metrics or {}),
        "names": {int(k): str(v) for k, v in (getattr(model, "names", None) or {}).items()},
        "stride": [float(s) for s in getattr(model, "stride", torch.zeros(0)).tolist()],
        "finished": bool(finished),
        "date": datetime.now().isoformat(timespec="seconds"),
        "version": __version__,
        "format": FORMAT,
    }


def model_from_checkpoint(ckpt: dict, prefer_ema: bool = True, verbose: bool = False) -> nn.Module:
    """Rebuild the DetectionModel of a checkpoint (architecture from model_yaml, weights from ema or model)."""
    from ultralytics.nn.tasks import DetectionModel

    yaml_dict = ckpt.get("model_yaml")
    if not isinstance(yaml_dict, dict):
        raise CheckpointError("checkpoint has no 'model_yaml' to rebuild the model from")
    model = DetectionModel(yaml_dict, verbose=verbose)
    weights = ckpt.get("ema") if prefer_ema and ckpt.get("ema") else ckpt["model"]
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"checkpoint weights do not fit its model_yaml: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    model.names = {int(k): str(v) for k, v in (ckpt.get("names") or model.names).items()}
    args = ckpt.get("train_args") or {}
    model.args = {k: args[k] for k in ("box", "cls", "dfl") if k in args} or None
    return model.float()


def transfer_weights(model: nn.Module, weights: dict[str, torch.Tensor], verbose: bool = True) -> tuple[int, int]:
    """Copy every tensor of `weights` whose name and shape match one of `model`; return (transferred, total).

    total is the number of entries of the model's state_dict. Logs 'Transferred X/Y items from weights'.
    """
    own = model.state_dict()
    matched = {k: v for k, v in weights.items()
               if isinstance(v, torch.Tensor) and k in own and own[k].shape == v.shape}
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in matched.items()}, strict=False)
    if verbose:
        LOGGER.info(f"Transferred {len(matched)}/{len(own)} items from weights")
    return len(matched), len(own)


def weights_of(source: str | Path | dict | nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict to transfer from a checkpoint path, a checkpoint dict, a state_dict or a module."""
    if isinstance(source, nn.Module):
        return source.state_dict()
    if isinstance(source, (str, Path)):
        source = load_checkpoint(source)
    if isinstance(source, dict) and "model" in source and isinstance(source["model"], dict):
        return source.get("ema") or source["model"]
    if isinstance(source, dict):
        return source
    raise TypeError(f"cannot take weights from a {type(source).__name__}; pass a *.pt path, a state_dict or a model")
