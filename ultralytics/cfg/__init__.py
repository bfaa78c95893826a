"""Configuration: the default settings and `get_cfg` (merge + type checks, close-match hints).

`get_cfg(cfg, overrides)` merges default.yaml < `cfg` < a `cfg=` file named in overrides < overrides and
returns one checked `IterableSimpleNamespace`. The command line lives in `ultralytics/cli.py`.
A wrong value type raises ConfigTypeError (a TypeError), a bad value ConfigError (a ValueError) and an unknown key
UnknownKeyError (a SyntaxError), as the published package does; all three are ConfigErrors.
"""

from __future__ import annotations

import difflib
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import torch
import yaml

from ultralytics.errors import ConfigError, ConfigTypeError, MissingFileError, UnknownKeyError
from ultralytics.utils import DEFAULT_CFG_PATH, LOGGER, yaml_load

__all__ = [
    "CfgError",
    "IterableSimpleNamespace",
    "DEFAULT_CFG_DICT",
    "DEFAULT_CFG_KEYS",
    "DEFAULT_CFG",
    "TASKS",
    "MODES",
    "get_cfg",
    "cfg2dict",
    "parse_value",
    "smart_value",
    "check_cfg",
    "check_dict_alignment",
    "copy_default_cfg",
    "close_matches",
]


CfgError = ConfigError  # the name earlier releases of this project used


class IterableSimpleNamespace(SimpleNamespace):
    """A SimpleNamespace that iterates over (key, value) pairs and has a dict-like `.get`."""

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(vars(self).items())

    def __contains__(self, key: object) -> bool:
        return key in vars(self)

    def __str__(self) -> str:
        return "\n".join(f"{k}={v}" for k, v in vars(self).items())

    def __getattr__(self, attr: str) -> Any:
        # Only called when normal lookup fails: say which key is missing, as an AttributeError.
        raise AttributeError(f"'{type(self).__name__}' has no key '{attr}'; valid keys are listed by `yolo cfg`")

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value of `key`, or `default` when it is not set."""
        return vars(self).get(key, default)


DEFAULT_CFG_DICT: dict[str, Any] = yaml_load(DEFAULT_CFG_PATH)  # checked and converted at the end of this file
DEFAULT_CFG_KEYS = frozenset(DEFAULT_CFG_DICT)

TASKS = ("detect",)
OTHER_TASKS = ("segment", "classify", "pose", "obb")  # published tasks this project does not implement
MODES = ("train", "val", "predict", "export", "track", "benchmark")
OTHER_MODES: tuple[str, ...] = ()  # published modes this project does not implement

# Keys a run may carry although default.yaml does not list them (the trainer writes save_dir to args.yaml).
EXTRA_KEYS: dict[str, Any] = {"save_dir": None}

# Old key names: new name and whether the boolean meaning flips.
DEPRECATED_KEYS: dict[str, tuple[str, bool]] = {
    "boxes": ("show_boxes", False),
    "hide_labels": ("show_labels", True),
    "hide_conf": ("show_conf", True),
    "line_thickness": ("line_width", False),
}

# Defaults that depend on the mode: applied over default.yaml for every key the run does not set itself.
# Together with default.yaml this is the whole set of defaults; components never keep their own.
DEFAULT_MODEL = "yolov8_BiFormer.yaml"  # the project's headline model: what YOLO() and `yolo train` build
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "train": {"model": DEFAULT_MODEL, "data": "shapes.yaml"},
    "val": {"conf": 0.001, "rect": True},
    "predict": {"conf": 0.25, "batch": 1, "save": False, "rect": True},
    "export": {"batch": 1},
    "track": {"conf": 0.1, "batch": 1, "save": False, "rect": True},
    "benchmark": {"batch": 1},
}
# Mode defaults worth a warning when they are used, because the user probably meant to choose.
_ANNOUNCED_DEFAULTS = {("train", "model"), ("train", "data")}

# Keys of the published package that this project accepts (so published args.yaml files and scripts load)
# but does not act on. Giving one a value other than its default warns, naming the reason.
UNSUPPORTED_KEYS: dict[str, str] = {
    "profile": "ONNX/TensorRT profiling during training is not implemented",
    "save_hybrid": "hybrid (ground truth + prediction) labels are not written",
    "dnn": "ONNX models run through ONNX Runtime, not OpenCV DNN",
    "stream_buffer": "live streams are not supported as sources",
    "retina_masks": "segmentation only",
    "keras": "TF/Keras export is not implemented (formats: torchscript, onnx)",
    "optimize": "mobile-optimised TorchScript is not implemented",
    "int8": "INT8 quantisation is not implemented for torchscript/onnx",
    "workspace": "TensorRT export is not implemented",
    "nms": "CoreML export is not implemented",
    "label_smoothing": "detection does not use label smoothing",
    "copy_paste": "segmentation only (copy-paste needs masks)",
    "overlap_mask": "segmentation only",
    "mask_ratio": "segmentation only",
    "dropout": "classification only",
    "pose": "pose only",
    "kobj": "pose only",
    "auto_augment": "classification only",
    "erasing": "classification only",
    "crop_fraction": "classification only",
}


def mode_default(mode: str, key: str) -> Any:
    """The default of `key` in `mode`: the per-mode table first, then default.yaml."""
    return MODE_DEFAULTS.get(mode, {}).get(key, DEFAULT_CFG_DICT.get(key))


def warn_unsupported(given: dict[str, Any]) -> list[str]:
    """Warn for each key of `given` that this project ignores and that is set away from its default; return them."""
    ignored = [k for k, v in given.items()
               if k in UNSUPPORTED_KEYS and v is not None and v != DEFAULT_CFG_DICT.get(k)]
    for k in ignored:
        LOGGER.warning(f"WARNING ⚠️ {k}={given[k]!r} is ignored: {UNSUPPORTED_KEYS[k]}")
    return ignored


# --- Type rules -----------------------------------------------------------------------------------
# Numbers (int or float, stored as float) with no range beyond an optional minimum.
FLOAT_KEYS: dict[str, float | None] = {
    "time": 0.0, "warmup_epochs": 0.0, "box": 0.0, "cls": 0.0, "dfl": 0.0, "pose": 0.0, "kobj": 0.0,
    "degrees": None, "shear": None, "workspace": 0.0,
}
# Numbers that must lie in [0, 1].
FRACTION_KEYS = frozenset({
    "lr0", "lrf", "momentum", "weight_decay", "warmup_momentum", "warmup_bias_lr", "label_smoothing",
    "hsv_h", "hsv_s", "hsv_v", "translate", "scale", "perspective", "flipud", "fliplr", "mosaic", "mixup",
    "copy_paste", "fraction", "iou", "conf", "dropout", "erasing", "crop_fraction",
})
# Whole numbers and their minimum (None: any). A float with a whole value (3.0) is accepted as 3.
INT_KEYS: dict[str, int | None] = {
    "epochs": 1, "patience": 0, "workers": 0, "seed": 0, "close_mosaic": 0, "max_det": 1, "nbs": 1,
    "save_period": -1, "vid_stride": 1, "opset": 1, "line_width": 1, "mask_ratio": 1,
}
BOOL_KEYS = frozenset({
    "save", "exist_ok", "verbose", "deterministic", "single_cls", "rect", "cos_lr", "amp", "profile",
    "multi_scale", "sync_bn", "val", "save_json", "save_hybrid", "half", "dnn", "plots", "stream_buffer",
    "visualize", "augment", "agnostic_nms", "retina_masks", "show", "save_frames", "save_txt", "save_conf",
    "save_crop", "show_labels", "show_conf", "show_boxes", "keras", "optimize", "int8", "dynamic", "simplify",
    "nms", "overlap_mask",
})
# Text (a path or a name). Numbers are turned into text (name=2 -> "2"), Path objects into str.
STR_KEYS = frozenset({
    "task", "mode", "model", "data", "project", "name", "optimizer", "split", "format", "auto_augment",
    "cfg", "tracker", "save_dir",
})
# Keys with their own rule (see _check_special); `source` accepts anything the predictor can read.
SPECIAL_KEYS = frozenset({"imgsz", "batch", "device", "cache", "pretrained", "resume", "classes", "freeze",
                          "embed", "source"})
# Keys whose value may also be None although their default is not: opset (the exporter picks one) and the ignored
# keys the published package lets be None (its args.yaml files carry e.g. workspace: null, nms: null).
NULLABLE_KEYS = frozenset({"opset", "auto_augment", "crop_fraction", "label_smoothing", "save_hybrid", "keras", "int8",
                           "workspace", "nms", "tracker"})

CHOICES: dict[str, tuple[str, ...]] = {
    "task": TASKS,
    "mode": MODES,
    "optimizer": ("SGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSProp", "auto"),
    "split": ("train", "val", "test"),
}

_EXPONENT_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
_YAML_BOOL_WORDS = {"true", "false"}


def parse_value(text: str) -> Any:
    """Turn a command-line value into a Python value with `yaml.safe_load`.

    `640` -> int, `0.01` and `1e-3` -> float, `true`/`False` (any case) -> bool, `None`/`null`/`` -> None,
    `[0,2]` -> list, `0,1` -> "0,1", `exp` -> "exp". Text YAML cannot parse stays text.
    """
    text = text.strip()
    if text.lower() == "none":
        return None
    if text.lower() in _YAML_BOOL_WORDS:
        return text.lower() == "true"  # any letter case, as the published package reads them (YAML: 3 spellings)
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # e.g. globs like *.jpg or an unbalanced bracket: keep the text
    if isinstance(value, bool) and text.lower() not in _YAML_BOOL_WORDS:
        return text  # YAML 1.1 reads yes/no/on/off as booleans; only true/false count here
    if isinstance(value, str) and _EXPONENT_NUMBER.match(text):
        return float(text)  # PyYAML needs a dot for exponent floats ("1e-3"); accept them anyway
    if isinstance(value, (dict, set)) or (value is not None and not isinstance(value, (str, int, float, list))):
        return text  # mappings, dates and the like are not config values: keep the text
    return value


def smart_value(text: str) -> Any:
    """The published name of `parse_value`: "none" -> None, "true" -> True, "3" -> 3, "1e-3" -> 0.001,
    "[1,2]" -> [1, 2], "abc" -> "abc"."""
    return parse_value(text)


def close_matches(word: str, candidates: Any, n: int = 3) -> list[str]:
    """The candidates most similar to `word` (difflib), best first."""
    return difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.6)


def _unknown_key_message(key: str, valid: set[str], where: str = "") -> str:
    similar = close_matches(key, sorted(valid))
    hint = f"; similar keys: {', '.join(similar)}" if similar else "; `yolo cfg` lists every key"
    return f"'{key}' is not a valid YOLO argument{where}{hint}"


def _refuse_unknown(keys: Any, valid: set[str], where: str = "", cause: BaseException | None = None) -> None:
    """Raise one UnknownKeyError naming every key not in `valid` (with close matches), chained to `cause`."""
    unknown = [str(k) for k in keys if k not in valid]
    if not unknown:
        return
    error = UnknownKeyError("; ".join(_unknown_key_message(k, valid, where) for k in unknown))
    if cause is not None:
        raise error from cause
    raise error


def check_dict_alignment(base: dict[str, Any], custom: dict[str, Any], e: BaseException | None = None,
                         allowed_custom_keys: set[str] | None = None) -> None:
    """Raise UnknownKeyError (a SyntaxError) if `custom` has keys that are neither in `base` nor allowed.

    Deprecated key names count under their new name (with a warning). `allowed_custom_keys` defaults to the keys a
    run may carry beyond default.yaml (`save_dir`); `e`, when given, becomes the error's cause.
    """
    allowed = set(EXTRA_KEYS) if allowed_custom_keys is None else set(allowed_custom_keys)
    _refuse_unknown(_rename_deprecated(dict(custom)), set(base) | allowed, cause=e)


def copy_default_cfg() -> Path:
    """Copy default.yaml to `default_copy.yaml` in the current folder (replacing it), to edit and pass as `cfg=`."""
    target = Path.cwd() / f"{DEFAULT_CFG_PATH.stem}_copy.yaml"
    shutil.copyfile(DEFAULT_CFG_PATH, target)
    LOGGER.info(f"{DEFAULT_CFG_PATH} copied to {target}\nExample YOLO command with this new custom cfg:\n"
                f"    yolo cfg='{target}' imgsz=320 batch=8")
    return target


def cfg2dict(cfg: str | Path | dict | SimpleNamespace | None) -> dict[str, Any]:
    """Return a new dict from a yaml path, a dict or a namespace (None gives {})."""
    if cfg is None:
        return {}
    if isinstance(cfg, (str, Path)):
        path = Path(cfg)
        if not path.is_file():
            raise MissingFileError(f"config file '{cfg}' not found")
        return yaml_load(path)
    if isinstance(cfg, SimpleNamespace):
        return dict(vars(cfg))
    if isinstance(cfg, dict):
        return dict(cfg)
    raise TypeError(f"cfg must be a yaml path, a dict or a namespace, not {type(cfg).__name__}")


def _type_name(value: Any) -> str:
    return type(value).__name__


def _bad_type(key: str, value: Any, expected: str, example: str) -> ConfigTypeError:
    return ConfigTypeError(f"{key}={value!r} is of type {_type_name(value)}, but '{key}' expects {expected} "
                           f"(e.g. {key}={example})")


def _as_int(key: str, value: Any, expected: str, example: str) -> int:
    """An int from an int or a whole float; anything else (bools too) is a ConfigTypeError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad_type(key, value, expected, example)
    if isinstance(value, float):
        if not value.is_integer():
            raise ConfigTypeError(f"{key}={value!r} is not a whole number, but '{key}' expects {expected} "
                                  f"(e.g. {key}={example})")
        value = int(value)
    return value


def _int_list(key: str, value: Any, expected: str, example: str, lengths: tuple[int, ...] | None = None) -> list[int]:
    """A list of ints from a list/tuple or from comma text like "0,2"."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.strip("[]() ").split(",")]
        if not all(re.fullmatch(r"[-+]?\d+", p) for p in parts):
            raise _bad_type(key, value, expected, example)
        value = [int(p) for p in parts]
    if not isinstance(value, (list, tuple)):
        raise _bad_type(key, value, expected, example)
    if lengths and len(value) not in lengths:
        raise CfgError(f"{key}={value!r} has {len(value)} items, but '{key}' expects {expected} (e.g. {key}={example})")
    return [_as_int(key, v, expected, example) for v in value]


def _check_special(key: str, value: Any) -> Any:
    if key == "imgsz":
        expected, example = "a positive int or a [h, w] list of positive ints", "640 or imgsz=[480,640]"
        if isinstance(value, (list, tuple, str)):
            sizes = _int_list(key, value, expected, example, lengths=(1, 2))
        else:
            sizes = [_as_int(key, value, expected, example)]
        if any(s <= 0 for s in sizes):
            raise CfgError(f"imgsz={value!r} is not valid, '{key}' expects {expected} (e.g. imgsz={example})")
        return sizes if isinstance(value, (list, tuple)) or len(sizes) > 1 else sizes[0]
    if key == "batch":
        batch = _as_int(key, value, "a positive int, or -1 for an automatic batch size", "16")
        if batch == 0 or batch < -1:
            raise CfgError(f"batch={value!r} is not valid, 'batch' must be a positive int, or -1 for an automatic batch size")
        return batch
    if key == "device":
        if isinstance(value, torch.device):  # e.g. sahi passes torch.device("cpu")
            return str(value)
        if isinstance(value, (list, tuple)):
            return [_as_int(key, v, "a device such as 0, 0,1, [0,1], cpu or mps", "0") for v in value]
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise _bad_type(key, value, "a device such as 0, 0,1, [0,1], cpu or mps", "0")
        return value
    if key == "cache":
        if isinstance(value, bool) or value in ("ram", "disk"):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise CfgError(f"cache={value!r} is not valid, 'cache' expects True, False, ram or disk")
    if key in ("pretrained", "resume"):
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (bool, str)):
            return value
        raise _bad_type(key, value, "True, False or a path to a *.pt file", "True")
    if key in ("classes", "freeze", "embed"):
        expected, example = "an int or a list of ints", "[0,2]"
        if isinstance(value, (list, tuple, str)):
            items = _int_list(key, value, expected, example)
        else:
            items = [_as_int(key, value, expected, example)]
        if any(v < 0 for v in items):
            raise CfgError(f"{key}={value!r} is not valid, '{key}' expects non-negative ints")
        if key == "embed" or isinstance(value, (list, tuple, str)):
            return items
        return items[0]
    return value  # source: anything the predictor can read (path, URL, index, array, ...)


def _check_value(key: str, value: Any) -> Any:
    """Check one (key, value) pair against the rules above; return the (possibly converted) value."""
    if value is None:
        if DEFAULT_CFG_DICT.get(key, EXTRA_KEYS.get(key)) is None or key in NULLABLE_KEYS:
            return None
        raise ConfigTypeError(f"{key}=None is not allowed, '{key}' needs a value (default {DEFAULT_CFG_DICT[key]!r})")
    if key in FLOAT_KEYS or key in FRACTION_KEYS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad_type(key, value, "a number (int or float)", repr(DEFAULT_CFG_DICT.get(key) or 0.5))
        value = float(value)
        if key in FRACTION_KEYS:
            low_ok = value > 0.0 if key == "fraction" else value >= 0.0
            if not (low_ok and value <= 1.0):
                span = "in (0.0, 1.0]" if key == "fraction" else "between 0.0 and 1.0"
                raise CfgError(f"{key}={value!r} is out of range, '{key}' must be {span}")
        elif FLOAT_KEYS[key] is not None and value < FLOAT_KEYS[key]:
            raise CfgError(f"{key}={value!r} is out of range, '{key}' must be >= {FLOAT_KEYS[key]}")
        return value
    if key in INT_KEYS:
        value = _as_int(key, value, "an int", str(DEFAULT_CFG_DICT.get(key) or 1))
        low = INT_KEYS[key]
        if low is not None and value < low:
            raise CfgError(f"{key}={value!r} is out of range, '{key}' must be an int >= {low}")
        return value
    if key in BOOL_KEYS:
        if not isinstance(value, bool):
            raise _bad_type(key, value, "a bool", "True or False")
        return value
    if key in STR_KEYS:
        if isinstance(value, Path) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            value = str(value)
        if not isinstance(value, str):
            raise _bad_type(key, value, "text (a name or a path)", "exp")
        if key in CHOICES:
            value = _check_choice(key, value)
        return value
    return _check_special(key, value)


def _check_choice(key: str, value: str) -> str:
    choices = CHOICES[key]
    if key == "task" and value.lower() in OTHER_TASKS:
        raise CfgError(f"task '{value}' is not supported: only detect is supported in this release")
    if key == "mode" and value.lower() in OTHER_MODES:
        raise CfgError(f"mode '{value}' is not supported: choose one of {', '.join(MODES)}")
    for choice in choices:  # accept any letter case, store the canonical spelling
        if value.lower() == choice.lower():
            return choice
    similar = close_matches(value, choices) or close_matches(value.lower(), [c.lower() for c in choices])
    hint = f"; did you mean {', '.join(similar)}?" if similar else ""
    raise CfgError(f"{key}={value!r} is not valid, '{key}' must be one of {', '.join(choices)}{hint}")


def _rename_deprecated(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if k in DEPRECATED_KEYS:
            new, flip = DEPRECATED_KEYS[k]
            LOGGER.warning(f"WARNING ⚠️ '{k}' is deprecated and will be removed; use '{new}' instead")
            k, v = new, (not v if flip and isinstance(v, bool) else v)
        out[k] = v
    return out


def check_cfg(d: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Check keys and values of `d`; return a new dict with converted values.

    Raises UnknownKeyError for unknown keys, ConfigTypeError for a wrong type, ConfigError for a bad value.
    """
    d = _rename_deprecated(d)
    _refuse_unknown(d, DEFAULT_CFG_KEYS | set(EXTRA_KEYS), where)
    return {k: _check_value(k, v) for k, v in d.items()}


def get_cfg(cfg: str | Path | dict | SimpleNamespace | None = DEFAULT_CFG_PATH,
            overrides: dict[str, Any] | None = None) -> IterableSimpleNamespace:
    """The one validated config of a run: default.yaml < the mode's defaults (MODE_DEFAULTS) < `cfg` < the `cfg=`
    file named in `overrides` < `overrides`.

    `cfg` may be a yaml path, a dict or a namespace; keys it lacks take their default. The mode's defaults apply
    when a `mode` is given (every run of the package gives one; `get_cfg()` alone is default.yaml). Keys this
    project ignores (UNSUPPORTED_KEYS) warn when given a non-default value.
    Raises UnknownKeyError (a SyntaxError) for an unknown key, ConfigTypeError (a TypeError) for a wrong type,
    ConfigError (a ValueError) for a bad value (all three are ConfigErrors), MissingFileError for a missing file.
    """
    given: dict[str, Any] = {}
    if not (isinstance(cfg, (str, Path)) and Path(cfg) == DEFAULT_CFG_PATH):
        given.update(check_cfg(cfg2dict(cfg), _where(cfg)))
    overrides = dict(overrides or {})
    if overrides.get("cfg") is not None:
        file = overrides["cfg"]
        file = str(file) if isinstance(file, Path) else file
        if not isinstance(file, str):
            raise _bad_type("cfg", file, "a path to a yaml file", "custom.yaml")
        from_file = cfg2dict(file)
        from_file.pop("cfg", None)  # a cfg file does not chain to another one
        given.update(check_cfg(from_file, f" (in {file})"))
    given.update(check_cfg(overrides))
    warn_unsupported(given)
    mode = given.get("mode")
    merged = {**DEFAULT_CFG_DICT, **MODE_DEFAULTS.get(mode, {})}
    for key, value in given.items():
        if value is not None or key not in MODE_DEFAULTS.get(mode, {}):
            merged[key] = value  # None means "unset" for a key the mode gives a default to
    for m, key in _ANNOUNCED_DEFAULTS:
        if m == mode and given.get(key) in (None, ""):
            LOGGER.warning(f"WARNING ⚠️ no {key} given, using {key}={merged[key]}")
    return IterableSimpleNamespace(**merged)


def _where(cfg: Any) -> str:
    return f" (in {cfg})" if isinstance(cfg, (str, Path)) else ""


DEFAULT_CFG_DICT.update(check_cfg(DEFAULT_CFG_DICT, f" (in {DEFAULT_CFG_PATH})"))  # fails loudly on a bad default
DEFAULT_CFG = IterableSimpleNamespace(**DEFAULT_CFG_DICT)

