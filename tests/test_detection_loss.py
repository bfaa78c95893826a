"""Pieces of ultralytics.detection.loss: DFL, box decoding, target padding, gains and the injectable normaliser."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from ultralytics.detection.loss import (DetectionLoss, decode_boxes, distributed_normaliser, distribution_focal_loss,
                                        expected_distances, gains_from_hyperparameters, local_normaliser, pad_by_image,
                                        v8DetectionLoss)


def _probs_3_4() -> torch.Tensor:
    """16 bins: p(3) = 1/2, p(4) = 1/4, the other 14 share 1/4."""
    p = torch.full((16,), 0.25 / 14, dtype=torch.float64)
    p[3], p[4] = 0.5, 0.25
    return p


def test_dfl_splits_3_3_between_bins_3_and_4():
    logits = _probs_3_4().log().requires_grad_()
    loss = distribution_focal_loss(logits, torch.tensor(3.3, dtype=torch.float64))
    # 0.7 on bin 3, 0.3 on bin 4: −(0.7·ln ½ + 0.3·ln ¼) = 0.7 ln2 + 0.6 ln2 = 1.3 ln2
    assert loss.item() == pytest.approx(1.3 * math.log(2), rel=1e-9)
    loss.backward()
    # cross-entropy gradient = softmax − target split
    split = torch.zeros(16, dtype=torch.float64)
    split[3], split[4] = 0.7, 0.3
    assert torch.allclose(logits.grad, _probs_3_4() - split, atol=1e-9)


def test_dfl_clamps_targets_to_the_bins():
    logits = _probs_3_4().log().expand(3, 16)
    out = distribution_focal_loss(logits, torch.tensor([20.0, -1.0, 0.0], dtype=torch.float64))
    other = math.log(14 / 0.25)
    # 20 → 14.99: 0.01 on bin 14, 0.99 on bin 15 (both "other" bins); −1 and 0 → all on bin 0
    assert out.tolist() == pytest.approx([other, other, other], rel=1e-9)
    logits2 = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64))
    out2 = distribution_focal_loss(logits2, torch.tensor(9.0, dtype=torch.float64))  # R = 4 → 2.99
    assert out2.item() == pytest.approx(-(0.01 * math.log(0.3) + 0.99 * math.log(0.4)), rel=1e-9)


def test_expected_distances_and_decode():
    side = torch.full((16,), -50.0)
    side[2], side[3] = math.log(0.7), math.log(0.3)
    logits = side.repeat(4).view(1, 1, 64)  # (B, A, 4·16)
    assert expected_distances(logits, 16)[0, 0].tolist() == pytest.approx([2.3] * 4, rel=1e-6)
    box = decode_boxes(logits, torch.tensor([[2.5, 2.5]]), 16)
    assert box[0, 0].tolist() == pytest.approx([0.2, 0.2, 4.8, 4.8], rel=1e-5)
    raw = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])  # reg_max 1: the logits are the distances
    assert decode_boxes(raw, torch.tensor([[5.0, 5.0]]), 1)[0, 0].tolist() == [4.0, 3.0, 8.0, 9.0]


def test_pad_by_image_keeps_order_within_each_image():
    image = torch.tensor([1, 0, 1, 2, 1])
    rows = torch.arange(5.0).view(5, 1) * 10 + 10  # 10, 20, 30, 40, 50
    padded, mask = pad_by_image(image, rows, batch_size=4)
    assert padded[..., 0].tolist() == [[20, 0, 0], [10, 30, 50], [40, 0, 0], [0, 0, 0]]
    assert mask.tolist() == [[True, False, False], [True, True, True], [True, False, False], [False] * 3]
    empty, empty_mask = pad_by_image(torch.zeros(0, dtype=torch.long), torch.zeros(0, 5), 2)
    assert empty.shape == (2, 0, 5) and empty_mask.shape == (2, 0)


def test_gains_from_hyperparameters():
    assert gains_from_hyperparameters(None) == {"box": 7.5, "cls": 0.5, "dfl": 1.5}
    assert gains_from_hyperparameters({"box": 2, "dfl": None}) == {"box": 2.0, "cls": 0.5, "dfl": 1.5}
    assert gains_from_hyperparameters(SimpleNamespace(cls=3.0)) == {"box": 7.5, "cls": 3.0, "dfl": 1.5}


# ---------------------------------------------------------------- the loss object
class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.nc, self.reg_max, self.stride = 2, 16, torch.tensor([8.0, 16.0])


class _Model(nn.Module):
    def __init__(self, args=None):
        super().__init__()
        self.model = nn.ModuleList([_Head()])
        self.args = args


def _case():
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(2, 66, 32 // s, 32 // s, generator=g) for s in (8, 16)]
    batch = {"batch_idx": torch.tensor([0.0, 1.0, 1.0]), "cls": torch.tensor([[0.0], [1.0], [0.0]]),
             "bboxes": torch.tensor([[0.5, 0.5, 0.6, 0.6], [0.3, 0.4, 0.4, 0.5], [0.6, 0.6, 0.5, 0.5]])}
    return maps, batch


def test_explicit_construction_equals_factory():
    maps, batch = _case()
    built = DetectionLoss(nc=2, reg_max=16, strides=(8, 16), box=1.0, cls=2.0, dfl=3.0)
    total, items = built(maps, batch)
    total2, items2 = DetectionLoss.from_model(_Model({"box": 1.0, "cls": 2.0, "dfl": 3.0}))(maps, batch)
    assert torch.equal(items, items2) and torch.equal(total, total2)
    assert total.item() == pytest.approx(2 * items.sum().item(), rel=1e-6)
    assert v8DetectionLoss is DetectionLoss


def test_map_channels_are_checked():
    maps, batch = _case()
    with pytest.raises(ValueError, match="66 channels"):
        DetectionLoss(nc=2, reg_max=16, strides=(8, 16))([m[:, :65] for m in maps], batch)


def test_injected_normaliser_divides_every_term():
    maps, batch = _case()
    seen = []

    def fixed(total: torch.Tensor) -> torch.Tensor:
        seen.append(float(total))
        return torch.tensor(2.0)

    _, items_fixed = DetectionLoss(nc=2, reg_max=16, strides=(8, 16), normaliser=fixed)(maps, batch)
    _, items = DetectionLoss(nc=2, reg_max=16, strides=(8, 16))(maps, batch)
    assert len(seen) == 1 and seen[0] > 0  # the local sum of target scores
    assert torch.allclose(items, items_fixed * 2 / max(seen[0], 1.0), rtol=1e-6)


def test_local_and_distributed_normalisers(monkeypatch):
    assert float(local_normaliser(torch.tensor(0.3))) == 1.0 and float(local_normaliser(torch.tensor(4.5))) == 4.5
    calls = []
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: calls.append(t) or t.mul_(3))  # 3 equal ranks
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 3)
    local = torch.tensor(0.2)
    assert float(distributed_normaliser(local)) == pytest.approx(1 / 3)  # max(0.6, 1) / 3: clamp before dividing
    assert float(local) == pytest.approx(0.2)  # the caller's tensor is not reduced in place
    assert float(distributed_normaliser(torch.tensor(5.0))) == pytest.approx(5.0) and len(calls) == 2  # 15 / 3
