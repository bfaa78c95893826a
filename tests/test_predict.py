"""Prediction: every source type, bad input, letterbox + NMS + scaling back, batching, streaming, saved outputs.

Most tests run a `FakeDetector` (fixed boxes relative to the input, no convolutions) so that the expected
boxes are known exactly and the tests stay fast; a few run a real yolov8n on the bundled COCO images.
"""

from __future__ import annotations

import re
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from ultralytics.data.loaders import InferenceSource
from ultralytics.engine.predictor import DetectionPredictor, predict
from ultralytics.engine.results import Results
from ultralytics.nn.autobackend import AutoBackend
from ultralytics.utils import SETTINGS

NAMES = {0: "cat", 1: "dog", 2: "bird"}
# rows of (cx, cy, w, h) as fractions of the network input, class, score
ROWS = [(0.5, 0.5, 0.5, 0.5, 1, 0.9),  # centre box
        (0.52, 0.5, 0.5, 0.5, 2, 0.8),  # overlaps the centre box (IoU > 0.7), other class
        (0.15, 0.15, 0.1, 0.1, 0, 0.2)]  # below the default conf 0.25


class FakeDetector(nn.Module):
    """A stand-in model: the same detections (relative to the input size) for every image."""

    def __init__(self, rows=ROWS):
        super().__init__()
        self.rows = rows
        self.stride = torch.tensor([8.0, 16.0, 32.0])
        self.names = dict(NAMES)
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        self.calls.append(tuple(x.shape))
        y = torch.zeros(b, 4 + len(self.names), len(self.rows))
        for j, (cx, cy, bw, bh, c, s) in enumerate(self.rows):
            y[:, :4, j] = torch.tensor([cx * w, cy * h, bw * w, bh * h])
            y[:, 4 + c, j] = s
        return y


@pytest.fixture
def fake() -> AutoBackend:
    return AutoBackend(FakeDetector())


@pytest.fixture(scope="module")
def images(assets) -> list[Path]:
    return sorted((assets / "images").glob("*.jpg"))[:3]


def _video(path: Path, frames: int, size=(96, 128)) -> Path:
    h, w = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
    assert vw.isOpened()
    for i in range(frames):
        im = np.full((h, w, 3), 40, np.uint8)
        cv2.rectangle(im, (5 + 3 * i, 10), (50 + 3 * i, 60), (0, 200, 255), -1)
        vw.write(im)
    vw.release()
    return path


def _frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


# ---------------------------------------------------------------------------------------------------- sources
def test_all_source_types(fake, images, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in images:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "notes.md").write_text("not an image")  # ignored inside a folder
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(str(p) for p in images[:2]) + "\n")
    rgb = cv2.imread(str(images[0]))[..., ::-1]
    cases = [
        (str(images[0]), 1),
        (images[0], 1),
        (str(folder), 3),
        (str(folder / "*.jpg"), 3),
        (str(lst), 2),
        (cv2.imread(str(images[0])), 1),
        (Image.fromarray(rgb.copy()), 1),
        (torch.rand(2, 3, 64, 96), 2),
        ([str(images[0]), np.zeros((40, 50, 3), np.uint8), Image.new("RGB", (30, 20))], 3),
    ]
    for source, n in cases:
        res = predict(fake, source, imgsz=64, verbose=False)
        assert len(res) == n, source if isinstance(source, (str, Path)) else type(source)
        assert all(isinstance(r, Results) for r in res)
    res = predict(fake, [np.zeros((40, 50, 3), np.uint8), Image.new("RGB", (30, 20))], imgsz=64, verbose=False)
    assert [r.path for r in res] == ["image0.jpg", "image1.jpg"]
    assert [r.orig_shape for r in res] == [(40, 50), (20, 30)]
    pil = predict(fake, Image.fromarray(rgb.copy()), imgsz=64, verbose=False)[0]
    np.testing.assert_array_equal(pil.orig_img, cv2.imread(str(images[0])))  # PIL RGB → BGR


def test_missing_file_names_it(fake, tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        predict(fake, str(missing))
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        predict(fake, str(tmp_path / "nothing_here" / "*.jpg"))
    lst = tmp_path / "l.txt"
    lst.write_text(str(missing))
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        predict(fake, str(lst))


def test_unsupported_extension_lists_types(fake, tmp_path):
    f = tmp_path / "data.xyz"
    f.write_text("hello")
    with pytest.raises(ValueError, match=r"unsupported file type '\.xyz'.*jpg.*mp4"):
        predict(fake, str(f))
    with pytest.raises(TypeError, match="unsupported source type"):
        predict(fake, 3.5)
    with pytest.raises(ValueError, match="not supported"):
        predict(fake, "rtsp://camera/stream")


def test_unreadable_image_in_folder_is_skipped(fake, images, tmp_path, logs):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(images[0].read_bytes())
    (folder / "broken.jpg").write_bytes(b"this is not a jpeg")
    (folder / "c.png").write_bytes(b"")
    res = predict(fake, str(folder), imgsz=64, verbose=False)
    assert [Path(r.path).name for r in res] == ["a.jpg"]
    assert any("skipping unreadable image" in m and "broken.jpg" in m for m in logs)
    assert any("c.png" in m for m in logs)
    lst = tmp_path / "list.txt"
    lst.write_text(f"{folder / 'a.jpg'}\n{folder / 'broken.jpg'}\n")
    assert len(predict(fake, str(lst), imgsz=64, verbose=False)) == 1  # skipped in a list file too
    with pytest.raises(OSError, match="broken.jpg"):  # named directly: an error, not a skip
        predict(fake, str(folder / "broken.jpg"))


def test_tiny_grayscale_and_rgba_images(fake, tmp_path):
    gray = np.random.default_rng(0).integers(0, 255, (50, 70), dtype=np.uint8)
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., 3] = 255
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    cv2.imwrite(str(tmp_path / "one.png"), np.full((1, 1, 3), 200, np.uint8))
    sources = [str(tmp_path / "gray.png"), str(tmp_path / "rgba.png"), str(tmp_path / "one.png"),
               gray, rgba, np.full((1, 1, 3), 7, np.uint8)]
    res = predict(fake, sources, imgsz=64, verbose=False)
    assert [r.orig_shape for r in res] == [(50, 70), (40, 60), (1, 1)] * 2
    for r in res:
        assert r.orig_img.ndim == 3 and r.orig_img.shape[2] == 3 and r.orig_img.dtype == np.uint8
        h, w = r.orig_shape
        xyxy = r.boxes.xyxy
        assert (xyxy[:, [0, 2]] >= 0).all() and (xyxy[:, [0, 2]] <= w).all()
        assert (xyxy[:, [1, 3]] >= 0).all() and (xyxy[:, [1, 3]] <= h).all()
    one = res[2]  # a 1x1 image is upscaled to imgsz x imgsz; boxes come back in sub-pixel units inside [0, 1]
    assert one.boxes.xyxy[0].tolist() == pytest.approx([0.25, 0.25, 0.75, 0.75])
    assert res[2].plot().shape == (1, 1, 3)


def test_tensor_source_must_fit_the_stride(fake):
    with pytest.raises(ValueError, match="multiple of the model stride 32"):
        predict(fake, torch.rand(1, 3, 50, 64), verbose=False)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        predict(fake, torch.rand(1, 4, 64, 64), verbose=False)
    r = predict(fake, torch.rand(3, 64, 96), verbose=False)[0]
    assert r.orig_shape == (64, 96)
    assert fake.model.calls[-1] == (1, 3, 64, 96)  # fed as given, no letterbox


# ---------------------------------------------------------------------------------------------------- predictor
def test_nms_thresholds_classes_and_scaling_back(fake):
    img = np.zeros((426, 640, 3), np.uint8)  # letterboxed at imgsz=160 to 128x160 (gain 0.25, 11 px top/bottom)
    r = predict(fake, img, imgsz=160, verbose=False)[0]
    assert fake.model.calls[-1] == (1, 3, 128, 160)
    # default conf 0.25 drops the 0.2 box; NMS per class keeps both overlapping boxes
    assert r.boxes.cls.tolist() == [1.0, 2.0]
    assert r.boxes.conf.tolist() == pytest.approx([0.9, 0.8])
    cx, cy, w, h = r.boxes.xywh[0].tolist()
    gain = 0.25
    assert abs(cx - 320) <= 0.5 / gain and abs(cy - 213) <= 0.5 / gain + 0.5
    # per axis the letterbox's own rounding is undone (SPEC §6): 640 → 160 exactly, 426 → round(106.5) = 106 rows
    assert w == pytest.approx(80 / (160 / 640)) and h == pytest.approx(64 / (106 / 426))
    assert len(predict(fake, img, imgsz=160, conf=0.1, verbose=False)[0]) == 3
    assert predict(fake, img, imgsz=160, classes=[2], verbose=False)[0].boxes.cls.tolist() == [2.0]
    assert predict(fake, img, imgsz=160, classes=0, conf=0.1, verbose=False)[0].boxes.cls.tolist() == [0.0]
    assert predict(fake, img, imgsz=160, agnostic_nms=True, verbose=False)[0].boxes.cls.tolist() == [1.0]
    assert len(predict(fake, img, imgsz=160, iou=0.1, conf=0.1, verbose=False)[0]) == 3
    assert len(predict(fake, img, imgsz=160, max_det=1, verbose=False)[0]) == 1
    # rect=False: the full imgsz x imgsz letterbox
    predict(fake, img, imgsz=160, rect=False, verbose=False)
    assert fake.model.calls[-1] == (1, 3, 160, 160)


def test_batching_same_and_mixed_shapes(fake, tmp_path):
    a, b, c = (np.zeros((100, 200, 3), np.uint8) for _ in range(3))
    res = predict(fake, [a, b, c], imgsz=128, batch=2, verbose=False)
    assert len(res) == 3
    # a list is one batch of all its images whatever batch= says (the published package's rule, recorded with its
    # 8.4.190: predict([3 arrays], batch=2) runs (3, 3, 64, 128)); minimal letterbox for same shapes
    assert fake.model.calls[-1] == (3, 3, 64, 128)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k, im in enumerate((a, b, c)):
        cv2.imwrite(str(folder / f"{k}.jpg"), im)
    predict(fake, folder, imgsz=128, batch=2, verbose=False)  # other sources: batches of `batch`
    assert fake.model.calls[-2:] == [(2, 3, 64, 128), (1, 3, 64, 128)]
    predict(fake, [a, np.zeros((200, 100, 3), np.uint8)], imgsz=128, batch=2, verbose=False)
    assert fake.model.calls[-1] == (2, 3, 128, 128)  # mixed shapes: full square letterbox


def test_half_on_cpu_warns_and_runs(fake, logs):
    res = predict(FakeDetector(), np.zeros((64, 64, 3), np.uint8), half=True, imgsz=64, verbose=False)
    assert len(res) == 1
    assert any("half=True needs a CUDA device" in m for m in logs)


def test_progress_line_speed_and_outputs(images, logs):
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", verbose=False)
    res = predict(model, [str(images[0])], imgsz=160, save=True, save_txt=True, conf=0.0001, max_det=5)
    r = res[0]
    assert set(r.speed) == {"preprocess", "inference", "postprocess"} and all(v >= 0 for v in r.speed.values())
    h, w = r.orig_shape
    line = next(m for m in logs if m.startswith("image 1/1 "))
    assert str(images[0]) in line and line.endswith("ms")
    gain = 160 / max(h, w)  # minimal letterbox: long side 160, short side padded to the next multiple of 32
    lh, lw = (-(-round(s * gain) // 32) * 32 for s in (h, w))
    assert f": {lh}x{lw} " in line
    save_dir = Path(r.save_dir)  # runs/detect/predict, or predict2, ... when an earlier test of the session saved
    assert save_dir.parent == Path(SETTINGS["runs_dir"]) / "detect" and re.fullmatch(r"predict\d*", save_dir.name)
    saved = cv2.imread(str(save_dir / images[0].name))
    assert saved is not None and saved.shape[:2] == (h, w)
    labels = (save_dir / "labels" / f"{images[0].stem}.txt").read_text().splitlines()
    assert len(labels) == len(r) > 0
    assert any("Results saved to" in m for m in logs)
    # a second run goes to predict2; project/name/exist_ok are honoured
    predict(model, str(images[0]), imgsz=160, save=True, verbose=False)
    assert (save_dir.parent / "predict2" / images[0].name).exists()
    proj = Path(SETTINGS["runs_dir"]) / "mine"
    for _ in range(2):
        predict(model, str(images[0]), imgsz=160, save=True, project=str(proj), name="exp", exist_ok=True,
                verbose=False)
    assert sorted(p.name for p in proj.iterdir()) == ["exp"]
    # the user's model is neither fused nor switched to eval mode
    assert model.training and not model.is_fused()


def test_python_predict_saves_nothing_by_default(fake):
    runs = Path(SETTINGS["runs_dir"])
    before = sorted(runs.rglob("*")) if runs.exists() else []
    res = predict(fake, np.zeros((64, 64, 3), np.uint8), verbose=False)
    assert res[0].save_dir is None
    assert (sorted(runs.rglob("*")) if runs.exists() else []) == before


# ---------------------------------------------------------------------------------------------------- video
def test_video_stream_writes_annotated_video(fake, tmp_path):
    vid = _video(tmp_path / "clip.mp4", frames=7)
    pred = DetectionPredictor(overrides={"imgsz": 64, "save": True, "save_txt": True, "verbose": False})
    gen = pred(str(vid), model=fake, stream=True)
    assert isinstance(gen, types.GeneratorType)
    results = list(gen)
    assert len(results) == 7 and all(r.orig_shape == (96, 128) for r in results)
    out = pred.save_dir / "clip.mp4"
    assert out.exists() and _frames(out) == 7
    cap = cv2.VideoCapture(str(out))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (96, 128, 3)
    assert len(list((pred.save_dir / "labels").glob("clip_*.txt"))) == 7

    strided = DetectionPredictor(overrides={"imgsz": 64, "save": True, "vid_stride": 3, "verbose": False})
    assert len(strided(str(vid), model=fake)) == 3  # frames 1, 4, 7
    assert _frames(strided.save_dir / "clip.mp4") == 3


def test_stream_is_lazy(fake, tmp_path, logs):
    vid = _video(tmp_path / "long.mp4", frames=30)
    pred = DetectionPredictor(overrides={"imgsz": 64})
    gen = pred(str(vid), model=fake, stream=True)
    assert pred.seen == 0  # nothing read before the first next()
    first = next(gen)
    assert pred.seen == 1 and first.orig_shape == (96, 128)
    assert any(m.startswith(f"video 1/1 (frame 1/30) {vid}: 64x64 ") for m in logs)
    gen.close()
    src = InferenceSource(str(vid))
    assert len(src) == 1 and src.has_video
