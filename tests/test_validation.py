"""Validation outputs: our mAP against pycocotools on the same predictions, the plots of a standalone validation,
the `yolo detect val` command and the `classes` filter, on the 8 bundled COCO images.

Two detectors are scored. An oracle (the labelled boxes of each image, jittered, with seeded scores, a fifth of
them given a wrong class, plus spurious boxes) needs no files and gives a mid-range mAP whose value depends on every
step from the letterboxed batch to the original-image boxes. The published checkpoint (yolov8n trained briefly by
the published package at imgsz 320 on COCO128's train2017 images, these 8 among them) is a real detector; it lives
in ../shared/reference. Without that folder the `published` cases validate the synthesized published-format file
(conftest `reference_checkpoint`: our seeded yolov8n, no detector), and must score exactly like our own model loaded
with the weights it was written with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

from ultralytics import YOLO
from ultralytics.cli import entrypoint
from ultralytics.engine.validator import DetectionValidator
from ultralytics.evaluation.coco import image_id_from_path
from ultralytics.evaluation.metrics import DetMetrics

from ultralytics.nn.tasks import DetectionModel

from conftest import VAL_PLOTS, PublishedFile, assert_real_image  # noqa: E402

pytest.importorskip("pycocotools")


class Oracle(nn.Module):
    """A stand-in detector that sees the labels of the batch being scored (set by `OracleValidator`) and returns
    Detect's eval layout (b, 4 + nc, n): each labelled box with its centre and size jittered by ~10 %, a score in
    [0.1, 1), one box in five with the next class id instead of its own, and 3 spurious low-score boxes an image.
    The draws are seeded by the image id, so an image always gets the same boxes."""

    def __init__(self, nc: int = 80):
        super().__init__()
        self.nc = nc
        self.stride = torch.tensor([8.0, 16.0, 32.0])
        self.batch: dict[str, Any] = {}

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        b, _, h, w = img.shape
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        per_image = []
        for i in range(b):
            g = torch.Generator().manual_seed(image_id_from_path(self.batch["im_file"][i]))
            sel = self.batch["batch_idx"] == i
            xywh = self.batch["bboxes"][sel].float() * scale
            cls = self.batch["cls"][sel].long().view(-1)
            n = len(xywh)
            xywh[:, :2] += 0.1 * xywh[:, 2:] * torch.randn(n, 2, generator=g)
            xywh[:, 2:] *= 1 + 0.1 * torch.randn(n, 2, generator=g)
            cls = torch.where(torch.rand(n, generator=g) < 0.2, (cls + 1) % self.nc, cls)
            score = 0.1 + 0.9 * torch.rand(n, generator=g)
            fake = torch.rand(3, 4, generator=g) * torch.tensor([w, h, w / 3, h / 3])
            xywh = torch.cat((xywh, fake))
            cls = torch.cat((cls, torch.randint(0, self.nc, (3,), generator=g)))
            score = torch.cat((score, 0.3 * torch.rand(3, generator=g)))
            out = torch.zeros(4 + self.nc, len(xywh))
            out[:4] = self.inside_image(xywh, self.batch["ratio_pad"][i][1], w, h).T
            out[4 + cls, torch.arange(len(xywh))] = score
            per_image.append(out)
        width = max(o.shape[1] for o in per_image)
        return torch.stack([nn.functional.pad(o, (0, width - o.shape[1])) for o in per_image])

    @staticmethod
    def inside_image(xywh: torch.Tensor, pad: tuple[float, float], w: int, h: int) -> torch.Tensor:
        """Boxes clipped to the image inside the letterbox: a real detector does not box the grey padding, and a
        box reaching into it would be matched with a lower IoU in the input than in the original image."""
        pw, ph = pad
        xyxy = torch.cat((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), 1)
        xyxy[:, 0::2] = xyxy[:, 0::2].clamp(pw, w - pw)
        xyxy[:, 1::2] = xyxy[:, 1::2].clamp(ph, h - ph)
        return torch.cat(((xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]), 1)


class OracleValidator(DetectionValidator):
    """Hands each preprocessed batch to the oracle before the oracle is run on it."""

    def __init__(self, oracle: Oracle, args: dict):
        super().__init__(args)
        self.oracle = oracle

    def preprocess(self, batch: dict) -> dict:
        batch = super().preprocess(batch)
        self.oracle.batch = batch
        return batch


def validate(detector: str | PublishedFile, **args) -> DetMetrics:
    """Standalone validation of the oracle or of a published checkpoint file with these arguments."""
    if detector == "oracle":
        oracle = Oracle()
        return OracleValidator(oracle, args)(oracle)
    return YOLO(str(detector.path)).val(**args)


def validate_weights(published: PublishedFile, **args) -> DetMetrics:
    """Standalone validation of our own yolov8n loaded with the weights the synthesized published file holds."""
    model = DetectionModel("yolov8n.yaml", verbose=False)
    model.load_state_dict(published.weights)
    model.names = dict(published.names)
    return DetectionValidator(args)(model=model)


def _detector(name: str, request: pytest.FixtureRequest) -> str | PublishedFile:
    return name if name == "oracle" else request.getfixturevalue("reference_checkpoint")


@pytest.fixture(scope="module", params=["oracle", "published"])
def scored(request, assets, tmp_path_factory):
    """(detector, metrics, run folder) of a validation on the 8 bundled images in 4 batches, plots and json on.
    The detector is "oracle" or the PublishedFile validated."""
    out = tmp_path_factory.mktemp(f"val_{request.param}")
    detector = _detector(request.param, request)
    metrics = validate(detector, data=str(assets / "data.yaml"), imgsz=320, batch=2, workers=0,
                       save_json=True, plots=True, project=str(out), name="val", verbose=False)
    return detector, metrics, out / "val"


@pytest.mark.slow
def test_map_agrees_with_pycocotools(scored, assets, tmp_path):
    """Same predictions (predictions.json) and the same labels (labels_coco.json), scored by pycocotools.

    Known reasons for small differences: our AP integrates the 101-point envelope with the trapezoid rule,
    pycocotools averages the 101 samples; pycocotools keeps the 100 best detections an image (maxDets=100), we
    keep up to max_det=300; pycocotools matches detections in score order to the best free label, we match
    label–prediction pairs in IoU order. Area ranges play no part in the 'all' numbers compared here.
    """
    detector, metrics, run = scored
    coco = metrics.coco
    assert coco is not None and len(coco["stats"]) == 12
    if detector == "oracle" or detector.real:
        assert metrics.box.map50 > (0.3 if detector == "oracle" else 0.02)  # a real, non-trivial detector here
        assert metrics.box.map50 < 0.95 and metrics.box.map < metrics.box.map50  # ... and an imperfect one
    else:  # the synthesized file is no detector: it must score as its weights loaded into our own model do
        assert metrics.box.map <= metrics.box.map50 < 0.95
        direct = validate_weights(detector, data=str(assets / "data.yaml"), imgsz=320, batch=2, workers=0,
                                  save_json=True, plots=False, project=str(tmp_path), name="direct", verbose=False)
        assert json.loads((tmp_path / "direct" / "predictions.json").read_text()) == json.loads(
            (run / "predictions.json").read_text())  # every scored box, with its score
        assert direct.results_dict == metrics.results_dict and direct.coco["stats"] == coco["stats"]
    assert abs(metrics.box.map50 - coco["map50"]) < 0.02, (metrics.box.map50, coco["map50"])
    assert abs(metrics.box.map - coco["map"]) < 0.02, (metrics.box.map, coco["map"])
    preds = json.loads((run / "predictions.json").read_text())
    gt = json.loads((run / "labels_coco.json").read_text())
    assert len(gt["images"]) == 8 and len(gt["annotations"]) == 68
    assert {p["image_id"] for p in preds} <= {im["id"] for im in gt["images"]}
    assert all(len(p["bbox"]) == 4 and 0.001 <= p["score"] <= 1 for p in preds[:500])


@pytest.mark.slow
def test_standalone_validation_plots(scored):
    _, metrics, run = scored
    for name in VAL_PLOTS:
        assert_real_image(run / name)
    assert set(metrics.speed) == {"preprocess", "inference", "loss", "postprocess"}
    assert metrics.speed["inference"] > 0
    assert len(metrics.box.maps) == 80 and metrics.box.map75 <= metrics.box.map50


@pytest.mark.slow
def test_validation_repeats_exactly(scored, assets, tmp_path):
    detector, first, _ = scored
    again = validate(detector, data=str(assets / "data.yaml"), imgsz=320, batch=2, workers=0, plots=False,
                     project=str(tmp_path), verbose=False)
    assert again.results_dict == first.results_dict
    assert np.array_equal(again.box.all_ap, first.box.all_ap)


@pytest.mark.slow
@pytest.mark.parametrize("detector", ["oracle", "published"])
def test_classes_filter(detector, assets, tmp_path, request):
    m = validate(_detector(detector, request), data=str(assets / "data.yaml"), imgsz=160, batch=16, workers=0, classes=[0],
                 plots=False, project=str(tmp_path), verbose=False)
    assert m.ap_class_index.tolist() == [0]  # only person labels and person detections are scored


@pytest.mark.slow
def test_yolo_detect_val_command(assets, tmp_path, logs, capsys):
    args = ["detect", "val", "model=yolov8n.yaml", f"data={assets / 'data.yaml'}",
            "split=train", "imgsz=160", "batch=32", "conf=0.25", "iou=0.6", "plots=False", "workers=0",
            f"project={tmp_path}", "name=cli"]
    assert entrypoint(args) == 0
    assert any(line.strip().startswith("all") for line in logs), logs[-5:]
    assert any(line.startswith("Speed:") for line in logs)
    assert not (tmp_path / "cli").exists()  # nothing to save without plots or save_json
    # a split the dataset does not have is a one-line user error
    capsys.readouterr()
    assert entrypoint([*args[:4], "split=test", "imgsz=160", "workers=0"]) == 2
    err = capsys.readouterr().err
    assert "no 'test' split" in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_save_json_uses_the_datasets_coco_annotations(assets, tmp_path):
    """A dataset with {path}/annotations/instances_<split folder>.json is scored against that file, with the
    official 91 category ids for its 80 classes (person = 1, …)."""
    from ultralytics.data import check_det_dataset
    from ultralytics.evaluation.coco import COCO80_TO_91, image_id_from_path, labels_to_coco, save_json

    root = tmp_path / "coco_like"
    (root / "images" / "val2017").mkdir(parents=True)
    (root / "labels" / "val2017").mkdir(parents=True)
    images = sorted((assets / "images").iterdir())
    for im in images:
        (root / "images" / "val2017" / im.name).symlink_to(im)
        label = assets / "labels" / f"{im.stem}.txt"
        if label.exists():
            (root / "labels" / "val2017" / label.name).write_text(label.read_text())
    names = check_det_dataset(str(assets / "data.yaml"))["names"]
    yaml_file = root / "data.yaml"
    yaml_file.write_text(f"path: {root}\ntrain: images/val2017\nval: images/val2017\nnames:\n"
                         + "".join(f"  {i}: {n}\n" for i, n in names.items()))
    entries, labels = [], []
    for im in images:
        h, w = cv2.imread(str(im)).shape[:2]
        entries.append((image_id_from_path(im), h, w, im.name))
        rows = np.loadtxt(root / "labels" / "val2017" / f"{im.stem}.txt", ndmin=2) if (
            root / "labels" / "val2017" / f"{im.stem}.txt").exists() else np.zeros((0, 5))
        labels.append((rows[:, 0], rows[:, 1:5]))
    save_json(labels_to_coco(entries, labels, names, class_map=COCO80_TO_91),
              root / "annotations" / "instances_val2017.json")

    metrics = validate("oracle", data=str(yaml_file), imgsz=320, batch=8, workers=0, save_json=True, plots=False,
                       project=str(tmp_path), name="val", verbose=False)
    run = tmp_path / "val"
    assert not (run / "labels_coco.json").exists()  # the dataset's own annotations were used
    preds = json.loads((run / "predictions.json").read_text())
    assert {p["category_id"] for p in preds} <= set(COCO80_TO_91)
    assert max(p["category_id"] for p in preds) > 80  # 91-style ids, not class indices
    # scored against the dataset's json, with the published category ids: a looser bound than the cross-check above
    assert metrics.coco is not None and abs(metrics.coco["map50"] - metrics.box.map50) < 0.05
