"""The detect task's trainer, validator and predictor at their published import path (they live in engine/)."""

from ultralytics.engine.predictor import DetectionPredictor
from ultralytics.engine.trainer import DetectionTrainer
from ultralytics.engine.validator import DetectionValidator

__all__ = ["DetectionPredictor", "DetectionTrainer", "DetectionValidator"]
