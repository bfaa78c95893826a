"""Shared test fixtures: paths to the real data in ../shared and isolated settings/run folders."""

from __future__ import annotations

import logging
import os
from pathlib import Path

# One intra-op thread for the whole test session (and its subprocesses): on the 2-core CI machine the
# training tests also run data-loader workers, and two torch threads per process then oversubscribe the
# cores (seen on a busy 2-core machine: 150 s instead of 13 s for one 2-epoch training test). Tests never
# measure speed.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
COCO128 = SHARED / "datasets" / "coco128"
REFERENCE = SHARED / "reference"


@pytest.fixture(scope="session")
def coco128() -> Path:
    """Folder of the real COCO128 dataset (images/, labels/, coco128.yaml)."""
    if not (COCO128 / "coco128.yaml").exists():
        pytest.skip(f"COCO128 not found at {COCO128}")
    return COCO128


def coco128_subset_yaml(folder: Path, n_val: int) -> Path:
    """A dataset yaml over COCO128 (train split whole) whose val split is its first `n_val` val images."""
    images = sorted((COCO128 / "images" / "val2017").iterdir())[:n_val]
    (folder / "val.txt").write_text("\n".join(str(p) for p in images) + "\n")
    names = "\n".join(f"  {i}: c{i}" for i in range(80))
    f = folder / "tiny.yaml"
    f.write_text(f"path: {COCO128}\ntrain: images/train2017\nval: {folder / 'val.txt'}\nnames:\n{names}\n")
    return f


VAL_PLOTS = ("BoxPR_curve.png", "BoxF1_curve.png", "BoxP_curve.png", "BoxR_curve.png", "confusion_matrix.png",
             "confusion_matrix_normalized.png", *(f"val_batch{i}_{k}.jpg" for i in range(3) for k in ("labels", "pred")))


def assert_real_image(path: Path) -> None:
    """The file is a readable image with visible content (not one flat colour)."""
    import cv2
    import numpy as np

    assert path.is_file(), path
    im = cv2.imread(str(path))
    assert im is not None and im.shape[0] > 100 and im.shape[1] > 100, path
    assert float(im.std()) > 5.0, f"{path} looks blank"
    assert len(np.unique(im.reshape(-1, 3)[::7], axis=0)) > 20, f"{path} has almost no distinct colours"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Folder with the published state_dict layouts and the published checkpoint."""
    if not REFERENCE.exists():
        pytest.skip(f"reference files not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Keep every test's settings file, datasets_dir and runs_dir out of the user's home and the repo."""
    from ultralytics.utils import SETTINGS

    root = tmp_path_factory.getbasetemp()
    saved = dict(SETTINGS), SETTINGS.file
    SETTINGS.file = root / "settings.yaml"
    dict.update(SETTINGS, {"datasets_dir": str(root / "datasets"), "runs_dir": str(root / "runs"),
                           "weights_dir": str(root / "weights")})
    yield
    dict.clear(SETTINGS)
    dict.update(SETTINGS, saved[0])
    SETTINGS.file = saved[1]


@pytest.fixture
def logs():
    """Messages logged by the package's LOGGER during the test (warnings included)."""
    from ultralytics.utils import LOGGER

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler = Collect()
    LOGGER.addHandler(handler)
    yield lines
    LOGGER.removeHandler(handler)
