"""Shared test fixtures: the bundled real images (ultralytics/assets), the optional published files in ../shared,
published-format checkpoints (the real reference file where ../shared has it, one synthesized from our seeded model
always), isolated settings/run folders, and `require`, the one gate of every test that needs data from outside the
repo."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# One intra-op thread for the whole test session (and its subprocesses): on the 2-core CI machine the
# training tests also run data-loader workers, and two torch threads per process then oversubscribe the
# cores (seen on a busy 2-core machine: 150 s instead of 13 s for one 2-epoch training test). Tests never
# measure speed.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

from article_checkpoint import write_published_checkpoint  # noqa: E402
from ultralytics.data.utils import DATASETS_CFG_DIR  # noqa: E402
from ultralytics.utils import ASSETS, yaml_load, yaml_save  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Under CI=true the property tests draw the same examples on every run (a CI result must not depend on luck);
# developers' runs keep exploring new examples and report any failure with its reproducing case.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    hypothesis_settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]
# YOLO_TEST_SHARED overrides where the shared folder is looked up (e.g. /nonexistent: run as a bare clone would).
SHARED = Path(os.environ.get("YOLO_TEST_SHARED") or REPO.parent / "shared")
REFERENCE = SHARED / "reference"
COCO128 = SHARED / "datasets" / "coco128"  # only for tests of the real published checkpoint (also in ../shared)
REAL_CHECKPOINT = REFERENCE / "upstream-yolov8n-coco128.pt"
#: The published state_dict listings (copies of ../shared/reference/*.state_dict.txt, see its README.md).
LISTINGS = Path(__file__).resolve().parent / "fixtures" / "reference"
ASSETS_YAML = DATASETS_CFG_DIR / "coco8-assets.yaml"
ASSET_STEMS = ("000000000030", "000000000143", "000000000294", "000000000370", "000000000472", "000000000536",
               "000000000562", "000000000643")


def require(path: Path, what: str) -> Path:
    """`path` if it exists; otherwise skip the test, or fail it when CI=true (CI must not skip for missing data)."""
    if not Path(path).exists():
        msg = f"{what} not found at {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{msg} (CI=true: a test that needs data must not be skipped)", pytrace=False)
        pytest.skip(msg)
    return Path(path)


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> Path:
    """A private copy of the bundled dataset: images/ and labels/ (the 8 COCO images of ultralytics/assets) and
    data.yaml (the packaged coco8-assets.yaml, train = val = the 8 images, 80 COCO names). A copy, so that label
    caches and .npy files never land in the package and tests may change the folder."""
    src = ASSETS.parent
    assert sorted(p.stem for p in ASSETS.glob("*.jpg")) == list(ASSET_STEMS), f"bundled images missing in {ASSETS}"
    root = tmp_path_factory.mktemp("assets") / "coco8"
    for sub in ("images", "labels"):
        shutil.copytree(src / sub, root / sub)
    yaml_save(root / "data.yaml", dict(yaml_load(ASSETS_YAML), path=str(root)))
    return root


def assets_subset_yaml(assets: Path, folder: Path, n_val: int) -> Path:
    """A dataset yaml over the bundled images (train split whole) whose val split is the first `n_val` images."""
    images = sorted((assets / "images").glob("*.jpg"))[:n_val]
    (folder / "val.txt").write_text("\n".join(str(p) for p in images) + "\n")
    f = folder / "tiny.yaml"
    yaml_save(f, dict(yaml_load(assets / "data.yaml"), val=str(folder / "val.txt")))
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
def coco128() -> Path:
    """The full COCO128 folder in ../shared: only for tests of the published checkpoint (which needs ../shared)."""
    return require(COCO128 / "coco128.yaml", "COCO128").parent


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Folder with the published state_dict layouts and the published checkpoint (../shared/reference)."""
    return require(REFERENCE, "reference files")


# ------------------------------------------------------------------------------------------------
# Published-format yolov8n checkpoints: the real reference file (../shared) and a synthesized one
# ------------------------------------------------------------------------------------------------

CI = os.environ.get("CI") == "true"
#: Kinds of published file the tests run on: the synthesized one always, the real one where ../shared has it (and
#: on CI, where its absence then fails the tests through `require`).
PUBLISHED_KINDS = ("synthesized", "real") if REAL_CHECKPOINT.exists() or CI else ("synthesized",)


@dataclass(frozen=True)
class PublishedFile:
    """A published-format yolov8n checkpoint (nc=80) and what it is known to record."""

    path: Path
    real: bool  # the reference file trained by the published package; else synthesized from our seeded model
    version: str
    date: str
    names: dict[int, str]
    train_args: dict[str, Any]  # entries its train_args hold
    weights: dict[str, torch.Tensor] | None  # the fp32 values of its weights where known beforehand (synthesized)

    @property
    def kind(self) -> str:
        return "real" if self.real else "synthesized"


def _coco_names() -> dict[int, str]:
    return dict(yaml_load(ASSETS_YAML)["names"])


def _square_batch(images: list[Path], size: int) -> torch.Tensor:
    """Images resized to size x size, RGB in [0, 1], as a (B, 3, size, size) batch."""
    import cv2
    import numpy as np

    rgb = [cv2.resize(cv2.imread(str(f)), (size, size))[:, :, ::-1] for f in images]
    return torch.from_numpy(np.ascontiguousarray(np.stack(rgb).transpose(0, 3, 1, 2))).float() / 255


@pytest.fixture(scope="session")
def real_published() -> PublishedFile:
    """../shared/reference/upstream-yolov8n-coco128.pt: yolov8n trained by the published package (8.4.190) for a
    while at imgsz 320 on COCO128's 128 train2017 images, with the values recorded in it."""
    return PublishedFile(require(REAL_CHECKPOINT, "published checkpoint"), True, "8.4.190",
                         "2026-11-24T18:13:00.484597+00:00", _coco_names(),
                         {"model": "yolov8n.yaml", "data": "coco128.yaml", "imgsz": 320, "epochs": 200}, None)


@pytest.fixture(scope="session")
def synthesized_published(tmp_path_factory) -> PublishedFile:
    """A finished run's best.pt as the published package pickles it (tests/article_checkpoint.py), of a plain
    yolov8n with the 80 COCO names: our seeded model, BN statistics of the 8 bundled images at 320 so that its
    outputs vary with the image and depend on every layer. No detector: tests compare it with our own model
    loaded with the same weights."""
    names, version, date = _coco_names(), "8.3.40", "2025-06-30T08:15:00.123456+00:00"
    train_args = {"model": "yolov8n.yaml", "data": "coco8-assets.yaml", "imgsz": 320, "epochs": 3}
    batch = _square_batch(sorted(ASSETS.glob("*.jpg")), 320)
    saved = write_published_checkpoint(tmp_path_factory.mktemp("published") / "yolov8n-published.pt", images=batch,
                                       names=names, train_args=train_args, version=version, date=date)
    return PublishedFile(saved.path, False, version, date, names, train_args, saved.weights)


@pytest.fixture(scope="session", params=PUBLISHED_KINDS)
def published_file(request) -> PublishedFile:
    """Each published-format yolov8n file there is: the synthesized one, and the real one where present."""
    return request.getfixturevalue(f"{request.param}_published")


@pytest.fixture(scope="session")
def reference_checkpoint(request) -> PublishedFile:
    """The real published checkpoint where ../shared has it (always on CI), else the synthesized one: for tests
    that branch on `.real` between checks of a trained detector and equivalence checks."""
    return request.getfixturevalue(f"{PUBLISHED_KINDS[-1]}_published")


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
