"""The YOLO facade: build from a yaml or load a checkpoint or an exported model; train, val, predict, export.

Each mode call is one run: `config(mode, overrides)` makes its validated config once (the edge), and the
`run_<mode>` methods take that config and hand it to the trainer, validator, predictor or exporter. The `yolo`
command builds the config itself and calls `run_<mode>` directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from ultralytics.cfg import DEFAULT_MODEL, IterableSimpleNamespace, check_cfg, get_cfg
from ultralytics.checkpoints import (atomic_save, build_model_from_published, load_checkpoint, make_checkpoint,
                                     model_from_checkpoint, transfer_weights, weights_of)
from ultralytics.engine import callbacks as cb
from ultralytics.engine import ddp
from ultralytics.engine.benchmark import Table, benchmark_model
from ultralytics.engine.exporter import Exporter
from ultralytics.engine.predictor import DetectionPredictor
from ultralytics.engine.resume import ResumePoint, build_train_config
from ultralytics.engine.run_files import TrainResult
from ultralytics.engine.trainer import DetectionTrainer
from ultralytics.engine.validator import DetectionValidator
from ultralytics.errors import ConfigError, MissingFileError, UnsupportedError
from ultralytics.nn.autobackend import AutoBackend
from ultralytics.nn.tasks import DetectionModel
from ultralytics.trackers import register_tracker
from ultralytics.utils import ASSETS, DEFAULT_CFG_PATH, LOGGER, SETTINGS
from ultralytics.utils.torch_utils import select_device

# Train keys a checkpoint passes on to later val()/train() calls on the same YOLO object.
CKPT_ARGS = ("imgsz", "data", "single_cls")


class YOLO:
    """YOLOv8 detector: `YOLO("yolov8_BiFormer.yaml")`, `YOLO("yolov8n.yaml")` or `YOLO("runs/.../best.pt")`."""

    task = "detect"

    def __init__(self, model: str | Path = DEFAULT_MODEL, task: str | None = None, verbose: bool = False):
        if task not in (None, "detect"):
            raise UnsupportedError(f"task={task!r} is not supported: only detect is supported in this release")
        self.model: nn.Module
        self.ckpt: dict | None = None
        self.ckpt_path: str | None = None
        self.cfg: str | None = None
        self.overrides: dict[str, Any] = {}
        self.trainer: Any = None
        self.predictor: DetectionPredictor | None = None  # the last predict run's, reused while its config holds
        self._predictor_key: dict[str, Any] = {}
        self.metrics: Any = None
        self.callbacks: dict[str, list[Callable]] = cb.get_default_callbacks()
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
            raise ConfigError(f"model={name!r} is neither a model yaml (e.g. yolov8n.yaml, yolov8_BiFormer.yaml) "
                             "nor a *.pt checkpoint nor an exported *.onnx / *.torchscript file")

    def _new(self, cfg: str, verbose: bool) -> None:
        self.model = DetectionModel(cfg, verbose=verbose)
        self.cfg = cfg
        self.overrides = {"model": cfg}

    def _load(self, weights: str) -> None:
        path = Path(weights)
        if not path.is_file():
            alt = Path(SETTINGS["weights_dir"]) / path.name
            if path.parent == Path(".") and alt.is_file():
                path = alt
            else:
                raise MissingFileError(f"model checkpoint '{weights}' not found; give the path of a *.pt file "
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
        self.model = AutoBackend(path)  # clear FileNotFoundError / ValueError inside; names/stride/imgsz from metadata
        self.exported = path
        self.overrides = {"model": path}

    def _require_trainable(self, mode: str) -> None:
        if getattr(self, "exported", None):
            raise ConfigError(f"{mode} needs a *.yaml or *.pt model; {self.exported} is an exported model (predict only)")

    # ---------------------------------------------------------------------------------------------------- weights
    def load(self, weights: str | Path | dict | nn.Module) -> YOLO:
        """Transfer every tensor whose name and shape match from `weights` (*.pt, state_dict or model)."""
        transfer_weights(self.model, weights_of(weights))
        self._has_weights = True
        if isinstance(weights, (str, Path)):
            self.overrides["pretrained"] = str(weights)
        return self

    def reset_weights(self) -> YOLO:
        """Re-initialise every parameter and buffer as a fresh build of the model's yaml would (names, device and
        train/eval mode are kept); every parameter requires grad afterwards."""
        self._require_trainable("reset_weights")
        old, device = self.model, self.device
        fresh = DetectionModel(old.yaml, verbose=False)
        fresh.names, fresh.args = old.names, old.args
        fresh.train(old.training)
        self.model = fresh.to(device)
        for p in self.model.parameters():
            p.requires_grad_(True)
        return self

    def save(self, filename: str | Path = "saved_model.pt") -> None:
        """Write the current model as a checkpoint of this project's format; `YOLO(filename)` loads it back."""
        self._require_trainable("save")
        if self.model.is_fused():
            raise ConfigError("cannot save a fused model (its BatchNorm is folded away); save before calling fuse()")
        args = dict((self.ckpt or {}).get("train_args") or {})
        args.update({k: v for k, v in self.overrides.items() if k in CKPT_ARGS})
        atomic_save(make_checkpoint(self.model, train_args=args, finished=True), filename)

    # ---------------------------------------------------------------------------------------------------- callbacks
    def add_callback(self, event: str, func: Callable) -> None:
        """Call func(component) at `event` in every run of this object (trainer, validator, predictor or
        exporter, whichever fires it; see ultralytics/engine/callbacks.py for the events)."""
        cb.add_callback(self.callbacks, event, func)

    def clear_callback(self, event: str) -> None:
        """Remove every function of `event`."""
        cb.check_event(event)
        self.callbacks[event] = []

    def reset_callbacks(self) -> None:
        """Back to the default callbacks: no function for any event."""
        self.callbacks = cb.get_default_callbacks()

    # ---------------------------------------------------------------------------------------------------- config
    def config(self, mode: str, overrides: dict[str, Any] | None = None) -> IterableSimpleNamespace:
        """The one validated config of a `mode` run on this model: default.yaml < the mode's defaults < what this
        object carries over from its checkpoint or its last training (imgsz, data, single_cls) < `overrides`."""
        carried = {k: v for k, v in self.overrides.items() if k in CKPT_ARGS}
        return get_cfg(carried, {**(overrides or {}), "model": self._source(), "mode": mode})

    def carry_over(self, args: IterableSimpleNamespace, given: set[str]) -> IterableSimpleNamespace:
        """`args` (a config made elsewhere, e.g. by the `yolo` command) with what this object carries over from its
        checkpoint (imgsz, data, single_cls) for the keys the user did not give."""
        carried = {k: v for k, v in self.overrides.items() if k in CKPT_ARGS and k not in given and v is not None}
        for key, value in check_cfg(carried, " (from the checkpoint)").items():
            setattr(args, key, value)
        return args

    def _source(self) -> str | None:
        return getattr(self, "exported", None) or self.ckpt_path or self.cfg

    # ---------------------------------------------------------------------------------------------------- modes
    def train(self, trainer: Any = None, **kwargs: Any) -> Any:
        """Train on kwargs (any config key; cfg=custom.yaml too); returns the final validation metrics of best.pt.

        Afterwards this object holds the best model (best.pt) and `ckpt_path` points at it. Several CUDA devices
        (device=0,1,...) outside torchrun start one DDP worker per GPU through torchrun (engine/ddp.py).
        """
        self._require_trainable("train")
        overrides = {k: v for k, v in self.overrides.items() if k in CKPT_ARGS}
        overrides.update(kwargs)
        if overrides.get("resume") is True and self.ckpt_path:
            overrides["resume"] = self.ckpt_path  # `yolo train resume model=.../last.pt` resumes that file
        overrides["model"] = self._source()
        args, resume = build_train_config(DEFAULT_CFG_PATH, overrides)
        return self.run_train(args, resume, trainer)

    def run_train(self, args: IterableSimpleNamespace, resume: ResumePoint | None = None, trainer: Any = None) -> Any:
        """Train with a validated config (see `train`); in this process, or with DDP workers for several GPUs."""
        weights = self.model if self._has_weights else None
        nproc = ddp.processes_to_launch(args)
        if nproc:
            if any(self.callbacks.values()):
                LOGGER.warning("WARNING ⚠️ callbacks do not travel to the DDP workers this call launches and will not "
                               "run; start your script with torchrun to use them (docs/distributed.md)")
            self.trainer = None
            result = ddp.launch(args, nproc, model=self.model.yaml, weights=weights, trainer=trainer, resume=resume)
        else:
            self.trainer = (trainer or DetectionTrainer)(args, model=self.model.yaml, weights=weights, resume=resume,
                                                         _callbacks=self.callbacks)
            result = self.trainer.train()
        self._adopt_trained(result)
        return self.metrics

    def _adopt_trained(self, result: TrainResult) -> None:
        """Hold the trained model: best.pt when it exists, else the final EMA model; carry the run's data on."""
        if result.best.exists():
            self.ckpt = load_checkpoint(result.best)
            self.model = model_from_checkpoint(self.ckpt)
            self.ckpt_path = str(result.best)
        elif result.model is not None:
            self.model = result.model
        self._has_weights = True
        self.metrics = result.metrics
        self.overrides = {"model": self._source(), "imgsz": result.imgsz,
                          **{k: result.args.get(k) for k in ("data", "single_cls")}}

    def val(self, validator: Any = None, **kwargs: Any) -> Any:
        """Validate on kwargs (data=, split=, imgsz=, batch=, conf=, iou=, ...); returns the DetMetrics."""
        return self.run_val(self.config("val", kwargs), validator)

    def run_val(self, args: IterableSimpleNamespace, validator: Any = None) -> Any:
        """Validate with a validated config (see `val`)."""
        self.metrics = (validator or DetectionValidator)(args, _callbacks=self.callbacks)(model=self.model)
        return self.metrics

    def predict(self, source: Any = None, stream: bool = False, **kwargs: Any) -> Any:
        """Detect objects in `source` (path, folder, glob, video, array, PIL image, tensor or a list);
        returns a list of Results, or a generator of them with stream=True."""
        kwargs.pop("source", None)
        return self.run_predict(self.config("predict", kwargs), source, stream)

    def run_predict(self, args: IterableSimpleNamespace, source: Any = None, stream: bool = False) -> Any:
        """Predict with a validated config (see `predict`). Without any source the bundled sample images
        (`ultralytics.utils.ASSETS`) are used, with a warning, as the published package does."""
        predictor = self._predictor_for(args)
        return predictor(self._source_or_assets(source, args), model=self.model, stream=stream)

    def track(self, source: Any = None, stream: bool = False, persist: bool = False, **kwargs: Any) -> Any:
        """Detect and track objects over the frames of `source` (a video, a folder of frames, or one frame per call
        with `persist=True`, which keeps the trackers between calls); `tracker=bytetrack.yaml|botsort.yaml|own.yaml`,
        conf 0.1 by default. Results carry `boxes.id`. See docs/tracking.md."""
        kwargs.pop("source", None)
        return self.run_track(self.config("track", kwargs), source, stream, persist)

    def run_track(self, args: IterableSimpleNamespace, source: Any = None, stream: bool = False,
                  persist: bool = False) -> Any:
        """Track with a validated config (see `track`)."""
        predictor = self._predictor_for(args, persist=persist)
        return predictor(self._source_or_assets(source, args), model=self.model, stream=stream)

    @staticmethod
    def _source_or_assets(source: Any, args: IterableSimpleNamespace) -> Any:
        source = source if source is not None else args.source
        if source is None:
            LOGGER.warning(f"WARNING ⚠️ no source given, predicting on the bundled sample images: source={ASSETS}")
            source = ASSETS
        return source

    def _predictor_for(self, args: IterableSimpleNamespace, persist: bool | None = None) -> DetectionPredictor:
        """The last predictor when `args` equals its config apart from the source (it then keeps writing into its
        run folder, and a tracking one keeps its trackers when `persist`), else a new one. A tracking predictor
        (`persist` given) gets its own copy of this object's callbacks plus the tracker's."""
        key = {k: v for k, v in vars(args).items() if k != "source"}
        last = self.predictor
        if last is not None and key == self._predictor_key:
            if last.save_dir is not None:  # one run folder for every call
                last.args.save_dir = str(last.save_dir)
            predictor = last
        else:
            predictor = self.predictor = DetectionPredictor(args, _callbacks=self.callbacks)
            self._predictor_key = key
        if persist is None:
            predictor.callbacks = self.callbacks
        else:
            predictor.callbacks = cb.copy_callbacks(self.callbacks)
            register_tracker(predictor, persist)
        return predictor

    def embed(self, source: Any = None, stream: bool = False, **kwargs: Any) -> Any:
        """One feature vector per image (a list of 1-D tensors, or a generator with stream=True): the layers named
        by embed=[...] average-pooled and concatenated; by default the last layer before the Detect head."""
        if not kwargs.get("embed"):
            kwargs["embed"] = [len(self.model.model) - 2]
        return self.predict(source, stream=stream, **kwargs)

    def __call__(self, source: Any = None, stream: bool = False, **kwargs: Any) -> Any:
        return self.predict(source, stream=stream, **kwargs)

    def export(self, **kwargs: Any) -> str:
        """Export to format=onnx or torchscript; returns the path of the exported file."""
        self._require_trainable("export")
        return self.run_export(self.config("export", kwargs))

    def run_export(self, args: IterableSimpleNamespace) -> str:
        """Export with a validated config (see `export`)."""
        self._require_trainable("export")
        return Exporter(args, _callbacks=self.callbacks)(self.model, self.ckpt_path)

    def benchmark(self, **kwargs: Any) -> Table:
        """Export this model to each supported format and validate every file (size, mAP50-95, ms per image): a
        Table of rows (see ultralytics/engine/benchmark.py). Keys: data, imgsz, half, int8, device, verbose, format."""
        return self.run_benchmark(self.config("benchmark", kwargs), given=set(kwargs))

    def run_benchmark(self, args: IterableSimpleNamespace, given: set[str]) -> Table:
        """Benchmark with a validated config; `given` (the keys the caller set) decides whether data and format
        were chosen (else the bundled dataset and every format)."""
        self._require_trainable("benchmark")
        return benchmark_model(self, type(self), data=args.data if "data" in given else None, imgsz=args.imgsz,
                               half=args.half, int8=args.int8, device=args.device or "cpu", verbose=args.verbose,
                               format=args.format if "format" in given else "")

    # ---------------------------------------------------------------------------------------------------- model
    def info(self, detailed: bool = False, verbose: bool = True) -> tuple:
        """Print and return (layers, parameters, gradients, GFLOPs)."""
        return self.model.info(detailed=detailed, verbose=verbose)

    def fuse(self) -> YOLO:
        """Fold BatchNorm into the convolutions (inference only)."""
        self.model.fuse(verbose=False)
        return self

    def to(self, device: str | torch.device) -> YOLO:
        self.model.to(select_device(device) if not isinstance(device, torch.device) else device)
        return self

    @property
    def device(self) -> torch.device:
        dev = getattr(self.model, "device", None)  # AutoBackend (ONNX) has no parameters
        return dev if isinstance(dev, torch.device) else next(self.model.parameters()).device

    @property
    def names(self) -> dict[int, str]:
        return self.model.names

    @property
    def task_map(self) -> dict[str, dict[str, type]]:
        """The classes of each supported task: {task: {"model", "trainer", "validator", "predictor"}}."""
        return {"detect": {"model": DetectionModel, "trainer": DetectionTrainer, "validator": DetectionValidator,
                           "predictor": DetectionPredictor}}

    @property
    def transforms(self) -> Any:
        """The model's `transforms` attribute, None when it has none (as for every model of this project)."""
        return getattr(self.model, "transforms", None)

    def __repr__(self) -> str:
        src = self.ckpt_path or self.cfg
        return f"YOLO(model={src!r}, nc={self.model.model[-1].nc})"
