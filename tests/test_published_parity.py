"""Our matching + AP on the published validator's own predictions reproduce its mAP (tests/fixtures/published_val).

Each fixture holds, per image, the original shape, the YOLO labels and the predictions the published validator scored
(original pixels), plus its mAP50 / mAP50-95 / P / R and the input shapes its model saw. We rebuild each image's
letterbox in the published validator's rect batch (geometry observed by running the published dataset as a black
box, see docs/validation.md), map the predictions back into that input space, match there and score.

Known limits of the reconstruction: boxes the published validator clipped to the image when writing predictions
cannot be un-clipped, and the boxes / confidences were rounded (0.001 px, 6 significant digits); both are far below
the 0.002 tolerance on these sets.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ultralytics.evaluation.metrics import IOU_THRESHOLDS, DetMetrics, box_iou, match_predictions

FIXTURES = Path(__file__).parent / "fixtures" / "published_val"
SETS = ("shapes", "coco")
STRIDE = 32
TOLERANCE = 0.002


def load_fixture(name: str) -> dict:
    path = FIXTURES / f"{name}.json.gz"
    if not path.is_file():
        pytest.skip(f"{path} not recorded yet")
    return json.loads(gzip.decompress(path.read_bytes()))


def rect_batches(shapes_hw: np.ndarray, batch: int, imgsz: int) -> tuple[np.ndarray, np.ndarray]:
    """(order of the images in validation, (n_batches, 2) input h, w) as SPEC §6's rect batching gives them.

    Images are ordered by h/w with numpy's default sort, as the published dataset does (ties are not kept in file
    order there)."""
    aspect = shapes_hw[:, 0] / shapes_hw[:, 1]
    order = np.argsort(aspect)
    aspect = aspect[order]
    n_batches = math.ceil(len(order) / batch)
    pairs = np.ones((n_batches, 2))
    for b in range(n_batches):
        a = aspect[b * batch:(b + 1) * batch]
        if a.max() < 1:
            pairs[b] = [a.max(), 1]
        elif a.min() > 1:
            pairs[b] = [1, 1 / a.min()]
    return order, np.ceil(pairs * imgsz / STRIDE + 0.5).astype(int) * STRIDE


def letterbox_geometry(h0: int, w0: int, input_hw: tuple[int, int], imgsz: int) -> tuple[float, float, int, int]:
    """(gain_h, gain_w, pad_w, pad_h) of one image in a val batch: long side resized to imgsz with each side
    rounded UP (observed on the published dataset), centred in the batch shape with round(pad − 0.1)."""
    r = imgsz / max(h0, w0)
    h1, w1 = min(math.ceil(h0 * r), imgsz), min(math.ceil(w0 * r), imgsz)
    pad_w = round((input_hw[1] - w1) / 2 - 0.1)
    pad_h = round((input_hw[0] - h1) / 2 - 0.1)
    return h1 / h0, w1 / w0, pad_w, pad_h


def score_fixture(fx: dict) -> tuple[DetMetrics, np.ndarray]:
    """Our DetMetrics on the fixture's predictions, matched in the reconstructed input space; also the batch shapes."""
    imgsz, batch = int(fx["settings"]["imgsz"]), int(fx["settings"]["batch"])
    images = sorted(fx["images"], key=lambda im: im["file"])  # the dataset lists files sorted by name
    order, batch_hw = rect_batches(np.array([im["shape"] for im in images], dtype=np.float64), batch, imgsz)
    stats = {"tp": [], "conf": [], "pred_cls": [], "target_cls": []}
    for pos, i in enumerate(order):
        im = images[i]
        h0, w0 = im["shape"]
        input_hw = tuple(int(v) for v in batch_hw[pos // batch])
        gh, gw, pad_w, pad_h = letterbox_geometry(h0, w0, input_hw, imgsz)
        labels = torch.tensor(im["labels"], dtype=torch.float32).reshape(-1, 5)
        cls = labels[:, 0]
        cx, cy = labels[:, 1] * w0 * gw + pad_w, labels[:, 2] * h0 * gh + pad_h
        bw, bh = labels[:, 3] * w0 * gw, labels[:, 4] * h0 * gh
        label_xyxy = torch.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), 1)
        pred = torch.tensor(im["predictions"], dtype=torch.float32).reshape(-1, 6)
        scale = torch.tensor([gw, gh, gw, gh])
        offset = torch.tensor([pad_w, pad_h, pad_w, pad_h], dtype=torch.float32)
        boxes = pred[:, :4] * scale + offset
        if len(pred) and len(cls):
            tp = match_predictions(pred[:, 5], cls, box_iou(label_xyxy, boxes), IOU_THRESHOLDS)
        else:
            tp = torch.zeros(len(pred), len(IOU_THRESHOLDS), dtype=torch.bool)
        for key, value in zip(stats, (tp, pred[:, 4], pred[:, 5], cls)):
            stats[key].append(value.numpy())
    metrics = DetMetrics({int(k): v for k, v in fx["names"].items()})
    metrics.process(*(np.concatenate(v, 0) for v in stats.values()))
    return metrics, batch_hw


def model_batch_shapes(fx: dict, n_images: int) -> list[list[int]]:
    """The (h, w) of the validation batches the published model saw (leading warm-up passes dropped)."""
    seen = fx["published"]["input_shapes_seen_by_model"]
    while seen and sum(s[0] for s in seen) > n_images:
        seen = seen[1:]
    return [list(s[2:]) for s in seen]


@pytest.mark.parametrize("name", SETS)
def test_rect_batch_shapes_match_the_published_run(name):
    fx = load_fixture(name)
    _, batch_hw = score_fixture(fx)
    assert batch_hw.tolist() == model_batch_shapes(fx, len(fx["images"]))


@pytest.mark.parametrize("name", SETS)
def test_map_matches_the_published_validator(name):
    fx = load_fixture(name)
    ours, _ = score_fixture(fx)
    pub = fx["published"]["metrics"]
    box = ours.box
    report = (f"{name}: mAP50 {box.map50:.5f} vs {pub['map50']:.5f}, mAP50-95 {box.map:.5f} vs {pub['map']:.5f}, "
              f"P {box.mp:.5f} vs {pub['mp']:.5f}, R {box.mr:.5f} vs {pub['mr']:.5f}")
    print(report)
    assert box.ap_class_index.tolist() == pub["ap_class_index"], report
    assert abs(box.map50 - pub["map50"]) <= TOLERANCE, report
    assert abs(box.map - pub["map"]) <= TOLERANCE, report
    assert np.abs(box.ap50 - np.array(pub["ap50"])).max() <= 0.01, report  # per class, fewer detections each
