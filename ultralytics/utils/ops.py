"""Pure box operations on tensors and arrays (formats, clipping, rescaling), in the style of torchvision.ops."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

Boxes = "torch.Tensor | np.ndarray"


def _empty_like(x):
    return x.clone() if isinstance(x, torch.Tensor) else np.copy(x)


def xywh2xyxy(x):
    """(cx, cy, w, h) → (x1, y1, x2, y2); works on the last dimension of tensors or arrays."""
    y = _empty_like(x)
    half_w, half_h = x[..., 2] / 2, x[..., 3] / 2
    y[..., 0] = x[..., 0] - half_w
    y[..., 1] = x[..., 1] - half_h
    y[..., 2] = x[..., 0] + half_w
    y[..., 3] = x[..., 1] + half_h
    return y


def xyxy2xywh(x):
    """(x1, y1, x2, y2) → (cx, cy, w, h)."""
    y = _empty_like(x)
    y[..., 0] = (x[..., 0] + x[..., 2]) / 2
    y[..., 1] = (x[..., 1] + x[..., 3]) / 2
    y[..., 2] = x[..., 2] - x[..., 0]
    y[..., 3] = x[..., 3] - x[..., 1]
    return y


def xywhn2xyxy(x, w: float = 640, h: float = 640, padw: float = 0, padh: float = 0):
    """Normalised (cx, cy, w, h) → pixel (x1, y1, x2, y2), shifted by the padding."""
    y = xywh2xyxy(x)
    y[..., [0, 2]] = y[..., [0, 2]] * w + padw
    y[..., [1, 3]] = y[..., [1, 3]] * h + padh
    return y


def xyxy2xywhn(x, w: float = 640, h: float = 640, clip: bool = False, eps: float = 0.0):
    """Pixel (x1, y1, x2, y2) → normalised (cx, cy, w, h), optionally clipping to the image first."""
    if clip:
        x = clip_boxes(_empty_like(x), (h - eps, w - eps))
    y = xyxy2xywh(x)
    y[..., [0, 2]] = y[..., [0, 2]] / w
    y[..., [1, 3]] = y[..., [1, 3]] / h
    return y


def ltwh2xywh(x):
    """(left, top, w, h) → (cx, cy, w, h)."""
    y = _empty_like(x)
    y[..., 0] = x[..., 0] + x[..., 2] / 2
    y[..., 1] = x[..., 1] + x[..., 3] / 2
    return y


def xywh2ltwh(x):
    """(cx, cy, w, h) → (left, top, w, h)."""
    y = _empty_like(x)
    y[..., 0] = x[..., 0] - x[..., 2] / 2
    y[..., 1] = x[..., 1] - x[..., 3] / 2
    return y


def ltwh2xyxy(x):
    """(left, top, w, h) → (x1, y1, x2, y2)."""
    y = _empty_like(x)
    y[..., 2] = x[..., 0] + x[..., 2]
    y[..., 3] = x[..., 1] + x[..., 3]
    return y


def xyxy2ltwh(x):
    """(x1, y1, x2, y2) → (left, top, w, h)."""
    y = _empty_like(x)
    y[..., 2] = x[..., 2] - x[..., 0]
    y[..., 3] = x[..., 3] - x[..., 1]
    return y


def clip_boxes(boxes, shape: tuple[int, int]):
    """Clip xyxy boxes in place to an image of shape (h, w) and return them."""
    h, w = shape[:2]
    if isinstance(boxes, torch.Tensor):
        boxes[..., 0].clamp_(0, w)
        boxes[..., 1].clamp_(0, h)
        boxes[..., 2].clamp_(0, w)
        boxes[..., 3].clamp_(0, h)
    else:
        boxes[..., [0, 2]] = boxes[..., [0, 2]].clip(0, w)
        boxes[..., [1, 3]] = boxes[..., [1, 3]].clip(0, h)
    return boxes


@dataclass(frozen=True)
class LetterboxLayout:
    """Where a resized image sits in a letterboxed one."""

    gain: float  # resize factor
    size: tuple[int, int]  # (h, w) after resizing
    pad: tuple[int, int, int, int]  # grey pixels added: top, bottom, left, right


def letterbox_layout(hw: tuple[int, int], new_shape: tuple[int, int], auto: bool = False, scaleup: bool = True,
                     center: bool = True, stride: int = 32) -> LetterboxLayout:
    """Fit an (h, w) image into `new_shape` (h, w) keeping its aspect ratio.

    auto=True pads only up to the next multiple of `stride`; scaleup=False never enlarges; center=False puts all
    padding right and bottom (centred padding gives the extra odd pixel to the right/bottom).
    """
    (h, w), (new_h, new_w) = hw, new_shape
    gain = min(new_h / h, new_w / w)
    if not scaleup:
        gain = min(gain, 1.0)
    rh, rw = max(1, round(h * gain)), max(1, round(w * gain))
    extra_h, extra_w = new_h - rh, new_w - rw
    if auto:
        extra_h, extra_w = extra_h % stride, extra_w % stride
    top, left = (extra_h // 2, extra_w // 2) if center else (0, 0)
    return LetterboxLayout(gain, (rh, rw), (top, extra_h - top, left, extra_w - left))


def scale_boxes(img1_shape, boxes, img0_shape, ratio_pad=None, padding: bool = True):
    """Map xyxy boxes (in place) from a letterboxed image of shape img1_shape back to the original img0_shape and
    clip them to it.

    ratio_pad is ((gain_h, gain_w), (pad_w, pad_h)) as the letterbox recorded it; without it the geometry is
    rebuilt from the two shapes by `letterbox_layout`, the function the letterbox itself uses (centred, SPEC §6:
    resized sides rounded, per-axis gain = resized / original, pad = round((input − resized) / 2 − 0.1)). x is
    divided by the width gain and y by the height gain.
    """
    if ratio_pad is None:  # the letterbox that made img1_shape from img0_shape, by the same function
        layout = letterbox_layout(tuple(img0_shape[:2]), tuple(img1_shape[:2]))
        ratio_pad = ((layout.size[0] / img0_shape[0], layout.size[1] / img0_shape[1]), (layout.pad[2], layout.pad[0]))
    (gain_h, gain_w), (pad_w, pad_h) = ratio_pad
    if padding:
        boxes[..., [0, 2]] -= pad_w
        boxes[..., [1, 3]] -= pad_h
    boxes[..., [0, 2]] /= gain_w
    boxes[..., [1, 3]] /= gain_h
    return clip_boxes(boxes, img0_shape)


def make_divisible(x: float, divisor: int) -> int:
    """Smallest multiple of `divisor` that is >= x."""
    if isinstance(divisor, torch.Tensor):
        divisor = int(divisor.max())
    return int(math.ceil(x / divisor) * divisor)


def non_max_suppression(prediction, conf_thres: float = 0.25, iou_thres: float = 0.45, classes=None,
                        agnostic: bool = False, max_det: int = 300, multi_label: bool = False,
                        max_nms: int = 30000, max_wh: float = 7680.0) -> list[torch.Tensor]:
    """Per-image NMS of the eval output (B, 4 + nc, anchors) of Detect (xywh pixels, class scores).

    Returns a list of (n, 6) tensors [x1, y1, x2, y2, conf, cls], best first, at most `max_det` rows.
    `multi_label` keeps every class above `conf_thres` for a box (validation), else only its best class.
    `classes` keeps only those class ids; `agnostic` runs one NMS over all classes. The top `max_nms`
    candidates by confidence enter torchvision's batched_nms. (`max_wh` is kept for API compatibility.)
    """
    import torchvision

    if isinstance(prediction, (list, tuple)):  # (y, raw) from an eval-mode forward
        prediction = prediction[0]
    if not 0 <= conf_thres <= 1 or not 0 <= iou_thres <= 1:
        raise ValueError(f"conf_thres={conf_thres} and iou_thres={iou_thres} must lie in [0, 1]")
    nc = prediction.shape[1] - 4
    keep_cls = None if classes is None else torch.as_tensor(classes, device=prediction.device).view(-1)
    output = []
    for x in prediction.transpose(1, 2):  # (anchors, 4 + nc) per image
        boxes, scores = xywh2xyxy(x[:, :4]), x[:, 4:4 + nc]
        if multi_label and nc > 1:
            i, j = (scores > conf_thres).nonzero(as_tuple=True)
            boxes, conf, cls = boxes[i], scores[i, j], j
        else:
            conf, cls = scores.max(1)
            m = conf > conf_thres
            boxes, conf, cls = boxes[m], conf[m], cls[m]
        if keep_cls is not None:
            m = (cls.view(-1, 1) == keep_cls).any(1)
            boxes, conf, cls = boxes[m], conf[m], cls[m]
        if conf.numel() > max_nms:
            top = conf.topk(max_nms).indices
            boxes, conf, cls = boxes[top], conf[top], cls[top]
        groups = torch.zeros_like(cls) if agnostic else cls
        idx = torchvision.ops.batched_nms(boxes.float(), conf.float(), groups, iou_thres)[:max_det]
        output.append(torch.cat((boxes[idx], conf[idx, None], cls[idx, None].to(boxes.dtype)), 1))
    return output
