"""Plots written into a run folder: batch mosaics (train/val_batch*.jpg), the label overview (labels.jpg), and
the background thread (PLOTS) that draws them off the hot path.

Matplotlib is used through its Agg canvas directly (no pyplot, no global backend switch); boxes are drawn with cv2.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch

from ultralytics.utils import LOGGER
from ultralytics.utils.ops import xywh2xyxy

# 20 distinguishable colours (RGB hex); class i uses PALETTE[i % 20].
PALETTE_HEX = ("E6194B", "3CB44B", "FFE119", "4363D8", "F58231", "911EB4", "42D4F4", "F032E6", "BFEF45", "FABED4",
               "469990", "DCBEFF", "9A6324", "FFFAC8", "800000", "AAFFC3", "808000", "FFD8B1", "000075", "A9A9A9")


def colour(i: int, bgr: bool = False) -> tuple[int, int, int]:
    """Colour of class i as an (R, G, B) tuple, or (B, G, R) with bgr=True."""
    h = PALETTE_HEX[int(i) % len(PALETTE_HEX)]
    rgb = (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    return rgb[::-1] if bgr else rgb


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def plot_images(batch: dict, fname: str | Path, names: dict[int, str] | None = None, max_subplots: int = 16,
                max_size: int = 1920, conf_thres: float = 0.25) -> Path:
    """Save a grid of up to `max_subplots` batch images with their boxes and class names as a JPEG.

    `batch` holds `img` (B, 3, H, W) RGB uint8 (or float in [0, 1]), `cls` (N, 1) or (N,), `bboxes` (N, 4)
    normalised xywh, `batch_idx` (N,), optional `conf` (N,) for predictions (boxes below conf_thres are skipped).
    """
    imgs = _to_numpy(batch["img"])
    if imgs.dtype != np.uint8:
        imgs = (np.clip(imgs, 0, 1) * 255).round().astype(np.uint8) if imgs.max(initial=0) <= 1 else imgs.astype(
            np.uint8)
    cls = _to_numpy(batch.get("cls", np.zeros(0))).reshape(-1).astype(int)
    boxes = _to_numpy(batch.get("bboxes", np.zeros((0, 4)))).reshape(-1, 4).astype(np.float64)
    bidx = _to_numpy(batch.get("batch_idx", np.zeros(0))).reshape(-1).astype(int)
    conf = _to_numpy(batch["conf"]).reshape(-1) if batch.get("conf") is not None else None
    bs, _, h, w = imgs.shape
    bs = min(bs, max_subplots)
    ns = math.ceil(bs**0.5)  # grid side
    scale = min(1.0, max_size / (ns * max(h, w)))
    th, tw = math.ceil(h * scale), math.ceil(w * scale)
    canvas = np.full((ns * th, ns * tw, 3), 255, dtype=np.uint8)
    lw = max(1, round(min(th, tw) / 200))
    fs = max(0.3, min(th, tw) / 600)
    for j in range(bs):
        x0, y0 = (j % ns) * tw, (j // ns) * th
        tile = imgs[j].transpose(1, 2, 0)[..., ::-1]  # RGB → BGR for cv2
        if scale != 1:
            tile = cv2.resize(tile, (tw, th), interpolation=cv2.INTER_AREA)
        tile = np.ascontiguousarray(tile)
        sel = bidx == j
        xyxy = xywh2xyxy(boxes[sel]) * [tw, th, tw, th]
        for k, (c, b) in enumerate(zip(cls[sel], xyxy)):
            score = conf[sel][k] if conf is not None else None
            if score is not None and score < conf_thres:
                continue
            p1, p2 = (int(b[0]), int(b[1])), (int(b[2]), int(b[3]))
            col = colour(c, bgr=True)
            cv2.rectangle(tile, p1, p2, col, lw, cv2.LINE_AA)
            text = (names or {}).get(int(c), str(int(c))) + (f" {score:.2f}" if score is not None else "")
            (tw_, th_), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
            ty = max(p1[1], th_ + 2)
            cv2.rectangle(tile, (p1[0], ty - th_ - 2), (p1[0] + tw_, ty), col, -1)
            cv2.putText(tile, text, (p1[0], ty - 1), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.rectangle(tile, (0, 0), (tw - 1, th - 1), (255, 255, 255), lw)
        name = Path(str(batch.get("im_file", [""] * bs)[j])).name[:40]
        if name:
            cv2.putText(tile, name, (4, th - 6), cv2.FONT_HERSHEY_SIMPLEX, fs, (220, 220, 220), 1, cv2.LINE_AA)
        canvas[y0:y0 + th, x0:x0 + tw] = tile
    fname = Path(fname)
    fname.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(fname), canvas)
    return fname


def plot_labels(boxes_xywhn, cls, names: dict[int, str], save_dir: str | Path) -> Path:
    """Save save_dir/labels.jpg: instances per class, box outlines, centre (x, y) and size (w, h) histograms."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    b = _to_numpy(boxes_xywhn).reshape(-1, 4).astype(np.float64)
    c = _to_numpy(cls).reshape(-1).astype(int)
    nc = max(len(names), int(c.max()) + 1 if len(c) else 0, 1)
    fig = Figure(figsize=(8, 8), tight_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.subplots(2, 2).ravel()
    counts = np.bincount(c, minlength=nc)
    ax[0].bar(range(nc), counts, color=[np.array(colour(i)) / 255 for i in range(nc)])
    ax[0].set_ylabel("instances")
    if nc <= 30:
        ax[0].set_xticks(range(nc), [names.get(i, str(i)) for i in range(nc)], rotation=90, fontsize=8)
    else:
        ax[0].set_xlabel("class id")
    # box outlines centred in a unit square, drawn with cv2 (fast for thousands of boxes)
    side = 500
    canvas = np.full((side, side, 3), 255, dtype=np.uint8)
    rng = np.random.default_rng(0)
    sel = rng.permutation(len(b))[:1000]
    for bb, cc in zip(b[sel], c[sel]):
        x1, y1 = (0.5 - bb[2] / 2) * side, (0.5 - bb[3] / 2) * side
        x2, y2 = (0.5 + bb[2] / 2) * side, (0.5 + bb[3] / 2) * side
        cv2.rectangle(canvas, (int(x1), int(y1)), (int(x2), int(y2)), colour(cc), 1)
    ax[1].imshow(canvas)
    ax[1].axis("off")
    ax[2].hist2d(b[:, 0], b[:, 1], bins=50, range=[[0, 1], [0, 1]], cmap="Blues")
    ax[2].set_xlabel("x")
    ax[2].set_ylabel("y")
    ax[3].hist2d(b[:, 2], b[:, 3], bins=50, range=[[0, 1], [0, 1]], cmap="Blues")
    ax[3].set_xlabel("width")
    ax[3].set_ylabel("height")
    out = Path(save_dir) / "labels.jpg"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


class PlotWorker:
    """One background thread that draws plots off the training/validation hot path.

    Jobs get their data as NumPy copies from the caller, so the main thread may go on changing its tensors.
    Between `hold()` and `release()` (the trainer holds over each epoch's batch loop) jobs are only queued: a
    drawing thread competing with training for the GIL and the cores slowed short epochs by more than drawing
    inline did, so training batches never run next to a plot. A failing plot is logged as a warning and never
    stops a run. `wait()` starts held jobs and blocks until every job has finished (called before a validation
    starts its loader workers and before a run returns, so the files exist when `train()`/`val()` return).
    """

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []
        self._held: list[tuple[Callable[..., Any], tuple, dict]] | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run fn(*args, **kwargs) in the plot thread (once released, when held)."""
        with self._lock:
            if self._held is not None:
                self._held.append((fn, args, kwargs))
                return
            self._start(fn, args, kwargs)

    def _start(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plots")
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(self._executor.submit(self._run, fn, args, kwargs))

    def hold(self) -> None:
        """Queue the plots submitted from now on without starting them, until `release()` (or `wait()`)."""
        with self._lock:
            if self._held is None:
                self._held = []

    def release(self) -> None:
        """Start the plots queued since `hold()`."""
        with self._lock:
            jobs, self._held = self._held or [], None
            for job in jobs:
                self._start(*job)

    @staticmethod
    def _run(fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as e:  # a plot must never take a run down
            LOGGER.warning(f"WARNING ⚠️ plot {getattr(fn, '__name__', fn)} failed: {e}")

    def wait(self) -> None:
        """Start any held plots and block until all submitted plots are written."""
        self.release()
        with self._lock:
            pending, self._pending = self._pending, []
        wait_futures(pending)


PLOTS = PlotWorker()  # the process-wide plot thread shared by the trainer and the validator
