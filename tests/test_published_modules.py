"""Extra YOLOv8 blocks and yamls against facts recorded from the published package (8.4.190, black box):
state_dict layout, parameter counts, output shapes and values for seeded weights, yaml layer tables and counts.
Fixture: tests/fixtures/published_modules/modules.json (make_fixtures.py, run by hand)."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
import torch

import ultralytics.nn.modules as M
from ultralytics.nn.tasks import DetectionModel, parse_model

HERE = Path(__file__).resolve().parent / "fixtures" / "published_modules"
FACTS = json.loads((HERE / "modules.json").read_text())
_spec = importlib.util.spec_from_file_location("published_modules_fixture", HERE / "make_fixtures.py")
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)

CASE_IDS = [f"{c['name']}-{i}" for i, c in enumerate(FACTS["cases"])]
YAML_SCALES = [(y, s) for y in fx.YAMLS for s in fx.SCALES]


def build(case: dict) -> torch.nn.Module:
    return getattr(M, case["name"])(*case["args"], **case["kwargs"])


def seeded(case: dict) -> torch.nn.Module:
    m = build(case)
    m.load_state_dict(fx.seeded_state_dict(fx.state_entries(m)), strict=True)
    return m.eval()


def assert_matches_summary(y: torch.Tensor, ref: dict, atol: float = 1e-5) -> None:
    got = fx.output_summary(y)
    assert got["shape"] == ref["shape"]
    assert got["indices"] == ref["indices"]
    torch.testing.assert_close(torch.tensor(got["values"]), torch.tensor(ref["values"]), rtol=1e-5, atol=atol)
    assert got["sum"] == pytest.approx(ref["sum"], rel=1e-5, abs=1e-3)
    assert got["abs_sum"] == pytest.approx(ref["abs_sum"], rel=1e-5)


def test_fixture_covers_every_new_module():
    names = {c["name"] for c in FACTS["cases"]}
    assert names == {"Conv2", "ConvTranspose", "DWConvTranspose2d", "Focus", "GhostConv", "RepConv",
                     "ChannelAttention", "SpatialAttention", "CBAM", "C1", "C2", "C3x", "C3TR", "TransformerLayer",
                     "TransformerBlock", "C3Ghost", "GhostBottleneck", "BottleneckCSP", "SPP"}
    assert names <= set(M.__all__)


@pytest.mark.parametrize("case", FACTS["cases"], ids=CASE_IDS)
def test_state_dict_layout_and_params(case):
    m = build(case)
    assert [list(e) for e in fx.state_entries(m)] == case["state"]
    assert fx.n_params(m) == case["params"]


@pytest.mark.parametrize("case", FACTS["cases"], ids=CASE_IDS)
def test_forward_matches_published(case):
    m = seeded(case)
    with torch.no_grad():
        y = m(fx.seeded_input(case["input_shape"]))
    assert_matches_summary(y, case["output"])


@pytest.mark.parametrize("case", [c for c in FACTS["cases"] if c["name"] == "RepConv"], ids=str)
def test_repconv_fuses_to_identical_output(case):
    m = seeded(case)
    x = fx.seeded_input(case["input_shape"])
    with torch.no_grad():
        before = m(x)
        m.fuse_convs()
        after = m(x)
    assert not any(isinstance(b, torch.nn.BatchNorm2d) for b in m.modules())
    assert set(m.state_dict()) == {"conv.weight", "conv.bias"}
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_repconv_identity_branch_only_when_shapes_allow():
    assert M.RepConv(32, 32, bn=True).bn is not None
    assert M.RepConv(32, 32, 3, 2, bn=True).bn is None
    assert M.RepConv(16, 32, bn=True).bn is None
    with pytest.raises(ValueError):
        M.RepConv(16, 16, k=1)


def test_conv2_merge_keeps_output():
    case = next(c for c in FACTS["cases"] if c["name"] == "Conv2")
    m = seeded(case)
    x = fx.seeded_input(case["input_shape"])
    with torch.no_grad():
        before = m(x)
        m.merge_branches()
        after = m(x)
    assert not hasattr(m, "cv2")
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_focus_space_to_depth_by_hand():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = M.extra_conv.space_to_depth(x)
    assert y.shape == (1, 4, 2, 2)
    assert y[0, :, 0, 0].tolist() == [0.0, 4.0, 1.0, 5.0]  # (r0,c0), (r1,c0), (r0,c1), (r1,c1)


@pytest.mark.parametrize("probe", [p for p in FACTS["probes"] if "error" not in p], ids=lambda p: p["row"][2])
def test_yaml_rows_build_like_published(probe):
    layers, _ = parse_model(fx.probe_yaml(probe["row"]), ch=3, verbose=False)  # no 256² dry run (C3TR is slow)
    layer = layers[1]
    with torch.no_grad():
        y = layer(layers[0](torch.zeros(1, 3, 32, 32)))
    assert fx.n_params(layer) == probe["params"]
    assert y.shape[1] == probe["out_channels"]
    assert type(layer).__name__ == probe["class"]


def layout_sha(model: torch.nn.Module) -> str:
    return fx.layout_hash(model)


@pytest.mark.parametrize("yaml_name,scale", YAML_SCALES)
def test_yaml_matches_published(yaml_name, scale):
    ref = FACTS["yamls"][yaml_name][scale]
    m = DetectionModel(yaml_name.replace("yolov8", f"yolov8{scale}", 1), verbose=False)
    layers = [[layer.type, layer.f, fx.n_params(layer)] for layer in m.model]
    assert layers == [[t.rsplit(".", 1)[-1].replace("Upsample", "nn.Upsample"), f, n] for t, f, n, _ in ref["layers"]]
    assert fx.n_params(m) == ref["params"]
    assert len(m.state_dict()) == ref["n_keys"]
    assert layout_sha(m) == ref["layout_sha256"]
    assert [float(s) for s in m.stride] == ref["strides"]


@pytest.mark.parametrize("yaml_name", fx.YAMLS)
def test_yaml_forward_matches_published_and_trains(yaml_name):
    ref = FACTS["yamls"][yaml_name]["n"]
    m = DetectionModel(yaml_name.replace("yolov8", "yolov8n", 1), verbose=False)
    m.load_state_dict(fx.seeded_state_dict(fx.state_entries(m)), strict=True)
    m.eval()
    with torch.no_grad():
        y = m(fx.seeded_input(fx.MODEL_INPUT))[0]
    assert_matches_summary(y, ref["forward"], atol=1e-4)

    model = DetectionModel(yaml_name.replace("yolov8", "yolov8n", 1), nc=2, verbose=False).train()
    model.args = {"box": 7.5, "cls": 0.5, "dfl": 1.5}
    batch = {"img": torch.rand(2, 3, 128, 128), "batch_idx": torch.tensor([0.0, 1.0]),
             "cls": torch.tensor([[0.0], [1.0]]), "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.4], [0.3, 0.6, 0.2, 0.2]])}
    loss, items = model.loss(batch)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and loss.sum() > 0
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_fixture_is_small():
    assert (HERE / "modules.json").stat().st_size < 300_000


def test_model_fuse_merges_repconv_and_conv2_branches():
    """DetectionModel.fuse() merges RepConv's and Conv2's parallel branches, with the same output."""
    cfg = {"nc": 3, "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "RepConv", [16, 3, 1]], [-1, 1, "Conv2", [32, 3, 2]],
                                 [-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [64, 3, 2]]],
           "head": [[[2, 3, 4], 1, "Detect", ["nc"]]]}
    torch.manual_seed(0)
    model = DetectionModel(copy.deepcopy(cfg), verbose=False).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)[0]
        model.fuse(verbose=False)
        after = model(x)[0]
    assert model.is_fused()
    assert not any(hasattr(m, "cv2") and type(m).__name__ == "Conv2" for m in model.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
