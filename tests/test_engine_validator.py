"""NMS, and the validator's path from letterboxed batches back to original-image boxes and metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ultralytics import YOLO
from ultralytics.cfg import get_cfg
from ultralytics.data import build_dataloader, build_yolo_dataset, check_det_dataset
from ultralytics.engine.validator import DetectionValidator
from ultralytics.utils.ops import non_max_suppression, scale_boxes, xywh2xyxy

from conftest import assets_subset_yaml  # noqa: E402


def raw_output(boxes_xywh: list, scores: list) -> torch.Tensor:
    """(1, 4 + nc, n) like Detect's eval output."""
    return torch.cat((torch.tensor(boxes_xywh, dtype=torch.float).T, torch.tensor(scores, dtype=torch.float).T),
                     0)[None]


def test_nms_basics():
    boxes = [[50, 50, 20, 20], [51, 51, 20, 20], [150, 150, 30, 30], [10, 10, 4, 4]]
    scores = [[0.9, 0.0], [0.8, 0.7], [0.1, 0.6], [0.0005, 0.0]]
    out = non_max_suppression(raw_output(boxes, scores), conf_thres=0.25, iou_thres=0.5)[0]
    assert out.shape == (2, 6)
    assert out[0, 4] == pytest.approx(0.9) and out[0, 5] == 0  # best first, the overlapping 0.8 box suppressed
    assert torch.allclose(out[0, :4], torch.tensor([40.0, 40.0, 60.0, 60.0]))
    assert out[1, 5] == 1 and out[1, 4] == pytest.approx(0.6)

    multi = non_max_suppression(raw_output(boxes, scores), 0.25, 0.5, multi_label=True)[0]
    assert sorted(multi[:, 5].tolist()) == [0, 1, 1]  # box 2 also counts as class 1 (0.7), not suppressed by class 0
    agnostic = non_max_suppression(raw_output(boxes, scores), 0.25, 0.5, multi_label=True, agnostic=True)[0]
    assert len(agnostic) == 2
    only1 = non_max_suppression(raw_output(boxes, scores), 0.25, 0.5, classes=[1])[0]
    assert only1[:, 5].tolist() == [1.0]  # box 1's best class is 0, so only box 2 is left
    assert len(non_max_suppression(raw_output(boxes, scores), 0.001, 0.5, max_det=1)[0]) == 1
    empty = non_max_suppression(raw_output(boxes, scores), 0.95, 0.5)[0]
    assert empty.shape == (0, 6)
    with pytest.raises(ValueError):
        non_max_suppression(raw_output(boxes, scores), 1.5, 0.5)


@pytest.fixture
def tiny_val(tmp_path, assets) -> Path:
    """A dataset yaml whose val split is the 8 bundled images (varied aspect ratios, 226x640 to 640x423)."""
    return assets_subset_yaml(assets, tmp_path, 8)


def val_loader(data_yaml: Path, imgsz: int = 160, batch: int = 4):
    args = get_cfg(overrides={"imgsz": imgsz, "data": str(data_yaml)})
    data = check_det_dataset(str(data_yaml))
    ds = build_yolo_dataset(args, data["val"], batch, data, mode="val", rect=True, stride=32)
    return args, data, build_dataloader(ds, batch, 0, shuffle=False)


def test_boxes_map_back_to_original_pixels(tiny_val):
    _, _, loader = val_loader(tiny_val)
    for batch in loader:
        h, w = batch["img"].shape[2:]
        for si, im_file in enumerate(batch["im_file"]):
            lb = Path(im_file.replace("/images/", "/labels/")).with_suffix(".txt")
            rows = np.loadtxt(lb, ndmin=2)
            h0, w0 = batch["ori_shape"][si]
            expect = xywh2xyxy(torch.tensor(rows[:, 1:], dtype=torch.float)) * torch.tensor([w0, h0, w0, h0])
            sel = batch["batch_idx"] == si
            tbox = xywh2xyxy(batch["bboxes"][sel]) * torch.tensor([w, h, w, h])
            scale_boxes((h, w), tbox, (h0, w0), batch["ratio_pad"][si])
            one_px = 1 / batch["ratio_pad"][si][0][0]  # one letterbox pixel in original pixels (resize rounding)
            assert torch.allclose(tbox, expect.clamp(min=0), atol=one_px), im_file


def test_perfect_predictions_score_one(tiny_val):
    args, data, loader = val_loader(tiny_val)
    v = DetectionValidator(args, loader)
    v.init_metrics(data["names"])
    for batch in loader:
        h, w = batch["img"].shape[2:]
        dets = []
        for si in range(len(batch["im_file"])):
            sel = batch["batch_idx"] == si
            xyxy = xywh2xyxy(batch["bboxes"][sel]) * torch.tensor([w, h, w, h])
            conf = torch.linspace(0.9, 0.5, int(sel.sum()))
            dets.append(torch.cat((xyxy, conf[:, None], batch["cls"][sel]), 1))
        v.update_metrics(dets, batch)
    v.finalize()
    assert v.seen == 8 and v.nt_per_class.sum() > 0
    # a perfect class scores 0.995 under the published rule (docs/validation.md)
    assert v.metrics.box.map50 == pytest.approx(0.995, abs=1e-9)
    assert v.metrics.box.map == pytest.approx(0.995, abs=1e-9)
    assert v.metrics.fitness == pytest.approx(0.995, abs=1e-9)
    assert v.metrics.box.mp == pytest.approx(1.0, abs=1e-3) and v.metrics.box.mr == pytest.approx(1.0, abs=1e-3)


def test_yolo_val_standalone(tiny_val):
    model = YOLO("yolov8n.yaml")
    metrics = model.val(data=str(tiny_val), imgsz=64, batch=4, workers=0, verbose=False)
    assert set(metrics.results_dict) == {"metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)",
                                         "metrics/mAP50-95(B)", "fitness"}
    assert 0.0 <= metrics.box.map <= metrics.box.map50 <= 1.0
    with pytest.raises(ValueError, match="classes"):
        model.val(data=str(tiny_val), imgsz=64, single_cls=True)
    with pytest.raises(ValueError, match="needs a dataset"):
        YOLO("yolov8n.yaml").val()
