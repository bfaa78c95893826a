"""Results and Boxes on hand-made detections: formats, indexing, text/JSON/label/crop output and plotting."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from ultralytics.engine.results import Boxes, Results, default_line_width

NAMES = {0: "person", 1: "bus", 2: "dog"}
H, W = 200, 400  # original image (h, w)


def _data() -> torch.Tensor:
    # x1, y1, x2, y2, conf, cls
    return torch.tensor([[10.0, 20.0, 110.0, 70.0, 0.9, 0.0],
                         [200.0, 100.0, 400.0, 200.0, 0.6, 1.0],
                         [50.0, 50.0, 60.0, 90.0, 0.3, 0.0]])


@pytest.fixture
def result() -> Results:
    img = np.full((H, W, 3), 90, np.uint8)
    img[:, W // 2:] = 160  # two tones so crops differ
    return Results(img, "/some/dir/street.jpg", NAMES, boxes=_data(), speed={"preprocess": 1.0, "inference": 2.0,
                                                                             "postprocess": 0.5})


def test_box_formats_are_consistent(result):
    b = result.boxes
    torch.testing.assert_close(b.xyxy, _data()[:, :4])
    torch.testing.assert_close(b.xywh[0], torch.tensor([60.0, 45.0, 100.0, 50.0]))
    torch.testing.assert_close(b.xyxyn[1], torch.tensor([0.5, 0.5, 1.0, 1.0]))
    torch.testing.assert_close(b.xywhn[1], torch.tensor([0.75, 0.75, 0.5, 0.5]))
    torch.testing.assert_close(b.conf, torch.tensor([0.9, 0.6, 0.3]))
    torch.testing.assert_close(b.cls, torch.tensor([0.0, 1.0, 0.0]))
    assert b.id is None and not b.is_track
    assert b.data.shape == (3, 6) and b.shape == (3, 6)
    assert b.orig_shape == (H, W)
    # xywhn → pixels → xyxy round trip
    back = b.xywhn * torch.tensor([W, H, W, H])
    xyxy = torch.cat((back[:, :2] - back[:, 2:] / 2, back[:, :2] + back[:, 2:] / 2), 1)
    torch.testing.assert_close(xyxy, b.xyxy)


def test_numpy_and_device_conversions(result):
    nb = result.boxes.numpy()
    assert isinstance(nb.data, np.ndarray) and isinstance(nb.xywhn, np.ndarray)
    np.testing.assert_allclose(nb.xywhn, result.boxes.xywhn.numpy(), rtol=1e-6)
    np.testing.assert_allclose(nb.xyxyn, result.boxes.xyxyn.numpy(), rtol=1e-6)
    assert isinstance(result.boxes.cpu().data, torch.Tensor)
    assert result.boxes.to(torch.float64).data.dtype == torch.float64
    rn = result.numpy()
    assert isinstance(rn.boxes.data, np.ndarray) and len(rn) == 3 and rn.path == result.path
    assert isinstance(result.cpu().boxes.data, torch.Tensor)


def test_tracked_boxes_have_ids():
    data = torch.tensor([[0.0, 0.0, 10.0, 10.0, 7.0, 0.8, 2.0]])
    b = Boxes(data, (20, 20))
    assert b.is_track and b.id.tolist() == [7.0] and b.conf.tolist() == [pytest.approx(0.8)]
    with pytest.raises(ValueError, match="6 columns"):
        Boxes(torch.zeros(1, 5), (20, 20))


def test_indexing_len_and_iteration(result):
    assert len(result) == 3 and len(result.boxes) == 3
    first = result[0]
    assert isinstance(first, Results) and len(first) == 1
    torch.testing.assert_close(first.boxes.xyxy, _data()[:1, :4])
    assert first.names == NAMES and first.path == result.path and first.orig_shape == (H, W)
    assert len(result[1:]) == 2 and len(result[[0, 2]]) == 2
    assert len(result[result.boxes.conf > 0.5]) == 2
    boxes = list(result.boxes)
    assert len(boxes) == 3 and all(isinstance(b, Boxes) and len(b) == 1 for b in boxes)
    assert float(boxes[1].conf) == pytest.approx(0.6)
    assert len(result.boxes[0]) == 1 and result.boxes[0].xyxy.shape == (1, 4)


def test_empty_result():
    r = Results(np.zeros((30, 40, 3), np.uint8), "x.jpg", NAMES)
    assert len(r) == 0 and r.boxes.xyxy.shape == (0, 4) and r.boxes.xywhn.shape == (0, 4)
    assert r.summary() == [] and json.loads(r.to_json()) == []
    assert r.verbose() == "(no detections), "
    out = r.plot()
    assert out.shape == (30, 40, 3) and np.array_equal(out, r.orig_img)


def test_summary_and_json(result):
    s = result.summary()
    assert [d["name"] for d in s] == ["person", "bus", "person"]
    assert s[0] == {"name": "person", "class": 0, "confidence": 0.9,
                    "box": {"x1": 10.0, "y1": 20.0, "x2": 110.0, "y2": 70.0}}
    n = result.summary(normalize=True)
    assert n[1]["box"] == {"x1": 0.5, "y1": 0.5, "x2": 1.0, "y2": 1.0}
    assert json.loads(result.to_json()) == s
    assert all(type(v) is float for d in s for v in d["box"].values()) and type(s[0]["confidence"]) is float
    assert result.tojson() == result.to_json()
    assert result.verbose() == "2 persons, 1 bus, "


def test_save_txt_round_trip(result, tmp_path):
    f = tmp_path / "labels" / "street.txt"
    assert result.save_txt(f) == str(f)
    rows = np.loadtxt(f, ndmin=2)
    assert rows.shape == (3, 5)
    np.testing.assert_array_equal(rows[:, 0], result.boxes.cls.numpy())
    np.testing.assert_allclose(rows[:, 1:], result.boxes.xywhn.numpy(), atol=1e-6)
    g = tmp_path / "conf.txt"
    result.save_txt(g, save_conf=True)
    rows = np.loadtxt(g, ndmin=2)
    assert rows.shape == (3, 6)
    np.testing.assert_allclose(rows[:, 5], result.boxes.conf.numpy(), atol=1e-6)
    # labels are in the training label format: they load back as Boxes in pixels
    xywh = rows[:, 1:5] * [W, H, W, H]
    np.testing.assert_allclose(xywh, result.boxes.xywh.numpy(), atol=1e-3)


def test_plot_draws_on_a_copy_of_the_original_shape(result):
    before = result.orig_img.copy()
    img = result.plot()
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    assert np.array_equal(result.orig_img, before), "plot must not modify the original image"
    changed = np.any(img != before, axis=2)
    assert changed.sum() > 500  # boxes and label tags drawn
    # a box edge is drawn where the first box is
    assert changed[20, 10:110].mean() > 0.5 or changed[19:22, 10:110].any()
    no_labels = result.plot(labels=False, conf=False)
    assert np.any(no_labels != before) and np.count_nonzero(np.any(no_labels != before, 2)) < changed.sum()
    assert np.array_equal(result.plot(boxes=False), before)
    thick = np.count_nonzero(np.any(result.plot(line_width=6, labels=False, conf=False) != before, 2))
    assert thick > np.count_nonzero(np.any(no_labels != before, 2))


def test_line_width_scales_with_image_size():
    assert default_line_width((100, 100)) == 2
    assert default_line_width((1080, 1920)) == 4
    assert default_line_width((4000, 6000)) == 15


def test_save_and_save_crop(result, tmp_path):
    f = result.save(tmp_path / "out" / "annotated.jpg")
    im = cv2.imread(f)
    assert im is not None and im.shape == (H, W, 3)
    crops = result.save_crop(tmp_path / "crops", file_name="street")
    assert len(crops) == 3
    names = sorted(p.relative_to(tmp_path / "crops").as_posix() for p in (tmp_path / "crops").rglob("*.jpg"))
    assert names == ["bus/street.jpg", "person/street.jpg", "person/street2.jpg"]
    bus = cv2.imread(str(tmp_path / "crops" / "bus" / "street.jpg"))
    assert bus.shape == (100, 200, 3)


def test_grayscale_image_plot():
    r = Results(np.zeros((50, 60), np.uint8), "g.png", NAMES, boxes=torch.tensor([[5.0, 5.0, 30.0, 30.0, 0.5, 2.0]]))
    assert r.plot().shape == (50, 60, 3)
