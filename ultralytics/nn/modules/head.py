"""The YOLOv8 detection head."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ultralytics.detection.anchors import feature_map_anchors, ltrb_to_xywh

from .block import DFL
from .conv import Conv

__all__ = ["Detect"]


class Detect(nn.Module):
    """Anchor-free decoupled head: per level a box branch (4·reg_max DFL logits) and a class branch (nc logits).

    Training mode returns the per-level raw maps (B, nc + 4·reg_max, H, W). Eval mode returns
    `(y, raw)` with y (B, 4 + nc, anchors): xywh boxes in input pixels and sigmoid class scores;
    with `export = True` it returns y alone.
    """

    export = False  # set by exporters: return only the decoded tensor
    dynamic = False  # rebuild anchors on every call (dynamic-shape export)

    def __init__(self, nc: int = 80, ch: tuple[int, ...] = ()):
        super().__init__()
        self.nc = nc
        self.nl = len(ch)
        self.reg_max = 16
        self.no = nc + self.reg_max * 4
        self.stride = torch.zeros(self.nl)  # filled by DetectionModel's dry run
        c2 = max(16, ch[0] // 4, self.reg_max * 4)
        c3 = max(ch[0], min(self.nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * self.reg_max, 1)) for x in ch)
        self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, self.nc, 1)) for x in ch)
        self.dfl = DFL(self.reg_max) if self.reg_max > 1 else nn.Identity()
        self._anchor_key: tuple | None = None
        self.anchors = torch.empty(0)
        self.strides = torch.empty(0)

    def forward(self, x: list[torch.Tensor]):
        x = [torch.cat((self.cv2[i](x[i]), self.cv3[i](x[i])), 1) for i in range(self.nl)]
        if self.training:
            return x
        y = self.decode(x)
        return y if self.export else (y, x)

    def decode(self, x: list[torch.Tensor]) -> torch.Tensor:
        """Raw per-level maps → (B, 4 + nc, anchors) decoded boxes (xywh pixels) and class probabilities."""
        b = x[0].shape[0]
        flat = torch.cat([xi.view(b, self.no, -1) for xi in x], 2)
        key = tuple(tuple(xi.shape[2:]) for xi in x) + (flat.device, flat.dtype)
        if self.dynamic or key != self._anchor_key or torch.jit.is_tracing():
            anchors, strides = feature_map_anchors(x, self.stride)
            self.anchors, self.strides = anchors.transpose(0, 1), strides.transpose(0, 1)
            self._anchor_key = key
        box, cls = flat.split((self.reg_max * 4, self.nc), 1)
        dbox = ltrb_to_xywh(self.dfl(box), self.anchors.unsqueeze(0), dim=1) * self.strides
        return torch.cat((dbox, cls.sigmoid()), 1)

    def bias_init(self) -> None:
        """Prior biases: box logits 2.0; class logits for ~5 objects per 640² image at each level's stride."""
        for box_branch, cls_branch, s in zip(self.cv2, self.cv3, self.stride):
            box_branch[-1].bias.data[:] = 2.0
            cls_branch[-1].bias.data[: self.nc] = math.log(5 / self.nc / (640 / float(s)) ** 2)
