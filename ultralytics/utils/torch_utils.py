"""Torch helpers: FLOP counts and model summaries, Conv+BN folding, the weight EMA, device choice and seeding."""

from __future__ import annotations

import itertools
import math
import os
import random
import re
import time
from collections.abc import Iterable, Iterator
from copy import deepcopy

import numpy as np
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ultralytics.errors import ConfigError
from ultralytics.utils import LOGGER

EMA_DECAY = 0.9999  # SPEC §4: decay(updates) = 0.9999 · (1 − e^(−updates/2000))
EMA_TAU = 2000.0


# ----------------------------------------------------------------------------------------------- FLOPs, summaries
def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """CPU fused attention counted like the CUDA kernels: the two batched matmuls Q·Kᵀ and A·V."""
    batch, heads, n_query, qk_dim = query_shape
    n_key, v_dim = value_shape[2], value_shape[3]
    return 2 * batch * heads * n_query * n_key * (qk_dim + v_dim)


def _extra_flop_formulas() -> dict:
    """FLOP formulas for ops torch.utils.flop_counter has none for (CPU flash attention, where torch has it)."""
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {op: _cpu_attention_flops} if op is not None else {}


def get_flops(model: nn.Module, imgsz: int | tuple[int, int] = 640, ch: int | None = None) -> float:
    """GFLOPs of one eval-mode forward pass of a batch of one (h, w) = imgsz image.

    Every matmul-like op counts (convolutions, linears and BRA's routing/attention matmuls), as 2 FLOPs
    per multiply-accumulate.
    """
    height, width = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    channels = ch or getattr(model, "yaml", {}).get("ch", 3)
    ref = next(model.parameters())
    image = torch.zeros(1, channels, height, width, device=ref.device, dtype=ref.dtype)
    mode = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_extra_flop_formulas()) as counter:
            model(image)
    finally:
        model.train(mode)
    return counter.get_total_flops() / 1e9


def module_cost(module: nn.Module, x: torch.Tensor | list[torch.Tensor], runs: int = 10) -> tuple[float, float]:
    """(median milliseconds, GFLOPs) of one forward of `module` on `x`; used by `DetectionModel.predict(profile=True)`.

    The module runs on a copy of a tensor input so in-place activations cannot alter the caller's tensor."""
    def call():
        return module(x.clone() if isinstance(x, torch.Tensor) else x)

    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_extra_flop_formulas()) as counter:
        call()
    times = []
    with torch.no_grad():
        for _ in range(runs):
            start = time.perf_counter()
            call()
            times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times)), counter.get_total_flops() / 1e9


def scale_img(img: torch.Tensor, ratio: float = 1.0, same_shape: bool = False, gs: int = 32) -> torch.Tensor:
    """Resize a (B, C, H, W) batch by `ratio` (bilinear); unless `same_shape`, pad right/bottom with 0.447 grey up to
    multiples of `gs` so the result still fits the model's stride. ratio 1 returns `img` itself."""
    if ratio == 1.0:
        return img
    h, w = img.shape[2:]
    size = (int(h * ratio), int(w * ratio))
    out = nn.functional.interpolate(img, size=size, mode="bilinear", align_corners=False)
    if same_shape:
        return out
    target_h, target_w = (math.ceil(v * ratio / gs) * gs for v in (h, w))
    return nn.functional.pad(out, [0, target_w - size[1], 0, target_h - size[0]], value=0.447)


def _log_parameter_table(model: nn.Module) -> None:
    """One log line per parameter tensor: index, name, trainable, size, shape, mean, std."""
    LOGGER.info(f"{'#':>5} {'tensor':<44} {'trainable':>9} {'size':>12} {'shape':>20} {'mean':>10} {'std':>10}")
    for index, (name, tensor) in enumerate(model.named_parameters()):
        std = tensor.std() if tensor.numel() > 1 else 0.0
        LOGGER.info(f"{index:>5} {name:<44} {str(tensor.requires_grad):>9} {tensor.numel():>12,} "
                    f"{str(tuple(tensor.shape)):>20} {tensor.mean():>10.3g} {std:>10.3g}")


def model_info(model: nn.Module, detailed: bool = False, verbose: bool = True, imgsz: int = 640) -> tuple:
    """(modules, parameters, trainable parameters, GFLOPs at imgsz); logs a one-line summary when verbose."""
    tensors = list(model.parameters())
    n_params = sum(t.numel() for t in tensors)
    n_trainable = sum(t.numel() for t in tensors if t.requires_grad)
    n_modules = sum(1 for _ in model.modules())
    if detailed:
        _log_parameter_table(model)
    try:
        gflops = get_flops(model, imgsz)
    except Exception as e:  # a summary must never break model construction
        LOGGER.warning(f"WARNING ⚠️ FLOPs not computed: {e}")
        gflops = 0.0
    if verbose:
        fused = " (fused)" if getattr(model, "is_fused", lambda: False)() else ""
        LOGGER.info(f"{model_display_name(model)} summary{fused}: {n_modules:,} layers, {n_params:,} parameters, "
                    f"{n_trainable:,} gradients, {gflops:,.1f} GFLOPs")
    return n_modules, n_params, n_trainable, gflops


def model_display_name(model: nn.Module) -> str:
    """'YOLOv8n', 'YOLOv8s_BiFormer' ... from the model's yaml file name (and its scale when the name has none)."""
    cfg = getattr(model, "yaml", None) or {}
    stem = os.path.splitext(os.path.basename(str(cfg.get("yaml_file", "model"))))[0]
    parts = re.match(r"yolov(\d+)([nslmx]?)(.*)", stem)
    if parts is None:
        return stem
    version, scale, rest = parts.groups()
    return f"YOLOv{version}{scale or cfg.get('scale', '')}{rest}"


# ----------------------------------------------------------------------------------------------- layers and wrappers
@torch.no_grad()
def fuse_conv_and_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A biased Conv2d (no gradients) computing bn(conv(x)) for `bn` in eval mode.

    With g = γ / √(σ² + ε): weight = w·g per output channel, bias = (b − μ)·g + β.
    """
    gain = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                       padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                       padding_mode=conv.padding_mode)
    folded.requires_grad_(False).to(conv.weight.device)
    folded.weight.copy_(conv.weight * gain[:, None, None, None])
    folded.bias.copy_((conv_bias - bn.running_mean) * gain + bn.bias)
    return folded


def de_parallel(model: nn.Module) -> nn.Module:
    """The wrapped model of a DataParallel / DistributedDataParallel, else the model itself."""
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    return model.module if isinstance(model, wrappers) else model


# ----------------------------------------------------------------------------------------------- EMA
def ema_decay(updates: int, decay: float = EMA_DECAY, tau: float = EMA_TAU) -> float:
    """Weight the average keeps at its `updates`-th update: decay · (1 − exp(−updates / tau)), rising from 0."""
    return decay * (1 - math.exp(-updates / tau))


def _tracked_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The named tensors an EMA follows: parameters, then buffers."""
    return itertools.chain(model.named_parameters(), model.named_buffers())


class ModelEMA:
    """Exponential moving average of a training model's floating-point parameters and buffers.

    `ema` is the averaged copy (eval mode, no gradients) that is validated and saved; `updates` counts the
    averaging steps and goes into checkpoints so that a resumed run continues the same decay ramp.
    Integer buffers (BatchNorm's num_batches_tracked) are not averaged: they keep the value they had when the
    copy was made, which eval-mode BatchNorm never reads.
    """

    def __init__(self, model: nn.Module, decay: float = EMA_DECAY, tau: float = EMA_TAU, updates: int = 0):
        self.ema = deepcopy(de_parallel(model)).eval().requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = updates

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One averaging step towards `model`'s current state: avg ← avg·d + current·(1 − d)."""
        averages = list(_tracked_tensors(self.ema))
        currents = list(_tracked_tensors(de_parallel(model)))
        if [name for name, _ in averages] != [name for name, _ in currents]:
            raise ValueError("the model no longer has the structure of its EMA copy (different tensor names)")
        self.updates += 1
        keep = ema_decay(self.updates, self.decay, self.tau)
        for (_, average), (_, current) in zip(averages, currents):
            if average.dtype.is_floating_point:
                average.mul_(keep).add_(current, alpha=1 - keep)

    def copy_attributes(self, model: nn.Module, names: Iterable[str]) -> None:
        """Give the averaged model those of `names` that are plain attributes of `model` (yaml, names, stride ...)."""
        source = vars(de_parallel(model))
        for name in names:
            if name in source:
                setattr(self.ema, name, source[name])


# ----------------------------------------------------------------------------------------------- devices
def _device_spec(device: str | int | list | tuple | None) -> str:
    """Normalised device text: '', 'cpu', 'mps' or comma-separated CUDA indices ('0,1'); 'cuda' means GPU 0."""
    text = str(device if device is not None else "").strip().lower()
    text = text.replace("cuda:", "").replace(" ", "").strip("[]()'\"")
    return {"none": "", "cuda": "0"}.get(text, text)


def cuda_device_ids(device: str | int | list | tuple | None) -> list[int]:
    """The CUDA indices a device setting names ('0,1', [0, 1], 0, 'cuda:0' → [0, 1] / [0]); [] for '', cpu, mps."""
    spec = _device_spec(device)
    if spec in ("", "cpu", "mps"):
        return []
    indices = spec.split(",")
    if not all(i.isdigit() for i in indices):
        raise ConfigError(f"invalid device {device!r}; use 'cpu', 'mps', a CUDA index like 0, or a list like 0,1")
    return [int(i) for i in indices]


def _check_cuda_ids(device: object, ids: list[int], batch: int) -> None:
    """Refuse CUDA indices this machine lacks, and a total batch that does not split evenly over the GPUs."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if any(i >= count for i in ids):
        have = f"{count} CUDA device(s) (0..{count - 1})" if count else "no CUDA devices"
        hint = f" or device={','.join(map(str, range(count)))}" if count else ""
        raise ConfigError(f"device={device!r} requested but this machine has {have}; use device=cpu{hint}")
    if len(ids) > 1 and batch and batch % len(ids):
        even = max(batch // len(ids), 1) * len(ids)
        raise ConfigError(f"batch={batch} must be a multiple of the number of GPUs ({len(ids)}): batch is the "
                          f"total over all GPUs, e.g. batch={even}")


def select_device(device: str | int | torch.device | None = "", batch: int = 0, verbose: bool = True,
                  local_rank: int = -1) -> torch.device:
    """'cpu', 'mps', '0', '0,1' or '' (first CUDA GPU if any, else CPU) → torch.device; clear errors otherwise.

    Inside a torchrun worker (local_rank >= 0) each process takes its own entry of the list ('0,1,2,3' →
    cuda:{ids[local_rank]}); '' takes cuda:{local_rank} when CUDA is available, else the CPU (gloo).
    """
    if isinstance(device, torch.device):
        return device
    spec = _device_spec(device)
    if spec == "cpu" or (spec == "" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if spec == "":
        index = max(local_rank, 0)
        _check_cuda_ids(device, [index], batch)
        return torch.device(f"cuda:{index}")
    if spec == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError("device=mps requested but Apple MPS is not available on this machine; use device=cpu")
        return torch.device("mps")
    ids = cuda_device_ids(spec)
    _check_cuda_ids(device, ids, batch)
    if local_rank < 0:
        return torch.device(f"cuda:{ids[0]}")
    if local_rank >= len(ids):
        raise ConfigError(f"device={device!r} names {len(ids)} GPU(s) but this is torchrun local rank "
                          f"{local_rank}; list one GPU per process (--nproc_per_node {len(ids)})")
    return torch.device(f"cuda:{ids[local_rank]}")


# ----------------------------------------------------------------------------------------------- seeding
def _set_deterministic(enabled: bool, seed: int) -> None:
    """Switch torch's deterministic algorithms (warnings, not errors, for ops without one) and cuDNN's."""
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # cuBLAS needs a fixed workspace to be reproducible
        os.environ["PYTHONHASHSEED"] = str(seed)  # reaches only Python processes started after this one
    else:
        torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = enabled


def init_seeds(seed: int = 0, deterministic: bool = False) -> None:
    """Seed Python's, NumPy's and torch's generators and switch deterministic algorithms on or off."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
    _set_deterministic(deterministic, seed)
