"""Trainer control flow with a stand-in loss (no real forward pass, so each run takes seconds): the NaN guard,
the time limit, patience, close_mosaic, run-folder naming, cfg= files, resume=True and the AMP check."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from ultralytics.data.dataset import YOLODataset
from ultralytics.engine.amp import check_amp
from ultralytics.engine.run_files import ResultsCSV, get_save_dir, increment_path
from ultralytics.engine.trainer import DetectionTrainer
from ultralytics.errors import NonFiniteLossError
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import SETTINGS

from conftest import assets_subset_yaml  # noqa: E402


@pytest.fixture
def tiny(tmp_path, assets) -> Path:
    """The 8 bundled train images (cut by `fraction`) and a 4-image val split."""
    return assets_subset_yaml(assets, tmp_path, 4)


class FakeLoss:
    """Replaces DetectionModel.loss: NaN for the first `n_nan` calls, then a finite loss that grows by `step`."""

    def __init__(self, n_nan: int = 0, step: float = 0.0):
        self.calls, self.n_nan, self.step = 0, n_nan, step

    def __call__(self, model, batch, preds=None):
        self.calls += 1
        zero = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
        if self.calls <= self.n_nan:
            return zero + float("nan"), torch.zeros(3)
        value = 1.0 + self.step * self.calls
        return zero + value, torch.full((3,), value)


def run(tiny, tmp_path, monkeypatch, fake: FakeLoss, **overrides) -> DetectionTrainer:
    monkeypatch.setattr(DetectionModel, "loss", lambda self, batch, preds=None: fake(self, batch, preds))
    args = dict(model="yolov8n.yaml", data=str(tiny), imgsz=64, batch=2, nbs=2, fraction=0.75, workers=0,
                plots=False, verbose=False, val=False, project=str(tmp_path / "runs"), name="t", epochs=1)
    args.update(overrides)
    trainer = DetectionTrainer(overrides={k: v for k, v in args.items() if v is not None})
    trainer.train()
    return trainer


def rows(trainer: DetectionTrainer) -> list[dict]:
    with open(trainer.save_dir / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_nan_guard_skips_then_recovers(tiny, tmp_path, monkeypatch, caplog):
    trainer = run(tiny, tmp_path, monkeypatch, FakeLoss(n_nan=3), epochs=2)  # 6 images / batch 2 = 3 batches
    assert caplog.text.count("non-finite loss") == 3 and trainer.bad_steps == 0
    assert trainer.ema.updates == 3  # 6 batches, 3 of them skipped
    assert [r["epoch"] for r in rows(trainer)] == ["1", "2"]


def test_nan_guard_stops_after_ten(tiny, tmp_path, monkeypatch):
    with pytest.raises(NonFiniteLossError, match="10 consecutive"):
        run(tiny, tmp_path, monkeypatch, FakeLoss(n_nan=10**6), epochs=5)


def test_time_limit_stops_after_the_epoch(tiny, tmp_path, monkeypatch):
    trainer = run(tiny, tmp_path, monkeypatch, FakeLoss(), epochs=5, time=1e-9)
    assert [r["epoch"] for r in rows(trainer)] == ["1"]
    ckpt = torch.load(trainer.last, weights_only=True)
    assert ckpt["finished"] and ckpt["optimizer"] is None
    assert trainer.final_metrics is not None  # the final validation of best.pt ran


def test_patience_and_close_mosaic(tiny, tmp_path, monkeypatch):
    epochs_seen = []
    original = DetectionTrainer._close_mosaic

    def spy(self):
        epochs_seen.append(self.epoch)
        original(self)

    monkeypatch.setattr(DetectionTrainer, "_close_mosaic", spy)
    # growing loss → falling fitness (val=False uses −train loss): no improvement after epoch 1
    trainer = run(tiny, tmp_path, monkeypatch, FakeLoss(step=0.1), epochs=6, patience=2, close_mosaic=5)
    assert [r["epoch"] for r in rows(trainer)] == ["1", "2", "3"]
    assert trainer.best_epoch == 0 and torch.load(trainer.last, weights_only=True)["finished"]
    assert epochs_seen == [1, 2]  # close_mosaic=5 of 6 epochs: from the 2nd epoch on


def test_close_mosaic_turns_mosaic_off_once(tiny, tmp_path, monkeypatch):
    calls = []
    original = YOLODataset.close_mosaic

    def spy(self, hyp=None):
        calls.append(hyp.mosaic)
        original(self, hyp)

    monkeypatch.setattr(YOLODataset, "close_mosaic", spy)
    trainer = run(tiny, tmp_path, monkeypatch, FakeLoss(), epochs=3, close_mosaic=2)
    assert len(calls) == 1 and trainer.train_loader.dataset.hyp.mosaic == 0.0


def test_run_folders_and_cfg_file(tiny, tmp_path, monkeypatch):
    custom = tmp_path / "custom.yaml"
    custom.write_text("lr0: 0.005\nepochs: 1\nname: fromcfg\n")
    t1 = run(tiny, tmp_path, monkeypatch, FakeLoss(), cfg=str(custom), name=None)
    assert t1.args.lr0 == 0.005 and t1.save_dir.name == "fromcfg"
    t2 = run(tiny, tmp_path, monkeypatch, FakeLoss(), cfg=str(custom), name=None)
    assert t2.save_dir.name == "fromcfg2"
    t3 = run(tiny, tmp_path, monkeypatch, FakeLoss(), name="fromcfg", exist_ok=True)
    assert t3.save_dir == t1.save_dir and [r["epoch"] for r in rows(t3)] == ["1"]
    assert (t2.save_dir / "args.yaml").read_text().count("lr0: 0.005") == 1


def test_resume_true_finds_newest_last(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(SETTINGS, "runs_dir", str(tmp_path / "runs"))

    class Stop(Exception):
        pass

    def stop(trainer):
        if trainer.epoch == 1:
            raise Stop

    monkeypatch.setattr(DetectionModel, "loss", lambda self, batch, preds=None: FakeLoss()(self, batch, preds))
    args = dict(model="yolov8n.yaml", data=str(tiny), imgsz=64, batch=2, nbs=2, fraction=0.75, workers=0, plots=False,
                verbose=False, val=False, project=str(tmp_path / "runs"), name="r", epochs=2)
    trainer = DetectionTrainer(overrides=args, callbacks={"on_train_epoch_start": [stop]})
    with pytest.raises(Stop):
        trainer.train()
    resumed = DetectionTrainer(overrides={"resume": True})
    assert resumed.save_dir == trainer.save_dir and resumed.args.resume == str(trainer.last)
    resumed.train()
    assert [r["epoch"] for r in rows(resumed)] == ["1", "2"]


def test_results_csv_drops_rows_past_the_checkpoint(tmp_path):
    f = ResultsCSV(tmp_path / "results.csv")
    for e in (1, 2, 3):
        f.add({"epoch": e, "time": e * 10.0})
    again = ResultsCSV(tmp_path / "results.csv")
    again.load(keep_epochs=2)  # last.pt says 2 epochs are done: the row of epoch 3 is dropped
    again.add({"epoch": 3, "time": 31.0})
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == ["epoch", "1", "2", "3"] and again.last_time == 31.0


def test_run_dir_names(tmp_path, monkeypatch):
    monkeypatch.setitem(SETTINGS, "runs_dir", str(tmp_path / "runs"))
    assert get_save_dir(None, None) == tmp_path / "runs" / "detect" / "train"
    (tmp_path / "runs" / "detect" / "train").mkdir(parents=True)
    assert get_save_dir(None, None) == tmp_path / "runs" / "detect" / "train2"
    assert get_save_dir(None, None, exist_ok=True) == tmp_path / "runs" / "detect" / "train"
    assert increment_path(tmp_path / "x") == tmp_path / "x"


def test_amp_off_on_cpu():
    model = DetectionModel("yolov8n.yaml", verbose=False)
    assert check_amp(model, torch.device("cpu")) is False
