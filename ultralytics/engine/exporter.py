"""Export a DetectionModel to TorchScript or ONNX, with the metadata AutoBackend reads back.

`export_model(model, file=..., format="onnx", imgsz=640, ...) -> str` writes `<stem>.onnx` /
`<stem>.torchscript` next to `file` (the .pt the model came from) or, for a model built from a yaml,
into a new run folder runs/detect/export{,2,...} (project/name/exist_ok honoured).

The exported graph takes `images` (B, 3, H, W) float RGB 0..1 and returns `output0` (B, 4 + nc, anchors):
xywh boxes in input pixels and class scores (NMS stays outside the graph).

ONNX uses torch's TorchScript-based exporter (`dynamo=False`): it writes opset 17 directly and exports
BRA's top-k routing (TopK) and routed gather (Gather). torch 2.14's default dynamo exporter also works
(it is the fallback) but needs opset >= 18 and is ~7x slower to export; see docs/predict_export.md.
"""

from __future__ import annotations

import io
import json
import re
import time
import warnings
from copy import deepcopy
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ultralytics.cfg import CfgError, IterableSimpleNamespace, get_cfg
from ultralytics.engine.callbacks import CallbackHost, get_default_callbacks
from ultralytics.engine.run_files import get_save_dir
from ultralytics.nn.modules import BiLevelRoutingAttention, Detect
from ultralytics.nn.tasks import guess_model_scale
from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_PATH, LOGGER, write_atomic
from ultralytics.utils.checks import check_imgsz
from ultralytics.utils.torch_utils import select_device
from ultralytics.version import __version__

EXPORT_FORMATS: dict[str, str] = {"torchscript": ".torchscript", "onnx": ".onnx"}  # format → file suffix
DEFAULT_OPSET = 17


def export_formats() -> str:
    return ", ".join(EXPORT_FORMATS)


def check_format(fmt: Any) -> str:
    """The canonical format name; CfgError listing the supported formats otherwise."""
    name = str(fmt or "").lower().strip().lstrip(".")
    if name not in EXPORT_FORMATS:
        raise CfgError(f"format={fmt!r} is not a supported export format; supported formats are {export_formats()}")
    return name


def model_file_stem(model: nn.Module) -> str:
    """Name for an exported yaml-built model: its yaml name with the scale letter (yolov8n, yolov8n_BiFormer)."""
    y = getattr(model, "yaml", None) or {}
    name = str(y.get("yaml_file") or "model.yaml")
    stem, scale = Path(name).stem, y.get("scale") or ""
    if scale and not guess_model_scale(name):
        stem = re.sub(r"^(yolov\d+)", rf"\g<1>{scale}", stem)
    return stem or "model"


class _Trunk(nn.Module):
    """DetectionModel without its Python-side input check (the dynamo exporter cannot trace `int(stride.max())`)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model._predict_once(x)


class Exporter(CallbackHost):
    """Export one model; configure with default.yaml keys (format, imgsz, batch, opset, dynamic, simplify, half).
    `_callbacks` ({event: [fn]}, used as given) are called with this exporter at on_export_start and on_export_end
    (`self.file` then holds the written path)."""

    def __init__(self, cfg: str | Path | dict | None = DEFAULT_CFG_PATH, overrides: dict[str, Any] | None = None,
                 _callbacks: dict | None = None):
        cfg = DEFAULT_CFG_PATH if cfg is DEFAULT_CFG else cfg
        self.callbacks = _callbacks if _callbacks is not None else get_default_callbacks()
        self.file: str | None = None
        if isinstance(cfg, IterableSimpleNamespace) and not overrides:
            self.args = cfg  # already the validated config of this run
        else:
            self.args = get_cfg(cfg, {**(overrides or {}), "mode": "export"})
        self.format = check_format(self.args.format)

    def __call__(self, model: nn.Module, file: str | Path | None = None) -> str:
        """Export `model`; returns the path of the written file."""
        args = self.args
        self.run_callbacks("on_export_start")
        t0 = time.time()
        half = bool(args.half)
        if args.device not in (None, ""):
            device = select_device(args.device, verbose=False)
        else:  # CPU unless FP16 asks for a GPU: the file then runs anywhere
            device = torch.device("cuda:0" if half and torch.cuda.is_available() else "cpu")
        if half and device.type != "cuda":
            LOGGER.warning("WARNING ⚠️ half=True export needs a CUDA device (device=0); exporting FP32")
            half = False
        if self.format == "torchscript" and args.dynamic:
            LOGGER.warning("WARNING ⚠️ dynamic=True applies to ONNX only; the TorchScript trace has a fixed "
                           "input size")
        stride = int(max(getattr(model, "stride", torch.tensor([32])).tolist()))
        imgsz = check_imgsz(args.imgsz, stride)
        batch = max(int(args.batch), 1)
        dynamic = bool(args.dynamic) and self.format == "onnx"

        model = deepcopy(model).to(device).float().eval()
        for p in model.parameters():
            p.requires_grad_(False)
        if hasattr(model, "fuse") and not model.is_fused():
            model.fuse(verbose=False)
        for m in model.modules():
            if isinstance(m, Detect):
                m.export, m.dynamic = True, dynamic
        if half:
            model = model.half()
        im = torch.zeros(batch, 3, *imgsz, device=device, dtype=torch.float16 if half else torch.float32)
        y, bra_strides = self._dry_run(model, im, BiLevelRoutingAttention)
        trace_im = self._trace_input(im, bra_strides, stride) if dynamic and bra_strides else im

        out = self._output_path(model, file)
        metadata = self.metadata(model, imgsz, batch, half, dynamic)
        LOGGER.info(f"\n{'PyTorch:':<12}starting from {file or model_file_stem(model)} with input shape "
                    f"{tuple(im.shape)} and output shape {tuple(y.shape)}")
        if self.format == "onnx":
            self._export_onnx(model, trace_im, out, metadata, dynamic)
        else:
            self._export_torchscript(model, im, out, metadata)
        size = out.stat().st_size / 1e6
        LOGGER.info(f"{self.format:<12}export success ✅ {time.time() - t0:.1f}s, saved as '{out}' ({size:.1f} MB)")
        self.file = str(out)
        self.run_callbacks("on_export_end")
        return self.file

    # ------------------------------------------------------------------------------------------------ helpers
    def _output_path(self, model: nn.Module, file: str | Path | None) -> Path:
        suffix = EXPORT_FORMATS[self.format]
        if file:  # folders are created by write_atomic (a read-only one is then a FileWriteError)
            return Path(file).with_suffix(suffix)
        save_dir = get_save_dir(self.args.project, self.args.name or "export", self.args.exist_ok)
        return save_dir / f"{model_file_stem(model)}{suffix}"

    def metadata(self, model: nn.Module, imgsz: list[int], batch: int, half: bool, dynamic: bool) -> dict[str, Any]:
        """What AutoBackend needs to run the file (and what a reader wants to know), as plain JSON data."""
        data = self.args.data
        stem = model_file_stem(model)
        return {
            "description": f"Ultralytics-BiFormer {stem} model"
                           + (f" trained on {Path(str(data)).name}" if data else ""),
            "author": "ultralytics-biformer",
            "date": datetime.now().isoformat(timespec="seconds"),
            "version": __version__,
            "license": "AGPL-3.0",
            "stride": int(max(model.stride.tolist())),
            "task": "detect",
            "batch": batch,
            "imgsz": imgsz,
            "names": {int(k): str(v) for k, v in model.names.items()},
            "args": {"batch": batch, "half": half, "dynamic": dynamic, "imgsz": imgsz,
                     "opset": (self.args.opset or DEFAULT_OPSET) if self.format == "onnx" else None},
        }

    @staticmethod
    def _dry_run(model: nn.Module, im: torch.Tensor, bra_cls: type) -> tuple[torch.Tensor, list[tuple]]:
        """One forward before tracing (output shape, lazy initialisation); also records (stride_h, stride_w,
        n_win) of every BiLevelRoutingAttention input."""
        found: list[tuple[float, float, int]] = []
        hooks = [m.register_forward_pre_hook(
            lambda mod, inp: found.append((im.shape[2] / inp[0].shape[2], im.shape[3] / inp[0].shape[3], mod.n_win)))
            for m in model.modules() if isinstance(m, bra_cls)]
        try:
            with torch.no_grad():
                y = model(im)
        finally:
            for h in hooks:
                h.remove()
        return y, found

    @staticmethod
    def _trace_input(im: torch.Tensor, bra: list[tuple[float, float, int]], stride: int) -> torch.Tensor:
        """A trace input size at which every BRA input needs padding, so the padding ops enter the dynamic graph.

        bra_ops pads only when H or W is not a multiple of n_win (a Python branch); traced at a size where a
        BRA input divides evenly, the dynamic ONNX graph would have no padding and fail at other sizes.
        """
        h0, w0 = im.shape[2:]
        for k in range(64):
            h = h0 + stride * k
            if all(not (round(h / sh) % nw == 0 and round(w0 / sw) % nw == 0) for sh, sw, nw in bra):
                if k:
                    LOGGER.info(f"dynamic export: tracing at {h}x{w0} (BRA inputs then need padding, which keeps "
                                "the padding in the graph)")
                return im.new_zeros(im.shape[0], 3, h, w0)
        return im

    # ------------------------------------------------------------------------------------------------ formats
    def _export_torchscript(self, model: nn.Module, im: torch.Tensor, out: Path, metadata: dict) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings for shape-dependent Python values; deprecation notes
            ts = torch.jit.trace(model, im, strict=False)
            buf = io.BytesIO()  # serialised in memory, then written atomically: a full disk leaves no partial file
            torch.jit.save(ts, buf, _extra_files={"config.txt": json.dumps(metadata)})
        write_atomic(out, buf.getbuffer())

    def _export_onnx(self, model: nn.Module, im: torch.Tensor, out: Path, metadata: dict, dynamic: bool) -> None:
        import onnx

        opset = int(self.args.opset or DEFAULT_OPSET)
        try:
            proto = self._onnx_legacy(model, im, opset, dynamic)
        except Exception as e:  # noqa: BLE001 - fall back to the other exporter, re-raise if it fails too
            LOGGER.warning(f"WARNING ⚠️ TorchScript-based ONNX export failed ({type(e).__name__}: {e}); "
                           "trying torch.export-based exporter (opset >= 18)")
            try:
                proto = self._onnx_dynamo(model, im, max(opset, 18), dynamic)
            except Exception:  # noqa: BLE001
                raise e from None
        onnx.checker.check_model(proto)
        del proto.metadata_props[:]
        for k, v in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v if isinstance(v, str) else json.dumps(v)
        if self.args.simplify:
            proto = self._simplify(proto)
        write_atomic(out, proto.SerializeToString())  # as onnx.save, but never a partial file

    @staticmethod
    def _io_names(dynamic: bool) -> dict[str, Any]:
        axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 2: "anchors"}}
        return {"input_names": ["images"], "output_names": ["output0"], "dynamic_axes": axes if dynamic else None}

    def _onnx_legacy(self, model: nn.Module, im: torch.Tensor, opset: int, dynamic: bool) -> Any:
        """torch's TorchScript-based exporter (dynamo=False)."""
        import onnx

        f = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (im,), f, opset_version=opset, dynamo=False, do_constant_folding=True,
                              **self._io_names(dynamic))
        return onnx.load_from_string(f.getvalue())

    def _onnx_dynamo(self, model: nn.Module, im: torch.Tensor, opset: int, dynamic: bool) -> Any:
        """torch.export-based exporter (torch 2.14's default)."""
        names = self._io_names(dynamic)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(_Trunk(model), (im,), dynamo=True, opset_version=opset, verbose=False,
                                        input_names=names["input_names"], output_names=names["output_names"],
                                        dynamic_axes=names["dynamic_axes"])
        return program.model_proto

    @staticmethod
    def _simplify(proto: Any) -> Any:
        """onnxslim (or onnxsim) when installed; otherwise a warning and the graph unchanged."""
        try:
            import onnxslim

            return onnxslim.slim(proto)
        except ImportError:
            pass
        try:
            import onnxsim

            simplified, ok = onnxsim.simplify(proto)
            return simplified if ok else proto
        except ImportError:
            LOGGER.warning("WARNING ⚠️ simplify=True needs onnxslim or onnxsim (pip install onnxslim); "
                           "exported without simplification")
            return proto


def export_model(model: nn.Module, file: str | Path | None = None, **overrides: Any) -> str:
    """Export `model` (a DetectionModel) with config overrides (format, imgsz, batch, opset, dynamic, simplify,
    half, device, project/name/exist_ok); `file` is the .pt it came from (output goes beside it). Returns the path.
    """
    return Exporter(overrides=overrides)(model, file)
