"""The offline shapes dataset: deterministic, the promised counts and sizes, usable through shapes.yaml."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ultralytics.data import check_det_dataset
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.synthetic import MAX_OBJECTS, NAMES, SIZE_RANGE, generate_shapes
from ultralytics.utils import SETTINGS


def read_tree(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def test_same_seed_byte_identical_other_seed_differs(tmp_path):
    a = read_tree(generate_shapes(tmp_path / "a", n_train=12, n_val=4, seed=7))
    b = read_tree(generate_shapes(tmp_path / "b", n_train=12, n_val=4, seed=7))
    c = read_tree(generate_shapes(tmp_path / "c", n_train=12, n_val=4, seed=8))
    labels = [k for k in a if k.endswith(".txt")]
    assert len(labels) == 16 and all(a[k] == b[k] for k in labels)
    assert a == b  # images too, on the same machine
    assert any(a[k] != c[k] for k in labels)


def test_counts_classes_and_object_sizes(tmp_path):
    root = generate_shapes(tmp_path / "s", n_train=40, n_val=10, imgsz=128, seed=0)
    for split, n in (("train", 40), ("val", 10)):
        ims = sorted((root / "images" / split).glob("*.jpg"))
        lbs = sorted((root / "labels" / split).glob("*.txt"))
        assert len(ims) == n and [f.stem for f in ims] == [f.stem for f in lbs]
    rows = [np.loadtxt(f, ndmin=2) for f in (root / "labels").rglob("*.txt")]
    assert all(1 <= len(r) <= MAX_OBJECTS for r in rows)
    allr = np.concatenate(rows)
    assert set(allr[:, 0].astype(int)) == set(NAMES)  # every class appears
    side = allr[:, 3:5].max(1)
    assert (side >= SIZE_RANGE[0] - 0.01).all() and (side <= SIZE_RANGE[1] + 0.01).all()
    xyxy = np.concatenate([allr[:, 1:3] - allr[:, 3:5] / 2, allr[:, 1:3] + allr[:, 3:5] / 2], 1)
    assert (xyxy >= -1e-6).all() and (xyxy <= 1 + 1e-6).all()


def test_shapes_yaml_generates_default_dataset():
    d = check_det_dataset("shapes.yaml")
    root = Path(SETTINGS["datasets_dir"]).resolve() / "shapes"
    assert d["path"] == root and d["nc"] == 5 and d["names"] == NAMES
    assert len(list((root / "images" / "train").glob("*.jpg"))) == 320
    assert len(list((root / "images" / "val").glob("*.jpg"))) == 80
    ds = YOLODataset(d["val"], imgsz=256, augment=False, data=d)
    assert len(ds) == 80 and all(len(lb["cls"]) >= 1 for lb in ds.labels)
    assert check_det_dataset("shapes.yaml")["path"] == root  # second call: already there, nothing regenerated
