"""Throughput of the data pipeline: images per second of training batches (mosaic on) and of validation loading.

    python benchmarks/data.py [--data ../shared/datasets/coco128] [--imgsz 640] [--batch 16] [--workers 2]

Each measurement iterates the loader for --epochs passes after one warm-up batch (worker start-up excluded).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ultralytics.cfg import get_cfg  # noqa: E402
from ultralytics.data import build_dataloader, build_yolo_dataset, check_det_dataset  # noqa: E402


def measure(loader, epochs: int) -> tuple[float, int]:
    """(images per second, images) over `epochs` passes, not counting the first (warm-up) batch."""
    it = iter(loader)
    next(it)  # workers started, first batch ready
    n, t0 = 0, time.perf_counter()
    for b in it:
        n += len(b["img"])
    for _ in range(epochs - 1):
        for b in loader:
            n += len(b["img"])
    dt = time.perf_counter() - t0
    return n / dt, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "coco128"),
                    help="dataset folder holding <name>.yaml, or a dataset yaml")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    a = ap.parse_args()
    data_arg = Path(a.data)
    yaml_file = next(iter(sorted(data_arg.glob("*.yaml")))) if data_arg.is_dir() else data_arg
    data = check_det_dataset(yaml_file, autodownload=False)
    rows = []
    cfg = get_cfg(overrides={"imgsz": a.imgsz, "mosaic": 1.0})
    train = build_yolo_dataset(cfg, data["train"], a.batch, data, mode="train")
    loader = build_dataloader(train, a.batch, a.workers, shuffle=True, seed=0)
    rows.append(("train (mosaic, affine, hsv, flip)", *measure(loader, a.epochs)))
    loader.reset()
    val = build_yolo_dataset(cfg, data["val"], a.batch * 2, data, mode="val", rect=True)
    loader = build_dataloader(val, a.batch * 2, a.workers, shuffle=False, seed=0)
    rows.append(("val (rect letterbox)", *measure(loader, a.epochs)))
    loader.reset()
    print(f"\ndata pipeline on {yaml_file} | imgsz {a.imgsz}, batch {a.batch} (val {a.batch * 2}), "
          f"workers {a.workers}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print(f"| {'pipeline':<34} | {'images/s':>9} | {'images':>6} |")
    print(f"|{'-' * 36}|{'-' * 11}|{'-' * 8}|")
    for name, ips, n in rows:
        print(f"| {name:<34} | {ips:>9.1f} | {n:>6} |")


if __name__ == "__main__":
    main()
