"""End-to-end prediction speed (images/s) on COCO128 val, CPU, batch 1: .pt (PyTorch) vs ONNX Runtime,
yolov8n vs yolov8_BiFormer-n.

    python benchmarks/predict.py                              # all 128 val images at imgsz 640
    python benchmarks/predict.py --images 128 --imgsz 320 --repeats 5 --static

End to end = everything `predict()` does per image: read the JPEG, letterbox, inference, NMS, Results —
timed over the whole loop (wall clock), after two warm-up images; the configurations take turns within each
of `--repeats` passes and the median pass is reported. The models are untrained (seeded random
weights) and saved as our checkpoints: the speed of the network is the same as a trained one's, but an
untrained model finds (almost) no boxes, so NMS costs less than it would on real detections.
The ONNX files are exported with dynamic axes so both backends see the same minimal-letterbox inputs;
`--static` adds rows for fixed 640x640 ONNX files.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ultralytics.engine.exporter import export_model  # noqa: E402
from ultralytics.engine.predictor import DetectionPredictor  # noqa: E402
from ultralytics.nn.autobackend import AutoBackend  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402
from ultralytics.utils import LOGGER  # noqa: E402
from ultralytics.checkpoints import atomic_save, make_checkpoint  # noqa: E402
from _machine import cpu_name  # noqa: E402  (benchmarks/ is the script's folder)

COCO128 = ROOT.parent / "shared" / "datasets" / "coco128" / "images" / "val2017"
MODELS = {"yolov8n": "yolov8n.yaml", "yolov8_BiFormer-n": "yolov8n_BiFormer.yaml"}


def machine() -> str:
    """One line: CPU model, cores, torch/onnxruntime versions and thread counts."""
    import onnxruntime as ort

    cpu = cpu_name()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"CPU: {cpu}, {os.cpu_count()} logical cores, load avg {load} | torch {torch.__version__} "
            f"({torch.get_num_threads()} threads) | onnxruntime {ort.__version__}")


def make_files(name: str, cfg: str, folder: Path, imgsz: int, static: bool) -> dict[str, str]:
    """Seeded untrained model → checkpoint (.pt) and ONNX export(s)."""
    torch.manual_seed(0)
    with contextlib.redirect_stdout(None):
        model = DetectionModel(cfg, verbose=False)
    pt = folder / name / "model.pt"
    atomic_save(make_checkpoint(model, finished=True), pt)
    files = {"pt": str(pt), "onnx (dynamic)": export_model(model, pt, format="onnx", imgsz=imgsz, dynamic=True)}
    if static:
        files["onnx (static)"] = export_model(model, folder / name / "static.pt", format="onnx", imgsz=imgsz)
    return files


def make_predictor(weights: str, imgsz: int) -> DetectionPredictor:
    pred = DetectionPredictor(overrides={"imgsz": imgsz, "batch": 1, "verbose": False, "device": "cpu"})
    pred.setup_model(AutoBackend(weights, device="cpu"))
    return pred


def time_pass(pred: DetectionPredictor, images: list[str]) -> tuple[float, dict[str, float]]:
    """Wall-clock seconds per image of one pass over `images`, and the mean per-stage ms of that pass."""
    t0 = time.perf_counter()
    results = pred(images)
    sec = (time.perf_counter() - t0) / len(images)
    return sec, {k: statistics.mean(r.speed[k] for r in results) for k in ("preprocess", "inference", "postprocess")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=128, help="number of COCO128 val images (max 128)")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3, help="passes over the images (median reported)")
    parser.add_argument("--static", action="store_true", help="also time fixed-size (imgsz x imgsz) ONNX files")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images = sorted(str(p) for p in COCO128.glob("*.jpg"))[: args.images]
    if not images:
        raise SystemExit(f"no images under {COCO128}")
    LOGGER.setLevel("WARNING")  # keep export/predict chatter out of the table
    print(machine())
    print(f"{len(images)} COCO128 val images, imgsz {args.imgsz}, batch 1, untrained weights, end to end\n")
    print("| model | backend | input | images/s | ms/image | preprocess ms | inference ms | postprocess ms |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for name, cfg in MODELS.items():
            for backend, path in make_files(name, cfg, Path(tmp), args.imgsz, args.static).items():
                runs[(name, backend)] = make_predictor(path, args.imgsz)
                runs[(name, backend)](images[:2])  # warm-up (lazy initialisation, first-call kernels)
        timings: dict[tuple[str, str], list[tuple[float, dict]]] = {k: [] for k in runs}
        for _ in range(args.repeats):  # the configurations take turns, so load changes hit them alike
            for key, pred in runs.items():
                timings[key].append(time_pass(pred, images))
        for (name, backend), passes in timings.items():
            pred = runs[(name, backend)]
            sec = statistics.median(p[0] for p in passes)
            st = min(passes, key=lambda p: abs(p[0] - sec))[1]
            inp = "minimal letterbox" if pred.model.dynamic else "x".join(map(str, pred.imgsz))
            print(f"| {name} | {backend} | {inp} | {1 / sec:.2f} | {sec * 1e3:.1f} | {st['preprocess']:.1f} | "
                  f"{st['inference']:.1f} | {st['postprocess']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
