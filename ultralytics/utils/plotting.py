"""Plots written into a run folder: batch mosaics (train/val_batch*.jpg), the label overview (labels.jpg), and
the background thread (PLOTS) that draws them off the hot path.

Matplotlib is used through its Agg canvas directly (no pyplot, no global backend switch); boxes are drawn with cv2.
Also the drawing helpers of the published API: `colors`, `Annotator` and `save_one_box`.
"""

from __future__ import annotations

import io
import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch

from ultralytics.utils import LOGGER, write_atomic
from ultralytics.utils.files import increment_path
from ultralytics.utils.ops import clip_boxes, xywh2xyxy, xyxy2xywh

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
    return save_image(canvas, fname)


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
    return save_figure(fig, Path(save_dir) / "labels.jpg", dpi=100)


def save_image(im: np.ndarray, path: str | Path) -> Path:
    """Encode a BGR image by `path`'s suffix and write it atomically (FileWriteError when the disk is full or the
    folder read-only; never a partial file)."""
    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".jpg", im)
    if not ok:
        raise ValueError(f"OpenCV cannot encode an image as '{path.suffix}' for {path}")
    return write_atomic(path, buf.tobytes())


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """Render a matplotlib Figure in memory (format from `path`'s suffix) and write it atomically, as save_image."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=(path.suffix[1:] or "png").lower(), **kwargs)
    return write_atomic(path, buf.getbuffer())


class PlotWorker:
    """One background thread that draws plots off the training/validation hot path.

    Jobs get their data as NumPy copies from the caller, so the main thread may go on changing its tensors.
    Between `hold()` and `release()` (the trainer holds over each epoch's batch loop) jobs are only queued: a
    drawing thread competing with training for the GIL and the cores slowed short epochs by more than drawing
    inline did, so training batches never run next to a plot. A failing plot is logged as a warning and never
    stops a run (a full disk or read-only folder included: the warning names the file and the free space, and the
    writers leave no partial image). `wait()` starts held jobs and blocks until every job has finished (called before a validation
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


# ------------------------------------------------------------------------------------------------ published API
class ClassColours:
    """Callable class palette: `colors(i)` → (R, G, B) ints, `colors(i, bgr=True)` → (B, G, R); i may be a tensor."""

    def __len__(self) -> int:
        return len(PALETTE_HEX)

    def __call__(self, i: int | torch.Tensor, bgr: bool = False) -> tuple[int, int, int]:
        return colour(int(i), bgr=bgr)


colors = ClassColours()


def _xyxy_ints(box: Any) -> tuple[int, int, int, int]:
    """A box (list, array or tensor of 4 numbers, any leading 1-sized dims) as rounded pixel ints."""
    b = _to_numpy(box).reshape(-1)[:4].astype(np.float64)
    return tuple(int(round(v)) for v in b)  # type: ignore[return-value]


class Annotator:
    """Draw boxes, labels, rectangles and text onto a BGR image in place (cv2 only; `pil=True` is ignored).

    `line_width` defaults to 0.3% of the mean image side (at least 2 px); colours are in the image's channel
    order (BGR for cv2 images, e.g. `colors(c, bgr=True)`). `result()` returns the drawn image.
    """

    def __init__(self, im: np.ndarray, line_width: int | None = None, font_size: float | None = None,
                 font: str = "Arial.ttf", pil: bool = False, example: str = "abc") -> None:
        im = np.asarray(im)
        if im.ndim == 2:
            im = cv2.cvtColor(im, cv2.COLOR_GRAY2BGR)
        self.im = im if im.flags.c_contiguous and im.flags.writeable else np.ascontiguousarray(im).copy()
        self.lw = int(line_width) if line_width else max(round(sum(im.shape[:2]) / 2 * 0.003), 2)
        self.tf = max(self.lw - 1, 1)  # text thickness
        self.sf = float(font_size) if font_size else self.lw / 3  # cv2 font scale

    def _text_size(self, text: str) -> tuple[int, int]:
        (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, self.sf, self.tf)
        return w, h

    def box_label(self, box: Any, label: str = "", color: tuple[int, int, int] = (128, 128, 128),
                  txt_color: tuple[int, int, int] = (255, 255, 255)) -> None:
        """Outline the xyxy `box` and write `label` on a filled tag above it (inside when at the top edge)."""
        x1, y1, x2, y2 = _xyxy_ints(box)
        cv2.rectangle(self.im, (x1, y1), (x2, y2), color, self.lw, cv2.LINE_AA)
        if not label:
            return
        w, h = self._text_size(label)
        above = y1 >= h + 3
        tag_y = y1 - h - 3 if above else y1 + h + 3
        cv2.rectangle(self.im, (x1, y1), (x1 + w, tag_y), color, -1, cv2.LINE_AA)
        baseline = y1 - 2 if above else y1 + h + 2
        cv2.putText(self.im, label, (x1, baseline), cv2.FONT_HERSHEY_SIMPLEX, self.sf, txt_color, self.tf,
                    cv2.LINE_AA)

    def rectangle(self, xy: Any, fill: tuple[int, int, int] | None = None,
                  outline: tuple[int, int, int] | None = None, width: int = 1) -> None:
        """A rectangle over xyxy `xy`: filled with `fill` and/or outlined with `outline` (`width` px)."""
        x1, y1, x2, y2 = _xyxy_ints(xy)
        if fill is not None:
            cv2.rectangle(self.im, (x1, y1), (x2, y2), fill, -1)
        if outline is not None:
            cv2.rectangle(self.im, (x1, y1), (x2, y2), outline, int(width))

    def text(self, xy: Any, text: str, txt_color: tuple[int, int, int] = (255, 255, 255), anchor: str = "top",
             box_color: tuple[int, int, int] = ()) -> None:
        """Write `text` with its top-left corner at `xy` (`anchor='bottom'`: bottom-left), on `box_color` if given."""
        x, y = (int(round(float(v))) for v in list(xy)[:2])
        w, h = self._text_size(text)
        top = y - h if anchor == "bottom" else y
        if box_color:
            cv2.rectangle(self.im, (x, top), (x + w, top + h + self.tf + 1), box_color, -1)
        cv2.putText(self.im, text, (x, top + h), cv2.FONT_HERSHEY_SIMPLEX, self.sf, txt_color, self.tf, cv2.LINE_AA)

    def result(self, pil: bool = False) -> np.ndarray:
        """The drawn image (the same array that was drawn on)."""
        return self.im


def save_one_box(xyxy: Any, im: np.ndarray, file: str | Path = Path("im.jpg"), gain: float = 1.02, pad: int = 10,
                 square: bool = False, BGR: bool = False, save: bool = True) -> np.ndarray:
    """Crop the xyxy box, widened to size * gain + pad (a square of the longer side when `square`), from BGR `im`.

    The crop is clipped to the image and cut at whole pixels (coordinates truncated). With `save`, it is written
    as a JPEG to `file` (numbered file-2.jpg, ... when taken; folders created). Returns the crop, BGR when
    `BGR=True`, else with its channels reversed (RGB).
    """
    box = torch.as_tensor(_to_numpy(xyxy), dtype=torch.float64).reshape(-1, 4)
    wh_c = xyxy2xywh(box)
    if square:
        wh_c[:, 2:] = wh_c[:, 2:].max(1, keepdim=True).values
    wh_c[:, 2:] = wh_c[:, 2:] * gain + pad
    x1, y1, x2, y2 = clip_boxes(xywh2xyxy(wh_c), im.shape[:2])[0].long().tolist()
    crop = im[y1:y2, x1:x2]
    if save:
        out = increment_path(Path(file).with_suffix(".jpg"), sep="-")
        save_image(np.ascontiguousarray(crop), out)
    return crop if BGR else crop[..., ::-1]


# ----------------------------------------------------------------------------------- feature maps (visualize=True)
GRID_COLUMNS = 8
TILE = 96  # pixels per channel tile (the longer side)
GAP = 2


def channel_tiles(fmap: np.ndarray, tile: int = TILE) -> list[np.ndarray]:
    """(C, H, W) float → one uint8 grey image per channel, each min-max stretched to 0..255 and resized so that its
    longer side is `tile` pixels (nearest neighbour: every activation stays a visible block)."""
    h, w = fmap.shape[1:]
    size = (max(1, round(tile * w / max(h, w))), max(1, round(tile * h / max(h, w))))
    tiles = []
    for ch in fmap:
        lo, hi = float(ch.min()), float(ch.max())
        norm = (ch - lo) / (hi - lo) if hi > lo else np.zeros_like(ch)
        tiles.append(cv2.resize((norm * 255).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST))
    return tiles


def tile_grid(tiles: list[np.ndarray], columns: int = GRID_COLUMNS, gap: int = GAP) -> np.ndarray:
    """Equal-size tiles → one image, row-major, `gap` white pixels between them."""
    th, tw = tiles[0].shape
    rows = -(-len(tiles) // columns)
    cols = min(columns, len(tiles))
    grid = np.full((rows * (th + gap) - gap, cols * (tw + gap) - gap), 255, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, columns)
        grid[r * (th + gap): r * (th + gap) + th, c * (tw + gap): c * (tw + gap) + tw] = t
    return grid


def feature_visualization(x: torch.Tensor, module_type: str, stage: int, n: int = 32,
                          save_dir: str | Path = Path("runs/detect/exp")) -> Path | None:
    """Save the first `n` channels of the first image of a stage's output `x` (B, C, H, W) as
    save_dir/stage{stage}_{Module}_features.png (a grid, each channel stretched to its own range) and their values
    as the matching .npy. Outputs that are not feature maps (the Detect head's, 1×1 maps) are skipped: None."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[-2] <= 1 or x.shape[-1] <= 1:
        return None
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    fmap = x[0, :n].detach().float().cpu().numpy()
    stem = f"stage{stage}_{module_type.split('.')[-1]}_features"
    png = save_dir / f"{stem}.png"
    save_image(tile_grid(channel_tiles(fmap)), png)
    values = io.BytesIO()
    np.save(values, fmap)
    write_atomic(save_dir / f"{stem}.npy", values.getvalue())
    LOGGER.debug(f"Saving {png}... ({len(fmap)}/{x.shape[1]})")
    return png
