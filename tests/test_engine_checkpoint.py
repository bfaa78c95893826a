"""Checkpoints: atomic writes, weights_only loading, our format, weight transfer counts, the YOLO facade on them."""

from __future__ import annotations

import pytest
import torch

from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel
from ultralytics.checkpoints import (CheckpointError, atomic_save, load_checkpoint, make_checkpoint,
                                          model_from_checkpoint, transfer_weights)


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle this")


def test_atomic_save_leaves_no_partial_file(tmp_path):
    target = tmp_path / "weights" / "last.pt"
    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_save({"a": torch.zeros(1000), "b": Unpicklable()}, target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no temp file left behind

    atomic_save({"epoch": 1}, target)
    with pytest.raises(RuntimeError):
        atomic_save({"epoch": 2, "bad": Unpicklable()}, target)
    assert torch.load(target, weights_only=True) == {"epoch": 1}  # the old file is intact
    assert [p.name for p in target.parent.iterdir()] == ["last.pt"]


@pytest.fixture(scope="module")
def biformer() -> DetectionModel:
    return DetectionModel("yolov8n_BiFormer.yaml", nc=80, verbose=False)


@pytest.fixture(scope="module")
def yolov8n() -> DetectionModel:
    return DetectionModel("yolov8n.yaml", nc=80, verbose=False)


def test_checkpoint_is_plain_data_and_round_trips(tmp_path, yolov8n):
    yolov8n.names = {i: f"c{i}" for i in range(80)}
    opt = torch.optim.SGD(yolov8n.parameters(), lr=0.1, momentum=0.9)
    ckpt = make_checkpoint(yolov8n, yolov8n, epoch=3, best_fitness=0.5, updates=7, optimizer=opt.state_dict(),
                           train_args={"epochs": 10, "save_dir": tmp_path}, train_metrics={"fitness": 0.5})
    f = atomic_save(ckpt, tmp_path / "last.pt")
    loaded = torch.load(f, weights_only=True)
    assert loaded["epoch"] == 3 and loaded["updates"] == 7 and loaded["train_args"]["save_dir"] == str(tmp_path)
    assert loaded["names"][5] == "c5" and loaded["stride"] == [8.0, 16.0, 32.0]
    rebuilt = model_from_checkpoint(loaded)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x)[0], yolov8n.eval()(x)[0])

    y = YOLO(str(f))
    assert y.ckpt_path == str(f) and y.names[5] == "c5"
    assert y.overrides["model"] == str(f)
    assert y.to("cpu").device.type == "cpu"
    assert y.info(verbose=False)[1] == sum(p.numel() for p in yolov8n.parameters())
    y.fuse()
    assert y.model.is_fused()


def test_load_refuses_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a model checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"model": torch.nn.Linear(1, 1)}, tmp_path / "pickled.pt")  # a pickled module, not a detector
    with pytest.raises(CheckpointError, match="pickled.pt.*no 'yaml'"):
        load_checkpoint(tmp_path / "pickled.pt")


def test_transfer_counts(yolov8n, biformer, capfd, caplog):
    n, total = transfer_weights(biformer, yolov8n.state_dict())
    out = capfd.readouterr().out + caplog.text
    assert total == len(biformer.state_dict())
    assert f"Transferred {n}/{total} items from weights" in out
    # The backbone (layers 0-9) and the first neck C2f (layer 12) have the same names and shapes in both
    # models; BiFormer's attention rows shift every later index, so the rest of the neck and the head do not.
    assert n == 186 and total == 373, (n, total)
    same = transfer_weights(yolov8n, yolov8n.state_dict(), verbose=False)
    assert same == (len(yolov8n.state_dict()), len(yolov8n.state_dict()))


def test_yolo_load_transfers(tmp_path, yolov8n, capfd, caplog):
    atomic_save(make_checkpoint(yolov8n, yolov8n), tmp_path / "n.pt")
    model = YOLO("yolov8n_BiFormer.yaml").load(str(tmp_path / "n.pt"))
    assert "Transferred 186/373 items from weights" in capfd.readouterr().out + caplog.text
    assert torch.equal(model.model.model[0].conv.weight, yolov8n.model[0].conv.weight)
