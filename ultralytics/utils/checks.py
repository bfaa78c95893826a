"""Checks of run settings (the image size against the model's stride) and of the environment: `check_yolo`,
`print_args`, and an offline `check_requirements`."""

from __future__ import annotations

import inspect
import math
import os
import platform
import re
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import torch

from ultralytics.errors import ConfigError
from ultralytics.utils import LOGGER
from ultralytics.utils.torch_utils import select_device
from ultralytics.version import __version__

_GB = 1 << 30


# ------------------------------------------------------------------------------------------------ image size
def _stride_multiple(side: int, stride: int) -> int:
    return max(stride, math.ceil(side / stride) * stride)


def _parse_sides(imgsz: Any) -> list[int]:
    """The sides of an int, a digit string or a list/tuple of them; ConfigError for anything else."""
    if isinstance(imgsz, str) and imgsz.strip().isdigit():
        imgsz = int(imgsz)
    sides = [imgsz] if isinstance(imgsz, (int, float)) else list(imgsz) if isinstance(imgsz, (list, tuple)) else []
    if not sides or any(isinstance(s, bool) or not isinstance(s, (int, float)) or s <= 0 for s in sides):
        raise ConfigError(f"imgsz={imgsz!r} is not valid; give a positive int or [h, w], e.g. imgsz=640")
    return [int(s) for s in sides]


def _published_imgsz(sides: list[int], stride: int, min_dim: int, max_dim: int, floor: int) -> int | list[int]:
    """The published call form: an int for one side, a list for several (at least `min_dim`, at most `max_dim`)."""
    if len(sides) > max_dim:
        if max_dim != 1:
            raise ConfigError(f"imgsz={sides} has more than {max_dim} sides; give an int or [h, w], e.g. imgsz=640")
        LOGGER.warning(f"WARNING ⚠️ imgsz={sides}: this mode needs one side; using imgsz={max(sides)}")
        sides = [max(sides)]
    rounded = [max(_stride_multiple(s, stride), floor) for s in sides]
    if rounded != sides:
        LOGGER.warning(f"WARNING ⚠️ imgsz={sides} must be a multiple of the max stride {stride}; using {rounded}")
    if len(rounded) < min_dim:
        rounded = rounded * min_dim
    return rounded[0] if len(rounded) == 1 else rounded


def check_imgsz(imgsz: int | str | list[int] | tuple[int, ...], stride: int = 32, min_dim: int | None = None,
                max_dim: int | None = None, floor: int | None = None, *, square: bool | None = False
                ) -> int | list[int]:
    """The one place an image size is checked and rounded up to a multiple of `stride` (at least one stride),
    with a warning when that changes it.

    This project's modes (`min_dim`, `max_dim` and `floor` left out):
      * `square=False` (the default; predict, export): [h, w] for an int or an [h, w] / [s] list;
      * `square=True` (train, val: letterboxed to one size): one int, the larger side.
    The published call form is used when `min_dim`, `max_dim` or `floor` is given, or `square=None`: one side
    in gives an int, a list of sides a list (padded by repeating up to `min_dim` sides, reduced to the larger
    side with a warning when `max_dim=1`), each side at least `floor`; defaults min_dim=1, max_dim=2, floor=0.
    Unlike the published package, `check_imgsz(640, stride=32)` without them keeps this project's [640, 640].
    """
    sides = _parse_sides(imgsz)
    if square is None or (min_dim, max_dim, floor) != (None, None, None):
        return _published_imgsz(sides, int(stride), min_dim or 1, 2 if max_dim is None else max_dim, floor or 0)
    if len(sides) > 2:
        raise ConfigError(f"imgsz={imgsz!r} is not valid; give a positive int or [h, w], e.g. imgsz=640")
    sides = sides * (2 if len(sides) == 1 else 1)
    if square:
        if sides[0] != sides[1]:
            LOGGER.warning(f"WARNING ⚠️ imgsz={list(imgsz)} is not square; this mode uses imgsz={max(sides)}")
        side = max(sides)
        rounded = _stride_multiple(side, stride)
        if rounded != side:
            LOGGER.warning(f"WARNING ⚠️ imgsz={side} must be a multiple of the max stride {stride}; using {rounded}")
        return rounded
    rounded_hw = [_stride_multiple(s, stride) for s in sides]
    if rounded_hw != sides:
        LOGGER.warning(f"WARNING ⚠️ imgsz={imgsz} must be a multiple of the max stride {stride}; using {rounded_hw}")
    return rounded_hw


# ------------------------------------------------------------------------------------------------ environment
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _ram_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / _GB
    except (ValueError, OSError, AttributeError):
        return None


def device_description(device: torch.device) -> str:
    """'CUDA:0 (NVIDIA H100, 81559MiB)' for a GPU, 'CPU (<model name>)' otherwise."""
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"CUDA:{device.index or 0} ({p.name}, {p.total_memory >> 20}MiB)"
    if device.type == "mps":
        return "MPS (Apple Metal)"
    return f"CPU ({_cpu_name()})"


def check_yolo(verbose: bool = True, device: str | int | torch.device = "") -> None:
    """Log the environment: package, Python and torch versions, the device, CPU count, RAM and disk usage.

    `device` picks the device to describe ('' = the first GPU if any, else the CPU); verbose=False logs nothing.
    """
    if not verbose:
        return
    dev = select_device(device, verbose=False)
    LOGGER.info(f"Ultralytics {__version__} 🚀 Python-{platform.python_version()} torch-{torch.__version__} "
                f"{device_description(dev)}")
    disk = shutil.disk_usage("/")
    ram = _ram_gb()
    ram_text = f"{ram:.1f} GB RAM, " if ram is not None else ""
    LOGGER.info(f"Setup complete ✅ ({os.cpu_count()} CPUs, {ram_text}"
                f"{(disk.total - disk.free) / _GB:.1f}/{disk.total / _GB:.1f} GB disk)")


def print_args(args: dict[str, Any] | None = None, show_file: bool = True, show_func: bool = False) -> None:
    """Log 'k=v, k=v' on one line, prefixed with the caller's file stem (and function name with show_func).

    Without `args`, the caller's own arguments are logged.
    """
    frame = inspect.currentframe()
    caller = frame.f_back if frame is not None else None
    try:
        if args is None and caller is not None:
            info = inspect.getargvalues(caller)
            args = {k: info.locals[k] for k in info.args}
        where = []
        if caller is not None and show_file:
            where.append(Path(caller.f_code.co_filename).stem)
        if caller is not None and show_func:
            where.append(caller.f_code.co_name)
    finally:
        del frame, caller  # frames hold their locals alive
    prefix = f"{'.'.join(where)}: " if where else ""
    LOGGER.info(prefix + ", ".join(f"{k}={v}" for k, v in (args or {}).items()))


# ------------------------------------------------------------------------------------------------ requirements
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*?)\s*$")
_SPEC = re.compile(r"(~=|==|!=|<=|>=|<|>)\s*([^\s,;]+)")


def _release(version: str) -> tuple[int, ...]:
    """The leading numeric release of a version string: '2.14.1+cu130' → (2, 14, 1)."""
    m = re.match(r"\d+(?:\.\d+)*", version.strip().lstrip("vV"))
    return tuple(int(p) for p in m.group().split(".")) if m else ()


def _compare(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = max(len(a), len(b))
    a, b = a + (0,) * (n - len(a)), b + (0,) * (n - len(b))
    return (a > b) - (a < b)


def version_satisfies(installed: str, op: str, wanted: str) -> bool:
    """Whether version `installed` meets one specifier `op wanted` (numeric releases; '==1.2.*' and '~=' too)."""
    have = _release(installed)
    if op in ("==", "!=") and wanted.endswith(".*"):
        prefix = _release(wanted[:-2])
        return (have[: len(prefix)] == prefix) == (op == "==")
    want = _release(wanted)
    c = _compare(have, want)
    if op == "~=":
        return c >= 0 and have[: max(len(want) - 1, 1)] == want[: max(len(want) - 1, 1)]
    return {"==": c == 0, "!=": c != 0, ">=": c >= 0, "<=": c <= 0, ">": c > 0, "<": c < 0}[op]


def _requirement_lines(requirements: str | Path | Iterable[str] | None) -> list[str]:
    if requirements is None:  # this package's own base dependencies
        return [r for r in (metadata.requires("ultralytics") or []) if ";" not in r]
    if isinstance(requirements, Path) or (isinstance(requirements, str) and requirements.endswith(".txt")):
        text = Path(requirements).read_text(encoding="utf-8")
        return [ln.split("#", 1)[0].strip() for ln in text.splitlines() if ln.split("#", 1)[0].strip()]
    return [requirements] if isinstance(requirements, str) else list(requirements)


def check_requirements(requirements: str | Path | Iterable[str] | None = None, exclude: Iterable[str] = (),
                       install: bool = True, cmds: str = "", constrain: Iterable[str] = ()) -> bool:
    """True when every requirement ('numpy>=1.24', a list of them, or a requirements.txt path; default: this
    package's own dependencies) is installed at a matching version, per importlib.metadata.

    Each missing or mismatched one is logged as a warning with the pip command that would fix it. Unlike the
    published package this never installs anything and never uses the network: `install`, `cmds` and
    `constrain` are accepted for compatibility and ignored.
    """
    skip = {e.lower().replace("_", "-") for e in exclude}
    problems = []
    for line in _requirement_lines(requirements):
        m = _REQUIREMENT.match(line.split(";", 1)[0])
        if not m:
            LOGGER.warning(f"WARNING ⚠️ cannot parse requirement {line!r}; skipped")
            continue
        name, specs = m.group(1), _SPEC.findall(m.group(2))
        if name.lower().replace("_", "-") in skip:
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{line.strip()} (not installed)")
            continue
        if not all(version_satisfies(installed, op, v) for op, v in specs):
            problems.append(f"{line.strip()} (found {installed})")
    for p in problems:
        LOGGER.warning(f"WARNING ⚠️ requirement {p} not met; install it with: pip install \"{p.split(' (')[0]}\"")
    return not problems
