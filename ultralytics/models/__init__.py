"""The published import paths of the models: `ultralytics.models.YOLO`, `ultralytics.models.yolo.detect.*`."""

from ultralytics.engine.model import YOLO

__all__ = ["YOLO"]
