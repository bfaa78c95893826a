"""ByteTrack: associate every detection box, the low-score ones in a second pass (Zhang et al., 2022).

One frame of `BYTETracker.update`:
1. split the detections: score >= track_high_thresh (high), track_low_thresh < score < track_high_thresh (low);
2. predict the confirmed and lost tracks one frame ahead and pair them with the high detections
   (cost 1 - IoU, times the score when fuse_score; at most match_thresh);
3. pair the still-unmatched tracked tracks with the low detections (1 - IoU at most 0.5); tracked tracks left
   over become lost;
4. pair the unconfirmed tracks (born last frame) with the remaining high detections (at most 0.7); unmatched
   unconfirmed tracks are removed;
5. start a track from each remaining detection with score >= new_track_thresh; drop lost tracks older than the
   track buffer; return the confirmed tracks updated this frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ultralytics.trackers import matching
from ultralytics.trackers.basetrack import (IdCounter, STrack, TrackState, joint_stracks, remove_duplicate_stracks,
                                            sub_stracks)
from ultralytics.trackers.kalman import KalmanFilterXYAH

EMPTY_RESULT = np.zeros((0, 8), dtype=np.float32)


def as_detections(dets: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detections → (xywh (N, 4) centre boxes, conf (N,), cls (N,)) float64 arrays.

    Accepts an (N, 6) array `[x1, y1, x2, y2, conf, cls]` or an object with numpy (or torch) `.conf`, `.cls` and
    `.xywh` or `.xyxy` (a `Boxes`, as the predictor's `result.boxes.cpu().numpy()`)."""
    if isinstance(dets, (np.ndarray, list, tuple)):
        a = np.asarray(dets, dtype=np.float64).reshape(-1, 6)
        xyxy, conf, cls = a[:, :4], a[:, 4], a[:, 5]
        xywh = None
    else:
        conf, cls = _np(dets.conf).reshape(-1), _np(dets.cls).reshape(-1)
        xywh = _np(dets.xywh).reshape(-1, 4) if hasattr(dets, "xywh") else None
        xyxy = None if xywh is not None else _np(dets.xyxy).reshape(-1, 4)
    if xywh is None:
        xywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    return xywh, conf, cls


def _rows(feats: np.ndarray | None, mask: np.ndarray) -> np.ndarray | None:
    """The feature rows of the selected detections (None without features)."""
    return None if feats is None or not len(feats) else np.asarray(feats)[mask]


def _np(x: Any) -> np.ndarray:
    x = x.detach().cpu().numpy() if hasattr(x, "detach") else x
    return np.asarray(x, dtype=np.float64)


class BYTETracker:
    """ByteTrack over one video/stream; `update(dets, img)` once per frame, `reset()` between videos."""

    track_class = STrack

    def __init__(self, args: Any, frame_rate: int = 30) -> None:
        self.args = args
        self.max_time_lost = int(frame_rate / 30.0 * args.track_buffer)
        self.kalman_filter = self.get_kalmanfilter()
        self.ids = IdCounter()
        self.reset()

    def get_kalmanfilter(self) -> KalmanFilterXYAH:
        return KalmanFilterXYAH()

    def reset(self) -> None:
        """Forget every track and restart frame count and ids (a new video)."""
        self.tracked_stracks: list[STrack] = []
        self.lost_stracks: list[STrack] = []
        self.removed_stracks: list[STrack] = []
        self.frame_id = 0
        self.ids.reset()
        self.kalman_filter = self.get_kalmanfilter()

    # ------------------------------------------------------------------------------------------- hooks
    def init_track(self, xywh: np.ndarray, conf: np.ndarray, cls: np.ndarray, idx: np.ndarray,
                   img: np.ndarray | None = None, feats: np.ndarray | None = None) -> list[STrack]:
        """Candidate tracks from detections."""
        return [self.track_class(b, s, c, i) for b, s, c, i in zip(xywh, conf, cls, idx)]

    def get_dists(self, tracks: list[STrack], dets: list[STrack]) -> np.ndarray:
        """First-stage and unconfirmed-stage cost: 1 - IoU, fused with the score when fuse_score."""
        dists = matching.iou_distance(tracks, dets)
        return matching.fuse_score(dists, dets) if self.args.fuse_score else dists

    def multi_predict(self, tracks: list[STrack]) -> None:
        self.track_class.multi_predict(tracks)

    def compensate_motion(self, img: np.ndarray | None, xyxy: np.ndarray,
                          tracks: list[STrack], unconfirmed: list[STrack]) -> None:
        """Camera-motion compensation (none in ByteTrack)."""

    # ------------------------------------------------------------------------------------------- one frame
    def update(self, dets: Any, img: np.ndarray | None = None, feats: np.ndarray | None = None) -> np.ndarray:
        """Track one frame; returns (M, 8) float32 `[x1, y1, x2, y2, track_id, score, cls, det_index]` of the
        confirmed tracks updated this frame (`det_index`: the row of `dets` each box came from)."""
        self.frame_id += 1
        xywh, conf, cls = as_detections(dets)
        idx = np.arange(len(conf))
        args = self.args
        high = conf >= args.track_high_thresh
        low = (conf > args.track_low_thresh) & (conf < args.track_high_thresh)
        detections = self.init_track(xywh[high], conf[high], cls[high], idx[high], img, _rows(feats, high))
        unconfirmed = [t for t in self.tracked_stracks if not t.is_activated]
        tracked = [t for t in self.tracked_stracks if t.is_activated]
        activated, refind, lost, removed = [], [], [], []

        # first association: confirmed + lost tracks with the high-score detections
        pool = joint_stracks(tracked, self.lost_stracks)
        self.multi_predict(pool)
        xyxy_high = np.concatenate([xywh[high, :2] - xywh[high, 2:] / 2, xywh[high, :2] + xywh[high, 2:] / 2], 1)
        self.compensate_motion(img, xyxy_high, pool, unconfirmed)
        matches, u_track, u_det = matching.linear_assignment(self.get_dists(pool, detections), args.match_thresh)
        self._apply(matches, pool, detections, activated, refind)

        # second association: the tracked tracks left over with the low-score detections (IoU only)
        second = self.init_track(xywh[low], conf[low], cls[low], idx[low], img, _rows(feats, low))
        remaining = [pool[i] for i in u_track if pool[i].state == TrackState.Tracked]
        matches, u_track, _ = matching.linear_assignment(matching.iou_distance(remaining, second), 0.5)
        self._apply(matches, remaining, second, activated, refind)
        for i in u_track:
            if remaining[i].state != TrackState.Lost:
                remaining[i].mark_lost()
                lost.append(remaining[i])

        # unconfirmed tracks (one frame old) with the high detections still free
        detections = [detections[i] for i in u_det]
        matches, u_unconf, u_det = matching.linear_assignment(self.get_dists(unconfirmed, detections), 0.7)
        for it, idet in matches:
            unconfirmed[it].update(detections[idet], self.frame_id)
            activated.append(unconfirmed[it])
        for it in u_unconf:
            unconfirmed[it].mark_removed()
            removed.append(unconfirmed[it])

        # new tracks from confident unmatched detections
        for i in u_det:
            track = detections[i]
            if track.score >= args.new_track_thresh:
                track.activate(self.kalman_filter, self.frame_id, self.ids.next())
                activated.append(track)

        for track in self.lost_stracks:
            if self.frame_id - track.end_frame > self.max_time_lost:
                track.mark_removed()
                removed.append(track)
        self._merge(activated, refind, lost, removed)
        out = [t.result for t in self.tracked_stracks if t.is_activated]
        return np.asarray(out, dtype=np.float32) if out else EMPTY_RESULT.copy()

    def _apply(self, matches: np.ndarray, tracks: list[STrack], dets: list[STrack],
               activated: list[STrack], refind: list[STrack]) -> None:
        """Update matched tracked tracks; re-activate matched lost ones."""
        for it, idet in matches:
            track, det = tracks[it], dets[idet]
            if track.state == TrackState.Tracked:
                track.update(det, self.frame_id)
                activated.append(track)
            else:
                track.re_activate(det, self.frame_id)
                refind.append(track)

    def _merge(self, activated: list[STrack], refind: list[STrack], lost: list[STrack],
               removed: list[STrack]) -> None:
        """Fold this frame's changes into the tracked / lost / removed lists."""
        tracked = [t for t in self.tracked_stracks if t.state == TrackState.Tracked]
        tracked = joint_stracks(joint_stracks(tracked, activated), refind)
        lost_all = sub_stracks(self.lost_stracks, tracked) + lost
        lost_all = sub_stracks(lost_all, self.removed_stracks)
        self.tracked_stracks, self.lost_stracks = remove_duplicate_stracks(tracked, lost_all)
        self.removed_stracks += removed
        if len(self.removed_stracks) > 1000:  # only a memory of ids to keep out of the lost list
            self.removed_stracks = self.removed_stracks[-999:]
