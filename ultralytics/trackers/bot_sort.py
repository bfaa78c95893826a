"""BoT-SORT: ByteTrack's association with a Kalman filter on (cx, cy, w, h), camera-motion compensation and
optional appearance (ReID) costs (Aharon et al., 2022).

Differences from `BYTETracker`, as botsort.yaml sets them:
- tracks are `BOTrack`s (width and height filtered separately, not aspect ratio);
- before the first association the predicted tracks are moved by the camera's motion (`gmc_method`);
- with `with_reid`, the first-stage and unconfirmed costs become min(IoU cost, appearance cost / 2), where the
  appearance cost counts only for pairs closer than `appearance_thresh` in appearance and `proximity_thresh` in
  IoU (1 elsewhere). The features are the ones the caller passes (`update(dets, img, feats)`, one row per
  detection: the detector's own, for `model: auto`) or else colour histograms of the boxes (reid.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ultralytics.trackers import matching
from ultralytics.trackers.basetrack import BOTrack, STrack
from ultralytics.trackers.byte_tracker import BYTETracker
from ultralytics.trackers.gmc import GMC
from ultralytics.trackers.kalman import KalmanFilterXYWH
from ultralytics.trackers.reid import histogram_embeddings


class BOTSORT(BYTETracker):
    """BoT-SORT over one video/stream; `update(dets, img, feats=None)` once per frame."""

    track_class = BOTrack

    def __init__(self, args: Any, frame_rate: int = 30) -> None:
        self.gmc = GMC(method=getattr(args, "gmc_method", "sparseOptFlow"))
        super().__init__(args, frame_rate)
        self.proximity_thresh = args.proximity_thresh
        self.appearance_thresh = args.appearance_thresh
        self.with_reid = bool(args.with_reid)

    def get_kalmanfilter(self) -> KalmanFilterXYWH:
        return KalmanFilterXYWH()

    def reset(self) -> None:
        super().reset()
        self.gmc.reset_params()

    def init_track(self, xywh: np.ndarray, conf: np.ndarray, cls: np.ndarray, idx: np.ndarray,
                   img: np.ndarray | None = None, feats: np.ndarray | None = None) -> list[STrack]:
        """Candidate tracks, with appearance features when ReID is on."""
        if not self.with_reid or len(xywh) == 0:
            return super().init_track(xywh, conf, cls, idx)
        if feats is None:
            if img is None:
                return super().init_track(xywh, conf, cls, idx)
            xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
            feats = histogram_embeddings(img, xyxy)
        return [BOTrack(b, s, c, i, f) for b, s, c, i, f in zip(xywh, conf, cls, idx, feats)]

    def get_dists(self, tracks: list[STrack], dets: list[STrack]) -> np.ndarray:
        """IoU cost (score-fused), lowered by the appearance cost where both boxes are close and look alike."""
        dists = matching.iou_distance(tracks, dets)
        far = dists > (1 - self.proximity_thresh)
        if self.args.fuse_score:
            dists = matching.fuse_score(dists, dets)
        if self.with_reid and dists.size and all(getattr(t, "smooth_feat", None) is not None for t in tracks) \
                and all(getattr(d, "curr_feat", None) is not None for d in dets):
            emb = matching.embedding_distance(tracks, dets) / 2.0
            emb[emb > (1 - self.appearance_thresh)] = 1.0
            emb[far] = 1.0
            dists = np.minimum(dists, emb)
        return dists

    def compensate_motion(self, img: np.ndarray | None, xyxy: np.ndarray,
                          tracks: list[STrack], unconfirmed: list[STrack]) -> None:
        """Move the predicted tracks (and the unconfirmed ones) by the camera's motion since the last frame."""
        if img is None:
            return
        warp = self.gmc.apply(img, xyxy)
        BOTrack.multi_gmc(tracks, warp)
        BOTrack.multi_gmc(unconfirmed, warp)
