"""DDP training (docs/distributed.md) on CPU with gloo: real `torchrun --nproc_per_node 2` jobs on the
bundled COCO images (ultralytics/assets).

This file is also the worker script of those jobs: `python -m torch.distributed.run ... tests/test_distributed.py
MODE run.yaml` runs `worker(MODE, run.yaml)` in every rank (see the bottom of the file). Modes:
    weights  train; each rank saves its final model state_dict (rank{R}.pt) and its run folder path
    grads    train with frozen BatchNorm statistics; save the gradients of the first optimizer step
    kill     rank 1 SIGKILLs itself at its first training batch of epoch 2
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from ultralytics.detection.loss import distributed_normaliser, local_normaliser
from ultralytics.engine import ddp
from ultralytics.engine import resume as resume_module
from ultralytics.engine.resume import build_train_config
from ultralytics.engine.trainer import DetectionTrainer
from ultralytics.utils import RANK, dist, yaml_load, yaml_save
from ultralytics.utils.torch_utils import de_parallel

HERE = Path(__file__).resolve()
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2"]
JOB_TIMEOUT = 240  # s; a hanging job fails the test instead of the CI run
# Small and quick: 64-pixel images, the 8 bundled COCO images, no dataloader workers.
BASE = dict(device="cpu", epochs=1, imgsz=64, workers=0, verbose=False)
NO_AUGMENT = dict(mosaic=0.0, close_mosaic=0, mixup=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, fliplr=0.0, flipud=0.0,
                  translate=0.0, scale=0.0, degrees=0.0, shear=0.0, perspective=0.0)


# ---------------------------------------------------------------------------------------------------- helpers
def subset(assets: Path, tmp_path: Path, n_val: int) -> Path:
    from conftest import assets_subset_yaml

    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    return assets_subset_yaml(assets, folder, n_val)


def job_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a test job: one thread per rank, a short process-group timeout, settings in tmp."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", ULTRALYTICS_DDP_TIMEOUT="60", YOLO_CONFIG_DIR=str(tmp_path / "config"),
               PYTHONUNBUFFERED="1")
    return env


def run_job(tmp_path: Path, mode: str, overrides: dict, ranks: int = 2,
            name: str = "job") -> tuple[subprocess.CompletedProcess, Path, float]:
    """Run this file in `mode` under torchrun (ranks=2) or as one plain process (ranks=1), cwd = an empty dir."""
    out = tmp_path / f"{name}_out"
    cwd = tmp_path / f"{name}_cwd"
    out.mkdir()
    cwd.mkdir()
    run_file = out / "run.yaml"
    yaml_save(run_file, {"overrides": overrides, "out": str(out)})
    cmd = (TORCHRUN if ranks == 2 else [sys.executable]) + [str(HERE), mode, str(run_file)]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=cwd, env=job_env(tmp_path), capture_output=True, text=True, timeout=JOB_TIMEOUT)
    return proc, out, time.time() - t0


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------------- unit tests
def test_dist_env_parsing_and_timeout():
    assert dist.dist_env({}) == dist.DistEnv(-1, -1, 1, 1)
    env = dist.dist_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"})
    assert (env.rank, env.local_rank, env.world_size, env.local_world_size) == (3, 1, 4, 2)
    assert env.launched and env.distributed and not dist.dist_env({}).launched
    with pytest.raises(ValueError, match="RANK"):
        dist.dist_env({"RANK": "x"})
    with pytest.raises(ValueError, match="inconsistent"):
        dist.dist_env({"RANK": "4", "LOCAL_RANK": "0", "WORLD_SIZE": "4"})
    assert dist.backend_for(torch.device("cpu")) == "gloo" and dist.backend_for(torch.device("cuda:1")) == "nccl"
    assert dist.ddp_timeout({}).total_seconds() == dist.DEFAULT_TIMEOUT_S
    assert dist.ddp_timeout({dist.ENV_TIMEOUT: "90"}).total_seconds() == 90
    with pytest.raises(ValueError, match=dist.ENV_TIMEOUT):
        dist.ddp_timeout({dist.ENV_TIMEOUT: "0"})


def test_dist_helpers_without_and_with_a_group(monkeypatch):
    """No group: identities/no-ops. A 1-process gloo group: the collectives run and the group is destroyed."""
    loss, items = torch.tensor(2.0), torch.tensor([1.0, 2.0, 3.0])
    assert dist.broadcast_object("x") == "x" and dist.world_size() == 1
    dist.barrier()
    assert dist.reduce_loss_items(torch.tensor(float("nan")), items)[1] is False
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), dist.ENV_TIMEOUT: "20"}.items():
        monkeypatch.setenv(k, v)
    assert dist.init_process_group(torch.device("cpu"), dist.DistEnv(0, 0, 1, 1)) is True
    try:
        assert dist.init_process_group(torch.device("cpu"), dist.DistEnv(0, 0, 1, 1)) is False  # already joined
        with dist.rank_zero_first(0):
            pass
        assert dist.broadcast_object({"stop": True}) == {"stop": True}
        mean, finite = dist.reduce_loss_items(loss, items)
        assert finite and torch.equal(mean, items)
        assert dist.reduce_loss_items(torch.tensor(float("inf")), items)[1] is False
        model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
        dist.broadcast_buffers(model)
        wrapped = dist.wrap_ddp(model, torch.device("cpu"), sync_bn=True)  # sync_bn on CPU: warning, plain BN
        assert isinstance(wrapped, nn.parallel.DistributedDataParallel) and de_parallel(wrapped) is model
        assert type(model[1]) is nn.BatchNorm2d
    finally:
        dist.destroy_process_group()
    assert not dist.is_initialized()


def test_loss_normaliser_over_ranks(monkeypatch):
    """distributed_normaliser: max(Σ over ranks, 1) / world size (clamp before dividing); local: max(Σ, 1)."""
    scores = torch.full((2, 5, 3), 0.01)
    assert float(local_normaliser(scores.sum())) == 1.0
    calls = []
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: calls.append(t) or t.mul_(2))  # 2 equal ranks
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    assert float(distributed_normaliser(scores.sum())) == pytest.approx(0.5)  # max(0.6, 1) / 2 = 1/(2·1)
    scores = torch.full((2, 5, 3), 1.0)
    assert float(distributed_normaliser(scores.sum())) == pytest.approx(30.0) and len(calls) == 2  # (2·30) / 2


def test_select_device_per_local_rank():
    from ultralytics.utils.torch_utils import cuda_device_ids, select_device

    assert cuda_device_ids("0,1,2,3") == [0, 1, 2, 3] == cuda_device_ids([0, 1, 2, 3])
    assert cuda_device_ids("cuda:1") == [1] and cuda_device_ids("cpu") == [] == cuda_device_ids(None)
    assert select_device("cpu", local_rank=1) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert select_device("", local_rank=1) == torch.device("cpu")  # torchrun on a CPU machine: gloo
        with pytest.raises(ValueError, match="no CUDA devices"):
            select_device("0,1", local_rank=0)


def test_multi_gpu_routes_to_the_launcher(monkeypatch, tmp_path):
    """device=0,1 → 2 workers (only outside torchrun); cpu / one GPU → train in this process; resume keeps the
    checkpoint's device; the trainer itself refuses several GPUs outside torchrun."""
    monkeypatch.delenv("RANK", raising=False)

    def workers(**overrides) -> int:  # the run's one config decides, as YOLO.train and `yolo train` build it
        return ddp.processes_to_launch(build_train_config(overrides={"data": "coco8.yaml", **overrides})[0])

    assert workers(device="0,1,2,3") == 4
    assert workers(device=[0, 1]) == 2
    assert workers(device="cpu") == 0 == workers(device=0)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("device: 0,1\n")
    assert workers(cfg=str(cfg)) == 2
    last = tmp_path / "last.pt"
    last.write_bytes(b"")
    monkeypatch.setattr(resume_module, "load_checkpoint",
                        lambda p: {"train_args": {"device": "0,1", "data": "coco8.yaml"}, "optimizer": {}, "epoch": 0})
    assert workers(resume=str(last)) == 2
    assert workers(resume=str(last), device="cpu") == 0
    monkeypatch.setenv("RANK", "0")
    assert workers(device="0,1") == 0  # already a torchrun worker
    monkeypatch.delenv("RANK")
    with pytest.raises(ValueError, match="one process per GPU"):
        DetectionTrainer(overrides={"device": "0,1", "data": "coco8.yaml"})


def test_launcher_command_and_failure_message(tmp_path):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    cmd = ddp.build_command(tmp_path / "run.yaml", 4)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"] and "--standalone" in cmd
    assert cmd[cmd.index("--nproc_per_node") + 1] == "4" and cmd[-3:] == ["-m", "ultralytics.engine.ddp",
                                                                          str(tmp_path / "run.yaml")]
    killed = ProcessFailure(local_rank=1, pid=4242, exitcode=-9, error_file=str(tmp_path / "none.json"))
    report = ChildFailedError("ultralytics.engine.ddp", {1: killed}).format_msg()
    msg = ddp.failure_message(-9, "some progress\n" + report, tmp_path / "torchrun.log", "runs/detect/train3")
    assert "exited with code -9" in msg and "First failure: rank 1 (local_rank 1), exitcode -9 (SIGKILL)" in msg
    assert "also failed" not in msg
    assert str(tmp_path / "torchrun.log") in msg and "runs/detect/train3" in msg and "last.pt" in msg
    failed = ProcessFailure(local_rank=0, pid=4241, exitcode=1, error_file=str(tmp_path / "none.json"))
    report = ChildFailedError("ultralytics.engine.ddp", {1: killed, 0: failed}).format_msg()
    msg = ddp.failure_message(1, report, tmp_path / "torchrun.log")
    assert "rank 1 (local_rank 1), exitcode -9 (SIGKILL)" in msg and "rank 0 (local_rank 0), exitcode 1" in msg
    assert "also failed: rank" in msg
    msg = ddp.failure_message(1, "Traceback ...\nValueError: bad\n", "x.log")
    assert "code 1" in msg and "ValueError: bad" in msg and "x.log" in msg
    with pytest.raises(ValueError, match="cannot be imported"):
        ddp.trainer_path(type("Local", (DetectionTrainer,), {"__module__": "__main__"}))


def test_parent_interrupt_stops_the_whole_job(tmp_path):
    """terminate(): SIGINT to torchrun's process group, then SIGKILL; children of the job die with it."""
    script = ("import subprocess, sys, time\n"
              "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
              "print(c.pid, flush=True)\ntime.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    child = int(proc.stdout.readline())
    t0 = time.time()
    ddp.terminate(proc, grace=5)
    assert proc.poll() is not None and time.time() - t0 < 10
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the child of the job survived")


# ---------------------------------------------------------------------------------------------------- real jobs
@pytest.mark.slow
def test_ddp_two_ranks_identical_weights_and_one_run_folder(assets, tmp_path):
    """torchrun, 2 gloo ranks, yolov8n, one epoch (8 images, global batch 4) with the user defaults otherwise
    (plots, val, save): both ranks end with identical weights; rank 0 alone writes; the run folder is complete."""
    overrides = dict(BASE, model="yolov8n.yaml", data=str(subset(assets, tmp_path, 4)), batch=4,
                     project=str(tmp_path / "runs"), name="ddp")
    proc, out, seconds = run_job(tmp_path, "weights", overrides)
    assert proc.returncode == 0, output(proc)[-4000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["save_dir"] == r1["save_dir"] == str(tmp_path / "runs" / "ddp")
    assert r0["state"].keys() == r1["state"].keys()
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])  # parameters and BN buffers
    run = tmp_path / "runs" / "ddp"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ddp"]  # no second run folder
    assert not any((tmp_path / "job_cwd").iterdir())  # nothing written relative to the working directory
    for name in ("args.yaml", "results.csv", "weights/last.pt", "weights/best.pt", "labels.jpg", "train_batch0.jpg",
                 "results.png", "BoxPR_curve.png", "BoxF1_curve.png", "confusion_matrix.png",
                 "confusion_matrix_normalized.png", "val_batch0_labels.jpg", "val_batch0_pred.jpg"):
        assert (run / name).is_file(), name
    with open(run / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1"]
    assert yaml_load(run / "args.yaml")["batch"] == 4
    assert output(proc).count("Starting training") == 1  # rank 0 alone logs


@pytest.mark.slow
def test_ddp_first_step_gradients_match_single_process(assets, tmp_path):
    """yolov8n_BiFormer: the gradients of the first optimizer step of 2 ranks × 2 images equal those of one process
    with 4 images (two accumulated batches each, so DDP's no_sync path is covered too).

    BatchNorm statistics are frozen (eval-mode BN): in training mode each rank normalises with its own 2-image batch
    statistics, which differ from the 4-image batch's by design (SyncBatchNorm would fix it but has no CPU kernels).
    Augmentation is off and the sampler unshuffled, so both runs see exactly the same images in each step.
    """
    overrides = dict(BASE, **NO_AUGMENT, model="yolov8n_BiFormer.yaml", data=str(subset(assets, tmp_path, 2)), batch=4,
                     nbs=8, warmup_epochs=0, plots=False, val=False,
                     project=str(tmp_path / "runs"))
    single, out1, _ = run_job(tmp_path, "grads", dict(overrides, name="single"), ranks=1, name="single")
    assert single.returncode == 0, output(single)[-4000:]
    multi, out2, _ = run_job(tmp_path, "grads", dict(overrides, name="ddp"), ranks=2, name="ddp")
    assert multi.returncode == 0, output(multi)[-4000:]
    ref = torch.load(out1 / "grads_-1.pt", weights_only=True)
    g0, g1 = (torch.load(out2 / f"grads_{r}.pt", weights_only=True) for r in (0, 1))
    for g in (ref, g0, g1):
        assert g["missing"] == [], g["missing"]  # every trainable parameter got a gradient: no unused parameters
        assert g["images"] == (4 if g is ref else 2) and g["batches"] == 2
    assert ref["grads"].keys() == g0["grads"].keys() and len(ref["grads"]) > 150
    assert any("attn" in k or "qkv" in k for k in ref["grads"])  # BRA parameters are among them
    for k, a in ref["grads"].items():
        assert torch.equal(g0["grads"][k], g1["grads"][k]), k  # DDP: the same averaged gradient on every rank
        tol = 1e-5 * max(1.0, float(a.abs().max()))
        assert float((g0["grads"][k] - a).abs().max()) <= tol, k


@pytest.mark.slow
def test_killed_worker_ends_the_job_and_the_run_resumes(assets, tmp_path):
    """Rank 1 SIGKILLs itself in epoch 2: torchrun takes rank 0 down too (bounded time) and names the dead rank.
    Resuming the DDP run from its last.pt (epoch 1) with torchrun finishes epoch 2 in the same run folder."""
    overrides = dict(BASE, model="yolov8n.yaml", data=str(subset(assets, tmp_path, 2)), batch=4,
                     epochs=2, plots=False, project=str(tmp_path / "runs"), name="kill")
    proc, _, seconds = run_job(tmp_path, "kill", overrides)
    text = output(proc)
    assert proc.returncode != 0 and seconds < 120, text[-4000:]
    assert "ChildFailedError" in text and "SIGKILL" in text, text[-4000:]
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)", text), text[-4000:]
    run = tmp_path / "runs" / "kill"
    assert torch.load(run / "weights" / "last.pt", weights_only=True)["epoch"] == 0  # epoch 1 completed

    proc, out, _ = run_job(tmp_path, "weights", {"resume": str(run / "weights" / "last.pt")}, name="resume")
    assert proc.returncode == 0, output(proc)[-4000:]
    with open(run / "results.csv", newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["save_dir"] == r1["save_dir"] == str(run)
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])
    assert torch.load(run / "weights" / "last.pt", weights_only=True)["finished"] is True


@pytest.mark.slow
def test_launcher_trains_and_reports(assets, tmp_path, monkeypatch):
    """YOLO.train through the launcher (2 CPU workers stand in for device=0,1): it returns rank 0's final
    metrics and holds best.pt; a job that fails raises a DDPError naming the rank, the log and the folder."""
    from ultralytics import YOLO
    from ultralytics.evaluation.metrics import DetMetrics

    for k, v in job_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ddp, "processes_to_launch", lambda args: 2)
    model = YOLO("yolov8n.yaml")
    metrics = model.train(**BASE, data=str(subset(assets, tmp_path, 2)), batch=4, plots=False,
                          project=str(tmp_path / "runs"), name="launched")
    best = tmp_path / "runs" / "launched" / "weights" / "best.pt"
    assert isinstance(metrics, DetMetrics) and 0 <= metrics.box.map50 <= 1 and model.ckpt_path == str(best)
    assert model.overrides["imgsz"] == 64 and len(metrics.ap_class_index) > 0 and metrics.box.all_ap.shape[1] == 10
    with open(tmp_path / "runs" / "launched" / "results.csv", newline="") as f:  # best.pt = the epoch-1 EMA
        row = list(csv.DictReader(f))[-1]
    assert metrics.box.map50 == pytest.approx(float(row["metrics/mAP50(B)"]), abs=1e-4)
    with pytest.raises(ddp.DDPError, match=r"torchrun exited with code 1\. First failure: rank \d \(local_rank \d\)"
                                           r".*ConfigError: batch=3 is the global batch.*torchrun\.log") as e:
        ddp.launch(build_train_config(overrides=dict(BASE, model="yolov8n.yaml", data=str(subset(assets, tmp_path, 2)),
                                                     batch=3))[0], 2)
    log = Path(re.search(r"Output of all ranks: (\S+torchrun\.log)", str(e.value)).group(1))
    assert log.is_file() and "multiple of the 2 DDP processes" in log.read_text()
    shutil.rmtree(log.parent)  # kept by the launcher for the user to read
    with pytest.raises(FileNotFoundError, match="missing_dataset.yaml"):  # checked before any worker starts
        ddp.launch(build_train_config(overrides=dict(BASE, model="yolov8n.yaml", data="missing_dataset.yaml"))[0], 2)


# ---------------------------------------------------------------------------------------------------- worker side
class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that stays in eval mode (running statistics) even when the model is put in training mode."""

    def train(self, mode: bool = True) -> FrozenBatchNorm2d:
        return super().train(False)


class GradTrainer(DetectionTrainer):
    """Frozen BN, an unshuffled train loader, and a copy of the gradients at the first optimizer step."""

    def get_model(self) -> nn.Module:
        model = super().get_model()
        for m in model.modules():
            if type(m) is nn.BatchNorm2d:
                m.__class__ = FrozenBatchNorm2d
        return model

    def get_dataloader(self, img_path, batch, mode="train", rank=-1):
        from ultralytics.data import build_dataloader, build_yolo_dataset

        if mode != "train":
            return super().get_dataloader(img_path, batch, mode, rank)
        dataset = build_yolo_dataset(self.args, img_path, batch, self.data, stride=self.stride, imgsz=self.imgsz)
        return build_dataloader(dataset, batch, 0, shuffle=False, rank=rank, seed=self.args.seed)

    def preprocess_batch(self, batch: dict) -> dict:
        self.seen = getattr(self, "seen", 0) + len(batch["im_file"])
        self.batches = getattr(self, "batches", 0) + 1
        return super().preprocess_batch(batch)

    def optimizer_step(self) -> None:
        if not getattr(self, "saved", False):
            self.saved = True
            model = de_parallel(self.model)
            params = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
            torch.save({"grads": {k: p.grad.detach().clone() for k, p in params if p.grad is not None},
                        "missing": [k for k, p in params if p.grad is None],
                        "images": self.seen // self.batches, "batches": self.batches},
                       Path(self.out) / f"grads_{RANK}.pt")
        super().optimizer_step()


def worker(mode: str, run_file: str) -> None:
    spec = yaml_load(run_file)
    out = Path(spec["out"])
    cls = GradTrainer if mode == "grads" else DetectionTrainer
    trainer = cls(overrides=spec["overrides"])
    trainer.out = out
    if mode == "kill":  # callbacks run on rank 0 only: rank 1 stops itself from its own batch hook
        trainer.preprocess_batch = lambda batch, hook=trainer.preprocess_batch: (
            RANK == 1 and trainer.epoch == 1 and os.kill(os.getpid(), signal.SIGKILL)) or hook(batch)
    trainer.train()
    if mode == "weights":
        torch.save({"state": de_parallel(trainer.model).state_dict(), "save_dir": str(trainer.save_dir)},
                   out / f"rank{RANK}.pt")


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2])
