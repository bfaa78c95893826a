"""Faults end as one clear line and lose nothing (docs/reliability.md): a full disk or read-only folder at every write
site, Ctrl-C/SIGTERM during training, NaN losses, GPU out of memory, batch=-1, unreadable prediction inputs, a video
that stops decoding, and two threads predicting at once.

A full disk is simulated by an `os.write` that fails with ENOSPC after n bytes, for files of one folder only (every
writer of the package ends in `utils.write_atomic`, which writes with os.write).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ultralytics import YOLO
from ultralytics.checkpoints import atomic_save
from ultralytics.cli import entrypoint
from ultralytics.data.cache import save_cache
from ultralytics.data.loaders import InferenceSource
from ultralytics.engine import trainer as trainer_module
from ultralytics.engine.exporter import Exporter
from ultralytics.engine.run_files import ResultsCSV
from ultralytics.engine.trainer import DetectionTrainer
from ultralytics.errors import (DeviceMemoryError, FileWriteError, NonFiniteLossError, SourceError,
                                TrainingInterrupted)
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import yaml_save
from ultralytics.utils.autobatch import check_train_batch_size, fit_batch
from ultralytics.utils.plotting import PlotWorker, plot_images, plot_labels

from conftest import assets_subset_yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def disk_full(monkeypatch):
    """disk_full(folder, after=n, match=''): os.write into files under `folder` whose name contains `match` fails
    with ENOSPC (or `err`) once n bytes were written into them. Returns the state dict (bytes written, failures)."""
    real = os.write
    state: dict = {}

    def arm(folder: Path, after: int = 0, match: str = "", err: int = errno.ENOSPC) -> dict:
        state.update(folder=str(folder), after=after, match=match, err=err, written=0, failures=0)
        return state

    def fake(fd: int, data) -> int:
        if state:
            try:
                path = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                path = ""
            if path.startswith(state["folder"]) and state["match"] in os.path.basename(path):
                room = state["after"] - state["written"]
                if room <= 0:
                    state["failures"] += 1
                    raise OSError(state["err"], os.strerror(state["err"]))
                n = real(fd, bytes(memoryview(data)[:room]))
                state["written"] += n
                return n
        return real(fd, data)

    monkeypatch.setattr(os, "write", fake)
    return arm


def leftovers(folder: Path) -> list[str]:
    """Temp files of an atomic write (".name.pid.tid.tmp") left in `folder`."""
    return [p.name for p in Path(folder).rglob("*.tmp")]


def assert_one_line_full(e: BaseException, file: Path, kept: str) -> None:
    msg = str(e)
    assert "\n" not in msg and isinstance(e, OSError) and e.errno == errno.ENOSPC
    assert f"cannot write {file}: the disk is full (" in msg and " free)" in msg and kept in msg, msg
    assert "no partial file was left" in msg


# --------------------------------------------------------------------------------------------- each write site
def test_checkpoint_disk_full_keeps_previous(tmp_path, disk_full):
    last = tmp_path / "weights" / "last.pt"
    atomic_save({"epoch": 0, "w": torch.zeros(10)}, last)
    before = last.read_bytes()
    state = disk_full(tmp_path, after=1000)  # fails in the middle of the new file (a few KB)
    with pytest.raises(FileWriteError) as e:
        atomic_save({"epoch": 1, "w": torch.ones(10_000)}, last)
    assert state["written"] == 1000 and state["failures"] == 1  # it did fail mid-file, not before
    assert_one_line_full(e.value, last, "the previous last.pt is unchanged")
    assert last.read_bytes() == before and not leftovers(tmp_path)
    assert torch.load(last, weights_only=True)["epoch"] == 0


def test_results_csv_and_args_yaml_disk_full(tmp_path, disk_full):
    csv_file = ResultsCSV(tmp_path / "results.csv")
    csv_file.add({"epoch": 1, "time": 1.0})
    before = csv_file.file.read_text()
    disk_full(tmp_path, after=20)
    with pytest.raises(FileWriteError) as e:
        csv_file.add({"epoch": 2, "time": 2.0})
    assert_one_line_full(e.value, csv_file.file, "the previous results.csv is unchanged")
    assert csv_file.file.read_text() == before
    with pytest.raises(FileWriteError) as e:
        yaml_save(tmp_path / "args.yaml", {"epochs": 3})
    assert_one_line_full(e.value, tmp_path / "args.yaml", "args.yaml was not created")
    assert not (tmp_path / "args.yaml").exists() and not leftovers(tmp_path)


def test_plots_and_label_cache_warn_and_leave_nothing(tmp_path, disk_full, logs):
    batch = {"img": np.zeros((2, 3, 64, 64), np.uint8), "cls": np.array([[0.0]]),
             "bboxes": np.array([[0.5, 0.5, 0.2, 0.2]]), "batch_idx": np.array([0.0])}
    disk_full(tmp_path, after=100)
    worker = PlotWorker()
    worker.submit(plot_images, batch, tmp_path / "train_batch0.jpg")
    worker.submit(plot_labels, np.array([[0.5, 0.5, 0.2, 0.2]]), np.array([0]), {0: "a"}, tmp_path)
    worker.wait()  # a plot that cannot be written is a warning, never an error
    warned = [m for m in logs if "plot" in m and "failed" in m]
    assert len(warned) == 2 and all("the disk is full" in m and " free)" in m for m in warned), logs
    assert f"cannot write {tmp_path / 'train_batch0.jpg'}" in warned[0]
    assert not save_cache(tmp_path / "labels.cache", {"version": "x"}, {"a": np.zeros(100)})
    assert any("label cache not saved" in m and "the disk is full" in m for m in logs)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no image, no cache, no temp file


def test_export_disk_full(tmp_path, disk_full):
    model = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    out = tmp_path / "export" / "m.torchscript"
    disk_full(tmp_path, after=4096)
    with pytest.raises(FileWriteError) as e:
        Exporter(overrides={"format": "torchscript", "imgsz": 64})(model, file=out)
    assert_one_line_full(e.value, out, "m.torchscript was not created")
    assert not out.exists() and not leftovers(tmp_path)


def test_read_only_folder_simulated(tmp_path, disk_full):
    disk_full(tmp_path, err=errno.EROFS)
    with pytest.raises(FileWriteError, match=r"the folder is read-only \(no write permission\) \(.* free\); "
                                             r"x\.yaml was not created"):
        yaml_save(tmp_path / "x.yaml", {"a": 1})
    assert not leftovers(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 555 folder anyway")
def test_read_only_run_folder_chmod(tmp_path):
    (tmp_path / "weights").mkdir()
    last = tmp_path / "weights" / "last.pt"
    atomic_save({"epoch": 0}, last)
    os.chmod(tmp_path / "weights", 0o555)
    try:
        with pytest.raises(FileWriteError, match="the folder is read-only.*the previous last.pt is unchanged"):
            atomic_save({"epoch": 1}, last)
        assert torch.load(last, weights_only=True)["epoch"] == 0 and not leftovers(tmp_path)
    finally:
        os.chmod(tmp_path / "weights", 0o755)


# --------------------------------------------------------------------------------------------- training faults
class FakeLoss:
    """Stands in for DetectionModel.loss: a finite loss, NaN on the listed calls, or `raise_on` calls raising."""

    def __init__(self, nan_calls=(), raise_on: dict | None = None):
        self.calls, self.nan_calls, self.raise_on = 0, set(nan_calls), raise_on or {}

    def __call__(self, model, batch, preds=None):
        self.calls += 1
        if self.calls in self.raise_on:
            raise self.raise_on[self.calls]
        loss = sum(p.sum() for p in model.parameters() if p.requires_grad) * 1e-6 + 1.0
        return (loss * float("nan") if self.calls in self.nan_calls else loss), torch.ones(3)


@pytest.fixture
def tiny(tmp_path, assets) -> Path:
    return assets_subset_yaml(assets, tmp_path, 2)


def train(tiny, tmp_path, monkeypatch, fake, callbacks=None, **overrides) -> DetectionTrainer:
    """6 images, batch 2: 3 batches (3 optimizer steps) per epoch."""
    monkeypatch.setattr(DetectionModel, "loss", lambda self, batch, preds=None: fake(self, batch, preds))
    args = dict(model="yolov8n.yaml", data=str(tiny), imgsz=64, batch=2, nbs=2, fraction=0.75, workers=0,
                plots=False, verbose=False, val=False, project=str(tmp_path / "runs"), name="t", epochs=2,
                warmup_epochs=0)
    args.update(overrides)
    trainer = DetectionTrainer(overrides=args, callbacks=callbacks)
    trainer.train()
    return trainer


@pytest.mark.slow
def test_checkpoint_disk_full_stops_run_with_resume_command(tiny, tmp_path, monkeypatch, disk_full):
    def fill_disk(trainer):
        if trainer.epoch == 1:
            disk_full(trainer.wdir, match="last.pt")

    run = tmp_path / "runs" / "t"
    with pytest.raises(FileWriteError) as e:
        train(tiny, tmp_path, monkeypatch, FakeLoss(), {"on_train_epoch_start": [fill_disk]}, epochs=3)
    last = run / "weights" / "last.pt"
    msg = str(e.value)
    assert "\n" not in msg and f"cannot write {last}: the disk is full" in msg and " free)" in msg
    assert "the previous last.pt is unchanged" in msg and "Training stopped in epoch 2/3" in msg
    assert msg.endswith(f"{last} (epoch 1) is intact. Resume with: yolo train resume model={last}"), msg
    assert torch.load(last, weights_only=True)["epoch"] == 0 and not leftovers(run)
    assert torch.load(run / "weights" / "best.pt", weights_only=True)["epoch"] == 0
    disk_full(tmp_path / "elsewhere")  # space freed: the run resumes as the message says
    resumed = DetectionTrainer(overrides={"resume": str(last)})
    resumed.train()
    assert torch.load(last, weights_only=True)["epoch"] == 2
    assert [r["epoch"] for r in resumed.csv.rows] == ["1", "2", "3"]


def test_cli_read_only_run_folder_is_one_line_exit_2(tiny, tmp_path, monkeypatch, disk_full, capsys):
    monkeypatch.setattr(DetectionModel, "loss", lambda self, batch, preds=None: FakeLoss()(self, batch, preds))
    disk_full(tmp_path / "runs", err=errno.EACCES)
    rc = entrypoint(["train", "model=yolov8n.yaml", f"data={tiny}", "imgsz=64", "batch=2", "epochs=1", "workers=0",
                     "plots=False", f"project={tmp_path / 'runs'}", "name=ro"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    args = tmp_path / "runs" / "ro" / "args.yaml"
    assert f"ERROR ❌ cannot write {args}: the folder is read-only" in err and "no last.pt was written yet" in err
    assert not leftovers(tmp_path / "runs")


@pytest.mark.slow
def test_plot_disk_full_warns_and_training_goes_on(tiny, tmp_path, monkeypatch, disk_full, logs):
    disk_full(tmp_path / "runs", match=".jpg")
    trainer = train(tiny, tmp_path, monkeypatch, FakeLoss(), epochs=1, plots=True)
    assert torch.load(trainer.last, weights_only=True)["finished"]
    assert any("plot" in m and "cannot write" in m and "train_batch0.jpg" in m for m in logs)
    assert not list(trainer.save_dir.glob("*.jpg")) and not leftovers(trainer.save_dir)


def test_nan_loss_stops_and_last_pt_holds_last_finite_weights(tiny, tmp_path, monkeypatch, logs):
    monkeypatch.setattr(trainer_module, "MAX_BAD_STEPS", 2)
    seen = {}

    def snapshot(trainer):  # the weights after the last finite step (batch 1 of epoch 2)
        if trainer.epoch == 1 and "w" not in seen:
            seen["w"] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    with pytest.raises(NonFiniteLossError) as e:  # calls 1-3 epoch 1, 4 finite, 5-6 NaN
        train(tiny, tmp_path, monkeypatch, FakeLoss(nan_calls=(5, 6)), {"on_train_batch_end": [snapshot]}, epochs=3)
    last = tmp_path / "runs" / "t" / "weights" / "last.pt"
    msg = str(e.value)
    assert "\n" not in msg and "NaN/inf for 2 consecutive batches, the last one non-finite loss (nan) at epoch 2 " \
           "batch 3" in msg and "lr0 (now" in msg and "amp=False" in msg and "bad labels" in msg, msg
    assert f"{last} holds the weights reached in epoch 2, which a resume repeats" in msg
    assert [m for m in logs if "non-finite loss" in m and "skipping" in m][0].startswith(
        "WARNING ⚠️ non-finite loss (nan) at epoch 2 batch 2")
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["epoch"] == 0 and ckpt["optimizer"] is not None
    assert all(torch.equal(ckpt["model"][k], v) for k, v in seen["w"].items())  # the NaN steps changed nothing
    assert all(bool(torch.isfinite(v).all()) for v in ckpt["model"].values() if v.is_floating_point())


def test_sigterm_in_process_writes_last_pt_and_exit_143(tiny, tmp_path, monkeypatch):
    def term(trainer):
        if trainer.epoch == 1 and trainer.signals.signum is None:
            os.kill(os.getpid(), signal.SIGTERM)  # handled: the batch finishes, then the run stops

    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as e:
        train(tiny, tmp_path, monkeypatch, FakeLoss(), {"on_train_batch_start": [term]}, epochs=3)
    last = tmp_path / "runs" / "t" / "weights" / "last.pt"
    assert e.value.exit_code == 143 and isinstance(e.value, KeyboardInterrupt)
    assert str(e.value) == (f"training interrupted by SIGTERM in epoch 2/3; {last} holds the weights reached in "
                            f"epoch 2, which a resume repeats. Resume with: yolo train resume model={last}")
    assert signal.getsignal(signal.SIGTERM) is handler  # restored
    assert torch.load(last, weights_only=True)["epoch"] == 0 and not leftovers(last.parent)


def test_out_of_memory_is_one_line(tiny, tmp_path, monkeypatch):
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    with pytest.raises(DeviceMemoryError) as e:
        train(tiny, tmp_path, monkeypatch, FakeLoss(raise_on={5: oom}), epochs=2)
    last = tmp_path / "runs" / "t" / "weights" / "last.pt"
    assert str(e.value) == (f"CPU out of memory in epoch 2/2 at batch=2, imgsz=64: lower batch or imgsz, or use "
                            f"batch=-1 (the largest batch that fits ~60% of the GPU memory); {last} (epoch 1) is "
                            f"intact. Resume with: yolo train resume model={last}")


# --------------------------------------------------------------------------------------------- batch=-1
def test_autobatch_fit():
    gib = 2**30
    used = [1 * gib + 0.25 * gib * b for b in (1, 2, 4, 8, 16)]  # 1 GiB model + 0.25 GiB per image
    assert fit_batch((1, 2, 4, 8, 16), used, 0.6 * 16 * gib) == int((0.6 * 16 - 1) / 0.25)  # 34
    used[-1] = None  # batch 16 ran out of memory: at most 8
    assert fit_batch((1, 2, 4, 8, 16), used, 0.6 * 16 * gib) == 8
    assert fit_batch((1, 2), [gib, None], gib) == 16  # too few points: the default


def test_autobatch_cpu_falls_back_to_16(tiny, tmp_path, monkeypatch, logs):
    model = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    assert check_train_batch_size(model, 64, amp=False) == 16
    assert any("batch=-1 needs a CUDA device" in m and "batch=16" in m for m in logs)
    trainer = train(tiny, tmp_path, monkeypatch, FakeLoss(), epochs=1, batch=-1, fraction=1.0)
    assert trainer.batch_size == 16 and trainer.args.batch == 16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_autobatch_cuda_fits_fraction():
    model = DetectionModel("yolov8n.yaml", nc=80, verbose=False).cuda()
    b = check_train_batch_size(model, 640, amp=True)
    assert 1 <= b <= 1024


# --------------------------------------------------------------------------------------------- Ctrl-C
CHILD = """
import sys, time
from pathlib import Path
from ultralytics import YOLO
marker, data, project = sys.argv[1:4]
def started(trainer):
    if trainer.epoch == 1 and not Path(marker).exists():
        Path(marker).write_text("epoch 2 started")
        time.sleep(3)  # the parent's SIGINT arrives during this batch
model = YOLO("yolov8n.yaml")
model.add_callback("on_train_batch_start", started)
try:
    model.train(data=data, imgsz=64, epochs=3, batch=4, workers=0, plots=False, val=False, project=project,
                name="run", verbose=False)
except KeyboardInterrupt as e:  # what `yolo` does with it
    print(e, file=sys.stderr)
    sys.exit(getattr(e, "exit_code", 130))
"""


@pytest.mark.slow
def test_ctrl_c_then_resume_to_the_final_epoch(assets, tmp_path):
    marker = tmp_path / "started"
    env = dict(os.environ, OMP_NUM_THREADS="1", YOLO_CONFIG_DIR=str(tmp_path / "cfg"))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(marker), str(assets / "data.yaml"), str(tmp_path)],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not marker.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), child.communicate()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    last = tmp_path / "run" / "weights" / "last.pt"
    assert child.returncode == 130, err[-3000:]
    assert err.strip().splitlines()[-1] == (f"training interrupted by SIGINT in epoch 2/3; {last} holds the weights "
                                           f"reached in epoch 2, which a resume repeats. Resume with: yolo train "
                                           f"resume model={last}")
    assert not leftovers(tmp_path / "run")
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["epoch"] == 0 and not ckpt["finished"] and ckpt["optimizer"] is not None

    YOLO(str(last)).train(resume=True)
    final = torch.load(last, weights_only=True)
    assert final["epoch"] == 2 and final["finished"]
    rows = (tmp_path / "run" / "results.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["1", "2", "3"]


# --------------------------------------------------------------------------------------------- prediction inputs
@pytest.fixture
def not_an_image(tmp_path) -> Path:
    f = tmp_path / "src" / "x.jpg"
    f.parent.mkdir()
    f.write_text("this is text, not a JPEG\n")
    return f


def test_explicit_non_image_is_one_clear_error(not_an_image, capsys):
    with pytest.raises(SourceError) as e:
        list(InferenceSource(str(not_an_image)))
    assert isinstance(e.value, OSError) and str(e.value).startswith(f"cannot read image '{not_an_image}': ")
    assert "pass a readable image or video" in str(e.value)
    rc = entrypoint(["predict", "model=yolov8n.yaml", f"source={not_an_image}", "imgsz=64"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith(f"ERROR ❌ cannot read image '{not_an_image}'")


def test_non_image_in_folder_or_list_is_skipped(not_an_image, assets, logs):
    good = sorted((assets / "images").glob("*.jpg"))[:2]
    for g in good:
        (not_an_image.parent / g.name).write_bytes(g.read_bytes())
    for source in (str(not_an_image.parent), str(not_an_image.parent / "*.jpg")):
        src = InferenceSource(source)
        assert [Path(i.path).name for i in src] == [g.name for g in good] and src.skipped == [str(not_an_image)]
    results = YOLO("yolov8n.yaml").predict([str(not_an_image.parent)], imgsz=64)
    assert [Path(r.path).name for r in results] == [g.name for g in good]
    assert any(f"skipping unreadable image '{not_an_image}'" in m for m in logs)


def test_truncated_video_ends_with_warning_and_keeps_frames(tmp_path, logs):
    full = tmp_path / "full.avi"
    vw = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 128))
    rng = np.random.default_rng(0)
    for _ in range(20):
        vw.write(rng.integers(0, 255, (128, 160, 3), dtype=np.uint8))
    vw.release()
    cut = tmp_path / "cut.avi"
    data = full.read_bytes()
    cut.write_bytes(data[:int(len(data) * 0.6)])  # the index and the later frames are gone
    frames = [item.frame for item in InferenceSource(str(cut))]
    assert 0 < len(frames) < 20 and frames == list(range(1, len(frames) + 1))
    assert any(f"video '{cut}' stopped decoding after frame" in m and "of 20" in m for m in logs), logs
    results = YOLO("yolov8n.yaml").predict(str(cut), imgsz=64)
    assert len(results) == len(frames)


# --------------------------------------------------------------------------------------------- threads
def test_two_threads_with_their_own_yolo_match_sequential(assets, tmp_path):
    weights = tmp_path / "w.pt"
    torch.manual_seed(0)
    YOLO("yolov8n.yaml").save(weights)
    images = [str(p) for p in sorted((assets / "images").glob("*.jpg"))]

    def boxes(model: YOLO) -> list[torch.Tensor]:
        return [r.boxes.data for r in model.predict(images, imgsz=128, conf=1e-9, verbose=False)]

    sequential = [boxes(YOLO(str(weights))), boxes(YOLO(str(weights)))]
    models = [YOLO(str(weights)), YOLO(str(weights))]
    out: dict[int, list] = {}
    threads = [threading.Thread(target=lambda k=k: out.__setitem__(k, boxes(models[k]))) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(out) == [0, 1]
    assert sum(len(b) for b in sequential[0]) > 0
    for k in (0, 1):
        assert [a.shape for a in out[k]] == [b.shape for b in sequential[k]]
        assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(out[k], sequential[k]))
