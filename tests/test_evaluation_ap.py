"""The pieces of ultralytics.evaluation.ap against hand-computed values, an independent loop, and values recorded by
running the published package (ultralytics 8.4.190, `ultralytics.utils.metrics.ap_per_class`) on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest

from ultralytics.evaluation.ap import (average_precision, box_filter, class_statistics, cumulative_pr,
                                       curve_over_confidence, f1_operating_point, f1_score, precision_envelope,
                                       rank_by_confidence)


def reference_ap(recall: list[float], precision: list[float]) -> float:
    """SPEC §6 written out with loops: sentinels, envelope, piecewise-linear value at x = i/100, trapezoid sum.

    At a repeated recall the value of the last point with that recall is used (what np.interp does there)."""
    r = [0.0, *recall, recall[-1], 1.0]
    p = [1.0, *precision, 0.0, 0.0]
    env = [max(p[k:]) for k in range(len(p))]

    def value(x: float) -> float:
        k = max(i for i in range(len(r)) if r[i] <= x)
        if k == len(r) - 1:
            return env[k]
        return env[k] + (env[k + 1] - env[k]) * (x - r[k]) / (r[k + 1] - r[k])

    ys = [value(i / 100) for i in range(101)]
    return sum(0.01 * (ys[i] + ys[i + 1]) / 2 for i in range(100))


@pytest.mark.parametrize("seed", range(6))
def test_average_precision_matches_the_loop(seed):
    rng = np.random.default_rng(seed)
    n, n_labels = int(rng.integers(1, 60)), int(rng.integers(1, 40))
    hits = rng.random(n) < rng.random()
    hits[np.cumsum(hits) > n_labels] = False  # never more true positives than labels
    recall, precision = cumulative_pr(hits[:, None], n_labels)
    expected = reference_ap(recall[:, 0].tolist(), precision[:, 0].tolist())
    assert average_precision(recall[:, 0], precision[:, 0]) == pytest.approx(expected, abs=1e-12)


def test_cumulative_pr_by_hand():
    # hits TP, FP, TP at two thresholds (the second: FP, FP, TP), 4 labels
    hits = np.array([[1, 0], [0, 0], [1, 1]], dtype=bool)
    recall, precision = cumulative_pr(hits, 4)
    assert recall.tolist() == [[0.25, 0.0], [0.25, 0.0], [0.5, 0.25]]
    assert precision == pytest.approx(np.array([[1.0, 0.0], [0.5, 0.0], [2 / 3, 1 / 3]]))


def test_precision_envelope_sentinels_by_hand():
    r, env = precision_envelope(np.array([0.2, 0.4]), np.array([0.5, 1.0]))
    # recall' [0, .2, .4, .4, 1], precision' [1, .5, 1, 0, 0] → running max from the end [1, 1, 1, 0, 0]
    assert r.tolist() == [0.0, 0.2, 0.4, 0.4, 1.0]
    assert env.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_rank_by_confidence_orders_decreasing():
    conf = np.array([0.2, 0.9, 0.5, 0.7])
    assert rank_by_confidence(conf).tolist() == [1, 3, 2, 0]


def test_curve_over_confidence_by_hand():
    # values .5 at conf .8 and 1 at conf .4: above .8 → `above`; linear in between; below .4 → the last value
    out = curve_over_confidence(np.array([0.8, 0.4]), np.array([0.5, 1.0]), np.array([0.9, 0.8, 0.6, 0.4, 0.1]), 0.0)
    assert out.tolist() == pytest.approx([0.0, 0.5, 0.75, 1.0, 1.0])


def test_box_filter_width_and_ends():
    y = np.arange(10, dtype=float)
    # fraction .2 of 10 samples: width round(2·.2·10)//2 + 1 = 3; ends extended with 0 and 9
    out = box_filter(y, 0.2)
    assert out.tolist() == pytest.approx([1 / 3, 1, 2, 3, 4, 5, 6, 7, 8, 26 / 3])
    assert box_filter(np.full(1000, 0.7), 0.1) == pytest.approx(np.full(1000, 0.7))


def test_f1_score_and_operating_point():
    assert f1_score(np.array([0.5, 0.0, 1.0]), np.array([1.0, 0.0, 1.0])).tolist() == pytest.approx([2 / 3, 0, 1])
    curves = np.zeros((2, 1000))
    curves[:, 700] = 1.0  # mean 1 at 700: smoothed (width 101) to 1/101 over 650..750
    curves[0, 200:260] = 0.5  # mean .25 on 200..259: smoothed to .25·60/101 where the window i−50..i+50 covers all
    # the plateau wins; it is fully covered for i = 209 … 250 and the first maximum is taken
    assert f1_operating_point(curves) == 209
    assert f1_operating_point(np.zeros((0, 1000))) == 0


# Recorded by running the published package's ap_per_class on these arrays (see docs/validation.md).
PUBLISHED_CASES = {
    "two classes, tie at 0.8": (
        dict(hits=[[1, 1], [0, 0], [1, 0], [1, 1], [0, 0], [1, 1]], conf=[0.9, 0.8, 0.8, 0.6, 0.4, 0.2],
             pred_cls=[0, 0, 1, 0, 1, 1], target_cls=[0, 0, 0, 1, 1]),
        dict(tp=[2, 2], fp=[1, 1], p=[0.666666666667, 0.666666666667], r=[0.666666666667, 1.0],
             ap=[[0.555, 0.555], [0.828333333333, 0.165]], classes=[0, 1])),
    "one class, ties": (
        dict(hits=[[1], [1], [0], [0], [1], [0], [1], [0]], conf=[0.95, 0.7, 0.7, 0.5, 0.45, 0.3, 0.1, 0.05],
             pred_cls=[0] * 8, target_cls=[0] * 5),
        dict(tp=[4], fp=[3], p=[0.566745316745], r=[0.786886886887], ap=[[0.629285714286]], classes=[0])),
    "class without labels, class without detections": (
        dict(hits=[[0], [0], [1]], conf=[0.9, 0.5, 0.2], pred_cls=[0, 2, 0], target_cls=[0, 1, 1]),
        dict(tp=[1, 0], fp=[1, 0], p=[0.5, 0.0], r=[1.0, 0.0], ap=[[0.4975], [0.0]], classes=[0, 1])),
}


@pytest.mark.parametrize("case", list(PUBLISHED_CASES))
def test_class_statistics_reproduces_recorded_published_values(case):
    inp, want = PUBLISHED_CASES[case]
    s = class_statistics(np.array(inp["hits"], dtype=bool), np.array(inp["conf"]), np.array(inp["pred_cls"], float),
                         np.array(inp["target_cls"], float))
    assert s.classes.tolist() == want["classes"]
    assert s.ap.tolist() == [pytest.approx(row, abs=1e-9) for row in want["ap"]]
    assert s.p.tolist() == pytest.approx(want["p"], abs=1e-9) and s.r.tolist() == pytest.approx(want["r"], abs=1e-9)
    assert s.tp.tolist() == want["tp"] and s.fp.tolist() == want["fp"]


def test_class_statistics_hand_case():
    # class 0: 3 labels; detections by confidence TP, FP, TP → recall [1/3, 1/3, 2/3], precision [1, .5, 2/3]
    # recall' [0, 1/3, 1/3, 2/3, 2/3, 1], envelope [1, 1, 2/3, 2/3, 0, 0]: 1 on [0, .33], 2/3 on [.34, .66], 0 from
    # .67 on (2/3 lies between grid points: linear from 2/3 at x = 2/3 down to 0 at x = 2/3, i.e. a jump)
    # trapezoid: .33 + .01·(1 + 2/3)/2 + .32·2/3 + .01·(2/3 + 0)/2 = .33 + .008333 + .213333 + .003333 = 0.555
    s = class_statistics(np.array([[1], [0], [1]], bool), np.array([0.9, 0.8, 0.6]), np.zeros(3), np.zeros(3))
    assert s.ap[0, 0] == pytest.approx(0.555, abs=1e-9)
