"""Shared test fixtures: paths to the real data in ../shared and isolated settings/run folders."""

from __future__ import annotations

from pathlib import Path

import pytest

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
