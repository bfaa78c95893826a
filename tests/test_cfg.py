"""Tests of the configuration: default.yaml, value parsing, get_cfg merging, type and range checks."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from ultralytics import cfg as cfgmod
from ultralytics.cfg import (
    DEFAULT_CFG,
    DEFAULT_CFG_DICT,
    CfgError,
    IterableSimpleNamespace,
    check_dict_alignment,
    copy_default_cfg,
    get_cfg,
    parse_value,
    smart_value,
)
from ultralytics.errors import ConfigError, ConfigTypeError, UnknownKeyError
from ultralytics.utils import DEFAULT_CFG_PATH
from ultralytics.utils.torch_utils import cuda_device_ids

# Keys and defaults a YOLOv8 detection user relies on (SPEC §4 plus the published defaults).
SPEC_DEFAULTS = {
    "task": "detect", "mode": "train", "epochs": 100, "patience": 100, "batch": 16, "imgsz": 640,
    "save_period": -1, "workers": 8, "optimizer": "auto", "seed": 0, "deterministic": True, "cos_lr": False,
    "close_mosaic": 10, "amp": True, "fraction": 1.0, "val": True, "conf": None, "iou": 0.7, "max_det": 300,
    "lr0": 0.01, "lrf": 0.01, "momentum": 0.937, "weight_decay": 0.0005, "warmup_epochs": 3.0,
    "warmup_momentum": 0.8, "warmup_bias_lr": 0.1, "box": 7.5, "cls": 0.5, "dfl": 1.5, "nbs": 64,
    "hsv_h": 0.015, "hsv_s": 0.7, "hsv_v": 0.4, "degrees": 0.0, "translate": 0.1, "scale": 0.5, "shear": 0.0,
    "perspective": 0.0, "flipud": 0.0, "fliplr": 0.5, "mosaic": 1.0, "mixup": 0.0, "opset": 17,
    "sync_bn": False, "save": True, "cache": False, "device": None, "project": None, "name": None,
    "exist_ok": False, "pretrained": True, "rect": False, "resume": False, "single_cls": False, "split": "val",
    "format": "torchscript", "model": None, "data": None, "source": None, "cfg": None,
}
OTHER_KEYS = (
    "time verbose profile freeze multi_scale save_json half dnn plots vid_stride stream_buffer visualize augment "
    "agnostic_nms classes retina_masks embed show save_frames save_txt save_conf save_crop show_labels show_conf "
    "show_boxes line_width keras optimize int8 dynamic simplify workspace nms copy_paste tracker"
).split()


def test_default_yaml_has_every_key_with_spec_defaults():
    raw = yaml.safe_load(DEFAULT_CFG_PATH.read_text())
    for key, value in SPEC_DEFAULTS.items():
        assert key in raw, key
        assert raw[key] == value and type(raw[key]) is type(value), (key, raw[key], value)
    for key in OTHER_KEYS:
        assert key in raw, key


def test_every_default_key_has_a_type_rule():
    rules = (set(cfgmod.FLOAT_KEYS) | cfgmod.FRACTION_KEYS | set(cfgmod.INT_KEYS) | cfgmod.BOOL_KEYS
             | cfgmod.STR_KEYS | cfgmod.SPECIAL_KEYS)
    assert set(DEFAULT_CFG_DICT) <= rules
    assert DEFAULT_CFG.workspace == 4.0 and isinstance(DEFAULT_CFG.workspace, float)  # defaults are checked too


@pytest.mark.parametrize("text, expected", [
    ("640", 640), ("0.01", 0.01), ("1e-3", 0.001), ("-1", -1), ("False", False), ("true", True),
    ("None", None), ("none", None), ("null", None), ("", None), ("[0,2]", [0, 2]), ("[640, 480]", [640, 480]),
    ("0,1", "0,1"), ("exp", "exp"), ("cpu", "cpu"), ("coco128.yaml", "coco128.yaml"),
    ("path/to/img.jpg", "path/to/img.jpg"), ("yes", "yes"), ("*.jpg", "*.jpg"), ("[oops", "[oops"),
    ("https://x.org/a.jpg", "https://x.org/a.jpg"), ("{a: 1}", "{a: 1}"),
])
def test_parse_value(text, expected):
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_namespace_behaves_like_a_dict_of_attributes():
    ns = IterableSimpleNamespace(a=1, b="x")
    assert dict(ns) == {"a": 1, "b": "x"} == vars(ns)
    assert list(ns) == [("a", 1), ("b", "x")]
    assert ns.get("a") == 1 and ns.get("zz", 5) == 5 and "a" in ns and "zz" not in ns
    assert "a=1" in str(ns)
    with pytest.raises(AttributeError, match="zz"):
        _ = ns.zz
    assert getattr(ns, "zz", None) is None
    assert vars(pickle.loads(pickle.dumps(ns))) == vars(ns) == vars(copy.deepcopy(ns))


def test_get_cfg_defaults_and_sources():
    args = get_cfg()
    assert isinstance(args, IterableSimpleNamespace) and vars(args) == DEFAULT_CFG_DICT
    assert get_cfg(dict(DEFAULT_CFG_DICT)).epochs == 100
    assert get_cfg(SimpleNamespace(epochs=5)).epochs == 5  # a partial namespace is completed with defaults
    assert get_cfg({"lr0": 0.02}, {"epochs": 7}).lr0 == 0.02
    assert get_cfg(None, {"epochs": 7}).epochs == 7
    a, b = get_cfg(), get_cfg()
    a.epochs = 1
    assert b.epochs == 100 and DEFAULT_CFG.epochs == 100


def test_get_cfg_merge_order(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("epochs: 5\nlr0: 0.02\nbatch: 4\n")
    custom = tmp_path / "custom.yaml"
    custom.write_text("epochs: 7\nlr0: 0.03\ncfg: ignored.yaml\n")
    overrides = {"cfg": str(custom), "epochs": 9}
    args = get_cfg(base, overrides)
    assert (args.batch, args.lr0, args.epochs) == (4, 0.03, 9)  # default < cfg < cfg= file < overrides
    assert args.imgsz == 640 and args.cfg == str(custom)
    assert overrides == {"cfg": str(custom), "epochs": 9}  # the caller's dict is untouched
    assert get_cfg(overrides={"cfg": Path(custom)}).epochs == 7


def test_get_cfg_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.yaml"):
        get_cfg(overrides={"cfg": str(tmp_path / "nothere.yaml")})
    bad = tmp_path / "bad.yaml"
    bad.write_text("epoch: 3\n")
    with pytest.raises(CfgError, match=r"'epoch'.*bad\.yaml.*epochs"):
        get_cfg(overrides={"cfg": str(bad)})


@pytest.mark.parametrize("key, suggestion", [("lr", "lr0"), ("epoch", "epochs"), ("imgsize", "imgsz"),
                                             ("batch_size", "batch"), ("momentom", "momentum")])
def test_unknown_key_suggests_close_matches(key, suggestion):
    with pytest.raises(CfgError) as e:
        get_cfg(overrides={key: 1})
    msg = str(e.value)
    assert f"'{key}'" in msg and suggestion in msg


def test_unknown_keys_all_reported_and_is_value_error():
    with pytest.raises(ValueError) as e:
        get_cfg(overrides={"epoch": 3, "foo": 1})
    assert isinstance(e.value, CfgError) and "'epoch'" in str(e.value) and "'foo'" in str(e.value)


@pytest.mark.parametrize("key, value, words", [
    ("lr0", "abc", ["lr0", "'abc'", "str", "number"]),
    ("box", True, ["box", "bool", "number"]),
    ("iou", 1.5, ["iou", "1.5", "between 0.0 and 1.0"]),
    ("hsv_s", -0.1, ["hsv_s", "between 0.0 and 1.0"]),
    ("conf", 2, ["conf", "between"]),
    ("fraction", 0.0, ["fraction", "(0.0, 1.0]"]),
    ("epochs", -1, ["epochs", "-1", ">= 1"]),
    ("epochs", 0, ["epochs", ">= 1"]),
    ("epochs", 2.5, ["epochs", "2.5", "whole number"]),
    ("epochs", "3", ["epochs", "'3'", "str", "int"]),
    ("workers", -2, ["workers", ">= 0"]),
    ("batch", 0, ["batch", "positive int", "-1"]),
    ("batch", -3, ["batch", "positive int"]),
    ("batch", 1.5, ["batch", "whole number"]),
    ("imgsz", "abc", ["imgsz", "'abc'", "str", "positive int", "[h, w]"]),
    ("imgsz", 0, ["imgsz", "positive"]),
    ("imgsz", [640, 480, 3], ["imgsz", "3 items"]),
    ("imgsz", [640, -1], ["imgsz", "positive"]),
    ("amp", "yes", ["amp", "'yes'", "str", "bool"]),
    ("amp", 1, ["amp", "int", "bool"]),
    ("name", ["a"], ["name", "list", "text"]),
    ("epochs", None, ["epochs=None", "needs a value"]),
    ("optimizer", "SDG", ["optimizer", "SGD"]),
    ("split", "tests", ["split", "test"]),
    ("cache", "memory", ["cache", "ram", "disk"]),
    ("task", "segment", ["only detect"]),
    ("mode", "tune", ["mode", "'tune'", "track", "benchmark"]),
    ("device", 1.5, ["device", "float"]),
    ("classes", "a,b", ["classes", "list of ints"]),
    ("classes", -1, ["classes", "non-negative"]),
    ("time", -1, ["time", ">= 0"]),
])
def test_bad_values_give_clear_errors(key, value, words):
    with pytest.raises(CfgError) as e:
        get_cfg(overrides={key: value})
    for word in words:
        assert word in str(e.value), (word, str(e.value))


def test_value_conversions():
    args = get_cfg(overrides={
        "epochs": 3.0, "lr0": 1, "imgsz": [480, 640.0], "classes": "0,2", "freeze": 10, "device": "0,1",
        "data": Path("data/coco128.yaml"), "model": Path("m.yaml"), "name": 2024, "conf": None, "opset": None,
        "optimizer": "sgd", "batch": -1, "cache": "ram", "resume": "runs/x/last.pt", "pretrained": False,
        "workspace": 2, "source": 0, "embed": 5, "save_dir": "runs/detect/train",
    })
    assert args.epochs == 3 and type(args.epochs) is int
    assert args.lr0 == 1.0 and type(args.lr0) is float
    assert args.imgsz == [480, 640] and all(type(v) is int for v in args.imgsz)
    assert args.classes == [0, 2] and args.freeze == 10 and args.device == "0,1" and args.embed == [5]
    assert args.data == str(Path("data/coco128.yaml")) and args.model == "m.yaml" and args.name == "2024"
    assert args.conf is None and args.opset is None and args.optimizer == "SGD" and args.batch == -1
    assert args.cache == "ram" and args.resume == "runs/x/last.pt" and args.pretrained is False
    assert args.workspace == 2.0 and args.source == 0 and args.save_dir == "runs/detect/train"
    assert get_cfg(overrides={"imgsz": "640,480"}).imgsz == [640, 480]
    assert get_cfg(overrides={"imgsz": 320}).imgsz == 320
    assert get_cfg(overrides={"device": [0, 1]}).device == [0, 1]
    assert get_cfg(overrides={"device": "cpu", "conf": 0.25, "task": "DETECT"}).task == "detect"


def test_deprecated_keys_are_renamed():
    args = get_cfg(overrides={"hide_labels": True, "boxes": False, "line_thickness": 2})
    assert args.show_labels is False and args.show_boxes is False and args.line_width == 2
    assert "hide_labels" not in args


@pytest.mark.parametrize("device, text, ids", [
    (torch.device("cpu"), "cpu", []), (torch.device("cuda:1"), "cuda:1", [1]), (torch.device("cuda"), "cuda", [0]),
    (0, 0, [0]), ("0", "0", [0]), ("0,1", "0,1", [0, 1]), ([0, 1], [0, 1], [0, 1]), ("cuda:0", "cuda:0", [0]),
    ("mps", "mps", []), ("cpu", "cpu", []),
])
def test_device_accepts_what_the_published_package_accepts(device, text, ids):
    """sahi and other tools pass torch.device objects; ints, index text, lists, cuda:N and mps work too."""
    args = get_cfg(overrides={"device": device})
    assert args.device == text
    assert cuda_device_ids(args.device) == ids


def test_predict_with_a_torch_device():
    from ultralytics import YOLO

    image = np.zeros((64, 80, 3), np.uint8)
    results = YOLO("yolov8n.yaml").predict(image, imgsz=64, device=torch.device("cpu"), verbose=False)
    assert len(results) == 1 and results[0].boxes.xyxy.device.type == "cpu"


# Observed from the published package (8.4.190, black box): ultralytics.cfg.smart_value(text) on these inputs.
@pytest.mark.parametrize("text, expected", [
    ("none", None), ("None", None), ("true", True), ("True", True), ("TRUE", True), ("tRuE", True), ("false", False),
    ("3", 3), ("-1", -1), (" 3 ", 3), ("3.5", 3.5), ("1e-3", 0.001), ("1E3", 1000.0), ("[1,2]", [1, 2]),
    ("abc", "abc"), ("yes", "yes"), ("[oops", "[oops"), ("{a: 1}", "{a: 1}"),
])
def test_smart_value_matches_published(text, expected):
    value = smart_value(text)
    assert value == expected and type(value) is type(expected)


def test_check_dict_alignment():
    base = {"epochs": 1, "lr0": 0.01, "lrf": 0.01, "show_labels": True}
    assert check_dict_alignment(base, {"epochs": 3, "lr0": 0.1}) is None
    assert check_dict_alignment(base, {"save_dir": "runs/x"}) is None  # allowed beyond base by default
    custom = {"hide_labels": True}
    assert check_dict_alignment(base, custom) is None and custom == {"hide_labels": True}  # deprecated: new name
    with pytest.raises(SyntaxError) as e:
        check_dict_alignment(base, {"epoch": 3, "foo": 1, "lr0": 0.1})
    msg = str(e.value)
    assert isinstance(e.value, UnknownKeyError) and isinstance(e.value, ConfigError)
    assert "'epoch'" in msg and "epochs" in msg and "'foo'" in msg and "'lr0'" not in msg
    cause = KeyError("lr")
    with pytest.raises(SyntaxError, match="'lr'.*lr0") as e:
        check_dict_alignment(base, {"lr": 0.1}, cause)
    assert e.value.__cause__ is cause
    assert check_dict_alignment(base, {"x": 1}, None, {"x"}) is None
    with pytest.raises(SyntaxError, match="'save_dir'"):
        check_dict_alignment(base, {"save_dir": "a"}, None, {"x"})  # an explicit allowed set replaces the default


def test_copy_default_cfg(tmp_path, monkeypatch, logs):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default_copy.yaml").write_text("stale: 1\n")
    path = copy_default_cfg()
    assert path == tmp_path / "default_copy.yaml"  # the published file name, replaced when it exists
    assert path.read_bytes() == DEFAULT_CFG_PATH.read_bytes()
    text = "\n".join(logs)
    assert f"{DEFAULT_CFG_PATH} copied to {path}" in text and f"yolo cfg='{path}' imgsz=320 batch=8" in text
    assert cfgmod.check_cfg(yaml.safe_load(path.read_text())) == DEFAULT_CFG_DICT  # a valid cfg= file


# The exception types the published package raises (observed): TypeError for a wrong type (None included),
# ValueError for a bad value, SyntaxError for an unknown key. Ours are also ConfigErrors.
@pytest.mark.parametrize("key, value, exc", [
    ("epochs", "abc", TypeError), ("epochs", 2.5, TypeError), ("epochs", None, TypeError), ("lr0", "abc", TypeError),
    ("lr0", None, TypeError), ("save", "yes", TypeError), ("save", 1, TypeError), ("name", ["a"], TypeError),
    ("imgsz", "abc", TypeError), ("lr0", 1.5, ValueError), ("epochs", -1, ValueError), ("batch", 0, ValueError),
    ("optimizer", "SDG", ValueError), ("foo", 1, SyntaxError), ("epoch", 1, SyntaxError),
])
def test_error_types_match_published(key, value, exc):
    with pytest.raises(exc) as e:
        get_cfg(overrides={key: value})
    assert isinstance(e.value, ConfigError) and f"{key}" in str(e.value)
    assert isinstance(e.value, ConfigTypeError) == (exc is TypeError)
    assert isinstance(e.value, UnknownKeyError) == (exc is SyntaxError)
    if exc is ValueError:
        assert not isinstance(e.value, (TypeError, SyntaxError))


def test_none_is_valid_for_auto_augment_and_other_ignored_keys(logs):
    args = get_cfg(overrides={"auto_augment": None, "workspace": None, "nms": None, "tracker": None})
    assert args.auto_augment is None and args.workspace is None and args.nms is None and args.tracker is None
    assert not any("ignored" in line for line in logs)  # None means unset: nothing to warn about
    assert get_cfg(overrides={"auto_augment": "augmix"}).auto_augment == "augmix"
    assert any("auto_augment='augmix' is ignored" in line for line in logs)
    with pytest.raises(TypeError, match="lr0=None"):
        get_cfg(overrides={"lr0": None})
