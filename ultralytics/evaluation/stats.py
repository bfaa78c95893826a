"""Small statistics for comparing models over seeds: mean, sample std, the Student-t quantile, a paired
confidence interval of a difference and the plain-words verdict drawn from it.

The t quantile comes from `scipy.stats.t.ppf` when scipy is installed; otherwise from `t_ppf_fallback`, a
bisection on the t CDF written through the regularized incomplete beta function (continued fraction, modified
Lentz). Both are tested to agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

try:
    from scipy.stats import t as _scipy_t
except ImportError:  # scipy is optional
    _scipy_t = None

NOISE = "not distinguishable from noise at this number of seeds"
UNDEFINED = "CI undefined with 1 seed (needs at least 2 paired seeds)"


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; nan for no values."""
    return math.fsum(values) / len(values) if len(values) else float("nan")


def sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation (n − 1 in the denominator); nan for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return float("nan")
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (n - 1))


def _betacf(a: float, b: float, x: float, eps: float = 1e-15, max_iter: int = 500) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):  # the continued fraction converges fast on this side
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, dof: float) -> float:
    """P(T <= t) for Student's t with `dof` degrees of freedom."""
    tail = 0.5 * betainc(dof / 2.0, 0.5, dof / (dof + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_ppf_fallback(p: float, dof: float) -> float:
    """The p-quantile of Student's t by bisection on `t_cdf` (used when scipy is not installed)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_ppf_fallback(1.0 - p, dof)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, dof) < p:  # bracket the quantile
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, dof) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def t_ppf(p: float, dof: float) -> float:
    """The p-quantile of Student's t: scipy's when installed, else `t_ppf_fallback`."""
    return float(_scipy_t.ppf(p, dof)) if _scipy_t is not None else t_ppf_fallback(p, dof)


@dataclass(frozen=True)
class PairedDelta:
    """mean(b − a) over paired seeds with its confidence interval (lo, hi are nan when undefined)."""

    delta: float
    lo: float
    hi: float
    n: int
    level: float = 0.95

    @property
    def defined(self) -> bool:
        return self.n >= 2 and not math.isnan(self.lo)

    @property
    def verdict(self) -> str:
        return verdict(self)


def paired_ci(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> PairedDelta:
    """mean(b − a) and its `level` CI from the t distribution with n − 1 degrees of freedom, the pairs being
    (a[i], b[i]) (the same seed). With one pair the CI is undefined (nan)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples must have the same length, got {len(a)} and {len(b)}")
    diffs = [y - x for x, y in zip(a, b)]
    n = len(diffs)
    d = mean(diffs)
    if n < 2:
        return PairedDelta(d, float("nan"), float("nan"), n, level)
    half = t_ppf(0.5 + level / 2.0, n - 1) * sample_std(diffs) / math.sqrt(n)
    return PairedDelta(d, d - half, d + half, n, level)


def verdict(d: PairedDelta) -> str:
    """'better' / 'worse' when the CI excludes 0, otherwise that the difference is not distinguishable from noise."""
    if d.n == 0:
        return "no paired seeds finished"
    if not d.defined:
        return UNDEFINED
    if d.lo > 0:
        return "better"
    if d.hi < 0:
        return "worse"
    return NOISE


__all__ = ["NOISE", "UNDEFINED", "PairedDelta", "betainc", "mean", "paired_ci", "sample_std", "t_cdf", "t_ppf",
           "t_ppf_fallback", "verdict"]
