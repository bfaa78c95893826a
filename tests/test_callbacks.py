"""Callbacks and the published ways to customise training: the event names and the order they fire in (against a
recording of the published package), the facade's add/clear/reset, TensorBoard, trainer subclasses, DEFAULT_CFG."""

from __future__ import annotations

import csv
import inspect
import json
from pathlib import Path

import pytest

from ultralytics import YOLO
from ultralytics.engine import callbacks as cb
from ultralytics.engine.exporter import Exporter
from ultralytics.engine.predictor import DetectionPredictor
from ultralytics.engine.trainer import EVENTS, DetectionTrainer
from ultralytics.engine.validator import DetectionValidator
from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_PATH, yaml_load
from ultralytics.utils.torch_utils import de_parallel

FIXTURE = Path(__file__).parent / "fixtures" / "callbacks" / "published_event_order.json"
PUBLISHED = json.loads(FIXTURE.read_text())
TRAIN = dict(imgsz=64, epochs=1, batch=4, workers=0, device="cpu", plots=False, amp=False, verbose=False)


class Recorder:
    """Adds itself to every event; keeps (event, class name of the argument) and lets a check run per event."""

    def __init__(self, target):
        self.mode, self.log = "train", {"train": [], "val": [], "predict": [], "export": []}
        self.seen: dict[str, list] = {}
        for event in cb.EVENTS:
            target.add_callback(event, self._make(event))

    def _make(self, event):
        def record(obj):
            self.log[self.mode].append([event, type(obj).__name__])
            self.seen.setdefault(event, []).append(snapshot(event, obj))
        return record


def snapshot(event: str, obj) -> dict:
    """What a callback can read from its argument at `event` (the documented attributes)."""
    if event in ("on_train_epoch_end", "on_fit_epoch_end", "on_model_save"):
        return {"epoch": obj.epoch, "last": obj.last.exists(), "rows": len(obj.csv.rows), "metrics": dict(obj.metrics)}
    if event == "on_val_end":
        return {"map50": float(obj.metrics.box.map50), "seen": obj.seen}
    if event == "on_predict_postprocess_end":
        return {"results": len(obj.results), "batch": len(obj.batch)}
    if event == "on_export_end":
        return {"file": obj.file}
    return {}


@pytest.fixture(scope="module")
def recorded(assets, tmp_path_factory):
    """The run of the fixture's command with our package: train, val, predict on 2 images, torchscript export."""
    out = tmp_path_factory.mktemp("cb")
    two = out / "two"
    two.mkdir()
    for p in sorted((assets / "images").glob("*.jpg"))[:2]:
        (two / p.name).write_bytes(p.read_bytes())
    model = YOLO("yolov8n.yaml")
    rec = Recorder(model)
    model.train(data=str(assets / "data.yaml"), project=str(out), name="t", **TRAIN)
    rec.mode = "val"
    model.val(data=str(assets / "data.yaml"), imgsz=64, batch=4, workers=0, device="cpu", plots=False,
              project=str(out), name="v")
    rec.mode = "predict"
    model.predict(str(two), imgsz=64, batch=2, device="cpu", save=False)
    rec.mode = "export"
    model.export(format="torchscript", imgsz=64)
    return rec


def test_event_names_are_the_published_ones():
    assert list(cb.get_default_callbacks()) == PUBLISHED["events"]
    assert all(v == [] for v in cb.get_default_callbacks().values())
    assert cb.get_default_callbacks() is not cb.get_default_callbacks()


@pytest.mark.parametrize("mode", ["train", "val", "predict", "export"])
def test_events_fire_in_the_published_order(recorded, mode):
    assert recorded.log[mode] == PUBLISHED[mode]


def test_callbacks_receive_the_firing_component(recorded):
    epoch_end, = recorded.seen["on_train_epoch_end"]
    assert epoch_end["epoch"] == 0 and epoch_end["rows"] == 0  # before this epoch's validation and csv row
    save, = recorded.seen["on_model_save"]
    assert save["last"] and save["rows"] == 1
    fit = recorded.seen["on_fit_epoch_end"]
    assert len(fit) == 2 and fit[0]["rows"] == 1 and "metrics/mAP50(B)" in fit[0]["metrics"]
    val_ends = recorded.seen["on_val_end"]
    assert [v["seen"] for v in val_ends] == [8, 8, 8]  # epoch, best.pt, standalone val: all 8 images
    assert recorded.seen["on_predict_postprocess_end"] == [{"results": 2, "batch": 2}]
    export, = recorded.seen["on_export_end"]
    assert export["file"].endswith(".torchscript") and Path(export["file"]).is_file()


def test_facade_add_clear_reset(assets, tmp_path):
    model = YOLO("yolov8n.yaml")
    calls = []
    model.add_callback("on_predict_start", lambda p: calls.append(("start", type(p).__name__)))
    model.add_callback("on_predict_end", lambda p: calls.append(("end", p.seen)))
    image = sorted((assets / "images").glob("*.jpg"))[0]
    model.predict(str(image), imgsz=64, device="cpu", save=False)
    assert calls == [("start", "DetectionPredictor"), ("end", 1)]
    model.clear_callback("on_predict_start")
    assert model.callbacks["on_predict_start"] == [] and len(model.callbacks["on_predict_end"]) == 1
    calls.clear()
    model.predict(str(image), imgsz=64, device="cpu", save=False)
    assert calls == [("end", 1)]
    model.reset_callbacks()
    assert model.callbacks == cb.get_default_callbacks()
    calls.clear()
    model.predict(str(image), imgsz=64, device="cpu", save=False)
    assert calls == []
    with pytest.raises(KeyError, match="on_predict_begin"):
        model.add_callback("on_predict_begin", print)
    with pytest.raises(KeyError):
        model.clear_callback("nope")


def test_components_take_callbacks_directly():
    hits = []
    callbacks = {"on_export_start": [lambda e: hits.append(e)]}
    exporter = Exporter(overrides={"format": "torchscript"}, _callbacks=callbacks)
    assert exporter.callbacks is callbacks
    exporter.run_callbacks("on_export_start")
    assert hits == [exporter]
    assert DetectionValidator(_callbacks=callbacks).callbacks is callbacks
    predictor = DetectionPredictor()
    assert predictor.callbacks == cb.get_default_callbacks()


def test_rank_other_than_zero_runs_no_callbacks():
    hits = []
    host = cb.CallbackHost()
    host.callbacks = cb.get_default_callbacks()
    host.add_callback("on_train_start", hits.append)
    host.main = False
    host.run_callbacks("on_train_start")
    assert hits == []
    host.main = True
    host.run_callbacks("on_train_start")
    assert hits == [host]


def test_no_tensorboard_adds_nothing(monkeypatch):
    monkeypatch.setattr(cb, "tensorboard_writer_class", lambda: None)
    assert cb.copy_callbacks(integrations=True) == cb.get_default_callbacks()


def test_trainer_keeps_callbacks_and_takes_published_keyword(assets, tmp_path, monkeypatch):
    monkeypatch.setattr(cb, "tensorboard_writer_class", lambda: None)
    order = []
    trainer = DetectionTrainer(overrides=dict(model="yolov8n.yaml", data=str(assets / "data.yaml"), **TRAIN,
                                              project=str(tmp_path), name="k"),
                               callbacks={"on_train_start": [lambda t: order.append("ours")]},
                               _callbacks={"on_train_start": [lambda t: order.append("published")]})
    trainer.add_callback("on_train_start", lambda t: order.append("added"))
    trainer.run_callbacks("on_train_start")
    assert order == ["ours", "published", "added"]
    assert EVENTS == cb.EVENTS  # still importable from the trainer module
    with pytest.raises(KeyError):
        trainer.add_callback("on_train_begin", print)
    with pytest.raises(KeyError):
        DetectionTrainer(overrides=dict(model="yolov8n.yaml", data=str(assets / "data.yaml"), **TRAIN,
                                        project=str(tmp_path), name="k2"), callbacks={"on_epoch": []})


# ---------------------------------------------------------------------------------------------------- trainers
class MyTrainer(DetectionTrainer):
    """Every published hook overridden, each leaving a trace."""

    def get_model(self, cfg=None, weights=None, verbose=True):
        self.got = {"cfg": cfg, "weights": weights, "verbose": verbose}
        model = super().get_model(cfg, weights, verbose)
        model.made_by = "MyTrainer"
        return model

    def build_dataset(self, img_path, mode="train", batch=None):
        self.datasets = getattr(self, "datasets", []) + [mode]
        return super().build_dataset(img_path, mode, batch)

    def get_dataloader(self, dataset_path, batch_size=16, rank=0, mode="train"):
        self.loaders = getattr(self, "loaders", []) + [(mode, batch_size, rank)]
        return super().get_dataloader(dataset_path, batch_size, rank, mode)

    def get_validator(self):
        return MyValidator(self.args, save_dir=self.save_dir, plotter=self.plotter, _callbacks=self.callbacks)

    def preprocess_batch(self, batch):
        self.preprocessed = getattr(self, "preprocessed", 0) + 1
        batch = super().preprocess_batch(batch)
        self.max_pixel = max(getattr(self, "max_pixel", 0.0), float(batch["img"].max()))
        return batch

    def plot_training_samples(self, batch, ni):
        self.plotted = getattr(self, "plotted", []) + [ni]


class MyValidator(DetectionValidator):
    runs = 0

    def postprocess(self, preds):
        MyValidator.runs += 1
        return super().postprocess(preds)


def test_custom_trainer_through_the_facade(assets, tmp_path):
    assert list(inspect.signature(DetectionTrainer.get_model).parameters) == [
        "self", "cfg", "weights", "verbose"]  # the published signature
    MyValidator.runs = 0
    model = YOLO("yolov8n.yaml")
    model.train(trainer=MyTrainer, data=str(assets / "data.yaml"), project=str(tmp_path), name="c",
                **{**TRAIN, "plots": True})
    t = model.trainer
    assert isinstance(t, MyTrainer) and de_parallel(t.model).made_by == "MyTrainer"
    assert isinstance(t.got["cfg"], dict) and t.got["cfg"]["backbone"] and t.got["weights"] is None
    assert de_parallel(t.model).model[-1].nc == 80
    assert t.datasets == ["train", "val"] and t.loaders == [("train", 4, -1), ("val", 8, -1)]
    assert isinstance(t.validator, MyValidator) and MyValidator.runs == 2  # epoch + final validation, 1 batch each
    assert t.preprocessed == 2 and 0.0 < t.max_pixel <= 1.0  # 8 images / batch 4, scaled to [0, 1]
    assert t.plotted == [0, 1] and not list(t.save_dir.glob("train_batch*.jpg"))  # the override replaced drawing
    assert model.ckpt_path == str(t.best) and t.best.is_file()


def test_legacy_get_model_without_arguments(assets, tmp_path):
    class Legacy(DetectionTrainer):
        def get_model(self):
            model = super().get_model()
            model.legacy = True
            return model

    trainer = Legacy(overrides=dict(model="yolov8n.yaml", data=str(assets / "data.yaml"), **TRAIN,
                                    project=str(tmp_path), name="l"))
    trainer.train()
    assert de_parallel(trainer.model).legacy and trainer.best.is_file()


def test_save_false_still_writes_last_and_best_at_the_end(assets, tmp_path):
    during = []
    trainer = DetectionTrainer(overrides=dict(model="yolov8n.yaml", data=str(assets / "data.yaml"),
                                              **{**TRAIN, "epochs": 2}, save=False, project=str(tmp_path), name="s"))
    trainer.add_callback("on_fit_epoch_end", lambda t: during.append((t.epoch, t.last.exists(), t.best.exists())))
    trainer.train()
    assert during[0] == (0, False, False)  # nothing written after epoch 1 of 2
    assert during[1][1:] == (True, True) and trainer.last.is_file() and trainer.best.is_file()
    assert trainer.final_metrics is not None


def test_default_cfg_is_default_yaml(assets, tmp_path):
    assert vars(DEFAULT_CFG) == yaml_load(DEFAULT_CFG_PATH)
    trainer = DetectionTrainer(cfg=DEFAULT_CFG, overrides=dict(model="yolov8n.yaml", data=str(assets / "data.yaml"),
                                                               **TRAIN, project=str(tmp_path), name="d"))
    assert trainer.args.imgsz == 64 and trainer.args.lr0 == DEFAULT_CFG.lr0 and trainer.args.mode == "train"


def test_tensorboard_writes_the_results_columns(assets, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = DetectionTrainer(overrides=dict(model="yolov8n.yaml", data=str(assets / "data.yaml"), **TRAIN,
                                              project=str(tmp_path), name="tb"))
    trainer.train()
    events = EventAccumulator(str(trainer.save_dir))
    events.Reload()
    with open(trainer.save_dir / "results.csv", newline="") as f:
        row, = list(csv.DictReader(f))
    tags = events.Tags()["scalars"]
    assert sorted(tags) == sorted(k for k in row if k != "epoch")
    for key in ("train/box_loss", "metrics/mAP50-95(B)", "lr/pg0"):
        values = events.Scalars(key)
        assert values[-1].step == 1 and values[-1].value == pytest.approx(float(row[key]), rel=1e-4, abs=1e-7)
