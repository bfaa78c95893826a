"""Cost of plots=True: a training epoch and a standalone validation with and without plots, and their ratios.

    python benchmarks/plots.py                    # COCO128, CPU; about a minute on 2 cores
    python benchmarks/plots.py --device 0

Training: the same 1-epoch yolov8n run with plots=False and plots=True (alternating, --repeats times, fastest kept); only the epoch's training loop is
timed (labels.jpg and train_batch0-2.jpg are queued to the plot thread during it), validation is off.
Validation: the published checkpoint (or --model) validated twice on COCO128 train2017 at imgsz 320; the time
includes drawing the curves, confusion matrices and val_batch images (val() waits for them).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _machine import cpu_name  # noqa: E402

from ultralytics import YOLO  # noqa: E402
from ultralytics.engine.trainer import DetectionTrainer  # noqa: E402

SHARED = REPO.parent / "shared"


def epoch_seconds(plots: bool, args: argparse.Namespace, project: Path) -> float:
    """Wall time of the training loop of one epoch (validation and final evaluation off)."""
    times: list[float] = []
    overrides = dict(model="yolov8n.yaml", data=args.data, epochs=1, imgsz=args.imgsz, batch=16, workers=2,
                     device=args.device, fraction=args.fraction, val=False, plots=plots, save=False, verbose=False,
                     project=str(project), name=f"plots_{plots}", exist_ok=True)
    trainer = DetectionTrainer(overrides=overrides)
    trainer.add_callback("on_train_epoch_start", lambda t: times.append(time.perf_counter()))
    trainer.add_callback("on_train_epoch_end", lambda t: times.append(time.perf_counter() - times.pop()))
    trainer.final_eval = lambda: None
    trainer.train()
    return times[0]


def val_seconds(plots: bool, args: argparse.Namespace, project: Path) -> float:
    t0 = time.perf_counter()
    YOLO(args.model).val(data=args.data, split="train", imgsz=320, batch=16, workers=2, device=args.device,
                         plots=plots, project=str(project), name=f"val_{plots}", exist_ok=True, verbose=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "datasets/coco128/coco128.yaml"))
    ap.add_argument("--model", default=str(SHARED / "reference/upstream-yolov8n-coco128.pt"))
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        rows = []
        for name, fn in (("training epoch (s)", epoch_seconds), ("validation (s)", val_seconds)):
            runs = {False: [], True: []}
            for _ in range(args.repeats):  # alternate, keep the fastest of each: less noise from the machine
                for plots in (False, True):
                    runs[plots].append(fn(plots, args, project))
            rows.append((name, min(runs[False]), min(runs[True])))
    print(f"\nmachine: {cpu_name()}, device={args.device}")
    print(f"{'':22s}{'plots=False':>13s}{'plots=True':>13s}{'ratio':>8s}")
    for name, off, on in rows:
        print(f"{name:22s}{off:13.2f}{on:13.2f}{on / off:8.2f}")


if __name__ == "__main__":
    main()
