"""The offline default dataset: a deterministic generator of coloured shapes on cluttered backgrounds (YOLO format).

Five classes (circle, square, triangle, star, cross), 1-6 objects per image, each 12-45 % of the image side,
random rotation, limited overlap, on gradient / blotchy-noise / line-clutter backgrounds. Each class has its own
hue band (red, green, blue, yellow, magenta, jittered) with varied saturation and brightness: shape and colour
together make the classes learnable within minutes on a CPU, which is what the offline default run needs. Every image draws from its own seeded generator, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np

NAMES = {0: "circle", 1: "square", 2: "triangle", 3: "star", 4: "cross"}
SPLITS = {"train": 0, "val": 1}
SIZE_RANGE = (0.12, 0.45)  # object bbox side as a fraction of the image side
MAX_OBJECTS = 6
CLASS_HUES = {0: 0, 1: 60, 2: 120, 3: 30, 4: 150}  # OpenCV hue (0-180) of each class: red green blue yellow magenta
HUE_JITTER = 8
MAX_OVERLAP = 0.3  # intersection over the smaller box area allowed between two objects


def _unit_polygon(cls: int) -> np.ndarray:
    """Vertices (k, 2) of a shape centred at the origin, roughly of radius 1."""
    if cls == 1:  # square
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    if cls == 2:  # equilateral triangle
        a = np.deg2rad([-90, 30, 150])
        return np.stack([np.cos(a), np.sin(a)], 1)
    if cls == 3:  # five-pointed star
        a = np.deg2rad(np.arange(10) * 36 - 90)
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)
    if cls == 4:  # plus-shaped cross, bars one third as thick as long
        t = 1 / 3
        return np.array([[-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t], [t, 1], [-t, 1], [-t, t], [-1, t],
                         [-1, -t], [-t, -t]], dtype=np.float64)
    raise ValueError(f"no polygon for class {cls}")


def _shape_vertices(cls: int, cx: float, cy: float, side: float, angle: float) -> np.ndarray:
    """Polygon of class `cls` rotated by `angle` (rad), scaled so its bbox's longer side is `side`, centred."""
    p = _unit_polygon(cls)
    c, s = math.cos(angle), math.sin(angle)
    p = p @ np.array([[c, s], [-s, c]])
    p -= (p.min(0) + p.max(0)) / 2
    p *= side / (p.max(0) - p.min(0)).max()
    return p + [cx, cy]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A gradient, blotchy-noise or line-clutter background (uint8 BGR)."""
    kind = rng.integers(3)
    if kind == 0:  # linear gradient between two colours in a random direction
        c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        a = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
        t = ((xx - 0.5) * math.cos(a) + (yy - 0.5) * math.sin(a)) / math.sqrt(0.5) + 0.5
        img = c1 + np.clip(t, 0, 1)[..., None] * (c2 - c1)
    elif kind == 1:  # low-frequency colour blotches
        small = rng.integers(0, 256, (rng.integers(3, 9), rng.integers(3, 9), 3)).astype(np.float32)
        img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    else:  # flat colour with thin lines and small dots
        img = np.empty((size, size, 3), np.float64)
        img[:] = rng.integers(0, 256, 3)
        img = np.ascontiguousarray(img.astype(np.uint8))
        for _ in range(rng.integers(10, 30)):
            p1, p2 = rng.integers(0, size, 2), rng.integers(0, size, 2)
            cv2.line(img, tuple(int(v) for v in p1), tuple(int(v) for v in p2),
                     tuple(int(v) for v in rng.integers(0, 256, 3)), int(rng.integers(1, 3)), cv2.LINE_AA)
        for _ in range(rng.integers(10, 40)):
            cv2.circle(img, tuple(int(v) for v in rng.integers(0, size, 2)), int(rng.integers(1, 4)),
                       tuple(int(v) for v in rng.integers(0, 256, 3)), -1, cv2.LINE_AA)
    img = np.asarray(img, np.float64) + rng.normal(0, 6, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _colour(rng: np.random.Generator, cls: int, bg_mean: np.ndarray) -> tuple[int, int, int]:
    """A saturated colour in the class's hue band, far enough from the local background mean."""
    best, best_d = None, -1.0
    for _ in range(12):
        hue = (CLASS_HUES[cls] + int(rng.integers(-HUE_JITTER, HUE_JITTER + 1))) % 180
        hsv = np.array([[[hue, rng.integers(150, 256), rng.integers(140, 256)]]], np.uint8)
        bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float64)
        d = float(np.linalg.norm(bgr - bg_mean))
        if d > best_d:
            best, best_d = bgr, d
        if d > 120:
            break
    return tuple(int(v) for v in best)  # type: ignore[union-attr]


def _overlap_ok(box: np.ndarray, boxes: list[np.ndarray]) -> bool:
    for b in boxes:
        iw = min(box[2], b[2]) - max(box[0], b[0])
        ih = min(box[3], b[3]) - max(box[1], b[1])
        if iw > 0 and ih > 0:
            small = min((box[2] - box[0]) * (box[3] - box[1]), (b[2] - b[0]) * (b[3] - b[1]))
            if iw * ih > MAX_OVERLAP * small:
                return False
    return True


def render_image(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One image and its objects [(class, xyxy pixel box)]."""
    img = _background(rng, size)
    objects: list[tuple[int, np.ndarray]] = []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        for _try in range(30):
            cls = int(rng.integers(len(NAMES)))
            side = rng.uniform(*SIZE_RANGE) * size
            angle = rng.uniform(0, 2 * math.pi)
            cx, cy = rng.uniform(side / 2 + 1, size - side / 2 - 1, 2)
            if cls == 0:
                box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
            else:
                pts = _shape_vertices(cls, cx, cy, side, angle)
                box = np.concatenate([pts.min(0), pts.max(0)])
            if _overlap_ok(box, [b for _, b in objects]):
                break
        else:
            continue
        x1, y1, x2, y2 = (int(v) for v in np.clip(box, 0, size - 1))
        colour = _colour(rng, cls, img[y1:y2 + 1, x1:x2 + 1].reshape(-1, 3).mean(0))
        if cls == 0:
            cv2.circle(img, (int(round(cx * 16)), int(round(cy * 16))), int(round(side / 2 * 16)), colour, -1,
                       cv2.LINE_AA, shift=4)
        else:
            cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], colour, cv2.LINE_AA, shift=4)
        objects.append((cls, np.clip(box, 0, size)))
    return img, objects


def generate_shapes(root: str | Path, n_train: int = 320, n_val: int = 80, imgsz: int = 256, seed: int = 0) -> Path:
    """Write the shapes dataset to root/images/{train,val}/*.jpg and root/labels/{train,val}/*.txt; return root."""
    root = Path(root)
    for split, n in (("train", n_train), ("val", n_val)):
        im_dir, lb_dir = root / "images" / split, root / "labels" / split
        im_dir.mkdir(parents=True, exist_ok=True)
        lb_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rng = np.random.default_rng([seed, SPLITS[split], i])
            img, objects = render_image(rng, imgsz)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            if not ok:
                raise OSError(f"JPEG encoding failed for image {i} of {split}")
            (im_dir / f"{i:06d}.jpg").write_bytes(buf.tobytes())
            rows = []
            for cls, (x1, y1, x2, y2) in objects:
                rows.append(f"{cls} {(x1 + x2) / 2 / imgsz:.6f} {(y1 + y2) / 2 / imgsz:.6f} "
                            f"{(x2 - x1) / imgsz:.6f} {(y2 - y1) / imgsz:.6f}")
            (lb_dir / f"{i:06d}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def main() -> None:
    """CLI: python -m ultralytics.data.synthetic OUT_DIR [--train N --val N --imgsz S --seed K]."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("root")
    ap.add_argument("--train", type=int, default=320)
    ap.add_argument("--val", type=int, default=80)
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(generate_shapes(a.root, a.train, a.val, a.imgsz, a.seed))


if __name__ == "__main__":
    main()
