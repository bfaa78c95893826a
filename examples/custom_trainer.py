"""Customise training with a DetectionTrainer subclass, the published way: `model.train(trainer=MyTrainer)`.

    python examples/custom_trainer.py          # ~30 s on a CPU: 1 epoch on the 8 bundled images

The subclass below overrides `get_model` (freeze the backbone's BatchNorm statistics, count the trainable
parameters) and `preprocess_batch` (count the images seen). Other overridable steps: build_dataset,
get_dataloader, get_validator, plot_training_samples (docs/training.md).
"""

from __future__ import annotations

import argparse

import torch.nn as nn

from ultralytics import YOLO
from ultralytics.models.yolo.detect import DetectionTrainer


class FrozenBNTrainer(DetectionTrainer):
    """Trains with the BatchNorm layers of the first `BACKBONE_LAYERS` modules kept in eval mode."""

    BACKBONE_LAYERS = 10

    def get_model(self, cfg=None, weights=None, verbose=True):
        model = super().get_model(cfg, weights, verbose)
        frozen = 0
        for layer in model.model[: self.BACKBONE_LAYERS]:
            for m in layer.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.momentum = 0.0  # running statistics stay where they started
                    frozen += 1
        self.frozen_bn = frozen
        print(f"FrozenBNTrainer: {frozen} BatchNorm layers frozen, "
              f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable parameters")
        return model

    def preprocess_batch(self, batch):
        self.images_seen = getattr(self, "images_seen", 0) + len(batch["im_file"])
        return super().preprocess_batch(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--project", default="runs/examples", help="parent folder of the run folder")
    args = parser.parse_args()

    model = YOLO("yolov8n.yaml")
    metrics = model.train(trainer=FrozenBNTrainer, data="coco8-assets.yaml", epochs=args.epochs, imgsz=64, batch=4,
                          workers=0, device="cpu", plots=False, project=args.project, name="custom_trainer")
    trainer = model.trainer
    assert isinstance(trainer, FrozenBNTrainer) and trainer.frozen_bn > 0
    assert trainer.images_seen == 8 * args.epochs, trainer.images_seen
    print(f"images seen {trainer.images_seen}, mAP50-95 {metrics.box.map:.4f}, weights {model.ckpt_path}")


if __name__ == "__main__":
    main()
