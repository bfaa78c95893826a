"""Summary objects of a validation pass: `Metric` (box P, R, AP and their means) and `DetMetrics`.

The computation lives in ap.py (AP, operating point), matching.py (detections ↔ labels) and confusion.py; the
names other modules import from here are re-exported below.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ultralytics.detection.iou import box_iou
from ultralytics.evaluation.ap import (ClassStats, average_precision, box_filter, class_statistics, compute_ap,
                                       precision_envelope)
from ultralytics.evaluation.confusion import ConfusionMatrix
from ultralytics.evaluation.matching import IOU_THRESHOLDS, labels_in_input_space, match_predictions

__all__ = ["ClassStats", "ConfusionMatrix", "DetMetrics", "IOU_THRESHOLDS", "Metric", "average_precision", "box_filter",
           "box_iou", "class_statistics", "compute_ap", "labels_in_input_space", "match_predictions",
           "precision_envelope"]

METRIC_KEYS = ("metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)")
FITNESS_WEIGHTS = (0.1, 0.9)  # fitness = w50 · mAP50 + w · mAP50-95 (selects best.pt)
SPEED_STAGES = ("preprocess", "inference", "loss", "postprocess")


def _mean(values: np.ndarray) -> float:
    """Mean of an array, 0.0 when it is empty."""
    return float(np.mean(values)) if np.size(values) else 0.0


class Metric:
    """Box results of one validation pass, one row per class that has labels (`ap_class_index`)."""

    def __init__(self) -> None:
        self.nc = 0  # classes of the dataset, the length of `maps`
        self.ap_class_index = np.zeros(0, dtype=int)
        self.p = np.zeros(0)
        self.r = np.zeros(0)
        self.f1 = np.zeros(0)
        self.all_ap = np.zeros((0, len(IOU_THRESHOLDS)))  # (classes, thresholds)
        self.px = np.linspace(0.0, 1.0, 1000)
        self.p_curve = self.r_curve = self.f1_curve = self.prec_values = np.zeros((0, len(self.px)))

    def update(self, stats: ClassStats) -> None:
        """Take the results of `class_statistics`."""
        self.ap_class_index, self.all_ap = stats.classes, stats.ap
        self.p, self.r, self.f1 = stats.p, stats.r, stats.f1
        self.px, self.p_curve, self.r_curve = stats.conf_grid, stats.p_curve, stats.r_curve
        self.f1_curve = stats.f1_curve
        self.prec_values = stats.pr_curve

    def _column(self, j: int) -> np.ndarray:
        return self.all_ap[:, j] if len(self.all_ap) else np.zeros(0)

    @property
    def ap50(self) -> np.ndarray:
        """AP at IoU 0.50 per class with labels."""
        return self._column(0)

    @property
    def ap(self) -> np.ndarray:
        """AP averaged over IoU 0.50:0.95 per class with labels."""
        return self.all_ap.mean(1) if len(self.all_ap) else np.zeros(0)

    @property
    def mp(self) -> float:
        """Precision at the operating point, mean over classes."""
        return _mean(self.p)

    @property
    def mr(self) -> float:
        """Recall at the operating point, mean over classes."""
        return _mean(self.r)

    @property
    def map50(self) -> float:
        """mAP at IoU 0.50."""
        return _mean(self._column(0))

    @property
    def map75(self) -> float:
        """mAP at IoU 0.75."""
        return _mean(self._column(5))

    @property
    def map(self) -> float:
        """mAP over IoU 0.50:0.95."""
        return _mean(self.all_ap)

    @property
    def maps(self) -> np.ndarray:
        """mAP50-95 for every class id; classes without labels get the overall mAP."""
        size = max(self.nc, int(self.ap_class_index.max()) + 1 if len(self.ap_class_index) else 0)
        per_class = np.full(size, self.map)
        per_class[self.ap_class_index] = self.ap
        return per_class

    def mean_results(self) -> list[float]:
        """[mp, mr, map50, map], the order of the results.csv metric columns."""
        return [self.mp, self.mr, self.map50, self.map]

    def class_result(self, i: int) -> tuple[float, float, float, float]:
        """(p, r, ap50, ap50-95) of row i, i.e. class ap_class_index[i]."""
        return float(self.p[i]), float(self.r[i]), float(self.ap50[i]), float(self.ap[i])

    def fitness(self) -> float:
        """Weighted mAP that selects best.pt: 0.1·mAP50 + 0.9·mAP50-95."""
        w50, w = FITNESS_WEIGHTS
        return w50 * self.map50 + w * self.map

    @property
    def curves_results(self) -> list[list[Any]]:
        """[x, y, xlabel, ylabel] of the PR, F1, P and R curves, for plotting."""
        return [[self.px, y, xlabel, ylabel] for y, xlabel, ylabel in (
            (self.prec_values, "Recall", "Precision"), (self.f1_curve, "Confidence", "F1"),
            (self.p_curve, "Confidence", "Precision"), (self.r_curve, "Confidence", "Recall"))]


class DetMetrics:
    """Detection metrics of a validation pass; `process` fills `box` (a Metric)."""

    def __init__(self, names: dict[int, str] | list[str] | None = None) -> None:
        self.names: dict[int, str] = dict(enumerate(names)) if isinstance(names, (list, tuple)) else dict(names or {})
        self.box = Metric()
        self.box.nc = len(self.names)
        self.speed: dict[str, float] = dict.fromkeys(SPEED_STAGES, 0.0)  # ms per image
        self.coco: dict[str, Any] | None = None  # pycocotools / faster-coco-eval results when save_json scored them
        self.losses: dict[str, float] = {}  # mean validation losses (val/box_loss, ...) when the validator computed them

    def process(self, tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray) -> None:
        """Score the whole split: correct-matrix (N, T), confidences and classes of all detections, label classes."""
        self.box.nc = len(self.names)
        self.box.update(class_statistics(tp, conf, pred_cls, target_cls))

    @property
    def keys(self) -> list[str]:
        """results.csv column names of `mean_results()`."""
        return list(METRIC_KEYS)

    def mean_results(self) -> list[float]:
        """[mp, mr, map50, map]."""
        return self.box.mean_results()

    def class_result(self, i: int) -> tuple[float, float, float, float]:
        """(p, r, ap50, ap50-95) of row i."""
        return self.box.class_result(i)

    @property
    def maps(self) -> np.ndarray:
        """mAP50-95 for every class id."""
        return self.box.maps

    @property
    def fitness(self) -> float:
        """0.1·mAP50 + 0.9·mAP50-95."""
        return self.box.fitness()

    @property
    def ap_class_index(self) -> np.ndarray:
        """Class ids with labels, the row order of the per-class arrays."""
        return self.box.ap_class_index

    @property
    def results_dict(self) -> dict[str, float]:
        """The four mean metrics and fitness, keyed by results.csv column names."""
        return {**dict(zip(self.keys, self.mean_results())), "fitness": self.fitness}

    @property
    def curves_results(self) -> list[list[Any]]:
        """Curve data for plotting (see Metric.curves_results)."""
        return self.box.curves_results
