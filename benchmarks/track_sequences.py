"""Synthetic multi-object tracking sequences: ground truth, noisy detections and (optionally) drawn frames.

Plain numpy (frames included, so they are identical everywhere), no package imports, so that the published package's venv can run it too
(tests/fixtures/tracking/record_published.py feeds the same detections to the published trackers).

A sequence: `n_objects` boxes move at constant velocity (with a little jitter) across a `width` x `height` view,
bouncing off its borders; pairs are placed to cross each other. A static occluder (a vertical band) hides the
objects whose centre is behind it. Detections come from the visible ground truth: each box is dropped with
`p_miss`, its centre and size get Gaussian noise, its score is drawn around 0.7 (partly hidden boxes score low,
which is what ByteTrack's second association is for), and `fp_rate` false positives per frame are added at
random places with low-to-middling scores. With `pan`, the camera pans right by `pan` pixels per frame: the background and the
objects drift left in the image by that much (objects still bounce off the image borders), while the occluder
band stays (it is on the lens). With `draw`, frames are drawn too (numpy only, the same on every machine): the
textured background, the objects as filled rectangles, the occluder band.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Sequence:
    """A generated sequence; per frame, gt rows are [id, x1, y1, x2, y2] and det rows [x1, y1, x2, y2, conf, cls]."""

    gt: list[np.ndarray] = field(default_factory=list)
    dets: list[np.ndarray] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    width: int = 640
    height: int = 480


def _init_objects(rng: np.random.Generator, n: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres, velocities and sizes; objects 2k and 2k+1 start on either side and head towards each other."""
    size = np.stack([rng.uniform(0.06, 0.12, n) * w, rng.uniform(0.12, 0.25, n) * h], 1)
    centre = np.stack([rng.uniform(0.1, 0.9, n) * w, rng.uniform(0.15, 0.85, n) * h], 1)
    speed = rng.uniform(2.0, 6.0, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    vel = np.stack([speed * np.cos(angle), speed * np.sin(angle) * 0.5], 1)
    for k in range(0, n - 1, 2):  # a crossing pair on one horizontal line
        y = rng.uniform(0.25, 0.75) * h
        centre[k], centre[k + 1] = (0.15 * w, y), (0.85 * w, y + rng.uniform(-0.03, 0.03) * h)
        vel[k], vel[k + 1] = (speed[k], 0.0), (-speed[k + 1], 0.0)
    return centre, vel, size


def _world_texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A random BGR texture of 8x8 blocks (corners for optical flow); numpy only, so it is the same everywhere."""
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)[:h, :w]


def make_sequence(n_frames: int = 120, n_objects: int = 8, width: int = 640, height: int = 480, seed: int = 0,
                  p_miss: float = 0.08, fp_rate: float = 0.3, box_noise: float = 0.03, pan: float = 0.0,
                  occluder: bool = True, draw: bool = False) -> Sequence:
    """A seeded sequence (see the module docstring)."""
    rng = np.random.default_rng(seed)
    centre, vel, size = _init_objects(rng, n_objects, width, height)
    colours = rng.integers(40, 256, (n_objects, 3))
    occ = (0.45 * width, 0.52 * width) if occluder else (-1.0, -1.0)  # a band in world x
    world = _world_texture(rng, width + int(abs(pan) * n_frames) + 8, height) if draw else None
    seq = Sequence(width=width, height=height)
    for f in range(n_frames):
        cam_x = abs(pan) * f if pan >= 0 else abs(pan) * (n_frames - 1 - f)  # the background slides by
        if f:
            centre += vel + rng.normal(0, 0.3, vel.shape)
            centre[:, 0] -= pan  # the camera pans right: the scene moves left in the image
            for d, lim in ((0, width), (1, height)):  # bounce at the borders
                out = (centre[:, d] < size[:, d] / 2) | (centre[:, d] > lim - size[:, d] / 2)
                vel[out, d] *= -1
                centre[:, d] = np.clip(centre[:, d], size[:, d] / 2, lim - size[:, d] / 2)
        boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
        hidden = (centre[:, 0] > occ[0]) & (centre[:, 0] < occ[1])
        near = (boxes[:, 2] > occ[0]) & (boxes[:, 0] < occ[1]) & ~hidden  # partly behind the band
        visible = np.flatnonzero(~hidden)
        seq.gt.append(np.concatenate([visible[:, None] + 1.0, boxes[visible]], 1))
        seq.dets.append(_detections(rng, boxes, visible, near, p_miss, fp_rate, box_noise, width, height))
        if draw:
            seq.frames.append(_draw(world, int(cam_x), boxes, colours, occ, width, height))
    return seq


def _detections(rng: np.random.Generator, boxes: np.ndarray, visible: np.ndarray, near: np.ndarray,
                p_miss: float, fp_rate: float, box_noise: float, w: int, h: int) -> np.ndarray:
    keep = visible[rng.random(len(visible)) >= p_miss]
    b = boxes[keep].copy()
    wh = b[:, 2:] - b[:, :2]
    ctr = (b[:, :2] + b[:, 2:]) / 2 + rng.normal(0, box_noise, (len(b), 2)) * wh
    wh = wh * np.exp(rng.normal(0, box_noise, (len(b), 2)))
    conf = np.clip(rng.normal(0.7, 0.12, len(b)), 0.3, 0.99)
    conf[near[keep]] = rng.uniform(0.12, 0.3, int(near[keep].sum()))  # half hidden: a weak detection
    dets = [np.concatenate([ctr - wh / 2, ctr + wh / 2, conf[:, None], np.zeros((len(b), 1))], 1)]
    n_fp = rng.poisson(fp_rate)
    if n_fp:
        fwh = np.stack([rng.uniform(0.04, 0.1, n_fp) * w, rng.uniform(0.08, 0.2, n_fp) * h], 1)
        fctr = np.stack([rng.uniform(0, w, n_fp), rng.uniform(0, h, n_fp)], 1)
        fconf = rng.uniform(0.1, 0.45, n_fp)
        dets.append(np.concatenate([fctr - fwh / 2, fctr + fwh / 2, fconf[:, None], np.zeros((n_fp, 1))], 1))
    out = np.concatenate(dets, 0)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out[rng.permutation(len(out))].astype(np.float32)


def _draw(world: np.ndarray, cam_x: int, boxes: np.ndarray, colours: np.ndarray, occ: tuple[float, float],
          w: int, h: int) -> np.ndarray:
    """The camera's view of the world with the objects (filled rectangles) and the occluder band drawn on it."""
    frame = world[:, cam_x:cam_x + w].copy()
    for b, c in zip(boxes.astype(int), colours):
        frame[max(b[1], 0):max(b[3], 0), max(b[0], 0):max(b[2], 0)] = c
    frame[:, max(int(occ[0]), 0):max(int(occ[1]), 0)] = 90
    return frame
