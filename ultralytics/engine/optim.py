"""Optimizer, parameter groups and learning-rate schedules of training (SPEC §4).

The optimizer holds three parameter groups in a fixed order (results.csv reports their lrs as lr/pg0..2,
checkpoints store optimizer state by this layout, and warm-up treats group 0 apart):
    0  biases                                       no weight decay
    1  weights of every other layer                 weight decay
    2  weights of normalisation layers (BN, LN ...) no weight decay
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, NamedTuple

import torch
import torch.nn as nn

from ultralytics.cfg import CHOICES
from ultralytics.errors import ConfigError
from ultralytics.utils import LOGGER

OPTIMIZERS = CHOICES["optimizer"]  # the names the config accepts
ADAM_LIKE = ("Adam", "Adamax", "AdamW", "NAdam", "RAdam")  # momentum becomes betas[0]
AUTO_SGD_ITERATIONS = 10_000  # 'auto' picks SGD past this many optimizer iterations


# ----------------------------------------------------------------------------------------------- batch arithmetic
def accumulate_steps(batch: int, nbs: int = 64) -> int:
    """Batches whose gradients are summed before one optimizer step: max(round(nbs / batch), 1)."""
    return max(round(nbs / batch), 1)


def scaled_weight_decay(weight_decay: float, batch: int, accumulate: int, nbs: int = 64) -> float:
    """Weight decay scaled to the images per optimizer step: wd · batch · accumulate / nbs."""
    return weight_decay * batch * accumulate / nbs


def optimizer_iterations(n_images: int, batch: int, nbs: int, epochs: int) -> int:
    """Optimizer steps of a run as the auto rule counts them: ceil(images / max(batch, nbs)) · epochs."""
    return math.ceil(n_images / max(batch, nbs)) * epochs


# ----------------------------------------------------------------------------------------------- optimizer
class ParamGroups(NamedTuple):
    """Trainable parameters split three ways (see the module docstring)."""

    decay: list[nn.Parameter]
    norm: list[nn.Parameter]
    bias: list[nn.Parameter]


def param_groups(model: nn.Module) -> ParamGroups:
    """(decay weights, normalisation weights, biases) among the parameters that require grad.

    A parameter is a bias when its own name ends in 'bias'; a normalisation weight when its module's class
    name contains 'Norm'. Order within a group is the module traversal order.
    """
    groups = ParamGroups([], [], [])
    for module in model.modules():
        in_norm_layer = "Norm" in type(module).__name__
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if name.endswith("bias"):
                groups.bias.append(param)
            else:
                (groups.norm if in_norm_layer else groups.decay).append(param)
    return groups


def auto_optimizer(iterations: int, nc: int) -> tuple[str, float, float]:
    """SPEC §4 'auto' as (name, lr, momentum): SGD, 0.01, 0.9 past 10,000 iterations, else AdamW with
    lr = round(0.002 · 5 / (4 + nc), 6) and momentum 0.9."""
    if iterations > AUTO_SGD_ITERATIONS:
        return "SGD", 0.01, 0.9
    return "AdamW", round(0.002 * 5 / (4 + nc), 6), 0.9


def _optimizer_class(name: str, momentum: float) -> tuple[type[torch.optim.Optimizer], dict]:
    """The torch class for a config name and the keyword arguments that carry `momentum` to it."""
    if name in ADAM_LIKE:
        return getattr(torch.optim, name), {"betas": (momentum, 0.999)}
    if name == "RMSProp":
        return torch.optim.RMSprop, {"momentum": momentum}
    return torch.optim.SGD, {"momentum": momentum, "nesterov": True}


def build_optimizer(model: nn.Module, name: str = "auto", lr: float = 0.001, momentum: float = 0.9,
                    decay: float = 1e-5, iterations: int = 100_000, nc: int = 80,
                    verbose: bool = True) -> tuple[torch.optim.Optimizer, str]:
    """The optimizer over [biases, decay weights, norm weights] with weight decay (0, `decay`, 0);
    returns (optimizer, name used).

    'auto' chooses name, lr and momentum by `iterations` and `nc` (auto_optimizer); the caller sets
    warmup_bias_lr to 0 then.
    """
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer={name!r} is not supported; choose one of {', '.join(OPTIMIZERS)}")
    if name == "auto":
        name, lr, momentum = auto_optimizer(iterations, nc)
        if verbose:
            LOGGER.info(f"optimizer: auto picked {name} with lr={lr}, momentum={momentum} "
                        f"({iterations} optimizer steps, {nc} classes)")
    split = param_groups(model)
    cls, momentum_kwargs = _optimizer_class(name, momentum)
    groups = [{"params": split.bias, "weight_decay": 0.0},
              {"params": split.decay, "weight_decay": decay},
              {"params": split.norm, "weight_decay": 0.0}]
    optimizer = cls(groups, lr=lr, weight_decay=0.0, **momentum_kwargs)
    if verbose:
        LOGGER.info(f"optimizer: {name} lr={lr} momentum={momentum}; {len(split.bias)} biases and "
                    f"{len(split.norm)} norm weights without weight decay, {len(split.decay)} weights with "
                    f"weight decay {decay:.6g}")
    return optimizer, name


# ----------------------------------------------------------------------------------------------- schedules
def linear_lr_factor(epoch: float, epochs: int, lrf: float) -> float:
    """Straight line from 1 at epoch 0 to lrf at `epochs`."""
    return lrf + (1.0 - lrf) * (1 - epoch / epochs)


def cosine_lr_factor(epoch: float, epochs: int, lrf: float) -> float:
    """Half cosine from 1 at epoch 0 to lrf at `epochs`."""
    return 1 + (lrf - 1) * ((1 - math.cos(epoch * math.pi / epochs)) / 2)


def lr_lambda(epochs: int, lrf: float, cos_lr: bool = False) -> Callable[[float], float]:
    """The learning-rate factor of an epoch: 1 at epoch 0 falling to lrf at `epochs`, linear or cosine."""
    return partial(cosine_lr_factor if cos_lr else linear_lr_factor, epochs=epochs, lrf=lrf)


def warmup_iterations(warmup_epochs: float, batches_per_epoch: int) -> int:
    """Warm-up length: max(round(warmup_epochs · batches per epoch), 100); -1 (none) when warmup_epochs is 0."""
    if warmup_epochs > 0:
        return max(round(warmup_epochs * batches_per_epoch), 100)
    return -1


def ramp(step: float, steps: float, start: float, end: float) -> float:
    """Linear interpolation from `start` at step 0 to `end` at `steps`, held at the ends outside [0, steps]."""
    if step <= 0:
        return float(start)
    if step >= steps:
        return float(end)
    return (end - start) / steps * step + start


def apply_warmup(optimizer: torch.optim.Optimizer, ni: int, nw: int, lf_epoch: float, warmup_bias_lr: float,
                 warmup_momentum: float, momentum: float) -> None:
    """Set each group's lr and momentum for warm-up iteration `ni` of `nw`.

    lr ramps to the group's initial_lr · lf(epoch), from warmup_bias_lr for the bias group 0 and from 0 for the
    others; momentum (where the optimizer has one) ramps from warmup_momentum to `momentum`.
    """
    for index, group in enumerate(optimizer.param_groups):
        first_lr = warmup_bias_lr if index == 0 else 0.0
        group["lr"] = ramp(ni, nw, first_lr, group["initial_lr"] * lf_epoch)
        if "momentum" in group:
            group["momentum"] = ramp(ni, nw, warmup_momentum, momentum)


def warmup_accumulate(ni: int, nw: int, nbs: int, batch: int) -> int:
    """Accumulation during warm-up: grows from 1 to nbs / batch, rounded half to even, at least 1."""
    return max(1, round(ramp(ni, nw, 1, nbs / batch)))


# ----------------------------------------------------------------------------------------------- freezing
def freeze_layers(model: nn.Module, freeze: int | list[int] | None, verbose: bool = True) -> list[str]:
    """Freeze the first `freeze` layers (or the listed layer indices) by the name prefix model.{i}., and the DFL
    always; unfreeze every other floating-point parameter. Returns the frozen parameter names."""
    layers = list(range(freeze)) if isinstance(freeze, int) else list(freeze or [])
    prefixes = tuple(f"model.{i}." for i in layers)
    frozen = []
    for name, param in model.named_parameters():
        if name.startswith(prefixes) or ".dfl" in name:
            param.requires_grad_(False)
            frozen.append(name)
        elif param.dtype.is_floating_point:
            param.requires_grad_(True)
    if layers and verbose:
        LOGGER.info(f"Frozen: layers {layers} and the DFL ({len(frozen)} tensors)")
    return frozen
