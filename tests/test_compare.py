"""`compare`: the statistics on hand-made numbers, the report files and columns, one-line errors before any
training, resuming after a killed run (finished runs are not retrained), and the child-process scheduler."""

from __future__ import annotations

import csv
import math
import os
import sys
from pathlib import Path

import pytest
import torch

from conftest import assert_real_image
from ultralytics.checkpoints import atomic_save, make_checkpoint
from ultralytics.data.synthetic import NAMES, generate_shapes
from ultralytics.engine import compare as cmp
from ultralytics.engine.compare_report import CompareReport, ModelRow, RunResult, build_rows
from ultralytics.engine.model import YOLO
from ultralytics.engine.trainer import DetectionTrainer
from ultralytics.errors import ConfigError, MissingFileError, ModelConfigError, UnknownKeyError, UserError
from ultralytics.evaluation import stats
from ultralytics.nn.tasks import MODEL_DIR, DetectionModel
from ultralytics.utils import yaml_load, yaml_save

# ------------------------------------------------------------------------------------------------ statistics
# Student-t 0.975 quantiles from printed tables (independent of scipy and of our code).
T975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 9: 2.2622, 30: 2.0423}


def test_mean_and_sample_std_hand_made():
    assert stats.mean([1.0, 2.0, 6.0]) == 3.0
    assert stats.sample_std([1.0, 2.0, 6.0]) == pytest.approx(math.sqrt((4 + 1 + 9) / 2))  # n-1 = 2
    assert math.isnan(stats.sample_std([0.5])) and math.isnan(stats.mean([]))


@pytest.mark.parametrize("dof", sorted(T975))
def test_t_quantile_against_tables_both_ways(dof):
    assert stats.t_ppf(0.975, dof) == pytest.approx(T975[dof], abs=1e-4)
    assert stats.t_ppf_fallback(0.975, dof) == pytest.approx(T975[dof], abs=1e-4)
    assert stats.t_ppf_fallback(0.025, dof) == pytest.approx(-T975[dof], abs=1e-4)


def test_fallback_agrees_with_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    special = pytest.importorskip("scipy.special")
    for dof in (1, 2, 3, 5, 7, 20, 120):
        for p in (0.0005, 0.05, 0.4, 0.6, 0.9, 0.975, 0.9995):
            ref = scipy_stats.t.ppf(p, dof)
            assert stats.t_ppf_fallback(p, dof) == pytest.approx(ref, rel=1e-9, abs=1e-9)
            assert stats.t_cdf(ref, dof) == pytest.approx(p, rel=1e-10)
    for a, b, x in ((0.5, 0.5, 0.3), (2.5, 0.5, 0.9), (10.0, 0.5, 0.05), (1.0, 3.0, 0.7)):
        assert stats.betainc(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-12)


def test_paired_ci_hand_computed():
    a, b = [0.50, 0.52, 0.48], [0.53, 0.56, 0.49]  # differences 0.03, 0.04, 0.01
    d = stats.paired_ci(a, b)
    sd = math.sqrt(((0.03 - 0.08 / 3) ** 2 + (0.04 - 0.08 / 3) ** 2 + (0.01 - 0.08 / 3) ** 2) / 2)
    half = 4.302653 * sd / math.sqrt(3)
    assert d.n == 3 and d.delta == pytest.approx(0.08 / 3)
    assert (d.lo, d.hi) == (pytest.approx(0.08 / 3 - half, abs=1e-6), pytest.approx(0.08 / 3 + half, abs=1e-6))
    assert d.lo < 0 < d.hi and d.verdict == stats.NOISE


def test_paired_ci_matches_scipy_ttest_rel():
    scipy_stats = pytest.importorskip("scipy.stats")
    a, b = [0.41, 0.44, 0.39, 0.45, 0.40], [0.46, 0.47, 0.45, 0.49, 0.44]
    ci = scipy_stats.ttest_rel(b, a).confidence_interval(0.95)
    d = stats.paired_ci(a, b)
    assert (d.lo, d.hi) == (pytest.approx(ci.low, abs=1e-12), pytest.approx(ci.high, abs=1e-12))
    assert d.verdict == "better"
    assert stats.paired_ci(b, a).verdict == "worse"


def test_one_seed_ci_undefined_and_pairing_checked():
    d = stats.paired_ci([0.5], [0.6])
    assert d.delta == pytest.approx(0.1) and math.isnan(d.lo) and not d.defined
    assert "undefined" in d.verdict
    with pytest.raises(ValueError):
        stats.paired_ci([0.5, 0.6], [0.6])


# ------------------------------------------------------------------------------------------------ report
def _runs(label: str, maps: list[float], tmp: Path) -> list[RunResult]:
    return [RunResult(label, s, tmp / f"{label}_seed{s}", True, m + 0.2, m, 3, 3, [m / 3, m / 2, m], 10.0)
            for s, m in enumerate(maps)]


def test_report_rows_files_and_columns(tmp_path):
    runs = _runs("base", [0.50, 0.52, 0.48], tmp_path) + _runs("var", [0.53, 0.56, 0.49], tmp_path)
    runs.append(RunResult("var", 3, tmp_path / "var_seed3", False, error="NonFiniteLossError: loss was NaN"))
    rows = build_rows([ModelRow("base", "base.yaml", 1000, 1.5, 2.0), ModelRow("var", "var.yaml", 1200, 2.5, 3.0)],
                      runs)
    report = CompareReport(tmp_path, 160, rows, runs, 12.0, "header")
    report.write()
    assert report.rows[1].delta.delta == pytest.approx(stats.paired_ci([0.5, 0.52, 0.48], [0.53, 0.56, 0.49]).delta)
    assert report.rows[1].seeds == [0, 1, 2] and report.rows[0].verdict == "baseline"
    lines = report.table().splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == [
        "model", "params", "GFLOPs@640", "CPU ms@160", "seeds", "mAP50", "mAP50-95", "Δ mAP50 vs base [95% CI]",
        "Δ mAP50-95 vs base [95% CI]", "verdict (mAP50-95)"]
    d = report.rows[1].delta
    assert f"+0.027 [{d.lo:+.3f}, {d.hi:+.3f}]" in lines[3] and stats.NOISE in lines[3]
    assert "0.500 ± 0.020" in lines[2] and "1,000" in lines[2]
    with open(report.csv, newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["model"] for r in table] == ["base", "var"] and float(table[1]["d_mAP50-95_lo"]) == pytest.approx(d.lo)
    assert table[1]["pairs"] == "3" and table[0]["verdict"] == "baseline"
    md = report.md.read_text()
    assert "report.png" in md and "var_seed3 failed: NonFiniteLossError" in md and report.table() in md
    assert len(list(csv.DictReader(open(report.runs_csv)))) == 7
    assert_real_image(report.png)


def test_report_gpu_column_only_with_gpu(tmp_path):
    rows = build_rows([ModelRow("a", "a.yaml", 1, 1.0, 1.0, gpu_ms=0.5)], _runs("a", [0.4], tmp_path))
    report = CompareReport(tmp_path, 64, rows, [])
    assert "GPU ms@64" in report.columns and "0.5" in report.table().splitlines()[2]


# ------------------------------------------------------------------------------------------------ bad input
@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any training starts."""
    def refuse(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(YOLO, "train", refuse)
    monkeypatch.setattr(DetectionTrainer, "train", refuse)


def _broken_yaml(tmp_path: Path) -> Path:
    d = yaml_load(MODEL_DIR / "v8" / "yolov8.yaml")
    d["backbone"][2] = [-1, 3, "C2f", ["not_a_number", True]]
    f = tmp_path / "yolov8n_broken.yaml"
    yaml_save(f, d)
    return f


def _nc80_checkpoint(tmp_path: Path) -> Path:
    f = tmp_path / "nc80.pt"
    atomic_save(make_checkpoint(DetectionModel("yolov8n.yaml", nc=80, verbose=False), train_args={}, finished=True), f)
    return f


@pytest.mark.parametrize("case, error, words", [
    ({"models": "yolov8n.yaml,nope.yaml"}, MissingFileError, "nope.yaml"),
    ({"seeds": 0}, ConfigError, "seeds=0"),
    ({"seeds": 2.5}, ConfigError, "seeds=2.5"),
    ({"models": "yolov8n.yaml,yolov8n.yaml"}, ConfigError, "given twice"),
    ({"models": ""}, ConfigError, "needs models"),
    ({"models": None}, ConfigError, "needs models"),
    ({"data": None}, ConfigError, "needs data="),
    ({"seed": -1}, ConfigError, "seed=-1"),
    ({"epohcs": 3}, UnknownKeyError, "epohcs"),
    ({"resume": True}, ConfigError, "resume"),
    ({"device": "7"}, ConfigError, "device"),
    ({"data": "missing_data.yaml"}, FileNotFoundError, "missing_data.yaml"),
    ("broken", ModelConfigError, "yolov8n_broken.yaml"),
    ("nc80", ConfigError, "nc=80 but the data has nc=5"),
])
def test_bad_input_one_line_before_training(tmp_path, no_training, shapes_tiny, case, error, words):
    kw = {"models": "yolov8n.yaml,yolov8n_BiFormer.yaml", "data": str(shapes_tiny), "seeds": 2,
          "project": str(tmp_path / "cmp"), "epochs": 1, "imgsz": 64}
    if case == "broken":
        kw["models"] = f"yolov8n.yaml,{_broken_yaml(tmp_path)}"
    elif case == "nc80":
        kw["models"] = ["yolov8n.yaml", str(_nc80_checkpoint(tmp_path))]
    else:
        kw.update(case)
    with pytest.raises(error) as e:
        cmp.compare(**kw)
    assert isinstance(e.value, UserError)
    msg = str(e.value)
    assert words in msg and "\n" not in msg
    assert not (tmp_path / "cmp").exists()  # nothing written, nothing trained


@pytest.fixture(scope="module")
def shapes_tiny(tmp_path_factory) -> Path:
    """A tiny shapes dataset (8 train, 4 val images at 64 px, 5 classes) and its yaml."""
    root = generate_shapes(tmp_path_factory.mktemp("shapes") / "s", n_train=8, n_val=4, imgsz=64, seed=1)
    f = root / "data.yaml"
    yaml_save(f, {"path": str(root), "train": "images/train", "val": "images/val", "names": dict(NAMES)})
    return f


def test_child_command_gpu_and_resume(tmp_path):
    spec = cmp.ModelSpec("yolov8n.yaml", "yolov8n", 1, 1.0, torch.nn.Identity())
    job = cmp.Job(spec, 2, tmp_path / "yolov8n_seed2")
    cmd, env = cmp.child_command(job, {"epochs": 3, "imgsz": 64}, "data.yaml", "1")
    assert cmd[1:4] == ["-m", "ultralytics", "train"] and env["CUDA_VISIBLE_DEVICES"] == "1"
    launch = yaml_load(Path(cmd[4].split("=", 1)[1]))
    assert launch == {"epochs": 3, "imgsz": 64, "model": "yolov8n.yaml", "data": "data.yaml", "seed": 2,
                      "project": str(tmp_path), "name": "yolov8n_seed2", "exist_ok": True, "device": "0",
                      "mode": "train"}
    job.state = "resume"
    cmd, env = cmp.child_command(job, {}, "data.yaml", "cpu")
    assert cmd[4:] == [f"resume={job.last}", "device=cpu"]
    assert env.get("CUDA_VISIBLE_DEVICES") == os.environ.get("CUDA_VISIBLE_DEVICES")  # left alone on the CPU


def test_children_one_per_device_at_a_time(tmp_path, monkeypatch):
    """Four runs on two device slots: every slot is used and never runs two children at once."""
    stamp = tmp_path / "stamps.txt"

    def fake(job, train_args, data, device):
        job.save_dir.mkdir(parents=True, exist_ok=True)
        code = ("import sys, time; t = time.time(); time.sleep(0.4); "
                f"open({str(stamp)!r}, 'a').write(f'{device} {{t}} {{time.time()}}\\n')")
        return [sys.executable, "-c", code], {}
    monkeypatch.setattr(cmp, "child_command", fake)
    spec = cmp.ModelSpec("m.yaml", "m", 1, 1.0, torch.nn.Identity())
    jobs = [cmp.Job(spec, s, tmp_path / f"m_seed{s}") for s in range(4)]
    cmp.run_jobs(jobs, {}, "d.yaml", ["0", "1"])
    rows = [line.split() for line in stamp.read_text().splitlines()]
    assert sorted(r[0] for r in rows) == ["0", "0", "1", "1"]
    for dev in ("0", "1"):
        spans = sorted((float(a), float(b)) for d, a, b in rows if d == dev)
        assert spans[0][1] <= spans[1][0]  # the second child on a device starts after the first ended
    assert all((j.save_dir / cmp.DONE).exists() and j.error is None for j in jobs)


# ------------------------------------------------------------------------------------------------ end to end
class Killed(KeyboardInterrupt):
    pass


@pytest.mark.slow
def test_resume_after_kill_keeps_finished_runs(tmp_path, shapes_tiny, monkeypatch):
    """2 models x 2 seeds x 2 epochs; Ctrl-C after epoch 1 of the third run; the re-run resumes only that run from
    its last.pt and starts the fourth; the finished runs are not touched; a third call trains nothing."""
    variant = tmp_path / "yolov8n_copy.yaml"
    variant.write_text((MODEL_DIR / "v8" / "yolov8.yaml").read_text())
    kw = {"models": ["yolov8n.yaml", str(variant)], "data": str(shapes_tiny), "seeds": 2, "project": str(tmp_path),
          "name": "cmp", "device": "cpu", "epochs": 2, "imgsz": 64, "batch": 4, "workers": 0, "plots": False,
          "val": True}
    root = tmp_path / "cmp"
    monkeypatch.setattr(cmp, "LATENCY_RUNS", 3)
    original_save = DetectionTrainer.save_model

    def killing_save(self, finished=False):
        original_save(self, finished)
        if self.save_dir.name == "yolov8n_seed1" and self.epoch == 0:
            raise Killed()
    monkeypatch.setattr(DetectionTrainer, "save_model", killing_save)
    with pytest.raises(KeyboardInterrupt):
        cmp.compare(**kw)
    assert sorted(p.parent.name for p in root.glob(f"*/{cmp.DONE}")) == ["yolov8n_copy_seed0", "yolov8n_seed0"]
    assert (root / "yolov8n_seed1" / "weights" / "last.pt").exists() and not (root / "yolov8n_copy_seed1").exists()
    kept = {f: f.stat().st_mtime_ns for d in ("yolov8n_seed0", "yolov8n_copy_seed0")
            for f in (root / d).rglob("*") if f.is_file()}

    monkeypatch.setattr(DetectionTrainer, "save_model", original_save)
    launches = []
    original_init = DetectionTrainer.__init__

    def counting_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        launches.append((self.save_dir.name, self.resume_ckpt is not None))
    monkeypatch.setattr(DetectionTrainer, "__init__", counting_init)
    report = cmp.compare(**kw)
    assert launches == [("yolov8n_seed1", True), ("yolov8n_copy_seed1", False)]
    assert {f: f.stat().st_mtime_ns for f in kept} == kept  # finished runs untouched
    rows = list(csv.DictReader(open(root / "yolov8n_seed1" / "results.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]  # resumed at epoch 2, no duplicate
    assert [r.seeds for r in report.rows] == [[0, 1], [0, 1]] and report.rows[1].delta.n == 2
    assert all(r.finished and r.epochs == 2 for r in report.runs)
    for f in (report.md, report.csv, report.png, report.runs_csv):
        assert f.is_file()
    assert yaml_load(root / cmp.MANIFEST)["recipe"]["epochs"] == 2

    launches.clear()
    (root / "yolov8n_copy_seed1" / cmp.DONE).unlink()  # killed after training returned, before the marker
    again = cmp.compare(**kw)
    assert (root / "yolov8n_copy_seed1" / cmp.DONE).exists()  # its last.pt says finished: kept, marked
    assert launches == [] and [r.map for r in again.rows] == [r.map for r in report.rows]
    with pytest.raises(ConfigError, match="epochs"):  # another recipe in the same folder: refused before training
        cmp.compare(**{**kw, "epochs": 3})
    assert launches == []
