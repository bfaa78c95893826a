"""Detection metrics (AP, P/R at max F1, mAP, fitness) and the confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ultralytics.detection.iou import box_iou

# The 10 IoU thresholds 0.50:0.05:0.95 used for mAP50-95.
IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10)

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy >= 2.0 renamed trapz


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Average precision of one PR curve (points ordered by decreasing confidence).

    The precision envelope (at recall r: the best precision reached at any recall >= r, 0 beyond the
    largest recall, COCO's interpolated precision) is sampled at the 101 recall points 0, 0.01, …, 1
    and integrated with the trapezoid rule (SPEC §6). A perfect curve scores exactly 1.0.
    Returns (ap, envelope precision, recall), both with sentinels (recall 0 / 1, precision 1 / 0) for plotting.
    """
    x = np.linspace(0, 1, 101)
    ap = float(_trapezoid(envelope_at(recall, precision, x), x))
    mrec = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    mpre = np.concatenate(([1.0], np.asarray(precision, dtype=np.float64), [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    return ap, mpre, mrec


def envelope_at(recall: np.ndarray, precision: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Interpolated precision at the recall levels `x`: max precision over the points with recall >= x (0 if none).

    `recall` must be non-decreasing (cumulative counts in decreasing-confidence order).
    """
    recall = np.asarray(recall, dtype=np.float64)
    if recall.size == 0:
        return np.zeros_like(np.asarray(x, dtype=np.float64))
    env = np.flip(np.maximum.accumulate(np.flip(np.asarray(precision, dtype=np.float64))))
    idx = np.searchsorted(recall, x, side="left")
    return np.where(idx < recall.size, env[np.minimum(idx, recall.size - 1)], 0.0)


def match_predictions(
    pred_classes: torch.Tensor,
    true_classes: torch.Tensor,
    iou: torch.Tensor,
    iouv: torch.Tensor | None = None,
    conf: torch.Tensor | None = None,
) -> torch.Tensor:
    """Correct-matrix (N_pred, T) bool: prediction i is a true positive at IoU threshold iouv[j].

    `iou` is (N_true, N_pred), e.g. box_iou(label_boxes, pred_boxes); only same-class pairs count. As in the
    COCO evaluation, predictions are visited by decreasing confidence (`conf`, or the given order, which is
    NMS's) and each takes the free label with the highest IoU >= the threshold, one-to-one, separately at
    every threshold. So a more confident detection keeps its label even when a weaker one overlaps it more.
    """
    iouv = IOU_THRESHOLDS if iouv is None else iouv
    device = pred_classes.device
    thr = iouv.detach().cpu().numpy().astype(np.float64)
    n_pred, n_true = pred_classes.shape[0], true_classes.shape[0]
    correct = np.zeros((n_pred, thr.shape[0]), dtype=bool)
    if n_pred == 0 or n_true == 0:
        return torch.from_numpy(correct).to(device)
    same = true_classes.reshape(-1, 1) == pred_classes.reshape(1, -1)
    iou_np = (iou * same).detach().cpu().double().numpy()
    order = np.arange(n_pred) if conf is None else np.argsort(-conf.detach().cpu().numpy(), kind="stable")
    candidates = order[(iou_np[:, order] >= thr.min()).any(0)]  # only these can match at any threshold
    taken = np.zeros((thr.shape[0], n_true), dtype=bool)  # label already matched, per threshold
    rows = np.arange(thr.shape[0])
    for p in candidates:
        col = iou_np[:, p]
        ok = (col[None, :] >= thr[:, None]) & ~taken
        best = np.where(ok, col[None, :], -1.0).argmax(1)
        hit = ok[rows, best]
        correct[p] = hit
        taken[rows[hit], best[hit]] = True
    return torch.from_numpy(correct).to(device)


def smooth(y: np.ndarray, f: float = 0.05) -> np.ndarray:
    """Box filter over a fraction `f` of the curve length (odd width), edges padded with the end values."""
    nf = round(len(y) * f * 2) // 2 + 1
    pad = np.ones(nf // 2)
    yp = np.concatenate((pad * y[0], y, pad * y[-1]))
    return np.convolve(yp, np.ones(nf) / nf, mode="valid")


def ap_per_class(
    tp: np.ndarray,
    conf: np.ndarray,
    pred_cls: np.ndarray,
    target_cls: np.ndarray,
    names: dict[int, str] | list[str] | None = None,
    eps: float = 1e-16,
) -> tuple:
    """Per-class AP at each IoU threshold and P/R/F1 at the confidence of maximum mean F1.

    tp (N, T) bool correct-matrix, conf (N,), pred_cls (N,), target_cls (L,) over the whole set.
    Classes are those present in `target_cls`; predictions of classes without labels are ignored.
    P and R curves are sampled at px = linspace(0, 1, 1000) confidences; the mean F1 curve is
    smoothed with a box filter of 10 % of its length before taking its argmax.
    Returns (tp, fp, p, r, f1, ap, unique_classes, p_curve, r_curve, f1_curve, px, prec_values):
    tp/fp are counts at the chosen confidence, p/r/f1 (nc,), ap (nc, T), the curves (nc, 1000) and
    prec_values (nc, 1000) the interpolated PR curve at the first IoU threshold over recall px.
    `names` is accepted for a later plotting step and is not used here.
    """
    tp, conf = np.asarray(tp, dtype=np.float64), np.asarray(conf, dtype=np.float64)
    pred_cls, target_cls = np.asarray(pred_cls), np.asarray(target_cls)
    if tp.ndim == 1:
        tp = tp[:, None]
    order = np.argsort(-conf, kind="stable")
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]

    unique_classes, nt = np.unique(target_cls, return_counts=True)
    nc, nthr = unique_classes.shape[0], tp.shape[1]
    px = np.linspace(0, 1, 1000)
    ap = np.zeros((nc, nthr))
    p_curve, r_curve, prec_values = np.zeros((nc, 1000)), np.zeros((nc, 1000)), np.zeros((nc, 1000))
    for ci, c in enumerate(unique_classes):
        i = pred_cls == c
        n_l, n_p = nt[ci], int(i.sum())
        if n_p == 0 or n_l == 0:
            continue
        tpc = tp[i].cumsum(0)
        fpc = (1 - tp[i]).cumsum(0)
        recall = tpc / (n_l + eps)
        precision = tpc / (tpc + fpc)
        # np.interp needs increasing x: confidences are decreasing, so negate both.
        r_curve[ci] = np.interp(-px, -conf[i], recall[:, 0], left=0)
        p_curve[ci] = np.interp(-px, -conf[i], precision[:, 0], left=1)
        for j in range(nthr):
            ap[ci, j] = compute_ap(recall[:, j], precision[:, j])[0]
        prec_values[ci] = envelope_at(recall[:, 0], precision[:, 0], px)

    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + eps)
    i = int(smooth(f1_curve.mean(0), 0.1).argmax()) if nc else 0
    p, r, f1 = p_curve[:, i], r_curve[:, i], f1_curve[:, i]
    tp_n = (r * nt).round()
    fp_n = (tp_n / (p + eps) - tp_n).round()
    return tp_n, fp_n, p, r, f1, ap, unique_classes.astype(int), p_curve, r_curve, f1_curve, px, prec_values


class ConfusionMatrix:
    """Detection confusion matrix (nc+1, nc+1): rows = predicted class, columns = true class, index nc = background.

    Per image, detections with conf >= `conf` are matched one-to-one to labels of any class with IoU > `iou_thres`
    (greedy by decreasing IoU). A matched pair counts at [pred class, true class]; an unmatched label at
    [background, true class] (missed); an unmatched detection at [pred class, background] (false positive).
    """

    def __init__(self, nc: int, conf: float = 0.25, iou_thres: float = 0.45) -> None:
        self.nc, self.conf, self.iou_thres = int(nc), float(conf), float(iou_thres)
        self.matrix = np.zeros((self.nc + 1, self.nc + 1), dtype=np.int64)

    def process_batch(self, detections: torch.Tensor | None, gt_boxes: torch.Tensor, gt_cls: torch.Tensor) -> None:
        """Add one image: detections (N, 6) xyxy, conf, cls; gt_boxes (M, 4) xyxy in the same pixels; gt_cls (M,)."""
        gt_cls = gt_cls.reshape(-1).long().cpu().numpy()
        if detections is None or len(detections) == 0:
            np.add.at(self.matrix, (self.nc, gt_cls), 1)
            return
        detections = detections[detections[:, 4] >= self.conf]
        det_cls = detections[:, 5].long().cpu().numpy()
        if len(gt_cls) == 0 or len(det_cls) == 0:
            np.add.at(self.matrix, (self.nc, gt_cls), 1)
            np.add.at(self.matrix, (det_cls, self.nc), 1)
            return
        iou = box_iou(gt_boxes.float(), detections[:, :4].float()).cpu().numpy()
        gi, di = np.nonzero(iou > self.iou_thres)
        order = np.argsort(-iou[gi, di], kind="stable")
        gt_used, det_used = np.zeros(len(gt_cls), bool), np.zeros(len(det_cls), bool)
        for k in order:
            g, d = gi[k], di[k]
            if not gt_used[g] and not det_used[d]:
                gt_used[g] = det_used[d] = True
                self.matrix[det_cls[d], gt_cls[g]] += 1
        np.add.at(self.matrix, (self.nc, gt_cls[~gt_used]), 1)
        np.add.at(self.matrix, (det_cls[~det_used], self.nc), 1)

    def tp_fp(self) -> tuple[np.ndarray, np.ndarray]:
        """True positives (diagonal) and false positives (row sum minus diagonal) per class, background excluded."""
        tp = self.matrix.diagonal()
        fp = self.matrix.sum(1) - tp
        return tp[:-1], fp[:-1]


class Metric:
    """Box metrics of one validation pass: per-class P, R, F1, AP (nc, 10) and their means."""

    def __init__(self) -> None:
        self.p: np.ndarray = np.zeros(0)  # (nc_present,)
        self.r: np.ndarray = np.zeros(0)
        self.f1: np.ndarray = np.zeros(0)
        self.all_ap: np.ndarray = np.zeros((0, 10))  # (nc_present, 10)
        self.ap_class_index: np.ndarray = np.zeros(0, dtype=int)
        self.nc: int = 0  # number of classes of the dataset (for `maps`)
        self.p_curve = self.r_curve = self.f1_curve = self.prec_values = np.zeros((0, 1000))
        self.px: np.ndarray = np.linspace(0, 1, 1000)

    @property
    def ap50(self) -> np.ndarray:
        """AP at IoU 0.5 per present class."""
        return self.all_ap[:, 0] if len(self.all_ap) else np.zeros(0)

    @property
    def ap(self) -> np.ndarray:
        """AP at IoU 0.50:0.95 per present class."""
        return self.all_ap.mean(1) if len(self.all_ap) else np.zeros(0)

    @property
    def mp(self) -> float:
        """Mean precision over present classes."""
        return float(self.p.mean()) if len(self.p) else 0.0

    @property
    def mr(self) -> float:
        """Mean recall over present classes."""
        return float(self.r.mean()) if len(self.r) else 0.0

    @property
    def map50(self) -> float:
        """mAP at IoU 0.5."""
        return float(self.all_ap[:, 0].mean()) if len(self.all_ap) else 0.0

    @property
    def map75(self) -> float:
        """mAP at IoU 0.75."""
        return float(self.all_ap[:, 5].mean()) if len(self.all_ap) else 0.0

    @property
    def map(self) -> float:
        """mAP at IoU 0.50:0.95."""
        return float(self.all_ap.mean()) if len(self.all_ap) else 0.0

    @property
    def maps(self) -> np.ndarray:
        """mAP50-95 per class over all nc classes; classes without labels get the overall map."""
        n = max(self.nc, int(self.ap_class_index.max()) + 1 if len(self.ap_class_index) else 0)
        maps = np.zeros(n) + self.map
        for i, c in enumerate(self.ap_class_index):
            maps[c] = self.ap[i]
        return maps

    def mean_results(self) -> list[float]:
        """[mp, mr, map50, map]."""
        return [self.mp, self.mr, self.map50, self.map]

    def class_result(self, i: int) -> tuple[float, float, float, float]:
        """(p, r, ap50, ap50-95) of the i-th present class (index into ap_class_index)."""
        return float(self.p[i]), float(self.r[i]), float(self.ap50[i]), float(self.ap[i])

    def fitness(self) -> float:
        """0.1·mAP50 + 0.9·mAP50-95."""
        return 0.1 * self.map50 + 0.9 * self.map

    def update(self, results: tuple) -> None:
        """Store (p, r, f1, all_ap, ap_class_index, p_curve, r_curve, f1_curve, px, prec_values),
        i.e. ap_per_class(...)[2:]."""
        (self.p, self.r, self.f1, self.all_ap, self.ap_class_index,
         self.p_curve, self.r_curve, self.f1_curve, self.px, self.prec_values) = results

    @property
    def curves_results(self) -> list[list[Any]]:
        """[x, y, xlabel, ylabel] for the PR, F1, P and R curves (for plotting)."""
        return [
            [self.px, self.prec_values, "Recall", "Precision"],
            [self.px, self.f1_curve, "Confidence", "F1"],
            [self.px, self.p_curve, "Confidence", "Precision"],
            [self.px, self.r_curve, "Confidence", "Recall"],
        ]


class DetMetrics:
    """Detection metrics of a validation pass; `process` fills `box` (a Metric)."""

    def __init__(self, names: dict[int, str] | list[str] | None = None) -> None:
        if isinstance(names, (list, tuple)):
            names = dict(enumerate(names))
        self.names: dict[int, str] = dict(names or {})
        self.box = Metric()
        self.box.nc = len(self.names)
        self.speed: dict[str, float] = {"preprocess": 0.0, "inference": 0.0, "loss": 0.0, "postprocess": 0.0}
        self.coco: dict[str, Any] | None = None  # pycocotools / faster-coco-eval results when save_json scored them

    def process(self, tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray) -> None:
        """Compute AP and P/R from the stacked correct-matrix, confidences and classes of the whole set."""
        results = ap_per_class(tp, conf, pred_cls, target_cls, names=self.names)[2:]
        self.box.nc = len(self.names)
        self.box.update(results)

    @property
    def keys(self) -> list[str]:
        """Names of the mean results, as they appear in results.csv."""
        return ["metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)"]

    def mean_results(self) -> list[float]:
        """[mp, mr, map50, map]."""
        return self.box.mean_results()

    def class_result(self, i: int) -> tuple[float, float, float, float]:
        """(p, r, ap50, ap50-95) of the i-th present class."""
        return self.box.class_result(i)

    @property
    def maps(self) -> np.ndarray:
        """Per-class mAP50-95 over all classes."""
        return self.box.maps

    @property
    def fitness(self) -> float:
        """0.1·mAP50 + 0.9·mAP50-95."""
        return self.box.fitness()

    @property
    def ap_class_index(self) -> np.ndarray:
        """Class ids that have labels, in the order of the per-class arrays."""
        return self.box.ap_class_index

    @property
    def results_dict(self) -> dict[str, float]:
        """The four mean metrics and fitness, keyed by results.csv column names."""
        return dict(zip(self.keys + ["fitness"], self.mean_results() + [self.fitness]))

    @property
    def curves_results(self) -> list[list[Any]]:
        """Curve data for plotting (see Metric.curves_results)."""
        return self.box.curves_results
