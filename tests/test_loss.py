"""DetectionLoss and DFL against hand-computed values, edge cases and the batched/looped equivalence."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from ultralytics.detection.loss import DetectionLoss, distribution_focal_loss, padded_targets

IMG = 64  # input size: grids 8×8, 4×4, 2×2 at strides 8, 16, 32 → 84 anchors


class _Detect(nn.Module):
    """Just the attributes DetectionLoss reads from a Detect head."""

    def __init__(self, nc: int = 1, reg_max: int = 16):
        super().__init__()
        self.nc, self.reg_max, self.no = nc, reg_max, nc + 4 * reg_max
        self.stride = torch.tensor([8.0, 16.0, 32.0])
        self.w = nn.Parameter(torch.zeros(1))


class _Model(nn.Module):
    def __init__(self, nc: int = 1, args=SimpleNamespace(box=7.5, cls=0.5, dfl=1.5)):
        super().__init__()
        self.model = nn.ModuleList([_Detect(nc)])
        if args is not None:
            self.args = args


def _maps(b: int, no: int, fill: float = 0.0) -> list[torch.Tensor]:
    return [torch.full((b, no, IMG // s, IMG // s), fill) for s in (8, 16, 32)]


def _batch(rows: list[list[float]]) -> dict:
    """rows of [image, cls, cx, cy, w, h] (normalised)."""
    t = torch.tensor(rows, dtype=torch.float).view(-1, 6)
    return {"batch_idx": t[:, 0], "cls": t[:, 1:2], "bboxes": t[:, 2:6]}


def _set_dist(maps: list[torch.Tensor], probs: dict[int, float]) -> None:
    """Every anchor, every side: logits log(p) on the given bins, −50 elsewhere (softmax ≈ probs)."""
    for f in maps:
        f[:, :64] = -50.0
        for side in range(4):
            for k, p in probs.items():
                f[:, side * 16 + k] = math.log(p)


# Gt [1.6, 1.6, 38.4, 38.4] px = anchor (2.5, 2.5) of the stride-8 grid (index 2·8 + 2 = 18) ± 2.3 cells.
GT_ROW = [0, 0, 20 / 64, 20 / 64, 36.8 / 64, 36.8 / 64]


def test_dfl_hand_computed():
    # reg_max 4, logits log([1, 1, 2, 4]) → softmax [1/8, 1/8, 1/4, 1/2] on every side
    logits = torch.log(torch.tensor([1.0, 1.0, 2.0, 4.0])).repeat(4, 1)
    target = torch.tensor([[2.3, 0.0, 5.0, 1.5]])
    # 2.3 → 0.7·(−ln 1/4) + 0.3·(−ln 1/2) = 1.4 ln2 + 0.3 ln2 = 1.7 ln2
    # 0.0 → 1·(−ln 1/8) = 3 ln2
    # 5.0 → clamped to 2.99: 0.01·(2 ln2) + 0.99·(ln2) = 1.01 ln2
    # 1.5 → 0.5·(3 ln2) + 0.5·(2 ln2) = 2.5 ln2
    # mean = (1.7 + 3 + 1.01 + 2.5)/4 · ln2 = 2.0525 · 0.6931472 = 1.4226845
    out = distribution_focal_loss(logits.view(1, 4, 4), target).mean(-1, keepdim=True)
    assert out.shape == (1, 1)
    assert out.item() == pytest.approx(2.0525 * math.log(2), rel=1e-5)
    assert out.item() == pytest.approx(1.4226845, rel=1e-6)


def test_detection_loss_hand_computed_single_anchor():
    model = _Model(nc=1)
    maps = _maps(1, 65)
    _set_dist(maps, {2: 0.7, 3: 0.3})  # expected distance 2.3 cells on every side, class logits 0
    items = DetectionLoss.from_model(model, topk=1)(maps, _batch([GT_ROW]))[1]
    # topk 1 → only anchor 18, whose predicted box equals the gt: CIoU ≈ 1, target score ≈ 1
    # box: 7.5·(1 − 1) = 0
    # cls: logits 0 → BCE = ln2 for any target, 84 anchors × 1 class, / max(≈1, 1): 0.5·84·ln2 = 29.1121816
    # dfl: target 2.3 on each side → 0.7·(−ln .7) + 0.3·(−ln .3) = 0.2496725 + 0.3611918 = 0.6108643; ×1.5 = 0.9162965
    assert items[0].item() == pytest.approx(0.0, abs=1e-4)
    assert items[1].item() == pytest.approx(29.1121816, rel=1e-5)
    assert items[2].item() == pytest.approx(0.9162965, rel=1e-4)


def test_total_is_weighted_sum_times_batch_size_and_gains_from_args():
    maps = _maps(2, 65)
    _set_dist(maps, {2: 0.7, 3: 0.3})
    batch = _batch([GT_ROW, [1] + GT_ROW[1:]])
    total, items = DetectionLoss.from_model(_Model(nc=1), topk=1)(maps, batch)
    assert total.item() == pytest.approx(items.sum().item() * 2, rel=1e-6)
    # gains as dict keys, all 1 → items divided by (7.5, 0.5, 1.5)
    items1 = DetectionLoss.from_model(_Model(nc=1, args={"box": 1.0, "cls": 1.0, "dfl": 1.0}), topk=1)(maps, batch)[1]
    assert items1.tolist() == pytest.approx((items / torch.tensor([7.5, 0.5, 1.5])).tolist(), rel=1e-5, abs=1e-6)
    # no args at all → defaults 7.5, 0.5, 1.5
    items2 = DetectionLoss.from_model(_Model(nc=1, args=None), topk=1)(maps, batch)[1]
    assert torch.allclose(items2, items)


def test_perfect_prediction_beats_wrong_one():
    batch = _batch([GT_ROW])
    loss = DetectionLoss.from_model(_Model(nc=1))
    good = _maps(1, 65)
    _set_dist(good, {2: 0.7, 3: 0.3})
    good[0][:, 64] = -10.0
    good[0][:, 64, 2, 2] = 10.0  # confident only at the anchor whose box matches
    bad = _maps(1, 65, 0.0)
    _set_dist(bad, {7: 1.0})  # boxes ±7 cells: far too large
    for f in bad:
        f[:, 64] = 10.0  # confident everywhere
    bad[0][:, 64, 2, 2] = -10.0
    lg, ig = loss(good, batch)
    lb, ib = loss(bad, batch)
    assert lg < lb
    assert (ig < ib).all()


def test_zero_target_batch():
    maps = [m.requires_grad_() for m in _maps(2, 65, 0.3)]
    total, items = DetectionLoss.from_model(_Model(nc=1))(maps, _batch([]))
    assert items[0] == 0 and items[2] == 0
    # cls: every target 0, logit 0.3 → BCE = ln(1 + e^0.3) = 0.8543552 per anchor; 2·84 anchors, /1, ×0.5
    assert items[1].item() == pytest.approx(0.5 * 2 * 84 * math.log1p(math.exp(0.3)), rel=1e-5)
    total.backward()
    for m in maps:
        assert (m.grad[:, 64] > 0).all()  # pushes every class logit down
        assert (m.grad[:, :64] == 0).all()


def test_loss_is_finite_and_differentiable():
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(2, 67, IMG // s, IMG // s, generator=g).requires_grad_() for s in (8, 16, 32)]
    batch = _batch([[0, 0, 0.5, 0.5, 0.4, 0.4], [0, 2, 0.3, 0.3, 0.2, 0.3], [1, 1, 0.6, 0.6, 0.5, 0.5]])
    total, items = DetectionLoss.from_model(_Model(nc=3))(maps, batch)
    assert torch.isfinite(total) and torch.isfinite(items).all() and (items > 0).all()
    assert not items.requires_grad
    total.backward()
    for m in maps:
        assert torch.isfinite(m.grad).all()
    assert maps[0].grad[:, :64].abs().sum() > 0 and maps[0].grad[:, 64:].abs().sum() > 0


def test_eval_mode_tuple_input():
    maps = _maps(1, 65)
    _set_dist(maps, {2: 0.7, 3: 0.3})
    loss = DetectionLoss.from_model(_Model(nc=1))
    a = loss(maps, _batch([GT_ROW]))[1]
    b = loss((torch.zeros(1, 5, 84), maps), _batch([GT_ROW]))[1]
    assert torch.equal(a, b)


def test_preprocess_vectorised_equals_loop():
    rows = [[1, 0, .5, .5, .2, .2], [0, 1, .3, .3, .1, .2], [1, 2, .7, .2, .2, .1], [2, 1, .4, .6, .3, .3], [0, 0, .1, .9, .1, .1]]
    t = torch.tensor(rows)
    batch = {"batch_idx": t[:, 0], "cls": t[:, 1:2], "bboxes": t[:, 2:]}
    labels, boxes, mask = padded_targets(batch, 4, (32.0, 64.0), "cpu")  # image (h, w) = (32, 64)
    out = torch.cat((labels, boxes), -1)
    assert out.shape == (4, 2, 5) and mask.shape == (4, 2, 1)
    for i in range(4):
        own = t[t[:, 0] == i]
        n = len(own)
        assert mask[i, :n].all() and not mask[i, n:].any()
        for j, r in enumerate(own):
            cx, cy, w, h = r[2] * 64, r[3] * 32, r[4] * 64, r[5] * 32
            expected = [r[1].item()] + [v.item() for v in (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)]
            assert out[i, j].tolist() == pytest.approx(expected, rel=1e-6)
        assert (out[i, n:] == 0).all()


def test_batched_loss_equals_single_image_loss():
    g = torch.Generator().manual_seed(1)
    maps1 = [torch.randn(1, 66, IMG // s, IMG // s, generator=g) for s in (8, 16, 32)]
    _set_dist(maps1, {2: 0.7, 3: 0.3})  # good boxes → target-score sum > 1, so max(sum, 1) is the sum itself
    rows = [GT_ROW, [0, 1, 0.6, 0.6, 0.5, 0.4]]
    loss = DetectionLoss.from_model(_Model(nc=2))
    t1, i1 = loss(maps1, _batch(rows))
    # three copies of the same image: same normalised items (numerators and target-score sums all triple)
    maps3 = [m.repeat(3, 1, 1, 1) for m in maps1]
    rows3 = [[b] + r[1:] for b in (2, 0, 1) for r in rows]
    t3, i3 = loss(maps3, _batch(rows3))
    assert torch.allclose(i3, i1, rtol=1e-5)
    assert t3.item() == pytest.approx(3 * t1.item(), rel=1e-5)


def test_autocast_runs_in_fp32():
    g = torch.Generator().manual_seed(2)
    maps = [torch.randn(1, 65, IMG // s, IMG // s, generator=g).bfloat16() for s in (8, 16, 32)]
    loss = DetectionLoss.from_model(_Model(nc=1))
    ref = loss([m.float() for m in maps], _batch([GT_ROW]))[1]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, items = loss(maps, _batch([GT_ROW]))
    assert items.dtype == torch.float32 and total.dtype == torch.float32
    assert torch.allclose(items, ref, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(3)
    maps = [torch.randn(2, 66, IMG // s, IMG // s, generator=g) for s in (8, 16, 32)]
    batch = _batch([[0, 0, 0.5, 0.5, 0.4, 0.4], [1, 1, 0.3, 0.3, 0.2, 0.3]])
    cpu = DetectionLoss.from_model(_Model(nc=2))(maps, batch)[1]
    model = _Model(nc=2).cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        gpu = DetectionLoss.from_model(model)([m.cuda().half() for m in maps], batch)[1]
    ref = DetectionLoss.from_model(_Model(nc=2))([m.half().float() for m in maps], batch)[1]
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), ref, rtol=1e-4, atol=1e-5)
    assert torch.isfinite(cpu).all()
