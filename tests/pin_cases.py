"""Deterministic cases whose results are pinned in tests/fixtures/pins/pins.npz (see make_pins.py there).

Each case builds its inputs from a fixed seed and returns numpy arrays. The cases call the code only
through its stable entry points (DetectionModel, its loss, the task-aligned assigner), so the pins hold
across rewrites of what lies behind them.
"""

from __future__ import annotations

import numpy as np
import torch

from ultralytics.nn.tasks import DetectionModel
from ultralytics.detection.assigner import TaskAlignedAssigner


def _seeded_model(name: str, nc: int = 80) -> DetectionModel:
    torch.manual_seed(0)
    model = DetectionModel(name, nc=nc, verbose=False)
    # Detect's bias init makes scores tiny; spread every parameter a little so outputs are informative.
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def model_case(name: str) -> dict[str, np.ndarray]:
    """Eval-mode decoded output and train-mode raw maps (flattened, concatenated) of a seeded model on a
    seeded 64x96 input."""
    model = _seeded_model(name)
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        raw = model.train()(x)
        y, _ = model.eval()(x)
    return {"y": y.numpy(), "train": torch.cat([r.flatten(2) for r in raw], 2).numpy()}


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    n = 7
    cxcy = 0.2 + 0.6 * torch.rand(n, 2, generator=g)
    wh = 0.05 + 0.3 * torch.rand(n, 2, generator=g)
    return {
        "batch_idx": torch.tensor([0, 0, 0, 1, 1, 1, 1], dtype=torch.float),
        "cls": torch.randint(0, 5, (n, 1), generator=g).float(),
        "bboxes": torch.cat([cxcy, wh], 1),
    }


def loss_case() -> dict[str, np.ndarray]:
    """Loss total and items of a seeded 5-class model on a fixed batch, and the gradient w.r.t. its raw maps."""
    model = _seeded_model("yolov8n.yaml", nc=5).train()
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        feats = model(x)
    feats = [f.clone().requires_grad_(True) for f in feats]
    total, items = model.loss(_batch(), feats)
    total.backward()
    out = {"total": total.detach().numpy(), "items": items.numpy()}
    for i, f in enumerate(feats):
        out[f"grad{i}"] = f.grad.numpy()
    return out


def assigner_case() -> dict[str, np.ndarray]:
    """Targets of the task-aligned assigner on seeded scores and boxes, with padded gt rows."""
    g = torch.Generator().manual_seed(5)
    bs, nc, side = 2, 4, 12
    ys, xs = torch.meshgrid(torch.arange(side) + 0.5, torch.arange(side) + 0.5, indexing="ij")
    anchors = torch.stack([xs.flatten(), ys.flatten()], 1) * 8.0  # (A, 2) pixels, stride 8
    na = anchors.shape[0]
    centre = anchors.unsqueeze(0).expand(bs, -1, -1) + 6 * torch.randn(bs, na, 2, generator=g)
    half = 4 + 20 * torch.rand(bs, na, 2, generator=g)
    pd_bboxes = torch.cat([centre - half, centre + half], -1)
    pd_scores = torch.rand(bs, na, nc, generator=g)
    gt_bboxes = torch.tensor(
        [[[5, 5, 40, 50], [30, 20, 90, 70], [0, 0, 0, 0]], [[10, 60, 50, 95], [40, 40, 52, 52], [60, 5, 96, 30]]],
        dtype=torch.float,
    )
    gt_labels = torch.tensor([[[1], [3], [0]], [[0], [2], [1]]], dtype=torch.float)
    mask_gt = torch.tensor([[[1], [1], [0]], [[1], [1], [1]]], dtype=torch.float)
    assigner = TaskAlignedAssigner(topk=10, num_classes=nc, alpha=0.5, beta=6.0)
    labels, boxes, scores, fg, gt_idx = assigner(pd_scores, pd_bboxes, anchors, gt_labels, gt_bboxes, mask_gt)
    return {"labels": labels.numpy(), "boxes": boxes.numpy(), "scores": scores.numpy(), "fg": fg.numpy(),
            "gt_idx": gt_idx.numpy()}
