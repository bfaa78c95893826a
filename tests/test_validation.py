"""Validation outputs: our mAP against pycocotools on the same predictions, the plots of a standalone validation,
the `yolo detect val` command and the `classes` filter.

The published checkpoint (yolov8n trained briefly by the published package at imgsz 320 on COCO128's train2017
images, which that package's coco128.yaml also uses as its val split) is scored on those images: on val2017 it
finds almost nothing, which makes a poor cross-check.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ultralytics import YOLO
from ultralytics.cli import entrypoint

from conftest import VAL_PLOTS, assert_real_image  # noqa: E402

pytest.importorskip("pycocotools")

PUBLISHED = "upstream-yolov8n-coco128.pt"


@pytest.fixture(scope="module")
def published_val(reference_dir, coco128, tmp_path_factory):
    out = tmp_path_factory.mktemp("published_val")
    model = YOLO(str(reference_dir / PUBLISHED))
    metrics = model.val(data=str(coco128 / "coco128.yaml"), split="train", imgsz=320, batch=16, workers=0,
                        save_json=True, plots=True, project=str(out), name="val", verbose=False)
    return model, metrics, out / "val"


@pytest.mark.slow
def test_map_agrees_with_pycocotools(published_val):
    """Same predictions (predictions.json) and the same labels (labels_coco.json), scored by pycocotools.

    Known reasons for small differences: our AP integrates the 101-point envelope with the trapezoid rule,
    pycocotools averages the 101 samples; pycocotools keeps the 100 best detections an image (maxDets=100), we
    keep up to max_det=300; pycocotools matches detections in score order to the best free label, we match
    label–prediction pairs in IoU order. Area ranges play no part in the 'all' numbers compared here.
    """
    _, metrics, run = published_val
    coco = metrics.coco
    assert coco is not None and len(coco["stats"]) == 12
    assert metrics.box.map50 > 0.02  # a real, non-trivial detector on these images
    assert abs(metrics.box.map50 - coco["map50"]) < 0.02, (metrics.box.map50, coco["map50"])
    assert abs(metrics.box.map - coco["map"]) < 0.02, (metrics.box.map, coco["map"])
    preds = json.loads((run / "predictions.json").read_text())
    gt = json.loads((run / "labels_coco.json").read_text())
    assert len(gt["images"]) == 128  # two have no label file: background images, still scored
    assert {p["image_id"] for p in preds} <= {im["id"] for im in gt["images"]}
    assert all(len(p["bbox"]) == 4 and 0.001 <= p["score"] <= 1 for p in preds[:500])


@pytest.mark.slow
def test_standalone_validation_plots(published_val):
    _, metrics, run = published_val
    for name in VAL_PLOTS:
        assert_real_image(run / name)
    assert set(metrics.speed) == {"preprocess", "inference", "loss", "postprocess"}
    assert metrics.speed["inference"] > 0
    assert len(metrics.box.maps) == 80 and metrics.box.map75 <= metrics.box.map50


@pytest.mark.slow
def test_validation_repeats_exactly(published_val, coco128, tmp_path):
    model, first, _ = published_val
    again = model.val(data=str(coco128 / "coco128.yaml"), split="train", imgsz=320, batch=16, workers=0,
                      plots=False, project=str(tmp_path), verbose=False)
    assert again.results_dict == first.results_dict
    assert np.array_equal(again.box.all_ap, first.box.all_ap)


@pytest.mark.slow
def test_classes_filter(reference_dir, coco128, tmp_path):
    model = YOLO(str(reference_dir / PUBLISHED))
    m = model.val(data=str(coco128 / "coco128.yaml"), split="train", imgsz=160, batch=16, workers=0, classes=[0],
                  plots=False, project=str(tmp_path), verbose=False)
    assert m.ap_class_index.tolist() == [0]  # only person labels and person detections are scored


@pytest.mark.slow
def test_yolo_detect_val_command(reference_dir, coco128, tmp_path, logs, capsys):
    args = ["detect", "val", f"model={reference_dir / PUBLISHED}", f"data={coco128 / 'coco128.yaml'}",
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
def test_save_json_uses_the_datasets_coco_annotations(reference_dir, coco128, tmp_path):
    """A dataset with {path}/annotations/instances_<split folder>.json is scored against that file, with the
    official 91 category ids for its 80 classes (person = 1, …)."""
    from ultralytics.data import check_det_dataset
    from ultralytics.evaluation.coco import COCO80_TO_91, image_id_from_path, labels_to_coco, save_json

    root = tmp_path / "coco_like"
    (root / "images" / "val2017").mkdir(parents=True)
    (root / "labels" / "val2017").mkdir(parents=True)
    images = sorted((coco128 / "images" / "train2017").iterdir())[:8]
    for im in images:
        (root / "images" / "val2017" / im.name).symlink_to(im)
        label = coco128 / "labels" / "train2017" / f"{im.stem}.txt"
        if label.exists():
            (root / "labels" / "val2017" / label.name).write_text(label.read_text())
    names = check_det_dataset(str(coco128 / "coco128.yaml"))["names"]
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

    metrics = YOLO(str(reference_dir / PUBLISHED)).val(data=str(yaml_file), imgsz=320, batch=8, workers=0,
                                                       save_json=True, plots=False, project=str(tmp_path),
                                                       name="val", verbose=False)
    run = tmp_path / "val"
    assert not (run / "labels_coco.json").exists()  # the dataset's own annotations were used
    preds = json.loads((run / "predictions.json").read_text())
    assert {p["category_id"] for p in preds} <= set(COCO80_TO_91)
    assert max(p["category_id"] for p in preds) > 80  # 91-style ids, not class indices
    # 8 images only: a looser bound than the 128-image cross-check above
    assert metrics.coco is not None and abs(metrics.coco["map50"] - metrics.box.map50) < 0.05
