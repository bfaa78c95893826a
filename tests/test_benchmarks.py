"""ultralytics.utils.benchmarks (benchmark, ProfileModels), YOLO.benchmark and `yolo benchmark`: every supported
format is exported, validated and timed; a failing format is a row, not a crash."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from published_boxes_case import fixture_model
from ultralytics import YOLO
from ultralytics.checkpoints import atomic_save, make_checkpoint
from ultralytics.cli import entrypoint
from ultralytics.engine.benchmark import COLUMNS, Table, time_runs
from ultralytics.errors import UnsupportedError
from ultralytics.utils.benchmarks import ProfileModels, benchmark
from ultralytics.utils.torch_utils import get_flops

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "fixture.pt"
    atomic_save(make_checkpoint(fixture_model(), train_args={"imgsz": 64}, finished=True), path)
    return path


def test_benchmark_every_format(checkpoint: Path) -> None:
    table = benchmark(checkpoint, imgsz=64)
    assert isinstance(table, Table) and table.columns == list(COLUMNS)
    assert table["Format"] == ["PyTorch", "TorchScript", "ONNX"]
    assert table["Status❔"] == ["✅"] * 3
    for suffix, size in zip((".pt", ".torchscript", ".onnx"), table["Size (MB)"]):
        file = checkpoint.with_suffix(suffix)
        assert file.is_file() and size == pytest.approx(file.stat().st_size / 2**20, abs=0.05)
    for row in table:
        assert row["Inference time (ms/im)"] > 0
        assert row["FPS"] == pytest.approx(1000 / row["Inference time (ms/im)"], rel=0.01)
        assert 0.0 <= row["metrics/mAP50-95(B)"] <= 1.0
    text = str(table)
    assert text.splitlines()[0].startswith("| Format") and len(text.splitlines()) == 5


def test_benchmark_published_checkpoint_formats_agree(published_file, tmp_path: Path) -> None:
    """A published-format yolov8n (the synthesized file always, the real one where ../shared has it)."""
    local = tmp_path / "yolov8n.pt"
    local.write_bytes(published_file.path.read_bytes())
    table = benchmark(local, imgsz=320)
    maps = table["metrics/mAP50-95(B)"]
    assert table["Status❔"] == ["✅"] * 3, table
    assert max(maps) - min(maps) < 0.02, maps  # the same network in every format
    if published_file.real:
        assert min(maps) > 0.03, maps  # a real detector: it finds some objects


def test_failed_format_is_a_row(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("exporter broke")

    yolo = YOLO(str(checkpoint))
    monkeypatch.setattr(yolo, "export", broken)
    table = benchmark(yolo, imgsz=64, format="onnx")
    assert table["Format"] == ["ONNX"] and table["Status❔"] == ["❌"] and table["FPS"] == [None]
    assert "| -" in str(table)


def test_bad_benchmark_arguments(checkpoint: Path) -> None:
    with pytest.raises(UnsupportedError, match="format='tflite'.*onnx"):
        benchmark(checkpoint, imgsz=64, format="tflite")
    with pytest.raises(UnsupportedError, match="int8"):
        benchmark(checkpoint, imgsz=64, int8=True)


def test_yolo_benchmark_method_and_cli(checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    table = YOLO(str(checkpoint)).benchmark(imgsz=64, format="torchscript")
    assert table["Format"] == ["TorchScript"] and table["Status❔"] == ["✅"]
    assert entrypoint(["benchmark", f"model={checkpoint}", "imgsz=64", "format=onnx"]) == 0


def test_profile_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rows = ProfileModels(["yolov8n.yaml"], num_timed_runs=3, num_warmup_runs=1, min_time=0, imgsz=64).profile()
    assert len(rows) == 1 and rows[0]["model/name"] == "yolov8n"
    model = YOLO("yolov8n.yaml").model
    assert rows[0]["model/parameters"] == sum(p.numel() for p in model.parameters())
    assert rows[0]["model/GFLOPs"] == pytest.approx(get_flops(model, 64), abs=1e-3)
    assert rows[0]["model/speed_ONNX(ms)"] > 0 and rows[0]["model/speed_PyTorch(ms)"] > 0
    assert rows[0]["model/speed_TensorRT(ms)"] is None and (tmp_path / "yolov8n.onnx").is_file()


def test_time_runs_honours_runs_and_min_time() -> None:
    calls = []
    median, std = time_runs(lambda: calls.append(1), warmup=2, runs=5, min_time=0)
    assert len(calls) == 7 and median >= 0 and std >= 0
    calls.clear()
    start = time.perf_counter()
    time_runs(lambda: (calls.append(1), time.sleep(0.01)), warmup=0, runs=1, min_time=0.1)
    assert time.perf_counter() - start >= 0.1 and len(calls) >= 5


def test_table_columns_and_polars_hint() -> None:
    t = Table([{"a": 1, "b": None}, {"a": 2, "b": 3.5}])
    assert t["a"] == [1, 2] and t[1] == {"a": 2, "b": 3.5} and t.columns == ["a", "b"]
    assert str(t).splitlines()[2] == "| 1 | -   |"
    try:
        import polars  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install polars"):
            t.to_df()
    else:
        assert t.to_df().shape == (2, 2)
