"""Torch helpers: FLOPs and model summaries, Conv+BN fusion, EMA, device selection and seeding."""

from __future__ import annotations

import math
import os
import random
import re
from copy import deepcopy

import numpy as np
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ultralytics.utils import LOGGER


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of CPU fused attention: the same two batched matmuls as the CUDA kernels (QKᵀ and AV)."""
    b, h, lq, d = query_shape
    _, _, lk, dv = value_shape
    return 2 * b * h * lq * lk * d + 2 * b * h * lq * lk * dv


def _flop_mapping() -> dict:
    """Extra FLOP formulas for ops torch.utils.flop_counter does not know (CPU flash attention)."""
    mapping = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        mapping[op] = _sdpa_cpu_flop
    return mapping


def get_flops(model: nn.Module, imgsz: int | tuple[int, int] = 640, ch: int | None = None) -> float:
    """GFLOPs of one forward pass at imgsz (batch 1), counted by torch.utils.flop_counter.

    Counts every matmul-like op: convolutions and linears as the published counter does, and also
    BRA's routing and attention matmuls (which the published conv/linear-only count misses).
    """
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    p = next(model.parameters())
    ch = ch or getattr(model, "yaml", {}).get("ch", 3)
    x = torch.zeros(1, ch, h, w, device=p.device, dtype=p.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_flop_mapping()) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9


def model_info(model: nn.Module, detailed: bool = False, verbose: bool = True, imgsz: int = 640) -> tuple:
    """Print and return (layers, parameters, gradients, GFLOPs)."""
    n_p = sum(p.numel() for p in model.parameters())
    n_g = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_l = len(list(model.modules()))
    if detailed:
        LOGGER.info(f"{'layer':>5} {'name':>40} {'gradient':>9} {'parameters':>12} {'shape':>20} {'mu':>10} {'sigma':>10}")
        for i, (name, p) in enumerate(model.named_parameters()):
            LOGGER.info(f"{i:5g} {name:>40} {str(p.requires_grad):>9} {p.numel():12g} {str(list(p.shape)):>20} "
                        f"{p.mean():10.3g} {p.std() if p.numel() > 1 else 0:10.3g}")
    try:
        flops = get_flops(model, imgsz)
    except Exception as e:  # a summary must never break model construction
        LOGGER.warning(f"WARNING ⚠️ FLOPs not computed: {e}")
        flops = 0.0
    name = model_display_name(model)
    fused = " (fused)" if getattr(model, "is_fused", lambda: False)() else ""
    if verbose:
        LOGGER.info(f"{name} summary{fused}: {n_l:,} layers, {n_p:,} parameters, {n_g:,} gradients, "
                    f"{flops:,.1f} GFLOPs")
    return n_l, n_p, n_g, flops


def model_display_name(model: nn.Module) -> str:
    """'YOLOv8n', 'YOLOv8n_BiFormer' ... from the model's yaml file name and scale."""
    d = getattr(model, "yaml", None) or {}
    stem = os.path.splitext(os.path.basename(str(d.get("yaml_file", "model"))))[0]
    scale = d.get("scale", "")
    m = re.match(r"yolov(\d+)([nslmx]?)(.*)", stem)
    if not m:
        return stem
    return f"YOLOv{m.group(1)}{m.group(2) or scale}{m.group(3)}"


@torch.no_grad()
def fuse_conv_and_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A Conv2d (with bias) computing bn(conv(x)) for a BatchNorm in eval mode."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True)
    fused = fused.requires_grad_(False).to(conv.weight.device)
    scale = bn.weight.div(torch.sqrt(bn.running_var + bn.eps))
    fused.weight.copy_((conv.weight * scale.view(-1, 1, 1, 1)).to(fused.weight.dtype))
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_(((conv_bias - bn.running_mean) * scale + bn.bias).to(fused.bias.dtype))
    return fused


def de_parallel(model: nn.Module) -> nn.Module:
    """The underlying model of a DataParallel/DistributedDataParallel wrapper."""
    return model.module if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else model


class ModelEMA:
    """Exponential moving average of a model's weights: decay · (1 − exp(−updates / tau))."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000, updates: int = 0):
        self.ema = deepcopy(de_parallel(model)).eval()
        self.updates = updates
        self.decay_fn = lambda x: decay * (1 - math.exp(-x / tau))
        self.enabled = True
        for p in self.ema.parameters():
            p.requires_grad_(False)

    def update(self, model: nn.Module) -> None:
        if not self.enabled:
            return
        self.updates += 1
        d = self.decay_fn(self.updates)
        msd = de_parallel(model).state_dict()
        with torch.no_grad():
            for k, v in self.ema.state_dict().items():
                if v.dtype.is_floating_point:
                    v.mul_(d).add_(msd[k].detach(), alpha=1 - d)

    def update_attr(self, model: nn.Module, include: tuple = (), exclude: tuple = ("process_group", "reducer")) -> None:
        for k, v in model.__dict__.items():
            if (not include or k in include) and not k.startswith("_") and k not in exclude:
                setattr(self.ema, k, v)


def _device_spec(device: str | int | list | tuple | None) -> str:
    """Normalised device text: '', 'cpu', 'mps' or comma-separated CUDA indices ('0,1')."""
    spec = str(device if device is not None else "").strip().lower().replace("cuda:", "").replace(" ", "")
    spec = spec.strip("[]()'\"")
    return "" if spec == "none" else spec


def cuda_device_ids(device: str | int | list | tuple | None) -> list[int]:
    """The CUDA indices a device setting names ('0,1', [0, 1], 0, 'cuda:0' → [0, 1] / [0]); [] for '', cpu, mps."""
    spec = _device_spec(device)
    if spec in ("", "cpu", "mps"):
        return []
    ids = spec.split(",")
    if not all(i.isdigit() for i in ids):
        raise ValueError(f"invalid device {device!r}; use 'cpu', 'mps', a CUDA index like 0, or a list like 0,1")
    return [int(i) for i in ids]


def select_device(device: str | int | torch.device | None = "", batch: int = 0, verbose: bool = True,
                  local_rank: int = -1) -> torch.device:
    """'cpu', 'mps', '0', '0,1' or '' (first CUDA GPU if any, else CPU) → torch.device; clear errors otherwise.

    Inside a torchrun worker (local_rank >= 0) each process takes its own entry of the list ('0,1,2,3' →
    cuda:{ids[local_rank]}); '' takes cuda:{local_rank} when CUDA is available, else the CPU (gloo).
    """
    if isinstance(device, torch.device):
        return device
    spec = _device_spec(device)
    if spec == "" and local_rank >= 0:
        if not torch.cuda.is_available():
            return torch.device("cpu")
        spec = str(local_rank)
    if spec == "":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError("device=mps requested but Apple MPS is not available on this machine; use device=cpu")
        return torch.device("mps")
    ids = cuda_device_ids(spec)
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = [i for i in ids if i >= n]
    if missing:
        have = f"{n} CUDA device(s) (0..{n - 1})" if n else "no CUDA devices"
        raise ValueError(f"device={device!r} requested but this machine has {have}; use device=cpu"
                         + (f" or device={','.join(str(i) for i in range(n))}" if n else ""))
    if len(ids) > 1 and batch and batch % len(ids):
        raise ValueError(f"batch={batch} must be a multiple of the number of GPUs ({len(ids)}): batch is the "
                         f"total over all GPUs, e.g. batch={max(batch // len(ids), 1) * len(ids)}")
    if local_rank >= 0:
        if local_rank >= len(ids):
            raise ValueError(f"device={device!r} names {len(ids)} GPU(s) but this is torchrun local rank "
                             f"{local_rank}; list one GPU per process (--nproc_per_node {len(ids)})")
        return torch.device(f"cuda:{ids[local_rank]}")
    return torch.device(f"cuda:{ids[0]}")


def init_seeds(seed: int = 0, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; optionally ask torch for deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
        os.environ["PYTHONHASHSEED"] = str(seed)
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
