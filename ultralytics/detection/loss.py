"""The YOLOv8 detection loss: BCE on the classes, CIoU and Distribution Focal Loss on the boxes.

Total = (box·L_box + cls·L_cls + dfl·L_dfl) × batch size, each term summed over anchors and divided by the
same normaliser, max(sum of the assigned target scores, 1).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.distributed
import torch.nn as nn
import torch.nn.functional as F

from ultralytics.cfg import DEFAULT_CFG_DICT
from ultralytics.detection.anchors import feature_map_anchors, ltrb_to_xyxy, max_ltrb_distance, xyxy_to_ltrb
from ultralytics.detection.assigner import TaskAlignedAssigner
from ultralytics.detection.iou import aligned_iou
from ultralytics.utils.ops import xywh2xyxy

__all__ = ["DetectionLoss", "v8DetectionLoss", "Normaliser", "local_normaliser", "distributed_normaliser",
           "DEFAULT_GAINS", "gains_from_hyperparameters", "expected_distances", "decode_boxes",
           "distribution_focal_loss", "pad_by_image", "padded_targets"]

#: Maps the local sum of the target scores (a 0-d tensor) to the divisor of every loss term.
Normaliser = Callable[[torch.Tensor], torch.Tensor]

#: Loss gains of the training hyperparameters `box`, `cls` and `dfl`, as cfg/default.yaml sets them.
DEFAULT_GAINS: dict[str, float] = {k: float(DEFAULT_CFG_DICT[k]) for k in ("box", "cls", "dfl")}


def local_normaliser(total: torch.Tensor) -> torch.Tensor:
    """max(total, 1): the normaliser of a single process."""
    return total.clamp(min=1)


def distributed_normaliser(total: torch.Tensor) -> torch.Tensor:
    """max(Σ_ranks total, 1) / world size, for the training criterion of every DDP rank.

    Every rank must call it (it all-reduces over the default process group), so it belongs only to the
    criterion of the DDP-wrapped training model, never to one that rank 0 runs alone (EMA validation).
    With W ranks of b images, rank r computes L_r = b·U_r / (T/W), where U_r is its gain-weighted sum and
    T = max(ΣS, 1) the global normaliser; the trainer backpropagates W·L_r and DDP averages the gradients:
    (1/W)·Σ_r W·b·W·∇U_r / T = (W·b)·∇(Σ_r U_r) / T, the gradient of one process on the whole batch.
    Clamping the global sum before dividing by W keeps this exact when ΣS < W.
    """
    total = total.detach().clone()
    torch.distributed.all_reduce(total)
    return total.clamp(min=1) / torch.distributed.get_world_size()


def gains_from_hyperparameters(hyp: Any) -> dict[str, float]:
    """The `box`, `cls`, `dfl` gains of a namespace or mapping of hyperparameters; missing or None → default."""
    def read(name: str) -> Any:
        if hyp is None:
            return None
        return hyp.get(name) if isinstance(hyp, Mapping) else getattr(hyp, name, None)

    return {name: float(default if read(name) is None else read(name)) for name, default in DEFAULT_GAINS.items()}


def expected_distances(logits: torch.Tensor, reg_max: int) -> torch.Tensor:
    """(..., 4·reg_max) bin logits → (..., 4) distances: per side, the mean bin under the softmax."""
    if reg_max == 1:
        return logits
    bins = torch.arange(reg_max, dtype=logits.dtype, device=logits.device)
    probs = logits.unflatten(-1, (4, reg_max)).softmax(-1)
    return probs @ bins


def decode_boxes(logits: torch.Tensor, points: torch.Tensor, reg_max: int) -> torch.Tensor:
    """(B, A, 4·reg_max) box logits and (A, 2) anchor points → (B, A, 4) xyxy boxes, in the units of `points`."""
    return ltrb_to_xyxy(expected_distances(logits, reg_max), points)


def distribution_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DFL of bin logits (..., R) against real distances (...) → (...).

    The target, clamped to [0, max_ltrb_distance(R)], is split between its two neighbouring bins
    (t = 3.3 puts weight 0.7 on bin 3 and 0.3 on bin 4); the loss is the cross-entropy against that split.
    """
    target = target.clamp(0, max_ltrb_distance(logits.shape[-1]))
    lower = target.floor()
    upper_share = target - lower
    bins = lower.long().unsqueeze(-1) + torch.tensor([0, 1], device=target.device)  # (..., 2)
    log_probs = logits.log_softmax(-1).gather(-1, bins)
    return -(log_probs[..., 0] * (1 - upper_share) + log_probs[..., 1] * upper_share)


def pad_by_image(image_index: torch.Tensor, rows: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Group (N, D) rows by their image (N,) → zero-padded (B, M, D) and the (B, M) mask of real rows.

    M is the largest number of rows of one image; rows keep their order within an image.
    """
    counts = torch.bincount(image_index, minlength=batch_size)
    slots = int(counts.max()) if image_index.numel() else 0
    seen = F.one_hot(image_index, batch_size).cumsum(0)  # (N, B): rows of each image up to and including this one
    slot = seen.gather(1, image_index.unsqueeze(1)).squeeze(1) - 1
    padded = rows.new_zeros(batch_size, slots, rows.shape[-1])
    padded[image_index, slot] = rows
    mask = torch.arange(slots, device=rows.device) < counts.unsqueeze(1)
    return padded, mask


def padded_targets(
    batch: Mapping[str, torch.Tensor], batch_size: int, image_hw: tuple[float, float], device: torch.device | str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch's `batch_idx` (N,), `cls` (N, 1) and normalised xywh `bboxes` (N, 4) → labels (B, M, 1),
    xyxy pixel boxes (B, M, 4) for an image of `image_hw` (height, width), and the (B, M, 1) mask of real rows."""
    h, w = image_hw
    image_index = batch["batch_idx"].reshape(-1).to(device=device, dtype=torch.long)
    labels = batch["cls"].reshape(-1, 1).to(device=device, dtype=torch.float32)
    boxes = batch["bboxes"].reshape(-1, 4).to(device=device, dtype=torch.float32)
    boxes = xywh2xyxy(boxes * torch.tensor([w, h, w, h], device=device))
    padded, mask = pad_by_image(image_index, torch.cat((labels, boxes), 1), batch_size)
    return padded[..., :1], padded[..., 1:], mask.unsqueeze(-1)


def _is_eval_output(preds: Any) -> bool:
    """Whether `preds` is an eval-mode head output (decoded, raw maps) rather than the raw maps alone."""
    return isinstance(preds, (tuple, list)) and len(preds) == 2 and isinstance(preds[1], (tuple, list))


class DetectionLoss:
    """YOLOv8 detection loss for a head with `nc` classes, `reg_max` DFL bins per side and the given level strides.

    `box`, `cls`, `dfl` are the gains of the three terms; `topk` the assigner's candidates per gt;
    `normaliser` maps the local sum of target scores to the divisor of the terms (`local_normaliser`,
    or `distributed_normaliser` for the training criterion of DDP ranks). Build one for a DetectionModel with
    `DetectionLoss.from_model`.
    """

    def __init__(
        self, nc: int, reg_max: int, strides: Sequence[float] | torch.Tensor, *, box: float = DEFAULT_GAINS["box"],
        cls: float = DEFAULT_GAINS["cls"], dfl: float = DEFAULT_GAINS["dfl"], topk: int = 10,
        normaliser: Normaliser = local_normaliser,
    ) -> None:
        self.nc = int(nc)
        self.reg_max = int(reg_max)
        self.strides = tuple(float(s) for s in strides)
        self.gains = (float(box), float(cls), float(dfl))
        self.normaliser = normaliser
        self.assigner = TaskAlignedAssigner(topk=topk, num_classes=self.nc)

    @classmethod
    def from_model(cls, model: nn.Module, topk: int = 10, normaliser: Normaliser = local_normaliser) -> DetectionLoss:
        """The loss of a DetectionModel: head geometry from its last layer, gains from `model.args` (if any)."""
        head = model.model[-1]
        gains = gains_from_hyperparameters(getattr(model, "args", None))
        return cls(head.nc, head.reg_max, head.stride, **gains, topk=topk, normaliser=normaliser)

    @property
    def channels(self) -> int:
        """Channels of every raw head map: 4·reg_max box logits, then nc class logits."""
        return 4 * self.reg_max + self.nc

    def __call__(self, preds: Any, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """preds: the per-level raw maps (B, channels, H, W), or an eval-mode (decoded, maps) pair; batch holds
        `batch_idx` (N,), `cls` (N, 1) and normalised xywh `bboxes` (N, 4).

        Returns (total × batch size, detached gain-weighted [box, cls, dfl]); computed in fp32, outside autocast.
        """
        maps = preds[1] if _is_eval_output(preds) else preds
        device = maps[0].device
        autocast_off = (torch.autocast(device.type, enabled=False) if device.type in ("cpu", "cuda")
                        else contextlib.nullcontext())
        with autocast_off:
            return self._compute([m.float() for m in maps], batch)

    def _compute(
        self, maps: list[torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if len(maps) != len(self.strides) or any(m.shape[1] != self.channels for m in maps):
            raise ValueError(f"expected {len(self.strides)} maps of {self.channels} channels, got "
                             f"{[tuple(m.shape) for m in maps]}")
        b = maps[0].shape[0]
        flat = torch.cat([m.flatten(2) for m in maps], 2).transpose(1, 2)  # (B, A, channels)
        box_logits, cls_logits = flat.split((4 * self.reg_max, self.nc), -1)
        points, strides = feature_map_anchors(maps, self.strides)  # in cells of each level
        image_hw = (maps[0].shape[2] * self.strides[0], maps[0].shape[3] * self.strides[0])
        gt_labels, gt_boxes, gt_mask = padded_targets(batch, b, image_hw, flat.device)

        pred_boxes = decode_boxes(box_logits, points, self.reg_max)  # xyxy, cells
        target = self.assigner(cls_logits.detach().sigmoid(), pred_boxes.detach() * strides, points * strides,
                               gt_labels, gt_boxes, gt_mask)
        divisor = self.normaliser(target.scores.sum())

        cls_loss = F.binary_cross_entropy_with_logits(cls_logits, target.scores, reduction="sum") / divisor
        box_loss = dfl_loss = cls_loss.new_zeros(())
        fg = target.fg_mask
        if fg.any():
            weight = target.scores.sum(-1)[fg]  # (n_fg,)
            target_boxes = (target.boxes / strides)[fg]
            ciou = aligned_iou(pred_boxes[fg], target_boxes, kind="ciou")
            box_loss = ((1 - ciou) * weight).sum() / divisor
            if self.reg_max > 1:
                ltrb = xyxy_to_ltrb(target_boxes, points.expand(b, -1, -1)[fg])
                side_losses = distribution_focal_loss(box_logits[fg].unflatten(-1, (4, self.reg_max)), ltrb)
                dfl_loss = (side_losses.mean(-1) * weight).sum() / divisor
        items = torch.stack((box_loss, cls_loss, dfl_loss)) * torch.tensor(self.gains, device=flat.device)
        return items.sum() * b, items.detach()


v8DetectionLoss = DetectionLoss  # the published class name, for code that refers to it
