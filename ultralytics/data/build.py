"""Datasets and dataloaders from a run config: seeded augmentation, persistent workers, optional DDP sampler.

Seeding: `build_dataloader(seed=s, rank=r)` owns a torch generator seeded from (s, max(r, 0)). It orders the
shuffle and, through the per-worker seeds torch derives from it, seeds each worker's copy of the dataset's
augmentation generator (`init_worker`); without workers the loader reseeds the dataset itself from the same
generator at the start of every epoch. So a seed fixes the batches whatever the process's global RNG state.
"""

from __future__ import annotations

import os
import random
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, distributed, get_worker_info

from ultralytics.data.augment import AugmentParams
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.loaders import InferenceSource
from ultralytics.errors import ConfigError
from ultralytics.utils import LOGGER

_DATASET_KEYS = ("imgsz", "rect", "cache", "single_cls", "classes", "fraction")


def loader_seed(seed: int, rank: int = -1) -> int:
    """64-bit seed of a loader's generator; rank -1 (single process) and rank 0 share it, other ranks differ."""
    return int(np.random.SeedSequence([int(seed), max(int(rank), 0)]).generate_state(1, np.uint64)[0])


def init_worker(worker_id: int) -> None:
    """Seed a dataloader worker from torch's per-worker seed: numpy, `random` and the dataset's own generator.

    Also stops OpenCV's thread pool in the worker: the workers already run in parallel.
    """
    seed = torch.initial_seed()  # the loader's base seed + worker_id
    np.random.seed(seed % 2**32)
    random.seed(seed)
    info = get_worker_info()
    if info is not None and isinstance(info.dataset, YOLODataset):
        info.dataset.reseed(seed)
    cv2.setNumThreads(0)


class YOLODataLoader(DataLoader):
    """DataLoader whose worker processes persist across epochs; `reset()` restarts them.

    Call `reset()` after changing the dataset in the main process (e.g. `dataset.close_mosaic()`), because
    persistent workers hold their own copy of the dataset.
    """

    def __iter__(self) -> Any:
        if self.num_workers == 0 and isinstance(self.dataset, YOLODataset):
            self.dataset.reseed(int(torch.randint(2**62, (), generator=self.generator)))
        return super().__iter__()

    def reset(self) -> None:
        """Shut the current workers down; the next iteration starts fresh ones with the current dataset."""
        it = getattr(self, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self._iterator = None


def build_yolo_dataset(cfg: Any, img_path: str | list, batch: int, data: dict, mode: str = "train",
                       rect: bool | None = None, stride: int = 32, imgsz: int | None = None) -> YOLODataset:
    """A YOLODataset for `mode` ('train' augments; 'val' letterboxes).

    `cfg` is the run config (`ultralytics.cfg.get_cfg`): the dataset reads cache, single_cls, classes, fraction
    and the augmentation keys (`AugmentParams.from_cfg`). `rect` (rectangular batches) and `imgsz` default to
    cfg.rect and cfg.imgsz; pass them to override the config (e.g. the stride-checked imgsz).
    """
    if mode not in {"train", "val"}:
        raise ValueError(f"mode must be 'train' or 'val', got {mode!r}")
    missing = [k for k in _DATASET_KEYS if not hasattr(cfg, k)]
    if missing:
        raise AttributeError(f"config lacks dataset keys {missing}; pass the run config from ultralytics.cfg.get_cfg")
    train = mode == "train"
    return YOLODataset(
        img_path=img_path,
        data=data,
        imgsz=cfg.imgsz if imgsz is None else imgsz,
        batch_size=batch,
        stride=int(stride),
        augment=train,
        hyp=AugmentParams.from_cfg(cfg),
        rect=bool(cfg.rect if rect is None else rect),
        pad=0.0 if train else 0.5,
        cache=cfg.cache or False,
        single_cls=bool(cfg.single_cls),
        classes=cfg.classes,
        fraction=float(cfg.fraction) if train else 1.0,
        prefix=f"{mode}: ",
    )


def build_dataloader(dataset: YOLODataset, batch: int, workers: int, shuffle: bool = True, rank: int = -1,
                     seed: int = 0, sampler: Sampler | None = None) -> YOLODataLoader:
    """A seeded dataloader over `dataset` producing the batch dict of the contract.

    Same `seed` → same order and same augmentations, for any number of workers. rank >= 0 (without an explicit
    `sampler`) uses a DistributedSampler(shuffle, seed): each rank takes every WORLD_SIZE-th image of one
    permutation shared by all ranks, reshuffled by `sampler.set_epoch(epoch)` (the trainer calls it every epoch).
    Rank 0 augments like a single-process run, every other rank differently but reproducibly. Workers persist
    across epochs; memory is pinned when CUDA is available (unless PIN_MEMORY=False).
    """
    batch = min(batch, len(dataset))
    if getattr(dataset, "rect", False) and shuffle:
        LOGGER.warning("WARNING ⚠️ rect batches need a fixed order; shuffle turned off")
        shuffle = False
    per_device_cpus = (os.cpu_count() or 1) // max(torch.cuda.device_count(), 1)
    n_workers = max(0, min(int(workers), per_device_cpus))
    if sampler is None and rank != -1:
        sampler = distributed.DistributedSampler(dataset, shuffle=shuffle, seed=seed)
    pin = torch.cuda.is_available() and os.getenv("PIN_MEMORY", "True").lower() == "true"
    return YOLODataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        shuffle=shuffle and sampler is None,
        collate_fn=YOLODataset.collate_fn,
        num_workers=n_workers,
        persistent_workers=n_workers > 0,
        worker_init_fn=init_worker,
        generator=torch.Generator().manual_seed(loader_seed(seed, rank)),
        pin_memory=pin,
    )


def load_inference_source(source: Any, batch: int = 1, vid_stride: int = 1, buffer: bool = False) -> InferenceSource:
    """The lazy prediction source the predictor iterates (`ultralytics.data.loaders.InferenceSource`).

    It yields one `SourceItem` (path, BGR image, ...) per image or kept video frame; the predictor groups them
    into batches, so `batch` (>= 1) is only recorded as `source.bs`. `buffer` concerns live streams, which this
    package does not read; it is accepted for compatibility and has no effect.
    """
    if int(batch) < 1:
        raise ConfigError(f"batch={batch} must be an int >= 1")
    src = InferenceSource(source, vid_stride=vid_stride)
    src.bs = int(batch)
    return src
