"""batch=-1: the largest training batch that fits a fraction of the GPU memory (the published AutoBatch).

On CUDA the model is run forward and backward in training mode at a few batch sizes; the peak memory of each is
fitted with a line (memory = slope · batch + intercept) and solved for `fraction` of the device's total memory.
Without CUDA (CPU, MPS) there is nothing to measure and DEFAULT_BATCH is used, with a warning.
"""

from __future__ import annotations

from copy import deepcopy

import numpy as np
import torch
import torch.nn as nn

from ultralytics.utils import LOGGER

DEFAULT_BATCH = 16  # the batch of a CPU run, and of a CUDA run whose profile cannot be fitted (as published)
FRACTION = 0.60  # share of the GPU's total memory the chosen batch should use (as published)
PROFILE_SIZES = (1, 2, 4, 8, 16)
MAX_BATCH = 1024


def check_train_batch_size(model: nn.Module, imgsz: int = 640, amp: bool = True, batch: int | float = -1,
                           max_num_obj: int = 1) -> int:
    """The training batch for `batch=-1` (FRACTION of the GPU memory), or for a float 0 < batch < 1 (that fraction)."""
    fraction = float(batch) if 0 < float(batch) < 1 else FRACTION
    with torch.autocast("cuda", enabled=bool(amp) and torch.cuda.is_available()):
        return autobatch(deepcopy(model).train(), imgsz, fraction=fraction, max_num_obj=max_num_obj)


def autobatch(model: nn.Module, imgsz: int = 640, fraction: float = FRACTION, batch_size: int = DEFAULT_BATCH,
              max_num_obj: int = 1) -> int:
    """Profile `model` at PROFILE_SIZES on its CUDA device and return the batch that uses `fraction` of the memory;
    `batch_size` when not on CUDA or when the profile gives no usable fit."""
    prefix = "AutoBatch: "
    device = next(model.parameters()).device
    if device.type != "cuda":
        LOGGER.warning(f"{prefix}WARNING ⚠️ batch=-1 needs a CUDA device to measure memory; using the default "
                       f"batch={batch_size} on {device.type.upper()}")
        return batch_size
    if torch.backends.cudnn.benchmark:
        LOGGER.warning(f"{prefix}WARNING ⚠️ cudnn.benchmark=True distorts the memory profile; using batch={batch_size}")
        return batch_size
    total = torch.cuda.get_device_properties(device).total_memory
    LOGGER.info(f"{prefix}computing the batch for imgsz={imgsz} at {fraction * 100:.0f}% of "
                f"{total / 2**30:.1f} GiB on {torch.cuda.get_device_name(device)}")
    used = profile_memory(model, imgsz, PROFILE_SIZES, device)
    batch = fit_batch(PROFILE_SIZES, used, total * fraction, batch_size)
    LOGGER.info(f"{prefix}using batch={batch} (profiled {dict(zip(PROFILE_SIZES, used))} bytes)")
    return batch


def fit_batch(sizes: tuple[int, ...], used: list[float | None], budget: float, default: int = DEFAULT_BATCH) -> int:
    """Solve the line through (size, bytes used) for `budget` bytes. Sizes that ran out of memory (None) cap the
    result below the first of them; a fit outside 1..MAX_BATCH (or fewer than two points) gives `default`."""
    ok = [(s, u) for s, u in zip(sizes, used) if u is not None]
    failed = [s for s, u in zip(sizes, used) if u is None]
    if len(ok) < 2:
        LOGGER.warning(f"AutoBatch: WARNING ⚠️ too few batch sizes profiled; using batch={default}")
        return default
    slope, intercept = np.polyfit([s for s, _ in ok], [u for _, u in ok], 1)
    batch = int((budget - intercept) / slope) if slope > 0 else 0
    if failed:
        batch = min(batch, max(s for s, _ in ok if s < failed[0]))
    if not 1 <= batch <= MAX_BATCH:
        LOGGER.warning(f"AutoBatch: WARNING ⚠️ the profile gives batch={batch}, outside 1..{MAX_BATCH}; "
                       f"using batch={default}")
        return default
    return batch


def profile_memory(model: nn.Module, imgsz: int, sizes: tuple[int, ...], device: torch.device) -> list[float | None]:
    """Peak CUDA memory (bytes) of one forward + backward at each batch size; None where it ran out of memory
    (larger sizes are then not tried)."""
    used: list[float | None] = []
    for b in sizes:
        if used and used[-1] is None:
            used.append(None)
            continue
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        try:
            x = torch.rand(b, 3, imgsz, imgsz, device=device)
            y = model(x)
            sum(t.float().sum() for t in (y if isinstance(y, (list, tuple)) else [y])).backward()
            used.append(float(torch.cuda.max_memory_reserved(device)))
        except torch.OutOfMemoryError:
            used.append(None)
        finally:
            model.zero_grad(set_to_none=True)
            x = y = None
    torch.cuda.empty_cache()
    return used


__all__ = ["autobatch", "check_train_batch_size", "fit_batch", "profile_memory"]
