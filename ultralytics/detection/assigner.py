"""Task-aligned label assignment: anchor grids, distance ↔ box conversions and the TaskAlignedAssigner."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ultralytics.detection.iou import bbox_iou


def make_anchors(
    feats: Sequence[torch.Tensor], strides: Sequence[float] | torch.Tensor, offset: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor centres of every feature map, in grid units of its own level.

    feats are (B, C, H, W) maps; level l contributes H·W points (x + offset, y + offset) in
    row-major order (y outer, x inner). Returns anchor_points (A, 2) and stride_tensor (A, 1),
    levels concatenated in order.
    """
    assert feats is not None and len(feats) == len(strides)
    dtype, device = feats[0].dtype, feats[0].device
    points, stride_list = [], []
    for f, s in zip(feats, strides):
        h, w = f.shape[2:]
        sx = torch.arange(w, device=device, dtype=dtype) + offset
        sy = torch.arange(h, device=device, dtype=dtype) + offset
        yy, xx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((xx, yy), -1).view(-1, 2))
        stride_list.append(torch.full((h * w, 1), float(s), dtype=dtype, device=device))
    return torch.cat(points), torch.cat(stride_list)


def dist2bbox(distance: torch.Tensor, anchor_points: torch.Tensor, xywh: bool = True, dim: int = -1) -> torch.Tensor:
    """(left, top, right, bottom) distances from anchor points → boxes (xywh or xyxy) along `dim`."""
    lt, rb = distance.chunk(2, dim)
    x1y1 = anchor_points - lt
    x2y2 = anchor_points + rb
    if xywh:
        return torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), dim)
    return torch.cat((x1y1, x2y2), dim)


def bbox2dist(anchor_points: torch.Tensor, bbox: torch.Tensor, reg_max: int) -> torch.Tensor:
    """xyxy boxes → (left, top, right, bottom) distances from the anchors, clamped to [0, reg_max − 1.01]."""
    x1y1, x2y2 = bbox.chunk(2, -1)
    return torch.cat((anchor_points - x1y1, x2y2 - anchor_points), -1).clamp_(0, reg_max - 1 - 0.01)


class TaskAlignedAssigner(nn.Module):
    """Assign ground-truth boxes to anchors by the task-aligned metric score^alpha · IoU^beta (TOOD, YOLOv8).

    IoU here is CIoU clamped at 0, as in YOLOv8. Candidates of a gt are the anchors whose centres
    lie strictly inside it; each gt keeps its `topk` candidates by alignment; an anchor claimed by
    several gts keeps the one (among them) with the highest IoU. Target scores are the one-hot
    class times the alignment normalised per gt: align · max_IoU(gt) / max_align(gt).
    """

    def __init__(self, topk: int = 10, num_classes: int = 80, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9):
        super().__init__()
        self.topk = topk
        self.num_classes = num_classes
        self.bg_idx = num_classes
        self.alpha = alpha
        self.beta = beta
        self.eps = eps

    @torch.no_grad()
    def forward(
        self,
        pd_scores: torch.Tensor,
        pd_bboxes: torch.Tensor,
        anc_points: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_bboxes: torch.Tensor,
        mask_gt: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Assign targets for a padded batch.

        Args: pd_scores (B, A, C) sigmoid scores, pd_bboxes (B, A, 4) xyxy, anc_points (A, 2) in the
        same units as the boxes, gt_labels (B, M, 1), gt_bboxes (B, M, 4) xyxy, mask_gt (B, M, 1)
        (1 for real rows, 0 for padding).
        Returns target_labels (B, A) long (num_classes for background), target_bboxes (B, A, 4)
        (zeros for background), target_scores (B, A, C), fg_mask (B, A) bool, target_gt_idx (B, A) long.
        """
        bs, na, nc = pd_scores.shape
        n_max = gt_bboxes.shape[1]
        device = pd_scores.device
        if n_max == 0 or bs == 0:
            return (
                torch.full((bs, na), self.bg_idx, dtype=torch.long, device=device),
                torch.zeros((bs, na, 4), dtype=pd_bboxes.dtype, device=device),
                torch.zeros_like(pd_scores),
                torch.zeros((bs, na), dtype=torch.bool, device=device),
                torch.zeros((bs, na), dtype=torch.long, device=device),
            )

        labels = gt_labels.view(bs, n_max).long().clamp(0, nc - 1)  # padding rows may hold anything
        candidate = self.select_candidates_in_gts(anc_points, gt_bboxes) & mask_gt.view(bs, n_max, 1).bool()
        align_metric, overlaps = self.get_box_metrics(pd_scores, pd_bboxes, labels, gt_bboxes, candidate)

        # Top-k candidates of each gt by alignment; non-candidates rank below every candidate.
        k = min(self.topk, na)
        topk_idx = align_metric.masked_fill(~candidate, -1.0).topk(k, dim=-1).indices  # (B, M, k)
        in_topk = torch.zeros_like(candidate).scatter_(-1, topk_idx, True)
        mask_pos = in_topk & candidate  # (B, M, A)

        # An anchor claimed by several gts keeps the claimant with the highest IoU.
        claims = mask_pos.sum(1)  # (B, A)
        multi = claims > 1
        if multi.any():
            best = overlaps.masked_fill(~mask_pos, -1.0).argmax(1)  # (B, A)
            best_onehot = torch.zeros_like(mask_pos).scatter_(1, best.unsqueeze(1), True)
            mask_pos = torch.where(multi.unsqueeze(1), best_onehot, mask_pos)

        fg_mask = mask_pos.any(1)  # (B, A)
        target_gt_idx = mask_pos.to(torch.uint8).argmax(1)  # (B, A); 0 for background
        target_labels, target_bboxes, target_scores = self.get_targets(labels, gt_bboxes, target_gt_idx, fg_mask, nc)

        # Normalise: per gt, align · max IoU of that gt / max align of that gt; one gt per anchor.
        mask_f = mask_pos.to(align_metric.dtype)
        align_metric = align_metric * mask_f
        pos_align = align_metric.amax(-1, keepdim=True)  # (B, M, 1)
        pos_overlaps = (overlaps * mask_f).amax(-1, keepdim=True)  # (B, M, 1)
        norm = (align_metric * pos_overlaps / (pos_align + self.eps)).amax(1)  # (B, A)
        target_scores = target_scores * norm.unsqueeze(-1)
        return target_labels, target_bboxes, target_scores, fg_mask, target_gt_idx

    def select_candidates_in_gts(self, anc_points: torch.Tensor, gt_bboxes: torch.Tensor) -> torch.Tensor:
        """(B, M, A) bool: anchor centre strictly inside the gt box (by more than eps on every side)."""
        ax, ay = anc_points[:, 0].view(1, 1, -1), anc_points[:, 1].view(1, 1, -1)
        x1, y1, x2, y2 = (gt_bboxes[..., i : i + 1] for i in range(4))  # (B, M, 1) each
        eps = self.eps
        return (ax - x1 > eps) & (ay - y1 > eps) & (x2 - ax > eps) & (y2 - ay > eps)

    def get_box_metrics(
        self,
        pd_scores: torch.Tensor,
        pd_bboxes: torch.Tensor,
        labels: torch.Tensor,
        gt_bboxes: torch.Tensor,
        candidate: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Alignment metric and IoU (B, M, A), zero outside the candidates."""
        bs, n_max, na = candidate.shape
        overlaps = torch.zeros((bs, n_max, na), dtype=pd_bboxes.dtype, device=pd_bboxes.device)
        # Score of each gt's class at every anchor: (B, A, M) → (B, M, A).
        scores = pd_scores.gather(2, labels.unsqueeze(1).expand(-1, na, -1)).permute(0, 2, 1)
        bbox_scores = torch.where(candidate, scores, torch.zeros_like(scores))
        gt = gt_bboxes.unsqueeze(2).expand(-1, -1, na, -1)[candidate]
        pd = pd_bboxes.unsqueeze(1).expand(-1, n_max, -1, -1)[candidate]
        overlaps[candidate] = bbox_iou(gt, pd, xywh=False, CIoU=True).squeeze(-1).clamp_(min=0).to(overlaps.dtype)
        align_metric = bbox_scores.pow(self.alpha) * overlaps.pow(self.beta)
        return align_metric, overlaps

    def get_targets(
        self, labels: torch.Tensor, gt_bboxes: torch.Tensor, target_gt_idx: torch.Tensor, fg_mask: torch.Tensor, nc: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gather each anchor's gt label and box; one-hot (unnormalised) target scores."""
        target_labels = labels.gather(1, target_gt_idx)  # (B, A)
        target_bboxes = gt_bboxes.gather(1, target_gt_idx.unsqueeze(-1).expand(-1, -1, 4))  # (B, A, 4)
        target_scores = torch.zeros((*target_labels.shape, nc), dtype=gt_bboxes.dtype, device=gt_bboxes.device)
        target_scores.scatter_(2, target_labels.unsqueeze(-1), 1.0)
        target_scores = target_scores * fg_mask.unsqueeze(-1)
        target_labels = torch.where(fg_mask, target_labels, torch.full_like(target_labels, self.bg_idx))
        target_bboxes = target_bboxes * fg_mask.unsqueeze(-1)
        return target_labels, target_bboxes, target_scores
