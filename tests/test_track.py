"""YOLO.track and `yolo track` end to end: a video of two squares crossing, seen by an exact colour detector, keeps
both ids through the crossing with either tracker; persist, stream, empty frames, saving, labels, supervision."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

from published_boxes_case import fixture_model
from ultralytics import YOLO
from ultralytics.checkpoints import atomic_save, make_checkpoint
from ultralytics.cli import entrypoint
from ultralytics.engine import results as results_module
from ultralytics.errors import ConfigError, UserError

H, W, SIDE = 96, 160, 24
RED, BLUE = (0, 0, 255), (255, 0, 0)  # BGR


def frame(i: int, n: int, objects: bool = True) -> np.ndarray:
    """Frame i of n: a red square moving right at y 24 and a blue one moving left at y 40 (they overlap in the
    middle frames, blue in front)."""
    im = np.full((H, W, 3), 60, np.uint8)
    if objects:
        x = int(8 + (W - 16 - SIDE) * i / (n - 1))
        cv2.rectangle(im, (x, 24), (x + SIDE, 24 + SIDE), RED, -1)
        cv2.rectangle(im, (W - SIDE - x, 40), (W - x, 40 + SIDE), BLUE, -1)
    return im


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (W, H))
    assert vw.isOpened()
    for im in frames:
        vw.write(im)
    vw.release()
    return path


class ColourDetector(nn.Module):
    """An exact detector of the red and the blue square (class 0 both), from the RGB input in 0..1."""

    def __init__(self):
        super().__init__()
        self.stride = torch.tensor([8.0, 16.0, 32.0])
        self.names = {0: "square"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.zeros(x.shape[0], 5, 2)
        for b in range(x.shape[0]):
            r, g, bl = x[b]
            for j, mask in enumerate(((r > 0.6) & (g < 0.35) & (bl < 0.35), (bl > 0.6) & (g < 0.35) & (r < 0.35))):
                ys, xs = torch.nonzero(mask, as_tuple=True)
                if len(xs) < 20:
                    continue
                x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
                y[b, :, j] = torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, 0.9])
        return y


@pytest.fixture
def model() -> YOLO:
    yolo = YOLO("yolov8n.yaml")
    yolo.model = ColourDetector()
    return yolo


def ids_by_colour(result) -> dict[str, int]:
    """{'red': id, 'blue': id} from where each tracked box lies in the frame."""
    out = {}
    img = result.orig_img
    for box, tid in zip(result.boxes.xyxy.tolist(), result.boxes.id.tolist()):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        patch = img[y1:y2, x1:x2].reshape(-1, 3).astype(int)
        red = int(((patch[:, 2] > 150) & (patch[:, 0] < 90)).sum())
        blue = int(((patch[:, 0] > 150) & (patch[:, 2] < 90)).sum())
        out["red" if red > blue else "blue"] = int(tid)
    return out


@pytest.mark.parametrize("tracker", ["bytetrack.yaml", "botsort.yaml"])
def test_two_crossing_objects_keep_their_ids(model: YOLO, tmp_path: Path, tracker: str) -> None:
    n = 30
    video = write_video(tmp_path / "cross.mp4", [frame(i, n) for i in range(n)])
    results = model.track(str(video), tracker=tracker, imgsz=160, verbose=False)
    assert len(results) == n
    seen = [ids_by_colour(r) for r in results if r.boxes.is_track]
    assert len(seen) >= n - 1  # ByteTrack confirms new tracks at once on the first frame, BoT-SORT too
    assert all(set(s) == {"red", "blue"} for s in seen)
    assert len({s["red"] for s in seen}) == 1 and len({s["blue"] for s in seen}) == 1
    assert seen[0]["red"] != seen[0]["blue"]


def test_persist_keeps_trackers_between_calls(model: YOLO) -> None:
    n = 12
    ids, trackers = [], []
    for i in range(n):
        r = model.track(frame(i, n), persist=True, tracker="bytetrack.yaml", imgsz=160, verbose=False)[0]
        ids.append(ids_by_colour(r))
        trackers.append(model.predictor.trackers[0])
    assert all(t is trackers[0] for t in trackers) and trackers[0].frame_id == n
    assert ids[0] == ids[-1] and len({d["red"] for d in ids}) == 1
    model.track(frame(0, n), persist=False, tracker="bytetrack.yaml", imgsz=160, verbose=False)
    assert model.predictor.trackers[0] is not trackers[0] and model.predictor.trackers[0].frame_id == 1


def test_stream_and_empty_frames(model: YOLO, tmp_path: Path) -> None:
    n = 16
    frames = [frame(i, n, objects=not 5 <= i < 8) for i in range(n)]  # three empty frames in the middle
    video = write_video(tmp_path / "gap.mp4", frames)
    gen = model.track(str(video), stream=True, tracker="bytetrack.yaml", imgsz=160, verbose=False)
    assert not isinstance(gen, list)
    out = list(gen)
    assert [len(r.boxes) for r in out[5:8]] == [0, 0, 0] and all(r.boxes.id is None for r in out[5:8])
    before, after = ids_by_colour(out[4]), ids_by_colour(out[10])
    assert before == after  # lost for three frames, found again within the track buffer


def test_empty_first_frame_and_no_detections(model: YOLO) -> None:
    r = model.track(frame(0, 40, objects=False), persist=True, tracker="botsort.yaml", imgsz=160, verbose=False)[0]
    assert len(r.boxes) == 0 and r.boxes.id is None
    # after an empty first frame, new objects are tentative for one frame (only frame 1 confirms at once), and
    # untracked results keep their detections, as in the published package
    r = model.track(frame(1, 40), persist=True, tracker="botsort.yaml", imgsz=160, verbose=False)[0]
    assert not r.boxes.is_track and len(r.boxes) == 2
    r = model.track(frame(2, 40), persist=True, tracker="botsort.yaml", imgsz=160, verbose=False)[0]
    assert r.boxes.is_track and sorted(r.boxes.id.tolist()) == [1, 2]


def test_labels_show_ids_and_save_writes_video(model: YOLO, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video = write_video(tmp_path / "cross.mp4", [frame(i, 40) for i in range(8)])  # 3 px per frame
    results = model.track(str(video), save=True, project=str(tmp_path / "runs"), tracker="bytetrack.yaml",
                          imgsz=160, verbose=False)
    save_dir = Path(results[0].save_dir)
    assert save_dir.name == "track" and (save_dir / "cross.mp4").is_file()
    labels = []
    monkeypatch.setattr(results_module, "draw_box_label", lambda img, xyxy, label, *a, **k: labels.append(label))
    results[-1].plot()
    assert sorted(labels) == sorted(f"id:{i} square 0.90" for i in results[-1].boxes.id.int().tolist())


def test_supervision_snippet_returns_tracker_ids(model: YOLO) -> None:
    sv = pytest.importorskip("supervision")
    for i in range(3):
        result = model.track(frame(i, 10), persist=True, tracker="bytetrack.yaml", imgsz=160, verbose=False)[0]
    detections = sv.Detections.from_ultralytics(result)
    assert detections.tracker_id is not None and sorted(detections.tracker_id.tolist()) == [1, 2]
    np.testing.assert_allclose(detections.xyxy, result.boxes.xyxy.numpy())


def test_bad_tracker_and_source_are_one_line(model: YOLO, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nope.yaml"):
        model.track(frame(0, 2), tracker="nope.yaml", imgsz=160, verbose=False)
    bad = tmp_path / "my.yaml"
    bad.write_text("tracker_type: deepsort\ntrack_high_thresh: 0.5\n")
    with pytest.raises(ConfigError, match="tracker_type"):
        model.track(frame(0, 2), tracker=str(bad), imgsz=160, verbose=False)
    with pytest.raises(UserError, match="missing.mp4"):
        model.track(str(tmp_path / "missing.mp4"), imgsz=160, verbose=False)
    fake_video = tmp_path / "notes.mp4"
    fake_video.write_text("not a video")
    with pytest.raises(UserError, match="notes.mp4"):
        list(model.track(str(fake_video), imgsz=160, verbose=False))


@pytest.mark.slow
def test_yolo_track_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "fixture.pt"
    atomic_save(make_checkpoint(fixture_model(), train_args={"imgsz": 64}, finished=True), ckpt)
    video = write_video(tmp_path / "cross.mp4", [frame(i, 6) for i in range(6)])
    argv = ["track", f"model={ckpt}", f"source={video}", "tracker=bytetrack.yaml", "imgsz=160", f"project={tmp_path}"]
    assert entrypoint(argv) == 0
    assert (tmp_path / "track" / "cross.mp4").is_file()  # the command line saves by default
    assert entrypoint(["track", f"model={ckpt}", f"source={video}", "tracker=nope.yaml"]) == 2
    assert "nope.yaml" in capsys.readouterr().err
