"""Detections ↔ labels of one image at each IoU threshold, and the letterboxed input space they are matched in."""

from __future__ import annotations

import numpy as np
import torch

from ultralytics.utils.ops import xywh2xyxy

IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10)  # 0.50:0.05:0.95, the thresholds averaged by mAP50-95


def labels_in_input_space(xywhn: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
    """Normalised (cx, cy, w, h) labels of a batch image → xyxy pixels of the batch's letterboxed input (h, w)."""
    h, w = int(input_hw[0]), int(input_hw[1])
    return xywh2xyxy(xywhn * torch.tensor([w, h, w, h], dtype=xywhn.dtype, device=xywhn.device))


def same_class_iou(iou: torch.Tensor, true_classes: torch.Tensor, pred_classes: torch.Tensor) -> np.ndarray:
    """(labels, detections) IoU as float64 numpy, 0 wherever the two classes differ."""
    agree = true_classes.reshape(-1, 1) == pred_classes.reshape(1, -1)
    return torch.where(agree, iou, torch.zeros_like(iou)).detach().cpu().double().numpy()


def greedy_claims(iou: np.ndarray, thresholds: np.ndarray, visit: np.ndarray) -> np.ndarray:
    """(detections, thresholds) bool: detection d claimed a label at threshold t.

    Detections are visited in the order `visit`; at every threshold separately each one claims the unclaimed
    label it overlaps most, provided that IoU reaches the threshold.
    """
    n_true, n_pred = iou.shape
    hit = np.zeros((n_pred, len(thresholds)), dtype=bool)
    claimed = np.zeros((len(thresholds), n_true), dtype=bool)
    levels = np.arange(len(thresholds))
    for d in visit:
        eligible = (iou[:, d][None, :] >= thresholds[:, None]) & ~claimed  # (T, labels)
        if not eligible.any():
            continue
        pick = np.where(eligible, iou[:, d][None, :], -np.inf).argmax(1)
        won = eligible[levels, pick]
        hit[d] = won
        claimed[levels[won], pick[won]] = True
    return hit


def match_predictions(
    pred_classes: torch.Tensor,
    true_classes: torch.Tensor,
    iou: torch.Tensor,
    iouv: torch.Tensor | None = None,
    conf: torch.Tensor | None = None,
) -> torch.Tensor:
    """(N_pred, T) bool on the detections' device: detection i is a true positive at IoU threshold iouv[j].

    `iou` is (N_true, N_pred), e.g. box_iou(label_boxes, pred_boxes); only same-class pairs count. Detections are
    visited by decreasing `conf` (stable), or in the given order (NMS's, already by confidence) when None.
    """
    thresholds = (IOU_THRESHOLDS if iouv is None else iouv).detach().cpu().double().numpy()
    n_pred = pred_classes.shape[0]
    if n_pred == 0 or true_classes.shape[0] == 0:
        return torch.zeros((n_pred, len(thresholds)), dtype=torch.bool, device=pred_classes.device)
    overlap = same_class_iou(iou, true_classes, pred_classes)
    visit = np.arange(n_pred) if conf is None else np.argsort(-conf.detach().cpu().numpy(), kind="stable")
    return torch.from_numpy(greedy_claims(overlap, thresholds, visit)).to(pred_classes.device)

