"""Package-wide constants, logging and user settings."""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from ultralytics.errors import ConfigError
from ultralytics.utils.files import is_write_failure, write_failure

ROOT = Path(__file__).resolve().parents[1]  # the `ultralytics` package folder
CFG_DIR = ROOT / "cfg"
DEFAULT_CFG_PATH = CFG_DIR / "default.yaml"
ASSETS = ROOT / "assets" / "images"  # bundled sample images (8 COCO photos, labels in ../labels)
RANK = int(os.getenv("RANK", -1))
LOCAL_RANK = int(os.getenv("LOCAL_RANK", -1))
_CHUNK = 1 << 24  # bytes per os.write call
NUM_THREADS = min(8, max(1, (os.cpu_count() or 1) - 1))


def _make_logger() -> logging.Logger:
    logger = logging.getLogger("ultralytics")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    # Only rank 0 (or a single process) talks; other DDP ranks stay quiet.
    logger.setLevel(logging.INFO if RANK in {-1, 0} else logging.WARNING)
    return logger


LOGGER = _make_logger()


def user_config_dir() -> Path:
    """Folder for the user settings file (override with YOLO_CONFIG_DIR)."""
    env = os.getenv("YOLO_CONFIG_DIR")
    path = Path(env) if env else Path.home() / ".config" / "Ultralytics-BiFormer"
    return path


def yaml_load(file: str | Path) -> dict:
    """Load a YAML file with `yaml.safe_load`; an empty file gives {}."""
    with open(file, encoding="utf-8", errors="replace") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return data


# default.yaml as a namespace, at its published path. A plain SimpleNamespace (utils sits below cfg): the trainer,
# validator, predictor and exporter given it as `cfg` read default.yaml itself, with its mode's defaults.
DEFAULT_CFG = SimpleNamespace(**yaml_load(DEFAULT_CFG_PATH))


def write_atomic(file: str | Path, data: str | bytes | bytearray | memoryview) -> Path:
    """Write `data` (text as UTF-8) to a temp file beside `file`, fsync it, then os.replace it onto `file`.

    Readers see the old file or the new one, never a partial write; parents are created and a failed write
    leaves no temp file behind. A full disk or an unwritable folder raises FileWriteError (one line: the file, the
    free space, what was kept); other errors propagate unchanged.
    """
    file = Path(file)
    existed = file.exists()
    view = memoryview(data.encode("utf-8") if isinstance(data, str) else data).cast("B")
    tmp = file.with_name(f".{file.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            done = 0
            while done < len(view):  # os.write may write less than asked
                done += os.write(fd, view[done:done + _CHUNK])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, file)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if is_write_failure(e):
            raise write_failure(file, e, existed) from e
        raise
    return file


def yaml_save(file: str | Path, data: dict) -> None:
    """Write a dict as YAML (paths become strings), atomically."""
    plain = {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}
    write_atomic(file, yaml.safe_dump(plain, sort_keys=False, allow_unicode=True))


class Settings(dict):
    """User settings (`datasets_dir`, `runs_dir`, ...) persisted in a YAML file."""

    def __init__(self, file: str | Path | None = None):
        self.file = Path(file) if file else user_config_dir() / "settings.yaml"
        cwd = Path.cwd()
        self.defaults: dict[str, Any] = {
            "datasets_dir": str(cwd / "datasets"),
            "runs_dir": str(cwd / "runs"),
            "weights_dir": str(cwd / "weights"),
        }
        super().__init__(self.defaults)
        if self.file.exists():
            try:
                stored = yaml_load(self.file)
            except (OSError, yaml.YAMLError, ValueError) as e:
                LOGGER.warning(f"WARNING ⚠️ settings file {self.file} unreadable ({e}); using defaults")
                stored = {}
            self.update({k: v for k, v in stored.items() if k in self.defaults})

    def update(self, *args, **kwargs) -> None:  # type: ignore[override]
        new = dict(*args, **kwargs)
        unknown = set(new) - set(self.defaults)
        if unknown:
            raise KeyError(f"unknown setting(s) {sorted(unknown)}; valid settings are {sorted(self.defaults)}")
        super().update(new)

    def save(self) -> None:
        yaml_save(self.file, dict(self))

    def reset(self) -> None:
        self.clear()
        super().update(self.defaults)
        self.save()


SETTINGS = Settings()
