"""Dataset YAML resolution, image/label path rules and per-file verification."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from ultralytics.data.download import run_download
from ultralytics.errors import DatasetError, MissingFileError
from ultralytics.utils import CFG_DIR, LOGGER, SETTINGS, yaml_load

IMG_FORMATS = {"jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp"}
DATASETS_CFG_DIR = CFG_DIR / "datasets"
COORD_TOL = 0.01  # label coordinates within [-tol, 1 + tol] are clipped to [0, 1]; beyond that the file is rejected
MIN_IMAGE_SIDE = 10  # images smaller than this (pixels) are treated as corrupt


# ----------------------------------------------------------------------------------------------------------- paths
def img2label_paths(img_paths: list[str]) -> list[str]:
    """Label file of each image: the last `/images/` becomes `/labels/`, the extension becomes `.txt`."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    out = []
    for p in img_paths:
        p = str(p)
        head, sep, tail = p.rpartition(sa)
        base = f"{head}{sb}{tail}" if sep else p
        out.append(os.path.splitext(base)[0] + ".txt")
    return out


def is_image_file(path: str | Path) -> bool:
    """True when the file name has one of the accepted image extensions (any case)."""
    return Path(path).suffix[1:].lower() in IMG_FORMATS


def get_image_files(path: str | Path | list, root: str | Path | None = None) -> list[str]:
    """Sorted image paths from a folder (recursive), a .txt list of image paths, an image file, or a list of these.

    Relative lines of a .txt list resolve against `root` (the dataset root) or, without it, the .txt's folder.
    Raises FileNotFoundError naming the path when it does not exist or holds no images.
    """
    paths = path if isinstance(path, (list, tuple)) else [path]
    files: list[str] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = [str(f) for f in p.rglob("*") if f.is_file() and is_image_file(f)]
            if not found:
                raise MissingFileError(f"no images found in directory {p} (accepted types: {sorted(IMG_FORMATS)})")
            files += found
        elif p.is_file() and p.suffix.lower() == ".txt":
            base = Path(root) if root is not None else p.parent
            lines = [ln.strip() for ln in p.read_text(encoding="utf-8", errors="replace").splitlines()]
            found = [str(Path(ln) if Path(ln).is_absolute() else (base / ln)) for ln in lines if ln]
            found = [os.path.normpath(f) for f in found if is_image_file(f)]
            if not found:
                raise MissingFileError(f"image list {p} names no images (accepted types: {sorted(IMG_FORMATS)})")
            files += found
        elif p.is_file() and is_image_file(p):
            files.append(str(p))
        else:
            raise MissingFileError(f"image source {p} does not exist (expected a folder, a .txt list or an image)")
    return sorted(set(files))


def is_dir_writeable(path: str | Path) -> bool:
    """True when `path` is a folder we may write into: permission bits allow it (honoured even for root)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return path.is_dir() and bool(mode & stat.S_IWUSR) and os.access(path, os.W_OK)


# ---------------------------------------------------------------------------------------------------------- images
def exif_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) of a PIL image after its EXIF orientation is applied."""
    w, h = img.size
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # malformed EXIF block: keep the stored size
        orientation = 1
    return (h, w) if orientation in {5, 6, 7, 8} else (w, h)


def _pil_to_bgr(img: Image.Image) -> np.ndarray:
    """EXIF-transposed PIL image of any mode → 8-bit 3-channel BGR array."""
    img = ImageOps.exif_transpose(img)
    if img.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        a = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if img.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        a = np.clip(a / scale * 255.0, 0, 255).astype(np.uint8)
        return cv2.cvtColor(a, cv2.COLOR_GRAY2BGR)
    rgb = np.asarray(img.convert("RGB"))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def imread(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image as EXIF-corrected 8-bit BGR (grayscale, RGBA, 16-bit all become 3 x uint8).

    `shape` (h, w), when known from verification, guards against decoders that ignore EXIF.
    Raises OSError when the file cannot be decoded.
    """
    im = None
    try:
        im = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    except (OSError, cv2.error, ValueError):
        im = None
    if im is None or (shape is not None and tuple(im.shape[:2]) != tuple(shape)):
        try:
            with Image.open(path) as pil:
                im = _pil_to_bgr(pil)
        except Exception as e:
            raise OSError(f"cannot read image {path}: {e}") from e
    return im


def verify_image(im_file: str) -> tuple[int, int]:
    """Check an image opens, has a known type, is big enough and is not truncated; return its EXIF-corrected (h, w)."""
    with Image.open(im_file) as im:
        im.verify()
    with Image.open(im_file) as im:
        w, h = exif_size(im)
        fmt = (im.format or "").lower()
        if fmt == "jpeg":
            with open(im_file, "rb") as f:
                f.seek(-2, 2)
                if f.read() != b"\xff\xd9":  # no end-of-image marker: decode fully to find out whether it is truncated
                    im.load()
    if fmt not in IMG_FORMATS | {"jpeg", "mpo"}:
        raise ValueError(f"unsupported image format {fmt!r}")
    if w < MIN_IMAGE_SIDE or h < MIN_IMAGE_SIDE:
        raise ValueError(f"image size {w}x{h} is below {MIN_IMAGE_SIDE} pixels")
    return h, w


# ---------------------------------------------------------------------------------------------------------- labels
class ClassIdError(ValueError):
    """A label row names a class id >= nc."""


def parse_label_file(lb_file: str, nc: int) -> tuple[np.ndarray, str]:
    """Parse a YOLO detection label file into an (n, 5) float32 array [cls, cx, cy, w, h].

    Returns (labels, warning). Raises ValueError with a message naming the problem for: a row without exactly
    5 columns, a non-number, a non-integer or negative class id, a class id >= nc, coordinates outside
    [-COORD_TOL, 1 + COORD_TOL] or a negative width/height. Small overshoots are clipped; duplicate rows are dropped.
    """
    rows = []
    with open(lb_file, encoding="utf-8", errors="replace") as f:
        for ln_no, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 5:
                raise ValueError(f"line {ln_no} has {len(parts)} columns, expected 5 (class cx cy w h)")
            try:
                rows.append([float(v) for v in parts])
            except ValueError:
                raise ValueError(f"line {ln_no} has a non-numeric value: {line.strip()!r}") from None
    if not rows:
        return np.zeros((0, 5), np.float32), ""
    lb = np.array(rows, dtype=np.float64)
    if not np.isfinite(lb).all():
        raise ValueError("non-finite value (nan/inf) in labels")
    cls = lb[:, 0]
    if (cls != np.round(cls)).any() or (cls < 0).any():
        bad = cls[(cls != np.round(cls)) | (cls < 0)][0]
        raise ValueError(f"invalid class id {bad:g} (class ids are integers >= 0)")
    if (cls >= nc).any():
        raise ClassIdError(f"class id {int(cls.max())} is out of range: the dataset has nc={nc} (ids 0..{nc - 1})")
    xywh = lb[:, 1:]
    if (xywh < -COORD_TOL).any() or (xywh > 1 + COORD_TOL).any():
        bad = xywh[(xywh < -COORD_TOL) | (xywh > 1 + COORD_TOL)][0]
        raise ValueError(f"coordinate {bad:g} outside [0, 1] (labels must be normalised cx cy w h)")
    lb[:, 1:] = xywh.clip(0.0, 1.0)
    msg = ""
    _, keep = np.unique(lb, axis=0, return_index=True)
    if len(keep) < len(lb):
        msg = f"{len(lb) - len(keep)} duplicate label rows removed"
        lb = lb[np.sort(keep)]
    return lb.astype(np.float32), msg


def verify_image_label(args: tuple[str, str, int]) -> dict[str, Any]:
    """Verify one (image, label file, nc) pair.

    Returns a dict with `im_file`, `labels` ((n, 5) float32 or None when rejected), `shape` (h, w),
    `status` in {"found", "missing", "empty", "corrupt"}, `reason` ("", "image", "label", "class_range" for a
    class id >= nc, or "duplicate") and `detail` (the problem, without file paths; see `format_message`).
    """
    im_file, lb_file, nc = args
    out: dict[str, Any] = {"im_file": im_file, "labels": None, "shape": (0, 0), "status": "corrupt",
                           "reason": "", "detail": ""}
    try:
        out["shape"] = verify_image(im_file)
    except Exception as e:
        detail = "zero-byte file" if _size(im_file) == 0 else f"{type(e).__name__}: {e}"
        out.update(reason="image", detail=detail)
        return out
    if not os.path.isfile(lb_file):
        out.update(labels=np.zeros((0, 5), np.float32), status="missing")
        return out
    try:
        labels, detail = parse_label_file(lb_file, nc)
    except Exception as e:
        out.update(reason="class_range" if isinstance(e, ClassIdError) else "label", detail=str(e))
        return out
    if detail:
        out.update(reason="duplicate", detail=detail)
    out.update(labels=labels, status="found" if len(labels) else "empty")
    return out


def format_message(reason: str, detail: str, im_file: str, lb_file: str) -> str:
    """The warning printed for one verification result (see `verify_image_label`)."""
    if reason == "image":
        return f"image skipped, corrupt or unreadable: {im_file} ({detail})"
    if reason in {"label", "class_range"}:
        return f"image skipped, bad label file {lb_file}: {detail}"
    return f"{lb_file}: {detail}"


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


# ----------------------------------------------------------------------------------------------------- yaml lookup
def find_dataset_yaml(data: str | Path) -> Path:
    """Locate a dataset yaml: an existing path, else a packaged yaml by bare name (e.g. `coco128.yaml`)."""
    p = Path(data)
    if p.suffix.lower() not in {".yaml", ".yml"}:
        raise DatasetError(f"dataset {str(data)!r} is not a .yaml file; pass a dataset yaml such as coco128.yaml")
    if p.is_file():
        return p.resolve()
    packaged = DATASETS_CFG_DIR / p.name
    if not p.is_absolute() and len(p.parts) == 1 and packaged.is_file():
        return packaged
    known = ", ".join(sorted(f.name for f in DATASETS_CFG_DIR.glob("*.yaml")))
    raise MissingFileError(
        f"dataset yaml {str(data)!r} not found (looked at {p.resolve()} and in the packaged datasets "
        f"{DATASETS_CFG_DIR}). Pass the path of an existing dataset yaml, or one of the packaged names: {known}"
    )


def resolve_dataset_root(path_value: str | None, yaml_file: Path | None) -> Path:
    """Dataset root: absolute as given; relative against the yaml's folder if that exists, else datasets_dir."""
    datasets_dir = Path(SETTINGS["datasets_dir"])
    raw = Path(path_value) if path_value not in (None, "") else Path(".")
    if raw.is_absolute():
        return raw
    base = yaml_file.parent if yaml_file is not None else Path.cwd()
    candidate = (base / raw).resolve()
    if candidate.exists() and candidate != DATASETS_CFG_DIR.resolve():
        return candidate
    return (datasets_dir / raw).resolve()


def normalise_names(names: Any, yaml_name: str) -> dict[int, str]:
    """`names` as a list or an {id: name} mapping → {int: str} with ids 0..nc-1; clear error otherwise."""
    if isinstance(names, (list, tuple)):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict):
        try:
            out = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise DatasetError(f"{yaml_name}: 'names' keys must be integer class ids, got {list(names)[:5]}") from None
        missing = sorted(set(range(len(out))) - set(out))
        if missing:
            raise DatasetError(f"{yaml_name}: 'names' ids must run 0..{len(out) - 1} without gaps; missing {missing[:10]}")
        return dict(sorted(out.items()))
    raise DatasetError(f"{yaml_name}: 'names' must be a list or an {{id: name}} mapping, got {type(names).__name__}")


def load_dataset_yaml(yaml_file: Path) -> dict:
    """Read a dataset yaml safely; a missing `names` key is an error naming the file and the fix."""
    data = yaml_load(yaml_file)
    if "names" not in data:
        raise DatasetError(
            f"dataset yaml {yaml_file} has no 'names' key: add the class names, e.g.\n"
            f"names:\n  0: person\n  1: car\n(or a list: names: [person, car])"
        )
    return data


def _split_paths(value: Any, root: Path) -> str | list[str]:
    """A train/val/test entry (str or list) → absolute path string(s) under the dataset root."""
    if isinstance(value, (list, tuple)):
        return [_split_paths(v, root) for v in value]  # type: ignore[misc]
    p = Path(str(value))
    return str(p if p.is_absolute() else (root / p).resolve())


def _missing_paths(data: dict) -> list[str]:
    """train/val paths of a resolved dataset dict that do not exist."""
    missing = []
    for key in ("train", "val"):
        v = data.get(key)
        for p in v if isinstance(v, list) else [v]:
            if p and not Path(p).exists():
                missing.append(p)
    return missing


def check_det_dataset(data: str | Path | dict, autodownload: bool = True) -> dict:
    """Resolve a detection dataset yaml (path, packaged name or dict) into the dataset dict of the contract.

    Returns {path: Path, train, val, [test]: absolute str or list of str, names: {int: str}, nc: int,
    yaml_file: str, download}. When train/val are missing it runs `download` (zip URL or `builtin:<name>`)
    if `autodownload`, and raises one FileNotFoundError saying where it looked and how to provide the data.
    """
    if isinstance(data, dict):
        yaml_file, raw = None, dict(data)
        yaml_name = "dataset dict"
        if "names" not in raw:
            raise DatasetError("dataset dict has no 'names' key: add the class names as a list or {id: name} mapping")
    else:
        yaml_file = find_dataset_yaml(data)
        raw = load_dataset_yaml(yaml_file)
        yaml_name = str(yaml_file)
    names = normalise_names(raw["names"], yaml_name)
    if not names:
        raise DatasetError(f"{yaml_name}: 'names' is empty; list at least one class")
    if "nc" in raw and raw["nc"] is not None and int(raw["nc"]) != len(names):
        raise DatasetError(f"{yaml_name}: nc={raw['nc']} but 'names' has {len(names)} entries; make them agree or drop nc")
    for key in ("train", "val"):
        if not raw.get(key):
            raise DatasetError(f"{yaml_name}: missing '{key}' key (a folder of images, a list of folders or a .txt list)")
    root = resolve_dataset_root(raw.get("path"), yaml_file)
    out: dict[str, Any] = {k: v for k, v in raw.items() if k not in {"path", "train", "val", "test", "names", "nc"}}
    out.update(path=root, names=names, nc=len(names), yaml_file=str(yaml_file) if yaml_file else None)
    for key in ("train", "val", "test"):
        if raw.get(key):
            out[key] = _split_paths(raw[key], root)
    missing = _missing_paths(out)
    if missing:
        download = raw.get("download")
        error = ""
        if download and autodownload:
            try:
                run_download(download, root, Path(SETTINGS["datasets_dir"]))
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
            missing = _missing_paths(out)
        if missing:
            tried = (
                f"download from {download!r} failed ({error or 'it did not create these paths'}). "
                if download and autodownload
                else ("autodownload is off. " if download else "the yaml has no 'download' key. ")
            )
            raise MissingFileError(
                f"dataset {yaml_name}: images not found at {', '.join(missing)} (dataset root {root}); {tried}"
                f"Provide the data: put the dataset under {root}, or set an absolute 'path:' in the yaml, or point "
                f"datasets_dir elsewhere with `yolo settings datasets_dir=/your/datasets`. "
                f"For an offline run use data=shapes.yaml (generated locally)."
            )
    LOGGER.debug(f"dataset {yaml_name}: root {root}, nc={len(names)}")
    return out
