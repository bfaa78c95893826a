"""Tracking quality and speed on synthetic sequences: MOTA, IDF1 and ID switches (motmetrics), frames/s.

    python benchmarks/track.py                                   # 2 seeded sequences x 200 frames, 10 objects
    python benchmarks/track.py --published /tmp/upvenv/bin/python  # also run the published trackers (black box)

The sequences come from track_sequences.py: boxes moving at constant velocity with crossing pairs, a static
occluder band, 8 % (easy) or 20 % (hard) of the visible boxes dropped, Gaussian box noise, low scores for boxes
half behind the occluder, and false positives. Detections stand in for a detector's output, so the numbers
measure the trackers alone. Scoring: a track box matches a ground-truth box at IoU >= 0.5 (motmetrics' distance
1 - IoU at most 0.5); objects hidden behind the occluder are not in the ground truth of that frame. Frames/s is
the tracker's `update` alone (the median of `--repeats` passes), on blank frames except for sparseOptFlow, which
gets the drawn frames. `--published PYTHON` runs the published package's trackers on the same detections in
that interpreter (with /tmp as the working folder, so that `import ultralytics` finds the published package).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import motmetrics as mm  # noqa: E402

from ultralytics.trackers import build_tracker, load_tracker_cfg  # noqa: E402
from ultralytics.trackers.config import check_tracker_cfg  # noqa: E402
from ultralytics.trackers.matching import box_iou  # noqa: E402
from _machine import cpu_name  # noqa: E402  (benchmarks/ is the script's folder)
from track_sequences import make_sequence  # noqa: E402

EASY = dict(p_miss=0.08, fp_rate=0.3, box_noise=0.03)
HARD = dict(p_miss=0.2, fp_rate=1.5, box_noise=0.06)
SCENARIOS = {"easy": (EASY, 0.0), "hard": (HARD, 0.0), "easy, camera pans 6 px/frame": (EASY, 6.0)}
TRACKERS = {  # row name: (yaml, overrides)
    "ByteTrack": ("bytetrack.yaml", {}),
    "BoT-SORT (gmc none)": ("botsort.yaml", {"gmc_method": "none"}),
    "BoT-SORT (sparseOptFlow)": ("botsort.yaml", {"gmc_method": "sparseOptFlow"}),
    "BoT-SORT (none, ReID histogram)": ("botsort.yaml", {"gmc_method": "none", "with_reid": True}),
}
PANNING = {"BoT-SORT (gmc none)", "BoT-SORT (sparseOptFlow)"}  # also run on a panning camera
PUBLISHED_RUNNER = r"""
import json, sys, numpy as np
from ultralytics.trackers.bot_sort import BOTSORT
from ultralytics.trackers.byte_tracker import BYTETracker
from ultralytics.utils import IterableSimpleNamespace
class Dets:
    def __init__(s, a): s.a = np.asarray(a, dtype=np.float32).reshape(-1, 6)
    xyxy = property(lambda s: s.a[:, :4])
    xywh = property(lambda s: np.concatenate([(s.a[:, :2] + s.a[:, 2:4]) / 2, s.a[:, 2:4] - s.a[:, :2]], 1))
    conf = property(lambda s: s.a[:, 4])
    cls = property(lambda s: s.a[:, 5])
    __len__ = lambda s: len(s.a)
    __getitem__ = lambda s, i: Dets(s.a[i])
z = np.load(sys.argv[1], allow_pickle=False)
cfg = json.loads(str(z["cfg"]))
t = (BOTSORT if cfg["tracker_type"] == "botsort" else BYTETracker)(IterableSimpleNamespace(**cfg))
d, img, rows = z["dets"], np.zeros((int(z["h"]), int(z["w"]), 3), np.uint8), []
for f in range(int(z["n"])):
    out = np.asarray(t.update(Dets(d[d[:, 0] == f, 1:]), img), dtype=np.float64).reshape(-1, 8)
    rows.append(np.concatenate([np.full((len(out), 1), f), out], 1))
np.save(sys.argv[2], np.concatenate(rows))
"""


def run_ours(cfg: dict, seq) -> tuple[list[np.ndarray], float]:
    """Per-frame outputs of our tracker, and the seconds spent in update."""
    tracker = build_tracker(check_tracker_cfg(cfg))
    blank = np.zeros((seq.height, seq.width, 3), np.uint8)
    outs, t0 = [], time.perf_counter()
    for f, d in enumerate(seq.dets):
        outs.append(tracker.update(d, seq.frames[f] if seq.frames else blank))
    return outs, time.perf_counter() - t0


def run_published(python: str, cfg: dict, seq) -> list[np.ndarray]:
    """Per-frame outputs of the published tracker on the same detections (run as a black box)."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = [np.concatenate([np.full((len(d), 1), f), d], 1) for f, d in enumerate(seq.dets)]
        np.savez(f"{tmp}/in.npz", dets=np.concatenate(rows).astype(np.float32), cfg=json.dumps(cfg),
                 n=len(seq.dets), w=seq.width, h=seq.height)
        env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": f"{tmp}/cfg"}
        subprocess.run([python, "-c", PUBLISHED_RUNNER, f"{tmp}/in.npz", f"{tmp}/out.npy"], cwd="/tmp",
                       env=env, check=True, capture_output=True)
        out = np.load(f"{tmp}/out.npy")
    return [out[out[:, 0] == f, 1:] for f in range(len(seq.dets))]


def accumulate(acc: mm.MOTAccumulator, seq, outs: list[np.ndarray]) -> None:
    """Add one sequence's frames to a motmetrics accumulator (distance 1 - IoU, pairs at IoU < 0.5 excluded)."""
    for gt, out in zip(seq.gt, outs):
        dist = 1.0 - box_iou(gt[:, 1:5], out[:, :4]) if len(gt) and len(out) else np.zeros((len(gt), len(out)))
        dist[dist > 0.5] = np.nan
        acc.update(gt[:, 0].astype(int).tolist(), out[:, 4].astype(int).tolist(), dist)


def score(accs: list[mm.MOTAccumulator]) -> dict[str, float]:
    mh = mm.metrics.create()
    s = mh.compute_many(accs, metrics=["mota", "idf1", "num_switches"], generate_overall=True)
    return {k: float(s.loc["OVERALL", k]) for k in ("mota", "idf1", "num_switches")}


def evaluate(cfg: dict, seqs: list, repeats: int) -> dict:
    """Scores and frames/s of our tracker `cfg` over the sequences."""
    times, accs = [], []
    for _ in range(repeats):
        accs, total = [], 0.0
        for seq in seqs:
            outs, dt = run_ours(cfg, seq)
            total += dt
            acc = mm.MOTAccumulator(auto_id=True)
            accumulate(acc, seq, outs)
            accs.append(acc)
        times.append(total)
    return {**score(accs), "fps": sum(len(s.dets) for s in seqs) / statistics.median(times)}


def evaluate_published(python: str, cfg: dict, seqs: list) -> dict:
    accs = []
    for seq in seqs:
        acc = mm.MOTAccumulator(auto_id=True)
        accumulate(acc, seq, run_published(python, cfg, seq))
        accs.append(acc)
    return score(accs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=2)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--objects", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--published", default="", help="python of a venv with the published package")
    a = ap.parse_args()
    rows = []
    for level, (noise, pan) in SCENARIOS.items():
        blank = [make_sequence(a.frames, a.objects, seed=s, pan=pan, **noise) for s in range(a.sequences)]
        drawn = None
        for name, (yaml_name, overrides) in TRACKERS.items():
            if pan and name not in PANNING:
                continue
            cfg = {**vars(load_tracker_cfg(yaml_name)), **overrides}
            images = cfg.get("gmc_method") == "sparseOptFlow" or cfg.get("with_reid")
            if images:  # camera motion and appearance need drawn frames
                drawn = drawn or [make_sequence(a.frames, a.objects, seed=s, pan=pan, draw=True, **noise)
                                  for s in range(a.sequences)]
            row = {"level": level, "tracker": name, **evaluate(cfg, drawn if images else blank, a.repeats)}
            if a.published and not images:
                row["published"] = evaluate_published(a.published, cfg, blank)
            rows.append(row)
    print(f"\n{a.sequences} sequences x {a.frames} frames x {a.objects} objects per scenario; CPU: {cpu_name()}\n")
    head, sep = "| scenario | tracker | MOTA | IDF1 | ID switches | frames/s |", "|---|---|---|---|---|---|"
    if a.published:
        head += " published MOTA | published IDF1 | published ID sw. |"
        sep += "---|---|---|"
    print(head + "\n" + sep)
    for r in rows:
        line = (f"| {r['level']} | {r['tracker']} | {r['mota']:.4f} | {r['idf1']:.4f} | {int(r['num_switches'])} "
                f"| {r['fps']:.0f} |")
        if a.published:
            p = r.get("published")
            line += (f" {p['mota']:.4f} | {p['idf1']:.4f} | {int(p['num_switches'])} |" if p else " - | - | - |")
        print(line)


if __name__ == "__main__":
    main()
