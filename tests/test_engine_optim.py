"""Optimizer and schedule rules of SPEC §4: parameter groups, auto, warm-up, lf, accumulation, freeze."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from ultralytics.engine import optim
from ultralytics.engine.trainer import DetectionTrainer
from ultralytics.nn.tasks import DetectionModel


@pytest.fixture(scope="module")
def yolov8n() -> DetectionModel:
    return DetectionModel("yolov8n.yaml", nc=80, verbose=False)


def test_param_groups_three_ways(yolov8n):
    decay, norm, bias = optim.param_groups(yolov8n)
    bns = [m for m in yolov8n.modules() if isinstance(m, nn.BatchNorm2d)]
    convs = [m for m in yolov8n.modules() if isinstance(m, nn.Conv2d) and m.weight.requires_grad]
    assert len(norm) == len(bns)  # every BatchNorm weight, without decay
    assert {id(p) for p in norm} == {id(m.weight) for m in bns}
    assert len(decay) == len(convs)  # every trainable conv weight, with decay (the DFL conv is frozen)
    n_bias = len(bns) + sum(1 for m in convs if m.bias is not None)
    assert len(bias) == n_bias
    total = sum(1 for p in yolov8n.parameters() if p.requires_grad)
    assert len(decay) + len(norm) + len(bias) == total


def test_build_optimizer_group_order_and_decay(yolov8n):
    opt, name = optim.build_optimizer(yolov8n, "SGD", lr=0.01, momentum=0.937, decay=0.0005, verbose=False)
    decay, norm, bias = optim.param_groups(yolov8n)
    g = opt.param_groups
    assert name == "SGD" and len(g) == 3
    assert [len(x["params"]) for x in g] == [len(bias), len(decay), len(norm)]  # pg0 bias, pg1 decay, pg2 norm
    assert [x["weight_decay"] for x in g] == [0.0, 0.0005, 0.0]
    assert g[0]["momentum"] == 0.937 and g[0]["nesterov"]


@pytest.mark.parametrize("name", ["SGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSProp"])
def test_every_optimizer_builds_and_steps(name):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    opt, used = optim.build_optimizer(model, name, lr=0.01, momentum=0.9, decay=1e-4, verbose=False)
    model(torch.rand(2, 3, 8, 8)).sum().backward()
    opt.step()
    assert used == name and len(opt.param_groups) == 3


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="not supported"):
        optim.build_optimizer(nn.Linear(2, 2), "Lion")


def test_auto_rule():
    assert optim.auto_optimizer(10_001, 80) == ("SGD", 0.01, 0.9)
    assert optim.auto_optimizer(10_000, 80) == ("AdamW", 0.000119, 0.9)  # round(0.002·5/84, 6)
    assert optim.auto_optimizer(50, 5) == ("AdamW", round(0.002 * 5 / 9, 6), 0.9)
    assert optim.optimizer_iterations(128, 16, 64, 100) == 200  # ceil(128 / 64) · 100
    opt, name = optim.build_optimizer(nn.Linear(2, 2), "auto", iterations=100, nc=5, verbose=False)
    assert name == "AdamW" and opt.param_groups[0]["lr"] == 0.001111 and opt.param_groups[0]["betas"][0] == 0.9


def test_warmup_iterations():
    assert optim.warmup_iterations(3.0, 10) == 100  # at least 100
    assert optim.warmup_iterations(3.0, 100) == 300
    assert optim.warmup_iterations(0.5, 501) == 250  # round(250.5) (banker's rounding as in Python)
    assert optim.warmup_iterations(0.0, 1000) == -1  # no warm-up


@pytest.mark.parametrize("cos", [False, True])
def test_lr_lambda_ends(cos):
    lf = optim.lr_lambda(100, 0.01, cos)
    assert lf(0) == pytest.approx(1.0)
    assert lf(100) == pytest.approx(0.01)
    assert lf(50) == pytest.approx(0.505)  # the midpoint is the same for both shapes
    mid_quarter = lf(25)
    expect = (1 - 25 / 100) * 0.99 + 0.01 if not cos else ((1 - math.cos(math.pi / 4)) / 2) * (0.01 - 1) + 1
    assert mid_quarter == pytest.approx(expect)


def test_accumulate_and_decay():
    assert optim.accumulate_steps(16, 64) == 4
    assert optim.accumulate_steps(64, 64) == 1
    assert optim.accumulate_steps(128, 64) == 1
    assert optim.accumulate_steps(24, 64) == 3
    assert optim.scaled_weight_decay(0.0005, 16, 4, 64) == pytest.approx(0.0005)
    assert optim.scaled_weight_decay(0.0005, 24, 3, 64) == pytest.approx(0.0005 * 72 / 64)
    assert optim.warmup_accumulate(0, 100, 64, 16) == 1
    assert optim.warmup_accumulate(100, 100, 64, 16) == 4


def test_apply_warmup_interpolates():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    opt, _ = optim.build_optimizer(model, "SGD", lr=0.01, momentum=0.937, decay=1e-4, verbose=False)
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    optim.apply_warmup(opt, 0, 100, 1.0, warmup_bias_lr=0.1, warmup_momentum=0.8, momentum=0.937)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.0, 0.0]
    assert all(g["momentum"] == 0.8 for g in opt.param_groups)
    optim.apply_warmup(opt, 50, 100, 0.5, warmup_bias_lr=0.1, warmup_momentum=0.8, momentum=0.937)
    assert opt.param_groups[0]["lr"] == pytest.approx((0.1 + 0.005) / 2)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.0025)
    optim.apply_warmup(opt, 100, 100, 0.5, warmup_bias_lr=0.1, warmup_momentum=0.8, momentum=0.937)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.005] * 3)
    assert all(g["momentum"] == pytest.approx(0.937) for g in opt.param_groups)


@pytest.mark.parametrize("freeze, frozen_layers", [(None, set()), (3, {0, 1, 2}), ([0, 22], {0, 22})])
def test_freeze_by_prefix(freeze, frozen_layers):
    model = DetectionModel("yolov8n.yaml", nc=80, verbose=False)
    fake = SimpleNamespace(args=SimpleNamespace(freeze=freeze), main=False)
    DetectionTrainer.freeze_layers(fake, model)
    for name, p in model.named_parameters():
        layer = int(name.split(".")[1])
        expect_frozen = layer in frozen_layers or ".dfl" in name
        assert p.requires_grad != expect_frozen, name
    assert not model.model[-1].dfl.conv.weight.requires_grad  # DFL stays frozen always


class Mixed(nn.Module):
    """Every kind of parameter the grouping sees: conv/linear weights and biases, BN/LayerNorm/GroupNorm affine
    parameters, a bare parameter named like a bias, a plain parameter and a frozen one."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.ln = nn.LayerNorm(4)
        self.gn = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4, 2, bias=False)
        self.scale = nn.Parameter(torch.ones(2))
        self.attn_bias = nn.Parameter(torch.zeros(2))
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def test_param_groups_membership_and_order():
    m = Mixed()
    decay, norm, bias = optim.param_groups(m)
    assert [id(p) for p in decay] == [id(m.scale), id(m.conv.weight), id(m.fc.weight)]
    assert [id(p) for p in norm] == [id(m.bn.weight), id(m.ln.weight), id(m.gn.weight)]
    assert [id(p) for p in bias] == [id(m.attn_bias), id(m.conv.bias), id(m.bn.bias), id(m.ln.bias), id(m.gn.bias)]


@pytest.mark.parametrize("name", ["SGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSProp"])
def test_param_group_layout(name):
    m = Mixed()
    opt, used = optim.build_optimizer(m, name, lr=0.02, momentum=0.8, decay=3e-4, verbose=False)
    decay, norm, bias = optim.param_groups(m)
    cls = {"RMSProp": torch.optim.RMSprop}.get(name, getattr(torch.optim, name, None))
    assert type(opt) is cls and used == name
    g = opt.param_groups
    assert [[id(p) for p in x["params"]] for x in g] == [[id(p) for p in grp] for grp in (bias, decay, norm)]
    assert [x["lr"] for x in g] == [0.02] * 3 and [x["weight_decay"] for x in g] == [0.0, 3e-4, 0.0]
    if name == "SGD":
        assert all(x["momentum"] == 0.8 and x["nesterov"] for x in g)
    elif name == "RMSProp":
        assert all(x["momentum"] == 0.8 for x in g)
    else:
        assert all(x["betas"] == (0.8, 0.999) and "momentum" not in x for x in g)


def test_auto_build_logs_and_numbers(caplog):
    import logging

    logger = logging.getLogger("ultralytics")
    logger.addHandler(caplog.handler)
    try:
        opt, name = optim.build_optimizer(Mixed(), "auto", lr=0.5, momentum=0.5, decay=1e-3, iterations=20_000, nc=3)
    finally:
        logger.removeHandler(caplog.handler)
    assert name == "SGD" and type(opt) is torch.optim.SGD
    assert [(x["lr"], x["momentum"], x["weight_decay"]) for x in opt.param_groups] == [
        (0.01, 0.9, 0.0), (0.01, 0.9, 1e-3), (0.01, 0.9, 0.0)]
    assert "SGD" in caplog.text and "0.01" in caplog.text
    assert optim.auto_optimizer(0, 1) == ("AdamW", 0.002, 0.9)  # 0.002·5/5
    assert optim.auto_optimizer(10_000, 20) == ("AdamW", round(0.01 / 24, 6), 0.9)


def test_warmup_with_adam_and_midpoints():
    m = Mixed()
    opt, _ = optim.build_optimizer(m, "AdamW", lr=0.004, momentum=0.9, decay=1e-4, verbose=False)
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    optim.apply_warmup(opt, 30, 120, 0.8, warmup_bias_lr=0.1, warmup_momentum=0.8, momentum=0.9)
    target = 0.004 * 0.8
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 + (target - 0.1) * 0.25)
    assert [g["lr"] for g in opt.param_groups[1:]] == pytest.approx([target * 0.25] * 2)
    assert all("momentum" not in g and g["betas"] == (0.9, 0.999) for g in opt.param_groups)  # betas untouched
    opt, _ = optim.build_optimizer(m, "SGD", lr=0.01, momentum=0.937, decay=1e-4, verbose=False)
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    optim.apply_warmup(opt, 75, 100, 1.0, warmup_bias_lr=0.0, warmup_momentum=0.8, momentum=0.937)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.0075] * 3)
    assert all(g["momentum"] == pytest.approx(0.8 + 0.137 * 0.75) for g in opt.param_groups)
    optim.apply_warmup(opt, 150, 100, 1.0, warmup_bias_lr=0.0, warmup_momentum=0.8, momentum=0.937)  # clamped
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01] * 3)


def test_warmup_accumulate_rounding():
    assert optim.warmup_accumulate(50, 100, 64, 16) == 2  # interp 2.5, rounded half to even
    assert optim.warmup_accumulate(51, 100, 64, 16) == 3  # 2.53
    assert optim.warmup_accumulate(100, 100, 64, 128) == 1  # nbs / batch < 1 still accumulates one batch


@pytest.mark.parametrize("cos, x, expect", [(False, 10, 0.901), (False, 30, 0.703), (True, 10, 0.9757729),
                                             (True, 90, 0.0342271), (True, 100, 0.01)])
def test_lr_lambda_values(cos, x, expect):
    # linear: (1 − x/100)·0.99 + 0.01; cosine: 1 − 0.99·(1 − cos(πx/100))/2
    assert optim.lr_lambda(100, 0.01, cos)(x) == pytest.approx(expect, abs=1e-7)
