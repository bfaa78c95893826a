"""The run folder (SPEC §7): its name, results.csv, finding the newest last.pt to resume, and what a finished
training hands back (`TrainResult`)."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ultralytics.errors import MissingFileError
from ultralytics.utils import SETTINGS, write_atomic
from ultralytics.utils.files import increment_path

RESULTS_COLUMNS = (
    "epoch", "time", "train/box_loss", "train/cls_loss", "train/dfl_loss", "metrics/precision(B)",
    "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)", "val/box_loss", "val/cls_loss",
    "val/dfl_loss", "lr/pg0", "lr/pg1", "lr/pg2",
)
LOSS_NAMES = ("box_loss", "cls_loss", "dfl_loss")


@dataclass
class TrainResult:
    """What one training run hands back, in-process and from DDP workers alike.

    `metrics` is the DetMetrics of the final validation of best.pt (None when nothing was validated), `imgsz` the
    training size, `args` the run's config as a plain dict, `model` the final EMA model when the run was trained
    in this process (None under DDP; best.pt holds the weights then).
    """

    save_dir: Path
    metrics: Any = None
    imgsz: int | None = None
    args: dict = field(default_factory=dict)
    model: nn.Module | None = None

    @property
    def best(self) -> Path:
        return self.save_dir / "weights" / "best.pt"

    @property
    def last(self) -> Path:
        return self.save_dir / "weights" / "last.pt"


def get_save_dir(project: str | None, name: str | None, exist_ok: bool = False, task: str = "detect") -> Path:
    """{project or runs_dir/task}/{name or 'train'}{'', 2, 3, ...}; exist_ok reuses the folder."""
    root = Path(project) if project else Path(SETTINGS["runs_dir"]) / task
    return increment_path(root / (name or "train"), exist_ok=exist_ok)


def find_last_checkpoint(search_dir: str | Path | None = None) -> Path:
    """The most recently written last*.pt under `search_dir` (default: the runs_dir setting)."""
    root = Path(search_dir or SETTINGS["runs_dir"])
    found = sorted(root.rglob("last*.pt"), key=os.path.getmtime) if root.exists() else []
    if not found:
        raise MissingFileError(f"resume=True found no last.pt under {root}; pass the checkpoint itself, "
                                "e.g. resume=runs/detect/train/weights/last.pt")
    return found[-1]


def loss_dict(items: Any, prefix: str) -> dict[str, float]:
    """{prefix/box_loss, prefix/cls_loss, prefix/dfl_loss} from a 3-vector of loss items."""
    values = [float(v) for v in items] if items is not None else [0.0, 0.0, 0.0]
    return {f"{prefix}/{k}": v for k, v in zip(LOSS_NAMES, values)}


class ResultsCSV:
    """results.csv with exactly RESULTS_COLUMNS; rewritten atomically after every epoch.

    On resume, rows beyond the last completed epoch (a kill between the csv and last.pt writes) are dropped,
    so the file never has duplicated or missing epochs.
    """

    def __init__(self, file: str | Path):
        self.file = Path(file)
        self.rows: list[dict[str, str]] = []

    def load(self, keep_epochs: int | None = None) -> None:
        """Read existing rows; keep those with epoch <= keep_epochs (1-based) when given."""
        self.rows = []
        if not self.file.exists():
            return
        with open(self.file, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                try:
                    epoch = int(float(row["epoch"]))
                except (KeyError, TypeError, ValueError):
                    continue
                if keep_epochs is None or epoch <= keep_epochs:
                    self.rows = [r for r in self.rows if int(r["epoch"]) != epoch]
                    self.rows.append({k: row.get(k, "") for k in RESULTS_COLUMNS})

    @property
    def last_time(self) -> float:
        """Cumulative training seconds of the last row (0 when empty)."""
        try:
            return float(self.rows[-1]["time"]) if self.rows else 0.0
        except ValueError:
            return 0.0

    def add(self, values: dict[str, Any]) -> None:
        """Append (or replace) the row of values['epoch'] and rewrite the file."""
        row = {}
        for k in RESULTS_COLUMNS:
            v = values.get(k, 0.0)
            row[k] = str(int(v)) if k == "epoch" else f"{float(v):.6g}"
        self.rows = [r for r in self.rows if int(r["epoch"]) != int(row["epoch"])] + [row]
        self.write()

    def write(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(RESULTS_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(self.rows, key=lambda r: int(r["epoch"])))
        write_atomic(self.file, buf.getvalue())


def progress_text(epoch: int, epochs: int, device: torch.device, tloss: torch.Tensor, batch: dict) -> str:
    """The training progress bar's description: epoch, memory, mean losses, instances and image size."""
    return ("%11s" * 2 + "%11.4g" * 5) % (f"{epoch + 1}/{epochs}", memory_usage(device), *tloss.tolist(),
                                           batch["cls"].shape[0], batch["img"].shape[-1])


def memory_usage(device: torch.device) -> str:
    """Reserved GPU memory, or this process's resident memory on the CPU, as '1.23G' (for the progress bar)."""
    if device.type == "cuda":
        return f"{torch.cuda.memory_reserved(device) / 1e9:.3g}G"
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return f"{pages * os.sysconf('SC_PAGE_SIZE') / 1e9:.3g}G"
    except (OSError, ValueError, IndexError, AttributeError):
        return "-"
