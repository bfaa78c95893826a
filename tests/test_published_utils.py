"""The utilities users import from the published package (checks, files, plotting, ops, data.build, settings,
Results.to_df/to_csv), as our own code. Expected values are hand-computed or were observed by calling the published
8.4.190 as a black box on the same inputs."""

from __future__ import annotations

import builtins
import csv
import importlib.util
import io
import os
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import ultralytics
from ultralytics.data.build import load_inference_source
from ultralytics.data.loaders import InferenceSource, SourceItem
from ultralytics.engine import run_files
from ultralytics.engine.results import Results
from ultralytics.errors import ConfigError
from ultralytics.utils import SETTINGS, ops
from ultralytics.utils.checks import check_imgsz, check_requirements, check_yolo, print_args, version_satisfies
from ultralytics.utils.files import file_age, file_date, file_size, get_latest_run, increment_path
from ultralytics.utils.plotting import PALETTE_HEX, Annotator, colors, save_one_box


# ------------------------------------------------------------------------------------------------ checks
@pytest.mark.parametrize("args, kwargs, expected", [
    ((640,), {"stride": 32, "min_dim": 1}, 640),
    (([640, 480], 32), {}, [640, 480]),
    ((641,), {"square": None}, 672),
    (([641, 479], 32), {}, [672, 480]),
    ((640,), {"min_dim": 2}, [640, 640]),
    (([640], 32), {"square": None}, 640),
    ((640,), {"max_dim": 1}, 640),
    (([640, 480],), {"max_dim": 1}, 640),
    ((10,), {"floor": 64}, 64),
    ((10,), {"square": None}, 32),
    (("640",), {"square": None}, 640),
    (((640, 480),), {"square": None}, [640, 480]),
    ((100,), {"stride": 64, "square": None}, 128),
])
def test_check_imgsz_published_call_forms(args, kwargs, expected):
    out = check_imgsz(*args, **kwargs)
    assert out == expected and type(out) is type(expected)


def test_check_imgsz_keeps_our_modes_for_our_callers():
    assert check_imgsz(640, stride=32) == [640, 640]  # predict/export: always [h, w]
    assert check_imgsz([481, 640], 32, square=True) == 640
    with pytest.raises(ConfigError, match="imgsz"):
        check_imgsz([640, 480, 3], min_dim=1)
    with pytest.raises(ValueError):
        check_imgsz([640, 480, 3], square=None)


def test_check_yolo_logs_the_environment(logs):
    assert check_yolo() is None
    text = "\n".join(logs)
    assert ultralytics.__version__ in text and "Python-" in text and f"torch-{torch.__version__}" in text
    assert f"({os.cpu_count()} CPUs" in text and "GB disk" in text
    logs.clear()
    check_yolo(verbose=False)
    assert logs == []
    assert ultralytics.checks is check_yolo


def test_print_args_given_and_from_the_caller(logs):
    assert print_args({"imgsz": 640, "name": "x"}, show_file=False) is None

    def train_fn(epochs=3, lr=0.01):
        print_args(show_func=True)

    train_fn(5)
    assert logs[0] == "imgsz=640, name=x"
    assert logs[1] == "test_published_utils.train_fn: epochs=5, lr=0.01"


def test_version_specifiers():
    assert version_satisfies("2.14.1+cu130", ">=", "2.2")
    assert not version_satisfies("1.24.0", ">=", "1.24.1")
    assert version_satisfies("1.24", "==", "1.24.0") and version_satisfies("1.24.3", "==", "1.24.*")
    assert version_satisfies("1.4.2", "~=", "1.4") and not version_satisfies("2.0", "~=", "1.4")
    assert version_satisfies("3.0", "!=", "2.9") and version_satisfies("3.0", "<", "3.0.1")


def test_check_requirements_is_offline_and_never_installs(monkeypatch, tmp_path, logs):
    def no_network(*a, **k):
        raise AssertionError("check_requirements touched the network")

    real_import = builtins.__import__

    def no_pip(name, *a, **k):
        if name.split(".")[0] in {"pip", "subprocess"}:
            raise AssertionError(f"check_requirements imported {name}")
        return real_import(name, *a, **k)

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(builtins, "__import__", no_pip)
    assert check_requirements("numpy>=1.0") is True
    assert check_requirements(("numpy", "torch>=1.8")) is True
    assert check_requirements() is True  # this package's own dependencies are installed in its venv
    assert logs == []
    assert check_requirements(["numpy>=99.0"], install=True) is False
    assert check_requirements("notapkg-xyz-123") is False
    assert check_requirements("notapkg-xyz-123", exclude=["notapkg_xyz_123"]) is True
    req = tmp_path / "requirements.txt"
    req.write_text("# comment\nnumpy>=1.0  # inline\ntorch<1.0\n")
    assert check_requirements(req) is False
    monkeypatch.setattr(builtins, "__import__", real_import)
    assert any("numpy>=99.0 (found" in m and 'pip install "numpy>=99.0"' in m for m in logs)
    assert any("notapkg-xyz-123 (not installed)" in m for m in logs)
    assert any("torch<1.0 (found" in m for m in logs)
    assert importlib.util.find_spec("notapkg_xyz_123") is None  # nothing was installed


# ------------------------------------------------------------------------------------------------ files
def test_increment_path(tmp_path):
    exp = tmp_path / "exp"
    assert increment_path(exp) == exp and not exp.exists()
    exp.mkdir()
    assert increment_path(exp) == tmp_path / "exp2"
    assert increment_path(exp, sep="-") == tmp_path / "exp-2"
    assert increment_path(exp, exist_ok=True) == exp
    made = increment_path(exp, mkdir=True)
    assert made == tmp_path / "exp2" and made.is_dir()
    assert increment_path(exp) == tmp_path / "exp3"
    (tmp_path / "a.txt").write_text("x")
    assert increment_path(tmp_path / "a.txt", sep="-") == tmp_path / "a-2.txt"
    (tmp_path / "d.v1").mkdir()
    assert increment_path(tmp_path / "d.v1", sep="-") == tmp_path / "d.v1-2"
    assert isinstance(increment_path(str(exp)), Path)
    assert run_files.increment_path is increment_path


def test_file_size_age_date(tmp_path):
    f = tmp_path / "big.bin"
    f.write_bytes(b"0" * 3_000_000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "small.bin").write_bytes(b"0" * 2048)
    assert file_size(f) == pytest.approx(3_000_000 / 2**20)
    assert file_size(tmp_path) == pytest.approx(3_002_048 / 2**20)
    assert file_size(tmp_path / "missing") == 0.0 and file_size(None) == 0.0
    assert file_age(f) == 0
    three_days_ago = time.time() - 3 * 86400 - 60
    os.utime(f, (three_days_ago, three_days_ago))
    assert file_age(f) == 3
    t = time.localtime(three_days_ago)
    assert file_date(f) == f"{t.tm_year}-{t.tm_mon}-{t.tm_mday}"
    with pytest.raises(FileNotFoundError):
        file_age(tmp_path / "missing")


def test_get_latest_run(tmp_path):
    assert get_latest_run(tmp_path / "empty") == ""
    older = tmp_path / "a" / "weights" / "last.pt"
    newer = tmp_path / "b" / "last2.pt"
    for p in (older, newer, tmp_path / "c" / "best.pt"):
        p.parent.mkdir(parents=True)
        p.write_text("x")
        time.sleep(0.02)
    assert get_latest_run(tmp_path) == str(newer)


# ------------------------------------------------------------------------------------------------ plotting
def test_colors_uses_our_palette():
    h = PALETTE_HEX[1]
    rgb = (int(h[:2], 16), int(h[2:4], 16), int(h[4:], 16))
    assert colors(1) == rgb and colors(1, bgr=True) == rgb[::-1]
    assert colors(len(PALETTE_HEX) + 1) == rgb and colors(torch.tensor(1)) == rgb
    assert all(type(v) is int for v in colors(0))


def test_annotator_draws_in_place():
    im = np.zeros((100, 200, 3), np.uint8)
    a = Annotator(im)
    assert a.lw == 2 and Annotator(im, line_width=5).lw == 5
    a.box_label([10, 20, 60, 80], "cat 0.9", (0, 0, 255))
    out = a.result()
    assert out is im
    assert out[50, 10].tolist() == [0, 0, 255] and out[50, 35].tolist() == [0, 0, 0]  # outline, hollow inside
    assert (out[5:20, 12:40] != 0).any()  # label tag above the box
    a.box_label(torch.tensor([[120.0, 50, 150, 90]]))
    assert out[70, 120].tolist() == [128, 128, 128]
    a.rectangle([160, 10, 190, 30], fill=(0, 255, 0))
    assert out[20, 175].tolist() == [0, 255, 0]
    a.rectangle([160, 40, 190, 60], outline=(255, 0, 0), width=1)
    assert out[50, 160].tolist() == [255, 0, 0] and out[50, 175].tolist() == [0, 0, 0]
    blank = np.zeros((60, 100, 3), np.uint8)
    Annotator(blank).text([5, 5], "hi", box_color=(0, 0, 200))
    assert (blank[:, :, 2] == 200).any() and (blank == 255).all(-1).any()


def test_save_one_box(tmp_path):
    im = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)
    box = torch.tensor([20.0, 30, 70, 60])  # w 50, h 30, centre (45, 45)
    crop = save_one_box(box, im, save=False, gain=1, pad=0)
    assert crop.shape == (30, 50, 3) and crop[0, 0].tolist() == im[30, 20, ::-1].tolist()
    assert save_one_box(box, im, save=False, gain=1, pad=0, BGR=True)[0, 0].tolist() == im[30, 20].tolist()
    assert save_one_box(box, im, save=False).shape == (41, 61, 3)  # 50*1.02+10 = 61; 30*1.02+10 = 40.6 → 24..65
    assert save_one_box(box, im, save=False, square=True).shape == (61, 61, 3)
    assert save_one_box(box, im, save=False, gain=2, pad=0).shape == (60, 95, 3)  # x -5..95 clipped at 0
    assert save_one_box([[0.0, 0, 190, 95]], im, save=False).shape == (100, 196, 3)
    assert save_one_box([20.4, 30.6, 70.5, 60.2], im, save=False, gain=1, pad=0).shape == (30, 50, 3)
    f = tmp_path / "crops" / "c.jpg"
    first = save_one_box(box, im, file=f, BGR=True)
    save_one_box(box, im, file=f)
    assert sorted(p.name for p in f.parent.iterdir()) == ["c-2.jpg", "c.jpg"]
    written = cv2.imread(str(f))
    assert written.shape == first.shape and np.abs(written.astype(int) - first).mean() < 8  # JPEG of the BGR crop


# ------------------------------------------------------------------------------------------------ ops
@pytest.mark.parametrize("as_tensor", [False, True])
def test_ltwh_converters(as_tensor):
    def box(*v):
        return torch.tensor([v], dtype=torch.float32) if as_tensor else np.array([v], dtype=np.float64)

    x = box(10, 20, 30, 40)
    cases = {ops.ltwh2xywh: (25, 40, 30, 40), ops.ltwh2xyxy: (10, 20, 40, 60), ops.xywh2ltwh: (-5, 0, 30, 40),
             ops.xyxy2ltwh: (10, 20, 20, 20)}
    for fn, expected in cases.items():
        y = fn(x)
        assert type(y) is type(x) and y is not x and y.tolist() == [list(map(float, expected))]
    assert x.tolist() == [[10.0, 20.0, 30.0, 40.0]]  # inputs untouched
    rng = np.random.default_rng(0)
    ltwh = rng.uniform(0, 100, (5, 4))
    np.testing.assert_allclose(ops.xywh2ltwh(ops.ltwh2xywh(ltwh)), ltwh)
    np.testing.assert_allclose(ops.xyxy2ltwh(ops.ltwh2xyxy(ltwh)), ltwh)
    np.testing.assert_allclose(ops.ltwh2xyxy(ltwh), ops.xywh2xyxy(ops.ltwh2xywh(ltwh)))


# ------------------------------------------------------------------------------------------------ data, settings
def test_load_inference_source(tmp_path):
    im = np.full((64, 48, 3), 7, np.uint8)
    src = load_inference_source([im, im], batch=4)
    assert isinstance(src, InferenceSource) and src.bs == 4 and len(src) == 2
    items = list(src)
    assert all(isinstance(i, SourceItem) for i in items) and [i.path for i in items] == ["image0.jpg", "image1.jpg"]
    assert items[0].im0.shape == (64, 48, 3)
    f = tmp_path / "a.jpg"
    cv2.imwrite(str(f), im)
    assert [i.path for i in load_inference_source(str(tmp_path))] == [str(f)]
    with pytest.raises(ConfigError):
        load_inference_source(im, batch=0)
    with pytest.raises(ConfigError):
        load_inference_source(im, vid_stride=0)


def test_settings_at_top_level():
    assert ultralytics.settings is SETTINGS
    ultralytics.settings.update({"runs_dir": "/tmp/somewhere"})
    assert ultralytics.settings["runs_dir"] == "/tmp/somewhere"
    with pytest.raises(KeyError):
        ultralytics.settings.update(not_a_setting=1)
    ultralytics.settings.reset()
    assert ultralytics.settings["runs_dir"] == ultralytics.settings.defaults["runs_dir"]
    assert SETTINGS.file.exists()


# ------------------------------------------------------------------------------------------------ Results tables
def _results(track: bool = False) -> Results:
    im = np.zeros((100, 200, 3), np.uint8)
    rows = [[10.0, 20, 60, 80, 7, 0.9, 1]] if track else [[10.0, 20, 60, 80, 0.9, 1], [0, 0, 5, 5, 0.5, 0]]
    return Results(im, "img.jpg", {0: "person", 1: "bus"}, boxes=torch.tensor(rows))


def test_to_csv_published_layout():
    assert _results().to_csv() == ("name,class,confidence,box\n"
                                   "bus,1,0.9,\"{'x1': 10.0, 'y1': 20.0, 'x2': 60.0, 'y2': 80.0}\"\n"
                                   "person,0,0.5,\"{'x1': 0.0, 'y1': 0.0, 'x2': 5.0, 'y2': 5.0}\"\n")
    assert _results().to_csv(normalize=True, decimals=2).splitlines()[1] == (
        "bus,1,0.9,\"{'x1': 0.05, 'y1': 0.2, 'x2': 0.3, 'y2': 0.8}\"")
    assert _results(track=True).to_csv().splitlines() == [
        "name,class,confidence,box,track_id", "bus,1,0.9,\"{'x1': 10.0, 'y1': 20.0, 'x2': 60.0, 'y2': 80.0}\",7"]
    assert _results()[[]].to_csv() == "\n"
    parsed = list(csv.DictReader(io.StringIO(_results().to_csv())))
    assert [r["name"] for r in parsed] == ["bus", "person"] and parsed[1]["confidence"] == "0.5"


def test_to_df_needs_polars():
    if importlib.util.find_spec("polars") is None:
        with pytest.raises(ImportError, match="pip install polars"):
            _results().to_df()
        return
    df = _results().to_df()
    assert df.columns == ["name", "class", "confidence", "box"]
    assert df["name"].to_list() == ["bus", "person"] and df["box"][0] == {"x1": 10.0, "y1": 20.0, "x2": 60.0,
                                                                          "y2": 80.0}
