"""YOLODataset: image discovery, verified + cached labels, image loading/caching, rect batch shapes, transforms."""

from __future__ import annotations

import math
import os
import random
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ultralytics.data.augment import AugmentParams, Compose, train_transforms, val_transforms
from ultralytics.data.cache import CACHE_VERSION, files_hash, load_cache, save_cache
from ultralytics.data.utils import (format_message, get_image_files, img2label_paths, imread, is_dir_writeable,
                                    verify_image_label)
from ultralytics.utils import LOGGER
from ultralytics.utils.ops import xywhn2xyxy

SCAN_THREADS = min(8, max(2, os.cpu_count() or 1))
MAX_WARNINGS = 20  # per-file warnings printed in full; the rest are counted


def _mem_available() -> int | None:
    """Bytes of available memory from /proc/meminfo (Linux), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def resized_size(h0: int, w0: int, imgsz: int) -> tuple[int, int]:
    """(h, w) of an image whose long side is resized to `imgsz`: each side scaled by imgsz / long side and rounded
    up, at most imgsz (the published dataset's rule; rounding up keeps a thin side from collapsing to 0)."""
    gain = imgsz / max(h0, w0)
    return min(math.ceil(h0 * gain), imgsz), min(math.ceil(w0 * gain), imgsz)


class YOLODataset(Dataset):
    """Detection dataset over a folder / list / .txt of images with YOLO-format labels (SPEC §8).

    Items are dicts (see augment.Format); `collate_fn` builds the batch dict of the contract. `hyp` holds the
    augmentation parameters (default.yaml values when None); the transforms draw from `self.rng` (see `reseed`).
    """

    def __init__(self, img_path: str | Path | list, imgsz: int = 640, cache: bool | str = False,
                 augment: bool = True, hyp: AugmentParams | None = None, prefix: str = "", rect: bool = False,
                 batch_size: int = 16, stride: int = 32, pad: float = 0.5, single_cls: bool = False,
                 classes: list[int] | None = None, fraction: float = 1.0, data: dict | None = None):
        super().__init__()
        imgsz = max(imgsz) if isinstance(imgsz, (list, tuple)) else imgsz
        self.imgsz, self.augment, self.rect, self.stride, self.pad = int(imgsz), augment, rect, stride, pad
        self.batch_size, self.prefix, self.data = batch_size, prefix, data or {}
        if hyp is not None and not isinstance(hyp, AugmentParams):
            raise TypeError(f"hyp must be an AugmentParams (AugmentParams.from_cfg(cfg)), got {type(hyp).__name__}")
        self.hyp = hyp if hyp is not None else AugmentParams()
        self.rng = random.Random(0)  # shared by every random transform; reseeded per worker/epoch by the loader
        names = self.data.get("names")
        self.nc = len(names) if names else 2**31 - 1  # without names no class-range check is possible
        root = self.data.get("path")
        im_files = get_image_files(img_path, root=root)
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        if fraction < 1.0:
            im_files = im_files[: max(1, round(len(im_files) * fraction))]
        self.im_files, self.labels = self._get_labels(im_files)
        self._filter_classes(single_cls, classes)
        if rect:
            self._set_rectangle()
        self.ims: list[np.ndarray | None] = [None] * len(self.im_files)
        self.ims_hw0: list[tuple[int, int] | None] = [None] * len(self.im_files)
        self.cache_mode: str | None = None
        self.cache_mode = self._cache_images(cache if cache in ("ram", "disk") else ("ram" if cache is True else None))
        self.transforms = self.build_transforms(self.hyp)

    # ---------------------------------------------------------------------------------------------------- labels
    def _get_labels(self, im_files: list[str]) -> tuple[list[str], list[dict]]:
        """Verified labels from the cache when it is current, else from a parallel scan (then cached)."""
        label_files = img2label_paths(im_files)
        cache_path = Path(label_files[0]).parent.with_suffix(".cache")
        base = cache_path.parent
        digest = files_hash(im_files + label_files, base, extra=f"nc={self.nc}")
        loaded = load_cache(cache_path)
        from_cache = loaded is not None and loaded[0].get("hash") == digest
        if from_cache:
            header, arrays = loaded  # type: ignore[misc]
        else:
            header, arrays = self._scan(im_files, label_files, base)
            header["hash"] = digest
            if is_dir_writeable(base):
                save_cache(cache_path, header, arrays)
            else:
                LOGGER.info(f"{self.prefix}label cache not written: {base} is read-only")
        by_rel = {os.path.relpath(f, base): f for f in im_files}
        files = [by_rel[r] for r in header["files"]]
        self._report(header, base, by_rel, label_dir=Path(label_files[0]).parent, from_cache=from_cache)
        if not files:
            raise RuntimeError(f"{self.prefix}no usable images in {Path(im_files[0]).parent}: all {len(im_files)} "
                               "were skipped (see the warnings above)")
        lengths, shapes, rows = arrays["lengths"], arrays["shapes"], arrays["labels"]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        labels = []
        for i, f in enumerate(files):
            lb = rows[offsets[i]: offsets[i + 1]].reshape(-1, 5).astype(np.float32)
            labels.append({"im_file": f, "shape": (int(shapes[i][0]), int(shapes[i][1])),
                           "cls": lb[:, 0:1].copy(), "bboxes": lb[:, 1:5].copy()})
        return files, labels

    def _scan(self, im_files: list[str], label_files: list[str], base: Path) -> tuple[dict, dict]:
        """Verify every image/label pair in a thread pool; return the cache header and arrays."""
        counts = {"found": 0, "missing": 0, "empty": 0, "corrupt": 0}
        files, msgs, lengths, shapes, rows = [], [], [], [], []
        with ThreadPool(SCAN_THREADS) as pool:
            results = pool.imap(verify_image_label, [(f, lb, self.nc) for f, lb in zip(im_files, label_files)])
            for r in results:
                counts[r["status"]] += 1
                rel = os.path.relpath(r["im_file"], base)
                if r["reason"]:
                    msgs.append([rel, r["reason"], r["detail"]])
                if r["labels"] is None:
                    continue
                files.append(rel)
                lengths.append(len(r["labels"]))
                shapes.append(r["shape"])
                rows.append(r["labels"])
        header = {"version": CACHE_VERSION, "files": files, "counts": counts, "msgs": msgs}
        arrays = {
            "labels": np.concatenate(rows, 0).astype(np.float32) if rows else np.zeros((0, 5), np.float32),
            "lengths": np.array(lengths, dtype=np.int64),
            "shapes": np.array(shapes, dtype=np.int64).reshape(-1, 2),
        }
        return header, arrays

    def _report(self, header: dict, base: Path, by_rel: dict, label_dir: Path, from_cache: bool) -> None:
        """Log per-file warnings (first MAX_WARNINGS) and the `found N, missing M, empty E, corrupt C` summary."""
        msgs = header["msgs"]
        for rel, reason, detail in msgs[:MAX_WARNINGS]:
            im = by_rel.get(rel, str(base / rel))
            LOGGER.warning(f"{self.prefix}WARNING ⚠️ {format_message(reason, detail, im, img2label_paths([im])[0])}")
        if len(msgs) > MAX_WARNINGS:
            LOGGER.warning(f"{self.prefix}WARNING ⚠️ ... and {len(msgs) - MAX_WARNINGS} more label/image warnings")
        n_range = sum(1 for m in msgs if m[1] == "class_range")
        if n_range:
            LOGGER.warning(f"{self.prefix}WARNING ⚠️ {n_range} image(s) skipped because a label has a class id >= "
                           f"nc={self.nc}; check 'names' in the dataset yaml matches the label files")
        c = header["counts"]
        src = " (from cache)" if from_cache else ""
        LOGGER.info(f"{self.prefix}Scanned {label_dir}{src}: found {c['found']}, missing {c['missing']}, "
                    f"empty {c['empty']}, corrupt {c['corrupt']}")
        if c["found"] == 0 and self.augment:
            LOGGER.warning(f"{self.prefix}WARNING ⚠️ no labels found in {label_dir}; training will see only "
                           "background. Labels belong in a 'labels' folder beside 'images' (SPEC §8).")

    def _filter_classes(self, single_cls: bool, classes: list[int] | None) -> None:
        """Keep only `classes` (if given) and map every class to 0 with single_cls."""
        for lb in self.labels:
            if classes is not None:
                keep = np.isin(lb["cls"][:, 0], np.asarray(classes))
                lb["cls"], lb["bboxes"] = lb["cls"][keep], lb["bboxes"][keep]
            if single_cls:
                lb["cls"][:] = 0

    def _set_rectangle(self) -> None:
        """Rectangular batches (SPEC §6): images ordered by aspect ratio h/w, consecutive `batch_size` images form a
        batch, and each batch's input shape fits its most extreme aspect with the long side at imgsz.

        The order is numpy's default argsort of h/w, as the published dataset sorts (images of equal aspect are
        therefore not kept in file order), so that the same images share a batch shape here and there.
        """
        sizes = np.array([lb["shape"] for lb in self.labels], dtype=np.float64)  # (n, 2) original h, w
        order = np.argsort(sizes[:, 0] / sizes[:, 1])
        self.im_files = [self.im_files[i] for i in order]
        self.labels = [self.labels[i] for i in order]
        aspect = sizes[order, 0] / sizes[order, 1]
        self.batch = np.arange(len(order)) // self.batch_size
        self.batch_shapes = np.stack([self._batch_shape(aspect[self.batch == b]) for b in range(self.batch[-1] + 1)])

    def _batch_shape(self, aspect: np.ndarray) -> np.ndarray:
        """(h, w) input of a batch with these h/w aspects: the long side is imgsz for the most extreme image (all
        wide: the tallest sets h; all tall: the widest sets w; mixed: square), plus `pad` strides, in strides."""
        if aspect.max() < 1:
            relative = np.array([aspect.max(), 1.0])
        elif aspect.min() > 1:
            relative = np.array([1.0, 1.0 / aspect.min()])
        else:
            relative = np.ones(2)
        return np.ceil(relative * self.imgsz / self.stride + self.pad).astype(int) * self.stride

    # ---------------------------------------------------------------------------------------------------- images
    def _npy_file(self, i: int) -> Path:
        return Path(self.im_files[i]).with_suffix(".npy")

    def _cache_images(self, mode: str | None) -> str | None:
        """Cache resized images in RAM, or decoded originals as .npy next to each image (disk)."""
        if mode is None:
            return None
        if mode == "ram":
            need = sum(self.imgsz**2 * 3 * min(1.0, (h / w if w > h else w / h)) for h, w in
                       (lb["shape"] for lb in self.labels))
            avail = _mem_available()
            if avail is not None and need > 0.6 * avail:
                LOGGER.warning(f"{self.prefix}WARNING ⚠️ cache='ram' needs ~{need / 1e9:.1f} GB but only "
                               f"{avail / 1e9:.1f} GB is available; not caching images")
                return None
        else:
            dirs = {Path(f).parent for f in self.im_files}
            ro = [d for d in dirs if not is_dir_writeable(d)]
            if ro:
                LOGGER.warning(f"{self.prefix}WARNING ⚠️ cache='disk' needs write access to {ro[0]}; not caching")
                return None

        def work(i: int) -> None:
            if mode == "ram":
                im, hw0, _ = self.load_image(i)
                self.ims[i], self.ims_hw0[i] = im, hw0
            else:
                npy, f = self._npy_file(i), self.im_files[i]
                if not npy.exists() or npy.stat().st_mtime_ns < Path(f).stat().st_mtime_ns:
                    tmp = npy.with_name(npy.stem + f".{os.getpid()}.tmp.npy")
                    np.save(tmp, imread(f, self.labels[i]["shape"]), allow_pickle=False)
                    os.replace(tmp, npy)

        with ThreadPool(SCAN_THREADS) as pool:
            list(pool.imap(work, range(len(self.im_files))))
        LOGGER.info(f"{self.prefix}cached {len(self.im_files)} images ({mode})")
        return mode

    def load_image(self, i: int) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """Image i as BGR uint8 with its long side resized to imgsz (INTER_LINEAR); returns (img, (h0, w0), (h, w))."""
        if self.ims[i] is not None:
            im = self.ims[i]
            return im, self.ims_hw0[i], im.shape[:2]  # type: ignore[return-value]
        im = None
        if self.cache_mode == "disk":
            try:
                im = np.load(self._npy_file(i), allow_pickle=False)
            except (OSError, ValueError):
                im = None
        if im is None:
            im = imread(self.im_files[i], self.labels[i]["shape"])
        h0, w0 = im.shape[:2]
        h, w = resized_size(h0, w0, self.imgsz)
        if (h, w) != (h0, w0):
            im = cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)
        return im, (h0, w0), (h, w)

    def get_image_and_label(self, i: int) -> dict:
        """Labels dict of image i before augmentation: resized image, boxes as pixel xyxy on it."""
        lb = self.labels[i]
        img, (h0, w0), (h, w) = self.load_image(i)
        out = {
            "im_file": lb["im_file"], "img": img, "cls": lb["cls"].copy(),
            "bboxes": xywhn2xyxy(lb["bboxes"].copy(), w=w, h=h).astype(np.float32),
            "ori_shape": (h0, w0), "resized_shape": (h, w), "ratio_pad": ((h / h0, w / w0), (0, 0)),
        }
        if self.rect:
            out["rect_shape"] = tuple(int(v) for v in self.batch_shapes[self.batch[i]])
        return out

    # ---------------------------------------------------------------------------------------------------- pipeline
    def build_transforms(self, hyp: AugmentParams) -> Compose:
        """Training pipeline when augmenting, else the validation letterbox."""
        if self.augment:
            return train_transforms(self, self.imgsz, hyp, rect=self.rect, rng=self.rng)
        return val_transforms(self.imgsz)

    def reseed(self, seed: int) -> None:
        """Restart the augmentation generator from `seed`."""
        self.rng.seed(seed)

    def close_mosaic(self, hyp: AugmentParams | Any = None) -> None:
        """Turn mosaic and mixup off (last epochs). Call the loader's `reset()` afterwards so workers see it.

        `hyp` (AugmentParams or a run config) replaces the other parameters; by default they stay as they are.
        """
        base = self.hyp if hyp is None else hyp if isinstance(hyp, AugmentParams) else AugmentParams.from_cfg(hyp)
        self.hyp = base.without_mosaic()
        self.transforms = self.build_transforms(self.hyp)

    def label_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All labels as (cls (N,), boxes (N, 4) normalised xywh), e.g. for plot_labels."""
        cls = np.concatenate([lb["cls"][:, 0] for lb in self.labels]) if self.labels else np.zeros(0)
        boxes = np.concatenate([lb["bboxes"] for lb in self.labels]) if self.labels else np.zeros((0, 4))
        return cls, boxes.reshape(-1, 4)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return self.transforms(self.get_image_and_label(i))

    @staticmethod
    def collate_fn(batch: list[dict]) -> dict:
        """Stack images, concatenate labels and add `batch_idx` (image index of each box) as float (N,)."""
        return {
            "img": torch.stack([b["img"] for b in batch], 0),
            "cls": torch.cat([b["cls"] for b in batch], 0),
            "bboxes": torch.cat([b["bboxes"] for b in batch], 0),
            "batch_idx": torch.cat([torch.full((len(b["cls"]),), float(i)) for i, b in enumerate(batch)], 0),
            "im_file": [b["im_file"] for b in batch],
            "ori_shape": [b["ori_shape"] for b in batch],
            "resized_shape": [b["resized_shape"] for b in batch],
            "ratio_pad": [b["ratio_pad"] for b in batch],
        }
