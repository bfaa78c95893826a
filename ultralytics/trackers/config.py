"""Tracker yamls: resolve a packaged name ("bytetrack.yaml") or a user path, load it and check every key.

A problem raises one line naming the file and the key: a missing file (`MissingFileError`), an unknown
`tracker_type`, a missing key or a value out of range (`ConfigError`), a value of the wrong type
(`ConfigTypeError`). Keys the tracker does not read are reported in a warning, as they are probably typos.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from ultralytics.errors import ConfigError, ConfigTypeError, MissingFileError
from ultralytics.utils import CFG_DIR, LOGGER, yaml_load

TRACKER_CFG_DIR = CFG_DIR / "trackers"
GMC_METHODS = ("sparseOptFlow", "orb", "sift", "ecc", "none")
REID_MODELS = ("auto", "histogram")

# key -> expected type; floats accept ints. Thresholds must lie in [0, 1].
COMMON_KEYS: dict[str, type] = {
    "tracker_type": str, "track_high_thresh": float, "track_low_thresh": float, "new_track_thresh": float,
    "track_buffer": int, "match_thresh": float, "fuse_score": bool,
}
BOTSORT_KEYS: dict[str, type] = {
    "gmc_method": str, "proximity_thresh": float, "appearance_thresh": float, "with_reid": bool,
}
OPTIONAL_KEYS: dict[str, tuple[type, Any]] = {"model": (str, "auto")}  # botsort.yaml; older files lack it
TRACKER_TYPES = {"bytetrack": COMMON_KEYS, "botsort": {**COMMON_KEYS, **BOTSORT_KEYS}}


def resolve_tracker_yaml(tracker: str | Path) -> Path:
    """A user path if it exists, else a packaged yaml of that name (e.g. "botsort.yaml")."""
    path = Path(tracker)
    if path.is_file():
        return path
    packaged = TRACKER_CFG_DIR / path.name
    if path.parent == Path(".") and packaged.is_file():
        return packaged
    names = ", ".join(sorted(p.name for p in TRACKER_CFG_DIR.glob("*.yaml")))
    raise MissingFileError(f"tracker={tracker}: file not found; use one of {names} or a path to your own yaml")


def _check_value(file: Path, key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
        if key.endswith("_thresh") and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{file}: {key}={value} must lie in [0, 1]")
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{file}: {key}={value} must be >= 0")
        return value
    if kind in (str, bool) and isinstance(value, kind):
        return value
    raise ConfigTypeError(f"{file}: {key}={value!r} is a {type(value).__name__}, expected a {kind.__name__}")


def check_tracker_cfg(cfg: dict[str, Any], file: str | Path = "<tracker cfg>") -> SimpleNamespace:
    """Validate a tracker config dict; the namespace the trackers take."""
    file = Path(file)
    kind = cfg.get("tracker_type")
    if kind not in TRACKER_TYPES:
        raise ConfigError(f"{file}: tracker_type={kind!r} is not supported; use 'bytetrack' or 'botsort'")
    schema = TRACKER_TYPES[kind]
    out: dict[str, Any] = {}
    for key, expected in schema.items():
        if key not in cfg:
            raise ConfigError(f"{file}: missing key '{key}' ({expected.__name__}) for tracker_type={kind}; "
                              f"copy it from {TRACKER_CFG_DIR / (kind + '.yaml')}")
        out[key] = _check_value(file, key, cfg[key], expected)
    if kind == "botsort":
        for key, (expected, default) in OPTIONAL_KEYS.items():
            out[key] = _check_value(file, key, cfg.get(key, default), expected)
        if out["gmc_method"] not in GMC_METHODS:
            raise ConfigError(f"{file}: gmc_method={out['gmc_method']!r} is not one of {', '.join(GMC_METHODS)}")
        if out["with_reid"] and out["model"] not in REID_MODELS:
            raise ConfigError(f"{file}: model={out['model']!r}: ReID models are not supported; use model: auto "
                              f"(the detector's features when given, else colour histograms) or histogram")
    extra = sorted(set(cfg) - set(out) - set(OPTIONAL_KEYS))
    if extra:
        LOGGER.warning(f"{file}: ignoring keys {extra} that {kind} does not use")
    return SimpleNamespace(**out)


def load_tracker_cfg(tracker: str | Path) -> SimpleNamespace:
    """Resolve, load and validate a tracker yaml (a packaged name or a path)."""
    path = resolve_tracker_yaml(tracker)
    try:
        data = yaml_load(path)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    return check_tracker_cfg(data, path)
