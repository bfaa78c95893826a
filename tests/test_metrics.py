"""IoU variants, AP integration, prediction matching and detection metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ultralytics.evaluation.ap import box_filter, class_statistics, precision_envelope
from ultralytics.evaluation.metrics import ConfusionMatrix, DetMetrics, Metric, compute_ap, match_predictions
from ultralytics.detection.iou import bbox_iou, box_iou

IOUV = torch.linspace(0.5, 0.95, 10)


def _iou(a, b, **kw):
    return bbox_iou(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64), xywh=False, **kw).item()


# ---------------------------------------------------------------- bbox_iou
def test_identical_boxes_all_variants_are_one():
    box = [1.0, 2.0, 5.0, 4.0]
    for kw in ({}, {"GIoU": True}, {"DIoU": True}, {"CIoU": True}):
        assert _iou(box, box, **kw) == pytest.approx(1.0, abs=1e-6)


def test_disjoint_boxes():
    a, b = [0, 0, 1, 1], [2, 0, 3, 1]
    # inter 0 → IoU 0; union 2, enclosing [0,0,3,1] area 3 → GIoU = 0 − (3 − 2)/3 = −1/3
    # centres (0.5, 0.5), (2.5, 0.5): ρ² = 4; enclosing diagonal² = 9 + 1 = 10 → DIoU = −0.4
    # same aspect ratio → v = 0 → CIoU = DIoU
    assert _iou(a, b) == pytest.approx(0.0, abs=1e-9)
    assert _iou(a, b, GIoU=True) == pytest.approx(-1 / 3, abs=1e-6)
    assert _iou(a, b, DIoU=True) == pytest.approx(-0.4, abs=1e-6)
    assert _iou(a, b, CIoU=True) == pytest.approx(-0.4, abs=1e-6)


def test_nested_boxes():
    a, b = [0, 0, 4, 4], [1, 1, 3, 3]
    # inter 4, union 16 → 0.25; enclosing = a = union → GIoU 0.25; same centre → DIoU 0.25; same aspect → CIoU 0.25
    for kw in ({}, {"GIoU": True}, {"DIoU": True}, {"CIoU": True}):
        assert _iou(a, b, **kw) == pytest.approx(0.25, abs=1e-6)


def test_offset_boxes():
    a, b = [0, 0, 2, 2], [1, 0, 3, 2]
    # inter 1×2 = 2, union 4 + 4 − 2 = 6 → 1/3; enclosing 3×2 = 6 = union → GIoU 1/3
    # ρ² = 1 (centres 1 apart), c² = 3² + 2² = 13 → DIoU = 1/3 − 1/13 = 10/39
    assert _iou(a, b) == pytest.approx(1 / 3, abs=1e-6)
    assert _iou(a, b, GIoU=True) == pytest.approx(1 / 3, abs=1e-6)
    assert _iou(a, b, DIoU=True) == pytest.approx(10 / 39, abs=1e-6)


def test_ciou_aspect_mismatch_by_hand():
    a, b = [0, 0, 4, 2], [0, 0, 2, 2]
    # inter 4, union 8 + 4 − 4 = 8 → IoU 0.5. Enclosing [0,0,4,2]: c² = 16 + 4 = 20; centres (2,1), (1,1): ρ² = 1
    # DIoU = 0.5 − 1/20 = 0.45
    # v = 4/π²·(atan(2/2) − atan(4/2))² = 0.4052847·(0.7853982 − 1.1071487)² = 0.4052847·0.1035234 = 0.0419568
    # α = v/(v − 0.5 + 1) = 0.0419568/0.5419568 = 0.0774174; α·v = 0.0032482 → CIoU = 0.4467518
    assert _iou(a, b, DIoU=True) == pytest.approx(0.45, abs=1e-6)
    assert _iou(a, b, CIoU=True) == pytest.approx(0.4467518, abs=2e-6)
    v = 4 / math.pi**2 * (math.atan(1.0) - math.atan(2.0)) ** 2
    assert _iou(a, b, CIoU=True) == pytest.approx(0.45 - v * v / (v + 0.5), abs=1e-6)


def test_bbox_iou_xywh_broadcast_and_shape():
    a = torch.tensor([[2.0, 1.0, 4.0, 2.0]])  # xywh of [0,0,4,2]
    b = torch.tensor([[1.0, 1.0, 2.0, 2.0], [2.0, 1.0, 4.0, 2.0]])  # [0,0,2,2] and itself
    out = bbox_iou(a, b)
    assert out.shape == (2, 1)
    assert out[:, 0].tolist() == pytest.approx([0.5, 1.0], abs=1e-6)


def test_ciou_alpha_has_no_grad_but_box_does():
    a = torch.tensor([0.0, 0.0, 4.0, 2.0], requires_grad=True)
    b = torch.tensor([0.0, 0.0, 2.0, 2.0])
    bbox_iou(a, b, xywh=False, CIoU=True).sum().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_box_iou_pairwise():
    a = torch.tensor([[0.0, 0, 2, 2], [0, 0, 4, 4]])
    b = torch.tensor([[1.0, 0, 3, 2], [1, 1, 3, 3], [10, 10, 11, 11]])
    out = box_iou(a, b)
    assert out.shape == (2, 3)
    # [0,0,2,2]∩[1,0,3,2] = 2 / 6; [0,0,2,2]∩[1,1,3,3] = 1 / 7; [0,0,4,4]∩[1,0,3,2] = 4/16; nested 4/16
    expected = [[1 / 3, 1 / 7, 0.0], [0.25, 0.25, 0.0]]
    assert out.tolist() == [pytest.approx(r, abs=1e-6) for r in expected]


# ---------------------------------------------------------------- compute_ap
# The published rule (SPEC §6): recall gets the sentinels [0, r…, r_last, 1] and precision [1, p…, 0, 0]; the
# envelope is the running max of precision from the end; it is interpolated linearly (np.interp) at x = 0, .01, …, 1
# and integrated with the trapezoid rule. Where the recall repeats (a vertical jump of the curve), np.interp takes
# the value of the LAST point with that recall — so at x = r_last the value is already the sentinel's 0. That is why
# a perfect curve scores 0.99 + 0.01·(1 + 0)/2 = 0.995 and not 1.
def test_compute_ap_step_segment():
    # recall [.5, 1], precision [1, .5] → recall' [0, .5, 1, 1, 1], envelope [1, 1, .5, 0, 0]
    # f = 1 on [0, .5], f = 1.5 − x on (.5, 1) (linear from 1 to .5), f(1) = 0 (last point with recall 1)
    # trapezoid is exact on [0, .99]: .5 + ∫.5→.99 (1.5 − x) = .5 + (1.5·.49 − (.99² − .25)/2) = .5 + .36995
    # plus the last interval .01·(f(.99) + 0)/2 = .01·.51/2 = .00255 → 0.8725
    ap, mpre, mrec = compute_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5]))
    assert ap == pytest.approx(0.8725, abs=1e-12)
    assert mrec.tolist() == [0.0, 0.5, 1.0, 1.0, 1.0]
    assert mpre.tolist() == [1.0, 1.0, 0.5, 0.0, 0.0]


def test_compute_ap_envelope_and_drop_after_last_recall():
    # TP, FP, TP, TP with 4 labels: recall [.25, .25, .5, .75], precision [1, .5, 2/3, .75]
    # recall' [0, .25, .25, .5, .75, .75, 1], precision' [1, 1, .5, 2/3, .75, 0, 0]
    # → envelope [1, 1, .75, .75, .75, 0, 0]
    # f = 1 on [0, .24]; at .25 (repeated recall) the last point's .75; .75 up to .74; f(.75) = 0 (sentinel), then 0
    # trapezoid: .24 + .01·(1 + .75)/2 + .49·.75 + .01·(.75 + 0)/2 = .24 + .00875 + .3675 + .00375 = 0.62
    ap, mpre, mrec = compute_ap(np.array([0.25, 0.25, 0.5, 0.75]), np.array([1.0, 0.5, 2 / 3, 0.75]))
    assert ap == pytest.approx(0.62, abs=1e-12)
    assert mpre.tolist() == pytest.approx([1, 1, 0.75, 0.75, 0.75, 0, 0])
    assert mrec.tolist() == pytest.approx([0, 0.25, 0.25, 0.5, 0.75, 0.75, 1])


def test_compute_ap_perfect_and_empty():
    # recall' [0, 1, 1, 1], envelope [1, 1, 0, 0]: 1 on [0, .99], 0 at 1 → .99 + .01·1/2 = 0.995
    assert compute_ap(np.array([1.0]), np.array([1.0]))[0] == pytest.approx(0.995, abs=1e-12)
    # only a false positive: recall' [0, 0, 0, 1], envelope [1, 0, 0, 0]; at x = 0 the last point with recall 0
    # has envelope 0, and it stays 0 → AP 0
    assert compute_ap(np.array([0.0]), np.array([0.0]))[0] == 0.0
    assert compute_ap(np.zeros(0), np.zeros(0))[0] == 0.0


def test_precision_envelope_matches_a_loop():
    rng = np.random.default_rng(0)
    hits = rng.random(40) < 0.6
    recall = np.cumsum(hits) / 30
    precision = np.cumsum(hits) / np.arange(1, 41)
    closed_r, env = precision_envelope(recall, precision)
    closed_p = [1.0, *precision, 0.0, 0.0]
    assert closed_r.tolist() == [0.0, *recall, recall[-1], 1.0]
    assert env.tolist() == [max(closed_p[k:]) for k in range(len(closed_p))]


def test_smooth_box_filter():
    y = np.zeros(1000)
    y[500] = 1.0
    s = box_filter(y, 0.1)  # width round(1000·0.1·2)//2 + 1 = 101
    assert s.shape == (1000,)
    assert s[450:551] == pytest.approx(np.full(101, 1 / 101))
    assert s[449] == 0 and s[551] == 0


# ---------------------------------------------------------------- match_predictions
def test_match_predictions_greedy_by_iou():
    # iou (labels × preds): l0-p0 0.92, l0-p1 0.6, l1-p0 0.8. Greedy: l0-p0 first, then p0 and l0 are taken.
    iou = torch.tensor([[0.92, 0.6], [0.8, 0.0]])
    correct = match_predictions(torch.tensor([0, 0]), torch.tensor([0, 0]), iou, IOUV)
    assert correct.shape == (2, 10) and correct.dtype == torch.bool
    assert correct[0].tolist() == [True] * 9 + [False]  # 0.92 passes 0.50 … 0.90, fails 0.95
    assert correct[1].tolist() == [False] * 10


def test_match_predictions_higher_confidence_wins_and_class_must_match():
    # two preds on one label, the more confident one (first, NMS order) with IoU 0.72, the other with 0.82:
    # at 0.50 … 0.70 the confident one takes the label; at 0.75 and 0.80 only the 0.82 one qualifies (COCO rule)
    iou = torch.tensor([[0.72, 0.82]])
    correct = match_predictions(torch.tensor([1, 1]), torch.tensor([1]), iou, IOUV)
    assert correct[0].tolist() == [True] * 5 + [False] * 5
    assert correct[1].tolist() == [False] * 5 + [True] * 2 + [False] * 3
    # explicit confidences reorder the visit: now the 0.82 prediction is the confident one and takes it everywhere
    correct = match_predictions(torch.tensor([1, 1]), torch.tensor([1]), iou, IOUV, conf=torch.tensor([0.3, 0.9]))
    assert correct[1].tolist() == [True] * 7 + [False] * 3 and not correct[0].any()
    # wrong class: never correct
    assert not match_predictions(torch.tensor([2]), torch.tensor([1]), torch.tensor([[1.0]]), IOUV).any()


def test_match_predictions_takes_the_best_free_label():
    # p0 (confident) overlaps l0 0.9 and l1 0.7; p1 overlaps l0 0.8 only. p0 takes l0, so p1 finds nothing.
    iou = torch.tensor([[0.9, 0.8], [0.7, 0.0]])
    correct = match_predictions(torch.tensor([0, 0]), torch.tensor([0, 0]), iou, IOUV)
    assert correct[0].tolist() == [True] * 9 + [False]
    assert not correct[1].any()


def test_match_predictions_threshold_dependent_matching():
    # l0-p0 0.9, l0-p1 0.6, l1-p1 0.56: greedy gives l0-p0, then l1-p1 (0.56): p1 correct at 0.50 and 0.55 only
    iou = torch.tensor([[0.9, 0.6], [0.0, 0.56]])
    correct = match_predictions(torch.tensor([0, 0]), torch.tensor([0, 0]), iou, IOUV)
    assert correct[1].tolist() == [True, True] + [False] * 8


def test_match_predictions_empty():
    assert match_predictions(torch.zeros(0), torch.tensor([0]), torch.zeros(1, 0), IOUV).shape == (0, 10)
    out = match_predictions(torch.tensor([0, 1]), torch.zeros(0), torch.zeros(0, 2), IOUV)
    assert out.shape == (2, 10) and not out.any()


# ---------------------------------------------------------------- class_statistics / DetMetrics
def _process(pred_boxes, pred_cls, conf, gt_boxes, gt_cls, names):
    """Per image lists → DetMetrics, the way a validator does it."""
    stats = {"tp": [], "conf": [], "pred_cls": [], "target_cls": []}
    for pb, pc, cf, gb, gc in zip(pred_boxes, pred_cls, conf, gt_boxes, gt_cls):
        pb, gb = torch.tensor(pb, dtype=torch.float).view(-1, 4), torch.tensor(gb, dtype=torch.float).view(-1, 4)
        pc, gc = torch.tensor(pc, dtype=torch.float), torch.tensor(gc, dtype=torch.float)
        stats["tp"].append(match_predictions(pc, gc, box_iou(gb, pb), IOUV).numpy())
        stats["conf"].append(np.asarray(cf, dtype=float))
        stats["pred_cls"].append(pc.numpy())
        stats["target_cls"].append(gc.numpy())
    m = DetMetrics(names)
    m.process(*(np.concatenate(v, 0) for v in stats.values()))
    return m


def test_perfect_predictions_score_one():
    gts = [[[0, 0, 10, 10], [20, 20, 40, 30]], [[5, 5, 15, 25]]]
    cls = [[0, 1], [1]]
    m = _process(gts, cls, [[0.9, 0.8], [0.7]], gts, cls, {0: "a", 1: "b"})
    # every class: recall reaches 1 at precision 1 → envelope 1 up to recall .99 and 0 at recall 1 (the sentinel,
    # see test_compute_ap_perfect_and_empty) → AP 0.99 + 0.005 = 0.995 at every threshold
    assert m.box.all_ap == pytest.approx(np.full((2, 10), 0.995), abs=1e-12)
    assert m.box.map50 == pytest.approx(0.995) and m.box.map == pytest.approx(0.995)
    assert m.box.map75 == pytest.approx(0.995)
    assert m.box.mp == pytest.approx(1.0) and m.box.mr == pytest.approx(1.0)
    assert m.fitness == pytest.approx(0.995)
    assert m.ap_class_index.tolist() == [0, 1]


def test_shifted_box_staircase():
    # gt [0,0,10,10] (area 100), pred [0,0,10,7.2]: IoU = 72/100 = 0.72
    # correct at 0.50, 0.55, 0.60, 0.65, 0.70 → AP 0.995 (a perfect curve); wrong at 0.75 … 0.95 → AP 0
    m = _process([[[0, 0, 10, 7.2]]], [[0]], [[0.9]], [[[0, 0, 10, 10]]], [[0]], {0: "a"})
    assert m.box.all_ap[0].tolist() == pytest.approx([0.995] * 5 + [0.0] * 5, abs=1e-12)
    assert m.box.map50 == pytest.approx(0.995)
    assert m.box.map75 == 0.0
    assert m.box.map == pytest.approx(0.4975)  # 5 · 0.995 / 10
    assert m.fitness == pytest.approx(0.1 * 0.995 + 0.9 * 0.4975)  # 0.54725
    assert m.box.mp == pytest.approx(1.0) and m.box.mr == pytest.approx(1.0)


def test_empty_predictions_give_zero():
    m = _process([[]], [[]], [[]], [[[0, 0, 10, 10], [20, 20, 30, 30]]], [[0, 1]], {0: "a", 1: "b"})
    assert m.mean_results() == [0.0, 0.0, 0.0, 0.0]
    assert m.fitness == 0.0
    # no labels at all and no predictions
    m = _process([[]], [[]], [[]], [[]], [[]], {0: "a"})
    assert m.mean_results() == [0.0, 0.0, 0.0, 0.0]
    assert m.box.maps.tolist() == [0.0]


def test_false_positive_on_background_image_lowers_precision():
    names = {0: "a"}
    gt = [[0, 0, 10, 10]]
    clean = _process([gt], [[0]], [[0.9]], [gt], [[0]], names)
    # a second image without labels but with a class-0 detection at conf 0.8
    noisy = _process([gt, [[50, 50, 60, 60]]], [[0], [0]], [[0.9], [0.8]], [gt, []], [[0], []], names)
    assert clean.box.mp == pytest.approx(1.0)
    assert noisy.box.mp < 1.0
    assert noisy.box.mr == pytest.approx(1.0)
    # the FP ranks below the TP: recall [1, 1], precision [1, .5] → envelope [1, 1, .5, 0, 0] over recall'
    # [0, 1, 1, 1, 1]: 1 up to .99, 0 at 1 → the perfect-curve 0.995
    assert noisy.box.map50 == pytest.approx(0.995)
    # a higher-confidence FP: recall [0, 1], precision [0, .5] → recall' [0, 0, 1, 1, 1], envelope [1, .5, .5, 0, 0]:
    # .5 on [0, .99] (from the last point at recall 0), 0 at 1 → .5·.99 + .01·.5/2 = 0.4975
    worse = _process([gt, [[50, 50, 60, 60]]], [[0], [0]], [[0.9], [0.95]], [gt, []], [[0], []], names)
    assert worse.box.map50 == pytest.approx(0.4975)


def test_absent_classes():
    names = {0: "a", 1: "b", 2: "c"}
    # labels: class 0 and class 1; predictions: a perfect class-0 box and a class-2 box (class 2 has no labels)
    m = _process([[[0, 0, 10, 10], [30, 30, 40, 40]]], [[0, 2]], [[0.9, 0.8]],
                 [[[0, 0, 10, 10], [60, 60, 70, 70]]], [[0, 1]], names)
    assert m.ap_class_index.tolist() == [0, 1]  # class 2 is ignored (no labels)
    assert m.box.ap50.tolist() == pytest.approx([0.995, 0.0])  # a perfect class scores 0.995 (see above)
    assert m.box.map == pytest.approx(0.4975)
    assert m.box.maps.tolist() == pytest.approx([0.995, 0.0, 0.4975])  # absent class 2 gets the overall map
    assert m.box.mp == pytest.approx(0.5) and m.box.mr == pytest.approx(0.5)
    assert m.class_result(1) == pytest.approx((0.0, 0.0, 0.0, 0.0))


def test_detmetrics_keys_results_dict_and_curves():
    m = _process([[[0, 0, 10, 10]]], [[0]], [[0.9]], [[[0, 0, 10, 10]]], [[0]], ["a"])
    assert m.keys == ["metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)"]
    rd = m.results_dict
    assert list(rd) == m.keys + ["fitness"]
    assert rd["metrics/mAP50(B)"] == pytest.approx(0.995) and rd["fitness"] == pytest.approx(0.995)
    assert set(m.speed) == {"preprocess", "inference", "loss", "postprocess"}
    assert len(m.mean_results()) == 4
    for x, y, _, _ in m.curves_results:
        assert x.shape == (1000,) and y.shape == (1, 1000)


def test_class_statistics_returns_curves_and_counts():
    tp = np.array([[1] * 10, [0] * 10], dtype=bool)  # a TP at conf .9, an FP at conf .3
    out = class_statistics(tp, np.array([0.9, 0.3]), np.array([0, 0]), np.array([0, 0]))
    tp_n, fp_n, p, r, ap, classes = out.tp, out.fp, out.p, out.r, out.ap, out.classes
    p_curve, r_curve, f1_curve, px, prec = out.p_curve, out.r_curve, out.f1_curve, out.conf_grid, out.pr_curve
    assert classes.tolist() == [0] and ap.shape == (1, 10)
    # recall [.5, .5], precision [1, .5] → recall' [0, .5, .5, .5, 1], envelope [1, 1, .5, 0, 0]:
    # 1 on [0, .49]; at .5 the last point with recall .5 has envelope 0, and it stays 0 up to 1
    # trapezoid: .49 + .01·(1 + 0)/2 = 0.495
    assert ap[0, 0] == pytest.approx(0.495)
    assert p_curve.shape == r_curve.shape == f1_curve.shape == prec.shape == (1, 1000) and px.shape == (1000,)
    # between conf .3 and .9 R = .5 and P rises linearly from .5 to 1; the smoothed F1 peaks just below .9,
    # so P is high but below 1 → rounded counts: TP = .5·2 = 1, FP = round(1/P − 1) = 0
    assert 0.9 < p[0] < 1.0 and r[0] == pytest.approx(0.5)
    assert tp_n.tolist() == [1.0] and fp_n.tolist() == [0.0]


def test_metric_defaults_without_update():
    m = Metric()
    assert m.mean_results() == [0.0, 0.0, 0.0, 0.0] and m.fitness() == 0.0 and m.map75 == 0.0


# ---------------------------------------------------------------- confusion matrix
def _cm(dets, gt_boxes, gt_cls, nc=3):
    cm = ConfusionMatrix(nc)
    d = torch.tensor(dets, dtype=torch.float).view(-1, 6)
    cm.process_batch(d, torch.tensor(gt_boxes, dtype=torch.float).view(-1, 4), torch.tensor(gt_cls).view(-1))
    return cm.matrix


def test_confusion_matrix_by_hand():
    gt = [[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]]
    dets = [[0, 0, 10, 10, 0.9, 0],     # matches label 0 (class 0) → [0, 0]
            [20, 20, 30, 29, 0.8, 2],   # matches label 1 (class 1) with the wrong class → [2, 1]
            [80, 80, 90, 90, 0.7, 1],   # nothing there → false positive [1, background]
            [50, 50, 60, 60, 0.1, 2]]   # below conf 0.25: ignored, so label 2 is missed → [background, 2]
    m = _cm(dets, gt, [0, 1, 2])
    expected = np.zeros((4, 4), dtype=int)
    expected[0, 0] = expected[2, 1] = expected[1, 3] = expected[3, 2] = 1
    assert m.tolist() == expected.tolist()
    assert m.sum() == 4


def test_confusion_matrix_iou_threshold_and_one_to_one():
    # IoU 0.4 < 0.45: no match → one FP and one miss
    m = _cm([[0, 0, 10, 4, 0.9, 0]], [[0, 0, 10, 10]], [0])
    assert m[0, 3] == 1 and m[3, 0] == 1 and m.trace() == 0
    # two detections on one label: the higher IoU takes it, the other is a false positive
    m = _cm([[0, 0, 10, 9, 0.9, 0], [0, 0, 10, 10, 0.8, 0]], [[0, 0, 10, 10]], [0])
    assert m[0, 0] == 1 and m[0, 3] == 1 and m.sum() == 2


def test_confusion_matrix_empty_sides():
    cm = ConfusionMatrix(2)
    cm.process_batch(None, torch.tensor([[0.0, 0, 5, 5]]), torch.tensor([1]))           # no detections
    cm.process_batch(torch.tensor([[0.0, 0, 5, 5, 0.9, 0]]), torch.zeros(0, 4), torch.zeros(0))  # no labels
    assert cm.matrix[2, 1] == 1 and cm.matrix[0, 2] == 1 and cm.matrix.sum() == 2
    tp, fp = cm.tp_fp()
    assert tp.tolist() == [0, 0] and fp.tolist() == [1, 0]
