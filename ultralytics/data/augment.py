"""Image + box transforms for training and validation.

Every transform takes and returns a labels dict: `img` (H, W, 3) uint8 BGR, `cls` (n, 1) float32 and `bboxes`
(n, 4) float32 pixel xyxy in the current image, plus bookkeeping keys (`im_file`, `ori_shape`,
`resized_shape`, `ratio_pad`). `Format` turns it into the tensors of a batch item (normalised xywh, RGB CHW).
Randomness comes from Python's `random` and numpy's global generator, seeded per dataloader worker.
"""

from __future__ import annotations

import math
import random
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import torch

from ultralytics.utils.ops import clip_boxes, xyxy2xywhn

# SPEC §4 defaults for every key the data pipeline reads from a config namespace.
DEFAULT_HYP: dict[str, Any] = dict(
    imgsz=640, mosaic=1.0, mixup=0.0, degrees=0.0, translate=0.1, scale=0.5, shear=0.0, perspective=0.0,
    hsv_h=0.015, hsv_s=0.7, hsv_v=0.4, flipud=0.0, fliplr=0.5, cache=False, fraction=1.0, single_cls=False,
    rect=False, workers=8, seed=0, classes=None,
)
PAD_VALUE = 114


def resolve_hyp(cfg: Any = None, **overrides: Any) -> SimpleNamespace:
    """A private copy of the data hyperparameters: attributes of `cfg` (any object) or the SPEC defaults."""
    values = {k: getattr(cfg, k, v) if cfg is not None else v for k, v in DEFAULT_HYP.items()}
    values.update(overrides)
    return SimpleNamespace(**values)


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: list):
        self.transforms = list(transforms)

    def __call__(self, labels: dict) -> dict:
        for t in self.transforms:
            labels = t(labels)
        return labels


def box_candidates(box1: np.ndarray, box2: np.ndarray, wh_thr: float = 2, ar_thr: float = 100,
                   area_thr: float = 0.1, eps: float = 1e-16) -> np.ndarray:
    """Keep mask for boxes (4, n) xyxy before (box1, scaled) and after (box2) a transform.

    A box survives when it is at least `wh_thr` px wide and high, keeps more than `area_thr` of its
    area and its aspect ratio stays below `ar_thr`.
    """
    w1, h1 = box1[2] - box1[0], box1[3] - box1[1]
    w2, h2 = box2[2] - box2[0], box2[3] - box2[1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


class LetterBox:
    """Resize keeping the aspect ratio and pad with grey 114 to `new_shape` (h, w); `rect_shape` in labels wins.

    auto=True pads only to the next multiple of `stride`; scaleup=False never enlarges; center=False pads
    right/bottom only. Records ratio_pad ((gain, gain), (pad_w, pad_h)) relative to the original image.
    """

    def __init__(self, new_shape: int | tuple[int, int] = (640, 640), auto: bool = False, scaleup: bool = True,
                 center: bool = True, stride: int = 32):
        self.new_shape = (new_shape, new_shape) if isinstance(new_shape, int) else tuple(new_shape)
        self.auto, self.scaleup, self.center, self.stride = auto, scaleup, center, stride

    def __call__(self, labels: dict) -> dict:
        img = labels["img"]
        h, w = img.shape[:2]
        new_shape = labels.pop("rect_shape", self.new_shape)
        new_shape = (new_shape, new_shape) if isinstance(new_shape, int) else (int(new_shape[0]), int(new_shape[1]))
        r = min(new_shape[0] / h, new_shape[1] / w)
        if not self.scaleup:
            r = min(r, 1.0)
        nw, nh = max(1, round(w * r)), max(1, round(h * r))
        dw, dh = new_shape[1] - nw, new_shape[0] - nh
        if self.auto:
            dw, dh = dw % self.stride, dh % self.stride
        if self.center:
            left, top = dw // 2, dh // 2
        else:
            left, top = 0, 0
        right, bottom = dw - left, dh - top
        if (nw, nh) != (w, h):
            img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
        boxes = labels["bboxes"].astype(np.float64)
        if len(boxes):
            boxes[:, [0, 2]] = boxes[:, [0, 2]] * (nw / w) + left
            boxes[:, [1, 3]] = boxes[:, [1, 3]] * (nh / h) + top
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(left, left + nw)  # rounding must not push a box off the image
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(top, top + nh)
        gain = labels.get("ratio_pad", ((1.0, 1.0), (0, 0)))[0][0] * r
        labels.update(img=img, bboxes=boxes.astype(np.float32), ratio_pad=((gain, gain), (left, top)))
        return labels


class Mosaic:
    """Combine the image with 3 random dataset images on a 2·imgsz grey canvas around a random centre.

    The result keeps its `mosaic_border` (-imgsz/2, -imgsz/2) so RandomPerspective crops it back to imgsz.
    `dataset` needs `__len__` and `get_image_and_label(i)`.
    """

    def __init__(self, dataset: Any, imgsz: int = 640, p: float = 1.0):
        self.dataset, self.imgsz, self.p = dataset, imgsz, p
        self.border = (-imgsz // 2, -imgsz // 2)

    def __call__(self, labels: dict) -> dict:
        if self.p <= 0 or random.uniform(0, 1) > self.p:
            return labels
        s = self.imgsz
        others = [self.dataset.get_image_and_label(random.randint(0, len(self.dataset) - 1)) for _ in range(3)]
        yc, xc = (int(random.uniform(-b, 2 * s + b)) for b in self.border)
        canvas = np.full((2 * s, 2 * s, 3), PAD_VALUE, dtype=np.uint8)
        all_cls, all_boxes = [], []
        for i, lab in enumerate([labels, *others]):
            img = lab["img"]
            h, w = img.shape[:2]
            if i == 0:  # top left
                x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
                x1b, y1b, x2b, y2b = w - (x2a - x1a), h - (y2a - y1a), w, h
            elif i == 1:  # top right
                x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, 2 * s), yc
                x1b, y1b, x2b, y2b = 0, h - (y2a - y1a), min(w, x2a - x1a), h
            elif i == 2:  # bottom left
                x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(2 * s, yc + h)
                x1b, y1b, x2b, y2b = w - (x2a - x1a), 0, w, min(y2a - y1a, h)
            else:  # bottom right
                x1a, y1a, x2a, y2a = xc, yc, min(xc + w, 2 * s), min(2 * s, yc + h)
                x1b, y1b, x2b, y2b = 0, 0, min(w, x2a - x1a), min(y2a - y1a, h)
            canvas[y1a:y2a, x1a:x2a] = img[y1b:y2b, x1b:x2b]
            padw, padh = x1a - x1b, y1a - y1b
            all_boxes.append(lab["bboxes"] + np.array([padw, padh, padw, padh], dtype=np.float32))
            all_cls.append(lab["cls"])
        boxes = clip_boxes(np.concatenate(all_boxes, 0), (2 * s, 2 * s))
        out = {k: v for k, v in labels.items() if k not in {"img", "cls", "bboxes", "rect_shape"}}
        out.update(img=canvas, cls=np.concatenate(all_cls, 0), bboxes=boxes.astype(np.float32),
                   mosaic_border=self.border, resized_shape=(2 * s, 2 * s))
        return out


class RandomPerspective:
    """Random rotation, scale, shear, perspective and translation (one 3x3 warp), with box clipping + filtering.

    Without a `mosaic_border` in labels the image first goes through `pre_transform` (a square LetterBox)
    and the output keeps its size; after a mosaic the border crops the 2·imgsz canvas to imgsz.
    """

    def __init__(self, degrees: float = 0.0, translate: float = 0.1, scale: float = 0.5, shear: float = 0.0,
                 perspective: float = 0.0, border: tuple[int, int] = (0, 0), pre_transform: Any = None):
        self.degrees, self.translate, self.scale = degrees, translate, scale
        self.shear, self.perspective, self.border = shear, perspective, border
        self.pre_transform = pre_transform

    def _matrix(self, h: int, w: int, out_h: int, out_w: int) -> tuple[np.ndarray, float]:
        C = np.eye(3, dtype=np.float32)
        C[0, 2], C[1, 2] = -w / 2, -h / 2  # move the image centre to the origin
        P = np.eye(3, dtype=np.float32)
        P[2, 0] = random.uniform(-self.perspective, self.perspective)
        P[2, 1] = random.uniform(-self.perspective, self.perspective)
        R = np.eye(3, dtype=np.float32)
        angle = random.uniform(-self.degrees, self.degrees)
        s = random.uniform(1 - self.scale, 1 + self.scale)
        R[:2] = cv2.getRotationMatrix2D(angle=angle, center=(0, 0), scale=s)
        S = np.eye(3, dtype=np.float32)
        S[0, 1] = math.tan(random.uniform(-self.shear, self.shear) * math.pi / 180)
        S[1, 0] = math.tan(random.uniform(-self.shear, self.shear) * math.pi / 180)
        T = np.eye(3, dtype=np.float32)
        T[0, 2] = random.uniform(0.5 - self.translate, 0.5 + self.translate) * out_w
        T[1, 2] = random.uniform(0.5 - self.translate, 0.5 + self.translate) * out_h
        return T @ S @ R @ P @ C, s

    def __call__(self, labels: dict) -> dict:
        if self.pre_transform is not None and "mosaic_border" not in labels:
            labels = self.pre_transform(labels)
        border = labels.pop("mosaic_border", self.border)
        img = labels["img"]
        h, w = img.shape[:2]
        out_h, out_w = h + 2 * border[0], w + 2 * border[1]
        M, s = self._matrix(h, w, out_h, out_w)
        if border[0] != 0 or border[1] != 0 or (M != np.eye(3)).any():
            if self.perspective:
                img = cv2.warpPerspective(img, M, dsize=(out_w, out_h), borderValue=(PAD_VALUE,) * 3)
            else:
                img = cv2.warpAffine(img, M[:2], dsize=(out_w, out_h), borderValue=(PAD_VALUE,) * 3)
        boxes, cls = labels["bboxes"], labels["cls"]
        n = len(boxes)
        if n:
            xy = np.ones((n * 4, 3), dtype=np.float32)
            xy[:, :2] = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)  # x1y1, x2y2, x1y2, x2y1
            xy = xy @ M.T
            xy = (xy[:, :2] / xy[:, 2:3] if self.perspective else xy[:, :2]).reshape(n, 8)
            x, y = xy[:, [0, 2, 4, 6]], xy[:, [1, 3, 5, 7]]
            new = np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], 1).astype(np.float32)
            new = clip_boxes(new, (out_h, out_w))
            keep = box_candidates(boxes.T * s, new.T)
            boxes, cls = new[keep], cls[keep]
        labels.update(img=img, bboxes=boxes.reshape(-1, 4).astype(np.float32), cls=cls.reshape(-1, 1))
        return labels


class MixUp:
    """Blend with another (pre-transformed) dataset image, ratio ~ Beta(32, 32); labels of both are kept."""

    def __init__(self, dataset: Any, pre_transform: Any = None, p: float = 0.0):
        self.dataset, self.pre_transform, self.p = dataset, pre_transform, p

    def __call__(self, labels: dict) -> dict:
        if self.p <= 0 or random.uniform(0, 1) > self.p:
            return labels
        other = self.dataset.get_image_and_label(random.randint(0, len(self.dataset) - 1))
        if self.pre_transform is not None:
            other = self.pre_transform(other)
        r = np.random.beta(32.0, 32.0)
        mixed = labels["img"].astype(np.float32) * r + other["img"].astype(np.float32) * (1 - r)
        labels["img"] = mixed.round().clip(0, 255).astype(np.uint8)
        labels["cls"] = np.concatenate([labels["cls"], other["cls"]], 0)
        labels["bboxes"] = np.concatenate([labels["bboxes"], other["bboxes"]], 0)
        return labels


class RandomHSV:
    """Random hue/saturation/value gains in [1 - g, 1 + g] applied through lookup tables; boxes untouched."""

    def __init__(self, hgain: float = 0.5, sgain: float = 0.5, vgain: float = 0.5):
        self.hgain, self.sgain, self.vgain = hgain, sgain, vgain

    def __call__(self, labels: dict) -> dict:
        if not (self.hgain or self.sgain or self.vgain):
            return labels
        img = labels["img"]
        r = np.random.uniform(-1, 1, 3) * [self.hgain, self.sgain, self.vgain] + 1
        hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
        x = np.arange(256, dtype=np.float32)
        lut_h = ((x * r[0]) % 180).astype(np.uint8)
        lut_s = np.clip(x * r[1], 0, 255).astype(np.uint8)
        lut_v = np.clip(x * r[2], 0, 255).astype(np.uint8)
        hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
        labels["img"] = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        return labels


class RandomFlip:
    """Flip image and boxes left-right (`horizontal`) or up-down (`vertical`) with probability p."""

    def __init__(self, p: float = 0.5, direction: str = "horizontal"):
        if direction not in {"horizontal", "vertical"}:
            raise ValueError(f"direction must be 'horizontal' or 'vertical', got {direction!r}")
        self.p, self.direction = p, direction

    def __call__(self, labels: dict) -> dict:
        if self.p <= 0 or random.uniform(0, 1) > self.p:
            return labels
        img = labels["img"]
        h, w = img.shape[:2]
        boxes = labels["bboxes"].copy()
        if self.direction == "horizontal":
            img = np.ascontiguousarray(img[:, ::-1])
            boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
        else:
            img = np.ascontiguousarray(img[::-1])
            boxes[:, [1, 3]] = h - boxes[:, [3, 1]]
        labels.update(img=img, bboxes=boxes)
        return labels


class Format:
    """Labels dict → batch item: `img` uint8 (3, H, W) RGB tensor, `cls` (n, 1), `bboxes` (n, 4) normalised xywh."""

    def __call__(self, labels: dict) -> dict:
        img = labels["img"]
        h, w = img.shape[:2]
        boxes = labels["bboxes"].reshape(-1, 4).astype(np.float32)
        xywhn = xyxy2xywhn(boxes, w=w, h=h, clip=True) if len(boxes) else boxes
        chw = np.ascontiguousarray(img.transpose(2, 0, 1)[::-1])  # HWC BGR → CHW RGB
        n = len(boxes)
        return {
            "img": torch.from_numpy(chw),
            "cls": torch.from_numpy(labels["cls"].reshape(-1, 1).astype(np.float32)),
            "bboxes": torch.from_numpy(np.ascontiguousarray(xywhn, dtype=np.float32)),
            "batch_idx": torch.zeros(n),
            "im_file": labels.get("im_file", ""),
            "ori_shape": tuple(labels.get("ori_shape", (h, w))),
            "resized_shape": tuple(labels.get("resized_shape", (h, w))),
            "ratio_pad": labels.get("ratio_pad", ((1.0, 1.0), (0, 0))),
        }


def train_transforms(dataset: Any, imgsz: int, hyp: SimpleNamespace, rect: bool = False) -> Compose:
    """The training pipeline: [Mosaic →] RandomPerspective → [MixUp] → HSV → flips → Format.

    With rect=True the mosaic is off and each image is letterboxed to its batch's `rect_shape`.
    """
    mosaic_p = 0.0 if rect else hyp.mosaic
    letterbox = LetterBox(new_shape=(imgsz, imgsz), scaleup=False)
    perspective = RandomPerspective(degrees=hyp.degrees, translate=hyp.translate, scale=hyp.scale, shear=hyp.shear,
                                    perspective=hyp.perspective, pre_transform=letterbox)
    pre = Compose([Mosaic(dataset, imgsz=imgsz, p=mosaic_p), perspective])
    return Compose([
        pre,
        MixUp(dataset, pre_transform=pre, p=0.0 if rect else hyp.mixup),
        RandomHSV(hgain=hyp.hsv_h, sgain=hyp.hsv_s, vgain=hyp.hsv_v),
        RandomFlip(p=hyp.flipud, direction="vertical"),
        RandomFlip(p=hyp.fliplr, direction="horizontal"),
        Format(),
    ])


def val_transforms(imgsz: int) -> Compose:
    """The validation pipeline: centred grey letterbox to imgsz (or the batch's rect_shape), never upscaling."""
    return Compose([LetterBox(new_shape=(imgsz, imgsz), scaleup=False), Format()])
