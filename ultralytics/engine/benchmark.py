"""Benchmarks of a model across its export formats, and of several models' speed (`ultralytics.utils.benchmarks`).

    benchmark(model="yolov8n.pt", data="coco8-assets.yaml", imgsz=160)   # PyTorch, TorchScript, ONNX: size, mAP, ms
    ProfileModels(["yolov8n.yaml", "yolov8_BiFormer.yaml"], imgsz=320).profile()   # params, GFLOPs, ms per format

Only the formats this project exports are benchmarked (PyTorch, TorchScript, ONNX); the published package lists
every format it knows, most of them failed rows on a machine without their toolchains.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from ultralytics.engine.exporter import export_model
from ultralytics.errors import UnsupportedError
from ultralytics.nn.autobackend import AutoBackend
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import LOGGER
from ultralytics.utils.files import file_size
from ultralytics.utils.torch_utils import get_flops, select_device

# (display name, format= value, file suffix); PyTorch is the model itself
FORMATS: tuple[tuple[str, str, str], ...] = (("PyTorch", "-", ".pt"), ("TorchScript", "torchscript", ".torchscript"),
                                             ("ONNX", "onnx", ".onnx"))
COLUMNS = ("Format", "Status❔", "Size (MB)", "metrics/mAP50-95(B)", "Inference time (ms/im)", "FPS")
DEFAULT_DATA = "coco8-assets.yaml"  # bundled, no download (the published default is coco8.yaml)


class Table(list):
    """Rows (dicts with the same keys); `table["FPS"]` is a column, `str(table)` a text table, `to_df()` a polars
    DataFrame (the published package returns one; polars is optional here)."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return [row[key] for row in self]
        return super().__getitem__(key)

    @property
    def columns(self) -> list[str]:
        return list(self[0]) if self else []

    def to_df(self) -> Any:
        try:
            import polars
        except ImportError as e:
            raise ImportError("to_df() needs polars: pip install polars (str(table) and the rows work without it)") from e
        return polars.DataFrame(list(self))

    def __str__(self) -> str:
        cols = self.columns
        cells = [[str(c) for c in cols]] + [["-" if row[c] is None else str(row[c]) for c in cols] for row in self]
        widths = [max(len(r[k]) for r in cells) for k in range(len(cols))]
        lines = ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in cells]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)


def _selected(format: str) -> list[tuple[str, str, str]]:
    if not format:
        return list(FORMATS)
    chosen = [f for f in FORMATS if format.lower() in (f[1], f[0].lower())]
    if not chosen:
        raise UnsupportedError(f"benchmark format={format!r} is not supported; choose one of "
                               f"{', '.join(f[1] for f in FORMATS[1:])} (or leave it out for all)")
    return chosen


def benchmark_model(yolo: Any, load: Callable[[str], Any], data: str | None = None, imgsz: int = 160,
                    half: bool = False, int8: bool = False, device: Any = "cpu", verbose: bool = False,
                    format: str = "") -> Table:
    """For each export format: export the YOLO object `yolo`, load the file with `load` (the YOLO class), validate
    it on `data` at `imgsz` (batch 1) and report its size, mAP50-95 and inference time. Status ✅ success, ❎
    exported but validation failed, ❌ export failed."""
    if int8:
        raise UnsupportedError("benchmark int8=True: INT8 export is not supported by this project")
    data = data or DEFAULT_DATA
    device = str(select_device(device, verbose=False))
    rows, start = Table(), time.perf_counter()
    for name, fmt, suffix in _selected(format):
        row = dict.fromkeys(COLUMNS)
        row.update({"Format": name, "Status❔": "❌", "Size (MB)": 0.0})
        try:
            path = yolo.ckpt_path or "" if fmt == "-" else yolo.export(format=fmt, imgsz=imgsz, half=half,
                                                                         device=device, verbose=False)
            target = yolo if fmt == "-" else load(path)
            row.update({"Status❔": "❎", "Size (MB)": round(file_size(path), 1)})
            metrics = target.val(data=data, imgsz=imgsz, batch=1, device=device, half=half, plots=False,
                                 verbose=verbose)
            ms = float(metrics.speed["inference"])
            row.update({"Status❔": "✅", "metrics/mAP50-95(B)": round(float(metrics.box.map), 4),
                        "Inference time (ms/im)": round(ms, 2), "FPS": round(1000 / ms, 2) if ms else None})
        except Exception as e:  # a failed format is a row of the table, not the end of the benchmark
            LOGGER.warning(f"WARNING ⚠️ benchmark of {name} failed: {type(e).__name__}: {e}")
        rows.append(row)
    name = getattr(yolo, "ckpt_path", None) or getattr(yolo, "cfg", None)
    LOGGER.info(f"\nBenchmarks complete for {name} on {data} at imgsz={imgsz} ({time.perf_counter() - start:.2f}s)\n"
                f"{rows}")
    return rows


def time_runs(run: Any, warmup: int, runs: int, min_time: float) -> tuple[float, float]:
    """(median, std) milliseconds of `run()` after `warmup` calls: at least `runs` timed calls, and more until
    `min_time` seconds have been spent timing."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    begin = time.perf_counter()
    while len(times) < max(runs, 1) or time.perf_counter() - begin < min_time:
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), float(np.std(times))


class ProfileModels:
    """Speed, parameters and GFLOPs of model yamls / checkpoints: PyTorch (fused) and ONNX Runtime on the CPU, at
    `imgsz`, batch 1. TensorRT (the published `trt=True`) is not available in this project and is skipped."""

    def __init__(self, paths: Iterable[str | Path], num_timed_runs: int = 100, num_warmup_runs: int = 10,
                 min_time: float = 60, imgsz: int = 640, half: bool = True, trt: bool = True, device: Any = None):
        self.paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        self.num_timed_runs, self.num_warmup_runs, self.min_time = num_timed_runs, num_warmup_runs, min_time
        self.imgsz, self.half, self.trt = imgsz, half, trt
        self.device = select_device("cpu" if device is None else device, verbose=False)

    def get_files(self) -> list[Path]:
        """The model files to profile: each path, or the *.pt / *.yaml files in a folder."""
        files: list[Path] = []
        for p in map(Path, self.paths):
            if p.is_dir():
                files += sorted(f for f in p.iterdir() if f.suffix in (".pt", ".yaml", ".yml"))
            else:
                files.append(p)
        return files

    def profile(self) -> list[dict[str, Any]]:
        """One dict per model: name, parameters, GFLOPs, speed_PyTorch(ms) and speed_ONNX(ms) (median ± std)."""
        if self.trt and self.device.type == "cuda":
            LOGGER.warning("WARNING ⚠️ TensorRT profiling is not available in this project; skipped")
        out = []
        for path in self.get_files():
            model = AutoBackend(path, fuse=False).model if path.suffix == ".pt" else DetectionModel(path, verbose=False)
            params = sum(p.numel() for p in model.parameters())
            gflops = get_flops(model, self.imgsz)
            x = torch.zeros(1, 3, self.imgsz, self.imgsz, device=self.device)
            backend = AutoBackend(model, device=self.device, fuse=True)
            pt_ms, pt_sd = time_runs(lambda: backend(x), self.num_warmup_runs, self.num_timed_runs, self.min_time)
            onnx_file = export_model(model, file=self._onnx_target(path), format="onnx", imgsz=self.imgsz,
                                     device="cpu", verbose=False)
            session = AutoBackend(onnx_file, device="cpu")
            cpu_x = x.cpu()
            onnx_ms, onnx_sd = time_runs(lambda: session(cpu_x), self.num_warmup_runs, self.num_timed_runs,
                                         self.min_time)
            out.append({"model/name": path.stem, "model/parameters": params, "model/GFLOPs": round(gflops, 3),
                        "model/speed_PyTorch(ms)": round(pt_ms, 3), "model/speed_PyTorch_std(ms)": round(pt_sd, 3),
                        "model/speed_ONNX(ms)": round(onnx_ms, 3), "model/speed_ONNX_std(ms)": round(onnx_sd, 3),
                        "model/speed_TensorRT(ms)": None})
        self._log(out)
        return out

    @staticmethod
    def _onnx_target(path: Path) -> Path:
        """Where the ONNX export goes: beside a checkpoint, or in the working folder for a yaml."""
        return path if path.suffix == ".pt" else Path(path.stem + ".pt")

    def _log(self, rows: list[dict[str, Any]]) -> None:
        LOGGER.info(f"\n| Model | size (pixels) | Speed CPU PyTorch (ms) | Speed CPU ONNX (ms) | params (M) | FLOPs (B) |\n"
                    "|---|---|---|---|---|---|")
        for r in rows:
            LOGGER.info(f"| {r['model/name']} | {self.imgsz} | {r['model/speed_PyTorch(ms)']:.2f} ± "
                        f"{r['model/speed_PyTorch_std(ms)']:.2f} | {r['model/speed_ONNX(ms)']:.2f} ± "
                        f"{r['model/speed_ONNX_std(ms)']:.2f} | {r['model/parameters'] / 1e6:.1f} | "
                        f"{r['model/GFLOPs']:.1f} |")
