"""This project's checkpoint record: a plain-data dict written atomically (reading is in `checkpoints.loading`).

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

import io
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ultralytics.utils import write_atomic
from ultralytics.utils.files import is_write_failure, write_failure
from ultralytics.version import __version__

FORMAT = "ultralytics-biformer-ckpt-v1"


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save `obj` into memory, then write the bytes to a temp file beside `path`, fsync and os.replace it.

    Serialising first means a full disk shows up as the OSError of a plain write (raised as FileWriteError: the
    file, the free space, what was kept) rather than torch's "unexpected pos" RuntimeError, and never leaves a
    partial file at `path` or a temp file beside it: a previous `path` stays intact.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise (write_failure(path, e, existed=False) if is_write_failure(e) else e) from e
    buf = io.BytesIO()
    torch.save(obj, buf)
    return write_atomic(path, buf.getbuffer())


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
