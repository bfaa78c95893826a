"""Prediction results: `Boxes` (one image's detections in several formats) and `Results` (image + boxes + I/O).

`Boxes.data` is an (n, 6) tensor or array [x1, y1, x2, y2, conf, cls] in original-image pixels
((n, 7) with a track id before conf). Every property derives from it, so `.cpu()`, `.numpy()` and
indexing keep all formats consistent.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ultralytics.utils import LOGGER
from ultralytics.utils.ops import xyxy2xywh
from ultralytics.utils.plotting import colour, save_image


def _like(x: torch.Tensor | np.ndarray, values: list[float]) -> torch.Tensor | np.ndarray:
    """`values` as a tensor/array matching x's type, device and dtype (for broadcasting)."""
    if isinstance(x, torch.Tensor):
        return torch.tensor(values, dtype=x.dtype, device=x.device)
    return np.asarray(values, dtype=x.dtype)


class Boxes:
    """Detections of one image: `.xyxy .xywh .xyxyn .xywhn .conf .cls .id .data`, list-like (len, [i], iter)."""

    def __init__(self, boxes: torch.Tensor | np.ndarray, orig_shape: tuple[int, int]):
        if boxes.ndim == 1:
            boxes = boxes[None, :]
        if boxes.shape[-1] not in (6, 7):
            raise ValueError(f"boxes must have 6 columns [x1, y1, x2, y2, conf, cls] (7 with a track id), "
                             f"got {boxes.shape[-1]}")
        self.data = boxes
        self.orig_shape = tuple(int(s) for s in orig_shape[:2])
        self.is_track = boxes.shape[-1] == 7

    # --------------------------------------------------------------------------------------------- formats
    @property
    def xyxy(self) -> torch.Tensor | np.ndarray:
        """(n, 4) boxes x1, y1, x2, y2 in original-image pixels."""
        return self.data[:, :4]

    @property
    def conf(self) -> torch.Tensor | np.ndarray:
        return self.data[:, -2]

    @property
    def cls(self) -> torch.Tensor | np.ndarray:
        return self.data[:, -1]

    @property
    def id(self) -> torch.Tensor | np.ndarray | None:
        """Track ids (None: detections are not tracked)."""
        return self.data[:, -3] if self.is_track else None

    @property
    def xywh(self) -> torch.Tensor | np.ndarray:
        """(n, 4) centre x, centre y, width, height in pixels."""
        return xyxy2xywh(self.xyxy)

    @property
    def xyxyn(self) -> torch.Tensor | np.ndarray:
        """xyxy divided by the image width/height (0..1)."""
        h, w = self.orig_shape
        return self.xyxy / _like(self.data, [w, h, w, h])

    @property
    def xywhn(self) -> torch.Tensor | np.ndarray:
        """xywh divided by the image width/height (0..1): the YOLO label format."""
        h, w = self.orig_shape
        return self.xywh / _like(self.data, [w, h, w, h])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    # --------------------------------------------------------------------------------------------- container
    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, idx: Any) -> Boxes:
        return Boxes(self.data[idx], self.orig_shape)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"Boxes(n={len(self)}, orig_shape={self.orig_shape}, data=\n{self.data!r})"

    # --------------------------------------------------------------------------------------------- conversion
    def cpu(self) -> Boxes:
        return self if isinstance(self.data, np.ndarray) else Boxes(self.data.cpu(), self.orig_shape)

    def numpy(self) -> Boxes:
        return self if isinstance(self.data, np.ndarray) else Boxes(self.data.cpu().numpy(), self.orig_shape)

    def cuda(self) -> Boxes:
        return Boxes(torch.as_tensor(self.data).cuda(), self.orig_shape)

    def to(self, *args: Any, **kwargs: Any) -> Boxes:
        return Boxes(torch.as_tensor(self.data).to(*args, **kwargs), self.orig_shape)


# ------------------------------------------------------------------------------------------------- drawing
def default_line_width(shape: tuple[int, int]) -> int:
    """A line width readable at any image size: 0.3% of the mean side, at least 2 px."""
    return max(round(sum(shape[:2]) / 2 * 0.003), 2)


def draw_box_label(img: np.ndarray, xyxy: list[float], label: str, color: tuple[int, int, int], lw: int,
                   font_scale: float | None = None) -> None:
    """Draw one box (and its label on a filled tag above it, or inside when at the top edge) onto img in place."""
    p1, p2 = (int(round(xyxy[0])), int(round(xyxy[1]))), (int(round(xyxy[2])), int(round(xyxy[3])))
    cv2.rectangle(img, p1, p2, color, thickness=lw, lineType=cv2.LINE_AA)
    if not label:
        return
    tf = max(lw - 1, 1)
    fs = font_scale or lw / 3
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, fs, tf)
    outside = p1[1] >= th + 3
    q2 = (p1[0] + tw, p1[1] - th - 3 if outside else p1[1] + th + 3)
    cv2.rectangle(img, p1, q2, color, -1, cv2.LINE_AA)
    text_color = (0, 0, 0) if sum(color) / 3 > 150 else (255, 255, 255)
    org = (p1[0], p1[1] - 2 if outside else p1[1] + th + 2)
    cv2.putText(img, label, org, cv2.FONT_HERSHEY_SIMPLEX, fs, text_color, tf, cv2.LINE_AA)


def _numbered(path: Path) -> Path:
    """`path` if free, else stem2.ext, stem3.ext, ... (the first that does not exist)."""
    if not path.exists():
        return path
    n = 2
    while (candidate := path.with_name(f"{path.stem}{n}{path.suffix}")).exists():
        n += 1
    return candidate


# ------------------------------------------------------------------------------------------------- results
class Results:
    """Predictions for one image: `boxes`, `names`, `orig_img` (BGR), `orig_shape` (h, w), `path`, `speed` (ms)."""

    def __init__(self, orig_img: np.ndarray, path: str, names: dict[int, str],
                 boxes: torch.Tensor | np.ndarray | None = None, speed: dict[str, float | None] | None = None):
        self.orig_img = orig_img
        self.orig_shape = tuple(orig_img.shape[:2])
        self.path = str(path)
        self.names = dict(names)
        if boxes is None:
            boxes = torch.zeros((0, 6))
        self.boxes = Boxes(boxes, self.orig_shape)
        self.speed = dict(speed) if speed else {"preprocess": None, "inference": None, "postprocess": None}
        self.save_dir: str | None = None
        self.masks = self.probs = self.keypoints = self.obb = None  # other tasks, not implemented here

    # --------------------------------------------------------------------------------------------- container
    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, idx: Any) -> Results:
        """A Results holding the selected boxes only (same image, names, path, speed)."""
        return self._with(self.boxes.data[idx])

    def _with(self, data: torch.Tensor | np.ndarray) -> Results:
        r = Results(self.orig_img, self.path, self.names, data, self.speed)
        r.save_dir = self.save_dir
        return r

    def update(self, boxes: torch.Tensor | np.ndarray | None = None) -> None:
        if boxes is not None:
            self.boxes = Boxes(boxes, self.orig_shape)

    def new(self) -> Results:
        """An empty Results for the same image."""
        return Results(self.orig_img, self.path, self.names, speed=self.speed)

    def cpu(self) -> Results:
        return self._with(self.boxes.cpu().data)

    def numpy(self) -> Results:
        return self._with(self.boxes.numpy().data)

    def cuda(self) -> Results:
        return self._with(self.boxes.cuda().data)

    def to(self, *args: Any, **kwargs: Any) -> Results:
        return self._with(self.boxes.to(*args, **kwargs).data)

    def __repr__(self) -> str:
        return f"Results(path={self.path!r}, orig_shape={self.orig_shape}, boxes={len(self)}, speed={self.speed})"

    # --------------------------------------------------------------------------------------------- text
    def _rows(self) -> list[tuple[list[float], float, int, int | None]]:
        b = self.boxes.cpu()
        data = np.asarray(b.data, dtype=np.float64)
        ids = b.id
        return [([float(v) for v in row[:4]], float(row[-2]), int(row[-1]), None if ids is None else int(ids[i]))
                for i, row in enumerate(data)]

    def verbose(self) -> str:
        """Class counts for the log line, e.g. '2 persons, 1 bus, ' ('(no detections), ' when empty)."""
        if not len(self):
            return "(no detections), "
        cls = np.asarray(self.boxes.cpu().cls).astype(int)
        out = ""
        for c in np.unique(cls):
            n = int((cls == c).sum())
            out += f"{n} {self.names.get(int(c), str(c))}{'s' * (n > 1)}, "
        return out

    def summary(self, normalize: bool = False, decimals: int = 5) -> list[dict[str, Any]]:
        """One dict per box: name, class, confidence, box {x1, y1, x2, y2} (divided by w/h when normalize)."""
        h, w = self.orig_shape
        sx, sy = (1 / w, 1 / h) if normalize else (1.0, 1.0)
        out = []
        for xyxy, conf, c, tid in self._rows():
            d: dict[str, Any] = {"name": self.names.get(c, str(c)), "class": c, "confidence": round(conf, decimals),
                                 "box": {"x1": round(xyxy[0] * sx, decimals), "y1": round(xyxy[1] * sy, decimals),
                                         "x2": round(xyxy[2] * sx, decimals), "y2": round(xyxy[3] * sy, decimals)}}
            if tid is not None:
                d["track_id"] = tid
            out.append(d)
        return out

    def to_json(self, normalize: bool = False, decimals: int = 5) -> str:
        """`summary()` as a JSON string."""
        return json.dumps(self.summary(normalize=normalize, decimals=decimals), indent=2)

    tojson = to_json  # older name

    def to_df(self, normalize: bool = False, decimals: int = 5) -> Any:
        """`summary()` as a polars DataFrame, like the published package: columns name (str), class (int),
        confidence (float), box (struct x1, y1, x2, y2), and track_id when tracked.

        Needs polars (`pip install polars`; not a dependency of this package): ImportError without it.
        `to_csv` gives the same table as text without it.
        """
        try:
            import polars
        except ImportError as e:
            raise ImportError("Results.to_df() needs polars, which is not installed: pip install polars "
                              "(Results.to_csv() and Results.summary() work without it)") from e
        return polars.DataFrame(self.summary(normalize=normalize, decimals=decimals))

    def to_csv(self, normalize: bool = False, decimals: int = 5) -> str:
        """`summary()` as CSV text: header name,class,confidence,box[,track_id], one row per box, the box written
        as its dict ("{'x1': 10.0, ...}"). Needs no DataFrame library; no boxes give a lone newline."""
        rows = self.summary(normalize=normalize, decimals=decimals)
        if not rows:
            return "\n"
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(list(rows[0]))
        writer.writerows([str(v) if isinstance(v, dict) else v for v in row.values()] for row in rows)
        return buf.getvalue()

    # --------------------------------------------------------------------------------------------- files
    def save_txt(self, txt_file: str | Path, save_conf: bool = False) -> str:
        """Append one YOLO label line per box, 'cls cx cy w h [conf]' normalised to 0..1; returns the path."""
        txt_file = Path(txt_file)
        txt_file.parent.mkdir(parents=True, exist_ok=True)
        b = self.boxes.cpu()
        xywhn = np.asarray(b.xywhn, dtype=np.float64).reshape(-1, 4)
        lines = []
        for (xyxy, conf, c, tid), row in zip(self._rows(), xywhn):
            parts = [str(c), *(f"{v:.6g}" for v in row)]
            if save_conf:
                parts.append(f"{conf:.6g}")
            if tid is not None:
                parts.append(str(tid))
            lines.append(" ".join(parts))
        with open(txt_file, "a", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
        return str(txt_file)

    def save_crop(self, save_dir: str | Path, file_name: str | Path = Path("im.jpg")) -> list[str]:
        """Save each box's region as save_dir/<class name>/<file_name stem>.jpg (numbered when taken)."""
        saved = []
        h, w = self.orig_shape
        for xyxy, _, c, _ in self._rows():
            x1, y1 = max(int(np.floor(xyxy[0])), 0), max(int(np.floor(xyxy[1])), 0)
            x2, y2 = min(int(np.ceil(xyxy[2])), w), min(int(np.ceil(xyxy[3])), h)
            if x2 <= x1 or y2 <= y1:
                continue
            folder = Path(save_dir) / self.names.get(c, str(c))
            folder.mkdir(parents=True, exist_ok=True)
            f = _numbered(folder / f"{Path(file_name).stem}.jpg")
            save_image(np.ascontiguousarray(self.orig_img[y1:y2, x1:x2]), f)
            saved.append(str(f))
        return saved

    def plot(self, conf: bool = True, line_width: int | None = None, font_size: float | None = None,
             labels: bool = True, boxes: bool = True, img: np.ndarray | None = None, save: bool = False,
             filename: str | Path | None = None, **kwargs: Any) -> np.ndarray:
        """Draw the boxes (and 'name 0.87' labels) on a copy of the image; returns it as BGR (H, W, 3) uint8.

        line_width defaults to 0.3% of the mean image side (>= 2 px); font_size is a cv2 font scale
        (default line_width / 3). Extra keyword arguments of the published API (pil, font, ...) are ignored.
        """
        canvas = np.ascontiguousarray(self.orig_img if img is None else img).copy()
        if canvas.ndim == 2:
            canvas = cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)
        lw = int(line_width) if line_width else default_line_width(canvas.shape)
        if boxes:
            for xyxy, score, c, tid in reversed(self._rows()):  # lowest confidence first: best drawn on top
                label = ""
                if labels:
                    label = (f"id:{tid} " if tid is not None else "") + self.names.get(c, str(c))
                    label += f" {score:.2f}" if conf else ""
                elif conf:
                    label = f"{score:.2f}"
                draw_box_label(canvas, xyxy, label, colour(c, bgr=True), lw, font_size)
        if save:
            self._write(canvas, filename or f"results_{Path(self.path).name}")
        return canvas

    def show(self, *args: Any, **kwargs: Any) -> None:
        """Display the annotated image in an OpenCV window (needs a display)."""
        try:
            cv2.imshow(self.path, self.plot(*args, **kwargs))
            cv2.waitKey(1)
        except cv2.error as e:
            LOGGER.warning(f"WARNING ⚠️ cannot show results (no display?): {e}")

    def save(self, filename: str | Path | None = None, *args: Any, **kwargs: Any) -> str:
        """Plot (arguments as `plot`) and write the image to `filename` (default results_<name>); returns the path."""
        return self._write(self.plot(*args, **kwargs), filename or f"results_{Path(self.path).name}")

    @staticmethod
    def _write(img: np.ndarray, filename: str | Path) -> str:
        return str(save_image(img, filename))  # atomic; one-line FileWriteError on a full disk
