"""The bundled sample images: shipped with the package, a dataset of their own, and what predict falls back to."""

from __future__ import annotations

import logging

from ultralytics import YOLO
from ultralytics.utils import ASSETS, LOGGER


def test_assets_are_real_labelled_images():
    images = sorted(ASSETS.glob("*.jpg"))
    assert len(images) == 8
    assert sum(p.stat().st_size for p in images) < 1_000_000
    labels = ASSETS.parent / "labels"
    for p in images:
        rows = (labels / f"{p.stem}.txt").read_text().split("\n")
        assert any(r.strip() for r in rows), p
    readme = (ASSETS.parent / "README.md").read_text()
    assert "COCO" in readme and "CC BY 4.0" in readme


def test_predict_without_a_source_uses_the_assets(caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER.name):
        results = YOLO("yolov8n.yaml").predict(imgsz=64, verbose=False)
    assert "no source given" in caplog.text
    assert sorted(r.path for r in results) == sorted(str(p) for p in ASSETS.glob("*.jpg"))
    assert all(r.orig_img.shape[:2] == r.orig_shape for r in results)
