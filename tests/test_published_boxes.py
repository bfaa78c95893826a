"""Our predictor gives the published package's detections (tests/fixtures/published_boxes/boxes.json) for the same
seeded weights, images and settings: same count and classes, boxes within 0.01 px, confidences within 1e-4."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from published_boxes_case import PREDICT_ARGS, SETTINGS, STEMS, fixture_model, image_paths
from ultralytics import YOLO

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "published_boxes" / "boxes.json").read_text("utf-8"))
BOX_TOL, CONF_TOL = 0.01, 1e-4


@pytest.fixture(scope="module")
def model() -> YOLO:
    yolo = YOLO("yolov8n.yaml")
    yolo.model.load_state_dict(fixture_model().state_dict(), strict=True)
    return yolo


def _ours(model: YOLO, setting: dict) -> list[tuple[tuple[int, int], np.ndarray]]:
    paths = [str(p) for p in image_paths()]
    sources = [paths] if setting["batch"] > 1 else [[p] for p in paths]
    out = []
    for src in sources:
        for r in model.predict(src if len(src) > 1 else src[0], imgsz=setting["imgsz"], batch=setting["batch"],
                               verbose=False, **PREDICT_ARGS):
            b = r.boxes
            rows = np.concatenate([b.xyxy.numpy(), b.conf.numpy()[:, None], b.cls.numpy()[:, None]], 1)
            out.append((tuple(r.orig_shape), rows.astype(np.float64)))
    return out


def match_rows(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """Pair every reference row with the nearest row of the same class (one to one); worst box and conf error."""
    assert len(ref) == len(got), f"{len(got)} detections, published {len(ref)}"
    assert sorted(ref[:, 5].tolist()) == sorted(got[:, 5].tolist()), "classes differ"
    free = np.ones(len(got), bool)
    worst_box = worst_conf = 0.0
    for row in ref:  # greedy is exact here: distinct boxes of one class are far apart compared with the tolerance
        dist = np.abs(got[:, :4] - row[:4]).max(1)
        dist[~free | (got[:, 5] != row[5])] = np.inf
        j = int(dist.argmin())
        free[j] = False
        worst_box = max(worst_box, float(dist[j]))
        worst_conf = max(worst_conf, abs(float(got[j, 4] - row[4])))
    return worst_box, worst_conf


def test_fixture_is_what_the_test_assumes() -> None:
    assert set(FIXTURE["settings"]) == set(SETTINGS)
    for name, rec in FIXTURE["settings"].items():
        assert rec["args"] == {**SETTINGS[name], **PREDICT_ARGS}
        assert [im["file"] for im in rec["images"]] == [f"{s}.jpg" for s in STEMS]
    counts = [len(im["boxes"]) for im in FIXTURE["settings"]["single_640"]["images"]]
    assert min(counts) >= 5 and max(counts) <= 60  # enough boxes per image to test the mapping, none capped


def test_match_rows_detects_a_shifted_box() -> None:
    ref = np.array([[10.0, 20.0, 30.0, 40.0, 0.5, 1.0], [11.0, 20.0, 30.0, 40.0, 0.4, 1.0]])
    assert match_rows(ref, ref[::-1].copy()) == (0.0, 0.0)
    moved = ref.copy()
    moved[1, 2] += 0.02
    assert match_rows(ref, moved)[0] == pytest.approx(0.02)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_boxes_equal_published(model: YOLO, name: str) -> None:
    rec = FIXTURE["settings"][name]
    ours = _ours(model, SETTINGS[name])
    assert len(ours) == len(rec["images"])
    for (shape, got), im in zip(ours, rec["images"]):
        assert list(shape) == im["orig_shape"], im["file"]
        ref = np.array(im["boxes"], dtype=np.float64).reshape(-1, 6)
        worst_box, worst_conf = match_rows(ref, got)
        assert worst_box < BOX_TOL, f"{name} {im['file']}: boxes differ by {worst_box:.4f} px"
        assert worst_conf < CONF_TOL, f"{name} {im['file']}: confidences differ by {worst_conf:.2e}"
