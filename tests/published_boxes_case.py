"""The fixed detector, images and predict settings behind tests/fixtures/published_boxes (shared by the test and
by make_fixture.py, so both build exactly the same weights)."""

from __future__ import annotations

import json
import os
import subprocess
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


# The published side of every fixture recorder (run inside the published venv, never by the tests): the JSON
# arguments as `a`, our seeded state_dict loaded strictly into the published DetectionModel and saved as a published
# checkpoint at a['checkpoint']; a recorder appends its own lines and writes its JSON to a['out'].
PUBLISHED_PRELUDE = r"""
import json, sys, torch
import ultralytics
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel

a = json.loads(sys.argv[1])
m = DetectionModel(cfg='yolov8n.yaml', nc=80, verbose=False)
m.load_state_dict(torch.load(a['state_dict'], weights_only=True), strict=True)
m.float().eval()
torch.save({'model': m, 'ema': None, 'epoch': -1, 'train_args': {'task': 'detect'},
            'version': ultralytics.__version__, 'date': None}, a['checkpoint'])
"""


def run_published(body: str, args: dict, work: Path, upvenv: Path) -> dict:
    """Run PUBLISHED_PRELUDE + `body` in the published venv (cwd `work`, offline, one thread) with `args` plus the
    paths of fixture_model()'s state_dict, the checkpoint and the output; returns the JSON the body wrote."""
    work.mkdir(parents=True, exist_ok=True)
    state_dict = work / "fixture_state_dict.pt"
    torch.save(fixture_model().state_dict(), state_dict)
    args = {**args, "state_dict": str(state_dict), "checkpoint": str(work / "published_fixture.pt"),
            "out": str(work / "pub.json")}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(YOLO_OFFLINE="1", YOLO_CONFIG_DIR=str(work / "cfg"), OMP_NUM_THREADS="1")
    subprocess.run([str(upvenv / "bin" / "python"), "-c", PUBLISHED_PRELUDE + body, json.dumps(args)], cwd=work,
                   env=env, check=True)
    return json.loads(Path(args["out"]).read_text(encoding="utf-8"))
