"""The restricted unpickler behind `ultralytics.checkpoints.published`: an explicit allowlist of globals, inert records.

- every global a pickle names is looked up in the allowlist (`resolve_global`); anything else raises
  `UnsafeCheckpointError` before it is imported or called;
- model and layer classes become inert `PublishedClass` tokens; their instances are `PublishedObject` records
  that only store the constructor arguments and the attribute state (no method of any real class runs);
- tensors are rebuilt by this module's own functions from storages handed in by a `storage_loader`;
- the opcodes that call things (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ, BUILD) are re-implemented to accept only
  allowlisted callables, so nothing outside the allowlist is called even indirectly; extension codes (EXT1/2/4,
  whose process-wide cache could bypass `find_class`) are refused.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import datetime
import io
import pickle
import sys
from collections import OrderedDict
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, Callable

import torch
import torch.nn as nn

from ultralytics.errors import CheckpointError, UnsafeCheckpointError

ADVICE = "only load checkpoints you trust; this loader refuses code objects"


# ------------------------------------------------------------------------------------------------
# Inert stand-ins for pickled class instances
# ------------------------------------------------------------------------------------------------


class PublishedClass:
    """Token for an allowlisted class named by the pickle (e.g. ultralytics.nn.tasks.DetectionModel). Not callable."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"

    def __repr__(self) -> str:
        return f"<published class {self.qualname}>"


class PublishedObject:
    """Inert record of one pickled instance: its class token, constructor args and attribute state. No behaviour."""

    __slots__ = ("cls", "args", "state")

    def __init__(self, cls: PublishedClass, args: tuple = ()):
        self.cls, self.args, self.state = cls, tuple(args), {}

    def set_state(self, state: Any) -> None:
        """Record what pickle's BUILD passes (a __dict__, a (dict, slots) pair, or None); nothing is executed."""
        if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
            for part in state:
                self.state.update(part or {})
        elif isinstance(state, dict):
            self.state.update(state)
        elif state is not None:
            self.state["__state__"] = state

    def get(self, name: str, default: Any = None) -> Any:
        return self.state.get(name, default)

    def __repr__(self) -> str:
        return f"<published {self.cls.qualname} object>"


# ------------------------------------------------------------------------------------------------
# The allowlist
# ------------------------------------------------------------------------------------------------

_CONV = ("Conv", "Conv2", "DWConv", "LightConv", "GhostConv", "RepConv", "Focus", "Concat", "ConvTranspose",
         "DWConvTranspose2d", "ChannelAttention", "SpatialAttention", "CBAM")
_BLOCK = ("DFL", "Bottleneck", "C1", "C2", "C2f", "C3", "C3x", "SPP", "SPPF", "GhostBottleneck", "C3Ghost",
          "BiLevelRoutingAttention", "TopkRouting", "QKVLinear", "ZeroLePE")
#: Classes the BiFormer article pastes into the published block.py (KVGather exists only there, not in this project).
ARTICLE_BRA_CLASSES = ("BiLevelRoutingAttention", "TopkRouting", "KVGather", "QKVLinear")
_NAMESPACE = ("IterableSimpleNamespace",)
#: Classes of the published package (and this one) that may appear in a YOLOv8 detection checkpoint → inert tokens.
PUBLISHED_CLASSES: dict[str, tuple[str, ...]] = {
    "ultralytics.nn.tasks": ("BaseModel", "DetectionModel"),
    "ultralytics.nn.modules.conv": _CONV,
    "ultralytics.nn.modules.block": tuple(dict.fromkeys(_BLOCK + ARTICLE_BRA_CLASSES)),
    "ultralytics.nn.modules.head": ("Detect",),
    "ultralytics.nn.modules": _CONV + _BLOCK + ("Detect",),  # early 8.0 releases: one modules.py
    "ultralytics.utils": _NAMESPACE,
    "ultralytics.cfg": _NAMESPACE,
    "ultralytics.yolo.utils": _NAMESPACE,  # early 8.0 releases
    "ultralytics.utils.loss": ("v8DetectionLoss", "BboxLoss", "DFLoss"),  # a model's cached criterion
    "ultralytics.utils.tal": ("TaskAlignedAssigner",),
    "types": ("SimpleNamespace",),
    "argparse": ("Namespace",),
}
#: torch.nn layer classes → inert tokens (accepted only under the module path torch itself defines them in).
TORCH_NN_CLASSES = ("Conv2d", "ConvTranspose2d", "BatchNorm2d", "SiLU", "ReLU", "LeakyReLU", "Hardswish", "GELU",
                    "Sigmoid", "Identity", "Sequential", "ModuleList", "ModuleDict", "Upsample", "MaxPool2d",
                    "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Linear", "Softmax", "LayerNorm",
                    "GroupNorm", "Dropout", "BCEWithLogitsLoss")
STORAGE_DTYPES = {"DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
                   "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
                   "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
                   "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64,
                   "ComplexDoubleStorage": torch.complex128, "UntypedStorage": torch.uint8}


TORCH_DTYPES = {n: v for n, v in vars(torch).items() if isinstance(v, torch.dtype)}  # no lazy-import __getattr__


class StorageKind:
    """What a `torch.<X>Storage` global resolves to: only its dtype (used by persistent ids)."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _rebuild_tensor_v2(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, requires_grad: bool = False,
                       backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    """A view of a flat storage tensor (hooks and requires_grad are dropped: we only need values)."""
    if not isinstance(storage, torch.Tensor):
        raise CheckpointError(f"tensor record without storage (got {type(storage).__name__})")
    return torch.as_strided(storage, tuple(size), tuple(stride), int(offset))


def _rebuild_tensor_v3(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, requires_grad: bool,
                       backward_hooks: Any, dtype: torch.dtype, metadata: Any = None) -> torch.Tensor:
    """Like v2 for a byte storage reinterpreted as `dtype`."""
    if not isinstance(dtype, torch.dtype):
        raise CheckpointError(f"tensor record with an invalid dtype {dtype!r}")
    return _rebuild_tensor_v2(storage.view(torch.uint8).view(dtype), offset, size, stride)


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool = False, backward_hooks: Any = None,
                       state: Any = None) -> torch.Tensor:
    """Parameters are kept as plain tensors (their extra Python state, if any, is ignored)."""
    if not isinstance(data, torch.Tensor):
        raise CheckpointError(f"parameter record without tensor data (got {type(data).__name__})")
    return data


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it for bytes objects; only latin-1 is accepted."""
    if not isinstance(text, str) or encoding.replace("-", "").replace("_", "").lower() != "latin1":
        raise UnsafeCheckpointError(f"_codecs.encode is only allowed as (str, 'latin1'), got encoding {encoding!r}")
    return text.encode("latin1")


def _reconstructor(cls: Any, base: Any, state: Any = None) -> PublishedObject:
    """copyreg._reconstructor, for allowlisted class tokens only."""
    if isinstance(cls, PublishedClass) and base is object:
        return PublishedObject(cls)
    raise UnsafeCheckpointError(f"copyreg._reconstructor is only allowed for allowlisted classes, got {cls!r}")


def _path(flavour: type) -> Callable[..., str]:
    def make(*parts: str) -> str:
        if not all(isinstance(p, str) for p in parts):
            raise CheckpointError("a pickled path with non-string parts")
        return str(flavour(*parts))

    return make


_SAFE: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("_codecs", "encode"): _latin1_bytes,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("copy_reg", "_reconstructor"): _reconstructor,
    **{(m, n): getattr(builtins, n) for m in ("builtins", "__builtin__")
       for n in ("set", "frozenset", "slice", "complex")},
    **{("datetime", n): getattr(datetime, n) for n in ("datetime", "date", "time", "timedelta", "timezone")},
    **{("pathlib", n): _path(PureWindowsPath if "Windows" in n else PurePosixPath)
       for n in ("Path", "PurePath", "PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath")},
}
_NUMPY = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
          ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
          ("numpy._core.multiarray", "scalar")}
_CALLABLE_TYPES = (OrderedDict, set, frozenset, slice, complex, torch.Size, torch.device, datetime.datetime,
                   datetime.date, datetime.time, datetime.timedelta, datetime.timezone)


_NUMPY_IDS: set[int] = set()  # identities of the numpy callables handed out so far


def _numpy_global(module: str, name: str) -> Any:
    import numpy as np

    if module == "numpy":
        obj = getattr(np, name)
    else:
        try:
            from numpy._core import multiarray
        except ImportError:  # numpy < 2
            from numpy.core import multiarray
        obj = getattr(multiarray, name)
    _NUMPY_IDS.add(id(obj))
    return obj


def resolve_global(module: str, name: str) -> Any:
    """What an allowlisted (module, name) pickle global stands for; raises UnsafeCheckpointError for anything else."""
    if not isinstance(module, str) or not isinstance(name, str):
        raise UnsafeCheckpointError(f"a non-string global name {module!r}.{name!r}")
    if name in PUBLISHED_CLASSES.get(module, ()):
        return PublishedClass(module, name)
    if name in TORCH_NN_CLASSES and getattr(getattr(nn, name, None), "__module__", None) == module:
        return PublishedClass(module, name)
    if (module, name) in _SAFE:
        return _SAFE[(module, name)]
    if module == "torch" and name in STORAGE_DTYPES:
        return StorageKind(STORAGE_DTYPES[name])
    if module == "torch" and name in TORCH_DTYPES:
        return TORCH_DTYPES[name]
    if (module, name) in _NUMPY:
        return _numpy_global(module, name)
    raise UnsafeCheckpointError(f"the pickle asks for '{module}.{name}', which is not on the allowlist")


def _safe_callables() -> set[int]:
    """Identities of every real callable the allowlist can hand out."""
    found = {id(v) for v in _SAFE.values() if callable(v)}
    found.update(id(t) for t in _CALLABLE_TYPES)
    return found


_SAFE_CALLABLE_IDS = _safe_callables()


def _is_numpy_data(obj: Any) -> bool:
    """An ndarray or dtype instance (only reachable through the numpy globals of the allowlist)."""
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, (np.ndarray, np.dtype))


# ------------------------------------------------------------------------------------------------
# The restricted unpickler
# ------------------------------------------------------------------------------------------------


class RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcode table can be overridden
    """Unpickler that resolves globals through the allowlist and calls nothing else."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: Any, *, storage_loader: Callable[[tuple], torch.Tensor] | None = None, **kwargs: Any):
        kwargs.setdefault("encoding", "utf-8")
        super().__init__(file, **kwargs)
        self._storage_loader = storage_loader

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports and isinstance(module, str) and isinstance(name, str):
            # Python 2 names, as protocol-2 pickles write them ('__builtin__', 'commands') → Python 3 names
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        return resolve_global(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if self._storage_loader is None:
            raise CheckpointError("the pickle refers to external tensor storage, but it is not inside a torch archive")
        return self._storage_loader(pid)

    @staticmethod
    def _call(func: Any, args: Any, kwargs: dict | None = None) -> Any:
        """Call an allowlisted callable or instantiate an inert record; refuse everything else."""
        if not isinstance(args, tuple) or not (kwargs is None or isinstance(kwargs, dict)):
            raise CheckpointError("malformed pickle: call arguments are not a tuple")
        if isinstance(func, PublishedClass):
            return PublishedObject(func, args)
        if id(func) in _SAFE_CALLABLE_IDS or id(func) in _NUMPY_IDS:
            return func(*args, **(kwargs or {}))
        raise UnsafeCheckpointError(f"the pickle tries to call {func!r}, which is not on the allowlist")

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, kwargs))

    def _new(self, cls: Any, args: Any, kwargs: dict | None = None) -> Any:
        """cls.__new__(cls, *args) for class tokens and the allowlisted builtin types only."""
        if isinstance(cls, PublishedClass):
            return PublishedObject(cls, args if isinstance(args, tuple) else ())
        if isinstance(cls, type) and id(cls) in _SAFE_CALLABLE_IDS and isinstance(args, tuple):
            return cls.__new__(cls, *args, **(kwargs or {}))
        raise UnsafeCheckpointError(f"the pickle tries to create an instance of {cls!r}, which is not on the allowlist")

    def _instantiate(self, klass: Any, args: list) -> None:  # INST / OBJ (protocols 0 and 1)
        self.append(self._call(klass, tuple(args)))

    def get_extension(self, code: int) -> None:  # EXT1/2/4: copyreg's global cache would bypass find_class
        raise UnsafeCheckpointError(f"the pickle uses extension code {code}; extension codes are not allowed")

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, PublishedObject):
            inst.set_state(state)
        elif _is_numpy_data(inst):
            inst.__setstate__(state)  # ndarray / dtype: C code that only copies data
        elif not (state is None or (isinstance(state, (dict, tuple, list)) and not state)):
            raise UnsafeCheckpointError(f"the pickle tries to set the state of a {type(inst).__name__}, "
                                        "which only allowlisted records may receive")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build


# The module doubles as a `pickle_module`-shaped namespace: Unpickler, load, loads, UnpicklingError.
Unpickler = RestrictedUnpickler
UnpicklingError = pickle.UnpicklingError


def load(file: Any, **kwargs: Any) -> Any:
    """Unpickle one object from a binary file with the restricted unpickler."""
    return RestrictedUnpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs: Any) -> Any:
    """Unpickle one object from bytes with the restricted unpickler."""
    return RestrictedUnpickler(io.BytesIO(data), **kwargs).load()
