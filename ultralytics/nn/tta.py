"""Test-time augmentation (`predict(augment=True)`): the published recipe of three views of each image.

The views are (scale 1), (scale 0.83, left-right flip) and (scale 0.67). Each view's decoded boxes are mapped
back to the original input, and the three sets are concatenated along the anchor axis for NMS. Two parts are
dropped first, as the published package drops them: the coarsest level's anchors of the full-size view (large
objects are seen better in the smaller views) and the finest level's anchors of the smallest view.
"""

from __future__ import annotations

from typing import Callable

import torch

from ultralytics.utils.torch_utils import scale_img

# (scale, flipped left-right) of each view, the first one the original image
TTA_VIEWS: tuple[tuple[float, bool], ...] = ((1.0, False), (0.83, True), (0.67, False))


def level_sizes(height: int, width: int, strides: list[int]) -> list[int]:
    """Anchors per detection level for an input of height × width (a multiple of every stride)."""
    return [(height // s) * (width // s) for s in strides]


def to_original_frame(pred: torch.Tensor, scale: float, flipped: bool, width: int) -> torch.Tensor:
    """Decoded predictions (B, 4 + nc, N) of a view → the original input's pixels (xywh first)."""
    out = pred.clone()
    out[:, :4] /= scale
    if flipped:
        out[:, 0] = width - out[:, 0]
    return out


def predict_augmented(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                      strides: list[int]) -> torch.Tensor:
    """`forward` (an image batch → decoded predictions (B, 4 + nc, N)) over the TTA views of `x` → the merged
    predictions (B, 4 + nc, N_views) in `x`'s pixels."""
    height, width = x.shape[-2:]
    gs = max(strides)
    merged = []
    for k, (scale, flipped) in enumerate(TTA_VIEWS):
        view = scale_img(x.flip(-1) if flipped else x, scale, gs=gs)
        pred = to_original_frame(forward(view), scale, flipped, width)
        sizes = level_sizes(*view.shape[-2:], strides)
        if k == 0:
            pred = pred[..., : pred.shape[-1] - sizes[-1]]  # the full-size view without its coarsest level
        elif k == len(TTA_VIEWS) - 1:
            pred = pred[..., sizes[0]:]  # the smallest view without its finest level
        merged.append(pred)
    return torch.cat(merged, -1)
