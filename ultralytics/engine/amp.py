"""A short check that mixed precision (fp16 autocast) gives the same detections as fp32 on this GPU."""

from __future__ import annotations

from copy import deepcopy

import torch
import torch.nn as nn

from ultralytics.utils import LOGGER
from ultralytics.utils.torch_utils import de_parallel

BOX_TOL = 0.01  # largest box difference allowed, as a fraction of the image side
SCORE_TOL = 0.02  # largest class-score difference allowed


def amp_outputs_match(model: nn.Module, device: torch.device, imgsz: int = 256) -> tuple[bool, str]:
    """Run the model in fp32 and under fp16 autocast on one fixed input; (match, reason when not)."""
    m = deepcopy(de_parallel(model)).to(device).float().eval()
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.rand(1, 3, imgsz, imgsz, generator=g).to(device)
    with torch.no_grad():
        ref = m(x)[0].float()
        with torch.autocast(device_type=device.type, dtype=torch.float16):
            half = m(x)[0].float()
    if not torch.isfinite(half).all():
        return False, "fp16 output has NaN/inf values"
    box_err = float((half[:, :4] - ref[:, :4]).abs().max()) / imgsz
    score_err = float((half[:, 4:] - ref[:, 4:]).abs().max()) if half.shape[1] > 4 else 0.0
    if box_err > BOX_TOL or score_err > SCORE_TOL:
        return False, f"fp16 output differs from fp32 (boxes {box_err:.3g} of the image, scores {score_err:.3g})"
    return True, ""


def check_amp(model: nn.Module, device: torch.device, enabled: bool = True) -> bool:
    """Whether to train with AMP: only on CUDA, only when `enabled`, and only when fp16 outputs match fp32."""
    if not enabled or device.type != "cuda":
        return False
    try:
        ok, reason = amp_outputs_match(model, device)
    except Exception as e:  # a broken check must not stop training: fall back to fp32
        ok, reason = False, f"the check failed ({type(e).__name__}: {e})"
    if ok:
        LOGGER.info("AMP: checks passed ✅")
    else:
        LOGGER.warning(f"WARNING ⚠️ AMP: {reason}; training in fp32 (amp=False)")
    return ok
