"""Torch helpers: EMA of a model's state, Conv+BN fusion, FLOPs/summary, device selection, seeding."""

from __future__ import annotations

import logging
import math
import os
import random

import numpy as np
import pytest
import torch
import torch.nn as nn

from ultralytics.errors import ConfigError
from ultralytics.utils import torch_utils as tu


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.SiLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 5))


def reference_decay(updates: int) -> float:
    return 0.9999 * (1 - math.exp(-updates / 2000))


def train_steps(model: nn.Module, n: int, seed: int = 1):
    """n fake optimizer steps (random weight moves + a train-mode forward that moves the BN statistics)."""
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(n):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g), alpha=0.1)
            model(torch.randn(2, 3, 6, 6, generator=g))
        yield model


# ---------------------------------------------------------------- EMA
@pytest.mark.parametrize("start", [0, 500])
def test_ema_matches_hand_loop(start):
    model = small_model()
    ema = tu.ModelEMA(model, updates=start)
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    initial_count = ref["1.num_batches_tracked"].clone()
    for t, m in enumerate(train_steps(model, 7), start=start + 1):
        ema.update(m)
        d = reference_decay(t)
        for k, v in m.state_dict().items():
            if v.dtype.is_floating_point:
                ref[k] = ref[k] * d + v * (1 - d)
    assert ema.updates == start + 7 and isinstance(ema.updates, int)
    got = ema.ema.state_dict()
    assert got.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-6, atol=1e-7, msg=k)
    # integer buffers are not averaged: the copy keeps the count it had when the EMA was made
    assert int(got["1.num_batches_tracked"]) == int(initial_count) == 0
    assert int(model.state_dict()["1.num_batches_tracked"]) == 7
    # the EMA actually lags behind the model
    assert not torch.allclose(got["0.weight"], model.state_dict()["0.weight"])


def test_ema_model_is_a_frozen_eval_copy():
    model = small_model()
    ema = tu.ModelEMA(model)
    assert ema.ema is not model and not ema.ema.training
    assert all(not p.requires_grad for p in ema.ema.parameters())
    assert all(p.requires_grad for p in model.parameters())
    w = ema.ema[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    torch.testing.assert_close(ema.ema[0].weight, w)  # independent tensors
    ema.update(model)  # update of a frozen copy leaves no autograd history
    assert ema.ema[0].weight.grad_fn is None


def test_ema_first_update_weight():
    # decay(1) = 0.9999·(1 − e^(−1/2000)) ≈ 5e-4: the first update is nearly a copy of the model
    model = small_model()
    ema = tu.ModelEMA(model)
    old = ema.ema[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    d = reference_decay(1)
    assert d == pytest.approx(4.99825e-4, rel=1e-4)
    torch.testing.assert_close(ema.ema[0].weight, old * d + model[0].weight * (1 - d))


def test_ema_unwraps_data_parallel():
    model = small_model()
    wrapped = nn.DataParallel(model, device_ids=[]) if not torch.cuda.is_available() else nn.DataParallel(model)
    ema = tu.ModelEMA(wrapped)
    assert isinstance(ema.ema, nn.Sequential)
    for m in train_steps(model, 2):
        ema.update(wrapped)
    assert ema.updates == 2


def test_ema_copies_named_attributes():
    model = small_model()
    ema = tu.ModelEMA(model)
    model.names = {0: "a"}
    model.stride = torch.tensor([8.0])
    model.nc = 1
    model.other = "kept out"
    ema.copy_attributes(model, ("yaml", "nc", "args", "names", "stride"))
    assert ema.ema.names == {0: "a"} and ema.ema.nc == 1 and torch.equal(ema.ema.stride, model.stride)
    assert not hasattr(ema.ema, "other") and not hasattr(ema.ema, "yaml")  # missing names are skipped
    model.nc = 2
    ema.copy_attributes(nn.DataParallel(model, device_ids=[] if not torch.cuda.is_available() else None), ["nc"])
    assert ema.ema.nc == 2  # a wrapper's model is the source


def test_ema_decay_ramp():
    assert tu.ema_decay(0) == 0.0
    assert tu.ema_decay(1) == pytest.approx(reference_decay(1), rel=1e-15)
    assert tu.ema_decay(2000) == pytest.approx(0.9999 * (1 - 1 / math.e))
    assert tu.ema_decay(10**6) == pytest.approx(0.9999)
    assert tu.ema_decay(10, decay=0.5, tau=10) == pytest.approx(0.5 * (1 - math.exp(-1)))
    ema = tu.ModelEMA(small_model(), decay=0.5, tau=10)
    model = small_model(seed=1)
    ema.update(model)
    d = 0.5 * (1 - math.exp(-0.1))
    torch.testing.assert_close(ema.ema[4].bias, small_model()[4].bias * d + model[4].bias * (1 - d))


def test_ema_refuses_a_different_model():
    ema = tu.ModelEMA(small_model())
    with pytest.raises(ValueError, match="structure"):
        ema.update(nn.Sequential(nn.Linear(1, 1)))
    assert ema.updates == 0 and torch.equal(ema.ema[0].weight, small_model()[0].weight)  # nothing was touched


# ---------------------------------------------------------------- Conv+BN fusion
@pytest.mark.parametrize("kwargs", [dict(bias=False), dict(bias=True), dict(bias=False, groups=2, stride=2),
                                    dict(bias=True, dilation=2, padding=2)])
def test_fuse_conv_and_bn_equals_conv_then_bn(kwargs):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, **kwargs)
    bn = nn.BatchNorm2d(6, eps=1e-3)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    bn.eval()
    fused = tu.fuse_conv_and_bn(conv, bn)
    x = torch.randn(2, 4, 11, 9)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), bn(conv(x)), rtol=1e-5, atol=1e-5)
    assert fused.bias is not None and not fused.weight.requires_grad and not fused.bias.requires_grad
    assert (fused.stride, fused.padding, fused.dilation, fused.groups) == (conv.stride, conv.padding, conv.dilation,
                                                                           conv.groups)
    # hand fold: w' = w·γ/√(σ²+ε), b' = (b − μ)·γ/√(σ²+ε) + β
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b = conv.bias if conv.bias is not None else torch.zeros(6)
    torch.testing.assert_close(fused.weight, (conv.weight * s[:, None, None, None]).detach())
    torch.testing.assert_close(fused.bias, ((b - bn.running_mean) * s + bn.bias).detach())


def test_de_parallel():
    model = small_model()
    assert tu.de_parallel(model) is model
    assert tu.de_parallel(nn.DataParallel(model, device_ids=[] if not torch.cuda.is_available() else None)) is model


# ---------------------------------------------------------------- FLOPs and summary
def test_get_flops_hand_count():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1, stride=2, bias=False))
    model.train()
    conv1 = 2 * 8 * 3 * 9 * 32 * 32  # 2·MACs per output element
    conv2 = 2 * 2 * 8 * 16 * 16
    assert tu.get_flops(model, 32) * 1e9 == pytest.approx(conv1 + conv2)
    assert tu.get_flops(model, (32, 64)) * 1e9 == pytest.approx(2 * (conv1 + conv2))
    assert model.training  # the mode is restored


def test_model_info_counts(caplog):
    model = small_model()
    model[0].bias.requires_grad_(False)
    logger = logging.getLogger("ultralytics")
    logger.addHandler(caplog.handler)
    try:
        layers, params, grads, flops = tu.model_info(model, detailed=True, imgsz=6)
    finally:
        logger.removeHandler(caplog.handler)
    n = sum(p.numel() for p in model.parameters())
    assert (layers, params, grads) == (6, n, n - 4)
    linear = 2 * 144 * 5
    conv = 2 * 4 * 27 * 36
    assert flops * 1e9 == pytest.approx(conv + linear)
    assert f"summary: 6 layers, {n:,} parameters, {n - 4:,} gradients" in caplog.text
    assert "0.weight" in caplog.text and "4.bias" in caplog.text  # the detailed table lists every tensor


@pytest.mark.parametrize("yaml, name", [({"yaml_file": "yolov8n.yaml"}, "YOLOv8n"),
                                        ({"yaml_file": "cfg/yolov8.yaml", "scale": "s"}, "YOLOv8s"),
                                        ({"yaml_file": "yolov8n_BiFormer.yaml"}, "YOLOv8n_BiFormer"),
                                        ({"yaml_file": "yolov8_BiFormer.yaml", "scale": "m"}, "YOLOv8m_BiFormer"),
                                        ({"yaml_file": "custom.yaml"}, "custom"), (None, "model")])
def test_model_display_name(yaml, name):
    m = nn.Linear(1, 1)
    m.yaml = yaml
    assert tu.model_display_name(m) == name


# ---------------------------------------------------------------- devices
def test_cuda_device_ids():
    assert tu.cuda_device_ids("0,1") == [0, 1] == tu.cuda_device_ids([0, 1]) == tu.cuda_device_ids("[0, 1]")
    assert tu.cuda_device_ids(0) == [0] == tu.cuda_device_ids("cuda:0") == tu.cuda_device_ids(" CUDA:0 ")
    assert tu.cuda_device_ids("") == tu.cuda_device_ids("cpu") == tu.cuda_device_ids("mps") == []
    assert tu.cuda_device_ids(None) == tu.cuda_device_ids("None") == []
    with pytest.raises(ConfigError, match="invalid device"):
        tu.cuda_device_ids("gpu")


def test_select_device_cpu_strings():
    assert tu.select_device("cpu") == torch.device("cpu") == tu.select_device("CPU")
    assert tu.select_device(torch.device("cpu")) == torch.device("cpu")
    expect = torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    assert tu.select_device("") == expect == tu.select_device(None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda:0", "0", 0, "0,1", [0, 1]])
def test_select_device_refuses_missing_cuda(device):
    with pytest.raises(ConfigError, match="no CUDA devices"):
        tu.select_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_select_device_torchrun_rank_on_cpu():
    assert tu.select_device("", local_rank=1) == torch.device("cpu")
    assert tu.select_device("cpu", local_rank=1) == torch.device("cpu")


def test_select_device_mps_unavailable():
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        pytest.skip("MPS present")
    with pytest.raises(ConfigError, match="MPS"):
        tu.select_device("mps")


# ---------------------------------------------------------------- seeding
def draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_init_seeds_repeats_draws(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    cudnn = torch.backends.cudnn.deterministic
    try:
        tu.init_seeds(3)
        a = draws()
        assert not torch.are_deterministic_algorithms_enabled() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        tu.init_seeds(3, deterministic=True)
        assert draws() == a
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and os.environ["PYTHONHASHSEED"] == "3"
        tu.init_seeds(4)
        assert draws() != a
        assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = cudnn


@pytest.fixture
def two_fake_gpus(monkeypatch):
    """CUDA availability faked as two devices (select_device only reads the count and names the device)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_select_device_cuda_rules(two_fake_gpus):
    assert tu.select_device("") == torch.device("cuda:0") == tu.select_device("cuda:0") == tu.select_device(0)
    assert tu.select_device("1") == torch.device("cuda:1")
    assert tu.select_device("0,1", batch=16) == torch.device("cuda:0")
    assert tu.select_device("0,1", local_rank=1) == torch.device("cuda:1")
    assert tu.select_device("1,0", local_rank=0) == torch.device("cuda:1")  # ranks take the listed order
    assert tu.select_device("", local_rank=1) == torch.device("cuda:1")  # plain torchrun: one GPU per rank
    assert tu.select_device("cpu", local_rank=1) == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"has 2 CUDA device\(s\) \(0..1\); use device=cpu or device=0,1"):
        tu.select_device("2")
    with pytest.raises(ConfigError, match="2 CUDA device"):
        tu.select_device("", local_rank=2)
    with pytest.raises(ConfigError, match="multiple of the number of GPUs.*batch=14"):
        tu.select_device("0,1", batch=15)
    with pytest.raises(ConfigError, match="torchrun local rank 1"):
        tu.select_device("0", local_rank=1)
