"""Prediction: source → letterbox → model (any AutoBackend) → NMS → `Results` in original-image pixels.

    predictor = DetectionPredictor(overrides={"conf": 0.25, "imgsz": 640, "save": True})
    results = predictor("path/to/images", model="runs/detect/train/weights/best.pt")   # list of Results
    for r in predictor("video.mp4", model="best.onnx", stream=True): ...                # lazy generator

Letterbox: single images (and batches of images of one shape) get the minimal padding to multiples of the
stride (`rect=True`, the predict default); batches of mixed shapes, `rect=False` and fixed-size exported
models (static ONNX, TorchScript) get the full imgsz × imgsz letterbox. Tensor sources are fed as given.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import torch
import torch.nn as nn

from ultralytics.cfg import DEFAULT_CFG_DICT, IterableSimpleNamespace, get_cfg
from ultralytics.data.augment import LetterBox
from ultralytics.data.loaders import InferenceSource, SourceItem
from ultralytics.engine.callbacks import CallbackHost, get_default_callbacks
from ultralytics.engine.results import Results
from ultralytics.engine.run_files import get_save_dir
from ultralytics.errors import ConfigError, SourceError
from ultralytics.nn.autobackend import AutoBackend
from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_PATH, LOGGER
from ultralytics.utils.checks import check_imgsz
from ultralytics.utils.files import increment_path
from ultralytics.utils.plotting import save_image
from ultralytics.utils.ops import non_max_suppression, scale_boxes
from ultralytics.utils.torch_utils import select_device


# Predict-mode defaults that differ from default.yaml (which holds the training values).
class DetectionPredictor(CallbackHost):
    """Run a detector over a source; configure with default.yaml keys (conf, iou, imgsz, save, ...)."""

    def __init__(self, cfg: str | Path | dict | IterableSimpleNamespace | None = DEFAULT_CFG_PATH,
                 overrides: dict[str, Any] | None = None, _callbacks: dict | None = None):
        """`cfg` is the validated config of the run (from the YOLO facade), or a yaml/dict merged with `overrides`
        into one (mode=predict) when the predictor is used on its own. `_callbacks` ({event: [fn]}, used as given)
        are called with this predictor at on_predict_start, on_predict_batch_start, on_predict_postprocess_end
        (`self.results` holds the batch's Results), on_predict_batch_end and on_predict_end."""
        cfg = DEFAULT_CFG_PATH if cfg is DEFAULT_CFG else cfg
        self.callbacks = _callbacks if _callbacks is not None else get_default_callbacks()
        if isinstance(cfg, IterableSimpleNamespace) and not overrides:
            self.args = cfg
        else:
            overrides = {k: v for k, v in (overrides or {}).items() if k != "source"}
            self.args = get_cfg(cfg, {**overrides, "mode": "predict"})
        self.model: AutoBackend | None = None
        self.save_dir: Path | None = None
        self.imgsz: list[int] = [640, 640]
        self._writers: dict[str, cv2.VideoWriter] = {}
        self.seen = 0
        self.speed: dict[str, float] = {}
        self.batch: list[SourceItem] = []  # the batch being predicted and its Results (for callbacks)
        self.results: list[Results] = []

    # ------------------------------------------------------------------------------------------------ setup
    def setup_model(self, model: str | Path | nn.Module | AutoBackend) -> AutoBackend:
        """Wrap `model` (a .pt/.onnx/.torchscript path, a DetectionModel or an AutoBackend) for inference."""
        if isinstance(model, AutoBackend):
            self.model = model
        else:
            device = select_device(self.args.device, verbose=False)
            # embed / visualize show layer outputs as built: fusing would fold BRA's output projection away
            fuse = not (self.args.embed or self.args.visualize)
            self.model = AutoBackend(model, device=device, fp16=bool(self.args.half), fuse=fuse)
        self.imgsz = self._resolve_imgsz()
        return self.model

    def _resolve_imgsz(self) -> list[int]:
        m = self.model
        want = self.args.imgsz
        size = [int(v) for v in want] if isinstance(want, (list, tuple)) else [int(want)]
        size = size * 2 if len(size) == 1 else size
        if not m.dynamic and m.imgsz:
            if size != list(m.imgsz) and want != DEFAULT_CFG_DICT["imgsz"]:
                LOGGER.warning(f"WARNING ⚠️ {Path(m.path).name} was exported at imgsz={m.imgsz} and runs only at "
                               f"that size; imgsz={want} ignored")
            return list(m.imgsz)
        return check_imgsz(size, m.stride)

    def _setup_save_dir(self) -> Path | None:
        a = self.args
        if not (a.save or a.save_txt or a.save_crop or a.save_frames or a.visualize):
            return None
        default_name = "track" if a.mode == "track" else "predict"
        d = Path(a.save_dir) if a.get("save_dir") else get_save_dir(a.project, a.name or default_name, a.exist_ok)
        d.mkdir(parents=True, exist_ok=True)
        if a.save_txt:
            (d / "labels").mkdir(exist_ok=True)
        return d

    # ------------------------------------------------------------------------------------------------ running
    def __call__(self, source: Any = None, model: Any = None,
                 stream: bool = False) -> list[Results] | Iterator[Results]:
        """Predict on `source`: a list of Results, or a lazy generator of them with stream=True."""
        gen = self.stream_inference(source, model)
        return gen if stream else list(gen)

    def stream_inference(self, source: Any = None, model: Any = None) -> Iterator[Results]:
        """Generator of Results, one per image / video frame; reads the source lazily (constant memory)."""
        if model is not None or self.model is None:
            if model is None:
                raise ConfigError("no model given: pass model= (a .pt, .onnx or .torchscript file, or a DetectionModel)")
            self.setup_model(model)
        src = InferenceSource(source, vid_stride=self.args.vid_stride)  # resolves paths now: errors surface early
        # a list of images is one batch of all of them whatever `batch` says, as in the published package
        self._batch_size = len(source) if isinstance(source, (list, tuple)) and source else int(self.args.batch)
        return self._run(src)

    def _run(self, src: InferenceSource) -> Iterator[Results]:
        self.save_dir = self._setup_save_dir()
        self.seen, totals, shape = 0, [0.0, 0.0, 0.0], None
        self.run_callbacks("on_predict_start")
        try:
            for batch in self._batches(src):
                self.batch = batch
                self.run_callbacks("on_predict_batch_start")
                if not getattr(self.model, "warm", False):  # the first call initialises lazily: keep it out of timings
                    self.model.warmup((1, 3, *self.imgsz))
                    self.model.warm = True
                t0 = time.perf_counter()
                im, ratio_pads = self.preprocess(batch)
                t1 = time.perf_counter()
                preds = self.inference(im)
                t2 = time.perf_counter()
                if self.args.embed:  # feature vectors, one per image, instead of Results
                    totals[0] += (t1 - t0) * 1e3
                    totals[1] += (t2 - t1) * 1e3
                    self.seen, shape = self.seen + len(batch), tuple(im.shape)
                    yield from preds
                    continue
                self.results = results = self.postprocess(preds, im, batch, ratio_pads)
                t3 = time.perf_counter()
                self.run_callbacks("on_predict_postprocess_end")
                n = len(batch)
                speed = {"preprocess": (t1 - t0) * 1e3 / n, "inference": (t2 - t1) * 1e3 / n,
                         "postprocess": (t3 - t2) * 1e3 / n}
                totals = [t + v * n for t, v in zip(totals, speed.values())]
                shape = tuple(im.shape)
                for item, r in zip(batch, results):
                    self.seen += 1
                    r.speed = dict(speed)
                    r.save_dir = str(self.save_dir) if self.save_dir else None
                    self.write_results(item, r, im.shape[2:])
                    yield r
                self.run_callbacks("on_predict_batch_end")
        finally:
            for w in self._writers.values():
                w.release()
            self._writers.clear()
        self._summary(totals, shape)
        self.run_callbacks("on_predict_end")

    def _batches(self, src: InferenceSource) -> Iterator[list[SourceItem]]:
        """Group consecutive items into batches of `batch` (a list source: its length); tensor sources are never
        mixed with images."""
        bs, batch = max(getattr(self, "_batch_size", int(self.args.batch)), 1), []
        for item in src:
            if batch and (len(batch) == bs or (item.kind == "tensor") != (batch[0].kind == "tensor")):
                yield batch
                batch = []
            batch.append(item)
        if batch:
            yield batch

    def preprocess(self, batch: list[SourceItem]) -> tuple[torch.Tensor, list[tuple]]:
        """Items → (B, 3, H, W) float RGB 0..1 on the model's device, plus each image's letterbox ratio_pad."""
        m = self.model
        if batch[0].kind == "tensor":
            im = torch.stack([it.tensor for it in batch])
            h, w = im.shape[2:]
            if h % m.stride or w % m.stride:
                raise SourceError(f"tensor source of size {h}x{w} is not a multiple of the model stride {m.stride}; "
                                 f"resize it (e.g. to {self.imgsz[0]}x{self.imgsz[1]}) or pass a numpy/PIL image")
            if not m.dynamic and m.imgsz and [h, w] != list(m.imgsz):
                raise SourceError(f"tensor source of size {h}x{w} does not match the exported model's input "
                                 f"{m.imgsz[0]}x{m.imgsz[1]}")
            ratio_pads = [((1.0, 1.0), (0, 0))] * len(batch)
        else:
            same = all(it.im0.shape == batch[0].im0.shape for it in batch)
            auto = bool(self.args.rect) and same and m.dynamic
            letterbox = LetterBox(tuple(self.imgsz), auto=auto, stride=m.stride)
            ims, ratio_pads = [], []
            for it in batch:
                out = letterbox({"img": it.im0, "bboxes": np.zeros((0, 4), np.float32)})
                ims.append(out["img"])
                ratio_pads.append(out["ratio_pad"])
            arr = np.ascontiguousarray(np.stack(ims)[..., ::-1].transpose(0, 3, 1, 2))  # BGR HWC → RGB CHW
            im = torch.from_numpy(arr)
        im = im.to(m.device)
        im = im.half() if m.fp16 else im.float()
        if not batch[0].kind == "tensor":
            im /= 255.0
        return im, ratio_pads

    def inference(self, im: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The model on a preprocessed batch, with the augment / visualize / embed options of the config."""
        a = self.args
        y = self.model(im, augment=bool(a.augment), visualize=self._visualize_dir(), embed=a.embed or None)
        if isinstance(y, tuple):  # embed: one vector per image
            return y
        if y.device.type == "cuda":
            torch.cuda.synchronize(y.device)
        return y

    def _visualize_dir(self) -> Path | bool:
        """visualize=True: a new folder per batch, save_dir/<first image's stem>[2, 3, ...]; else False."""
        if not self.args.visualize or self.save_dir is None or self.batch[0].kind == "tensor":
            return False
        return increment_path(self.save_dir / Path(self.batch[0].path).stem, mkdir=True)

    def postprocess(self, preds: torch.Tensor, im: torch.Tensor, batch: list[SourceItem],
                    ratio_pads: list[tuple]) -> list[Results]:
        """NMS, then boxes mapped from the letterboxed input back to each original image."""
        a = self.args
        classes = None if a.classes is None else ([a.classes] if isinstance(a.classes, int) else list(a.classes))
        dets = non_max_suppression(preds, conf_thres=a.conf, iou_thres=a.iou, classes=classes,
                                   agnostic=a.agnostic_nms, max_det=a.max_det)
        results = []
        for det, item, rp in zip(dets, batch, ratio_pads):
            det = det.float()
            det[:, :4] = scale_boxes(im.shape[2:], det[:, :4], item.im0.shape[:2], ratio_pad=rp)
            results.append(Results(item.im0, item.path, self.model.names, boxes=det))
        return results

    # ------------------------------------------------------------------------------------------------ output
    def write_results(self, item: SourceItem, r: Results, input_hw: tuple[int, int]) -> None:
        """Log the progress line and save whatever save/save_txt/save_crop/save_frames ask for."""
        a = self.args
        if a.verbose:
            LOGGER.info(f"{item.info}{input_hw[0]}x{input_hw[1]} {r.verbose()}{r.speed['inference']:.1f}ms")
        stem = Path(item.path).stem + (f"_{item.frame}" if item.kind == "video" else "")
        if self.save_dir is None and not a.show:
            return
        plotted = None
        if a.save or a.show or a.save_frames:
            plotted = r.plot(conf=a.show_conf, labels=a.show_labels, boxes=a.show_boxes, line_width=a.line_width)
        if a.show:
            r.show(conf=a.show_conf, labels=a.show_labels, boxes=a.show_boxes, line_width=a.line_width)
        if self.save_dir is None:
            return
        if a.save_txt:
            r.save_txt(self.save_dir / "labels" / f"{stem}.txt", save_conf=a.save_conf)
        if a.save_crop:
            r.save_crop(self.save_dir / "crops", file_name=stem)
        if a.save_frames and item.kind == "video":
            frames_dir = self.save_dir / f"{Path(item.path).stem}_frames"
            frames_dir.mkdir(exist_ok=True)
            save_image(plotted, frames_dir / f"{stem}.jpg")
        if a.save:
            if item.kind == "video":
                self._write_frame(item, plotted)
            else:
                save_image(plotted, self.save_dir / Path(item.path).name)

    def _write_frame(self, item: SourceItem, frame: np.ndarray) -> None:
        """Append a frame to the annotated video (save_dir/<stem>.mp4, mp4v), opening it on the first frame."""
        writer = self._writers.get(item.path)
        if writer is None:
            for w in self._writers.values():  # one video at a time: close the previous one
                w.release()
            self._writers.clear()
            out = self.save_dir / f"{Path(item.path).stem}.mp4"
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), item.fps or 30.0, (w, h))
            if not writer.isOpened():
                raise OSError(f"cannot open video writer for '{out}' (mp4v codec missing from OpenCV?)")
            self._writers[item.path] = writer
        writer.write(frame)

    def _summary(self, totals: list[float], shape: tuple | None) -> None:
        n = max(self.seen, 1)
        self.speed = {"preprocess": totals[0] / n, "inference": totals[1] / n, "postprocess": totals[2] / n}
        if not self.args.verbose or not self.seen:
            return
        LOGGER.info(f"Speed: {self.speed['preprocess']:.1f}ms preprocess, {self.speed['inference']:.1f}ms inference, "
                    f"{self.speed['postprocess']:.1f}ms postprocess per image at shape {shape}")
        if self.save_dir is not None:
            LOGGER.info(f"Results saved to {self.save_dir}")
            if self.args.save_txt:
                n_labels = len(list((self.save_dir / "labels").glob("*.txt")))
                LOGGER.info(f"{n_labels} label{'s' * (n_labels != 1)} saved to {self.save_dir / 'labels'}")


def predict(model: str | Path | nn.Module | AutoBackend, source: Any, stream: bool = False,
            **overrides: Any) -> list[Results] | Iterator[Results]:
    """Predict with `model` on `source` (config keys as keyword arguments); list of Results, or a generator."""
    return DetectionPredictor(overrides=overrides)(source, model=model, stream=stream)
