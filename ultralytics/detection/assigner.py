"""Task-aligned label assignment (TOOD): which anchors learn which ground-truth box, and how strongly.

Shapes: B images, M ground-truth slots per image (padded), A anchors, C classes. Boxes are xyxy in one unit
(pixels in the loss) shared by the anchor points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ultralytics.detection.iou import aligned_iou

__all__ = ["Assignment", "TaskAlignedAssigner", "centres_inside", "alignment_scores", "top_candidates",
           "one_gt_per_anchor", "soft_targets"]


class Assignment(NamedTuple):
    """What each anchor is trained towards."""

    labels: torch.Tensor  # (B, A) long; num_classes for background
    boxes: torch.Tensor  # (B, A, 4) box of the assigned gt, zeros for background
    scores: torch.Tensor  # (B, A, C) class target: normalised alignment on the gt's class, zeros elsewhere
    fg_mask: torch.Tensor  # (B, A) bool
    gt_index: torch.Tensor  # (B, A) long; slot of the assigned gt, 0 for background


def centres_inside(points: torch.Tensor, boxes: torch.Tensor, margin: float) -> torch.Tensor:
    """(B, M, A) bool: point a lies inside box m by more than `margin` on all four sides.

    points (A, 2), boxes (B, M, 4).
    """
    x, y = points[:, 0], points[:, 1]
    x1, y1, x2, y2 = (boxes[..., i, None] for i in range(4))  # (B, M, 1) each
    clearance = torch.minimum(torch.minimum(x - x1, x2 - x), torch.minimum(y - y1, y2 - y))
    return clearance > margin


def alignment_scores(
    scores: torch.Tensor, pred_boxes: torch.Tensor, gt_labels: torch.Tensor, gt_boxes: torch.Tensor,
    candidates: torch.Tensor, alpha: float, beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Alignment s^alpha · IoU^beta and the IoU itself, both (B, M, A), zero off the candidates.

    s is the predicted score of the gt's class; IoU is CIoU clamped at 0. scores (B, A, C), pred_boxes (B, A, 4),
    gt_labels (B, M) long, gt_boxes (B, M, 4), candidates (B, M, A) bool.
    """
    img, gt, anchor = candidates.nonzero(as_tuple=True)
    iou = torch.zeros(candidates.shape, dtype=pred_boxes.dtype, device=pred_boxes.device)
    align = torch.zeros_like(iou)
    pair_iou = aligned_iou(gt_boxes[img, gt], pred_boxes[img, anchor], kind="ciou").clamp(min=0).to(iou.dtype)
    pair_score = scores[img, anchor, gt_labels[img, gt]].to(iou.dtype)
    iou[img, gt, anchor] = pair_iou
    align[img, gt, anchor] = pair_score.pow(alpha) * pair_iou.pow(beta)
    return align, iou


def top_candidates(align: torch.Tensor, candidates: torch.Tensor, k: int) -> torch.Tensor:
    """(B, M, A) bool: the (at most) k candidates of each gt with the largest alignment."""
    k = min(k, align.shape[-1])
    ranked = align.masked_fill(~candidates, -1.0)  # below any candidate: alignments are >= 0
    chosen = torch.zeros_like(candidates).scatter_(-1, ranked.topk(k, dim=-1).indices, True)
    return chosen & candidates


def one_gt_per_anchor(positive: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
    """Keep, for every anchor claimed by several gts, only the claim with the highest IoU (first on ties)."""
    contested = positive.sum(1, keepdim=True) > 1  # (B, 1, A)
    if not contested.any():
        return positive
    winner = iou.masked_fill(~positive, -1.0).argmax(1, keepdim=True)  # (B, 1, A)
    slots = torch.arange(positive.shape[1], device=positive.device).view(1, -1, 1)
    return torch.where(contested, slots == winner, positive)


def soft_targets(align: torch.Tensor, iou: torch.Tensor, positive: torch.Tensor, eps: float) -> torch.Tensor:
    """(B, A) class-target strength of every anchor: its alignment rescaled so that each gt's best-aligned
    anchor gets that gt's best IoU, i.e. align · max IoU(gt) / max align(gt); 0 for background.

    `positive` (B, M, A) must hold at most one gt per anchor.
    """
    align = align * positive
    best_iou = (iou * positive).amax(-1, keepdim=True)  # (B, M, 1)
    best_align = align.amax(-1, keepdim=True)
    return (align * best_iou / (best_align + eps)).sum(1)


@dataclass(frozen=True)
class TaskAlignedAssigner:
    """Assign gt boxes to anchors by the task-aligned metric score^alpha · IoU^beta.

    A gt's candidates are the anchors whose centres lie inside it; it keeps its `topk` best-aligned
    candidates; an anchor kept by several gts goes to the one it overlaps most. Called with
    pred_scores (B, A, C) probabilities, pred_boxes (B, A, 4), points (A, 2), gt_labels (B, M, 1),
    gt_boxes (B, M, 4) and gt_mask (B, M, 1) (nonzero for real rows, zero for padding); returns an `Assignment`.
    """

    topk: int = 10
    num_classes: int = 80
    alpha: float = 0.5
    beta: float = 6.0
    eps: float = 1e-9

    @torch.no_grad()
    def __call__(
        self, pred_scores: torch.Tensor, pred_boxes: torch.Tensor, points: torch.Tensor, gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor, gt_mask: torch.Tensor,
    ) -> Assignment:
        b, _, c = pred_scores.shape
        m = gt_boxes.shape[1]
        if b == 0 or m == 0:
            return self._background(pred_scores, pred_boxes)

        labels = gt_labels.reshape(b, m).long().clamp(0, c - 1)  # padding rows may hold any label
        candidates = centres_inside(points, gt_boxes, self.eps) & gt_mask.reshape(b, m, 1).bool()
        align, iou = alignment_scores(pred_scores, pred_boxes, labels, gt_boxes, candidates, self.alpha, self.beta)
        positive = one_gt_per_anchor(top_candidates(align, candidates, self.topk), iou)

        fg = positive.any(1)
        slots = torch.arange(m, device=positive.device).view(1, -1, 1)
        gt_index = (positive * slots).sum(1)  # the single positive slot, 0 for background
        strength = soft_targets(align, iou, positive, self.eps)

        assigned_labels = labels.gather(1, gt_index)
        scores = torch.zeros_like(pred_scores, dtype=gt_boxes.dtype)
        scores.scatter_(-1, assigned_labels.unsqueeze(-1), strength.unsqueeze(-1).to(scores.dtype))
        boxes = gt_boxes.gather(1, gt_index.unsqueeze(-1).expand(-1, -1, 4)) * fg.unsqueeze(-1)
        return Assignment(assigned_labels.masked_fill(~fg, self.num_classes), boxes, scores, fg, gt_index)

    def _background(self, pred_scores: torch.Tensor, pred_boxes: torch.Tensor) -> Assignment:
        """Every anchor background (a batch without any gt slot)."""
        b, a, _ = pred_scores.shape
        device = pred_scores.device
        return Assignment(
            torch.full((b, a), self.num_classes, dtype=torch.long, device=device),
            torch.zeros((b, a, 4), dtype=pred_boxes.dtype, device=device),
            torch.zeros_like(pred_scores),
            torch.zeros((b, a), dtype=torch.bool, device=device),
            torch.zeros((b, a), dtype=torch.long, device=device),
        )
