"""Prediction sources: everything `predict(source=...)` accepts, turned into a lazy stream of BGR images.

Accepted sources (a list or tuple may mix them):

* a path to an image or a video file, a folder (its images and videos, not recursive), a glob
  (``"imgs/*.jpg"``, ``"**"`` recurses) or a ``.txt`` file with one image/video path per line
  (relative lines resolve against the working directory, then against the .txt's folder);
* a numpy array (H, W, 3) BGR uint8 — (H, W) grayscale and (H, W, 4) BGRA are converted;
* a PIL image (any mode; converted to RGB, then BGR);
* a torch tensor (B, 3, H, W) or (3, H, W), RGB, float in [0, 1].

Files are resolved (and missing ones reported) when the source is built; pixels are read only while
iterating, one image or video frame at a time, so a long video streams in constant memory.
"""

from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import torch
from PIL import Image

from ultralytics.data.utils import IMG_FORMATS, imread
from ultralytics.errors import ConfigError, MissingFileError, SourceError, UnreadableSourceError
from ultralytics.utils import LOGGER

VID_FORMATS = {"asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "wmv", "webm"}
SUPPORTED_SOURCES = ("image/video file path, folder, glob, .txt list of paths, numpy array (HWC BGR), PIL image, "
                     "torch tensor (BCHW RGB float 0-1), or a list of these")


def _ext(path: str | Path) -> str:
    return Path(path).suffix[1:].lower()


def _supported_types() -> str:
    return f"images: {', '.join(sorted(IMG_FORMATS))}; videos: {', '.join(sorted(VID_FORMATS))}"


@dataclass
class SourceItem:
    """One image (or video frame) of a source, ready for the predictor."""

    path: str  # file path, or a made-up name (image0.jpg) for in-memory images
    im0: np.ndarray  # (H, W, 3) BGR uint8, as read (EXIF applied)
    kind: str  # "image", "video" or "tensor"
    index: int  # 1-based position of the file/array in the source
    count: int  # number of files/arrays in the source
    frame: int = 0  # 1-based frame number among the frames kept (video only)
    frames: int = 0  # frames the video will yield after vid_stride (0 when unknown)
    fps: float = 0.0  # frames per second of the written video (source fps / vid_stride)
    tensor: torch.Tensor | None = None  # (3, H, W) float RGB for tensor sources (fed to the model as is)

    @property
    def info(self) -> str:
        """Progress prefix: 'image 1/3 path: ' or 'video 1/1 (frame 2/10) path: '."""
        if self.kind == "video":
            return f"video {self.index}/{self.count} (frame {self.frame}/{self.frames or '?'}) {self.path}: "
        return f"image {self.index}/{self.count} {self.path}: "


@dataclass
class _Entry:
    """A resolved element of the source: a file on disk or an in-memory image."""

    kind: str  # "image", "video", "array", "tensor"
    path: str
    data: Any = None
    explicit: bool = True  # named by the user (unreadable → error) rather than found in a folder/glob (→ skip)
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ conversion
def to_bgr(im: np.ndarray | Image.Image) -> np.ndarray:
    """An in-memory image as contiguous (H, W, 3) BGR uint8: grayscale and 4-channel (BGRA) are converted."""
    if isinstance(im, Image.Image):
        arr = np.asarray(im.convert("RGB"))
        return np.ascontiguousarray(arr[..., ::-1])
    if not isinstance(im, np.ndarray):
        raise TypeError(f"expected a numpy array or PIL image, got {type(im).__name__}")
    if im.ndim == 3 and im.shape[2] == 1:
        im = im[..., 0]
    if im.ndim not in (2, 3) or (im.ndim == 3 and im.shape[2] not in (3, 4)) or min(im.shape[:2]) < 1:
        raise SourceError(f"numpy image source must be (H, W), (H, W, 3) BGR or (H, W, 4) BGRA, got shape {im.shape}")
    if im.dtype != np.uint8:
        if np.issubdtype(im.dtype, np.floating) and im.size and float(np.nanmax(im)) <= 1.0:
            im = im * 255.0  # float images in [0, 1]
        im = np.clip(np.nan_to_num(im), 0, 255).astype(np.uint8)
    if im.ndim == 2:
        return cv2.cvtColor(im, cv2.COLOR_GRAY2BGR)
    if im.shape[2] == 4:
        return cv2.cvtColor(im, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(im)


def tensor_images(t: torch.Tensor) -> list[torch.Tensor]:
    """A (B, 3, H, W) or (3, H, W) RGB float tensor → list of (3, H, W) float tensors in [0, 1]."""
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[1] != 3:
        raise SourceError(f"tensor source must be (B, 3, H, W) or (3, H, W) RGB, got shape {tuple(t.shape)}")
    t = t.detach().float()
    if t.numel() and float(t.max()) > 1.0 + 1e-6:
        LOGGER.warning(f"WARNING ⚠️ tensor source has values up to {float(t.max()):.1f}; expected floats in "
                       "[0, 1]. Dividing by 255.")
        t = t / 255.0
    return list(t.unbind(0))


def tensor_to_bgr(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) RGB float [0, 1] → (H, W, 3) BGR uint8 (the 'original image' of a tensor source)."""
    arr = (t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(arr[..., ::-1])


# ------------------------------------------------------------------------------------------------ resolution
def _file_entry(path: str, explicit: bool) -> _Entry | None:
    ext = _ext(path)
    if ext in IMG_FORMATS:
        return _Entry("image", path, explicit=explicit)
    if ext in VID_FORMATS:
        return _Entry("video", path, explicit=explicit)
    if explicit:
        raise SourceError(f"unsupported file type '.{ext}' for source '{path}'; "
                         f"supported types are {_supported_types()}")
    return None


def _expand_glob(pattern: str) -> list[_Entry]:
    files = sorted(f for f in glob.glob(pattern, recursive=True) if os.path.isfile(f))
    entries = [e for e in (_file_entry(f, explicit=False) for f in files) if e is not None]
    if not entries:
        raise MissingFileError(f"glob '{pattern}' matched no images or videos ({_supported_types()})")
    return entries


def _expand_dir(folder: Path) -> list[_Entry]:
    files = sorted(str(f) for f in folder.iterdir() if f.is_file())
    entries = [e for e in (_file_entry(f, explicit=False) for f in files) if e is not None]
    if not entries:
        raise MissingFileError(f"folder '{folder}' holds no images or videos ({_supported_types()})")
    return entries


def _expand_txt(txt: Path) -> list[_Entry]:
    entries: list[_Entry] = []
    for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line)
        if not p.is_absolute() and not p.exists() and (txt.parent / p).exists():
            p = txt.parent / p
        found = _resolve_path(str(p), explicit=True)  # a listed file of an unsupported type is an error ...
        for e in found:
            e.explicit = False  # ... but an unreadable one is skipped, as in a folder
        entries.extend(found)
    if not entries:
        raise MissingFileError(f"source list '{txt}' names no images or videos")
    return entries


def _resolve_path(source: str, explicit: bool = True) -> list[_Entry]:
    low = source.lower()
    if low.startswith(("http://", "https://", "rtsp://", "rtmp://", "tcp://")) or source.isnumeric():
        raise SourceError(f"source '{source}': URLs, streams and webcams are not supported in this release; "
                         f"supported sources are {SUPPORTED_SOURCES}")
    p = Path(source).expanduser()
    if p.is_dir():
        return _expand_dir(p)
    if p.is_file():
        if _ext(p) == "txt":
            return _expand_txt(p)
        entry = _file_entry(str(p), explicit)
        return [entry] if entry else []
    if any(c in source for c in "*?["):
        return _expand_glob(str(p))
    raise MissingFileError(f"source '{source}' does not exist (expected an image or video file, a folder, a glob "
                            "or a .txt list of paths)")


def resolve_source(source: Any) -> list[_Entry]:
    """Flatten a source (or a list of sources) into entries; missing paths raise FileNotFoundError naming them."""
    if source is None:
        raise SourceError(f"no source given; pass one of: {SUPPORTED_SOURCES}")
    if isinstance(source, (list, tuple)):
        entries: list[_Entry] = []
        for s in source:
            entries.extend(resolve_source(s))
        return entries
    if isinstance(source, (str, Path)):
        return _resolve_path(str(source))
    if isinstance(source, (np.ndarray, Image.Image)):
        return [_Entry("array", "", data=source)]
    if isinstance(source, torch.Tensor):
        return [_Entry("tensor", "", data=t) for t in tensor_images(source)]
    raise TypeError(f"unsupported source type {type(source).__name__}; supported sources are {SUPPORTED_SOURCES}")


# ------------------------------------------------------------------------------------------------ the stream
class InferenceSource:
    """A lazy, iterable prediction source yielding `SourceItem`s, one image or video frame at a time.

    Unreadable images and videos found through a folder, glob or .txt list are skipped with a warning;
    one named directly raises UnreadableSourceError (a SourceError and an OSError). A video that stops decoding
    before its last frame ends there with a warning, after every frame decoded so far was yielded.
    `vid_stride` keeps every n-th video frame (frames 1, 1+n, ...).
    """

    def __init__(self, source: Any, vid_stride: int = 1):
        if int(vid_stride) < 1:
            raise ConfigError(f"vid_stride={vid_stride} must be an int >= 1")
        self.vid_stride = int(vid_stride)
        self.entries = resolve_source(source)
        self.skipped: list[str] = []
        n_mem = 0
        for e in self.entries:  # in-memory images get stable names image0.jpg, image1.jpg, ...
            if e.kind in ("array", "tensor"):
                e.path = f"image{n_mem}.jpg"
                n_mem += 1

    def __len__(self) -> int:
        """Number of files/arrays (a video counts once)."""
        return len(self.entries)

    @property
    def has_video(self) -> bool:
        return any(e.kind == "video" for e in self.entries)

    def __iter__(self) -> Iterator[SourceItem]:
        n = len(self.entries)
        for i, e in enumerate(self.entries, 1):
            if e.kind == "video":
                yield from self._video(e, i, n)
            elif e.kind == "image":
                im = self._read_image(e)
                if im is not None:
                    yield SourceItem(e.path, im, "image", i, n)
            elif e.kind == "array":
                yield SourceItem(e.path, to_bgr(e.data), "image", i, n)
            else:
                yield SourceItem(e.path, tensor_to_bgr(e.data), "tensor", i, n, tensor=e.data)

    def _unreadable(self, e: _Entry, why: str) -> None:
        if e.explicit:
            raise UnreadableSourceError(f"cannot read {e.kind} '{e.path}': {why}; pass a readable image or video "
                                        f"({_supported_types()})")
        self.skipped.append(e.path)
        LOGGER.warning(f"WARNING ⚠️ skipping unreadable {e.kind} '{e.path}': {why}")

    def _read_image(self, e: _Entry) -> np.ndarray | None:
        try:
            return imread(e.path)
        except OSError as err:
            self._unreadable(e, str(err).split(": ", 1)[-1])
            return None

    def _video(self, e: _Entry, index: int, count: int) -> Iterator[SourceItem]:
        cap = cv2.VideoCapture(e.path)
        try:
            if not cap.isOpened():
                self._unreadable(e, "OpenCV could not open it")
                return
            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) or 30.0
            kept = math.ceil(total / self.vid_stride) if total > 0 else 0
            read, frame_no = 0, 0
            while True:
                if not cap.grab():
                    break
                read += 1
                if (read - 1) % self.vid_stride:
                    continue
                ok, im = cap.retrieve()
                if not ok or im is None:
                    break
                frame_no += 1
                yield SourceItem(e.path, to_bgr(im), "video", index, count, frame=frame_no,
                                 frames=max(kept, frame_no), fps=fps / self.vid_stride)
            if frame_no == 0:
                self._unreadable(e, "no frames could be decoded")
            elif total > 0 and read < total:
                LOGGER.warning(f"WARNING ⚠️ video '{e.path}' stopped decoding after frame {read} of {total} "
                               f"(truncated or corrupt); keeping the {frame_no} frame(s) read so far")
        finally:
            cap.release()


def load_inference_source(source: Any, vid_stride: int = 1) -> InferenceSource:
    """Build the lazy prediction source for `source` (see the module docstring for what is accepted)."""
    return InferenceSource(source, vid_stride=vid_stride)
