"""The Python API end to end, offline: build, train briefly, validate, predict, export.

    python examples/quickstart.py            # a minute or two on a laptop CPU
    python examples/quickstart.py --epochs 20

Uses the generated `shapes` dataset (written to your datasets_dir on first use), so no download is needed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ultralytics import YOLO
from ultralytics.data.utils import check_det_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="yolov8n_BiFormer.yaml")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    model = YOLO(args.model)
    model.info()  # layers, parameters, gradients, GFLOPs at 640
    model.train(data="shapes.yaml", epochs=args.epochs, imgsz=128, batch=8, nbs=8, workers=0, mosaic=0.0,
                optimizer="AdamW", lr0=0.001, warmup_epochs=0)
    metrics = model.val()  # on the shapes val split, with best.pt
    print(f"mAP50 {metrics.box.map50:.3f}  mAP50-95 {metrics.box.map:.3f}")

    val_images = sorted(Path(check_det_dataset("shapes.yaml")["val"]).glob("*.jpg"))[:4]
    for r in model.predict([str(p) for p in val_images], conf=0.25):
        print(Path(r.path).name, r.summary()[:3])  # class names, confidences and boxes of the top detections

    print("exported:", model.export(format="onnx"))


if __name__ == "__main__":
    main()
