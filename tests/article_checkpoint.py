"""Checkpoints laid out like those of users who trained the BiFormer article's code with the published package.

Built without the published package: every ultralytics class a user's file names is replaced by a stand-in of the
same name, registered under the module path the published package defines it in only while `torch.save` pickles
it, and given the attributes the article's (or the published package's) `__init__` sets. torch.nn layers are the
real torch classes, as in users' files. Tensors are the seeded weights of this project's own DetectionModel, stored
in fp16 like published files; the same values in fp32 come back with the path, to load into our model directly.

    path, weights = write_article_checkpoint(tmp_path / "best.pt", nc=5)

The same machinery writes a plain model's published file (no BRA layers), as the published package saves one:

    saved = write_published_checkpoint(tmp_path / "yolov8n.pt", "yolov8n.yaml", names=coco_names)
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn

from ultralytics.nn.modules.block import BiLevelRoutingAttention
from ultralytics.nn.tasks import DetectionModel

BLOCK = "ultralytics.nn.modules.block"
#: Where users' files say each ultralytics class lives (the published package's module paths).
PUBLISHED_PATHS = {
    "DetectionModel": "ultralytics.nn.tasks",
    "Conv": "ultralytics.nn.modules.conv",
    "Concat": "ultralytics.nn.modules.conv",
    "C2f": BLOCK,
    "Bottleneck": BLOCK,
    "SPPF": BLOCK,
    "DFL": BLOCK,
    "Detect": "ultralytics.nn.modules.head",
    # the four classes the article pastes into block.py
    "BiLevelRoutingAttention": BLOCK,
    "TopkRouting": BLOCK,
    "KVGather": BLOCK,
    "QKVLinear": BLOCK,
}
#: The article's yaml (yolov8_BiFormer.yaml), as the published package keeps it on the model: BRA rows give no args.
ARTICLE_YAML = "yolov8_BiFormer.yaml"


def _standin(name: str) -> type[nn.Module]:
    """An empty nn.Module subclass named like the published class; its instances get their state assigned."""
    cls = type(name, (nn.Module,), {"__doc__": f"Stand-in for the published {PUBLISHED_PATHS[name]}.{name}."})
    cls.__module__, cls.__qualname__ = PUBLISHED_PATHS[name], name
    return cls


STANDINS: dict[str, type[nn.Module]] = {name: _standin(name) for name in PUBLISHED_PATHS}


@contextlib.contextmanager
def registered_standins(extra: dict[str, type] | None = None) -> Iterator[None]:
    """While open, `module.Name` resolves to the stand-in for every class above (and `extra`, keyed by name, at
    its own `__module__`), so pickle writes the published global names; the real attributes come back on exit."""
    classes = {**STANDINS, **(extra or {})}
    saved: list[tuple[Any, str, Any]] = []
    missing = object()
    try:
        for name, cls in classes.items():
            module = importlib.import_module(cls.__module__)
            saved.append((module, name, getattr(module, name, missing)))
            setattr(module, name, cls)
        yield
    finally:
        for module, name, old in reversed(saved):
            if old is missing:
                delattr(module, name)
            else:
                setattr(module, name, old)


def _tensor(value: torch.Tensor, half: bool) -> torch.Tensor:
    value = value.detach().clone()
    return value.half() if half and value.is_floating_point() else value


def _new(cls: type[nn.Module], attrs: dict[str, Any], modules: dict[str, nn.Module]) -> nn.Module:
    """An instance of `cls` with empty nn.Module bookkeeping, the given children and attributes (no __init__ of
    the class runs beyond nn.Module's own)."""
    obj = cls.__new__(cls)
    nn.Module.__init__(obj)
    for name, child in modules.items():
        obj._modules[name] = child
    obj.__dict__.update(attrs)
    return obj


def _article_bra(ours: nn.Module, children: dict[str, nn.Module], attrs: dict[str, Any],
                 overrides: dict[str, Any]) -> nn.Module:
    """The article's BiLevelRoutingAttention: its attribute names (incl. the `kv_downsample_kenel` typo) and
    sub-modules lepe, router (emb, routing_act), kv_gather, qkv, wo, kv_down, attn_act."""
    children["router"]._modules["routing_act"] = nn.Softmax(dim=-1)
    mul_weight = "soft" if ours.soft_routing else "hard" if ours.diff_routing else "none"
    gather = _new(STANDINS["KVGather"], {"mul_weight": mul_weight}, {})
    attrs["kv_downsample_kenel"] = attrs.pop("kv_downsample_kernel", None)
    order = ("lepe", "router", "kv_gather", "qkv", "wo", "kv_down", "attn_act")
    modules = {**children, "kv_gather": gather, "attn_act": nn.Softmax(dim=-1)}
    for key, value in overrides.items():  # 'topk' sets the layer's attribute, 'router.topk' its router's
        child, _, name = key.rpartition(".")
        if child:
            setattr(modules[child], name, value)
        else:
            attrs[key] = value
    return _new(STANDINS["BiLevelRoutingAttention"], attrs, {k: modules[k] for k in order})


def _mirror(module: nn.Module, half: bool, bra_overrides: dict[str, Any],
            memo: dict[int, nn.Module] | None = None) -> nn.Module:
    """A copy of one of our modules as a user's file holds it: torch layers as themselves, ultralytics classes as
    stand-ins, parameters as nn.Parameter and buffers as tensors (fp16 when `half`). A module that sits at several
    places (the activation all Conv layers share) is copied once and shared likewise (`memo`: id -> copy)."""
    memo = {} if memo is None else memo
    if id(module) in memo:
        return memo[id(module)]
    children = {name: _mirror(child, half, bra_overrides, memo) for name, child in module._modules.items()}
    attrs = {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training"}
    attrs = {k: _tensor(v, half) if isinstance(v, torch.Tensor) else v for k, v in attrs.items()}
    name = type(module).__name__
    if type(module).__module__.startswith("ultralytics."):
        if "type" in attrs:  # parse_model's layer tag: the published package writes the full class path
            attrs["type"] = f"{PUBLISHED_PATHS[name]}.{name}"
        if name == "BiLevelRoutingAttention":
            obj = _article_bra(module, children, attrs, bra_overrides)
        else:
            obj = _new(STANDINS[name], attrs, children)
    else:
        obj = _new(type(module), attrs, children)
    obj._parameters = OrderedDict((k, None if v is None else nn.Parameter(_tensor(v, half), v.requires_grad))
                                  for k, v in module._parameters.items())
    obj._buffers = OrderedDict((k, None if v is None else _tensor(v, half)) for k, v in module._buffers.items())
    obj._non_persistent_buffers_set = set(module._non_persistent_buffers_set)
    memo[id(module)] = obj
    return obj.eval()


def _seeded_model(cfg: str | dict, seed: int, nc: int | None = None) -> DetectionModel:
    """Our DetectionModel of `cfg`, seeded, with random BN statistics so that eval outputs depend on every
    buffer."""
    torch.manual_seed(seed)
    model = DetectionModel(cfg, nc=nc, verbose=False)
    gen = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.num_batches_tracked.fill_(100)
    return model


def _statistics_from(model: DetectionModel, images: torch.Tensor) -> None:
    """Set every BN layer's running statistics to those of `images` (one train-mode pass), as training leaves
    them: eval features then vary with the image instead of fading out layer by layer."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one batch, exactly its statistics
    model.train()
    with torch.no_grad():
        model(images)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def published_model(cfg: str = "yolov8n.yaml", nc: int = 80, seed: int = 0,
                    images: torch.Tensor | None = None) -> DetectionModel:
    """Our seeded DetectionModel of a packaged yaml without BRA layers, its yaml dict as the published package
    keeps it on the model (input channels under 'channels'). BN statistics are random, or those of `images`
    ((B, 3, H, W) in [0, 1]) when given."""
    model = _seeded_model(cfg, seed, nc)
    assert not any(isinstance(m, BiLevelRoutingAttention) for m in model.modules()), "use article_model for BRA"
    if images is not None:
        _statistics_from(model, images)
    yaml_dict = dict(model.yaml)
    yaml_dict["channels"] = yaml_dict.pop("ch", 3)
    model.yaml = yaml_dict
    return model.eval()


def article_model(nc: int = 80, seed: int = 0, bra: dict[str, Any] | None = None) -> DetectionModel:
    """Our seeded DetectionModel of the article's architecture (scale n), BRA options `bra` in every row; random
    BN statistics so that eval outputs depend on every buffer."""
    yaml_dict = DetectionModel("yolov8n_BiFormer.yaml", nc=nc, verbose=False).yaml
    rows = yaml_dict["head"]
    if bra:
        bound = inspect.signature(BiLevelRoutingAttention).bind(0, **bra)  # dim comes from the yaml
        bound.apply_defaults()
        for row in rows:
            if row[2] == "BiLevelRoutingAttention":
                row[3] = list(bound.arguments.values())[1:]
    model = _seeded_model(yaml_dict, seed)
    head = [[*r[:3], [] if r[2] == "BiLevelRoutingAttention" else [None if a == "None" else a for a in r[3]]]
            for r in rows]  # as the article's yaml reads: no BRA args (and a real None for nn.Upsample)
    model.yaml = {**model.yaml, "head": head, "scale": "n", "yaml_file": ARTICLE_YAML}
    return model.eval()


def article_checkpoint_dict(model: DetectionModel, *, names: dict[int, str] | None = None, epoch: int = -1,
                            half: bool = True, bra_overrides: dict[str, Any] | None = None,
                            train_args: dict[str, Any] | None = None, version: str = "8.2.0",
                            date: str = "2025-03-01T12:00:00.000000") -> dict:
    """The dict a user's best.pt (epoch=-1: finished) or last.pt (epoch >= 0: optimizer state kept) holds.
    `model` is an `article_model` or a `published_model`; its yaml file is the run's `model` argument."""
    nc = model.yaml["nc"]
    names = names or {i: f"class{i}" for i in range(nc)}
    args = {"task": "detect", "mode": "train", "model": model.yaml.get("yaml_file", ARTICLE_YAML),
            "data": "data.yaml", "epochs": 100,
            "batch": 16, "imgsz": 640, "box": 7.5, "cls": 0.5, "dfl": 1.5, **(train_args or {})}
    net = _mirror(model, half, bra_overrides or {})
    net.__dict__.update(yaml=model.yaml, names=names, nc=nc, args=args, inplace=True, criterion=None)
    finished = epoch < 0
    optimizer = None if finished else {  # as the published optimizer's state_dict: its own parameter order
        "state": {i: {"momentum_buffer": torch.zeros_like(p).half()} for i, p in enumerate(model.parameters())},
        "param_groups": [{"lr": 0.01, "momentum": 0.937, "params": list(range(len(list(model.parameters()))))}]}
    return {
        "date": date, "version": version, "license": "AGPL-3.0 License",
        "docs": "https://docs.ultralytics.com", "epoch": epoch, "best_fitness": None if finished else 0.25,
        "model": net if finished else None, "ema": None if finished else net,
        "updates": None if finished else 1000, "optimizer": optimizer, "train_args": args,
        "train_metrics": {"metrics/mAP50(B)": 0.3, "metrics/mAP50-95(B)": 0.2, "fitness": 0.25},
        "train_results": None, "git": None,
    }


@dataclass
class ArticleCheckpoint:
    """A written article-layout checkpoint and the fp32 values of the weights it stores."""

    path: Path
    weights: dict[str, torch.Tensor]
    model_yaml: dict


def save_article_checkpoint(ckpt: dict, path: str | Path, extra_classes: dict[str, type] | None = None) -> Path:
    """torch.save `ckpt` with the stand-ins (and `extra_classes`) registered under their published names."""
    with registered_standins(extra_classes):
        torch.save(ckpt, path)
    return Path(path)


def write_article_checkpoint(path: str | Path, nc: int = 80, *, seed: int = 0, epoch: int = -1,
                             bra: dict[str, Any] | None = None, bra_overrides: dict[str, Any] | None = None,
                             names: dict[int, str] | None = None) -> ArticleCheckpoint:
    """Write an article-layout checkpoint to `path`: best.pt-like (epoch=-1) or last.pt-like (epoch >= 0).

    `bra`: options our model is built with (the article's yaml in the file still gives none, as if the user had
    edited the class defaults); `bra_overrides`: attributes written over the pickled BRA layers afterwards ('name'
    for the layer's, 'child.name' for a sub-module's), to make files whose attributes contradict their layers.
    """
    model = article_model(nc, seed, bra)
    ckpt = article_checkpoint_dict(model, names=names, epoch=epoch, bra_overrides=bra_overrides)
    return _saved(model, ckpt, path)


def write_published_checkpoint(path: str | Path, cfg: str = "yolov8n.yaml", nc: int = 80, *, seed: int = 0,
                               images: torch.Tensor | None = None, names: dict[int, str] | None = None,
                               train_args: dict[str, Any] | None = None, version: str = "8.2.0",
                               date: str = "2025-03-01T12:00:00.000000") -> ArticleCheckpoint:
    """Write the best.pt of a finished published-package run of the packaged model `cfg` (no BRA layers) to
    `path`: our seeded `published_model` (BN statistics of `images` if given) pickled as the published package
    pickles it, fp16 tensors."""
    model = published_model(cfg, nc, seed, images)
    ckpt = article_checkpoint_dict(model, names=names, train_args=train_args, version=version, date=date)
    return _saved(model, ckpt, path)


def _saved(model: DetectionModel, ckpt: dict, path: str | Path) -> ArticleCheckpoint:
    """Save `ckpt`; the written file with the fp32 values of the fp16 weights it stores."""
    save_article_checkpoint(ckpt, path)
    weights = {k: (v.half().float() if v.is_floating_point() else v.clone()) for k, v in model.state_dict().items()}
    return ArticleCheckpoint(Path(path), weights, model.yaml)
