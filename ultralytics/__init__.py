"""YOLOv8 object detection with Bi-Level Routing Attention, compatible with the Ultralytics API."""

from ultralytics.engine.compare import compare
from ultralytics.engine.model import YOLO
from ultralytics.utils import SETTINGS as settings
from ultralytics.utils.checks import check_yolo as checks
from ultralytics.version import __version__

__all__ = ["__version__", "YOLO", "checks", "compare", "settings"]
