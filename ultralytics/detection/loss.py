"""YOLOv8 detection loss: BCE classification, CIoU box regression and Distribution Focal Loss."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ultralytics.detection.iou import bbox_iou
from ultralytics.utils.ops import xywh2xyxy
from ultralytics.detection.assigner import TaskAlignedAssigner, bbox2dist, dist2bbox, make_anchors


class DFLoss(nn.Module):
    """Distribution Focal Loss: cross-entropy split between the two integer bins around each target."""

    def __init__(self, reg_max: int = 16) -> None:
        super().__init__()
        self.reg_max = reg_max

    def forward(self, pred_dist: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred_dist (N·4, reg_max) logits, target (N, 4) distances in bin units → (N, 1) loss (mean of 4 sides).

        A target t (clamped to [0, reg_max − 1.01]) gives weight (⌊t⌋ + 1 − t) to bin ⌊t⌋ and
        (t − ⌊t⌋) to bin ⌊t⌋ + 1.
        """
        target = target.clamp(0, self.reg_max - 1 - 0.01)
        tl = target.long()
        tr = tl + 1
        wl = tr.to(target.dtype) - target
        wr = 1 - wl
        ce_l = F.cross_entropy(pred_dist, tl.view(-1), reduction="none").view(tl.shape)
        ce_r = F.cross_entropy(pred_dist, tr.view(-1), reduction="none").view(tl.shape)
        return (ce_l * wl + ce_r * wr).mean(-1, keepdim=True)


class BboxLoss(nn.Module):
    """CIoU box loss and DFL on the foreground anchors, both weighted by the target score."""

    def __init__(self, reg_max: int = 16) -> None:
        super().__init__()
        self.reg_max = reg_max
        self.dfl_loss = DFLoss(reg_max) if reg_max > 1 else None

    def forward(
        self,
        pred_dist: torch.Tensor,
        pred_bboxes: torch.Tensor,
        anchor_points: torch.Tensor,
        target_bboxes: torch.Tensor,
        target_scores: torch.Tensor,
        target_scores_sum: torch.Tensor,
        fg_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes and anchors in grid units; returns (box loss, dfl loss), each / target_scores_sum."""
        weight = target_scores.sum(-1)[fg_mask].unsqueeze(-1)  # (n_fg, 1)
        iou = bbox_iou(pred_bboxes[fg_mask], target_bboxes[fg_mask], xywh=False, CIoU=True)
        loss_iou = ((1.0 - iou) * weight).sum() / target_scores_sum
        if self.dfl_loss is None:
            return loss_iou, torch.zeros((), device=pred_dist.device)
        target_ltrb = bbox2dist(anchor_points, target_bboxes, self.reg_max)
        loss_dfl = self.dfl_loss(pred_dist[fg_mask].view(-1, self.reg_max), target_ltrb[fg_mask]) * weight
        return loss_iou, loss_dfl.sum() / target_scores_sum


def _hyp(h: Any, key: str, default: float) -> float:
    """Read a hyperparameter from a namespace or a dict, with a default."""
    if h is None:
        return default
    value = h.get(key, default) if isinstance(h, dict) else getattr(h, key, default)
    return float(default if value is None else value)


class DetectionLoss:
    """YOLOv8 detection loss: (7.5·box + 0.5·cls + 1.5·dfl) × batch size, gains read from `model.args`."""

    def __init__(self, model: nn.Module, tal_topk: int = 10) -> None:
        h = getattr(model, "args", None)
        m = model.model[-1]  # Detect head
        self.hyp = {"box": _hyp(h, "box", 7.5), "cls": _hyp(h, "cls", 0.5), "dfl": _hyp(h, "dfl", 1.5)}
        self.nc: int = int(m.nc)
        self.reg_max: int = int(m.reg_max)
        self.no: int = int(m.no)
        self.stride = [float(s) for s in m.stride]
        self.bce = nn.BCEWithLogitsLoss(reduction="none")
        self.assigner = TaskAlignedAssigner(topk=tal_topk, num_classes=self.nc, alpha=0.5, beta=6.0)
        self.bbox_loss = BboxLoss(self.reg_max)
        self.proj = torch.arange(self.reg_max, dtype=torch.float)
        # Set True by the DDP trainer on the TRAINING model's criterion only: the normaliser then comes from an
        # all_reduce over the ranks, which would hang if rank 0 alone ran it (validation with the EMA model).
        self.reduce_over_ranks = False

    def preprocess(
        self, targets: torch.Tensor, batch_size: int, scale_tensor: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 6) rows [image, cls, cx, cy, w, h] (normalised) → padded (B, M, 5) [cls, x1, y1, x2, y2] pixels
        and the (B, M, 1) mask of real rows; M is the largest number of targets in one image."""
        device = targets.device
        n = targets.shape[0]
        if n == 0:
            empty = torch.zeros(batch_size, 0, 5, device=device, dtype=targets.dtype)
            return empty, torch.zeros(batch_size, 0, 1, dtype=torch.bool, device=device)
        img = targets[:, 0].long()
        counts = torch.bincount(img, minlength=batch_size)
        m = int(counts.max())
        order = torch.sort(img, stable=True).indices
        img_sorted = img[order]
        starts = counts.cumsum(0) - counts
        slot = torch.arange(n, device=device) - starts[img_sorted]  # position of each target in its image
        out = torch.zeros(batch_size, m, 5, device=device, dtype=targets.dtype)
        out[img_sorted, slot] = targets[order, 1:]
        out[..., 1:5] = xywh2xyxy(out[..., 1:5] * scale_tensor)
        mask_gt = (torch.arange(m, device=device).view(1, m) < counts.view(-1, 1)).unsqueeze(-1)
        return out, mask_gt

    def bbox_decode(self, anchor_points: torch.Tensor, pred_dist: torch.Tensor) -> torch.Tensor:
        """(B, A, 4·reg_max) logits → xyxy boxes in grid units via the expectation over the bins."""
        if self.reg_max > 1:
            b, a, _ = pred_dist.shape
            proj = self.proj.to(device=pred_dist.device, dtype=pred_dist.dtype)
            pred_dist = pred_dist.view(b, a, 4, self.reg_max).softmax(3).matmul(proj)
        return dist2bbox(pred_dist, anchor_points, xywh=False)

    def normaliser(self, target_scores: torch.Tensor) -> torch.Tensor:
        """max(Σ target scores, 1); with `reduce_over_ranks`, max(Σ over all ranks, 1) / world size.

        Why the DDP form gives the single-process gradient of the global batch B = W·b (W ranks of b images):
        single process, L = B·U/T with U the gain-weighted loss sums over all images and T = max(ΣS, 1).
        Rank r computes L_r = b·U_r/T' with T' = T/W; the trainer backpropagates W·L_r and DDP averages, so
        g = (1/W)·Σ_r W·b·∇U_r/T' = b·W·∇(Σ_r U_r)/T = B·∇U/T. Clamping before the division keeps this exact
        even when ΣS < W.
        """
        total = target_scores.sum()
        if not self.reduce_over_ranks:
            return total.clamp(min=1)
        import torch.distributed as dist

        total = total.detach().clone()
        dist.all_reduce(total)
        return total.clamp(min=1) / dist.get_world_size()

    def __call__(self, preds: Any, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """preds: list of (B, no, H, W) maps, or (y, maps) from an eval-mode forward. Returns
        (total × batch size, detached [box, cls, dfl])."""
        is_eval_output = isinstance(preds, (tuple, list)) and len(preds) == 2 and isinstance(preds[1], (list, tuple))
        feats = preds[1] if is_eval_output else preds
        device = feats[0].device
        if device.type in ("cuda", "cpu"):
            ctx = torch.autocast(device_type=device.type, enabled=False)
        else:
            ctx = contextlib.nullcontext()
        with ctx:
            return self._loss([f.float() for f in feats], batch)

    def _loss(self, feats: list[torch.Tensor], batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        device = feats[0].device
        bs = feats[0].shape[0]
        loss = torch.zeros(3, device=device)
        pred = torch.cat([f.reshape(bs, self.no, -1) for f in feats], 2)  # (B, no, A)
        pred_distri, pred_scores = pred.split((4 * self.reg_max, self.nc), 1)
        pred_scores = pred_scores.permute(0, 2, 1).contiguous()  # (B, A, nc)
        pred_distri = pred_distri.permute(0, 2, 1).contiguous()  # (B, A, 4·reg_max)

        dtype = pred_scores.dtype
        imgsz = torch.tensor(feats[0].shape[2:], device=device, dtype=dtype) * self.stride[0]  # (h, w) pixels
        anchor_points, stride_tensor = make_anchors(feats, self.stride, 0.5)

        targets = torch.cat(
            (batch["batch_idx"].view(-1, 1), batch["cls"].view(-1, 1), batch["bboxes"].view(-1, 4)), 1
        ).to(device=device, dtype=dtype)
        gt, mask_gt = self.preprocess(targets, bs, scale_tensor=imgsz[[1, 0, 1, 0]])
        gt_labels, gt_bboxes = gt.split((1, 4), 2)

        pred_bboxes = self.bbox_decode(anchor_points, pred_distri)  # xyxy, grid units
        _, target_bboxes, target_scores, fg_mask, _ = self.assigner(
            pred_scores.detach().sigmoid(),
            (pred_bboxes.detach() * stride_tensor).to(gt_bboxes.dtype),
            anchor_points * stride_tensor,
            gt_labels,
            gt_bboxes,
            mask_gt,
        )
        target_scores_sum = self.normaliser(target_scores)

        loss[1] = self.bce(pred_scores, target_scores.to(dtype)).sum() / target_scores_sum
        if fg_mask.any():
            loss[0], loss[2] = self.bbox_loss(
                pred_distri, pred_bboxes, anchor_points, target_bboxes / stride_tensor,
                target_scores, target_scores_sum, fg_mask,
            )
        gains = torch.tensor([self.hyp["box"], self.hyp["cls"], self.hyp["dfl"]], device=device)
        loss = loss * gains
        return loss.sum() * bs, loss.detach()
