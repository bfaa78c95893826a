"""Single tracks (`STrack` for ByteTrack, `BOTrack` for BoT-SORT), their states, and track-list helpers.

A track holds a Kalman state, the last detection's score, class and index, and its id. Ids come from an
`IdCounter` owned by each tracker (1, 2, ... per tracker, restarted by `reset()`), so two trackers in one process
never share a counter; the published package numbers each tracker from 1 as well.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum
from typing import Sequence

import numpy as np

from ultralytics.trackers.kalman import KalmanFilterXYAH, KalmanFilterXYWH
from ultralytics.trackers.matching import iou_distance


class TrackState(IntEnum):
    """Where a track is in its life."""

    New = 0
    Tracked = 1
    Lost = 2
    Removed = 3


class IdCounter:
    """Hands out track ids 1, 2, 3, ... (one per tracker)."""

    def __init__(self) -> None:
        self.count = 0

    def next(self) -> int:
        self.count += 1
        return self.count

    def reset(self) -> None:
        self.count = 0


class STrack:
    """A ByteTrack track: Kalman state on (cx, cy, w/h, h)."""

    shared_kalman = KalmanFilterXYAH()

    def __init__(self, xywh: np.ndarray, score: float, cls: float, idx: int) -> None:
        xywh = np.asarray(xywh, dtype=np.float64)
        self._tlwh = np.concatenate([xywh[:2] - xywh[2:4] / 2, xywh[2:4]])  # top-left x, y, width, height
        self.score, self.cls, self.idx = float(score), float(cls), int(idx)
        self.kalman_filter: KalmanFilterXYAH | None = None
        self.mean: np.ndarray | None = None
        self.covariance: np.ndarray | None = None
        self.is_activated = False
        self.state = TrackState.New
        self.track_id = 0
        self.tracklet_len = 0
        self.frame_id = self.start_frame = 0

    # ---------------------------------------------------------------------------------------- box views
    @staticmethod
    def tlwh_to_measurement(tlwh: np.ndarray) -> np.ndarray:
        """tlwh → the filter's measurement (cx, cy, w/h, h)."""
        ret = np.asarray(tlwh, dtype=np.float64).copy()
        ret[:2] += ret[2:] / 2
        ret[2] /= ret[3]
        return ret

    def _mean_to_tlwh(self) -> np.ndarray:
        ret = self.mean[:4].copy()
        ret[2] *= ret[3]
        ret[:2] -= ret[2:] / 2
        return ret

    @property
    def tlwh(self) -> np.ndarray:
        """The box as (top-left x, top-left y, w, h): the filter's estimate once the track has one."""
        return self._tlwh.copy() if self.mean is None else self._mean_to_tlwh()

    @property
    def xyxy(self) -> np.ndarray:
        ret = self.tlwh
        ret[2:] += ret[:2]
        return ret

    @property
    def end_frame(self) -> int:
        return self.frame_id

    @property
    def result(self) -> list[float]:
        """[x1, y1, x2, y2, track_id, score, cls, det_index]."""
        return [*self.xyxy.tolist(), self.track_id, self.score, self.cls, self.idx]

    # ---------------------------------------------------------------------------------------- motion
    def _predicted_input(self) -> np.ndarray:
        """The mean to step forward: a track that is not being tracked keeps its size (size velocity 0)."""
        mean = self.mean.copy()
        if self.state != TrackState.Tracked:
            mean[7] = 0
        return mean

    @classmethod
    def multi_predict(cls, tracks: Sequence[STrack]) -> None:
        """Step every track's state one frame forward (vectorised)."""
        if not tracks:
            return
        means = np.stack([t._predicted_input() for t in tracks])
        covs = np.stack([t.covariance for t in tracks])
        means, covs = cls.shared_kalman.multi_predict(means, covs)
        for t, m, c in zip(tracks, means, covs):
            t.mean, t.covariance = m, c

    @staticmethod
    def multi_gmc(tracks: Sequence[STrack], warp: np.ndarray) -> None:
        """Move the tracks' states by a 2x3 camera-motion warp (rotation/scale on every xy pair, then shift)."""
        if not tracks:
            return
        r8 = np.kron(np.eye(4), warp[:2, :2])
        t = warp[:2, 2]
        for track in tracks:
            mean = r8 @ track.mean
            mean[:2] += t
            track.mean, track.covariance = mean, r8 @ track.covariance @ r8.T

    # ---------------------------------------------------------------------------------------- life cycle
    def activate(self, kalman_filter: KalmanFilterXYAH, frame_id: int, track_id: int) -> None:
        """Start the track from its detection; tracks born on a tracker's first frame count as confirmed."""
        self.kalman_filter = kalman_filter
        self.track_id = track_id
        self.mean, self.covariance = kalman_filter.initiate(self.tlwh_to_measurement(self._tlwh))
        self.tracklet_len = 0
        self.state = TrackState.Tracked
        self.is_activated = frame_id == 1
        self.frame_id = self.start_frame = frame_id

    def _take(self, det: STrack, frame_id: int) -> None:
        self.mean, self.covariance = self.kalman_filter.update(self.mean, self.covariance,
                                                               self.tlwh_to_measurement(det.tlwh))
        self.state = TrackState.Tracked
        self.is_activated = True
        self.frame_id = frame_id
        self.score, self.cls, self.idx = det.score, det.cls, det.idx

    def update(self, det: STrack, frame_id: int) -> None:
        """A tracked track matched `det` this frame."""
        self.tracklet_len += 1
        self._take(det, frame_id)

    def re_activate(self, det: STrack, frame_id: int, new_id: int | None = None) -> None:
        """A lost track matched `det` again (keeps its id unless `new_id` is given)."""
        self.tracklet_len = 0
        self._take(det, frame_id)
        if new_id is not None:
            self.track_id = new_id

    def mark_lost(self) -> None:
        self.state = TrackState.Lost

    def mark_removed(self) -> None:
        self.state = TrackState.Removed

    def __repr__(self) -> str:
        return f"OT_{self.track_id}_({self.start_frame}-{self.end_frame})"


class BOTrack(STrack):
    """A BoT-SORT track: Kalman state on (cx, cy, w, h) and an optional smoothed appearance feature."""

    shared_kalman = KalmanFilterXYWH()

    def __init__(self, xywh: np.ndarray, score: float, cls: float, idx: int,
                 feat: np.ndarray | None = None, feat_history: int = 50, alpha: float = 0.9) -> None:
        super().__init__(xywh, score, cls, idx)
        self.smooth_feat: np.ndarray | None = None
        self.curr_feat: np.ndarray | None = None
        self.features: deque = deque(maxlen=feat_history)
        self.alpha = alpha
        if feat is not None:
            self.update_features(feat)

    def update_features(self, feat: np.ndarray) -> None:
        """Add an appearance feature; the smoothed one is an exponential moving average (unit length)."""
        feat = np.asarray(feat, dtype=np.float64)
        feat = feat / np.linalg.norm(feat)
        self.curr_feat = feat
        s = feat if self.smooth_feat is None else self.alpha * self.smooth_feat + (1 - self.alpha) * feat
        self.smooth_feat = s / np.linalg.norm(s)
        self.features.append(feat)

    @staticmethod
    def tlwh_to_measurement(tlwh: np.ndarray) -> np.ndarray:
        """tlwh → (cx, cy, w, h)."""
        ret = np.asarray(tlwh, dtype=np.float64).copy()
        ret[:2] += ret[2:] / 2
        return ret

    def _mean_to_tlwh(self) -> np.ndarray:
        ret = self.mean[:4].copy()
        ret[:2] -= ret[2:] / 2
        return ret

    def _predicted_input(self) -> np.ndarray:
        mean = self.mean.copy()
        if self.state != TrackState.Tracked:
            mean[6] = mean[7] = 0
        return mean

    def _take(self, det: STrack, frame_id: int) -> None:
        if getattr(det, "curr_feat", None) is not None:
            self.update_features(det.curr_feat)
        super()._take(det, frame_id)


# -------------------------------------------------------------------------------------------- list helpers
def joint_stracks(a: list[STrack], b: list[STrack]) -> list[STrack]:
    """a, then the tracks of b whose id is not in a."""
    ids = {t.track_id for t in a}
    return a + [t for t in b if t.track_id not in ids]


def sub_stracks(a: list[STrack], b: list[STrack]) -> list[STrack]:
    """The tracks of a whose id is not in b."""
    ids = {t.track_id for t in b}
    return [t for t in a if t.track_id not in ids]


def remove_duplicate_stracks(a: list[STrack], b: list[STrack]) -> tuple[list[STrack], list[STrack]]:
    """Where a track of a and one of b overlap (IoU > 0.85), drop the one that has been followed for less time."""
    dist = iou_distance(a, b)
    drop_a, drop_b = set(), set()
    for p, q in zip(*np.nonzero(dist < 0.15)):
        age_p = a[p].frame_id - a[p].start_frame
        age_q = b[q].frame_id - b[q].start_frame
        (drop_b if age_p > age_q else drop_a).add(q if age_p > age_q else p)
    return ([t for i, t in enumerate(a) if i not in drop_a], [t for i, t in enumerate(b) if i not in drop_b])
