"""Image + box augmentations for training, and the letterbox shared by training, validation and prediction.

Every transform maps a labels dict to a labels dict: `img` (H, W, 3) uint8 BGR, `cls` (n, 1) float32, `bboxes`
(n, 4) float32 pixel xyxy on the current image, plus bookkeeping (`im_file`, `ori_shape`, `resized_shape`,
`ratio_pad`). `Format` turns the dict into a batch item (RGB CHW tensor, normalised xywh boxes).

Randomness: the random transforms draw only from the `random.Random` they are given. A dataset hands one
generator to all its transforms and reseeds it per worker and epoch (see `data.build`); a transform built
without one gets its own, seeded by the OS. The samplers (`sample_warp`, `sample_hsv_gains`,
`sample_mosaic_centre`, `coin`) are plain functions so their ranges and distributions can be tested.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

import cv2
import numpy as np
import torch

from ultralytics.cfg import DEFAULT_CFG_DICT
from ultralytics.utils.ops import LetterboxLayout, clip_boxes, letterbox_layout, xyxy2xywhn

PAD_VALUE = 114  # grey of letterbox padding and of the area a warp uncovers
_GREY = (PAD_VALUE,) * 3
MIXUP_BETA = 32.0  # mixup ratio ~ Beta(32, 32): close to an even blend


def _yaml_default(key: str) -> Any:
    return field(default=float(DEFAULT_CFG_DICT[key]))


@dataclass(frozen=True)
class AugmentParams:
    """The augmentation hyperparameters of a run; field names and defaults are those of cfg/default.yaml."""

    hsv_h: float = _yaml_default("hsv_h")  # hue gain range, ±fraction
    hsv_s: float = _yaml_default("hsv_s")  # saturation gain range, ±fraction
    hsv_v: float = _yaml_default("hsv_v")  # value gain range, ±fraction
    degrees: float = _yaml_default("degrees")  # rotation range, ±degrees
    translate: float = _yaml_default("translate")  # translation range, ±fraction of the output size
    scale: float = _yaml_default("scale")  # zoom range, 1 ± scale
    shear: float = _yaml_default("shear")  # shear range, ±degrees (x and y)
    perspective: float = _yaml_default("perspective")  # perspective coefficient range, ±value
    flipud: float = _yaml_default("flipud")  # probability of an up-down flip
    fliplr: float = _yaml_default("fliplr")  # probability of a left-right flip
    mosaic: float = _yaml_default("mosaic")  # probability of a 4-image mosaic
    mixup: float = _yaml_default("mixup")  # probability of mixup

    def __post_init__(self) -> None:
        for f in fields(self):  # the ranges are symmetric, so their sign does not matter
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise TypeError(f"augmentation parameter {f.name} must be a finite number, got {value!r}")
        for name in ("flipud", "fliplr", "mosaic", "mixup"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")

    @classmethod
    def from_cfg(cls, cfg: Any) -> AugmentParams:
        """Read the fields from a run config (the namespace of `ultralytics.cfg.get_cfg`, or a view of it)."""
        missing = [f.name for f in fields(cls) if not hasattr(cfg, f.name)]
        if missing:
            raise AttributeError(f"config lacks augmentation keys {missing}; pass the run config from "
                                 "ultralytics.cfg.get_cfg (it holds every key of default.yaml)")
        return cls(**{f.name: float(getattr(cfg, f.name)) for f in fields(cls)})

    def without_mosaic(self) -> AugmentParams:
        """A copy with mosaic and mixup off (the last `close_mosaic` epochs)."""
        return replace(self, mosaic=0.0, mixup=0.0)


class LabelTransform(Protocol):
    """Anything mapping a labels dict to a labels dict."""

    def __call__(self, labels: dict) -> dict: ...


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: list[LabelTransform]):
        self.transforms = list(transforms)

    def __call__(self, labels: dict) -> dict:
        for t in self.transforms:
            labels = t(labels)
        return labels


# ------------------------------------------------------------------------------------------------ samplers
@dataclass(frozen=True)
class WarpDraw:
    """One random draw of the warp parameters."""

    angle: float  # degrees, counter-clockwise
    scale: float  # zoom factor
    shear: tuple[float, float]  # degrees along x and y
    translate: tuple[float, float]  # offset of the image centre from the output centre, fraction of output w, h
    perspective: tuple[float, float]  # coefficients of x and y in the projective row


def _sym(rng: random.Random, limit: float) -> float:
    """Uniform on [-limit, limit]."""
    return rng.uniform(-limit, limit)


def sample_warp(rng: random.Random, degrees: float = 0.0, translate: float = 0.1, scale: float = 0.5,
                shear: float = 0.0, perspective: float = 0.0) -> WarpDraw:
    """Draw every warp parameter uniformly from its symmetric range (scale from [1 - scale, 1 + scale])."""
    return WarpDraw(
        translate=(_sym(rng, translate), _sym(rng, translate)),
        scale=1.0 + _sym(rng, scale),
        angle=_sym(rng, degrees),
        shear=(_sym(rng, shear), _sym(rng, shear)),
        perspective=(_sym(rng, perspective), _sym(rng, perspective)),
    )


def sample_hsv_gains(rng: random.Random, hgain: float, sgain: float, vgain: float) -> np.ndarray:
    """Multiplicative (hue, saturation, value) gains, each uniform on [1 - gain, 1 + gain]."""
    return np.array([1.0 + _sym(rng, g) for g in (hgain, sgain, vgain)])


def sample_mosaic_centre(rng: random.Random, imgsz: int) -> tuple[int, int]:
    """Integer (x, y) of the mosaic centre on the 2·imgsz canvas, uniform over [imgsz/2, 3·imgsz/2)."""
    lo, hi = imgsz // 2, 2 * imgsz - imgsz // 2
    return int(rng.uniform(lo, hi)), int(rng.uniform(lo, hi))


def coin(rng: random.Random, p: float) -> bool:
    """True with probability p (never for p <= 0, always for p >= 1)."""
    return p > 0 and rng.random() < p


# ------------------------------------------------------------------------------------------------ 3x3 warps
def translation_matrix(dx: float, dy: float) -> np.ndarray:
    """Homogeneous shift by (dx, dy)."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def rotation_scale_matrix(angle: float, scale: float) -> np.ndarray:
    """Zoom by `scale` and rotate by `angle` degrees about the origin; positive turns counter-clockwise on screen."""
    c, s = scale * math.cos(math.radians(angle)), scale * math.sin(math.radians(angle))
    return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


def shear_matrix(x_deg: float, y_deg: float) -> np.ndarray:
    """Shear x by tan(x_deg)·y and y by tan(y_deg)·x."""
    return np.array([[1.0, math.tan(math.radians(x_deg)), 0.0], [math.tan(math.radians(y_deg)), 1.0, 0.0],
                     [0.0, 0.0, 1.0]])


def perspective_matrix(px: float, py: float) -> np.ndarray:
    """Projective warp whose homogeneous weight is 1 + px·x + py·y."""
    return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [px, py, 1.0]])


def warp_matrix(draw: WarpDraw, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """Matrix taking input pixels to output pixels: about the input centre apply perspective, then rotation +
    zoom, then shear, and put the centre at the output centre shifted by `draw.translate`."""
    (h, w), (out_h, out_w) = in_hw, out_hw
    to_origin = translation_matrix(-w / 2, -h / 2)
    to_output = translation_matrix((0.5 + draw.translate[0]) * out_w, (0.5 + draw.translate[1]) * out_h)
    return (to_output @ shear_matrix(*draw.shear) @ rotation_scale_matrix(draw.angle, draw.scale)
            @ perspective_matrix(*draw.perspective) @ to_origin)


# ------------------------------------------------------------------------------------------------ boxes
def transform_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Axis-aligned (n, 4) xyxy hull of each box's four corners mapped through the 3x3 `matrix`."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    xs, ys = boxes[:, [0, 2, 2, 0]], boxes[:, [1, 1, 3, 3]]  # corners clockwise from the top left
    pts = np.stack([xs, ys, np.ones_like(xs)], -1) @ matrix.T  # (n, 4, 3)
    xy = pts[..., :2] / pts[..., 2:]
    return np.concatenate([xy.min(1), xy.max(1)], 1)


def keep_warped_boxes(before: np.ndarray, after: np.ndarray, min_side: float = 2.0, min_area_ratio: float = 0.1,
                      max_aspect: float = 100.0) -> np.ndarray:
    """Mask of the (n, 4) xyxy boxes `after` worth keeping, given the same boxes `before` (zoomed to the new scale).

    A kept box is wider and taller than `min_side` px, keeps more than `min_area_ratio` of its area and has an
    aspect ratio (long / short side) below `max_aspect`.
    """
    wh0 = before[:, 2:4] - before[:, 0:2]
    wh1 = after[:, 2:4] - after[:, 0:2]
    with np.errstate(divide="ignore", invalid="ignore"):
        area_ratio = wh1.prod(1) / wh0.prod(1)
        aspect = wh1.max(1) / wh1.min(1)
    return (wh1 > min_side).all(1) & (area_ratio > min_area_ratio) & (aspect < max_aspect)


# ------------------------------------------------------------------------------------------------ letterbox
def _square(shape: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    return (int(shape), int(shape)) if isinstance(shape, (int, np.integer)) else (int(shape[0]), int(shape[1]))


class LetterBox:
    """Resize keeping the aspect ratio and pad with grey 114 to `new_shape` (h, w); a `rect_shape` label wins.

    Records `ratio_pad` ((gain_h, gain_w), (pad_left, pad_top)) relative to the original image: the gain of each
    axis is its resized side / original side (so the rounding of the resized size is undone exactly by
    `ultralytics.utils.ops.scale_boxes`), composed with an incoming `ratio_pad`. See `letterbox_layout` for auto,
    scaleup and center.
    """

    def __init__(self, new_shape: int | tuple[int, int] = (640, 640), auto: bool = False, scaleup: bool = True,
                 center: bool = True, stride: int = 32):
        self.new_shape = _square(new_shape)
        self.auto, self.scaleup, self.center, self.stride = auto, scaleup, center, int(stride)

    def __call__(self, labels: dict) -> dict:
        img = labels["img"]
        h, w = img.shape[:2]
        layout = letterbox_layout((h, w), _square(labels.pop("rect_shape", self.new_shape)), self.auto,
                                  self.scaleup, self.center, self.stride)
        (rh, rw), (top, bottom, left, right) = layout.size, layout.pad
        if (rh, rw) != (h, w):
            img = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR)
        img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=_GREY)
        boxes = labels["bboxes"].astype(np.float64).reshape(-1, 4)
        boxes = boxes * [rw / w, rh / h, rw / w, rh / h] + [left, top, left, top]
        # rounding of the resized size must not push a box past the image it belongs to
        boxes = boxes.clip([left, top, left, top], [left + rw, top + rh, left + rw, top + rh])
        gain_h, gain_w = labels.get("ratio_pad", ((1.0, 1.0), (0, 0)))[0]
        gains = (gain_h * rh / h, gain_w * rw / w)
        labels.update(img=img, bboxes=boxes.astype(np.float32), ratio_pad=(gains, (left, top)))
        return labels


# ------------------------------------------------------------------------------------------------ mosaic
def tile_origin(centre: tuple[int, int], tile_hw: tuple[int, int], quadrant: int) -> tuple[int, int]:
    """Canvas (x, y) of a tile's top-left pixel when its inner corner touches `centre`.

    Quadrants 0..3 are top-left, top-right, bottom-left, bottom-right of the centre.
    """
    (xc, yc), (h, w) = centre, tile_hw
    right, below = quadrant % 2 == 1, quadrant >= 2
    return (xc if right else xc - w), (yc if below else yc - h)


def paste(canvas: np.ndarray, img: np.ndarray, origin: tuple[int, int]) -> None:
    """Copy `img` onto `canvas` with its top-left pixel at `origin` (x, y), dropping what falls outside."""
    x0, y0 = origin
    H, W = canvas.shape[:2]
    h, w = img.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if cx1 > cx0 and cy1 > cy0:
        canvas[cy0:cy1, cx0:cx1] = img[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]


class Mosaic:
    """With probability p, tile the image and 3 random dataset images around a random centre of a 2·imgsz canvas.

    The output carries `warp_out_shape` (imgsz, imgsz), so the following RandomPerspective crops it back to imgsz.
    `dataset` needs `__len__` and `get_image_and_label(i)`.
    """

    def __init__(self, dataset: Any, imgsz: int = 640, p: float = 1.0, rng: random.Random | None = None):
        self.dataset, self.imgsz, self.p = dataset, imgsz, p
        self.rng = rng if rng is not None else random.Random()

    def __call__(self, labels: dict) -> dict:
        if not coin(self.rng, self.p):
            return labels
        others = [self.dataset.get_image_and_label(self.rng.randrange(len(self.dataset))) for _ in range(3)]
        centre = sample_mosaic_centre(self.rng, self.imgsz)
        side = 2 * self.imgsz
        canvas = np.full((side, side, 3), PAD_VALUE, dtype=np.uint8)
        boxes = []
        for quadrant, tile in enumerate([labels, *others]):
            x0, y0 = tile_origin(centre, tile["img"].shape[:2], quadrant)
            paste(canvas, tile["img"], (x0, y0))
            boxes.append(tile["bboxes"].reshape(-1, 4) + np.array([x0, y0, x0, y0], np.float32))
        out = {k: v for k, v in labels.items() if k not in {"img", "cls", "bboxes", "rect_shape"}}
        out.update(img=canvas, cls=np.concatenate([t["cls"].reshape(-1, 1) for t in [labels, *others]]),
                   bboxes=clip_boxes(np.concatenate(boxes), (side, side)).astype(np.float32),
                   resized_shape=(side, side), warp_out_shape=(self.imgsz, self.imgsz))
        return out


# ------------------------------------------------------------------------------------------------ warp
class RandomPerspective:
    """One random warp (rotation, zoom, shear, perspective, translation) of image and boxes; drops spoilt boxes.

    The output has the size given by a `warp_out_shape` label (set by Mosaic); without it the image first goes
    through `pre_transform` (e.g. a square LetterBox) and keeps its size.
    """

    def __init__(self, degrees: float = 0.0, translate: float = 0.1, scale: float = 0.5, shear: float = 0.0,
                 perspective: float = 0.0, pre_transform: LabelTransform | None = None,
                 rng: random.Random | None = None):
        self.degrees, self.translate, self.scale = degrees, translate, scale
        self.shear, self.perspective = shear, perspective
        self.pre_transform = pre_transform
        self.rng = rng if rng is not None else random.Random()

    def sample(self) -> WarpDraw:
        """A warp draw from this transform's ranges."""
        return sample_warp(self.rng, self.degrees, self.translate, self.scale, self.shear, self.perspective)

    def __call__(self, labels: dict) -> dict:
        if self.pre_transform is not None and "warp_out_shape" not in labels:
            labels = self.pre_transform(labels)
        img = labels["img"]
        in_hw = img.shape[:2]
        out_h, out_w = labels.pop("warp_out_shape", in_hw)
        draw = self.sample()
        matrix = warp_matrix(draw, in_hw, (out_h, out_w))
        if (out_h, out_w) != in_hw or not np.array_equal(matrix, np.eye(3)):
            if self.perspective:
                img = cv2.warpPerspective(img, matrix, dsize=(out_w, out_h), borderValue=_GREY)
            else:
                img = cv2.warpAffine(img, matrix[:2], dsize=(out_w, out_h), borderValue=_GREY)
        boxes, cls = labels["bboxes"].reshape(-1, 4), labels["cls"].reshape(-1, 1)
        if len(boxes):
            warped = clip_boxes(transform_boxes(boxes, matrix), (out_h, out_w))
            keep = keep_warped_boxes(boxes * draw.scale, warped)
            boxes, cls = warped[keep], cls[keep]
        labels.update(img=img, bboxes=boxes.astype(np.float32), cls=cls)
        return labels


# ------------------------------------------------------------------------------------------------ blends, colour, flips
class MixUp:
    """With probability p, blend with another (pre-transformed) dataset image at a Beta(32, 32) ratio; keeps all
    boxes."""

    def __init__(self, dataset: Any, pre_transform: LabelTransform | None = None, p: float = 0.0,
                 rng: random.Random | None = None):
        self.dataset, self.pre_transform, self.p = dataset, pre_transform, p
        self.rng = rng if rng is not None else random.Random()

    def __call__(self, labels: dict) -> dict:
        if not coin(self.rng, self.p):
            return labels
        other = self.dataset.get_image_and_label(self.rng.randrange(len(self.dataset)))
        if self.pre_transform is not None:
            other = self.pre_transform(other)
        ratio = self.rng.betavariate(MIXUP_BETA, MIXUP_BETA)
        blend = ratio * labels["img"].astype(np.float32) + (1 - ratio) * other["img"].astype(np.float32)
        labels["img"] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
        labels["cls"] = np.concatenate([labels["cls"], other["cls"]], 0)
        labels["bboxes"] = np.concatenate([labels["bboxes"], other["bboxes"]], 0)
        return labels


def apply_hsv_gains(img: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """BGR image with hue (cyclic, 180 steps), saturation and value multiplied by `gains` (the last two clipped)."""
    levels = np.arange(256, dtype=np.float64)
    tables = [(levels * gains[0]) % 180, np.clip(levels * gains[1], 0, 255), np.clip(levels * gains[2], 0, 255)]
    channels = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    hsv = cv2.merge([cv2.LUT(ch, t.astype(np.uint8)) for ch, t in zip(channels, tables)])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


class RandomHSV:
    """Random hue/saturation/value gains in [1 - g, 1 + g]; boxes untouched. All gains 0 is a no-op."""

    def __init__(self, hgain: float = 0.5, sgain: float = 0.5, vgain: float = 0.5, rng: random.Random | None = None):
        self.hgain, self.sgain, self.vgain = hgain, sgain, vgain
        self.rng = rng if rng is not None else random.Random()

    def __call__(self, labels: dict) -> dict:
        if self.hgain or self.sgain or self.vgain:
            gains = sample_hsv_gains(self.rng, self.hgain, self.sgain, self.vgain)
            labels["img"] = apply_hsv_gains(labels["img"], gains)
        return labels


class RandomFlip:
    """Flip image and boxes left-right (`horizontal`) or up-down (`vertical`) with probability p."""

    def __init__(self, p: float = 0.5, direction: str = "horizontal", rng: random.Random | None = None):
        if direction not in {"horizontal", "vertical"}:
            raise ValueError(f"direction must be 'horizontal' or 'vertical', got {direction!r}")
        self.p, self.direction = p, direction
        self.rng = rng if rng is not None else random.Random()

    def __call__(self, labels: dict) -> dict:
        if not coin(self.rng, self.p):
            return labels
        axis = 1 if self.direction == "horizontal" else 0
        img = np.ascontiguousarray(np.flip(labels["img"], axis))
        size = img.shape[axis]  # width for a horizontal flip, height for a vertical one
        lo, hi = (0, 2) if axis == 1 else (1, 3)
        boxes = labels["bboxes"].copy()
        boxes[:, [lo, hi]] = size - labels["bboxes"][:, [hi, lo]]
        labels.update(img=img, bboxes=boxes)
        return labels


class Format:
    """Labels dict → batch item: `img` uint8 (3, H, W) RGB tensor, `cls` (n, 1), `bboxes` (n, 4) normalised xywh."""

    def __call__(self, labels: dict) -> dict:
        img = labels["img"]
        h, w = img.shape[:2]
        boxes = labels["bboxes"].reshape(-1, 4).astype(np.float32)
        xywhn = xyxy2xywhn(boxes, w=w, h=h, clip=True) if len(boxes) else boxes
        rgb_chw = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))
        return {
            "img": torch.from_numpy(rgb_chw),
            "cls": torch.from_numpy(labels["cls"].reshape(-1, 1).astype(np.float32)),
            "bboxes": torch.from_numpy(np.ascontiguousarray(xywhn, dtype=np.float32)),
            "batch_idx": torch.zeros(len(boxes)),
            "im_file": labels.get("im_file", ""),
            "ori_shape": tuple(labels.get("ori_shape", (h, w))),
            "resized_shape": tuple(labels.get("resized_shape", (h, w))),
            "ratio_pad": labels.get("ratio_pad", ((1.0, 1.0), (0, 0))),
        }


# ------------------------------------------------------------------------------------------------ pipelines
def train_transforms(dataset: Any, imgsz: int, hyp: AugmentParams, rect: bool = False,
                     rng: random.Random | None = None) -> Compose:
    """Training pipeline: (mosaic → warp) [→ mixup with another such] → HSV → flip up-down → flip left-right
    → Format.

    With rect=True mosaic and mixup are off and each image is letterboxed to its batch's `rect_shape`. All random
    transforms share `rng`.
    """
    rng = rng if rng is not None else random.Random()
    warp = RandomPerspective(hyp.degrees, hyp.translate, hyp.scale, hyp.shear, hyp.perspective,
                             pre_transform=LetterBox((imgsz, imgsz), scaleup=False), rng=rng)
    mosaic_then_warp = Compose([Mosaic(dataset, imgsz, p=0.0 if rect else hyp.mosaic, rng=rng), warp])
    return Compose([
        mosaic_then_warp,
        MixUp(dataset, pre_transform=mosaic_then_warp, p=0.0 if rect else hyp.mixup, rng=rng),
        RandomHSV(hyp.hsv_h, hyp.hsv_s, hyp.hsv_v, rng=rng),
        RandomFlip(hyp.flipud, "vertical", rng=rng),
        RandomFlip(hyp.fliplr, "horizontal", rng=rng),
        Format(),
    ])


def val_transforms(imgsz: int) -> Compose:
    """Validation pipeline: centred grey letterbox to imgsz (or the batch's `rect_shape`), never enlarging."""
    return Compose([LetterBox((imgsz, imgsz), scaleup=False), Format()])
