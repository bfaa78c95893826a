"""Label cache files: verified labels stored as plain numpy arrays plus a JSON header, no pickle.

The cache sits next to the labels folder (`labels/train2017.cache`). Image paths are stored relative to the
cache's folder, so a dataset moved elsewhere still matches; the hash covers those relative paths plus each
file's size and mtime, so any added, removed or edited image/label file invalidates it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ultralytics.utils import LOGGER, write_atomic

CACHE_VERSION = "yolo-det-labels-1"


def files_hash(files: list[str], base: Path, extra: str = "") -> str:
    """SHA-256 over each file's path relative to `base`, its size and mtime (missing files count too)."""
    h = hashlib.sha256(f"{CACHE_VERSION}|{extra}".encode())
    for f in files:
        rel = os.path.relpath(f, base)
        try:
            st = os.stat(f)
            h.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{rel}|missing\n".encode())
    return h.hexdigest()


def save_cache(path: Path, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bool:
    """Write header (JSON) + numeric arrays into one .npz-format file atomically; False (and a warning) on failure."""
    payload = {"header": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)}
    payload.update({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    try:
        buf = io.BytesIO()
        np.savez(buf, **payload)
        write_atomic(path, buf.getvalue())
        return True
    except OSError as e:
        LOGGER.warning(f"WARNING ⚠️ label cache not saved to {path}: {e}")
        return False


def load_cache(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """Read a cache written by save_cache (allow_pickle=False); None when absent, unreadable or another version."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode("utf-8"))
            arrays = {k: z[k] for k in z.files if k != "header"}
    except Exception as e:  # corrupt or foreign file: rebuild
        LOGGER.warning(f"WARNING ⚠️ ignoring unreadable label cache {path} ({type(e).__name__}); rebuilding it")
        return None
    if header.get("version") != CACHE_VERSION:
        return None
    return header, arrays
