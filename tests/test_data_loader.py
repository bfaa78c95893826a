"""YOLODataset + dataloader on real COCO images (the bundled ones): lengths, labels, batches, rect shapes, options."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import SequentialSampler

from ultralytics.cfg import get_cfg
from ultralytics.data import build_dataloader, build_yolo_dataset, check_det_dataset
from ultralytics.data.augment import Mosaic
from ultralytics.utils.ops import scale_boxes, xywhn2xyxy
from ultralytics.utils import yaml_load, yaml_save
from ultralytics.utils.plotting import plot_images, plot_labels

from conftest import ASSET_STEMS  # noqa: E402

IMGSZ = 320


def run_cfg(**overrides):
    """The run config of `yolo train` with these overrides (what the trainer hands to build_yolo_dataset)."""
    return get_cfg(overrides=overrides)


@pytest.fixture(scope="module")
def coco(assets, tmp_path_factory) -> Path:
    """COCO128's layout over the bundled images: train2017 = the 8 labelled images + 2 background images (copies
    without a label file), val2017 = the 8 labelled images."""
    root = tmp_path_factory.mktemp("loader") / "coco"
    for split in ("train2017", "val2017"):
        shutil.copytree(assets / "images", root / "images" / split)
        shutil.copytree(assets / "labels", root / "labels" / split)
    for stem in ASSET_STEMS[:2]:
        shutil.copy2(assets / "images" / f"{stem}.jpg", root / "images" / "train2017" / f"background_{stem}.jpg")
    yaml_save(root / "data.yaml", dict(yaml_load(assets / "data.yaml"), path=str(root), train="images/train2017",
                                       val="images/val2017"))
    return root


@pytest.fixture(scope="module")
def data(coco) -> dict:
    return check_det_dataset(coco / "data.yaml")


def expected_rows(split_dir: Path) -> int:
    """Distinct non-empty label rows of the split's images, counted independently of the dataset code."""
    total = 0
    for im in split_dir.glob("*.jpg"):
        f = split_dir.parent.parent / "labels" / split_dir.name / im.with_suffix(".txt").name
        if not f.exists():
            continue
        rows = {tuple(float(v) for v in ln.split()) for ln in f.read_text().splitlines() if ln.strip()}
        total += len(rows)
    return total


def test_lengths_and_label_counts(data, coco):
    tr = build_yolo_dataset(run_cfg(imgsz=IMGSZ), data["train"], 16, data)
    va = build_yolo_dataset(run_cfg(imgsz=IMGSZ), data["val"], 16, data, mode="val")
    assert len(tr) == 10 and len(va) == 8
    assert sum(len(lb["cls"]) for lb in tr.labels) == expected_rows(coco / "images" / "train2017") == 68
    assert sum(len(lb["cls"]) for lb in va.labels) == expected_rows(coco / "images" / "val2017") == 68
    assert sum(len(lb["cls"]) == 0 for lb in tr.labels) == 2  # two train images have no label file
    cls = np.concatenate([lb["cls"] for lb in tr.labels])
    assert cls.min() >= 0 and cls.max() < 80
    boxes = np.concatenate([lb["bboxes"] for lb in tr.labels])
    assert (boxes >= 0).all() and (boxes <= 1).all()


def test_train_batch_shapes_dtypes_and_batch_idx(data):
    ds = build_yolo_dataset(run_cfg(imgsz=IMGSZ, mixup=0.3, degrees=5), data["train"], 8, data)
    items = [ds[i] for i in range(8)]
    b = ds.collate_fn(items)
    assert b["img"].shape == (8, 3, IMGSZ, IMGSZ) and b["img"].dtype == torch.uint8
    n = len(b["cls"])
    assert b["cls"].shape == (n, 1) and b["cls"].dtype == torch.float32
    assert b["bboxes"].shape == (n, 4) and b["bboxes"].dtype == torch.float32
    assert b["batch_idx"].shape == (n,) and b["batch_idx"].dtype == torch.float32
    assert ((b["bboxes"] >= 0) & (b["bboxes"] <= 1)).all()
    counts = torch.bincount(b["batch_idx"].long(), minlength=8).tolist()
    assert counts == [len(it["cls"]) for it in items]
    assert (b["batch_idx"].diff() >= 0).all()
    assert len(b["im_file"]) == len(b["ori_shape"]) == len(b["resized_shape"]) == len(b["ratio_pad"]) == 8
    # boxes are at least 2 px and stay inside the image after the filter
    wh = b["bboxes"][:, 2:] * IMGSZ
    assert (wh > 2 - 1e-3).all()


def test_rect_val_batches_follow_spec_formula(data):
    bs = 4  # 2 batches of the 8 val images
    ds = build_yolo_dataset(run_cfg(imgsz=IMGSZ), data["val"], bs, data, mode="val", rect=True)
    hw = np.array([lb["shape"] for lb in ds.labels], float)
    ar = hw[:, 0] / hw[:, 1]
    assert (np.diff(ar) >= 0).all()  # sorted by aspect ratio
    for k, shape in enumerate(ds.batch_shapes):
        a = ar[k * bs:(k + 1) * bs]
        pair = [a.max(), 1.0] if a.max() < 1 else ([1.0, 1 / a.min()] if a.min() > 1 else [1.0, 1.0])
        want = [math.ceil(p * IMGSZ / 32 + 0.5) * 32 for p in pair]
        assert shape.tolist() == want and all(v % 32 == 0 for v in shape)
    loader = build_dataloader(ds, bs, workers=0, shuffle=False)
    for k, batch in enumerate(loader):
        assert tuple(batch["img"].shape[2:]) == tuple(ds.batch_shapes[k])
        for j, ((gain_h, gain_w), (pw, ph)) in enumerate(batch["ratio_pad"]):
            h0, w0 = batch["ori_shape"][j]
            # per axis: the resized side (long side imgsz, each side rounded up, SPEC §6) / the original side
            rh, rw = (min(math.ceil(s * IMGSZ / max(h0, w0)), IMGSZ) for s in (h0, w0))
            assert (gain_h, gain_w) == pytest.approx((rh / h0, rw / w0), rel=1e-9)
            H, W = batch["img"].shape[2:]
            assert abs(2 * pw - (W - rw)) <= 1 and abs(2 * ph - (H - rh)) <= 1
        if k == 0:  # grey 114 padding and boxes that map back to the original labels
            img = batch["img"][0]
            (gain, _), (pw, ph) = batch["ratio_pad"][0]
            if pw > 0:
                assert (img[:, :, 0] == 114).all()
            if ph > 0:
                assert (img[:, 0, :] == 114).all()
            sel = batch["batch_idx"] == 0
            H, W = img.shape[1:]
            xyxy = xywhn2xyxy(batch["bboxes"][sel].clone(), w=W, h=H)
            back = scale_boxes((H, W), xyxy, batch["ori_shape"][0], ratio_pad=batch["ratio_pad"][0]).numpy()
            lb = ds.labels[0]
            h0, w0 = lb["shape"]
            orig = xywhn2xyxy(lb["bboxes"].copy(), w=w0, h=h0)
            np.testing.assert_allclose(back, orig, atol=2.0)


def test_close_mosaic_turns_mosaic_and_mixup_off(data):
    hyp = run_cfg(imgsz=IMGSZ, mosaic=1.0, mixup=0.5, translate=0.0, scale=0.0, fliplr=0.0, hsv_h=0.0,
                          hsv_s=0.0, hsv_v=0.0)
    ds = build_yolo_dataset(hyp, data["train"], 8, data)
    mosaic = ds.transforms.transforms[0].transforms[0]
    assert isinstance(mosaic, Mosaic) and mosaic.p == 1.0
    ds.close_mosaic(hyp)
    assert hyp.mosaic == 1.0 and hyp.mixup == 0.5  # the caller's namespace is not changed
    assert ds.hyp.mosaic == 0.0 and ds.hyp.mixup == 0.0
    val = build_yolo_dataset(run_cfg(imgsz=IMGSZ), data["train"], 8, data, mode="val")
    for i in (0, 5, 9):
        item, ref = ds[i], val[i]  # no mosaic, no random transform left: equal to the square letterbox
        assert item["img"].shape == (3, IMGSZ, IMGSZ)
        torch.testing.assert_close(item["img"], ref["img"], atol=0, rtol=0)
        keep = (ref["bboxes"][:, 2:] * IMGSZ > 2).all(1)
        torch.testing.assert_close(item["bboxes"], ref["bboxes"][keep], atol=1e-4, rtol=0)


def test_rect_training_uses_batch_shapes_without_mosaic(data):
    ds = build_yolo_dataset(run_cfg(imgsz=IMGSZ, rect=True), data["train"], 8, data)
    assert ds.rect and ds.transforms.transforms[0].transforms[0].p == 0.0  # mosaic off
    # training rect uses pad 0.0: shape = ceil(a * imgsz / 32) * 32
    for i in (0, 4, 9):
        item = ds[i]
        assert tuple(item["img"].shape[1:]) == tuple(ds.batch_shapes[ds.batch[i]])
        assert all(v % 32 == 0 and v <= IMGSZ for v in item["img"].shape[1:])
    loader = build_dataloader(ds, 8, workers=0, shuffle=True)
    assert isinstance(loader.sampler, SequentialSampler)  # rect batches keep their order


def test_seeded_loader_reproducible_with_workers(data):
    ds = build_yolo_dataset(run_cfg(imgsz=160, mixup=0.5, degrees=10), data["train"], 8, data)
    first = []
    for seed in (0, 0, 1):
        loader = build_dataloader(ds, 8, workers=2, shuffle=True, seed=seed)
        assert loader.num_workers == 2 and loader.persistent_workers
        first.append(next(iter(loader)))
        loader.reset()
    a, b, c = first
    assert a["im_file"] == b["im_file"]
    torch.testing.assert_close(a["img"], b["img"], atol=0, rtol=0)
    torch.testing.assert_close(a["bboxes"], b["bboxes"], atol=0, rtol=0)
    torch.testing.assert_close(a["batch_idx"], b["batch_idx"], atol=0, rtol=0)
    assert a["im_file"] != c["im_file"] or not torch.equal(a["img"], c["img"])


def test_reset_makes_workers_see_close_mosaic(data):
    hyp = run_cfg(imgsz=160, translate=0.0, scale=0.0, fliplr=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)
    ds = build_yolo_dataset(hyp, data["train"], 4, data)
    loader = build_dataloader(ds, 4, workers=1, shuffle=False)
    next(iter(loader))
    ds.close_mosaic(hyp)
    loader.reset()
    batch = next(iter(loader))
    want = ds.collate_fn([ds[i] for i in range(4)])
    torch.testing.assert_close(batch["img"], want["img"], atol=0, rtol=0)
    loader.reset()


def test_fraction_single_cls_and_sampler(data):
    ds = build_yolo_dataset(run_cfg(imgsz=IMGSZ, fraction=0.5, single_cls=True), data["train"], 4, data)
    assert len(ds) == 5
    assert all((lb["cls"] == 0).all() for lb in ds.labels) and sum(len(lb["cls"]) for lb in ds.labels) > 0
    val = build_yolo_dataset(run_cfg(imgsz=IMGSZ, fraction=0.5), data["val"], 4, data, mode="val")
    assert len(val) == 8  # fraction applies to training only
    only = build_yolo_dataset(run_cfg(imgsz=IMGSZ, classes=[0, 14]), data["val"], 4, data, mode="val")
    kept = np.concatenate([lb["cls"][:, 0] for lb in only.labels])
    assert sorted(kept.tolist()) == [0.0] * 5 + [14.0] * 8  # 5 persons and 8 birds among the 68 labels
    sampler = SequentialSampler(ds)
    loader = build_dataloader(ds, 4, workers=0, shuffle=True, sampler=sampler)
    assert loader.sampler is sampler
    assert next(iter(loader))["im_file"] == ds.im_files[:4]


def test_cache_ram_and_disk_match_uncached(data, coco, tmp_path):
    cfg = run_cfg(imgsz=160)
    plain = build_yolo_dataset(cfg, data["val"], 4, data, mode="val")
    ram = build_yolo_dataset(run_cfg(imgsz=160, cache="ram"), data["val"], 4, data, mode="val")
    assert ram.cache_mode == "ram" and all(im is not None for im in ram.ims)
    for i in (0, 3, 7):
        torch.testing.assert_close(ram[i]["img"], plain[i]["img"], atol=0, rtol=0)
    root = tmp_path / "c"
    for sub in ("images", "labels"):
        (root / sub / "val").mkdir(parents=True)
    for f in sorted((coco / "images" / "val2017").glob("*.jpg"))[:4]:
        shutil.copy2(f, root / "images" / "val")
        shutil.copy2(coco / "labels" / "val2017" / f.with_suffix(".txt").name, root / "labels" / "val")
    disk = build_yolo_dataset(run_cfg(imgsz=160, cache="disk"), str(root / "images" / "val"), 4, data,
                              mode="val")
    assert disk.cache_mode == "disk" and len(list((root / "images" / "val").glob("*.npy"))) == 4
    for i in range(4):
        j = plain.im_files.index(str(coco / "images" / "val2017" / Path(disk.im_files[i]).name))
        torch.testing.assert_close(disk[i]["img"], plain[j]["img"], atol=0, rtol=0)
    folder = coco / "images" / "val2017"
    folder.chmod(0o555)  # a read-only dataset (like an installed package's): no .npy written there
    try:
        ro = build_yolo_dataset(run_cfg(imgsz=160, cache="disk"), data["val"], 4, data, mode="val")
    finally:
        folder.chmod(0o755)
    assert ro.cache_mode is None and not list(folder.glob("*.npy"))


def test_plots(data, tmp_path):
    ds = build_yolo_dataset(run_cfg(imgsz=160), data["train"], 4, data)
    batch = ds.collate_fn([ds[i] for i in range(6)])
    f = plot_images(batch, tmp_path / "train_batch0.jpg", names=data["names"])
    im = cv2.imread(str(f))
    assert im is not None and im.shape == (3 * 160, 3 * 160, 3)
    assert im[:160, :160].std() > 10 and im[2 * 160 + 8:, 160 + 8:].min() > 235  # drawn tile; empty tiles white
    cls, boxes = ds.label_arrays()
    out = plot_labels(boxes, cls, data["names"], tmp_path)
    lab = cv2.imread(str(out))
    assert out.name == "labels.jpg" and lab is not None and lab.shape[0] >= 400 and lab.std() > 5


class _RandomDraws(torch.utils.data.Dataset):
    """Returns the numpy and `random` draws made inside the worker that loads the item."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        import random

        return {"np": float(np.random.rand()), "py": random.random()}

    @staticmethod
    def collate_fn(batch):
        return batch[0]


def test_worker_rngs_seeded_from_torch(monkeypatch):
    from ultralytics.data import build as build_mod

    monkeypatch.setattr(build_mod.YOLODataset, "collate_fn", _RandomDraws.collate_fn)
    runs = []
    for seed in (3, 3, 4):
        loader = build_dataloader(_RandomDraws(), 1, workers=2, shuffle=False, seed=seed)
        runs.append([(d["np"], d["py"]) for d in loader])
        loader.reset()
    assert runs[0] == runs[1]  # same seed, same draws
    assert runs[0] != runs[2]  # another seed, other draws
    assert runs[0][0] != runs[0][1]  # items 0 and 1 come from workers 0 and 1: their streams differ
