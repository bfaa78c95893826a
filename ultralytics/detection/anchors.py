"""Anchor points of the detection grids and conversions between boxes and (left, top, right, bottom) distances.

An anchor is the centre of a feature-map cell, expressed in cells of its own level (multiply by the
level's stride for pixels). Distances `ltrb` are measured from an anchor to the four sides of a box.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["grid_points", "anchor_points", "feature_map_anchors", "ltrb_to_xyxy", "ltrb_to_xywh", "xyxy_to_ltrb",
           "max_ltrb_distance"]

#: DFL targets stay this far below the last bin, so that the upper neighbour bin of a target always exists.
DFL_BIN_MARGIN = 0.01


def grid_points(
    height: int, width: int, offset: float = 0.5, *, dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(height·width, 2) cell points (x + offset, y + offset), row by row (x varies fastest)."""
    xs = torch.arange(width, dtype=dtype, device=device) + offset
    ys = torch.arange(height, dtype=dtype, device=device) + offset
    return torch.stack((xs.expand(height, width), ys.unsqueeze(1).expand(height, width)), -1).reshape(-1, 2)


def anchor_points(
    shapes: Sequence[tuple[int, int]], strides: Sequence[float] | torch.Tensor, offset: float = 0.5, *,
    dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor points (A, 2) in cells of their level and their strides (A, 1) for grids of (height, width).

    Levels are concatenated in order; A is the total number of cells.
    """
    if len(shapes) != len(strides):
        raise ValueError(f"{len(shapes)} grid shapes but {len(strides)} strides")
    points, level_strides = [], []
    for (h, w), s in zip(shapes, strides):
        points.append(grid_points(h, w, offset, dtype=dtype, device=device))
        level_strides.append(torch.full((h * w, 1), float(s), dtype=dtype, device=device))
    return torch.cat(points), torch.cat(level_strides)


def feature_map_anchors(
    maps: Sequence[torch.Tensor], strides: Sequence[float] | torch.Tensor, offset: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """`anchor_points` for (B, C, H, W) feature maps, on their device and in their dtype."""
    if not len(maps):
        raise ValueError("no feature maps given")
    shapes = [tuple(m.shape[-2:]) for m in maps]
    return anchor_points(shapes, strides, offset, dtype=maps[0].dtype, device=maps[0].device)


def ltrb_to_xyxy(ltrb: torch.Tensor, points: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Distances (l, t, r, b) from `points` (x, y) → boxes (x1, y1, x2, y2); coordinates lie along `dim`."""
    near, far = ltrb.chunk(2, dim)
    return torch.cat((points - near, points + far), dim)


def ltrb_to_xywh(ltrb: torch.Tensor, points: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Distances (l, t, r, b) from `points` (x, y) → boxes (cx, cy, w, h); coordinates lie along `dim`."""
    near, far = ltrb.chunk(2, dim)
    return torch.cat((points + (far - near) / 2, near + far), dim)


def max_ltrb_distance(reg_max: int) -> float:
    """Largest distance a DFL head with `reg_max` bins (0 … reg_max − 1) is trained towards."""
    return reg_max - 1 - DFL_BIN_MARGIN


def xyxy_to_ltrb(boxes: torch.Tensor, points: torch.Tensor, reg_max: int | None = None) -> torch.Tensor:
    """Boxes (x1, y1, x2, y2) → distances (l, t, r, b) from `points` (x, y), along the last dimension.

    With `reg_max`, distances are clamped to [0, max_ltrb_distance(reg_max)], the range of the DFL bins.
    """
    top_left, bottom_right = boxes.chunk(2, -1)
    ltrb = torch.cat((points - top_left, bottom_right - points), -1)
    return ltrb if reg_max is None else ltrb.clamp(0, max_ltrb_distance(reg_max))
