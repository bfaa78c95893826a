"""The report of a comparison over seeds (`engine/compare.py`): per-run results read back from the run folders,
per-model rows with mean ± std and the paired Δ against the first model, and report.md / report.csv / runs.csv /
report.png."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ultralytics.engine.run_files import ResultsCSV
from ultralytics.evaluation.stats import PairedDelta, mean, paired_ci, sample_std
from ultralytics.utils import write_atomic
from ultralytics.utils.plotting import save_figure

MAP50, MAP = "metrics/mAP50(B)", "metrics/mAP50-95(B)"
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
GFLOPS_IMGSZ = 640  # GFLOPs are quoted at 640 as `model.info()` and papers do; latency at the run's imgsz


@dataclass
class RunResult:
    """One (model, seed) run as its folder shows it: best epoch's mAPs (best.pt's epoch, by fitness
    0.1·mAP50 + 0.9·mAP50-95), the mAP50-95 of every epoch, and whether it finished."""

    label: str
    seed: int
    save_dir: Path
    finished: bool = False
    map50: float = float("nan")
    map: float = float("nan")
    best_epoch: int = 0
    epochs: int = 0
    curve: list[float] = field(default_factory=list)
    train_s: float = float("nan")
    error: str | None = None


def read_run(label: str, seed: int, save_dir: Path, finished: bool, error: str | None = None) -> RunResult:
    """A RunResult from `save_dir/results.csv` (empty when the run has no epochs yet)."""
    table = ResultsCSV(save_dir / "results.csv")
    table.load()
    run = RunResult(label, seed, save_dir, finished=finished, error=error)
    if not table.rows:
        return run
    m50 = [float(r[MAP50]) for r in table.rows]
    m = [float(r[MAP]) for r in table.rows]
    fitness = [0.1 * a + 0.9 * b for a, b in zip(m50, m)]
    best = max(i for i, f in enumerate(fitness) if f == max(fitness))  # best.pt is rewritten on ties: the last one
    run.map50, run.map, run.best_epoch = m50[best], m[best], best + 1
    run.epochs, run.curve, run.train_s = len(table.rows), m, table.last_time
    return run


@dataclass
class ModelRow:
    """One model of the comparison: its cost and its finished runs' mAPs, and Δ against the first model."""

    label: str
    source: str
    params: int
    gflops: float
    cpu_ms: float = float("nan")
    gpu_ms: float | None = None
    seeds: list[int] = field(default_factory=list)
    map50: list[float] = field(default_factory=list)
    map: list[float] = field(default_factory=list)
    delta50: PairedDelta | None = None
    delta: PairedDelta | None = None

    @property
    def verdict(self) -> str:
        """Plain words on mAP50-95 against the first model ('baseline' for the first)."""
        return "baseline" if self.delta is None else self.delta.verdict


def build_rows(rows: list[ModelRow], runs: list[RunResult]) -> list[ModelRow]:
    """Fill each row with its finished runs, and Δ (paired by seed) of every row after the first against it."""
    done = {(r.label, r.seed): r for r in runs if r.finished and not math.isnan(r.map)}
    for row in rows:
        row.seeds = sorted(s for (label, s) in done if label == row.label)
        row.map50 = [done[(row.label, s)].map50 for s in row.seeds]
        row.map = [done[(row.label, s)].map for s in row.seeds]
    base = rows[0]
    for row in rows[1:]:
        shared = [s for s in base.seeds if s in row.seeds]
        a = [done[(base.label, s)] for s in shared]
        b = [done[(row.label, s)] for s in shared]
        row.delta50 = paired_ci([r.map50 for r in a], [r.map50 for r in b])
        row.delta = paired_ci([r.map for r in a], [r.map for r in b])
    return rows


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{mean(values):.3f} ± {sample_std(values):.3f}"


def _delta(d: PairedDelta | None) -> str:
    if d is None:
        return "–"
    if d.n == 0:
        return "no paired seeds"
    if not d.defined:
        return f"{d.delta:+.3f} (CI undefined, 1 seed)"
    return f"{d.delta:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}]"


def _ms(v: float | None) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:.1f}"


@dataclass
class CompareReport:
    """The result of `compare(...)`: `rows` (one ModelRow per model, the first is the baseline), `runs` (one
    RunResult per (model, seed)), the comparison folder and the report files."""

    save_dir: Path
    imgsz: int
    rows: list[ModelRow]
    runs: list[RunResult]
    wall_s: float = 0.0
    header: str = ""

    md = property(lambda self: self.save_dir / "report.md")
    csv = property(lambda self: self.save_dir / "report.csv")
    runs_csv = property(lambda self: self.save_dir / "runs.csv")
    png = property(lambda self: self.save_dir / "report.png")

    @property
    def baseline(self) -> ModelRow:
        return self.rows[0]

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.runs if r.error]

    @property
    def columns(self) -> list[str]:
        gpu = [f"GPU ms@{self.imgsz}"] if any(r.gpu_ms is not None for r in self.rows) else []
        base = self.rows[0].label
        return ["model", "params", f"GFLOPs@{GFLOPS_IMGSZ}", f"CPU ms@{self.imgsz}", *gpu, "seeds", "mAP50",
                "mAP50-95", f"Δ mAP50 vs {base} [95% CI]", f"Δ mAP50-95 vs {base} [95% CI]", "verdict (mAP50-95)"]

    def table(self) -> str:
        """The per-model table in markdown."""
        gpu = any(r.gpu_ms is not None for r in self.rows)
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        for r in self.rows:
            cells = [r.label, f"{r.params:,}", f"{r.gflops:.1f}", _ms(r.cpu_ms), *([_ms(r.gpu_ms)] if gpu else []),
                     str(len(r.seeds)), _mean_std(r.map50), _mean_std(r.map), _delta(r.delta50), _delta(r.delta),
                     r.verdict]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def runs_table(self) -> str:
        """One line per (model, seed) run, in markdown."""
        lines = ["| run | seed | epochs | best epoch | mAP50 | mAP50-95 | train s | state |", "|" + "---|" * 8]
        for r in self.runs:
            state = f"failed: {r.error}" if r.error else ("finished" if r.finished else "not finished")
            lines.append(f"| {r.save_dir.name} | {r.seed} | {r.epochs} | {r.best_epoch or '–'} | {_num(r.map50)} | "
                         f"{_num(r.map)} | {_num(r.train_s, 0)} | {state} |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def write(self) -> None:
        """report.md, report.csv, runs.csv and report.png in the comparison folder."""
        write_atomic(self.csv, _csv(self._csv_rows()))
        write_atomic(self.runs_csv, _csv([{"model": r.label, "seed": r.seed, "finished": r.finished,
                                           "epochs": r.epochs, "best_epoch": r.best_epoch, "mAP50": r.map50,
                                           "mAP50-95": r.map, "train_s": r.train_s, "error": r.error or "",
                                           "run": str(r.save_dir)} for r in self.runs]))
        plot_report(self, self.png)
        write_atomic(self.md, self.markdown())

    def _csv_rows(self) -> list[dict]:
        out = []
        for r in self.rows:
            d50, d = r.delta50, r.delta
            out.append({"model": r.label, "source": r.source, "params": r.params, "gflops_640": round(r.gflops, 3),
                        "imgsz": self.imgsz, "cpu_ms": r.cpu_ms, "gpu_ms": "" if r.gpu_ms is None else r.gpu_ms,
                        "seeds": " ".join(map(str, r.seeds)), "n": len(r.seeds),
                        "mAP50_mean": mean(r.map50), "mAP50_std": sample_std(r.map50),
                        "mAP50-95_mean": mean(r.map), "mAP50-95_std": sample_std(r.map),
                        "d_mAP50": d50.delta if d50 else "", "d_mAP50_lo": d50.lo if d50 else "",
                        "d_mAP50_hi": d50.hi if d50 else "", "d_mAP50-95": d.delta if d else "",
                        "d_mAP50-95_lo": d.lo if d else "", "d_mAP50-95_hi": d.hi if d else "",
                        "pairs": d.n if d else "", "verdict": r.verdict})
        return out

    def markdown(self) -> str:
        """report.md: what was compared, the table, every run, the figure and how to read them."""
        failed = "".join(f"- {r.save_dir.name} failed: {r.error}\n" for r in self.failed)
        return (f"# Comparison: {', '.join(r.label for r in self.rows)}\n\n{self.header}\n\n{self.table()}\n\n"
                f"![report](report.png)\n\n## Runs\n\n{self.runs_table()}\n\n{failed}"
                "## Reading the table\n\n"
                "- mAP50 / mAP50-95: each run's best epoch (the one best.pt holds: highest 0.1·mAP50 + 0.9·mAP50-95"
                " on the val split), as mean ± sample std over the finished seeds.\n"
                "- Δ: mean over seeds of (variant − baseline) with the same seed, and its 95% confidence interval from"
                " the t distribution with n−1 degrees of freedom (n = seeds both finished).\n"
                "- verdict: 'better' / 'worse' when the interval excludes 0; otherwise the difference is not "
                "distinguishable from noise at this number of seeds (more seeds narrow the interval).\n"
                f"- GFLOPs at {GFLOPS_IMGSZ}×{GFLOPS_IMGSZ}; latency: median ms of a fused fp32 forward pass, batch 1, "
                f"{self.imgsz}×{self.imgsz}.\n")


def _num(v: float, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def plot_report(report: CompareReport, file: Path) -> None:
    """Left: mAP50-95 per model (every seed a point, mean with ±1 std bars). Right: mean mAP50-95 per epoch over the
    finished seeds, ±1 std shaded."""
    fig = Figure(figsize=(12, 4.5), tight_layout=True)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    colors = COLORS
    for i, row in enumerate(report.rows):
        color = colors[i % len(colors)]
        if row.map:
            jitter = [i + 0.08 * (k - (len(row.map) - 1) / 2) for k in range(len(row.map))]
            ax1.scatter(jitter, row.map, color=color, alpha=0.6, zorder=3, label=None)
            std = sample_std(row.map) if len(row.map) > 1 else 0.0
            ax1.errorbar(i + 0.3, mean(row.map), yerr=std, fmt="o", color=color, capsize=6, ms=8, zorder=4)
        curves = [r.curve for r in report.runs if r.label == row.label and r.finished and r.curve]
        if curves:
            n = min(len(c) for c in curves)
            epochs = list(range(1, n + 1))
            m = [mean([c[e] for c in curves]) for e in range(n)]
            s = [sample_std([c[e] for c in curves]) if len(curves) > 1 else 0.0 for e in range(n)]
            ax2.plot(epochs, m, color=color, marker=".", label=f"{row.label} (n={len(curves)})")
            ax2.fill_between(epochs, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], color=color,
                             alpha=0.2)
    ax1.set_xticks(range(len(report.rows)), [r.label for r in report.rows])
    ax1.set_xlim(-0.5, len(report.rows) - 0.3)
    ax1.set_ylabel("best mAP50-95 (val)")
    ax1.set_title("per seed (dots), mean ± std (bars)")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("mAP50-95 (val)")
    ax2.set_title("mean validation curve over seeds (± std)")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    save_figure(fig, file, dpi=120)


__all__ = ["CompareReport", "ModelRow", "RunResult", "build_rows", "plot_report", "read_run"]
