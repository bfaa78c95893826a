"""aligned_iou (IoU / GIoU / DIoU / CIoU) and box_iou of ultralytics.detection.iou against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from ultralytics.detection.iou import aligned_iou, box_iou

# a = [0, 0, 2, 2], b = [1, 1, 4, 3]: intersection [1, 1, 2, 2] = 1; areas 4 and 6 → union 9 → IoU 1/9.
# Enclosing box [0, 0, 4, 3]: area 12, diagonal² c² = 16 + 9 = 25.
# Centres (1, 1) and (2.5, 2): ρ² = 2.25 + 1 = 3.25.
A = [0.0, 0.0, 2.0, 2.0]
B = [1.0, 1.0, 4.0, 3.0]
IOU = 1 / 9
GIOU = 1 / 9 - (12 - 9) / 12  # −0.1388889
DIOU = 1 / 9 - 3.25 / 25  # −0.0188889
# v = 4/π² · (atan(3/2) − atan(2/2))² = 0.4052847 · (0.9827937 − 0.7853982)² = 0.0157919
# α = v / (v − IoU + 1) = 0.0157919 / 0.9046808 = 0.0174558; CIoU = DIoU − α·v = −0.0188889 − 0.0002757
CIOU = -0.0191645


def _overlap(kind: str, fmt: str = "xyxy", a=A, b=B) -> float:
    return aligned_iou(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64), kind, fmt).item()


@pytest.mark.parametrize("kind, expected", [("iou", IOU), ("giou", GIOU), ("diou", DIOU), ("ciou", CIOU)])
def test_two_boxes_by_hand(kind, expected):
    assert _overlap(kind) == pytest.approx(expected, abs=1e-6)
    assert _overlap(kind, a=B, b=A) == pytest.approx(expected, abs=1e-6)  # symmetric


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_xywh_format_gives_the_same_values(kind):
    a_xywh, b_xywh = [1.0, 1.0, 2.0, 2.0], [2.5, 2.0, 3.0, 2.0]
    assert _overlap(kind, "xywh", a_xywh, b_xywh) == pytest.approx(_overlap(kind), abs=1e-9)


def test_broadcast_shape():
    a = torch.tensor([A, B, [0.0, 0.0, 1.0, 1.0]]).unsqueeze(1)  # (3, 1, 4)
    b = torch.tensor([A, B]).unsqueeze(0)  # (1, 2, 4)
    out = aligned_iou(a, b)
    assert out.shape == (3, 2)
    assert out[0].tolist() == pytest.approx([1.0, IOU], abs=1e-6)
    assert out[2].tolist() == pytest.approx([0.25, 0.0], abs=1e-6)


def test_pairwise_box_iou_matches_aligned_iou_on_all_pairs():
    g = torch.Generator().manual_seed(0)
    xy = 10 * torch.rand(2, 6, 2, generator=g)
    boxes = torch.cat((xy, xy + 1 + 5 * torch.rand(2, 6, 2, generator=g)), -1)
    pairwise = box_iou(boxes[0], boxes[1])
    assert pairwise.shape == (6, 6)
    assert torch.allclose(pairwise, aligned_iou(boxes[0, :, None], boxes[1, None], eps=0.0), atol=1e-6)


def test_ciou_gradient_treats_alpha_as_constant():
    a = torch.tensor(A, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(B, dtype=torch.float64)
    aligned_iou(a, b, "ciou").backward()
    # d CIoU = d DIoU − α · dv with α the number above, held fixed
    a2 = a.detach().clone().requires_grad_()
    aspect_a, aspect_b = (a2[2] - a2[0]) / (a2[3] - a2[1]), (b[2] - b[0]) / (b[3] - b[1])
    v = 4 / math.pi**2 * (torch.atan(aspect_b) - torch.atan(aspect_a)) ** 2
    alpha = v.item() / (v.item() - IOU + 1)
    (aligned_iou(a2, b, "diou") - alpha * v).backward()
    assert torch.allclose(a.grad, a2.grad, atol=1e-6)
    assert a.grad.abs().sum() > 0


def test_unknown_kind_or_format_raises():
    with pytest.raises(ValueError, match="kind"):
        aligned_iou(torch.tensor(A), torch.tensor(B), "eiou")
    with pytest.raises(ValueError, match="format"):
        aligned_iou(torch.tensor(A), torch.tensor(B), fmt="cxcywh")
