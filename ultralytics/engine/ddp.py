"""The multi-GPU launcher: `device=0,1,...` outside torchrun trains with one torchrun worker per GPU.

    parent (YOLO.train, `yolo train`, train.py)
      ├─ writes the run's validated config to <tmp>/run.yaml (yaml_save; no generated code)
      ├─ runs `python -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node N
      │         -m ultralytics.engine.ddp <tmp>/run.yaml`  (a free rendezvous port is picked by torchrun)
      │     every worker: yaml_load (safe_load) → the same config, as data → DetectionTrainer → DDP rank;
      │     rank 0 writes <tmp>/result.yaml
      └─ returns rank 0's run folder and final metrics, or raises DDPError naming the failed rank and
         where the log and the run folder are. Ctrl-C in the parent stops torchrun and its workers.
See docs/distributed.md.
"""

from __future__ import annotations

import codecs
import importlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.distributed.elastic.multiprocessing.errors import record

from ultralytics.cfg import IterableSimpleNamespace
from ultralytics.checkpoints import load_checkpoint, weights_of
from ultralytics.data import check_det_dataset
from ultralytics.engine.resume import ResumePoint
from ultralytics.engine.run_files import TrainResult
from ultralytics.engine.trainer import DetectionTrainer
from ultralytics.errors import ConfigError, DDPError
from ultralytics.evaluation.metrics import DetMetrics
from ultralytics.utils import LOGGER, RANK, dist, yaml_load, yaml_save
from ultralytics.utils.torch_utils import cuda_device_ids, select_device

RUN_FILE, RESULT_FILE, LOG_FILE, WEIGHTS_FILE = "run.yaml", "result.yaml", "torchrun.log", "weights.pt"
TERMINATE_GRACE_S = 30.0  # after Ctrl-C: time for the workers to shut down cleanly before SIGKILL
TAIL_CHARS = 50_000  # of torchrun's output kept in memory to explain a failure


# ---------------------------------------------------------------------------------------------------- parent side
def processes_to_launch(args: IterableSimpleNamespace) -> int:
    """Workers to start for a run's config: the number of listed CUDA devices when it is more than one and this
    process is not itself a torchrun worker; 0 means train in this process. (A resumed run's config already holds
    its checkpoint's device unless the resume changed it.)"""
    if dist.dist_env().launched:
        return 0
    ids = cuda_device_ids(args.device)
    return len(ids) if len(ids) > 1 else 0


def build_command(run_file: str | Path, nproc: int) -> list[str]:
    """torchrun (as `python -m torch.distributed.run`) on this node, N workers running this module."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
            "--nproc_per_node", str(int(nproc)), "-m", "ultralytics.engine.ddp", str(run_file)]


def launch(args: IterableSimpleNamespace, nproc: int, model: dict | None = None, weights: Any = None,
           trainer: type | None = None, resume: ResumePoint | None = None) -> TrainResult:
    """Train with `nproc` DDP workers on this node; blocks. `args` is the run's validated config (`device`
    included): it travels to the workers as data and is not derived again there.

    `model` is the architecture (a model yaml dict), `weights` initial weights (module or state_dict), `trainer` a
    DetectionTrainer subclass importable by the workers and `resume` the checkpoint a resumed run continues.
    Raises DDPError when a rank fails.
    """
    if resume is None:  # clear errors (GPUs, batch, dataset) before starting anything
        select_device(args.device, args.batch)
        check_det_dataset(args.data)
    tmp = Path(tempfile.mkdtemp(prefix="ultralytics-ddp-"))
    spec: dict[str, Any] = {"args": _plain(dict(vars(args))), "model": _plain(model), "weights": None,
                            "trainer": trainer_path(trainer), "resume": str(resume.path) if resume else None}
    if weights is not None:
        spec["weights"] = str(tmp / WEIGHTS_FILE)
        torch.save({k: v.detach().cpu() for k, v in weights_of(weights).items()}, spec["weights"])
    run_file = tmp / RUN_FILE
    yaml_save(run_file, spec)
    cmd = build_command(run_file, nproc)
    LOGGER.info(f"DDP: starting {nproc} worker processes: {' '.join(cmd)}")
    try:
        rc, output = run_streaming(cmd, tmp / LOG_FILE)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result = yaml_load(tmp / RESULT_FILE) if (tmp / RESULT_FILE).is_file() else {}
    if rc != 0:
        raise DDPError(failure_message(rc, output, tmp / LOG_FILE, result.get("save_dir")))
    if not result.get("done"):
        raise DDPError(f"DDP training: torchrun exited normally but rank 0 reported no result; "
                           f"output of all ranks: {tmp / LOG_FILE}")
    shutil.rmtree(tmp, ignore_errors=True)
    return TrainResult(Path(result["save_dir"]), metrics_from_dict(result.get("metrics")), result.get("imgsz"),
                       dict(vars(args)))


def run_streaming(cmd: list[str], log_file: Path, env: dict | None = None) -> tuple[int, str]:
    """Run `cmd` in its own process group, echoing its output here and into `log_file`.

    Returns (exit code, the last TAIL_CHARS of the output). Ctrl-C (or any error) here stops the whole group.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail = ""
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        try:
            while chunk := proc.stdout.read1(1 << 16):
                log.write(chunk)
                text = decoder.decode(chunk)
                sys.stdout.write(text)
                sys.stdout.flush()
                tail = (tail + text)[-TAIL_CHARS:]
            rc = proc.wait()
        except BaseException:
            terminate(proc)
            raise
        finally:
            proc.stdout.close()
    if rc != 0:
        _signal_group(proc, signal.SIGKILL)  # leftovers of a failed job, if any
    return rc, tail


def terminate(proc: subprocess.Popen, grace: float = TERMINATE_GRACE_S) -> None:
    """Stop a process group started by run_streaming: SIGINT (like Ctrl-C in a terminal), SIGKILL after `grace` s."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc, signal.SIGKILL)
    proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, sig)  # the group id is torchrun's pid (start_new_session)
        elif proc.poll() is None:
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


def failure_message(returncode: int, output: str, log_file: str | Path, save_dir: str | None = None) -> str:
    """The DDPError text for a failed DDP job: which rank failed first and how (from torchrun's report),
    where the full log and the run folder are."""
    first = _first_failure(output)
    msg = f"DDP training failed: torchrun exited with code {returncode}."
    if first:
        msg += f" First failure: {first}."
    else:
        last = [line.strip() for line in output.splitlines() if line.strip()][-3:]
        if last:
            msg += " Last output: " + " | ".join(last)
    msg += f" Output of all ranks: {log_file}."
    if save_dir:
        msg += (f" Run folder: {save_dir} (weights/last.pt holds the last completed epoch; resume with "
                f"resume={Path(save_dir) / 'weights' / 'last.pt'}).")
    return msg


def _first_failure(output: str) -> str | None:
    """'rank 1 (local_rank 1), exitcode -9 (SIGKILL): <last line of its traceback>' from torchrun's last failure
    report, followed by the other ranks that failed."""
    report = output[output.rfind("Failures:"):] if "Failures:" in output else ""
    others, found, root = report.rpartition("Root Cause (first observed failure):")
    if not found:
        return None
    first = _describe(root, with_trace=True)
    rest = [_describe(block) for block in re.split(r"\n\[\d+\]:", others)[1:]]
    rest = [r for r in rest if r and r != first]
    return first + (f"; also failed: {', '.join(rest)}" if rest else "")


def _describe(block: str, with_trace: bool = False) -> str:
    rank = re.search(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*(\d+)\)", block)
    code = re.search(r"exitcode\s*:\s*(-?\d+)[^\n]*?(\((SIG\w+)\))?\s*$", block, re.M)
    text = f"rank {rank.group(1)} (local_rank {rank.group(2)})" if rank else "a rank"
    if code:
        text += f", exitcode {code.group(1)}" + (f" ({code.group(3)})" if code.group(3) else "")
    if with_trace and "traceback :" in block:
        lines = [ln.strip() for ln in block.split("traceback :", 1)[1].splitlines()
                 if ln.strip() and not set(ln.strip()) <= {"="}]
        if lines:
            text += f": {lines[-1]}"
    return text


def trainer_path(trainer: type | None) -> str | None:
    """'module:QualName' of a trainer class, so that the workers can import it; None for the default."""
    if trainer is None:
        return None
    module, name = trainer.__module__, trainer.__qualname__
    if module == "__main__" or "<locals>" in name:
        raise ConfigError(f"trainer {name} cannot be imported by the DDP worker processes; define it at the top "
                         "level of an importable module (not in __main__ or inside a function)")
    return f"{module}:{name}"


def _import_trainer(path: str | None) -> type:
    if not path:
        return DetectionTrainer
    module, _, name = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, DetectionTrainer)):
        raise TypeError(f"{path} is not a DetectionTrainer subclass")
    return obj


def _plain(value: Any) -> Any:
    """Plain YAML-safe data: Paths → str, tuples → lists, numpy scalars/arrays → numbers/lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def metrics_to_dict(metrics: Any) -> dict | None:
    """The parts of a DetMetrics the parent rebuilds it from (per-class P, R, F1, AP; names; speed)."""
    if metrics is None or not hasattr(metrics, "box"):
        return None
    box = metrics.box
    return _plain({"names": dict(metrics.names), "p": box.p, "r": box.r, "f1": box.f1, "all_ap": box.all_ap,
                   "ap_class_index": box.ap_class_index, "speed": dict(metrics.speed)})


def metrics_from_dict(d: dict | None) -> Any:
    """A DetMetrics from metrics_to_dict's output (curves are not carried over)."""
    if not d:
        return None
    m = DetMetrics({int(k): v for k, v in d["names"].items()})
    m.box.p, m.box.r, m.box.f1 = (np.asarray(d[k], dtype=float) for k in ("p", "r", "f1"))
    m.box.all_ap = np.asarray(d["all_ap"], dtype=float).reshape(-1, 10)
    m.box.ap_class_index = np.asarray(d["ap_class_index"], dtype=int)
    m.speed = dict(d.get("speed") or {})
    return m


# ---------------------------------------------------------------------------------------------------- worker side
def _write_result(file: Path, result: TrainResult, done: bool) -> None:
    yaml_save(file, _plain({"save_dir": str(result.save_dir), "done": done, "imgsz": result.imgsz,
                            "metrics": metrics_to_dict(result.metrics) if done else None}))


def worker(run_file: str | Path) -> int:
    """One DDP rank of a launched run: read the run file (safe_load), train, rank 0 reports the result."""
    run_file = Path(run_file)
    spec = yaml_load(run_file)
    weights = torch.load(spec["weights"], map_location="cpu", weights_only=True) if spec.get("weights") else None
    args = IterableSimpleNamespace(**spec["args"])  # the parent's validated config, as it was
    resume = None
    if spec.get("resume"):
        path = Path(spec["resume"])
        resume = ResumePoint(path, load_checkpoint(path), spec["args"])
    cls = _import_trainer(spec.get("trainer"))
    trainer = cls(args, model=spec.get("model"), weights=weights, resume=resume)
    result_file = run_file.with_name(RESULT_FILE)
    if RANK in (-1, 0):
        _write_result(result_file, trainer.result(), done=False)  # the run folder is known even if training fails
    result = trainer.train()
    if RANK in (-1, 0):
        _write_result(result_file, result, done=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m ultralytics.engine.ddp <run.yaml>` (started by torchrun)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: torchrun --nproc_per_node N -m ultralytics.engine.ddp <run.yaml>", file=sys.stderr)
        return 2
    return record(worker)(argv[0])  # record: torchrun's failure summary shows this rank's exception


if __name__ == "__main__":
    raise SystemExit(main())
