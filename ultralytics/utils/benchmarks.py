"""The published import path of the benchmarks: `from ultralytics.utils.benchmarks import benchmark, ProfileModels`.

A compatibility facade above the layers (it needs the YOLO facade); the code lives in ultralytics/engine/benchmark.py.
Nothing inside the package imports this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ultralytics.engine.benchmark import ProfileModels, Table, benchmark_model
from ultralytics.engine.model import YOLO

__all__ = ("ProfileModels", "Table", "benchmark")


def benchmark(model: str | Path | YOLO = "yolov8n.yaml", data: str | None = None, imgsz: int = 160,
              half: bool = False, int8: bool = False, device: Any = "cpu", verbose: bool = False, format: str = "",
              **kwargs: Any) -> Table:
    """Benchmark `model` (a yaml, a *.pt or a YOLO object) in every supported export format on `data` (default: the
    bundled coco8-assets.yaml); see `engine.benchmark.benchmark_model`."""
    yolo = model if isinstance(model, YOLO) else YOLO(str(model))
    return benchmark_model(yolo, YOLO, data=data, imgsz=imgsz, half=half, int8=int8, device=device, verbose=verbose,
                           format=format)
