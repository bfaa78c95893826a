"""The config of a training run, and resuming one: which checkpoint, which settings, which run folder.

`resume=True` takes the newest last.pt under the runs_dir setting, `resume=path` that file. The checkpoint's own
train_args become the run's settings; only RESUME_OVERRIDABLE keys may change (others are ignored with a warning).
`build_train_config` makes the run's one validated config either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ultralytics.cfg import DEFAULT_CFG_PATH, IterableSimpleNamespace, get_cfg
from ultralytics.checkpoints import load_checkpoint
from ultralytics.engine.run_files import find_last_checkpoint
from ultralytics.errors import CheckpointError, MissingFileError
from ultralytics.utils import LOGGER

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


def _published_refusal(path: Path, ckpt: dict) -> str:
    """Why a checkpoint of the published ultralytics package cannot be resumed here, and what to do instead."""
    instead = f"start a new run from its weights instead: model={path} epochs=N"
    if ckpt.get("optimizer_dropped"):
        return (f"cannot resume '{path}': it was written by the published ultralytics package and its optimizer state "
                f"is not used here (its parameter order is not this project's); {instead}")
    return (f"cannot resume '{path}': it is a finished run of the published ultralytics package (no optimizer "
            f"state); {instead}")


def load_resume_point(resume: bool | str | Path, overrides: dict[str, Any]) -> ResumePoint:
    """Check that `resume` names a resumable checkpoint and merge the allowed `overrides` into its train_args."""
    path = resume_path(resume)
    if not path.is_file():
        raise MissingFileError(f"resume checkpoint '{path}' not found; pass resume=path/to/weights/last.pt")
    ckpt = load_checkpoint(path)
    if ckpt.get("source") == "published":
        raise CheckpointError(_published_refusal(path, ckpt))
    if ckpt.get("finished"):
        raise CheckpointError(f"training already finished; nothing to resume ({path}). To train further start a new "
                         f"run from it: model={path} epochs=N")
    if ckpt.get("optimizer") is None or not ckpt.get("train_args"):
        raise CheckpointError(f"checkpoint '{path}' holds no optimizer state or train_args, so it cannot be resumed")
    args = dict(ckpt["train_args"])
    args.update({k: overrides[k] for k in RESUME_OVERRIDABLE if k in overrides})
    ignored = sorted(k for k in overrides if k not in (*RESUME_OVERRIDABLE, "resume", "model", "mode", "task")
                     and overrides[k] != args.get(k))
    if ignored:
        LOGGER.warning(f"WARNING ⚠️ resuming keeps the run's own settings; ignoring {', '.join(ignored)} "
                       f"(only {', '.join(RESUME_OVERRIDABLE)} may change)")
    args.update(resume=str(path), model=str(path))
    return ResumePoint(path, ckpt, args)


def build_train_config(cfg: Any = DEFAULT_CFG_PATH, overrides: dict[str, Any] | None = None
                       ) -> tuple[IterableSimpleNamespace, ResumePoint | None]:
    """The one validated config of a training run, and the checkpoint it resumes (None for a new run).

    A new run merges `cfg` and `overrides` (mode=train). A resumed run (`resume=` in `overrides`) continues with
    the checkpoint's own settings plus the RESUME_OVERRIDABLE keys of `overrides`.
    """
    overrides = {**(overrides or {}), "mode": "train"}
    return resolve_resume(get_cfg(cfg, overrides), overrides)


def resolve_resume(args: IterableSimpleNamespace, overrides: dict[str, Any]
                   ) -> tuple[IterableSimpleNamespace, ResumePoint | None]:
    """`args` itself for a new run; for `resume=` the config the run continues with (the checkpoint's own,
    validated as it is read, plus the RESUME_OVERRIDABLE keys of `overrides`) and the checkpoint."""
    if not args.resume:
        return args, None
    point = load_resume_point(args.resume, overrides)
    return get_cfg(point.args), point


__all__ = ["RESUME_OVERRIDABLE", "ResumePoint", "build_train_config", "load_resume_point", "resolve_resume",
           "resume_path"]
