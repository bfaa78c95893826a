"""Resuming a run: which checkpoint, which settings, which run folder.

`resume=True` takes the newest last.pt under the runs_dir setting, `resume=path` that file. The checkpoint's own
train_args become the run's settings; only RESUME_OVERRIDABLE keys may change (others are ignored with a warning).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ultralytics.engine.run_files import find_last_checkpoint
from ultralytics.utils import LOGGER
from ultralytics.utils.checkpoint import load_checkpoint

RESUME_OVERRIDABLE = ("device", "workers", "data", "plots", "verbose")


def resume_path(resume: bool | str | Path) -> Path:
    """The checkpoint `resume=` names: the newest last.pt under runs_dir for True, else the path itself."""
    return find_last_checkpoint() if resume is True else Path(resume)


@dataclass
class ResumePoint:
    """A checkpoint to continue: its path, contents and the settings the run continues with."""

    path: Path
    ckpt: dict
    args: dict

    @property
    def save_dir(self) -> Path:
        """The run folder of the checkpoint (…/weights/last.pt → …)."""
        if self.path.parent.name == "weights":
            return self.path.parent.parent
        return Path(self.args.get("save_dir") or self.path.parent)


def load_resume_point(resume: bool | str | Path, overrides: dict[str, Any]) -> ResumePoint:
    """Check that `resume` names a resumable checkpoint and merge the allowed `overrides` into its train_args."""
    path = resume_path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"resume checkpoint '{path}' not found; pass resume=path/to/weights/last.pt")
    ckpt = load_checkpoint(path)
    if ckpt.get("finished"):
        raise ValueError(f"training already finished; nothing to resume ({path}). To train further start a new "
                         f"run from it: model={path} epochs=N")
    if ckpt.get("optimizer") is None or not ckpt.get("train_args"):
        raise ValueError(f"checkpoint '{path}' holds no optimizer state or train_args, so it cannot be resumed")
    args = dict(ckpt["train_args"])
    args.update({k: overrides[k] for k in RESUME_OVERRIDABLE if k in overrides})
    ignored = sorted(k for k in overrides if k not in (*RESUME_OVERRIDABLE, "resume", "model", "mode", "task")
                     and overrides[k] != args.get(k))
    if ignored:
        LOGGER.warning(f"WARNING ⚠️ resuming keeps the run's own settings; ignoring {', '.join(ignored)} "
                       f"(only {', '.join(RESUME_OVERRIDABLE)} may change)")
    args.update(resume=str(path), model=str(path))
    return ResumePoint(path, ckpt, args)


__all__ = ["RESUME_OVERRIDABLE", "ResumePoint", "load_resume_point", "resume_path"]
