"""Costs between tracks and detections, and the thresholded linear assignment that pairs them.

A cost is a distance in [0, 1] (1 - IoU, 1 - IoU * score, cosine distance). `linear_assignment(cost, thresh)`
finds the pairing of least total cost in which no pair costs more than `thresh`, where leaving a track and a
detection unpaired counts as `thresh`: the same optimum as `lap.lapjv(cost, extend_cost=True, cost_limit=thresh)`.
`lap` solves it when installed; otherwise scipy's `linear_sum_assignment` solves the same problem on the matrix
extended with those "unpaired" options.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import scipy.optimize
from scipy.spatial.distance import cdist

try:  # optional: a faster solver of the same problem
    import lap
except ImportError:  # pragma: no cover - depends on the environment
    lap = None

Assignment = tuple[np.ndarray, np.ndarray, np.ndarray]  # matches (K, 2), unmatched rows, unmatched columns


def _split(cost: np.ndarray, row_to_col: np.ndarray) -> Assignment:
    """Matches and the unmatched rows/columns from a row → column map (-1: unmatched)."""
    rows = np.flatnonzero(row_to_col >= 0)
    matches = np.stack([rows, row_to_col[rows]], axis=1).astype(int) if len(rows) else np.empty((0, 2), int)
    cols = np.setdiff1d(np.arange(cost.shape[1]), matches[:, 1])
    return matches, np.flatnonzero(row_to_col < 0), cols


def _scipy_assignment(cost: np.ndarray, thresh: float) -> np.ndarray:
    """Row → column map (-1: unmatched) of the thresholded problem, via an (n+m)² extended matrix."""
    n, m = cost.shape
    big = 1e6 + thresh  # a pair dearer than the threshold is never worth taking
    ext = np.full((n + m, n + m), big)
    ext[:n, :m] = np.where(cost > thresh, big, cost)
    ext[:n, m:][np.diag_indices(n)] = thresh / 2  # row i unpaired
    ext[n:, :m][np.diag_indices(m)] = thresh / 2  # column j unpaired
    ext[n:, m:] = 0
    r, c = scipy.optimize.linear_sum_assignment(ext)
    row_to_col = np.full(n, -1)
    keep = (r < n) & (c < m)
    row_to_col[r[keep]] = c[keep]
    return row_to_col


def linear_assignment(cost: np.ndarray, thresh: float, use_lap: bool = True) -> Assignment:
    """Pair rows (tracks) with columns (detections) at least total cost, no pair above `thresh`."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.size == 0:
        return np.empty((0, 2), int), np.arange(cost.shape[0]), np.arange(cost.shape[1])
    if use_lap and lap is not None:
        _, row_to_col, _ = lap.lapjv(cost, extend_cost=True, cost_limit=thresh)
    else:
        row_to_col = _scipy_assignment(cost, thresh)
    return _split(cost, np.asarray(row_to_col))


def box_iou(a: np.ndarray, b: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Pairwise IoU (N, M) of xyxy boxes a (N, 4) and b (M, 4)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + eps)


def _boxes(items: Sequence[Any] | np.ndarray) -> np.ndarray:
    if isinstance(items, np.ndarray):
        return items
    return np.array([t.xyxy for t in items], dtype=np.float64).reshape(-1, 4)


def iou_distance(tracks: Sequence[Any] | np.ndarray, dets: Sequence[Any] | np.ndarray) -> np.ndarray:
    """1 - IoU between tracks and detections (objects with `.xyxy`, or xyxy arrays)."""
    a, b = _boxes(tracks), _boxes(dets)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return 1.0 - box_iou(a, b)


def fuse_score(cost: np.ndarray, dets: Sequence[Any]) -> np.ndarray:
    """Fold the detection scores into an IoU cost: 1 - IoU * score."""
    if cost.size == 0:
        return cost
    scores = np.array([d.score for d in dets], dtype=np.float64)
    return 1.0 - (1.0 - cost) * scores[None, :]


def embedding_distance(tracks: Sequence[Any], dets: Sequence[Any]) -> np.ndarray:
    """Cosine distance (clipped at 0) between the tracks' smoothed features and the detections' features."""
    cost = np.zeros((len(tracks), len(dets)))
    if cost.size == 0:
        return cost
    det_feats = np.asarray([d.curr_feat for d in dets], dtype=np.float64)
    track_feats = np.asarray([t.smooth_feat for t in tracks], dtype=np.float64)
    return np.maximum(0.0, cdist(track_feats, det_feats, "cosine"))
