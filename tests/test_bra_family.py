"""The BiFormer block family: BiFormerBlock and C2f_BiFormer (shapes, values against the article-style BRA,
gradients, state_dict), their registry channel rules, and the two packaged yamls (build at n and s, one training
epoch, ONNX export agreeing with onnxruntime)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bra_reference import reference_bra  # noqa: E402
from ultralytics import YOLO  # noqa: E402
from ultralytics.engine.exporter import export_model  # noqa: E402
from ultralytics.errors import ModelConfigError  # noqa: E402
from ultralytics.nn.modules import BiFormerBlock, BiLevelRoutingAttention, C2f, C2f_BiFormer  # noqa: E402
from ultralytics.nn.modules.biformer import heads_for  # noqa: E402
from ultralytics.nn.modules.block import fold_bra_output_projections  # noqa: E402
from ultralytics.nn.tasks import MODULES, DetectionModel  # noqa: E402

YAMLS = ("yolov8-C2f-BiFormer.yaml", "yolov8_BiFormer-backbone.yaml")


def scaled(yaml: str, scale: str) -> str:
    return yaml.replace("yolov8", f"yolov8{scale}", 1)


def randomized(m: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.2)
    return m


def block_by_hand(b: BiFormerBlock, x: torch.Tensor) -> torch.Tensor:
    """The BiFormer block written out, with the article-style reference BRA."""
    x = x + F.conv2d(x, b.pos_embed.weight, b.pos_embed.bias, padding=1, groups=x.shape[1])
    t = x.permute(0, 2, 3, 1)
    ln1 = F.layer_norm(t, t.shape[-1:], b.norm1.weight, b.norm1.bias, 1e-6)
    t = t + reference_bra(b.attn, ln1.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    ln2 = F.layer_norm(t, t.shape[-1:], b.norm2.weight, b.norm2.bias, 1e-6)
    hidden = F.gelu(F.linear(ln2, b.mlp[0].weight, b.mlp[0].bias))
    return (t + F.linear(hidden, b.mlp[3].weight, b.mlp[3].bias)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("shape", [(2, 64, 14, 14), (1, 64, 9, 11)])
def test_biformer_block_matches_hand_written(shape):
    b = randomized(BiFormerBlock(64, n_win=7, topk=4))
    x = torch.randn(shape, requires_grad=True)
    y = b(x)
    assert y.shape == shape
    torch.testing.assert_close(y, block_by_hand(b, x), atol=1e-4, rtol=1e-4)
    y.square().sum().backward()
    for name, p in b.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad.shape == shape


def test_biformer_block_layout_heads_and_mlp():
    b = BiFormerBlock(96, n_win=4, topk=2)
    assert b.attn.num_heads == 3 and b.attn.n_win == 4 and b.attn.topk == 2  # 32 channels per head
    assert isinstance(b.attn.lepe, torch.nn.Conv2d) and b.attn.lepe.kernel_size == (5, 5)
    assert b.mlp[0].out_features == 3 * 96 and isinstance(b.mlp[2], torch.nn.GELU)
    keys = list(b.state_dict())
    assert keys[:4] == ["pos_embed.weight", "pos_embed.bias", "norm1.weight", "norm1.bias"]
    assert keys[-6:] == ["norm2.weight", "norm2.bias", "mlp.0.weight", "mlp.0.bias", "mlp.3.weight", "mlp.3.bias"]
    assert [k[len("attn."):] for k in keys if k.startswith("attn.")] == list(b.attn.state_dict())
    assert [heads_for(c) for c in (16, 32, 64, 96, 160, 48)] == [1, 1, 2, 3, 5, 1]


@pytest.mark.parametrize("bad", [dict(n_win=True), dict(topk=2.5), dict(n_win=0), dict(mlp_ratio=-1)])
def test_biformer_block_rejects_misplaced_arguments(bad):
    with pytest.raises(ModelConfigError, match="BiFormer"):
        BiFormerBlock(64, **bad)


def test_c2f_biformer_is_c2f_with_biformer_bottlenecks():
    m = randomized(C2f_BiFormer(32, 64, n=2, n_win=3, topk=2))
    plain = C2f(32, 64, n=2)
    assert len(m.m) == 2 and all(isinstance(b, BiFormerBlock) and b.attn.dim == 32 for b in m.m)
    assert [k for k in m.state_dict() if k.startswith("cv")] == [k for k in plain.state_dict() if k.startswith("cv")]
    x = torch.randn(2, 32, 12, 10, requires_grad=True)
    y = m(x)
    assert y.shape == (2, 64, 12, 10)
    parts = list(m.cv1(x).chunk(2, 1))
    for b in m.m:
        parts.append(block_by_hand(b, parts[-1]))
    torch.testing.assert_close(y, m.cv2(torch.cat(parts, 1)), atol=1e-4, rtol=1e-4)
    y.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_registry_channel_rules():
    from ultralytics.nn.tasks import csp_like, same_channels_first

    assert MODULES["BiFormerBlock"].cls is BiFormerBlock and MODULES["BiFormerBlock"].rule is same_channels_first
    assert MODULES["C2f_BiFormer"].cls is C2f_BiFormer and MODULES["C2f_BiFormer"].rule is csp_like
    m = DetectionModel("yolov8n-C2f-BiFormer.yaml", verbose=False)
    c2f6, c2f8 = m.model[6], m.model[8]
    assert isinstance(c2f6, C2f_BiFormer) and len(c2f6.m) == 2 and c2f6.cv2.conv.out_channels == 128  # 512·0.25
    assert isinstance(c2f8, C2f_BiFormer) and len(c2f8.m) == 1 and c2f8.m[0].attn.dim == 128  # 1024·0.25 / 2
    assert c2f6.m[0].attn.n_win == 5 and c2f6.m[0].attn.topk == 4
    b = DetectionModel("yolov8s_BiFormer-backbone.yaml", verbose=False).model[10]
    assert isinstance(b, BiFormerBlock) and b.attn.dim == 512 and b.attn.num_heads == 16 and b.attn.n_win == 5


# Parameter counts at nc=80, as docs/models.md lists them.
PARAMS = {("yolov8-C2f-BiFormer.yaml", "n"): 2_971_856, ("yolov8-C2f-BiFormer.yaml", "s"): 10_402_656,
          ("yolov8_BiFormer-backbone.yaml", "n"): 3_824_848, ("yolov8_BiFormer-backbone.yaml", "s"): 13_812_576}


@pytest.mark.parametrize("scale", ["n", "s"])
@pytest.mark.parametrize("yaml", YAMLS)
def test_yaml_builds_and_runs(yaml, scale):
    m = DetectionModel(scaled(yaml, scale), verbose=False)
    assert sum(p.numel() for p in m.parameters()) == PARAMS[(yaml, scale)]
    assert m.stride.tolist() == [8.0, 16.0, 32.0]
    assert any(isinstance(x, BiLevelRoutingAttention) for x in m.modules())
    m.train()
    out = m(torch.randn(1, 3, 64, 96))
    assert [o.shape[-2:] for o in out] == [(8, 12), (4, 6), (2, 3)]
    sum(o.square().mean() for o in out).backward()


@pytest.mark.slow
@pytest.mark.parametrize("scale", ["n", "s"])
@pytest.mark.parametrize("yaml", YAMLS)
def test_yaml_trains_one_epoch_and_exports_to_onnx(yaml, scale, assets, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = YOLO(scaled(yaml, scale))
    model.train(data=str(assets / "data.yaml"), project=str(tmp_path), name="run", epochs=1, imgsz=64, batch=8,
                workers=0, plots=False, verbose=False, mosaic=0.0)
    best = tmp_path / "run" / "weights" / "best.pt"
    assert best.is_file() and (tmp_path / "run" / "results.csv").is_file()
    trained = YOLO(str(best))
    net = trained.model.float().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = export_model(net, best, format="onnx", imgsz=64)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = net(x)[0].numpy()
    s = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    got = s.run(None, {s.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == expected.shape == (1, 84, 84)  # 8·8 + 4·4 + 2·2 anchors
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))


def test_fuse_folds_bra_output_projections_exactly():
    torch.manual_seed(0)
    m = DetectionModel("yolov8n_BiFormer.yaml", verbose=False).eval()
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        expected = m(x)[0]
        m.fuse(verbose=False)  # BatchNorm folding, then each BRA's wo into the next 1x1 conv
        got = m(x)[0]
    bras = [b for b in m.modules() if isinstance(b, BiLevelRoutingAttention)]
    assert all(isinstance(b.wo, torch.nn.Identity) for b in bras)
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()
    assert fold_bra_output_projections(m.model) == 0  # nothing left to fold
    # BRA inside blocks, or a BRA whose output also feeds a later layer: nothing to fold
    assert fold_bra_output_projections(DetectionModel("yolov8n-C2f-BiFormer.yaml", verbose=False).model) == 0
    layers = DetectionModel("yolov8n_BiFormer.yaml", verbose=False).model
    layers[17].f = [-1, 15]  # pretend layer 17 reads the P3 BRA too
    assert fold_bra_output_projections(layers) == 2
