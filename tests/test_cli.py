"""Tests of the `yolo` command line: special commands, dispatch to a fake model, one-line errors."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import ultralytics
from ultralytics import cli
from ultralytics.cfg import DEFAULT_CFG_DICT, CfgError, mode_default
from ultralytics.checkpoints import make_checkpoint
from ultralytics.cli import entrypoint, strip_trailing_commas
from ultralytics.errors import DatasetError, MissingFileError, UnsupportedError
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import DEFAULT_CFG_PATH, SETTINGS, yaml_load

REPO = Path(__file__).resolve().parents[1]


class FakeModel:
    """Stands in for the YOLO facade and records what the CLI calls: the run's config, as the keys whose value
    differs from the mode's default (model, mode and task aside)."""

    calls: list = []
    fail_with: BaseException | None = None

    def __init__(self, name):
        FakeModel.calls.append(("init", name, {}))

    def _record(self, args, **extra):
        mode = args.mode
        kwargs = {k: v for k, v in vars(args).items()
                  if k not in ("model", "mode", "task") and v != mode_default(mode, k)}
        FakeModel.calls.append((mode, None, {**kwargs, **extra}))
        if FakeModel.fail_with is not None:
            raise FakeModel.fail_with
        return "done"

    def carry_over(self, args, given):
        return args

    def run_train(self, args, resume=None):
        return self._record(args)

    def run_val(self, args):
        return self._record(args)

    def run_predict(self, args, stream=False):
        self._record(args, stream=stream)
        return iter([])  # the CLI streams the results

    def run_export(self, args):
        return self._record(args)

    def run_benchmark(self, args, given):
        return self._record(args, given=sorted(given - {"mode", "model"}))


@pytest.fixture
def fake(monkeypatch):
    FakeModel.calls = []
    FakeModel.fail_with = None
    monkeypatch.setattr(cli, "_load_model", FakeModel)
    monkeypatch.delenv("YOLO_TRACEBACK", raising=False)
    return FakeModel


def run(argv, capsys):
    rc = entrypoint(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("argv", [[], ["help"], ["-h"], ["--help"], ["train", "help"]])
def test_help(argv, capsys):
    rc, out, _ = run(argv, capsys)
    assert rc == 0 and "Usage: yolo" in out
    assert "yolo detect train model=yolov8_BiFormer.yaml data=coco128.yaml epochs=3 imgsz=320" in out
    assert "yolo export model=runs/detect/train/weights/best.pt format=onnx" in out
    assert "yolo settings" in out and "yolo cfg" in out


def test_version(capsys):
    rc, out, _ = run(["version"], capsys)
    assert rc == 0 and out.strip() == ultralytics.__version__


def test_cfg_prints_default_yaml(capsys):
    rc, out, _ = run(["cfg"], capsys)
    assert rc == 0 and "lr0: 0.01" in out and "#" in out  # the commented file itself
    assert yaml.safe_load(out)["epochs"] == DEFAULT_CFG_DICT["epochs"]


def test_settings_show_update_reset(capsys):
    rc, out, _ = run(["settings"], capsys)
    assert rc == 0 and str(SETTINGS.file) in out and "datasets_dir" in out
    new_dir = str(SETTINGS.file.parent / "my_datasets")
    rc, out, _ = run(["settings", f"datasets_dir={new_dir}"], capsys)
    assert rc == 0 and SETTINGS["datasets_dir"] == new_dir
    assert yaml_load(SETTINGS.file)["datasets_dir"] == new_dir  # saved to the (isolated) settings file
    rc, out, _ = run(["settings", "reset"], capsys)
    assert rc == 0 and SETTINGS["datasets_dir"] == SETTINGS.defaults["datasets_dir"]
    assert yaml_load(SETTINGS.file)["datasets_dir"] == SETTINGS.defaults["datasets_dir"]


def test_settings_errors(capsys):
    rc, _, err = run(["settings", "dataset_dir=/x"], capsys)
    assert rc == 2 and err.startswith("ERROR ❌") and "datasets_dir" in err
    rc, _, err = run(["settings", "bogus"], capsys)
    assert rc == 2 and "key=value" in err


@pytest.mark.parametrize("argv, mode, model, kwargs", [
    (["detect", "train", "model=yolov8_BiFormer.yaml", "data=coco128.yaml", "epochs=3", "imgsz=320"],
     "train", "yolov8_BiFormer.yaml", {"data": "coco128.yaml", "epochs": 3, "imgsz": 320}),
    (["train", "data=coco128.yaml"], "train", "yolov8_BiFormer.yaml", {"data": "coco128.yaml"}),
    (["detect", "val", "model=runs/detect/train/weights/best.pt", "data=coco128.yaml", "conf=0.01"],
     "val", "runs/detect/train/weights/best.pt", {"data": "coco128.yaml", "conf": 0.01}),
    (["detect", "predict", "model=best.pt", "source=path/to/images_or_video", "classes=[0,2]", "show"],
     "predict", "best.pt", {"source": "path/to/images_or_video", "classes": [0, 2], "show": True, "save": True,
                            "stream": True}),  # the CLI saves annotated output and streams by default
    (["export", "model=best.pt", "format=onnx", "half=True", "opset=12"],
     "export", "best.pt", {"format": "onnx", "half": True, "opset": 12}),
    (["train", "epochs", "=", "3", "lr0=", "0.02", "device", "=0,1", "name=2024", "amp=False"],
     "train", "yolov8_BiFormer.yaml", {"epochs": 3, "lr0": 0.02, "device": "0,1", "name": "2024", "amp": False}),
    (["task=detect", "mode=val", "model=m.pt", "imgsz=640,480", "batch=-1"],
     "val", "m.pt", {"imgsz": [640, 480], "batch": -1}),
    (["model=m.yaml", "epochs=2"], "train", "m.yaml", {"epochs": 2}),  # no mode: train, with a warning
])
def test_dispatch(fake, capsys, argv, mode, model, kwargs):
    rc, _, err = run(argv, capsys)
    assert rc == 0, err
    assert fake.calls == [("init", model, {}), (mode, None, kwargs)]


def test_dispatch_with_cfg_file(fake, capsys, tmp_path):
    custom = tmp_path / "custom.yaml"
    custom.write_text("model: from_file.yaml\nmode: val\nepochs: 4\n")
    rc, _, err = run([f"cfg={custom}", "lr0=0.005"], capsys)
    assert rc == 0, err
    assert fake.calls == [("init", "from_file.yaml", {}),
                          ("val", None, {"cfg": str(custom), "lr0": 0.005, "epochs": 4})]


def test_resume_flag_resumes_the_given_checkpoint(fake, capsys, tmp_path):
    """`yolo train resume model=.../last.pt` continues that file with its own settings."""
    last = tmp_path / "run" / "weights" / "last.pt"
    model = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    ckpt = make_checkpoint(model, epoch=0, optimizer={"state": {}, "param_groups": []},
                           train_args={"data": "coco8.yaml", "epochs": 7, "imgsz": 96})
    last.parent.mkdir(parents=True)
    torch.save(ckpt, last)
    rc, _, err = run(["train", "resume", f"model={last}"], capsys)
    assert rc == 0, err
    (mode, _, kwargs), = fake.calls[1:]
    assert fake.calls[0] == ("init", str(last), {})
    assert mode == "train" and kwargs["resume"] == str(last) and kwargs["epochs"] == 7 and kwargs["imgsz"] == 96


@pytest.mark.parametrize("argv, words", [
    (["train", "epochs=-1"], ["epochs", ">= 1"]),
    (["train", "imgsz=abc"], ["imgsz", "abc"]),
    (["train", "batch=0"], ["batch"]),
    (["train", "epochs=3", "foo=1"], ["'foo'"]),
    (["train", "lr=0.1"], ["'lr'", "lr0"]),
    (["train", "epoch=3"], ["'epoch'", "epochs"]),
    (["trian"], ["'trian'", "train"]),
    (["segment", "train"], ["only detect"]),
    (["task=pose", "train"], ["only detect"]),
    (["mode=tune", "model=a.pt"], ["mode", "'tune'", "benchmark"]),
    (["train", "val"], ["two modes"]),
    (["val"], ["needs a model"]),
    (["train", "save_period"], ["needs a value"]),
    (["train", "version"], ["must come first"]),
    (["train", "=3"], ["no key"]),
    (["train", "cfg=does_not_exist.yaml"], ["does_not_exist.yaml", "not found"]),
])
def test_user_errors_are_one_line_with_exit_code_2(fake, capsys, argv, words):
    rc, _, err = run(argv, capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR ❌ ") and "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert fake.calls == []  # validation happens before any model is built


def test_predict_without_source_and_benchmark(fake, capsys):
    assert run(["predict", "model=a.pt"], capsys)[0] == 0
    assert fake.calls[-1] == ("predict", None, {"stream": True, "save": True})  # source None: the bundled images
    assert run(["benchmark", "model=a.pt", "imgsz=64", "format=onnx"], capsys)[0] == 0
    assert fake.calls[-1] == ("benchmark", None, {"imgsz": 64, "format": "onnx", "given": ["format", "imgsz"]})


def test_compare_command_passes_its_keys(fake, capsys, monkeypatch):
    got = []
    monkeypatch.setattr(cli, "compare", lambda **kw: got.append(kw))
    argv = ["detect", "compare", "models=yolov8n.yaml,yolov8n_BiFormer.yaml", "data=shapes.yaml", "seeds=3",
            "epochs=5", "device=0,1"]
    assert run(argv, capsys)[0] == 0 and fake.calls == []
    assert got == [{"models": "yolov8n.yaml,yolov8n_BiFormer.yaml", "data": "shapes.yaml", "seeds": 3, "epochs": 5,
                    "device": "0,1"}]


def test_compare_bad_input_is_one_line_before_training(capsys):
    rc, _, err = run(["compare", "models=yolov8n.yaml,yolov8n_BiFormer.yaml", "data=shapes.yaml", "seeds=0"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "seeds" in err
    rc, _, err = run(["compare", "models=yolov8n.yaml,nope.yaml", "data=shapes.yaml", "epochs=1"], capsys)
    assert rc == 2 and "nope.yaml" in err


def test_unsupported_feature_is_one_line(fake, capsys):
    fake.fail_with = UnsupportedError("export format tflite is not implemented; use format=onnx")
    rc, _, err = run(["export", "model=best.pt", "format=onnx"], capsys)
    assert rc == 2 and err.strip() == "ERROR ❌ export format tflite is not implemented; use format=onnx"


@pytest.mark.parametrize("exc", [DatasetError("bad\ndataset"), MissingFileError("no data.yaml")])
def test_engine_user_errors_are_one_line(fake, capsys, exc):
    fake.fail_with = exc
    rc, _, err = run(["train", "data=x.yaml"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith("ERROR ❌ ")
    assert "bad dataset" in err or "no data.yaml" in err


@pytest.mark.parametrize("exc", [RuntimeError("CUDA out of memory"), ValueError("an internal bug"),
                                 KeyError("names"), NotImplementedError("a missing method")])
def test_other_exceptions_are_bugs_and_propagate(fake, capsys, exc):
    """Only UserError is a user's mistake; anything else keeps its traceback (exit != 2, no one-liner)."""
    fake.fail_with = exc
    with pytest.raises(type(exc)):
        entrypoint(["train"])


def test_traceback_env(fake, monkeypatch):
    monkeypatch.setenv("YOLO_TRACEBACK", "1")
    with pytest.raises(CfgError, match="epochs"):
        entrypoint(["train", "epochs=-1"])


def test_real_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "YOLO_CONFIG_DIR": str(tmp_path)}
    env.pop("YOLO_TRACEBACK", None)
    py = [sys.executable, "-m", "ultralytics"]
    out = subprocess.run([*py, "version"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == ultralytics.__version__
    out = subprocess.run([*py, "help"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 0 and "Usage: yolo" in out.stdout
    out = subprocess.run([*py, "train", "epochs=-1"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("ERROR ❌") and "Traceback" not in out.stderr
    script = Path(sys.executable).with_name("yolo")
    if script.exists():  # the installed console script, when `pip install -e .` has run
        out = subprocess.run([str(script), "version"], capture_output=True, text=True, env=env, cwd=tmp_path,
                             timeout=60)
        assert out.returncode == 0 and out.stdout.strip() == ultralytics.__version__


def test_checks_prints_the_environment(capsys, logs):
    rc, out, _ = run(["checks"], capsys)
    text = out + "\n".join(logs)
    assert rc == 0
    assert ultralytics.__version__ in text and platform.python_version() in text and torch.__version__ in text


def test_copy_cfg_writes_default_copy_yaml(capsys, logs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(["copy-cfg"], capsys)
    target = tmp_path / "default_copy.yaml"
    assert rc == 0, err
    assert target.read_bytes() == DEFAULT_CFG_PATH.read_bytes()
    assert any(f"yolo cfg='{target}'" in line for line in logs)


@pytest.mark.parametrize("argv", [["train", "checks"], ["val", "copy-cfg"]])
def test_new_special_commands_must_come_first(fake, capsys, argv):
    rc, _, err = run(argv, capsys)
    assert rc == 2 and "must come first" in err and fake.calls == []


def test_strip_trailing_commas(logs):
    assert strip_trailing_commas(["train,", "epochs=1,,", ",", "imgsz=320"]) == ["train", "epochs=1,", "imgsz=320"]
    assert len(logs) == 3 and "'epochs=1,,'" in logs[1] and "'epochs=1,'" in logs[1]


def test_trailing_comma_and_spaces_around_equals(fake, capsys, logs):
    """`yolo train epochs =1,` as the shell splits it: joined, the comma dropped with a warning (as published)."""
    rc, _, err = run(["train", "epochs", "=1,", "lr0 =", "0.02,", "device=0,1,", "amp=False"], capsys)
    assert rc == 0, err
    assert fake.calls[1] == ("train", None, {"epochs": 1, "lr0": 0.02, "device": "0,1", "amp": False})
    assert sum("comma" in line for line in logs) == 3 and any("'epochs=1,'" in line for line in logs)


@pytest.mark.parametrize("argv, exc, words", [
    (["train", "foo=1"], SyntaxError, ["'foo'"]),
    (["train", "epoch=1"], SyntaxError, ["'epoch'", "epochs"]),
    (["train", "epochs=abc"], TypeError, ["epochs", "abc"]),
    (["train", "save=yes"], TypeError, ["save", "yes"]),
    (["train", "lr0=1.5"], ValueError, ["lr0", "1.5"]),
])
def test_cli_error_types_with_traceback(fake, monkeypatch, argv, exc, words):
    monkeypatch.setenv("YOLO_TRACEBACK", "1")
    with pytest.raises(exc) as e:
        entrypoint(argv)
    assert all(w in str(e.value) for w in words), str(e.value)
    assert fake.calls == []
