"""Multi-object tracking: ByteTrack and BoT-SORT over the detector's boxes, frame by frame (docs/tracking.md).

Layer: above `data/`, below `engine/`; the predictor is used duck-typed (track.py).
"""

from ultralytics.trackers.bot_sort import BOTSORT
from ultralytics.trackers.byte_tracker import BYTETracker
from ultralytics.trackers.config import check_tracker_cfg, load_tracker_cfg
from ultralytics.trackers.track import TRACKER_MAP, build_tracker, register_tracker

__all__ = ["BOTSORT", "BYTETracker", "TRACKER_MAP", "build_tracker", "check_tracker_cfg", "load_tracker_cfg",
           "register_tracker"]
