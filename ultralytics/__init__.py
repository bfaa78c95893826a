"""YOLOv8 object detection with Bi-Level Routing Attention, compatible with the Ultralytics API."""

__version__ = "8.1.0"

__all__ = ["__version__", "YOLO"]


def __getattr__(name: str):
    # Import lazily so `import ultralytics` (and `yolo version`) stays fast and light.
    if name == "YOLO":
        from ultralytics.engine.model import YOLO

        return YOLO
    raise AttributeError(f"module 'ultralytics' has no attribute {name!r}")
