"""`compare`: train several models with the same recipe over several seeds and report whether the differences are
larger than the seed-to-seed noise (`yolo detect compare models=a.yaml,b.yaml data=... seeds=3 [train keys]`).

Every (model, seed) is an ordinary training run folder `<compare dir>/<model label>_seed<seed>`; the comparison
folder also holds compare.yaml (the recipe), report.md/csv/png and runs.csv. Runs are planned seed-major (seed 0 of
every model, then seed 1, ...) so that an interrupted comparison already holds complete pairs.

Resume: a run folder with a `compare_done.json` marker (written atomically once its training returned) is kept;
one with an unfinished weights/last.pt resumes from it (`YOLO(last.pt).train(resume=True)`); anything else starts
anew in the same folder. Re-running the same command therefore continues where Ctrl-C stopped it.

Devices: one device (cpu, one GPU or the default) trains the runs one after another in this process, so a CPU
never trains two runs at once. Several CUDA devices (`device=0,1`) give each GPU its own queue slot: every run is a
child process `python -m ultralytics train cfg=<run>.launch.yaml` (or `resume=<last.pt>`) with
CUDA_VISIBLE_DEVICES set to its GPU, at most one per GPU at a time; their output goes to `<run>.log`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from copy import deepcopy
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import yaml

from ultralytics.cfg import get_cfg
from ultralytics.checkpoints import load_checkpoint
from ultralytics.data.utils import check_det_dataset
from ultralytics.engine.compare_report import CompareReport, ModelRow, build_rows, read_run
from ultralytics.engine.model import YOLO
from ultralytics.engine.resume import RESUME_OVERRIDABLE
from ultralytics.errors import ConfigError, ModelConfigError, UserError
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import LOGGER, SETTINGS, write_atomic, yaml_load, yaml_save
from ultralytics.utils.torch_utils import cuda_device_ids, get_flops, select_device

DONE = "compare_done.json"
MANIFEST = "compare.yaml"
# Keys compare sets itself, and keys that may differ between runs of one comparison (as on resume).
OWN_KEYS = ("model", "data", "seed", "project", "name", "exist_ok", "resume", "mode", "save_dir")
FREE_KEYS = (*RESUME_OVERRIDABLE, "task")
LATENCY_RUNS, LATENCY_WARMUP = 30, 5


@dataclass
class ModelSpec:
    """A model of the comparison: what the user named, its folder label, and its size with the data's classes."""

    source: str
    label: str
    params: int
    gflops: float
    model: nn.Module  # built with the data's nc; used for the latency (speed does not depend on the weights)


@dataclass
class Job:
    """One (model, seed) training run and the state its folder is in: 'done', 'resume' or 'new'."""

    spec: ModelSpec
    seed: int
    save_dir: Path
    state: str = "new"
    error: str | None = None

    @property
    def last(self) -> Path:
        return self.save_dir / "weights" / "last.pt"


# ------------------------------------------------------------------------------------------------ checks
def parse_models(models: list[str] | tuple[str, ...] | str | None) -> list[str]:
    """['a.yaml', 'b.yaml'] from a list or a comma-separated string; at least one, no duplicates."""
    names = models.split(",") if isinstance(models, str) else [str(m) for m in (models or [])]
    names = [n.strip() for n in names if n and n.strip()]
    if not names:
        raise ConfigError("compare needs models, e.g. models=yolov8n.yaml,yolov8n_BiFormer.yaml (the first is the "
                          "baseline)")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"models: {', '.join(dupes)} given twice; name each model once")
    return names


def check_seeds(seeds: Any) -> int:
    """`seeds` as an int >= 1."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds={seeds!r} is not valid: give the number of seeds per model, an int >= 1 "
                          "(e.g. seeds=3; 3 to 5 seeds are needed to tell a gain from noise)")
    return seeds


def model_label(source: str) -> str:
    """The folder label of a model: the file stem ('yolov8n_BiFormer'), or '<run>_<stem>' for weights/*.pt."""
    path = Path(source)
    if path.suffix == ".pt" and path.parent.name == "weights":
        return f"{path.parent.parent.name}_{path.stem}"
    return path.stem


def inspect_model(source: str, nc: int) -> ModelSpec:
    """Build `source` with the data's `nc` (a yaml) or load it (a .pt, whose nc must equal the data's); one-line
    errors for an unknown file, a model that fails to build and a mismatched nc."""
    suffix = Path(source).suffix.lower()
    if suffix not in (".yaml", ".yml", ".pt"):
        raise ConfigError(f"model {source!r}: compare trains model yamls (e.g. yolov8n.yaml) or *.pt checkpoints")
    try:
        if suffix == ".pt":
            model = YOLO(source).model  # ours or a published checkpoint
            have = int(model.model[-1].nc)
            if have != nc:
                raise ConfigError(f"model {source!r} has nc={have} but the data has nc={nc}: its head would be "
                                  f"re-initialised, so it would not start like the others; compare its yaml "
                                  f"(with pretrained={source} for its backbone) or use data with {have} classes")
        else:
            model = DetectionModel(source, nc=nc, verbose=False)
    except UserError as e:
        if str(source) in str(e):
            raise
        raise type(e)(f"model {source!r}: {e}") from e
    except Exception as e:  # a yaml whose layers do not fit together: name the model, keep the cause
        raise ModelConfigError(f"model {source!r} fails to build: {type(e).__name__}: {e}") from e
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    return ModelSpec(source, model_label(source), params, get_flops(model, 640), model)


def device_slots(device: Any) -> list[str | None]:
    """The devices runs are placed on, one run each at a time: [None] (the default), ['cpu'], ['0'] or ['0', '1']."""
    if device is None or str(device).strip() == "":
        return [None]
    select_device(device, verbose=False)  # one clear error for a device this machine lacks
    ids = cuda_device_ids(device)
    return [str(i) for i in dict.fromkeys(ids)] if ids else [str(device).strip().lower()]


def _plain(value: Any) -> Any:
    """A value as the yaml manifest stores and reads it back (tuples → lists, Paths → str)."""
    return yaml.safe_load(yaml.safe_dump(value if not isinstance(value, Path) else str(value)))


def recipe_of(train_args: dict, data: str, model: str) -> dict:
    """The settings every run shares: the full training config minus what compare sets per run or may vary."""
    merged = vars(get_cfg(overrides={**train_args, "data": data, "mode": "train", "model": model}))
    return {k: _plain(v) for k, v in sorted(merged.items()) if k not in OWN_KEYS and k not in FREE_KEYS}


def check_manifest(root: Path, recipe: dict, data: str, models: list[str], seeds: list[int]) -> None:
    """Refuse to mix recipes in one folder (a different recipe needs another name=); then record this one."""
    file = root / MANIFEST
    if file.exists():
        old = yaml_load(file)
        changed = [k for k in sorted(set(old.get("recipe", {})) | set(recipe))
                   if old.get("recipe", {}).get(k) != recipe.get(k)]
        if old.get("data") != data:
            changed.insert(0, "data")
        if changed:
            diff = ", ".join(f"{k}: {old.get('recipe', {}).get(k, old.get(k))!r} → {recipe.get(k, data)!r}"
                             for k in changed[:4])
            raise ConfigError(f"{root} holds a comparison with another recipe ({diff}); re-run with its settings "
                              f"to resume it, or give name=<new name> for a new comparison")
    yaml_save(file, {"data": data, "models": models, "seeds": seeds, "recipe": recipe,
                     "updated": datetime.now().isoformat(timespec="seconds")})


def compare_dir(project: str | None, name: str | None, labels: list[str]) -> Path:
    """`<project>/<name>`, or `<runs_dir>/detect/compare/<name>`; the default name joins the model labels."""
    if not name:
        name = "-vs-".join(labels)
        name = name if len(name) <= 80 else f"{labels[0]}-vs-{len(labels) - 1}-models"
    if re.search(r"[/\\]", name) or name in (".", ".."):
        raise ConfigError(f"name={name!r} must be a folder name, without '/'")
    return (Path(project) if project else Path(SETTINGS["runs_dir"]) / "detect" / "compare") / name


# ------------------------------------------------------------------------------------------------ plan and state
def plan(specs: list[ModelSpec], seeds: list[int], root: Path) -> list[Job]:
    """Seed-major (model, seed) runs, each with the state its folder is in."""
    jobs = [Job(spec, seed, root / f"{spec.label}_seed{seed}") for seed in seeds for spec in specs]
    for job in jobs:
        job.state = run_state(job)
    return jobs


def run_state(job: Job) -> str:
    """'done' (marker, or a finished last.pt whose marker was not written yet), 'resume' (last.pt) or 'new'."""
    if (job.save_dir / DONE).exists():
        return "done"
    if job.last.exists():
        try:
            finished = bool(load_checkpoint(job.last).get("finished"))
        except UserError as e:  # a damaged last.pt (e.g. killed while the file system was failing): start again
            LOGGER.warning(f"WARNING ⚠️ {job.last} cannot be read ({e}); its run starts again")
            return "new"
        if finished:
            mark_done(job)
            return "done"
        return "resume"
    return "new"


def mark_done(job: Job) -> None:
    """Write the run's done marker atomically (its results.csv stays the source of its numbers)."""
    run = read_run(job.spec.label, job.seed, job.save_dir, finished=True)
    write_atomic(job.save_dir / DONE, json.dumps({"model": job.spec.source, "seed": job.seed, "epochs": run.epochs,
                                                  "mAP50": run.map50, "mAP50-95": run.map,
                                                  "date": datetime.now().isoformat(timespec="seconds")}, indent=1))


def run_overrides(job: Job, train_args: dict, data: str, device: str | None) -> dict:
    """The keys of a new run: the shared recipe plus this run's model, seed, folder and device."""
    out = {**train_args, "model": job.spec.source, "data": data, "seed": job.seed, "project": str(job.save_dir.parent),
           "name": job.save_dir.name, "exist_ok": True}
    if device is not None:
        out["device"] = device
    return out


# ------------------------------------------------------------------------------------------------ execution
def train_in_process(job: Job, train_args: dict, data: str, device: str | None) -> None:
    """Train (or resume) one run in this process through the YOLO facade."""
    extra = {"device": device} if device is not None else {}
    if job.state == "resume":
        YOLO(str(job.last)).train(resume=True, **extra)
    else:
        YOLO(job.spec.source).train(**run_overrides(job, train_args, data, device))


def child_command(job: Job, train_args: dict, data: str, device: str | None) -> tuple[list[str], dict]:
    """The `python -m ultralytics train ...` command of one run on `device`, and its environment."""
    env = dict(os.environ)
    gpu = device not in (None, "cpu", "mps")
    if gpu:
        env["CUDA_VISIBLE_DEVICES"] = device  # the child sees its GPU alone, as device 0
    child_device = "0" if gpu else device
    if job.state == "resume":
        args = [f"resume={job.last}"] + ([f"device={child_device}"] if child_device else [])
    else:
        cfg = job.save_dir.parent / f"{job.save_dir.name}.launch.yaml"
        overrides = run_overrides(job, train_args, data, child_device)
        yaml_save(cfg, {k: _plain(v) for k, v in {**overrides, "mode": "train"}.items()})
        args = [f"cfg={cfg}"]
    return [sys.executable, "-m", "ultralytics", "train", *args], env


def run_children(jobs: list[Job], train_args: dict, data: str, slots: list[str | None]) -> None:
    """Run jobs as child processes, at most one per device slot at a time; a failed child is recorded on its job."""
    queue = list(jobs)
    running: dict[int, tuple[Job, subprocess.Popen, Any]] = {}
    try:
        while queue or running:
            for i, slot in enumerate(slots):
                if i not in running and queue:
                    job = queue.pop(0)
                    cmd, env = child_command(job, train_args, data, slot)
                    log = open(job.save_dir.parent / f"{job.save_dir.name}.log", "ab")
                    LOGGER.info(f"compare: {job.save_dir.name} ({job.state}) on device {slot}")
                    running[i] = (job, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log)
            for i, (job, proc, log) in list(running.items()):
                if proc.poll() is not None:
                    log.close()
                    del running[i]
                    if proc.returncode == 0:
                        mark_done(job)
                    else:
                        job.error = f"exit code {proc.returncode}, see {log.name}"
                        LOGGER.warning(f"WARNING ⚠️ compare: {job.save_dir.name} failed ({job.error})")
            time.sleep(0.5)
    except KeyboardInterrupt:
        for job, proc, log in running.values():  # the children keep their last.pt; the next call resumes them
            proc.send_signal(signal.SIGINT)
        for job, proc, log in running.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        raise


def run_jobs(jobs: list[Job], train_args: dict, data: str, slots: list[str | None],
             train: Callable[[Job, dict, str, str | None], None] | None = None) -> None:
    """Train every job not done yet: one after another in this process on one device (with `train`, default
    `train_in_process`), as child processes on several."""
    train = train or train_in_process
    todo = [j for j in jobs if j.state != "done"]
    if len(slots) > 1:
        run_children(todo, train_args, data, slots)
        return
    for k, job in enumerate(todo):
        LOGGER.info(f"compare: run {k + 1}/{len(todo)}: {job.save_dir.name} ({job.state})")
        try:
            train(job, train_args, data, slots[0])
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one failing run (e.g. NaN losses) must not lose the others: record and go on
            job.error = f"{type(e).__name__}: {' '.join(str(e).split())}"
            LOGGER.warning(f"WARNING ⚠️ compare: {job.save_dir.name} failed: {job.error}")
            continue
        mark_done(job)


# ------------------------------------------------------------------------------------------------ speed
@torch.no_grad()
def latency_ms(model: nn.Module, imgsz: int, device: torch.device, runs: int | None = None,
               warmup: int | None = None) -> float:
    """Median milliseconds of one fused fp32 eval forward pass of a batch-1 imgsz×imgsz image on `device`
    (LATENCY_RUNS timed passes after LATENCY_WARMUP untimed ones unless given)."""
    runs, warmup = runs or LATENCY_RUNS, LATENCY_WARMUP if warmup is None else warmup
    m = deepcopy(model).to(device).eval()
    m.fuse(verbose=False)
    x = torch.zeros(1, 3, imgsz, imgsz, device=device)
    times = []
    for i in range(warmup + runs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        m(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _gpu_of(slots: list[str | None]) -> torch.device | None:
    for slot in slots:
        dev = select_device(slot or "", verbose=False)
        if dev.type == "cuda":
            return dev
    return None


# ------------------------------------------------------------------------------------------------ entry point
@dataclass
class Plan:
    """A checked comparison: its models, seeds, shared training keys, devices and folder."""

    specs: list[ModelSpec]
    seeds: list[int]
    data: str
    train_args: dict
    given: dict  # the training keys as the user gave them (for the report's command line)
    imgsz: int
    slots: list[str | None]
    root: Path


def check_inputs(models: list[str] | str | None, data: str | None, seeds: int, project: str | None, name: str | None,
                 device: Any, train_args: dict) -> Plan:
    """Every check that can fail before training (one-line UserErrors), and the comparison folder's recipe."""
    names, n_seeds = parse_models(models), check_seeds(seeds)
    for key in ("model", "resume"):
        if key in train_args:
            raise ConfigError(f"compare takes no {key}= (models= names the models; re-running the same command "
                              "resumes by itself)")
    given = {k: v for k, v in train_args.items() if k not in ("exist_ok", "mode", "task")}
    base_seed = given.pop("seed", 0)
    if isinstance(base_seed, bool) or not isinstance(base_seed, int) or base_seed < 0:
        raise ConfigError(f"seed={base_seed!r}: the first seed must be an int >= 0 (the runs use seed, seed+1, ...)")
    data = str(data) if data else ""
    if not data:
        raise ConfigError("compare needs data=, the dataset yaml every model trains on (e.g. data=shapes.yaml)")
    config = get_cfg(overrides={**given, "data": data, "mode": "train", "model": names[0]})  # keys and values
    # explicit, so that a *.pt model does not bring its own (YOLO(x.pt) carries its imgsz over)
    shared = {"imgsz": config.imgsz, "single_cls": config.single_cls, **given}
    nc = 1 if config.single_cls else int(check_det_dataset(data)["nc"])
    slots = device_slots(device)
    specs = [inspect_model(m, nc) for m in names]
    labels = [s.label for s in specs]
    if len(set(labels)) < len(labels):
        raise ConfigError(f"models {', '.join(names)} share a folder label ({', '.join(labels)}); rename a file")
    root = compare_dir(project, name, labels)
    seed_list = list(range(base_seed, base_seed + n_seeds))
    check_manifest(root, recipe_of(shared, data, names[0]), data, names, seed_list)
    return Plan(specs, seed_list, data, shared, {**given, **({"seed": base_seed} if base_seed else {})},
                int(config.imgsz), slots, root)


def compare(models: list[str] | str | None = None, data: str | None = None, seeds: int = 3, project: str | None = None, name: str | None = None,
            device: Any = None, **train_args: Any) -> CompareReport:
    """Train every model of `models` (the first is the baseline) with seeds seed, seed+1, ... (seed= defaults
    to 0) and the same `train_args`; resume what an earlier call left; write and return the report."""
    t0 = time.time()
    p = check_inputs(models, data, seeds, project, name, device, train_args)
    jobs = plan(p.specs, p.seeds, p.root)
    counts = {s: sum(j.state == s for j in jobs) for s in ("done", "resume", "new")}
    LOGGER.info(f"compare: {len(jobs)} runs in {p.root} ({counts['done']} finished, {counts['resume']} to resume, "
                f"{counts['new']} to start) on {', '.join(str(s or 'the default device') for s in p.slots)}")
    try:
        run_jobs(jobs, p.train_args, p.data, p.slots)
    except KeyboardInterrupt:
        LOGGER.warning(f"compare interrupted: finished runs are kept in {p.root}; re-run the same command to resume")
        raise
    report = make_report(p.specs, jobs, p.root, p.imgsz, p.slots, time.time() - t0, header=_header(p))
    LOGGER.info(f"\n{report.table()}\nReport: {report.md} (and report.csv, runs.csv, report.png)")
    return report


def make_report(specs: list[ModelSpec], jobs: list[Job], root: Path, imgsz: int, slots: list[str | None],
                wall_s: float, header: str = "") -> CompareReport:
    """Read every run back, measure each model's speed, build the rows and write the report files."""
    runs = [read_run(j.spec.label, j.seed, j.save_dir, finished=(j.save_dir / DONE).exists(), error=j.error)
            for j in jobs]
    gpu = _gpu_of(slots)
    cpu = torch.device("cpu")
    rows = [ModelRow(s.label, s.source, s.params, s.gflops, cpu_ms=latency_ms(s.model, imgsz, cpu),
                     gpu_ms=latency_ms(s.model, imgsz, gpu) if gpu is not None else None) for s in specs]
    report = CompareReport(root, imgsz, build_rows(rows, runs), runs, wall_s, header)
    report.write()
    return report


def _header(p: Plan) -> str:
    """The command line of the comparison, its seeds and the date."""
    keys = " ".join(f"{k}={v}" for k, v in p.given.items() if k != "device")
    device = ",".join(str(s) for s in p.slots if s is not None)
    cmd = (f"yolo detect compare models={','.join(s.source for s in p.specs)} data={p.data} seeds={len(p.seeds)}"
           f"{f' device={device}' if device else ''} {keys}").strip()
    return f"`{cmd}`  \nseeds {', '.join(map(str, p.seeds))}; written {datetime.now().isoformat(timespec='seconds')}"


__all__ = ["CompareReport", "Plan", "check_inputs", "compare", "device_slots", "inspect_model", "parse_models", "plan", "run_jobs"]
