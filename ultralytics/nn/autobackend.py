"""One inference interface over a PyTorch DetectionModel, an ONNX Runtime session and a TorchScript module.

`AutoBackend(weights)(im) -> y` with `im` (B, 3, H, W) float RGB in [0, 1] and `y` (B, 4 + nc, anchors):
xywh boxes in input pixels and class scores — the eval output of `Detect`, whatever runs it.
Exported files carry their metadata (names, stride, imgsz, batch, ...): ONNX in `metadata_props`,
TorchScript in the `config.txt` extra file, both JSON (see `ultralytics.engine.exporter`).
"""

from __future__ import annotations

import json
import warnings
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import yaml

from ultralytics.checkpoints import build_model_from_published, load_checkpoint, model_from_checkpoint
from ultralytics.errors import ConfigError, MissingFileError, UnsupportedError
from ultralytics.utils import LOGGER

BACKENDS = {".pt": "pt", ".onnx": "onnx", ".torchscript": "torchscript"}


def parse_metadata_value(text: str) -> Any:
    """A metadata value as data: JSON first (our files), else YAML safe_load (published files' Python-like text)."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def normalise_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """Typed metadata: names {int: str}, stride int, imgsz [h, w], batch int."""
    out = dict(meta)
    names = out.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if isinstance(names, dict):
        out["names"] = {int(k): str(v) for k, v in names.items()}
    if out.get("stride") is not None:
        out["stride"] = int(float(out["stride"]))
    if out.get("imgsz") is not None:
        s = out["imgsz"]
        out["imgsz"] = [int(s), int(s)] if isinstance(s, (int, float)) else [int(v) for v in s]
    if out.get("batch") is not None:
        out["batch"] = int(out["batch"])
    return out


class AutoBackend(nn.Module):
    """Run a `.pt` checkpoint / DetectionModel, an `.onnx` file or a `.torchscript` file the same way.

    Attributes: `backend` ('pt', 'onnx', 'torchscript'), `names` {id: name}, `stride` (int, largest),
    `imgsz` ([h, w] the file was exported at; None for PyTorch), `batch` (static batch of the file, None when
    any), `dynamic` (accepts any input size), `fp16`, `device`, `metadata` (dict read from the file).
    """

    def __init__(self, weights: str | Path | nn.Module, device: torch.device | str = "cpu", fp16: bool = False,
                 fuse: bool = True, verbose: bool = False):
        super().__init__()
        self.device = torch.device(device) if not isinstance(device, torch.device) else device
        if fp16 and self.device.type != "cuda":
            LOGGER.warning("WARNING ⚠️ half=True needs a CUDA device; running in FP32 on " + self.device.type)
            fp16 = False
        self.fp16 = fp16
        self.metadata: dict[str, Any] = {}
        self.imgsz: list[int] | None = None
        self.batch: int | None = None
        self.dynamic = True
        self.model: Any = None
        self.session: Any = None
        if isinstance(weights, nn.Module):
            self.backend, self.path = "pt", ""
            self._init_torch(weights, fuse)
        else:
            self.path = str(weights)
            suffix = Path(self.path).suffix.lower()
            if suffix not in BACKENDS:
                raise ConfigError(f"model '{self.path}' has an unsupported type '{suffix}'; supported model files are "
                                 f"{', '.join(BACKENDS)}")
            if not Path(self.path).is_file():
                raise MissingFileError(f"model file '{self.path}' not found")
            self.backend = BACKENDS[suffix]
            getattr(self, f"_init_{self.backend}")(fuse)
        self.names: dict[int, str] = self.metadata.get("names") or {}
        self.stride: int = int(self.metadata.get("stride") or 32)
        self.task: str = self.metadata.get("task", "detect")
        if verbose:
            LOGGER.info(f"Loaded {self.path or type(weights).__name__} ({self.backend}, {self.device}, "
                        f"{'fp16' if self.fp16 else 'fp32'})")

    # ------------------------------------------------------------------------------------------------ loaders
    def _init_pt(self, fuse: bool) -> None:
        ckpt = load_checkpoint(self.path)  # ours, or a published one through the allowlisted reader
        if ckpt.get("source") == "published":
            model = build_model_from_published(ckpt)
        else:
            model = model_from_checkpoint(ckpt)
        self._init_torch(model, fuse, copy=False)
        self.metadata.update({"date": ckpt.get("date"), "version": ckpt.get("version")})

    def _init_torch(self, model: nn.Module, fuse: bool, copy: bool = True) -> None:
        """Use a DetectionModel (a copy, so the caller's model is never fused or cast)."""
        model = deepcopy(model) if copy else model
        for p in model.parameters():
            p.requires_grad_(False)
        if fuse and hasattr(model, "fuse") and not getattr(model, "is_fused", lambda: True)():
            model.fuse(verbose=False)
        model = model.to(self.device).eval()
        model = model.half() if self.fp16 else model.float()
        self.model = model
        stride = getattr(model, "stride", None)
        self.metadata.update({"names": dict(getattr(model, "names", {}) or {}), "task": "detect",
                              "stride": int(max(stride.tolist())) if isinstance(stride, torch.Tensor) else 32})

    def _init_onnx(self, fuse: bool) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" in available:
                providers.insert(0, ("CUDAExecutionProvider", {"device_id": self.device.index or 0}))
            else:
                LOGGER.warning("WARNING ⚠️ onnxruntime has no CUDAExecutionProvider here; running the ONNX model "
                               "on the CPU")
                self.device = torch.device("cpu")
        options = ort.SessionOptions()
        # Idle worker threads would spin for a while after each run, taking CPU from the Python-side letterbox,
        # NMS and image decoding between runs (measured: ~10 ms more preprocessing per image on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(self.path, sess_options=options, providers=providers)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = normalise_metadata({k: parse_metadata_value(v) for k, v in meta.items()})
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.fp16 = inp.type == "tensor(float16)"
        b, _, h, w = inp.shape
        self.batch = b if isinstance(b, int) else None
        self.dynamic = not (isinstance(h, int) and isinstance(w, int))
        self.imgsz = [h, w] if not self.dynamic else self.metadata.get("imgsz")

    def _init_torchscript(self, fuse: bool) -> None:
        extra = {"config.txt": ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 marks torch.jit as deprecated
            self.model = torch.jit.load(self.path, map_location=self.device, _extra_files=extra)
        self.model.eval()
        if extra["config.txt"]:
            self.metadata = normalise_metadata(json.loads(extra["config.txt"]))
        self.fp16 = any(p.dtype == torch.float16 for p in self.model.parameters())
        self.imgsz = self.metadata.get("imgsz")
        self.batch = self.metadata.get("batch")
        self.dynamic = False  # traced at one input size

    # ------------------------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def forward(self, im: torch.Tensor, augment: bool = False, visualize: bool | str | Path = False,
                embed: list[int] | None = None) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """(B, 3, H, W) float RGB 0..1 → (B, 4 + nc, anchors) on `self.device` (float32). `augment`, `visualize`
        and `embed` are `DetectionModel.predict`'s options (PyTorch models only); with `embed` the result is one
        feature vector per image."""
        options = {"augment": augment, "visualize": visualize, "embed": embed}
        if any(options.values()):
            if self.backend != "pt":
                used = ", ".join(f"{k}=" for k, v in options.items() if v)
                raise UnsupportedError(f"{used} need(s) a PyTorch model (*.pt or *.yaml); {Path(self.path).name} is "
                                       f"an exported {self.backend} model")
            im = im.to(self.device, torch.float16 if self.fp16 else torch.float32)
            y = self.model.predict(im, **options)
            if embed:
                return y
            return (y[0] if isinstance(y, (list, tuple)) else y).float()
        if self.batch and im.shape[0] != self.batch:  # fixed-batch file: run it in chunks (the last one padded)
            outs = []
            for chunk in im.split(self.batch):
                n = chunk.shape[0]
                if n < self.batch:
                    chunk = torch.cat((chunk, chunk[-1:].expand(self.batch - n, *chunk.shape[1:])))
                outs.append(self._run(chunk)[:n])
            return torch.cat(outs)
        return self._run(im)

    def _run(self, im: torch.Tensor) -> torch.Tensor:
        if self.backend == "onnx":
            x = im.detach().cpu().numpy().astype(np.float16 if self.fp16 else np.float32)
            y = self.session.run(self.output_names, {self.input_name: x})[0]
            return torch.from_numpy(np.asarray(y, dtype=np.float32)).to(self.device)
        im = im.to(self.device, torch.float16 if self.fp16 else torch.float32)
        y = self.model(im)
        if isinstance(y, (list, tuple)):  # PyTorch eval output (y, raw)
            y = y[0]
        return y.float()

    def warmup(self, imgsz: tuple[int, int, int, int] = (1, 3, 640, 640)) -> None:
        """Forward passes on zeros (allocations, lazy initialisation, TorchScript's profiling runs) before timing."""
        for _ in range(2 if self.backend == "torchscript" else 1):
            self.forward(torch.zeros(imgsz, device=self.device))
