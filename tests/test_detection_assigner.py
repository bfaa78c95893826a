"""The task-aligned assigner's steps (ultralytics.detection.assigner) on hand-made cases."""

from __future__ import annotations

import pytest
import torch

from ultralytics.detection.anchors import feature_map_anchors
from ultralytics.detection.assigner import (Assignment, TaskAlignedAssigner, alignment_scores, centres_inside,
                                            one_gt_per_anchor, soft_targets, top_candidates)


def test_defaults_are_the_spec_values():
    a = TaskAlignedAssigner()
    assert (a.topk, a.alpha, a.beta) == (10, 0.5, 6.0)


def test_centres_inside_is_strict():
    points = torch.tensor([[1.0, 1.0], [0.0, 0.0], [2.0, 1.0], [1.0, 1.9], [3.0, 1.0]])
    box = torch.tensor([[[0.0, 0.0, 2.0, 2.0]]])
    assert centres_inside(points, box, 1e-9).tolist() == [[[True, False, False, True, False]]]  # borders excluded
    assert centres_inside(points, box, 0.2).tolist() == [[[True, False, False, False, False]]]  # 0.1 from the bottom


def test_alignment_scores_by_hand():
    gt = torch.tensor([[[0.0, 0.0, 4.0, 4.0]]])
    pred = torch.tensor([[[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 4.0, 4.0]]])
    scores = torch.tensor([[[0.1, 0.25], [0.0, 0.64], [1.0, 1.0]]])
    candidates = torch.tensor([[[True, True, False]]])
    align, iou = alignment_scores(scores, pred, torch.tensor([[1]]), gt, candidates, alpha=0.5, beta=6.0)
    # anchor 0: exact box → IoU 1, score of class 1 = 0.25 → √0.25 · 1 = 0.5
    # anchor 1: nested, same centre and aspect → CIoU = IoU = 4/16; √0.64 · 0.25⁶ = 0.8 / 4096
    # anchor 2: not a candidate → 0 although it matches
    assert iou[0, 0].tolist() == pytest.approx([1.0, 0.25, 0.0], abs=1e-6)
    assert align[0, 0].tolist() == pytest.approx([0.5, 0.8 / 4096, 0.0], rel=1e-5)


def test_top_candidates_keeps_k_best_and_only_candidates():
    align = torch.tensor([[[0.3, 0.0, 0.9, 0.5]]])
    candidates = torch.tensor([[[True, True, True, False]]])  # anchor 3 aligns better than 0 but is no candidate
    assert top_candidates(align, candidates, 2).tolist() == [[[True, False, True, False]]]
    assert top_candidates(align, candidates, 10).tolist() == [[[True, True, True, False]]]


def test_one_gt_per_anchor_prefers_higher_iou():
    positive = torch.tensor([[[True, True, False, True], [False, True, True, True]]])  # anchors 1, 3 contested
    iou = torch.tensor([[[0.9, 0.4, 0.0, 0.5], [0.0, 0.6, 0.7, 0.5]]])
    kept = one_gt_per_anchor(positive, iou)
    # anchor 1 → gt 1 (0.6 > 0.4); anchor 3: tie → the first gt
    assert kept.tolist() == [[[True, False, False, True], [False, True, True, False]]]


def test_soft_targets_by_hand():
    positive = torch.tensor([[[True, True, False], [False, False, True]]])
    align = torch.tensor([[[0.2, 0.1, 0.7], [0.9, 0.0, 0.05]]])  # off-positive values must not count
    iou = torch.tensor([[[0.5, 0.8, 0.9], [0.9, 0.0, 0.3]]])
    # gt 0: best IoU 0.8, best align 0.2 → 0.2·0.8/0.2 = 0.8, 0.1·0.8/0.2 = 0.4; gt 1: 0.05·0.3/0.05 = 0.3
    assert soft_targets(align, iou, positive, 1e-9)[0].tolist() == pytest.approx([0.8, 0.4, 0.3], rel=1e-6)


def _conflict_case():
    """4×4 grid at stride 1; gts A = [0,0,3,3] (class 0) and B = [1,1,4,4] (class 1) both contain anchor 5 (1.5, 1.5).

    Anchor 5 predicts [0.8, 0.8, 3.8, 3.8]:
      with A: IoU = 2.2² / (18 − 4.84) = 0.3677812; ρ² = 2·0.8² = 1.28, c² = 2·3.8² = 28.88 → CIoU 0.3234598
      with B: IoU = 2.8² / (18 − 7.84) = 0.7716535; ρ² = 2·0.2² = 0.08, c² = 2·3.2² = 20.48 → CIoU 0.7677473
    (equal aspect ratios, so v = 0). The score favours A: align A = √0.99 · 0.3234598⁶ = 1.13e-3,
    align B = √1e-5 · 0.7677473⁶ = 6.5e-4. Every other anchor predicts a far box (CIoU < 0 → 0).
    """
    points = feature_map_anchors([torch.zeros(1, 1, 4, 4)], [1])[0]
    gt = torch.tensor([[[0.0, 0.0, 3.0, 3.0], [1.0, 1.0, 4.0, 4.0]]])
    pred = torch.tensor([20.0, 20.0, 21.0, 21.0]).repeat(1, 16, 1)
    pred[0, 5] = torch.tensor([0.8, 0.8, 3.8, 3.8])
    scores = torch.full((1, 16, 2), 0.5)
    scores[0, 5] = torch.tensor([0.99, 1e-5])
    return scores, pred, points, torch.tensor([[[0.0], [1.0]]]), gt, torch.ones(1, 2, 1)


def test_conflict_goes_to_the_higher_iou_gt_not_the_higher_alignment():
    scores, pred, points, labels, gt, mask = _conflict_case()
    align, iou = alignment_scores(scores, pred, labels[..., 0].long(), gt, centres_inside(points, gt, 1e-9), 0.5, 6.0)
    assert iou[0, :, 5].tolist() == pytest.approx([0.3234598, 0.7677473], abs=1e-6)
    assert align[0, 0, 5] > align[0, 1, 5]  # A is better aligned…
    out = TaskAlignedAssigner(topk=1, num_classes=2)(scores, pred, points, labels, gt, mask)
    assert isinstance(out, Assignment)
    assert out.fg_mask[0].nonzero().flatten().tolist() == [5]
    assert out.gt_index[0, 5].item() == 1 and out.labels[0, 5].item() == 1  # …but B overlaps more and wins
    assert out.boxes[0, 5].tolist() == [1.0, 1.0, 4.0, 4.0]
    # B's only positive: its target is its best IoU, on class 1 (up to eps/align ≈ 1.5e-6 relative)
    assert out.scores[0, 5].tolist() == pytest.approx([0.0, 0.7677473], rel=1e-5)
    assert (out.labels[0, torch.arange(16) != 5] == 2).all() and out.scores[0].sum() == out.scores[0, 5].sum()


def test_padding_slots_never_assign():
    scores, pred, points, labels, gt, _ = _conflict_case()
    out = TaskAlignedAssigner(topk=1, num_classes=2)(scores, pred, points, labels, gt, torch.tensor([[[1.0], [0.0]]]))
    assert out.fg_mask[0].nonzero().flatten().tolist() == [5] and out.gt_index[0, 5].item() == 0  # A alone now
    assert out.scores[0, 5].tolist() == pytest.approx([0.3234598, 0.0], rel=1e-5)
