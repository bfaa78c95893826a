"""Tracking as two predictor callbacks: build the trackers when prediction starts, track each batch's results.

`register_tracker(predictor, persist)` is all the predictor needs. The callbacks use the predictor duck-typed:
`args.tracker` (a tracker yaml name or path), `batch` (items with `.kind` and `.path`), `results` (Results with
`.boxes`, `.orig_img`, `.update(boxes=...)` and optionally `.feats` (N, D) appearance features for BoT-SORT's
ReID). They set `predictor.trackers` (one tracker per source position) and `predictor.vid_path` (the last path
each tracker saw).

- `persist=False` builds new trackers at every predict call; `persist=True` keeps the ones already built (a
  frame-by-frame loop of `model.track(frame, persist=True)` follows objects across calls).
- Items of kind "stream" get a tracker per batch position (several streams are batched side by side); any other
  source (a video, an image folder, arrays) uses one tracker for all its items, in order.
- Without persist, a tracker is reset when the video (or stream) path at its position changes.
- Each result's boxes are replaced by the tracker's output (N, 7) `x1, y1, x2, y2, id, conf, cls`: the confirmed
  tracks matched in this frame. When the tracker returns none, the detections stay as they are (untracked,
  `boxes.id` is None), as in the published package.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch

from ultralytics.trackers.bot_sort import BOTSORT
from ultralytics.trackers.byte_tracker import BYTETracker
from ultralytics.trackers.config import load_tracker_cfg

TRACKER_MAP: dict[str, type[BYTETracker]] = {"bytetrack": BYTETracker, "botsort": BOTSORT}
FRAME_RATE = 30  # the track buffer is counted in frames at 30 fps, whatever the source's rate
STREAM_KINDS = ("stream",)
RESET_KINDS = ("video", "stream")


def build_tracker(cfg: Any) -> BYTETracker:
    """A fresh tracker from a validated tracker config (config.load_tracker_cfg)."""
    return TRACKER_MAP[cfg.tracker_type](cfg, frame_rate=FRAME_RATE)


def on_predict_start(predictor: Any, persist: bool = False) -> None:
    """Load the tracker yaml and build the trackers, unless persist and the predictor already has some."""
    if persist and getattr(predictor, "trackers", None):
        return
    cfg = load_tracker_cfg(getattr(predictor.args, "tracker", None) or "bytetrack.yaml")
    n = max(int(getattr(predictor.args, "batch", 1) or 1), 1)
    predictor.tracker_cfg = cfg
    predictor.trackers = [build_tracker(cfg) for _ in range(n)]
    predictor.vid_path = [None] * n


def _tracker_at(predictor: Any, pos: int) -> BYTETracker:
    """The tracker of batch position `pos`, built when a batch is wider than expected."""
    while len(predictor.trackers) <= pos:
        predictor.trackers.append(build_tracker(predictor.tracker_cfg))
        predictor.vid_path.append(None)
    return predictor.trackers[pos]


def on_predict_postprocess_end(predictor: Any, persist: bool = False) -> None:
    """Track every result of the batch and put the tracked boxes (with ids) in place of the detections."""
    for i, (item, result) in enumerate(zip(predictor.batch, predictor.results)):
        pos = i if item.kind in STREAM_KINDS else 0
        tracker = _tracker_at(predictor, pos)
        if item.kind in RESET_KINDS and not persist and predictor.vid_path[pos] != item.path:
            if predictor.vid_path[pos] is not None:
                tracker.reset()
            predictor.vid_path[pos] = item.path
        boxes = result.boxes
        data = boxes.data
        dets = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        tracks = tracker.update(dets[:, [0, 1, 2, 3, -2, -1]] if len(dets) else np.zeros((0, 6)),
                                result.orig_img, getattr(result, "feats", None))
        if len(tracks) == 0:
            continue
        out = torch.as_tensor(tracks[:, :7])
        if isinstance(data, torch.Tensor):
            out = out.to(device=data.device, dtype=data.dtype)
        result.update(boxes=out)


def register_tracker(predictor: Any, persist: bool = False) -> None:
    """Make `predictor` track: its on_predict_start and on_predict_postprocess_end events call the trackers."""
    predictor.add_callback("on_predict_start", partial(on_predict_start, persist=persist))
    predictor.add_callback("on_predict_postprocess_end", partial(on_predict_postprocess_end, persist=persist))
