"""Reading checkpoints into models: ours (`torch.load(weights_only=True)`) and published ones (the allowlisted
reader), rebuilding the DetectionModel from the record, and transferring weights by name and shape."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.nn as nn

from ultralytics.checkpoints.published import is_published_checkpoint, read_published_checkpoint
from ultralytics.checkpoints.records import atomic_save
from ultralytics.errors import CheckpointError, MissingFileError, ModelConfigError
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import LOGGER


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint as this project's format: ours with `torch.load(weights_only=True)`, a published one
    through the allowlisted reader of `checkpoints.published` (no code runs either way); clear errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint '{path}' not found")
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




def model_from_checkpoint(ckpt: dict, prefer_ema: bool = True, verbose: bool = False) -> nn.Module:
    """Rebuild the DetectionModel of a checkpoint (architecture from model_yaml, weights from ema or model)."""
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


def _check_fit(own: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], where: str) -> None:
    """Raise a CheckpointError naming the first few missing, unexpected and mis-shaped entries."""
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(v)} {what} (first: {', '.join(v[:3])})" for what, v in
                 (("missing", missing), ("unexpected", unexpected), ("with another shape", shapes)) if v]
        raise CheckpointError(f"{where}: the weights do not fit the model rebuilt from its yaml: " + "; ".join(parts))


def build_model_from_published(source: str | Path | dict, verbose: bool = False) -> torch.nn.Module:
    """Rebuild this project's DetectionModel from a published checkpoint (a path, or the dict read from one).

    Architecture from the checkpoint's yaml (its nc), weights loaded strictly, names and train hyperparameters
    (box, cls, dfl) set. Raises CheckpointError when the weights do not fit the rebuilt model.
    """
    ckpt = source if isinstance(source, dict) else read_published_checkpoint(source)
    where = f"checkpoint '{ckpt.get('file', source if not isinstance(source, dict) else '<dict>')}'"
    try:
        yaml_dict = ckpt["model_yaml"]
        model = DetectionModel(yaml_dict, ch=yaml_dict.get("ch", yaml_dict.get("channels", 3)), verbose=verbose)
    except (ModelConfigError, KeyError, TypeError) as e:
        raise CheckpointError(f"{where}: its model yaml cannot be built by this project: {e}") from None
    weights = ckpt.get("ema") or ckpt["model"]
    _check_fit(model.state_dict(), weights, where)
    model.load_state_dict(weights, strict=True)
    model.names = ckpt.get("names") or model.names
    args = ckpt.get("train_args") or {}
    model.args = {k: args[k] for k in ("box", "cls", "dfl") if k in args} or None
    stride = [float(s) for s in model.stride.tolist()]
    if ckpt.get("stride") and stride != list(ckpt["stride"]):
        LOGGER.warning(f"WARNING ⚠️ {where}: strides {ckpt['stride']} differ from the rebuilt model's {stride}")
    return model.float()


def strip_optimizer(path: str | Path) -> dict:
    """Mark the checkpoint at `path` finished and drop its optimizer state (rewritten atomically if that changes
    it); return the checkpoint. A finished run's best.pt is smaller and cannot be resumed by mistake."""
    ckpt = load_checkpoint(path)
    if ckpt.get("optimizer") is not None or not ckpt.get("finished"):
        ckpt.update(optimizer=None, finished=True)
        atomic_save(ckpt, path)
    return ckpt
