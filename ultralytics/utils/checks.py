"""Checks of run settings that need the model: the image size against the model's stride."""

from __future__ import annotations

import math

from ultralytics.errors import ConfigError
from ultralytics.utils import LOGGER


def _stride_multiple(side: int, stride: int) -> int:
    return max(stride, math.ceil(side / stride) * stride)


def check_imgsz(imgsz: int | list[int] | tuple[int, ...], stride: int = 32, *, square: bool = False
                ) -> int | list[int]:
    """The one place an image size is checked and rounded, for train, val, predict and export alike.

    `imgsz` is an int or an [h, w] (or [s]) list from the config. Each side is rounded up to a multiple of `stride`
    (at least one stride), with a warning when that changes it. With `square=True` (training and validation, whose
    batches are letterboxed to one size) the result is one int (the larger side, with a warning for an [h, w]);
    otherwise it is [h, w].
    """
    sides = [imgsz] if isinstance(imgsz, (int, float)) else list(imgsz)
    if not 1 <= len(sides) <= 2 or any(isinstance(s, bool) or not isinstance(s, (int, float)) or s <= 0 for s in sides):
        raise ConfigError(f"imgsz={imgsz!r} is not valid; give a positive int or [h, w], e.g. imgsz=640")
    sides = [int(s) for s in sides] * (2 if len(sides) == 1 else 1)
    if square:
        if sides[0] != sides[1]:
            LOGGER.warning(f"WARNING ⚠️ imgsz={list(imgsz)} is not square; this mode uses imgsz={max(sides)}")
        side = max(sides)
        rounded = _stride_multiple(side, stride)
        if rounded != side:
            LOGGER.warning(f"WARNING ⚠️ imgsz={side} must be a multiple of the max stride {stride}; using {rounded}")
        return rounded
    rounded_hw = [_stride_multiple(s, stride) for s in sides]
    if rounded_hw != sides:
        LOGGER.warning(f"WARNING ⚠️ imgsz={imgsz} must be a multiple of the max stride {stride}; using {rounded_hw}")
    return rounded_hw
