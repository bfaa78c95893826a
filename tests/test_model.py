"""DetectionModel built from YAML: published parameter counts, state_dict layout, strides, outputs, fusion."""

from __future__ import annotations

import pickle

import pytest
import torch

from ultralytics.nn.modules import BiLevelRoutingAttention, Detect
from ultralytics.nn.tasks import DetectionModel, guess_model_scale, yaml_model_load
from ultralytics.utils.torch_utils import get_flops

from conftest import LISTINGS, REFERENCE  # noqa: E402

PUBLISHED_PARAMS = {
    "yolov8n.yaml": 3_157_200,
    "yolov8s.yaml": 11_166_560,
    "yolov8m.yaml": 25_902_640,
    "yolov8l.yaml": 43_691_520,
    "yolov8x.yaml": 68_229_648,
    "yolov8_BiFormer.yaml": 4_052_688,
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(PUBLISHED_PARAMS))
def test_parameter_counts_match_published(name):
    assert n_params(DetectionModel(name, verbose=False)) == PUBLISHED_PARAMS[name]


def read_reference(path) -> list[tuple[str, tuple[int, ...], str]]:
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, dtype = line.split("\t")
        rows.append((key, tuple(int(s) for s in shape.strip("()").split(",") if s.strip()), dtype))
    return rows


@pytest.mark.parametrize("name, ref", [("yolov8n.yaml", "yolov8n"), ("yolov8s.yaml", "yolov8s"),
                                       ("yolov8n_BiFormer.yaml", "yolov8_BiFormer-n")])
def test_state_dict_matches_published_layout_line_for_line(name, ref):
    listing = LISTINGS / f"{ref}.state_dict.txt"  # the recorded published layout, kept in the repository
    if (REFERENCE / listing.name).is_file():  # where ../shared has the original, the copy must still equal it
        assert listing.read_bytes() == (REFERENCE / listing.name).read_bytes(), f"{listing} differs from its source"
    expected = read_reference(listing)
    ours = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in
            DetectionModel(name, verbose=False).state_dict().items()]
    assert len(ours) == len(expected)
    for got, want in zip(ours, expected):
        assert got == want


def test_scale_from_file_name_and_default_scale_warning(caplog):
    assert guess_model_scale("yolov8s_BiFormer.yaml") == "s"
    assert guess_model_scale("path/yolov8x.yaml") == "x"
    assert guess_model_scale("yolov8_BiFormer.yaml") == ""
    d = yaml_model_load("yolov8s_BiFormer.yaml")
    assert d["scale"] == "s" and d["scales"]["s"] == [0.33, 0.50, 1024]
    m = DetectionModel("yolov8s_BiFormer.yaml", verbose=False)
    bra = [x for x in m.modules() if isinstance(x, BiLevelRoutingAttention)]
    assert [b.dim for b in bra] == [384, 384, 768]  # Concat channels at P3, P4, P5 for width 0.5


def test_bra_rows_sit_after_the_three_neck_concats():
    m = DetectionModel("yolov8n_BiFormer.yaml", verbose=False)
    layers = list(m.model)
    bra_idx = [i for i, x in enumerate(layers) if isinstance(x, BiLevelRoutingAttention)]
    assert bra_idx == [15, 19, 23]
    assert all(layers[i - 1].type == "Concat" for i in bra_idx)
    assert layers[-1].f == [16, 20, 24] and isinstance(layers[-1], Detect)
    assert [b.dim for b in (layers[i] for i in bra_idx)] == [192, 192, 384]


@pytest.fixture(scope="module")
def yolov8n() -> DetectionModel:
    torch.manual_seed(0)
    return DetectionModel("yolov8n.yaml", verbose=False)


def test_strides_and_eval_output_shape(yolov8n):
    assert yolov8n.stride.tolist() == [8.0, 16.0, 32.0]
    yolov8n.eval()
    with torch.no_grad():
        y, raw = yolov8n(torch.rand(1, 3, 640, 640))
    assert y.shape == (1, 84, 8400)
    assert [tuple(r.shape) for r in raw] == [(1, 144, 80, 80), (1, 144, 40, 40), (1, 144, 20, 20)]
    scores = y[:, 4:]
    assert scores.min() >= 0 and scores.max() <= 1  # sigmoid class scores
    # Boxes are xywh in input pixels: centres inside the image.
    assert y[:, 0].min() > -100 and y[:, 0].max() < 740


def test_training_output_is_three_raw_maps(yolov8n):
    yolov8n.train()
    out = yolov8n(torch.rand(2, 3, 320, 480))  # rectangular input, multiples of 32
    assert isinstance(out, list) and [tuple(o.shape) for o in out] == [(2, 144, 40, 60), (2, 144, 20, 30),
                                                                        (2, 144, 10, 15)]
    yolov8n.eval()


def test_input_not_multiple_of_stride_gives_clear_error(yolov8n):
    with pytest.raises(ValueError, match=r"not a multiple of the model stride 32"):
        yolov8n(torch.rand(1, 3, 321, 480))


def test_detect_bias_init():
    m = DetectionModel("yolov8n.yaml", verbose=False)
    head = m.model[-1]
    for box, cls, s in zip(head.cv2, head.cv3, [8, 16, 32]):
        assert torch.all(box[-1].bias == 2.0)
        expected = torch.log(torch.tensor(5 / 80 / (640 / s) ** 2))
        assert torch.allclose(cls[-1].bias, expected.expand(80))


def test_batchnorm_init():
    m = DetectionModel("yolov8n.yaml", verbose=False)
    bns = [x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    assert bns and all(b.eps == 1e-3 and b.momentum == 0.03 for b in bns)
    assert all(float(b.running_mean.abs().sum()) == 0 for b in bns)  # stride dry run left statistics alone


@pytest.mark.parametrize("name", ["yolov8n.yaml", "yolov8n_BiFormer.yaml"])
def test_fuse_keeps_outputs(name):
    torch.manual_seed(1)
    m = DetectionModel(name, verbose=False)
    # Non-trivial BN statistics so the fold is actually exercised.
    for bn in (x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    m.eval()
    x = torch.rand(2, 3, 256, 320)
    with torch.no_grad():
        before = m(x)[0]
        m.fuse(verbose=False)
        after = m(x)[0]
    assert m.is_fused()
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-5)
    assert (after - before).abs().max() / before.abs().max() < 1e-5


def test_info_reports_layers_params_gradients_and_gflops(yolov8n, caplog):
    import logging

    logger = logging.getLogger("ultralytics")
    logger.addHandler(caplog.handler)
    try:
        layers, params, grads, gflops = yolov8n.info()
    finally:
        logger.removeHandler(caplog.handler)
    assert (layers, params, grads) == (225, 3_157_200, 3_157_184)  # DFL's 16 fixed weights have no gradient
    assert 8.0 < gflops < 9.5  # published (conv/linear incl. BN+act by thop) 8.9
    assert "YOLOv8n summary: 225 layers, 3,157,200 parameters, 3,157,184 gradients" in caplog.text


def test_bra_model_flops_include_attention():
    plain = get_flops(DetectionModel("yolov8n.yaml", verbose=False))
    bra = get_flops(DetectionModel("yolov8n_BiFormer.yaml", verbose=False))
    assert bra > plain + 5.0  # three BRA blocks at P3/P4/P5 add several GFLOPs at 640


def test_model_and_bra_with_side_dwconv0_pickle():
    m = DetectionModel("yolov8n_BiFormer.yaml", verbose=False)
    restored = pickle.loads(pickle.dumps(m))
    assert n_params(restored) == n_params(m)
    bra = BiLevelRoutingAttention(32, side_dwconv=0)
    bra2 = pickle.loads(pickle.dumps(bra))
    x = torch.rand(1, 32, 14, 14)
    torch.testing.assert_close(bra2(x), bra(x))


def test_nc_override_changes_head():
    m = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    assert m.model[-1].nc == 3 and m.model[-1].no == 3 + 64
    assert len(m.names) == 3


def test_gradients_reach_every_trainable_parameter():
    torch.manual_seed(0)
    m = DetectionModel("yolov8n_BiFormer.yaml", verbose=False)
    m.train()
    out = m(torch.rand(1, 3, 128, 128))
    sum(o.float().pow(2).mean() for o in out).backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert missing == []


def test_fuse_outside_no_grad_leaves_plain_weights():
    # Fusing a trainable model (grad mode on) must not give the fused convs autograd history.
    m = DetectionModel("yolov8n.yaml", verbose=False).eval()
    m.fuse(verbose=False)
    convs = [x for x in m.modules() if isinstance(x, torch.nn.Conv2d)]
    assert all(c.weight.grad_fn is None and c.weight.is_leaf for c in convs)
    m.requires_grad_(False)  # fails on non-leaf tensors
