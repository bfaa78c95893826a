"""Checkpoints trained by following the BiFormer article (published package + its pasted BRA classes) load through
the restricted reader: same outputs as the weights loaded directly, options from the pickled attributes, predict,
val, `.load()` transfer; resume and non-allowlisted classes are refused. Files come from tests/article_checkpoint.py."""

from __future__ import annotations

import copy
import inspect
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from article_checkpoint import (PUBLISHED_PATHS, ArticleCheckpoint, article_checkpoint_dict, article_model,
                                registered_standins, save_article_checkpoint, write_article_checkpoint)
from ultralytics import YOLO
from ultralytics.checkpoints import CheckpointError, UnsafeCheckpointError, load_checkpoint
from ultralytics.checkpoints.published import (BRA_ARG_NAMES, PublishedObject, is_published_checkpoint,
                                               load_published_objects, pickle_globals, read_published_checkpoint)
from ultralytics.checkpoints.unpickler import resolve_global
from ultralytics.cli import EXIT_USER_ERROR, entrypoint
from ultralytics.data.synthetic import NAMES, generate_shapes, render_image
from ultralytics.nn.modules import block
from ultralytics.nn.modules.block import BiLevelRoutingAttention
from ultralytics.nn.tasks import DetectionModel, find_model_yaml

NC = len(NAMES)  # 5: the generated shapes dataset
BRA_LAYERS = (15, 19, 23)
PACKAGED_YAML = find_model_yaml("yolov8_BiFormer.yaml")


@pytest.fixture(scope="module")
def best(tmp_path_factory) -> ArticleCheckpoint:
    """A finished run's best.pt as the article's users have it (default BRA options, nc=5, shape class names)."""
    return write_article_checkpoint(tmp_path_factory.mktemp("article") / "best.pt", nc=NC, names=dict(NAMES))


@pytest.fixture(scope="module")
def direct(best) -> DetectionModel:
    """Our model built from our own yaml with the same weights loaded straight from the state_dict."""
    model = DetectionModel("yolov8n_BiFormer.yaml", nc=NC, verbose=False)
    model.load_state_dict(best.weights, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def base_model() -> DetectionModel:
    return article_model(NC)


@pytest.fixture(scope="module")
def shapes_yaml(tmp_path_factory) -> Path:
    root = generate_shapes(tmp_path_factory.mktemp("shapes") / "shapes", n_train=4, n_val=4, imgsz=128)
    names = "\n".join(f"  {i}: {n}" for i, n in NAMES.items())
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return root / "data.yaml"


def _inputs() -> torch.Tensor:
    return torch.rand(2, 3, 128, 160, generator=torch.Generator().manual_seed(3))


def _assert_same_outputs(a: nn.Module, b: nn.Module, tol: float = 1e-5) -> None:
    x = _inputs()
    with torch.no_grad():
        ya, yb = a.eval()(x)[0], b.eval()(x)[0]
    assert ya.shape == yb.shape == (2, 4 + NC, 16 * 20 + 8 * 10 + 4 * 5)
    assert (ya - yb).abs().max().item() <= tol


def _data_pkl_globals(path: Path) -> set[tuple[str, str]]:
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith("/data.pkl"))
        return set(pickle_globals(io.BytesIO(zf.read(name))))


# ------------------------------------------------------------------------------------------------
# The fixture really is an article-layout file
# ------------------------------------------------------------------------------------------------


def test_file_names_the_published_and_article_classes(best) -> None:
    found = _data_pkl_globals(best.path)
    assert {(module, name) for name, module in PUBLISHED_PATHS.items()} <= found
    assert ("torch.nn.modules.activation", "Softmax") in found and ("torch.nn.modules.upsampling", "Upsample") in found
    assert is_published_checkpoint(best.path)  # the stand-ins were registered only while saving:
    assert not hasattr(block, "KVGather") and block.BiLevelRoutingAttention is BiLevelRoutingAttention


def test_records_are_inert_and_carry_the_article_attributes(best) -> None:
    layers = load_published_objects(best.path)["model"].get("_modules")["model"].get("_modules")
    bra = layers["15"]
    assert isinstance(bra, PublishedObject) and not isinstance(bra, nn.Module)
    assert bra.cls.qualname == "ultralytics.nn.modules.block.BiLevelRoutingAttention"
    assert list(bra.get("_modules")) == ["lepe", "router", "kv_gather", "qkv", "wo", "kv_down", "attn_act"]
    assert bra.get("_modules")["kv_gather"].cls.qualname == "ultralytics.nn.modules.block.KVGather"
    assert bra.get("_modules")["kv_gather"].get("mul_weight") == "none"
    assert "kv_downsample_kenel" in bra.state and bra.get("n_win") == 7 and bra.get("topk") == 4


def test_allowlist_adds_exactly_the_article_classes() -> None:
    for name in ("BiLevelRoutingAttention", "TopkRouting", "KVGather", "QKVLinear"):
        assert resolve_global("ultralytics.nn.modules.block", name).qualname == f"ultralytics.nn.modules.block.{name}"
    assert resolve_global("torch.nn.modules.pooling", "AdaptiveMaxPool2d").name == "AdaptiveMaxPool2d"
    for module, name in (("ultralytics.nn.modules.conv", "KVGather"), ("ultralytics.nn.modules", "KVGather"),
                         ("torch.nn.modules.linear", "AdaptiveMaxPool2d"),
                         ("ultralytics.nn.modules.block", "Attention")):
        with pytest.raises(UnsafeCheckpointError, match=f"'{module}.{name}'"):
            resolve_global(module, name)


# ------------------------------------------------------------------------------------------------
# Loading: YOLO(path), .load(path), predict, val
# ------------------------------------------------------------------------------------------------


def test_yolo_loads_it_with_the_direct_outputs(best, direct) -> None:
    yolo = YOLO(str(best.path))
    assert list(yolo.model.state_dict()) == list(direct.state_dict())
    for k, v in yolo.model.state_dict().items():
        assert torch.equal(v, best.weights[k]), k
    _assert_same_outputs(yolo.model, direct)
    assert yolo.names == NAMES and yolo.model.args == {"box": 7.5, "cls": 0.5, "dfl": 1.5}
    assert [type(yolo.model.model[i]) for i in BRA_LAYERS] == [BiLevelRoutingAttention] * 3


def test_dot_load_transfers_every_tensor(best, direct, tmp_path, capfd, caplog) -> None:
    cfg = tmp_path / "yolov8n_BiFormer.yaml"
    cfg.write_text(PACKAGED_YAML.read_text().replace("nc: 80", f"nc: {NC}"))
    yolo = YOLO(str(cfg)).load(str(best.path))
    total = len(direct.state_dict())
    assert total == 373 and f"Transferred {total}/{total} items from weights" in capfd.readouterr().out + caplog.text
    _assert_same_outputs(yolo.model, direct)


def test_predicts_like_the_direct_model(best, direct) -> None:
    img, _ = render_image(np.random.default_rng(5), 128)
    ours = YOLO(str(best.path)).predict(img, imgsz=128, conf=1e-6, max_det=20)
    same = YOLO(str(best.path))
    same.model = copy.deepcopy(direct)  # the predictor may fuse it
    ref = same.predict(img, imgsz=128, conf=1e-6, max_det=20)
    assert len(ours) == 1 and ours[0].names == NAMES
    assert len(ours[0].boxes) > 0
    assert torch.allclose(ours[0].boxes.data, ref[0].boxes.data, atol=1e-4)


def test_validates_in_python_and_on_the_command_line(best, shapes_yaml, capsys) -> None:
    metrics = YOLO(str(best.path)).val(data=str(shapes_yaml), imgsz=128, batch=2, plots=False, workers=0)
    assert metrics.names == NAMES and set(metrics.results_dict) >= {"fitness"}
    assert all(np.isfinite(v) for v in metrics.results_dict.values())
    rc = entrypoint(["val", f"model={best.path}", f"data={shapes_yaml}", "imgsz=128", "batch=2", "plots=False",
                     "workers=0"])
    assert rc == 0, capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# BRA options come from the pickled attributes (the article's yaml gives none)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bra", [
    {"n_win": 4, "topk": 3, "kv_downsample_mode": "ada_avgpool", "kv_per_win": 2},
    {"n_win": 2, "num_heads": 4, "qk_scale": 0.1, "kv_downsample_mode": "maxpool", "kv_downsample_ratio": 2},
    {"param_routing": True, "diff_routing": True, "soft_routing": True, "param_attention": "qkv", "side_dwconv": 5,
     "qk_dim": 64, "kv_downsample_mode": "ada_maxpool", "kv_per_win": 1},
])
def test_options_come_from_the_pickled_attributes(tmp_path, bra) -> None:
    assert BRA_ARG_NAMES == tuple(inspect.signature(BiLevelRoutingAttention).parameters)[1:]  # the yaml row order
    saved = write_article_checkpoint(tmp_path / "opts.pt", nc=NC, bra=bra)
    assert all(row[3] == [] for row in saved.model_yaml["head"] if row[2] == "BiLevelRoutingAttention")
    yolo = YOLO(str(saved.path))
    for i in BRA_LAYERS:
        layer = yolo.model.model[i]
        for name, value in bra.items():
            got = layer.scale if name == "qk_scale" else (
                layer.lepe.kernel_size[0] if name == "side_dwconv" else getattr(layer, name))
            assert got == value, (i, name)
    reference = article_model(NC, bra=bra)
    reference.load_state_dict(saved.weights)
    _assert_same_outputs(yolo.model, reference)
    if not any(k.endswith("router.emb.weight") for k in saved.weights):  # default keys: outputs must differ
        default = DetectionModel("yolov8n_BiFormer.yaml", nc=NC, verbose=False)
        default.load_state_dict(saved.weights)
        with pytest.raises(AssertionError):
            _assert_same_outputs(yolo.model, default)


@pytest.mark.parametrize("overrides,message", [
    ({"topk": 60}, r"router\.topk=4 differs from the layer's topk=60"),
    ({"diff_routing": True}, r"router\.diff_routing=False differs"),
    ({"kv_downsample_mode": "ada_avgpool"}, r"sub-module 'kv_down' is torch\.nn\.modules\.linear\.Identity.*"
                                            r"AdaptiveAvgPool2d"),
    ({"kv_downsample_mode": "fracpool"}, r"kv_downsample_mode='fracpool'"),
    ({"param_attention": "qkv"}, r"sub-module 'wo' is torch\.nn\.modules\.linear\.Linear.*Identity"),
    ({"num_heads": 7}, r"cannot be built by this project.*num_heads \(7\)"),
    ({"n_win": "7"}, r"attribute 'n_win' of the pickled BiLevelRoutingAttention is '7', not int"),
    ({"auto_pad": None}, r"attribute 'auto_pad'.* is None, not bool"),
    ({"qk_dim": 0}, r"qk_dim=0, which this project's BiLevelRoutingAttention cannot build"),
    ({"kv_gather.mul_weight": "soft"}, r"kv_gather\.mul_weight='soft' \(soft_routing=False, diff_routing=False "
                                       r"give 'none'\)"),
    ({"diff_routing": True, "router.diff_routing": True, "kv_gather.mul_weight": "hard"},
     r"cannot be built by this project.*differentiable hard routing"),
    ({"lepe.groups": 1}, r"its 'lepe' is a Conv2d with .*groups=1"),
])
def test_contradicting_attributes_are_refused(tmp_path, base_model, overrides, message) -> None:
    path = save_article_checkpoint(article_checkpoint_dict(base_model, bra_overrides=overrides), tmp_path / "bad.pt")
    for load in (read_published_checkpoint, YOLO):
        with pytest.raises(CheckpointError, match=message) as err:
            load(str(path))
        assert "layer model.15 (BiLevelRoutingAttention)" in str(err.value) and str(path) in str(err.value)
        assert not isinstance(err.value, UnsafeCheckpointError)


# ------------------------------------------------------------------------------------------------
# Resume is refused with the reason and what to do instead
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def last(tmp_path_factory, base_model) -> Path:
    """A last.pt of an unfinished run: epoch 3, weights in 'ema', the published optimizer state."""
    ckpt = article_checkpoint_dict(base_model, epoch=3)
    return save_article_checkpoint(ckpt, tmp_path_factory.mktemp("run") / "last.pt")


def test_last_pt_loads_its_ema_weights(last, direct) -> None:
    ckpt = load_checkpoint(last)
    assert ckpt["optimizer"] is None and ckpt["optimizer_dropped"] is True and ckpt["epoch"] == 3
    _assert_same_outputs(YOLO(str(last)).model, direct)


def test_resume_of_an_unfinished_run_is_refused(last, capsys) -> None:
    with pytest.raises(CheckpointError) as err:
        YOLO(str(last)).train(resume=True)
    msg = str(err.value)
    assert "\n" not in msg and f"cannot resume '{last}'" in msg and "published ultralytics package" in msg
    assert "optimizer state" in msg and "parameter order" in msg and f"model={last} epochs=N" in msg
    assert entrypoint(["train", "resume", f"model={last}"]) == EXIT_USER_ERROR
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert err_lines[-1] == f"ERROR ❌ {msg}"


def test_resume_of_a_finished_run_is_refused(best) -> None:
    with pytest.raises(CheckpointError, match=rf"finished run of the published ultralytics package.*"
                                              rf"model={best.path} epochs=N"):
        YOLO(str(best.path)).train(resume=True)


# ------------------------------------------------------------------------------------------------
# A crafted copy with one class that is not on the allowlist
# ------------------------------------------------------------------------------------------------


class _Payload:
    """Unpickles as os.system(command)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class EvilGather(nn.Module):
    """Pickled as ultralytics.nn.modules.block.EvilGather whose state runs a shell command when unpickled."""

    def __init__(self, command: str):
        super().__init__()
        self.command = command

    def __reduce__(self):
        return type(self), (self.command,), {"payload": _Payload(self.command)}


EvilGather.__module__, EvilGather.__qualname__ = "ultralytics.nn.modules.block", "EvilGather"


def test_non_allowlisted_class_is_refused_and_its_payload_never_runs(tmp_path, base_model) -> None:
    marker = tmp_path / "pwned"
    ckpt = article_checkpoint_dict(base_model)
    ckpt["model"].model[15]._modules["kv_gather"] = EvilGather(f"touch {marker}")
    path = save_article_checkpoint(ckpt, tmp_path / "crafted.pt", extra_classes={"EvilGather": EvilGather})
    assert ("ultralytics.nn.modules.block", "EvilGather") in _data_pkl_globals(path)
    # control: unrestricted unpickling (with the classes importable, as on the attacker's side) runs the payload

    with registered_standins({"EvilGather": EvilGather}):
        torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()

    for load in (read_published_checkpoint, load_checkpoint, YOLO):
        with pytest.raises(UnsafeCheckpointError, match=r"'ultralytics\.nn\.modules\.block\.EvilGather'.*"
                                                        r"not on the allowlist") as err:
            load(str(path))
        assert str(path) in str(err.value) and "only load checkpoints you trust" in str(err.value).lower()
    assert entrypoint(["val", f"model={path}"]) == EXIT_USER_ERROR
    assert not marker.exists(), "the payload ran"
