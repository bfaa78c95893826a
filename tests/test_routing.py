"""Routing maps: the figure exists, and the regions it draws as routed are exactly the module's r_idx."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ultralytics.nn.modules import BiFormerBlock, BiLevelRoutingAttention
from ultralytics.nn.routing import draw_routing, plot_routing, routing_of, save_routing_map
from ultralytics.nn.tasks import DetectionModel

ASSET_IMAGES = Path(__file__).resolve().parents[1] / "ultralytics" / "assets" / "images"


def routed_regions_drawn(fig: np.ndarray, layout, n_win: int) -> list[set[int]]:
    """Read the figure back: for each query panel, the regions whose centre pixel is tinted green."""
    sets = []
    for q in range(n_win * n_win):
        px, py = layout.panel_origin(q)
        routed = set()
        for r in range(n_win * n_win):
            x0, y0, x1, y1 = layout.region_rect(r, layout.panel_w, layout.panel_h)
            b, g, red = fig[py + (y0 + y1) // 2, px + (x0 + x1) // 2].astype(int)
            if g - red > 50 and g - b > 50:
                routed.add(r)
        sets.append(routed)
    return sets


def _bra(seed: int = 0, **kwargs) -> BiLevelRoutingAttention:
    torch.manual_seed(seed)
    m = BiLevelRoutingAttention(**kwargs).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    return m


@pytest.mark.parametrize(("n_win", "topk", "size"), [(4, 3, (16, 16)), (3, 2, (10, 13))])
def test_drawn_routing_is_r_idx(n_win, topk, size):
    m = _bra(dim=16, n_win=n_win, num_heads=2, topk=topk)
    x = torch.randn(2, 16, *size)
    routing = routing_of(m, x, query=1)
    with torch.no_grad():
        r_idx = m(x[:1], ret_attn_mask=True)[2][0]
    assert np.array_equal(routing.r_idx, r_idx.numpy())
    image = np.full((size[0] * 8, size[1] * 8, 3), 128, np.uint8)  # flat grey: only the drawing colours it
    fig, layout = draw_routing(image, routing)
    drawn = routed_regions_drawn(fig, layout, n_win)
    assert drawn == [set(row.tolist()) for row in r_idx]
    assert len({frozenset(s) for s in drawn}) > 1  # the test sees differences between query regions


def test_heat_map_is_the_query_regions_attention():
    m = _bra(dim=16, n_win=3, num_heads=2, topk=2)
    x = torch.randn(1, 16, 9, 9)
    with torch.no_grad():
        _, _, r_idx, attn = m(x, ret_attn_mask=True)
    routing = routing_of(m, x, query=4)
    routed = r_idx[0, 4].tolist()
    heat = routing.heat  # (9, 9) padded map, regions of 3×3 tokens
    expected = attn[4].mean((0, 1)).view(2, 3, 3)
    for slot, r in enumerate(routed):
        j, i = divmod(r, 3)
        np.testing.assert_allclose(heat[3 * j:3 * j + 3, 3 * i:3 * i + 3], expected[slot].numpy(), rtol=1e-6)
    outside = np.ones((9, 9), bool)
    for r in routed:
        j, i = divmod(r, 3)
        outside[3 * j:3 * j + 3, 3 * i:3 * i + 3] = False
    assert (heat[outside] == 0).all()
    assert heat.sum() == pytest.approx(1.0, rel=1e-5)  # a probability distribution over the routed tokens
    with pytest.raises(ValueError, match="query region 9 is out of range"):
        routing_of(m, x, query=9)


def test_save_routing_map_hook(tmp_path):
    block = BiFormerBlock(32, n_win=2, topk=2).eval()
    x = torch.randn(2, 32, 8, 8)
    image = torch.rand(2, 3, 64, 64)
    path = save_routing_map(block, x, image, 10, tmp_path)
    assert path == tmp_path / "stage10_BiFormerBlock_routing.png"
    fig = cv2.imread(str(path))
    assert fig is not None and fig.shape[0] > 100 and fig.std() > 5
    bra = _bra(dim=16, n_win=2, num_heads=2, topk=1)
    path = save_routing_map(bra, torch.randn(1, 16, 6, 6), image[:1], 3, tmp_path)
    assert path.name == "stage3_BiLevelRoutingAttention_routing.png" and path.is_file()


@pytest.mark.slow
def test_plot_routing_for_a_model(tmp_path):
    model = DetectionModel("yolov8n_BiFormer.yaml", verbose=False)
    image = sorted(ASSET_IMAGES.glob("*.jpg"))[0]
    paths = plot_routing(model, image, tmp_path, imgsz=160)
    assert [p.name for p in paths] == [f"stage{i}_BiLevelRoutingAttention_routing.png" for i in (15, 19, 23)]
    assert all(cv2.imread(str(p)) is not None for p in paths)
    assert plot_routing(model, image, tmp_path / "one", layer=19, query=0, imgsz=160)[0].name.startswith("stage19")
    assert model.training  # restored
