"""The YOLO facade: build from a yaml or load one of our checkpoints, then train / val (predict / export later)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ultralytics.utils import DEFAULT_CFG_PATH, SETTINGS

# Train keys a checkpoint passes on to later val()/train() calls on the same YOLO object.
CKPT_ARGS = ("imgsz", "data", "single_cls")


class YOLO:
    """YOLOv8 detector: `YOLO("yolov8_BiFormer.yaml")`, `YOLO("yolov8n.yaml")` or `YOLO("runs/.../best.pt")`."""

    task = "detect"

    def __init__(self, model: str | Path = "yolov8n.yaml", task: str | None = None, verbose: bool = False):
        if task not in (None, "detect"):
            raise NotImplementedError(f"task={task!r} is not supported: only detect is supported in this release")
        self.model: nn.Module
        self.ckpt: dict | None = None
        self.ckpt_path: str | None = None
        self.cfg: str | None = None
        self.overrides: dict[str, Any] = {}
        self.trainer: Any = None
        self.metrics: Any = None
        self._has_weights = False
        name = str(model).strip()
        suffix = Path(name).suffix.lower()
        if suffix in (".yaml", ".yml"):
            self._new(name, verbose)
        elif suffix == ".pt":
            self._load(name)
        elif suffix in (".onnx", ".torchscript"):
            self._load_exported(name)
        else:
            raise ValueError(f"model={name!r} is neither a model yaml (e.g. yolov8n.yaml, yolov8_BiFormer.yaml) "
                             "nor a *.pt checkpoint nor an exported *.onnx / *.torchscript file")

    def _new(self, cfg: str, verbose: bool) -> None:
        from ultralytics.nn.tasks import DetectionModel

        self.model = DetectionModel(cfg, verbose=verbose)
        self.cfg = cfg
        self.overrides = {"model": cfg}

    def _load(self, weights: str) -> None:
        from ultralytics.utils.checkpoint import load_checkpoint, model_from_checkpoint
        from ultralytics.utils.published import build_model_from_published

        path = Path(weights)
        if not path.is_file():
            alt = Path(SETTINGS["weights_dir"]) / path.name
            if path.parent == Path(".") and alt.is_file():
                path = alt
            else:
                raise FileNotFoundError(f"model checkpoint '{weights}' not found; give the path of a *.pt file "
                                        f"(e.g. runs/detect/train/weights/best.pt) or build a new model from a yaml "
                                        f"(e.g. model=yolov8n.yaml)")
        self.ckpt = load_checkpoint(path)  # ours, or a published checkpoint through the allowlisted reader
        published = self.ckpt.get("source") == "published"
        self.model = build_model_from_published(self.ckpt) if published else model_from_checkpoint(self.ckpt)
        self.ckpt_path = str(path)
        self._has_weights = True
        args = self.ckpt.get("train_args") or {}
        self.overrides = {k: args[k] for k in CKPT_ARGS if args.get(k) is not None}
        self.overrides["model"] = str(path)

    def _load_exported(self, path: str) -> None:
        """An exported model (ONNX Runtime or TorchScript): predict only."""
        from ultralytics.nn.autobackend import AutoBackend

        self.model = AutoBackend(path)  # clear FileNotFoundError / ValueError inside; names/stride/imgsz from metadata
        self.exported = path
        self.overrides = {"model": path}

    def _require_trainable(self, mode: str) -> None:
        if getattr(self, "exported", None):
            raise ValueError(f"{mode} needs a *.yaml or *.pt model; {self.exported} is an exported model (predict only)")

    # ---------------------------------------------------------------------------------------------------- weights
    def load(self, weights: str | Path | dict | nn.Module) -> YOLO:
        """Transfer every tensor whose name and shape match from `weights` (*.pt, state_dict or model)."""
        from ultralytics.utils.checkpoint import transfer_weights, weights_of

        transfer_weights(self.model, weights_of(weights))
        self._has_weights = True
        if isinstance(weights, (str, Path)):
            self.overrides["pretrained"] = str(weights)
        return self

    # ---------------------------------------------------------------------------------------------------- modes
    def train(self, trainer: Any = None, **kwargs: Any) -> Any:
        """Train on kwargs (any config key; cfg=custom.yaml too); returns the final validation metrics of best.pt.

        Afterwards this object holds the best model (best.pt) and `ckpt_path` points at it. Several CUDA devices
        (device=0,1,...) outside torchrun start one DDP worker per GPU through torchrun (engine/ddp.py).
        """
        from ultralytics.engine import ddp
        from ultralytics.engine.trainer import DetectionTrainer

        self._require_trainable("train")
        overrides = {k: v for k, v in self.overrides.items() if k != "pretrained"}
        overrides.update(kwargs)
        overrides["mode"] = "train"
        if overrides.get("resume") is True and self.ckpt_path:
            overrides["resume"] = self.ckpt_path  # `yolo train resume model=.../last.pt` resumes that file
        overrides["model"] = self.ckpt_path or self.cfg
        weights = self.model if self._has_weights else None
        nproc = ddp.processes_to_launch(overrides)
        if nproc:
            result = ddp.launch(overrides, nproc, model=self.model.yaml, weights=weights, trainer=trainer)
            self.trainer, self.metrics = None, result.metrics
            self._adopt_trained(result.best, None, result.args.get("data"), result.imgsz, result.args.get("single_cls"))
            return self.metrics
        cls = trainer or DetectionTrainer
        self.trainer = cls(overrides=overrides, model=self.model.yaml, weights=weights)
        self.metrics = self.trainer.train()
        t = self.trainer
        self._adopt_trained(t.best, t.ema.ema if t.ema is not None else None, t.args.data, t.imgsz, t.args.single_cls)
        return self.metrics

    def _adopt_trained(self, best: Path, ema: nn.Module | None, data: Any, imgsz: Any, single_cls: Any) -> None:
        """Hold the trained model: best.pt when it exists, else the final EMA model."""
        from ultralytics.utils.checkpoint import load_checkpoint, model_from_checkpoint

        if best.exists():
            self.ckpt = load_checkpoint(best)
            self.model = model_from_checkpoint(self.ckpt)
            self.ckpt_path = str(best)
        elif ema is not None:
            self.model = ema
        self._has_weights = True
        self.overrides = {"model": self.ckpt_path or self.cfg, "data": data, "imgsz": imgsz, "single_cls": single_cls}

    def val(self, validator: Any = None, **kwargs: Any) -> Any:
        """Validate on kwargs (data=, split=, imgsz=, batch=, conf=, iou=, ...); returns the DetMetrics."""
        from ultralytics.cfg import get_cfg
        from ultralytics.engine.validator import DetectionValidator

        overrides = {**{k: v for k, v in self.overrides.items() if k != "pretrained"}, "rect": True, **kwargs,
                     "mode": "val"}
        args = get_cfg(DEFAULT_CFG_PATH, overrides)
        v = (validator or DetectionValidator)(args)
        self.metrics = v(model=self.model)
        return self.metrics

    def predict(self, source: Any = None, stream: bool = False, **kwargs: Any) -> Any:
        """Detect objects in `source` (path, folder, glob, video, array, PIL image, tensor or a list);
        returns a list of Results, or a generator of them with stream=True."""
        from ultralytics.engine.predictor import DetectionPredictor

        args = {**{k: v for k, v in self.overrides.items() if k in ("imgsz", "data")}, **kwargs}
        return DetectionPredictor(overrides=args)(source, model=self.model, stream=stream)

    def __call__(self, source: Any = None, stream: bool = False, **kwargs: Any) -> Any:
        return self.predict(source, stream=stream, **kwargs)

    def export(self, **kwargs: Any) -> str:
        """Export to format=onnx or torchscript; returns the path of the exported file."""
        from ultralytics.engine.exporter import export_model

        self._require_trainable("export")
        args = {**{k: v for k, v in self.overrides.items() if k in ("imgsz", "data")}, **kwargs}
        return export_model(self.model, self.ckpt_path, **args)

    # ---------------------------------------------------------------------------------------------------- model
    def info(self, detailed: bool = False, verbose: bool = True) -> tuple:
        """Print and return (layers, parameters, gradients, GFLOPs)."""
        return self.model.info(detailed=detailed, verbose=verbose)

    def fuse(self) -> YOLO:
        """Fold BatchNorm into the convolutions (inference only)."""
        self.model.fuse(verbose=False)
        return self

    def to(self, device: str | torch.device) -> YOLO:
        from ultralytics.utils.torch_utils import select_device

        self.model.to(select_device(device) if not isinstance(device, torch.device) else device)
        return self

    @property
    def device(self) -> torch.device:
        dev = getattr(self.model, "device", None)  # AutoBackend (ONNX) has no parameters
        return dev if isinstance(dev, torch.device) else next(self.model.parameters()).device

    @property
    def names(self) -> dict[int, str]:
        return self.model.names

    def __repr__(self) -> str:
        src = self.ckpt_path or self.cfg
        return f"YOLO(model={src!r}, nc={self.model.model[-1].nc})"
