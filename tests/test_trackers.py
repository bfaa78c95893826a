"""Multi-object tracking (ultralytics/trackers): Kalman filter, assignment, ByteTrack/BoT-SORT behaviour, tracker
yamls, parity with the published trackers (tests/fixtures/tracking, recorded by record_published.py beside them)
and the predictor hooks."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ultralytics.errors import ConfigError, ConfigTypeError, MissingFileError, UserError
from ultralytics.trackers import BOTSORT, BYTETracker, check_tracker_cfg, load_tracker_cfg, register_tracker
from ultralytics.trackers import matching
from ultralytics.trackers.gmc import GMC
from ultralytics.trackers.kalman import KalmanFilterXYAH, KalmanFilterXYWH

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "tracking"
sys.path.insert(0, str(ROOT / "benchmarks"))
from track_sequences import make_sequence  # noqa: E402  (numpy-only sequence generator)

# the published packaged yamls, key by key (printed from the published package 8.4.190)
PUBLISHED_BYTETRACK = {"tracker_type": "bytetrack", "track_high_thresh": 0.25, "track_low_thresh": 0.1,
                       "new_track_thresh": 0.25, "track_buffer": 30, "match_thresh": 0.8, "fuse_score": True}
PUBLISHED_BOTSORT = {**PUBLISHED_BYTETRACK, "tracker_type": "botsort", "gmc_method": "sparseOptFlow",
                     "proximity_thresh": 0.5, "appearance_thresh": 0.8, "with_reid": False, "model": "auto"}


def tracker(kind: str = "bytetrack", **overrides) -> BYTETracker:
    cfg = {**(PUBLISHED_BOTSORT if kind == "botsort" else PUBLISHED_BYTETRACK), **overrides}
    if kind == "botsort":
        cfg.setdefault("gmc_method", "none")
    return (BOTSORT if kind == "botsort" else BYTETracker)(check_tracker_cfg(cfg))


def box(cx: float, cy: float, w: float = 40, h: float = 80, conf: float = 0.9) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, conf, 0]


# ------------------------------------------------------------------------------------------------- Kalman filter
def test_kalman_xyah_initiate_predict_update_by_hand():
    kf = KalmanFilterXYAH()
    mean, cov = kf.initiate(np.array([100.0, 200.0, 0.5, 100.0]))
    # std: position 2 * h / 20 = 10, aspect 1e-2, velocity 10 * h / 160 = 6.25, aspect velocity 1e-5
    np.testing.assert_allclose(mean, [100, 200, 0.5, 100, 0, 0, 0, 0])
    np.testing.assert_allclose(np.diag(cov), [100, 100, 1e-4, 100, 39.0625, 39.0625, 1e-10, 39.0625])
    # update straight away: S = 100 + (h / 20)^2 = 125, gain 0.8 on x, nothing on the velocity yet
    m_upd, c_upd = kf.update(mean, cov, np.array([110.0, 200.0, 0.5, 100.0]))
    assert m_upd[0] == pytest.approx(108.0) and m_upd[4] == pytest.approx(0.0)
    assert c_upd[0, 0] == pytest.approx(100 - 0.8 * 100)
    mean[4] = 3.0  # moving right 3 px/frame
    m, c = kf.predict(mean, cov)
    assert m[0] == pytest.approx(103.0) and m[1] == pytest.approx(200.0)
    # P_xx = 100 + 39.0625 + (h/20)^2 = 164.0625; P_x,vx = 39.0625; P_vxvx = 39.0625 + (h/160)^2
    assert c[0, 0] == pytest.approx(164.0625) and c[0, 4] == pytest.approx(39.0625)
    assert c[4, 4] == pytest.approx(39.0625 + 0.390625)
    m2, c2 = kf.update(m, c, np.array([113.0, 200.0, 0.5, 100.0]))
    s = 164.0625 + 25.0
    assert m2[0] == pytest.approx(103 + 10 * 164.0625 / s)
    assert m2[4] == pytest.approx(3 + 10 * 39.0625 / s)
    assert c2[0, 0] == pytest.approx(164.0625 - 164.0625 ** 2 / s)


def test_kalman_xywh_noise_scales_with_width_and_height():
    kf = KalmanFilterXYWH()
    mean, cov = kf.initiate(np.array([0.0, 0.0, 40.0, 100.0]))
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), [4, 10, 4, 10, 2.5, 6.25, 2.5, 6.25])
    m, c = kf.multi_predict(np.stack([mean, mean]), np.stack([cov, cov]))
    assert c.shape == (2, 8, 8) and c[0, 0, 0] == pytest.approx(16 + 6.25 + 4)  # + (w/20)^2


# ------------------------------------------------------------------------------------------------- assignment
@pytest.mark.parametrize("use_lap", [True, False])
def test_linear_assignment_threshold_semantics(use_lap):
    m, ur, uc = matching.linear_assignment(np.array([[0.1, 0.9], [0.85, 0.2]]), 0.8, use_lap=use_lap)
    assert m.tolist() == [[0, 0], [1, 1]] and len(ur) == len(uc) == 0
    m, ur, uc = matching.linear_assignment(np.array([[0.81]]), 0.8, use_lap=use_lap)
    assert len(m) == 0 and ur.tolist() == [0] and uc.tolist() == [0]
    # leaving a pair unmatched costs `thresh`: 0.0 + unmatched (0.6) beats 0.5 + 0.5 ...
    m, ur, uc = matching.linear_assignment(np.array([[0.0, 0.5], [0.5, 0.9]]), 0.6, use_lap=use_lap)
    assert m.tolist() == [[0, 0]] and ur.tolist() == [1] and uc.tolist() == [1]
    # ... but with a looser threshold both pairs are taken at the least total cost (0.0 + 0.9)
    m, _, _ = matching.linear_assignment(np.array([[0.0, 0.5], [0.5, 0.9]]), 1.2, use_lap=use_lap)
    assert m.tolist() == [[0, 0], [1, 1]]
    m, ur, uc = matching.linear_assignment(np.zeros((0, 3)), 0.8, use_lap=use_lap)
    assert len(m) == 0 and uc.tolist() == [0, 1, 2]


def test_scipy_and_lap_solve_the_same_problem():
    pytest.importorskip("lap")
    rng = np.random.default_rng(0)
    for _ in range(50):
        cost = rng.random((rng.integers(1, 8), rng.integers(1, 8)))
        a = matching.linear_assignment(cost, 0.5, use_lap=True)
        b = matching.linear_assignment(cost, 0.5, use_lap=False)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_iou_distance_and_fuse_score():
    d = matching.iou_distance(np.array([[0, 0, 10, 10.0]]), np.array([[5, 0, 15, 10.0], [20, 20, 30, 30.0]]))
    np.testing.assert_allclose(d, [[1 - 50 / 150, 1.0]], atol=1e-6)
    fused = matching.fuse_score(d, [SimpleNamespace(score=0.5), SimpleNamespace(score=1.0)])
    np.testing.assert_allclose(fused, [[1 - 0.5 / 3, 1.0]], atol=1e-6)


# ------------------------------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("kind", ["bytetrack", "botsort"])
def test_two_objects_crossing_keep_their_ids(kind):
    t = tracker(kind)
    ids_a, ids_b = set(), set()
    for f in range(60):  # A goes right, B goes left, overlapping for several frames around f = 25
        out = t.update(np.array([box(50 + 8 * f, 200), box(450 - 8 * f, 206)]))
        assert len(out) == 2 and out.shape[1] == 8
        a_row = out[out[:, 7] == 0][0]  # column 7: the detection each track box came from
        b_row = out[out[:, 7] == 1][0]
        ids_a.add(int(a_row[4]))
        ids_b.add(int(b_row[4]))
    assert ids_a == {1} and ids_b == {2}


@pytest.mark.parametrize("kind", ["bytetrack", "botsort"])
def test_frames_without_detections_lose_then_refind_within_buffer(kind):
    t = tracker(kind, track_buffer=5)
    for f in range(5):
        assert t.update(np.array([box(100 + 2 * f, 100)]))[:, 4].tolist() == [1]
    for f in range(5, 9):  # 4 empty frames: lost, not returned
        assert len(t.update(np.zeros((0, 6)))) == 0
    out = t.update(np.array([box(100 + 2 * 9, 100)]))
    assert out[:, 4].tolist() == [1]  # re-found, same id
    for f in range(10, 17):  # 7 empty frames > track_buffer: removed
        t.update(np.zeros((0, 6)))
    t.update(np.array([box(134, 100)]))
    assert t.update(np.array([box(136, 100)]))[:, 4].tolist() == [2]  # a new track (confirmed on its 2nd frame)


def test_empty_first_frame_and_confirmation():
    t = tracker()
    out = t.update(np.zeros((0, 6)))
    assert out.shape == (0, 8)
    assert len(t.update(np.array([box(100, 100)]))) == 0  # born after the first frame: unconfirmed
    assert t.update(np.array([box(102, 100)]))[:, 4].tolist() == [1]
    low = t.update(np.array([box(104, 100, conf=0.2)]))  # a low score still continues a tracked track
    assert low[:, 4].tolist() == [1] and low[0, 5] == pytest.approx(0.2)


def test_ids_are_per_tracker_and_restart_on_reset():
    a, b = tracker(), tracker()
    assert a.update(np.array([box(100, 100), box(300, 100)]))[:, 4].tolist() == [1, 2]
    assert b.update(np.array([box(100, 100)]))[:, 4].tolist() == [1]
    a.reset()
    assert a.update(np.array([box(500, 300)]))[:, 4].tolist() == [1]


def test_duck_typed_detections_match_array_input():
    dets = np.array([box(100, 100), box(300, 120, conf=0.5)], dtype=np.float32)
    boxes = SimpleNamespace(xyxy=torch.tensor(dets[:, :4]), conf=torch.tensor(dets[:, 4]),
                            cls=torch.tensor(dets[:, 5]))
    np.testing.assert_allclose(tracker().update(boxes), tracker().update(dets), atol=1e-4)


@pytest.mark.parametrize("method", ["sparseOptFlow", "orb", "sift", "ecc"])
def test_gmc_recovers_a_camera_shift(method):
    rng = np.random.default_rng(3)
    scene = np.full((240, 400, 3), 128, np.uint8)
    for x, y, w, h, g in zip(*(rng.integers(0, 400, 200), rng.integers(0, 240, 200), rng.integers(8, 40, 200),
                               rng.integers(8, 40, 200), rng.integers(0, 256, 200))):
        scene[y:y + h, x:x + w] = g  # overlapping grey rectangles: plenty of corners
    gmc = GMC(method)
    np.testing.assert_allclose(gmc.apply(scene[:, 40:360].copy()), np.eye(2, 3))
    warp = gmc.apply(scene[:, 46:366].copy())  # the camera moved 6 px right: the scene moves 6 px left
    np.testing.assert_allclose(warp, [[1, 0, -6], [0, 1, 0]], atol=0.6 if method == "ecc" else 0.3)


def test_botsort_reid_histogram_keeps_lookalike_apart():
    img = np.zeros((240, 320, 3), np.uint8)
    img[:, :160] = (0, 0, 255)
    img[:, 160:] = (255, 0, 0)
    t = tracker("botsort", with_reid=True)
    out = t.update(np.array([box(100, 120), box(220, 120)]), img)
    assert out[:, 4].tolist() == [1, 2]
    assert all(tr.smooth_feat is not None for tr in t.tracked_stracks)


# ------------------------------------------------------------------------------------------------- yamls
def test_packaged_yamls_have_the_published_keys_and_defaults():
    assert vars(load_tracker_cfg("bytetrack.yaml")) == PUBLISHED_BYTETRACK
    assert vars(load_tracker_cfg("botsort.yaml")) == PUBLISHED_BOTSORT


@pytest.mark.parametrize("content, exc, words", [
    ("tracker_type: deepsort\n", ConfigError, ["tracker_type", "deepsort"]),
    ("tracker_type: bytetrack\ntrack_high_thresh: 0.5\n", ConfigError, ["missing key", "track_low_thresh"]),
    (None, ConfigTypeError, ["track_buffer", "expected a int"]),
    ("tracker_type: [bytetrack\n", ConfigError, ["not valid YAML"]),
])
def test_user_yaml_errors_are_one_line_and_name_the_key(tmp_path, content, exc, words):
    if content is None:  # the packaged file with one wrong type
        content = (ROOT / "ultralytics/cfg/trackers/bytetrack.yaml").read_text().replace("track_buffer: 30",
                                                                                         "track_buffer: long")
    f = tmp_path / "mine.yaml"
    f.write_text(content)
    with pytest.raises(exc) as e:
        load_tracker_cfg(f)
    msg = str(e.value)
    assert isinstance(e.value, UserError) and "\n" not in msg and "mine.yaml" in msg
    assert all(w in msg for w in words), msg


def test_missing_tracker_file_names_it():
    with pytest.raises(MissingFileError, match="nosuch.yaml.*bytetrack.yaml"):
        load_tracker_cfg("nosuch.yaml")


def test_threshold_out_of_range():
    with pytest.raises(ConfigError, match="match_thresh=1.5"):
        check_tracker_cfg({**PUBLISHED_BYTETRACK, "match_thresh": 1.5}, "x.yaml")


# ------------------------------------------------------------------------------------------------- parity
class Dets:
    """What record_published.py fed the published trackers: float32 xyxy / xywh / conf / cls."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = np.asarray(a, dtype=np.float32).reshape(-1, 6)
        b = self.a[:, :4]
        self.xyxy, self.conf, self.cls = b, self.a[:, 4], self.a[:, 5]
        self.xywh = np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], 1)


@pytest.mark.parametrize("case", ["bytetrack_default", "bytetrack_hard", "botsort_none", "botsort_hard",
                                  "botsort_sparseflow"])
def test_parity_with_published(case):
    z = np.load(FIXTURES / f"{case}.npz")
    cfg = check_tracker_cfg(json.loads(str(z["cfg"])))
    t = (BOTSORT if cfg.tracker_type == "botsort" else BYTETracker)(cfg)
    dets, ref = z["dets"], z["tracks"]
    frames = None
    if "frames_sha256" in z:  # regenerate the drawn frames the recording used
        frames = make_sequence(n_frames=40, n_objects=4, seed=2, width=320, height=240, pan=2.0, draw=True).frames
        assert hashlib.sha256(np.stack(frames).tobytes()).hexdigest() == str(z["frames_sha256"])
    # sparseOptFlow: the warps differ from the published ones by a few thousandths of a pixel (see docs)
    atol = 0.05 if frames else 1e-4
    for f in range(int(dets[:, 0].max()) + 1):
        img = frames[f] if frames else np.zeros((480, 640, 3), np.uint8)
        out = t.update(Dets(dets[dets[:, 0] == f, 1:]), img)
        expected = ref[ref[:, 0] == f, 1:]
        assert out.shape == expected.shape, f"frame {f}"
        np.testing.assert_array_equal(out[:, [4, 6, 7]], expected[:, [4, 6, 7]], err_msg=f"frame {f}")
        np.testing.assert_allclose(out[:, [0, 1, 2, 3, 5]], expected[:, [0, 1, 2, 3, 5]], atol=atol, rtol=0,
                                   err_msg=f"frame {f}")


# ------------------------------------------------------------------------------------------------- predictor hooks
class FakeResult:
    def __init__(self, dets: list[list[float]]) -> None:
        self.boxes = SimpleNamespace(data=torch.tensor(dets, dtype=torch.float32).reshape(-1, 6))
        self.orig_img = np.zeros((480, 640, 3), np.uint8)

    def update(self, boxes: torch.Tensor) -> None:
        self.boxes = SimpleNamespace(data=boxes)


class FakePredictor:
    """The attributes the hooks use: args, batch, results and add_callback/run_callbacks."""

    def __init__(self, tracker: str = "bytetrack.yaml", batch: int = 1) -> None:
        self.args = SimpleNamespace(tracker=tracker, batch=batch)
        self.callbacks: dict[str, list] = {}
        self.batch, self.results = [], []

    def add_callback(self, event: str, fn) -> None:
        self.callbacks.setdefault(event, []).append(fn)

    def run_callbacks(self, event: str) -> None:
        for fn in self.callbacks.get(event, []):
            fn(self)

    def predict(self, frames: list[list[tuple[str, str, list]]]) -> list[list[FakeResult]]:
        """Run one predict call over batches of (kind, path, dets); returns the results per batch."""
        self.run_callbacks("on_predict_start")
        out = []
        for batch in frames:
            self.batch = [SimpleNamespace(kind=k, path=p) for k, p, _ in batch]
            self.results = [FakeResult(d) for _, _, d in batch]
            self.run_callbacks("on_predict_postprocess_end")
            out.append(self.results)
        return out


def _ids(results: list[FakeResult]) -> list[list[int]]:
    return [r.boxes.data[:, 4].int().tolist() if r.boxes.data.shape[1] == 7 else None for r in results]


@pytest.mark.parametrize("persist", [False, True])
def test_register_tracker_persist(persist):
    p = FakePredictor()
    register_tracker(p, persist=persist)
    frame = lambda x: [[("image", "image0.jpg", [box(x, 100)[:4] + [0.9, 0]])]]  # noqa: E731
    res = p.predict(frame(100))
    assert _ids(res[0]) == [[1]] and res[0][0].boxes.data.shape == (1, 7)
    first = p.trackers[0]
    p.predict(frame(104))
    assert (p.trackers[0] is first) == persist
    # persisted: the track continues (id 1); not: a new tracker's first frame starts id 1 again at frame 1
    assert p.trackers[0].frame_id == (2 if persist else 1)


def test_register_tracker_streams_get_one_tracker_each_and_videos_reset():
    p = FakePredictor(batch=2)
    register_tracker(p, persist=False)
    a, b = box(100, 100), box(400, 300)
    batches = [[("stream", "rtsp://a", [a]), ("stream", "rtsp://b", [b])] for _ in range(3)]
    res = p.predict(batches)
    assert len(p.trackers) == 2 and [t.frame_id for t in p.trackers] == [3, 3]
    assert _ids(res[-1]) == [[1], [1]]  # each stream numbers its own tracks
    # a video source with batch 2: consecutive frames of one video share tracker 0; a new video resets it
    p2 = FakePredictor(batch=2)
    register_tracker(p2)
    res = p2.predict([[("video", "a.mp4", [a]), ("video", "a.mp4", [box(102, 100)])],
                      [("video", "b.mp4", [b]), ("video", "b.mp4", [box(402, 300)])]])
    assert p2.trackers[0].frame_id == 2 and p2.trackers[1].frame_id == 0
    assert _ids(res[1]) == [[1], [1]] and p2.vid_path[0] == "b.mp4"


def test_register_tracker_keeps_detections_when_nothing_is_tracked_and_bad_yaml_fails():
    p = FakePredictor()
    register_tracker(p)
    res = p.predict([[("image", "im.jpg", [])]])
    assert res[0][0].boxes.data.shape == (0, 6)
    p = FakePredictor(tracker="deepsort.yaml")
    register_tracker(p)
    with pytest.raises(MissingFileError, match="deepsort.yaml"):
        p.predict([])
