"""Training speed: seconds per epoch of yolov8n and yolov8_BiFormer-n on COCO128, and their ratio.

    python benchmarks/train.py                                   # 1 epoch each, imgsz 320, batch 16, 2 workers, CPU
    python benchmarks/train.py --epochs 2 --fraction 0.5 --device 0
    python benchmarks/train.py path/to/coco128.yaml

Only the training loop is timed (data loading, forward, loss, backward, optimizer, EMA); validation, plots and
checkpoint writing are switched off. With more than one epoch the first (warm-up of kernels) is left out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ultralytics.engine.trainer import DetectionTrainer  # noqa: E402

MODELS = ("yolov8n.yaml", "yolov8n_BiFormer.yaml")


class TimedTrainer(DetectionTrainer):
    """A trainer that records the wall time of each training epoch and skips validation."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.epoch_times: list[float] = []
        self.add_callback("on_train_epoch_start", lambda t: setattr(t, "_t0", time.perf_counter()))
        self.add_callback("on_train_epoch_end", lambda t: t.epoch_times.append(time.perf_counter() - t._t0))

    def _validate(self, final: bool) -> None:
        self.fitness, self.is_best = None, False

    def final_eval(self) -> None:
        return None


def bench(model: str, args: argparse.Namespace, project: Path) -> dict:
    overrides = dict(model=model, data=str(args.data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
                     workers=args.workers, device=args.device, fraction=args.fraction, val=False, plots=False,
                     save=False, verbose=False, project=str(project), name=Path(model).stem, exist_ok=True)
    trainer = TimedTrainer(overrides=overrides)
    trainer.train()
    times = trainer.epoch_times[1:] if len(trainer.epoch_times) > 1 else trainer.epoch_times
    n_params = sum(p.numel() for p in trainer.model.parameters())
    return {"model": model, "params": n_params, "images": len(trainer.train_loader.dataset),
            "s_per_epoch": statistics.mean(times), "all": trainer.epoch_times}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=str(REPO.parent / "shared/datasets/coco128/coco128.yaml"))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--fraction", type=float, default=1.0)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--project", default=None, help="run folder parent (default: a temporary folder)")
    args = ap.parse_args()

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(args.project or tmp)
        results = [bench(m, args, project) for m in MODELS]
    base = results[0]["s_per_epoch"]
    print(f"\nTraining speed on {Path(args.data).name}: imgsz {args.imgsz}, batch {args.batch}, workers "
          f"{args.workers}, device {args.device}, {results[0]['images']} images, epochs {args.epochs}\n")
    print("| model | parameters | s/epoch | images/s | ratio |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {Path(r['model']).stem} | {r['params']:,} | {r['s_per_epoch']:.1f} | "
              f"{r['images'] / r['s_per_epoch']:.1f} | {r['s_per_epoch'] / base:.2f}× |")


if __name__ == "__main__":
    main()
