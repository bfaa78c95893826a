"""Read checkpoints written by the published `ultralytics` package without running any code from them.

A published `*.pt` is a torch zip archive whose `data.pkl` pickles whole Python objects (the DetectionModel, its
layers, torch.nn modules, sometimes a namespace of training args). Plain `torch.load(weights_only=False)` would
import and call whatever that pickle names. Here `data.pkl` is read by the restricted unpickler of
`ultralytics.checkpoints.unpickler` (explicit allowlist, inert records, no real class ever instantiated) and the
tensors come straight from the archive's `data/<key>` records. `torch.load` is never called: it would hand
TorchScript-looking archives to `torch.jit.load`.

Files trained with the BiFormer article's code hold its BiLevelRoutingAttention (with TopkRouting, KVGather,
QKVLinear) under `ultralytics.nn.modules.block`; their options are read from the pickled attributes into the model
yaml (`with_bra_args`), so our BiLevelRoutingAttention rebuilds them exactly.

Public API: `is_published_checkpoint`, `read_published_checkpoint` (→ a dict in this project's checkpoint format),
`checkpoints.loading` (→ DetectionModel, and `load_checkpoint`, which routes published files here),
`load_published_objects` (the raw inert objects), `UnsafeCheckpointError`. See docs/checkpoints.md.
"""

from __future__ import annotations

import io
import pickletools
import sys
import zipfile
from pathlib import Path
from typing import Any, Iterator

import torch

from ultralytics.checkpoints import unpickler
from ultralytics.checkpoints.records import FORMAT, plain
from ultralytics.checkpoints.unpickler import (ADVICE, PUBLISHED_CLASSES, STORAGE_DTYPES, TORCH_DTYPES,
                                               TORCH_NN_CLASSES, PublishedClass, PublishedObject, RestrictedUnpickler,
                                               StorageKind)
from ultralytics.errors import (CheckpointError, MissingFileError, ModelConfigError, UnsafeCheckpointError,
                                UnsupportedError)
from ultralytics.nn.modules.block import BiLevelRoutingAttention

__all__ = ("UnsafeCheckpointError", "PublishedClass", "PublishedObject", "RestrictedUnpickler", "unpickler",
           "is_published_checkpoint", "load_published_objects", "read_published_checkpoint",
           "pickle_globals", "PUBLISHED_CLASSES",
           "TORCH_NN_CLASSES")

# ------------------------------------------------------------------------------------------------
# Reading files: torch zip archives (data.pkl + data/<key> storage records) or plain pickles
# ------------------------------------------------------------------------------------------------

_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of torch's pre-1.6 (non-zip) format


MAX_PICKLE_BYTES = 1 << 30  # data.pkl holds structure only (tensors live in their own records)


def _archive_pickle(zf: zipfile.ZipFile) -> tuple[str, bytes]:
    """(record prefix, bytes of data.pkl) of a torch zip archive."""
    hits = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if not hits:
        raise CheckpointError("zip archive without a '<name>/data.pkl' record (not a torch checkpoint)")
    if zf.getinfo(hits[0]).file_size > MAX_PICKLE_BYTES:
        raise CheckpointError(f"'{hits[0]}' claims {zf.getinfo(hits[0]).file_size} bytes, more than a checkpoint's "
                              f"structure needs ({MAX_PICKLE_BYTES})")
    return hits[0][: -len("data.pkl")], zf.read(hits[0])


class _StorageReader:
    """persistent_load for torch archives: ('storage', kind, key, location, numel) → flat CPU tensor of the record."""

    def __init__(self, zf: zipfile.ZipFile, prefix: str):
        self.zf, self.prefix = zf, prefix
        self.raw: dict[str, torch.Tensor] = {}
        order = f"{prefix}byteorder"
        if order in zf.namelist() and zf.read(order).decode(errors="replace").strip() != sys.byteorder:
            raise CheckpointError(f"tensors were written {zf.read(order).decode(errors='replace')}-endian; "
                                  f"this machine is {sys.byteorder}-endian")

    def __call__(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
            raise CheckpointError(f"unknown persistent id {str(pid)[:80]!r} in the pickle")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, StorageKind) or not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"malformed storage record {str(pid)[:80]!r}")
        if key not in self.raw:
            name = f"{self.prefix}data/{key}"
            try:
                data = self.zf.read(name)
            except KeyError:
                raise CheckpointError(f"the archive lacks the tensor record '{name}'") from None
            self.raw[key] = (torch.frombuffer(bytearray(data), dtype=torch.uint8) if data
                             else torch.empty(0, dtype=torch.uint8))
        raw = self.raw[key]
        nbytes = numel * torch.empty(0, dtype=kind.dtype).element_size()
        if raw.numel() < nbytes:
            raise CheckpointError(f"tensor record '{key}' holds {raw.numel()} bytes, {nbytes} expected (truncated?)")
        return raw[:nbytes].view(kind.dtype)


def load_published_objects(path: str | Path) -> Any:
    """Unpickle a checkpoint file with the restricted unpickler; classes come back as inert `PublishedObject`s.

    Raises FileNotFoundError, UnsafeCheckpointError (a non-allowlisted global; nothing was called) or
    CheckpointError (corrupt, truncated or not a checkpoint); every message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint '{path}' not found")
    try:
        with open(path, "rb") as f:
            is_zip = f.read(4) == _ZIP_MAGIC
            f.seek(0)
            if is_zip:
                with zipfile.ZipFile(f) as zf:
                    prefix, data = _archive_pickle(zf)
                    obj = unpickler.loads(data, storage_loader=_StorageReader(zf, prefix))
            else:
                obj = unpickler.load(f)
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"refused to load '{path}': {e}. {ADVICE[0].upper()}{ADVICE[1:]}.") from None
    except CheckpointError as e:
        raise CheckpointError(f"checkpoint '{path}' cannot be read: {e}") from None
    except Exception as e:  # truncated or corrupt: zipfile, pickle, struct and stack errors of every kind
        first = " ".join(str(e).split())[:160]
        raise CheckpointError(f"checkpoint '{path}' is corrupt or truncated ({type(e).__name__}: {first})") from None
    if isinstance(obj, int) and obj == _LEGACY_TORCH_MAGIC:
        raise CheckpointError(f"checkpoint '{path}' uses torch's legacy (pre-1.6) format, which is not supported; "
                              "re-save it with a recent torch in a trusted environment")
    return obj


# ------------------------------------------------------------------------------------------------
# Telling published files from ours without unpickling anything
# ------------------------------------------------------------------------------------------------

_PLAIN_GLOBALS = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
                  ("torch._utils", "_rebuild_tensor_v3"), ("torch._utils", "_rebuild_parameter"),
                  ("torch", "Size"), ("torch", "device"), ("_codecs", "encode"),
                  *((m, n) for m in ("builtins", "__builtin__") for n in ("set", "frozenset", "slice", "complex"))}
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}


def pickle_globals(stream: Any) -> Iterator[tuple[str, str]]:
    """The (module, name) globals one pickle names, from its opcodes alone (nothing is unpickled).

    A STACK_GLOBAL whose operands cannot be traced to strings yields ('?', '?').
    """
    recent: list[str | None] = []  # values pushed most recently (None: not a string)
    memo: dict[int, str | None] = {}
    for op, arg, _ in pickletools.genops(stream):
        if op.name == "GLOBAL":
            module, _, name = str(arg).partition(" ")
            yield module, name
        elif op.name == "STACK_GLOBAL":
            module, name = (recent[-2:] if len(recent) >= 2 else [None, None])
            yield (module, name) if isinstance(module, str) and isinstance(name, str) else ("?", "?")
        if op.name in _STRING_OPS:
            recent.append(arg if isinstance(arg, str) else None)
        elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = recent[-1] if recent else None
        elif op.name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif op.name in ("GET", "BINGET", "LONG_BINGET"):
            recent.append(memo.get(int(arg)))
        elif op.name not in ("FRAME", "PROTO"):
            recent.append(None)
        del recent[:-2]


def _is_plain_global(module: str, name: str) -> bool:
    if (module, name) in _PLAIN_GLOBALS:
        return True
    return module == "torch" and (name in STORAGE_DTYPES or name in TORCH_DTYPES)


def is_published_checkpoint(path: str | Path) -> bool:
    """True when the file pickles whole objects (the published format, or anything else beyond plain data).

    Cheap: scans the opcodes of the archive's data.pkl for globals other than the tensor/container ones that
    `torch.load(weights_only=True)` accepts; nothing is unpickled. Such a file must go through
    `read_published_checkpoint`, which reads it or refuses it. False for this project's checkpoints and for
    missing or unreadable files (the ordinary loader then reports the problem).
    """
    try:
        with open(path, "rb") as f:
            if f.read(4) == _ZIP_MAGIC:
                f.seek(0)
                with zipfile.ZipFile(f) as zf:
                    stream: Any = io.BytesIO(_archive_pickle(zf)[1])
                return any(not _is_plain_global(m, n) for m, n in pickle_globals(stream))
            f.seek(0)
            return any(not _is_plain_global(m, n) for m, n in pickle_globals(f))
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, IndexError):
        return False


# ------------------------------------------------------------------------------------------------
# From inert objects to this project's checkpoint format
# ------------------------------------------------------------------------------------------------


def _tensor(value: Any, where: str) -> torch.Tensor:
    """A detached, contiguous copy; fp16/bf16 become fp32 (published files store half-precision weights)."""
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"'{where}' should be a tensor, got {type(value).__name__}")
    value = value.detach()
    return value.float() if value.dtype in (torch.float16, torch.bfloat16) else value.clone().contiguous()


def published_state_dict(net: PublishedObject) -> dict[str, torch.Tensor]:
    """state_dict of an inert module record: `_parameters`, persistent `_buffers`, `_modules` recursively."""
    out: dict[str, torch.Tensor] = {}

    def walk(obj: Any, prefix: str, path: tuple[int, ...]) -> None:
        if not isinstance(obj, PublishedObject):
            raise CheckpointError(f"module '{prefix.rstrip('.') or '<root>'}' is a {type(obj).__name__}, "
                                  "not a pickled module")
        if id(obj) in path:
            raise CheckpointError(f"module '{prefix.rstrip('.')}' contains itself")
        skip = obj.get("_non_persistent_buffers_set") or set()
        for attr in ("_parameters", "_buffers", "_modules"):
            if not isinstance(obj.get(attr) or {}, dict):
                raise CheckpointError(f"'{prefix}{attr}' of {obj.cls.qualname} is not a dict")
        for name, value in (obj.get("_parameters") or {}).items():
            if value is not None:
                out[f"{prefix}{name}"] = _tensor(value, f"{prefix}{name}")
        for name, value in (obj.get("_buffers") or {}).items():
            if value is not None and name not in skip:
                out[f"{prefix}{name}"] = _tensor(value, f"{prefix}{name}")
        for name, child in (obj.get("_modules") or {}).items():
            if child is not None:
                walk(child, f"{prefix}{name}.", (*path, id(obj)))

    walk(net, "", ())
    return out


def _names(value: Any) -> dict[int, str]:
    if isinstance(value, (list, tuple)):
        return {i: str(v) for i, v in enumerate(value)}
    if isinstance(value, dict):
        return {int(k): str(v) for k, v in value.items()}
    return {}


def _plain_args(value: Any) -> dict:
    """Training args as a plain dict, whether pickled as a dict or as a namespace record."""
    if isinstance(value, PublishedObject):
        value = value.state
    return plain(value) if isinstance(value, dict) else {}


def read_published_checkpoint(path: str | Path) -> dict:
    """Read a published-format checkpoint safely and return it in this project's checkpoint format.

    The weights are the `ema` model's when present (else `model`'s), as an fp32 state_dict under 'model';
    'ema' is None, 'optimizer' None, 'finished' True (there is nothing to resume), 'source' is 'published'
    and 'file' the path read. Raises UnsafeCheckpointError / CheckpointError / FileNotFoundError.
    """
    raw = load_published_objects(path)
    if not isinstance(raw, dict):
        raise CheckpointError(f"checkpoint '{path}' holds a {type(raw).__name__}, not a checkpoint dict")
    ema, model = raw.get("ema"), raw.get("model")
    net = ema if isinstance(ema, PublishedObject) else model
    if not isinstance(net, PublishedObject):
        raise CheckpointError(f"checkpoint '{path}' holds no pickled model under 'ema' or 'model' "
                              "(a checkpoint of this project? read it with ultralytics.checkpoints.load_checkpoint)")
    try:
        return _our_format(raw, net, model, path)
    except CheckpointError as e:
        raise CheckpointError(f"checkpoint '{path}': {e}") from None
    except (RecursionError, TypeError, ValueError, AttributeError, KeyError) as e:
        raise CheckpointError(f"checkpoint '{path}' has an unexpected structure ({type(e).__name__}: {e})") from None


def _our_format(raw: dict, net: PublishedObject, model: Any, path: str | Path) -> dict:
    """The checkpoint dict of this project's format from the inert objects of a published file."""
    yaml_dict = net.get("yaml")
    if not isinstance(yaml_dict, dict) and isinstance(model, PublishedObject):
        yaml_dict = model.get("yaml")
    if not isinstance(yaml_dict, dict):
        raise CheckpointError(f"its {net.cls.name} has no 'yaml' dict to rebuild it from")
    yaml_dict = with_bra_args(plain(yaml_dict), net)
    weights = published_state_dict(net)
    stride = net.get("stride")
    date = raw.get("date")
    epoch, best = plain(raw.get("epoch")), plain(raw.get("best_fitness"))
    return {
        "epoch": epoch if isinstance(epoch, int) else -1,
        "best_fitness": float(best) if isinstance(best, (int, float)) else None,
        "model": weights,
        "model_yaml": yaml_dict,
        "ema": None,
        "updates": plain(raw.get("updates")) if isinstance(raw.get("updates"), int) else 0,
        "optimizer": None,
        "optimizer_dropped": raw.get("optimizer") is not None,  # a run stopped mid-way: resume must refuse it
        "train_args": _plain_args(raw.get("train_args")) or _plain_args(net.get("args")),
        "train_metrics": plain(raw.get("train_metrics")) if isinstance(raw.get("train_metrics"), dict) else {},
        "names": _names(net.get("names")) or _names(yaml_dict.get("names")),
        "stride": [float(s) for s in stride.tolist()] if isinstance(stride, torch.Tensor) else [],
        "finished": True,
        "date": date.isoformat() if hasattr(date, "isoformat") else (None if date is None else str(date)),
        "version": None if raw.get("version") is None else str(raw.get("version")),
        "format": FORMAT,
        "source": "published",
        "file": str(path),
    }


# ------------------------------------------------------------------------------------------------
# Bi-Level Routing Attention layers of files trained with the BiFormer article's code
# ------------------------------------------------------------------------------------------------
#
# The article pastes its own BiLevelRoutingAttention (with TopkRouting, KVGather, QKVLinear) into the published
# block.py, and its yaml rows give no options (`[-1, 1, BiLevelRoutingAttention, []]`): a user who edits the class
# defaults gets a model that the yaml alone does not describe, with the same state_dict keys and shapes. So the
# options are read back from the pickled records and written into the yaml row as explicit constructor args.

BRA = "BiLevelRoutingAttention"
#: The yaml arguments of our BiLevelRoutingAttention after `dim`, in constructor order.
BRA_ARG_NAMES = ("n_win", "num_heads", "qk_dim", "qk_scale", "kv_per_win", "kv_downsample_ratio",
                 "kv_downsample_kernel", "kv_downsample_mode", "topk", "param_attention", "param_routing",
                 "diff_routing", "soft_routing", "side_dwconv", "auto_pad")


def _is_class(obj: Any, name: str) -> bool:
    return isinstance(obj, PublishedObject) and obj.cls.name == name


def _attr(rec: PublishedObject, name: str, kinds: tuple[type, ...], where: str, optional: bool = False) -> Any:
    """An attribute of a record, type-checked (bool is never taken for int); missing → CheckpointError."""
    if name not in rec.state:
        if optional:
            return None
        raise CheckpointError(f"{where}: the pickled {rec.cls.name} has no attribute '{name}'")
    value = rec.state[name]
    ok = value is None and optional or isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        raise CheckpointError(f"{where}: attribute '{name}' of the pickled {rec.cls.name} is {value!r}, "
                              f"not {' or '.join(k.__name__ for k in kinds)}")
    return value


def _child(rec: PublishedObject, name: str, where: str, *classes: str) -> PublishedObject:
    """Sub-module `name` of a record, which must be one of `classes`."""
    child = (rec.get("_modules") or {}).get(name)
    if not any(_is_class(child, c) for c in classes):
        got = child.cls.qualname if isinstance(child, PublishedObject) else type(child).__name__
        raise CheckpointError(f"{where}: sub-module '{name}' is {got}; this project's BiLevelRoutingAttention "
                              f"builds {' or '.join(classes)} there")
    return child


def _pair(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _expect(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise CheckpointError(f"{where}: {what}, which this project's BiLevelRoutingAttention cannot build")


def _side_dwconv(rec: PublishedObject, dim: int, where: str) -> int:
    """Kernel of the depth-wise LePE conv (the article's `lepe`), checked to be the one the options build."""
    lepe = _child(rec, "lepe", f"{where}", "Conv2d")
    k = _pair(lepe.get("kernel_size"))[0]
    geometry = (_pair(lepe.get("kernel_size")), _pair(lepe.get("stride")), _pair(lepe.get("padding")),
                _pair(lepe.get("dilation")), lepe.get("groups"), lepe.get("in_channels"), lepe.get("out_channels"))
    _expect(isinstance(k, int) and not isinstance(k, bool) and k % 2 == 1
            and geometry == ((k, k), (1, 1), (k // 2, k // 2), (1, 1), dim, dim, dim), where,
            f"its 'lepe' is a Conv2d with kernel_size={lepe.get('kernel_size')}, stride={lepe.get('stride')}, "
            f"padding={lepe.get('padding')}, groups={lepe.get('groups')} (a depth-wise, odd, same-size conv over "
            f"dim={dim} is expected)")
    return k


def _check_router(rec: PublishedObject, opts: dict, scale: float, where: str) -> None:
    router = _child(rec, "router", where, "TopkRouting")
    for name, value in (("topk", opts["topk"]), ("qk_dim", opts["qk_dim"]), ("diff_routing", opts["diff_routing"]),
                        ("scale", scale)):
        got = router.get(name, value)
        _expect(got == value, where, f"router.{name}={got!r} differs from the layer's {name}={value!r}")
    _child(router, "emb", f"{where}.router", "Linear" if opts["param_routing"] else "Identity")
    if "routing_act" in (router.get("_modules") or {}):
        act = _child(router, "routing_act", f"{where}.router", "Softmax")
        _expect(act.get("dim") == -1, where, f"router.routing_act is Softmax(dim={act.get('dim')!r}), not dim=-1")


def _check_gather(rec: PublishedObject, opts: dict, where: str) -> None:
    if "kv_gather" not in (rec.get("_modules") or {}):
        return
    mode = _attr(_child(rec, "kv_gather", where, "KVGather"), "mul_weight", (str,), f"{where}.kv_gather")
    wanted = "soft" if opts["soft_routing"] else "hard" if opts["diff_routing"] else "none"
    _expect(mode == wanted, where, f"kv_gather.mul_weight={mode!r} (soft_routing={opts['soft_routing']}, "
            f"diff_routing={opts['diff_routing']} give {wanted!r})")


def _check_projections(rec: PublishedObject, opts: dict, dim: int, where: str) -> None:
    qkv = _child(rec, "qkv", where, "QKVLinear")
    _expect((qkv.get("dim"), qkv.get("qk_dim")) == (dim, opts["qk_dim"] or dim), where,
            f"qkv has dim={qkv.get('dim')!r}, qk_dim={qkv.get('qk_dim')!r} (the layer's are {dim}, "
            f"{opts['qk_dim'] or dim})")
    linear = _child(qkv, "qkv", f"{where}.qkv", "Linear")
    _expect((linear.get("_parameters") or {}).get("bias") is not None, where, "qkv.qkv is a Linear without bias")
    mode = opts["param_attention"]
    _expect(mode in ("qkvo", "qkv"), where, f"param_attention={mode!r}")
    _child(rec, "wo", where, "Linear" if mode == "qkvo" else "Identity")
    if "attn_act" in (rec.get("_modules") or {}):
        act = _child(rec, "attn_act", where, "Softmax")
        _expect(act.get("dim") == -1, where, f"attn_act is Softmax(dim={act.get('dim')!r}), not dim=-1")


def _check_kv_down(rec: PublishedObject, opts: dict, where: str) -> None:
    """`kv_down` must be the pooling module the kv_downsample_* attributes build."""
    mode, per_win, ratio = opts["kv_downsample_mode"], opts["kv_per_win"], opts["kv_downsample_ratio"]
    if mode in ("ada_avgpool", "ada_maxpool"):
        pool = _child(rec, "kv_down", where, "AdaptiveAvgPool2d" if mode == "ada_avgpool" else "AdaptiveMaxPool2d")
        _expect(_pair(pool.get("output_size")) == (per_win, per_win), where,
                f"kv_down has output_size={pool.get('output_size')!r} but kv_per_win={per_win!r}")
    elif mode in ("avgpool", "maxpool") and isinstance(ratio, int) and ratio > 1:
        pool = _child(rec, "kv_down", where, "AvgPool2d" if mode == "avgpool" else "MaxPool2d")
        _expect(_pair(pool.get("kernel_size")) == (ratio, ratio) and _pair(pool.get("stride")) == (ratio, ratio)
                and _pair(pool.get("padding")) == (0, 0), where,
                f"kv_down has kernel_size={pool.get('kernel_size')!r}, stride={pool.get('stride')!r}, "
                f"padding={pool.get('padding')!r} but kv_downsample_ratio={ratio!r}")
    elif mode in ("identity", "avgpool", "maxpool"):
        _child(rec, "kv_down", where, "Identity")
    else:
        _expect(False, where, f"kv_downsample_mode={mode!r}")


def bra_args(rec: PublishedObject, where: str) -> list:
    """Our BiLevelRoutingAttention's yaml args (after dim) that rebuild the pickled layer `rec`.

    Every attribute the article's __init__ sets is read and its sub-modules are checked against it; a value this
    project's class cannot build raises CheckpointError naming the attribute.
    """
    integer, number, flag = (int,), (int, float), (bool,)
    dim = _attr(rec, "dim", integer, where)
    opts = {name: _attr(rec, name, integer, where) for name in ("n_win", "num_heads", "qk_dim", "topk")}
    opts.update({name: _attr(rec, name, flag, where) for name in ("param_routing", "diff_routing", "soft_routing",
                                                                  "auto_pad")})
    opts.update({name: _attr(rec, name, (str,), where) for name in ("param_attention", "kv_downsample_mode")})
    opts.update({name: _attr(rec, name, integer, where, optional=True) for name in ("kv_per_win",
                                                                                     "kv_downsample_ratio")})
    kernel = "kv_downsample_kenel" if "kv_downsample_kenel" in rec.state else "kv_downsample_kernel"  # article typo
    opts["kv_downsample_kernel"] = _attr(rec, kernel, integer, where, optional=True)
    for name, value in (("dim", dim), *((k, opts[k]) for k in ("n_win", "num_heads", "qk_dim", "topk"))):
        _expect(value > 0, where, f"{name}={value!r}")
    scale = _attr(rec, "scale", number, where)
    _expect(scale > 0, where, f"scale={scale!r}")
    opts["qk_scale"] = None if scale == opts["qk_dim"] ** -0.5 else float(scale)
    opts["qk_dim"] = None if opts["qk_dim"] == dim else opts["qk_dim"]
    opts["side_dwconv"] = _side_dwconv(rec, dim, where)
    _check_router(rec, {**opts, "qk_dim": opts["qk_dim"] or dim}, scale, where)
    _check_gather(rec, opts, where)
    _check_projections(rec, opts, dim, where)
    _check_kv_down(rec, opts, where)
    args = [opts[name] for name in BRA_ARG_NAMES]
    try:  # our own class, on the meta device (no memory whatever dim says): its checks name the bad option
        with torch.device("meta"):
            BiLevelRoutingAttention(dim, *args)
    except (ModelConfigError, UnsupportedError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{where}: the pickled options cannot be built by this project ({e})") from None
    return args


def with_bra_args(yaml_dict: dict, net: PublishedObject) -> dict:
    """`yaml_dict` with the args of every BiLevelRoutingAttention row taken from the pickled layers of `net`."""
    layers = (net.get("_modules") or {}).get("model")
    rows = (yaml_dict.get("backbone") or []) + (yaml_dict.get("head") or [])
    if not isinstance(layers, PublishedObject) or not isinstance(rows, list):
        return yaml_dict
    for i, layer in (layers.get("_modules") or {}).items():
        if not isinstance(layer, PublishedObject):
            continue  # published_state_dict reports it
        repeats = list((layer.get("_modules") or {}).values()) if _is_class(layer, "Sequential") else [layer]
        if not repeats or not all(_is_class(r, BRA) for r in repeats):
            continue
        where = f"layer model.{i} ({BRA})"
        args = [bra_args(r, where if len(repeats) == 1 else f"{where}, repeat {j}") for j, r in enumerate(repeats)]
        if any(a != args[0] for a in args):
            raise CheckpointError(f"{where}: its repeats have different options, which one yaml row cannot describe")
        row = rows[int(i)] if str(i).isdigit() and int(i) < len(rows) else None
        if not (isinstance(row, list) and len(row) == 4 and row[2] == BRA):
            raise CheckpointError(f"{where}: the model yaml has no {BRA} row at index {i} (got {row!r})")
        row[3] = args[0]  # rows are lists inside yaml_dict (a plain copy), so this edits the returned dict
    return yaml_dict
