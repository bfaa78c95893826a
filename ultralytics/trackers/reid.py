"""Appearance features for BoT-SORT's ReID without a ReID network: a colour histogram of each box.

The published package embeds each box with the detector's own features (`model: auto`) or a separate ReID model.
Offline and without extra weights we embed the inner part of each box (the centre 80 %, less background) as a
joint HSV colour histogram (8 hue x 4 saturation x 4 value bins), square-rooted so that the cosine distance
between two embeddings is a Hellinger-like distance in [0, 1]. Features the predictor hands over (one row per
detection) are used instead when given.
"""

from __future__ import annotations

import cv2
import numpy as np

BINS = (8, 4, 4)
RANGES = [0, 180, 0, 256, 0, 256]


def _crop(img: np.ndarray, box: np.ndarray, keep: float = 0.8) -> np.ndarray:
    """The centre `keep` part of an xyxy box, clipped to the image (at least 1x1)."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = box[:4]
    cx, cy, bw, bh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * keep, (y2 - y1) * keep
    xa, xb = int(np.clip(cx - bw / 2, 0, w - 1)), int(np.clip(np.ceil(cx + bw / 2), 1, w))
    ya, yb = int(np.clip(cy - bh / 2, 0, h - 1)), int(np.clip(np.ceil(cy + bh / 2), 1, h))
    return img[ya:max(yb, ya + 1), xa:max(xb, xa + 1)]


def histogram_embeddings(img: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    """(N, 128) unit-length appearance features of the boxes `xyxy` (N, 4) in the BGR image."""
    out = np.zeros((len(xyxy), int(np.prod(BINS))), dtype=np.float64)
    for i, box in enumerate(np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)):
        hsv = cv2.cvtColor(np.ascontiguousarray(_crop(img, box)), cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, list(BINS), RANGES).reshape(-1).astype(np.float64)
        hist = np.sqrt(hist / max(hist.sum(), 1.0))
        out[i] = hist / max(np.linalg.norm(hist), 1e-12)
    return out
