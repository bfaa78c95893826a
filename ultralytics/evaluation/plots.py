"""Validation plots of a run folder: PR curve, metric-vs-confidence curves, confusion matrix and results.png.

Like plotting.py, matplotlib is used only through `Figure` + its Agg canvas (no pyplot, no global backend switch),
so these functions are safe to call from a background thread. Each one returns the Path it wrote.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ultralytics.evaluation.ap import box_filter
from ultralytics.utils.plotting import colour, save_figure

__all__ = ["gaussian_smooth", "normalize_columns", "plot_confusion_matrix", "plot_mc_curve", "plot_pr_curve",
           "plot_results", "results_sigma", "RESULTS_GRID"]

DPI = 200  # resolution of every saved figure
MEAN_COLOUR = "#1f3fbf"  # thick "all classes" line
MAX_LEGEND = 21  # per-class legend entries only when 0 < nc < MAX_LEGEND
MAX_LABELLED = 30  # confusion-matrix tick labels and cell text only when nc < MAX_LABELLED

# results.png panels: top row, then bottom row (column names of results.csv)
RESULTS_GRID = (
    ("train/box_loss", "train/cls_loss", "train/dfl_loss", "metrics/precision(B)", "metrics/recall(B)"),
    ("val/box_loss", "val/cls_loss", "val/dfl_loss", "metrics/mAP50(B)", "metrics/mAP50-95(B)"),
)


def _new_figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, save_path: str | Path, tight: bool = True) -> Path:
    """Write `fig` to save_path (a .png suffix is added when none is given), creating parent folders."""
    path = Path(save_path)
    if not path.suffix:
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=DPI, bbox_inches="tight" if tight else None, facecolor="white")  # atomic
    return path


def _name(names: dict[int, str] | list[str] | None, i: int) -> str:
    if isinstance(names, dict):
        return str(names.get(i, i))
    if isinstance(names, (list, tuple)) and i < len(names):
        return str(names[i])
    return str(i)


def _class_lines(ax, px: np.ndarray, py: np.ndarray, names, labels: list[str]) -> bool:
    """Draw one thin line per class; coloured and labelled when a legend fits. Returns whether labels were set."""
    nc = len(py)
    legend = 0 < nc < MAX_LEGEND
    for i, y in enumerate(py):
        if legend:
            ax.plot(px, y, linewidth=1, color=np.array(colour(i)) / 255, label=labels[i])
        else:
            ax.plot(px, y, linewidth=1, color="grey", alpha=0.6)
    return legend


def _finish_curve_axes(ax, xlabel: str, ylabel: str, title: str, empty: bool) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if empty:
        ax.text(0.5, 0.5, "no labels", ha="center", va="center", fontsize=16, color="dimgrey", transform=ax.transAxes)
    elif ax.get_legend_handles_labels()[0]:
        ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8, frameon=False)


def plot_pr_curve(px: np.ndarray, py: np.ndarray, ap: np.ndarray, save_path: str | Path,
                  names: dict[int, str] | None = None) -> Path:
    """Save the precision-recall curve per class (IoU 0.5) plus the class mean, labelled with AP / mAP@0.5."""
    px = np.asarray(px, dtype=np.float64).reshape(-1)
    py = np.asarray(py, dtype=np.float64).reshape(-1, len(px)) if np.size(py) else np.zeros((0, len(px)))
    ap = np.asarray(ap, dtype=np.float64)
    ap50 = (ap.reshape(len(py), -1)[:, 0] if ap.size else np.zeros(len(py))) if len(py) else np.zeros(0)
    fig = _new_figure(9, 6)
    ax = fig.add_subplot()
    _class_lines(ax, px, py, names, [f"{_name(names, i)} {ap50[i]:.3f}" for i in range(len(py))])
    if len(py):
        ax.plot(px, py.mean(0), linewidth=3, color=MEAN_COLOUR, label=f"all classes {ap50.mean():.3f} mAP@0.5")
    _finish_curve_axes(ax, "Recall", "Precision", "Precision-Recall Curve", empty=not len(py))
    return _save(fig, save_path)


def plot_mc_curve(px: np.ndarray, py: np.ndarray, save_path: str | Path, names: dict[int, str] | None = None,
                  xlabel: str = "Confidence", ylabel: str = "Metric") -> Path:
    """Save a metric-vs-confidence curve per class plus the smoothed class mean, labelled with its max and where."""
    px = np.asarray(px, dtype=np.float64).reshape(-1)
    py = np.asarray(py, dtype=np.float64).reshape(-1, len(px)) if np.size(py) else np.zeros((0, len(px)))
    fig = _new_figure(9, 6)
    ax = fig.add_subplot()
    _class_lines(ax, px, py, names, [_name(names, i) for i in range(len(py))])
    if len(py) and len(px):
        y = box_filter(py.mean(0), 0.05)
        i = int(np.nanargmax(y)) if np.isfinite(y).any() else 0
        ax.plot(px, y, linewidth=3, color=MEAN_COLOUR, label=f"all classes {y[i]:.2f} at {px[i]:.3f}")
    _finish_curve_axes(ax, xlabel, ylabel, f"{ylabel}-Confidence Curve", empty=not len(py))
    return _save(fig, save_path)


def normalize_columns(matrix: np.ndarray) -> np.ndarray:
    """Divide each column by its sum (+1e-9): non-empty columns sum to 1, empty columns stay 0."""
    m = np.asarray(matrix, dtype=np.float64)
    return m / (m.sum(0, keepdims=True) + 1e-9)


def plot_confusion_matrix(matrix: np.ndarray, names: dict[int, str], save_path: str | Path,
                          normalize: bool = True) -> Path:
    """Save the (nc+1, nc+1) confusion matrix (rows predicted, columns true, last = background) as a heat map."""
    import matplotlib

    counts = np.asarray(matrix, dtype=np.float64)
    m = normalize_columns(counts) if normalize else counts
    n = m.shape[0]  # nc + 1
    nc = n - 1
    shown = np.where(m < 0.005, np.nan, m)  # blank cells
    labelled = nc < MAX_LABELLED
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="white")
    vmax = 1.0 if normalize else max(float(np.nanmax(shown)) if np.isfinite(shown).any() else 1.0, 1.0)
    fig = _new_figure(12, 9)
    ax = fig.add_subplot()
    im = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest", aspect="equal")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if labelled:
        labels = [_name(names, i) for i in range(nc)] + ["background"]
        ax.set_xticks(range(n), labels, rotation=90, fontsize=9)
        ax.set_yticks(range(n), labels, fontsize=9)
        fs = min(12.0, max(6.0, 200 / n))
        for r, c in zip(*np.nonzero(np.isfinite(shown))):
            v = shown[r, c]
            ax.text(c, r, f"{v:.2f}" if normalize else f"{int(round(v))}", ha="center", va="center", fontsize=fs,
                    color="white" if v > 0.6 * vmax else "black")
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel("True")
    ax.set_ylabel("Predicted")
    ax.set_title("Confusion Matrix Normalized" if normalize else "Confusion Matrix")
    return _save(fig, save_path)


def results_sigma(n_epochs: int) -> float:
    """Smoothing width of results.png: 3 epochs for long runs, less for short ones (n/10, at least 0.5),
    so the dotted line of an 8-epoch run still follows its points."""
    return float(min(3.0, max(n_epochs / 10, 0.5)))


def gaussian_smooth(y: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """NaN-aware Gaussian smoothing (kernel truncated at 3 sigma, weights renormalised at edges and around gaps).

    A constant stays constant; the output is NaN exactly where the input is NaN.
    """
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    n = len(y)
    if n == 0 or not sigma or sigma <= 0:
        return y.copy()
    r = min(int(math.ceil(3 * sigma)), n - 1)
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    ok = np.isfinite(y)
    num = np.convolve(np.where(ok, y, 0.0), k)[r:r + n]  # full convolution sliced back to n ("same", any length)
    den = np.convolve(ok.astype(np.float64), k)[r:r + n]
    out = np.divide(num, den, out=np.full(n, np.nan), where=den > 0)
    out[~ok] = y[~ok]  # NaN stays NaN (inf stays inf)
    return out


def _read_results(csv_file: Path) -> dict[str, np.ndarray]:
    """Columns of a results.csv as float arrays; blank or non-numeric cells become NaN."""
    with open(csv_file, newline="") as f:
        rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    if not rows:
        return {}
    header = [h.strip() for h in rows[0]]
    data = np.full((len(rows) - 1, len(header)), np.nan)
    for i, row in enumerate(rows[1:]):
        for j, cell in enumerate(row[:len(header)]):
            try:
                data[i, j] = float(cell.strip())
            except ValueError:
                pass
    return {h: data[:, j] for j, h in enumerate(header) if h}


def plot_results(csv_file: str | Path, save_path: str | Path | None = None) -> Path:
    """Save a 2x5 grid of training losses, validation losses and metrics per epoch from results.csv."""
    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise FileNotFoundError(f"results csv not found: {csv_file}")
    cols = _read_results(csv_file)
    n = len(next(iter(cols.values()))) if cols else 0
    epoch = cols.get("epoch")
    x = epoch if epoch is not None and n and np.isfinite(epoch).all() else np.arange(1, n + 1, dtype=np.float64)
    fig = _new_figure(15, 6)
    axes = fig.subplots(2, 5)
    legend_done = False
    for r, row in enumerate(RESULTS_GRID):
        for c, key in enumerate(row):
            ax = axes[r, c]
            ax.set_title(key, fontsize=10)
            y = cols.get(key)
            ok = np.isfinite(y) if y is not None else np.zeros(0, bool)
            if not ok.any():
                ax.text(0.5, 0.5, "n/a" if y is None else "no data", ha="center", va="center", fontsize=14,
                        color="dimgrey", transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            ax.plot(x[ok], y[ok], marker=".", linewidth=2, markersize=8, color="#1f77b4", label="results")
            smoothed = gaussian_smooth(y, results_sigma(int(ok.sum())))
            ax.plot(x[ok], smoothed[ok], ":", linewidth=2, color="#ff7f0e", label="smooth")
            ax.grid(alpha=0.3)
            if not legend_done:
                ax.legend(fontsize=8)
                legend_done = True
    fig.tight_layout()
    return _save(fig, save_path if save_path is not None else csv_file.parent / "results.png", tight=False)
