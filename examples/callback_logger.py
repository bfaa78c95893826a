"""Log every training epoch to a JSON file of your own with a callback.

    python examples/callback_logger.py                     # ~30 s on a CPU: 1 epoch on the 8 bundled images
    python examples/callback_logger.py --epochs 3 --out my_log.json

A callback is any function taking one argument: the trainer, validator, predictor or exporter that fires the
event (the events are listed in ultralytics/engine/callbacks.py and docs/training.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ultralytics import YOLO


class EpochLogger:
    """Appends one record per epoch (the results.csv row: losses, metrics, learning rates) and rewrites the file."""

    def __init__(self, file: Path):
        self.file = file
        self.records: list[dict] = []

    def on_fit_epoch_end(self, trainer) -> None:
        if not trainer.csv.rows:
            return
        row = {k: float(v) for k, v in trainer.csv.rows[-1].items()}
        if self.records and self.records[-1]["epoch"] == row["epoch"]:
            return  # fired once more after the final validation of best.pt: the same row
        self.records.append(row)
        self.file.write_text(json.dumps(self.records, indent=1))

    def on_train_end(self, trainer) -> None:
        print(f"{len(self.records)} epoch(s) logged to {self.file}; best weights {trainer.best}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--project", default="runs/examples", help="parent folder of the run folder")
    parser.add_argument("--out", default=None, help="JSON file (default: epochs.json in the run folder)")
    args = parser.parse_args()

    model = YOLO("yolov8n.yaml")
    logger = EpochLogger(Path(args.out) if args.out else Path("epochs.json"))
    if args.out is None:  # put the log in the run folder, once the trainer has picked it
        model.add_callback("on_pretrain_routine_start",
                           lambda trainer: setattr(logger, "file", Path(trainer.save_dir) / "epochs.json"))
    model.add_callback("on_fit_epoch_end", logger.on_fit_epoch_end)
    model.add_callback("on_train_end", logger.on_train_end)
    model.train(data="coco8-assets.yaml", epochs=args.epochs, imgsz=64, batch=4, workers=0, device="cpu",
                plots=False, project=args.project, name="callback_logger")

    records = json.loads(logger.file.read_text())
    assert [r["epoch"] for r in records] == list(range(1, args.epochs + 1)), records
    print(json.dumps(records[-1], indent=1))


if __name__ == "__main__":
    main()
