"""The `yolo` command line: `yolo [task] mode key=value ...` and the special commands.

Errors a user can cause (`ultralytics.errors.UserError` and its subclasses) are printed as one line,
`ERROR ❌ <message>`, on stderr with exit code 2; set the environment variable YOLO_TRACEBACK=1 to get the full
traceback instead. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from ultralytics.cfg import (DEFAULT_CFG_DICT, MODE_DEFAULTS, MODES, OTHER_MODES, OTHER_TASKS, STR_KEYS, TASKS,
                             CfgError, close_matches, copy_default_cfg, get_cfg, parse_value)
from ultralytics.engine.compare import compare
from ultralytics.engine.model import YOLO
from ultralytics.engine.resume import resolve_resume
from ultralytics.errors import UserError
from ultralytics.utils import DEFAULT_CFG_PATH, LOGGER, SETTINGS
from ultralytics.utils.checks import check_yolo
from ultralytics.version import __version__

SPECIAL_COMMANDS = ("help", "version", "checks", "cfg", "copy-cfg", "settings")
OWN_MODES = ("compare",)  # modes of this project that are not run configs: compare trains several runs
EXIT_USER_ERROR = 2

HELP = f"""
Usage: yolo [TASK] MODE [key=value ...]      (or: yolo help | version | checks | cfg | copy-cfg | settings)

    TASK  detect (the default; the only task this release implements)
    MODE  {' | '.join(MODES + OWN_MODES)}
    key=value  any key of the default config (`yolo cfg` lists them all), e.g. epochs=3 imgsz=320

Examples:
    yolo detect train model=yolov8_BiFormer.yaml data=coco128.yaml epochs=3 imgsz=320
    yolo detect val model=runs/detect/train/weights/best.pt data=coco128.yaml
    yolo detect predict model=runs/detect/train/weights/best.pt source=path/to/images_or_video
    yolo export model=runs/detect/train/weights/best.pt format=onnx
    yolo track model=runs/detect/train/weights/best.pt source=video.mp4 tracker=bytetrack.yaml
    yolo benchmark model=runs/detect/train/weights/best.pt imgsz=320
    yolo detect compare models=yolov8n.yaml,yolov8n_BiFormer.yaml data=my.yaml epochs=100 seeds=3
    yolo train cfg=custom.yaml lr0=0.005      # a yaml of your own, then key=value on top

Special commands:
    yolo help                     this message
    yolo version                  the installed version
    yolo checks                   the environment: versions, devices (no network)
    yolo cfg                      print the default config (default.yaml)
    yolo copy-cfg                 copy default.yaml to ./default_copy.yaml, to edit and use as cfg=
    yolo settings                 show the user settings and where they are stored
    yolo settings key=value       change a setting, e.g. yolo settings datasets_dir=/data
    yolo settings reset           restore the default settings

Values are read as YAML: 640 is an int, 0.01 a float, True/False a bool, None empty,
[0,2] a list; anything else is text. A trailing comma (epochs=3,) is dropped with a warning.
`train` uses model={MODE_DEFAULTS['train']['model']} when none is given.
Set YOLO_TRACEBACK=1 to see full tracebacks instead of one-line errors.
"""


def _load_model(name: str) -> Any:
    """Build the YOLO facade for `name` (a model yaml or a checkpoint). Tests replace this function."""
    return YOLO(name)


def merge_equals_args(args: list[str]) -> list[str]:
    """Join `key = value`, `key= value` and `key =value` (split by the shell) into `key=value`."""
    words = set(TASKS + OTHER_TASKS + MODES + OTHER_MODES + OWN_MODES + SPECIAL_COMMANDS)
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else None
        key_before = bool(out) and "=" not in out[-1] and out[-1].lower() not in words
        if a == "=" and key_before and nxt is not None:  # key = value
            out[-1] += "=" + nxt
            i += 2
        elif a.startswith("=") and a != "=" and key_before:  # key =value
            out[-1] += a
            i += 1
        elif a.endswith("=") and a.count("=") == 1 and nxt is not None and "=" not in nxt:  # key= value
            out.append(a + nxt)
            i += 2
        else:
            out.append(a)
            i += 1
    return out


def strip_trailing_commas(args: list[str]) -> list[str]:
    """Drop one trailing comma from each argument (`epochs=1,` -> `epochs=1`), warning; a lone comma disappears."""
    out = []
    for arg in args:
        if arg.endswith(","):
            LOGGER.warning(f"WARNING ⚠️ '{arg}' ends with a comma, which is not needed; using '{arg[:-1]}'")
            arg = arg[:-1]
        if arg:
            out.append(arg)
    return out


def parse_key_value(arg: str) -> tuple[str, Any]:
    """Split `key=value` and parse the value; text keys (name=2024, model=...) keep the exact text."""
    key, _, text = arg.partition("=")
    key = key.strip().lstrip("-")
    if not key:
        raise CfgError(f"'{arg}' has no key; write key=value, e.g. epochs=3")
    value = parse_value(text)
    if key in STR_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = text.strip()
    return key, value


def _bare_word(word: str, overrides: dict[str, Any]) -> None:
    """Put a word without `=` (a task, a mode or a boolean key) into `overrides`, or raise CfgError."""
    lower = word.lower()
    if lower in TASKS or lower in OTHER_TASKS:
        _set_once(overrides, "task", lower)
    elif lower in MODES or lower in OTHER_MODES or lower in OWN_MODES:
        _set_once(overrides, "mode", lower)
    elif word in SPECIAL_COMMANDS:
        raise CfgError(f"'{word}' is a command of its own and must come first: yolo {word}")
    elif isinstance(DEFAULT_CFG_DICT.get(word), bool):
        overrides[word] = True  # `yolo predict show` means show=True, `yolo train resume` resume=True
    elif word in DEFAULT_CFG_DICT:
        raise CfgError(f"'{word}' needs a value: write {word}=<value>, e.g. {word}={DEFAULT_CFG_DICT[word]}")
    else:
        words = list(TASKS + MODES + OWN_MODES + SPECIAL_COMMANDS) + sorted(DEFAULT_CFG_DICT)
        similar = close_matches(word, words) or close_matches(lower, words)
        hint = f"; did you mean {', '.join(similar)}?" if similar else "; see `yolo help`"
        raise CfgError(f"'{word}' is not a valid YOLO task, mode or argument{hint}")


def _set_once(overrides: dict[str, Any], key: str, value: str) -> None:
    if key in overrides and overrides[key] != value:
        raise CfgError(f"two {key}s given ('{overrides[key]}' and '{value}'); give one")
    overrides[key] = value


def _print_help() -> int:
    print(HELP.strip("\n"))
    return 0


def _print_settings() -> None:
    print(f"Settings file: {SETTINGS.file}")
    print(yaml.safe_dump(dict(SETTINGS), sort_keys=False, allow_unicode=True).rstrip())


def settings_command(args: list[str]) -> int:
    """`yolo settings [key=value ...|reset]`: show, update-and-save or reset the user settings."""
    if args == ["reset"]:
        SETTINGS.reset()
        print("Settings reset to their defaults.")
    elif args:
        known = getattr(SETTINGS, "defaults", dict(SETTINGS))
        updates: dict[str, Any] = {}
        for arg in args:
            if "=" not in arg:
                raise CfgError(f"'{arg}' is not key=value; use `yolo settings key=value` or `yolo settings reset`")
            key, _, text = arg.partition("=")
            key, text = key.strip(), text.strip()
            if key not in known:
                similar = close_matches(key, known)
                hint = f"; similar settings: {', '.join(similar)}" if similar else ""
                raise CfgError(f"'{key}' is not a valid setting{hint}; valid settings are {', '.join(known)}")
            value = parse_value(text)
            if isinstance(known[key], str):
                if value is None:
                    raise CfgError(f"setting '{key}' needs a value, e.g. {key}={known[key]}")
                value = str(Path(text).expanduser()) if key.endswith("_dir") else text
            updates[key] = value
        SETTINGS.update(updates)
        SETTINGS.save()
        print(f"Settings updated: {', '.join(f'{k}={v}' for k, v in updates.items())}")
    _print_settings()
    return 0


def run_mode(args: list[str]) -> int:
    """Parse `[task] mode key=value ...`, validate everything, then call the model's mode method."""
    overrides: dict[str, Any] = {}
    for arg in args:
        if "=" in arg:
            key, value = parse_key_value(arg)
            if key in ("task", "mode") and isinstance(value, str):
                _set_once(overrides, key, value.lower())
            else:
                overrides[key] = value
        else:
            _bare_word(arg, overrides)
    if overrides.get("mode") == "compare":  # several training runs: compare() checks every key before any starts
        overrides.pop("task", None)
        overrides.pop("mode")
        compare(**overrides)
        return 0
    if overrides.get("resume") is True and str(overrides.get("model", "")).endswith(".pt"):
        overrides["resume"] = overrides["model"]  # `yolo train resume model=.../last.pt` resumes that file
    # The run's one config, validated here at the edge before any model is built (also reads a cfg= file).
    if "mode" not in overrides and "cfg" not in overrides:
        overrides["mode"] = DEFAULT_CFG_DICT["mode"]
        LOGGER.warning(f"WARNING ⚠️ no mode given, running mode={overrides['mode']}; choose one of {', '.join(MODES)}")
    args = get_cfg(DEFAULT_CFG_PATH, overrides)
    mode = args.mode
    if mode in ("predict", "track") and "save" not in overrides:
        args.save = True  # the command line saves annotated predictions (Python's predict does not)
    if args.model is None:
        raise CfgError(f"'yolo {mode}' needs a model, e.g. yolo {mode} model=runs/detect/train/weights/best.pt")
    resume = None
    if mode == "train":
        args, resume = resolve_resume(args, overrides)
    yolo = _load_model(str(args.model))
    args = yolo.carry_over(args, given=set(overrides))
    if mode == "train":
        yolo.run_train(args, resume)
    elif mode == "val":
        yolo.run_val(args)
    elif mode == "predict":  # streamed: constant memory on long videos (no source: the bundled images)
        for _ in yolo.run_predict(args, stream=True):
            pass
    elif mode == "track":  # streamed like predict
        for _ in yolo.run_track(args, stream=True):
            pass
    elif mode == "benchmark":
        yolo.run_benchmark(args, given=set(overrides))
    else:
        yolo.run_export(args)
    return 0


def _want_traceback() -> bool:
    return os.getenv("YOLO_TRACEBACK", "").strip().lower() in ("1", "true", "yes")


def _one_line(e: BaseException) -> str:
    msg = e.args[0] if isinstance(e, KeyError) and len(e.args) == 1 else str(e)
    msg = " ".join(str(msg).split())
    return msg or type(e).__name__


def _dispatch(args: list[str]) -> int:
    if not args or any(a in ("help", "-h", "--help") for a in args):
        return _print_help()
    first = args[0]
    if first in ("version", "--version"):
        print(__version__)
        return 0
    if first == "checks":
        check_yolo()
        return 0
    if first == "cfg":
        print(Path(DEFAULT_CFG_PATH).read_text(encoding="utf-8").rstrip())
        return 0
    if first == "copy-cfg":
        copy_default_cfg()
        return 0
    if first == "settings":
        return settings_command(args[1:])
    return run_mode(args)


def entrypoint(argv: list[str] | None = None) -> int:
    """Run the `yolo` command with `argv` (default: sys.argv[1:]); return the exit code."""
    args = strip_trailing_commas(merge_equals_args(list(sys.argv[1:] if argv is None else argv)))
    try:
        return _dispatch(args)
    except KeyboardInterrupt as e:  # Ctrl-C, or TrainingInterrupted (SIGINT 130 / SIGTERM 143, with the resume line)
        print(str(e) or "Interrupted.", file=sys.stderr)
        return int(getattr(e, "exit_code", 130))
    except UserError as e:
        if _want_traceback():
            raise
        print(f"ERROR ❌ {_one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
