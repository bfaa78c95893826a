"""`ultralytics.models.yolo`: the YOLO facade and its detect task (the only task of this project)."""

from ultralytics.engine.model import YOLO
from ultralytics.models.yolo import detect

__all__ = ["YOLO", "detect"]
