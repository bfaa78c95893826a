"""Average precision and the F1-optimal operating point, as small pure functions on numpy arrays (SPEC §6).

The pipeline for one split: `rank_by_confidence` → per class `cumulative_pr` → `precision_envelope` →
`average_precision` (101-point trapezoid of the linearly interpolated envelope); P/R/F1 curves over a confidence
grid (`curve_over_confidence`) → `f1_operating_point`. `class_statistics` runs all of it and returns `ClassStats`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AP_RECALL_GRID = np.linspace(0.0, 1.0, 101)  # recall levels at which the envelope is sampled
CONF_GRID_SIZE = 1000  # confidence samples of the P / R / F1 curves
F1_SMOOTH_FRACTION = 0.1  # width of the box filter applied to the mean F1 curve, as a fraction of its length

_integrate = getattr(np, "trapezoid", None) or np.trapz  # numpy >= 2.0 renamed trapz


def rank_by_confidence(conf: np.ndarray) -> np.ndarray:
    """Indices that sort detections by decreasing confidence.

    numpy's default (non-stable) sort is used on purpose: it orders tied confidences the way the published
    validator does, which decides the P/R curves at those ties.
    """
    return np.argsort(-np.asarray(conf, dtype=np.float64))


def cumulative_pr(hits: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision after each detection, (N, T) each, from hits (N, T) in decreasing confidence.

    recall = TP / n_labels and precision = TP / (TP + FP), counted over the detections seen so far.
    """
    hits = np.asarray(hits, dtype=np.float64)
    true_pos = hits.cumsum(0)
    seen = np.arange(1, hits.shape[0] + 1, dtype=np.float64).reshape(-1, *([1] * (hits.ndim - 1)))
    return true_pos / max(n_labels, 1), true_pos / seen


def precision_envelope(recall: np.ndarray, precision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The PR curve closed with sentinels and its envelope: (recall', envelope), both of length N + 3.

    recall' = [0, r..., r_last, 1] and precision' = [1, p..., 0, 0]; the envelope at each point is the
    highest precision' at that point or any later one.
    """
    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    precision = np.asarray(precision, dtype=np.float64).reshape(-1)
    last = recall[-1] if recall.size else 0.0
    closed_r = np.concatenate(([0.0], recall, [last, 1.0]))
    closed_p = np.concatenate(([1.0], precision, [0.0, 0.0]))
    return closed_r, np.maximum.accumulate(closed_p[::-1])[::-1]


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """AP of one PR curve (points in decreasing confidence): trapezoid integral of the envelope, linearly
    interpolated at the recall levels 0, 0.01, …, 1."""
    closed_r, envelope = precision_envelope(recall, precision)
    return float(_integrate(np.interp(AP_RECALL_GRID, closed_r, envelope), AP_RECALL_GRID))


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(AP, envelope, recall') of one PR curve; see `average_precision` and `precision_envelope`."""
    closed_r, envelope = precision_envelope(recall, precision)
    return average_precision(recall, precision), envelope, closed_r


def curve_over_confidence(conf_desc: np.ndarray, values: np.ndarray, grid: np.ndarray, above: float) -> np.ndarray:
    """`values` (one per detection, confidences `conf_desc` decreasing) linearly interpolated at the confidences
    `grid`; `above` for grid points above the highest confidence, the last value below the lowest."""
    return np.interp(-np.asarray(grid), -np.asarray(conf_desc), np.asarray(values), left=above)


def box_filter(y: np.ndarray, fraction: float = 0.05) -> np.ndarray:
    """Moving average over a window of fraction·len(y) samples plus one (101 for 1000 samples at 0.1); the ends
    are extended with the first and last values, so an odd window keeps len(y) samples."""
    y = np.asarray(y, dtype=np.float64)
    width = int(round(2 * fraction * len(y))) // 2 + 1
    half = width // 2
    padded = np.concatenate((np.full(half, y[0]), y, np.full(half, y[-1])))
    return np.convolve(padded, np.full(width, 1.0 / width), mode="valid")


def f1_score(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Elementwise harmonic mean 2PR / (P + R), 0 where P + R = 0."""
    p, r = np.asarray(p, dtype=np.float64), np.asarray(r, dtype=np.float64)
    total = p + r
    return np.divide(2 * p * r, total, out=np.zeros_like(total), where=total > 0)


def f1_operating_point(f1_curves: np.ndarray) -> int:
    """Index of the confidence grid point where the class-mean F1 curve, box-filtered, is highest."""
    if len(f1_curves) == 0:
        return 0
    return int(np.argmax(box_filter(f1_curves.mean(0), F1_SMOOTH_FRACTION)))


@dataclass
class ClassStats:
    """Per-class results of one split, rows in the order of `classes` (the classes that have labels)."""

    classes: np.ndarray  # (C,) class ids with labels, ascending
    n_labels: np.ndarray  # (C,)
    ap: np.ndarray  # (C, T) AP at each IoU threshold
    p: np.ndarray  # (C,) precision, recall and F1 at the F1-optimal confidence
    r: np.ndarray
    f1: np.ndarray
    conf_grid: np.ndarray  # (K,) confidences 0..1 of the curves below
    p_curve: np.ndarray  # (C, K)
    r_curve: np.ndarray
    f1_curve: np.ndarray
    pr_curve: np.ndarray  # (C, K) envelope at the first threshold, at recall = conf_grid (for the PR plot)

    @property
    def tp(self) -> np.ndarray:
        """Whole-number true positives at the operating point: R · labels, rounded."""
        return np.round(self.r * self.n_labels)

    @property
    def fp(self) -> np.ndarray:
        """Whole-number false positives at the operating point: TP / P − TP, rounded (0 where P = 0)."""
        tp = self.tp
        detections = np.divide(tp, self.p, out=np.zeros_like(tp), where=self.p > 0)
        return np.round(detections - tp)


def class_statistics(hits: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray) -> ClassStats:
    """AP per class and threshold, P/R/F1 curves and the F1-optimal operating point of a whole split.

    hits (N, T) bool: detection n is a true positive at threshold t; conf (N,), pred_cls (N,) per detection;
    target_cls (L,) one entry per label. Detections of classes without labels do not count.
    """
    hits = np.asarray(hits, dtype=bool)
    if hits.ndim == 1:
        hits = hits[:, None]
    order = rank_by_confidence(conf)
    hits, conf, pred_cls = hits[order], np.asarray(conf, np.float64)[order], np.asarray(pred_cls)[order]
    classes, n_labels = np.unique(np.asarray(target_cls), return_counts=True)
    grid = np.linspace(0.0, 1.0, CONF_GRID_SIZE)
    n_cls, n_thr = len(classes), hits.shape[1]
    ap = np.zeros((n_cls, n_thr))
    p_curve, r_curve, pr_curve = (np.zeros((n_cls, CONF_GRID_SIZE)) for _ in range(3))
    for row, (c, n_l) in enumerate(zip(classes, n_labels)):
        mine = pred_cls == c
        if not mine.any():
            continue
        recall, precision = cumulative_pr(hits[mine], int(n_l))
        ap[row] = [average_precision(recall[:, t], precision[:, t]) for t in range(n_thr)]
        r_curve[row] = curve_over_confidence(conf[mine], recall[:, 0], grid, above=0.0)
        p_curve[row] = curve_over_confidence(conf[mine], precision[:, 0], grid, above=1.0)
        pr_curve[row] = np.interp(grid, *precision_envelope(recall[:, 0], precision[:, 0]))
    f1_curve = f1_score(p_curve, r_curve)
    k = f1_operating_point(f1_curve)
    return ClassStats(classes=classes.astype(int), n_labels=n_labels, ap=ap, p=p_curve[:, k], r=r_curve[:, k],
                      f1=f1_curve[:, k], conf_grid=grid, p_curve=p_curve, r_curve=r_curve, f1_curve=f1_curve,
                      pr_curve=pr_curve)
