"""File helpers of the published `ultralytics.utils.files`: numbered run paths, file age/date/size, newest run."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

_MB = 1 << 20


def _numbered(path: Path, sep: str, n: int) -> Path:
    """`path` with `{sep}{n}` appended to its name (before the extension when `path` is an existing file)."""
    if path.is_file():
        return path.with_name(f"{path.stem}{sep}{n}{path.suffix}")
    return path.with_name(f"{path.name}{sep}{n}")


def increment_path(path: str | Path, exist_ok: bool = False, sep: str = "", mkdir: bool = False) -> Path:
    """`path` if it is free (or `exist_ok`), else the first free of path{sep}2, path{sep}3, ...

    A file keeps its extension last (`a.txt` → `a2.txt`). `mkdir=True` creates the returned path as a folder.
    The default `sep=""` gives this project's run names (train, train2, ...); the published package defaults
    to `sep="-"` (train-2), so pass `sep="-"` for its names.
    """
    path = Path(path)
    found = path
    if path.exists() and not exist_ok:
        n = 2
        while (found := _numbered(path, sep, n)).exists():
            n += 1
    if mkdir:
        found.mkdir(parents=True, exist_ok=True)
    return found


def _mtime(path: str | Path) -> datetime:
    return datetime.fromtimestamp(Path(path).stat().st_mtime)


def file_age(path: str | Path = __file__) -> int:
    """Whole days since `path` was last modified (FileNotFoundError when it does not exist)."""
    return (datetime.now() - _mtime(path)).days


def file_date(path: str | Path = __file__) -> str:
    """Modification date of `path` as 'YYYY-M-D' (no zero padding, e.g. '2026-1-9')."""
    t = _mtime(path)
    return f"{t.year}-{t.month}-{t.day}"


def file_size(path: str | Path | None) -> float:
    """Size in MB (2**20 bytes) of a file, or of all files under a folder; 0.0 for None or a missing path."""
    if not path:
        return 0.0
    path = Path(path)
    if path.is_file():
        return path.stat().st_size / _MB
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / _MB
    return 0.0


def get_latest_run(search_dir: str | Path = ".") -> str:
    """Path of the most recently written last*.pt under `search_dir` (recursively), or '' when there is none."""
    found = list(Path(search_dir).rglob("last*.pt"))
    return str(max(found, key=os.path.getctime)) if found else ""
