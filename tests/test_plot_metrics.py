"""Tests for ultralytics.evaluation.plots (PR / metric-confidence curves, confusion matrix, results.png)."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from ultralytics.evaluation import plots as plot_metrics
from ultralytics.evaluation.plots import (RESULTS_GRID, gaussian_smooth, normalize_columns, plot_confusion_matrix,
                                            plot_mc_curve, plot_pr_curve, plot_results)
from ultralytics.utils.plotting import colour

HEADER = ("epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),metrics/recall(B),"
          "metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,val/cls_loss,val/dfl_loss,lr/pg0,lr/pg1,lr/pg2")
FULL_DPI = plot_metrics.DPI
TEST_DPI = 80  # render small in tests (2 shared CPU cores); the speed test uses the real DPI


@pytest.fixture(autouse=True)
def low_dpi(monkeypatch):
    monkeypatch.setattr(plot_metrics, "DPI", TEST_DPI)


def assert_png(path, min_w: int = 500, min_h: int = 350, min_colours: int = 20) -> np.ndarray:
    """The file exists, cv2 decodes it, it is reasonably large and not blank."""
    assert path.suffix == ".png" and path.is_file(), path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(path))
    assert img is not None, f"cv2 could not read {path}"
    h, w = img.shape[:2]
    assert w >= min_w and h >= min_h, (w, h)
    assert w <= 6000 and h <= 6000, (w, h)
    assert img.std() > 5, "image looks blank"
    small = img[::2, ::2].reshape(-1, 3)
    assert len(np.unique(small, axis=0)) > min_colours
    return img


def pr_data(nc: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    px = np.linspace(0, 1, 1000)
    # monotonically falling precision per class, different shapes
    py = np.clip(1 - px[None] ** rng.uniform(1, 5, (nc, 1)), 0, 1)
    ap = np.sort(rng.uniform(0.2, 0.9, (nc, 10)), axis=1)[:, ::-1]
    return px, py, ap


def blue_fraction(img: np.ndarray) -> float:
    """Fraction of pixels that are strongly blue (B high, R low) in a BGR image."""
    b, g, r = (img[..., i].astype(int) for i in range(3))
    return float(((b > 150) & (r < 80) & (b - g > 60)).mean())


# ---------------------------------------------------------------- PR / metric-confidence curves
@pytest.mark.parametrize("nc", [1, 3, 80])
def test_pr_curve(tmp_path, nc):
    px, py, ap = pr_data(nc)
    names = {i: f"class_{i}" for i in range(nc)}
    out = plot_pr_curve(px, py, ap, tmp_path / "sub" / "PR_curve.png", names=names)
    assert out == tmp_path / "sub" / "PR_curve.png"
    img = assert_png(out)
    assert blue_fraction(img) > 0.001  # the thick mean line is there


def test_pr_curve_legend_outside_axes(tmp_path):
    """Class legend (colours from plotting.colour) sits right of the axes when 0 < nc < 21, absent for nc=80."""
    red = np.array(colour(0, bgr=True))

    def red_pixels_right(img):
        right = img[:, int(img.shape[1] * 0.8):].astype(int)
        return int((np.abs(right - red).sum(-1) < 40).sum())

    px, py, ap = pr_data(3)
    a = cv2.imread(str(plot_pr_curve(px, py, ap, tmp_path / "a.png", names={0: "a", 1: "b", 2: "c"})))
    px, py, ap = pr_data(80)
    b = cv2.imread(str(plot_pr_curve(px, py, ap, tmp_path / "b.png")))
    assert red_pixels_right(a) > 10
    assert red_pixels_right(b) == 0


def test_pr_curve_no_classes(tmp_path):
    px = np.linspace(0, 1, 1000)
    out = plot_pr_curve(px, np.zeros((0, 1000)), np.zeros((0, 10)), str(tmp_path / "PR_curve.png"))
    assert_png(out)
    out2 = plot_pr_curve(px, np.array([]), np.array([]), tmp_path / "PR2.png")
    assert_png(out2)


@pytest.mark.parametrize("nc", [0, 1, 3, 80])
def test_mc_curve(tmp_path, nc):
    px = np.linspace(0, 1, 1000)
    rng = np.random.default_rng(1)
    centre = rng.uniform(0.2, 0.6, (nc, 1))
    py = np.exp(-((px[None] - centre) ** 2) / 0.05) * 0.9 if nc else np.zeros((0, 1000))
    names = {i: f"c{i}" for i in range(nc)} if nc == 3 else None
    out = plot_mc_curve(px, py, tmp_path / f"F1_curve_{nc}.png", names=names, ylabel="F1")
    img = assert_png(out)
    if nc:
        assert blue_fraction(img) > 0.001


def test_mc_curve_default_labels_and_suffix(tmp_path):
    px = np.linspace(0, 1, 1000)
    py = np.stack([1 - px, px])
    out = plot_mc_curve(px, py, tmp_path / "curve")  # no suffix → .png appended
    assert out.name == "curve.png"
    assert_png(out)


# ---------------------------------------------------------------- confusion matrix
def test_normalize_columns():
    rng = np.random.default_rng(0)
    m = rng.integers(0, 20, (6, 6)).astype(float)
    m[:, 2] = 0  # an empty column (class never labelled)
    n = normalize_columns(m)
    assert n.shape == m.shape
    sums = n.sum(0)
    np.testing.assert_allclose(np.delete(sums, 2), 1.0, atol=1e-6)
    assert sums[2] == 0
    assert (n >= 0).all() and (n <= 1).all()
    # proportions within a column preserved
    np.testing.assert_allclose(n[:, 0] * m[:, 0].sum(), m[:, 0], rtol=1e-6)
    # input left untouched, integer input accepted
    assert m[:, 2].sum() == 0
    assert normalize_columns(np.eye(3, dtype=int)).dtype == np.float64


def cm_data(nc: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.integers(0, 3, (nc + 1, nc + 1))
    m[np.arange(nc), np.arange(nc)] += rng.integers(20, 60, nc)  # strong diagonal
    return m.astype(float)


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_small(tmp_path, normalize):
    m = cm_data(4)
    m[:, 1] = 0  # empty column must not crash / divide by zero
    names = {0: "person", 1: "car", 2: "dog", 3: "cat"}
    out = plot_confusion_matrix(m, names, tmp_path / "cm" / "confusion_matrix.png", normalize=normalize)
    img = assert_png(out)
    assert blue_fraction(img) > 0.005  # strong diagonal cells are dark blue


def test_confusion_matrix_large_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(plot_metrics, "DPI", FULL_DPI)
    m = cm_data(80)
    names = {i: f"class{i}" for i in range(80)}
    t = time.perf_counter()
    out = plot_confusion_matrix(m, names, tmp_path / "confusion_matrix_normalized.png")
    dt = time.perf_counter() - t
    assert_png(out)
    assert dt < 3.0, f"80-class confusion matrix took {dt:.2f}s"


def test_confusion_matrix_empty_and_background_only(tmp_path):
    out = plot_confusion_matrix(np.zeros((3, 3)), {0: "a", 1: "b"}, tmp_path / "z.png")
    assert cv2.imread(str(out)) is not None
    out = plot_confusion_matrix(np.array([[5.0]]), {}, tmp_path / "bg.png", normalize=False)
    assert cv2.imread(str(out)) is not None


def test_plots_from_threads(tmp_path):
    """No pyplot state: several plots can be drawn concurrently from worker threads."""
    px, py, ap = pr_data(3)
    errors: list[BaseException] = []

    def job(i):
        try:
            plot_pr_curve(px, py, ap, tmp_path / f"t{i}.png")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    for i in range(2):
        assert_png(tmp_path / f"t{i}.png")


# ---------------------------------------------------------------- results.csv
def write_csv(path, rows: list[str], header: str = HEADER):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def row(epoch: int) -> str:
    e = epoch
    vals = [e, 10.0 * e, 1.5 / e, 2.5 / e, 1.2 / e, 0.3 + 0.1 * e, 0.2 + 0.1 * e, 0.25 + 0.1 * e, 0.1 + 0.05 * e,
            1.6 / e, 2.6 / e, 1.3 / e, 0.01, 0.01, 0.01]
    return ",".join(f"{v:.5g}" for v in vals)


def test_results_five_rows(tmp_path):
    csv_file = write_csv(tmp_path / "results.csv", [row(e) for e in range(1, 6)])
    out = plot_results(csv_file)
    assert out == tmp_path / "results.png"
    img = assert_png(out, min_w=1000, min_h=400)
    assert img.shape[1] > img.shape[0]  # 2 x 5 grid is landscape


def test_results_single_row_and_custom_path(tmp_path):
    csv_file = write_csv(tmp_path / "results.csv", [row(1)])
    out = plot_results(str(csv_file), tmp_path / "plots" / "res.png")
    assert out == tmp_path / "plots" / "res.png"
    assert_png(out, min_w=1000, min_h=400)


def test_results_blank_cells_whitespace_missing_columns(tmp_path):
    header = " epoch , train/box_loss ,train/cls_loss, metrics/mAP50(B) ,val/box_loss"  # many panels n/a
    rows = [" 1 , 1.0 , 2.0 , 0.1, 1.1", "2,, 1.8, x ,1.0", "3, 0.8 ,, 0.3,", "4,0.7,1.5,0.35,0.9", ",,,,"]
    out = plot_results(write_csv(tmp_path / "results.csv", rows, header=header))
    assert_png(out, min_w=1000, min_h=400)


def test_results_header_only_and_empty_file(tmp_path):
    out = plot_results(write_csv(tmp_path / "results.csv", []))
    assert_png(out, min_w=1000, min_h=400, min_colours=5)
    empty = tmp_path / "e" / "results.csv"
    empty.parent.mkdir()
    empty.write_text("")
    assert plot_results(empty).is_file()


def test_results_missing_file(tmp_path):
    missing = tmp_path / "nope" / "results.csv"
    with pytest.raises(FileNotFoundError, match="nope"):
        plot_results(missing)
    with pytest.raises(FileNotFoundError) as e:
        plot_results(str(missing))
    assert str(missing) in str(e.value)


def test_results_grid_layout():
    assert len(RESULTS_GRID) == 2 and all(len(r) == 5 for r in RESULTS_GRID)
    assert RESULTS_GRID[0][0] == "train/box_loss" and RESULTS_GRID[1][-1] == "metrics/mAP50-95(B)"


# ---------------------------------------------------------------- gaussian_smooth
@pytest.mark.parametrize("n", [1, 2, 5, 50])
def test_gaussian_smooth_constant(n):
    y = np.full(n, 3.25)
    out = gaussian_smooth(y)
    assert out.shape == (n,)
    np.testing.assert_allclose(out, 3.25, rtol=0, atol=1e-12)


def test_gaussian_smooth_nan_positions():
    y = np.linspace(0, 1, 30)
    y[[0, 7, 8, 29]] = np.nan
    out = gaussian_smooth(y, sigma=2.0)
    assert out.shape == y.shape
    np.testing.assert_array_equal(np.isnan(out), np.isnan(y))
    assert np.isfinite(out[~np.isnan(y)]).all()
    assert np.isnan(gaussian_smooth(np.full(4, np.nan))).all()
    # constant with gaps stays constant
    c = np.full(20, 2.0)
    c[[3, 10]] = np.nan
    np.testing.assert_allclose(gaussian_smooth(c)[~np.isnan(c)], 2.0)


def test_gaussian_smooth_step_and_properties():
    y = np.r_[np.zeros(20), np.ones(20)]
    out = gaussian_smooth(y, sigma=3.0)
    assert len(out) == 40
    assert (np.diff(out) >= -1e-12).all()  # monotone
    assert 0 < out[19] < 0.5 < out[20] < 1  # edge really smoothed, symmetric around the step
    np.testing.assert_allclose(out[19] + out[20], 1.0, atol=1e-9)
    assert out[0] == pytest.approx(0, abs=1e-9) and out[-1] == pytest.approx(1, abs=1e-9)
    # sigma <= 0 is the identity, empty input fine, input not modified
    np.testing.assert_array_equal(gaussian_smooth(y, 0), y)
    assert gaussian_smooth(np.array([])).shape == (0,)
    assert y[19] == 0


def test_results_sigma_scales_with_run_length():
    assert plot_metrics.results_sigma(100) == 3.0 and plot_metrics.results_sigma(30) == 3.0
    assert plot_metrics.results_sigma(8) == pytest.approx(0.8) and plot_metrics.results_sigma(1) == 0.5


# ---------------------------------------------------------------- the plot thread
def test_plot_worker_hold_release_wait_and_failures(logs):
    from ultralytics.utils.plotting import PlotWorker

    worker, done = PlotWorker(), []
    worker.hold()
    worker.submit(done.append, 1)
    time.sleep(0.05)
    assert done == []  # held: queued, not started
    worker.release()
    worker.submit(done.append, 2)

    def broken():
        raise RuntimeError("no display")

    worker.submit(broken)  # a failing plot is a warning, the run goes on
    worker.submit(done.append, 3)
    worker.wait()
    assert done == [1, 2, 3]
    assert any("plot broken failed: no display" in line for line in logs)
    worker.hold()
    worker.submit(done.append, 4)
    worker.wait()  # wait() starts held plots too: it never blocks on a hold
    assert done == [1, 2, 3, 4]
    names = []
    worker.submit(lambda: names.append(threading.current_thread().name))
    worker.wait()
    assert names[0].startswith("plots") and names[0] != threading.current_thread().name  # off the main thread
