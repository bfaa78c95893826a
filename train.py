"""Train YOLOv8 with BiFormer's Bi-Level Routing Attention.

    python train.py                                    # the offline shapes dataset, a few minutes on a CPU
    python train.py data=coco128.yaml epochs=100 imgsz=640 device=0 batch=16
    python train.py model=yolov8n.yaml epochs=30       # any config key=value overrides the defaults below

Without `data=`, the QUICK_RUN settings below apply: a short, clearly-learning run on the generated shapes
dataset (ultralytics/data/synthetic.py) on a laptop-class CPU. With `data=` only the model choice below is
added and everything else comes from ultralytics/cfg/default.yaml (the YOLOv8 training defaults), so a real
dataset trains as it would with `yolo detect train`. Errors are printed as one line, as by the `yolo` command.
"""

from __future__ import annotations

import sys

from ultralytics.cli import entrypoint

MODEL = "yolov8n_BiFormer.yaml"  # yolov8_BiFormer.yaml at scale n

QUICK_RUN: dict[str, object] = {
    "data": "shapes.yaml",  # generated locally on first use (320 train + 80 val images, 5 classes)
    "epochs": 20,
    "imgsz": 128,  # the shapes are large (12-45 % of the image side), small inputs keep epochs short
    "batch": 8,
    "nbs": 8,  # one optimizer step per batch: a from-scratch model needs many steps early on
    "workers": 0,  # on a 2-core CPU the model needs both cores; loading in-process is as fast
    "optimizer": "AdamW",
    "lr0": 0.001,
    "warmup_epochs": 0.0,  # the SPEC minimum of 100 warm-up iterations would be 2.5 of these short epochs
    "warmup_bias_lr": 0.0,  # 0.1 is an SGD value; too large for Adam
    "mosaic": 0.0,  # mosaic shrinks the shapes and slows early learning; plain images learn faster here
    "close_mosaic": 0,
    "scale": 0.3,
    "plots": True,
}


def main(argv: list[str] | None = None) -> int:
    """Train with MODEL (and QUICK_RUN when no data= is given) overridden by `key=value` arguments."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(__doc__.strip())
        print(f"\nmodel={MODEL} unless given; without data=, also:\n"
              + "\n".join(f"    {k}={v}" for k, v in QUICK_RUN.items()))
        return 0
    given = {a.split("=", 1)[0].strip() for a in argv if "=" in a}
    defaults = {"model": MODEL, **({} if "data" in given else QUICK_RUN)}
    return entrypoint(["detect", "train", *(f"{k}={v}" for k, v in defaults.items() if k not in given), *argv])


if __name__ == "__main__":
    raise SystemExit(main())
