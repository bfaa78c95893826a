"""Anchor grids and box ↔ distance conversions of ultralytics.detection.anchors on hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from ultralytics.detection.anchors import (anchor_points, feature_map_anchors, grid_points, ltrb_to_xywh,
                                           ltrb_to_xyxy, max_ltrb_distance, xyxy_to_ltrb)


def test_anchors_of_a_2x3_map_at_stride_8():
    points, strides = feature_map_anchors([torch.zeros(2, 7, 2, 3)], [8])
    # cell centres, row by row: y = 0.5 then 1.5, x = 0.5, 1.5, 2.5 (in cells; pixels would be ×8)
    assert points.tolist() == [[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [0.5, 1.5], [1.5, 1.5], [2.5, 1.5]]
    assert strides.tolist() == [[8.0]] * 6
    assert (points * strides).tolist()[5] == [20.0, 12.0]  # last cell's centre in pixels


def test_anchor_points_levels_offset_dtype():
    points, strides = anchor_points([(1, 2), (2, 1)], torch.tensor([16.0, 32.0]), offset=0.0, dtype=torch.float64)
    assert points.tolist() == [[0, 0], [1, 0], [0, 0], [0, 1]]
    assert strides[:, 0].tolist() == [16, 16, 32, 32]
    assert points.dtype == strides.dtype == torch.float64
    assert grid_points(1, 1).tolist() == [[0.5, 0.5]]
    with pytest.raises(ValueError, match="strides"):
        anchor_points([(2, 2)], [8, 16])


def test_feature_map_anchors_follow_map_dtype():
    points, strides = feature_map_anchors([torch.zeros(1, 1, 3, 3, dtype=torch.float16)], [8])
    assert points.dtype == strides.dtype == torch.float16 and points.shape == (9, 2)


def test_ltrb_to_boxes_by_hand():
    point = torch.tensor([[10.0, 20.0]])
    ltrb = torch.tensor([[1.0, 2.0, 5.0, 4.0]])
    # x1 = 10 − 1, y1 = 20 − 2, x2 = 10 + 5, y2 = 20 + 4 → centre (12, 21), size (6, 6)
    assert ltrb_to_xyxy(ltrb, point).tolist() == [[9.0, 18.0, 15.0, 24.0]]
    assert ltrb_to_xywh(ltrb, point).tolist() == [[12.0, 21.0, 6.0, 6.0]]
    # coordinates along dim 1 of a (B, 4, A) tensor, as the head lays them out
    assert ltrb_to_xywh(ltrb.T.unsqueeze(0), point.T.unsqueeze(0), dim=1)[0, :, 0].tolist() == [12.0, 21.0, 6.0, 6.0]


def test_xyxy_to_ltrb_inverts_ltrb_to_xyxy():
    g = torch.Generator().manual_seed(0)
    points = 20 * torch.rand(50, 2, generator=g)
    ltrb = 10 * torch.rand(3, 50, 4, generator=g)
    assert torch.allclose(xyxy_to_ltrb(ltrb_to_xyxy(ltrb, points), points), ltrb, atol=1e-5)


def test_xyxy_to_ltrb_clamps_to_the_dfl_range():
    assert max_ltrb_distance(16) == pytest.approx(14.99)  # SPEC §5: clamped to [0, 14.99]
    point = torch.tensor([[5.0, 5.0]])
    box = torch.tensor([[-20.0, 5.5, 7.0, 30.0]])  # left 25, top −0.5, right 2, bottom 25
    assert xyxy_to_ltrb(box, point).tolist() == [[25.0, -0.5, 2.0, 25.0]]
    assert xyxy_to_ltrb(box, point, reg_max=16)[0].tolist() == pytest.approx([14.99, 0.0, 2.0, 14.99])
