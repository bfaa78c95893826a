"""Optimizer, parameter groups and learning-rate schedules of training (SPEC §4).

Three parameter groups, in the published order (results.csv's lr/pg0..2):
    pg0  biases                                   no weight decay
    pg1  weights of every other layer             weight decay
    pg2  weights of normalisation layers (BN ...) no weight decay
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from ultralytics.utils import LOGGER

OPTIMIZERS = ("SGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSProp", "auto")
AUTO_SGD_ITERATIONS = 10_000  # auto picks SGD past this many optimizer iterations


def accumulate_steps(batch: int, nbs: int = 64) -> int:
    """Batches whose gradients are summed before one optimizer step: max(round(nbs / batch), 1)."""
    return max(round(nbs / batch), 1)


def scaled_weight_decay(weight_decay: float, batch: int, accumulate: int, nbs: int = 64) -> float:
    """Weight decay scaled to the images per optimizer step: wd · batch · accumulate / nbs."""
    return weight_decay * batch * accumulate / nbs


def warmup_iterations(warmup_epochs: float, batches_per_epoch: int) -> int:
    """Warm-up length: max(round(warmup_epochs · batches per epoch), 100); -1 (none) when warmup_epochs is 0."""
    return max(round(warmup_epochs * batches_per_epoch), 100) if warmup_epochs > 0 else -1


def optimizer_iterations(n_images: int, batch: int, nbs: int, epochs: int) -> int:
    """Optimizer steps of a run as the auto rule counts them: ceil(images / max(batch, nbs)) · epochs."""
    return math.ceil(n_images / max(batch, nbs)) * epochs


def auto_optimizer(iterations: int, nc: int) -> tuple[str, float, float]:
    """SPEC §4 'auto': (name, lr, momentum) — SGD 0.01/0.9 past 10,000 iterations, else AdamW
    with lr = round(0.002 · 5 / (4 + nc), 6) and momentum 0.9."""
    if iterations > AUTO_SGD_ITERATIONS:
        return "SGD", 0.01, 0.9
    return "AdamW", round(0.002 * 5 / (4 + nc), 6), 0.9


def lr_lambda(epochs: int, lrf: float, cos_lr: bool = False) -> Callable[[float], float]:
    """Learning-rate factor lf(epoch): 1 at epoch 0 falling to lrf at `epochs`, linear or cosine."""
    if cos_lr:
        return lambda x: ((1 - math.cos(x * math.pi / epochs)) / 2) * (lrf - 1) + 1
    return lambda x: (1 - x / epochs) * (1.0 - lrf) + lrf


def param_groups(model: nn.Module) -> tuple[list, list, list]:
    """(decay weights, normalisation weights, biases) among the parameters that require grad."""
    decay, norm, bias = [], [], []
    for module in model.modules():
        is_norm = "Norm" in type(module).__name__
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if name == "bias" or name.endswith("bias"):
                bias.append(p)
            elif is_norm:
                norm.append(p)
            else:
                decay.append(p)
    return decay, norm, bias


def build_optimizer(model: nn.Module, name: str = "auto", lr: float = 0.001, momentum: float = 0.9,
                    decay: float = 1e-5, iterations: int = 100_000, nc: int = 80,
                    verbose: bool = True) -> tuple[torch.optim.Optimizer, str]:
    """The optimizer over the three groups [biases, decay weights, norm weights]; returns (optimizer, name used).

    'auto' chooses by `iterations` and `nc` (auto_optimizer); the caller sets warmup_bias_lr to 0 then.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer={name!r} is not supported; choose one of {', '.join(OPTIMIZERS)}")
    if name == "auto":
        name, lr, momentum = auto_optimizer(iterations, nc)
        if verbose:
            LOGGER.info(f"optimizer: 'optimizer=auto' found, choosing {name}(lr={lr}, momentum={momentum}) "
                        f"for {iterations} iterations and nc={nc}")
    g_decay, g_norm, g_bias = param_groups(model)
    if name in ("Adam", "Adamax", "AdamW", "NAdam", "RAdam"):
        cls = getattr(torch.optim, name)
        optimizer = cls(g_bias, lr=lr, betas=(momentum, 0.999), weight_decay=0.0)
    elif name == "RMSProp":
        optimizer = torch.optim.RMSprop(g_bias, lr=lr, momentum=momentum)
    else:  # SGD
        optimizer = torch.optim.SGD(g_bias, lr=lr, momentum=momentum, nesterov=True)
    optimizer.add_param_group({"params": g_decay, "weight_decay": decay})
    optimizer.add_param_group({"params": g_norm, "weight_decay": 0.0})
    if verbose:
        LOGGER.info(f"optimizer: {name}(lr={lr}, momentum={momentum}) with parameter groups "
                    f"{len(g_norm)} weight(decay=0.0), {len(g_decay)} weight(decay={decay:.6g}), "
                    f"{len(g_bias)} bias(decay=0.0)")
    return optimizer, name


def apply_warmup(optimizer: torch.optim.Optimizer, ni: int, nw: int, lf_epoch: float, warmup_bias_lr: float,
                 warmup_momentum: float, momentum: float) -> None:
    """Interpolate each group's lr (bias group 0: warmup_bias_lr → lr; others 0 → lr) and momentum over [0, nw].

    The target lr is the group's initial_lr · lf(epoch).
    """
    xi = [0, nw]
    for j, group in enumerate(optimizer.param_groups):
        start = warmup_bias_lr if j == 0 else 0.0
        group["lr"] = float(np.interp(ni, xi, [start, group["initial_lr"] * lf_epoch]))
        if "momentum" in group:
            group["momentum"] = float(np.interp(ni, xi, [warmup_momentum, momentum]))


def warmup_accumulate(ni: int, nw: int, nbs: int, batch: int) -> int:
    """During warm-up the accumulation grows from 1 to nbs / batch (rounded)."""
    return max(1, int(np.interp(ni, [0, nw], [1, nbs / batch]).round()))
