"""Bad model YAMLs fail with errors that name the row and the problem; packaged names resolve."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import yaml

from ultralytics.nn.tasks import MODULES, DetectionModel, ModelConfigError, find_model_yaml, register_module

GOOD = {
    "nc": 4,
    "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [64, 3, 2]],
                 [-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [64, 3, 2]]],
    "head": [[[2, 3, 4], 1, "Detect", ["nc"]]],
}


def build(tmp_path, d: dict) -> DetectionModel:
    f = tmp_path / "custom.yaml"
    f.write_text(yaml.safe_dump(d))
    return DetectionModel(str(f), verbose=False)


def test_minimal_custom_yaml_builds(tmp_path):
    m = build(tmp_path, GOOD)
    assert m.stride.tolist() == [8.0, 16.0, 32.0] and m.model[-1].nc == 4


def test_unknown_module_names_row_and_lists_known(tmp_path):
    d = dict(GOOD, backbone=[*GOOD["backbone"][:1], [-1, 1, "Konv", [32, 3, 2]], *GOOD["backbone"][2:]])
    with pytest.raises(ModelConfigError, match=r"layer 1 .*unknown module 'Konv'.*known modules are .*BiLevelRoutingAttention"):
        build(tmp_path, d)


def test_wrong_argument_count_names_row(tmp_path):
    d = dict(GOOD, backbone=[[-1, 1, "Conv", [16, 3, 2, None, 1, 1, True, "extra", 9]], *GOOD["backbone"][1:]])
    with pytest.raises(ModelConfigError, match=r"layer 0 .*wrong arguments for Conv"):
        build(tmp_path, d)


@pytest.mark.parametrize("key", ["backbone", "head", "nc"])
def test_missing_key(tmp_path, key):
    d = {k: v for k, v in GOOD.items() if k != key}
    with pytest.raises(ModelConfigError, match=rf"'{key}'"):
        build(tmp_path, d)


def test_malformed_row_and_bad_from(tmp_path):
    with pytest.raises(ModelConfigError, match=r"layer 1 .*\[from, repeats, module, args\]"):
        build(tmp_path, dict(GOOD, backbone=[GOOD["backbone"][0], [-1, "Conv", [32, 3, 2]]]))
    with pytest.raises(ModelConfigError, match=r"layer 2 .*'from' 7 must name earlier layers"):
        build(tmp_path, dict(GOOD, backbone=[*GOOD["backbone"][:2], [7, 1, "Conv", [64, 3, 2]], *GOOD["backbone"][3:]]))


def test_unknown_scale_and_missing_file():
    with pytest.raises(FileNotFoundError, match=r"nope.yaml.*not found.*yolov8.yaml"):
        DetectionModel("nope.yaml", verbose=False)
    with pytest.raises(ModelConfigError, match=r"must be a .yaml file"):
        find_model_yaml("yolov8n.pt")


def test_packaged_names_resolve_without_path():
    assert find_model_yaml("yolov8n.yaml").name == "yolov8.yaml"
    assert find_model_yaml("yolov8s_BiFormer.yaml").name == "yolov8_BiFormer.yaml"
    assert find_model_yaml("yolov8_BiFormer.yaml").name == "yolov8_BiFormer.yaml"


def test_yaml_args_are_data_not_code(tmp_path):
    # A string argument is never evaluated: it stays a string (and fails cleanly where a number is needed).
    d = dict(GOOD, backbone=[[-1, 1, "Conv", ["__import__('os').system('echo pwned')", 3, 2]], *GOOD["backbone"][1:]])
    with pytest.raises(ModelConfigError):
        build(tmp_path, d)


def test_activation_key_is_resolved_safely(tmp_path):
    m = build(tmp_path, dict(GOOD, activation="nn.ReLU()"))
    assert isinstance(m.model[0].act, nn.ReLU)
    from ultralytics.nn.modules import Conv

    assert isinstance(Conv.default_act, nn.SiLU)  # restored after the build
    with pytest.raises(ModelConfigError, match="activation"):
        build(tmp_path, dict(GOOD, activation="os.system('x')"))


def test_register_module_is_one_line(tmp_path):
    from ultralytics.nn.tasks import same_channels_first

    class Scale(nn.Module):
        def __init__(self, c: int, factor: float = 2.0):
            super().__init__()
            self.w = nn.Parameter(torch.ones(c) * factor)

        def forward(self, x):
            return x * self.w.view(1, -1, 1, 1)

    register_module("Scale", Scale, same_channels_first)
    try:
        d = dict(GOOD, backbone=[*GOOD["backbone"][:3], [-1, 1, "Scale", [0.5]], *GOOD["backbone"][3:]])
        m = build(tmp_path, d)
        assert float(m.model[3].w[0].detach()) == 0.5 and m.model[3].w.numel() == 64
    finally:
        MODULES.pop("Scale")
