"""One config per run: the per-mode defaults table, the unsupported-keys table, one imgsz check, and the same object
handed from the facade to the components (issue: config merged and validated once)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ultralytics import YOLO
from ultralytics.cfg import DEFAULT_CFG_DICT, MODE_DEFAULTS, UNSUPPORTED_KEYS, get_cfg, mode_default
from ultralytics.engine import predictor as predictor_module
from ultralytics.errors import ConfigError
from ultralytics.utils import LOGGER
from ultralytics.utils.checks import check_imgsz


@pytest.mark.parametrize("mode", sorted(MODE_DEFAULTS))
def test_mode_defaults_apply_only_where_the_run_is_silent(mode):
    table = MODE_DEFAULTS[mode]
    args = get_cfg(overrides={"mode": mode})
    assert {k: getattr(args, k) for k in table} == table
    assert all(getattr(args, k) == v for k, v in DEFAULT_CFG_DICT.items() if k not in table and k != "mode")
    key = next(iter(table))
    given = "other.yaml" if isinstance(table[key], str) else (0.5 if isinstance(table[key], float) else not table[key])
    if key == "batch":
        given = 4
    assert getattr(get_cfg(overrides={"mode": mode, key: given}), key) == given
    assert mode_default(mode, key) == table[key] and mode_default(mode, "lr0") == DEFAULT_CFG_DICT["lr0"]


def test_without_a_mode_get_cfg_is_default_yaml():
    assert vars(get_cfg()) == DEFAULT_CFG_DICT


def test_unsupported_keys_warn_only_when_set(caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER.name):
        get_cfg(overrides={"dnn": False, "label_smoothing": 0.0})  # their defaults: silent
        assert "ignored" not in caplog.text
        get_cfg(overrides={"dnn": True, "copy_paste": 0.3})
    assert "dnn=True is ignored: ONNX models run through ONNX Runtime" in caplog.text
    assert "copy_paste=0.3 is ignored: segmentation only" in caplog.text
    assert set(UNSUPPORTED_KEYS) <= set(DEFAULT_CFG_DICT)


@pytest.mark.parametrize("imgsz, stride, square, expected", [
    (640, 32, True, 640), (650, 32, True, 672), ([480, 640], 32, True, 640), (10, 32, True, 32),
    (640, 32, False, [640, 640]), ([481, 640], 32, False, [512, 640]), ([320], 64, False, [320, 320]),
])
def test_check_imgsz_is_the_one_rounding_rule(imgsz, stride, square, expected):
    assert check_imgsz(imgsz, stride, square=square) == expected


@pytest.mark.parametrize("bad", [0, -32, [640, 480, 320], "abc", [True]])
def test_check_imgsz_refuses_nonsense(bad):
    with pytest.raises(ConfigError, match="imgsz"):
        check_imgsz(bad)


def test_facade_hands_its_one_config_to_the_predictor(monkeypatch):
    seen = []
    original = predictor_module.DetectionPredictor.__init__

    def spy(self, cfg=None, overrides=None, _callbacks=None):
        seen.append((cfg, overrides))
        original(self, cfg, overrides, _callbacks)

    monkeypatch.setattr(predictor_module.DetectionPredictor, "__init__", spy)
    model = YOLO("yolov8n.yaml")
    model.predict(np.zeros((64, 64, 3), np.uint8), imgsz=64, conf=0.3, verbose=False)
    (cfg, overrides), = seen
    assert overrides is None and cfg.mode == "predict" and cfg.conf == 0.3 and cfg.imgsz == 64
    assert cfg.batch == MODE_DEFAULTS["predict"]["batch"]  # the predict default, from the table
