"""The small YOLO facade methods: reset_weights, save, task_map, transforms and the kept `predictor`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from ultralytics import YOLO
from ultralytics.engine.predictor import DetectionPredictor
from ultralytics.engine.trainer import DetectionTrainer
from ultralytics.engine.validator import DetectionValidator
from ultralytics.errors import ConfigError
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import ASSETS

CFG = "yolov8n.yaml"


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        y = model(x)
    return y[0] if isinstance(y, (list, tuple)) else y


def _perturb(model: torch.nn.Module, seed: int = 7) -> None:
    """Move every parameter and BatchNorm statistic away from its initial value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith("running_var"):
                t.mul_(0.5 + torch.rand(t.shape, generator=g))
            elif t.is_floating_point():
                t.add_(0.1 * torch.randn(t.shape, generator=g))


def _conv_weight_stds(model: torch.nn.Module) -> dict[str, float]:
    return {k: float(v.std()) for k, v in model.state_dict().items() if k.endswith("conv.weight") and v.numel() > 1000}


def test_reset_weights_equals_a_fresh_build():
    yolo = YOLO(CFG)
    yolo.model.names = {**yolo.model.names, 0: "zebra-x"}
    _perturb(yolo.model)
    for p in list(yolo.model.parameters())[:5]:
        p.requires_grad_(False)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    before = _outputs(yolo.model, x)

    torch.manual_seed(123)
    assert yolo.reset_weights() is yolo
    torch.manual_seed(123)
    fresh = DetectionModel(CFG, verbose=False)

    after = _outputs(yolo.model, x)
    assert not torch.allclose(before, after)
    assert torch.equal(after, _outputs(fresh, x))
    own, ref = yolo.model.state_dict(), fresh.state_dict()
    assert own.keys() == ref.keys()
    assert all(torch.equal(own[k], ref[k]) for k in ref)
    assert all(p.requires_grad for p in yolo.model.parameters())
    assert yolo.names[0] == "zebra-x"

    # Another seed: different values, the same initial distribution (per-layer spread within 10 %).
    torch.manual_seed(999)
    other = DetectionModel(CFG, verbose=False)
    stds, other_stds = _conv_weight_stds(yolo.model), _conv_weight_stds(other)
    assert stds and not torch.equal(own["model.0.conv.weight"], other.state_dict()["model.0.conv.weight"])
    for k, s in stds.items():
        assert s == pytest.approx(other_stds[k], rel=0.1), k
    bn_w = [v for k, v in own.items() if k.endswith("bn.weight")]
    assert all(torch.equal(v, torch.ones_like(v)) for v in bn_w)


def test_save_round_trip_gives_identical_outputs(tmp_path):
    yolo = YOLO(CFG)
    _perturb(yolo.model)
    yolo.model.names = {**yolo.model.names, 3: "unicycle"}
    yolo.overrides["imgsz"] = 320
    f = tmp_path / "sub" / "mine.pt"
    assert yolo.save(f) is None
    assert f.is_file() and not list(f.parent.glob(".*.tmp"))

    loaded = YOLO(f)
    x = torch.rand(2, 3, 96, 64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(_outputs(loaded.model, x), _outputs(yolo.model, x))
    assert loaded.names == yolo.names and loaded.names[3] == "unicycle"
    assert loaded.overrides["imgsz"] == 320
    assert loaded.ckpt["format"] and loaded.ckpt["train_args"]["imgsz"] == 320


def test_save_default_name_and_refusals(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yolo = YOLO(CFG)
    yolo.save()
    assert (tmp_path / "saved_model.pt").is_file()
    yolo.fuse()
    with pytest.raises(ConfigError, match="fused"):
        yolo.save(tmp_path / "fused.pt")
    exported = YOLO(CFG).export(format="torchscript", imgsz=64)
    with pytest.raises(ConfigError, match="exported model"):
        YOLO(exported).save(tmp_path / "x.pt")
    assert not (tmp_path / "fused.pt").exists() and not (tmp_path / "x.pt").exists()


def test_task_map_and_transforms():
    yolo = YOLO(CFG)
    tm = yolo.task_map
    assert list(tm) == ["detect"]
    assert tm["detect"] == {"model": DetectionModel, "trainer": DetectionTrainer, "validator": DetectionValidator,
                            "predictor": DetectionPredictor}
    assert isinstance(yolo.model, tm["detect"]["model"])
    assert yolo.transforms is None
    marker = object()
    yolo.model.transforms = marker
    assert yolo.transforms is marker


def test_predictor_is_kept_and_writes_one_run_folder(tmp_path):
    images = sorted(Path(ASSETS).glob("*.jpg"))[:2]
    srcs = [Path(shutil.copy(im, tmp_path / im.name)) for im in images]
    project = tmp_path / "runs"
    yolo = YOLO(CFG)
    assert yolo.predictor is None
    kw = {"save": True, "project": str(project), "name": "predict", "imgsz": 128, "verbose": False}

    r1 = yolo.predict(srcs[0], **kw)
    first = yolo.predictor
    assert isinstance(first, DetectionPredictor)
    r2 = yolo.predict(srcs[1], **kw)
    assert yolo.predictor is first
    assert first.save_dir == project / "predict"
    assert r1[0].save_dir == r2[0].save_dir == str(project / "predict")
    assert sorted(p.name for p in project.iterdir()) == ["predict"]
    assert sorted(p.name for p in (project / "predict").iterdir()) == sorted(s.name for s in srcs)

    # The entry point of the `yolo` command reuses it too; another config builds a new predictor (and run folder).
    yolo.run_predict(yolo.config("predict", kw), srcs[0])
    assert yolo.predictor is first
    yolo.predict(srcs[0], **{**kw, "conf": 0.5})
    assert yolo.predictor is not first and yolo.predictor.args.conf == 0.5
    assert yolo.predictor.save_dir == project / "predict2"
