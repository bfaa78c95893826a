"""Label discovery, verification of bad data (each case and its message) and the label cache."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import img2label_paths, imread
from ultralytics.utils import LOGGER

NAMES = {i: f"c{i}" for i in range(80)}


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def log():
    """Messages logged by the ultralytics LOGGER during the test (joined text in .text())."""
    h = _Collect()
    LOGGER.addHandler(h)
    h.text = lambda: "\n".join(h.lines)  # type: ignore[attr-defined]
    yield h
    LOGGER.removeHandler(h)


@pytest.fixture
def mini(tmp_path, assets) -> Path:
    """6 of the bundled COCO images with their labels in tmp_path/ds (mtimes preserved)."""
    root = tmp_path / "ds"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for f in sorted((assets / "images").glob("*.jpg"))[:6]:
        shutil.copy2(f, root / "images" / "train" / f.name)
        shutil.copy2(assets / "labels" / f.with_suffix(".txt").name, root / "labels" / "train")
    return root


def images(root: Path) -> list[Path]:
    return sorted((root / "images" / "train").glob("*"))


def label_of(img: Path) -> Path:
    return Path(img2label_paths([str(img)])[0])


def build(root: Path, **kw) -> YOLODataset:
    return YOLODataset(str(root / "images" / "train"), imgsz=160, augment=False, data={"names": NAMES}, **kw)


def test_img2label_paths_replaces_last_images_dir():
    p = os.path.join(os.sep, "a", "images", "b", "images", "x.JPG")
    assert img2label_paths([p]) == [os.path.join(os.sep, "a", "images", "b", "labels", "x.txt")]


def test_clean_mini_dataset_summary(mini, log):
    ds = build(mini)
    assert len(ds) == 6
    assert "found 6, missing 0, empty 0, corrupt 0" in log.text()
    n_rows = sum(len(set(label_of(f).read_text().split("\n")) - {""}) for f in images(mini))
    assert sum(len(lb["cls"]) for lb in ds.labels) == n_rows


def test_bad_files_each_reported_and_skipped(mini, log):
    ims = images(mini)
    data = ims[0].read_bytes()
    ims[0].write_bytes(data[: len(data) // 2])  # truncated JPEG
    ims[1].write_bytes(b"")  # zero-byte image
    label_of(ims[2]).write_text("0 0.5 0.5 0.2\n")  # 4 columns
    label_of(ims[3]).write_text("500 0.5 0.5 0.2 0.2\n")  # class id out of range
    label_of(ims[4]).write_text("1 0.5 1.7 0.2 0.2\n")  # coordinate far outside [0, 1]
    label_of(ims[5]).unlink()  # no label file: a background image, kept
    ds = build(mini)
    text = log.text()
    assert ds.im_files == [str(ims[5])] and len(ds.labels[0]["cls"]) == 0
    assert f"image skipped, corrupt or unreadable: {ims[0]} (OSError: image file is truncated" in text
    assert f"image skipped, corrupt or unreadable: {ims[1]} (zero-byte file)" in text
    assert f"bad label file {label_of(ims[2])}: line 1 has 4 columns, expected 5 (class cx cy w h)" in text
    assert f"bad label file {label_of(ims[3])}: class id 500 is out of range: the dataset has nc=80 (ids 0..79)" in text
    assert "1 image(s) skipped because a label has a class id >= nc=80" in text
    assert f"bad label file {label_of(ims[4])}: coordinate 1.7 outside [0, 1]" in text
    assert "found 0, missing 1, empty 0, corrupt 5" in text


def test_small_overshoot_clipped_duplicates_removed_non_numbers_rejected(mini, log):
    ims = images(mini)
    label_of(ims[0]).write_text("3 0.5 0.5 1.005 0.2\n")  # within tolerance: clipped, kept
    label_of(ims[1]).write_text("2 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.1 0.1\n")  # one duplicate
    label_of(ims[2]).write_text("1 0.5 abc 0.2 0.2\n")  # non-number
    label_of(ims[3]).write_text("1.5 0.5 0.5 0.2 0.2\n")  # non-integer class
    label_of(ims[4]).write_text("")  # empty: background
    ds = build(mini)
    by_name = {Path(lb["im_file"]).name: lb for lb in ds.labels}
    np.testing.assert_allclose(by_name[ims[0].name]["bboxes"], [[0.5, 0.5, 1.0, 0.2]])
    np.testing.assert_allclose(by_name[ims[1].name]["cls"][:, 0], [2, 1])
    text = log.text()
    assert f"{label_of(ims[1])}: 1 duplicate label rows removed" in text
    assert f"{label_of(ims[2])}: line 1 has a non-numeric value: '1 0.5 abc 0.2 0.2'" in text
    assert f"{label_of(ims[3])}: invalid class id 1.5 (class ids are integers >= 0)" in text
    assert ims[2].name not in by_name and ims[3].name not in by_name and len(by_name[ims[4].name]["cls"]) == 0
    assert "found 3, missing 0, empty 1, corrupt 2" in text


def test_directory_without_images(tmp_path):
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "images" / "train" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=f"no images found in directory {tmp_path / 'images' / 'train'}"):
        build(tmp_path)


def test_all_images_corrupt(mini):
    for f in images(mini):
        f.write_bytes(b"")
    with pytest.raises(RuntimeError, match="no usable images in .*all 6 were skipped"):
        build(mini)


def test_exif_orientation_gray_rgba_16bit(tmp_path):
    root = tmp_path / "ds"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    # stored 60 high x 120 wide with a red patch at the stored top-left; EXIF 6 = rotate 90 deg clockwise on display
    stored = np.zeros((60, 120, 3), np.uint8)
    stored[0:20, 0:40] = (255, 0, 0)  # RGB red
    pil = Image.fromarray(stored)
    exif = pil.getexif()
    exif[0x0112] = 6
    pil.save(root / "images" / "train" / "rot.jpg", exif=exif.tobytes(), quality=95)
    # displayed (EXIF-corrected): 120 high x 60 wide, patch at top-right: x 40..60, y 0..40
    (root / "labels" / "train" / "rot.txt").write_text("0 0.833333 0.166667 0.333333 0.333333\n")
    cv2.imwrite(str(root / "images" / "train" / "gray.png"), np.full((30, 40), 200, np.uint8))
    cv2.imwrite(str(root / "images" / "train" / "rgba.png"), np.full((30, 40, 4), 90, np.uint8))
    cv2.imwrite(str(root / "images" / "train" / "deep.png"), np.full((30, 40), 65535, np.uint16))
    ds = YOLODataset(str(root / "images" / "train"), imgsz=120, augment=False, data={"names": NAMES})
    shapes = {Path(lb["im_file"]).name: lb["shape"] for lb in ds.labels}
    assert shapes == {"rot.jpg": (120, 60), "gray.png": (30, 40), "rgba.png": (30, 40), "deep.png": (30, 40)}
    for i, f in enumerate(ds.im_files):
        im = imread(f, ds.labels[i]["shape"])
        assert im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3
        if f.endswith("deep.png"):
            assert im.max() == 255
        if f.endswith("rot.jpg"):
            ys, xs = np.nonzero(im[..., 2] > 128)  # BGR red channel
            assert (xs.min(), xs.max(), ys.min(), ys.max()) == pytest.approx((40, 59, 0, 39), abs=2)


def test_cache_written_reused_and_invalidated(mini, log):
    build(mini)
    cache = mini / "labels" / "train.cache"
    assert cache.is_file()
    raw = cache.read_bytes()
    assert str(mini).encode() not in raw and str(mini.parent).encode() not in raw  # no absolute paths inside
    log.lines.clear()
    ds = build(mini)
    assert "(from cache): found 6, missing 0, empty 0, corrupt 0" in log.text()
    # editing a label file changes its size/mtime: the cache is rebuilt and the new labels are seen
    lb = label_of(images(mini)[0])
    lb.write_text("7 0.5 0.5 0.25 0.25\n")
    log.lines.clear()
    ds2 = build(mini)
    assert "(from cache)" not in log.text()
    first = {lb_["im_file"]: lb_ for lb_ in ds2.labels}[str(images(mini)[0])]
    assert first["cls"].tolist() == [[7.0]]
    assert len(ds2) == len(ds)


def test_moved_dataset_loads_same_labels(mini, tmp_path, log):
    before = build(mini)
    moved = tmp_path / "moved" / "somewhere"
    shutil.copytree(mini, moved)
    shutil.rmtree(mini)
    log.lines.clear()
    after = build(moved)
    assert "(from cache)" in log.text()  # copytree keeps mtimes and sizes, relative paths match
    assert [Path(f).name for f in after.im_files] == [Path(f).name for f in before.im_files]
    assert all(f.startswith(str(moved)) for f in after.im_files)
    for a, b in zip(after.labels, before.labels):
        np.testing.assert_array_equal(a["cls"], b["cls"])
        np.testing.assert_array_equal(a["bboxes"], b["bboxes"])
        assert a["shape"] == b["shape"]
    assert after[0]["img"].shape[0] == 3
    # a copy that does not keep mtimes: the cache no longer matches and is rebuilt cleanly, same labels
    fresh = tmp_path / "fresh"
    shutil.copytree(moved, fresh, copy_function=shutil.copy)
    for f in fresh.rglob("*"):
        os.utime(f, ns=(1_000_000_000, 1_000_000_000))
    log.lines.clear()
    again = build(fresh)
    assert "(from cache)" not in log.text() and "found 6, missing 0, empty 0, corrupt 0" in log.text()
    assert [lb["cls"].tolist() for lb in again.labels] == [lb["cls"].tolist() for lb in before.labels]


def test_corrupt_cache_rebuilt(mini, log):
    (mini / "labels" / "train.cache").write_bytes(b"not a cache")
    ds = build(mini)
    assert len(ds) == 6 and "ignoring unreadable label cache" in log.text()
    assert np.load(mini / "labels" / "train.cache", allow_pickle=False)["lengths"].shape == (6,)


def test_read_only_labels_dir_not_written(mini, log):
    labels = mini / "labels"
    mode = labels.stat().st_mode
    labels.chmod(0o555)
    try:
        ds = build(mini)
    finally:
        labels.chmod(mode)
    assert len(ds) == 6 and not (labels / "train.cache").exists()
    assert f"label cache not written: {labels} is read-only" in log.text()
