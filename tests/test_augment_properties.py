"""Augmentations pinned by their properties, not by one seed's pixels.

Boxes stay consistent with the warped image; the warp matrices mean what OpenCV means by them; sampled
parameters stay in their configured ranges and their distributions over many draws hold; the augmentation
parameters come from the run config; a loader's seed alone fixes its batches.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_data_augment import COLOURS, assert_labels_match_pixels, colour_bbox, make_labels

from ultralytics.cfg import get_cfg
from ultralytics.data import build_dataloader, build_yolo_dataset, check_det_dataset
from ultralytics.data.augment import (
    AugmentParams,
    MixUp,
    Mosaic,
    RandomFlip,
    RandomHSV,
    RandomPerspective,
    WarpDraw,
    coin,
    sample_hsv_gains,
    sample_mosaic_centre,
    sample_warp,
    train_transforms,
    transform_boxes,
    warp_matrix,
)
from ultralytics.data.build import loader_seed

N_DRAWS = 2000


# ------------------------------------------------------------------------------------------------ (a) pixels
class Tiles:
    """A dataset that hands out its tiles in call order (so a mosaic gets four distinct ones)."""

    def __init__(self, tiles: list[dict]):
        self.tiles, self.calls = tiles, 0

    def __len__(self) -> int:
        return len(self.tiles)

    def get_image_and_label(self, i: int) -> dict:
        tile = self.tiles[self.calls % len(self.tiles)]
        self.calls += 1
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in tile.items()}


def two_box_tile(rs: np.random.RandomState, imgsz: int, colours: tuple[int, int]) -> dict:
    """A black tile (long side imgsz) with two filled boxes of distinct colours, one in each half."""
    short = rs.randint(imgsz // 3, imgsz + 1)
    h, w = (short, imgsz) if rs.rand() < 0.5 else (imgsz, short)
    boxes = []
    for half in range(2):
        x_lo, x_hi = half * w // 2, (half + 1) * w // 2
        x1, y1 = rs.randint(x_lo, x_hi - 8), rs.randint(0, h - 8)
        boxes.append((x1, y1, rs.randint(x1 + 8, x_hi + 1), rs.randint(y1 + 8, h + 1)))
    return make_labels(h, w, boxes, list(colours))


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([96, 128]), st.integers(0, 2**31 - 1), st.floats(5, 30), st.floats(2, 10),
       st.floats(0.2, 0.5), st.floats(0.05, 0.2), st.floats(1e-4, 5e-4))
@example(128, 30000, 5.0, 8.0, 0.5, 0.125, 0.0002461205154836488)  # once failed: a 2-px sliver label (kept, fine)
def test_mosaic_then_full_warp_labels_cover_coloured_pixels(imgsz, seed, degrees, shear, scale, translate, persp):
    rs = np.random.RandomState(seed % 2**32)
    ds = Tiles([two_box_tile(rs, imgsz, (2 * k, 2 * k + 1)) for k in range(4)])
    rng = random.Random(seed)
    mosaic = Mosaic(ds, imgsz=imgsz, p=1.0, rng=rng)(ds.get_image_and_label(0))
    assert sorted(mosaic["cls"][:, 0].tolist()) == list(range(8))
    warp = RandomPerspective(degrees=degrees, translate=translate, scale=scale, shear=shear, perspective=persp,
                             rng=rng)
    out = warp(mosaic)
    assert out["img"].shape == (imgsz, imgsz, 3)
    assert_labels_match_pixels(out, tol=3.0)
    labelled = set(out["cls"][:, 0].astype(int).tolist())
    for c in range(len(COLOURS)):  # a visible object away from the border keeps its label
        seen = colour_bbox(out["img"], c)
        if seen is None or (seen[2:] - seen[:2] < 6).any():
            continue
        if (seen[:2] > 3).all() and (seen[2:] < imgsz - 3).all():
            assert c in labelled, f"colour {c} visible at {seen} but its label was dropped"


# ------------------------------------------------------------------------------------------------ warp geometry
def test_rotation_and_scale_match_opencv():
    h, w = 120, 200
    for angle, scale in [(0.0, 1.0), (30.0, 1.0), (-73.0, 0.6), (12.5, 1.4)]:
        draw = WarpDraw(angle=angle, scale=scale, shear=(0, 0), translate=(0, 0), perspective=(0, 0))
        want = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale), [0, 0, 1]])
        np.testing.assert_allclose(warp_matrix(draw, (h, w), (h, w)), want, atol=1e-9)


def test_shear_translation_and_perspective_meanings():
    (h, w), (oh, ow) = (100, 160), (80, 120)
    rel = np.array([[30.0, -20.0], [-45.0, 35.0], [5.0, 5.0]])  # points relative to the input centre
    pts = rel + [w / 2, h / 2]

    def apply(draw: WarpDraw) -> np.ndarray:
        return cv2.perspectiveTransform(pts[None], warp_matrix(draw, (h, w), (oh, ow)))[0]

    base = dict(angle=0.0, scale=1.0, shear=(0.0, 0.0), translate=(0.0, 0.0), perspective=(0.0, 0.0))
    centre_out = np.array([ow / 2, oh / 2])
    np.testing.assert_allclose(apply(WarpDraw(**base)), rel + centre_out, atol=1e-9)
    moved = apply(WarpDraw(**{**base, "translate": (0.1, -0.2)}))
    np.testing.assert_allclose(moved, rel + centre_out + [0.1 * ow, -0.2 * oh], atol=1e-9)
    sx, sy = np.tan(np.radians(10)), np.tan(np.radians(-5))
    sheared = apply(WarpDraw(**{**base, "shear": (10.0, -5.0)}))
    np.testing.assert_allclose(sheared, np.c_[rel[:, 0] + sx * rel[:, 1], rel[:, 1] + sy * rel[:, 0]] + centre_out,
                               atol=1e-9)
    px, py = 1e-3, -2e-3
    tilted = apply(WarpDraw(**{**base, "perspective": (px, py)}))
    np.testing.assert_allclose(tilted, rel / (1 + rel @ [px, py])[:, None] + centre_out, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_transform_boxes_is_hull_of_mapped_corners(seed):
    rs = np.random.RandomState(seed % 2**32)
    boxes = rs.uniform(0, 100, (5, 4))
    boxes[:, 2:] += boxes[:, :2]
    draw = sample_warp(random.Random(seed), degrees=40, translate=0.2, scale=0.5, shear=10, perspective=5e-4)
    m = warp_matrix(draw, (200, 200), (150, 150))
    got = transform_boxes(boxes, m)
    for box, hull in zip(boxes, got):
        corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]])
        mapped = cv2.perspectiveTransform(corners[None], m)[0]
        np.testing.assert_allclose(hull, [*mapped.min(0), *mapped.max(0)], rtol=1e-9, atol=1e-6)


# ------------------------------------------------------------------------------------------------ (b) ranges
def test_sampled_parameters_stay_in_their_ranges():
    rng = random.Random(7)
    hyp = AugmentParams(degrees=25.0, translate=0.15, scale=0.4, shear=6.0, perspective=4e-4, hsv_h=0.02,
                        hsv_s=0.6, hsv_v=0.3)
    draws = [sample_warp(rng, hyp.degrees, hyp.translate, hyp.scale, hyp.shear, hyp.perspective)
             for _ in range(N_DRAWS)]
    ranges = {
        "angle": ([d.angle for d in draws], -hyp.degrees, hyp.degrees),
        "scale": ([d.scale for d in draws], 1 - hyp.scale, 1 + hyp.scale),
        "shear": ([s for d in draws for s in d.shear], -hyp.shear, hyp.shear),
        "translate": ([t for d in draws for t in d.translate], -hyp.translate, hyp.translate),
        "perspective": ([p for d in draws for p in d.perspective], -hyp.perspective, hyp.perspective),
    }
    for name, (values, lo, hi) in ranges.items():
        v = np.array(values)
        assert v.min() >= lo and v.max() <= hi, name
        span = hi - lo  # the whole range is used, not a corner of it
        assert v.min() < lo + 0.01 * span and v.max() > hi - 0.01 * span, name
    gains = np.array([sample_hsv_gains(rng, hyp.hsv_h, hyp.hsv_s, hyp.hsv_v) for _ in range(N_DRAWS)])
    g = np.array([hyp.hsv_h, hyp.hsv_s, hyp.hsv_v])
    assert (gains >= 1 - g).all() and (gains <= 1 + g).all()
    assert (gains.min(0) < 1 - 0.98 * g).all() and (gains.max(0) > 1 + 0.98 * g).all()
    for imgsz in (64, 96, 640):
        centres = np.array([sample_mosaic_centre(rng, imgsz) for _ in range(N_DRAWS)])
        assert centres.dtype.kind == "i"
        assert centres.min() >= imgsz // 2 and centres.max() < 2 * imgsz - imgsz // 2
    assert not any(coin(rng, 0.0) for _ in range(N_DRAWS)) and all(coin(rng, 1.0) for _ in range(N_DRAWS))


def test_zero_ranges_draw_the_identity():
    draw = sample_warp(random.Random(0), degrees=0, translate=0, scale=0, shear=0, perspective=0)
    np.testing.assert_array_equal(warp_matrix(draw, (50, 70), (50, 70)), np.eye(3))
    np.testing.assert_array_equal(sample_hsv_gains(random.Random(0), 0, 0, 0), [1, 1, 1])


def test_pipeline_takes_each_parameter_from_its_own_key():
    hyp = AugmentParams(hsv_h=0.01, hsv_s=0.2, hsv_v=0.3, degrees=4, translate=0.05, scale=0.25, shear=6,
                        perspective=1e-4, flipud=0.15, fliplr=0.35, mosaic=0.45, mixup=0.55)
    pre, mixup, hsv, ud, lr, _ = train_transforms(Tiles([]), 64, hyp).transforms
    mosaic, warp = pre.transforms
    assert isinstance(mosaic, Mosaic) and isinstance(warp, RandomPerspective) and isinstance(mixup, MixUp)
    assert (mosaic.p, mixup.p) == (0.45, 0.55)
    assert (warp.degrees, warp.translate, warp.scale, warp.shear, warp.perspective) == (4, 0.05, 0.25, 6, 1e-4)
    assert isinstance(hsv, RandomHSV) and (hsv.hgain, hsv.sgain, hsv.vgain) == (0.01, 0.2, 0.3)
    assert (ud.direction, ud.p, lr.direction, lr.p) == ("vertical", 0.15, "horizontal", 0.35)
    pre, mixup, *_ = train_transforms(Tiles([]), 64, hyp, rect=True).transforms
    assert pre.transforms[0].p == 0.0 and mixup.p == 0.0  # rect batches: no mosaic, no mixup


# ------------------------------------------------------------------------------------------------ (c) distributions
def test_flip_rate_is_its_probability():
    rng = random.Random(11)
    labels = make_labels(20, 30, [(0, 0, 10, 20)], [0])
    flips = RandomFlip(p=0.5, direction="horizontal", rng=rng)
    flipped = [flips(dict(labels))["bboxes"][0, 0] == 20 for _ in range(N_DRAWS)]
    assert abs(np.mean(flipped) - 0.5) < 0.05
    for p in (0.1, 0.3):
        assert abs(np.mean([coin(rng, p) for _ in range(N_DRAWS)]) - p) < 0.04


def test_warp_draw_distributions():
    rng = random.Random(12)
    draws = [sample_warp(rng, degrees=30, translate=0.1, scale=0.5, shear=8, perspective=0) for _ in range(N_DRAWS)]
    scale = np.array([d.scale for d in draws])
    angle = np.array([d.angle for d in draws])
    shift = np.array([d.translate for d in draws])
    assert abs(scale.mean() - 1) < 0.03 and abs(scale.std() - 0.5 / np.sqrt(3)) < 0.02  # uniform on [0.5, 1.5]
    assert abs(angle.mean()) < 1.5 and abs(angle.std() - 30 / np.sqrt(3)) < 1.0
    assert (abs(shift.mean(0)) < 0.006).all()
    assert abs(np.corrcoef(shift[:, 0], shift[:, 1])[0, 1]) < 0.1  # x and y shifts drawn independently


def test_hsv_gain_means_are_one():
    rng = random.Random(13)
    gains = np.array([sample_hsv_gains(rng, 0.015, 0.7, 0.4) for _ in range(N_DRAWS)])
    np.testing.assert_allclose(gains.mean(0), [1, 1, 1], atol=0.04)
    np.testing.assert_allclose(gains.std(0), np.array([0.015, 0.7, 0.4]) / np.sqrt(3), rtol=0.08)


def test_mosaic_centre_spreads_over_its_range():
    imgsz = 640
    rng = random.Random(14)
    centres = np.array([sample_mosaic_centre(rng, imgsz) for _ in range(N_DRAWS)])
    for axis in range(2):
        c = centres[:, axis]
        assert abs(c.mean() - imgsz) < 0.03 * imgsz
        counts = np.histogram(c, bins=4, range=(imgsz // 2, 3 * imgsz // 2))[0] / N_DRAWS
        np.testing.assert_allclose(counts, 0.25, atol=0.04)  # uniform over [imgsz/2, 3·imgsz/2)
    assert abs(np.corrcoef(centres[:, 0], centres[:, 1])[0, 1]) < 0.1


def test_mosaic_and_mixup_rates_and_mixup_ratio():
    rng = random.Random(15)
    tile = make_labels(32, 32, [(4, 4, 20, 20)], [0])
    ds = Tiles([tile])
    mosaic = Mosaic(ds, imgsz=32, p=0.3, rng=rng)
    rate = np.mean([mosaic(dict(tile))["img"].shape[0] == 64 for _ in range(N_DRAWS)])
    assert abs(rate - 0.3) < 0.04
    dark = {**tile, "img": np.zeros((32, 32, 3), np.uint8)}
    bright = {**tile, "img": np.full((32, 32, 3), 200, np.uint8)}
    mixup = MixUp(Tiles([bright]), p=1.0, rng=rng)
    ratios = np.array([1 - mixup(dict(dark))["img"][0, 0, 0] / 200 for _ in range(500)])  # weight of the image
    assert abs(ratios.mean() - 0.5) < 0.01 and abs(ratios.std() - np.sqrt(0.25 / 65)) < 0.01  # Beta(32, 32)


# ------------------------------------------------------------------------------------------------ config
def test_augment_params_come_from_the_run_config():
    assert AugmentParams.from_cfg(get_cfg()) == AugmentParams()  # dataclass defaults are default.yaml's
    assert (AugmentParams().mosaic, AugmentParams().fliplr, AugmentParams().hsv_s) == (1.0, 0.5, 0.7)  # SPEC §4
    p = AugmentParams.from_cfg(get_cfg(overrides={"degrees": 12.0, "mixup": 0.25, "fliplr": 0.0}))
    assert (p.degrees, p.mixup, p.fliplr, p.scale) == (12.0, 0.25, 0.0, 0.5)
    assert p.without_mosaic() == AugmentParams(degrees=12.0, fliplr=0.0, mosaic=0.0, mixup=0.0)
    with pytest.raises(AttributeError, match="get_cfg"):
        AugmentParams.from_cfg(SimpleNamespace(imgsz=64, degrees=3.0))
    for bad in ({"fliplr": 1.5}, {"mixup": -0.1}, {"mosaic": float("nan")}, {"degrees": "10"}):
        with pytest.raises((ValueError, TypeError)):
            AugmentParams(**bad)


def test_build_yolo_dataset_reads_the_run_config(assets):
    data = check_det_dataset(assets / "data.yaml")
    with pytest.raises(AttributeError, match="get_cfg"):
        build_yolo_dataset(SimpleNamespace(imgsz=64), data["val"], 4, data, mode="val")
    cfg = get_cfg(overrides={"imgsz": 64, "degrees": 7.0, "mosaic": 0.5})
    ds = build_yolo_dataset(cfg, data["train"], 4, data)
    assert ds.hyp == AugmentParams.from_cfg(cfg) and ds.imgsz == 64
    ds.close_mosaic()
    assert ds.hyp == AugmentParams(degrees=7.0, mosaic=0.0, mixup=0.0)
    rect_cfg = get_cfg(overrides={"imgsz": 64, "rect": True})
    assert build_yolo_dataset(rect_cfg, data["val"], 4, data, mode="val").rect  # rect and imgsz from the config ...
    ds = build_yolo_dataset(rect_cfg, data["val"], 4, data, mode="val", rect=False, imgsz=96)
    assert not ds.rect and ds.imgsz == 96  # ... unless given explicitly


# ------------------------------------------------------------------------------------------------ (d) seeds
def test_loader_seed_separates_seeds_and_ranks():
    assert loader_seed(0, -1) == loader_seed(0, 0)  # rank 0 augments like a single-process run
    seeds = {loader_seed(s, r) for s in range(4) for r in range(4)}
    assert len(seeds) == 16  # (seed, rank) pairs never collide, unlike seed + rank


def _batches(ds, workers: int, seed: int, n: int = 2, shuffle: bool = True) -> list[dict]:
    loader = build_dataloader(ds, 4, workers=workers, shuffle=shuffle, seed=seed)
    try:
        it = iter(loader)
        return [next(it) for _ in range(n)]
    finally:
        loader.reset()


def _same(a: list[dict], b: list[dict]) -> bool:
    keys = ("img", "cls", "bboxes", "batch_idx")
    return all(x["im_file"] == y["im_file"] and all(torch.equal(x[k], y[k]) for k in keys) for x, y in zip(a, b))


@pytest.mark.parametrize("workers", [0, 2])
def test_same_seed_same_batches(assets, workers):
    data = check_det_dataset(assets / "data.yaml")
    cfg = get_cfg(overrides={"imgsz": 96, "degrees": 10.0, "shear": 3.0, "mixup": 0.5, "flipud": 0.5})
    ds = build_yolo_dataset(cfg, data["train"], 4, data)
    first = _batches(ds, workers, seed=3)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)  # the process's global RNGs play no part
    again = _batches(ds, workers, seed=3)
    other = _batches(ds, workers, seed=4)
    assert _same(first, again)
    assert not _same(first, other)
    in_order = [_batches(ds, workers, seed=s, shuffle=False) for s in (3, 4)]  # the seed also sets the augmentation
    assert [b["im_file"] for b in in_order[0]] == [b["im_file"] for b in in_order[1]]
    assert not any(torch.equal(x["img"], y["img"]) for x, y in zip(*in_order))


def test_epochs_differ_without_workers(assets):
    data = check_det_dataset(assets / "data.yaml")
    ds = build_yolo_dataset(get_cfg(overrides={"imgsz": 64}), data["train"], 4, data)
    loader = build_dataloader(ds, 4, workers=0, shuffle=False, seed=0)
    epochs = [next(iter(loader)) for _ in range(2)]
    assert epochs[0]["im_file"] == epochs[1]["im_file"]  # same images (no shuffle) ...
    assert not torch.equal(epochs[0]["img"], epochs[1]["img"])  # ... augmented afresh each epoch
