"""Data side: dataset yamls, label verification + cache, YOLODataset, augmentations, dataloaders."""

from ultralytics.data.build import YOLODataLoader, build_dataloader, build_yolo_dataset
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import check_det_dataset

__all__ = ["YOLODataset", "YOLODataLoader", "build_dataloader", "build_yolo_dataset", "check_det_dataset"]
