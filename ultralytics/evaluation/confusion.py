"""Detection confusion matrix with a background class (SPEC §6: detections with conf ≥ 0.25, pairs at IoU > 0.45)."""

from __future__ import annotations

import numpy as np
import torch

from ultralytics.detection.iou import box_iou


def pair_by_overlap(iou: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one (label, detection) pairs with IoU > min_iou, taken greedily from the largest IoU down.

    `iou` is (labels, detections); returns the label indices and detection indices of the pairs.
    """
    rows, cols = np.nonzero(iou > min_iou)
    free_row, free_col = np.ones(iou.shape[0], bool), np.ones(iou.shape[1], bool)
    pairs = []
    for k in np.argsort(-iou[rows, cols], kind="stable"):
        g, d = rows[k], cols[k]
        if free_row[g] and free_col[d]:
            free_row[g] = free_col[d] = False
            pairs.append((g, d))
    found = np.array(pairs, dtype=int).reshape(-1, 2)
    return found[:, 0], found[:, 1]


class ConfusionMatrix:
    """(nc+1, nc+1) counts: rows = predicted class, columns = true class, index nc = background.

    A matched pair counts at [pred class, true class], an unmatched label at [background, true class] (missed) and
    an unmatched detection at [pred class, background] (false positive). Classes play no part in the pairing.
    """

    def __init__(self, nc: int, conf: float = 0.25, iou_thres: float = 0.45) -> None:
        self.nc, self.conf, self.iou_thres = int(nc), float(conf), float(iou_thres)
        self.matrix = np.zeros((self.nc + 1, self.nc + 1), dtype=np.int64)

    def _count(self, pred: np.ndarray, true: np.ndarray) -> None:
        np.add.at(self.matrix, (pred, true), 1)

    def process_batch(self, detections: torch.Tensor | None, gt_boxes: torch.Tensor, gt_cls: torch.Tensor) -> None:
        """Add one image: detections (N, 6) xyxy, conf, cls; gt_boxes (M, 4) xyxy in the same pixels; gt_cls (M,)."""
        true = gt_cls.reshape(-1).long().cpu().numpy()
        if detections is None:
            detections = torch.zeros((0, 6))
        kept = detections[detections[:, 4] >= self.conf]
        pred = kept[:, 5].long().cpu().numpy()
        background = self.nc
        if len(true) and len(pred):
            iou = box_iou(gt_boxes.float(), kept[:, :4].float()).cpu().numpy()
            gi, di = pair_by_overlap(iou, self.iou_thres)
        else:
            gi = di = np.zeros(0, dtype=int)
        self._count(pred[di], true[gi])
        self._count(np.full(len(true) - len(gi), background), np.delete(true, gi))
        self._count(np.delete(pred, di), np.full(len(pred) - len(di), background))

    def tp_fp(self) -> tuple[np.ndarray, np.ndarray]:
        """Per class (background excluded): true positives (diagonal) and false positives (rest of the row)."""
        tp = np.diag(self.matrix)[: self.nc]
        return tp, self.matrix[: self.nc].sum(1) - tp
