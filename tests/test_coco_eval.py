"""COCO json conversion and the pycocotools cross-check (ultralytics.evaluation.coco)."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys

import numpy as np
import pytest
import torch

from ultralytics.utils import LOGGER
from ultralytics.evaluation.coco import (
    COCO80_TO_91,
    evaluate_coco,
    image_id_from_path,
    labels_to_coco,
    predictions_to_coco,
    save_json,
)

pytest.importorskip("pycocotools")
HAS_FASTER = importlib.util.find_spec("faster_coco_eval") is not None


@pytest.fixture
def log_records():
    """Messages logged through LOGGER (it does not propagate, so caplog cannot see them)."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    h = _Keep(level=logging.DEBUG)
    LOGGER.addHandler(h)
    try:
        yield records
    finally:
        LOGGER.removeHandler(h)


def _xywhn_to_xyxy(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    """Normalised centre xywh -> pixel xyxy (independent of the module under test)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1 = (b[:, 0] - b[:, 2] / 2) * w
    y1 = (b[:, 1] - b[:, 3] / 2) * h
    return np.stack([x1, y1, x1 + b[:, 2] * w, y1 + b[:, 3] * h], 1)


# three images: several classes, different sizes, one without labels
IMAGES = [(1, 480, 640, "a.jpg"), (2, 300, 200, "b.jpg"), (3, 100, 100, "c.jpg")]
LABELS = [
    (np.array([0, 1, 2]), np.array([[0.5, 0.5, 0.4, 0.3], [0.2, 0.3, 0.1, 0.2], [0.75, 0.7, 0.3, 0.4]])),
    (np.array([1, 1]), np.array([[0.3, 0.3, 0.4, 0.2], [0.6, 0.7, 0.5, 0.4]])),
    (np.zeros(0), np.zeros((0, 4))),
]
NAMES = {0: "person", 1: "bicycle", 2: "car", 3: "motorcycle"}  # class 3 has no boxes at all


def _perfect_preds(images=IMAGES, labels=LABELS, ids=None, class_map=None) -> list[dict]:
    out = []
    for k, ((iid, h, w, _), (cls, boxes)) in enumerate(zip(images, labels)):
        xyxy = _xywhn_to_xyxy(boxes, h, w)
        out += predictions_to_coco(xyxy, np.full(len(cls), 0.9), cls, ids[k] if ids else iid, class_map)
    return out


def test_coco80_to_91():
    assert len(COCO80_TO_91) == 80
    assert all(a < b for a, b in zip(COCO80_TO_91, COCO80_TO_91[1:]))
    assert COCO80_TO_91[0] == 1 and COCO80_TO_91[-1] == 90
    known = {11: 13, 24: 27, 26: 31, 40: 46, 60: 67, 61: 70, 62: 72, 73: 84, 79: 90}  # index -> category id
    assert all(COCO80_TO_91[i] == c for i, c in known.items())
    missing = set(range(1, 91)) - set(COCO80_TO_91)
    assert missing == {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}


def test_image_id_from_path(tmp_path):
    assert image_id_from_path("images/val2017/000000000139.jpg") == 139
    assert image_id_from_path(tmp_path / "42.png") == 42
    assert image_id_from_path("data/bus.jpg") == "bus"
    assert image_id_from_path("x/img_001.jpg") == "img_001"


def test_predictions_to_coco_numpy_and_torch():
    boxes = np.array([[10.0, 20.0, 50.123456, 80.5], [0.0, 0.0, 1.0, 2.0]])
    scores = np.array([0.876543219, 0.1])
    classes = np.array([0, 79])
    recs = predictions_to_coco(boxes, scores, classes, 139)
    assert recs[0] == {"image_id": 139, "category_id": 0, "bbox": [10.0, 20.0, 40.123, 60.5], "score": 0.87654}
    assert recs[1]["category_id"] == 79 and recs[1]["bbox"] == [0.0, 0.0, 1.0, 2.0]

    mapped = predictions_to_coco(torch.tensor(boxes), torch.tensor(scores), torch.tensor(classes), "bus", COCO80_TO_91)
    assert [r["category_id"] for r in mapped] == [1, 90]
    assert mapped[0]["image_id"] == "bus" and mapped[0]["bbox"] == [10.0, 20.0, 40.123, 60.5]
    assert all(type(r["category_id"]) is int and type(r["score"]) is float for r in mapped)
    json.dumps(mapped)  # plain python types only
    assert predictions_to_coco(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), np.int64(5)) == []
    with pytest.raises(ValueError):
        predictions_to_coco(boxes, scores[:1], classes, 1)


def test_labels_to_coco_structure():
    gt = labels_to_coco(IMAGES, LABELS, NAMES, class_map=COCO80_TO_91)
    assert [im["id"] for im in gt["images"]] == [1, 2, 3]
    assert gt["images"][1] == {"id": 2, "height": 300, "width": 200, "file_name": "b.jpg"}
    anns = gt["annotations"]
    assert [a["id"] for a in anns] == [1, 2, 3, 4, 5]
    assert [a["category_id"] for a in anns] == [1, 2, 3, 2, 2]
    assert anns[0]["bbox"] == pytest.approx([192.0, 168.0, 256.0, 144.0])
    assert anns[0]["area"] == pytest.approx(256.0 * 144.0) and anns[0]["iscrowd"] == 0
    assert [c["id"] for c in gt["categories"]] == [1, 2, 3, 4]
    assert gt["categories"][0]["name"] == "person"


def test_round_trip_perfect_and_shifted(tmp_path, log_records):
    gt = labels_to_coco(IMAGES, LABELS, NAMES)
    preds = _perfect_preds()
    res = evaluate_coco(gt, preds)
    assert abs(res["map"] - 1.0) < 1e-9 and abs(res["map50"] - 1.0) < 1e-9 and abs(res["map75"] - 1.0) < 1e-9
    assert len(res["stats"]) == 12
    summary = [r.getMessage() for r in log_records if r.levelno == logging.INFO]
    assert sum("Average Precision" in m for m in summary) == 6 and sum("Average Recall" in m for m in summary) == 6

    # same through files, with the COCO category ids
    anno = save_json(labels_to_coco(IMAGES, LABELS, NAMES, COCO80_TO_91), tmp_path / "anno.json")
    pred = save_json(_perfect_preds(class_map=COCO80_TO_91), tmp_path / "pred.json")
    assert abs(evaluate_coco(anno, pred)["map"] - 1.0) < 1e-9

    # the only class-0 box shrinks to 0.9w x 0.8h inside the ground truth: IoU 0.72
    shifted = [dict(r) for r in preds]
    (k,) = [i for i, r in enumerate(shifted) if r["category_id"] == 0]
    x, y, w, h = shifted[k]["bbox"]
    shifted[k]["bbox"] = [x, y, 0.9 * w, 0.8 * h]
    res = evaluate_coco(gt, shifted)
    assert abs(res["map50"] - 1.0) < 1e-9
    assert res["map"] < 1.0
    assert res["map"] == pytest.approx((0.5 + 1.0 + 1.0) / 3, abs=1e-9)  # class 0 AP 0.5, classes 1-2 AP 1


def test_single_box_iou_between_thresholds():
    gt = labels_to_coco([(7, 100, 100, "7.jpg")], [(np.array([0]), np.array([[0.5, 0.5, 0.5, 0.5]]))], {0: "a"})
    # ground truth 25..75 in x and y; prediction 25..70 x 25..65: area 45*40 = 0.72 * 50*50, inside it
    pred = predictions_to_coco(np.array([[25.0, 25.0, 70.0, 65.0]]), [0.9], [0], 7)
    res = evaluate_coco(gt, pred)
    assert res["map"] == pytest.approx(0.5, abs=1e-12)  # AP 1 at 0.50..0.70, 0 at 0.75..0.95
    assert res["map50"] == pytest.approx(1.0, abs=1e-12) and res["map75"] == pytest.approx(0.0, abs=1e-12)


def test_string_image_ids_end_to_end(tmp_path):
    from pycocotools.coco import COCO

    images = [("bus", 1080, 810, "bus.jpg"), ("zidane", 720, 1280, "zidane.jpg"), (5, 64, 64, "5.jpg")]
    labels = [
        (np.array([0, 0, 5]), np.array([[0.2, 0.6, 0.2, 0.5], [0.5, 0.6, 0.2, 0.5], [0.5, 0.4, 0.95, 0.5]])),
        (np.array([0, 27]), np.array([[0.7, 0.5, 0.3, 0.9], [0.5, 0.8, 0.05, 0.2]])),
        (np.array([2]), np.array([[0.5, 0.5, 0.5, 0.5]])),
    ]
    names = {i: f"c{i}" for i in range(80)}
    gt = labels_to_coco(images, labels, names, COCO80_TO_91)
    ids = [im["id"] for im in gt["images"]]
    assert all(type(i) is int for i in ids) and len(set(ids)) == 3 and ids[2] == 5
    assert [im.get("image_key") for im in gt["images"]] == ["bus", "zidane", None]
    anno = save_json(gt, tmp_path / "gt" / "anno.json")
    COCO(str(anno))  # loadable by pycocotools as a file

    pred_ids = [image_id_from_path(f"/data/{im[3]}") for im in images]
    assert pred_ids == ["bus", "zidane", 5]
    pred = save_json(_perfect_preds(images, labels, pred_ids, COCO80_TO_91), tmp_path / "pred.json")
    res = evaluate_coco(anno, pred)
    assert abs(res["map"] - 1.0) < 1e-9 and abs(res["map50"] - 1.0) < 1e-9


@pytest.mark.parametrize("as_file", [False, True])
def test_empty_predictions(tmp_path, log_records, as_file):
    gt = labels_to_coco(IMAGES, LABELS, NAMES)
    preds = save_json([], tmp_path / "p.json") if as_file else []
    res = evaluate_coco(gt, preds)
    assert res == {"map": 0.0, "map50": 0.0, "map75": 0.0, "stats": [0.0] * 12}
    assert any(r.levelno == logging.WARNING and "no predictions" in r.getMessage() for r in log_records)


def test_mismatched_image_ids(log_records):
    gt = labels_to_coco(IMAGES, LABELS, NAMES)
    preds = _perfect_preds(ids=["a_img", "b_img", "c_img"])
    with pytest.raises(ValueError, match="image ids do not match") as e:
        evaluate_coco(gt, preds)
    assert "'a_img'" in str(e.value) and "1, 2, 3" in str(e.value)

    # partly matching: unknown ids are dropped with a warning, the rest is scored
    partial = _perfect_preds() + predictions_to_coco(np.array([[0, 0, 5, 5]]), [0.3], [0], 999)
    assert abs(evaluate_coco(gt, partial)["map"] - 1.0) < 1e-9
    assert any(r.levelno == logging.WARNING and "999" in r.getMessage() for r in log_records)


def test_missing_files(tmp_path):
    missing = tmp_path / "nope" / "instances_val2017.json"
    with pytest.raises(FileNotFoundError, match="instances_val2017.json"):
        evaluate_coco(missing, [])
    anno = save_json(labels_to_coco(IMAGES, LABELS, NAMES), tmp_path / "anno.json")
    with pytest.raises(FileNotFoundError, match="preds.json"):
        evaluate_coco(anno, tmp_path / "preds.json")


def test_backends(monkeypatch):
    gt = labels_to_coco(IMAGES, LABELS, NAMES)
    assert abs(evaluate_coco(gt, _perfect_preds(), backend="pycocotools")["map"] - 1.0) < 1e-9
    with pytest.raises(ValueError, match="unknown COCO backend"):
        evaluate_coco(gt, [], backend="detectron")
    if not HAS_FASTER:
        with pytest.raises(ImportError, match="pip install"):
            evaluate_coco(gt, [], backend="faster-coco-eval")
    # neither installed: the error names the fix
    for mod in ("pycocotools", "pycocotools.coco", "pycocotools.cocoeval", "faster_coco_eval"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(ImportError, match=r"pip install pycocotools"):
        evaluate_coco(gt, [])


@pytest.mark.skipif(not HAS_FASTER, reason="faster-coco-eval not installed")
def test_faster_coco_eval_agrees():
    gt = labels_to_coco(IMAGES, LABELS, NAMES)
    preds = _perfect_preds()
    preds[0]["bbox"] = [preds[0]["bbox"][0], preds[0]["bbox"][1], 0.9 * preds[0]["bbox"][2], preds[0]["bbox"][3]]
    a = evaluate_coco(gt, preds, backend="pycocotools")
    b = evaluate_coco(gt, preds, backend="faster-coco-eval")
    assert b["map"] == pytest.approx(a["map"], abs=1e-6) and b["map50"] == pytest.approx(a["map50"], abs=1e-6)


def test_save_json_atomic(tmp_path):
    target = tmp_path / "sub" / "dir" / "preds.json"
    recs = predictions_to_coco(np.array([[1.0, 2.0, 3.0, 4.0]]), [0.5], [3], "bus")
    assert save_json(recs, target) == target
    assert json.loads(target.read_text()) == recs
    save_json([], target)  # overwrite
    assert json.loads(target.read_text()) == []
    with pytest.raises(TypeError):
        save_json([{"x": object()}], target)  # not serialisable: old file kept, no temp file left
    assert json.loads(target.read_text()) == []
    assert [p.name for p in target.parent.iterdir()] == ["preds.json"]
