"""End-to-end training on the bundled COCO images: run folder contents, falling loss, best.pt round trip, kill-and-resume."""

from __future__ import annotations

import csv
from copy import deepcopy
from pathlib import Path

import pytest
import torch

from ultralytics import YOLO
from ultralytics.engine.run_files import RESULTS_COLUMNS
from ultralytics.engine.trainer import DetectionTrainer

from conftest import VAL_PLOTS, assert_real_image  # noqa: E402

# Short, augmentation-free settings so two epochs over the same 8 images (2 batches) reliably lower the loss.
QUICK = dict(epochs=2, imgsz=160, batch=4, nbs=4, workers=0, optimizer="AdamW", lr0=0.002,
             warmup_epochs=0, mosaic=0.0, fliplr=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, translate=0.0, scale=0.0,
             verbose=False)


def read_results(run: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(run / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def train_loss(row: dict[str, str]) -> float:
    return sum(float(row[f"train/{k}_loss"]) for k in ("box", "cls", "dfl"))


@pytest.mark.slow
@pytest.mark.parametrize("cfg", ["yolov8n.yaml", "yolov8n_BiFormer.yaml"])
def test_train_assets(assets, tmp_path, cfg):
    model = YOLO(cfg)
    saved: dict[str, torch.nn.Module] = {}

    class Recording(DetectionTrainer):
        """Keeps a copy of the EMA model each time it is written as best.pt."""

        def save_model(self, finished: bool = False) -> None:
            super().save_model(finished)
            if self.is_best:
                saved["best"] = deepcopy(self.ema.ema).eval()

    metrics = model.train(trainer=Recording, data=str(assets / "data.yaml"), project=str(tmp_path), name="run",
                          **QUICK)
    run = tmp_path / "run"

    # run folder (SPEC §7)
    for name in ("args.yaml", "weights/last.pt", "weights/best.pt", "results.csv", "labels.jpg",
                 "train_batch0.jpg", "train_batch1.jpg", "train_batch2.jpg"):
        assert (run / name).is_file(), name
    header, rows = read_results(run)
    assert header == list(RESULTS_COLUMNS)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[1]["time"]) > float(rows[0]["time"]) > 0
    assert train_loss(rows[1]) < train_loss(rows[0]), rows  # the loss falls

    # checkpoints are plain data
    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(run / "weights" / name, weights_only=True)
        assert {"epoch", "best_fitness", "model", "ema", "updates", "optimizer", "train_args", "train_metrics",
                "date", "version", "names", "stride", "model_yaml"} <= set(ckpt)
        assert ckpt["finished"] is True and ckpt["optimizer"] is None
        assert ckpt["names"][0] == "person" and ckpt["train_args"]["epochs"] == 2
    assert torch.load(run / "weights" / "last.pt", weights_only=True)["epoch"] == 1

    # best.pt reloads and reproduces the EMA model that was saved as best
    reloaded = YOLO(str(run / "weights" / "best.pt"))
    assert reloaded.names[0] == "person" and reloaded.ckpt_path.endswith("best.pt")
    x = torch.rand(1, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = reloaded.model.eval()(x)[0]
        b = saved["best"](x)[0]
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()

    # the facade holds the trained best model and returns the final metrics
    assert model.ckpt_path == str(run / "weights" / "best.pt")
    assert hasattr(metrics, "box") and 0.0 <= metrics.box.map50 <= 1.0

    if cfg == "yolov8n.yaml":
        # every plot of SPEC §7 exists and shows something; the 8 val images make one val batch (2 × 4)
        for name in ("results.png", "labels.jpg", "train_batch0.jpg", *VAL_PLOTS[:6], "val_batch0_labels.jpg",
                     "val_batch0_pred.jpg"):
            assert_real_image(run / name)
        assert not list(run.glob("val_batch1*"))
        # validating best.pt again (same imgsz, the training run's val batch of 2 × 4) gives the numbers of the
        # final validation at the end of training, and the same numbers twice
        for _ in range(2):
            again = YOLO(str(run / "weights" / "best.pt")).val(data=str(assets / "data.yaml"), imgsz=160,
                                                               batch=8, workers=0, plots=False, verbose=False)
            assert again.results_dict == metrics.results_dict


class Killed(Exception):
    """Stands in for a kill in the middle of an epoch."""


@pytest.mark.slow
def test_kill_and_resume(assets, tmp_path):
    def kill_in_epoch_2(trainer):
        if trainer.epoch == 1:
            raise Killed

    overrides = dict(QUICK, model="yolov8n.yaml", data=str(assets / "data.yaml"), epochs=3, val=False,
                     plots=False, project=str(tmp_path), name="run", save_period=1)
    trainer = DetectionTrainer(overrides=overrides, callbacks={"on_train_batch_end": [kill_in_epoch_2]})
    with pytest.raises(Killed):
        trainer.train()
    run = tmp_path / "run"
    last = run / "weights" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["epoch"] == 0 and not ckpt["finished"] and ckpt["optimizer"] is not None
    assert [r["epoch"] for r in read_results(run)[1]] == ["1"]

    seen = {}

    def check_restored(tr):
        seen["start"] = tr.start_epoch
        seen["updates"] = tr.ema.updates
        state = tr.optimizer.state_dict()
        seen["steps"] = [float(s["step"]) for s in state["state"].values()]
        seen["ema_equal"] = all(torch.equal(v, ckpt["ema"][k]) for k, v in tr.ema.ema.state_dict().items())

    resumed = DetectionTrainer(overrides={"resume": str(last)}, callbacks={"on_train_start": [check_restored]})
    assert resumed.save_dir == run
    resumed.train()
    saved_steps = [float(s["step"]) for s in ckpt["optimizer"]["state"].values()]
    assert seen["start"] == 1 and seen["updates"] == ckpt["updates"] == 2
    assert seen["steps"] == saved_steps and seen["ema_equal"]

    header, rows = read_results(run)
    assert header == list(RESULTS_COLUMNS)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    times = [float(r["time"]) for r in rows]
    assert times == sorted(times)
    final = torch.load(last, weights_only=True)
    assert final["epoch"] == 2 and final["finished"] and final["updates"] == 6
    assert sorted(p.name for p in (run / "weights").glob("epoch*.pt")) == ["epoch1.pt", "epoch2.pt", "epoch3.pt"]

    with pytest.raises(ValueError, match="training already finished; nothing to resume"):
        DetectionTrainer(overrides={"resume": str(last)})
