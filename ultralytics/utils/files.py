"""File helpers of the published `ultralytics.utils.files`: numbered run paths, file age/date/size, newest run; and
the one-line report of a write that failed (disk full, read-only folder) used by every writer of a run folder."""

from __future__ import annotations

import errno
import os
import shutil
from datetime import datetime
from pathlib import Path

from ultralytics.errors import FileWriteError

_MB = 1 << 20
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
READ_ONLY = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def human_size(n: float) -> str:
    """Bytes as '0 B', '512 B', '12.3 MB', '4.1 GB'."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_space(path: str | Path) -> str:
    """Free space of the filesystem holding `path` (its nearest existing parent), e.g. '12.3 MB free'."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return f"{human_size(shutil.disk_usage(p).free)} free"
    except OSError:
        return "free space unknown"


def is_write_failure(e: BaseException) -> bool:
    """Whether `e` is an OSError of a full disk (ENOSPC, EDQUOT, EFBIG) or an unwritable folder (EACCES, EPERM,
    EROFS): the failures a user fixes by freeing space or choosing another folder."""
    return isinstance(e, OSError) and not isinstance(e, FileWriteError) and e.errno in DISK_FULL | READ_ONLY


def write_failure(file: str | Path, e: OSError, existed: bool) -> FileWriteError:
    """The one-line error of a failed write of `file`: the cause, the free space and what was kept (the previous
    file unchanged, or none created; never a partial or temp file)."""
    file = Path(file)
    cause = "the disk is full" if e.errno in DISK_FULL else "the folder is read-only (no write permission)"
    kept = f"the previous {file.name} is unchanged" if existed else f"{file.name} was not created"
    return FileWriteError(f"cannot write {file}: {cause} ({free_space(file)}); {kept} and no partial file was left",
                          errno=e.errno, filename=str(file))


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
