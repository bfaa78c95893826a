"""Building datasets and dataloaders: seeded workers, persistent workers, optional DDP sampler."""

from __future__ import annotations

import os
import random
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, distributed

from ultralytics.data.augment import resolve_hyp
from ultralytics.data.dataset import YOLODataset
from ultralytics.utils import LOGGER

SEED_OFFSET = 6148914691236517205  # spreads small user seeds over torch's 64-bit generator space


def seed_worker(worker_id: int) -> None:
    """Seed numpy and `random` in a dataloader worker from torch's per-worker seed (base seed + worker id).

    Also stops OpenCV's own thread pool in the worker: the workers already run in parallel.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    cv2.setNumThreads(0)


class YOLODataLoader(DataLoader):
    """DataLoader whose worker processes persist across epochs; `reset()` restarts them.

    Call `reset()` after changing the dataset in the main process (e.g. `dataset.close_mosaic(hyp)`),
    because persistent workers hold their own copy of the dataset.
    """

    def reset(self) -> None:
        """Shut the current workers down; the next iteration starts fresh ones with the current dataset."""
        it = getattr(self, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self._iterator = None


def build_yolo_dataset(cfg: Any, img_path: str | list, batch: int, data: dict, mode: str = "train",
                       rect: bool = False, stride: int = 32) -> YOLODataset:
    """A YOLODataset for `mode` ('train' augments; 'val' letterboxes, rect batches when cfg.rect or rect)."""
    if mode not in {"train", "val"}:
        raise ValueError(f"mode must be 'train' or 'val', got {mode!r}")
    hyp = resolve_hyp(cfg)
    return YOLODataset(
        img_path=img_path,
        imgsz=hyp.imgsz,
        batch_size=batch,
        augment=mode == "train",
        hyp=hyp,
        rect=bool(hyp.rect or rect),
        cache=hyp.cache or False,
        single_cls=bool(hyp.single_cls),
        stride=int(stride),
        pad=0.0 if mode == "train" else 0.5,
        prefix=f"{mode}: ",
        classes=hyp.classes,
        fraction=float(hyp.fraction) if mode == "train" else 1.0,
        data=data,
    )


def build_dataloader(dataset: YOLODataset, batch: int, workers: int, shuffle: bool = True, rank: int = -1,
                     seed: int = 0, sampler: Sampler | None = None) -> YOLODataLoader:
    """A seeded dataloader over `dataset` producing the batch dict of the contract.

    Same `seed` → same order and same augmentations. rank >= 0 (without an explicit `sampler`) uses a
    DistributedSampler(shuffle, seed): each rank takes every WORLD_SIZE-th image of one permutation shared by
    all ranks, reshuffled by `sampler.set_epoch(epoch)` (the trainer calls it every epoch). The generator that
    seeds the workers is seeded with seed + max(rank, 0), so rank 0 augments like a single-process run and
    every other rank differently but reproducibly. Workers persist across epochs; memory is pinned when CUDA
    is available.
    """
    batch = min(batch, len(dataset))
    if getattr(dataset, "rect", False) and shuffle:
        LOGGER.warning("WARNING ⚠️ rect batches need a fixed order; shuffle turned off")
        shuffle = False
    nd = torch.cuda.device_count()
    nw = max(0, min(int(workers), (os.cpu_count() or 1) // max(nd, 1)))
    if sampler is None and rank != -1:
        sampler = distributed.DistributedSampler(dataset, shuffle=shuffle, seed=seed)
    generator = torch.Generator()
    generator.manual_seed(SEED_OFFSET + int(seed) + max(rank, 0))
    return YOLODataLoader(
        dataset=dataset,
        batch_size=batch,
        shuffle=shuffle and sampler is None,
        num_workers=nw,
        sampler=sampler,
        pin_memory=torch.cuda.is_available() and os.getenv("PIN_MEMORY", "True").lower() == "true",
        collate_fn=YOLODataset.collate_fn,
        worker_init_fn=seed_worker,
        persistent_workers=nw > 0,
        generator=generator,
    )
