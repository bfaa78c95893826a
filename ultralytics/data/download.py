"""Fetching a dataset named by a yaml's `download` key: zip URLs (urllib) or a named builtin generator."""

from __future__ import annotations

import shutil
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ultralytics.data.synthetic import generate_shapes
from ultralytics.errors import DatasetError
from ultralytics.utils import LOGGER


def _generate_shapes(root: Path) -> None:
    generate_shapes(root)


# `download: builtin:<name>` looks the name up here; nothing else is ever executed from a yaml.
BUILTIN_DATASETS: dict[str, Callable[[Path], None]] = {"shapes": _generate_shapes}


def safe_unzip(zip_file: Path, dest: Path) -> None:
    """Extract a zip into `dest`, refusing members that would land outside it (absolute paths, `..`)."""
    dest = dest.resolve()
    with zipfile.ZipFile(zip_file) as zf:
        for member in zf.namelist():
            target = (dest / member).resolve()
            if target != dest and dest not in target.parents:
                raise DatasetError(f"unsafe path {member!r} in {zip_file}; refusing to extract")
        zf.extractall(dest)


def download_file(url: str, dest_dir: Path, timeout: float = 30.0) -> Path:
    """Download `url` into `dest_dir` with urllib (streamed to a temp file, then renamed); return the file path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = Path(url.split("?")[0]).name or "download"
    out = dest_dir / name
    tmp = out.with_name(out.name + ".part")
    LOGGER.info(f"Downloading {url} to {out} ...")
    with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
        shutil.copyfileobj(r, f, length=1 << 20)
    tmp.replace(out)
    return out


def _entries(download: Any) -> list[tuple[str, str]]:
    """Normalise `download` (a URL, a list of URLs, or {url, dir} mappings) to [(url, subdir)]."""
    items = download if isinstance(download, list) else [download]
    out = []
    for it in items:
        if isinstance(it, str):
            out.append((it, ""))
        elif isinstance(it, dict) and isinstance(it.get("url"), str):
            out.append((it["url"], str(it.get("dir", ""))))
        else:
            raise DatasetError(f"unsupported 'download' entry {it!r}: use a URL string or a mapping with 'url' (and 'dir')")
    return out


def run_download(download: Any, root: Path, datasets_dir: Path) -> None:
    """Fetch a dataset whose files are missing.

    `builtin:<name>` runs the registered generator into `root`. URLs of .zip files are downloaded into
    `datasets_dir` (or `datasets_dir/<dir>` for {url, dir} entries) and unzipped there, then deleted.
    Raises whatever the generator or urllib raises, or ValueError for an unknown builtin name.
    """
    if isinstance(download, str) and download.startswith("builtin:"):
        name = download.split(":", 1)[1].strip()
        if name not in BUILTIN_DATASETS:
            raise DatasetError(f"unknown builtin dataset {name!r}; known: {sorted(BUILTIN_DATASETS)}")
        LOGGER.info(f"Generating the builtin '{name}' dataset into {root} ...")
        BUILTIN_DATASETS[name](root)
        return
    for url, subdir in _entries(download):
        target = (datasets_dir / subdir) if subdir else datasets_dir
        f = download_file(url, target)
        if f.suffix.lower() == ".zip":
            safe_unzip(f, target)
            f.unlink(missing_ok=True)
