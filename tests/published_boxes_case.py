"""The fixed detector, images and predict settings behind tests/fixtures/published_boxes (shared by the test and
by make_fixture.py, so both build exactly the same weights)."""

from __future__ import annotations

from pathlib import Path

import torch

from pin_cases import _seeded_model
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import ASSETS

STEMS = ("000000000030", "000000000143", "000000000294", "000000000370", "000000000472", "000000000562",
         "000000000643", "000000000536")
SHARED_IMAGES = Path("/work/shared/datasets/coco128/images/train2017")

# Added to every class logit bias of the seeded model: without it no score reaches conf 0.25; with it each image at
# imgsz 640 gets 29-53 boxes, and no class score of any anchor lies within 0.035 of 0.25 (no borderline box).
CLASS_BIAS_SHIFT = 8.0

# name -> predict arguments; "batch" runs all images as one list source (mixed shapes in one batch)
SETTINGS = {
    "single_640": {"imgsz": 640, "batch": 1},
    "single_320": {"imgsz": 320, "batch": 1},
    "batch8_640": {"imgsz": 640, "batch": 8},
}
PREDICT_ARGS = {"conf": 0.25, "iou": 0.7}


def fixture_model() -> DetectionModel:
    """yolov8n (80 classes) with seeded weights (`pin_cases._seeded_model`) and class biases shifted up, eval mode."""
    model = _seeded_model("yolov8n.yaml", nc=80)
    with torch.no_grad():
        for branch in model.model[-1].cv3:
            branch[-1].bias.add_(CLASS_BIAS_SHIFT)
    return model.eval()


def image_paths() -> list[Path]:
    """The 8 images: the bundled copies (ultralytics/assets/images) if present, else the shared COCO128 files."""
    for folder in (ASSETS, SHARED_IMAGES):
        paths = [folder / f"{s}.jpg" for s in STEMS]
        if all(p.is_file() for p in paths):
            return paths
    raise FileNotFoundError(f"the images {', '.join(s + '.jpg' for s in STEMS)} are neither in {ASSETS} nor in "
                            f"{SHARED_IMAGES}")
