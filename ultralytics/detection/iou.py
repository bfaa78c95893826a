"""Box overlap measures: elementwise IoU / GIoU / DIoU / CIoU and pairwise IoU."""

from __future__ import annotations

import math

import torch
import torchvision


def bbox_iou(
    box1: torch.Tensor,
    box2: torch.Tensor,
    xywh: bool = True,
    GIoU: bool = False,
    DIoU: bool = False,
    CIoU: bool = False,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Elementwise IoU (or GIoU / DIoU / CIoU) of two broadcastable box tensors (..., 4).

    Boxes are (cx, cy, w, h) when `xywh` else (x1, y1, x2, y2). The result keeps a trailing
    dimension of size 1: shape broadcast(box1, box2)[:-1] + (1,). As in YOLOv8, `eps` is added to
    the heights (avoids 0/0 in the aspect term) and to the union.
    CIoU = IoU − ρ²/c² − α·v with v = 4/π²·(atan(w2/h2) − atan(w1/h1))² and
    α = v / (v − IoU + 1 + eps), α taken without gradient.
    """
    if xywh:
        (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.chunk(4, -1), box2.chunk(4, -1)
        b1_x1, b1_x2, b1_y1, b1_y2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
        b2_x1, b2_x2, b2_y1, b2_y2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
        h1, h2 = h1 + eps, h2 + eps
    else:
        b1_x1, b1_y1, b1_x2, b1_y2 = box1.chunk(4, -1)
        b2_x1, b2_y1, b2_x2, b2_y2 = box2.chunk(4, -1)
        w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
        w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps

    inter_w = (torch.minimum(b1_x2, b2_x2) - torch.maximum(b1_x1, b2_x1)).clamp(min=0)
    inter_h = (torch.minimum(b1_y2, b2_y2) - torch.maximum(b1_y1, b2_y1)).clamp(min=0)
    inter = inter_w * inter_h
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if not (GIoU or DIoU or CIoU):
        return iou

    cw = torch.maximum(b1_x2, b2_x2) - torch.minimum(b1_x1, b2_x1)  # enclosing box width
    ch = torch.maximum(b1_y2, b2_y2) - torch.minimum(b1_y1, b2_y1)  # and height
    if GIoU and not (DIoU or CIoU):
        c_area = cw * ch + eps
        return iou - (c_area - union) / c_area

    c2 = cw.pow(2) + ch.pow(2) + eps  # squared diagonal of the enclosing box
    rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2).pow(2) + (b2_y1 + b2_y2 - b1_y1 - b1_y2).pow(2)) / 4
    if CIoU:
        v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
        with torch.no_grad():
            alpha = v / (v - iou + (1 + eps))
        return iou - (rho2 / c2 + v * alpha)
    return iou - rho2 / c2


def box_iou(box1: torch.Tensor, box2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes: (N, 4) × (M, 4) → (N, M) (torchvision.ops.box_iou)."""
    return torchvision.ops.box_iou(box1, box2)
