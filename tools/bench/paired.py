"""Paired comparisons for interleaved on/off benchmark runs: the median of per-pair differences and a
distribution-free confidence interval for it (from the sign test); pure.

Each pair is one run with the thing under test and one without, taken back to back, so slow drift in the
machine's other load (a shared VM) hits both halves alike; the median of the pairs' relative differences
shrugs off the pairs a burst of other work spoiled, and the interval says how far the median can be trusted
with this many pairs.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence, Tuple


@dataclass(frozen=True)
class Paired:
    """Median of the pairs' differences in percent, its interval, and the interval's actual confidence."""

    median_pct: float
    ci_pct: Tuple[float, float]
    confidence: float
    pairs: int


def _binom_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, j) for j in range(k + 1)) / 2.0 ** n


def sign_interval(values: Sequence[float], level: float = 0.95) -> Tuple[float, float, float]:
    """The order-statistic interval (x_(k), x_(n+1-k)) for the median of ``values``, with the largest ``k``
    whose coverage 1 - 2·P(X <= k-1) is at least ``level``; with too few values for that, the full range and
    its coverage. Returns (low, high, coverage)."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        raise ValueError("no values")
    k = 1
    while k + 1 <= n // 2 and 1 - 2 * _binom_cdf(k, n) >= level:
        k += 1
    return xs[k - 1], xs[n - k], 1 - 2 * _binom_cdf(k - 1, n)


def relative(on: Sequence[float], off: Sequence[float], level: float = 0.95) -> Paired:
    """Pairs (on[i], off[i]): how much slower ``on`` is than ``off``, in percent of ``off``."""
    if len(on) != len(off) or not on:
        raise ValueError("on and off need the same, non-zero number of runs")
    diffs = [(a / b - 1.0) * 100.0 for a, b in zip(on, off)]
    lo, hi, conf = sign_interval(diffs, level)
    med = statistics.median(diffs)
    return Paired(round(med, 2), (round(lo, 2), round(hi, 2)), round(conf, 3), len(diffs))
