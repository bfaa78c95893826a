"""The engine: the YOLO facade (model.py), training (trainer.py, optim.py, amp.py, run_files.py), validation."""

__all__ = ["YOLO", "DetectionTrainer", "DetectionValidator"]


def __getattr__(name: str):
    # Lazy, so `import ultralytics.engine.optim` does not pull in the data pipeline.
    if name == "YOLO":
        from ultralytics.engine.model import YOLO

        return YOLO
    if name == "DetectionTrainer":
        from ultralytics.engine.trainer import DetectionTrainer

        return DetectionTrainer
    if name == "DetectionValidator":
        from ultralytics.engine.validator import DetectionValidator

        return DetectionValidator
    raise AttributeError(f"module 'ultralytics.engine' has no attribute {name!r}")
