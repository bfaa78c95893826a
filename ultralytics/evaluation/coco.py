"""COCO-format predictions/ground truth and an independent bbox mAP check via pycocotools or faster-coco-eval.

Image ids: COCO json needs integer image ids. `image_id_from_path` gives the int of an all-digit file stem
(000000000139.jpg -> 139) and the stem string otherwise ("bus"). `labels_to_coco` turns string ids into ints
(stored with the original key under "image_key"), and `evaluate_coco` maps string prediction ids back through
that key (or the file-name stem), so predictions may keep the string ids end-to-end.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ultralytics.utils import LOGGER, write_atomic

# Category ids of the 80 COCO classes: 1..90 without the unused 12, 26, 29, 30, 45, 66, 68, 69, 71, 83.
COCO80_TO_91: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
    67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)  # fmt: skip

INSTALL_HINT = 'pip install pycocotools (or pip install -e ".[coco]")'


def image_id_from_path(path: str | Path) -> int | str:
    """File stem as int when it is all digits (000000000139.jpg -> 139), else the stem string."""
    stem = Path(path).stem
    return int(stem) if stem.isdigit() else stem


def _to_numpy(x: Any) -> np.ndarray:
    """Tensor / array / list -> numpy array (detached, on the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x)


def _plain_id(image_id: Any) -> int | str:
    """numpy/torch integer ids -> python int; strings stay strings."""
    if isinstance(image_id, str):
        return image_id
    if hasattr(image_id, "item"):
        image_id = image_id.item()
    return int(image_id)


def predictions_to_coco(
    boxes_xyxy: np.ndarray | Any,
    scores: np.ndarray | Any,
    classes: np.ndarray | Any,
    image_id: int | str,
    class_map: Sequence[int] | None = None,
) -> list[dict]:
    """Boxes in original-image pixels (xyxy) -> COCO result records with top-left xywh boxes."""
    boxes = _to_numpy(boxes_xyxy).reshape(-1, 4).astype(np.float64)
    scores = _to_numpy(scores).reshape(-1)
    classes = _to_numpy(classes).reshape(-1)
    if not len(boxes) == len(scores) == len(classes):
        raise ValueError(f"got {len(boxes)} boxes, {len(scores)} scores and {len(classes)} classes")
    image_id = _plain_id(image_id)
    xywh = boxes.copy()
    xywh[:, 2:] -= xywh[:, :2]
    records = []
    for b, s, c in zip(xywh.tolist(), scores.tolist(), classes.tolist()):
        c = int(c)
        records.append(
            {
                "image_id": image_id,
                "category_id": int(class_map[c]) if class_map is not None else c,
                "bbox": [round(v, 3) for v in b],
                "score": round(float(s), 5),
            }
        )
    return records


def labels_to_coco(
    images: Sequence[tuple[int | str, int, int, str]],
    labels: Sequence[tuple[np.ndarray, np.ndarray]],
    names: dict[int, str],
    class_map: Sequence[int] | None = None,
) -> dict:
    """YOLO labels -> COCO ground-truth dict (loadable by pycocotools).

    images[i] = (image_id, height, width, file_name); labels[i] = (cls (n,), boxes (n, 4) normalised xywh).
    Int image ids are kept; string ids (e.g. "bus") get fresh ints above the largest int id, and the entry
    keeps the original under "image_key" so `evaluate_coco` accepts predictions that use the string.
    """
    if len(images) != len(labels):
        raise ValueError(f"got {len(images)} images but {len(labels)} label entries")
    ids = [_plain_id(im[0]) for im in images]
    if len(set(ids)) != len(ids):
        raise ValueError("image ids must be unique")
    next_id = max([i for i in ids if isinstance(i, int)], default=0) + 1
    coco_images, annotations = [], []
    for (_, h, w, file_name), key, (cls, boxes) in zip(images, ids, labels):
        entry: dict[str, Any] = {"id": key, "height": int(h), "width": int(w), "file_name": str(file_name)}
        if isinstance(key, str):
            entry.update(id=next_id, image_key=key)
            next_id += 1
        coco_images.append(entry)
        cls = _to_numpy(cls).reshape(-1)
        boxes = _to_numpy(boxes).reshape(-1, 4).astype(np.float64)
        if len(cls) != len(boxes):
            raise ValueError(f"{file_name}: {len(cls)} classes but {len(boxes)} boxes")
        px = boxes * np.array([w, h, w, h], dtype=np.float64)
        px[:, :2] -= px[:, 2:] / 2  # centre -> top-left
        for c, b in zip(cls.tolist(), px.tolist()):
            c = int(c)
            bbox = [round(v, 3) for v in b]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": entry["id"],
                    "category_id": int(class_map[c]) if class_map is not None else c,
                    "bbox": bbox,
                    "area": round(bbox[2] * bbox[3], 3),
                    "iscrowd": 0,
                }
            )
    categories = [
        {"id": int(class_map[int(k)]) if class_map is not None else int(k), "name": str(v), "supercategory": "none"}
        for k, v in sorted(names.items())
    ]
    return {
        "info": {"description": "converted from YOLO labels"},
        "images": coco_images,
        "annotations": annotations,
        "categories": categories,
    }


def save_json(records: list[dict] | dict, path: str | Path) -> Path:
    """Write JSON atomically (temp file in the same folder, then os.replace); parents are created."""
    return write_atomic(path, json.dumps(records))


def _load_json(src: str | Path | dict | list, what: str) -> Any:
    """A path is read as JSON (FileNotFoundError naming it when missing); dicts/lists pass through."""
    if isinstance(src, (dict, list)):
        return src
    p = Path(src)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file not found: {p}")
    with open(p, encoding="utf-8") as f:
        return json.load(f)


def _backend(name: str) -> tuple[Any, Any, str]:
    """(COCO class, COCOeval class, backend name) for 'pycocotools', 'faster-coco-eval' or 'auto'."""
    name = name.lower().replace("_", "-")
    if name not in {"auto", "pycocotools", "faster-coco-eval"}:
        raise ValueError(f"unknown COCO backend {name!r}; use 'auto', 'pycocotools' or 'faster-coco-eval'")
    if name in {"auto", "pycocotools"}:
        try:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            return COCO, COCOeval, "pycocotools"
        except ImportError:
            if name == "pycocotools":
                raise ImportError(f"backend 'pycocotools' is not installed: {INSTALL_HINT}") from None
    try:
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster, "faster-coco-eval"
    except ImportError:
        if name == "faster-coco-eval":
            hint = 'pip install faster-coco-eval (or pip install -e ".[coco]")'
            raise ImportError(f"backend 'faster-coco-eval' is not installed: {hint}") from None
    raise ImportError(f"COCO evaluation needs pycocotools or faster-coco-eval: {INSTALL_HINT}")


def _match_image_ids(gt: dict, preds: list[dict]) -> list[dict]:
    """Map string prediction ids through the ground truth, drop ids not in it; ValueError when none match."""
    gt_ids = {im["id"] for im in gt.get("images", [])}
    keys: dict[str, int] = {}
    for im in gt.get("images", []):
        keys.setdefault(Path(str(im.get("file_name", ""))).stem, im["id"])
    for im in gt.get("images", []):
        if "image_key" in im:
            keys[str(im["image_key"])] = im["id"]
    out, unknown = [], []
    for r in preds:
        i = r["image_id"]
        i = keys.get(i, i) if isinstance(i, str) else i
        if i in gt_ids:
            out.append({**r, "image_id": i})
        else:
            unknown.append(r["image_id"])
    if unknown:
        pred_eg = sorted({repr(i) for i in unknown})[:5]
        gt_eg = sorted(repr(i) for i in gt_ids)[:5]
        msg = (
            f"prediction image ids do not match the annotation image ids: predictions use e.g. {', '.join(pred_eg)}; "
            f"annotations use e.g. {', '.join(gt_eg)}"
        )
        if not out:
            raise ValueError(msg)
        LOGGER.warning(f"WARNING ⚠️ {msg}; ignoring {len(unknown)} of {len(preds)} predictions")
    return out


def evaluate_coco(
    anno_json: str | Path | dict, pred_json: str | Path | list, backend: str = "auto"
) -> dict[str, Any]:
    """COCO bbox evaluation -> {"map", "map50", "map75", "stats" (the 12 COCO numbers)}; logs the summary."""
    COCO, COCOeval, used = _backend(backend)
    gt = _load_json(anno_json, "annotation")
    preds = _load_json(pred_json, "predictions")
    if not isinstance(gt, dict) or "images" not in gt:
        raise ValueError("annotations must be a COCO dict with an 'images' list")
    if not isinstance(preds, list):
        raise ValueError(f"predictions must be a list of COCO result records, got {type(preds).__name__}")
    zeros = {"map": 0.0, "map50": 0.0, "map75": 0.0, "stats": [0.0] * 12}
    if not preds:
        LOGGER.warning("WARNING ⚠️ no predictions to evaluate; COCO mAP is 0")
        return zeros
    preds = _match_image_ids(gt, preds)
    gt = {"annotations": [], **gt}  # pycocotools needs the key even without boxes
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([dict(r) for r in preds])  # copies: loadRes adds keys in place
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.imgIds = sorted(coco_gt.getImgIds())
        ev.evaluate()
        ev.accumulate()
    for line in buf.getvalue().splitlines():  # loading / timing chatter
        LOGGER.debug(line)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ev.summarize()
    LOGGER.info(f"COCO bbox evaluation ({used}):")
    for line in buf.getvalue().splitlines():
        if line.strip():
            LOGGER.info(line)
    stats = [float(s) for s in np.asarray(ev.stats).reshape(-1)[:12]]
    return {"map": stats[0], "map50": stats[1], "map75": stats[2], "stats": stats}
