"""Box overlap measures: IoU, GIoU, DIoU and CIoU of paired (broadcast) boxes, and pairwise IoU."""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torchvision

__all__ = ["aligned_iou", "box_iou", "bbox_iou"]

OverlapKind = Literal["iou", "giou", "diou", "ciou"]
BoxFormat = Literal["xyxy", "xywh"]


class _Sides(NamedTuple):
    """Box sides and sizes, each of shape (...,); `h` already carries the stabilising eps."""

    x1: torch.Tensor
    y1: torch.Tensor
    x2: torch.Tensor
    y2: torch.Tensor
    w: torch.Tensor
    h: torch.Tensor


def _sides(boxes: torch.Tensor, fmt: BoxFormat, eps: float) -> _Sides:
    """Split (..., 4) boxes into sides; eps on the height keeps the aspect ratio w/h finite."""
    a, b, c, d = boxes.unbind(-1)
    if fmt == "xywh":
        return _Sides(a - c / 2, b - d / 2, a + c / 2, b + d / 2, c, d + eps)
    if fmt == "xyxy":
        return _Sides(a, b, c, d, c - a, d - b + eps)
    raise ValueError(f"box format must be 'xyxy' or 'xywh', got {fmt!r}")


def _intersection(p: _Sides, q: _Sides) -> torch.Tensor:
    width = (torch.minimum(p.x2, q.x2) - torch.maximum(p.x1, q.x1)).clamp(min=0)
    height = (torch.minimum(p.y2, q.y2) - torch.maximum(p.y1, q.y1)).clamp(min=0)
    return width * height


def _enclosing_size(p: _Sides, q: _Sides) -> tuple[torch.Tensor, torch.Tensor]:
    """Width and height of the smallest box holding both."""
    return torch.maximum(p.x2, q.x2) - torch.minimum(p.x1, q.x1), torch.maximum(p.y2, q.y2) - torch.minimum(p.y1, q.y1)


def _centre_distance_sq(p: _Sides, q: _Sides) -> torch.Tensor:
    dx = (q.x1 + q.x2 - p.x1 - p.x2) / 2
    dy = (q.y1 + q.y2 - p.y1 - p.y2) / 2
    return dx.square() + dy.square()


def _aspect_mismatch(p: _Sides, q: _Sides) -> torch.Tensor:
    """CIoU's v = 4/π² · (atan(w_q/h_q) − atan(w_p/h_p))²."""
    return (torch.atan(q.w / q.h) - torch.atan(p.w / p.h)).square() * (4 / math.pi**2)


def aligned_iou(
    boxes1: torch.Tensor, boxes2: torch.Tensor, kind: OverlapKind = "iou", fmt: BoxFormat = "xyxy", eps: float = 1e-7
) -> torch.Tensor:
    """Overlap of boxes1[i] with boxes2[i] for broadcastable (..., 4) tensors → broadcast shape without the 4.

    kind: "iou"; "giou" = IoU − (C − U)/C with C the enclosing area; "diou" = IoU − ρ²/c² with ρ the
    centre distance and c the enclosing diagonal; "ciou" = DIoU − α·v with v the aspect mismatch and
    α = v / (v − IoU + 1 + eps) taken as a constant (no gradient). `eps` is added to box heights, the
    union, the enclosing area and c².
    """
    p, q = _sides(boxes1, fmt, eps), _sides(boxes2, fmt, eps)
    inter = _intersection(p, q)
    union = p.w * p.h + q.w * q.h - inter + eps
    iou = inter / union
    if kind == "iou":
        return iou
    enclosing_w, enclosing_h = _enclosing_size(p, q)
    if kind == "giou":
        enclosing_area = enclosing_w * enclosing_h + eps
        return iou - (enclosing_area - union) / enclosing_area
    if kind not in ("diou", "ciou"):
        raise ValueError(f"kind must be one of 'iou', 'giou', 'diou', 'ciou', got {kind!r}")
    diou = iou - _centre_distance_sq(p, q) / (enclosing_w.square() + enclosing_h.square() + eps)
    if kind == "diou":
        return diou
    v = _aspect_mismatch(p, q)
    with torch.no_grad():
        trade_off = v / (v - iou + (1 + eps))
    return diou - trade_off * v


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes: (N, 4) × (M, 4) → (N, M)."""
    return torchvision.ops.box_iou(boxes1, boxes2)


def bbox_iou(
    box1: torch.Tensor, box2: torch.Tensor, xywh: bool = True, GIoU: bool = False, DIoU: bool = False,  # noqa: N803
    CIoU: bool = False, eps: float = 1e-7,  # noqa: N803
) -> torch.Tensor:
    """Flag-style front end of `aligned_iou` (the published call signature): result keeps a trailing 1.

    CIoU takes precedence over DIoU, DIoU over GIoU.
    """
    kind: OverlapKind = "ciou" if CIoU else "diou" if DIoU else "giou" if GIoU else "iou"
    return aligned_iou(box1, box2, kind, "xywh" if xywh else "xyxy", eps).unsqueeze(-1)
