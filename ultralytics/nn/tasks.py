"""Build YOLOv8 detection models from YAML: the module-spec registry, `parse_model` and `DetectionModel`."""

from __future__ import annotations

import contextlib
import inspect
import re
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from ultralytics.cfg import DEFAULT_MODEL
from ultralytics.detection.loss import DetectionLoss
from ultralytics.errors import MissingFileError, ModelConfigError, UnsupportedError
from ultralytics.nn.modules import (C1, C2, C3, CBAM, SPP, SPPF, BiFormerBlock, BiLevelRoutingAttention, Bottleneck,
                                    BottleneckCSP, C2f, C2f_BiFormer, C3Ghost, C3TR, C3x, ChannelAttention, Concat, Conv,
                                    Conv2, ConvTranspose, Detect, DWConv, DWConvTranspose2d, Focus, GhostBottleneck,
                                    GhostConv, RepConv, SpatialAttention, TransformerBlock, quiet_padding_warnings)
from ultralytics.nn.modules.block import fold_bra_output_projections
from ultralytics.nn.modules.bra_fused import fuse_upsample_concat_bra
from ultralytics.nn.routing import save_routing_map
from ultralytics.nn.tta import predict_augmented
from ultralytics.utils import CFG_DIR, LOGGER, yaml_load
from ultralytics.utils.plotting import feature_visualization
from ultralytics.utils.ops import make_divisible
from ultralytics.utils.torch_utils import fuse_conv_and_bn, model_info, module_cost

MODEL_DIR = CFG_DIR / "models"


# ------------------------------------------------------------------------------------------------
# Module-spec registry: how each YAML module gets its constructor arguments and output channels.
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildContext:
    """What a channel rule may look at for one YAML row."""

    ch: list[int]  # output channels of every layer so far (ch[-1] = previous layer; starts with the input)
    f: int | list[int]  # the row's `from`
    n: int  # repeats after depth scaling
    width: float
    max_channels: int
    nc: int

    def scale_width(self, c2: int) -> int:
        """Channels of a channel-changing layer: ceil(min(c2, max_channels) · width / 8) · 8 (nc is never scaled)."""
        return c2 if c2 == self.nc else make_divisible(min(c2, self.max_channels) * self.width, 8)


ChannelRule = Callable[[BuildContext, list], "tuple[list, int, int]"]  # → (constructor args, c2, repeats)


@dataclass(frozen=True)
class ModuleSpec:
    cls: type[nn.Module]
    rule: ChannelRule


def conv_like(ctx: BuildContext, args: list) -> tuple[list, int, int]:
    """Input channels from `from`, output channels (first arg) width-scaled; repeats stack the module."""
    c1, c2 = ctx.ch[ctx.f], ctx.scale_width(args[0])
    return [c1, c2, *args[1:]], c2, ctx.n


def csp_like(ctx: BuildContext, args: list) -> tuple[list, int, int]:
    """Like conv_like, but the repeats go inside the block (its `n` argument)."""
    c1, c2 = ctx.ch[ctx.f], ctx.scale_width(args[0])
    return [c1, c2, ctx.n, *args[1:]], c2, 1


def concat_rule(ctx: BuildContext, args: list) -> tuple[list, int, int]:
    return list(args), sum(ctx.ch[x] for x in _as_list(ctx.f)), ctx.n


def detect_rule(ctx: BuildContext, args: list) -> tuple[list, int, int]:
    return [*args, [ctx.ch[x] for x in _as_list(ctx.f)]], 0, 1


def same_channels_first(ctx: BuildContext, args: list) -> tuple[list, int, int]:
    """The input channels become the first constructor argument (dim); output channels equal input."""
    c = ctx.ch[ctx.f]
    return [c, *args], c, ctx.n


def passthrough(ctx: BuildContext, args: list) -> tuple[list, int, int]:
    """Channel-preserving module with its own arguments (nn.Upsample, nn.Identity, ...)."""
    return list(args), ctx.ch[ctx.f], ctx.n


MODULES: dict[str, ModuleSpec] = {}


def register_module(name: str, cls: type[nn.Module], rule: ChannelRule) -> None:
    """Make `name` usable in model YAMLs."""
    MODULES[name] = ModuleSpec(cls, rule)


for _cls in (Conv, DWConv, SPPF, Bottleneck, Conv2, ConvTranspose, DWConvTranspose2d, Focus, GhostConv, RepConv,
             GhostBottleneck, SPP, TransformerBlock):
    register_module(_cls.__name__, _cls, conv_like)
for _cls in (C2f, C3, C1, C2, C3x, C3TR, C3Ghost, BottleneckCSP):
    register_module(_cls.__name__, _cls, csp_like)
register_module("nn.ConvTranspose2d", nn.ConvTranspose2d, conv_like)
register_module("CBAM", CBAM, same_channels_first)
register_module("ChannelAttention", ChannelAttention, same_channels_first)
register_module("SpatialAttention", SpatialAttention, passthrough)
register_module("Concat", Concat, concat_rule)
register_module("Detect", Detect, detect_rule)
register_module("BiLevelRoutingAttention", BiLevelRoutingAttention, same_channels_first)
register_module("BiFormerBlock", BiFormerBlock, same_channels_first)  # [n_win, topk, mlp_ratio]
register_module("C2f_BiFormer", C2f_BiFormer, csp_like)  # [c2, n_win, topk, mlp_ratio, e]
register_module("nn.BatchNorm2d", nn.BatchNorm2d, lambda ctx, args: ([ctx.ch[ctx.f]], ctx.ch[ctx.f], ctx.n))


def _as_list(f: int | list[int]) -> list[int]:
    return f if isinstance(f, list) else [f]


def _lookup(name: str, where: str) -> ModuleSpec:
    if name in MODULES:
        return MODULES[name]
    if name.startswith("nn."):
        cls = getattr(nn, name[3:], None)
        if isinstance(cls, type) and issubclass(cls, nn.Module):
            return ModuleSpec(cls, passthrough)
    known = ", ".join(sorted(MODULES))
    raise ModelConfigError(f"{where}: unknown module {name!r}; known modules are {known} and torch 'nn.<Name>' classes")


def _resolve_arg(a: Any, d: dict) -> Any:
    """YAML args are data: a bare word naming a top-level key (e.g. `nc`) takes its value, 'None' is None."""
    if isinstance(a, str):
        if a in d and a not in {"backbone", "head", "scales"}:
            return d[a]
        if a == "None":
            return None
    return a


def _check_row(row: Any, i: int, where: str) -> None:
    if not isinstance(row, (list, tuple)) or len(row) != 4:
        raise ModelConfigError(f"{where}: a row must be [from, repeats, module, args], got {row!r}")
    f, n, m, args = row
    for j in _as_list(f):
        if not isinstance(j, int) or not (j == -1 or 0 <= j < i or (j < -1 and i + j >= 0)):
            raise ModelConfigError(f"{where}: 'from' {f!r} must name earlier layers (-1 = previous, 0..{i - 1})")
    if not isinstance(n, int) or n < 1:
        raise ModelConfigError(f"{where}: repeats must be a positive integer, got {n!r}")
    if not isinstance(m, str):
        raise ModelConfigError(f"{where}: module must be a name, got {m!r}")
    if not isinstance(args, list):
        raise ModelConfigError(f"{where}: args must be a list, got {args!r}")


@contextlib.contextmanager
def _activation(act: Any, where: str):
    """Temporarily swap Conv's default activation for the YAML's `activation` (e.g. 'nn.ReLU()')."""
    if act is None:
        yield
        return
    name = re.fullmatch(r"\s*(?:torch\.)?nn\.(\w+)(?:\(\))?\s*", str(act))
    cls = getattr(nn, name.group(1), None) if name else None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ModelConfigError(f"{where}: activation {act!r} must name a torch.nn activation, e.g. 'nn.ReLU()'")
    saved = Conv.default_act
    Conv.default_act = cls()
    try:
        yield
    finally:
        Conv.default_act = saved


def _summary_row(layer: Any, inputs: Any, repeats: Any, params: Any, module: str, args: Any) -> str:
    """One line of the layer table parse_model prints: index, input layers, repeats, parameters, module, arguments."""
    return f"{layer!s:>5} | {inputs!s:<12} | {repeats!s:>7} | {params!s:>10} | {module:<24} | {args!s}"


def parse_model(d: dict, ch: int, verbose: bool = True) -> tuple[nn.Sequential, list[int]]:
    """Build the layers of a model YAML dict; returns (nn.Sequential of layers, sorted list of saved outputs)."""
    name = d.get("yaml_file", "model yaml")
    for key in ("backbone", "head"):
        if not isinstance(d.get(key), list):
            raise ModelConfigError(f"{name}: missing or invalid '{key}' (a list of [from, repeats, module, args] rows)")
    nc = d.get("nc")
    if not isinstance(nc, int) or nc < 1:
        raise ModelConfigError(f"{name}: 'nc' (number of classes) must be a positive integer, got {nc!r}")
    depth, width, max_channels = d.get("depth_multiple", 1.0), d.get("width_multiple", 1.0), float("inf")
    scales = d.get("scales")
    if scales:
        scale = d.get("scale") or next(iter(scales))
        if scale not in scales:
            raise ModelConfigError(f"{name}: scale {scale!r} not in scales {list(scales)}")
        if not isinstance(scales[scale], list) or len(scales[scale]) != 3:
            raise ModelConfigError(f"{name}: scales.{scale} must be [depth, width, max_channels]")
        depth, width, max_channels = scales[scale]

    if verbose:
        LOGGER.info("\n" + _summary_row("layer", "inputs", "repeats", "parameters", "module", "arguments"))
    chs = [ch]
    layers, save = [], []
    rows = d["backbone"] + d["head"]
    with _activation(d.get("activation"), name):
        for i, row in enumerate(rows):
            where = f"{name}, layer {i} ({'backbone' if i < len(d['backbone']) else 'head'} row {row!r})"
            _check_row(row, i, where)
            f, n, m_name, args = row
            spec = _lookup(m_name, where)
            n = max(round(n * depth), 1) if n > 1 else n
            args = [_resolve_arg(a, d) for a in args]
            ctx = BuildContext(ch=chs, f=f, n=n, width=width, max_channels=max_channels, nc=nc)
            try:
                args, c2, n = spec.rule(ctx, args)
                inspect.signature(spec.cls).bind(*args)
            except (TypeError, IndexError) as e:
                raise ModelConfigError(f"{where}: wrong arguments for {m_name}: {e}") from None
            module = nn.Sequential(*(spec.cls(*args) for _ in range(n))) if n > 1 else spec.cls(*args)
            module.i, module.f, module.type = i, f, m_name
            module.np = sum(p.numel() for p in module.parameters())
            if verbose:
                LOGGER.info(_summary_row(i, f, n, f"{module.np:,}", m_name, args))
            save.extend(x % i for x in _as_list(f) if x != -1)
            layers.append(module)
            if i == 0:
                chs = []
            chs.append(c2)
    return nn.Sequential(*layers), sorted(save)



# ------------------------------------------------------------------------------------------------
# YAML loading
# ------------------------------------------------------------------------------------------------

_SCALED_NAME = re.compile(r"(yolov\d+)([nslmx])(.*)")


def find_model_yaml(name: str | Path) -> Path:
    """A model yaml by path, or by bare name among the packaged ones (scale letter optional: yolov8n.yaml)."""
    path = Path(name)
    if path.suffix not in {".yaml", ".yml"}:
        raise ModelConfigError(f"model config {str(name)!r} must be a .yaml file")
    if path.exists():
        return path
    candidates = [path.name]
    m = _SCALED_NAME.fullmatch(path.stem)
    if m:
        candidates.append(f"{m.group(1)}{m.group(3)}{path.suffix}")
    for cand in candidates:
        hits = sorted(MODEL_DIR.rglob(cand))
        if hits:
            return hits[0]
    packaged = ", ".join(sorted(p.name for p in MODEL_DIR.rglob("*.yaml")))
    raise MissingFileError(f"model config {str(name)!r} not found as a path nor among the packaged models "
                            f"({packaged}); a scale letter may follow 'yolov8', e.g. yolov8s_BiFormer.yaml")


def guess_model_scale(name: str | Path) -> str:
    """The scale letter of a model file name ('yolov8s_BiFormer.yaml' → 's'), or '' when there is none."""
    m = _SCALED_NAME.fullmatch(Path(name).stem)
    return m.group(2) if m else ""


def _with_scale(path: str | Path, scale: str) -> str:
    return re.sub(r"^(yolov\d+)", rf"\g<1>{scale}", Path(path).name)


def yaml_model_load(path: str | Path) -> dict:
    """Load a model yaml (safe_load); the scale comes from the file name and is stored under 'scale'."""
    file = find_model_yaml(path)
    d = yaml_load(file)
    d["scale"] = guess_model_scale(path)
    d["yaml_file"] = str(path)
    if d.get("scales") and not d["scale"]:
        d["scale"] = next(iter(d["scales"]))
        LOGGER.warning(f"WARNING ⚠️ no model scale in {Path(path).name!r}; assuming scale {d['scale']!r}. "
                       f"Put the scale letter after yolov8 in the name (e.g. {_with_scale(path, d['scale'])}) to choose.")
    elif d["scale"] and d.get("scales") and d["scale"] not in d["scales"]:
        raise ModelConfigError(f"{path}: scale {d['scale']!r} is not among its scales {list(d['scales'])}")
    return d


# ------------------------------------------------------------------------------------------------
# The detection model
# ------------------------------------------------------------------------------------------------


class DetectionModel(nn.Module):
    """A YOLOv8 detector built from a YAML file or dict."""

    def __init__(self, cfg: str | Path | dict = DEFAULT_MODEL, ch: int = 3, nc: int | None = None,
                 verbose: bool = True):
        super().__init__()
        self.yaml = deepcopy(cfg) if isinstance(cfg, dict) else yaml_model_load(cfg)
        self.yaml.setdefault("yaml_file", "model yaml")
        ch = self.yaml["ch"] = self.yaml.get("ch", ch)
        if nc and nc != self.yaml.get("nc"):
            if verbose:
                LOGGER.info(f"Overriding model.yaml nc={self.yaml.get('nc')} with nc={nc}")
            self.yaml["nc"] = nc
        self.model, self.save = parse_model(deepcopy(self.yaml), ch=ch, verbose=verbose)
        self.names = {i: str(i) for i in range(self.yaml["nc"])}
        self.args: Any = None  # training hyperparameters (box, cls, dfl) for the loss, set by the trainer
        self.criterion = None

        head = self.model[-1]
        if not isinstance(head, Detect):
            raise ModelConfigError(f"{self.yaml['yaml_file']}: the last layer must be Detect, got {type(head).__name__}")
        self.stride = self._compute_strides(head, ch)
        head.bias_init()
        _init_weights(self)
        if verbose:
            self.info()

    def _compute_strides(self, head: Detect, ch: int, s: int = 256) -> torch.Tensor:
        """Strides of the head's inputs from a dry run at s×s (eval mode, no grad: BN statistics untouched)."""
        was_training = self.training
        self.eval()
        with torch.no_grad(), quiet_padding_warnings():  # n_win padding at this small size says nothing of real use
            _, raw = self._predict_once(torch.zeros(1, ch, s, s))
        self.train(was_training)
        head.stride = torch.tensor([s / x.shape[-2] for x in raw])
        return head.stride

    def forward(self, x, *args, **kwargs):
        """A tensor → predictions; a batch dict (with 'img') → (loss, loss items)."""
        if isinstance(x, dict):
            return self.loss(x, *args, **kwargs)
        return self.predict(x, *args, **kwargs)

    def predict(self, x: torch.Tensor, profile: bool = False, visualize: bool | str | Path = False,
                augment: bool = False, embed: list[int] | None = None) -> Any:
        """Forward an image batch. `profile` logs each layer's time, GFLOPs and parameters; `visualize` (True or a
        folder) saves every stage's feature maps (utils.plotting.feature_visualization); `augment` runs test-time augmentation
        (nn/tta.py, eval mode only: (merged predictions, None)); `embed` (layer indices) returns one feature vector
        per image instead: the named layers' outputs average-pooled and concatenated in layer order."""
        stride = getattr(self, "stride", None)
        tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
        if stride is not None and x.dim() == 4 and not tracing:
            s = int(stride.max())
            if x.shape[-2] % s or x.shape[-1] % s:
                raise ValueError(f"input size {x.shape[-2]}×{x.shape[-1]} is not a multiple of the model stride {s}; "
                                 f"letterbox or resize the image to multiples of {s} (e.g. imgsz=640)")
        if augment and not embed:
            if self.training:
                raise UnsupportedError("augment=True (test-time augmentation) needs the model in eval mode")
            strides = [int(v) for v in self.stride.tolist()]
            return predict_augmented(lambda view: self._predict_once(view)[0], x, strides), None
        return self._predict_once(x, profile, visualize, embed)

    def _predict_once(self, x: torch.Tensor, profile: bool = False, visualize: bool | str | Path = False,
                      embed: list[int] | None = None) -> Any:
        outputs: list[torch.Tensor | None] = []
        costs: list[tuple[float, float, int, str]] = []
        vis_dir = (Path("runs/detect/visualize") if visualize is True else Path(visualize)) if visualize else None
        last_embed, pooled = (max(embed), []) if embed else (None, [])
        image = x
        as_built = vis_dir is not None or bool(embed)  # every stage's own output, also where fuse() merged layers
        for m in self.model:
            if as_built and getattr(m, "original", None) is not None:
                m = m.original
            if m.f != -1:
                x = outputs[m.f] if isinstance(m.f, int) else [x if j == -1 else outputs[j] for j in m.f]
            if vis_dir is not None and _has_bra(m):  # which regions each query region attends to (nn/routing.py)
                save_routing_map(m, x, image, m.i, vis_dir)
            if profile:
                ms, gflops = module_cost(m, x)
                costs.append((ms, gflops, sum(p.numel() for p in m.parameters()), m.type))
            x = m(x)
            outputs.append(x if m.i in self.save else None)
            if vis_dir is not None:
                feature_visualization(x, m.type, m.i, save_dir=vis_dir)
            if embed and m.i in embed:
                pooled.append(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))
                if m.i == last_embed:
                    return torch.unbind(torch.cat(pooled, 1), 0)
        if profile:
            _log_costs(costs)
        return x

    def loss(self, batch: dict, preds: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Detection loss of a batch (computes predictions when not given)."""
        if self.criterion is None:
            self.criterion = DetectionLoss.from_model(self)
        if preds is None:
            preds = self.predict(batch["img"])
        return self.criterion(preds, batch)

    def fuse(self, verbose: bool = True) -> DetectionModel:
        """Merge the parallel branches of RepConv / Conv2 into one convolution, fold the BatchNorm of every conv
        block (Conv, Conv2, ...) into its convolution and each BRA's output projection into the next 1×1 conv, and
        fuse nearest Upsample → Concat → BRA runs (bra_fused.py) (inference speed-up; outputs unchanged up to float
        rounding)."""
        for m in list(self.model.modules()):
            merge = getattr(m, "fuse_convs", None) or getattr(m, "merge_branches", None)
            if callable(merge):
                merge()
        for m in self.model.modules():
            if hasattr(m, "forward_fuse") and isinstance(getattr(m, "bn", None), nn.BatchNorm2d):
                m.conv = fuse_conv_and_bn(m.conv, m.bn)
                delattr(m, "bn")
                m.forward = m.forward_fuse
        with torch.no_grad():
            fold_bra_output_projections(self.model)  # each BRA's `wo` into the next layer's 1×1 conv
        fuse_upsample_concat_bra(self.model)  # BRA's q/k/v projection of an upsampled input at low resolution
        if verbose:
            self.info()
        return self

    def is_fused(self) -> bool:
        return not any(isinstance(m, nn.BatchNorm2d) for m in self.modules())

    def info(self, detailed: bool = False, verbose: bool = True, imgsz: int = 640) -> tuple[int, int, int, float]:
        """Print and return (layers, parameters, gradients, GFLOPs at imgsz)."""
        return model_info(self, detailed=detailed, verbose=verbose, imgsz=imgsz)


def _init_weights(model: nn.Module) -> None:
    """BatchNorm eps 1e-3 and momentum 0.03 (YOLOv8's), in-place activations."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 1e-3
            m.momentum = 0.03
        elif isinstance(m, (nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6, nn.SiLU)):
            m.inplace = True


def _has_bra(layer: nn.Module) -> bool:
    return any(isinstance(m, BiLevelRoutingAttention) for m in layer.modules())


def _log_costs(costs: list[tuple[float, float, int, str]]) -> None:
    """The `profile=True` table: one line per layer (milliseconds, GFLOPs, parameters, module) and the total."""
    LOGGER.info(f"{'time (ms)':>10s} {'GFLOPs':>10s} {'params':>10s}  module")
    for ms, gflops, params, name in costs:
        LOGGER.info(f"{ms:10.2f} {gflops:10.2f} {params:10.0f}  {name}")
    LOGGER.info(f"{sum(c[0] for c in costs):10.2f} {sum(c[1] for c in costs):10.2f} "
                f"{sum(c[2] for c in costs):10.0f}  Total")
