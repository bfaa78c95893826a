"""Anchors, distance ↔ box conversions and the task-aligned assigner on tiny hand-made cases."""

from __future__ import annotations

import pytest
import torch

from ultralytics.detection.anchors import feature_map_anchors, ltrb_to_xywh, ltrb_to_xyxy, xyxy_to_ltrb
from ultralytics.detection.assigner import TaskAlignedAssigner


def test_make_anchors_two_levels():
    feats = [torch.zeros(1, 5, 2, 3), torch.zeros(1, 5, 1, 2)]  # (H, W) = (2, 3) at stride 8, (1, 2) at stride 16
    points, strides = feature_map_anchors(feats, [8, 16])
    expected = [[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [0.5, 1.5], [1.5, 1.5], [2.5, 1.5],  # level 0, row-major
                [0.5, 0.5], [1.5, 0.5]]  # level 1
    assert points.tolist() == expected
    assert strides.shape == (8, 1)
    assert strides[:, 0].tolist() == [8] * 6 + [16] * 2
    assert points.dtype == feats[0].dtype


def test_dist2bbox_and_back():
    anchor = torch.tensor([[2.5, 3.5]])
    dist = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # left, top, right, bottom
    # xyxy: (2.5 − 1, 3.5 − 2, 2.5 + 3, 3.5 + 4) = (1.5, 1.5, 5.5, 7.5); xywh: centre (3.5, 4.5), size (4, 6)
    assert ltrb_to_xyxy(dist, anchor).tolist() == [[1.5, 1.5, 5.5, 7.5]]
    assert ltrb_to_xywh(dist, anchor).tolist() == [[3.5, 4.5, 4.0, 6.0]]
    assert xyxy_to_ltrb(torch.tensor([[1.5, 1.5, 5.5, 7.5]]), anchor, reg_max=16).tolist() == [[1.0, 2.0, 3.0, 4.0]]


def test_dist2bbox_dim_argument():
    anchor = torch.tensor([[2.5], [3.5]])  # (2, A=1) layout, coordinates along dim 0
    dist = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    assert ltrb_to_xyxy(dist, anchor, dim=0)[:, 0].tolist() == [1.5, 1.5, 5.5, 7.5]


def test_bbox2dist_clamps():
    anchor = torch.tensor([[5.0, 5.0]])
    box = torch.tensor([[-10.0, 6.0, 6.5, 20.0]])  # left 15, top −1, right 1.5, bottom 15
    out = xyxy_to_ltrb(box, anchor, reg_max=4)  # clamp to [0, 4 − 1 − 0.01] = [0, 2.99]
    assert out[0].tolist() == pytest.approx([2.99, 0.0, 1.5, 2.99])


# ---------------------------------------------------------------- assigner
def _grid4():
    """4×4 grid of anchor centres at stride 1: index = 4·y + x, centre (x + .5, y + .5)."""
    return feature_map_anchors([torch.zeros(1, 1, 4, 4)], [1])[0]


def _one_gt_case():
    anc = _grid4()
    gt = torch.tensor([[[0.0, 0.0, 2.0, 2.0]]])  # contains the centres of anchors 0, 1, 4, 5
    pd = torch.tensor([0.5, 0.5, 1.5, 1.5]).repeat(1, 16, 1)  # IoU with gt = 1/4 (same centre and aspect → CIoU = IoU)
    pd[0, 5] = torch.tensor([0.0, 0.0, 2.0, 2.0])  # anchor 5 predicts the gt exactly: IoU 1
    scores = torch.full((1, 16, 2), 0.5)
    scores[0, [0, 1, 4, 5], 0] = torch.tensor([0.9, 0.4, 0.6, 0.1])
    scores[0, [2, 8, 15], 0] = 0.99  # high scores outside the gt never count
    return scores, pd, anc, torch.tensor([[[0.0]]]), gt, torch.ones(1, 1, 1)


def test_assigner_topk_and_normalisation():
    scores, pd, anc, labels, gt, mask = _one_gt_case()
    # align = s^0.5 · IoU^6: anchor 5: √.1 · 1 = 0.3162; anchor 0: √.9 · .25^6; 4: √.6 · .25^6; 1: √.4 · .25^6
    tl, tb, ts, fg, idx = TaskAlignedAssigner(topk=2, num_classes=2)(scores, pd, anc, labels, gt, mask)
    assert fg[0].nonzero().flatten().tolist() == [0, 5]
    # normalised: align · maxIoU / maxAlign = align / √.1 → anchor 5: 1; anchor 0: √(.9/.1) · .25^6 = 3/4096
    assert ts[0, 5].tolist() == pytest.approx([1.0, 0.0], rel=1e-4)
    assert ts[0, 0, 0].item() == pytest.approx(3 / 4096, rel=1e-4)
    assert ts[0, 0, 1].item() == 0.0
    assert ts[0][~fg[0]].abs().sum() == 0
    assert tl[0, [0, 5]].tolist() == [0, 0] and tl[0, 3].item() == 2  # background label = num_classes
    assert tb[0, 5].tolist() == [0.0, 0.0, 2.0, 2.0] and tb[0, 3].tolist() == [0.0] * 4
    assert idx[0, [0, 5]].tolist() == [0, 0]


def test_assigner_topk_larger_than_candidates():
    scores, pd, anc, labels, gt, mask = _one_gt_case()
    _, _, ts, fg, _ = TaskAlignedAssigner(topk=10, num_classes=2)(scores, pd, anc, labels, gt, mask)
    assert fg[0].nonzero().flatten().tolist() == [0, 1, 4, 5]  # only the 4 candidates, never outside anchors
    # anchor 1: √(.4/.1)·.25^6 = 2/4096; anchor 4: √6 · .25^6 = 2.4494897/4096
    assert ts[0, 1, 0].item() == pytest.approx(2 / 4096, rel=1e-4)
    assert ts[0, 4, 0].item() == pytest.approx(6**0.5 / 4096, rel=1e-4)


def test_assigner_all_low_iou_normalises_by_max_iou():
    scores, pd, anc, labels, gt, mask = _one_gt_case()
    pd[0, 5] = torch.tensor([0.5, 0.5, 1.5, 1.5])  # now every prediction has IoU 1/4
    _, _, ts, fg, _ = TaskAlignedAssigner(topk=2, num_classes=2)(scores, pd, anc, labels, gt, mask)
    # top-2 by √s: anchors 0 (.9) and 4 (.6); target = .25 · √(s / .9) → 0.25 and 0.25·√(2/3) = 0.2041241
    assert fg[0].nonzero().flatten().tolist() == [0, 4]
    assert ts[0, 0, 0].item() == pytest.approx(0.25, rel=1e-4)
    assert ts[0, 4, 0].item() == pytest.approx(0.2041241, rel=1e-4)


def test_assigner_candidates_strictly_inside():
    scores, pd, anc, labels, _, mask = _one_gt_case()
    gt = torch.tensor([[[0.5, 0.5, 2.0, 2.0]]])  # anchor 0's centre (.5, .5) lies on the border → not a candidate
    _, _, _, fg, _ = TaskAlignedAssigner(topk=10, num_classes=2)(scores, pd, anc, labels, gt, mask)
    assert fg[0].nonzero().flatten().tolist() == [5]


def _two_gt_case(winner_box):
    anc = _grid4()
    gt = torch.tensor([[[0.0, 0.0, 3.0, 3.0], [1.0, 1.0, 4.0, 4.0]]])  # A (class 0), B (class 1); both contain anchor 5
    pd = torch.tensor([10.0, 10.0, 11.0, 11.0]).repeat(1, 16, 1)  # far away: CIoU < 0 → clamped to 0 → align 0
    pd[0, 5] = torch.tensor(winner_box)
    scores = torch.full((1, 16, 2), 0.5)
    return scores, pd, anc, torch.tensor([[[0.0], [1.0]]]), gt, torch.ones(1, 2, 1)


def test_assigner_conflict_resolved_by_iou():
    # anchor 5 predicts A exactly: IoU(A) = 1; IoU(B) = 4/14, CIoU(B) = 2/7 − ρ²/c² = 0.2857 − 2/32 > 0
    # with topk = 1 both gts pick anchor 5 (their only positive alignment); A wins on IoU
    tl, tb, ts, fg, idx = TaskAlignedAssigner(topk=1, num_classes=2)(*_two_gt_case([0.0, 0.0, 3.0, 3.0]))
    assert fg[0].nonzero().flatten().tolist() == [5]
    assert idx[0, 5].item() == 0 and tl[0, 5].item() == 0
    assert tb[0, 5].tolist() == [0.0, 0.0, 3.0, 3.0]
    assert ts[0, 5].tolist() == pytest.approx([1.0, 0.0], rel=1e-4)
    # predicting B instead: B wins
    tl, tb, ts, fg, idx = TaskAlignedAssigner(topk=1, num_classes=2)(*_two_gt_case([1.0, 1.0, 4.0, 4.0]))
    assert fg[0].nonzero().flatten().tolist() == [5]
    assert idx[0, 5].item() == 1 and tl[0, 5].item() == 1
    assert ts[0, 5].tolist() == pytest.approx([0.0, 1.0], rel=1e-4)


def test_assigner_image_without_gt_and_padding_rows():
    scores, pd, anc, labels, gt, mask = _one_gt_case()
    # image 1: a padding row holding a box and a label that must be ignored (mask 0)
    scores2, pd2 = torch.cat((scores, scores)), torch.cat((pd, pd))
    labels2 = torch.tensor([[[0.0]], [[1.0]]])
    gt2 = torch.cat((gt, torch.tensor([[[0.0, 0.0, 4.0, 4.0]]])))
    mask2 = torch.tensor([[[1.0]], [[0.0]]])
    tl, tb, ts, fg, idx = TaskAlignedAssigner(topk=2, num_classes=2)(scores2, pd2, anc, labels2, gt2, mask2)
    assert fg[0].nonzero().flatten().tolist() == [0, 5]
    assert not fg[1].any() and ts[1].abs().sum() == 0 and (tl[1] == 2).all()


def test_assigner_batch_without_any_gt():
    scores, pd, anc, *_ = _one_gt_case()
    b = 2
    tl, tb, ts, fg, idx = TaskAlignedAssigner(topk=10, num_classes=2)(
        scores.repeat(b, 1, 1), pd.repeat(b, 1, 1), anc, torch.zeros(b, 0, 1), torch.zeros(b, 0, 4), torch.zeros(b, 0, 1)
    )
    assert tl.shape == (b, 16) and (tl == 2).all()
    assert tb.shape == (b, 16, 4) and ts.shape == (b, 16, 2) and ts.abs().sum() == 0
    assert fg.shape == (b, 16) and fg.dtype == torch.bool and not fg.any()
    assert idx.shape == (b, 16) and (idx == 0).all()


def test_assigner_batched_equals_per_image_loop():
    g = torch.Generator().manual_seed(0)
    anc, stride = feature_map_anchors([torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4)], [8, 16])
    anc_px = anc * stride  # pixel centres in a 64×64 image
    na, nc, counts = anc.shape[0], 4, [3, 0, 5]
    b, m = len(counts), max(counts)
    scores = torch.rand(b, na, nc, generator=g)
    wh = 10 + 30 * torch.rand(b, na, 2, generator=g)
    pd = torch.cat((anc_px - wh / 2, anc_px + wh / 2), -1)
    gt_b, gt_l, mask = torch.zeros(b, m, 4), torch.zeros(b, m, 1), torch.zeros(b, m, 1)
    for i, n in enumerate(counts):
        xy = 8 + 30 * torch.rand(n, 2, generator=g)
        size = 16 + 24 * torch.rand(n, 2, generator=g)
        gt_b[i, :n] = torch.cat((xy, xy + size), -1)
        gt_l[i, :n, 0] = torch.randint(0, nc, (n,), generator=g).float()
        mask[i, :n] = 1
    assigner = TaskAlignedAssigner(topk=5, num_classes=nc)
    batched = assigner(scores, pd, anc_px, gt_l, gt_b, mask)
    assert batched[3].any()
    for i, n in enumerate(counts):
        single = assigner(scores[i : i + 1], pd[i : i + 1], anc_px, gt_l[i : i + 1, :n], gt_b[i : i + 1, :n], mask[i : i + 1, :n])
        for x, y in zip(batched, single):
            assert torch.allclose(x[i : i + 1].float(), y.float(), atol=1e-6)
