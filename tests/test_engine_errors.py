"""Bad input gives one clear line from `yolo` (exit code 2) and the documented exception from Python."""

from __future__ import annotations

import json

import pytest
import torch

from ultralytics import YOLO
from ultralytics.cfg import CfgError
from ultralytics.cli import entrypoint
from ultralytics.nn.tasks import DetectionModel


@pytest.fixture
def no_names_yaml(tmp_path, assets):
    f = tmp_path / "no_names.yaml"
    f.write_text(f"path: {assets}\ntrain: images\nval: images\n")
    return f


def cli_error(argv, capsys, monkeypatch) -> str:
    monkeypatch.delenv("YOLO_TRACEBACK", raising=False)
    rc = entrypoint(argv)
    _, err = capsys.readouterr()
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR ❌ "), err
    return lines[0]


CASES = [  # (extra CLI args, expected exception, words in the message)
    (["data=missing_data.yaml"], FileNotFoundError, ["missing_data.yaml", "not found"]),
    (["epochs=-1"], CfgError, ["epochs", ">= 1"]),
    (["imgsz=abc"], CfgError, ["imgsz", "abc"]),
    (["batch=0"], CfgError, ["batch"]),
    (["device=7"], ValueError, ["device", "7", "cpu"]),
]


@pytest.mark.parametrize("extra, exc, words", CASES)
def test_cli_bad_train_input(extra, exc, words, capsys, monkeypatch, assets):
    argv = ["detect", "train", "model=yolov8n.yaml", f"data={assets / 'data.yaml'}", "epochs=1", *extra]
    line = cli_error(argv, capsys, monkeypatch)
    assert all(w in line for w in words), line


@pytest.mark.parametrize("extra, exc, words", CASES)
def test_python_bad_train_input(extra, exc, words, assets):
    kwargs = dict(data=str(assets / "data.yaml"), epochs=1)
    for arg in extra:
        key, _, value = arg.partition("=")
        kwargs[key] = {"epochs": -1, "batch": 0, "device": 7}.get(key, value)
    with pytest.raises(exc) as e:
        YOLO("yolov8n.yaml").train(**kwargs)
    assert all(w in str(e.value) for w in words), e.value


def test_data_without_names(no_names_yaml, capsys, monkeypatch):
    line = cli_error(["train", "model=yolov8n.yaml", f"data={no_names_yaml}"], capsys, monkeypatch)
    assert "no 'names' key" in line and "no_names.yaml" in line
    with pytest.raises(ValueError, match="no 'names' key"):
        YOLO("yolov8n.yaml").train(data=str(no_names_yaml))


def test_missing_model(capsys, monkeypatch):
    line = cli_error(["train", "model=nope.yaml", "data=coco128.yaml"], capsys, monkeypatch)
    assert "nope.yaml" in line and "not found" in line
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        YOLO("nope.yaml")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        YOLO("nope.pt")
    with pytest.raises(ValueError, match="neither a model yaml"):
        YOLO("nope")


def test_published_checkpoint_loads_and_validates(reference_checkpoint, assets, tmp_path):
    """YOLO(published file) loads through the allowlisted reader (no code runs), validates and predicts. The real
    file (../shared) was trained briefly by the published package on COCO128's train2017 images, these 8 among
    them: it finds them. The synthesized one (no detector) must validate and predict exactly like our own yolov8n
    loaded with the weights it was written with."""
    pt = reference_checkpoint.path
    model = YOLO(str(pt))
    assert model.ckpt["source"] == "published" and model.names == reference_checkpoint.names
    assert model.names[0] == "person" and len(model.names) == 80
    args = dict(data=str(assets / "data.yaml"), imgsz=320, batch=16, workers=0, plots=False)
    images = [str(f) for f in sorted((assets / "images").glob("*.jpg"))]
    if reference_checkpoint.real:
        metrics = model.val(**args)
        assert 0.0 < metrics.box.map50 <= 1.0
        assert metrics.box.map <= metrics.box.map50
        results = model.predict(images[0], imgsz=320, conf=0.1)
        assert len(results) == 1
    else:
        direct = YOLO(str(pt))
        direct.model = DetectionModel("yolov8n.yaml", verbose=False)
        direct.model.load_state_dict(reference_checkpoint.weights)
        direct.model.names = dict(reference_checkpoint.names)
        runs = [m.val(**args, save_json=True, project=str(tmp_path), name=name) for m, name in ((model, "file"),
                                                                                             (direct, "direct"))]
        preds = [json.loads((tmp_path / name / "predictions.json").read_text()) for name in ("file", "direct")]
        assert len(preds[0]) > 100 and preds[0] == preds[1]  # every scored box, with its score, the same
        assert runs[0].results_dict == runs[1].results_dict
        # its scores mostly stay near the class prior; the list is one batch (full 320x320 letterbox, as published)
        results = model.predict(images, imgsz=320, conf=0.05)
        same = direct.predict(images, imgsz=320, conf=0.05)
        assert sum(len(r.boxes) for r in results) >= 3
        assert all(torch.equal(a.boxes.data, b.boxes.data) for a, b in zip(results, same, strict=True))
    for r in results:
        assert r.orig_shape == r.orig_img.shape[:2] and r.boxes.xyxy.shape[1] == 4


def test_exported_models_are_predict_only(tmp_path):
    model = YOLO("yolov8n.yaml")
    onnx = model.export(format="onnx", imgsz=160, project=str(tmp_path))
    exported = YOLO(onnx)
    assert exported.names == model.names and exported.device.type == "cpu"
    with pytest.raises(ValueError, match="exported model"):
        exported.train(data="coco128.yaml")
    with pytest.raises(ValueError, match="exported model"):
        exported.export(format="onnx")

